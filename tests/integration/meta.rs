//! One `meta` vocabulary: the lab's and the bench's JSON documents open with the same common
//! keys, of the same JSON types (src/meta.rs), each adding its own beside them.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::util::{BIN, Input, Output, socklab, spawn};

/// The common keys of every socklab document's meta block.
const COMMON: [&str; 6] = [
    "socklab_version",
    "kernel",
    "cpu_count",
    "hostname",
    "started_at",
    "parameters",
];

/// The JSON document `socklab ARGS` prints (bounded; it must exit 0).
fn document(args: &[&str]) -> Value {
    let out = spawn(socklab(args), Input::Null, Output::Keep).expect_code(0);
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

/// The JSON type of a value, by name.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_u64() => "unsigned",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[test]
fn lab_and_bench_meta_share_the_common_keys_and_types() {
    // Claim 4 is one of the shortest experiments; the bench test is short and paced.
    let lab = document(&["lab", "run", "4", "--json"]);
    let bench = document(&[
        "bench", "local", "--test", "rr", "-u", "-t", "0.2", "--json",
    ]);
    let (lab, bench) = (&lab["meta"], &bench["meta"]);
    for key in COMMON {
        assert_eq!(
            (key, kind(&lab[key])),
            (key, kind(&bench[key])),
            "lab {lab:#}\nbench {bench:#}"
        );
    }
    assert_eq!(kind(&lab["cpu_count"]), "unsigned");
    assert_eq!(kind(&lab["parameters"]), "object");
    assert_eq!(lab["socklab_version"], bench["socklab_version"]);
    assert_eq!(lab["kernel"], bench["kernel"]);
    for m in [lab, bench] {
        let at = m["started_at"].as_str().unwrap_or("");
        // RFC 3339, UTC, milliseconds: 2026-11-25T01:30:00.250Z.
        assert!(
            at.len() == 24 && at.ends_with('Z') && at.as_bytes()[19] == b'.',
            "{at}"
        );
    }
    // Each adds its own fields beside the common ones.
    assert!(
        lab["isolation"].is_string() && lab["sysctls"].is_object(),
        "{lab:#}"
    );
    assert_eq!(bench["target"], "local");
}

#[test]
fn python_reproduction_meta_shares_the_common_keys_and_types() {
    if !crate::util::have("python3") {
        eprintln!("skipped: python3 is not installed");
        return;
    }
    let dir = std::env::temp_dir().join(format!("socklab-meta-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = Command::new(BIN)
        .args(["lab", "export", "--python"])
        .arg(&dir)
        .output()
        .expect("export");
    assert!(out.status.success(), "export: {out:?}");
    let out = Command::new("timeout")
        .arg("60")
        .arg("python3")
        .arg(dir.join("c04_udp_connect_sends_nothing.py"))
        .stdin(Stdio::null())
        .output()
        .expect("python3");
    std::fs::remove_dir_all(&dir).expect("remove the export");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let py = &doc["meta"];
    let rust = document(&["lab", "run", "4", "--json"])["meta"].clone();
    for key in COMMON {
        assert_eq!((key, kind(&py[key])), (key, kind(&rust[key])), "{py:#}");
    }
    assert_eq!(py["socklab_version"], env!("CARGO_PKG_VERSION"), "{py:#}");
    let at = py["started_at"].as_str().unwrap_or("");
    assert!(at.len() == 24 && at.ends_with('Z'), "{at}");
}
