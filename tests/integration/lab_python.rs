//! The Python reproductions (`socklab lab export --python DIR`): every exported script runs on
//! this kernel and its facts equal the lab's for the same experiment, part by part (ports the
//! kernel chose aside: `socklab::lab::compare::normalise`); `lab compare` on whole documents;
//! the errno → exception names checked against python3 itself.
//!
//! Each test skips with a printed reason when python3 is missing. As root every part a script
//! writes must run; without root its two-host parts say `not_run` (and are not compared).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use socklab::lab::{compare, python};

use crate::util::{NobodyCopy, have};

const BIN: &str = env!("CARGO_BIN_EXE_socklab");

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run a command")
}

fn no_python() -> bool {
    if have("python3") {
        return false;
    }
    eprintln!("skipped: python3 is not installed");
    true
}

/// A fresh directory for one test, removed by the test at its end.
fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("socklab-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn export(dir: &Path) {
    let out = run(Command::new(BIN)
        .args(["lab", "export", "--python"])
        .arg(dir));
    assert!(out.status.success(), "export: {out:?}");
}

fn json_of(out: &Output, what: &str) -> Value {
    assert!(out.status.success(), "{what}: {out:?}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {out:?}"))
}

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn every_exported_script_agrees_with_the_lab_fact_for_fact() {
    if no_python() {
        return;
    }
    let dir = tmpdir("py-agree");
    export(&dir);
    let scripts: Vec<_> = python::SCRIPTS
        .iter()
        .filter(|s| s.claim.is_some())
        .collect();
    // Every claim of the lab has its script.
    let claims: Vec<u8> = scripts.iter().filter_map(|s| s.claim).collect();
    assert_eq!(claims, (1..=14).collect::<Vec<u8>>());
    for s in scripts {
        let claim = s.claim.unwrap_or_default();
        let py = json_of(&run(Command::new("python3").arg(dir.join(s.name))), s.name);
        let lab = json_of(
            &run(Command::new(BIN).args(["lab", "run", &claim.to_string(), "--json"])),
            "lab run",
        );
        let (mut py, mut lab) = (py, lab);
        for d in [&mut py, &mut lab] {
            comparable_kill9(d);
        }
        let (pe, le) = (&py["experiments"][0], &lab["experiments"][0]);
        assert_eq!(pe["claim"], claim, "{}: {py}", s.name);
        // The script writes every part of the experiment, with the lab's role for each.
        let ids = |e: &Value| -> Vec<(String, String)> {
            e["parts"]
                .as_array()
                .expect("parts")
                .iter()
                .map(|p| (p["id"].to_string(), p["role"].to_string()))
                .collect()
        };
        let mut want = ids(le);
        let mut got = ids(pe);
        want.sort();
        got.sort();
        assert_eq!(
            got, want,
            "{}: parts and roles differ from the lab's",
            s.name
        );
        for p in pe["parts"].as_array().expect("parts") {
            if p["verdict"] == "not_run" {
                assert!(
                    !root(),
                    "{}: part {} not run as root: {}",
                    s.name,
                    p["id"],
                    p["reason"]
                );
                eprintln!("{}: part {} not run: {}", s.name, p["id"], p["reason"]);
            }
        }
        let c = compare::compare(&lab, &py).expect("both are lab documents");
        assert!(
            c.differences.is_empty(),
            "{} differs from `socklab lab run {claim}`:\n{}",
            s.name,
            c.differences.join("\n")
        );
        // Every part the script ran is compared: the lab runs them all (as root, or as root of
        // a user namespace).
        let ran = pe["parts"]
            .as_array()
            .expect("parts")
            .iter()
            .filter(|p| p["verdict"] != "not_run")
            .count();
        assert_eq!(c.parts_compared, ran, "{}: {c:?}", s.name);
        if root() {
            assert_eq!(pe["verdict"], le["verdict"], "{}", s.name);
        }
    }
    std::fs::remove_dir_all(&dir).expect("remove the export");
}

/// Claim 14's facts with what no two runs share, lab or Python, made comparable — and nothing
/// else. Ports first (`compare::normalise`), then in each killed victim's case:
/// - the TCP initial sequence number in its `wire` lines (random per connection, RFC 6528):
///   `seq N` becomes `seq S`;
/// - the order of its `ss` lines (ss lists sockets in no fixed order; the lab's own verdict
///   sorts them): sorted;
/// - FIN-WAIT-1 or FIN-WAIT-2 of the killed side (whether the peer's ACK of the FIN was
///   processed when ss looked; the lab's verdict counts them as one state): `FIN-WAIT`, with
///   its queue sizes left out;
/// - in the cases with a connection, the victim's listener in `before`: the victim closes it
///   right after saying "connection from", and the `ss` (or the SIGSTOP) that follows can come
///   before or after that close (in the lab as in Python).
fn comparable_kill9(doc: &mut Value) {
    fn fix_case(case: &mut Value) {
        let connected = case["held"] == "unread" || case["held"] == "established";
        for key in ["before", "after_kill", "after_peer_close"] {
            let Some(lines) = case[key].as_array() else {
                continue;
            };
            let mut lines: Vec<String> = lines
                .iter()
                .filter_map(Value::as_str)
                .filter(|l| !(connected && key == "before" && l.starts_with("LISTEN ")))
                .map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    match f.first() {
                        Some(&("FIN-WAIT-1" | "FIN-WAIT-2")) if f.len() >= 5 => {
                            format!("FIN-WAIT {}", f[3..].join(" "))
                        }
                        _ => l.to_string(),
                    }
                })
                .collect();
            lines.sort();
            case[key] = Value::from(lines);
        }
        if let Some(wire) = case["wire"].as_array_mut() {
            for w in wire.iter_mut() {
                let Some(l) = w.as_str() else { continue };
                let f: Vec<&str> = l.split(' ').collect();
                let fixed: Vec<&str> = f
                    .iter()
                    .enumerate()
                    .map(|(i, x)| if i > 0 && f[i - 1] == "seq" { "S" } else { x })
                    .collect();
                *w = Value::from(fixed.join(" "));
            }
        }
    }
    fn walk(v: &mut Value) {
        match v {
            Value::Object(o) if o.contains_key("held") && o.contains_key("wire") => fix_case(v),
            Value::Object(o) => o.values_mut().for_each(walk),
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let Some(experiments) = doc["experiments"].as_array_mut() else {
        return;
    };
    for e in experiments.iter_mut().filter(|e| e["claim"] == 14) {
        for p in e["parts"].as_array_mut().into_iter().flatten() {
            let Some(facts) = p["evidence"]["facts"].as_object() else {
                continue;
            };
            let mut facts = Value::from(
                compare::normalise(facts)
                    .into_iter()
                    .collect::<serde_json::Map<_, _>>(),
            );
            walk(&mut facts);
            p["evidence"]["facts"] = facts;
        }
    }
}

#[test]
fn compare_exits_0_on_agreement_1_on_difference_2_on_bad_input() {
    if no_python() {
        return;
    }
    let dir = tmpdir("py-compare");
    export(&dir);
    let all = run(Command::new("python3").arg(dir.join("run_all.py")));
    let mut all = json_of(&all, "run_all.py");
    comparable_kill9(&mut all);
    let claims: Vec<String> = all["experiments"]
        .as_array()
        .expect("experiments")
        .iter()
        .map(|e| e["claim"].to_string())
        .collect();
    assert_eq!(
        claims.len(),
        python::SCRIPTS.iter().filter(|s| s.claim.is_some()).count()
    );
    let mut args = vec!["lab".to_string(), "run".into()];
    args.extend(claims);
    args.push("--json".into());
    let lab = run(Command::new(BIN).args(&args));
    let mut lab = json_of(&lab, "lab run");
    comparable_kill9(&mut lab);
    let (a, b) = (dir.join("lab.json"), dir.join("py.json"));
    std::fs::write(&a, serde_json::to_vec(&lab).expect("json")).expect("write");
    std::fs::write(&b, serde_json::to_vec(&all).expect("json")).expect("write");
    let cmp = |x: &Path, y: &Path| run(Command::new(BIN).args(["lab", "compare"]).arg(x).arg(y));
    let same = cmp(&a, &b);
    assert_eq!(same.status.code(), Some(0), "{same:?}");

    // One changed fact is one difference, named with its part.
    let mut changed = all.clone();
    let id = format!(
        "{}{}",
        all["experiments"][0]["claim"],
        all["experiments"][0]["parts"][0]["id"]
            .as_str()
            .expect("id")
    );
    let part = &mut changed["experiments"][0]["parts"][0];
    part["evidence"]["facts"]["extra"] = Value::from("only here");
    let c = dir.join("changed.json");
    std::fs::write(&c, serde_json::to_vec(&changed).expect("json")).expect("write");
    let differ = cmp(&a, &c);
    assert_eq!(differ.status.code(), Some(1), "{differ:?}");
    let text = String::from_utf8_lossy(&differ.stdout);
    assert!(text.contains(&format!("part {id}: fact extra")), "{text}");

    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\"not\": \"a lab document\"}").expect("write");
    let refused = cmp(&a, &bad);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr).lines().count(),
        1,
        "{refused:?}"
    );
    std::fs::remove_dir_all(&dir).expect("remove the export");
}

/// The exception names `lab show` prints are the ones python3 raises: an OSError built from
/// each errno becomes the PEP 3151 subclass, printed as `Class: [Errno N] text`.
#[test]
fn exception_names_are_what_python_raises() {
    if no_python() {
        return;
    }
    let names = [
        "ECONNREFUSED",
        "EPIPE",
        "EADDRINUSE",
        "EINVAL",
        "ECONNRESET",
        "EAGAIN",
        "ETIMEDOUT",
        "EACCES",
        "EDESTADDRREQ",
        "ENETUNREACH",
        "ENOTCONN",
    ];
    for n in names {
        let code = format!(
            "import errno, os\ne = OSError(errno.{n}, os.strerror(errno.{n}))\nprint(f'{{type(e).__name__}}: {{e}}')"
        );
        let out = run(Command::new("python3").args(["-c", &code]));
        assert!(out.status.success(), "{out:?}");
        let py = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(python::exception(n).as_deref(), Some(py.as_str()), "{n}");
    }
}

#[test]
fn lab_show_names_each_errnos_python_exception() {
    let out = run(Command::new(BIN).args(["lab", "show", "6"]));
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("EINVAL → OSError: [Errno 22] Invalid argument"),
        "{text}"
    );
}

/// What other programs put in the facts when the lab and the scripts run without namespaces, on
/// the machine's shared stack, left out of that comparison (and only of it; in namespaces of
/// their own, as root, these facts are compared like any other):
/// - 13a's `time_wait_timers` lists every TIME-WAIT socket of the machine (`ss -tano state
///   time-wait`) with its remaining time, so no two runs, lab or Python, agree on it;
/// - in claim 14's `ss` lines, a TIME-WAIT socket whose *peer* is the victim's address: another
///   program's old connection to the port the kernel has since given the victim (the
///   experiment's own TIME-WAIT is on the victim's side, its address local; seen in CI);
/// - claim 13's `rebind` and `passive_rebind` of each trial, and so the verdicts of 13c, 13d,
///   13e and of the claim, which rest on them: another program's connect can take a freed
///   ephemeral port before the trial binds it again (seen in CI, for the lab's own tests too,
///   which assert these facts in the lab's namespace only).
fn drop_shared_stack_noise(doc: &mut Value) {
    fn other_time_wait(v: &mut Value) {
        if let Some(addr) = v.get("addr").and_then(Value::as_str).map(str::to_string) {
            for key in ["before", "after_kill", "after_peer_close", "ss"] {
                if let Some(lines) = v[key].as_array_mut() {
                    lines.retain(|l| {
                        let f: Vec<&str> = l.as_str().unwrap_or("").split_whitespace().collect();
                        !(f.first() == Some(&"TIME-WAIT") && f.get(4) == Some(&addr.as_str()))
                    });
                }
            }
        }
        match v {
            Value::Object(o) => o.values_mut().for_each(other_time_wait),
            Value::Array(a) => a.iter_mut().for_each(other_time_wait),
            _ => {}
        }
    }
    let Some(experiments) = doc["experiments"].as_array_mut() else {
        return;
    };
    for e in experiments.iter_mut().filter(|e| e["claim"] == 14) {
        other_time_wait(&mut e["parts"]);
    }
    for e in experiments.iter_mut().filter(|e| e["claim"] == 13) {
        e["verdict"] = Value::from("not compared on the shared stack");
        for p in e["parts"].as_array_mut().into_iter().flatten() {
            if ["c", "d", "e"].iter().any(|id| p["id"] == *id) {
                p["verdict"] = Value::from("not compared on the shared stack");
            }
            for t in p["evidence"]["facts"]["trials"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                if let Some(t) = t.as_object_mut() {
                    t.remove("rebind");
                    t.remove("passive_rebind");
                }
            }
            if p["id"] == "a" {
                if let Some(f) = p["evidence"]["facts"].as_object_mut() {
                    f.remove("time_wait_timers");
                }
            }
        }
    }
}

/// Without root the scripts still run their loopback parts, and say why for the parts that need
/// namespaces (run here as uid 65534 with the system's python3, when both are available).
#[test]
fn unprivileged_scripts_skip_namespace_parts_with_a_reason() {
    let python = Path::new("/usr/bin/python3");
    if !root() || !have("setpriv") || !python.is_file() {
        eprintln!("skipped: needs root (to drop to uid 65534), setpriv(1) and /usr/bin/python3");
        return;
    }
    let dir = tmpdir("py-nobody");
    export(&dir);
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    for s in python::SCRIPTS {
        std::fs::set_permissions(
            dir.join(s.name),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
    }
    let out = run(Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(python)
        .arg(dir.join("run_all.py"))
        .current_dir(&dir));
    let mut doc = json_of(&out, "run_all.py as uid 65534");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut skipped = Vec::new();
    for e in doc["experiments"].as_array().expect("experiments") {
        assert!(e.get("reason").is_none(), "an experiment failed: {e}");
        for p in e["parts"].as_array().expect("parts") {
            if p["verdict"] == "not_run" {
                let label = format!("{}{}", e["claim"], p["id"].as_str().unwrap_or("?"));
                assert!(
                    p["reason"].as_str().is_some_and(|r| r.contains("root")),
                    "{label}: {p}"
                );
                assert!(
                    stderr.contains(&format!("part {label} skipped")),
                    "{stderr}"
                );
                skipped.push(label);
            }
        }
    }
    // Exactly the parts that need namespaces: 1b, 3d and claims 7 and 8 (two hosts), 4a and
    // 11c (a capture).
    assert_eq!(
        skipped,
        [
            "1b", "3d", "4a", "7a", "7b", "7c", "7d", "8a", "8b", "8c", "8d", "8e", "8f", "8g",
            "11c"
        ],
        "{doc}"
    );
    // The parts it did run agree with the lab run the same way: as uid 65534, without
    // namespaces (SOCKLAB_LAB_NO_USERNS).
    let mut args = vec!["lab".to_string(), "run".into(), "--json".into()];
    args.extend(
        python::SCRIPTS
            .iter()
            .filter_map(|s| s.claim)
            .map(|c| c.to_string()),
    );
    // A copy uid 65534 can run: the build tree may sit where it cannot enter.
    let copy = NobodyCopy::new("py");
    let lab = run(Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(copy.exe())
        .args(&args)
        .env("SOCKLAB_LAB_NO_USERNS", "1")
        .current_dir(&dir));
    let mut lab = json_of(&lab, "lab run as uid 65534");
    for d in [&mut lab, &mut doc] {
        drop_shared_stack_noise(d);
        comparable_kill9(d);
    }
    let c = compare::compare(&lab, &doc).expect("both are lab documents");
    assert!(c.differences.is_empty(), "{}", c.differences.join("\n"));
    std::fs::remove_dir_all(&dir).expect("remove the export");
}
