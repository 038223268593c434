//! `tcp listen -k --echo` under 10 000 idle connections (issue 8, "a thread per idle client":
//! 5 000 idle connections ran 5 002 threads at 21 KiB RSS each): held without a thread per
//! client and at most 64 KiB each, a client then echoed 1 MiB byte-exact, `--max-clients`
//! refusing cleanly and a freed slot reused. Loopback only; bounded in count and time.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::util::{Input, Output, Proc, WAIT, server};

const IDLE: usize = 10_000;

/// A field of /proc/PID/status in its unit (kB for VmRSS), e.g. `VmRSS`, `Threads`.
fn status(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Raises this process's soft RLIMIT_NOFILE to `want` (within the hard limit); `false` when
/// the hard limit is lower.
fn raise_nofile(want: u64) -> bool {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return false;
    };
    if soft >= want {
        return true;
    }
    hard >= want && setrlimit(Resource::RLIMIT_NOFILE, want, hard).is_ok()
}

/// A client connected to `addr` from 127.0.0.2: 10 000 ephemeral ports taken on 127.0.0.1
/// could collide with tests running at the same time that close and rebind a 127.0.0.1 port
/// (a bind conflicts only with sockets on the same address, or the wildcard); and closed with
/// a reset, leaving no TIME_WAIT behind.
fn connect_from_127_0_0_2(addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    // SO_LINGER 0: closing resets, so no TIME_WAIT is left for tests that list sockets.
    s.set_linger(Some(Duration::ZERO)).expect("SO_LINGER");
    s.bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
        .expect("bind 127.0.0.2:0");
    s.connect(&addr.into()).expect("connect an idle client");
    s.into()
}

/// Waits (bounded poll of the child's stderr) until `needle` occurs `n` times.
fn wait_count(p: &Proc, needle: &str, n: usize) {
    let deadline = Instant::now() + WAIT;
    while p.stderr().matches(needle).count() < n {
        if Instant::now() >= deadline {
            p.fail(&format!("fewer than {n} {needle:?} lines"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// 1 MiB through the echo server and back, byte-exact.
fn echo_1mib(addr: SocketAddr) {
    let payload: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 + (i >> 9)) as u8).collect();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    let writer = {
        let mut w = s.try_clone().unwrap();
        let p = payload.clone();
        std::thread::spawn(move || {
            w.write_all(&p).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut back = Vec::new();
    s.read_to_end(&mut back).expect("read the echo");
    writer.join().unwrap();
    assert_eq!(back.len(), payload.len(), "echo length");
    assert!(back == payload, "echo differs");
}

#[test]
fn ten_thousand_idle_connections_then_echo_and_max_clients() {
    let _loopback = crate::util::loopback_exclusive();
    // Our 10 000 + a few client sockets; the server raises its own limit.
    if !raise_nofile(IDLE as u64 + 256) {
        eprintln!(
            "skipping: RLIMIT_NOFILE cannot be raised to {} (hard limit too low)",
            IDLE + 256
        );
        return;
    }
    let max = (IDLE + 1).to_string();
    let (mut l, addr) = server(
        &[
            "tcp",
            "listen",
            "127.0.0.1:0",
            "-k",
            "--echo",
            "--max-clients",
            &max,
        ],
        Input::Null,
        Output::Keep,
    );
    let pid = l.pid();
    let rss_before = status(pid, "VmRSS");
    let start = Instant::now();
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        assert!(start.elapsed() < WAIT, "connecting took too long");
        idle.push(connect_from_127_0_0_2(addr));
    }
    wait_count(&l, "connection from", IDLE);
    let rss_after = status(pid, "VmRSS");
    let threads = status(pid, "Threads");
    let per_conn = (rss_after.saturating_sub(rss_before)) * 1024 / IDLE as u64;
    eprintln!(
        "{IDLE} idle connections held: server RSS {rss_before} kB -> {rss_after} kB, \
         {per_conn} bytes per connection (VmRSS delta / {IDLE}), {threads} threads"
    );
    assert!(threads <= 2, "{threads} threads: not one per client");
    assert!(per_conn <= 64 << 10, "{per_conn} bytes per idle connection");

    // The 10 001st client is served while the others idle.
    echo_1mib(addr);
    wait_count(&l, " closed", 1);

    // Full: one more than --max-clients is accepted and closed at once.
    let last = TcpStream::connect(addr).unwrap();
    wait_count(&l, "connection from", IDLE + 2);
    let mut extra = TcpStream::connect(addr).unwrap();
    extra.set_read_timeout(Some(WAIT)).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(extra.read(&mut b).unwrap_or(0), 0, "over the limit: closed");
    l.wait_line(&format!("over --max-clients {max}"));

    // A freed slot is taken again.
    let gone = idle.pop().unwrap();
    let gone_from = gone.local_addr().unwrap();
    drop(gone);
    l.wait_line(&format!("{gone_from} closed"));
    echo_1mib(addr);
    drop((idle, last, extra));
    l.interrupt();
    let lf = l.expect_code(130);
    lf.check(lf.stderr.contains("sent "), "summary on Ctrl-C");
}
