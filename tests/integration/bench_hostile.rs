//! `bench server` against hostile and unlucky peers, with real sockets on loopback (and in
//! namespaces the test makes, as root). Each test is named after the incident it guards
//! against, is bounded in count and time, and prints the figures it measured (the server's
//! RSS from /proc/PID/status, its open fds from /proc/PID/fd, how long a real client took to
//! start) beside what it asserts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use socklab::bench::client::{self, ClientCfg};
use socklab::bench::protocol::{self, Message, TestParams};

use crate::util::{Input, Output, Proc, WAIT, have_nft, nft, socklab, spawn};

/// The server's resident set, KiB (VmRSS in /proc/PID/status).
pub(crate) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("read /proc/PID/status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// Open file descriptors of `pid` (entries of /proc/PID/fd).
pub(crate) fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .count()
}

/// Polls (bounded) until `pid` has `want` fds again; returns the last count seen.
fn fds_settle(pid: u32, want: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = fd_count(pid);
        if n == want || Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Raises this test process's soft RLIMIT_NOFILE to the hard limit (children inherit it).
fn raise_nofile(need: u64) -> bool {
    let soft = socklab::bench::server::raise_fd_limit().unwrap_or(0);
    if soft < need {
        eprintln!("skipped: RLIMIT_NOFILE cannot be raised to {need} here (soft limit {soft})");
        return false;
    }
    eprintln!("RLIMIT_NOFILE raised to {soft} (soft = hard) for this test and its server");
    true
}

/// A loopback address with a port known to be free, for `--bind` (not port 0: the lab's
/// leftover-process check takes any child bound to `127.0.0.1:0` for one of its own).
fn bind_addr() -> String {
    crate::util::V4.addr(crate::util::free_tcp_port(crate::util::V4))
}

/// Starts `socklab bench server --bind 127.0.0.1:PORT ARGS` and waits for its address.
fn server(args: &[&str]) -> (Proc, SocketAddr) {
    let bind = bind_addr();
    let mut all = vec!["bench", "server", "--bind", &bind];
    all.extend_from_slice(args);
    let mut cmd = socklab(&all);
    // glibc creates a malloc arena per contending thread and never returns it: with tests
    // overlapping that is megabytes of RSS that are not a leak. Two arenas keep the RSS
    // figures about what the server holds.
    cmd.env("MALLOC_ARENA_MAX", "2");
    let p = spawn(cmd, Input::Null, Output::Keep);
    let addr = p.ready();
    (p, addr)
}

/// Test parameters from JSON (a TCP stream of 200 ms up, unless `extra` says otherwise).
pub(crate) fn params(extra: serde_json::Value) -> TestParams {
    let mut v = serde_json::json!({
        "kind": "stream", "transport": "tcp", "size": 1472, "duration_ms": 200,
        "parallel": 1, "dirs": ["up"], "rate_bps": 0, "interval_ms": 0, "gso": true,
        "gro": true, "busy_poll": false, "rcvbuf": null, "sndbuf": null, "nodelay": false,
    });
    if let (Some(base), Some(more)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in more {
            base.insert(k.clone(), x.clone());
        }
    }
    serde_json::from_value(v).expect("valid test parameters")
}

/// Connects and reads the server's Hello; returns the connection and the nonce.
pub(crate) fn hello(addr: SocketAddr) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    match protocol::read_message(&mut s).expect("hello") {
        Message::Hello { nonce, .. } => (s, nonce),
        other => panic!("expected hello, got {other:?}"),
    }
}

/// Sends `body` as one frame (raw JSON, possibly not a valid message) and reads the answer.
fn exchange(s: &mut TcpStream, body: &[u8]) -> Result<Message, protocol::FrameError> {
    let mut frame = vec![b'S', b'C', 1, 0];
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(body);
    s.write_all(&frame).expect("send frame");
    protocol::read_message(s)
}

/// A Start message as JSON, authenticated for `nonce` when a token is given.
fn start_json(p: &serde_json::Value, token: Option<&str>, nonce: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "type": "start",
        "auth": token.map(|t| protocol::auth_tag(t, nonce)),
        "params": p,
    }))
    .expect("json")
}

fn cfg(addr: SocketAddr, token: Option<&str>) -> ClientCfg {
    ClientCfg {
        server: addr,
        token: token.map(str::to_string),
        cpus: Vec::new(),
        timeout: Duration::from_secs(10),
    }
}

/// Runs a short real test with the library client; panics with the error if it fails.
fn real_test(addr: SocketAddr, token: Option<&str>, p: &TestParams) -> Duration {
    let t0 = Instant::now();
    let mut first = None;
    let out = client::run_test(&cfg(addr, token), p, &mut |_, _| {
        first.get_or_insert_with(|| t0.elapsed());
    })
    .unwrap_or_else(|e| panic!("a real test must run: {e}"));
    let bytes: u64 = out.streams.iter().map(|s| s.bytes).sum();
    assert!(bytes > 0, "the real test moved data: {:?}", out.streams);
    first.unwrap_or_else(|| t0.elapsed())
}

/// Whether the server closed `s`: reads what is queued (its Hello) without blocking;
/// Some(true) on EOF or reset, Some(false) if open, and nothing is ever written to it.
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// ESNET-SECADV-2023-0002 (iperf3: idle connections lock the server out). 1000 connections
/// that never speak and 1000 that send one byte of a frame header a second (from 8 loopback
/// source addresses, so the per-source share holds them all) sit in the pending pool; a
/// client with the token completes its handshake and runs a real test while they are all
/// still open. Then every stalled socket is closed by the server at its handshake deadline.
/// A second server with a pool smaller than the flood shows the eviction rule: the real
/// client still gets in.
#[test]
fn secadv_2023_0002_idle_and_slow_connections_do_not_lock_out_a_real_client() {
    let _loopback = crate::util::loopback_exclusive();
    if !raise_nofile(6000) {
        return;
    }
    for (label, flags, sources) in [
        (
            "pool holds the flood",
            &["--handshake-timeout", "5s"][..],
            8u8,
        ),
        (
            "pool of 256, oldest evicted",
            &["--handshake-timeout", "5s", "--max-pending", "256"][..],
            1,
        ),
    ] {
        // Two slots: the timed handshake below holds one until the server sees it closed.
        let mut args = vec!["--token", "s3cret", "--max-tests", "2"];
        args.extend_from_slice(flags);
        let (srv, addr) = server(&args);
        let pid = srv.pid();
        let (rss0, fd0) = (rss_kib(pid), fd_count(pid));
        let t_open = Instant::now();
        let mut hostile: Vec<(TcpStream, bool, Instant)> = Vec::with_capacity(2000);
        for i in 0..2000u32 {
            let src = format!("127.0.0.{}:0", 2 + (i % u32::from(sources)));
            let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            sock.bind(&src.parse::<SocketAddr>().expect("addr").into())
                .expect("bind a loopback source");
            sock.connect(&addr.into()).expect("connect");
            hostile.push((sock.into(), i % 2 == 1, Instant::now()));
        }
        let opened_in = t_open.elapsed();
        // The slow half sends one byte of a valid header a second until the real test ran.
        let header = [b'S', b'C', 1, 0, 0, 0, 1, 0];
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let slow: Vec<TcpStream> = hostile
            .iter()
            .filter(|h| h.1)
            .map(|h| h.0.try_clone().expect("dup"))
            .collect();
        let stop2 = stop.clone();
        let dribbler = std::thread::spawn(move || {
            for byte in header.iter().cycle().take(10) {
                for mut s in &slow {
                    let _ = s.write(&[*byte]);
                }
                let until = Instant::now() + Duration::from_secs(1);
                while Instant::now() < until {
                    if stop2.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        });
        // Wait (bounded) until the server has accepted the flood: pending in its pool, not in
        // the kernel's accept queue.
        let held = fd0 + hostile.len().min(if sources == 8 { 2000 } else { 256 });
        let t_held = Instant::now();
        while fd_count(pid) < held && t_held.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let rss_held = rss_kib(pid);
        let fd_held = fd_count(pid);
        assert!(
            fd_held >= held,
            "{label}: the server holds the flood ({fd_held} fds)"
        );
        // The real client: handshake to Accepted, timed, then a whole test.
        let t0 = Instant::now();
        let (mut s, nonce) = hello(addr);
        let reply = exchange(
            &mut s,
            &start_json(
                &serde_json::json!(params(serde_json::json!({}))),
                Some("s3cret"),
                &nonce,
            ),
        );
        let to_accepted = t0.elapsed();
        assert!(
            matches!(reply, Ok(Message::Accepted { .. })),
            "{label}: admitted despite the flood: {reply:?}"
        );
        drop(s);
        let first_sample = real_test(
            addr,
            Some("s3cret"),
            &params(serde_json::json!({"interval_ms": 50})),
        );
        let still_open = hostile
            .iter_mut()
            .map(|h| closed_by_server(&mut h.0))
            .filter(|closed| !closed)
            .count();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = dribbler.join();
        eprintln!(
            "SECADV-2023-0002 [{label}]: 2000 hostile connections opened in {} ms; the real \
             client was accepted {} ms after connecting and its first interval sample came \
             {} ms after it connected (50 ms interval), with {still_open} of the 2000 still \
             open; server RSS {rss0} KiB -> {rss_held} KiB with the flood held, fds {fd0} -> \
             {fd_held}",
            opened_in.as_millis(),
            to_accepted.as_millis(),
            first_sample.as_millis()
        );
        if sources == 8 {
            assert_eq!(
                still_open, 2000,
                "{label}: the flood was held, not dropped, while the real client ran"
            );
        } else {
            assert!(
                still_open <= 256,
                "{label}: the pool holds at most 256 ({still_open} open)"
            );
        }
        // Every stalled socket is closed by the server at its deadline (bounded wait).
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last_close = Duration::ZERO;
        for (sock, _, opened) in &mut hostile {
            sock.set_nonblocking(false).expect("blocking");
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(
                    !left.is_zero(),
                    "{label}: a stalled socket was never closed"
                );
                sock.set_read_timeout(Some(left)).expect("timeout");
                match sock.read(&mut [0u8; 1024]) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            last_close = last_close.max(opened.elapsed());
        }
        let fd_after = fds_settle(pid, fd0);
        eprintln!(
            "SECADV-2023-0002 [{label}]: all 2000 closed by the server, the last {} ms after \
             it connected (handshake deadline 5 s); server fds back to {fd_after} (start \
             {fd0}), RSS {} KiB",
            last_close.as_millis(),
            rss_kib(pid)
        );
        assert_eq!(fd_after, fd0, "{label}: no fd left behind");
    }
}

/// iperf3 CVE-2023-38403 (a frame header announcing a huge length made iperf3 allocate it):
/// 10 000 connections each send a header announcing 0xFFFFFFFF bytes. Each is refused from
/// the header alone, with the reason, and closed (the handshake deadline is set far away, so
/// a close is the refusal, not a timeout); the server's RSS grows by less than 1 MiB, it
/// keeps no fd (socat CVE-2013-3571: a refused client's socket was shut down but never
/// closed, leaking one fd per refusal), and a real test runs afterwards.
#[test]
fn cve_2023_38403_huge_frame_length_is_refused_without_allocating() {
    let _loopback = crate::util::loopback_exclusive();
    let (srv, addr) = server(&["--handshake-timeout", "60s"]);
    let pid = srv.pid();
    let header = [b'S', b'C', 1, 0, 0xff, 0xff, 0xff, 0xff];
    let mut slowest = Duration::ZERO;
    let mut refused = 0;
    let mut attack = |n: usize| {
        for _ in 0..n {
            let (mut s, _) = hello(addr);
            let t = Instant::now();
            s.write_all(&header).expect("send the header");
            match protocol::read_message(&mut s) {
                Ok(Message::Refused { reason, .. }) if reason.contains("exceeds") => refused += 1,
                other => panic!("refused from the header: {other:?}"),
            }
            assert_eq!(s.read(&mut [0u8; 16]).expect("then closed"), 0);
            slowest = slowest.max(t.elapsed());
        }
    };
    let fd0 = fd_count(pid); // idle: no connection yet
    attack(200); // warm-up: the allocator's arenas and the log's buffers
    let rss0 = rss_kib(pid);
    attack(10_000);
    let (rss1, fd1) = (rss_kib(pid), fds_settle(pid, fd0));
    eprintln!(
        "CVE-2023-38403: 10 000 headers announcing 0xFFFFFFFF bytes, {refused} refused with a \
         reason (incl. 200 warm-up); slowest close {} ms after the header; server RSS {rss0} \
         -> {rss1} KiB, fds {fd0} -> {fd1}",
        slowest.as_millis()
    );
    assert_eq!(refused, 10_200);
    assert!(
        rss1 < rss0 + 1024,
        "RSS grew by {} KiB (limit 1 MiB)",
        rss1 - rss0
    );
    assert_eq!(fd1, fd0, "no fd left behind");
    real_test(addr, None, &params(serde_json::json!({})));
}

/// Garbage, truncated frames, wrong JSON types, absurd numbers and messages out of order:
/// each is refused with a reason (or, when the peer itself closed mid-frame, just closed),
/// and the server stays up: a real test runs after them all (sockperf #180: a server that
/// met a message larger than it expected stopped serving and spun at 100 % CPU).
#[test]
fn malformed_and_absurd_control_messages_are_refused_with_a_reason() {
    let (srv, addr) = server(&["--token", "s3cret"]);
    let pid = srv.pid();
    let fd0 = fd_count(pid);
    let good = serde_json::json!(params(serde_json::json!({})));
    let with = |k: &str, v: serde_json::Value| {
        let mut p = good.clone();
        p[k] = v;
        p
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not JSON", b"\x00\x01garbage".to_vec(), "malformed"),
        ("JSON null", b"null".to_vec(), "malformed"),
        ("wrong type: duration as text", start_json(&with("duration_ms", "fast".into()), Some("s3cret"), ""), "malformed"),
        ("absurd duration 1e30 s", start_json(&with("duration_ms", serde_json::json!(1e33)), Some("s3cret"), ""), "malformed"),
        ("absurd 1e9 streams", start_json(&with("parallel", serde_json::json!(1_000_000_000u64)), Some("s3cret"), ""), "malformed"),
        ("size 0", start_json(&with("size", 0.into()), None, ""), "size 0"),
        ("go before start", br#"{"type":"go"}"#.to_vec(), "expected a start message, got go"),
        ("hello from the client", br#"{"type":"hello","server_version":"x","nonce":"00","auth_required":false,"max_duration_ms":1,"max_rate_bps":0}"#.to_vec(), "got hello"),
        ("start before reading hello (no nonce)", start_json(&good, Some("s3cret"), "0000"), "authentication failed"),
    ];
    for (what, body, reason) in &cases {
        let (mut s, nonce) = hello(addr);
        // Numbers and types are checked with the right token, so the reason is theirs.
        let body = if what.starts_with("wrong") || what.starts_with("absurd") || *what == "size 0" {
            let v: serde_json::Value = serde_json::from_slice(body).expect("json");
            start_json(&v["params"], Some("s3cret"), &nonce)
        } else {
            body.clone()
        };
        match exchange(&mut s, &body) {
            Ok(Message::Refused { reason: r, retry }) => {
                eprintln!("refused {what}: {r}");
                assert!(
                    r.contains(reason),
                    "{what}: reason {r:?} should say {reason:?}"
                );
                assert!(!retry, "{what}: not worth retrying");
            }
            other => panic!("{what}: expected a refusal, got {other:?}"),
        }
    }
    // Raw garbage that is not even a frame, and a frame cut short by its sender.
    for (what, bytes) in [
        ("an HTTP request", &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..]),
        (
            "bad protocol version",
            &[b'S', b'C', 9, 0, 0, 0, 0, 2, b'{', b'}'][..],
        ),
    ] {
        let (mut s, _) = hello(addr);
        s.write_all(bytes).expect("send");
        match protocol::read_message(&mut s) {
            Ok(Message::Refused { reason, .. }) => eprintln!("refused {what}: {reason}"),
            other => panic!("{what}: expected a refusal, got {other:?}"),
        }
    }
    let (mut s, _) = hello(addr);
    s.write_all(&[b'S', b'C', 1, 0, 0, 0, 0, 100, b'{'])
        .expect("send");
    s.shutdown(std::net::Shutdown::Write).expect("half-close");
    assert!(
        matches!(
            protocol::read_message(&mut s),
            Err(protocol::FrameError::Short(0))
        ),
        "a truncated frame is dropped when its sender closes"
    );
    real_test(addr, Some("s3cret"), &params(serde_json::json!({})));
    assert_eq!(fds_settle(pid, fd0), fd0, "no fd left behind");
}

/// iperf3 #1072 (UDP reflection): a client that names, for a UDP -R test, a port it does not
/// own and sends Go without proving its address is refused, and not one datagram goes to
/// that port: a socket bound on it receives nothing and (as root, in a namespace of its own)
/// the namespace's Udp.OutDatagrams counter does not move. A probe with a wrong cookie gets
/// no answer either. A real -R test, which proves its address, runs.
#[test]
fn iperf3_1072_no_udp_datagram_to_a_port_the_client_has_not_proved() {
    let ns = if socklab::netns::have_net_admin() {
        Some(socklab::netns::Netns::create("brefl").expect("namespace"))
    } else {
        eprintln!("no root: checking the victim socket only, not Udp.OutDatagrams");
        None
    };
    let cmd = |args: &[&str]| match &ns {
        Some(n) => {
            let mut c = n.command(crate::util::BIN);
            c.args(args);
            c
        }
        None => socklab(args),
    };
    let bind = bind_addr();
    let p = spawn(
        cmd(&[
            "bench",
            "server",
            "--bind",
            &bind,
            "--handshake-timeout",
            "1s",
        ]),
        Input::Null,
        Output::Keep,
    );
    let addr = p.ready();
    let in_ns = |f: Box<dyn FnOnce() -> (String, i64, i64) + Send>| -> (String, i64, i64) {
        match &ns {
            Some(n) => n.run(f).expect("in the namespace"),
            None => f(),
        }
    };
    let report = in_ns(Box::new(move || {
        let victim = UdpSocket::bind("127.0.0.1:0").expect("victim");
        let port = victim.local_addr().expect("addr").port();
        let p = serde_json::json!(params(serde_json::json!({
            "transport": "udp", "dirs": ["down"], "duration_ms": 1000
        })));
        // The attack of the issue: name the victim's port, then Go.
        let (mut s, nonce) = hello(addr);
        let mut start: serde_json::Value =
            serde_json::from_slice(&start_json(&p, None, &nonce)).expect("json");
        start["client_udp_ports"] = serde_json::json!([port]);
        let (down, cookie) = match exchange(&mut s, &serde_json::to_vec(&start).expect("json")) {
            Ok(Message::Accepted {
                down_udp_ports,
                cookie,
                ..
            }) => (down_udp_ports, cookie),
            other => panic!("accepted, pending the address proof: {other:?}"),
        };
        assert!(cookie.is_some(), "the server asks for a proof");
        // A probe with the wrong cookie, from the victim's socket: never answered.
        let wrong = protocol::Probe {
            ack: false,
            stream: 0,
            cookie: [0u8; 16],
        };
        victim
            .send_to(&wrong.emit(), SocketAddr::new(addr.ip(), down[0]))
            .expect("send a wrong probe");
        let counter = || {
            socklab::os::counters::Snapshot::read()
                .expect("snmp")
                .get("Udp.OutDatagrams")
        };
        let before = counter();
        protocol::write_message(&mut s, &Message::Go).expect("go");
        let refusal = match protocol::read_message(&mut s) {
            Ok(Message::Refused { reason, .. }) => reason,
            other => panic!("refused for want of a proof: {other:?}"),
        };
        victim
            .set_read_timeout(Some(Duration::from_millis(1500)))
            .expect("timeout");
        let got = victim.recv(&mut [0u8; 2048]);
        assert!(
            got.is_err(),
            "no datagram reached the named port: got {got:?}"
        );
        (refusal, before, counter())
    }));
    let (refusal, before, after) = report;
    eprintln!(
        "iperf3 #1072: refused with \"{refusal}\"; Udp.OutDatagrams {} {before} -> {after}",
        if ns.is_some() {
            "in the server's own namespace"
        } else {
            "of the host (other programs count too)"
        }
    );
    assert!(
        refusal.contains("probe"),
        "the reason names the missing proof"
    );
    if ns.is_some() {
        assert_eq!(after - before, 0, "the server sent no UDP datagram at all");
    }
    // The real thing proves its address and runs.
    let sent = in_ns(Box::new(move || {
        let t = params(serde_json::json!({
            "transport": "udp", "dirs": ["down"], "rate_bps": 10_000_000
        }));
        let before =
            socklab::os::counters::Snapshot::read().map_or(0, |c| c.get("Udp.OutDatagrams"));
        real_test(addr, None, &t);
        let after =
            socklab::os::counters::Snapshot::read().map_or(0, |c| c.get("Udp.OutDatagrams"));
        (String::new(), before, after)
    }));
    assert!(sent.2 > sent.1, "the proved -R test did send");
    drop(p);
}

/// Churn (iperf3 #225/#1986: a server stuck after bad or vanishing clients): many
/// back-to-back tests, one in ten malformed or with a wrong token; the server's fd count
/// comes back to its start and its RSS grows by less than 2 MiB. 600 tests here (about 10 s);
/// `scripts/soak.sh` runs thousands for minutes.
#[test]
fn iperf3_225_churn_of_back_to_back_tests_leaks_nothing() {
    // One slot: the server frees it before it sends a test's results, so each of the 600
    // back-to-back tests must be admitted (none may find the previous one still running).
    let (srv, addr) = server(&["--token", "s3cret", "--max-tests", "1"]);
    let pid = srv.pid();
    let kinds = [
        params(serde_json::json!({"duration_ms": 5})),
        params(
            serde_json::json!({"duration_ms": 5, "transport": "udp", "dirs": ["down"], "rate_bps": 10_000_000}),
        ),
        params(serde_json::json!({"duration_ms": 5, "transport": "udp", "rate_bps": 10_000_000})),
        params(serde_json::json!({"duration_ms": 5, "dirs": ["up", "down"]})),
    ];
    let run = |i: usize| {
        if i % 10 == 9 {
            // The bad tenth: wrong token, or a malformed start.
            let (mut s, nonce) = hello(addr);
            let body = if i % 20 == 9 {
                start_json(&serde_json::json!(kinds[0]), Some("wrong"), &nonce)
            } else {
                b"{\"type\":\"start\",\"params\":7}".to_vec()
            };
            assert!(matches!(
                exchange(&mut s, &body),
                Ok(Message::Refused { .. })
            ));
        } else {
            let out = client::run_test(
                &cfg(addr, Some("s3cret")),
                &kinds[i % kinds.len()],
                &mut |_, _| {},
            );
            if let Err(e) = out {
                panic!("test {i} failed: {e}");
            }
        }
    };
    let fd0 = fd_count(pid); // idle: no connection yet
    (0..60).for_each(run); // warm-up
    let rss0 = rss_kib(pid);
    let t = Instant::now();
    (60..660).for_each(run);
    let (rss1, fd1) = (rss_kib(pid), fds_settle(pid, fd0));
    eprintln!(
        "churn: 600 back-to-back tests (60 refused: wrong token or malformed) in {} ms; server \
         RSS {rss0} -> {rss1} KiB, fds {fd0} -> {fd1}",
        t.elapsed().as_millis()
    );
    assert_eq!(fd1, fd0, "fds back to their start");
    assert!(
        rss1 < rss0 + 2048,
        "RSS grew by {} KiB (limit 2 MiB)",
        rss1 - rss0
    );
}

/// A client that closes its control connection right after Accepted, while the server waits
/// for its data connections (TCP) or its address proofs (UDP), frees the only test slot at
/// once: the next client is admitted well before the idle timeout (30 s here) could end it.
#[test]
fn a_client_closing_during_setup_frees_its_slot_at_once() {
    let (srv, addr) = server(&["--max-tests", "1", "--idle-timeout", "30s"]);
    // Admitted with `p`, retrying while the only slot is busy; bounded below the 30 s idle
    // timeout, so an admission after a close during setup means the close freed the slot.
    let admit = |p: &TestParams| -> Option<TcpStream> {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(25) {
            let (mut s, nonce) = hello(addr);
            let body = start_json(&serde_json::json!(p), None, &nonce);
            match exchange(&mut s, &body) {
                Ok(Message::Accepted { .. }) => return Some(s),
                Ok(Message::Refused { retry: true, .. }) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                other => panic!("neither admitted nor busy: {other:?}"),
            }
        }
        None
    };
    for p in [
        params(serde_json::json!({})),
        params(serde_json::json!({"transport": "udp", "dirs": ["down"]})),
    ] {
        // The previous round's connection was closed during setup too: this first admission
        // may wait for the server to notice that, as the second one below does.
        let s = admit(&p).expect("admitted");
        drop(s);
        let t = Instant::now();
        let next = admit(&params(serde_json::json!({})));
        eprintln!(
            "slot freed after a close during {:?} setup: next client admitted after {} ms",
            p.transport,
            t.elapsed().as_millis()
        );
        assert!(
            next.is_some(),
            "the slot came free long before the 30 s idle timeout"
        );
    }
    drop(srv);
}

/// The bench client never hangs on a server that accepts and says nothing: with
/// `--connect-timeout 1s` it gives up with one line in the user's terms and exit code 1.
#[test]
fn the_client_gives_up_on_a_silent_server_with_one_clear_line() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let addr = silent.local_addr().expect("addr").to_string();
    let out = Command::new("timeout")
        .args([
            "20",
            crate::util::BIN,
            "bench",
            "client",
            &addr,
            "--tcp",
            "-t",
            "0.2",
            "-w",
            "1s",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("said nothing for 1s"), "{err}");
    assert!(!err.contains("os error"), "no errno numbers: {err}");
    drop(silent);
}

/// One loss kind over {TCP, UDP} x {forward, -R, --bidir}, on its own namespace pair and
/// server (--max-tests 1, --idle-timeout 1s): a running test loses its client, the server
/// logs the test's end (its slot is free then), and its fds come back to their start. Each
/// next case starting at all proves the previous one freed the only slot.
fn loss_cases(kind: &'static str) -> Vec<String> {
    let (a, b) = socklab::netns::pair(&format!("bl{kind}")).expect("namespace pair");
    let mut cmd = b.command(crate::util::BIN);
    cmd.args([
        "bench",
        "server",
        "--bind",
        "198.51.100.2:0",
        "--idle-timeout",
        "1s",
        "--max-tests",
        "1",
    ]);
    let srv = spawn(cmd, Input::Null, Output::Keep);
    let addr = srv.ready().to_string();
    let pid = srv.pid();
    let (fd0, rss0) = (fd_count(pid), rss_kib(pid));
    let mut lines = Vec::new();
    let mut n = 0;
    for transport in ["--tcp", "-u"] {
        for dir in ["", "-R", "--bidir"] {
            n += 1;
            let mut c = a.command(crate::util::BIN);
            c.args([
                "bench", "client", &addr, transport, "-t", "30", "-b", "20M", "-i", "100ms",
            ]);
            if !dir.is_empty() {
                c.arg(dir);
            }
            let client = spawn(c, Input::Null, Output::Keep);
            client.wait_stdout(20); // an interval line: the test runs
            let t = Instant::now();
            match kind {
                "SIGKILL" => {
                    let pid = nix::unistd::Pid::from_raw(client.pid() as i32);
                    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("kill");
                }
                "drop" => nft(
                    &b,
                    &[
                        "add table inet t",
                        "add chain inet t in { type filter hook input priority 0 ; }",
                        "add rule inet t in ip saddr 198.51.100.1 drop",
                    ],
                ),
                _ => nft(
                    &a,
                    &[
                        "add table inet t",
                        "add chain inet t in { type filter hook input priority 0 ; }",
                        "add rule inet t in ip saddr 198.51.100.2 meta l4proto tcp reject with tcp reset",
                        "add rule inet t in ip saddr 198.51.100.2 drop",
                    ],
                ),
            }
            let end = srv.wait_line(&format!("test {n} from"));
            let freed = t.elapsed();
            drop(client);
            nft(&a, &["flush ruleset"]);
            nft(&b, &["flush ruleset"]);
            let fds = fds_settle(pid, fd0);
            let name = format!(
                "{kind} {transport} {}",
                if dir.is_empty() { "forward" } else { dir }
            );
            lines.push(format!(
                "{name:<22} slot free after {:>5} ms (idle timeout 1 s); fds {fd0} -> {fds}; server said: {}",
                freed.as_millis(),
                end.split(": ").skip(1).collect::<Vec<_>>().join(": ")
            ));
            assert_eq!(fds, fd0, "{name}: no fd leaked\n{}", lines.join("\n"));
            assert!(
                freed < Duration::from_secs(10),
                "{name}: freed long before the 30 s test would have ended"
            );
        }
    }
    // Still serving: a clean short test.
    let mut c = a.command(crate::util::BIN);
    c.args([
        "bench", "client", &addr, "-u", "-t", "0.2", "-b", "10M", "--json",
    ]);
    let mut ok = spawn(c, Input::Null, Output::Keep);
    ok.expect_code(0);
    lines.push(format!(
        "{kind}: server RSS {rss0} -> {} KiB over the 6 cases, fds {fd0} -> {}",
        rss_kib(pid),
        fds_settle(pid, fd0)
    ));
    lines
}

/// iperf3 #1986/#683 (a server stuck after its client vanished): peer loss for {TCP, UDP} x
/// {forward, -R, --bidir} x {SIGKILL of the client, a silent drop (nftables drops everything
/// from the client inside the server's namespace), resets (nftables answers the server's TCP
/// with RST inside the client's namespace)}: every test ends, its slot is free long before
/// the test's 30 s, and no fd is leaked. The three loss kinds run side by side.
#[test]
fn iperf3_1986_683_peer_loss_frees_the_server_and_leaks_no_fd() {
    if !socklab::netns::have_net_admin() {
        eprintln!("skipped: needs root to create network namespaces");
        return;
    }
    if !have_nft() {
        return;
    }
    let runs: Vec<_> = ["SIGKILL", "drop", "RST"]
        .into_iter()
        .map(|k| std::thread::spawn(move || loss_cases(k)))
        .collect();
    let mut failed = None;
    for r in runs {
        match r.join() {
            Ok(lines) => lines.iter().for_each(|l| eprintln!("peer loss: {l}")),
            Err(e) => failed = Some(e),
        }
    }
    if let Some(e) = failed {
        std::panic::resume_unwind(e);
    }
}
