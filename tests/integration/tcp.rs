//! `socklab tcp listen` / `tcp connect` end to end: byte-exact bulk transfer both ways,
//! half-close, many concurrent echo clients, --max-clients, a peer that goes away, and a
//! stdout closed early.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Barrier};

use crate::util::{self, Input, Output, WAIT, digest, on_both, server, socklab, spawn};

const BIG: u64 = 256 << 20;

/// 256 MiB each way at the same time (full duplex), through pipes (the splice path): each side's
/// stdout hashes to what the other side's stdin was fed.
#[test]
fn bulk_random_bytes_arrive_byte_exact_both_ways() {
    let (mut l, addr) = server(
        &["tcp", "listen", "127.0.0.1:0"],
        Input::Random {
            len: BIG,
            seed: 0x5eed_0001,
        },
        Output::Hash,
    );
    let mut c = spawn(
        socklab(&["tcp", "connect", &addr.to_string()]),
        Input::Random {
            len: BIG,
            seed: 0x5eed_0002,
        },
        Output::Hash,
    );
    let cf = c.expect_code(0);
    let lf = l.expect_code(0);
    let sent_by_client = cf.stdin_digest.clone().expect("client stdin written");
    let sent_by_listener = lf.stdin_digest.clone().expect("listener stdin written");
    assert_eq!(sent_by_client.len, BIG);
    assert_eq!(sent_by_listener.len, BIG);
    lf.check(
        lf.stdout_digest == sent_by_client,
        "client -> listener bytes differ",
    );
    cf.check(
        cf.stdout_digest == sent_by_listener,
        "listener -> client bytes differ",
    );
}

/// Regular files at both ends: the client sends its stdin file with sendfile(2), the listener
/// writes its stdout file through a private pipe (splice(2) twice). Byte-exact, and the trace
/// shows the paths taken.
#[test]
fn files_at_both_ends_arrive_byte_exact() {
    let dir = std::env::temp_dir().join(format!("socklab-tcp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (input, output) = (dir.join("input"), dir.join("output"));
    let data = patterned(3 << 20);
    std::fs::write(&input, &data).unwrap();
    let mut cmd = std::process::Command::new("sh");
    cmd.args([
        "-c",
        r#"exec "$0" tcp listen 127.0.0.1:0 -v --trace > "$1""#,
        util::BIN,
        output.to_str().unwrap(),
    ]);
    let mut l = spawn(cmd, Input::Null, Output::Keep);
    let addr = l.ready();
    let mut c = spawn(
        socklab(&["tcp", "connect", &addr.to_string(), "--trace"]),
        Input::File(input),
        Output::Keep,
    );
    let cf = c.expect_code(0);
    let lf = l.expect_code(0);
    let got = std::fs::read(&output).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    lf.check(digest(&got) == digest(&data), "file bytes differ");
    cf.check(
        cf.stderr.contains("sendfile("),
        "a file is sent with sendfile",
    );
    lf.check(
        lf.stderr.contains("splice(") && !lf.stderr.contains("socket -> fd 1,"),
        "a file is written through a private pipe, not stdout directly",
    );
}

/// stdin neither a pipe nor a file (a Unix socket here, as a terminal would be): read(2) +
/// send(2), byte-exact.
#[test]
fn other_stdin_takes_the_read_send_path() {
    let data = patterned(2 << 20);
    let (mut l, addr) = server(&["tcp", "listen", "127.0.0.1:0"], Input::Null, Output::Hash);
    let mut c = spawn(
        socklab(&["tcp", "connect", &addr.to_string(), "--trace"]),
        Input::Stream(data.clone()),
        Output::Keep,
    );
    let cf = c.expect_code(0);
    let lf = l.expect_code(0);
    lf.check(lf.stdout_digest == digest(&data), "bytes differ");
    cf.check(
        cf.stderr.contains("send(")
            && !cf.stderr.contains("fd 0 -> socket")
            && !cf.stderr.contains("sendfile("),
        "read + send",
    );
}

/// Deterministic bytes that are not a short repeated pattern.
fn patterned(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// The client's stdin ends (shutdown SHUT_WR, a FIN); the listener sees the end of the stream
/// and only then replies, and the reply still reaches the client.
#[test]
fn half_close_leaves_the_reply_path_working() {
    on_both(|fam| {
        let (mut l, addr) = server(
            &["tcp", "listen", &fam.any_port(), "--show"],
            Input::Open,
            Output::Keep,
        );
        let mut c = spawn(
            socklab(&["tcp", "connect", &addr.to_string()]),
            Input::Bytes(b"request\n".to_vec()),
            Output::Keep,
        );
        // --show prints the zero-length read: the FIN has arrived.
        let eof_line = "recv 0 bytes: end of stream";
        let want = format!("recv 8 bytes: \"request\\n\"\n{eof_line}");
        l.wait_stdout(want.len());
        l.write_stdin(b"reply after your FIN\n");
        l.close_stdin();
        let cf = c.expect_code(0);
        let lf = l.expect_code(0);
        lf.check(
            lf.out().starts_with(&want),
            "listener did not see data then EOF",
        );
        cf.check(
            cf.out() == "reply after your FIN\n",
            "reply lost after half-close",
        );
    });
}

/// 200 clients connected at the same time, each with its own payload, all echoed byte-exact.
#[test]
fn keep_open_echo_serves_200_concurrent_clients() {
    const CLIENTS: usize = 200;
    let (mut l, addr) = server(
        &[
            "tcp",
            "listen",
            "127.0.0.1:0",
            "-k",
            "--echo",
            "--count",
            &CLIENTS.to_string(),
        ],
        Input::Null,
        Output::Keep,
    );
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).expect("connect");
                s.set_read_timeout(Some(WAIT)).unwrap();
                s.set_write_timeout(Some(WAIT)).unwrap();
                // Every client is connected before any sends: they are served concurrently.
                barrier.wait();
                let payload: Vec<u8> = (0..(16 << 10) + i * 37)
                    .map(|k| (k as u8) ^ (i as u8).wrapping_mul(31))
                    .collect();
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
                (payload, back)
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let (sent, back) = t.join().expect("client thread");
        assert_eq!(back.len(), sent.len(), "client {i}: echo length");
        assert!(back == sent, "client {i}: echo differs");
    }
    let lf = l.expect_code(0);
    lf.check(
        lf.stderr.matches("connection from").count() == CLIENTS,
        "every client accepted once",
    );
}

/// With --max-clients 2, a third concurrent client is accepted and closed at once; once a slot
/// frees, a new client is served again.
#[test]
fn max_clients_turns_away_the_extra_client() {
    let (mut l, addr) = server(
        &[
            "tcp",
            "listen",
            "127.0.0.1:0",
            "-k",
            "--echo",
            "--max-clients",
            "2",
        ],
        Input::Null,
        Output::Keep,
    );
    let echo_once = |s: &mut TcpStream, msg: &[u8]| {
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(msg).unwrap();
        let mut buf = vec![0u8; msg.len()];
        s.read_exact(&mut buf).expect("echo");
        assert_eq!(buf, msg);
    };
    let mut a = TcpStream::connect(addr).unwrap();
    let mut b = TcpStream::connect(addr).unwrap();
    echo_once(&mut a, b"a");
    echo_once(&mut b, b"b");
    let mut extra = TcpStream::connect(addr).unwrap();
    extra.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 1];
    let n = extra.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the third client must be closed, not served");
    l.wait_line("over --max-clients 2");
    let a_from = a.local_addr().unwrap();
    drop(a);
    l.wait_line(&format!("{a_from} closed"));
    let mut d = TcpStream::connect(addr).unwrap();
    echo_once(&mut d, b"d");
    echo_once(&mut b, b"b2");
    drop((b, d, extra));
    l.interrupt();
    let lf = l.expect_code(130);
    lf.check(lf.stderr.contains("sent "), "summary on Ctrl-C");
}

/// The listener dies mid-transfer: the client's next send fails with a clear one-line error
/// (EPIPE or ECONNRESET, "the peer closed the connection") and exit 1.
#[test]
fn writing_to_a_peer_that_went_away_is_a_clear_error() {
    let (l, addr) = server(&["tcp", "listen", "127.0.0.1:0"], Input::Open, Output::Hash);
    let mut c = spawn(
        socklab(&["tcp", "connect", &addr.to_string()]),
        Input::Random {
            len: 4 << 30,
            seed: 7,
        },
        Output::Keep,
    );
    l.wait_line("connection from");
    // Let some bytes flow, then take the peer away (SIGKILL: the kernel closes its socket).
    drop(l);
    let cf = c.expect_code(1);
    let lines: Vec<&str> = cf.stderr.lines().collect();
    cf.check(lines.len() == 1, "exactly one error line");
    cf.check(
        (lines[0].contains("EPIPE") || lines[0].contains("ECONNRESET"))
            && lines[0].contains("the peer closed the connection"),
        "names the errno and says the peer is gone",
    );
}

/// `socklab tcp connect … | head -c 100`: stdout closes early, socklab exits 0 and says nothing,
/// on the splice path (plain) and the write path (--show).
#[test]
fn stdout_closed_early_exits_zero_quietly() {
    for extra in [None, Some("--show")] {
        let (_l, addr) = server(
            &["tcp", "listen", "127.0.0.1:0"],
            Input::Random {
                len: 64 << 20,
                seed: 3,
            },
            Output::Hash,
        );
        let mut cmd = std::process::Command::new("sh");
        cmd.args([
            "-c",
            r#"{ "$0" tcp connect "$1" $2 < /dev/null; echo "rc=$?" >&2; } | head -c 100 > /dev/null"#,
            util::BIN,
            &addr.to_string(),
            extra.unwrap_or(""),
        ]);
        let mut p = spawn(cmd, Input::Null, Output::Keep);
        let f = p.expect_code(0);
        f.check(f.stderr == "rc=0\n", "exit 0 and nothing on stderr");
    }
}

/// Ctrl-C on `tcp connect`: exit 130 with the byte summary, and the peer sees an orderly end
/// of stream (FIN: recv returns 0), not a reset.
#[test]
fn ctrl_c_closes_with_fin_and_prints_the_summary() {
    let (mut l, addr) = server(
        &["tcp", "listen", "127.0.0.1:0", "--show"],
        Input::Null,
        Output::Keep,
    );
    let mut c = spawn(
        socklab(&["tcp", "connect", &addr.to_string()]),
        Input::Open,
        Output::Keep,
    );
    c.write_stdin(b"partial");
    l.wait_stdout("recv 7 bytes".len());
    c.interrupt();
    let cf = c.expect_code(130);
    cf.check(
        cf.stderr.contains("sent 7 bytes, received 0 bytes"),
        "the summary on SIGINT",
    );
    let lf = l.expect_code(0);
    lf.check(
        lf.out()
            .ends_with("recv 0 bytes: end of stream (the peer closed its side)\n"),
        "the listener saw a FIN, not a reset",
    );
}

/// `--recv-size 4 --show` shows how the stream was cut into reads: none longer than 4 bytes,
/// together exactly what was sent.
#[test]
fn recv_size_and_show_cut_the_stream_into_reads() {
    let (mut l, addr) = server(
        &["tcp", "listen", "127.0.0.1:0", "--show", "--recv-size", "4"],
        Input::Null,
        Output::Keep,
    );
    spawn(
        socklab(&["tcp", "connect", &addr.to_string()]),
        Input::Bytes(b"0123456789".to_vec()),
        Output::Keep,
    )
    .expect_code(0);
    let lf = l.expect_code(0);
    let mut joined = String::new();
    for line in lf.out().lines() {
        let (len, rest) = line
            .strip_prefix("recv ")
            .and_then(|r| r.split_once(" bytes"))
            .unwrap_or_else(|| panic!("unexpected line {line:?}\n{}", lf.shown));
        let len: usize = len.parse().unwrap();
        lf.check(len <= 4, "no read longer than --recv-size");
        if let Some(payload) = rest.strip_prefix(": \"") {
            joined.push_str(payload.trim_end_matches('"'));
        }
    }
    lf.check(joined == "0123456789", "the reads add up to the stream");
}

/// The relay's path choice: stdin/stdout pipes are spliced (and grown to fewer, larger
/// splices), a regular file or /dev/null is spliced through a private pipe, an O_APPEND file
/// is not (splice(2) refuses it).
#[test]
fn relay_path_selection() {
    use std::os::fd::AsFd;

    use socklab::sock::sys::{is_pipe, set_pipe_size, splice_sink};

    let (r, w) = nix::unistd::pipe().unwrap();
    assert!(is_pipe(r.as_fd()) && is_pipe(w.as_fd()));
    // pipe(7): a new pipe holds 16 pages (64 KiB on 4 KiB pages); 256 KiB is within the
    // unprivileged limit (fs.pipe-max-size, 1 MiB by default).
    let default = nix::fcntl::fcntl(r.as_fd(), nix::fcntl::FcntlArg::F_GETPIPE_SZ).unwrap();
    assert_ne!(default, 256 << 10);
    assert_eq!(set_pipe_size(w.as_fd(), 256 << 10).unwrap(), 256 << 10);
    let file = std::fs::File::open("/proc/self/exe").unwrap();
    assert!(!is_pipe(file.as_fd()));
    assert!(!splice_sink(r.as_fd()), "a pipe is spliced to directly");
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .unwrap();
    assert!(splice_sink(null.as_fd()));
    let appending = std::fs::OpenOptions::new()
        .append(true)
        .open("/dev/null")
        .unwrap();
    assert!(
        !splice_sink(appending.as_fd()),
        "O_APPEND is refused by splice"
    );
}

/// `--idle-timeout` ends a listener no client comes to (accept(2) under SO_RCVTIMEO), alone
/// or with -k; a connected client's data is not subject to it.
#[test]
fn idle_timeout_ends_a_listener_without_clients() {
    for extra in [None, Some("-k")] {
        let mut args = vec!["tcp", "listen", "127.0.0.1:0", "--idle-timeout", "200ms"];
        args.extend(extra);
        let (mut l, _) = server(&args, Input::Null, Output::Keep);
        let lf = l.expect_code(0);
        lf.check(
            lf.stderr.contains("idle timeout: no client came"),
            "says so",
        );
    }
    let (mut l, addr) = server(
        &["tcp", "listen", "127.0.0.1:0", "--idle-timeout", "200ms"],
        Input::Null,
        Output::Keep,
    );
    let mut c = spawn(
        socklab(&["tcp", "connect", &addr.to_string()]),
        Input::Open,
        Output::Keep,
    );
    l.wait_line("connection from");
    // Not a synchronisation: a pause longer than the idle timeout is what is under test (it
    // must not end a connected client's transfer).
    std::thread::sleep(std::time::Duration::from_millis(400));
    c.write_stdin(b"late but welcome\n");
    c.close_stdin();
    c.expect_code(0);
    let lf = l.expect_code(0);
    lf.check(
        lf.out() == "late but welcome\n",
        "the accepted socket has no timeout",
    );
}

/// `tcp listen -k > file` with clients sending at the same time: no byte is lost or
/// overwritten in the shared stdout file (every client's bytes counted).
#[test]
fn keep_open_to_a_file_loses_nothing() {
    const CLIENTS: usize = 16;
    const EACH: usize = 256 << 10;
    let dir = std::env::temp_dir().join(format!("socklab-k-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = dir.join("output");
    let mut cmd = std::process::Command::new("sh");
    cmd.args([
        "-c",
        r#"exec "$0" tcp listen 127.0.0.1:0 -k -v --count "$2" > "$1""#,
        util::BIN,
        output.to_str().unwrap(),
        &CLIENTS.to_string(),
    ]);
    let mut l = spawn(cmd, Input::Null, Output::Keep);
    let addr = l.ready();
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_write_timeout(Some(WAIT)).unwrap();
                barrier.wait();
                s.write_all(&vec![b'a' + i as u8; EACH]).unwrap();
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let lf = l.expect_code(0);
    let got = std::fs::read(&output).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    lf.check(got.len() == CLIENTS * EACH, "total length");
    for i in 0..CLIENTS {
        let n = got.iter().filter(|&&b| b == b'a' + i as u8).count();
        lf.check(n == EACH, &format!("client {i}: {n} of {EACH} bytes"));
    }
}

/// With -k, a client that stays connected does not hold up the output of the others.
#[test]
fn keep_open_clients_do_not_block_each_other() {
    let (mut l, addr) = server(
        &["tcp", "listen", "127.0.0.1:0", "-k", "--show"],
        Input::Null,
        Output::Keep,
    );
    let mut a = TcpStream::connect(addr).unwrap();
    a.write_all(b"a").unwrap();
    l.wait_stdout("recv 1 bytes: \"a\"\n".len());
    let mut b = TcpStream::connect(addr).unwrap();
    b.write_all(b"b").unwrap();
    drop(b);
    // a is still connected and idle; b's read and end of stream show up anyway.
    let want = "recv 1 bytes: \"a\"\nrecv 1 bytes: \"b\"\nrecv 0 bytes: end of stream (the peer closed its side)\n";
    l.wait_stdout(want.len());
    assert_eq!(l.stdout_text(), want);
    drop(a);
    l.interrupt();
    l.expect_code(130);
}

/// The number after `key` in `text` (e.g. "wrote " → the W of "wrote W bytes").
fn figure(text: &str, key: &str) -> Option<u64> {
    let at = text.rfind(key)? + key.len();
    text[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Issue 8, "overstated byte count": `tcp listen > file` fed by `tcp connect`, SIGINT in
/// the middle of the transfer. The summary's "wrote W bytes to stdout" is exactly the file's
/// size, and "received" is never less (the private pipe of the file path may hold more).
/// Six interruptions, each bounded (the feed is 8 GiB; the interrupt comes once 4 MiB are in
/// the file).
#[test]
fn interrupted_transfer_summary_matches_the_file() {
    let dir = std::env::temp_dir().join(format!("socklab-intr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut seen = Vec::new();
    for run in 0..6u64 {
        let output = dir.join(format!("rx-{run}.bin"));
        let mut cmd = std::process::Command::new("sh");
        cmd.args([
            "-c",
            r#"exec "$0" tcp listen 127.0.0.1:0 -v > "$1""#,
            util::BIN,
            output.to_str().unwrap(),
        ]);
        let mut l = spawn(cmd, Input::Null, Output::Keep);
        let addr = l.ready();
        let _c = spawn(
            socklab(&["tcp", "connect", &addr.to_string()]),
            Input::Random {
                len: 8 << 30,
                seed: run + 1,
            },
            Output::Hash,
        );
        let deadline = std::time::Instant::now() + WAIT;
        while std::fs::metadata(&output).map_or(0, |m| m.len()) < 4 << 20 {
            assert!(std::time::Instant::now() < deadline, "no data in the file");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        l.interrupt();
        let lf = l.expect_code(130);
        let size = std::fs::metadata(&output).unwrap().len();
        let wrote = figure(&lf.stderr, "wrote ").expect("a 'wrote W bytes' figure");
        let received = figure(&lf.stderr, "received ").expect("a 'received R' figure");
        lf.check(
            wrote == size && received >= wrote,
            &format!("summary wrote {wrote}, received {received}; the file has {size}"),
        );
        seen.push(format!("received {received}, wrote {wrote}, file {size}"));
        std::fs::remove_file(&output).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
    eprintln!("interrupted runs: {}", seen.join("; "));
}

/// The same through a pipe (the splice path): the summary's written figure is exactly what
/// the reader of stdout got.
#[test]
fn interrupted_transfer_summary_matches_the_pipe() {
    for run in 0..3u64 {
        let (mut l, addr) = server(&["tcp", "listen", "127.0.0.1:0"], Input::Null, Output::Keep);
        let _c = spawn(
            socklab(&["tcp", "connect", &addr.to_string()]),
            Input::Random {
                len: 64 << 20,
                seed: run + 7,
            },
            Output::Hash,
        );
        l.wait_stdout(1 << 20);
        l.interrupt();
        let lf = l.expect_code(130);
        let wrote = figure(&lf.stderr, "wrote ").expect("a 'wrote W bytes' figure");
        lf.check(
            wrote == lf.stdout.len() as u64,
            &format!(
                "summary wrote {wrote}; the pipe carried {}",
                lf.stdout.len()
            ),
        );
    }
}

/// `tcp listen -v` with a terminal on stdin (a pseudo-terminal from script(1)): when the
/// client closes, the listener ends (the terminal may never reach EOF) and still prints the
/// byte summary, as it does without a terminal.
#[test]
fn listen_with_a_terminal_on_stdin_prints_the_summary() {
    if !util::have("script") {
        eprintln!("skipping: no script(1) to give the listener a terminal");
        return;
    }
    let port = util::free_tcp_port(util::V4);
    let mut cmd = std::process::Command::new("script");
    cmd.args([
        "-qec",
        &format!("{} tcp listen 127.0.0.1:{port} -v", util::BIN),
        "/dev/null",
    ]);
    // script(1) copies its stdin (held open here) to the terminal and the terminal (the
    // listener's stdout and stderr) to its stdout.
    let mut l = spawn(cmd, Input::Open, Output::Keep);
    let deadline = std::time::Instant::now() + WAIT;
    while !l.stdout_text().contains("listening on") {
        if std::time::Instant::now() >= deadline {
            l.fail("the listener never said it listens");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    c.write_all(b"hi\n").unwrap();
    drop(c);
    let f = l.expect_code(0);
    f.check(
        f.out()
            .contains("sent 0 bytes, received 3 bytes, wrote 3 bytes to stdout"),
        "the summary, with a terminal on stdin",
    );
}
