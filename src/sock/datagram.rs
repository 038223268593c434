//! Plain data for one received datagram, as recvmsg(2) with MSG_TRUNC reports it.

use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

/// One datagram as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Datagram {
    /// The source address (msg_name); always filled for UDP.
    pub from: Option<SocketAddr>,
    /// The destination address of the IP header (IP_PKTINFO / IPV6_PKTINFO); filled only when
    /// the socket asked for packet info (`set_recv_pktinfo`).
    pub to: Option<IpAddr>,
    /// Bytes copied into the caller's buffer.
    pub len: usize,
    /// The datagram's real length; larger than `len` when the buffer was too small.
    pub real_len: usize,
    /// MSG_TRUNC was set in msg_flags: the rest of the datagram was discarded (udp(7)).
    pub truncated: bool,
    /// The msg_flags that were set, by name.
    pub flags: Vec<&'static str>,
    /// The socket's running count of datagrams dropped for lack of buffer space (SO_RXQ_OVFL);
    /// filled only when the socket asked for it (`set_rxq_ovfl`).
    pub dropped: Option<u32>,
}
