//! Receiving workers, one thread per stream: UDP with recvmmsg(2) batches (and UDP GRO when
//! the kernel has it), TCP with large reads, and the `rr` echo. They are the bench's source of
//! truth: bytes, datagrams, loss, duplicates, reordering and jitter are counted here.
//!
//! A receiver stops when it has every datagram the sender announced, when the stream ends
//! (TCP EOF), or at the deadline in its [`RecvCtl`], which the session moves forward when the
//! peer's senders are done (a short drain) or when the test is aborted (at once).

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::time::Duration;

use super::protocol::{IntervalSample, StreamResult, Transport};
use super::stats::{Interval, SeqTracker};
use super::wire::{HEADER_LEN, Repr};
use crate::sock::Sock;
use crate::sock::options::Tolerated;
use crate::sock::sys::{self, MAX_BATCH, RecvMeta};

/// Shared between a receiver and its session: when to stop, and how many datagrams to expect.
#[derive(Debug)]
pub struct RecvCtl {
    stop_at_ns: AtomicU64,
    expected: AtomicU64,
}

impl RecvCtl {
    /// Stop at `stop_at_ns` at the latest; the expected count is unknown yet.
    pub fn new(stop_at_ns: u64) -> Self {
        Self {
            stop_at_ns: AtomicU64::new(stop_at_ns),
            expected: AtomicU64::new(u64::MAX),
        }
    }

    /// Moves the deadline earlier (never later).
    pub fn stop_by(&self, ns: u64) {
        self.stop_at_ns.fetch_min(ns, Ordering::Relaxed);
    }

    /// The sender's final datagram count.
    pub fn expect(&self, n: u64) {
        self.expected.store(n, Ordering::Relaxed);
    }

    fn expected(&self) -> Option<u64> {
        let n = self.expected.load(Ordering::Relaxed);
        (n != u64::MAX).then_some(n)
    }

    fn done(&self, now: u64) -> bool {
        now >= self.stop_at_ns.load(Ordering::Relaxed)
    }
}

/// What a receiver needs to know.
#[derive(Debug, Clone, Copy)]
pub struct RecvCfg {
    /// Stream id the datagrams must carry.
    pub stream: u16,
    /// Payload size the sender uses.
    pub size: usize,
    /// Try UDP GRO.
    pub gro: bool,
    /// Spin (MSG_DONTWAIT) instead of blocking.
    pub busy: bool,
    /// TCP stream: SO_RCVLOWAT, the bytes a blocking read waits for (0 = the kernel's 1).
    pub lowat: usize,
    /// Test start, CLOCK_MONOTONIC ns, for interval boundaries.
    pub t0_ns: u64,
    /// Interval length, 0 = no interval samples.
    pub interval_ns: u64,
}

/// Emits interval samples on their boundaries.
struct Ticker<'a, T> {
    cfg: RecvCfg,
    next: u64,
    last: u64,
    cur: Interval,
    out: Option<&'a Sender<T>>,
    wrap: fn(IntervalSample) -> T,
}

impl<'a, T> Ticker<'a, T> {
    fn new(cfg: RecvCfg, out: Option<&'a Sender<T>>, wrap: fn(IntervalSample) -> T) -> Self {
        Self {
            cfg,
            next: cfg.t0_ns + cfg.interval_ns,
            last: cfg.t0_ns,
            cur: Interval::default(),
            out,
            wrap,
        }
    }

    #[inline]
    fn tick(&mut self, now: u64, force: bool) {
        if self.cfg.interval_ns == 0 || (now < self.next && !force) {
            return;
        }
        let c = self.cur.take();
        if force && c.packets == 0 {
            return;
        }
        if let Some(out) = self.out {
            let _ = out.send((self.wrap)(IntervalSample {
                stream: self.cfg.stream,
                start_ns: self.last - self.cfg.t0_ns,
                end_ns: now.max(self.last) - self.cfg.t0_ns,
                bytes: c.bytes,
                packets: c.packets,
            }));
        }
        self.last = now.max(self.last);
        while self.next <= now {
            self.next += self.cfg.interval_ns;
        }
    }
}

/// Receives a UDP stream. Datagrams not carrying a valid header for this stream are ignored
/// (counted nowhere: they are not the test's).
pub fn udp<T>(
    sock: &Sock,
    cfg: RecvCfg,
    ctl: &RecvCtl,
    out: Option<&Sender<T>>,
    wrap: fn(IntervalSample) -> T,
) -> StreamResult {
    let fd = sock.as_fd();
    let gro = cfg.gro && sock.set_udp_gro(true).tolerated();
    let ovfl = sock.set_rxq_ovfl(true).tolerated();
    // Kernel receive times per skb; without them the batch's read time stands in (and the
    // datagrams of one recvmmsg(2) call then share it, which the jitter count shows).
    sock.set_timestamp_ns(true).tolerated();
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .tolerated();
    let slot = if gro {
        65536
    } else {
        cfg.size.max(HEADER_LEN) + 1
    };
    let batch = if gro { 16 } else { MAX_BATCH };
    let mut buf = vec![0u8; slot * batch];
    let mut metas = [RecvMeta::default(); MAX_BATCH];
    let flags = if cfg.busy { libc::MSG_DONTWAIT } else { 0 };
    let mut t = SeqTracker::new();
    let mut tick = Ticker::new(cfg, out, wrap);
    let (mut bytes, mut first, mut last, mut drops) = (0u64, 0u64, 0u64, None);
    // Bytes recvmmsg(2) copied into `buf`, whatever the datagrams turn out to be.
    let mut copied = 0u64;
    loop {
        let now = sys::monotonic_ns();
        if ctl.done(now) || ctl.expected().is_some_and(|e| t.unique() >= e) {
            break;
        }
        match sys::recv_batch(fd, &mut buf, slot, &mut metas[..batch], flags) {
            Ok(n) => {
                let now = sys::monotonic_ns();
                let read_at = sys::realtime_ns();
                for (i, m) in metas[..n].iter().enumerate() {
                    if m.dropped.is_some() {
                        drops = m.dropped;
                    }
                    copied += m.len as u64;
                    let rx = m.rx_time_ns.unwrap_or(read_at);
                    let msg = &buf[i * slot..i * slot + m.len];
                    for d in msg.chunks(m.segment.max(1)) {
                        let Ok(h) = Repr::parse(d) else { continue };
                        if h.stream != cfg.stream {
                            continue;
                        }
                        if first == 0 {
                            first = now;
                        }
                        last = now;
                        if t.record(h.seq, h.timestamp_ns, rx) != super::stats::Arrival::Duplicate {
                            bytes += d.len() as u64;
                            tick.cur.bytes += d.len() as u64;
                            tick.cur.packets += 1;
                        }
                    }
                }
                tick.tick(now, false);
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) => {
                tick.tick(sys::monotonic_ns(), false);
                if cfg.busy {
                    std::hint::spin_loop();
                }
            }
            Err(_) => break,
        }
    }
    tick.tick(sys::monotonic_ns(), true);
    let expected = ctl.expected();
    // The SO_RXQ_OVFL cmsg comes with the next datagram received, so drops after the last
    // one only show in the counter itself (SK_MEMINFO_DROPS, the same sk_drops).
    let at_end = sys::mem_info(fd).map_or(0, |m| m.drops);
    let socket_skbs = ovfl.then(|| u64::from(drops.unwrap_or(0).max(at_end)));
    StreamResult {
        stream: cfg.stream,
        bytes,
        packets: t.unique(),
        duration_ns: last.saturating_sub(first),
        sent_packets: expected.unwrap_or(0),
        lost: t.lost(expected),
        duplicates: t.duplicates(),
        reordered: t.reordered(),
        jitter_ns: t.jitter_ns(),
        socket_drops: socket_skbs,
        socket_drops_datagrams: socket_skbs.map(|k| {
            if gro {
                // Mean datagrams per received skb: an estimate of a dropped skb's contents.
                let per = t.unique() as f64 / t.recv_times().max(1) as f64;
                (k as f64 * per.max(1.0)).round() as u64
            } else {
                k
            }
        }),
        socket_drops_estimated: gro && socket_skbs.is_some_and(|k| k > 0),
        jitter_samples: t.jitter_samples(),
        send_times: t.send_times(),
        recv_times: t.recv_times(),
        gro: Some(gro),
        receiver_copied_bytes: Some(copied),
        ..StreamResult::default()
    }
}

/// The bytes a TCP stream receiver asks for per read (and waits for, with SO_RCVLOWAT): large
/// enough that the receiver does not wake for every segment, small enough that the buffer it
/// copies into stays in the CPU's cache (1 MiB reads made `_copy_to_iter` the largest cost in a
/// `perf record` of 4 streams on 2 CPUs).
pub const TCP_CHUNK: usize = 128 << 10;

/// Receives a TCP stream until EOF (or the deadline), counting bytes and read calls.
pub fn tcp<T>(
    sock: &Sock,
    cfg: RecvCfg,
    ctl: &RecvCtl,
    out: Option<&Sender<T>>,
    wrap: fn(IntervalSample) -> T,
) -> StreamResult {
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .tolerated();
    if cfg.lowat > 1 {
        // Fewer, larger reads: the receiver sleeps until a large chunk is queued instead of
        // waking for every segment, which on loopback steals the sender's CPU (the end of
        // the stream and the read timeout still wake it).
        sock.set_recv_lowat(cfg.lowat.min(u32::MAX as usize) as u32)
            .tolerated();
    }
    let mut buf = vec![0u8; cfg.lowat.max(TCP_CHUNK)];
    let mut tick = Ticker::new(cfg, out, wrap);
    let (mut bytes, mut reads, mut first, mut last) = (0u64, 0u64, 0u64, 0u64);
    loop {
        let now = sys::monotonic_ns();
        if ctl.done(now) {
            break;
        }
        match sock.recv(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let now = sys::monotonic_ns();
                if first == 0 {
                    first = now;
                }
                last = now;
                bytes += n as u64;
                reads += 1;
                tick.cur.bytes += n as u64;
                tick.cur.packets += 1;
                tick.tick(now, false);
            }
            Err(e) if matches!(e.errno(), Some(libc::EAGAIN | libc::EINTR)) => {
                tick.tick(sys::monotonic_ns(), false);
            }
            Err(_) => break,
        }
    }
    tick.tick(sys::monotonic_ns(), true);
    StreamResult {
        stream: cfg.stream,
        bytes,
        packets: reads,
        duration_ns: last.saturating_sub(first),
        // Every byte read(2) returned was copied out of the socket into `buf`.
        receiver_copied_bytes: Some(bytes),
        ..StreamResult::default()
    }
}

/// Echoes requests back (the server side of `rr`) until EOF or the deadline; the result's
/// `packets` is the number of echoes.
pub fn echo(sock: &Sock, transport: Transport, cfg: RecvCfg, ctl: &RecvCtl) -> StreamResult {
    let _ = sock.set_nonblocking(cfg.busy);
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .tolerated();
    let mut buf = vec![0u8; cfg.size.max(HEADER_LEN).max(2048)];
    let (mut n, mut bytes, mut connected) = (0u64, 0u64, false);
    while !ctl.done(sys::monotonic_ns()) {
        match transport {
            Transport::Tcp => match sock.recv(&mut buf) {
                Ok(0) => break,
                Ok(k) => {
                    if !super::wire::send_all(sock, &buf[..k]) {
                        break;
                    }
                    bytes += k as u64;
                    n += 1;
                }
                Err(e) if matches!(e.errno(), Some(libc::EAGAIN | libc::EINTR)) => {}
                Err(_) => break,
            },
            // The first request names the requester; connecting to it keeps the later round
            // trips on plain recv(2)/send(2), as lean as the requester's side.
            Transport::Udp if !connected => match sock.recv_datagram(&mut buf, 0) {
                Ok(d) => {
                    if let Some(from) = d.from {
                        connected = sock.connect(from).is_ok();
                        let _ = sock.send_to(&buf[..d.len], from);
                        bytes += d.len as u64;
                        n += 1;
                    }
                }
                Err(e) if matches!(e.errno(), Some(libc::EAGAIN | libc::EINTR)) => {}
                Err(_) => break,
            },
            Transport::Udp => match sock.recv(&mut buf) {
                Ok(k) => {
                    let _ = sock.send(&buf[..k]);
                    bytes += k as u64;
                    n += 1;
                }
                Err(e) if matches!(e.errno(), Some(libc::EAGAIN | libc::EINTR)) => {}
                Err(_) => break,
            },
        }
    }
    StreamResult {
        stream: cfg.stream,
        bytes,
        packets: n,
        ..StreamResult::default()
    }
}
