//! `socklab udp …` end to end on 127.0.0.1 and ::1: every pattern, datagram boundaries,
//! truncation with the real length, zero-length datagrams, ECONNREFUSED on connected UDP,
//! EMSGSIZE, and the bounds of the receivers.

use crate::util::{Fam, Input, Output, free_udp_port, on_both, server, socklab, spawn};

/// `udp send` (no bind) → `udp recv --bind`: one datagram per line, each shown with its
/// source (the sender's implicit bind) and length.
#[test]
fn send_to_recv_keeps_one_datagram_per_line() {
    on_both(|fam| {
        let (mut r, addr) = server(
            &[
                "udp",
                "recv",
                "--bind",
                &fam.any_port(),
                "--show",
                "--count",
                "3",
            ],
            Input::Null,
            Output::Keep,
        );
        let mut s = spawn(
            socklab(&["udp", "send", &addr.to_string(), "-v"]),
            Input::Bytes(b"a\nbb\n\n".to_vec()),
            Output::Keep,
        );
        let sf = s.expect_code(0);
        let from = sf
            .stderr
            .split("sent from ")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .expect("the sender says where the kernel bound it")
            .parse::<std::net::SocketAddr>()
            .unwrap();
        let rf = r.expect_code(0);
        let src = fam.addr(from.port());
        let want = format!(
            "from {src} len 2: \"a\\n\"\nfrom {src} len 3: \"bb\\n\"\nfrom {src} len 1: \"\\n\"\n"
        );
        rf.check(rf.out() == want, &format!("expected:\n{want}"));
    });
}

/// Both sides bound (`udp peer`), each sends to the other with sendto and sees the other's
/// bound port as the source. B stops after one datagram (--count 1); A runs until Ctrl-C.
#[test]
fn peer_to_peer_both_ways() {
    on_both(|fam| {
        let (pa, pb) = (free_udp_port(fam), free_udp_port(fam));
        let peer = |me: u16, other: u16, count: &[&str]| {
            let mut args = vec![
                "udp".to_string(),
                "peer".into(),
                "--bind".into(),
                fam.addr(me),
                "--to".into(),
                fam.addr(other),
                "--show".into(),
            ];
            args.extend(count.iter().map(|s| s.to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            server(&args, Input::Open, Output::Keep).0
        };
        let mut a = peer(pa, pb, &[]);
        let mut b = peer(pb, pa, &["--count", "1"]);
        b.write_stdin(b"from b\n");
        b.close_stdin();
        a.wait_stdout(1);
        a.write_stdin(b"from a\n");
        a.close_stdin();
        let bf = b.expect_code(0);
        bf.check(
            bf.out() == format!("from {} len 7: \"from a\\n\"\n", fam.addr(pa)),
            "b got a's datagram from a's bound port",
        );
        a.interrupt();
        let af = a.expect_code(130);
        af.check(
            af.out() == format!("from {} len 7: \"from b\\n\"\n", fam.addr(pb)),
            "a got b's datagram from b's bound port",
        );
        af.check(
            af.stderr
                .contains("sent 1 datagrams (7 bytes), received 1 datagrams (7 bytes)"),
            "Ctrl-C prints the summary",
        );
    });
}

/// Connected UDP (`udp connect`) against the bound side (`udp serve --echo`): each datagram
/// comes back from the address the client connected to.
#[test]
fn connect_to_serve_echo() {
    on_both(|fam| {
        let (mut srv, addr) = server(
            &[
                "udp",
                "serve",
                "--bind",
                &fam.any_port(),
                "--echo",
                "--count",
                "3",
            ],
            Input::Null,
            Output::Keep,
        );
        let mut c = spawn(
            socklab(&["udp", "connect", &addr.to_string(), "--count", "3"]),
            Input::Bytes(b"one\ntwo\nthree\n".to_vec()),
            Output::Keep,
        );
        let cf = c.expect_code(0);
        cf.check(
            cf.out() == "one\ntwo\nthree\n",
            "every datagram echoed, in order",
        );
        let sf = srv.expect_code(0);
        sf.check(
            sf.stderr
                .contains("sent 3 datagrams (14 bytes), received 3 datagrams (14 bytes)"),
            "server summary",
        );
    });
}

/// `--framing raw:4` cuts stdin into 4-byte datagrams; the receiver sees 4, 4, 2.
#[test]
fn raw_framing_boundaries_are_preserved() {
    let (mut r, addr) = server(
        &[
            "udp",
            "recv",
            "--bind",
            "127.0.0.1:0",
            "--show",
            "--count",
            "3",
        ],
        Input::Null,
        Output::Keep,
    );
    let mut s = spawn(
        socklab(&["udp", "send", &addr.to_string(), "--framing", "raw:4"]),
        Input::Bytes(b"abcdefghij".to_vec()),
        Output::Keep,
    );
    s.expect_code(0);
    let rf = r.expect_code(0);
    let lens: Vec<&str> = rf
        .out()
        .lines()
        .map(|l| l.split(" len ").nth(1).unwrap_or("").to_string())
        .map(|t| &*t.leak())
        .collect();
    rf.check(
        lens == ["4: \"abcd\"", "4: \"efgh\"", "2: \"ij\""],
        "three datagrams of 4, 4, 2 bytes",
    );
}

/// A 6-byte datagram into a 3-byte receive buffer: reported with its real length, with --show
/// and without (the kept bytes on stdout, a warning on stderr), and in JSON.
#[test]
fn truncation_reports_the_real_length() {
    on_both(|fam| {
        for mode in ["--show", "--json", "plain"] {
            let mut args = vec![
                "udp",
                "recv",
                "--bind",
                "",
                "--recv-size",
                "3",
                "--count",
                "1",
            ];
            let bind = fam.any_port();
            args[3] = &bind;
            if mode != "plain" {
                args.push(mode);
            }
            let (mut r, addr) = server(&args, Input::Null, Output::Keep);
            spawn(
                socklab(&["udp", "send", &addr.to_string()]),
                Input::Bytes(b"hello\n".to_vec()),
                Output::Keep,
            )
            .expect_code(0);
            let rf = r.expect_code(0);
            match mode {
                "--show" => rf.check(
                    rf.out()
                        .contains("len 3 TRUNCATED real_len 6 (3 bytes discarded): \"hel\""),
                    "truncation shown",
                ),
                "--json" => {
                    let v: serde_json::Value = serde_json::from_str(rf.out().trim()).unwrap();
                    rf.check(v["type"] == "datagram", "a datagram record");
                    let d = &v["data"];
                    rf.check(
                        d["len"] == 3 && d["real_len"] == 6 && d["truncated"] == true,
                        "len, real_len, truncated in JSON",
                    );
                }
                _ => {
                    rf.check(rf.out() == "hel", "the kept bytes on stdout");
                    rf.check(
                        rf.stderr.contains("truncated: real length 6, kept 3"),
                        "a warning with the real length",
                    );
                }
            }
        }
    });
}

/// `--framing whole` with empty stdin sends one zero-length datagram; the receiver shows it as
/// a datagram, not as an end of file, and keeps receiving.
#[test]
fn zero_length_datagram_is_received_and_shown() {
    on_both(|fam| {
        let (mut r, addr) = server(
            &[
                "udp",
                "recv",
                "--bind",
                &fam.any_port(),
                "--show",
                "--count",
                "2",
            ],
            Input::Null,
            Output::Keep,
        );
        for input in [Input::Null, Input::Bytes(b"after\n".to_vec())] {
            spawn(
                socklab(&["udp", "send", &addr.to_string(), "--framing", "whole"]),
                input,
                Output::Keep,
            )
            .expect_code(0);
        }
        let rf = r.expect_code(0);
        let lines: Vec<String> = rf.out().lines().map(String::from).collect();
        rf.check(lines.len() == 2, "two datagrams");
        rf.check(
            lines[0].contains(" len 0: empty datagram (not an end of file)"),
            "the empty datagram shown as such",
        );
        rf.check(
            lines[1].ends_with("len 6: \"after\\n\""),
            "reception went on",
        );
    });
}

/// Connected UDP to a port nobody listens on: the ICMP port unreachable comes back as
/// ECONNREFUSED on the next receive; one line, exit 1.
#[test]
fn udp_connect_to_a_closed_port_is_refused() {
    on_both(|fam| {
        let closed = free_udp_port(fam);
        let mut c = spawn(
            socklab(&["udp", "connect", &fam.addr(closed)]),
            Input::Bytes(b"anyone?\n".to_vec()),
            Output::Keep,
        );
        let cf = c.expect_code(1);
        let lines: Vec<&str> = cf.stderr.lines().collect();
        cf.check(
            lines.len() == 1 && lines[0].contains("(ECONNREFUSED)"),
            "one line naming ECONNREFUSED",
        );
    });
}

/// The largest datagram goes through whole; one byte more is EMSGSIZE, never split.
#[test]
fn datagram_over_the_limit_is_emsgsize() {
    on_both(|fam: Fam| {
        // IPv4: 65535 - 20 (IP) - 8 (UDP); IPv6: 65535 - 8 (the IPv6 header is not counted).
        let max = if fam.host.contains(':') { 65527 } else { 65507 };
        let (mut r, addr) = server(
            &[
                "udp",
                "recv",
                "--bind",
                &fam.any_port(),
                "--show",
                "--count",
                "1",
            ],
            Input::Null,
            Output::Keep,
        );
        spawn(
            socklab(&["udp", "send", &addr.to_string(), "--framing", "whole"]),
            Input::Bytes(vec![b'x'; max]),
            Output::Keep,
        )
        .expect_code(0);
        let rf = r.expect_code(0);
        rf.check(
            rf.out().contains(&format!(" len {max}: ")),
            "the maximum datagram arrives whole",
        );
        let mut over = spawn(
            socklab(&["udp", "send", &addr.to_string(), "--framing", "whole"]),
            Input::Bytes(vec![b'x'; max + 1]),
            Output::Keep,
        );
        let of = over.expect_code(1);
        of.check(
            of.stderr.lines().count() == 1 && of.stderr.contains("(EMSGSIZE)"),
            "one EMSGSIZE line",
        );
    });
}

/// `--count N` stops after N datagrams even when more arrive; `--idle-timeout` stops a
/// receiver nothing talks to.
#[test]
fn count_and_idle_timeout_bound_the_receivers() {
    let (mut r, addr) = server(
        &["udp", "recv", "--bind", "127.0.0.1:0", "--count", "2"],
        Input::Null,
        Output::Keep,
    );
    spawn(
        socklab(&["udp", "send", &addr.to_string()]),
        Input::Bytes(b"1\n2\n3\n4\n".to_vec()),
        Output::Keep,
    )
    .expect_code(0);
    let rf = r.expect_code(0);
    rf.check(rf.out() == "1\n2\n", "exactly two datagrams");

    for cmd in [
        vec!["udp", "recv", "--bind", "127.0.0.1:0"],
        vec!["udp", "serve", "--bind", "127.0.0.1:0", "--echo"],
    ] {
        let mut args = cmd.clone();
        args.extend(["--idle-timeout", "200ms"]);
        let (mut idle, _) = server(&args, Input::Null, Output::Keep);
        let f = idle.expect_code(0);
        f.check(f.stderr.contains("idle timeout"), "says it timed out");
    }
}

/// `udp serve` without --echo: prints what arrives, and sends its stdin lines back to the
/// source of the latest datagram (with sendto), which the connected client receives.
#[test]
fn serve_replies_to_the_latest_source() {
    on_both(|fam| {
        let (mut srv, addr) = server(
            &["udp", "serve", "--bind", &fam.any_port()],
            Input::Open,
            Output::Keep,
        );
        let mut c = spawn(
            socklab(&["udp", "connect", &addr.to_string(), "--count", "1"]),
            Input::Bytes(b"hello server\n".to_vec()),
            Output::Keep,
        );
        srv.wait_stdout(13);
        srv.write_stdin(b"hello client\n");
        let cf = c.expect_code(0);
        cf.check(cf.out() == "hello client\n", "the reply reached the client");
        srv.interrupt();
        let sf = srv.expect_code(130);
        sf.check(sf.out() == "hello server\n", "the datagram printed");
        sf.check(
            sf.stderr
                .contains("sent 1 datagrams (13 bytes), received 1 datagrams (13 bytes)"),
            "summary",
        );
    });
}

/// Issue 8, "silent kernel drops": 20 000 datagrams as fast as a loopback sender goes to
/// `udp recv --rcvbuf 4K`. The summary's drop count (the socket's SO_RXQ_OVFL counter) is
/// exactly sent − received, and the --json summary carries the same figures.
#[test]
fn kernel_drops_are_counted_in_the_summary() {
    const SENT: u64 = 20_000;
    for json in [false, true] {
        let mut args = vec![
            "udp",
            "recv",
            "--bind",
            "127.0.0.1:0",
            "--rcvbuf",
            "4K",
            "--idle-timeout",
            "1s",
        ];
        if json {
            args.push("--json");
        }
        let (mut r, addr) = server(&args, Input::Null, Output::Hash);
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..SENT {
            tx.send_to(format!("{i:>99}\n").as_bytes(), addr).unwrap();
        }
        let f = r.expect_code(0);
        let line = f
            .stderr
            .lines()
            .find(|l| l.contains("dropped"))
            .unwrap_or_else(|| panic!("no summary with drops\n{}", f.shown));
        let (received, dropped) = if json {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let d = &v["data"];
            (
                d["datagrams_received"].as_u64().unwrap(),
                d["kernel_drops"].as_u64().unwrap(),
            )
        } else {
            let num = |key: &str| -> u64 {
                let at = line.find(key).unwrap() + key.len();
                line[at..].split(' ').next().unwrap().parse().unwrap()
            };
            (num("received "), num("dropped "))
        };
        f.check(
            dropped > 0
                && received + dropped == SENT
                && (json || f.stdout_digest.len == received * 100),
            &format!("sent {SENT}, received {received}, dropped {dropped}"),
        );
        eprintln!("json={json}: sent {SENT}, received {received}, dropped {dropped}");
    }
}
