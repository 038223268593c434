//! Claim 14: what kill -9 leaves behind. A victim process (the `socklab` binary itself, spawned
//! inside the experiment's namespace) holds (1) a bound UDP socket, (2) a TCP listener, (3) an
//! accepted TCP connection with nothing unread, the same with the victim's SO_REUSEADDR on, and
//! (4) a connection with unread data (the victim is stopped with SIGSTOP before the data
//! arrives). It is killed with SIGKILL and reaped with waitpid; then the wire (FIN or RST from
//! the victim's port), what the peer's recv returns, `ss`, and bind(2) of the victim's port
//! with and without SO_REUSEADDR show whether the kernel closed its sockets.
//!
//! Beside them, the real ways to meet "Address already in use" after a kill -9, each an aside
//! with its evidence: a worker that inherited the socket (a forked child holding a UDP socket,
//! a daemonised grandchild holding a listener) keeps the port after its parent is killed,
//! SO_REUSEADDR or not; a killed process not yet reaped (a zombie) holds nothing; and a
//! normal-exit control (SIGTERM, the program's own exit path) leaves the same TIME-WAIT as
//! kill -9.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::Serialize;

use super::article::{KILL9_ERROR, KILL9_REUSEADDR, KILL9_SKIPS_CLOSE};
use super::observe::{Read, SETTLE, TIMEOUT, Trial, outcome, poll_until, recv_once, socket};
use super::ports::{bind_again, of_port, settled_tcp, ss_of};
use super::{Evidence, Experiment, Host, Lab, Part, Verdict};
use crate::sock::{Proto, Sock, Step};
use crate::trace::Recorder;

/// The experiment of claim 14.
pub struct Kill9;

/// How long a victim may take to say it is ready.
const READY: Duration = Duration::from_secs(5);
/// Bytes the peer sends to a stopped victim, left unread when it is killed.
const UNREAD: usize = 1000;

/// What the victim held when it was killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Held {
    /// A UDP socket bound with `socklab udp recv`.
    Udp,
    /// A TCP listener (`socklab tcp listen`), no connection.
    Listener,
    /// An accepted connection, nothing unread.
    Established,
    /// An accepted connection with data it had not read.
    Unread,
}

impl Held {
    fn label(self) -> &'static str {
        match self {
            Self::Udp => "UDP socket",
            Self::Listener => "TCP listener",
            Self::Established => "TCP connection",
            Self::Unread => "TCP connection with unread data",
        }
    }
}

/// One victim killed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Case {
    /// What it held.
    pub(crate) held: Held,
    /// Whether the victim set SO_REUSEADDR (`--reuseaddr`).
    pub(crate) victim_reuse: bool,
    /// The victim's address (its port is bound again afterwards).
    pub(crate) addr: SocketAddr,
    /// How waitpid said it ended, e.g. `SIGKILL`.
    pub(crate) ended: String,
    /// `ss` lines of the port just before the kill.
    pub(crate) before: Vec<String>,
    /// `ss` lines of the port right after waitpid.
    pub(crate) after_kill: Vec<String>,
    /// For connections: what the peer's recv returned after the kill.
    pub(crate) peer_saw: Option<Read>,
    /// For connections: `ss` lines once the peer closed its end too.
    pub(crate) after_peer_close: Vec<String>,
    /// FIN/RST segments the victim's port sent (captured; empty without a namespace).
    pub(crate) wire: Vec<String>,
    /// bind (and listen, for TCP) of the victim's port without SO_REUSEADDR, right after.
    pub(crate) bind_plain: String,
    /// The same with SO_REUSEADDR.
    pub(crate) bind_reuse: String,
    /// Ended by SIGKILL (else by SIGTERM: the normal-exit control).
    pub(crate) by_kill9: bool,
}

/// A socket inherited by a worker process: the killed process held it, so did its worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Inherited {
    /// `forked child` or `daemonised grandchild`.
    pub(crate) worker: String,
    /// What the socket was.
    pub(crate) held: Held,
    /// Its address.
    pub(crate) addr: SocketAddr,
    /// How the parent ended (waitpid).
    pub(crate) parent_ended: String,
    /// `ss` lines of the port after the parent was killed and reaped.
    pub(crate) after_kill: Vec<String>,
    /// bind (listen for TCP) without SO_REUSEADDR while the worker lives.
    pub(crate) bind_plain: String,
    /// The same with SO_REUSEADDR.
    pub(crate) bind_reuse: String,
    /// bind without SO_REUSEADDR once the worker is killed too (polled, bounded).
    pub(crate) bind_after_worker: String,
}

/// A victim killed and left unreaped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Zombie {
    /// Its UDP address.
    pub(crate) addr: SocketAddr,
    /// Its state in /proc/PID/stat when the port was bound again (`Z`: a zombie, not reaped).
    pub(crate) state: String,
    /// `ss -uan` lines of its port then.
    pub(crate) ss: Vec<String>,
    /// bind without SO_REUSEADDR then.
    pub(crate) bind_plain: String,
}

impl Case {
    /// Whether a socket of the killed process was still there as it was before the kill:
    /// still listed in its old state, or (for connections) the peer saw neither FIN nor RST.
    fn left_open(&self) -> bool {
        let state = |l: &String| l.split_whitespace().next().unwrap_or("").to_string();
        let before: Vec<String> = self.before.iter().map(state).collect();
        let still = self.after_kill.iter().any(|l| {
            let s = state(l);
            s != "CLOSE-WAIT" && before.contains(&s)
        });
        still || matches!(self.peer_saw, Some(Read::WouldBlock))
    }

    fn name(&self) -> String {
        let reuse = if self.victim_reuse {
            " (victim had SO_REUSEADDR)"
        } else {
            ""
        };
        let how = if self.by_kill9 {
            ""
        } else {
            " (normal exit: SIGTERM)"
        };
        format!("{}{reuse}{how}", self.held.label())
    }
}

/// A TCP state as the verdict uses it: FIN-WAIT-1 and FIN-WAIT-2 are one state (`FIN-WAIT`),
/// since which one `ss` catches depends on when the peer's ACK was processed.
fn state_word(line: &str) -> &str {
    match line.split_whitespace().next().unwrap_or("") {
        "FIN-WAIT-1" | "FIN-WAIT-2" => "FIN-WAIT",
        s => s,
    }
}

/// What was observed.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Observation {
    /// The victims, in order.
    pub(crate) cases: Vec<Case>,
    /// Sockets inherited by workers.
    pub(crate) inherited: Vec<Inherited>,
    /// The killed, unreaped victim.
    pub(crate) zombie: Option<Zombie>,
    /// Counters that moved over all cases (private namespace only).
    pub(crate) counters: Option<std::collections::BTreeMap<String, i64>>,
    /// The trace of the lab's own calls (peer and binds).
    pub(crate) ev: Evidence,
}

impl Experiment for Kill9 {
    fn claim(&self) -> u8 {
        14
    }
    fn title(&self) -> &'static str {
        "kill -9 and Address already in use"
    }
    fn article(&self) -> &'static str {
        "UDP has no TIME_WAIT, but kill -9 also leaves the port giving \"Address already in use\", and SO_REUSEADDR does not help, because a violent kill makes the kernel skip closing the program's sockets."
    }
    fn explanation(&self) -> &'static str {
        "When a process dies, by SIGKILL or otherwise, the kernel closes all its file descriptors in do_exit (exit(2), signal(7): SIGKILL cannot be caught but the process still exits); closing the last reference to a socket is an ordinary close(2). TCP then sends a FIN and the socket goes FIN-WAIT → TIME-WAIT like any active close (RFC 9293 §3.6), or, if unread data was pending, sends a RST and is gone at once (RFC 1122 §4.2.2.13, RFC 2525 §2.17; TcpExt TCPAbortOnClose); the peer sees recv() == 0 or ECONNRESET (tcp(7)). A UDP socket has no closing state (udp(7), RFC 768): its port is free as soon as it is closed. EADDRINUSE after a kill is the TIME-WAIT of the killed side's connections, which SO_REUSEADDR (socket(7)) gets past when both the old and the new socket set it, or a process that inherited the socket (fork(2) copies the descriptor table: a forked child, a daemonised worker) and still holds it open: the socket is closed only with its last descriptor, and SO_REUSEADDR does not pass a live socket that did not set it. A killed process closes its files in do_exit before it becomes a zombie, so waiting to reap it changes nothing."
    }
    fn run(&self, lab: &Lab) -> anyhow::Result<Vec<Part>> {
        let exe = lab.exe().context("find the socklab executable")?;
        check_exe(&exe)?;
        let host = lab.loopback("c14")?;
        Ok(judge(&observe(&host, &exe)?))
    }
}

/// Makes sure `exe` is the socklab binary (a test harness would run its tests instead).
fn check_exe(exe: &Path) -> anyhow::Result<()> {
    let out = Command::new(exe)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {}", exe.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        text.starts_with("socklab "),
        "{} is not the socklab binary (give the lab its path with Lab::with_exe)",
        exe.display()
    );
    Ok(())
}

/// A victim process: killed and reaped on drop if the experiment did not get that far.
struct Victim {
    child: Child,
    lines: Receiver<String>,
    _stdin: Option<ChildStdin>,
}

impl Victim {
    /// Spawns `exe ARGS…` inside `host` (the child inherits the thread's namespace), stdin a
    /// pipe kept open (so it never half-closes), stderr read line by line.
    fn spawn(host: &Host, exe: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let child = host.run(|| {
            Command::new(exe)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
        })??;
        Self::adopt(child)
    }

    /// A victim of a spawned child whose stderr is a pipe (stdin a pipe too, or not).
    fn adopt(mut child: Child) -> anyhow::Result<Self> {
        let (stdin, Some(stderr)) = (child.stdin.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("victim without a stderr pipe");
        };
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            lines,
            _stdin: stdin,
        })
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Waits (bounded) for the stderr line `socklab: PREFIX…` and returns the rest.
    fn await_line(&self, prefix: &str) -> anyhow::Result<String> {
        let want = format!("socklab: {prefix}");
        let deadline = Instant::now() + READY;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    if let Some(rest) = l.strip_prefix(&want) {
                        return Ok(rest.trim().to_string());
                    }
                }
                Err(RecvTimeoutError::Timeout) => bail!("victim never said '{want}'"),
                Err(RecvTimeoutError::Disconnected) => bail!("victim exited before '{want}'"),
            }
        }
    }

    /// SIGSTOP, then waitpid(WUNTRACED) until it is stopped.
    fn stop(&self) -> anyhow::Result<()> {
        kill(self.pid(), Signal::SIGSTOP)?;
        match waitpid(self.pid(), Some(WaitPidFlag::WUNTRACED))? {
            WaitStatus::Stopped(..) => Ok(()),
            other => bail!("victim did not stop: {other:?}"),
        }
    }

    /// SIGKILL, then waitpid: how it ended.
    fn kill9(self) -> anyhow::Result<String> {
        self.end(Signal::SIGKILL)
    }

    /// Sends `sig`, then waitpid: how it ended (`SIGKILL`, `exit 143` …).
    fn end(mut self, sig: Signal) -> anyhow::Result<String> {
        kill(self.pid(), sig)?;
        let status = self.child.wait()?;
        Ok(match status.signal() {
            Some(9) => "SIGKILL".to_string(),
            Some(n) => format!("signal {n}"),
            None => format!("exit {}", status.code().unwrap_or(-1)),
        })
    }

    /// The process's state letter from /proc/PID/stat (`S`, `Z` …), `gone` when it has none.
    fn state(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .ok()
            .and_then(|s| {
                let after = s.rsplit_once(')')?.1;
                after.split_whitespace().next().map(str::to_string)
            })
            .unwrap_or_else(|| "gone".into())
    }
}

/// A process the lab started that is not its child any more (a worker whose parent was
/// killed): SIGKILLed by pid on drop.
struct Worker(Pid);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGKILL);
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `ss -tan` lines of `addr`'s port once the victim's socket shows the unread bytes in its
/// Recv-Q (polled at most [`SETTLE`]; then the lines as they are).
fn await_unread(host: &Host, addr: SocketAddr) -> anyhow::Result<Vec<String>> {
    let local = addr.to_string();
    poll_until(
        SETTLE,
        || ss_of(host, Proto::Tcp, addr.port()),
        |lines| {
            lines.iter().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() >= 4 && f[3] == local && f[1].parse::<usize>().is_ok_and(|q| q >= UNREAD)
            })
        },
    )
}

/// Runs one victim through spawn, (connect), kill (SIGKILL, or SIGTERM when not `by_kill9`),
/// and the checks.
fn one(
    host: &Host,
    exe: &Path,
    rec: &Recorder,
    held: Held,
    victim_reuse: bool,
    by_kill9: bool,
) -> anyhow::Result<Case> {
    let proto = if held == Held::Udp {
        Proto::Udp
    } else {
        Proto::Tcp
    };
    let lo = host.lo(0).to_string();
    let mut args = match proto {
        Proto::Udp => vec!["udp", "recv", "--bind", &lo, "-v"],
        Proto::Tcp => vec!["tcp", "listen", &lo, "-v"],
    };
    match (victim_reuse, proto) {
        (true, _) => args.push("--reuseaddr"),
        // `tcp listen` sets SO_REUSEADDR unless told not to.
        (false, Proto::Tcp) => args.push("--no-reuseaddr"),
        (false, Proto::Udp) => {}
    }
    let victim = Victim::spawn(host, exe, &args)?;
    let ready = match proto {
        Proto::Udp => "bound to ",
        Proto::Tcp => "listening on ",
    };
    let addr: SocketAddr = victim.await_line(ready)?.parse()?;
    let peer = match held {
        Held::Udp | Held::Listener => None,
        Held::Established | Held::Unread => {
            let s = host.run(|| -> Step<Sock> {
                let s = socket(rec, host.family(), Proto::Tcp)?;
                s.connect_timeout(addr, TIMEOUT)?;
                Ok(s)
            })??;
            victim.await_line("connection from ")?;
            Some(s)
        }
    };
    let before = match (held, &peer) {
        (Held::Unread, Some(p)) => {
            victim.stop()?;
            p.send(&[b'u'; UNREAD])?;
            await_unread(host, addr)?
        }
        _ => ss_of(host, proto, addr.port())?,
    };
    let ended = victim.end(if by_kill9 {
        Signal::SIGKILL
    } else {
        Signal::SIGTERM
    })?;
    // A connection closed with a FIN leaves both ends listed (CLOSE-WAIT and FIN-WAIT); read
    // once both are (bounded by SETTLE), as one ss snapshot can fall mid-transition.
    let after_kill = if held == Held::Established {
        poll_until(SETTLE, || ss_of(host, proto, addr.port()), |l| l.len() >= 2)?
    } else {
        ss_of(host, proto, addr.port())?
    };
    let (peer_saw, after_peer_close) = match peer {
        Some(p) => {
            let saw = recv_once(&p, 64);
            p.close();
            (Some(saw), settled_tcp(host, addr.port())?)
        }
        None => (None, Vec::new()),
    };
    let from_victim = format!("TCP {addr} >");
    let wire = of_port(&host.wire(), addr.port())
        .into_iter()
        .filter(|l| l.starts_with(&from_victim) && (l.contains("FIN") || l.contains("RST")))
        .collect();
    // A fresh socket binds the victim's port (and listens, for TCP), without and with
    // SO_REUSEADDR.
    let listen = proto == Proto::Tcp;
    let bind_plain = outcome(&host.run(|| bind_again(rec, proto, addr, false, listen))?);
    let bind_reuse = outcome(&host.run(|| bind_again(rec, proto, addr, true, listen))?);
    Ok(Case {
        held,
        victim_reuse,
        addr,
        ended,
        before,
        after_kill,
        peer_saw,
        after_peer_close,
        wire,
        bind_plain,
        bind_reuse,
        by_kill9,
    })
}

/// A worker inherits a socket: the lab binds it, hands it as stdin to `sh`, whose script
/// starts a `sleep` that inherits it on fd 3 (a forked child, or with `daemon` a grandchild whose
/// parent subshell exits at once) and then becomes a `sleep` itself; the lab closes its copy.
/// The parent is killed with SIGKILL and reaped; the port is bound again while the worker
/// lives, then once it is killed too.
fn inherited(host: &Host, rec: &Recorder, held: Held, daemon: bool) -> anyhow::Result<Inherited> {
    let proto = if held == Held::Udp {
        Proto::Udp
    } else {
        Proto::Tcp
    };
    let sock = host.run(|| -> Step<Sock> {
        let s = socket(rec, host.family(), proto)?;
        s.bind(host.lo(0))?;
        if proto == Proto::Tcp {
            s.listen(8)?;
        }
        Ok(s)
    })??;
    let addr = sock
        .local_addr()
        .context("the inherited socket has no address")?;
    let fd = std::os::fd::OwnedFd::from(sock.socket().try_clone()?);
    sock.close();
    // The socket arrives as fd 0; `exec 3<&0` keeps a copy on fd 3 for the worker (sh gives
    // a background job /dev/null as its stdin). Bounded: every sleep ends by itself after 30 s
    // even if the lab is killed.
    let script = if daemon {
        "exec 3<&0; (sleep 30 & echo \"socklab: worker $!\" >&2); exec sleep 30"
    } else {
        "exec 3<&0; sleep 30 & echo \"socklab: worker $!\" >&2; exec sleep 30"
    };
    let victim = host.run(|| {
        Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::from(fd))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
    })??;
    let victim = Victim::adopt(victim)?;
    let worker = Worker(Pid::from_raw(victim.await_line("worker ")?.parse()?));
    let parent_ended = victim.kill9()?;
    let after_kill = ss_of(host, proto, addr.port())?;
    let listen = proto == Proto::Tcp;
    let bind_plain = outcome(&host.run(|| bind_again(rec, proto, addr, false, listen))?);
    let bind_reuse = outcome(&host.run(|| bind_again(rec, proto, addr, true, listen))?);
    drop(worker);
    let bind_after_worker = poll_until(
        TIMEOUT,
        || host.run(|| outcome(&bind_again(rec, proto, addr, false, listen))),
        |r| r == "ok",
    )?;
    Ok(Inherited {
        worker: if daemon {
            "daemonised grandchild"
        } else {
            "forked child"
        }
        .into(),
        held,
        addr,
        parent_ended,
        after_kill,
        bind_plain,
        bind_reuse,
        bind_after_worker,
    })
}

/// A UDP victim killed with SIGKILL and not reaped: once /proc says it is a zombie (polled,
/// bounded), its port is bound again; then it is reaped.
fn zombie(host: &Host, exe: &Path, rec: &Recorder) -> anyhow::Result<Zombie> {
    let lo = host.lo(0).to_string();
    let victim = Victim::spawn(host, exe, &["udp", "recv", "--bind", &lo, "-v"])?;
    let addr: SocketAddr = victim.await_line("bound to ")?.parse()?;
    kill(victim.pid(), Signal::SIGKILL)?;
    let state = poll_until(TIMEOUT, || Ok::<_, ()>(victim.state()), |s| s == "Z")
        .unwrap_or_else(|()| "?".into());
    let ss = ss_of(host, Proto::Udp, addr.port())?;
    let bind_plain = outcome(&host.run(|| bind_again(rec, Proto::Udp, addr, false, false))?);
    drop(victim);
    Ok(Zombie {
        addr,
        state,
        ss,
        bind_plain,
    })
}

fn observe(host: &Host, exe: &Path) -> anyhow::Result<Observation> {
    let t = Trial::new();
    let mut o = Observation::default();
    let before = host.is_isolated().then(|| host.counters()).transpose()?;
    for (held, reuse, by_kill9) in [
        (Held::Udp, false, true),
        (Held::Listener, false, true),
        (Held::Established, false, true),
        (Held::Established, true, true),
        (Held::Unread, false, true),
        (Held::Established, false, false),
    ] {
        o.cases
            .push(one(host, exe, t.rec(), held, reuse, by_kill9)?);
    }
    for (held, daemon) in [(Held::Udp, false), (Held::Listener, true)] {
        o.inherited.push(inherited(host, t.rec(), held, daemon)?);
    }
    o.zombie = Some(zombie(host, exe, t.rec())?);
    if let Some(b) = before {
        o.counters = Some(b.delta(&host.counters()?));
    }
    o.ev.trace = t.take();
    Ok(o)
}

fn peer_word(r: &Read) -> String {
    match r {
        Read::Eof => "0 (FIN)".into(),
        other => other.to_string(),
    }
}

/// The states of `ss` lines, sorted (ss lists them in no fixed order), joined with `+`
/// (FIN-WAIT-1/2 as one, [`state_word`]), or `no socket`.
fn states(v: &[String]) -> String {
    if v.is_empty() {
        return "no socket".to_string();
    }
    let mut words: Vec<&str> = v.iter().map(|l| state_word(l)).collect();
    words.sort_unstable();
    words.join("+")
}

/// How one case went, in one line.
fn case_line(c: &Case) -> String {
    let mut s = format!(
        "{}: {} → once it ended {}",
        c.name(),
        states(&c.before),
        states(&c.after_kill)
    );
    if let Some(r) = &c.peer_saw {
        s.push_str(&format!(
            ", peer recv {}, after peer close {}",
            peer_word(r),
            states(&c.after_peer_close)
        ));
    }
    let flags: Vec<&str> = c
        .wire
        .iter()
        .filter_map(|l| {
            if l.contains("RST") {
                Some("RST")
            } else if l.contains("FIN") {
                Some("FIN")
            } else {
                None
            }
        })
        .collect();
    if !flags.is_empty() {
        s.push_str(&format!(", wire {}", flags.join("+")));
    }
    s
}

/// `Confirmed` when every one of `n` cases held, `Refuted` when none did, `Partly` between.
fn mixed(held: usize, n: usize) -> Verdict {
    match held {
        0 => Verdict::Refuted,
        h if h == n => Verdict::Confirmed,
        _ => Verdict::Partly,
    }
}

fn judge(o: &Observation) -> Vec<Part> {
    let mut ev = o.ev.clone();
    ev.fact("cases", &o.cases);
    if let Some(c) = &o.counters {
        ev.counters = c.clone();
    }
    for c in &o.cases {
        ev.states.extend(c.after_kill.iter().cloned());
        ev.wire.extend(c.wire.iter().cloned());
    }
    let killed: Vec<&Case> = o.cases.iter().filter(|c| c.by_kill9).collect();
    let udp: Vec<&&Case> = killed.iter().filter(|c| c.held == Held::Udp).collect();
    let udp_free = !udp.is_empty()
        && udp
            .iter()
            .all(|c| c.after_kill.is_empty() && c.bind_plain == "ok");
    let left_open = killed.iter().filter(|c| c.left_open()).count();
    let binds = |cases: &[&Case], which: &dyn Fn(&Case) -> &str| {
        cases
            .iter()
            .map(|c| format!("{} {}", c.name(), which(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let in_use = killed
        .iter()
        .filter(|c| c.bind_plain == "EADDRINUSE")
        .count();
    let blocked: Vec<&Case> = killed
        .iter()
        .copied()
        .filter(|c| c.bind_plain == "EADDRINUSE")
        .collect();
    let d_statement = "after kill -9, SO_REUSEADDR does not help";
    let d = if blocked.is_empty() {
        Part::not_run(
            "d",
            d_statement,
            "no victim's port gave EADDRINUSE, so there was nothing for SO_REUSEADDR to help with",
        )
    } else {
        let mut d = Part::judged(
            "d",
            d_statement,
            format!(
                "where the plain bind failed, with SO_REUSEADDR: {}",
                binds(&blocked, &|c| &c.bind_reuse)
            ),
            true,
            ev.clone(),
        );
        let still = blocked
            .iter()
            .filter(|c| c.bind_reuse == "EADDRINUSE")
            .count();
        d.verdict = mixed(still, blocked.len());
        d
    };
    let mut c = Part::judged(
        "c",
        "after kill -9 binding the port gives \"Address already in use\"",
        format!(
            "bind without SO_REUSEADDR right after the kill: {}",
            binds(&killed, &|c| &c.bind_plain)
        ),
        true,
        ev.clone(),
    );
    c.verdict = mixed(in_use, killed.len());
    let mut parts = vec![
        Part::judged(
            "a",
            "UDP has no TIME_WAIT: a killed holder's UDP port is free at once (the author's premise, and the evidence against his thesis)",
            format!(
                "after the UDP holder was killed: ss lists {} socket(s) on its port; bind {}",
                udp.iter().map(|c| c.after_kill.len()).sum::<usize>(),
                binds(&udp.iter().map(|c| **c).collect::<Vec<_>>(), &|c| &c
                    .bind_plain)
            ),
            udp_free,
            ev.clone(),
        ),
        Part::judged(
            "b",
            "kill -9 makes the kernel skip closing the program's sockets",
            killed
                .iter()
                .map(|c| case_line(c))
                .collect::<Vec<_>>()
                .join("; "),
            left_open > 0,
            ev.clone(),
        )
        .votes_on(KILL9_SKIPS_CLOSE),
        c.votes_on(KILL9_ERROR),
        d.votes_on(KILL9_REUSEADDR),
    ];
    parts.extend(o.inherited.iter().zip(['e', 'f']).map(|(w, id)| {
        let mut ev = Evidence::default();
        ev.fact("inherited", w);
        ev.states = w.after_kill.clone();
        Part::judged(
            &id.to_string(),
            &format!(
                "A {} that inherited the killed process's {} keeps its port: bind gives EADDRINUSE, with SO_REUSEADDR too, until the worker ends",
                w.worker,
                w.held.label()
            ),
            format!(
                "parent {}; its port then: {}; bind {}, with SO_REUSEADDR {}; once the worker was killed too: {}",
                w.parent_ended,
                states(&w.after_kill),
                w.bind_plain,
                w.bind_reuse,
                w.bind_after_worker
            ),
            w.bind_plain == "EADDRINUSE"
                && w.bind_reuse == "EADDRINUSE"
                && w.bind_after_worker == "ok",
            ev,
        )
    }));
    if let Some(z) = &o.zombie {
        let mut ev = Evidence::default();
        ev.fact("zombie", z);
        ev.states = z.ss.clone();
        parts.push(Part::judged(
            "g",
            "A killed process not yet reaped (a zombie) holds no socket: its UDP port binds before waitpid",
            format!(
                "killed, not reaped: /proc state {}; its port: {}; bind {}",
                z.state,
                states(&z.ss),
                z.bind_plain
            ),
            z.state == "Z" && z.ss.is_empty() && z.bind_plain == "ok",
            ev,
        ));
    }
    let control = o.cases.iter().find(|c| !c.by_kill9);
    let same = o
        .cases
        .iter()
        .find(|c| c.by_kill9 && c.held == Held::Established && !c.victim_reuse);
    if let (Some(n), Some(k)) = (control, same) {
        let mut ev = Evidence::default();
        ev.fact("normal_exit", n);
        ev.fact("kill9", k);
        ev.wire = n.wire.clone();
        parts.push(Part::judged(
            "h",
            "Control: a normal exit leaves the same as kill -9 (kill -9 is not special)",
            format!(
                "{} (ended {}); kill -9: {} (ended {})",
                case_line(n),
                n.ended,
                case_line(k),
                k.ended
            ),
            n.bind_plain == k.bind_plain
                && states(&n.after_peer_close) == states(&k.after_peer_close)
                && n.peer_saw == k.peer_saw,
            ev,
        ));
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::Verdict;
    use crate::lab::testing::verdicts;

    fn case(
        held: Held,
        reuse: bool,
        after_kill: &[&str],
        peer: Option<Read>,
        plain: &str,
        with: &str,
    ) -> Case {
        let before = match held {
            Held::Udp => "UNCONN 0 0 127.0.0.1:5000 0.0.0.0:*",
            Held::Listener => "LISTEN 0 8 127.0.0.1:5000 0.0.0.0:*",
            _ => "ESTAB 0 0 127.0.0.1:5000 127.0.0.1:40000",
        };
        Case {
            held,
            victim_reuse: reuse,
            addr: "127.0.0.1:5000".parse().unwrap(),
            ended: "SIGKILL".into(),
            before: vec![before.into()],
            after_kill: after_kill.iter().map(|s| s.to_string()).collect(),
            peer_saw: peer,
            after_peer_close: vec![],
            wire: vec![],
            bind_plain: plain.into(),
            bind_reuse: with.into(),
            by_kill9: true,
        }
    }

    fn linux_like() -> Observation {
        let fw2 = "FIN-WAIT-2 0 0 127.0.0.1:5000 127.0.0.1:40000";
        Observation {
            cases: vec![
                case(Held::Udp, false, &[], None, "ok", "ok"),
                case(Held::Listener, false, &[], None, "ok", "ok"),
                case(
                    Held::Established,
                    false,
                    &[fw2],
                    Some(Read::Eof),
                    "EADDRINUSE",
                    "EADDRINUSE",
                ),
                case(
                    Held::Established,
                    true,
                    &[fw2],
                    Some(Read::Eof),
                    "EADDRINUSE",
                    "ok",
                ),
                case(
                    Held::Unread,
                    false,
                    &[],
                    Some(Read::Error("ECONNRESET".into())),
                    "ok",
                    "ok",
                ),
            ],
            inherited: vec![],
            zombie: None,
            counters: None,
            ev: Evidence::default(),
        }
    }

    #[test]
    fn kernel_closes_sockets_of_killed_processes() {
        use Verdict::*;
        // Some ports in use (TIME-WAIT), some free: 14c partly; SO_REUSEADDR helped where the
        // victim had it too: 14d partly; 14a is an aside.
        let parts = judge(&linux_like());
        assert_eq!(
            verdicts(parts.clone()),
            vec![Confirmed, Refuted, Partly, Partly]
        );
        assert!(!parts[0].votes() && parts[1..].iter().all(Part::votes));
        assert_eq!(crate::lab::verdict_of(&parts), Partly);
    }

    #[test]
    fn fin_wait_1_and_2_read_the_same() {
        let mut a = linux_like();
        let mut b = linux_like();
        a.cases[2].after_kill = vec!["FIN-WAIT-1 0 1 127.0.0.1:5000 127.0.0.1:40000".into()];
        b.cases[2].after_kill = vec!["FIN-WAIT-2 0 0 127.0.0.1:5000 127.0.0.1:40000".into()];
        assert_eq!(judge(&a)[1].observed, judge(&b)[1].observed);
    }

    #[test]
    fn workers_zombies_and_the_control_are_asides() {
        let mut o = linux_like();
        o.inherited.push(Inherited {
            worker: "forked child".into(),
            held: Held::Udp,
            addr: "127.0.0.1:6000".parse().unwrap(),
            parent_ended: "SIGKILL".into(),
            after_kill: vec!["UNCONN 0 0 127.0.0.1:6000 0.0.0.0:*".into()],
            bind_plain: "EADDRINUSE".into(),
            bind_reuse: "EADDRINUSE".into(),
            bind_after_worker: "ok".into(),
        });
        o.zombie = Some(Zombie {
            addr: "127.0.0.1:6001".parse().unwrap(),
            state: "Z".into(),
            ss: vec![],
            bind_plain: "ok".into(),
        });
        let mut control = o.cases[2].clone();
        control.by_kill9 = false;
        o.cases.push(control);
        let parts = judge(&o);
        let ids: Vec<&str> = parts.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c", "d", "e", "g", "h"]);
        assert!(
            parts[4..]
                .iter()
                .all(|p| !p.votes() && p.verdict == Verdict::Confirmed)
        );
        // The control does not count among the kill -9 cases.
        assert_eq!(verdicts(parts)[2], Verdict::Partly);
    }

    #[test]
    fn sockets_left_open_confirm_the_article() {
        use Verdict::*;
        let o = Observation {
            inherited: vec![],
            zombie: None,
            cases: vec![
                case(
                    Held::Udp,
                    false,
                    &["UNCONN 0 0 127.0.0.1:5000 0.0.0.0:*"],
                    None,
                    "EADDRINUSE",
                    "EADDRINUSE",
                ),
                case(
                    Held::Established,
                    false,
                    &["ESTAB 0 0 127.0.0.1:5000 127.0.0.1:40000"],
                    Some(Read::WouldBlock),
                    "EADDRINUSE",
                    "EADDRINUSE",
                ),
            ],
            counters: None,
            ev: Evidence::default(),
        };
        assert_eq!(
            verdicts(judge(&o)),
            vec![Refuted, Confirmed, Confirmed, Confirmed]
        );
    }

    #[test]
    fn close_wait_of_the_peer_is_not_a_socket_left_open() {
        let c = case(
            Held::Established,
            false,
            &["CLOSE-WAIT 1 0 127.0.0.1:40000 127.0.0.1:5000"],
            Some(Read::Eof),
            "EADDRINUSE",
            "EADDRINUSE",
        );
        assert!(!c.left_open());
    }

    #[test]
    fn nothing_blocked_means_reuse_part_not_run() {
        let mut o = linux_like();
        o.cases.truncate(2);
        assert!(matches!(verdicts(judge(&o))[3], Verdict::NotRun(_)));
    }
}
