//! What went on the wire: an AF_PACKET socket (packet(7)) opened inside an experiment's
//! namespace sees every frame of every interface there. Frames are drained after the
//! experiment, described in one line each (etherparse), and written as pcapng files for
//! Wireshark (pcap-file): one interface per namespace, frames in timestamp order.
//!
//! On `lo` each packet passes twice (PACKET_OUTGOING, then PACKET_HOST); the outgoing copy is
//! dropped so each packet is listed once. Across a veth pair a packet is seen leaving one
//! namespace and arriving in the other: the file keeps the arriving copy only ([`dedup`]).

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
    /// The namespace it was captured in (its `ip netns` name; empty for the machine's own).
    pub host: String,
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
    /// The window-scale shifts seen so far in this namespace ([`Scales`]).
    scales: std::sync::Mutex<Scales>,
}

/// TCP window-scale shifts announced in SYN segments, by sending endpoint (`addr:port`), so
/// that later segments' windows can be shown as the receiver's real window: RFC 7323 §2.2–2.3,
/// scaling applies only when both SYNs carried the option, never to a SYN's own window.
#[derive(Debug, Default)]
pub struct Scales(std::collections::HashMap<String, u8>);

impl Scales {
    /// The shift for segments from `src` to `dst`, if both announced one.
    fn shift(&self, src: &str, dst: &str) -> Option<u8> {
        self.0.get(dst)?;
        self.0.get(src).copied()
    }
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
        Ok(Self {
            sock,
            scales: std::sync::Mutex::new(Scales::default()),
        })
    }

    /// [`describe`] with TCP windows scaled by what this capture's SYNs announced.
    pub fn describe(&self, frame: &Frame) -> String {
        let mut scales = self.scales.lock().unwrap_or_else(|e| e.into_inner());
        describe(frame, &mut scales)
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
                host: String::new(),
            });
        }
        frames
    }
}

/// One line about a frame: `UDP 198.51.100.1:40000 > 198.51.100.255:9 len 5`,
/// `TCP 127.0.0.1:80 > 127.0.0.1:5000 [SYN,ACK] seq 1 win 65495 wscale 7 len 0`,
/// `ICMP 127.0.0.1 > 127.0.0.1 type 3 code 3`. A TCP window is shown scaled (the window field
/// shifted by the sender's announced scale, as [`Scales`] knows it); a SYN shows its `wscale`.
pub fn describe(frame: &Frame, scales: &mut Scales) -> String {
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
            let (from, to) = (hp(&src, t.source_port()), hp(&dst, t.destination_port()));
            let announced = t.options_iterator().find_map(|o| match o {
                Ok(etherparse::TcpOptionElement::WindowScale(s)) => Some(s),
                _ => None,
            });
            let win = u32::from(t.window_size());
            let (win, wscale) = if t.syn() {
                if let Some(s) = announced {
                    scales.0.insert(from.clone(), s);
                }
                (
                    win,
                    announced
                        .map(|s| format!(" wscale {s}"))
                        .unwrap_or_default(),
                )
            } else {
                let shift = scales.shift(&from, &to).unwrap_or(0);
                (win << shift, String::new())
            };
            format!(
                "TCP {from} > {to} [{}] seq {} win {win}{wscale} len {}",
                flags.join(","),
                t.sequence_number(),
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

/// The name of the pcapng file of claim `claim`'s frames: `claim-13.pcapng`.
pub fn pcap_file_name(claim: u8) -> String {
    format!("claim-{claim:02}.pcapng")
}

/// The name of the pcapng file of the frames of `f`: [`pcap_file_name`] for an IPv4 run,
/// `claim-13-v6.pcapng` for IPv6 (so a run over both families writes both).
pub fn pcap_file_name_of(f: &super::Finding) -> String {
    format!("claim-{:02}{}.pcapng", f.claim, f.anchor_suffix())
}

/// Whether a frame is link-layer chatter no part is about: ARP (RFC 826), or ICMPv6 neighbour
/// discovery (RFC 4861, types 133–137) and multicast listener messages (MLD, RFC 2710/3810,
/// types 130–132 and 143) that an interface sends when it comes up. Kept in the pcap files,
/// left out of the evidence's wire lines.
pub fn is_link_chatter(frame: &Frame) -> bool {
    const ETH_P_ARP: [u8; 2] = [0x08, 0x06];
    if frame.data.get(12..14) == Some(&ETH_P_ARP[..]) {
        return true;
    }
    match SlicedPacket::from_ethernet(&frame.data) {
        Ok(p) => match &p.transport {
            Some(TransportSlice::Icmpv6(i)) => {
                matches!(i.type_u8(), 130..=137 | 143)
            }
            _ => false,
        },
        Err(_) => false,
    }
}

/// For each frame of `frames`, the index of the copy of its packet that the pcapng file keeps:
/// the frame itself, or for an outgoing frame whose bytes arrived in another namespace (the far
/// end of a veth pair), the arriving copy nearest in time.
pub fn kept_copies(frames: &[Frame]) -> Vec<usize> {
    // The frames that arrived, by their bytes.
    let mut arrived: std::collections::HashMap<&[u8], Vec<usize>> =
        std::collections::HashMap::new();
    for (i, f) in frames.iter().enumerate().filter(|(_, f)| !f.outgoing) {
        arrived.entry(&f.data).or_default().push(i);
    }
    frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if !f.outgoing {
                return i;
            }
            arrived
                .get(f.data.as_slice())
                .and_then(|copies| {
                    copies
                        .iter()
                        .copied()
                        .filter(|&k| frames[k].host != f.host)
                        .min_by_key(|&k| frames[k].ts.abs_diff(f.ts))
                })
                .unwrap_or(i)
        })
        .collect()
}

/// The indices of the frames the pcapng file holds, in its order: each packet once
/// ([`kept_copies`]), in timestamp order.
pub fn pcap_order(frames: &[Frame]) -> Vec<usize> {
    let copies = kept_copies(frames);
    let mut order: Vec<usize> = (0..frames.len()).filter(|&i| copies[i] == i).collect();
    order.sort_by_key(|&i| frames[i].ts);
    order
}

/// `frames` in timestamp order with every packet once ([`pcap_order`]).
pub fn dedup(frames: &[Frame]) -> Vec<&Frame> {
    pcap_order(frames).into_iter().map(|i| &frames[i]).collect()
}

/// The frame number (from 1) in the pcapng file [`write_pcapng`] writes of each frame of
/// `frames`: its own, or for a copy left out, the kept copy's ([`kept_copies`]).
pub fn pcap_numbers(frames: &[Frame]) -> Vec<usize> {
    let mut number = vec![0; frames.len()];
    for (n, i) in pcap_order(frames).into_iter().enumerate() {
        number[i] = n + 1;
    }
    kept_copies(frames).into_iter().map(|k| number[k]).collect()
}

/// The wire line of each frame of `frames` (in capture order) as the evidence lists it: TCP
/// windows scaled by the SYNs seen before in the same namespace (one [`Scales`] per namespace,
/// like each namespace's [`Capture`]), `None` for link-layer chatter ([`is_link_chatter`]).
pub fn wire_lines(frames: &[Frame]) -> Vec<Option<String>> {
    let mut scales: std::collections::HashMap<&str, Scales> = std::collections::HashMap::new();
    frames
        .iter()
        .map(|f| {
            (!is_link_chatter(f)).then(|| describe(f, scales.entry(f.host.as_str()).or_default()))
        })
        .collect()
}

/// The name a namespace's interface gets in a pcapng file: the namespace's tag without the
/// `socklab-` prefix and the pid/counter suffix (`c01-a`), or `host`.
fn interface_name(host: &str) -> String {
    let tag = host.strip_prefix("socklab-").unwrap_or(host);
    let parts: Vec<&str> = tag.rsplitn(3, '-').collect();
    match parts.as_slice() {
        [_, _, tag] => (*tag).to_string(),
        _ if tag.is_empty() => "host".into(),
        _ => tag.to_string(),
    }
}

/// Writes `frames` as a pcapng file (LINKTYPE_ETHERNET, nanosecond timestamps): one interface
/// per namespace (named for it), each packet once ([`dedup`]), in timestamp order.
pub fn write_pcapng(path: &Path, frames: &[Frame]) -> io::Result<()> {
    use pcap_file::DataLink;
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::{
        InterfaceDescriptionBlock, InterfaceDescriptionOption,
    };
    let file = std::fs::File::create(path)?;
    let mut w = PcapNgWriter::new(file).map_err(io::Error::other)?;
    let kept = dedup(frames);
    let mut hosts: Vec<&str> = Vec::new();
    for f in &kept {
        if !hosts.contains(&f.host.as_str()) {
            hosts.push(&f.host);
        }
    }
    for h in &hosts {
        let idb = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: SNAPLEN as u32,
            options: vec![
                InterfaceDescriptionOption::IfName(interface_name(h).into()),
                InterfaceDescriptionOption::IfDescription(
                    format!("every interface of network namespace {h}").into(),
                ),
                InterfaceDescriptionOption::IfTsResol(9),
            ],
        };
        w.write_pcapng_block(idb).map_err(io::Error::other)?;
    }
    for f in kept {
        let id = hosts.iter().position(|h| *h == f.host).unwrap_or(0);
        let epb = EnhancedPacketBlock {
            interface_id: id as u32,
            timestamp: f.ts,
            original_len: f.len as u32,
            data: std::borrow::Cow::Borrowed(&f.data),
            options: vec![],
        };
        w.write_pcapng_block(epb).map_err(io::Error::other)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(host: &str, ts: u64, outgoing: bool, data: &[u8]) -> Frame {
        Frame {
            ts: Duration::from_millis(ts),
            ifindex: 2,
            outgoing,
            data: data.to_vec(),
            len: data.len(),
            host: host.into(),
        }
    }

    #[test]
    fn a_packet_across_a_veth_is_kept_once_and_frames_are_in_time_order() {
        let frames = [
            frame("socklab-c01-a-9-0", 5, true, b"syn"),
            frame("socklab-c01-a-9-0", 9, true, b"lost on the way"),
            frame("socklab-c01-b-9-1", 3, false, b"earlier"),
            frame("socklab-c01-b-9-1", 6, false, b"syn"),
        ];
        let kept: Vec<(&str, &[u8])> = dedup(&frames)
            .iter()
            .map(|f| (f.host.as_str(), f.data.as_slice()))
            .collect();
        assert_eq!(
            kept,
            [
                ("socklab-c01-b-9-1", &b"earlier"[..]),
                ("socklab-c01-b-9-1", &b"syn"[..]),
                ("socklab-c01-a-9-0", &b"lost on the way"[..]),
            ]
        );
        // The sender's copy of "syn" has the number of the arriving copy the file keeps.
        assert_eq!(pcap_numbers(&frames), [2, 3, 1, 2]);
        assert_eq!(kept_copies(&frames), [3, 1, 2, 3]);
        assert_eq!(interface_name("socklab-c01-a-9-0"), "c01-a");
        assert_eq!(interface_name(""), "host");
    }
}
