//! Claim 14: what kill -9 leaves behind. A victim process (the `socklab` binary itself, spawned
//! inside the experiment's namespace) holds (1) a bound UDP socket, (2) a TCP listener, (3) an
//! accepted TCP connection with nothing unread, the same with the victim's SO_REUSEADDR on, and
//! (4) a connection with unread data (the victim is stopped with SIGSTOP before the data
//! arrives). It is killed with SIGKILL and reaped with waitpid; then the wire (FIN or RST from
//! the victim's port), what the peer's recv returns, `ss`, and bind(2) of the victim's port
//! with and without SO_REUSEADDR show whether the kernel closed its sockets.

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

use super::observe::{Read, SETTLE, TIMEOUT, Trial, outcome, poll_until, recv_once, socket};
use super::ports::{bind_again, of_port, settled_tcp, ss_of};
use super::{Evidence, Experiment, Host, Lab, Part};
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
        format!("{}{reuse}", self.held.label())
    }
}

/// What was observed.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Observation {
    /// The victims, in order.
    pub(crate) cases: Vec<Case>,
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
        "When a process dies, by SIGKILL or otherwise, the kernel closes all its file descriptors in do_exit (exit(2), signal(7): SIGKILL cannot be caught but the process still exits); closing the last reference to a socket is an ordinary close(2). TCP then sends a FIN and the socket goes FIN-WAIT → TIME-WAIT like any active close (RFC 9293 §3.6), or, if unread data was pending, sends a RST and is gone at once (RFC 1122 §4.2.2.13, RFC 2525 §2.17; TcpExt TCPAbortOnClose); the peer sees recv() == 0 or ECONNRESET (tcp(7)). A UDP socket has no closing state (udp(7), RFC 768): its port is free as soon as it is closed. EADDRINUSE after a kill is the TIME-WAIT of the killed side's connections, which SO_REUSEADDR (socket(7)) gets past when both the old and the new socket set it."
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
    _stdin: ChildStdin,
}

impl Victim {
    /// Spawns `exe ARGS…` inside `host` (the child inherits the thread's namespace), stdin a
    /// pipe kept open (so it never half-closes), stderr read line by line.
    fn spawn(host: &Host, exe: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let mut child = host.run(|| {
            Command::new(exe)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
        })??;
        let (Some(stdin), Some(stderr)) = (child.stdin.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("victim without pipes");
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
    fn kill9(mut self) -> anyhow::Result<String> {
        kill(self.pid(), Signal::SIGKILL)?;
        let status = self.child.wait()?;
        Ok(match status.signal() {
            Some(9) => "SIGKILL".to_string(),
            Some(n) => format!("signal {n}"),
            None => format!("exit {}", status.code().unwrap_or(-1)),
        })
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

/// Runs one victim through spawn, (connect), kill, and the checks.
fn one(
    host: &Host,
    exe: &Path,
    rec: &Recorder,
    held: Held,
    victim_reuse: bool,
) -> anyhow::Result<Case> {
    let proto = if held == Held::Udp {
        Proto::Udp
    } else {
        Proto::Tcp
    };
    let mut args = match proto {
        Proto::Udp => vec!["udp", "recv", "--bind", "127.0.0.1:0", "-v"],
        Proto::Tcp => vec!["tcp", "listen", "127.0.0.1:0", "-v"],
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
                let s = socket(rec, Proto::Tcp)?;
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
    let ended = victim.kill9()?;
    let after_kill = ss_of(host, proto, addr.port())?;
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
    })
}

fn observe(host: &Host, exe: &Path) -> anyhow::Result<Observation> {
    let t = Trial::new();
    let mut o = Observation::default();
    let before = host.is_isolated().then(|| host.counters()).transpose()?;
    for (held, reuse) in [
        (Held::Udp, false),
        (Held::Listener, false),
        (Held::Established, false),
        (Held::Established, true),
        (Held::Unread, false),
    ] {
        o.cases.push(one(host, exe, t.rec(), held, reuse)?);
    }
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
    let udp: Vec<&Case> = o.cases.iter().filter(|c| c.held == Held::Udp).collect();
    let udp_free = !udp.is_empty()
        && udp
            .iter()
            .all(|c| c.after_kill.is_empty() && c.bind_plain == "ok");
    let left_open: Vec<&Case> = o.cases.iter().filter(|c| c.left_open()).collect();
    let closing = o
        .cases
        .iter()
        .map(|c| {
            let states = |v: &[String]| {
                if v.is_empty() {
                    "no socket".to_string()
                } else {
                    v.iter()
                        .filter_map(|l| l.split_whitespace().next())
                        .collect::<Vec<_>>()
                        .join("+")
                }
            };
            let mut s = format!(
                "{}: {} → after kill {}",
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
            if !c.wire.is_empty() {
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
                s.push_str(&format!(", wire {}", flags.join("+")));
            }
            s
        })
        .collect::<Vec<_>>()
        .join("; ");
    let binds = |pick: &dyn Fn(&Case) -> bool, which: &dyn Fn(&Case) -> &str| {
        o.cases
            .iter()
            .filter(|c| pick(c))
            .map(|c| format!("{} {}", c.name(), which(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let all_in_use = !o.cases.is_empty() && o.cases.iter().all(|c| c.bind_plain == "EADDRINUSE");
    let blocked: Vec<&Case> = o
        .cases
        .iter()
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
        Part::judged(
            "d",
            d_statement,
            format!(
                "where the plain bind failed, with SO_REUSEADDR: {}",
                binds(&|c| c.bind_plain == "EADDRINUSE", &|c| &c.bind_reuse)
            ),
            blocked.iter().all(|c| c.bind_reuse == "EADDRINUSE"),
            ev.clone(),
        )
    };
    vec![
        Part::judged(
            "a",
            "UDP has no TIME_WAIT: a killed holder's UDP port is free at once",
            format!(
                "after the UDP holder was killed: ss lists {} socket(s) on its port; bind {}",
                udp.iter().map(|c| c.after_kill.len()).sum::<usize>(),
                binds(&|c| c.held == Held::Udp, &|c| &c.bind_plain)
            ),
            udp_free,
            ev.clone(),
        ),
        Part::judged(
            "b",
            "kill -9 makes the kernel skip closing the program's sockets",
            closing,
            !left_open.is_empty(),
            ev.clone(),
        ),
        Part::judged(
            "c",
            "after kill -9 binding the port gives \"Address already in use\"",
            format!(
                "bind without SO_REUSEADDR right after the kill: {}",
                binds(&|_| true, &|c| &c.bind_plain)
            ),
            all_in_use,
            ev.clone(),
        ),
        d,
    ]
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
            counters: None,
            ev: Evidence::default(),
        }
    }

    #[test]
    fn kernel_closes_sockets_of_killed_processes() {
        use Verdict::*;
        assert_eq!(
            verdicts(judge(&linux_like())),
            vec![Confirmed, Refuted, Refuted, Refuted]
        );
    }

    #[test]
    fn sockets_left_open_confirm_the_article() {
        use Verdict::*;
        let o = Observation {
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
