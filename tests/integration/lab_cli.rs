//! `socklab lab` from the outside: list, run a subset, show, the JSON document, usage errors,
//! repeatability, cleanup of namespaces, and a run as an unprivileged user.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::util::NobodyCopy;

const BIN: &str = env!("CARGO_BIN_EXE_socklab");

fn socklab(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run socklab")
}

/// Runs `socklab ARGS` and expects exit 0 and a JSON document on stdout.
fn json(args: &[&str]) -> Value {
    let out = socklab(args);
    assert!(out.status.success(), "socklab {args:?}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"))
}

fn registered() -> Vec<u64> {
    socklab::lab::registry()
        .iter()
        .map(|e| u64::from(e.claim()))
        .collect()
}

fn claims(doc: &Value) -> Vec<u64> {
    doc["experiments"]
        .as_array()
        .expect("experiments")
        .iter()
        .map(|e| e["claim"].as_u64().expect("claim"))
        .collect()
}

/// (claim, part, verdict) for every part.
fn verdicts(doc: &Value) -> Vec<(u64, String, String)> {
    let mut v = Vec::new();
    for e in doc["experiments"].as_array().expect("experiments") {
        for p in e["parts"].as_array().expect("parts") {
            v.push((
                e["claim"].as_u64().unwrap_or(0),
                p["id"].as_str().unwrap_or("").to_string(),
                p["verdict"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    v
}

#[test]
fn list_names_every_claim() {
    let doc = json(&["lab", "list", "--json"]);
    let listed: Vec<u64> = doc["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["claim"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, registered());
    let out = socklab(&["lab", "list"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for e in socklab::lab::registry() {
        assert!(text.contains(e.title()), "{text}");
    }
}

#[test]
fn json_document_has_every_claim_with_parts_and_meta() {
    let doc = json(&["lab", "--json"]);
    assert_eq!(claims(&doc), registered());
    let meta = &doc["meta"];
    for key in ["socklab_version", "kernel", "started_at"] {
        assert!(meta[key].as_str().is_some_and(|s| !s.is_empty()), "{meta}");
    }
    assert!(meta["cpu_count"].as_u64().is_some_and(|n| n >= 1), "{meta}");
    // Root, or root of a user namespace the run made for itself; `none` only where the kernel
    // refuses user namespaces.
    let isolation = meta["isolation"].as_str().unwrap_or("");
    if socklab::netns::have_net_admin() {
        assert_eq!(isolation, "root", "{meta}");
    } else {
        assert!(["user namespace", "none"].contains(&isolation), "{meta}");
    }
    assert_eq!(meta["root"].as_bool(), Some(isolation != "none"), "{meta}");
    for key in [
        "net.ipv4.tcp_wmem",
        "net.core.rmem_max",
        "net.ipv4.tcp_tw_reuse",
        "net.ipv4.ip_local_port_range",
    ] {
        assert!(
            meta["sysctls"][key].as_str().is_some_and(|v| !v.is_empty()),
            "{key}: {meta}"
        );
    }
    assert!(meta["started_at"].as_str().unwrap().ends_with('Z'));
    for e in doc["experiments"].as_array().unwrap() {
        assert!(e["verdict"].is_string(), "{e}");
        let parts = e["parts"].as_array().unwrap();
        assert!(!parts.is_empty(), "{e}");
        for p in parts {
            assert!(
                p["statement"].as_str().is_some_and(|s| !s.is_empty()),
                "{p}"
            );
            assert!(p["verdict"].is_string(), "{p}");
            assert!(p["evidence"].is_object(), "{p}");
            // A vote carries the article's sentence, verbatim, and its translation.
            match p["role"].as_str() {
                Some("vote") => {
                    let zh = p["quote"]["zh"].as_str().unwrap_or("");
                    assert!(
                        !zh.is_empty() && socklab::lab::article::TEXT.contains(zh),
                        "{p}"
                    );
                    assert!(
                        p["quote"]["en"].as_str().is_some_and(|s| !s.is_empty()),
                        "{p}"
                    );
                }
                Some("aside") => assert!(p.get("quote").is_none(), "{p}"),
                other => panic!("role {other:?}: {p}"),
            }
            if p["verdict"] == "not_run" {
                assert!(p["reason"].as_str().is_some_and(|s| !s.is_empty()), "{p}");
            }
        }
    }
}

#[test]
fn run_subset_writes_markdown_and_pcaps() {
    let dir = std::env::temp_dir().join(format!("socklab-lab-cli-{}", std::process::id()));
    let md = dir.join("report.md");
    let pcaps = dir.join("pcap");
    std::fs::create_dir_all(&dir).unwrap();
    let doc = json(&[
        "lab",
        "run",
        "4",
        "2",
        "--json",
        "--markdown",
        md.to_str().unwrap(),
        "--pcap",
        pcaps.to_str().unwrap(),
    ]);
    assert_eq!(claims(&doc), [4, 2], "claims run in the order given");
    assert_eq!(
        doc["meta"]["parameters"]["claims"],
        serde_json::json!([4, 2])
    );
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(text.starts_with("# socklab lab report"), "{text}");
    assert!(
        text.contains("## Claim 4:") && text.contains("## Claim 2:"),
        "{text}"
    );
    for c in [2, 4] {
        let p = pcaps.join(format!("claim-0{c}.pcapng"));
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        // A pcapng Section Header Block (type 0x0A0D0D0A, a palindrome in both byte orders).
        assert_eq!(bytes[..4], [0x0a, 0x0d, 0x0d, 0x0a], "{}", p.display());
        if doc["meta"]["root"] == true {
            assert!(bytes.len() > 200, "{} has no packets", p.display());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn show_prints_parts_with_evidence() {
    let out = socklab(&["lab", "show", "4"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("Claim 4: "), "{text}");
    for needle in [
        "4a [",
        "4d (aside) [",
        "  the article: 「第3个模式里，connect并不是真的建立一个链接",
        "  trace:",
        "connect(",
        "  facts:",
    ] {
        assert!(text.contains(needle), "no {needle:?} in {text}");
    }
    if socklab::netns::have_net_admin() {
        assert!(
            text.contains("  wire:") && text.contains("type 3 code 3"),
            "{text}"
        );
    }
}

#[test]
fn pcap_dir_creates_only_its_last_component() {
    let base = std::env::temp_dir().join(format!("socklab-lab-pcap-{}", std::process::id()));
    let deep = base.join("missing").join("pcap");
    let out = socklab(&["lab", "run", "4", "--pcap", deep.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().count(),
        1,
        "{out:?}"
    );
    assert!(!base.exists(), "a chain of parents was created");
    std::fs::create_dir_all(&base).unwrap();
    let last = base.join("pcap");
    let out = socklab(&["lab", "run", "4", "--pcap", last.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(last.join("claim-04.pcapng").is_file());
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn unknown_claim_is_a_one_line_usage_error() {
    for args in [
        &["lab", "run", "99"][..],
        &["lab", "show", "0"],
        &["lab", "run", "x"],
    ] {
        let out = socklab(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("socklab: "), "{err}");
    }
}

#[test]
fn two_runs_give_the_same_verdicts_and_leave_no_namespace() {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let child = Command::new(BIN)
            .args(["lab", "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn socklab");
        let pid = child.id();
        let out = child.wait_with_output().expect("wait for socklab");
        assert!(out.status.success(), "{out:?}");
        let mark = format!("-{pid}-");
        let left: Vec<String> = socklab::netns::existing()
            .into_iter()
            .filter(|n| n.contains(&mark))
            .collect();
        assert!(left.is_empty(), "namespaces left behind: {left:?}");
        let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        runs.push(verdicts(&doc));
    }
    assert!(!runs[0].is_empty());
    assert_eq!(runs[0], runs[1]);
}

/// Whether this test can switch to uid 65534 (root, with setpriv installed).
impl NobodyCopy {
    /// `socklab lab --json` as uid 65534 with `env` set.
    fn lab_json(&self, env: &[(&str, &str)]) -> Output {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(self.exe())
            .args(["lab", "--json"])
            .envs(env.iter().copied())
            .current_dir("/")
            .stdin(Stdio::null())
            .output()
            .expect("run setpriv")
    }
}

/// Whether this test can switch to uid 65534 (root, with setpriv installed).
fn can_be_nobody() -> bool {
    if !socklab::netns::have_net_admin() {
        eprintln!("skipped: needs root to switch to an unprivileged user with setpriv");
        return false;
    }
    if !Path::new("/usr/bin/setpriv").exists() && !Path::new("/bin/setpriv").exists() {
        eprintln!("skipped: setpriv (util-linux) is not installed");
        return false;
    }
    true
}

#[test]
fn unprivileged_run_in_a_user_namespace_gives_roots_verdicts() {
    if !can_be_nobody() {
        return;
    }
    let userns = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args([
            "unshare",
            "--user",
            "--map-root-user",
            "--net",
            "--mount",
            "true",
        ])
        .current_dir("/")
        .status()
        .is_ok_and(|s| s.success());
    if !userns {
        eprintln!("skipped: this kernel refuses unprivileged user namespaces");
        return;
    }
    let copy = NobodyCopy::new("userns");
    let out = copy.lab_json(&[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        doc["meta"]["isolation"], "user namespace",
        "{}",
        doc["meta"]
    );
    assert_eq!(doc["summary"]["not_run"], 0, "{}", doc["summary"]);
    let root = json(&["lab", "--json"]);
    assert_eq!(
        verdicts(&doc),
        verdicts(&root),
        "uid 65534 and root disagree"
    );
}

#[test]
fn unprivileged_run_without_user_namespace_exits_0_with_not_run_reasons() {
    if !can_be_nobody() {
        return;
    }
    let copy = NobodyCopy::new("plain");
    let out = copy.lab_json(&[("SOCKLAB_LAB_NO_USERNS", "1")]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["meta"]["root"], false);
    assert_eq!(doc["meta"]["isolation"], "none");
    assert_eq!(claims(&doc), registered());
    let not_run: Vec<&Value> = doc["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["parts"].as_array().unwrap())
        .filter(|p| p["verdict"] == "not_run")
        .collect();
    assert!(
        !not_run.is_empty(),
        "namespace-needing parts should not run: {doc}"
    );
    assert!(
        not_run.iter().any(|p| p["reason"]
            .as_str()
            .is_some_and(|r| r.contains("CAP_NET_ADMIN"))),
        "{not_run:?}"
    );
    // Nothing errored: every experiment has parts.
    assert_eq!(doc["summary"]["errors"], 0, "{doc}");
}
