//! TCP's one pattern (the article's claim 1), composed of steps.
//! Server: socket, setsockopt…, bind, listen (then accept). Client: socket, setsockopt…,
//! (bind), connect.

use std::net::SocketAddr;

use super::options::{Applied, SockOpts};
use super::{Proto, Sock, Step};
use crate::trace::Recorder;

/// socket, setsockopt…, bind(`addr`), listen(`backlog`): a listening socket.
pub fn listen(
    addr: SocketAddr,
    opts: &SockOpts,
    backlog: i32,
    rec: &Recorder,
) -> Step<(Sock, Vec<Applied>)> {
    let sock = Sock::open(&addr, Proto::Tcp, rec)?;
    let applied = opts.apply(&sock)?;
    sock.bind(addr)?;
    sock.listen(backlog)?;
    Ok((sock, applied))
}

/// socket, setsockopt…, (bind(`local`)), connect(`to`): a connected socket. Without `local`
/// the kernel picks the source address and an ephemeral port at connect (implicit bind).
pub fn connect(
    to: SocketAddr,
    local: Option<SocketAddr>,
    opts: &SockOpts,
    rec: &Recorder,
) -> Step<(Sock, Vec<Applied>)> {
    connect_within(to, local, opts, None, rec)
}

/// [`connect`], giving up after `timeout` (none: when the kernel gives up, after
/// net.ipv4.tcp_syn_retries retransmissions, about two minutes). The expiry is a
/// [`StepError`](super::StepError) of kind `TimedOut`, with no errno (socket2's
/// nonblocking connect + poll, not the kernel, decided).
pub fn connect_within(
    to: SocketAddr,
    local: Option<SocketAddr>,
    opts: &SockOpts,
    timeout: Option<std::time::Duration>,
    rec: &Recorder,
) -> Step<(Sock, Vec<Applied>)> {
    let sock = Sock::open(&to, Proto::Tcp, rec)?;
    let applied = opts.apply(&sock)?;
    if let Some(l) = local {
        sock.bind(l)?;
    }
    match timeout {
        Some(t) => sock.connect_timeout(to, t)?,
        None => sock.connect(to)?,
    }
    Ok((sock, applied))
}
