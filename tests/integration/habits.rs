//! Habits from nc, ncat and iperf3: `HOST PORT` as two words, `udp recv ADDR`, `--bind HOST`
//! without a port, `-z` port checks over a range (TCP and UDP), `-q` after stdin ends (TCP and
//! UDP), listeners that can listen again right after a transfer (SO_REUSEADDR by default), and
//! one-line pointers for flags spelled differently here.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use crate::util::{Input, Output, V4, free_tcp_port, free_udp_port, server, socklab, spawn};

#[test]
fn z_checks_each_port_of_a_range_and_exits_by_the_result() {
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = open.local_addr().unwrap().port();
    let range = format!("{}-{}", port - 1, port + 1);
    let mut p = spawn(
        socklab(&["tcp", "connect", "-z", "127.0.0.1", &range]),
        Input::Null,
        Output::Keep,
    );
    let f = p.expect_code(0);
    let out = f.out();
    f.check(out.lines().count() == 3, "one line per port of the range");
    f.check(
        out.lines().any(|l| l == format!("127.0.0.1:{port} open")),
        "the listening port is reported open",
    );
    // -z sends nothing: the accepted connection ends at once, without data.
    let (mut conn, _) = open.accept().unwrap();
    let mut buf = Vec::new();
    conn.read_to_end(&mut buf).unwrap();
    assert!(buf.is_empty(), "-z sent {buf:?}");

    let closed = free_tcp_port(V4);
    let mut p = spawn(
        socklab(&[
            "tcp",
            "connect",
            "-z",
            &format!("127.0.0.1:{closed}"),
            "--json",
        ]),
        Input::Null,
        Output::Keep,
    );
    let f = p.expect_code(1);
    let v: serde_json::Value = serde_json::from_str(f.out().trim()).unwrap();
    f.check(
        v["type"] == "port" && v["data"]["open"] == false,
        "a closed port, as JSON",
    );
    f.check(
        v["data"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("ECONNREFUSED")),
        "the reason is named",
    );
}

/// `-q SECS`: the peer never closes, yet the client ends SECS after its stdin ended, having
/// sent everything and a FIN.
#[test]
fn q_quits_after_stdin_ends_though_the_peer_stays() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    let mut p = spawn(
        socklab(&["tcp", "connect", "127.0.0.1", &port, "-q", "0.2", "--trace"]),
        Input::Bytes(b"bye\n".to_vec()),
        Output::Keep,
    );
    let (mut conn, _) = l.accept().unwrap();
    let mut got = Vec::new();
    conn.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"bye\n");
    // `conn` stays open: without -q the client would wait for our FIN forever.
    let f = p.expect_code(0);
    f.check(
        f.stderr.contains("shutdown(3, SHUT_RD) = 0"),
        "-q ends the receive side with shutdown SHUT_RD, traced",
    );
    drop(conn);
}

/// `udp connect -z`: a closed port answers with an ICMP port unreachable (ECONNREFUSED on
/// recv), exit 1; a socklab receiver stays silent, which UDP cannot tell from a filter:
/// open|filtered, exit 0; an echo server answers: open.
#[test]
fn udp_z_tells_closed_from_open_or_filtered() {
    let closed = free_udp_port(V4).to_string();
    let mut p = spawn(
        socklab(&["udp", "connect", "-z", "127.0.0.1", &closed, "--json"]),
        Input::Null,
        Output::Keep,
    );
    let f = p.expect_code(1);
    let v: serde_json::Value = serde_json::from_str(f.out().trim()).unwrap();
    f.check(
        v["type"] == "port" && v["data"]["state"] == "closed" && v["data"]["open"] == false,
        "a closed UDP port, as JSON",
    );
    f.check(
        v["data"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("ECONNREFUSED")),
        "the ICMP port unreachable surfaced as ECONNREFUSED",
    );

    // A receiver that takes the one empty datagram -z sends, and says nothing back.
    let (mut rx, at) = server(
        &["udp", "recv", "127.0.0.1:0", "-c", "1", "--json"],
        Input::Null,
        Output::Keep,
    );
    let port = at.port().to_string();
    let mut p = spawn(
        socklab(&["udp", "connect", "-z", "127.0.0.1", &port, "-w", "300ms"]),
        Input::Null,
        Output::Keep,
    );
    let f = p.expect_code(0);
    f.check(
        f.out().trim() == format!("127.0.0.1:{port} open|filtered: no answer within 300ms (UDP cannot tell a port that stays silent from a firewall that drops)"),
        "a silent listener is open|filtered, said honestly",
    );
    let r = rx.expect_code(0);
    let d: serde_json::Value = serde_json::from_str(r.out().trim()).unwrap();
    r.check(
        d["data"]["len"] == 0 && d["data"]["real_len"] == 0,
        "-z sent one empty datagram",
    );

    let (_echo, at) = server(
        &["udp", "serve", "127.0.0.1:0", "--echo"],
        Input::Null,
        Output::Keep,
    );
    let port = at.port().to_string();
    let mut p = spawn(
        socklab(&["udp", "connect", "-z", "127.0.0.1", &port]),
        Input::Null,
        Output::Keep,
    );
    let f = p.expect_code(0);
    f.check(
        f.out().trim() == format!("127.0.0.1:{port} open: it answered (0 bytes)"),
        "an answering port is open",
    );
}

/// `-q SECS` on the UDP commands that read stdin and receive: the peer never answers, yet the
/// run ends SECS after stdin ended (shutdown SHUT_RD ends the blocked receive, traced; on an
/// unconnected socket the kernel says ENOTCONN but wakes the receiver all the same).
#[test]
fn udp_q_quits_after_stdin_ends_though_nothing_answers() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let to = format!("127.0.0.1:{port}");
    let runs: [(&[&str], &str); 2] = [
        (&["udp", "connect", "127.0.0.1", &port], "SHUT_RD) = 0"),
        (
            &["udp", "peer", "-b", "127.0.0.1:0", "--to", &to],
            "SHUT_RD) = -1 ENOTCONN",
        ),
    ];
    for (args, shutdown) in runs {
        let mut p = spawn(
            socklab(&[args, &["-q", "0.2", "--trace"]].concat()),
            Input::Bytes(b"hi\n".to_vec()),
            Output::Keep,
        );
        silent.set_read_timeout(Some(crate::util::WAIT)).unwrap();
        let mut buf = [0u8; 16];
        let (n, _) = silent.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hi\n");
        let f = p.expect_code(0);
        f.check(
            f.stderr.contains(shutdown),
            "-q ends the receive side, traced",
        );
    }
    // `udp serve` with stdin at EOF from the start and nobody sending: -q alone ends it.
    let mut p = spawn(
        socklab(&["udp", "serve", "127.0.0.1:0", "-q", "0.1"]),
        Input::Null,
        Output::Keep,
    );
    p.expect_code(0);
}

#[test]
fn host_port_as_two_words_for_tcp_and_udp() {
    let port = free_tcp_port(V4).to_string();
    let (mut l, _) = server(
        &["tcp", "listen", "127.0.0.1", &port],
        Input::Null,
        Output::Keep,
    );
    let mut c = spawn(
        socklab(&["tcp", "connect", "127.0.0.1", &port]),
        Input::Bytes(b"two words\n".to_vec()),
        Output::Keep,
    );
    c.expect_code(0);
    let f = l.expect_code(0);
    f.check(
        f.stdout == b"two words\n",
        "tcp listen HOST PORT got the bytes",
    );

    let port = free_udp_port(V4).to_string();
    let (mut r, _) = server(
        &["udp", "recv", "127.0.0.1", &port, "-c", "1"],
        Input::Null,
        Output::Keep,
    );
    let mut s = spawn(
        socklab(&["udp", "send", "127.0.0.1", &port]),
        Input::Bytes(b"positional\n".to_vec()),
        Output::Keep,
    );
    s.expect_code(0);
    let f = r.expect_code(0);
    f.check(
        f.stdout == b"positional\n",
        "udp recv HOST PORT got the datagram",
    );

    // `udp recv ADDR` (one word) and the --bind spelling both still work.
    for args in [
        vec!["udp", "recv", "127.0.0.1:0"],
        vec!["udp", "recv", "--bind", "127.0.0.1:0"],
    ] {
        let (mut r, at) = server(
            &[&args[..], &["--idle-timeout", "50ms"]].concat(),
            Input::Null,
            Output::Keep,
        );
        assert_ne!(at.port(), 0);
        r.expect_code(0);
    }
    // HOST:PORT and PORT together is a usage error.
    let mut bad = spawn(
        socklab(&["tcp", "connect", "127.0.0.1:1", "2"]),
        Input::Null,
        Output::Keep,
    );
    let f = bad.expect_code(2);
    f.check(
        f.stderr.contains("either HOST:PORT or HOST PORT"),
        "says why",
    );
}

/// `--bind HOST` without a port binds port 0: the kernel picks the port.
#[test]
fn bind_without_port_means_port_zero() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let to = l.local_addr().unwrap().to_string();
    let mut c = spawn(
        socklab(&["tcp", "connect", &to, "--bind", "127.0.0.1", "--trace"]),
        Input::Null,
        Output::Keep,
    );
    let (conn, from) = l.accept().unwrap();
    drop(conn);
    let f = c.expect_code(0);
    f.check(
        f.stderr.contains("bind(3, 127.0.0.1:0) = 0"),
        "bound port 0",
    );
    f.check(
        f.stderr.contains(&format!("local {from}")),
        "the kernel picked the port the server saw",
    );
    let (mut r, at) = server(
        &[
            "udp",
            "recv",
            "--bind",
            "127.0.0.1",
            "--idle-timeout",
            "50ms",
        ],
        Input::Null,
        Output::Keep,
    );
    assert!(at.ip().is_loopback() && at.port() != 0, "{at}");
    r.expect_code(0);
}

/// A server that closed first leaves its port in TIME_WAIT. Listening there again works at once
/// by default (SO_REUSEADDR, as nc sets it); `--no-reuseaddr` shows the EADDRINUSE that
/// SO_REUSEADDR avoids, with a hint naming TIME_WAIT.
#[test]
fn relisten_right_after_a_transfer() {
    let port = free_tcp_port(V4).to_string();
    let (mut l, at) = server(
        &["tcp", "listen", "127.0.0.1", &port],
        Input::Null,
        Output::Keep,
    );
    // stdin is empty, so the server sends its FIN first; we close after reading it, which puts
    // the server's side of the connection in TIME_WAIT.
    let mut c = TcpStream::connect(at).unwrap();
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).unwrap();
    c.write_all(b"done\n").unwrap();
    drop(c);
    let f = l.expect_code(0);
    f.check(f.stdout == b"done\n", "the transfer arrived");

    let mut no = spawn(
        socklab(&[
            "tcp",
            "listen",
            "127.0.0.1",
            &port,
            "--no-reuseaddr",
            "--trace",
        ]),
        Input::Null,
        Output::Keep,
    );
    let f = no.expect_code(2);
    f.check(
        f.stderr.contains("SO_REUSEADDR, 0) = 0"),
        "the trace shows SO_REUSEADDR set off",
    );
    f.check(f.stderr.contains("EADDRINUSE"), "bind fails over TIME_WAIT");
    f.check(
        f.stderr.contains("in TIME_WAIT") && f.stderr.contains("drop --no-reuseaddr"),
        "the hint names TIME_WAIT and the way out",
    );
    f.check(!f.stderr.contains("live"), "no live socket is blamed");

    let mut again = spawn(
        socklab(&[
            "tcp",
            "listen",
            "127.0.0.1",
            &port,
            "--idle-timeout",
            "50ms",
            "--trace",
        ]),
        Input::Null,
        Output::Keep,
    );
    let f = again.expect_code(0);
    f.check(
        f.stderr.contains("SO_REUSEADDR, 1) = 0") && f.stderr.contains("listen(3, "),
        "SO_REUSEADDR by default: listening again works at once",
    );
}

/// A flag from nc or iperf3 that socklab spells differently: one line naming socklab's
/// spelling, exit 2, and no "use -- -x" tip.
#[test]
fn foreign_flags_point_to_socklab_spelling() {
    let cases: [(&[&str], &str); 5] = [
        (&["bench", "client", "h", "-J"], "--json"),
        (&["tcp", "listen", "-l", "-p", "9000"], "tcp listen"),
        (&["tcp", "connect", "-p", "9000", "h"], "--bind :PORT"),
        (&["bench", "-c", "h"], "bench client HOST"),
        (&["bench", "-s"], "bench server"),
    ];
    for (args, needle) in cases {
        let mut p = spawn(socklab(args), Input::Null, Output::Keep);
        let f = p.expect_code(2);
        f.check(f.stderr.lines().count() == 1, "one line");
        f.check(f.stderr.contains(needle), needle);
        f.check(!f.stderr.contains("-- -"), "no '-- -x' tip");
    }
}

/// EADDRINUSE says what holds the port: a live TCP listener (its state and our process), a
/// bound UDP socket (in UDP's words: no TIME_WAIT), each created here on loopback.
#[test]
fn in_use_hints_name_the_holder() {
    let me = format!("pid {}", std::process::id());
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let at = l.local_addr().unwrap().to_string();
    let mut p = spawn(socklab(&["tcp", "listen", &at]), Input::Null, Output::Keep);
    let f = p.expect_code(2);
    f.check(f.stderr.lines().count() == 1, "one line");
    f.check(
        f.stderr
            .contains(&format!("a live socket listens on it: LISTEN {at}")),
        "names the live listener and its state",
    );
    f.check(f.stderr.contains(&me), "names the process holding it");
    f.check(
        !f.stderr.contains("TIME_WAIT"),
        "no TIME_WAIT talk for a live socket",
    );

    let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let at = u.local_addr().unwrap().to_string();
    let mut p = spawn(socklab(&["udp", "recv", &at]), Input::Null, Output::Keep);
    let f = p.expect_code(2);
    f.check(
        f.stderr
            .contains(&format!("a UDP socket is bound to it: {at}"))
            && f.stderr.contains(&me),
        "names the UDP socket and its process",
    );
    f.check(!f.stderr.contains("TIME_WAIT"), "UDP has no TIME_WAIT");
}
