//! Claim 5: start the receiver first — a UDP sender gets no error even if nobody has the port
//! open, and what was sent before the receiver bound is lost.
//!
//! Observed on a private loopback: an unconnected sender sending three times to a closed port
//! (after the ICMP port unreachable came back); a datagram sent before the receiver binds and
//! one sent after (once the later one is received, a nonblocking drain tells whether the earlier
//! one was kept); a connected sender to a closed port, whose ICMP error turns into ECONNREFUSED.

use serde::Serialize;

use super::article::{NO_ERROR_CLOSED_PORT, RECEIVER_FIRST};
use super::closed_port::{ClosedPortSends, Sender, closed_port, closed_port_sends};
use super::marker::read_through;
use super::observe::{Got, Res, Trial, res, show_res, with_facts};
use super::{Evidence, Experiment, Host, Lab, Part};

/// The experiment of claim 5.
pub(crate) struct ReceiverFirst;

const A: &str = "An unconnected UDP sender gets no error even if nobody has the port open";
const B: &str = "What is sent before the receiver binds is lost: start the receiver first";
const C: &str = "A connected UDP sender gets no error either when nobody has the port open";

/// Datagrams sent around the receiver's bind().
#[derive(Debug, Clone, Serialize)]
struct EarlyLate {
    /// The port, closed at first.
    port: u16,
    /// sendto("early") before the receiver bound.
    early_send: Res<usize>,
    /// sendto("late") after it bound.
    late_send: Res<usize>,
    /// What the receiver got, in order, until its queue was empty.
    received: Vec<String>,
    /// The errno that ended the nonblocking drain (EAGAIN: nothing more queued).
    drain_end: String,
    #[serde(skip)]
    ev: Evidence,
}

#[derive(Debug, Clone)]
struct Observation {
    unconnected: ClosedPortSends,
    /// The same unconnected sender with IP_RECVERR set: an aside on what ICMP errors become.
    recverr: ClosedPortSends,
    early_late: EarlyLate,
    connected: ClosedPortSends,
}

impl Experiment for ReceiverFirst {
    fn claim(&self) -> u8 {
        5
    }
    fn title(&self) -> &'static str {
        "Start the receiver first"
    }
    fn article(&self) -> &'static str {
        "Start the receiver first: a UDP sender gets no error even if nobody has the port open, and what is sent before the receiver binds is lost"
    }
    fn explanation(&self) -> &'static str {
        "udp(7), RFC 768: UDP keeps no state for a destination, so a datagram for a port nobody has open is dropped by the receiving host (counted in Udp.NoPorts) and answered with ICMP port unreachable (RFC 1122 §3.2.2.1); nothing queues it for a later bind(2). RFC 1122 §4.1.3.3: UDP must pass ICMP errors to the application. udp(7) \"Error handling\" says Linux passes fatal errors \"even when the socket is not connected\", but the kernel's ICMP handler (__udp4_lib_err) sets the socket error only for a connected socket or one with IP_RECVERR (ip(7)); it becomes ECONNREFUSED on the next send or recv, once."
    }
    fn run(&self, lab: &Lab) -> anyhow::Result<Vec<Part>> {
        let host = lab.loopback("c05")?;
        Ok(judge(&Observation {
            unconnected: closed_port_sends(&host, Sender::Unconnected)?,
            recverr: closed_port_sends(&host, Sender::UnconnectedRecvErr)?,
            early_late: early_late(&host)?,
            connected: closed_port_sends(&host, Sender::Connected)?,
        }))
    }
}

fn early_late(host: &Host<'_>) -> anyhow::Result<EarlyLate> {
    let port = closed_port(host)?;
    let t = Trial::new();
    let tx = t.udp(host)?;
    let early_send = res(tx.send_to(b"early", host.lo(port)));
    let rx = t.udp_bound(host, host.lo(port))?;
    let late_send = res(tx.send_to(b"late", host.lo(port)));
    // "late" is the readiness signal: once it is in, "early" would have been queued before it.
    let (got, drain_end) = read_through(&rx, b"late");
    let received = got.iter().map(Got::text).collect();
    Ok(EarlyLate {
        port,
        early_send,
        late_send,
        received,
        drain_end,
        ev: t.evidence(host),
    })
}

fn closed_port_part(id: &str, statement: &str, r: &ClosedPortSends) -> Part {
    Part::judged(
        id,
        statement,
        format!(
            "to a closed port ({}ICMP came back before the 2nd send): {}",
            if r.icmp_back { "" } else { "no " },
            r.line()
        ),
        r.sends.iter().all(Result::is_ok)
            && r.recv_after.as_ref().err().is_some_and(|e| e == "EAGAIN"),
        with_facts(&r.ev, r),
    )
}

fn judge(o: &Observation) -> Vec<Part> {
    let e = &o.early_late;
    let late_in = e.received.iter().any(|r| r == "late");
    let b = if late_in && e.drain_end == "EAGAIN" {
        Part::judged(
            "b",
            B,
            format!(
                "sendto(\"early\") before bind returned {}, sendto(\"late\") after returned {}; the receiver got {:?}, then {}",
                show_res(&e.early_send),
                show_res(&e.late_send),
                e.received,
                e.drain_end
            ),
            !e.received.iter().any(|r| r == "early"),
            with_facts(&e.ev, e),
        )
    } else {
        Part::not_run(
            "b",
            B,
            "inconclusive: the datagram sent after bind() did not arrive or the queue did not drain",
        )
    };
    let mut a = closed_port_part("a", A, &o.unconnected);
    a.observed.push_str(&format!(
        " (aside, with IP_RECVERR set: {})",
        o.recverr.line()
    ));
    a.evidence.fact("with_ip_recverr", &o.recverr);
    a.evidence.trace.extend(o.recverr.ev.trace.iter().cloned());
    vec![
        a.votes_on(NO_ERROR_CLOSED_PORT),
        b.votes_on(RECEIVER_FIRST),
        closed_port_part("c", C, &o.connected).votes_on(NO_ERROR_CLOSED_PORT),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::Verdict;
    use crate::lab::closed_port::tests::recorded;
    use crate::lab::testing::verdicts;

    fn linux_like() -> Observation {
        Observation {
            unconnected: recorded(false, &[Ok(4), Ok(4), Ok(4)], "EAGAIN"),
            recverr: recorded(false, &[Ok(4), Err("ECONNREFUSED".into()), Ok(4)], "EAGAIN"),
            early_late: EarlyLate {
                port: 9999,
                early_send: Ok(5),
                late_send: Ok(4),
                received: vec!["late".into()],
                drain_end: "EAGAIN".into(),
                ev: Evidence::default(),
            },
            connected: recorded(
                true,
                &[Ok(4), Err("ECONNREFUSED".into()), Ok(4)],
                "ECONNREFUSED",
            ),
        }
    }

    #[test]
    fn linux_like_observation() {
        use Verdict::*;
        assert_eq!(
            verdicts(judge(&linux_like())),
            vec![Confirmed, Confirmed, Refuted]
        );
    }

    #[test]
    fn rules_go_both_ways() {
        let mut o = linux_like();
        o.unconnected = recorded(false, &[Ok(4), Err("ECONNREFUSED".into()), Ok(4)], "EAGAIN");
        o.early_late.received = vec!["early".into(), "late".into()];
        o.connected = recorded(true, &[Ok(4), Ok(4), Ok(4)], "EAGAIN");
        assert_eq!(
            verdicts(judge(&o)),
            vec![Verdict::Refuted, Verdict::Refuted, Verdict::Confirmed]
        );
        // If the datagram sent after bind never arrived, nothing can be said about the earlier.
        o.early_late.received.clear();
        o.early_late.drain_end = "EAGAIN".into();
        assert!(matches!(verdicts(judge(&o))[1], Verdict::NotRun(_)));
    }
}
