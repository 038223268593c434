//! What went on the wire: an AF_PACKET socket (packet(7)) opened inside an experiment's
//! namespace sees every frame of every interface there. Frames are drained after the
//! experiment, described in one line each (etherparse), and written as pcap files for
//! Wireshark (pcap-file).
//!
//! On `lo` each packet passes twice (PACKET_OUTGOING, then PACKET_HOST); the outgoing copy is
//! dropped so each packet is listed once.

use std::io::{self, IoSliceMut};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use nix::sys::socket::{ControlMessageOwned, LinkAddr, MsgFlags, recvmsg, setsockopt, sockopt};
use socket2::{Domain, Protocol, Socket, Type};

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Kernel receive time (SO_TIMESTAMPNS), since the Unix epoch.
    pub ts: Duration,
    /// Interface index it was seen on.
    pub ifindex: u32,
    /// Sent by this namespace (PACKET_OUTGOING) rather than received.
    pub outgoing: bool,
    /// The frame, from the Ethernet header on (at most [`SNAPLEN`] bytes).
    pub data: Vec<u8>,
    /// The frame's real length.
    pub len: usize,
}

/// Bytes kept of each frame.
pub const SNAPLEN: usize = 65_600;
/// Frames kept per capture at most; the rest are counted, not stored.
const MAX_FRAMES: usize = 10_000;
const PACKET_OUTGOING: u8 = 4;
const LOOPBACK_IFINDEX: u32 = 1;

/// A running capture of every interface in the calling thread's namespace.
pub struct Capture {
    sock: Socket,
}

impl Capture {
    /// socket(AF_PACKET, SOCK_RAW, ETH_P_ALL), nonblocking, with kernel timestamps. Needs
    /// CAP_NET_RAW. Call it on a thread inside the namespace to capture.
    pub fn open() -> io::Result<Self> {
        let proto = Protocol::from(i32::from((libc::ETH_P_ALL as u16).to_be()));
        let sock = Socket::new(Domain::PACKET, Type::RAW, Some(proto))?;
        sock.set_nonblocking(true)?;
        sock.set_recv_buffer_size(4 << 20)?;
        setsockopt(&sock, sockopt::ReceiveTimestampns, &true)?;
        Ok(Self { sock })
    }

    /// Takes every frame queued so far.
    pub fn drain(&self) -> Vec<Frame> {
        let mut frames = Vec::new();
        let mut buf = vec![0u8; SNAPLEN];
        while frames.len() < MAX_FRAMES {
            let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
            let mut iov = [IoSliceMut::new(&mut buf)];
            let Ok(msg) = recvmsg::<LinkAddr>(
                self.sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_TRUNC,
            ) else {
                break;
            };
            let len = msg.bytes;
            let (ifindex, outgoing) = msg.address.map_or((0, false), |a| {
                (a.ifindex() as u32, a.pkttype() == PACKET_OUTGOING)
            });
            let mut ts = Duration::ZERO;
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::ScmTimestampns(t) = c {
                        ts = Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32);
                    }
                }
            }
            if outgoing && ifindex == LOOPBACK_IFINDEX {
                continue;
            }
            frames.push(Frame {
                ts,
                ifindex,
                outgoing,
                data: buf[..len.min(SNAPLEN)].to_vec(),
                len,
            });
        }
        frames
    }
}

/// One line about a frame: `UDP 198.51.100.1:40000 > 198.51.100.255:9 len 5`,
/// `TCP 127.0.0.1:80 > 127.0.0.1:5000 [SYN,ACK] len 0`, `ICMP 127.0.0.1 > 127.0.0.1 type 3 code 3`.
pub fn describe(frame: &Frame) -> String {
    let Ok(p) = SlicedPacket::from_ethernet(&frame.data) else {
        return format!("unparsed frame of {} bytes", frame.len);
    };
    let (src, dst) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => (
            ip.header().source_addr().to_string(),
            ip.header().destination_addr().to_string(),
        ),
        Some(NetSlice::Ipv6(ip)) => (
            ip.header().source_addr().to_string(),
            ip.header().destination_addr().to_string(),
        ),
        None => return format!("non-IP frame of {} bytes", frame.len),
    };
    let v6 = matches!(p.net, Some(NetSlice::Ipv6(_)));
    let hp = |a: &str, port: u16| {
        if v6 {
            format!("[{a}]:{port}")
        } else {
            format!("{a}:{port}")
        }
    };
    match &p.transport {
        Some(TransportSlice::Udp(u)) => format!(
            "UDP {} > {} len {}",
            hp(&src, u.source_port()),
            hp(&dst, u.destination_port()),
            u.payload().len()
        ),
        Some(TransportSlice::Tcp(t)) => {
            let flags: Vec<&str> = [
                (t.syn(), "SYN"),
                (t.fin(), "FIN"),
                (t.rst(), "RST"),
                (t.psh(), "PSH"),
                (t.ack(), "ACK"),
            ]
            .into_iter()
            .filter_map(|(on, n)| on.then_some(n))
            .collect();
            format!(
                "TCP {} > {} [{}] seq {} win {} len {}",
                hp(&src, t.source_port()),
                hp(&dst, t.destination_port()),
                flags.join(","),
                t.sequence_number(),
                t.window_size(),
                t.payload().len()
            )
        }
        Some(TransportSlice::Icmpv4(i)) => format!(
            "ICMP {src} > {dst} type {} code {}",
            i.type_u8(),
            i.code_u8()
        ),
        Some(TransportSlice::Icmpv6(i)) => format!(
            "ICMPv6 {src} > {dst} type {} code {}",
            i.type_u8(),
            i.code_u8()
        ),
        None => format!("IP {src} > {dst} len {}", frame.len),
    }
}

/// The name of the pcap file of claim `claim`'s frames: `claim-13.pcap`.
pub fn pcap_file_name(claim: u8) -> String {
    format!("claim-{claim:02}.pcap")
}

/// Writes `frames` as a classic pcap file (LINKTYPE_ETHERNET), readable by Wireshark/tcpdump.
pub fn write_pcap(path: &Path, frames: &[Frame]) -> io::Result<()> {
    use pcap_file::DataLink;
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    let file = std::fs::File::create(path)?;
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        snaplen: SNAPLEN as u32,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(file, header).map_err(io::Error::other)?;
    for f in frames {
        let pkt = PcapPacket::new(f.ts, f.len as u32, &f.data);
        w.write_packet(&pkt).map_err(io::Error::other)?;
    }
    Ok(())
}
