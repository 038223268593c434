//! `socklab lab -6` and `--family both` from the outside: every claim runs over IPv6 with IPv6
//! addresses in its facts, the broadcast claims (7, 8) are an analogue whose parts never vote,
//! both families appear side by side, and claim 13's dual-stack aside records what the kernel
//! did with IPV6_V6ONLY off and on.

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use crate::util::{BIN, socklab_stdout as run};

/// One `socklab lab -6 --json` document, shared by the tests of this file (one run, ~3 s).
fn v6_doc() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        serde_json::from_slice(&run(&["lab", "-6", "--json"])).expect("lab -6 --json is JSON")
    })
}

fn experiments(doc: &Value) -> &Vec<Value> {
    doc["experiments"].as_array().expect("experiments")
}

fn claim(doc: &Value, n: u64) -> &Value {
    experiments(doc)
        .iter()
        .find(|e| e["claim"] == n)
        .unwrap_or_else(|| panic!("no claim {n}"))
}

/// Every IP address written in `v` (as `1.2.3.4`, `::1`, `[::1]:5`, `1.2.3.4:5`).
fn addresses(v: &Value, out: &mut Vec<IpAddr>) {
    match v {
        Value::String(s) => {
            if let Ok(a) = s.parse::<SocketAddr>() {
                out.push(a.ip());
            } else if let Ok(ip) = s.parse::<IpAddr>() {
                out.push(ip);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| addresses(x, out)),
        Value::Object(o) => o.values().for_each(|x| addresses(x, out)),
        _ => {}
    }
}

/// Whether the lab ran with namespaces (root, or a user namespace it re-executed in).
fn namespaces(doc: &Value) -> bool {
    doc["meta"]["isolation"] != "none"
}

#[test]
fn lab_v6_runs_every_claim_over_ipv6_addresses() {
    let doc = v6_doc();
    let registered: Vec<u64> = socklab::lab::registry()
        .iter()
        .map(|e| u64::from(e.claim()))
        .collect();
    let ran: Vec<u64> = experiments(doc)
        .iter()
        .map(|e| e["claim"].as_u64().expect("claim"))
        .collect();
    assert_eq!(ran, registered);
    let mut seen = 0;
    for e in experiments(doc) {
        assert_eq!(e["family"], "ipv6", "claim {}", e["claim"]);
        assert!(
            !e["reason"].as_str().unwrap_or("").starts_with("error: "),
            "claim {} failed: {}",
            e["claim"],
            e["reason"]
        );
        for p in e["parts"].as_array().expect("parts") {
            for (name, value) in p["evidence"]["facts"].as_object().into_iter().flatten() {
                // Claim 13's dual-stack aside binds 0.0.0.0 on purpose, beside [::].
                if name == "dual_stack" {
                    continue;
                }
                let mut found = Vec::new();
                addresses(value, &mut found);
                for ip in &found {
                    assert!(
                        ip.is_ipv6(),
                        "claim {}{} fact {name}: {ip} is not IPv6",
                        e["claim"],
                        p["id"].as_str().unwrap_or("?")
                    );
                }
                seen += found.len();
            }
        }
    }
    assert!(seen > 20, "only {seen} addresses in the facts");
    // The two-host parts use the documentation prefix (RFC 3849).
    if namespaces(doc) {
        let mut found = Vec::new();
        addresses(&claim(doc, 3)["parts"], &mut found);
        assert!(
            found
                .iter()
                .any(|ip| ip.to_string().starts_with("2001:db8:")),
            "{found:?}"
        );
    } else {
        eprintln!("skipped the two-host check: the lab ran without namespaces");
    }
}

#[test]
fn lab_v6_broadcast_claims_are_an_analogue_that_does_not_vote() {
    let doc = v6_doc();
    for n in [7, 8] {
        let e = claim(doc, n);
        assert_eq!(e["verdict"], "analogue", "{e:#}");
        let reason = e["reason"].as_str().expect("reason");
        assert!(
            reason.contains("IPv6 has no broadcast") && reason.contains("ff02::1"),
            "{reason}"
        );
        let parts = e["parts"].as_array().expect("parts");
        assert!(!parts.is_empty(), "{e:#}");
        for p in parts {
            assert_eq!(p["role"], "aside", "{p:#}");
            assert!(p.get("quote").is_none(), "{p:#}");
            assert!(
                p["statement"]
                    .as_str()
                    .is_some_and(|s| s.contains("analogue")),
                "{p:#}"
            );
        }
        if !namespaces(doc) {
            eprintln!("skipped the ff02::1 wire check of claim {n}: no namespaces");
            continue;
        }
        // What the analogue did went to ff02::1 on the wire.
        let wire = parts[0]["evidence"]["wire"].as_array().expect("wire");
        assert!(
            wire.iter()
                .any(|w| w.as_str().is_some_and(|w| w.contains("> [ff02::1]:"))),
            "{wire:?}"
        );
    }
}

#[test]
fn lab_v6_dual_stack_binds_are_what_the_kernel_did() {
    let doc = v6_doc();
    let e = claim(doc, 13);
    let parts = e["parts"].as_array().expect("parts");
    let f = parts
        .iter()
        .find(|p| p["id"] == "f")
        .unwrap_or_else(|| panic!("no dual-stack part: {e:#}"));
    assert_eq!(f["role"], "aside");
    let cases = f["evidence"]["facts"]["dual_stack"]
        .as_array()
        .expect("dual_stack");
    assert_eq!(cases.len(), 4, "{cases:?}");
    let trace = f["evidence"]["trace"].as_array().expect("trace");
    for c in cases {
        let second = c["second"].as_str().expect("second");
        // The fact is what the traced bind() returned: its errno or ok.
        let bind = trace
            .iter()
            .find(|t| t["call"] == "bind" && t["args"] == second)
            .unwrap_or_else(|| panic!("no bind of {second} in the trace"));
        let traced = bind["result"]["err"]["name"].as_str().unwrap_or("ok");
        assert_eq!(c["second_bind"], traced, "{c} vs {bind}");
        let first: SocketAddr = c["first"].as_str().expect("first").parse().expect("addr");
        let second: SocketAddr = second.parse().expect("addr");
        assert_eq!(first.port(), second.port());
        assert_ne!(first.is_ipv6(), second.is_ipv6());
        let want = if c["v6only"] == true {
            "ok"
        } else {
            "EADDRINUSE"
        };
        assert_eq!(c["second_bind"], want, "{c}");
    }
}

#[test]
fn family_both_reports_each_claim_in_both_families() {
    let doc: Value = serde_json::from_slice(&run(&[
        "lab", "run", "2", "9", "--family", "both", "--json",
    ]))
    .expect("JSON");
    let got: Vec<(u64, String)> = experiments(&doc)
        .iter()
        .map(|e| {
            (
                e["claim"].as_u64().expect("claim"),
                e["family"].as_str().expect("family").to_string(),
            )
        })
        .collect();
    let want: Vec<(u64, String)> = ["ipv4", "ipv6"]
        .iter()
        .flat_map(|f| [(2, f.to_string()), (9, f.to_string())])
        .collect();
    assert_eq!(got, want);
    assert_eq!(doc["by_family"]["ipv6"]["experiments"], 2);
    // Each family's facts carry its own addresses.
    for e in experiments(&doc) {
        let mut found = Vec::new();
        addresses(&e["parts"], &mut found);
        let v6 = e["family"] == "ipv6";
        assert!(!found.is_empty());
        assert!(found.iter().all(|ip| ip.is_ipv6() == v6), "{found:?}");
    }
    let text = String::from_utf8(run(&["lab", "run", "12", "--family", "both"])).expect("UTF-8");
    assert!(
        text.contains("verdict (ipv4)") && text.contains("verdict (ipv6)"),
        "{text}"
    );
    assert!(
        text.contains("ipv4: 1 claim") && text.contains("ipv6: 1 claim"),
        "{text}"
    );
}

#[test]
fn show_and_run_take_dash_6() {
    let text = String::from_utf8(run(&["lab", "show", "12", "-6"])).expect("UTF-8");
    assert!(text.starts_with("Claim 12 (ipv6):"), "{text}");
    assert!(text.contains("[::1]:"), "{text}");
    let out = Command::new(BIN)
        .args(["lab", "run", "1", "-4", "-6"])
        .stdin(Stdio::null())
        .output()
        .expect("run socklab");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
