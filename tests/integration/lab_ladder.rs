//! Packet ladders and the HTML report, checked against real lab runs: every claim is run, each
//! part's ladder is built from its own evidence, and the ladder is checked against that
//! evidence (packets at their capture time, arrows between the columns of their addresses,
//! states at the time `ss` printed them, calls at their start), never against expected
//! drawings. The HTML report is rendered by headless Chromium when it is installed.
//!
//! The experiments run in a child process (this test binary again, running the ignored test
//! [`in_child_every_claims_ladder_follows_its_evidence`]): claim 14 spawns victim processes and
//! every claim makes namespaces, which other lab tests running at the same time count as left
//! behind when they are children or namespaces of this process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use socklab::lab::capture;
use socklab::lab::ladder::{self, Ladder, Rung, ascii};
use socklab::lab::{self, Finding, Lab, Part};
use socklab::trace::render;

use crate::util::socklab_stdout;

const BIN: &str = env!("CARGO_BIN_EXE_socklab");
const CHILD_ENV: &str = "SOCKLAB_LADDER_CHILD";

/// Runs the ignored test `name` of this binary in a child process and expects it to pass.
fn in_child(name: &str) {
    let exe = std::env::current_exe().expect("the test binary");
    let out = Command::new(exe)
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .output()
        .expect("run the test binary");
    assert!(
        out.status.success(),
        "{name} failed in the child:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 passed"), "the child ran nothing:\n{text}");
}

#[test]
fn every_claims_ladder_follows_its_evidence() {
    in_child("lab_ladder::in_child_every_claims_ladder_follows_its_evidence");
}

/// An address matches a column's when equal, or when the column is a wildcard bind of the
/// same port (a socket bound to 0.0.0.0:p receives what is sent to any local address:p).
fn matches(col: Option<SocketAddr>, addr: SocketAddr) -> bool {
    col.is_some_and(|c| c == addr || (c.ip().is_unspecified() && c.port() == addr.port()))
}

/// The source and destination written in a wire line (`UDP a:1 > b:2 len 4`).
fn line_ends(line: &str) -> (String, String) {
    let t: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(t.get(2), Some(&">"), "{line}");
    (t[1].to_string(), t[3].to_string())
}

/// Whether `text` (a wire line's address: `1.2.3.4:5`, or `1.2.3.4` for ICMP) is column
/// `c`'s address or host.
fn at_column(l: &Ladder, c: usize, text: &str) -> bool {
    let col = &l.columns[c];
    match text.parse::<SocketAddr>() {
        // Several ports of one host without a socket share a column (`ip:*`).
        Ok(a) => matches(col.addr, a) || (col.addr.is_none() && col.host == Some(a.ip())),
        // A host only (ICMP): its column's host or address, or a wildcard-bound socket's.
        Err(_) => {
            col.host.map(|h| h.to_string()) == Some(text.to_string())
                || col
                    .addr
                    .is_some_and(|a| a.ip().to_string() == text || a.ip().is_unspecified())
        }
    }
}

fn at(l: &Ladder, row: usize) -> SystemTime {
    l.t0.expect("a ladder with rows has a start") + l.rows[row].at
}

/// The packets of a pcapng file, in its order: timestamp and bytes.
fn pcapng_packets(path: &Path) -> Vec<(Duration, Vec<u8>)> {
    use pcap_file::pcapng::{Block, PcapNgReader};
    let file = std::fs::File::open(path).expect("open the pcapng file");
    let mut r = PcapNgReader::new(file).expect("a pcapng file");
    let mut out = Vec::new();
    while let Some(block) = r.next_block() {
        if let Block::EnhancedPacket(p) = block.expect("a pcapng block") {
            out.push((p.timestamp, p.data.into_owned()));
        }
    }
    out
}

/// Checks part `p`'s ladder against its evidence, the experiment's capture and `file`, the
/// packets of the pcapng file written from that capture.
fn check(f: &Finding, p: &Part, file: &[(Duration, Vec<u8>)]) {
    let l = ladder::of(f, p);
    let name = format!("{}{}", f.claim, p.id);
    // Rows in time order.
    assert!(
        l.rows.windows(2).all(|w| w[0].at <= w[1].at),
        "{name}: rows out of order: {l:#?}"
    );
    let folded = l.rows.iter().any(|r| matches!(r.rung, Rung::Folded { .. }));
    let mut last_frame_ts = None;
    for (i, r) in l.rows.iter().enumerate() {
        match &r.rung {
            Rung::Packet {
                from,
                to,
                line,
                frame,
                ..
            } => {
                // The frame it names in the pcapng file is this packet, drawn at its capture
                // time.
                let k = capture::pcap_order(&f.frames)[frame - 1];
                let fr = &f.frames[k];
                assert_eq!(
                    file.get(frame - 1),
                    Some(&(fr.ts, fr.data.clone())),
                    "{name}: frame {frame} of the pcapng file is not the packet drawn"
                );
                assert_eq!(
                    capture::wire_lines(&f.frames)[k].as_ref(),
                    Some(line),
                    "{name}: frame {frame}"
                );
                let ts = SystemTime::UNIX_EPOCH + fr.ts;
                assert_eq!(at(&l, i), ts, "{name}: frame {frame} not at its time");
                assert!(last_frame_ts <= Some(ts), "{name}: arrows out of order");
                last_frame_ts = Some(ts);
                // The arrow goes between the columns of its source and destination (an ICMP
                // error: from the host that sends it to the socket whose datagram it quotes).
                let (src, dst) = line_ends(line);
                assert!(
                    at_column(&l, *from, &src),
                    "{name}: {line} drawn from {:?}",
                    l.columns[*from]
                );
                assert!(
                    at_column(&l, *to, &dst),
                    "{name}: {line} drawn to {:?}",
                    l.columns[*to]
                );
                if line.starts_with("ICMP") && line.contains("type 3 code 3") {
                    assert!(
                        !l.columns[*to].fds.is_empty(),
                        "{name}: a port unreachable goes to the socket that sent the datagram"
                    );
                }
            }
            Rung::State { col, state, line } => {
                // At the end of the ss run that printed it, under its local address.
                assert!(p.evidence.states.contains(line), "{name}: {line}");
                let seen = f
                    .ss_seen
                    .iter()
                    .find(|s| s.lines.contains(line) && s.span.end == at(&l, i));
                assert!(seen.is_some(), "{name}: {line} not where ss saw it");
                let (st, local, _) = ladder::parse_ss(line).expect("an ss line");
                assert_eq!(*state, st);
                let local = ladder::ss_addr(&local).expect("an address");
                assert!(matches(l.columns[*col].addr, local), "{name}: {line}");
            }
            _ => {}
        }
    }
    // Every call of the trace is drawn, at its start (when nothing was folded).
    if !folded {
        let calls: Vec<(SystemTime, String)> = l
            .rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match &r.rung {
                Rung::Call { text, .. } => Some((at(&l, i), text.clone())),
                _ => None,
            })
            .collect();
        // In order of their start: calls of two threads (claim 1's simultaneous connects)
        // are traced as they return.
        let mut traced: Vec<&socklab::trace::Event> = p.evidence.trace.iter().collect();
        traced.sort_by_key(|e| e.span.map(|s| s.start));
        assert_eq!(calls.len(), traced.len(), "{name}: {calls:?}");
        for (e, (t, text)) in traced.iter().zip(&calls) {
            let span = e.span.expect("the lab's trace events carry their time");
            assert_eq!(*t, span.start, "{name}: {text}");
            let head = render::text(e);
            let head = head.lines().next().unwrap_or_default();
            let call = head.rsplit_once(") = ").map_or(head, |(c, _)| c);
            assert!(text.starts_with(call), "{name}: {text} is not {head}");
        }
    }
    // Every state change `ss` saw for this part is drawn.
    let mut last = std::collections::HashMap::new();
    for line in &p.evidence.states {
        let Some((state, local, peer)) = ladder::parse_ss(line) else {
            continue;
        };
        let timed = f.ss_seen.iter().any(|s| s.lines.contains(line));
        if !timed || ladder::ss_addr(&local).is_none() {
            continue;
        }
        if last.insert((local, peer), state.clone()).as_ref() != Some(&state) {
            assert!(
                l.rows
                    .iter()
                    .any(|r| matches!(&r.rung, Rung::State { line: s, .. } if s == line)),
                "{name}: state {line} not drawn"
            );
        }
    }
    // A part whose sockets stand at two addresses or more, or that has packets, is drawn,
    // and its terminal drawing fits 100 columns.
    let text = ascii::section(f, p);
    for line in text.lines() {
        assert!(line.chars().count() <= 100, "{name}: too wide: {line}");
    }
}

/// Claim 13's story, from its own evidence: in the column where ss saw TIME-WAIT, the socket
/// closed, its FIN left, the peer's FIN came back and was ACKed, then ss saw TIME-WAIT; and a
/// new socket binding that address without SO_REUSEADDR got EADDRINUSE there afterwards.
fn check_time_wait_story(f: &Finding) {
    let p = &f.parts[0];
    let l = ladder::of(f, p);
    let mut stories = 0;
    for (k, r) in l.rows.iter().enumerate() {
        let Rung::State { col, state, .. } = &r.rung else {
            continue;
        };
        if state != "TIME-WAIT" {
            continue;
        }
        let before = &l.rows[..k];
        let close = before
            .iter()
            .position(|r| matches!(&r.rung, Rung::Call { col: c, text, .. } if c == col && text.starts_with("close(")));
        let fin = before.iter().position(|r| {
            matches!(&r.rung, Rung::Packet { from, label, .. } if from == col && label.contains("FIN"))
        });
        let ack = before.iter().rposition(|r| {
            matches!(&r.rung, Rung::Packet { from, label, .. } if from == col && label == "ACK")
        });
        let (Some(close), Some(fin), Some(ack)) = (close, fin, ack) else {
            panic!("13a: TIME-WAIT at row {k} without close, FIN and ACK before it: {l:#?}");
        };
        assert!(close < fin && fin < ack, "13a: {close} {fin} {ack}: {l:#?}");
        let rebind = l.rows[k + 1..].iter().find_map(|r| match &r.rung {
            Rung::Call { col: c, text, .. } if c == col && text.starts_with("bind(") => {
                Some(text.clone())
            }
            _ => None,
        });
        if rebind.is_some_and(|t| t.contains("EADDRINUSE")) {
            stories += 1;
        }
    }
    assert!(
        stories >= 1,
        "13a: no close -> FIN -> ACK -> TIME-WAIT -> bind EADDRINUSE: {}",
        ascii::draw(&l)
    );
}

#[test]
#[ignore = "runs in a child process of every_claims_ladder_follows_its_evidence"]
fn in_child_every_claims_ladder_follows_its_evidence() {
    if std::env::var_os(CHILD_ENV).is_none() {
        eprintln!("skipped: runs only as the child of every_claims_ladder_follows_its_evidence");
        return;
    }
    let lab = Lab::new().with_exe(BIN);
    if !lab.is_root() {
        eprintln!("note: not root: no capture, ladders show calls and states only");
    }
    let dir = temp_dir("lab-ladder-pcap");
    let mut drawn = 0;
    for e in lab::registry() {
        let f = lab::run_one(e, &lab);
        let path = dir.join(capture::pcap_file_name(f.claim));
        capture::write_pcapng(&path, &f.frames).expect("write the pcapng file");
        let file = pcapng_packets(&path);
        for p in &f.parts {
            check(&f, p, &file);
            drawn += usize::from(ladder::of(&f, p).is_drawn());
        }
        if f.claim == 13 && lab.is_root() {
            check_time_wait_story(&f);
        }
    }
    assert!(drawn > 10, "only {drawn} parts have a ladder");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn lab_show_draws_ladders_within_100_columns() {
    let out = socklab_stdout(&["lab", "show", "12", "13", "14"]);
    let text = String::from_utf8_lossy(&out);
    let mut in_ladder = false;
    let mut lines = 0;
    for line in text.lines() {
        if line.starts_with("  ladder:") {
            in_ladder = true;
        } else if !line.starts_with("    ") {
            in_ladder = false;
        }
        if in_ladder {
            lines += 1;
            assert!(line.chars().count() <= 100, "too wide: {line}");
        }
    }
    assert!(lines > 20, "no ladder drawn:\n{text}");
    assert!(
        text.contains("ladder: the same as in 13a above"),
        "parts on one observation share a ladder:\n{text}"
    );
}

/// A new, empty directory under the temp dir.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("socklab-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

/// `chromium --headless …` with a fresh profile in `dir` and the given extra arguments.
fn chromium(dir: &Path, args: &[&str]) -> Output {
    let profile = dir.join("profile");
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run chromium")
}

#[test]
fn html_report_is_self_contained_and_renders_in_chromium() {
    let dir = temp_dir("lab-html");
    let page = dir.join("report.html");
    let pcap = dir.join("pcap");
    let page_s = page.to_str().expect("a UTF-8 path");
    socklab_stdout(&[
        "lab",
        "--html",
        page_s,
        "--pcap",
        pcap.to_str().expect("a UTF-8 path"),
    ]);
    let html = std::fs::read_to_string(&page).expect("the report");
    // Self-contained: no scripts, nothing fetched (the SVG namespace is a name, not a fetch).
    for bad in ["<script", "src=", "url(", "@import", "<link", "https://"] {
        assert!(!html.contains(bad), "the report has {bad}");
    }
    assert_eq!(
        html.matches("http://").count(),
        html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count(),
        "only SVG namespaces name a URL"
    );
    let root = socklab::netns::have_net_admin();
    if root {
        assert!(
            html.contains("of <a class=\"pcap\" href=\"pcap/claim-12.pcapng\">claim-12.pcapng</a>"),
            "wire lines name their pcap file"
        );
    }
    if !crate::util::have("chromium") {
        eprintln!(
            "skipped the browser check: chromium is not installed (apt-get install chromium)"
        );
        return;
    }
    let url = format!("file://{page_s}");
    let dom = chromium(&dir, &["--dump-dom", &url]);
    assert!(dom.status.success(), "chromium --dump-dom: {dom:?}");
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    let log = String::from_utf8_lossy(&dom.stderr);
    assert!(!dom_text.contains("<script"), "the DOM has a script");
    for err in ["Uncaught", "CONSOLE(", "Refused to", "net::ERR_"] {
        assert!(!log.contains(err), "chromium reported {err}:\n{log}");
    }
    // The summary table: one row per claim, each claim's section, each part's block.
    let registry = lab::registry();
    let tbody = dom_text
        .split("<tbody>")
        .nth(1)
        .and_then(|t| t.split("</tbody>").next())
        .expect("the summary table's body");
    assert_eq!(tbody.matches("<tr ").count(), registry.len(), "{tbody}");
    for e in &registry {
        let id = format!("id=\"claim-{}\"", e.claim());
        assert!(dom_text.contains(&id), "claim {} missing", e.claim());
    }
    // Every ladder link points at an arrow in an SVG of the page.
    let svgs = dom_text.matches("<svg class=\"ladder\"").count();
    if root {
        assert!(svgs > 10, "only {svgs} ladders");
        let links: Vec<&str> = dom_text
            .split("class=\"frame\" href=\"#")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .collect();
        assert!(!links.is_empty(), "no wire line links to its arrow");
        for id in links {
            assert!(
                dom_text.contains(&format!("<g id=\"{id}\"")),
                "link to #{id} has no arrow"
            );
        }
    }
    let shot = dir.join("report.png");
    let out = chromium(
        &dir,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,3000",
            &url,
        ],
    );
    assert!(out.status.success(), "chromium --screenshot: {out:?}");
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    eprintln!("screenshot: {}", shot.display());
}
