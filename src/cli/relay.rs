//! Moving bytes between stdin/stdout and a connected TCP socket, as fast as the kernel allows,
//! never through user space where the kernel can avoid it:
//! - stdin a pipe: splice(2) into the socket (the pipe grown to 1 MiB: fewer calls);
//!   a regular file: sendfile(2); anything else (a terminal, /dev/zero): 256 KiB read + send;
//! - stdout a pipe: splice(2) from the socket; a regular file or /dev/null: splice(2) through a
//!   private pipe; anything else (a terminal, an O_APPEND file) or `--show`: recv + write.
//!
//! With `--show`, each recv(2) is printed so the user sees how the stream was cut.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};

use socklab::sock::{Sock, sys};

use super::failure;
use super::show::Shower;

/// Bytes moved in each direction, for the summary.
#[derive(Default, Debug)]
pub(crate) struct Counters {
    pub(crate) sent: AtomicU64,
    pub(crate) received: AtomicU64,
}

impl Counters {
    pub(crate) fn summary(&self) -> String {
        format!(
            "sent {} bytes, received {} bytes",
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed)
        )
    }
}

const CHUNK: usize = 1 << 20;
const BUF: usize = 256 << 10;

/// Copies stdin into the socket until stdin ends, then half-closes (shutdown SHUT_WR, a FIN)
/// so the peer sees the end while the reply path stays open.
pub(crate) fn stdin_to_socket(sock: &Sock, counters: &Counters) -> anyhow::Result<()> {
    let stdin = io::stdin();
    if sys::is_pipe(stdin.as_fd()) {
        grow_pipe(stdin.as_fd());
        loop {
            let n = sock.splice_in(stdin.as_fd(), CHUNK).map_err(failure)?;
            if n == 0 {
                break;
            }
            counters.sent.fetch_add(n as u64, Ordering::Relaxed);
        }
    } else if sys::is_regular_file(stdin.as_fd()) {
        loop {
            let n = sock.sendfile_in(stdin.as_fd(), CHUNK).map_err(failure)?;
            if n == 0 {
                break;
            }
            counters.sent.fetch_add(n as u64, Ordering::Relaxed);
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
            send_all(sock, &buf[..n])?;
            counters.sent.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
    sock.shutdown(Shutdown::Write).map_err(failure)?;
    Ok(())
}

/// Sends all of `buf` with as many send(2) calls as it takes.
pub(crate) fn send_all(sock: &Sock, mut buf: &[u8]) -> anyhow::Result<()> {
    while !buf.is_empty() {
        let n = sock.send(buf).map_err(failure)?;
        buf = &buf[n..];
    }
    Ok(())
}

/// Copies the socket to stdout until the peer closes (recv returns 0). With `show`, one line
/// per recv call instead of the raw bytes, each recv at most `recv_size` bytes.
///
/// `shared` says other threads write to the same stdout at the same time (`tcp listen -k`):
/// then a file is written with write(2), whose file offset is locked, not with splice(2),
/// whose offset is not (concurrent splices to one file could overwrite each other).
pub(crate) fn socket_to_stdout(
    sock: &Sock,
    counters: &Counters,
    show: Option<&Shower>,
    recv_size: usize,
    shared: bool,
) -> anyhow::Result<()> {
    let stdout = io::stdout();
    if show.is_none() && sys::is_pipe(stdout.as_fd()) {
        grow_pipe(stdout.as_fd());
        loop {
            match sock.splice_out(stdout.as_fd(), CHUNK) {
                Ok(0) => return Ok(()),
                Ok(n) => counters.received.fetch_add(n as u64, Ordering::Relaxed),
                // EPIPE from splice(2) here is the stdout pipe's reader gone (`| head`).
                Err(e) if e.errno() == Some(libc::EPIPE) => return Err(stdout_closed()),
                Err(e) => return Err(failure(e)),
            };
        }
    }
    if show.is_none() && !shared && sys::splice_sink(stdout.as_fd()) {
        return socket_to_file(sock, counters, stdout.as_fd());
    }
    let mut buf = vec![0u8; recv_size];
    loop {
        let n = sock.recv(&mut buf).map_err(failure)?;
        counters.received.fetch_add(n as u64, Ordering::Relaxed);
        // Locked per read, not per connection: with -k, other clients' threads write too.
        let mut out = stdout.lock();
        match show {
            Some(s) => s.stream_read(&mut out, &buf[..n])?,
            None if n > 0 => out.write_all(&buf[..n])?,
            None => {}
        }
        out.flush()?;
        if n == 0 {
            return Ok(());
        }
    }
}

/// Socket → stdout when stdout is a file or /dev/null: splice(2) into a private pipe, then
/// splice(2) from it into stdout, so the bytes never pass through user space (splice needs a
/// pipe on one side of each call).
fn socket_to_file(
    sock: &Sock,
    counters: &Counters,
    out: std::os::fd::BorrowedFd<'_>,
) -> anyhow::Result<()> {
    let (pipe_r, pipe_w) = nix::unistd::pipe().map_err(io::Error::from)?;
    grow_pipe(pipe_w.as_fd());
    loop {
        let n = sock.splice_out(pipe_w.as_fd(), CHUNK).map_err(failure)?;
        if n == 0 {
            return Ok(());
        }
        counters.received.fetch_add(n as u64, Ordering::Relaxed);
        let mut left = n;
        while left > 0 {
            let moved = sys::splice(pipe_r.as_fd(), out, left, false)
                .map_err(|e| anyhow::Error::new(e).context("splice to stdout"))?;
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
fn grow_pipe(fd: std::os::fd::BorrowedFd<'_>) {
    let _ = sys::set_pipe_size(fd, CHUNK);
}

fn stdout_closed() -> anyhow::Error {
    io::Error::from(io::ErrorKind::BrokenPipe).into()
}

/// Echoes everything the peer sends back to it until the peer closes, then half-closes.
pub(crate) fn echo(sock: &Sock, counters: &Counters) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = sock.recv(&mut buf).map_err(failure)?;
        if n == 0 {
            sock.shutdown(Shutdown::Write).map_err(failure)?;
            return Ok(());
        }
        counters.received.fetch_add(n as u64, Ordering::Relaxed);
        send_all(sock, &buf[..n])?;
        counters.sent.fetch_add(n as u64, Ordering::Relaxed);
    }
}
