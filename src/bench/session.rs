//! One test as both sides run it once the data sockets are up: start a thread per stream
//! (sender, receiver, rr requester or echo), relay interval samples, exchange the senders'
//! counts, and stop everything at once when the peer vanishes, reports an error, or the test
//! overruns. The client and the server share this loop; they differ only in who reports what.

use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::protocol::{
    self, Dir, IntervalSample, Message, SentCount, SideReport, StreamResult, TestKind, TestParams,
    Transport,
};
use super::receiver::{self, RecvCfg, RecvCtl};
use super::sender::{self, SendCfg};
use crate::lab::counters::Snapshot;
use crate::sock::{Sock, sys};

/// How long a UDP receiver keeps listening after its sender said it is done.
const DRAIN: Duration = Duration::from_millis(250);
/// Slack beyond the test duration before a stuck test is aborted.
const OVERRUN: Duration = Duration::from_secs(10);

/// The streams of a test, in id order: `parallel` per direction, directions in `params.dirs`
/// order (`rr` has only Up streams).
pub fn streams(params: &TestParams) -> Vec<(u16, Dir)> {
    let dirs: &[Dir] = if params.kind == TestKind::Rr {
        &[Dir::Up]
    } else {
        &params.dirs
    };
    dirs.iter()
        .flat_map(|&d| std::iter::repeat_n(d, params.parallel as usize))
        .enumerate()
        .map(|(i, d)| (i as u16, d))
        .collect()
}

/// What a stream's thread does on this side.
pub enum Job {
    /// Send the stream.
    Send(Sock),
    /// Receive the stream.
    Recv(Sock),
}

/// Events the session loop handles.
enum Ev {
    Peer(Message),
    PeerGone(String),
    Sample(IntervalSample),
    Sent(SentCount, (u64, u64), Option<(Histogram<u64>, u64)>),
    Received(StreamResult, (u64, u64)),
}

/// What one side ends with.
#[derive(Debug, Default)]
pub struct SessionOut {
    /// This side's receivers' results and CPU time.
    pub mine: SideReport,
    /// This side's senders' counts.
    pub sent: Vec<SentCount>,
    /// The peer's senders' counts.
    pub peer_sent: Vec<SentCount>,
    /// The peer's final report (client side only).
    pub peer: Option<SideReport>,
    /// rr: round-trip histogram and lost requests (requester side).
    pub rr: Option<(Histogram<u64>, u64)>,
    /// Interval samples: (received on this side?, sample).
    pub samples: Vec<(bool, IntervalSample)>,
    /// When the data phase started (CLOCK_MONOTONIC ns).
    pub t0_ns: u64,
}

/// Runs the data phase. `ctrl` is the control connection; `jobs` pairs each stream id with
/// this side's job; `client` says which side this is; `cpus` pins worker threads round-robin.
pub fn run(
    ctrl: &TcpStream,
    params: &TestParams,
    jobs: Vec<(u16, Job)>,
    client: bool,
    cpus: &[usize],
    on_sample: &mut dyn FnMut(bool, &IntervalSample),
) -> io::Result<SessionOut> {
    let (tx, rx) = mpsc::channel::<Ev>();
    let duration = Duration::from_millis(params.duration_ms);
    let t0 = sys::monotonic_ns();
    let until = t0 + duration.as_nanos() as u64;
    let hard = until + OVERRUN.as_nanos() as u64;
    let before = Snapshot::read().ok();
    let host_before = super::culprit::HostSnapshot::read();
    spawn_reader(ctrl, duration + OVERRUN, tx.clone())?;
    let abort = Arc::new(AtomicBool::new(false));
    let pin = Arc::new(AtomicUsize::new(usize::from(!client)));
    let mut ctls = Vec::new();
    let mut handles: Vec<JoinHandle<()>> = Vec::new();
    let (mut senders, mut receivers) = (0usize, 0usize);
    for (id, job) in jobs {
        let cfg_pin = pick_cpu(cpus, &pin);
        let tx = tx.clone();
        let p = params.clone();
        let abort = abort.clone();
        match job {
            Job::Send(sock) => {
                senders += 1;
                handles.push(spawn(cfg_pin, move || {
                    let cfg = SendCfg {
                        stream: id,
                        size: p.size,
                        rate_bps: p.rate_bps,
                        gso: p.gso,
                        until_ns: until,
                    };
                    let (sent, rr) = match (p.kind, p.transport) {
                        (TestKind::Rr, t) => {
                            let (s, h, lost) = sender::rr(&sock, t, cfg, p.busy_poll, &abort);
                            (s, Some((h, lost)))
                        }
                        (TestKind::Probe, t) => {
                            let (s, h, lost) = sender::probe(&sock, t, cfg, &abort);
                            (s, Some((h, lost)))
                        }
                        (_, Transport::Udp) => (sender::udp(&sock, cfg, &abort), None),
                        (_, Transport::Tcp) => (sender::tcp(&sock, cfg, &abort), None),
                    };
                    let _ = tx.send(Ev::Sent(sent, sys::thread_cpu_us(), rr));
                })?);
            }
            Job::Recv(sock) => {
                receivers += 1;
                let ctl = Arc::new(RecvCtl::new(hard));
                ctls.push((id, ctl.clone()));
                handles.push(spawn(cfg_pin, move || {
                    let cfg = RecvCfg {
                        stream: id,
                        size: p.size,
                        gro: p.gro,
                        busy: p.busy_poll,
                        lowat: tcp_lowat(p.rcvbuf),
                        t0_ns: t0,
                        interval_ns: p.interval_ms * 1_000_000,
                    };
                    let r = match (p.kind, p.transport) {
                        (TestKind::Rr | TestKind::Probe, t) => receiver::echo(&sock, t, cfg, &ctl),
                        (_, Transport::Udp) => {
                            receiver::udp(&sock, cfg, &ctl, Some(&tx), Ev::Sample)
                        }
                        (_, Transport::Tcp) => {
                            receiver::tcp(&sock, cfg, &ctl, Some(&tx), Ev::Sample)
                        }
                    };
                    let _ = tx.send(Ev::Received(r, sys::thread_cpu_us()));
                })?);
            }
        }
    }
    drop(tx);
    let stop_all = |abort: &AtomicBool| {
        abort.store(true, Ordering::Relaxed);
        for (_, c) in &ctls {
            c.stop_by(0);
        }
    };
    let mut out = SessionOut {
        t0_ns: t0,
        ..SessionOut::default()
    };
    let mut writer = ctrl.try_clone()?;
    let (mut told, mut failure) = (false, None::<String>);
    let (mut cpu_user, mut cpu_sys) = (0u64, 0u64);
    loop {
        if senders == 0 && !told {
            told = true;
            let msg = Message::SenderDone {
                sent: out.sent.clone(),
            };
            if let Err(e) = protocol::write_message(&mut writer, &msg) {
                failure = Some(e.to_string());
                break;
            }
        }
        if senders == 0 && receivers == 0 && (!client || out.peer.is_some()) {
            break;
        }
        let ev = match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) => {
                if sys::monotonic_ns() > hard {
                    failure = Some("the test overran its duration; aborted".into());
                    break;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                failure = Some("control connection lost".into());
                break;
            }
        };
        match ev {
            Ev::Peer(Message::SenderDone { sent }) => {
                let drain = sys::monotonic_ns() + DRAIN.as_nanos() as u64;
                for s in &sent {
                    if let Some((_, c)) = ctls.iter().find(|(id, _)| *id == s.stream) {
                        if params.transport == Transport::Udp {
                            c.expect(s.packets);
                        }
                        c.stop_by(
                            drain + u64::from(params.transport == Transport::Tcp) * 2_000_000_000,
                        );
                    }
                }
                out.peer_sent = sent;
            }
            Ev::Peer(Message::Interval { samples }) => {
                for s in samples {
                    on_sample(false, &s);
                    out.samples.push((false, s));
                }
            }
            Ev::Peer(Message::Results { report }) if client => out.peer = Some(report),
            Ev::Peer(Message::Error { message }) => {
                failure = Some(format!("peer: {message}"));
                break;
            }
            Ev::Peer(other) => {
                failure = Some(format!("unexpected control message {other:?}"));
                break;
            }
            Ev::PeerGone(why) => {
                failure = Some(why);
                break;
            }
            Ev::Sample(s) => {
                if !client {
                    let msg = Message::Interval { samples: vec![s] };
                    let _ = protocol::write_message(&mut writer, &msg);
                }
                on_sample(true, &s);
                out.samples.push((true, s));
            }
            Ev::Sent(s, (u, sy), rr) => {
                senders -= 1;
                cpu_user += u;
                cpu_sys += sy;
                out.sent.push(s);
                if let Some((h, lost)) = rr {
                    match &mut out.rr {
                        Some((all, l)) => {
                            let _ = all.add(&h);
                            *l += lost;
                        }
                        None => out.rr = Some((h, lost)),
                    }
                }
            }
            Ev::Received(r, (u, sy)) => {
                receivers -= 1;
                cpu_user += u;
                cpu_sys += sy;
                out.mine.streams.push(r);
            }
        }
    }
    if failure.is_some() {
        stop_all(&abort);
    }
    for h in handles {
        let _ = h.join();
    }
    let after = Snapshot::read().ok();
    out.mine.host = Some(host_before.delta(&super::culprit::HostSnapshot::read()));
    out.mine.cpu_user_us = cpu_user;
    out.mine.cpu_sys_us = cpu_sys;
    out.mine.rcvbuf_errors = before
        .zip(after)
        .map(|(b, a)| (a.get("Udp.RcvbufErrors") - b.get("Udp.RcvbufErrors")).max(0) as u64);
    out.mine.rr_echoed = if params.kind == TestKind::Rr && !client {
        out.mine.streams.iter().map(|s| s.packets).sum()
    } else {
        0
    };
    out.mine.streams.sort_by_key(|s| s.stream);
    out.sent.sort_by_key(|s| s.stream);
    match failure {
        Some(f) => Err(io::Error::other(f)),
        None => Ok(out),
    }
}

fn pick_cpu(cpus: &[usize], next: &AtomicUsize) -> Option<usize> {
    if cpus.is_empty() {
        return None;
    }
    Some(cpus[next.fetch_add(1, Ordering::Relaxed) % cpus.len()])
}

fn spawn(cpu: Option<usize>, f: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("bench-stream".into())
        .spawn(move || {
            if let Some(c) = cpu {
                let _ = sys::pin_thread(c);
            }
            f()
        })
}

/// A thread that turns control frames into events; it ends at EOF, an error or `idle`.
fn spawn_reader(ctrl: &TcpStream, idle: Duration, tx: Sender<Ev>) -> io::Result<()> {
    let mut r = ctrl.try_clone()?;
    r.set_read_timeout(Some(idle))?;
    std::thread::Builder::new()
        .name("bench-control".into())
        .spawn(move || {
            loop {
                match protocol::read_message(&mut r) {
                    Ok(m) => {
                        if tx.send(Ev::Peer(m)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Ev::PeerGone(format!("peer gone: {e}")));
                        return;
                    }
                }
            }
        })?;
    Ok(())
}

/// Closes the control connection both ways (ends the reader thread).
pub fn close(ctrl: &TcpStream) {
    let _ = ctrl.shutdown(Shutdown::Both);
}

/// SO_RCVLOWAT for a TCP stream receiver: 1 MiB, or a quarter of a buffer the user fixed with
/// `--rcvbuf` (the kernel doubles the value asked), so a read can always be satisfied.
fn tcp_lowat(rcvbuf: Option<usize>) -> usize {
    const MIB: usize = 1 << 20;
    rcvbuf.map_or(MIB, |asked| (asked / 2).min(MIB))
}
