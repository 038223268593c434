//! Where UDP loss happened. Each side of a test snapshots its namespace's drop counters before
//! and after the data phase ([`HostSnapshot`]) and sends the deltas ([`HostCounters`]) in its
//! report; [`attribute`] then splits a stream's loss into four places:
//!
//! - **sender**: Udp.SndbufErrors (udp_send_skb(): without IP_RECVERR a qdisc drop, e.g. by a
//!   full `tbf`, is counted here and not returned as ENOBUFS) × the sender's datagrams per skb
//!   (its GSO segment count), or the qdiscs' own drop counts (`tc -s qdisc`) when larger (a
//!   `tbf` segments GSO buffers and drops single datagrams, which SndbufErrors misses), plus
//!   the devices' `tx_dropped` × datagrams per skb;
//! - **receiving socket**: SO_RXQ_OVFL, the socket's drop counter (receive buffer full);
//! - **receiving host**: Udp.InErrors beyond the socket's drops (InErrors includes
//!   RcvbufErrors and InCsumErrors, and the socket's overflows are among them) plus the
//!   devices' `rx_dropped` (e.g. a full backlog), in skbs × datagrams per received skb;
//! - **path**: what is left — datagrams no counter on either host saw go (nftables, a lossy
//!   link, a router).
//!
//! The counters are namespace-wide (/proc/net/snmp, /proc/net/snmp6, /sys/class/net): other
//! traffic in the same namespace, or the other direction of a `--bidir` test, adds to them.
//! Each share is therefore capped so that the four add up to the loss the receiver counted.

use serde::{Deserialize, Serialize};

use crate::os::counters::Snapshot;

/// Drop counters of one namespace over a test (deltas), as one side saw them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCounters {
    /// Udp.SndbufErrors + Udp6.SndbufErrors: skbs dropped on send (socket buffer or qdisc).
    pub udp_sndbuf_errors: u64,
    /// Udp.RcvbufErrors + Udp6.RcvbufErrors: skbs dropped on a full receive buffer.
    pub udp_rcvbuf_errors: u64,
    /// Udp.InErrors + Udp6.InErrors: skbs UDP dropped on receive, for any reason.
    pub udp_in_errors: u64,
    /// Udp.InCsumErrors + Udp6.InCsumErrors: skbs with a bad UDP checksum (part of InErrors).
    pub udp_in_csum_errors: u64,
    /// Sum of `tx_dropped` of every device in /sys/class/net: skbs a device dropped on send.
    pub dev_tx_dropped: u64,
    /// Sum of `rx_dropped` of every device: skbs dropped on receive before any socket.
    pub dev_rx_dropped: u64,
    /// Sum of the qdiscs' `dropped` counts (`tc -s qdisc show`; 0 without `tc`): packets as
    /// each qdisc counts them (a qdisc that segments GSO buffers, like `tbf`, counts
    /// datagrams; others count whole buffers).
    #[serde(default)]
    pub qdisc_dropped: u64,
}

/// The counters behind [`HostCounters`] at one moment.
#[derive(Debug, Clone, Default)]
pub struct HostSnapshot {
    snmp: Snapshot,
    tx_dropped: u64,
    rx_dropped: u64,
    qdisc_dropped: u64,
}

impl HostSnapshot {
    /// Reads the calling thread's namespace counters (a missing file reads as zeros).
    pub fn read() -> Self {
        let dev = |name: &str| -> u64 {
            let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
                return 0;
            };
            dir.flatten()
                .filter_map(|e| {
                    std::fs::read_to_string(e.path().join("statistics").join(name)).ok()
                })
                .filter_map(|t| t.trim().parse::<u64>().ok())
                .sum()
        };
        Self {
            snmp: Snapshot::read().unwrap_or_default(),
            tx_dropped: dev("tx_dropped"),
            rx_dropped: dev("rx_dropped"),
            qdisc_dropped: qdisc_dropped(),
        }
    }

    /// What changed from `self` to `later` (counters never go back; a reset reads as 0).
    pub fn delta(&self, later: &Self) -> HostCounters {
        let d = |name: &str| -> u64 {
            [format!("Udp.{name}"), format!("Udp6.{name}")]
                .iter()
                .map(|k| (later.snmp.get(k) - self.snmp.get(k)).max(0) as u64)
                .sum()
        };
        HostCounters {
            udp_sndbuf_errors: d("SndbufErrors"),
            udp_rcvbuf_errors: d("RcvbufErrors"),
            udp_in_errors: d("InErrors"),
            udp_in_csum_errors: d("InCsumErrors"),
            dev_tx_dropped: later.tx_dropped.saturating_sub(self.tx_dropped),
            dev_rx_dropped: later.rx_dropped.saturating_sub(self.rx_dropped),
            qdisc_dropped: later.qdisc_dropped.saturating_sub(self.qdisc_dropped),
        }
    }
}

/// The sum of every `dropped N` in `tc -s qdisc show` (iproute2) of the calling process's
/// namespace; 0 when `tc` is missing or fails.
fn qdisc_dropped() -> u64 {
    let Ok(out) = std::process::Command::new("tc")
        .args(["-s", "qdisc", "show"])
        .stderr(std::process::Stdio::null())
        .output()
    else {
        return 0;
    };
    parse_qdisc_dropped(&String::from_utf8_lossy(&out.stdout))
}

/// Sums the `(dropped N,` fields of `tc -s qdisc show` output.
fn parse_qdisc_dropped(text: &str) -> u64 {
    text.split("dropped ")
        .skip(1)
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse::<u64>().ok())
        })
        .sum()
}

/// A UDP stream's loss split by where it happened, in datagrams; the four add up to the loss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossByPlace {
    /// Dropped on the sending host (Udp.SndbufErrors, qdisc, device tx_dropped).
    pub sender: u64,
    /// Dropped at the receiving socket (SO_RXQ_OVFL).
    pub socket: u64,
    /// Dropped by the receiving host's UDP layer or devices outside the socket.
    pub receiving_host: u64,
    /// Not seen by any counter on either host: lost on the way.
    pub path: u64,
    /// Some share was converted from skbs with a mean (GRO on the receiver).
    pub estimated: bool,
}

/// What [`attribute`] needs about one direction.
#[derive(Debug, Clone, Copy, Default)]
pub struct LossInputs {
    /// Datagrams the receiver counted as lost (sent − unique received).
    pub lost: u64,
    /// The sending side's counters.
    pub sender: Option<HostCounters>,
    /// Datagrams per skb the sender handed the kernel (GSO segments, else 1).
    pub datagrams_per_send_skb: u64,
    /// SO_RXQ_OVFL drops at the receiving sockets, skbs.
    pub socket_skbs: Option<u64>,
    /// The same in datagrams.
    pub socket_datagrams: Option<u64>,
    /// The receiving side's counters.
    pub receiver: Option<HostCounters>,
    /// Mean datagrams per received skb (1 without GRO).
    pub datagrams_per_recv_skb: f64,
    /// The socket share is an estimate (GRO).
    pub estimated: bool,
}

/// Splits `i.lost` by place: sender, socket, receiving host in that order (each capped by
/// what is left), the path gets the rest.
pub fn attribute(i: &LossInputs) -> LossByPlace {
    let mut left = i.lost;
    let mut take = |n: u64| {
        let t = n.min(left);
        left -= t;
        t
    };
    let per_send = i.datagrams_per_send_skb.max(1);
    // A qdisc drop of a whole buffer is in SndbufErrors too; a qdisc that segments GSO
    // buffers (tbf) and drops some segments only counts them itself: take the larger.
    let sender = take(i.sender.map_or(0, |c| {
        (c.udp_sndbuf_errors.saturating_mul(per_send)).max(c.qdisc_dropped)
            + c.dev_tx_dropped.saturating_mul(per_send)
    }));
    let socket = take(i.socket_datagrams.unwrap_or(0));
    let host_skbs = i.receiver.map_or(0, |c| {
        c.udp_in_errors.saturating_sub(i.socket_skbs.unwrap_or(0)) + c.dev_rx_dropped
    });
    let per_recv = i.datagrams_per_recv_skb.max(1.0);
    let receiving_host = take((host_skbs as f64 * per_recv).round() as u64);
    LossByPlace {
        sender,
        socket,
        receiving_host,
        path: left,
        estimated: i.estimated || (receiving_host > 0 && per_recv > 1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qdisc_drops_from_tc_output() {
        let text = "qdisc noqueue 0: dev lo root refcnt 2\n Sent 0 bytes 0 pkt (dropped 0, \
                    overlimits 0 requeues 0)\nqdisc tbf 8010: dev veth-a root refcnt 3 rate \
                    50Mbit burst 32Kb lat 5ms\n Sent 21896353 bytes 14535 pkt (dropped \
                    573905, overlimits 37998 requeues 0)\n backlog 0b 0p requeues 0\n";
        assert_eq!(parse_qdisc_dropped(text), 573905);
        assert_eq!(parse_qdisc_dropped(""), 0);
    }

    #[test]
    fn loss_splits_in_order_and_adds_up() {
        let c = |snd, inerr, rx| HostCounters {
            udp_sndbuf_errors: snd,
            udp_in_errors: inerr,
            dev_rx_dropped: rx,
            ..HostCounters::default()
        };
        let i = LossInputs {
            lost: 100,
            sender: Some(c(2, 0, 0)),
            datagrams_per_send_skb: 10,
            socket_skbs: Some(30),
            socket_datagrams: Some(30),
            receiver: Some(c(0, 35, 1)),
            datagrams_per_recv_skb: 1.0,
            estimated: false,
        };
        let l = attribute(&i);
        // 2 GSO skbs of 10 at the sender; 30 at the socket; 35 - 30 + 1 in the host; 44 left.
        assert_eq!(
            (l.sender, l.socket, l.receiving_host, l.path),
            (20, 30, 6, 44)
        );
        // Counters beyond the loss (other traffic) are capped: the shares still add up.
        let l = attribute(&LossInputs { lost: 25, ..i });
        assert_eq!(
            (l.sender, l.socket, l.receiving_host, l.path),
            (20, 5, 0, 0)
        );
        let l = attribute(&LossInputs {
            lost: 7,
            ..LossInputs::default()
        });
        assert_eq!(l.path, 7, "no counters: all on the path");
    }
}
