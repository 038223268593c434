//! `socklab udp …`: the three UDP patterns of the article, one subcommand per role.
//! - `send` / `recv`: only the receiver binds; the sender's first sendto binds it implicitly.
//! - `peer`: both sides bind, and each sends with sendto to the other.
//! - `connect` / `serve`: one side connects (send/recv without an address, ICMP errors come
//!   back as ECONNREFUSED), the other binds and answers each datagram's source with sendto.
//!
//! Datagrams are never a stream here: one datagram per input line (or per `--framing`
//! chunk), and each received datagram is one output unit, its truncation reported.

use std::io::{self, BufRead, Read};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use clap::{Args, Subcommand};
use socklab::sock::{Datagram, Proto, Sock, Step, StepError, sys, udp};
use socklab::{addr, jsonl};

use super::common::{
    FamilyArgs, Hinted, OutputArgs, ReuseAddrArgs, SockArgs, Started, UdpArgs, UdpLimitArgs,
    UdpRecvArgs, parse_dur,
};
use super::exit::{counted, exit_now, finished_soon, on_signal_summary};
use super::failure;
use super::habits::{host_port, scan_targets, step_error};
use super::output::{self, StdoutError, diag};
use super::show::Shower;
use super::tcp::parse_secs;

#[derive(Subcommand, Debug)]
pub(crate) enum UdpCommand {
    /// Receive-only: socket, setsockopt…, bind, then recvmsg each datagram.
    Recv(RecvCmd),
    /// Send-only: socket, setsockopt…, sendto (no bind: the kernel binds at the first sendto).
    Send(SendCmd),
    /// Peer: bind A, sendto B, and receive from anyone on A.
    Peer(PeerCmd),
    /// Connected client: socket, (bind), connect, then send/recv without an address.
    Connect(ConnectCmd),
    /// Bound server of connected UDP: recvfrom, and reply with sendto to each datagram's source.
    Serve(ServeCmd),
}

/// How stdin is cut into datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// One datagram per line, the newline included.
    Line,
    /// Fixed-size chunks of SIZE bytes (the last one may be shorter).
    Raw(usize),
    /// All of stdin as one datagram (empty stdin: a zero-length datagram).
    Whole,
}

/// The largest datagram payload the kernel could ever take (IPv6 jumbograms aside); reading
/// one more byte than this lets the kernel say EMSGSIZE instead of us splitting anything.
const MAX_DATAGRAM: usize = 65535;

fn parse_framing(s: &str) -> Result<Framing, String> {
    match s {
        "line" => Ok(Framing::Line),
        "whole" => Ok(Framing::Whole),
        _ => {
            let size = s
                .strip_prefix("raw:")
                .ok_or_else(|| format!("unknown framing '{s}' (line, whole or raw:SIZE)"))?;
            let n = socklab::units::parse_size(size).map_err(|e| e.to_string())?;
            if n == 0 || n > MAX_DATAGRAM as u64 + 1 {
                return Err(format!(
                    "raw size {n} out of range (1 to {})",
                    MAX_DATAGRAM + 1
                ));
            }
            Ok(Framing::Raw(n as usize))
        }
    }
}

#[derive(Args, Debug, Clone)]
pub(crate) struct SendOpts {
    /// How stdin becomes datagrams: line (default), raw:SIZE, or whole.
    #[arg(long, value_name = "line|raw:SIZE|whole", default_value = "line",
          value_parser = Hinted::new(parse_framing, ["line", "whole", "raw:"]))]
    framing: Framing,
}

/// The bound address of `udp recv` and `udp serve`: `ADDR [PORT]` as `tcp listen` takes it,
/// or `--bind ADDR`.
#[derive(Args, Debug)]
pub(crate) struct BindAddr {
    /// Address to bind: HOST:PORT, [V6]:PORT, :PORT or PORT; or HOST PORT as two words.
    #[arg(value_name = "ADDR", required_unless_present = "bind")]
    addr: Option<String>,
    /// The port, when ADDR is only the host (nc's `HOST PORT`).
    #[arg(value_name = "PORT", requires = "addr")]
    port: Option<String>,
    /// The address to bind, as a flag (same as ADDR).
    #[arg(long, short = 'b', value_name = "ADDR", conflicts_with = "addr")]
    bind: Option<String>,
}

impl BindAddr {
    fn resolve(&self, family: &FamilyArgs) -> anyhow::Result<SocketAddr> {
        match (&self.addr, &self.bind) {
            (Some(a), _) => family.resolve(&host_port(a, self.port.as_deref())?),
            (None, Some(b)) => family.resolve_local(b),
            (None, None) => anyhow::bail!("no address to bind (give ADDR or --bind ADDR)"),
        }
    }
}

/// A destination: `HOST:PORT`, or nc's `HOST PORT`.
#[derive(Args, Debug)]
pub(crate) struct DestAddr {
    /// Destination: HOST:PORT or [V6]:PORT; or HOST PORT as two words.
    #[arg(value_name = "ADDR")]
    to: String,
    /// The port, when ADDR is only the host (nc's `HOST PORT`).
    #[arg(value_name = "PORT")]
    port: Option<String>,
}

impl DestAddr {
    fn resolve(&self, family: &FamilyArgs) -> anyhow::Result<SocketAddr> {
        family.resolve_dest(&host_port(&self.to, self.port.as_deref())?)
    }
}

#[derive(Args, Debug)]
pub(crate) struct RecvCmd {
    #[command(flatten)]
    at: BindAddr,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
pub(crate) struct SendCmd {
    #[command(flatten)]
    to: DestAddr,
    #[command(flatten)]
    send: SendOpts,
    #[command(flatten)]
    common: Common,
}

/// nc's `-q` for the UDP commands that both read stdin and receive.
#[derive(Args, Debug)]
pub(crate) struct QuitArgs {
    /// After stdin ends, keep receiving replies for SECS more, then quit (as nc -u -q; then
    /// shutdown SHUT_RD ends the blocked receive). Default: receive until --count,
    /// --idle-timeout or Ctrl-C.
    #[arg(short = 'q', value_name = "SECS", value_parser = parse_secs)]
    quit_after: Option<Duration>,
}

#[derive(Args, Debug)]
pub(crate) struct PeerCmd {
    /// Local address to bind.
    #[arg(long, short = 'b', value_name = "ADDR")]
    bind: String,
    /// Peer to send to.
    #[arg(long, value_name = "ADDR")]
    to: String,
    #[command(flatten)]
    send: SendOpts,
    #[command(flatten)]
    quit: QuitArgs,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
pub(crate) struct ConnectCmd {
    #[command(flatten)]
    to: DestAddr,
    /// Bind the local end first (HOST alone or HOST:0 lets the kernel pick the port).
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
    /// Port check, as nc -u -z: per port, a connected socket sends one empty datagram and
    /// waits up to -w for an answer. An ICMP port unreachable (ECONNREFUSED on recv) means
    /// closed; a reply means open; silence means open|filtered, since UDP cannot tell a port
    /// that stays silent from a firewall that drops. PORT may be a range (20-25); one line per
    /// port on stdout; exit 0 when any port is not closed, 1 when all are.
    #[arg(short = 'z', long = "zero-io", conflicts_with_all = ["framing", "quit_after"])]
    zero_io: bool,
    /// As nc -w: with -z, how long each port gets to answer (default 1s); otherwise the idle
    /// timeout (--idle-timeout, given too, takes precedence).
    #[arg(short = 'w', value_name = "DUR", value_parser = parse_dur)]
    wait: Option<Duration>,
    #[command(flatten)]
    send: SendOpts,
    #[command(flatten)]
    quit: QuitArgs,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
pub(crate) struct ServeCmd {
    #[command(flatten)]
    at: BindAddr,
    /// Send each datagram back to its source (sendto) instead of printing it.
    #[arg(long)]
    echo: bool,
    #[command(flatten)]
    send: SendOpts,
    #[command(flatten)]
    quit: QuitArgs,
    #[command(flatten)]
    common: Common,
}

/// Flags every UDP command takes.
#[derive(Args, Debug)]
pub(crate) struct Common {
    #[command(flatten)]
    family: FamilyArgs,
    #[command(flatten)]
    reuse: ReuseAddrArgs,
    #[command(flatten)]
    sock: SockArgs,
    #[command(flatten)]
    udp: UdpArgs,
    #[command(flatten)]
    recv: UdpRecvArgs,
    #[command(flatten)]
    limit: UdpLimitArgs,
    #[command(flatten)]
    out: OutputArgs,
}

/// Datagram and byte counts in each direction, and the kernel's drops at the receiving
/// socket.
#[derive(Default)]
struct Counters {
    /// Datagrams (and their bytes) that reached the socket: sendto/send returned.
    sent: AtomicU64,
    sent_bytes: AtomicU64,
    /// Datagrams (and their real lengths) received and written to stdout.
    received: AtomicU64,
    received_bytes: AtomicU64,
    /// The receiving socket's drop counter as the last datagram's SO_RXQ_OVFL message gave it.
    dropped_seen: AtomicU64,
    /// A duplicate of the receiving socket, to read its drop counter at the end (SO_MEMINFO's
    /// sk_drops, the counter SO_RXQ_OVFL reports): drops after the last datagram count too.
    receiver: OnceLock<socket2::Socket>,
    /// When the counting started (the socket was ready).
    started: Started,
}

impl Counters {
    /// Datagrams the kernel dropped at the receiving socket for lack of buffer space, if
    /// this run receives.
    fn dropped(&self) -> Option<u64> {
        let sock = self.receiver.get()?;
        let now = sys::mem_info(sock.as_fd()).map_or(0, |m| u64::from(m.drops));
        Some(now.max(self.dropped_seen.load(Ordering::Relaxed)))
    }

    fn summary(&self) -> String {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut s = format!(
            "sent {} datagrams ({} bytes), received {} datagrams ({} bytes)",
            l(&self.sent),
            l(&self.sent_bytes),
            l(&self.received),
            l(&self.received_bytes)
        );
        if let Some(d) = self.dropped() {
            s.push_str(&format!(
                ", dropped {d} datagrams (receive buffer full: the socket's SO_RXQ_OVFL count)"
            ));
        }
        s
    }

    fn json(&self) -> serde_json::Value {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "message": self.summary(),
            "datagrams_sent": l(&self.sent),
            "bytes_sent": l(&self.sent_bytes),
            "datagrams_received": l(&self.received),
            "bytes_received": l(&self.received_bytes),
            "kernel_drops": self.dropped(),
            "duration_ms": self.started.ms(),
        })
    }
}

pub(crate) fn run(cmd: UdpCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        UdpCommand::Recv(c) => {
            let addr = c.at.resolve(&c.common.family)?;
            let env = Env::new(&c.common);
            let (sock, applied) = udp::bound(addr, &env.opts(&c.common), &env.rec)
                .map_err(|e| step_error(e, Proto::Udp, c.common.reuse.reuseaddr()))?;
            env.start(&c.common, &sock, &applied)?;
            receive(&c.common, &env, &sock, |_, _| Ok(()))?;
            env.done(&c.common)
        }
        UdpCommand::Send(c) => {
            let to = c.to.resolve(&c.common.family)?;
            let env = Env::new(&c.common);
            let (sock, applied) = udp::unbound(&to, &env.opts(&c.common), &env.rec)
                .map_err(|e| step_error(e, Proto::Udp, c.common.reuse.reuseaddr()))?;
            c.common.out.applied(&applied);
            send_stdin(&c.send, &c.common, &env, |b| sock.send_to(b, to))?;
            c.common.out.note("local", || {
                format!(
                    "sent from {} (the kernel bound it at the first sendto)",
                    addr_or_q(sock.local_addr())
                )
            });
            env.done(&c.common)
        }
        UdpCommand::Peer(c) => {
            let addr = c.common.family.resolve_local(&c.bind)?;
            let to = c.common.family.resolve_dest(&c.to)?;
            let env = Env::new(&c.common);
            let (sock, applied) = udp::bound(addr, &env.opts(&c.common), &env.rec)
                .map_err(|e| step_error(e, Proto::Udp, c.common.reuse.reuseaddr()))?;
            env.start(&c.common, &sock, &applied)?;
            duplex(&c.send, c.quit.quit_after, &c.common, &env, &sock, |b| {
                sock.send_to(b, to)
            })?;
            env.done(&c.common)
        }
        UdpCommand::Connect(c) if c.zero_io => port_check(&c),
        UdpCommand::Connect(mut c) => {
            if c.common.limit.idle_timeout.is_none() {
                c.common.limit.idle_timeout = c.wait;
            }
            let to = c.to.resolve(&c.common.family)?;
            let local = c
                .bind
                .as_deref()
                .map(|b| c.common.family.resolve_local(b))
                .transpose()?;
            let env = Env::new(&c.common);
            let (sock, applied) = udp::connected(to, local, &env.opts(&c.common), &env.rec)
                .map_err(|e| step_error(e, Proto::Udp, c.common.reuse.reuseaddr()))?;
            env.start(&c.common, &sock, &applied)?;
            duplex(&c.send, c.quit.quit_after, &c.common, &env, &sock, |b| {
                sock.send(b)
            })?;
            env.done(&c.common)
        }
        UdpCommand::Serve(c) => {
            let addr = c.at.resolve(&c.common.family)?;
            let env = Env::new(&c.common);
            let (sock, applied) = udp::bound(addr, &env.opts(&c.common), &env.rec)
                .map_err(|e| step_error(e, Proto::Udp, c.common.reuse.reuseaddr()))?;
            env.start(&c.common, &sock, &applied)?;
            serve(&c, &env, &sock)?;
            env.done(&c.common)
        }
    }
}

/// What every UDP run shares: the recorder, the counters, the output format, the -q state.
struct Env {
    rec: socklab::trace::Recorder,
    counters: Arc<Counters>,
    shower: Option<Shower>,
    quit: Quit,
}

/// nc's -q for UDP: once stdin has ended, replies are received for the given time more; then
/// shutdown(2) SHUT_RD wakes the blocked recvmsg, which returns 0, and the receive loop ends.
/// On an unconnected socket (`peer`, `serve`) Linux wakes the receiver the same way, though the
/// call reports ENOTCONN (net/ipv4/af_inet.c, `inet_shutdown`).
#[derive(Default)]
struct Quit {
    /// Set just before the shutdown: the receive loop ends at its next return.
    quitting: AtomicBool,
    /// Whether the receive loop has ended (then the sender side need not wait).
    received_all: (Mutex<bool>, Condvar),
}

impl Quit {
    /// On the stdin side, after stdin ended: waits `after` for the receive loop to end on its
    /// own (--count, --idle-timeout), then ends it.
    fn after_stdin(&self, after: Duration, sock: &Sock) {
        let (done, cond) = &self.received_all;
        let guard = done.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = cond
            .wait_timeout_while(guard, after, |done| !*done)
            .unwrap_or_else(|e| e.into_inner());
        if *guard {
            return;
        }
        self.quitting.store(true, Ordering::Relaxed);
        match sock.shutdown(std::net::Shutdown::Read) {
            Ok(()) => {}
            Err(e) if e.errno() == Some(libc::ENOTCONN) => {}
            Err(e) => exit_now(Err(failure(e))),
        }
    }

    /// On the receive side, when the loop has ended.
    fn received_all(&self) {
        *self
            .received_all
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = true;
        self.received_all.1.notify_all();
    }
}

impl Env {
    fn new(c: &Common) -> Self {
        let counters = Arc::new(Counters::default());
        let cc = counters.clone();
        on_signal_summary(move || cc.summary());
        Self {
            rec: c.out.recorder(),
            counters,
            shower: (c.recv.show || c.out.json).then(|| Shower::new(c.out.json)),
            quit: Quit::default(),
        }
    }

    fn opts(&self, c: &Common) -> socklab::sock::options::SockOpts {
        c.sock.opts(c.reuse.reuseaddr(), None, Some(&c.udp))
    }

    /// Reports the options as applied, turns on SO_RXQ_OVFL (the drop count) and says where
    /// the socket is bound.
    fn start(
        &self,
        c: &Common,
        sock: &Sock,
        applied: &[socklab::sock::options::Applied],
    ) -> anyhow::Result<()> {
        c.out.applied(applied);
        sock.set_rxq_ovfl(true)?;
        if let Ok(dup) = sock.socket().try_clone() {
            let _ = self.counters.receiver.set(dup);
        }
        c.out.note("bound", || {
            format!("bound to {}", addr_or_q(sock.local_addr()))
        });
        Ok(())
    }

    fn done(&self, c: &Common) -> anyhow::Result<ExitCode> {
        c.out
            .summary(|| self.counters.summary(), || self.counters.json());
        Ok(ExitCode::SUCCESS)
    }
}

fn addr_or_q(a: Option<SocketAddr>) -> String {
    a.map_or("?".into(), |a| a.to_string())
}

/// Cuts stdin into datagrams by `framing` and hands each to `send`, up to `--count`.
fn send_stdin(
    s: &SendOpts,
    c: &Common,
    env: &Env,
    mut send: impl FnMut(&[u8]) -> Step<usize>,
) -> anyhow::Result<()> {
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut buf = Vec::with_capacity(MAX_DATAGRAM + 1);
    let limit = c.limit.count.unwrap_or(u64::MAX);
    let mut sent = 0u64;
    while sent < limit {
        buf.clear();
        let n = match s.framing {
            Framing::Line => (&mut input)
                .take(MAX_DATAGRAM as u64 + 1)
                .read_until(b'\n', &mut buf)?,
            Framing::Raw(size) => (&mut input).take(size as u64).read_to_end(&mut buf)?,
            Framing::Whole => {
                (&mut input)
                    .take(MAX_DATAGRAM as u64 + 1)
                    .read_to_end(&mut buf)?;
                // "whole" sends exactly one datagram, even an empty one.
                usize::MAX
            }
        };
        if n == 0 {
            break;
        }
        counted(|| {
            let len = send(&buf)?;
            env.counters.sent.fetch_add(1, Ordering::Relaxed);
            env.counters
                .sent_bytes
                .fetch_add(len as u64, Ordering::Relaxed);
            Ok::<_, StepError>(())
        })
        .map_err(failure)?;
        sent += 1;
        if s.framing == Framing::Whole {
            break;
        }
    }
    Ok(())
}

/// Receives datagrams until `--count`, `--idle-timeout` or an error, printing each; `each`
/// is called with every datagram and its payload (for replies), before it is printed.
fn receive(
    c: &Common,
    env: &Env,
    sock: &Sock,
    mut each: impl FnMut(&Datagram, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if let Some(t) = c.limit.idle_timeout {
        sock.set_read_timeout(Some(t))?;
    }
    let mut buf = vec![0u8; c.recv.recv_size];
    let limit = c.limit.count.unwrap_or(u64::MAX);
    let mut n = 0u64;
    let mut text = Vec::new();
    while n < limit {
        let got = sock.recv_datagram(&mut buf, 0);
        if env.quit.quitting.load(Ordering::Relaxed) {
            c.out
                .note("quit", || "-q: stopped receiving after stdin ended".into());
            break;
        }
        let d = match got {
            Ok(d) => d,
            Err(e) if is_timeout(&e) => {
                c.out
                    .note("idle", || "idle timeout: nothing more arrived".into());
                break;
            }
            Err(e) => return Err(failure(e)),
        };
        n += 1;
        if let Some(dropped) = d.dropped {
            env.counters
                .dropped_seen
                .fetch_max(u64::from(dropped), Ordering::Relaxed);
        }
        let payload = &buf[..d.len];
        // Before the datagram shows on stdout: whoever reads it there may answer at once
        // (`udp serve` replies to the latest source, which must be known by then).
        each(&d, payload)?;
        let data = match &env.shower {
            Some(s) => {
                text.clear();
                s.datagram(&mut text, &d, payload)?;
                &text[..]
            }
            None => payload,
        };
        counted(|| {
            output::write(data)?;
            env.counters.received.fetch_add(1, Ordering::Relaxed);
            env.counters
                .received_bytes
                .fetch_add(d.real_len as u64, Ordering::Relaxed);
            Ok::<_, StdoutError>(())
        })?;
        if env.shower.is_none() && d.truncated {
            diag!(
                "socklab: datagram from {} truncated: real length {}, kept {} (raise --recv-size)",
                addr_or_q(d.from),
                d.real_len,
                d.len
            );
        }
    }
    Ok(())
}

fn is_timeout(e: &StepError) -> bool {
    matches!(e.errno(), Some(libc::EAGAIN))
}

/// stdin → `send` on a thread while datagrams are received here; with `quit_after` (-q) the
/// receiving stops that long after stdin ended.
fn duplex(
    s: &SendOpts,
    quit_after: Option<Duration>,
    c: &Common,
    env: &Env,
    sock: &Sock,
    send: impl FnMut(&[u8]) -> Step<usize> + Send,
) -> anyhow::Result<()> {
    std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            if let Err(e) = send_stdin(s, c, env, send) {
                exit_now(Err(e));
            }
            if let Some(q) = quit_after {
                env.quit.after_stdin(q, sock);
            }
        });
        let received = receive(c, env, sock, |_, _| Ok(()));
        env.quit.received_all();
        if !finished_soon(&sender) || received.is_err() {
            // stdin may be a terminal that never ends: the receive side decides.
            env.done(c)?;
            exit_now(received);
        }
        received
    })
}

/// The bound side of connected UDP: print (or echo) each datagram; stdin lines go to the
/// source of the latest datagram.
fn serve(c: &ServeCmd, env: &Env, sock: &Sock) -> anyhow::Result<()> {
    let last: Mutex<Option<SocketAddr>> = Mutex::new(None);
    std::thread::scope(|scope| {
        if !c.echo {
            scope.spawn(|| {
                let sent = send_stdin(&c.send, &c.common, env, |b| {
                    let to = *last.lock().unwrap_or_else(|e| e.into_inner());
                    match to {
                        Some(to) => sock.send_to(b, to),
                        None => {
                            diag!("socklab: no datagram received yet, so no peer to send to: input dropped");
                            Ok(0)
                        }
                    }
                });
                if let Err(e) = sent {
                    exit_now(Err(e));
                }
                if let Some(q) = c.quit.quit_after {
                    env.quit.after_stdin(q, sock);
                }
            });
        }
        let result = receive(&c.common, env, sock, |d, payload| {
            if let Some(from) = d.from {
                *last.lock().unwrap_or_else(|e| e.into_inner()) = Some(from);
                if c.echo {
                    counted(|| {
                        let n = sock.send_to(payload, from)?;
                        env.counters.sent.fetch_add(1, Ordering::Relaxed);
                        env.counters
                            .sent_bytes
                            .fetch_add(n as u64, Ordering::Relaxed);
                        Ok::<_, StepError>(())
                    })
                    .map_err(failure)?;
                }
            }
            Ok(())
        });
        env.quit.received_all();
        // The stdin thread may be blocked reading a terminal: the run ends with the receiver.
        if !c.echo {
            env.done(&c.common)?;
            exit_now(result);
        }
        result
    })
}

/// How long `udp connect -z` waits for each port's answer when -w is not given.
const PORT_CHECK_WAIT: Duration = Duration::from_secs(1);

/// What a UDP port check saw.
enum PortState {
    /// A reply came back: something listens and answers.
    Open(usize),
    /// Nothing within the wait: a listener that stays silent, or a filter that drops.
    OpenFiltered,
    /// The network answered with an error (ICMP port or host unreachable), named.
    Closed(String),
}

/// `-z`: for each port, connect a UDP socket, send one empty datagram and wait for an answer;
/// one line per port. Errors the network reports (refused, unreachable) make a closed port;
/// any other error ends the run as a setup error.
fn port_check(c: &ConnectCmd) -> anyhow::Result<ExitCode> {
    let (host, ports) = scan_targets(&c.to.to, c.to.port.as_deref())?;
    let local = c
        .bind
        .as_deref()
        .map(|b| c.common.family.resolve_local(b))
        .transpose()?;
    // Resolve every port before the first datagram: a bad address is a usage error up front.
    let targets = ports
        .map(|p| {
            c.common
                .family
                .resolve_dest(&addr::join_host_port(&host, &p.to_string())?)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let env = Env::new(&c.common);
    let wait = c.wait.unwrap_or(PORT_CHECK_WAIT);
    let mut any_not_closed = false;
    for to in targets {
        let state = check_port(to, local, wait, &env, &c.common)?;
        any_not_closed |= !matches!(state, PortState::Closed(_));
        let line = match (c.common.out.json, &state) {
            (true, s) => jsonl::line(
                "port",
                serde_json::json!({
                    "addr": to,
                    "proto": "udp",
                    "state": match s {
                        PortState::Open(_) => "open",
                        PortState::OpenFiltered => "open|filtered",
                        PortState::Closed(_) => "closed",
                    },
                    "open": match s {
                        PortState::Open(_) => Some(true),
                        PortState::OpenFiltered => None,
                        PortState::Closed(_) => Some(false),
                    },
                    "reply_bytes": match s {
                        PortState::Open(n) => Some(*n),
                        _ => None,
                    },
                    "error": match s {
                        PortState::Closed(why) => Some(why.as_str()),
                        _ => None,
                    },
                    "wait_ms": wait.as_millis() as u64,
                }),
            ),
            (false, PortState::Open(n)) => format!("{to} open: it answered ({n} bytes)"),
            (false, PortState::OpenFiltered) => format!(
                "{to} open|filtered: no answer within {wait:?} (UDP cannot tell a port that \
                 stays silent from a firewall that drops)"
            ),
            (false, PortState::Closed(why)) => format!("{to} closed: {why}"),
        };
        output::line(line)?;
    }
    Ok(match any_not_closed {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(1),
    })
}

/// One port of `-z`: socket, (bind), connect, send an empty datagram, recvmsg with SO_RCVTIMEO
/// = `wait`. On a connected UDP socket the kernel reports an ICMP error for the destination
/// as the next call's errno (udp(7), ip(7) IP_RECVERR aside).
fn check_port(
    to: SocketAddr,
    local: Option<SocketAddr>,
    wait: Duration,
    env: &Env,
    c: &Common,
) -> anyhow::Result<PortState> {
    let (sock, _) = udp::connected(to, local, &env.opts(c), &env.rec)
        .map_err(|e| step_error(e, Proto::Udp, c.reuse.reuseaddr()))?;
    sock.set_read_timeout(Some(wait))?;
    let mut buf = [0u8; MAX_DATAGRAM + 1];
    let answer = sock.send(&[]).and_then(|_| sock.recv_datagram(&mut buf, 0));
    let state = match answer {
        Ok(d) => PortState::Open(d.real_len),
        Err(e) if is_timeout(&e) => PortState::OpenFiltered,
        Err(e) => match e.errno() {
            Some(
                n @ (libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::ENETDOWN),
            ) => PortState::Closed(format!(
                "{} ({})",
                socklab::os::errno::describe(n),
                socklab::os::errno::name(n)
            )),
            _ => return Err(failure(e)),
        },
    };
    sock.close();
    Ok(state)
}
