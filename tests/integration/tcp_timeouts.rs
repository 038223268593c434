//! `tcp connect --connect-timeout DUR`, `--idle-timeout DUR` and nc's `-w DUR` (both at once).
//! Issue 8, "no connect timeout": SYNs that go nowhere took 134 s to fail.

use socklab::netns::{self, Netns};

use crate::util::{BIN, Input, Output, socklab, spawn};

/// A namespace from which SYNs to 198.51.100.9 are silently lost: the veth pair of
/// `netns::pair`, and in A a permanent neighbour entry giving 198.51.100.9 a MAC address no
/// interface has, so B's veth drops each frame (not addressed to it) and nothing answers —
/// no RST, no ICMP, no ARP failure. Nothing leaves the namespaces.
fn black_hole() -> Option<(Netns, Netns)> {
    if !netns::have_net_admin() {
        eprintln!("skipping: needs root (CAP_NET_ADMIN) to create network namespaces");
        return None;
    }
    let (a, b) = netns::pair("ctmo").expect("two namespaces joined by veth");
    a.ip(&[
        "neigh",
        "replace",
        "198.51.100.9",
        "lladdr",
        "02:00:00:00:00:09",
        "dev",
        "veth-a",
        "nud",
        "permanent",
    ])
    .expect("a neighbour entry nobody answers for");
    Some((a, b))
}

#[test]
fn connect_timeout_and_w_give_up_on_unanswered_syns() {
    let Some((a, _b)) = black_hole() else { return };
    for flags in [&["--connect-timeout", "500ms"][..], &["-w", "500ms"]] {
        let mut c = a.command(BIN);
        c.args(["tcp", "connect", "198.51.100.9:9"]).args(flags);
        let mut p = spawn(c, Input::Null, Output::Keep);
        let f = p.expect_code(1);
        let lines: Vec<&str> = f.stderr.lines().collect();
        f.check(
            lines.len() == 1
                && lines[0].starts_with("socklab: connect 198.51.100.9:9: no answer within 500ms")
                && lines[0].contains("--connect-timeout"),
            "one line naming the timeout, exit 1",
        );
    }
}

/// `-w` is also nc's idle timeout: a server that accepts and then says nothing, with stdin
/// open and silent, ends the client (exit 0, the idle note and the summary with -v).
#[test]
fn w_ends_an_idle_connection() {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap().to_string();
    for flags in [&["-w", "300ms"][..], &["--idle-timeout", "300ms"]] {
        let mut args = vec!["tcp", "connect", &addr, "-v"];
        args.extend_from_slice(flags);
        let mut p = spawn(socklab(&args), Input::Open, Output::Keep);
        let (_conn, _) = server.accept().expect("accept");
        let f = p.expect_code(0);
        f.check(
            f.stderr
                .contains("idle timeout: nothing sent or received for 300ms")
                && f.stderr.contains("sent 0 bytes, received 0 bytes"),
            "idle end with the summary",
        );
    }
}
