//! MSG_ZEROCOPY for the bench senders (Documentation/networking/msg_zerocopy.rst), and the
//! count of the bytes the sender's kernel copied from user memory.
//!
//! With SO_ZEROCOPY on, a send with MSG_ZEROCOPY pins the caller's pages instead of copying
//! them, so the buffer must not be rewritten until the kernel says it has let go: each
//! accepted call (a send(2), or one message of a sendmmsg(2)) takes the next value of the
//! socket's 32-bit call counter, and completions arrive on the socket's error queue as ranges
//! of those ids, flagged SO_EE_CODE_ZEROCOPY_COPIED when the kernel copied the data after all.
//! [`Copies`] hands out a small ring of buffers, reuses one only once every call sent from it
//! is notified (waiting on POLLERR, bounded), and counts from the notifications the bytes the
//! kernel copied. Without `--zerocopy`, or when SO_ZEROCOPY is refused, every byte a send call
//! accepted was copied (send(2) copies into socket buffers), and the count says so.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::sock::sys;

/// What a sender's MSG_ZEROCOPY sends became, from the completion notifications it read from
/// its socket's error queue (recvmsg(2) MSG_ERRQUEUE, ee_origin SO_EE_ORIGIN_ZEROCOPY:
/// Documentation/networking/msg_zerocopy.rst). A "call" is one message the kernel accepted,
/// one notification id: a send(2), or one message of a sendmmsg(2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZeroCopyCount {
    /// Why the sender sent without MSG_ZEROCOPY (for the rest of the run, from when it was
    /// refused): SO_ZEROCOPY refused by setsockopt(2), or MSG_ZEROCOPY sends failing with
    /// ENOBUFS while none was in flight (the locked-memory limit, RLIMIT_MEMLOCK). None: used
    /// for the whole run.
    pub refused: Option<String>,
    /// Calls made with MSG_ZEROCOPY that the kernel accepted.
    pub calls: u64,
    /// Bytes those calls carried.
    pub bytes: u64,
    /// Calls whose completion was notified before the sender finished (the rest were still
    /// in flight after a bounded wait at the end).
    pub notified_calls: u64,
    /// Notified calls with SO_EE_CODE_ZEROCOPY_COPIED: the kernel copied their data anyway
    /// (a deferred copy: data looped to a local socket on loopback or veth is copied at
    /// delivery, skb_orphan_frags_rx; a device without scatter-gather copies too). The kernel
    /// merges a range into the queued one without comparing this flag, so it is exact per
    /// notified range, not per call.
    pub copied_calls: u64,
    /// Bytes of the `copied_calls` (each call's length is known by its id).
    pub copied_bytes: u64,
    /// Bytes of calls never notified (still in flight when the sender gave up waiting).
    pub unnotified_bytes: u64,
    /// Bytes sent without MSG_ZEROCOPY after a refusal (the kernel copied all of them).
    pub plain_bytes: u64,
}

/// Buffers in a zerocopy sender's ring: calls from all of them can be in flight at once.
const RING: usize = 8;
/// Longest a sender waits for the completions still outstanding when it stops.
const SETTLE_NS: u64 = 2_000_000_000;
/// A poll(2) for POLLERR lasts at most this long, so a wait notices the end of the test.
const POLL_MS: u16 = 10;
/// ENOBUFS this many times in a row with no zerocopy call in flight: the kernel will not pin
/// the pages (the locked-memory limit) and the sender goes on with plain sends.
const IDLE_ENOBUFS: u32 = 3;

/// The calls sent from one ring buffer.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Id of its first call, unwrapped to 64 bits.
    first: u64,
    /// Calls sent from it (consecutive ids).
    calls: u64,
    /// Calls not yet notified.
    pending: u64,
    /// Bytes each call carried.
    bytes_each: u64,
}

/// Zerocopy state of one sending socket, and the copied-bytes count of any sender.
#[derive(Debug)]
pub struct Copies<'a> {
    fd: BorrowedFd<'a>,
    /// `--zerocopy` was asked.
    asked: bool,
    /// MSG_ZEROCOPY is passed now.
    on: bool,
    /// Buffers the sender allocates: [`RING`] when zerocopy was set up, else 1.
    ring: usize,
    slots: [Slot; RING],
    next: usize,
    /// Calls accepted with MSG_ZEROCOPY so far: the next call's id, unwrapped.
    ids: u64,
    idle_enobufs: u32,
    /// Every byte the send calls accepted.
    sent_bytes: u64,
    count: ZeroCopyCount,
}

impl<'a> Copies<'a> {
    /// For a sender on `fd`; with `zerocopy`, sets SO_ZEROCOPY (a refusal is kept as the
    /// reason, and the sender sends plainly).
    pub fn new(fd: BorrowedFd<'a>, zerocopy: bool) -> Self {
        let mut count = ZeroCopyCount::default();
        let on = zerocopy
            && match sys::set_zerocopy(fd) {
                Ok(()) => true,
                Err(e) => {
                    count.refused = Some(format!("setsockopt(SO_ZEROCOPY) refused: {e}"));
                    false
                }
            };
        Self {
            fd,
            asked: zerocopy,
            on,
            ring: if on { RING } else { 1 },
            slots: [Slot::default(); RING],
            next: 0,
            ids: 0,
            idle_enobufs: 0,
            sent_bytes: 0,
            count,
        }
    }

    /// Buffers the sender should allocate (and cut its buffer into).
    pub fn ring(&self) -> usize {
        self.ring
    }

    /// The flags for the next send call: MSG_ZEROCOPY, or 0.
    pub fn flags(&self) -> i32 {
        if self.on { libc::MSG_ZEROCOPY } else { 0 }
    }

    /// The ring buffer to fill and send next, once every call sent from it is notified.
    /// Ok(None) when the test ended (`until_ns`, `abort`) while waiting; Err when POLLERR
    /// showed a socket error instead of a notification.
    pub fn acquire(&mut self, until_ns: u64, abort: &AtomicBool) -> Result<Option<usize>, String> {
        if !self.on {
            // Nothing is in flight: plain sends, or zerocopy refused while nothing was.
            return Ok(Some(0));
        }
        let k = self.next;
        loop {
            self.drain()?;
            if self.slots[k].pending == 0 {
                return Ok(Some(k));
            }
            if abort.load(Ordering::Relaxed) || sys::monotonic_ns() >= until_ns {
                return Ok(None);
            }
            self.wait()?;
        }
    }

    /// Records that `calls` calls of `bytes_each` bytes left from buffer `slot`.
    pub fn sent(&mut self, slot: usize, calls: u64, bytes_each: u64) {
        let bytes = calls * bytes_each;
        self.sent_bytes += bytes;
        if !self.on {
            if self.asked {
                self.count.plain_bytes += bytes;
            }
            return;
        }
        self.slots[slot] = Slot {
            first: self.ids,
            calls,
            pending: calls,
            bytes_each,
        };
        self.ids += calls;
        self.count.calls += calls;
        self.count.bytes += bytes;
        self.next = (slot + 1) % RING;
        self.idle_enobufs = 0;
    }

    /// A MSG_ZEROCOPY call failed with ENOBUFS (the socket's optmem_max or the locked-page
    /// limit, msg_zerocopy.rst): with calls in flight, waits (one bounded poll) for
    /// completions to free room; with none, three times in a row, gives up on
    /// zerocopy for the rest of the run and records why. Whether zerocopy is still on.
    pub fn no_buffers(&mut self) -> Result<bool, String> {
        if self.in_flight() > 0 {
            self.idle_enobufs = 0;
            self.wait()?;
            self.drain()?;
        } else {
            self.idle_enobufs += 1;
            if self.idle_enobufs >= IDLE_ENOBUFS {
                self.on = false;
                self.count.refused = Some(format!(
                    "MSG_ZEROCOPY sends failed with ENOBUFS {IDLE_ENOBUFS} times with none in \
                     flight (the locked-memory limit RLIMIT_MEMLOCK, or net.core.optmem_max): \
                     plain sends after {} zerocopy calls",
                    self.count.calls
                ));
            }
        }
        Ok(self.on)
    }

    /// Waits, at most 2 s, until every call in flight is notified (before the
    /// sender frees or reallocates its buffers).
    pub fn settle(&mut self) {
        let give_up = sys::monotonic_ns() + SETTLE_NS;
        while self.in_flight() > 0 && sys::monotonic_ns() < give_up {
            if self.drain().is_err() || self.in_flight() == 0 || self.wait().is_err() {
                break;
            }
        }
    }

    /// Settles, then the bytes the kernel copied from this sender's memory (every byte of a
    /// plain send; of zerocopy calls, only those notified COPIED) and, when `--zerocopy` was
    /// asked, what the notifications said.
    pub fn finish(mut self) -> (u64, Option<ZeroCopyCount>) {
        self.settle();
        if !self.asked {
            return (self.sent_bytes, None);
        }
        self.count.unnotified_bytes = self.slots.iter().map(|s| s.pending * s.bytes_each).sum();
        let copied = self.count.copied_bytes + self.count.plain_bytes;
        (copied, Some(self.count))
    }

    fn in_flight(&self) -> u64 {
        self.slots.iter().map(|s| s.pending).sum()
    }

    /// Reads every queued completion (recvmsg MSG_ERRQUEUE, never blocks) and marks its calls
    /// done; returns how many notifications it read.
    fn drain(&mut self) -> Result<usize, String> {
        let mut n = 0;
        while let Some(d) =
            sys::recv_zerocopy_done(self.fd).map_err(|e| format!("recvmsg(MSG_ERRQUEUE): {e}"))?
        {
            n += 1;
            self.complete(d);
        }
        Ok(n)
    }

    /// One poll(2) for POLLERR, at most [`POLL_MS`]; POLLERR with no notification queued is a
    /// pending socket error (SO_ERROR), returned as Err.
    fn wait(&mut self) -> Result<(), String> {
        let err = sys::wait_error_queue(self.fd, POLL_MS).map_err(|e| format!("poll: {e}"))?;
        if err && self.drain()? == 0 {
            if let Ok(Some(e)) = socket2::SockRef::from(&self.fd).take_error() {
                return Err(e.to_string());
            }
        }
        Ok(())
    }

    /// Marks the calls of one notification range done, counting the COPIED ones and their
    /// bytes per ring buffer.
    fn complete(&mut self, d: sys::ZeroCopyDone) {
        // The kernel's ids are the low 32 bits of ours: the range ends at or before the last
        // id handed out, so unwrap it relative to that.
        let unwrap = |id: u32| {
            self.ids
                .saturating_sub(u64::from((self.ids as u32).wrapping_sub(id)))
        };
        let lo = unwrap(d.lo);
        let hi = lo + u64::from(d.hi.wrapping_sub(d.lo));
        for s in self.slots.iter_mut().filter(|s| s.pending > 0) {
            let (from, to) = (lo.max(s.first), hi.min(s.first + s.calls - 1));
            if from > to {
                continue;
            }
            let calls = (to - from + 1).min(s.pending);
            s.pending -= calls;
            self.count.notified_calls += calls;
            if d.copied {
                self.count.copied_calls += calls;
                self.count.copied_bytes += calls * s.bytes_each;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// A connected UDP pair on loopback: (sender, receiver).
    fn pair() -> (std::net::UdpSocket, std::net::UdpSocket) {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        (tx, rx)
    }

    #[test]
    fn plain_sends_count_every_byte_as_copied() {
        let (tx, _rx) = pair();
        let mut c = Copies::new(tx.as_fd(), false);
        assert_eq!((c.ring(), c.flags()), (1, 0));
        c.sent(0, 3, 1000);
        assert_eq!(c.finish(), (3000, None));
    }

    #[test]
    fn loopback_zerocopy_is_notified_copied() {
        let (tx, rx) = pair();
        let mut c = Copies::new(tx.as_fd(), true);
        assert_eq!(
            c.flags(),
            libc::MSG_ZEROCOPY,
            "SO_ZEROCOPY refused on this kernel"
        );
        let buf = vec![7u8; c.ring() * 1000];
        let abort = AtomicBool::new(false);
        let until = sys::monotonic_ns() + 5_000_000_000;
        for _ in 0..20 {
            let k = c.acquire(until, &abort).unwrap().unwrap();
            let n = sys::send_batch_flags(tx.as_fd(), &buf[k * 1000..][..1000], 500, c.flags())
                .unwrap();
            c.sent(k, n as u64, 500);
        }
        // The receiver's socket queues the datagrams: looped to a local socket, each was
        // copied at delivery and its completion says so.
        let (copied, count) = c.finish();
        let count = count.unwrap();
        assert_eq!((count.calls, count.bytes), (40, 20_000));
        assert_eq!(count.notified_calls, 40, "{count:?}");
        assert_eq!((count.copied_calls, count.copied_bytes), (40, 20_000));
        assert_eq!(copied, 20_000);
        drop(rx);
    }
}
