//! One test as both sides run it once the data sockets are up: start a thread per stream
//! running the loop its test kind names ([`StreamLoops`]: sender, receiver, rr requester or
//! echo), relay interval samples, exchange the senders' counts, and stop everything at once
//! when the peer vanishes, reports an error, or the test overruns. The client and the server
//! share this loop; they differ only in who reports what. Nothing here depends on which kind
//! of test runs.

use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::protocol::{
    self, IntervalSample, Message, SentCount, SideReport, StreamCpu, StreamResult, TestParams,
    Transport,
};
use super::receiver::{self, RecvCfg, RecvCtl};
use super::sender::SendCfg;
use crate::os::counters::Snapshot;
use crate::sock::{Sock, sys};

/// How long a UDP receiver keeps listening after its sender said it is done.
const DRAIN: Duration = Duration::from_millis(250);
/// Slack beyond the test duration before a stuck test is aborted.
const OVERRUN: Duration = Duration::from_secs(10);

/// A round-trip kind's latency: the histogram of round trips (ns) and the requests whose
/// reply never came.
pub type RoundTrips = (Histogram<u64>, u64);

/// The per-stream work of a test kind, as the session runs it on each stream's thread: every
/// [`Kind`](crate::bench::kind::Kind) is one. The loops themselves live in
/// [`sender`](super::sender) and [`receiver`]; an implementation picks them and passes their
/// arguments on.
pub trait StreamLoops: Sync {
    /// Sends one stream (this side sends it) until `cfg.until_ns` or `abort`: what was sent
    /// and, for a kind that times round trips, its latency.
    fn send(
        &self,
        sock: &Sock,
        params: &TestParams,
        cfg: SendCfg,
        abort: &AtomicBool,
    ) -> (SentCount, Option<RoundTrips>);

    /// Receives one stream (this side receives it) until `ctl` says stop; interval samples go
    /// to `samples`.
    fn receive(
        &self,
        sock: &Sock,
        params: &TestParams,
        cfg: RecvCfg,
        ctl: &RecvCtl,
        samples: &Samples<'_>,
    ) -> StreamResult;

    /// The requests this side's receive loops answered (its report's `rr_echoed`), from their
    /// results; 0 unless the kind counts them.
    fn answered(&self, received: &[StreamResult]) -> u64 {
        let _ = received;
        0
    }
}

/// Where a receive loop's interval samples go: the session loop, which relays them to the
/// peer and to the caller's `on_sample`.
pub struct Samples<'a>(&'a Sender<Ev>);

impl Samples<'_> {
    /// [`receiver::udp`] with its interval samples sent to the session.
    pub fn udp(&self, sock: &Sock, cfg: RecvCfg, ctl: &RecvCtl) -> StreamResult {
        receiver::udp(sock, cfg, ctl, Some(self.0), Ev::Sample)
    }

    /// [`receiver::tcp`] with its interval samples sent to the session.
    pub fn tcp(&self, sock: &Sock, cfg: RecvCfg, ctl: &RecvCtl) -> StreamResult {
        receiver::tcp(sock, cfg, ctl, Some(self.0), Ev::Sample)
    }
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
    Sent(SentCount, (u64, u64), Option<RoundTrips>),
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
    pub rr: Option<RoundTrips>,
    /// Interval samples: (received on this side?, sample).
    pub samples: Vec<(bool, IntervalSample)>,
    /// When the data phase started (CLOCK_MONOTONIC ns).
    pub t0_ns: u64,
}

/// Runs the data phase. `ctrl` is the control connection; `loops` are the test kind's
/// per-stream loops; `jobs` pairs each stream id with this side's job; `client` says which
/// side this is; `placement` says which CPU each stream's thread runs on.
pub fn run<L: StreamLoops + ?Sized>(
    ctrl: &TcpStream,
    params: &TestParams,
    loops: &'static L,
    jobs: Vec<(u16, Job)>,
    client: bool,
    placement: &Placement,
    on_sample: &mut dyn FnMut(bool, &IntervalSample),
) -> io::Result<SessionOut> {
    let (tx, rx) = mpsc::channel::<Ev>();
    let duration = Duration::from_millis(params.duration_ms);
    let t0 = sys::monotonic_ns();
    let until = t0 + duration.as_nanos() as u64;
    let hard = until + OVERRUN.as_nanos() as u64;
    let before = Snapshot::read().ok();
    let host_before = super::culprit::HostSnapshot::read();
    let peer = if client { "the server" } else { "the client" };
    spawn_reader(ctrl, duration + OVERRUN, peer, tx.clone())?;
    let abort = Arc::new(AtomicBool::new(false));
    let mut ctls = Vec::new();
    let mut handles: Vec<JoinHandle<()>> = Vec::new();
    let (mut senders, mut receivers) = (0usize, 0usize);
    let pinned = Arc::new(Mutex::new(Vec::new()));
    // The sockets go to their threads; their option logs stay here for the report.
    let option_logs: Vec<_> = jobs
        .iter()
        .map(|(_, Job::Send(s) | Job::Recv(s))| s.option_log())
        .collect();
    for (id, job) in jobs {
        let cfg_pin = placement.cpu(id);
        let tx = tx.clone();
        let p = params.clone();
        let abort = abort.clone();
        match job {
            Job::Send(sock) => {
                senders += 1;
                handles.push(spawn(id, cfg_pin, &pinned, move || {
                    let cfg = SendCfg {
                        stream: id,
                        size: p.size,
                        rate_bps: p.rate_bps,
                        gso: p.gso,
                        until_ns: until,
                        zerocopy: p.zerocopy,
                    };
                    let (sent, rr) = loops.send(&sock, &p, cfg, &abort);
                    let _ = tx.send(Ev::Sent(sent, sys::thread_cpu_us(), rr));
                })?);
            }
            Job::Recv(sock) => {
                receivers += 1;
                let ctl = Arc::new(RecvCtl::new(hard));
                ctls.push((id, ctl.clone()));
                handles.push(spawn(id, cfg_pin, &pinned, move || {
                    let cfg = RecvCfg {
                        stream: id,
                        size: p.size,
                        gro: p.gro,
                        busy: p.busy_poll,
                        lowat: tcp_lowat(p.rcvbuf),
                        t0_ns: t0,
                        interval_ns: p.interval_ms * 1_000_000,
                    };
                    let r = loops.receive(&sock, &p, cfg, &ctl, &Samples(&tx));
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
                failure = Some(format!("{peer} closed the control connection"));
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
                failure = Some(format!("{peer} reported: {message}"));
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
    out.mine.socket_options =
        protocol::OptionTally::merge(option_logs.iter().flat_map(|l| l.outcomes()));
    out.mine.cpu_user_us = cpu_user;
    out.mine.cpu_sys_us = cpu_sys;
    out.mine.stream_cpus = std::mem::take(&mut *pinned.lock().unwrap_or_else(|e| e.into_inner()));
    out.mine.stream_cpus.sort_by_key(|c| c.stream);
    out.mine.rcvbuf_errors = before
        .zip(after)
        .map(|(b, a)| (a.get("Udp.RcvbufErrors") - b.get("Udp.RcvbufErrors")).max(0) as u64);
    out.mine.rr_echoed = loops.answered(&out.mine.streams);
    out.mine.streams.sort_by_key(|s| s.stream);
    out.sent.sort_by_key(|s| s.stream);
    match failure {
        Some(f) => Err(io::Error::other(f)),
        None => Ok(out),
    }
}

/// Which CPU each stream's thread runs on (sched_setaffinity(2)), the same on both sides so
/// that, on one host, a stream's sender and receiver share a CPU: stream `id` of test `test_id`
/// runs on `cpus[(test_id + id) % cpus.len()]` (tests running at once, such as a latency probe
/// beside its bulk stream, start on different CPUs).
///
/// Two processes on one host copy each TCP byte twice; when the receiver runs on the CPU whose
/// cache still holds what the sender wrote, both copies are cheap. Measured with `bench server`
/// and `bench client` on 127.0.0.1 (2 CPUs, 3 s): one TCP stream 19-21 Gbit/s unpinned or
/// with its two threads on different CPUs, 25.2-26.0 on one; `-P 4/8/16` 60-70 unpinned,
/// 83-99 paired. Kinds say whether they pair ([`Kind::pairs_threads`](super::kind::Kind)).
#[derive(Debug, Clone, Default)]
pub struct Placement {
    cpus: Vec<usize>,
    test_id: u64,
}

impl Placement {
    /// `asked` (`--cpu LIST`) when given; else, when `pair` (the peer is on this host and the
    /// kind pairs its threads), every CPU this process may run on (sched_getaffinity(2)); else
    /// no pinning.
    pub fn new(asked: &[usize], pair: bool, test_id: u64) -> Self {
        let cpus = if !asked.is_empty() {
            asked.to_vec()
        } else if pair {
            allowed_cpus()
        } else {
            Vec::new()
        };
        Self { cpus, test_id }
    }

    /// The CPU of stream `id`'s thread, or None (not pinned).
    pub fn cpu(&self, id: u16) -> Option<usize> {
        let n = self.cpus.len() as u64;
        (n > 0).then(|| self.cpus[((self.test_id + u64::from(id)) % n) as usize])
    }
}

/// The CPUs this process may run on, in order (empty if the kernel would not say).
fn allowed_cpus() -> Vec<usize> {
    nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map(|set| {
            (0..nix::sched::CpuSet::count())
                .filter(|&c| set.is_set(c).unwrap_or(false))
                .collect()
        })
        .unwrap_or_default()
}

/// Starts stream `stream`'s thread running `f`, pinned to `cpu` if given; a pin the kernel
/// accepted goes into `pinned` (a refused one, such as a `--cpu` entry outside this process's
/// affinity, leaves the thread where the scheduler puts it, and is not reported as pinned).
fn spawn(
    stream: u16,
    cpu: Option<usize>,
    pinned: &Arc<Mutex<Vec<StreamCpu>>>,
    f: impl FnOnce() + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    let pinned = pinned.clone();
    std::thread::Builder::new()
        .name("bench-stream".into())
        .spawn(move || {
            if let Some(cpu) = cpu.filter(|&c| sys::pin_thread(c).is_ok()) {
                pinned
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(StreamCpu { stream, cpu });
            }
            f()
        })
}

/// A thread that turns control frames into events; it ends at EOF, an error or `idle`.
fn spawn_reader(
    ctrl: &TcpStream,
    idle: Duration,
    peer: &'static str,
    tx: Sender<Ev>,
) -> io::Result<()> {
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
                        let _ = tx.send(Ev::PeerGone(e.in_words(peer)));
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

/// Discards [`Probe`](protocol::Probe)s still queued on a test's UDP sockets (a probe or its
/// acknowledgement may be sent twice before the other side sees it), so an `rr` requester or
/// echo does not take one for a message of the test.
pub fn drain_probes(jobs: &[(u16, Job)]) {
    let mut buf = [0u8; protocol::PROBE_LEN + 1];
    for (_, job) in jobs {
        let (Job::Recv(s) | Job::Send(s)) = job;
        if s.proto() != crate::sock::Proto::Udp {
            continue;
        }
        while let Ok(d) = s.recv_datagram(&mut buf, libc::MSG_DONTWAIT | libc::MSG_PEEK) {
            if protocol::Probe::parse(&buf[..d.len]).is_none() {
                break;
            }
            let _ = s.recv_datagram(&mut buf, libc::MSG_DONTWAIT);
        }
    }
}

/// What [`wait`] saw.
#[derive(Debug, Default)]
pub struct Ready {
    /// Which of the data fds are readable (or in error).
    pub fds: Vec<bool>,
    /// The control connection has data (`ctrl_data`), or the peer closed or reset it.
    pub ctrl: bool,
    /// The deadline passed with nothing ready.
    pub timed_out: bool,
}

/// poll(2) on `fds` (POLLIN) and the control connection until one is ready or `deadline`.
/// On the control connection only a hang-up counts (POLLRDHUP: the peer's FIN; POLLHUP and
/// POLLERR: a reset), unless `ctrl_data`, when a readable message counts too. This is how a
/// setup step notices at once that the peer went away, instead of waiting for its timeout.
pub fn wait(
    fds: &[BorrowedFd<'_>],
    ctrl: &TcpStream,
    ctrl_data: bool,
    deadline: Instant,
) -> io::Result<Ready> {
    // nix does not name POLLRDHUP (Linux, since 2.6.17); the bit is libc's.
    let rdhup = PollFlags::from_bits_retain(libc::POLLRDHUP);
    let ctrl_events = if ctrl_data {
        PollFlags::POLLIN | rdhup
    } else {
        rdhup
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Ready {
                fds: vec![false; fds.len()],
                ctrl: false,
                timed_out: true,
            });
        }
        let mut pfds: Vec<PollFd<'_>> = fds
            .iter()
            .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
            .collect();
        pfds.push(PollFd::new(ctrl.as_fd(), ctrl_events));
        let ms = PollTimeout::try_from(left.as_millis().clamp(1, 60_000) as u32)
            .unwrap_or(PollTimeout::MAX);
        match poll(&mut pfds, ms) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let any = PollFlags::POLLIN | PollFlags::POLLERR | PollFlags::POLLHUP;
        // revents() is None when a bit nix does not name is set: POLLRDHUP, the only one
        // asked for beyond nix's set, i.e. a hang-up.
        let hit = |p: &PollFd<'_>, f: PollFlags| p.revents().is_none_or(|r| r.intersects(f));
        let (last, data) = pfds.split_last().expect("the control fd is always there");
        return Ok(Ready {
            fds: data.iter().map(|p| hit(p, any)).collect(),
            ctrl: hit(last, ctrl_events | PollFlags::POLLERR | PollFlags::POLLHUP),
            timed_out: false,
        });
    }
}

/// Makes a silent peer an error on the control connection within about `idle`: TCP
/// keepalive probes after `idle / 2` of silence, one a second (tcp(7) TCP_KEEPIDLE,
/// TCP_KEEPINTVL), and TCP_USER_TIMEOUT = `idle` (RFC 5482), so unanswered probes or unacked
/// data end the connection with ETIMEDOUT. A peer that vanished without a FIN or a reset (a
/// dropped link, a firewall) then ends the test like one that closed.
pub fn watch_peer(conn: &TcpStream, idle: Duration) -> io::Result<()> {
    let s = socket2::SockRef::from(conn);
    let probe_after = (idle / 2).max(Duration::from_secs(1));
    s.set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(probe_after)
            .with_interval(Duration::from_secs(1))
            .with_retries(idle.as_secs().clamp(1, 10) as u32),
    )?;
    s.set_tcp_user_timeout(Some(idle.max(Duration::from_millis(500))))
}

/// SO_RCVLOWAT for a TCP stream receiver: [`receiver::TCP_CHUNK`], or a quarter of a buffer the
/// user fixed with `--rcvbuf` (the kernel doubles the value asked), so a read can always be
/// satisfied.
fn tcp_lowat(rcvbuf: Option<usize>) -> usize {
    rcvbuf.map_or(receiver::TCP_CHUNK, |asked| {
        (asked / 2).min(receiver::TCP_CHUNK)
    })
}
