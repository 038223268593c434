//! Claim 10: SO_RCVBUF and SO_SNDBUF can be set, but their size is not all payload. Each size
//! is set with setsockopt and read back with getsockopt (socket(7): Linux doubles the value
//! and caps it at net.core.rmem_max / wmem_max); then a UDP receiver that does not read is
//! filled with datagrams of 1, 64 and 1472 bytes until its socket counts a drop
//! (getsockopt SO_MEMINFO, the `skmem` of `ss -m`), showing how many fit and what each one is
//! charged (the skb's truesize, not its payload).

use std::os::fd::AsFd;

use serde::Serialize;

use super::article::{BUFFER_BOOKKEEPING, BUFFER_SETTABLE};
use super::observe::{Trial, udp_bound};
use super::{Evidence, Experiment, Family, Host, Lab, Part};
use crate::sock::options::Applied;
use crate::sock::{Proto, Sock, Step, StepError, sys};
use crate::trace::Recorder;

/// The experiment of claim 10.
pub struct BufferBookkeeping;

/// The receive buffer asked for in the fill runs (the kernel applies twice as much).
pub(crate) const FILL_RCVBUF: usize = 32 * 1024;
/// Payload sizes of the fill runs: tiny, small, and the largest that fits a 1500-byte MTU.
const PAYLOADS: [usize; 3] = [1, 64, 1472];
/// No fill run sends more datagrams than this.
const MAX_SENDS: u64 = 70_000;

/// A receive buffer filled with datagrams of one size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Fill {
    /// Payload bytes of each datagram.
    pub(crate) payload: usize,
    /// SO_RCVBUF as getsockopt reported it after the set.
    pub(crate) rcvbuf: usize,
    /// Datagrams sent (stopped at the first drop the socket counted, or at the bound).
    pub(crate) sent: u64,
    /// Bytes the full queue was charged (SO_MEMINFO rmem_alloc).
    pub(crate) charged_bytes: u32,
    /// Datagrams read back afterwards.
    pub(crate) received: u64,
    /// Drops the socket counted (SO_MEMINFO drops).
    pub(crate) drops: u32,
    /// The drop count SO_RXQ_OVFL attached to a datagram sent after the queue was drained.
    pub(crate) rxq_ovfl: Option<u32>,
}

impl Fill {
    /// Payload bytes that were queued at once.
    pub(crate) fn payload_bytes(&self) -> u64 {
        self.received * self.payload as u64
    }

    /// One line: `1472 B: 23 fit (33856 B payload of a 65536 B buffer, 2.8 KB charged each)`.
    pub(crate) fn line(&self) -> String {
        let each = u64::from(self.charged_bytes)
            .checked_div(self.received)
            .unwrap_or(0);
        format!(
            "{} B datagrams: {} fit ({} B of payload in a {} B buffer, {} B charged each)",
            self.payload,
            self.received,
            self.payload_bytes(),
            self.rcvbuf,
            each
        )
    }
}

/// Makes a UDP receiver with SO_RCVBUF `ask` and SO_RXQ_OVFL, sends `payload`-byte datagrams
/// from another socket without reading until the receiver counts a drop (at most
/// rcvbuf/payload + 64 of them, so a kernel that charged only payload would still overflow),
/// then reads them all back and sends one more whose SO_RXQ_OVFL count says how many were
/// dropped. Only the setup and the last datagram are traced. Call inside the host; the
/// sockets are of `family`, on its loopback address.
pub(crate) fn fill(payload: usize, ask: usize, family: Family, rec: &Recorder) -> Step<Fill> {
    let lo = |port| family.lo(port);
    let rx = udp_bound(rec, lo(0))?;
    let rcvbuf = rx.set_recv_buffer_size(ask)?.applied;
    rx.set_rxq_ovfl(true)?;
    let to = rx.local_addr().unwrap_or(lo(0));
    let tx = Sock::open(&to, Proto::Udp, &Recorder::off())?;
    let meminfo = || {
        sys::mem_info(rx.as_fd()).map_err(|source| StepError {
            call: "getsockopt",
            target: "SOL_SOCKET, SO_MEMINFO".into(),
            source,
        })
    };
    let limit = (rcvbuf / payload.max(1)) as u64 + 64;
    let data = vec![b'x'; payload];
    let mut f = Fill {
        payload,
        rcvbuf,
        ..Fill::default()
    };
    while f.sent < limit.min(MAX_SENDS) {
        tx.send_to(&data, to)?;
        f.sent += 1;
        if meminfo()?.drops > 0 {
            break;
        }
    }
    let full = meminfo()?;
    (f.charged_bytes, f.drops) = (full.rmem_alloc, full.drops);
    let mut buf = vec![0u8; payload.max(1)];
    while f.received < f.sent
        && sys::recv_datagram(rx.as_fd(), &mut buf, libc::MSG_DONTWAIT).is_ok()
    {
        f.received += 1;
    }
    tx.send_to(b"after", to)?;
    f.rxq_ovfl = rx.recv_datagram(&mut buf, 0)?.dropped;
    Ok(f)
}

/// What was observed.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Observation {
    /// net.core.rmem_max and wmem_max.
    pub(crate) rmem_max: usize,
    /// net.core.wmem_max.
    pub(crate) wmem_max: usize,
    /// SO_RCVBUF and SO_SNDBUF of a fresh UDP socket.
    pub(crate) defaults: (usize, usize),
    /// Each size asked, as applied (SO_RCVBUF and SO_SNDBUF, each on a fresh socket).
    pub(crate) applied: Vec<Applied>,
    /// The fill runs.
    pub(crate) fills: Vec<Fill>,
    /// Evidence of the set/get parts and of the fill part.
    pub(crate) ev: [Evidence; 2],
}

impl Experiment for BufferBookkeeping {
    fn claim(&self) -> u8 {
        10
    }
    fn title(&self) -> &'static str {
        "SO_RCVBUF/SO_SNDBUF include bookkeeping"
    }
    fn article(&self) -> &'static str {
        "SO_RCVBUF and SO_SNDBUF can be set, but the size is not all payload: it includes bookkeeping."
    }
    fn explanation(&self) -> &'static str {
        "socket(7) SO_RCVBUF/SO_SNDBUF: \"the kernel doubles this value (to allow space for bookkeeping overhead) when it is set using setsockopt, and this doubled value is returned by getsockopt\"; the maximum is net.core.rmem_max/wmem_max, the minimum 2304/4608 bytes. What the buffer limits is the memory charged per packet (the skb's truesize: payload, headers and the kernel's own structures), which sock_diag(7) reports as SK_MEMINFO_RMEM_ALLOC; a datagram that would pass the limit is dropped (udp(7), Udp RcvbufErrors)."
    }
    fn run(&self, lab: &Lab) -> anyhow::Result<Vec<Part>> {
        let host = lab.loopback("c10")?;
        Ok(judge(&observe(&host)?))
    }
}

fn sysctl(name: &str) -> anyhow::Result<usize> {
    let path = format!("/proc/sys/net/core/{name}");
    let text = std::fs::read_to_string(&path)?;
    Ok(text.trim().parse()?)
}

fn observe(host: &Host) -> anyhow::Result<Observation> {
    let mut o = Observation {
        rmem_max: sysctl("rmem_max")?,
        wmem_max: sysctl("wmem_max")?,
        ..Observation::default()
    };
    let (rmem_max, wmem_max) = (o.rmem_max, o.wmem_max);
    let [ev_set, ev_fill] = &mut o.ev;
    let family = host.family();
    let (defaults, applied, fills) = host.run(|| -> Step<_> {
        let t = Trial::new();
        let fresh = || Sock::open(&family.lo(0), Proto::Udp, t.rec());
        let s = fresh()?;
        let defaults = (s.recv_buffer_size()?, s.send_buffer_size()?);
        let mut applied = Vec::new();
        for ask in [1, FILL_RCVBUF, 2 * rmem_max] {
            applied.push(fresh()?.set_recv_buffer_size(ask)?);
        }
        for ask in [1, FILL_RCVBUF, 2 * wmem_max] {
            applied.push(fresh()?.set_send_buffer_size(ask)?);
        }
        ev_set.trace = t.take();
        let fills = PAYLOADS
            .iter()
            .map(|&p| fill(p, FILL_RCVBUF, family, t.rec()))
            .collect::<Step<Vec<_>>>()?;
        ev_fill.trace = t.take();
        Ok((defaults, applied, fills))
    })??;
    (o.defaults, o.applied, o.fills) = (defaults, applied, fills);
    Ok(o)
}

fn judge(o: &Observation) -> Vec<Part> {
    let [mut ev_set, mut ev_fill] = o.ev.clone();
    ev_set
        .fact("rmem_max", o.rmem_max)
        .fact("wmem_max", o.wmem_max)
        .fact("default_rcvbuf", o.defaults.0)
        .fact("default_sndbuf", o.defaults.1)
        .fact("applied", &o.applied);
    ev_fill.fact("fills", &o.fills);
    let default_of = |a: &Applied| match a.option {
        "SO_RCVBUF" => o.defaults.0,
        _ => o.defaults.1,
    };
    // Sizes inside [minimum, max]: the ones a program would normally ask for.
    let ordinary: Vec<&Applied> = o
        .applied
        .iter()
        .filter(|a| a.asked == FILL_RCVBUF)
        .collect();
    let settable = !ordinary.is_empty()
        && ordinary
            .iter()
            .all(|a| a.applied != default_of(a) && a.applied >= a.asked);
    let grown = !ordinary.is_empty() && ordinary.iter().all(|a| a.applied > a.asked);
    let applied_line = o
        .applied
        .iter()
        .map(|a| format!("{} {} → {}", a.option, a.asked, a.applied))
        .collect::<Vec<_>>()
        .join(", ");
    let filled = !o.fills.is_empty() && o.fills.iter().all(|f| f.drops > 0);
    let below = filled && o.fills.iter().all(|f| f.payload_bytes() < f.rcvbuf as u64);
    let fill_line = o
        .fills
        .iter()
        .map(Fill::line)
        .collect::<Vec<_>>()
        .join("; ");
    vec![
        Part::judged(
            "a",
            "SO_RCVBUF and SO_SNDBUF can be set",
            format!(
                "defaults {}/{}; asked {FILL_RCVBUF}: {}",
                o.defaults.0,
                o.defaults.1,
                ordinary
                    .iter()
                    .map(|a| format!("{} reads back {}", a.option, a.applied))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            settable,
            ev_set.clone(),
        )
        .votes_on(BUFFER_SETTABLE),
        Part::judged(
            "b",
            "the size set is not the payload room: getsockopt returns more than was asked, the rest is for bookkeeping",
            format!(
                "getsockopt after setsockopt: {applied_line} (rmem_max {}, wmem_max {})",
                o.rmem_max, o.wmem_max
            ),
            grown,
            ev_set,
        )
        .votes_on(BUFFER_BOOKKEEPING),
        Part::judged(
            "c",
            "a full receive buffer holds fewer payload bytes than its size (bookkeeping takes the rest)",
            if filled {
                fill_line
            } else {
                format!("the buffer never overflowed: {fill_line}")
            },
            below,
            ev_fill,
        )
        .votes_on(BUFFER_BOOKKEEPING),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::Verdict;
    use crate::lab::testing::verdicts;

    fn applied(option: &'static str, asked: usize, applied: usize) -> Applied {
        Applied {
            option,
            asked,
            applied,
        }
    }

    fn fill_of(payload: usize, received: u64, drops: u32) -> Fill {
        Fill {
            payload,
            rcvbuf: 65536,
            sent: received + u64::from(drops),
            charged_bytes: 60000,
            received,
            drops,
            rxq_ovfl: Some(drops),
        }
    }

    fn linux_like() -> Observation {
        Observation {
            rmem_max: 4 << 20,
            wmem_max: 4 << 20,
            defaults: (212992, 212992),
            applied: vec![
                applied("SO_RCVBUF", 1, 2304),
                applied("SO_RCVBUF", FILL_RCVBUF, 65536),
                applied("SO_SNDBUF", FILL_RCVBUF, 65536),
            ],
            fills: vec![fill_of(1, 85, 1), fill_of(1472, 23, 1)],
            ev: Default::default(),
        }
    }

    #[test]
    fn doubling_and_truesize_confirm() {
        assert_eq!(verdicts(judge(&linux_like())), vec![Verdict::Confirmed; 3]);
    }

    #[test]
    fn payload_only_accounting_refutes() {
        let mut o = linux_like();
        // A kernel that stored exactly what was asked, and charged payload only.
        o.applied = vec![
            applied("SO_RCVBUF", FILL_RCVBUF, FILL_RCVBUF),
            applied("SO_SNDBUF", FILL_RCVBUF, FILL_RCVBUF),
        ];
        o.fills = vec![fill_of(1, 65536, 1), fill_of(1472, 45, 1)];
        assert_eq!(
            verdicts(judge(&o)),
            vec![Verdict::Confirmed, Verdict::Refuted, Verdict::Refuted]
        );
    }

    #[test]
    fn an_ignored_setsockopt_refutes_settable() {
        let mut o = linux_like();
        o.applied = vec![applied("SO_RCVBUF", FILL_RCVBUF, 212992)];
        assert_eq!(verdicts(judge(&o))[0], Verdict::Refuted);
    }

    #[test]
    fn a_buffer_that_never_overflowed_is_not_evidence() {
        let mut o = linux_like();
        o.fills = vec![fill_of(1, 85, 0)];
        assert_eq!(verdicts(judge(&o))[2], Verdict::Refuted);
    }
}
