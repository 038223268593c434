//! One output discipline for every command (issue 8, "panics when stdout is closed or full";
//! the class of ncat #2202): with stdout a pipe whose reader is already gone, each command
//! exits 0 and says nothing; with stdout on /dev/full (ENOSPC), it exits 1 with one line
//! naming what failed. Never a panic (exit 101).

use std::net::{TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::time::Instant;

use crate::util::{Input, Proc, WAIT, socklab, spawn_with_stdout};

/// Where the child's stdout goes.
#[derive(Debug, Clone, Copy)]
enum Sink {
    /// A pipe whose read end is closed before the child starts: every write is EPIPE.
    Closed,
    /// /dev/full: every write is ENOSPC.
    Full,
}

impl Sink {
    fn stdio(self) -> Stdio {
        match self {
            Self::Closed => {
                let (read, write): (OwnedFd, OwnedFd) = nix::unistd::pipe().expect("pipe");
                drop(read);
                Stdio::from(write)
            }
            Self::Full => Stdio::from(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/full")
                    .expect("open /dev/full"),
            ),
        }
    }

    /// Checks the exit code and stderr a finished child must show for this sink.
    fn check(self, p: &mut Proc, what: &str) {
        let f = p.finish();
        let lines: Vec<&str> = f.stderr.lines().filter(|l| is_output_line(l)).collect();
        let ok = match self {
            Self::Closed => f.status.code() == Some(0) && lines.is_empty(),
            Self::Full => {
                f.status.code() == Some(1)
                    && lines == ["socklab: writing to stdout: no space left on device (ENOSPC)"]
            }
        };
        f.check(
            ok && !f.stderr.contains("panicked"),
            &format!("{what} with stdout {self:?}"),
        );
    }
}

/// stderr lines that are not the trace or `-v` diagnostics a command prints on purpose.
fn is_output_line(l: &str) -> bool {
    l.starts_with("socklab: ")
        && ![
            "listening on",
            "bound to",
            "connection from",
            "applied",
            "summary",
            "sent ",
        ]
        .iter()
        .any(|k| l.contains(k))
}

fn run(args: &[&str], sink: Sink) {
    let mut p = spawn_with_stdout(socklab(args), Input::Null, sink.stdio());
    sink.check(&mut p, &args.join(" "));
}

#[test]
fn generators_and_reports_on_closed_or_full_stdout() {
    for sink in [Sink::Closed, Sink::Full] {
        for args in [
            &["completions", "bash"][..],
            &["completions", "zsh"],
            &["man"],
            &["--help"],
            &["--version"],
            &["tcp", "listen", "--help"],
            &["demo"],
            &["demo", "--json"],
            &["lab", "list"],
            &["lab", "list", "--json"],
            &["bench", "local", "--tcp", "-t", "100ms"],
        ] {
            run(args, sink);
        }
    }
}

/// `tcp listen` writing a client's bytes: the recv + write path (/dev/full is a character
/// device) and the splice path (a pipe).
#[test]
fn tcp_listen_on_closed_or_full_stdout() {
    for sink in [Sink::Closed, Sink::Full] {
        let mut p = spawn_with_stdout(
            socklab(&["tcp", "listen", "127.0.0.1:0", "-v"]),
            Input::Null,
            sink.stdio(),
        );
        let addr = p.ready();
        let mut c = TcpStream::connect(addr).expect("connect");
        // Bounded: the listener stops at the first failed write; a few MiB at most.
        let chunk = vec![b'x'; 64 << 10];
        let deadline = Instant::now() + WAIT;
        for _ in 0..64 {
            if std::io::Write::write_all(&mut c, &chunk).is_err() || Instant::now() > deadline {
                break;
            }
        }
        drop(c);
        sink.check(&mut p, "tcp listen");
    }
}

/// `tcp connect` writing what the server sends.
#[test]
fn tcp_connect_on_closed_or_full_stdout() {
    for sink in [Sink::Closed, Sink::Full] {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap().to_string();
        let mut p = spawn_with_stdout(
            socklab(&["tcp", "connect", &addr]),
            Input::Null,
            sink.stdio(),
        );
        let (mut conn, _) = server.accept().expect("accept");
        let _ = std::io::Write::write_all(&mut conn, b"hello\n");
        drop(conn);
        sink.check(&mut p, "tcp connect");
    }
}

/// `udp recv` writing datagrams, raw and with --show.
#[test]
fn udp_recv_on_closed_or_full_stdout() {
    for sink in [Sink::Closed, Sink::Full] {
        for extra in [&[][..], &["--show"]] {
            let mut args = vec!["udp", "recv", "-b", "127.0.0.1:0", "-v"];
            args.extend_from_slice(extra);
            let mut p = spawn_with_stdout(socklab(&args), Input::Null, sink.stdio());
            let to = p.ready();
            let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
            tx.send_to(b"hello\n", to).unwrap();
            sink.check(&mut p, &args.join(" "));
        }
    }
}

/// Diagnostics on a stderr that fails (/dev/full) are dropped, not a panic: the run's own
/// result decides the exit code (0 for demo, 2 for a usage error).
#[test]
fn failing_stderr_is_not_a_panic() {
    for (args, code) in [
        (&["demo"][..], 0),
        (&["tcp"], 2),
        (&["tcp", "listen", "x"], 2),
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("open /dev/full");
        let status = socklab(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(full)
            .status()
            .expect("run socklab");
        assert_eq!(
            status.code(),
            Some(code),
            "socklab {args:?} with stderr on /dev/full"
        );
    }
}
