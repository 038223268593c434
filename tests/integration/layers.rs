//! The layer rule, checked: a module imports only from layers below its own (see the map in
//! `src/lib.rs`). The check reads every `src/**/*.rs`, finds each `crate::MODULE` path (also inside
//! `use crate::{a, b::c}` groups), maps the file and the path to their layers, and fails listing
//! every import that points up or sideways.

use std::path::{Path, PathBuf};

/// The layers from the bottom up. A module may import its own module and modules of a lower
/// rank; two different modules of the same rank may not import each other (`lab` and `bench`).
/// `netns` sits just above `sock` (its tests open sockets inside the namespaces it makes).
const LAYERS: &[(&str, u8)] = &[
    ("os", 0),
    ("addr", 0),
    ("units", 0),
    ("jsonl", 0),
    ("meta", 0),
    ("trace", 1),
    ("sock", 2),
    ("netns", 3),
    ("lab", 4),
    ("bench", 4),
];

fn rank(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

/// The top-level module a file under `src/` belongs to (`src/sock/tcp.rs` → `sock`,
/// `src/units.rs` → `units`), or `None` for the crate root, the binary and the CLI, which may
/// import anything.
fn module_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    rank(name).map(|_| name.to_string())
}

/// The crate-level modules a source text names through `crate::…`, with the line each is on.
/// Comment lines (`//`, `///`, `//!`) are skipped: doc links are not imports.
fn crate_paths(source: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in source.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            if let Some(group) = after.strip_prefix('{') {
                found.extend(group_heads(group).into_iter().map(|m| (n + 1, m)));
            } else {
                let ident: String = after
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                found.push((n + 1, ident));
            }
            rest = after;
        }
    }
    found
}

/// The first path segment of each item in a `use crate::{…}` group, up to its closing brace:
/// `{os::errno, sock::{Sock, Proto}}` → `os`, `sock`.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut at_start = true;
    let mut ident = String::new();
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                if !ident.is_empty() {
                    heads.push(std::mem::take(&mut ident));
                }
                at_start = true;
            }
            c if at_start && (c.is_alphanumeric() || c == '_') => ident.push(c),
            _ if at_start && !ident.is_empty() => {
                heads.push(std::mem::take(&mut ident));
                at_start = false;
            }
            _ => {}
        }
    }
    if !ident.is_empty() {
        heads.push(ident);
    }
    heads
}

/// Every upward or sideways import in one file's source, as `file:line: from -> to` lines.
fn violations(rel: &Path, source: &str) -> Vec<String> {
    let Some(from) = module_of(rel) else {
        return Vec::new();
    };
    let from_rank = rank(&from).expect("module_of returns ranked modules");
    crate_paths(source)
        .into_iter()
        .filter_map(|(line, to)| {
            let to_rank = rank(&to)?;
            let allowed = to == from || to_rank < from_rank;
            (!allowed).then(|| {
                format!(
                    "src/{}:{line}: {from} (layer {from_rank}) imports {to} (layer {to_rank})",
                    rel.display()
                )
            })
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Inside `bench`, the modules below the client and server, from the bottom up; every other
/// bench module (`client`, `server`, `search`, `report`, `plot`, `underload`, `mesh`, the items of
/// `bench/mod.rs`) is above them all. `sender` and `receiver` share a rank: neither imports the
/// other.
const BENCH_LAYERS: &[(&str, u8)] = &[
    ("wire", 0),
    ("stats", 0),
    ("culprit", 0),
    ("zerocopy", 0),
    ("protocol", 1),
    ("sender", 2),
    ("receiver", 2),
    ("session", 3),
];

/// The rank of anything else in `bench`.
const BENCH_UPPER: u8 = 4;

/// The one upward edge inside `bench` that stands: the control protocol's `Message` carries the
/// mesh agent's `RunTestReply` (`src/bench/protocol.rs`), and `mesh::wire` builds on protocol
/// types, so the two form one unit until the mesh reply moves down.
const BENCH_KNOWN_UPWARD: &[(&str, &str)] = &[("protocol", "mesh")];

fn bench_rank(module: &str) -> u8 {
    BENCH_LAYERS
        .iter()
        .find(|(m, _)| *m == module)
        .map_or(BENCH_UPPER, |(_, r)| *r)
}

/// The bench sub-module a file under `src/bench/` belongs to (`bench/mesh/run.rs` → `mesh`,
/// `bench/mod.rs` → `mod`).
fn bench_module_of(rel: &Path) -> Option<String> {
    let mut parts = rel
        .components()
        .map(|c| c.as_os_str().to_str().unwrap_or(""));
    if parts.next()? != "bench" {
        return None;
    }
    let first = parts.next()?;
    Some(first.strip_suffix(".rs").unwrap_or(first).to_string())
}

/// The bench sub-modules a bench file names: `crate::bench::X` anywhere, and `super::X` in a
/// file directly under `src/bench/` (where `super` is `bench`).
fn bench_paths(rel: &Path, source: &str) -> Vec<(usize, String)> {
    let direct = rel.components().count() == 2 && !rel.ends_with("mod.rs");
    let mut found = Vec::new();
    for (n, line) in source.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        for prefix in ["crate::bench::", "super::"] {
            if prefix == "super::" && !direct {
                continue;
            }
            let mut rest = code;
            while let Some(at) = rest.find(prefix) {
                let after = &rest[at + prefix.len()..];
                if let Some(group) = after.strip_prefix('{') {
                    found.extend(group_heads(group).into_iter().map(|m| (n + 1, m)));
                } else {
                    let ident: String = after
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    found.push((n + 1, ident));
                }
                rest = after;
            }
        }
    }
    found
}

/// Every upward or sideways import between bench sub-modules in one file.
fn bench_violations(rel: &Path, source: &str) -> Vec<String> {
    let Some(from) = bench_module_of(rel) else {
        return Vec::new();
    };
    let from_rank = bench_rank(&from);
    bench_paths(rel, source)
        .into_iter()
        .filter_map(|(line, to)| {
            let to_rank = bench_rank(&to);
            let allowed = to.is_empty()
                || to == from
                || to_rank < from_rank
                || (to_rank == BENCH_UPPER && from_rank == BENCH_UPPER)
                || BENCH_KNOWN_UPWARD.contains(&(from.as_str(), to.as_str()));
            (!allowed).then(|| {
                format!(
                    "src/{}:{line}: bench::{from} (rank {from_rank}) imports bench::{to} (rank {to_rank})",
                    rel.display()
                )
            })
        })
        .collect()
}

#[test]
fn lower_layers_never_import_higher_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut bad = Vec::new();
    let mut checked = 0;
    for path in &files {
        let rel = path.strip_prefix(&src).expect("under src/");
        let source = std::fs::read_to_string(path).expect("read source file");
        checked += crate_paths(&source).len();
        bad.extend(violations(rel, &source));
        bad.extend(bench_violations(rel, &source));
    }
    assert!(
        checked > 100,
        "only {checked} crate:: paths found: the scanner is broken"
    );
    assert!(
        bad.is_empty(),
        "imports against the layer map in src/lib.rs:\n{}",
        bad.join("\n")
    );
}

#[test]
fn checker_catches_a_planted_upward_import() {
    let planted = "//! A doc line naming [`crate::lab`] is no import.\n\
                   use crate::os::errno;\n\
                   use crate::{jsonl, lab::counters};\n\
                   fn f() { crate::bench::run(); crate::sock::Sock::new(); }\n";
    let bad = violations(Path::new("trace/render.rs"), planted);
    assert_eq!(bad.len(), 3, "{bad:#?}");
    assert!(bad[0].starts_with("src/trace/render.rs:3: trace (layer 1) imports lab (layer 4)"));
    assert!(bad[1].contains(":4: trace (layer 1) imports bench"));
    assert!(bad[2].contains(":4: trace (layer 1) imports sock"));
    // Sideways is caught too; downward and within the module are not.
    assert_eq!(
        violations(Path::new("bench/culprit.rs"), "use crate::lab::x;").len(),
        1
    );
    assert!(
        violations(
            Path::new("bench/mod.rs"),
            "use crate::{bench::x, os, sock};"
        )
        .is_empty()
    );
    assert!(violations(Path::new("cli/lab.rs"), "use crate::bench;").is_empty());
}

#[test]
fn bench_checker_catches_upward_and_sideways_imports() {
    let planted = "use super::sender::send_all;\n\
                   use crate::bench::{client, wire::Repr};\n\
                   use super::stats::Interval;\n";
    let bad = bench_violations(Path::new("bench/receiver.rs"), planted);
    assert_eq!(bad.len(), 2, "{bad:#?}");
    assert!(bad[0].contains(":1: bench::receiver (rank 2) imports bench::sender"));
    assert!(bad[1].contains(":2: bench::receiver (rank 2) imports bench::client"));
    // A mesh file's `super::` is the mesh, not the bench.
    assert!(bench_violations(Path::new("bench/mesh/run.rs"), "use super::wire::X;").is_empty());
    assert!(bench_violations(Path::new("bench/client.rs"), "use super::server::X;").is_empty());
}
