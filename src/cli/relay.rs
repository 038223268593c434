//! Moving bytes between stdin/stdout and a connected TCP socket, as fast as the kernel allows,
//! never through user space where the kernel can avoid it:
//! - stdin a pipe: splice(2) into the socket (the pipe grown to 1 MiB: fewer calls);
//!   a regular file: sendfile(2); anything else (a terminal, /dev/zero): 256 KiB read + send;
//! - stdout a pipe: splice(2) from the socket; a regular file or /dev/null: splice(2) through a
//!   private pipe; anything else (a terminal, an O_APPEND file) or `--show`: recv + write.
//!
//! With `--show`, each recv(2) is printed so the user sees how the stream was cut.
//!
//! Counting: `sent` is what reached the socket (send buffer), `received` what was read from
//! it, `written` what reached stdout. Each transfer runs with its counter update as one unit
//! for the SIGINT/SIGTERM summary (`exit::counted`), after poll(2) said its input is ready,
//! so an interrupted run's summary says exactly what reached stdout (the private pipe of the
//! file path may hold bytes read but not yet written: then received > written, and both are
//! printed).

use std::io::{self, Read};
use std::net::Shutdown;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use socklab::sock::{Sock, sys};

use super::common::Started;
use super::exit::counted;
use super::failure;
use super::output::{self, StdoutError};
use super::show::Shower;

/// Bytes moved in each direction, for the summary.
#[derive(Default, Debug)]
pub(crate) struct Counters {
    /// Bytes that reached the socket (its send buffer).
    pub(crate) sent: AtomicU64,
    /// Bytes read from the socket.
    pub(crate) received: AtomicU64,
    /// Bytes that reached stdout.
    pub(crate) written: AtomicU64,
    /// Whether received bytes go to stdout (not echoed back).
    pub(crate) to_stdout: AtomicBool,
    /// When the counting started (the socket was ready).
    pub(crate) started: Started,
}

impl Counters {
    /// `sent S bytes, received R bytes[, wrote W bytes to stdout]`.
    pub(crate) fn summary(&self) -> String {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut s = format!(
            "sent {} bytes, received {} bytes",
            l(&self.sent),
            l(&self.received)
        );
        if self.to_stdout.load(Ordering::Relaxed) {
            s.push_str(&format!(", wrote {} bytes to stdout", l(&self.written)));
        }
        s
    }

    /// The same figures for `--json`.
    pub(crate) fn json(&self) -> serde_json::Value {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut v = serde_json::json!({
            "message": self.summary(),
            "bytes_sent": l(&self.sent),
            "bytes_received": l(&self.received),
        });
        if self.to_stdout.load(Ordering::Relaxed) {
            v["bytes_written_to_stdout"] = l(&self.written).into();
        }
        v["duration_ms"] = self.started.ms().into();
        v
    }

    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

const CHUNK: usize = 1 << 20;
const BUF: usize = 256 << 10;

/// How a copy from the socket ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The peer closed its side (recv returned 0).
    Closed,
    /// Nothing was sent or received for the idle timeout (nc -w).
    Idle,
}

/// Waits until `fd` is readable (data, end of file, or an error to collect), at most
/// `timeout` (none: no limit): poll(2), retried on EINTR. `false` when the time ran out.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    let timeout = match timeout {
        None => PollTimeout::NONE,
        Some(t) => PollTimeout::try_from(t).unwrap_or(PollTimeout::MAX),
    };
    loop {
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(n) => return Ok(n > 0),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits until the socket is readable; `false` when `idle` passed with nothing received and
/// nothing sent meanwhile (the other direction counts as activity, as with nc -w).
fn wait_socket(sock: &Sock, idle: Option<Duration>, counters: &Counters) -> anyhow::Result<bool> {
    loop {
        let sent = counters.sent.load(Ordering::Relaxed);
        if wait_readable(sock.as_fd(), idle)
            .map_err(|e| anyhow::Error::new(e).context("poll the socket"))?
        {
            return Ok(true);
        }
        if counters.sent.load(Ordering::Relaxed) == sent {
            return Ok(false);
        }
    }
}

/// Copies stdin into the socket until stdin ends, then half-closes (shutdown SHUT_WR, a FIN)
/// so the peer sees the end while the reply path stays open.
pub(crate) fn stdin_to_socket(sock: &Sock, counters: &Counters) -> anyhow::Result<()> {
    let stdin = io::stdin();
    let input = stdin.as_fd();
    if sys::is_pipe(input) {
        grow_pipe(input);
        loop {
            wait_readable(input, None).map_err(|e| anyhow::Error::new(e).context("poll stdin"))?;
            let n = counted(|| {
                let n = sock.splice_in(input, CHUNK)?;
                Counters::add(&counters.sent, n);
                Ok::<_, socklab::sock::StepError>(n)
            })
            .map_err(failure)?;
            if n == 0 {
                break;
            }
        }
    } else if sys::is_regular_file(input) {
        loop {
            let n = counted(|| {
                let n = sock.sendfile_in(input, CHUNK)?;
                Counters::add(&counters.sent, n);
                Ok::<_, socklab::sock::StepError>(n)
            })
            .map_err(failure)?;
            if n == 0 {
                break;
            }
        }
    } else {
        let mut buf = vec![0u8; BUF];
        let mut input = stdin.lock();
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(anyhow::Error::new(e).context("read stdin")),
            };
            send_counted(sock, &buf[..n], counters)?;
        }
    }
    sock.shutdown(Shutdown::Write).map_err(failure)?;
    Ok(())
}

/// Sends all of `buf` with as many send(2) calls as it takes, each counted in `sent`.
pub(crate) fn send_counted(sock: &Sock, mut buf: &[u8], counters: &Counters) -> anyhow::Result<()> {
    while !buf.is_empty() {
        let n = counted(|| {
            let n = sock.send(buf)?;
            Counters::add(&counters.sent, n);
            Ok::<_, socklab::sock::StepError>(n)
        })
        .map_err(failure)?;
        buf = &buf[n..];
    }
    Ok(())
}

/// Reads the socket once it is readable: recv(2) and the `received` count as one unit.
/// `None` when `idle` passed first.
fn recv_counted(
    sock: &Sock,
    buf: &mut [u8],
    counters: &Counters,
    idle: Option<Duration>,
) -> anyhow::Result<Option<usize>> {
    if !wait_socket(sock, idle, counters)? {
        return Ok(None);
    }
    counted(|| {
        let n = sock.recv(buf)?;
        Counters::add(&counters.received, n);
        Ok::<_, socklab::sock::StepError>(Some(n))
    })
    .map_err(failure)
}

/// Copies the socket to stdout until the peer closes (recv returns 0). With `show`, one line
/// per recv call instead of the raw bytes, each recv at most `recv_size` bytes. With `idle`,
/// it also ends when nothing was sent or received for that long.
pub(crate) fn socket_to_stdout(
    sock: &Sock,
    counters: &Counters,
    show: Option<&Shower>,
    recv_size: usize,
    idle: Option<Duration>,
) -> anyhow::Result<End> {
    counters.to_stdout.store(true, Ordering::Relaxed);
    let stdout = io::stdout();
    let out = stdout.as_fd();
    if show.is_none() && sys::is_pipe(out) {
        grow_pipe(out);
        loop {
            if !wait_socket(sock, idle, counters)? {
                return Ok(End::Idle);
            }
            // One call reads the socket and fills stdout's pipe: received and written at once.
            let moved = counted(|| {
                let n = sock.splice_out(out, CHUNK)?;
                Counters::add(&counters.received, n);
                Counters::add(&counters.written, n);
                Ok::<_, socklab::sock::StepError>(n)
            });
            match moved {
                Ok(0) => return Ok(End::Closed),
                Ok(_) => {}
                // EPIPE from splice(2) here is the stdout pipe's reader gone (`| head`).
                Err(e) if e.errno() == Some(libc::EPIPE) => {
                    return Err(StdoutError(e.source).into());
                }
                Err(e) => return Err(failure(e)),
            }
        }
    }
    if show.is_none() && sys::splice_sink(out) {
        return socket_to_file(sock, counters, out, idle);
    }
    let mut buf = vec![0u8; recv_size];
    let mut text = Vec::new();
    loop {
        let Some(n) = recv_counted(sock, &mut buf, counters, idle)? else {
            return Ok(End::Idle);
        };
        let data = match show {
            Some(s) => {
                text.clear();
                s.stream_read(&mut text, &buf[..n])?;
                &text[..]
            }
            None => &buf[..n],
        };
        counted(|| {
            output::write(data)?;
            Counters::add(&counters.written, n);
            Ok::<_, StdoutError>(())
        })?;
        if n == 0 {
            return Ok(End::Closed);
        }
    }
}

/// Socket → stdout when stdout is a file or /dev/null: splice(2) into a private pipe, then
/// splice(2) from it into stdout, so the bytes never pass through user space (splice needs a
/// pipe on one side of each call).
fn socket_to_file(
    sock: &Sock,
    counters: &Counters,
    out: BorrowedFd<'_>,
    idle: Option<Duration>,
) -> anyhow::Result<End> {
    let (pipe_r, pipe_w) = nix::unistd::pipe().map_err(io::Error::from)?;
    grow_pipe(pipe_w.as_fd());
    loop {
        if !wait_socket(sock, idle, counters)? {
            return Ok(End::Idle);
        }
        let n = counted(|| {
            let n = sock.splice_out(pipe_w.as_fd(), CHUNK)?;
            Counters::add(&counters.received, n);
            Ok::<_, socklab::sock::StepError>(n)
        })
        .map_err(failure)?;
        if n == 0 {
            return Ok(End::Closed);
        }
        let mut left = n;
        while left > 0 {
            let moved = counted(|| {
                let m = sys::splice(pipe_r.as_fd(), out, left, false).map_err(StdoutError)?;
                Counters::add(&counters.written, m);
                Ok::<_, StdoutError>(m)
            })?;
            if moved == 0 {
                anyhow::bail!("splice to stdout: no progress");
            }
            left -= moved;
        }
    }
}

/// Makes a stdin/stdout pipe as large as an unprivileged process may (1 MiB by default,
/// /proc/sys/fs/pipe-max-size), so each splice(2) moves up to that much instead of the default
/// 64 KiB. A refusal (a lower limit, a pipe over the user's quota) just keeps the default size.
fn grow_pipe(fd: BorrowedFd<'_>) {
    let _ = sys::set_pipe_size(fd, CHUNK);
}

/// Echoes everything the peer sends back to it until the peer closes, then half-closes.
pub(crate) fn echo(sock: &Sock, counters: &Counters) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = recv_counted(sock, &mut buf, counters, None)?.unwrap_or(0);
        if n == 0 {
            sock.shutdown(Shutdown::Write).map_err(failure)?;
            return Ok(());
        }
        send_counted(sock, &buf[..n], counters)?;
    }
}
