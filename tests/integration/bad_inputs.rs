//! A table of bad inputs: each exits 2 with exactly one line on stderr, and never panics or
//! hangs.

use std::net::{TcpListener, UdpSocket};

use crate::util::{Input, Output, socklab, spawn};

/// Bad addresses, option values, conflicting flags, missing arguments, an address in use, an
/// address no interface has, an unknown interface.
#[test]
fn each_bad_input_is_one_line_and_exit_2() {
    let tcp_taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp_taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tcp_in_use = tcp_taken.local_addr().unwrap().to_string();
    let udp_in_use = udp_taken.local_addr().unwrap().to_string();
    let cases: Vec<(&str, Vec<&str>)> = vec![
        // Addresses.
        ("no port", vec!["tcp", "listen", "127.0.0.1"]),
        ("port above 65535", vec!["tcp", "listen", "127.0.0.1:65536"]),
        ("negative port", vec!["tcp", "listen", "127.0.0.1:-1"]),
        (
            "port not a number",
            vec!["tcp", "listen", "127.0.0.1:http8"],
        ),
        ("octet above 255", vec!["tcp", "connect", "999.1.1.1:80"]),
        ("unclosed bracket", vec!["tcp", "connect", "[::1:80"]),
        ("no colon after bracket", vec!["tcp", "connect", "[::1]80"]),
        ("IPv4 in brackets", vec!["tcp", "connect", "[1.2.3.4]:80"]),
        (
            "unknown scope",
            vec!["tcp", "connect", "[fe80::1%nosuchif0]:80"],
        ),
        (
            "unresolvable name",
            vec!["tcp", "connect", "no-such-host.invalid:80"],
        ),
        (
            "-4 with an IPv6 address",
            vec!["tcp", "connect", "-4", "[::1]:80"],
        ),
        (
            "-6 with an IPv4 address",
            vec!["udp", "send", "-6", "127.0.0.1:80"],
        ),
        (
            "port 0 as destination",
            vec!["tcp", "connect", "127.0.0.1:0"],
        ),
        (
            "port 0 as UDP destination",
            vec!["udp", "send", "127.0.0.1:0"],
        ),
        (
            "bad --bind port",
            vec!["tcp", "connect", "127.0.0.1:1", "--bind", "127.0.0.1:99999"],
        ),
        // Option values.
        ("rcvbuf zero", vec!["tcp", "listen", ":0", "--rcvbuf", "0"]),
        (
            "rcvbuf not a size",
            vec!["tcp", "listen", ":0", "--rcvbuf", "lots"],
        ),
        (
            "sndbuf too big",
            vec!["tcp", "listen", ":0", "--sndbuf", "5G"],
        ),
        ("ttl zero", vec!["tcp", "listen", ":0", "--ttl", "0"]),
        (
            "ttl 256",
            vec!["udp", "recv", "--bind", ":0", "--ttl", "256"],
        ),
        ("tos 300", vec!["tcp", "listen", ":0", "--tos", "300"]),
        (
            "negative linger",
            vec!["tcp", "listen", ":0", "--linger", "-1"],
        ),
        (
            "max-clients zero",
            vec!["tcp", "listen", ":0", "-k", "--max-clients", "0"],
        ),
        (
            "recv-size zero",
            vec!["udp", "recv", "--bind", ":0", "--recv-size", "0"],
        ),
        (
            "recv-size too big",
            vec!["udp", "recv", "--bind", ":0", "--recv-size", "20M"],
        ),
        (
            "idle-timeout zero",
            vec!["udp", "recv", "--bind", ":0", "--idle-timeout", "0s"],
        ),
        (
            "idle-timeout words",
            vec!["udp", "recv", "--bind", ":0", "--idle-timeout", "soon"],
        ),
        (
            "count zero",
            vec!["udp", "recv", "--bind", ":0", "--count", "0"],
        ),
        (
            "framing raw:0",
            vec!["udp", "send", "127.0.0.1:9", "--framing", "raw:0"],
        ),
        (
            "framing unknown",
            vec!["udp", "send", "127.0.0.1:9", "--framing", "chunks"],
        ),
        (
            "framing over 64K",
            vec!["udp", "send", "127.0.0.1:9", "--framing", "raw:70000"],
        ),
        (
            "join a unicast address",
            vec!["udp", "recv", "--bind", ":0", "--join", "10.0.0.1"],
        ),
        (
            "join on unknown interface",
            vec![
                "udp",
                "recv",
                "--bind",
                ":0",
                "--join",
                "239.1.1.1%nosuchif0",
            ],
        ),
        (
            "multicast-loop maybe",
            vec!["udp", "recv", "--bind", ":0", "--multicast-loop", "maybe"],
        ),
        (
            "multicast-ttl 300",
            vec!["udp", "recv", "--bind", ":0", "--multicast-ttl", "300"],
        ),
        // Conflicting, missing or unknown flags.
        (
            "-4 and -6",
            vec!["tcp", "connect", "-4", "-6", "127.0.0.1:80"],
        ),
        ("recv without --bind", vec!["udp", "recv"]),
        ("peer without --to", vec!["udp", "peer", "--bind", ":0"]),
        ("unknown flag", vec!["tcp", "listen", ":0", "--bogus"]),
        (
            "--count on tcp connect",
            vec!["tcp", "connect", "127.0.0.1:9", "--count", "3"],
        ),
        ("unknown subcommand", vec!["tcp", "frobnicate"]),
        (
            "--bind of the other family",
            vec!["tcp", "connect", "127.0.0.1:9", "--bind", "[::1]:0"],
        ),
        // Setup failures the kernel reports.
        ("TCP port in use", vec!["tcp", "listen", &tcp_in_use]),
        (
            "UDP port in use",
            vec!["udp", "recv", "--bind", &udp_in_use],
        ),
        (
            "address no interface has",
            vec!["tcp", "listen", "192.0.2.1:0"],
        ),
        (
            "unknown interface",
            vec!["udp", "recv", "--bind", ":0", "--device", "nosuchif0"],
        ),
        (
            "v6only on IPv4",
            vec!["udp", "recv", "--bind", "127.0.0.1:0", "--v6only"],
        ),
    ];
    assert!(cases.len() >= 30);
    let mut wrong = Vec::new();
    for (what, args) in &cases {
        let mut p = spawn(socklab(args), Input::Null, Output::Keep);
        let f = p.finish();
        let lines: Vec<&str> = f.stderr.lines().collect();
        let ok = f.status.code() == Some(2)
            && lines.len() == 1
            && lines[0].starts_with("socklab: ")
            && !f.stderr.contains("panicked")
            && f.stdout.is_empty();
        if !ok {
            wrong.push(format!("--- {what}:\n{}", f.shown));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} bad inputs not one line + exit 2:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
    // The in-use errors name what holds the port (here a live listener).
    let mut p = spawn(
        socklab(&["tcp", "listen", &tcp_in_use]),
        Input::Null,
        Output::Keep,
    );
    let f = p.expect_code(2);
    f.check(
        f.stderr.contains("(EADDRINUSE)") && f.stderr.contains("LISTEN"),
        "EADDRINUSE with its hint",
    );
}
