//! Observing that a datagram did *not* arrive, without sleeping: after the datagrams under test,
//! the sender sends a unicast *marker* that the receiver (or a witness socket next to it) is sure
//! to get. Packets from one sending thread pinned to one CPU pass the same per-CPU backlog
//! queue in order (lo and veth both hand packets to netif_rx), so once the marker is in, every
//! datagram sent before it has been delivered or dropped; a non-blocking drain then reads what
//! came. Used by the UDP broadcast experiments (claims 7 and 8).

use std::net::SocketAddr;
use std::time::Duration;

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

use crate::sock::{Datagram, Proto, Sock, Step};
use crate::trace::Recorder;

/// How long a receiver waits for a marker that must come (SO_RCVTIMEO).
pub const MARKER_TIMEOUT: Duration = Duration::from_secs(2);
/// Datagrams read per socket at most, so every loop is bounded.
const MAX_READS: usize = 16;

/// One datagram as read: what recvmsg(2) said and the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    /// The recvmsg result (source, destination from IP_PKTINFO, lengths).
    pub datagram: Datagram,
    /// The payload.
    pub payload: Vec<u8>,
}

/// Pins the calling thread to the first CPU it may run on (sched_setaffinity(2)), so packets it
/// sends are queued to one CPU's backlog in order. Failure only weakens ordering; ignored.
pub fn pin_thread() {
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

/// A new IPv4 UDP socket (socket(2)) reporting to `rec`.
pub fn udp4(rec: &Recorder) -> Step<Sock> {
    Sock::open(&SocketAddr::from(([0, 0, 0, 0], 0)), Proto::Udp, rec)
}

/// The errno name of a failed step (`EACCES`), or `None` if it succeeded.
pub fn errno_of<T>(r: &Step<T>) -> Option<String> {
    r.as_ref()
        .err()
        .map(|e| e.errno_name().unwrap_or_else(|| e.to_string()))
}

/// Reads datagrams (blocking, bounded by the socket's read timeout) until `marker` arrives,
/// then drains what is left with MSG_DONTWAIT. Returns everything but the marker, and whether
/// the marker came (if not, absence of other datagrams proves nothing).
pub fn read_until_marker(sock: &Sock, marker: &[u8]) -> (Vec<Got>, bool) {
    let mut got = Vec::new();
    let mut seen = false;
    for _ in 0..MAX_READS {
        let Some(g) = read_one(sock, 0) else { break };
        if g.payload == marker {
            seen = true;
            break;
        }
        got.push(g);
    }
    if seen {
        got.extend(drain(sock));
    }
    got.retain(|g| g.payload != marker);
    (got, seen)
}

/// Reads every datagram already queued on `sock` (MSG_DONTWAIT), at most a bounded number.
pub fn drain(sock: &Sock) -> Vec<Got> {
    (0..MAX_READS)
        .map_while(|_| read_one(sock, libc::MSG_DONTWAIT))
        .collect()
}

fn read_one(sock: &Sock, flags: i32) -> Option<Got> {
    let mut buf = [0u8; 512];
    let d = sock.recv_datagram(&mut buf, flags).ok()?;
    Some(Got {
        payload: buf[..d.len].to_vec(),
        datagram: d,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_bounds_the_wait_and_drain_is_bounded() {
        let rec = Recorder::off();
        let rx = udp4(&rec).unwrap();
        rx.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        rx.set_read_timeout(Some(MARKER_TIMEOUT)).unwrap();
        let to = rx.local_addr().unwrap();
        let tx = udp4(&rec).unwrap();
        tx.send_to(b"one", to).unwrap();
        tx.send_to(b"M", to).unwrap();
        tx.send_to(b"late", to).unwrap();
        let (got, seen) = read_until_marker(&rx, b"M");
        assert!(seen);
        let payloads: Vec<&[u8]> = got.iter().map(|g| g.payload.as_slice()).collect();
        assert_eq!(payloads, [b"one".as_slice(), b"late".as_slice()]);
        assert!(drain(&rx).is_empty());
        assert_eq!(errno_of(&rx.bind(to)).as_deref(), Some("EINVAL"));
    }
}
