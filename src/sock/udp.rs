//! UDP's three patterns (the article's claim 2), composed of steps:
//! (a) send/receive: only the receiver binds ([`bound`]), the sender just calls sendto
//!     ([`unbound`]: the kernel binds it implicitly at the first sendto);
//! (b) peer: both sides bind ([`bound`] on each);
//! (c) connected: one side connects ([`connected`]), the other binds ([`bound`]) and answers
//!     each datagram's source with sendto.

use std::net::SocketAddr;

use super::options::{Applied, SockOpts};
use super::{Proto, Sock, Step};
use crate::trace::Recorder;

/// socket, setsockopt… and no bind: a sender of the family of `like`.
pub fn unbound(like: &SocketAddr, opts: &SockOpts, rec: &Recorder) -> Step<(Sock, Vec<Applied>)> {
    let sock = Sock::open(like, Proto::Udp, rec)?;
    let applied = opts.apply(&sock)?;
    Ok((sock, applied))
}

/// socket, setsockopt…, bind(`addr`): a receiver or a peer.
pub fn bound(addr: SocketAddr, opts: &SockOpts, rec: &Recorder) -> Step<(Sock, Vec<Applied>)> {
    let (sock, applied) = unbound(&addr, opts, rec)?;
    sock.bind(addr)?;
    Ok((sock, applied))
}

/// socket, setsockopt…, (bind(`local`)), connect(`to`): connected UDP. connect sends nothing;
/// it picks the source address, records `to` as the only peer, and from then on ICMP errors
/// for that peer are reported on the socket (ECONNREFUSED).
pub fn connected(
    to: SocketAddr,
    local: Option<SocketAddr>,
    opts: &SockOpts,
    rec: &Recorder,
) -> Step<(Sock, Vec<Applied>)> {
    let (sock, applied) = unbound(&to, opts, rec)?;
    if let Some(l) = local {
        sock.bind(l)?;
    }
    sock.connect(to)?;
    Ok((sock, applied))
}
