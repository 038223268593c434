//! `tcp listen -k`: many clients at once on one thread, driven by readiness (epoll(7),
//! level-triggered, through nix), as nc and socat fork or thread per client and we do not:
//! an idle client costs its socket and a slot here (no thread, no buffer). A client's bytes are
//! read into one shared buffer and written to stdout at once; with `--echo`, what a client
//! does not take yet waits in its own buffer (at most one read, `--recv-size`, 64 KiB by
//! default) and the client is not read again until it has taken it.
//!
//! A closed client frees its slot at once; `--max-clients` turns further clients away
//! (accepted and closed). `--idle-timeout` ends the run when no client is connected and none
//! came for that long; `--count N` stops accepting after N clients and ends when they are done.

use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use socklab::sock::{Sock, StepError};

use super::common::OutputArgs;
use super::exit::counted;
use super::failure;
use super::output::{self, StdoutError};
use super::relay::Counters;
use super::show::Shower;

/// What `tcp listen -k` was asked to do.
pub(crate) struct Config<'a> {
    pub(crate) out: &'a OutputArgs,
    /// Echo each client's bytes back instead of writing them to stdout.
    pub(crate) echo: bool,
    /// `--show`/`--json`: one line per read instead of the raw bytes.
    pub(crate) show: Option<Shower>,
    /// Size of each read.
    pub(crate) recv_size: usize,
    /// At most this many clients at once.
    pub(crate) max_clients: usize,
    /// Stop accepting after this many clients.
    pub(crate) count: Option<u64>,
    /// End when no client is connected and none came for this long.
    pub(crate) idle: Option<Duration>,
}

/// One connected client.
struct Client {
    sock: Sock,
    from: SocketAddr,
    /// Echo bytes the client has not taken yet (empty, unallocated, while it keeps up).
    pending: Vec<u8>,
}

/// The listener's token; client `i` has token `i + 1`.
const LISTENER: u64 = 0;

/// Serves clients until `--count` is reached and they are done, or `--idle-timeout` passes
/// with none connected (or a signal ends the process).
pub(crate) fn serve(cfg: &Config<'_>, listener: &Sock, counters: &Counters) -> anyhow::Result<()> {
    raise_fd_limit(cfg.max_clients);
    counters
        .to_stdout
        .store(!cfg.echo, std::sync::atomic::Ordering::Relaxed);
    listener.set_nonblocking(true)?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
        .map_err(|e| anyhow::Error::new(std::io::Error::from(e)).context("epoll_create1"))?;
    let mut s = State {
        cfg,
        counters,
        epoll,
        clients: Vec::new(),
        free: Vec::new(),
        active: 0,
        served: 0,
        accepting: true,
        paused: false,
        resume: false,
        buf: vec![0u8; cfg.recv_size],
        text: Vec::new(),
    };
    s.watch(listener, LISTENER, EpollFlags::EPOLLIN)?;
    let mut events = vec![EpollEvent::empty(); 256];
    loop {
        if !s.accepting && s.active == 0 {
            return Ok(());
        }
        if s.resume {
            s.watch(listener, LISTENER, EpollFlags::EPOLLIN)?;
            (s.paused, s.resume) = (false, false);
        }
        let timeout = match (s.active, cfg.idle) {
            (0, Some(t)) => EpollTimeout::try_from(t).unwrap_or(EpollTimeout::MAX),
            _ => EpollTimeout::NONE,
        };
        let n = match s.epoll.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                return Err(anyhow::Error::new(std::io::Error::from(e)).context("epoll_wait"));
            }
        };
        if n == 0 && s.active == 0 {
            cfg.out
                .note("idle", || "idle timeout: no client came".into());
            return Ok(());
        }
        for ev in &events[..n] {
            match ev.data() {
                LISTENER => s.accept(listener)?,
                token => s.client_ready((token - 1) as usize, ev.events())?,
            }
        }
    }
}

/// Raises the soft limit on open files (RLIMIT_NOFILE) to the hard limit when `clients`
/// would not fit under it (the default soft limit is often 1024); a refusal leaves it, and
/// accept(2) then says EMFILE, which is reported.
fn raise_fd_limit(clients: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let want = clients as u64 + 64;
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < want && hard > soft {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard);
        }
    }
}

struct State<'a> {
    cfg: &'a Config<'a>,
    counters: &'a Counters,
    epoll: Epoll,
    clients: Vec<Option<Client>>,
    free: Vec<usize>,
    active: usize,
    served: u64,
    /// Still accepting (`--count` not reached).
    accepting: bool,
    /// Not watching the listener for lack of file descriptors (EMFILE) until a client leaves.
    paused: bool,
    /// A client left while paused: watch the listener again.
    resume: bool,
    buf: Vec<u8>,
    text: Vec<u8>,
}

impl State<'_> {
    fn watch(&self, fd: impl AsFd, token: u64, flags: EpollFlags) -> anyhow::Result<()> {
        self.epoll
            .add(fd, EpollEvent::new(flags, token))
            .map_err(|e| anyhow::Error::new(std::io::Error::from(e)).context("epoll_ctl ADD"))
    }

    fn rewatch(&self, fd: impl AsFd, token: u64, flags: EpollFlags) -> anyhow::Result<()> {
        self.epoll
            .modify(fd, &mut EpollEvent::new(flags, token))
            .map_err(|e| anyhow::Error::new(std::io::Error::from(e)).context("epoll_ctl MOD"))
    }

    fn unwatch(&self, fd: impl AsFd) {
        // The fd is closed right after, which removes it from the epoll set anyway.
        let _ = self.epoll.delete(fd);
    }

    /// One accept(2) per readiness (level-triggered: a backlog of several stays readable).
    fn accept(&mut self, listener: &Sock) -> anyhow::Result<()> {
        let out = self.cfg.out;
        let (sock, from) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.errno() == Some(libc::EAGAIN) => return Ok(()),
            Err(e) if matches!(e.errno(), Some(libc::EMFILE | libc::ENFILE)) => {
                out.note("paused", || {
                    format!("{e}; not accepting until a client leaves")
                });
                self.unwatch(listener);
                self.paused = true;
                return Ok(());
            }
            // A client that reset before we took it (ECONNABORTED), say: not ours to end on.
            Err(e) => {
                out.note("accept_error", || e.to_string());
                return Ok(());
            }
        };
        if self.active >= self.cfg.max_clients {
            let max = self.cfg.max_clients;
            out.note("refused", || {
                format!("{from}: over --max-clients {max}, closed")
            });
            sock.close();
            return Ok(());
        }
        sock.set_nonblocking(true)?;
        self.served += 1;
        out.note("accepted", || format!("connection from {from}"));
        let slot = match self.free.pop() {
            Some(i) => i,
            None => {
                self.clients.push(None);
                self.clients.len() - 1
            }
        };
        self.watch(&sock, slot as u64 + 1, EpollFlags::EPOLLIN)?;
        self.clients[slot] = Some(Client {
            sock,
            from,
            pending: Vec::new(),
        });
        self.active += 1;
        if self.cfg.count.is_some_and(|n| self.served >= n) {
            self.accepting = false;
            self.unwatch(listener);
        }
        Ok(())
    }

    fn client_ready(&mut self, slot: usize, events: EpollFlags) -> anyhow::Result<()> {
        let Some(mut c) = self.clients.get_mut(slot).and_then(Option::take) else {
            return Ok(());
        };
        let result = if !c.pending.is_empty() {
            self.flush_echo(&mut c, slot)
        } else if events
            .intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR)
        {
            self.read(&mut c, slot)
        } else {
            Ok(true)
        };
        match result {
            Ok(true) => {
                self.clients[slot] = Some(c);
                Ok(())
            }
            Ok(false) => {
                self.close(c, slot);
                Ok(())
            }
            Err(e) if output_failed(&e) => Err(e),
            Err(e) => {
                let from = c.from;
                self.cfg
                    .out
                    .note("client_error", || format!("{from}: {e:#}"));
                self.close(c, slot);
                Ok(())
            }
        }
    }

    /// One read; `false` when the client is done.
    fn read(&mut self, c: &mut Client, slot: usize) -> anyhow::Result<bool> {
        let counters = self.counters;
        let buf = &mut self.buf;
        let n = match counted(|| {
            let n = c.sock.recv(buf)?;
            counters
                .received
                .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            Ok::<_, StepError>(n)
        }) {
            Ok(n) => n,
            Err(e) if e.errno() == Some(libc::EAGAIN) => return Ok(true),
            Err(e) => return Err(failure(e)),
        };
        if self.cfg.echo {
            if n == 0 {
                c.sock.shutdown(Shutdown::Write).map_err(failure)?;
                return Ok(false);
            }
            let mut at = 0;
            while at < n {
                match self.send_some(c, &self.buf[at..n])? {
                    Some(m) => at += m,
                    None => {
                        // The client is not taking its echo: keep the rest, wait for it.
                        c.pending.extend_from_slice(&self.buf[at..n]);
                        self.rewatch(&c.sock, slot as u64 + 1, EpollFlags::EPOLLOUT)?;
                        return Ok(true);
                    }
                }
            }
            return Ok(true);
        }
        let data = match &self.cfg.show {
            Some(s) => {
                self.text.clear();
                s.stream_read(&mut self.text, &self.buf[..n])?;
                &self.text[..]
            }
            None => &self.buf[..n],
        };
        counted(|| {
            output::write(data)?;
            counters
                .written
                .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            Ok::<_, StdoutError>(())
        })?;
        Ok(n > 0)
    }

    /// One send(2) of `data`, counted; `None` when the client's buffer is full (EAGAIN).
    fn send_some(&self, c: &Client, data: &[u8]) -> anyhow::Result<Option<usize>> {
        let counters = self.counters;
        let sent = counted(|| {
            let n = c.sock.send(data)?;
            counters
                .sent
                .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            Ok::<_, StepError>(n)
        });
        match sent {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.errno() == Some(libc::EAGAIN) => Ok(None),
            Err(e) => Err(failure(e)),
        }
    }

    /// Sends what the client has not taken yet; once all is taken, reads it again.
    /// `false` when the client is done.
    fn flush_echo(&self, c: &mut Client, slot: usize) -> anyhow::Result<bool> {
        while !c.pending.is_empty() {
            match self.send_some(c, &c.pending)? {
                Some(n) => {
                    c.pending.drain(..n);
                }
                None => return Ok(true),
            }
        }
        // Taken: free the buffer (an idle client holds none) and read again.
        c.pending = Vec::new();
        self.rewatch(&c.sock, slot as u64 + 1, EpollFlags::EPOLLIN)?;
        Ok(true)
    }

    /// Closes a client and frees its slot before saying so: whoever reads "closed" may
    /// connect again and find the slot free.
    fn close(&mut self, c: Client, slot: usize) {
        self.unwatch(&c.sock);
        let from = c.from;
        c.sock.close();
        self.free.push(slot);
        self.active -= 1;
        self.resume = self.paused && self.accepting;
        self.cfg.out.note("closed", || format!("{from} closed"));
    }
}

/// Whether the error is a failed write to stdout, which ends the run (not just a client).
fn output_failed(e: &anyhow::Error) -> bool {
    super::exit::stdout_error(e).is_some()
}
