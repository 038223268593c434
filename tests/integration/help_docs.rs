//! Help, completions, man pages and the documents agree with the program: completion offers
//! the values each option takes (never file names after --framing), `man --dir` writes one page
//! per command, each command's help speaks of its own protocol, and every exit-code statement
//! in help, man, README and docs says the same thing.

use std::path::Path;

use crate::util::{Input, Output, socklab, spawn};

fn run_ok(args: &[&str]) -> String {
    let mut p = spawn(socklab(args), Input::Null, Output::Keep);
    p.expect_code(0).out()
}

/// The bash completion case for the command `path` (e.g. `socklab__subcmd__udp__subcmd__send`).
fn bash_case<'a>(script: &'a str, path: &str) -> &'a str {
    let start = script
        .find(&format!("        {path})\n"))
        .unwrap_or_else(|| panic!("no completion case {path}"));
    let rest = &script[start..];
    let end = rest[1..]
        .find("\n        socklab")
        .map_or(rest.len(), |e| e + 1);
    &rest[..end]
}

#[test]
fn bash_completion_offers_values_not_files() {
    let script = run_ok(&["completions", "bash"]);
    let send = bash_case(&script, "socklab__subcmd__udp__subcmd__send");
    let framing = send
        .split("--framing)")
        .nth(1)
        .and_then(|s| s.split(";;").next())
        .expect("a --framing case");
    assert!(
        framing.contains(r#"compgen -W "line whole raw:""#),
        "framing values: {framing}"
    );
    assert!(
        !framing.contains("compgen -f"),
        "no file names after --framing"
    );
    let mloop = send.split("--multicast-loop)").nth(1).unwrap();
    assert!(mloop.split(";;").next().unwrap().contains(r#""on off""#));
    let device = send.split("--device)").nth(1).unwrap();
    assert!(
        !device.split(";;").next().unwrap().contains("compgen -f"),
        "no files for --device"
    );
    // The interfaces that exist when Tab is pressed: the completion function itself, run by
    // bash on `socklab udp send --device l<Tab>`, offers lo (every namespace has it).
    let file = std::env::temp_dir().join(format!("socklab-completion-{}.bash", std::process::id()));
    std::fs::write(&file, &script).expect("write the script");
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            r#"source {}; COMP_WORDS=(socklab udp send --device l); COMP_CWORD=4;
               _socklab socklab l --device 2>/dev/null; printf '%s\n' "${{COMPREPLY[@]}}""#,
            file.display()
        ))
        .output()
        .expect("run bash");
    let _ = std::fs::remove_file(&file);
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.lines().any(|l| l == "lo"),
        "bash offers lo after --device l: {out:?}"
    );
    for cmd in ["run", "show"] {
        let case = bash_case(&script, &format!("socklab__subcmd__lab__subcmd__{cmd}"));
        let claims: String = (1..=14).map(|n| format!(" {n}")).collect();
        assert!(
            case.contains(&claims),
            "claim numbers after lab {cmd}: {case}"
        );
    }
}

#[test]
fn man_dir_writes_one_page_per_command() {
    let dir = std::env::temp_dir().join(format!("socklab-man-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    run_ok(&["man", "--dir", dir.to_str().unwrap()]);
    let pages = [
        "socklab",
        "socklab-tcp",
        "socklab-tcp-listen",
        "socklab-tcp-connect",
        "socklab-udp",
        "socklab-udp-recv",
        "socklab-udp-send",
        "socklab-udp-peer",
        "socklab-udp-connect",
        "socklab-udp-serve",
        "socklab-bench",
        "socklab-bench-server",
        "socklab-bench-client",
        "socklab-bench-local",
        "socklab-bench-mesh",
        "socklab-demo",
        "socklab-lab",
        "socklab-lab-list",
        "socklab-lab-run",
        "socklab-lab-show",
        "socklab-lab-export",
        "socklab-lab-compare",
        "socklab-completions",
        "socklab-man",
    ];
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut want: Vec<String> = pages.iter().map(|p| format!("{p}.1")).collect();
    want.sort();
    assert_eq!(found, want);
    for p in pages {
        let text = std::fs::read_to_string(dir.join(format!("{p}.1"))).unwrap();
        assert!(text.starts_with(".ie"), "{p}: roff");
        assert!(
            text.contains(&format!(".TH {p} 1")),
            "{p}: titled by its own name"
        );
    }
    let listen = std::fs::read_to_string(dir.join("socklab-tcp-listen.1")).unwrap();
    assert!(listen.contains("no\\-reuseaddr") && listen.contains("keep\\-open"));
    // Plain `man` still prints the top page.
    assert!(run_ok(&["man"]).contains(".TH socklab 1"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Each endpoint's help lists only its own protocol's options and words.
#[test]
fn help_speaks_of_its_own_protocol() {
    for cmd in [["tcp", "listen"], ["tcp", "connect"]] {
        let help = run_ok(&[cmd[0], cmd[1], "--help"]);
        for udp_only in [
            "datagram",
            "--broadcast",
            "--join",
            "--multicast",
            "--framing",
        ] {
            assert!(
                !help.contains(udp_only),
                "tcp {} --help mentions {udp_only}",
                cmd[1]
            );
        }
    }
    for cmd in ["recv", "send", "peer", "connect", "serve"] {
        let help = run_ok(&["udp", cmd, "--help"]);
        for tcp_only in ["--nodelay", "--linger", "clients", "stream"] {
            assert!(
                !help.contains(tcp_only),
                "udp {cmd} --help mentions {tcp_only}"
            );
        }
    }
    // The bench applies only these socket options; it lists no others.
    let bench = run_ok(&["bench", "local", "--help"]);
    for refused in [
        "--reuseaddr",
        "--reuseport",
        "--device",
        "--ttl",
        "--tos",
        "--linger",
        "--v6only",
    ] {
        assert!(
            !bench.contains(refused),
            "bench local --help lists {refused}"
        );
    }
    for applied in ["--rcvbuf", "--sndbuf", "--nodelay"] {
        assert!(
            bench.contains(applied),
            "bench local --help lacks {applied}"
        );
    }
}

/// (codes, statement) pairs: table rows `| 0 | … |`, clauses of an `Exit codes: 0 …; 1 …`
/// paragraph, and prose sentences saying `exit N`.
fn exit_statements(text: &str) -> Vec<(Vec<u32>, String)> {
    let codes = |s: &str| -> Option<Vec<u32>> {
        let v: Option<Vec<u32>> = s.split('/').map(|c| c.trim().parse().ok()).collect();
        v.filter(|v| !v.is_empty())
    };
    let mut out = Vec::new();
    let flat = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("\\-", "-");
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() >= 4 && cells[0].is_empty() {
            if let Some(c) = codes(cells[1]) {
                out.push((c, cells[2..].join(" ")));
            }
        }
    }
    if let Some(at) = flat.find("Exit codes: ") {
        let para = &flat[at + "Exit codes: ".len()..];
        let para = para.split(". ").next().unwrap_or(para);
        for clause in split_top(para, "; ") {
            let (head, rest) = clause.split_once(' ').unwrap_or((clause, ""));
            if let Some(c) = codes(head) {
                out.push((c, rest.to_string()));
            }
        }
    }
    // Prose: "exit 0 when A, 1 if B, 2 for C" states one code per clause.
    for sentence in flat.split(". ") {
        let lower = sentence.to_lowercase();
        for (i, _) in lower.match_indices("exit ") {
            for clause in split_top(&sentence[i + 5..], ", ") {
                let (head, rest) = clause.split_once(' ').unwrap_or((clause, ""));
                match head.parse() {
                    Ok(n) => out.push((vec![n], rest.to_string())),
                    Err(_) => break,
                }
            }
        }
    }
    out
}

/// `text` split at `sep`, except inside parentheses.
fn split_top<'a>(text: &'a str, sep: &str) -> Vec<&'a str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ if depth == 0 && i >= start && text[i..].starts_with(sep) => {
                parts.push(&text[start..i]);
                start = i + sep.len();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

#[test]
fn exit_code_statements_agree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let sources = [
        ("socklab --help", run_ok(&["--help"])),
        ("socklab lab --help", run_ok(&["lab", "--help"])),
        ("socklab man", run_ok(&["man"])),
        ("README.md", read("README.md")),
        ("docs/lab.md", read("docs/lab.md")),
        ("docs/bench.md", read("docs/bench.md")),
    ];
    let table = |name: &str, text: &str| {
        let all = exit_statements(text);
        assert!(!all.is_empty(), "{name}: no exit-code statement found");
        all
    };
    for (name, text) in &sources {
        for (codes, what) in table(name, text) {
            if what.contains("refuted") {
                assert_eq!(
                    codes,
                    [0],
                    "{name}: a refuted claim exits 0, not {codes:?}: {what}"
                );
            }
            if what.contains("busy") {
                assert_eq!(
                    codes,
                    [1],
                    "{name}: a busy bench server gives 1 (a runtime failure), not {codes:?}: {what}"
                );
            }
            if what.contains("failed with an error") {
                assert_eq!(codes, [1], "{name}: an experiment error gives 1: {what}");
            }
        }
    }
    // The full tables say the same set of codes.
    for name in ["socklab --help", "socklab man", "README.md"] {
        let text = &sources.iter().find(|s| s.0 == name).unwrap().1;
        let mut codes: Vec<u32> = table(name, text).into_iter().flat_map(|s| s.0).collect();
        codes.sort_unstable();
        codes.dedup();
        for c in [0, 1, 2, 130, 143] {
            assert!(
                codes.contains(&c),
                "{name} does not state exit code {c}: {codes:?}"
            );
        }
    }
}
