//! Socket options as data: the bench's JSON carries what became of every option each side set
//! on its data sockets, and the table notes the ones not applied as asked. The per-option
//! round trips are unit tests in src/sock/options.rs; the one that needs a namespace (a
//! multicast join, which would otherwise speak IGMP on a host interface) is here.

use serde_json::Value;

use crate::util::{Finished, Input, Output, loopback_exclusive, socklab, spawn};

/// `socklab bench local ARGS`, bounded, which must exit 0.
fn bench_local(args: &[&str]) -> Finished {
    let argv = [&["bench", "local"][..], args].concat();
    spawn(socklab(&argv), Input::Null, Output::Keep).expect_code(0)
}

/// The outcome of `option` in a side's list, or a failure showing the list.
fn option<'a>(side: &'a Value, option: &str) -> &'a Value {
    side.as_array()
        .and_then(|a| a.iter().find(|o| o["option"] == option))
        .unwrap_or_else(|| panic!("{option} missing from {side:#}"))
}

#[test]
fn bench_json_has_both_sides_socket_options() {
    let _loopback = loopback_exclusive();
    let out = bench_local(&[
        "--test", "stream", "-u", "-t", "0.3", "-b", "10M", "--rcvbuf", "256K", "--json",
    ]);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let opts = &doc["results"][0]["socket_options"];
    for side in ["client", "server"] {
        let rcvbuf = option(&opts[side], "SO_RCVBUF");
        assert_eq!(rcvbuf["level"], "SOL_SOCKET", "{rcvbuf}");
        assert_eq!(rcvbuf["asked"], 262144, "{rcvbuf}");
        // socket(7): the kernel doubles it; said so, and not counted as a change.
        assert_eq!(rcvbuf["read_back"], 524288, "{rcvbuf}");
        assert_eq!(rcvbuf["status"], "applied", "{rcvbuf}");
        assert_eq!(rcvbuf["sockets"], 1, "{rcvbuf}");
        assert_eq!(option(&opts[side], "SO_SNDBUF")["asked"], 4 << 20);
    }
    // Without --rcvbuf, a receive buffer beyond net.core.rmem_max when the process may
    // (SO_RCVBUFFORCE, CAP_NET_ADMIN), else SO_RCVBUF as large as rmem_max lets.
    let out = bench_local(&["--test", "stream", "-u", "-t", "0.3", "-b", "10M", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let server = &doc["results"][0]["socket_options"]["server"];
    if nix::unistd::geteuid().is_root() {
        let forced = option(server, "SO_RCVBUFFORCE");
        assert_eq!(forced["asked"], 16 << 20, "{forced}");
        assert_eq!(forced["read_back"], 32 << 20, "{forced}");
    } else {
        eprintln!("not root: SO_RCVBUFFORCE is not tried");
        assert_eq!(option(server, "SO_RCVBUF")["asked"], 4 << 20);
    }
    // The receiving side (the server, for an upload) set its receive options in its worker.
    for name in ["UDP_GRO", "SO_RXQ_OVFL", "SO_TIMESTAMPNS", "SO_RCVTIMEO"] {
        let o = option(&opts["server"], name);
        assert!(
            o["status"] == "applied" || o["status"] == "unsupported",
            "{o}"
        );
    }
    assert_eq!(option(&opts["server"], "UDP_GRO")["level"], "IPPROTO_UDP");

    let out = bench_local(&[
        "--test",
        "stream",
        "--tcp",
        "-t",
        "0.3",
        "-b",
        "50M",
        "--nodelay",
        "--notsent-lowat",
        "32K",
        "--rcvbuf",
        "256K",
        "--json",
    ]);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let opts = &doc["results"][0]["socket_options"];
    for side in ["client", "server"] {
        let nodelay = option(&opts[side], "TCP_NODELAY");
        assert_eq!(
            (&nodelay["level"], &nodelay["asked"]),
            (&"IPPROTO_TCP".into(), &1.into())
        );
        assert_eq!(option(&opts[side], "TCP_NOTSENT_LOWAT")["asked"], 32768);
        // The server's accepted connections too (its listener had it before the SYN-ACK).
        assert_eq!(option(&opts[side], "SO_RCVBUF")["read_back"], 524288);
        // No --sndbuf, and the peer on this host: the local send buffer, on both sides.
        assert_eq!(option(&opts[side], "SO_SNDBUF")["asked"], 256 << 10);
    }
    assert_eq!(doc["results"][0]["local_peer_sndbuf"], 256 << 10);
    // The receiver's SO_RCVLOWAT is read back: the kernel may cap it.
    assert!(option(&opts["server"], "SO_RCVLOWAT")["read_back"].is_u64());
}

#[test]
fn table_notes_an_option_the_kernel_capped_and_only_that() {
    let _loopback = loopback_exclusive();
    let max: u64 = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .expect("rmem_max")
        .trim()
        .parse()
        .expect("a number");
    let asked = (max * 4).to_string();
    let out = bench_local(&[
        "--test", "stream", "-u", "-t", "0.3", "-b", "10M", "--rcvbuf", &asked, "--sndbuf", "64K",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let notes: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("SO_RCVBUF") || l.contains("SO_SNDBUF"))
        .collect();
    // Capped at rmem_max, then doubled: one note per side, none for the doubled SO_SNDBUF.
    let capped = format!("SO_RCVBUF asked {asked}, kernel applied {}", max * 2);
    assert_eq!(notes.len(), 2, "{text}");
    assert!(
        notes[0].contains("client") && notes[0].contains(&capped),
        "{text}"
    );
    assert!(
        notes[1].contains("server") && notes[1].contains(&capped),
        "{text}"
    );
}

#[test]
fn multicast_join_round_trip_in_a_namespace() {
    use socklab::sock::options::OptStatus;
    use socklab::sock::{Proto, Sock};
    use socklab::trace::Recorder;
    if !socklab::netns::have_net_admin() {
        eprintln!("skipped: needs root to create a network namespace");
        return;
    }
    let ns = socklab::netns::Netns::create("sockopt").expect("netns");
    let group = "239.1.2.3".parse().unwrap();
    let (first, second, log) = ns
        .run(|| {
            let s = Sock::open(
                &"127.0.0.1:0".parse().unwrap(),
                Proto::Udp,
                &Recorder::off(),
            )
            .expect("socket");
            let first = s
                .join_multicast(group, Some("lo"))
                .map_err(|e| e.to_string());
            // IP_ADD_MEMBERSHIP has no getsockopt: a second join of the same group on the same
            // interface is how the kernel shows the first one took.
            let second = s
                .join_multicast(group, Some("lo"))
                .map_err(|e| e.errno_name());
            (first, second, s.option_log().outcomes())
        })
        .expect("run in the namespace");
    assert_eq!(first, Ok(()));
    assert_eq!(second, Err(Some("EADDRINUSE".into())));
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(
        (log[0].status, log[0].errno.as_deref()),
        (OptStatus::Refused, Some("EADDRINUSE"))
    );
}
