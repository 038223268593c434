//! Observing that a datagram did *not* arrive, without sleeping: after the datagrams under test,
//! the sender sends a unicast *marker* that the receiver (or a witness socket next to it) is sure
//! to get. Packets from one sending thread pinned to one CPU pass the same per-CPU backlog
//! queue in order (lo and veth both hand packets to netif_rx), so once the marker is in, every
//! datagram sent before it has been delivered or dropped; a non-blocking drain then reads what
//! came. Used by the UDP broadcast experiments (claims 7 and 8); claims 2 and 5 use a datagram
//! of their own as the marker ([`read_through`]).

use std::fmt::Display;
use std::net::SocketAddr;

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

use super::Family;
use super::observe::{Got, MAX_READS, drain, recv};
use crate::sock::{Proto, Sock, Step};
use crate::trace::Recorder;

/// The marker's payload.
pub(crate) const MARKER: &[u8] = b"marker";

/// Pins the calling thread to the first CPU it may run on (sched_setaffinity(2)), so packets it
/// sends are queued to one CPU's backlog in order. Failure only weakens ordering; ignored.
pub(crate) fn pin_thread() {
    let Ok(allowed) = sched_getaffinity(Pid::from_raw(0)) else {
        return;
    };
    let Some(cpu) = (0..CpuSet::count()).find(|&c| allowed.is_set(c).unwrap_or(false)) else {
        return;
    };
    let mut one = CpuSet::new();
    if one.set(cpu).is_ok() {
        let _ = sched_setaffinity(Pid::from_raw(0), &one);
    }
}

/// A fresh unbound UDP socket (of the family of the first of `to`) sends the marker to each
/// of `to` (call on the pinned thread that sent the datagrams under test).
pub(crate) fn send(rec: &Recorder, to: &[SocketAddr]) -> Step<()> {
    let family = to.first().map_or(Family::Ipv4, Family::of);
    let s = Sock::open(&family.lo(0), Proto::Udp, rec)?;
    for &addr in to {
        s.send_to(MARKER, addr)?;
    }
    Ok(())
}

/// Reads datagrams (blocking, bounded by the socket's read timeout) until one with payload
/// `last` arrives, then drains what is left with MSG_DONTWAIT. Returns every datagram read, in
/// order and `last` included, and the errno that ended the reading (`EAGAIN` once the queue is
/// empty, or once a blocking read timed out before `last` came).
pub(crate) fn read_through(sock: &Sock, last: &[u8]) -> (Vec<Got>, String) {
    let mut got = Vec::new();
    for _ in 0..MAX_READS {
        match recv(sock, 0) {
            Ok(g) => {
                let done = g.payload == last;
                got.push(g);
                if done {
                    let (more, end) = drain(sock);
                    got.extend(more);
                    return (got, end);
                }
            }
            Err(e) => return (got, e),
        }
    }
    (got, format!("more than {MAX_READS} datagrams"))
}

/// Every datagram but the marker that reached `sock` up to the marker (and any queued after
/// it); an error if the marker (sent to `to`) did not arrive, since absence of the others then
/// proves nothing.
pub(crate) fn read_until_marker(sock: &Sock, to: impl Display) -> anyhow::Result<Vec<Got>> {
    let (mut got, _) = read_through(sock, MARKER);
    anyhow::ensure!(
        got.iter().any(|g| g.payload == MARKER),
        "the marker to {to} did not arrive"
    );
    got.retain(|g| g.payload != MARKER);
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::observe::{res, udp_bound};
    use crate::lab::testing::lo;

    #[test]
    fn marker_bounds_the_wait_and_drain_is_bounded() {
        let rec = Recorder::off();
        let rx = udp_bound(&rec, lo(0)).unwrap();
        let to = rx.local_addr().unwrap();
        let tx = Sock::open(&to, Proto::Udp, &rec).unwrap();
        tx.send_to(b"one", to).unwrap();
        send(&rec, &[to]).unwrap();
        tx.send_to(b"late", to).unwrap();
        let got = read_until_marker(&rx, to).unwrap();
        let payloads: Vec<&[u8]> = got.iter().map(|g| g.payload.as_slice()).collect();
        assert_eq!(payloads, [b"one".as_slice(), b"late".as_slice()]);
        assert!(drain(&rx).0.is_empty());
        assert_eq!(res(rx.bind(to)).err().as_deref(), Some("EINVAL"));
    }

    #[test]
    fn read_through_keeps_the_last_datagram_and_says_how_it_ended() {
        let rec = Recorder::off();
        let rx = udp_bound(&rec, lo(0)).unwrap();
        let to = rx.local_addr().unwrap();
        let tx = Sock::open(&to, Proto::Udp, &rec).unwrap();
        for p in [b"a".as_slice(), b"last", b"b"] {
            tx.send_to(p, to).unwrap();
        }
        let (got, end) = read_through(&rx, b"last");
        let texts: Vec<String> = got.iter().map(Got::text).collect();
        assert_eq!(
            (texts, end.as_str()),
            (vec!["a".into(), "last".into(), "b".into()], "EAGAIN")
        );
    }
}
