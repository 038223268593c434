//! Receiver-side accounting of one UDP stream: unique, duplicate and reordered datagrams,
//! loss, and interarrival jitter. All counters are `u64`; nothing here produces NaN.
//!
//! - Reordering follows RFC 4737 §3.3: a datagram is reordered when its sequence number is
//!   lower than the highest seen so far (duplicates are counted apart, not as reordered).
//! - Duplicates are recognised within a window of [`WINDOW`] sequence numbers below the
//!   highest seen; an older datagram cannot be told from a duplicate and is counted as
//!   reordered and unique (a bench sender never reuses numbers, so this is the likely case).
//! - Loss = datagrams the sender says it sent − unique datagrams received ([`SeqTracker::lost`]).
//! - Jitter follows RFC 3550 §6.4.1: D = (Rj − Ri) − (Sj − Si) of consecutive samples,
//!   J += (|D| − J) / 16, kept in nanoseconds in integer arithmetic scaled by 16. S is the
//!   send time in the data header (one per send call: the datagrams of one sendmmsg(2)/GSO
//!   call leave together) and R the kernel's receive time (SO_TIMESTAMPNS: one per skb, so
//!   the datagrams of one GRO skb share it). A datagram is a sample only when both its S and
//!   its R differ from the previous sample's: pairs that share a timestamp carry no timing
//!   information, and counting their D = 0 would pull J towards 0. [`SeqTracker::send_times`]
//!   and [`SeqTracker::recv_times`] count the distinct stamps so a report can say how many
//!   datagrams shared one.

/// Sequence numbers remembered below the highest for duplicate detection.
pub const WINDOW: u64 = 1 << 16;

const WORDS: usize = (WINDOW / 64) as usize;

/// Per-stream sequence accounting.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    /// Bitmap of seen numbers in (highest − WINDOW, highest], indexed by seq mod WINDOW.
    seen: Box<[u64; WORDS]>,
    highest: Option<u64>,
    unique: u64,
    duplicates: u64,
    reordered: u64,
    /// Jitter × 16 in nanoseconds (RFC 3550's integer form keeps the /16 exact).
    jitter16: u64,
    /// (send time, receive time, transit) of the last jitter sample.
    last_sample: Option<(u64, u64, i64)>,
    jitter_samples: u64,
    /// Send / receive time of the previous arrival, to count distinct stamps.
    last_stamps: Option<(u64, u64)>,
    send_times: u64,
    recv_times: u64,
}

impl Default for SeqTracker {
    fn default() -> Self {
        Self::new()
    }
}

/// What one arrival was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Higher than everything before (possibly after a gap).
    InOrder,
    /// Lower than the highest seen, first time seen.
    Reordered,
    /// Seen before.
    Duplicate,
}

impl SeqTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self {
            seen: Box::new([0; WORDS]),
            highest: None,
            unique: 0,
            duplicates: 0,
            reordered: 0,
            jitter16: 0,
            last_sample: None,
            jitter_samples: 0,
            last_stamps: None,
            send_times: 0,
            recv_times: 0,
        }
    }

    fn bit(seq: u64) -> (usize, u64) {
        let i = seq % WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    fn clear_range(&mut self, from: u64, to: u64) {
        // Clears the bits of sequence numbers from..=to (mod WINDOW), counting with an offset
        // so that `to` = u64::MAX cannot overflow.
        let span = to - from;
        if span >= WINDOW - 1 {
            self.seen.fill(0);
            return;
        }
        let mut k = 0;
        while k <= span {
            let s = from + k;
            let (w, m) = Self::bit(s);
            if s % 64 == 0 && span - k >= 63 {
                self.seen[w] = 0;
                k += 64;
            } else {
                self.seen[w] &= !m;
                k += 1;
            }
        }
    }

    /// Accounts one datagram with sequence `seq`, sent at `sent_ns` (sender clock) and received
    /// at `recv_ns` (receiver clock).
    pub fn record(&mut self, seq: u64, sent_ns: u64, recv_ns: u64) -> Arrival {
        let arrival = match self.highest {
            Some(h) if seq <= h => {
                if h - seq >= WINDOW {
                    self.unique += 1;
                    self.reordered += 1;
                    Arrival::Reordered
                } else {
                    let (w, m) = Self::bit(seq);
                    if self.seen[w] & m != 0 {
                        self.duplicates += 1;
                        return Arrival::Duplicate;
                    }
                    self.seen[w] |= m;
                    self.unique += 1;
                    self.reordered += 1;
                    Arrival::Reordered
                }
            }
            prev => {
                let from = prev.map_or(seq.saturating_sub(WINDOW - 1), |h| h + 1);
                // from <= seq: either seq > h, or there was no h.
                self.clear_range(from, seq);
                let (w, m) = Self::bit(seq);
                self.seen[w] |= m;
                self.highest = Some(seq);
                self.unique += 1;
                Arrival::InOrder
            }
        };
        self.jitter(sent_ns, recv_ns);
        arrival
    }

    fn jitter(&mut self, sent_ns: u64, recv_ns: u64) {
        let (new_send, new_recv) = self
            .last_stamps
            .map_or((true, true), |(s, r)| (s != sent_ns, r != recv_ns));
        self.send_times += u64::from(new_send);
        self.recv_times += u64::from(new_recv);
        self.last_stamps = Some((sent_ns, recv_ns));
        // Transit differences only: the two clocks' offset cancels out. Wrapping keeps an
        // absurd clock pair from panicking; the difference of two wrapped values is exact.
        let transit = recv_ns.wrapping_sub(sent_ns) as i64;
        match self.last_sample {
            Some((s, r, _)) if s == sent_ns || r == recv_ns => return,
            Some((_, _, prev)) => {
                let d = transit.wrapping_sub(prev).unsigned_abs();
                // J16 += |D| - J16/16  (RFC 3550 A.8, with J kept as 16·J).
                self.jitter16 = self.jitter16.saturating_add(d) - self.jitter16 / 16;
                self.jitter_samples += 1;
            }
            None => {}
        }
        self.last_sample = Some((sent_ns, recv_ns, transit));
    }

    /// Jitter samples so far: transit differences between datagrams with distinct send and
    /// receive times.
    pub fn jitter_samples(&self) -> u64 {
        self.jitter_samples
    }

    /// Distinct send times seen (consecutive arrivals with the same stamp count once).
    pub fn send_times(&self) -> u64 {
        self.send_times
    }

    /// Distinct receive times seen (consecutive arrivals with the same stamp count once).
    pub fn recv_times(&self) -> u64 {
        self.recv_times
    }

    /// Unique datagrams received.
    pub fn unique(&self) -> u64 {
        self.unique
    }

    /// Duplicates received.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Datagrams that arrived with a sequence number below the highest seen (RFC 4737).
    pub fn reordered(&self) -> u64 {
        self.reordered
    }

    /// The highest sequence number seen.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// Current jitter in nanoseconds.
    pub fn jitter_ns(&self) -> u64 {
        self.jitter16 / 16
    }

    /// Loss given the number of datagrams the sender sent; without that count (sender gone),
    /// the highest sequence number + 1 stands in for it.
    pub fn lost(&self, sent: Option<u64>) -> u64 {
        let expected = sent.unwrap_or_else(|| self.highest.map_or(0, |h| h.saturating_add(1)));
        expected.saturating_sub(self.unique)
    }
}

/// Counts per reporting interval: bytes and packets since the last [`Interval::take`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Interval {
    /// Bytes so far in this interval.
    pub bytes: u64,
    /// Packets so far in this interval.
    pub packets: u64,
}

impl Interval {
    /// Returns the counts and starts a new interval.
    pub fn take(&mut self) -> Self {
        std::mem::take(self)
    }
}

/// Bits per second for `bytes` over `ns` nanoseconds; 0 when no time passed (never NaN/inf).
pub fn bits_per_second(bytes: u64, ns: u64) -> f64 {
    if ns == 0 {
        0.0
    } else {
        bytes as f64 * 8.0 * 1e9 / ns as f64
    }
}

/// Events per second; 0 when no time passed.
pub fn per_second(count: u64, ns: u64) -> f64 {
    if ns == 0 {
        0.0
    } else {
        count as f64 * 1e9 / ns as f64
    }
}

/// `part` as a percentage of `whole`; 0 when `whole` is 0.
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(seqs: &[u64]) -> SeqTracker {
        let mut t = SeqTracker::new();
        for (i, &s) in seqs.iter().enumerate() {
            t.record(s, 0, i as u64 * 1000);
        }
        t
    }

    #[test]
    fn in_order() {
        let t = feed(&[0, 1, 2, 3, 4]);
        assert_eq!((t.unique(), t.duplicates(), t.reordered()), (5, 0, 0));
        assert_eq!(t.lost(Some(5)), 0);
        assert_eq!(t.lost(None), 0);
    }

    #[test]
    fn gaps_are_loss_not_reordering() {
        let t = feed(&[0, 1, 4, 5, 9]);
        assert_eq!((t.unique(), t.duplicates(), t.reordered()), (5, 0, 0));
        assert_eq!(t.lost(Some(10)), 5);
        assert_eq!(
            t.lost(Some(12)),
            7,
            "tail loss counted with the sender's count"
        );
        assert_eq!(t.lost(None), 5);
    }

    #[test]
    fn duplicates() {
        let t = feed(&[0, 1, 1, 2, 0, 2, 2]);
        assert_eq!((t.unique(), t.duplicates(), t.reordered()), (3, 4, 0));
        assert_eq!(t.lost(Some(3)), 0);
    }

    #[test]
    fn reordering_rfc4737() {
        // 3 arrives before 1 and 2: 1 and 2 are reordered (below the highest, 3), 3 is not.
        let t = feed(&[0, 3, 1, 2, 4]);
        assert_eq!((t.unique(), t.duplicates(), t.reordered()), (5, 0, 2));
        // A reordered datagram seen again is a duplicate, not reordered twice.
        let t = feed(&[0, 2, 1, 1]);
        assert_eq!((t.unique(), t.duplicates(), t.reordered()), (3, 1, 1));
        assert_eq!(t.lost(Some(3)), 0);
    }

    #[test]
    fn jumps_beyond_the_window() {
        let far = 3 * WINDOW + 17;
        let t = feed(&[0, far, 1, far - 5, far]);
        assert_eq!(t.highest(), Some(far));
        assert_eq!(t.unique(), 4, "1 is older than the window: counted unique");
        assert_eq!(t.reordered(), 2);
        assert_eq!(t.duplicates(), 1);
        assert_eq!(t.lost(Some(far + 1)), far + 1 - 4);
    }

    #[test]
    fn wrap_free_u64() {
        let top = u64::MAX - 2;
        let t = feed(&[top, top + 1, top + 2, top + 1]);
        assert_eq!((t.unique(), t.duplicates(), t.reordered()), (3, 1, 0));
        assert_eq!(t.highest(), Some(u64::MAX));
        assert_eq!(t.lost(Some(3)), 0);
        // Without the sender's count, highest + 1 saturates instead of overflowing.
        assert_eq!(t.lost(None), u64::MAX - 3);
        assert_eq!(t.lost(Some(2)), 0, "never negative");
    }

    #[test]
    fn window_bits_reset_on_advance() {
        // After advancing a whole window, an old slot's number is new again.
        let t = feed(&[5, 5 + WINDOW, 5 + 2 * WINDOW - 1]);
        assert_eq!((t.unique(), t.duplicates()), (3, 0));
        let t = feed(&[0, 70, 64, 1]);
        assert_eq!((t.unique(), t.duplicates(), t.reordered()), (4, 0, 2));
    }

    #[test]
    fn jitter_rfc3550() {
        let mut t = SeqTracker::new();
        // Constant transit: no jitter.
        for i in 0..10 {
            t.record(i, i * 1000, i * 1000 + 500);
        }
        assert_eq!(t.jitter_ns(), 0);
        // One arrival 1600 ns late: D = 1600, J = 1600/16 = 100.
        t.record(10, 10_000, 10_000 + 500 + 1600);
        assert_eq!(t.jitter_ns(), 100);
        // Back to normal: D = 1600 again, J = 100 + (1600 - 100)/16 = 193.75.
        t.record(11, 11_000, 11_000 + 500);
        assert_eq!(t.jitter_ns(), 193);
    }

    #[test]
    fn shared_timestamps_are_not_jitter_samples() {
        let mut t = SeqTracker::new();
        // Two send batches of 4 datagrams each; all 8 arrive in one GRO skb: no sample.
        for i in 0..8 {
            t.record(i, 1000 * (i / 4), 50_000);
        }
        assert_eq!((t.jitter_samples(), t.jitter_ns()), (0, 0));
        assert_eq!((t.send_times(), t.recv_times()), (2, 1));
        // Distinct receive times, but one send time per batch of 4: one sample per batch.
        let mut t = SeqTracker::new();
        for i in 0..8u64 {
            t.record(i, 1000 * (i / 4), 10_000 + 300 * i);
        }
        assert_eq!(t.jitter_samples(), 1, "batch leaders 0 and 4 only");
        // D = (11200 - 10000) - (1000 - 0) = 200: J = 200/16.
        assert_eq!(t.jitter_ns(), 12);
        assert_eq!((t.send_times(), t.recv_times()), (2, 8));
    }

    #[test]
    fn rates_never_nan() {
        assert_eq!(bits_per_second(100, 0), 0.0);
        assert_eq!(bits_per_second(125, 1_000_000_000), 1000.0);
        assert_eq!(per_second(5, 0), 0.0);
        assert_eq!(percent(1, 0), 0.0);
        assert_eq!(percent(1, 4), 25.0);
    }
}
