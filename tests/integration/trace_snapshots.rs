//! `--trace` for each pattern lists exactly the calls it makes, in order (insta snapshots).
//! Ports and file descriptors vary from run to run and are redacted: ports as `[PORT]`, fds
//! renamed by first appearance (`fd#1`, `fd#2`). Where two threads of one process trace
//! (the stdin → socket and socket → stdout directions), the test orders their calls through
//! the peer, waiting on a trace line before it lets the next thing happen.

use std::collections::HashMap;

use crate::util::{Input, Output, Proc, server, socklab, spawn};

/// Renames every fd by order of first appearance: the first socket is `fd#1`, and so on.
/// fds 0 and 1 (stdin, stdout, as splice arguments) stay as they are.
fn normalize(trace: &str) -> String {
    let mut names: HashMap<String, String> = HashMap::new();
    let mut name = |fd: &str| -> String {
        let n = names.len() + 1;
        names
            .entry(fd.to_string())
            .or_insert(format!("fd#{n}"))
            .clone()
    };
    let mut out = String::new();
    for line in trace.lines() {
        let mut line = line.to_string();
        if let Some(open) = line.find('(')
            && !line.starts_with(' ')
            && !line.starts_with("socklab:")
        {
            let call = line[..open].to_string();
            // The first argument is the fd, except for socket(2).
            if call != "socket" {
                let rest = &line[open + 1..];
                let end = rest.find([',', ')']).unwrap_or(0);
                if end > 0 && rest[..end].bytes().all(|b| b.is_ascii_digit()) {
                    let fd = name(&rest[..end]);
                    line = format!("{call}({fd}{}", &rest[end..]);
                }
            }
            // socket(2) and accept(2) return a new fd.
            if (call == "socket" || call == "accept")
                && let Some((head, result)) = line.rsplit_once(") = ")
                && result.bytes().all(|b| b.is_ascii_digit())
            {
                line = format!("{head}) = {}", name(result));
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Which thread of a relay makes a call: the one copying stdin to the socket, the one copying
/// the socket to stdout, or neither (setup, and socklab's own messages).
fn direction(line: &str) -> usize {
    let call = line.split('(').next().unwrap_or("");
    match call {
        "send" | "sendto" | "shutdown" => 1,
        "recv" | "recvmsg" => 2,
        "splice" if line.contains("-> socket") => 1,
        "splice" => 2,
        _ => 0,
    }
}

/// For commands that relay both ways at once (two threads), the calls of each direction are
/// in order but the two directions interleave as the scheduler likes: they are listed apart,
/// after the setup calls and messages.
fn by_direction(trace: &str) -> String {
    let mut groups = [String::new(), String::new(), String::new()];
    let mut current = 0;
    for line in trace.lines() {
        if !line.starts_with(' ') {
            current = if line.starts_with("socklab:") {
                0
            } else {
                direction(line)
            };
        }
        groups[current].push_str(line);
        groups[current].push('\n');
    }
    format!(
        "{}-- stdin -> socket, in order:\n{}-- socket -> stdout, in order:\n{}",
        groups[0], groups[1], groups[2]
    )
}

/// Snapshots `p`'s trace; `threads`: the command relays both ways at once.
fn snapshot(name: &str, p: &Proc, threads: bool) {
    let mut text = normalize(&p.stderr());
    if threads {
        text = by_direction(&text);
    }
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"(\d+\.\d+\.\d+\.\d+|\]):\d+", "$1:[PORT]");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!(name, text));
}

/// TCP: the client sends, half-closes; the listener sees the end, replies, closes.
#[test]
fn tcp_listen_and_connect() {
    let (mut l, addr) = server(
        &["tcp", "listen", "127.0.0.1:0", "--trace"],
        Input::Open,
        Output::Keep,
    );
    let mut c = spawn(
        socklab(&["tcp", "connect", &addr.to_string(), "--trace"]),
        Input::Bytes(b"hello\n".to_vec()),
        Output::Keep,
    );
    // The listener has read the client's data and its FIN (splice returned 0)…
    l.wait_line("socket -> fd 1, 1048576) = 0");
    // …and only now replies on the half-closed connection.
    l.write_stdin(b"bye\n");
    l.close_stdin();
    let cf = c.expect_code(0);
    cf.check(cf.out() == "bye\n", "reply");
    l.expect_code(0);
    snapshot("tcp_listen", &l, true);
    snapshot("tcp_connect", &c, true);
}

/// TCP connect to a closed port: the refused connect(2) and nothing after it.
#[test]
fn tcp_connect_refused() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let mut c = spawn(
        socklab(&["tcp", "connect", &addr.to_string(), "--trace"]),
        Input::Null,
        Output::Keep,
    );
    c.expect_code(1);
    snapshot("tcp_connect_refused", &c, false);
}

/// UDP send → recv: no bind on the sender (the implicit bind shows after its first sendto).
#[test]
fn udp_send_and_recv() {
    let (mut r, addr) = server(
        &[
            "udp",
            "recv",
            "--bind",
            "127.0.0.1:0",
            "--count",
            "2",
            "--trace",
        ],
        Input::Null,
        Output::Keep,
    );
    let mut s = spawn(
        socklab(&["udp", "send", &addr.to_string(), "--trace"]),
        Input::Bytes(b"a\nbb\n".to_vec()),
        Output::Keep,
    );
    s.expect_code(0);
    r.expect_code(0);
    snapshot("udp_recv", &r, false);
    snapshot("udp_send", &s, false);
}

/// UDP peers: both bind; B sends first, A answers after it received.
#[test]
fn udp_peer() {
    let pa = crate::util::free_udp_port(crate::util::V4);
    let pb = crate::util::free_udp_port(crate::util::V4);
    let a_addr = format!("127.0.0.1:{pa}");
    let b_addr = format!("127.0.0.1:{pb}");
    let (mut a, _) = server(
        &["udp", "peer", "--bind", &a_addr, "--to", &b_addr, "--trace"],
        Input::Open,
        Output::Keep,
    );
    let (mut b, _) = server(
        &[
            "udp", "peer", "--bind", &b_addr, "--to", &a_addr, "--count", "1", "--trace",
        ],
        Input::Open,
        Output::Keep,
    );
    b.write_stdin(b"ping\n");
    b.close_stdin();
    a.wait_line("recvmsg(");
    a.write_stdin(b"pong\n");
    a.close_stdin();
    b.expect_code(0);
    a.wait_line("sendto(");
    a.interrupt();
    a.expect_code(130);
    snapshot("udp_peer_a", &a, true);
    snapshot("udp_peer_b", &b, true);
}

/// Connected UDP against `serve --echo`: send/recv without addresses on the client, recvmsg and
/// sendto to the source on the server.
#[test]
fn udp_connect_and_serve() {
    let (mut srv, addr) = server(
        &[
            "udp",
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--echo",
            "--count",
            "1",
            "--trace",
        ],
        Input::Null,
        Output::Keep,
    );
    let mut c = spawn(
        socklab(&[
            "udp",
            "connect",
            &addr.to_string(),
            "--count",
            "1",
            "--trace",
        ]),
        Input::Bytes(b"ping\n".to_vec()),
        Output::Keep,
    );
    c.expect_code(0);
    srv.expect_code(0);
    snapshot("udp_serve", &srv, false);
    snapshot("udp_connect", &c, true);
}

/// Connected UDP to a closed port: the ICMP error comes back on the recvmsg.
#[test]
fn udp_connect_refused() {
    let closed = crate::util::free_udp_port(crate::util::V4);
    let mut c = spawn(
        socklab(&["udp", "connect", &format!("127.0.0.1:{closed}"), "--trace"]),
        Input::Bytes(b"anyone?\n".to_vec()),
        Output::Keep,
    );
    c.expect_code(1);
    snapshot("udp_connect_refused", &c, true);
}

/// `--trace --json`: every stderr line is a JSON `syscall` record (or a message record), with
/// the call, its result and the implicit bind's local address.
#[test]
fn trace_as_json_lines() {
    let (mut r, addr) = server(
        &["udp", "recv", "--bind", "127.0.0.1:0", "--count", "1"],
        Input::Null,
        Output::Keep,
    );
    let mut s = spawn(
        socklab(&["udp", "send", &addr.to_string(), "--trace", "--json"]),
        Input::Bytes(b"x\n".to_vec()),
        Output::Keep,
    );
    let sf = s.expect_code(0);
    r.expect_code(0);
    let records: Vec<serde_json::Value> = sf
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{}", sf.shown)))
        .collect();
    let calls: Vec<&str> = records
        .iter()
        .filter(|r| r["type"] == "syscall")
        .map(|r| r["data"]["call"].as_str().unwrap_or("?"))
        .collect();
    sf.check(calls == ["socket", "sendto"], "socket then sendto");
    let sendto = &records[1]["data"];
    sf.check(
        sendto["local"]
            .as_str()
            .is_some_and(|l| l.starts_with("0.0.0.0:") && !l.ends_with(":0")),
        "the implicit bind shows on the sendto record",
    );
}

/// Options come before bind/sendto, in a fixed order, and buffer sizes are read back
/// (getsockopt) right after being set.
#[test]
fn udp_send_with_options() {
    let (mut r, addr) = server(
        &["udp", "recv", "--bind", "127.0.0.1:0", "--count", "1"],
        Input::Null,
        Output::Keep,
    );
    let mut s = spawn(
        socklab(&[
            "udp",
            "send",
            &addr.to_string(),
            "--reuseaddr",
            "--rcvbuf",
            "64K",
            "--sndbuf",
            "32K",
            "--broadcast",
            "--ttl",
            "3",
            "--tos",
            "16",
            "--multicast-ttl",
            "2",
            "--trace",
        ]),
        Input::Bytes(b"x\n".to_vec()),
        Output::Keep,
    );
    let sf = s.expect_code(0);
    r.expect_code(0);
    sf.check(
        sf.stderr
            .contains("SO_RCVBUF asked 65536 bytes, kernel applied 131072"),
        "the doubled SO_RCVBUF is reported (socket(7))",
    );
    snapshot("udp_send_options", &s, false);
}
