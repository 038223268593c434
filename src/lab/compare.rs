//! `socklab lab compare A.json B.json`: where two lab documents differ — claim verdicts, part
//! verdicts and facts — whether each came from `socklab lab --json` or from the exported Python
//! scripts (`python3 run_all.py`, same schema).
//!
//! The rule (docs/lab.md, "Comparing two runs"): a part is compared when both documents ran it
//! (its verdict is not `not_run` on either side); its verdict and every fact are compared after
//! [`normalise`]. A claim's verdict is compared when both sides ran the same parts of it (a
//! script that reproduces fewer parts than the lab would otherwise differ for that reason
//! alone). Parts or claims present or run on one side only are listed as notes, not
//! differences.

use std::collections::BTreeMap;

use serde_json::Value;

/// What comparing two documents found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    /// One line per difference: `claim 6, part 6b: fact rebinds: A … | B …`.
    pub differences: Vec<String>,
    /// One line per thing not compared, with why.
    pub notes: Vec<String>,
    /// How many parts were compared.
    pub parts_compared: usize,
}

/// A claim as one run of it: its number and the address family it ran over (`"family"`; a
/// document without it, from before `lab -6` or from a Python script, ran over IPv4). A
/// `--family both` document holds each claim twice; each is compared with its own family.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ClaimKey(u64, String);

impl std::fmt::Display for ClaimKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1.as_str() {
            "ipv4" => write!(f, "claim {}", self.0),
            other => write!(f, "claim {} ({other})", self.0),
        }
    }
}

/// The claims of a lab document by number and family, or why it is not one.
fn claims(doc: &Value) -> Result<BTreeMap<ClaimKey, &Value>, String> {
    let list = doc
        .get("experiments")
        .and_then(Value::as_array)
        .ok_or("not a lab document: no \"experiments\" array")?;
    let mut out = BTreeMap::new();
    for e in list {
        let n = e
            .get("claim")
            .and_then(Value::as_u64)
            .ok_or("not a lab document: an experiment without a numeric \"claim\"")?;
        let family = e.get("family").and_then(Value::as_str).unwrap_or("ipv4");
        out.insert(ClaimKey(n, family.to_string()), e);
    }
    Ok(out)
}

/// The parts of an experiment by id.
fn parts(e: &Value) -> BTreeMap<String, &Value> {
    e.get("parts")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| Some((p.get("id")?.as_str()?.to_string(), p)))
                .collect()
        })
        .unwrap_or_default()
}

fn verdict(v: &Value) -> &str {
    v.get("verdict").and_then(Value::as_str).unwrap_or("?")
}

fn ran(p: &Value) -> bool {
    !matches!(verdict(p), "not_run" | "?")
}

/// Compares lab documents `a` and `b`; `Err` when either is not a lab document.
pub fn compare(a: &Value, b: &Value) -> Result<Comparison, String> {
    let (ca, cb) = (
        claims(a).map_err(|e| format!("A: {e}"))?,
        claims(b).map_err(|e| format!("B: {e}"))?,
    );
    let mut c = Comparison::default();
    for (n, only) in ca
        .keys()
        .filter(|n| !cb.contains_key(n))
        .map(|n| (n, "A"))
        .chain(cb.keys().filter(|n| !ca.contains_key(n)).map(|n| (n, "B")))
    {
        c.notes.push(format!("{n}: only in {only}"));
    }
    for (key, ea) in &ca {
        let n = key.0;
        let Some(eb) = cb.get(key) else { continue };
        let (pa, pb) = (parts(ea), parts(eb));
        let run_a: Vec<&String> = pa.iter().filter(|(_, p)| ran(p)).map(|(k, _)| k).collect();
        let run_b: Vec<&String> = pb.iter().filter(|(_, p)| ran(p)).map(|(k, _)| k).collect();
        if run_a == run_b {
            if verdict(ea) != verdict(eb) {
                c.differences.push(format!(
                    "{key}: verdict A {} | B {}",
                    verdict(ea),
                    verdict(eb)
                ));
            }
        } else {
            c.notes.push(format!(
                "{key}: verdict not compared: A ran parts [{}], B ran [{}]",
                ids(&run_a),
                ids(&run_b)
            ));
        }
        for (id, p) in &pa {
            let label = format!("{key}, part {n}{id}");
            let Some(q) = pb.get(id) else {
                c.notes.push(format!("{label}: only in A"));
                continue;
            };
            match (ran(p), ran(q)) {
                (true, true) => {}
                (false, false) => continue,
                (true, false) => {
                    c.notes
                        .push(format!("{label}: not run in B ({})", reason(q)));
                    continue;
                }
                (false, true) => {
                    c.notes
                        .push(format!("{label}: not run in A ({})", reason(p)));
                    continue;
                }
            }
            c.parts_compared += 1;
            if verdict(p) != verdict(q) {
                c.differences.push(format!(
                    "{label}: verdict A {} | B {}",
                    verdict(p),
                    verdict(q)
                ));
            }
            let (fa, fb) = (normalise(&facts(p)), normalise(&facts(q)));
            let keys: std::collections::BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
            for k in keys {
                let (x, y) = (fa.get(k), fb.get(k));
                if x != y {
                    c.differences
                        .push(format!("{label}: fact {k}: A {} | B {}", show(x), show(y)));
                }
            }
        }
        for id in pb.keys().filter(|id| !pa.contains_key(*id)) {
            c.notes.push(format!("{key}, part {n}{id}: only in B"));
        }
    }
    Ok(c)
}

fn ids(v: &[&String]) -> String {
    v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
}

fn reason(p: &Value) -> &str {
    p.get("reason")
        .and_then(Value::as_str)
        .unwrap_or("no reason given")
}

fn show(v: Option<&Value>) -> String {
    v.map_or_else(|| "(absent)".into(), Value::to_string)
}

fn facts(p: &Value) -> serde_json::Map<String, Value> {
    p.get("evidence")
        .and_then(|e| e.get("facts"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// The facts of one part with what legitimately varies run to run made comparable:
/// - **port numbers the kernel chose** (ephemeral ports, `bind(…:0)`): every non-zero port — in
///   an address string (`127.0.0.1:40001`, `[::1]:40001`) or the number of a fact named
///   `port` — becomes `P1`, `P2`, … in the order the part's facts first mention it (keys
///   sorted), so that "the same port as before" survives and the number itself does not
///   matter. Port 0 stays 0;
/// - **TCP initial sequence numbers** (random per connection, RFC 6528): `seq 3909618761` in a
///   wire line becomes `seq S`;
/// - **the order of `ss` lines** (the kernel's hash-table order): a list of them is sorted.
pub fn normalise(facts: &serde_json::Map<String, Value>) -> BTreeMap<String, Value> {
    let mut ports: Vec<String> = Vec::new();
    let sorted: BTreeMap<&String, &Value> = facts.iter().collect();
    sorted
        .into_iter()
        .map(|(k, v)| (k.clone(), walk(k, v, &mut ports)))
        .collect()
}

/// The states `ss` prints first on a socket's line (ss(8)).
const SS_STATES: &[&str] = &[
    "UNCONN",
    "LISTEN",
    "ESTAB",
    "SYN-SENT",
    "SYN-RECV",
    "FIN-WAIT-1",
    "FIN-WAIT-2",
    "CLOSE-WAIT",
    "CLOSING",
    "LAST-ACK",
    "TIME-WAIT",
];

fn is_ss_line(v: &Value) -> bool {
    v.as_str()
        .and_then(|s| s.split_whitespace().next())
        .is_some_and(|w| SS_STATES.contains(&w))
}

/// `seq N` → `seq S` in a wire line.
fn without_isn(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("seq ") {
        out.push_str(&rest[..i + 4]);
        let after = &rest[i + 4..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        out.push_str(if digits > 0 { "S" } else { "" });
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

fn walk(key: &str, v: &Value, ports: &mut Vec<String>) -> Value {
    match v {
        Value::String(s) => Value::String(ports_in(&without_isn(s), ports)),
        Value::Number(n) if key == "port" && n.as_u64().is_some_and(|p| p != 0) => {
            Value::String(token(&n.to_string(), ports))
        }
        Value::Array(a) => {
            let mut out: Vec<Value> = a.iter().map(|x| walk(key, x, ports)).collect();
            if !out.is_empty() && out.iter().all(is_ss_line) {
                out.sort_by(|x, y| x.as_str().cmp(&y.as_str()));
            }
            Value::Array(out)
        }
        Value::Object(o) => {
            let sorted: BTreeMap<&String, &Value> = o.iter().collect();
            Value::Object(
                sorted
                    .into_iter()
                    .map(|(k, x)| (k.clone(), walk(k, x, ports)))
                    .collect(),
            )
        }
        v => v.clone(),
    }
}

/// `P<n>` for port `p`: its place among the ports seen so far.
fn token(p: &str, ports: &mut Vec<String>) -> String {
    let i = match ports.iter().position(|x| x == p) {
        Some(i) => i,
        None => {
            ports.push(p.to_string());
            ports.len() - 1
        }
    };
    format!("P{}", i + 1)
}

/// `s` with the port of every `a.b.c.d:port` and `[v6]:port` replaced by its token.
fn ports_in(s: &str, ports: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(':') {
        let (before, after) = rest.split_at(i);
        out.push_str(before);
        let digits: String = after[1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let host_before = out.ends_with(']') || ends_with_ipv4(&out);
        if host_before && !digits.is_empty() && digits != "0" {
            out.push(':');
            out.push_str(&token(&digits, ports));
        } else {
            out.push(':');
            out.push_str(&digits);
        }
        rest = &after[1 + digits.len()..];
    }
    out.push_str(rest);
    out
}

/// Whether `s` ends with a dotted-quad IPv4 address.
fn ends_with_ipv4(s: &str) -> bool {
    let tail: String = s
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    tail.parse::<std::net::Ipv4Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(verdict: &str, facts: Value) -> Value {
        json!({"experiments": [{"claim": 6, "verdict": verdict, "parts": [
            {"id": "a", "verdict": verdict, "evidence": {"facts": facts}},
            {"id": "b", "verdict": "not_run", "reason": "needs root", "evidence": {}}]}]})
    }

    #[test]
    fn ports_become_tokens_keeping_equalities() {
        let f = json!({"b": "0.0.0.0:0 then 0.0.0.0:5555 to [::1]:7", "a": "127.0.0.1:5555", "port": 7, "n": 5555});
        let n = normalise(f.as_object().unwrap());
        assert_eq!(n["a"], json!("127.0.0.1:P1"));
        assert_eq!(n["b"], json!("0.0.0.0:0 then 0.0.0.0:P1 to [::1]:P2"));
        assert_eq!(n["port"], json!("P2"));
        assert_eq!(n["n"], json!(5555), "a number not named port stays");
        let s = json!({"t": "timewait,59sec,0", "x": "a:1"});
        assert_eq!(normalise(s.as_object().unwrap())["x"], json!("a:1"));
    }

    /// Two runs of the same part differ in their connections' ISNs and in the order `ss`
    /// listed the sockets; neither is a difference. A different state still is.
    #[test]
    fn isns_and_ss_order_are_not_differences() {
        let run = |isn: &str, ss: [&str; 2]| {
            doc(
                "confirmed",
                json!({"addr": "[::1]:40001", "before": ss,
                       "wire": [format!("TCP [::1]:40001 > [::1]:40002 [FIN,ACK] seq {isn} win 65536 len 0")]}),
            )
        };
        let a = run(
            "3909618761",
            [
                "ESTAB 0 0 [::1]:40002 [::1]:40001",
                "ESTAB 0 0 [::1]:40001 [::1]:40002",
            ],
        );
        let b = run(
            "4078822984",
            [
                "ESTAB 0 0 [::1]:40001 [::1]:40002",
                "ESTAB 0 0 [::1]:40002 [::1]:40001",
            ],
        );
        let c = compare(&a, &b).unwrap();
        assert!(c.differences.is_empty(), "{c:?}");
        let d = run(
            "1",
            [
                "ESTAB 0 0 [::1]:40001 [::1]:40002",
                "CLOSE-WAIT 1 0 [::1]:40002 [::1]:40001",
            ],
        );
        let c = compare(&a, &d).unwrap();
        assert_eq!(c.differences.len(), 1, "{c:?}");
        assert!(c.differences[0].contains("fact before"), "{c:?}");
    }

    #[test]
    fn equal_up_to_ports_and_different_facts() {
        let a = doc("confirmed", json!({"addr": "127.0.0.1:40001", "got": "x"}));
        let b = doc("confirmed", json!({"addr": "127.0.0.1:50002", "got": "x"}));
        let c = compare(&a, &b).unwrap();
        assert!(c.differences.is_empty(), "{c:?}");
        assert_eq!(c.parts_compared, 1);
        let d = doc("refuted", json!({"addr": "127.0.0.1:50002", "got": "y"}));
        let c = compare(&a, &d).unwrap();
        assert_eq!(c.differences.len(), 3, "{c:?}");
        assert!(c.differences[1].contains("part 6a: verdict"), "{c:?}");
        assert!(c.differences[2].contains("fact got"), "{c:?}");
    }

    #[test]
    fn a_part_run_on_one_side_only_is_a_note() {
        let a = doc("confirmed", json!({}));
        let mut b = a.clone();
        b["experiments"][0]["parts"][1]["verdict"] = json!("confirmed");
        let c = compare(&a, &b).unwrap();
        assert!(c.differences.is_empty(), "{c:?}");
        assert!(
            c.notes.iter().any(|n| n.contains("6b: not run in A")),
            "{c:?}"
        );
        assert!(
            c.notes.iter().any(|n| n.contains("verdict not compared")),
            "{c:?}"
        );
    }

    /// A `--family both` document holds claim 6 twice: each run is compared with the same
    /// family's run on the other side, never IPv4 with IPv6.
    #[test]
    fn each_family_is_compared_with_its_own() {
        let both = |v6: &str| {
            let mut d = doc("confirmed", json!({"addr": "127.0.0.1:1"}));
            let mut six = doc(v6, json!({"addr": "[::1]:1"}))["experiments"][0].clone();
            six["family"] = json!("ipv6");
            d["experiments"].as_array_mut().unwrap().push(six);
            d
        };
        let c = compare(&both("confirmed"), &both("confirmed")).unwrap();
        assert!(c.differences.is_empty(), "{c:?}");
        assert_eq!(c.parts_compared, 2);
        let c = compare(&both("confirmed"), &both("refuted")).unwrap();
        assert!(!c.differences.is_empty(), "{c:?}");
        assert!(
            c.differences
                .iter()
                .all(|d| d.starts_with("claim 6 (ipv6)")),
            "{c:?}"
        );
        let v4 = doc("confirmed", json!({"addr": "127.0.0.1:1"}));
        let c = compare(&v4, &both("confirmed")).unwrap();
        assert!(c.differences.is_empty(), "{c:?}");
        assert!(
            c.notes.iter().any(|n| n == "claim 6 (ipv6): only in B"),
            "{c:?}"
        );
    }

    #[test]
    fn not_a_document() {
        assert!(compare(&json!({}), &json!({"experiments": []})).is_err());
        assert!(
            compare(
                &json!({"experiments": [{"claim": "x"}]}),
                &json!({"experiments": []})
            )
            .is_err()
        );
    }
}
