//! Sending workers, one thread per stream: UDP with sendmmsg(2) batches and UDP GSO, TCP with
//! large writes, and the `rr` requester. The hot loops do not allocate or format: headers are
//! stamped in place in a buffer allocated once, the clock is read once per send call
//! (the datagrams of one call leave together and carry one send time).

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};

use hdrhistogram::Histogram;

use super::protocol::{SentCount, TcpFigures, Transport};
use super::wire::{HEADER_LEN, Repr, send_all};
use super::zerocopy::Copies;
use crate::sock::Sock;
use crate::sock::options::Tolerated;
use crate::sock::sys::{self, MAX_BATCH};

/// Largest UDP payload that fits one IPv4 datagram (65535 − 20 − 8).
pub const MAX_UDP_PAYLOAD: usize = 65507;

/// What a sender needs to know.
#[derive(Debug, Clone, Copy)]
pub struct SendCfg {
    /// Stream id stamped into every header.
    pub stream: u16,
    /// Payload size per datagram / write.
    pub size: usize,
    /// Pacing in bits per second, 0 = unpaced.
    pub rate_bps: u64,
    /// Try UDP GSO.
    pub gso: bool,
    /// Stop sending at this CLOCK_MONOTONIC time.
    pub until_ns: u64,
    /// UDP and TCP bulk senders: try MSG_ZEROCOPY ([`Copies`]).
    pub zerocopy: bool,
}

/// With MSG_ZEROCOPY, a UDP ring buffer holds at most this many bytes (the pages of every
/// buffer in the ring can be pinned at once).
const ZEROCOPY_SLOT_BYTES: usize = 512 << 10;

/// TCP_INFO of `sock` as bench figures.
pub fn tcp_figures(sock: &Sock) -> Option<TcpFigures> {
    sock.tcp_info().ok().map(|t| TcpFigures {
        retransmits: t.total_retrans.into(),
        rtt_us: t.rtt_us.into(),
        rttvar_us: t.rttvar_us.into(),
        cwnd: t.snd_cwnd.into(),
        mss: t.snd_mss.into(),
    })
}

/// Bytes allowed by `rate_bps` after `elapsed_ns` (u128: no overflow for any rate or time).
fn allowance(rate_bps: u64, elapsed_ns: u64) -> u64 {
    (rate_bps as u128 * elapsed_ns as u128 / 8_000_000_000) as u64
}

/// Waits until pacing allows more bytes, or `until_ns`; false when time is up.
fn pace(cfg: &SendCfg, start: u64, sent: u64) -> bool {
    loop {
        let now = sys::monotonic_ns();
        if now >= cfg.until_ns {
            return false;
        }
        if cfg.rate_bps == 0 || allowance(cfg.rate_bps, now - start) > sent {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_micros(50));
    }
}

/// Sends UDP datagrams on a connected socket until `until_ns` or `abort`: each carries a
/// [`Repr`] header with consecutive sequence numbers. Returns what was sent; only datagrams
/// sendmmsg(2) accepted are counted. With `zerocopy`, each message goes with MSG_ZEROCOPY
/// from a ring of buffers ([`Copies`]), a buffer restamped only once its calls are notified.
pub fn udp(sock: &Sock, cfg: SendCfg, abort: &AtomicBool) -> SentCount {
    let size = cfg.size.clamp(HEADER_LEN, MAX_UDP_PAYLOAD);
    let fd = sock.as_fd();
    // Paced: about 100 µs of data per call (at least one datagram), so that datagrams leave
    // close to their time and a slow stream sends, and stamps, one datagram per call.
    let per_slice = match cfg.rate_bps {
        0 => usize::MAX,
        r => ((r / 8 / 10_000) as usize / size).max(1),
    };
    let mut segs = 1;
    if cfg.gso && size * 2 <= MAX_UDP_PAYLOAD {
        let want = (MAX_UDP_PAYLOAD / size).min(64).min(per_slice);
        if want > 1 && sock.set_udp_segment(size as u16).tolerated() {
            segs = want;
        }
    }
    let mut copies = Copies::new(fd, cfg.zerocopy);
    let mut msgs = (per_slice / segs).clamp(1, MAX_BATCH);
    if copies.ring() > 1 {
        msgs = msgs.min((ZEROCOPY_SLOT_BYTES / (segs * size)).max(1));
    }
    let mut buf = vec![0u8; copies.ring() * msgs * segs * size];
    let start = sys::monotonic_ns();
    let (mut seq, mut bytes, mut error, mut refused) = (0u64, 0u64, None, 0u64);
    while !abort.load(Ordering::Relaxed) && pace(&cfg, start, bytes) {
        let slot_len = msgs * segs * size;
        let k = match copies.acquire(cfg.until_ns, abort) {
            Ok(Some(k)) => k,
            Ok(None) => break,
            Err(e) => {
                error = Some(format!("zerocopy: {e}"));
                break;
            }
        };
        let slot = &mut buf[k * slot_len..(k + 1) * slot_len];
        // One send time per call: the datagrams of one sendmmsg(2) (and of one GSO buffer)
        // leave together. CLOCK_REALTIME, the clock of the receiver's SO_TIMESTAMPNS.
        let mut hdr = Repr {
            stream: cfg.stream,
            seq,
            timestamp_ns: sys::realtime_ns(),
        };
        for d in slot.chunks_exact_mut(size) {
            // Cannot fail: every chunk is at least HEADER_LEN long (size was clamped).
            let _ = hdr.emit(d);
            hdr.seq += 1;
        }
        match sys::send_batch_flags(fd, slot, segs * size, copies.flags()) {
            Ok(n) => {
                seq += (n * segs) as u64;
                bytes += (n * segs * size) as u64;
                copies.sent(k, n as u64, (segs * size) as u64);
            }
            Err(e) => match e.raw_os_error() {
                // Without IP_RECVERR a UDP send reports no qdisc ENOBUFS: this one is
                // MSG_ZEROCOPY's (no room to pin or to account the pages), retried.
                Some(libc::ENOBUFS) if copies.flags() != 0 => {
                    if let Err(e) = copies.no_buffers() {
                        error = Some(format!("zerocopy: {e}"));
                        break;
                    }
                }
                Some(libc::ENOBUFS | libc::EAGAIN) => {
                    refused += 1;
                    std::thread::yield_now()
                }
                Some(libc::EINTR) => {}
                // The device cannot segment, or a segment exceeds the path MTU (IPv6 does not
                // fragment GSO segments): fall back to one datagram per message.
                Some(libc::EIO | libc::EINVAL | libc::EMSGSIZE) if segs > 1 => {
                    sock.set_udp_segment(0).tolerated();
                    segs = 1;
                    // Zerocopy: the old buffers are not rewritten while the kernel holds them.
                    copies.settle();
                    buf = vec![0u8; copies.ring() * msgs * size];
                }
                _ => {
                    error = Some(format!("sendmmsg: {e}"));
                    break;
                }
            },
        }
    }
    let (copied_bytes, zerocopy) = copies.finish();
    SentCount {
        stream: cfg.stream,
        packets: seq,
        bytes,
        tcp: None,
        gso: Some(segs > 1),
        error,
        refused,
        datagrams_per_skb: segs as u64,
        copied_bytes: Some(copied_bytes),
        zerocopy,
    }
}

/// Writes `size`-byte blocks to a TCP socket until `until_ns` or `abort`, then reads TCP_INFO
/// and half-closes (shutdown(2) SHUT_WR) so the receiver sees the end of the stream. With
/// `zerocopy`, each write goes with MSG_ZEROCOPY from a ring of buffers ([`Copies`]).
pub fn tcp(sock: &Sock, cfg: SendCfg, abort: &AtomicBool) -> SentCount {
    let len = cfg.size.max(1);
    let mut copies = Copies::new(sock.as_fd(), cfg.zerocopy);
    let buf = vec![0x5au8; copies.ring() * len];
    sock.set_write_timeout(Some(std::time::Duration::from_millis(100)))
        .tolerated();
    let start = sys::monotonic_ns();
    let (mut writes, mut bytes, mut error) = (0u64, 0u64, None);
    while !abort.load(Ordering::Relaxed) && pace(&cfg, start, bytes) {
        let k = match copies.acquire(cfg.until_ns, abort) {
            Ok(Some(k)) => k,
            Ok(None) => break,
            Err(e) => {
                error = Some(format!("zerocopy: {e}"));
                break;
            }
        };
        let slot = &buf[k * len..(k + 1) * len];
        let sent = match copies.flags() {
            0 => sock.send(slot).map_err(|e| (e.errno(), e.to_string())),
            f => sys::send_flags(sock.as_fd(), slot, f)
                .map_err(|e| (e.raw_os_error(), format!("send(MSG_ZEROCOPY): {e}"))),
        };
        match sent {
            Ok(n) => {
                writes += 1;
                bytes += n as u64;
                copies.sent(k, 1, n as u64);
            }
            Err((Some(libc::ENOBUFS), _)) if copies.flags() != 0 => {
                if let Err(e) = copies.no_buffers() {
                    error = Some(format!("zerocopy: {e}"));
                    break;
                }
            }
            Err((Some(libc::EAGAIN | libc::EINTR), _)) => {}
            Err((_, e)) => {
                error = Some(e);
                break;
            }
        }
    }
    // The receiver acknowledges what is in flight, and the kernel then lets go of it.
    let (copied_bytes, zerocopy) = copies.finish();
    let tcp = tcp_figures(sock);
    let _ = sock.shutdown(std::net::Shutdown::Write);
    SentCount {
        stream: cfg.stream,
        packets: writes,
        bytes,
        tcp,
        gso: None,
        error,
        copied_bytes: Some(copied_bytes),
        zerocopy,
        ..SentCount::default()
    }
}

/// A new latency histogram: 1 ns to 60 s at 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Cannot fail: the bounds are valid constants (low >= 1, high >= 2 * low, sigfig <= 5).
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Request/response: sends `size` bytes, waits for the whole echo, records the round trip,
/// until `until_ns`. With `busy`, the socket is nonblocking and the wait spins. A UDP
/// request whose echo does not come within the read timeout is counted as lost.
pub fn rr(
    sock: &Sock,
    transport: Transport,
    cfg: SendCfg,
    busy: bool,
    abort: &AtomicBool,
) -> (SentCount, Histogram<u64>, u64) {
    let mut hist = new_histogram();
    let size = cfg.size.max(1);
    let req = vec![0x42u8; size];
    let mut resp = vec![0u8; size.max(HEADER_LEN)];
    let _ = sock.set_nonblocking(busy);
    sock.set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .tolerated();
    let (mut n, mut lost) = (0u64, 0u64);
    while !abort.load(Ordering::Relaxed) {
        let t = sys::monotonic_ns();
        if t >= cfg.until_ns {
            break;
        }
        if !send_all(sock, &req) {
            break;
        }
        match recv_reply(sock, transport, &mut resp, busy, t + 200_000_000) {
            Ok(true) => {
                n += 1;
                let _ = hist.record((sys::monotonic_ns() - t).max(1));
            }
            Ok(false) => lost += 1,
            Err(_) => break,
        }
    }
    if transport == Transport::Tcp {
        let _ = sock.shutdown(std::net::Shutdown::Write);
    }
    let sent = SentCount {
        stream: cfg.stream,
        packets: n + lost,
        bytes: (n + lost) * size as u64,
        tcp: (transport == Transport::Tcp)
            .then(|| tcp_figures(sock))
            .flatten(),
        gso: None,
        error: None,
        ..SentCount::default()
    };
    (sent, hist, lost)
}

/// Waits for one reply: a datagram (UDP) or `buf.len()` bytes (TCP). Ok(false) on timeout.
fn recv_reply(
    sock: &Sock,
    transport: Transport,
    buf: &mut [u8],
    busy: bool,
    give_up_ns: u64,
) -> io::Result<bool> {
    let want = match transport {
        Transport::Udp => 1,
        Transport::Tcp => buf.len(),
    };
    let mut got = 0;
    while got < want {
        match sock.recv(&mut buf[got..]) {
            Ok(0) if transport == Transport::Tcp => {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            Ok(k) => got += k,
            Err(e) if matches!(e.errno(), Some(libc::EAGAIN | libc::EINTR)) => {
                if !busy || sys::monotonic_ns() >= give_up_ns {
                    if transport == Transport::Udp {
                        return Ok(false);
                    }
                    if sys::monotonic_ns() >= give_up_ns {
                        return Err(io::Error::from(io::ErrorKind::TimedOut));
                    }
                }
                std::hint::spin_loop();
            }
            Err(e) => return Err(e.source),
        }
    }
    Ok(true)
}

/// Open-loop latency probes: `size`-byte requests leave on a fixed schedule (one every
/// `size × 8 / rate_bps` seconds; 1 ms when unpaced) whatever the replies do, and a second
/// thread reads the echoes. Each request carries its *scheduled* send time, so a request that
/// leaves late (a full TCP send buffer, a busy CPU) counts its wait in its latency: the
/// schedule does not bend to the system under test (no coordinated omission). UDP requests
/// without an echo 200 ms after the last one left are lost.
pub fn probe(
    sock: &Sock,
    transport: Transport,
    cfg: SendCfg,
    abort: &AtomicBool,
) -> (SentCount, Histogram<u64>, u64) {
    let size = cfg.size.max(HEADER_LEN);
    let interval_ns = match cfg.rate_bps {
        0 => 1_000_000,
        r => ((size as u128 * 8 * 1_000_000_000) / r as u128).max(1) as u64,
    };
    let _ = sock.set_nonblocking(false);
    sock.set_read_timeout(Some(std::time::Duration::from_millis(20)))
        .tolerated();
    let writing_done = AtomicBool::new(false);
    let sent_count = std::sync::atomic::AtomicU64::new(0);
    let (hist, received) = std::thread::scope(|s| {
        let reader = s.spawn(|| read_echoes(sock, transport, size, &writing_done, &sent_count));
        let mut req = vec![0x42u8; size];
        let t0 = sys::monotonic_ns();
        let mut k = 0u64;
        while !abort.load(Ordering::Relaxed) {
            let due = t0 + k * interval_ns;
            if due >= cfg.until_ns {
                break;
            }
            wait_until(due);
            let hdr = Repr {
                stream: cfg.stream,
                seq: k,
                timestamp_ns: due,
            };
            // Cannot fail: req is at least HEADER_LEN long.
            let _ = hdr.emit(&mut req);
            let ok = match transport {
                Transport::Tcp => send_all(sock, &req),
                Transport::Udp => sock.send(&req).is_ok(),
            };
            if !ok && transport == Transport::Tcp {
                break;
            }
            k += 1;
            sent_count.store(k, Ordering::Relaxed);
        }
        if transport == Transport::Tcp {
            let _ = sock.shutdown(std::net::Shutdown::Write);
        }
        writing_done.store(true, Ordering::Relaxed);
        reader.join().unwrap_or_else(|_| (new_histogram(), 0))
    });
    let sent = sent_count.load(Ordering::Relaxed);
    let count = SentCount {
        stream: cfg.stream,
        packets: sent,
        bytes: sent * size as u64,
        tcp: (transport == Transport::Tcp)
            .then(|| tcp_figures(sock))
            .flatten(),
        ..SentCount::default()
    };
    (count, hist, sent.saturating_sub(received))
}

/// Sleeps until shortly before `due_ns` (CLOCK_MONOTONIC), then spins to it.
fn wait_until(due_ns: u64) {
    loop {
        let now = sys::monotonic_ns();
        if now >= due_ns {
            return;
        }
        let left = due_ns - now;
        if left > 200_000 {
            std::thread::sleep(std::time::Duration::from_nanos(left - 100_000));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// The probe reader: records now − scheduled time of every echo; returns the histogram and
/// the echoes counted. Ends at TCP EOF, or (UDP) when every sent probe is back or 200 ms
/// after the writer finished.
fn read_echoes(
    sock: &Sock,
    transport: Transport,
    size: usize,
    writing_done: &AtomicBool,
    sent: &std::sync::atomic::AtomicU64,
) -> (Histogram<u64>, u64) {
    let mut hist = new_histogram();
    let mut buf = vec![0u8; size.max(2048)];
    let (mut got, mut have, mut done_at) = (0u64, 0usize, None::<u64>);
    loop {
        let now = sys::monotonic_ns();
        if writing_done.load(Ordering::Relaxed) {
            let end = *done_at.get_or_insert(now + 200_000_000);
            let all = got >= sent.load(Ordering::Relaxed);
            if (transport == Transport::Udp && all)
                || now >= end + 2_000_000_000 * u64::from(transport == Transport::Tcp)
            {
                break;
            }
        }
        let r = match transport {
            Transport::Udp => sock.recv(&mut buf),
            Transport::Tcp => sock.recv(&mut buf[have..size]),
        };
        match r {
            Ok(0) if transport == Transport::Tcp => break,
            Ok(n) => {
                let frame = match transport {
                    Transport::Udp => &buf[..n],
                    Transport::Tcp => {
                        have += n;
                        if have < size {
                            continue;
                        }
                        have = 0;
                        &buf[..size]
                    }
                };
                if let Ok(h) = Repr::parse(frame) {
                    let t = sys::monotonic_ns();
                    let _ = hist.record(t.saturating_sub(h.timestamp_ns).max(1));
                    got += 1;
                }
            }
            Err(e) if matches!(e.errno(), Some(libc::EAGAIN | libc::EINTR)) => {}
            Err(_) => break,
        }
    }
    (hist, got)
}
