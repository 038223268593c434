//! Broadcast, SO_BINDTODEVICE and multicast between two network namespaces joined by a veth
//! pair (198.51.100.1/24 on veth-a in A, 198.51.100.2/24 on veth-b in B), created and removed
//! by each test. Needs root (CAP_NET_ADMIN); skipped with a printed reason otherwise. Nothing
//! leaves the namespaces.

use socklab::netns::{self, Netns};

use crate::util::{BIN, Input, Output, Proc, spawn};

/// Two namespaces joined by veth, or `None` (with the reason printed) without root.
fn pair(tag: &str) -> Option<(Netns, Netns)> {
    if !netns::have_net_admin() {
        eprintln!("skipping {tag}: needs root (CAP_NET_ADMIN) to create network namespaces");
        return None;
    }
    Some(netns::pair(tag).expect("two namespaces joined by veth"))
}

/// `socklab ARGS…` inside `ns`.
fn run_in(ns: &Netns, args: &[&str], input: Input) -> Proc {
    let mut c = ns.command(BIN);
    c.args(args);
    spawn(c, input, Output::Keep)
}

/// A receiver inside `ns` (with -v), and the port it got.
fn receiver(ns: &Netns, args: &[&str]) -> (Proc, u16) {
    let mut all = args.to_vec();
    all.push("-v");
    let p = run_in(ns, &all, Input::Null);
    let port = p.ready().port();
    (p, port)
}

/// Broadcast: with SO_BROADCAST the datagram to 198.51.100.255 reaches B's wildcard socket;
/// without it, sendto fails with EACCES and the error says to use --broadcast.
#[test]
fn broadcast_needs_so_broadcast() {
    let Some((a, b)) = pair("bcast") else { return };
    let (mut r, port) = receiver(
        &b,
        &[
            "udp",
            "recv",
            "--bind",
            "0.0.0.0:0",
            "--show",
            "--count",
            "1",
        ],
    );
    let to = format!("198.51.100.255:{port}");
    let mut refused = run_in(
        &a,
        &["udp", "send", &to],
        Input::Bytes(b"no flag\n".to_vec()),
    );
    let rf = refused.expect_code(1);
    rf.check(
        rf.stderr.lines().count() == 1
            && rf.stderr.contains("(EACCES)")
            && rf.stderr.contains("--broadcast"),
        "EACCES with the --broadcast hint",
    );
    run_in(
        &a,
        &["udp", "send", "--broadcast", &to],
        Input::Bytes(b"to all\n".to_vec()),
    )
    .expect_code(0);
    let f = r.expect_code(0);
    f.check(
        f.out()
            == format!(
                "from 198.51.100.1:{} len 7: \"to all\\n\"\n",
                sender_port(&f.out())
            ),
        "the broadcast datagram arrived from A",
    );
}

/// The source port in a `--show` line ("from ADDR:PORT len …").
fn sender_port(shown: &str) -> String {
    shown
        .split_whitespace()
        .nth(1)
        .and_then(|a| a.rsplit(':').next())
        .unwrap_or("?")
        .to_string()
}

/// SO_BINDTODEVICE: a socket bound to veth-b receives what arrives on veth-b; a socket of the
/// same port bound to lo does not, so the kernel answers port unreachable and A's connected
/// socket gets ECONNREFUSED.
#[test]
fn bind_to_device_filters_by_interface() {
    let Some((a, b)) = pair("bindev") else { return };
    let (mut r, port) = receiver(
        &b,
        &[
            "udp",
            "recv",
            "--bind",
            "0.0.0.0:0",
            "--device",
            "veth-b",
            "--show",
            "--count",
            "1",
        ],
    );
    let to = format!("198.51.100.2:{port}");
    run_in(
        &a,
        &["udp", "send", "--device", "veth-a", &to],
        Input::Bytes(b"via veth\n".to_vec()),
    )
    .expect_code(0);
    let f = r.expect_code(0);
    f.check(
        f.out().contains("len 9: \"via veth\\n\""),
        "received on veth-b",
    );

    let (lo, port) = receiver(
        &b,
        &[
            "udp",
            "recv",
            "--bind",
            "0.0.0.0:0",
            "--device",
            "lo",
            "--count",
            "1",
        ],
    );
    let mut c = run_in(
        &a,
        &["udp", "connect", &format!("198.51.100.2:{port}")],
        Input::Bytes(b"anyone on veth-b?\n".to_vec()),
    );
    let cf = c.expect_code(1);
    cf.check(
        cf.stderr.contains("(ECONNREFUSED)"),
        "a socket bound to lo does not take veth-b's datagram",
    );
    drop(lo);
}

/// Multicast: B joins 239.1.2.3 on veth-b; A sends to the group out of veth-a with a TTL of 1.
#[test]
fn multicast_join_and_send() {
    let Some((a, b)) = pair("mcast") else { return };
    let (mut r, port) = receiver(
        &b,
        &[
            "udp",
            "recv",
            "--bind",
            "0.0.0.0:0",
            "--join",
            "239.1.2.3%veth-b",
            "--show",
            "--count",
            "1",
        ],
    );
    // No route for 224.0.0.0/4 in A: the sender picks its interface with --device.
    let mut s = run_in(
        &a,
        &[
            "udp",
            "send",
            &format!("239.1.2.3:{port}"),
            "--device",
            "veth-a",
            "--multicast-ttl",
            "1",
            "--trace",
        ],
        Input::Bytes(b"group hello\n".to_vec()),
    );
    let sf = s.expect_code(0);
    sf.check(
        sf.stderr.contains("IP_MULTICAST_TTL, 1) = 0"),
        "the multicast TTL was set",
    );
    let f = r.expect_code(0);
    f.check(
        f.out().starts_with("from 198.51.100.1:") && f.out().contains("len 12: \"group hello\\n\""),
        "the group datagram arrived from A",
    );
}
