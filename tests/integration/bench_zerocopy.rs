//! `bench client --zerocopy` end to end on loopback, two processes: the senders' MSG_ZEROCOPY
//! notifications and the copied-bytes figure they feed (`copied_bytes_per_delivered_byte`),
//! plain sends for comparison, the server as the zerocopy sender (-R), and a run where the
//! kernel will not pin the sender's pages (locked-memory limit 0), which must say so.

use std::net::SocketAddr;
use std::process::Command;

use serde_json::Value;

use crate::util::{BIN, Input, Output, Proc, have, socklab, spawn};

/// A `bench server` on 127.0.0.1 (port chosen by the kernel); killed on drop.
fn server() -> (Proc, SocketAddr) {
    let p = spawn(
        socklab(&["bench", "server", "--bind", "127.0.0.1:0"]),
        Input::Null,
        Output::Keep,
    );
    let addr = p.ready();
    (p, addr)
}

/// Runs `prefix… socklab bench client ADDR --json -t 500ms -b 2G ARGS` to completion and
/// returns its result rows. Paced, so the UDP rate search does not run.
fn run(prefix: &[&str], addr: SocketAddr, args: &[&str]) -> Vec<Value> {
    let addr = addr.to_string();
    let mut all = vec![
        "bench", "client", &addr, "--json", "-t", "500ms", "-b", "2G",
    ];
    all.extend_from_slice(args);
    let cmd = match prefix.split_first() {
        Some((wrapper, wrapper_args)) => {
            let mut c = Command::new(wrapper);
            c.args(wrapper_args).arg(BIN).args(&all);
            c
        }
        None => socklab(&all),
    };
    let f = spawn(cmd, Input::Null, Output::Keep).expect_code(0);
    let doc: Value = serde_json::from_slice(&f.stdout).unwrap_or_else(|e| {
        panic!("client stdout is not JSON ({e})\n{}", f.shown);
    });
    doc["results"].as_array().cloned().unwrap_or_default()
}

fn u(row: &Value, key: &str) -> u64 {
    row[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {row:#}"))
}

fn row<'a>(rows: &'a [Value], transport: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["transport"] == transport)
        .unwrap_or_else(|| panic!("no {transport} row in {rows:#?}"))
}

/// The figure is (sender copied + receiver copied) / delivered, from the row's own counts.
fn assert_figure(r: &Value) {
    let (s, rc, b) = (
        u(r, "sender_copied_bytes"),
        u(r, "receiver_copied_bytes"),
        u(r, "bytes"),
    );
    assert!(b > 0, "nothing delivered: {r:#}");
    let fig = r["copied_bytes_per_delivered_byte"]
        .as_f64()
        .expect("figure");
    let want = (s + rc) as f64 / b as f64;
    assert!((fig - want).abs() <= 1e-9 * want, "{fig} != {want}: {r:#}");
}

#[test]
fn zerocopy_runs_count_the_copies_the_notifications_report() {
    let (_srv, addr) = server();
    let rows = run(&[], addr, &["--test", "compare", "--zerocopy"]);
    for t in ["tcp", "udp"] {
        let r = row(&rows, t);
        let z = &r["zerocopy"];
        assert!(z["refused"].is_null(), "zerocopy refused: {r:#}");
        let calls = u(z, "calls");
        assert!(calls > 0, "no MSG_ZEROCOPY call: {r:#}");
        // Every byte went with MSG_ZEROCOPY, and every call was notified before the end.
        assert_eq!(u(z, "bytes"), u(r, "sent_bytes"), "{r:#}");
        assert_eq!(u(z, "plain_bytes"), 0, "{r:#}");
        assert_eq!(u(z, "notified_calls"), calls, "{r:#}");
        // Looped to a local socket, the data is copied at delivery: the notifications say so.
        assert!(u(z, "copied_calls") > 0, "no COPIED notification: {r:#}");
        // The sender's share is what the notifications marked COPIED, nothing assumed.
        assert_eq!(u(r, "sender_copied_bytes"), u(z, "copied_bytes"), "{r:#}");
        assert_figure(r);
    }
    let tcp = row(&rows, "tcp");
    assert_eq!(
        u(tcp, "bytes"),
        u(tcp, "sent_bytes"),
        "TCP lost bytes: {tcp:#}"
    );
    assert_eq!(u(tcp, "receiver_copied_bytes"), u(tcp, "bytes"), "{tcp:#}");
    let udp = row(&rows, "udp");
    assert!(u(udp, "bytes") <= u(udp, "sent_bytes"), "{udp:#}");
    assert!(
        u(udp, "receiver_copied_bytes") >= u(udp, "bytes"),
        "{udp:#}"
    );
}

#[test]
fn plain_sends_count_every_sent_byte_as_copied() {
    let (_srv, addr) = server();
    let rows = run(&[], addr, &["--test", "compare"]);
    for t in ["tcp", "udp"] {
        let r = row(&rows, t);
        assert!(r["zerocopy"].is_null(), "{r:#}");
        assert_eq!(u(r, "sender_copied_bytes"), u(r, "sent_bytes"), "{r:#}");
        assert_figure(r);
        let sender_part = r["copied_bytes_per_delivered_byte"].as_f64().unwrap()
            - u(r, "receiver_copied_bytes") as f64 / u(r, "bytes") as f64;
        let want = u(r, "sent_bytes") as f64 / u(r, "bytes") as f64;
        assert!((sender_part - want).abs() < 1e-9, "{sender_part} != {want}");
    }
    let tcp = row(&rows, "tcp");
    assert_eq!(u(tcp, "bytes"), u(tcp, "sent_bytes"), "{tcp:#}");
}

#[test]
fn the_server_sends_with_zerocopy_when_it_is_the_sender() {
    let (_srv, addr) = server();
    let rows = run(&[], addr, &["--tcp", "-R", "-l", "64K", "--zerocopy"]);
    let r = row(&rows, "tcp");
    assert_eq!(r["dir"], "down", "{r:#}");
    let z = &r["zerocopy"];
    assert!(u(z, "calls") > 0 && z["refused"].is_null(), "{r:#}");
    assert_eq!(u(z, "bytes"), u(r, "sent_bytes"), "{r:#}");
    assert_eq!(u(r, "bytes"), u(r, "sent_bytes"), "{r:#}");
    assert_eq!(u(r, "sender_copied_bytes"), u(z, "copied_bytes"), "{r:#}");
    assert_figure(r);
}

/// With RLIMIT_MEMLOCK 0 and no CAP_IPC_LOCK the kernel refuses to pin the pages of a
/// MSG_ZEROCOPY send (ENOBUFS, msg_zerocopy.rst): the run goes on with plain sends and the
/// report says why, counting every byte as copied.
#[test]
fn a_sender_that_cannot_pin_pages_reports_zerocopy_refused() {
    if !have("prlimit") || !have("setpriv") {
        eprintln!("skipped: needs prlimit(1) and setpriv(1) (util-linux)");
        return;
    }
    let (_srv, addr) = server();
    // As root, CAP_IPC_LOCK would lift the limit: drop it from the bounding set first.
    let root = nix::unistd::geteuid().is_root();
    let prefix: Vec<&str> = if root {
        vec![
            "prlimit",
            "--memlock=0:0",
            "setpriv",
            "--inh-caps=-ipc_lock",
            "--bounding-set=-ipc_lock",
        ]
    } else {
        vec!["prlimit", "--memlock=0:0"]
    };
    let rows = run(&prefix, addr, &["--test", "compare", "--zerocopy"]);
    for t in ["tcp", "udp"] {
        let r = row(&rows, t);
        let z = &r["zerocopy"];
        let why = z["refused"]
            .as_str()
            .unwrap_or_else(|| panic!("not refused: {r:#}"));
        assert!(why.contains("ENOBUFS"), "{why}");
        assert_eq!(u(z, "calls"), 0, "{r:#}");
        assert_eq!(u(z, "plain_bytes"), u(r, "sent_bytes"), "{r:#}");
        assert_eq!(u(r, "sender_copied_bytes"), u(r, "sent_bytes"), "{r:#}");
        assert_figure(r);
    }
}
