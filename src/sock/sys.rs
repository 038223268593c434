//! The raw calls the step layer needs beyond socket2: recvmsg(2) with MSG_TRUNC and control
//! messages, splice(2), and getsockopt(TCP_INFO). This is the only module allowed `unsafe`
//! (see lib.rs); each block says why it is sound. Everything here returns plain data and
//! io::Error; recording the calls is the caller's job.
#![allow(unsafe_code)]

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg};

use super::datagram::Datagram;

/// Converts a nix socket address into a std one, if it is IPv4 or IPv6.
pub fn to_std(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

/// recvmsg(2) of one datagram with MSG_TRUNC, so the result carries the datagram's real length
/// even when `buf` was too small (udp(7): "return the real length of the packet, even when it
/// was longer than the passed buffer"). `extra_flags` is OR-ed into the call (e.g. MSG_DONTWAIT,
/// MSG_PEEK). Control messages for IP_PKTINFO, IPV6_RECVPKTINFO and SO_RXQ_OVFL are decoded
/// when the socket has those options on.
///
/// Only for datagram sockets: on a TCP socket MSG_TRUNC discards data instead.
pub fn recv_datagram(fd: BorrowedFd<'_>, buf: &mut [u8], extra_flags: i32) -> io::Result<Datagram> {
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::in_pktinfo, u32);
    let mut iov = [IoSliceMut::new(buf)];
    let flags = MsgFlags::MSG_TRUNC | MsgFlags::from_bits_truncate(extra_flags);
    let capacity = iov[0].len();
    let msg = recvmsg::<SockaddrStorage>(fd.as_raw_fd(), &mut iov, Some(&mut cmsg), flags)?;
    let mut d = Datagram {
        from: msg.address.as_ref().and_then(to_std),
        to: None,
        len: msg.bytes.min(capacity),
        real_len: msg.bytes,
        truncated: msg.flags.contains(MsgFlags::MSG_TRUNC),
        flags: flag_names(msg.flags),
        dropped: None,
    };
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::Ipv4PacketInfo(info) => {
                d.to = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    info.ipi_addr.s_addr,
                ))));
            }
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                d.to = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
            }
            ControlMessageOwned::RxqOvfl(n) => d.dropped = Some(n),
            _ => {}
        }
    }
    Ok(d)
}

fn flag_names(flags: MsgFlags) -> Vec<&'static str> {
    [
        (MsgFlags::MSG_TRUNC, "MSG_TRUNC"),
        (MsgFlags::MSG_CTRUNC, "MSG_CTRUNC"),
        (MsgFlags::MSG_EOR, "MSG_EOR"),
        (MsgFlags::MSG_OOB, "MSG_OOB"),
        (MsgFlags::MSG_ERRQUEUE, "MSG_ERRQUEUE"),
    ]
    .into_iter()
    .filter(|(f, _)| flags.contains(*f))
    .map(|(_, n)| n)
    .collect()
}

/// splice(2): moves up to `len` bytes between `from` and `to`, one of which must be a pipe,
/// without copying them through user space. `more` sets SPLICE_F_MORE (more data follows).
pub fn splice(
    from: BorrowedFd<'_>,
    to: BorrowedFd<'_>,
    len: usize,
    more: bool,
) -> io::Result<usize> {
    use nix::fcntl::SpliceFFlags;
    let mut flags = SpliceFFlags::SPLICE_F_MOVE;
    if more {
        flags |= SpliceFFlags::SPLICE_F_MORE;
    }
    Ok(nix::fcntl::splice(from, None, to, None, len, flags)?)
}

/// What getsockopt(TCP_INFO) says about a TCP connection (tcp(7)); times in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TcpInfo {
    /// The TCP state number (1 ESTABLISHED … 6 TIME_WAIT …, as in include/net/tcp_states.h).
    pub state: u8,
    /// Smoothed round-trip time.
    pub rtt_us: u32,
    /// Round-trip time variance.
    pub rttvar_us: u32,
    /// Congestion window, in segments.
    pub snd_cwnd: u32,
    /// Segments retransmitted over the connection's life.
    pub total_retrans: u32,
    /// Segments sent but not yet acknowledged.
    pub unacked: u32,
    /// Maximum segment size for sending.
    pub snd_mss: u32,
}

/// getsockopt(IPPROTO_TCP, TCP_INFO) on a TCP socket.
pub fn tcp_info(fd: BorrowedFd<'_>) -> io::Result<TcpInfo> {
    let mut raw = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `raw` is a zeroed tcp_info we own, `len` holds its exact size, and the kernel
    // writes at most `len` bytes into it; the fd is borrowed, so it stays open for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            raw.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the struct was zero-initialised, which is a valid tcp_info (all integers), and
    // the kernel filled a prefix of it.
    let t = unsafe { raw.assume_init() };
    Ok(TcpInfo {
        state: t.tcpi_state,
        rtt_us: t.tcpi_rtt,
        rttvar_us: t.tcpi_rttvar,
        snd_cwnd: t.tcpi_snd_cwnd,
        total_retrans: t.tcpi_total_retrans,
        unacked: t.tcpi_unacked,
        snd_mss: t.tcpi_snd_mss,
    })
}

/// fcntl(F_SETPIPE_SZ) (fcntl(2), pipe(7)): asks for a pipe buffer of `size` bytes (rounded up
/// to a power-of-two number of pages, at most /proc/sys/fs/pipe-max-size for unprivileged
/// users); returns the size the kernel applied. Each splice(2) moves at most one pipe buffer, so
/// a bigger buffer means fewer calls.
pub fn set_pipe_size(fd: BorrowedFd<'_>, size: usize) -> io::Result<usize> {
    let size = i32::try_from(size).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let applied = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETPIPE_SZ(size))?;
    Ok(usize::try_from(applied).unwrap_or(0))
}

/// Whether splice(2) from a pipe into `fd` works as a plain write would: a regular file not
/// opened with O_APPEND (splice refuses those with EINVAL), or /dev/null.
pub fn splice_sink(fd: BorrowedFd<'_>) -> bool {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let Ok(st) = nix::sys::stat::fstat(fd) else {
        return false;
    };
    let kind = st.st_mode & libc::S_IFMT;
    let dev_null = kind == libc::S_IFCHR && st.st_rdev == libc::makedev(1, 3);
    let append = fcntl(fd, FcntlArg::F_GETFL)
        .map(|f| OFlag::from_bits_truncate(f).contains(OFlag::O_APPEND))
        .unwrap_or(true);
    (dev_null || kind == libc::S_IFREG) && !append
}

/// Whether `fd` is a regular file (sendfile(2) reads those from the page cache).
pub fn is_regular_file(fd: BorrowedFd<'_>) -> bool {
    nix::sys::stat::fstat(fd)
        .map(|st| (st.st_mode & libc::S_IFMT) == libc::S_IFREG)
        .unwrap_or(false)
}

/// Whether `fd` is a pipe or FIFO (splice(2) needs one on either side).
pub fn is_pipe(fd: BorrowedFd<'_>) -> bool {
    nix::sys::stat::fstat(fd)
        .map(|st| (st.st_mode & libc::S_IFMT) == libc::S_IFIFO)
        .unwrap_or(false)
}

/// The socket's memory accounting as getsockopt(SOL_SOCKET, SO_MEMINFO) reports it (the
/// `skmem:(…)` of `ss -m`, sock_diag(7)): bytes charged to the buffers, which count each
/// packet's whole kernel allocation (skb truesize), not its payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MemInfo {
    /// Bytes charged to the receive queue (sk_rmem_alloc).
    pub rmem_alloc: u32,
    /// The receive buffer limit (SO_RCVBUF as applied).
    pub rcvbuf: u32,
    /// Bytes charged to the send queue (sk_wmem_alloc).
    pub wmem_alloc: u32,
    /// The send buffer limit (SO_SNDBUF as applied).
    pub sndbuf: u32,
    /// Packets dropped by this socket, e.g. for lack of receive buffer (sk_drops).
    pub drops: u32,
}

/// SO_MEMINFO from include/uapi/asm-generic/socket.h (x86, arm64 and most architectures).
const SO_MEMINFO: libc::c_int = 55;

/// getsockopt(SOL_SOCKET, SO_MEMINFO) (Linux 4.12+; sock_diag(7) documents the fields).
pub fn mem_info(fd: BorrowedFd<'_>) -> io::Result<MemInfo> {
    const VARS: usize = libc::SK_MEMINFO_DROPS as usize + 1;
    let mut raw = [0u32; VARS];
    let mut len = std::mem::size_of_val(&raw) as libc::socklen_t;
    // SAFETY: `raw` is an owned array of `len` bytes; the kernel writes at most `len` bytes
    // into it and updates `len`; the fd is borrowed, so it stays open for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MEMINFO,
            raw.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let at = |i: libc::c_int| raw[i as usize];
    Ok(MemInfo {
        rmem_alloc: at(libc::SK_MEMINFO_RMEM_ALLOC),
        rcvbuf: at(libc::SK_MEMINFO_RCVBUF),
        wmem_alloc: at(libc::SK_MEMINFO_WMEM_ALLOC),
        sndbuf: at(libc::SK_MEMINFO_SNDBUF),
        drops: at(libc::SK_MEMINFO_DROPS),
    })
}

/// Most messages one [`send_batch`] or [`recv_batch`] call moves (the arrays live on the stack).
pub const MAX_BATCH: usize = 64;

/// sendmmsg(2) on a connected socket: `buf` is cut into messages of `chunk` bytes (at most
/// [`MAX_BATCH`]), each sent as one message. With UDP_SEGMENT set on the socket
/// ([`set_udp_segment`]) the kernel splits each message into datagrams of the segment size.
/// Returns how many messages were sent; no allocation.
pub fn send_batch(fd: BorrowedFd<'_>, buf: &[u8], chunk: usize) -> io::Result<usize> {
    send_batch_flags(fd, buf, chunk, 0)
}

/// [`send_batch`] with `flags` OR-ed into the call's MSG_NOSIGNAL, e.g. MSG_ZEROCOPY: each
/// message the kernel accepts is then one zerocopy send with its own notification id.
pub fn send_batch_flags(
    fd: BorrowedFd<'_>,
    buf: &[u8],
    chunk: usize,
    flags: i32,
) -> io::Result<usize> {
    if chunk == 0 {
        return Ok(0);
    }
    let count = (buf.len() / chunk).min(MAX_BATCH);
    // SAFETY: iovec and mmsghdr are plain C structs for which all-zero bytes are valid.
    let mut iov: [libc::iovec; MAX_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    for i in 0..count {
        iov[i].iov_base = buf[i * chunk..].as_ptr() as *mut libc::c_void;
        iov[i].iov_len = chunk;
        msgs[i].msg_hdr.msg_iov = &mut iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: each msghdr points at one iovec in `iov`, which points into `buf` within its
    // bounds (i * chunk + chunk <= buf.len()); the kernel only reads them for `count` entries
    // and all of them outlive the call. No address (connected socket) and no control data.
    let rc = unsafe {
        libc::sendmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            count as libc::c_uint,
            // The flags are a c_int in glibc and a c_uint in musl: `as _` builds on both.
            (libc::MSG_NOSIGNAL | flags) as _,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

/// SO_ZEROCOPY from include/uapi/asm-generic/socket.h (x86, arm64 and most architectures).
const SO_ZEROCOPY: libc::c_int = 60;
/// ee_origin of a MSG_ZEROCOPY completion (include/uapi/linux/errqueue.h).
const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;
/// ee_code flag of a completion whose data the kernel copied after all.
const SO_EE_CODE_ZEROCOPY_COPIED: u8 = 1;

/// setsockopt(SOL_SOCKET, SO_ZEROCOPY, 1): lets send calls with MSG_ZEROCOPY pin the
/// caller's pages instead of copying them (TCP since Linux 4.14, UDP since 5.0;
/// Documentation/networking/msg_zerocopy.rst). Without it the kernel ignores MSG_ZEROCOPY;
/// EOPNOTSUPP (or ENOPROTOOPT on older kernels) means it cannot be used.
pub fn set_zerocopy(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_int(fd, SO_ZEROCOPY, 1)
}

/// send(2) with `flags` OR-ed into MSG_NOSIGNAL (MSG_ZEROCOPY for a zerocopy TCP send):
/// returns the bytes accepted.
pub fn send_flags(fd: BorrowedFd<'_>, buf: &[u8], flags: i32) -> io::Result<usize> {
    use nix::sys::socket::{MsgFlags, send};
    let flags = MsgFlags::MSG_NOSIGNAL | MsgFlags::from_bits_retain(flags);
    Ok(send(fd.as_raw_fd(), buf, flags)?)
}

/// One MSG_ZEROCOPY completion notification: the send calls with ids `lo..=hi` (the socket's
/// 32-bit call counter, which wraps) released the caller's buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZeroCopyDone {
    /// First call id of the range (ee_info).
    pub lo: u32,
    /// Last call id of the range, inclusive (ee_data).
    pub hi: u32,
    /// SO_EE_CODE_ZEROCOPY_COPIED: the kernel copied the data of this range anyway.
    pub copied: bool,
}

/// recvmsg(2) with MSG_ERRQUEUE | MSG_DONTWAIT: the next MSG_ZEROCOPY completion on the
/// socket's error queue (an IP_RECVERR or IPV6_RECVERR control message whose
/// sock_extended_err has ee_origin SO_EE_ORIGIN_ZEROCOPY), or None when the queue holds none.
/// Other queued errors (ICMP, when IP_RECVERR is on) are read and skipped.
pub fn recv_zerocopy_done(fd: BorrowedFd<'_>) -> io::Result<Option<ZeroCopyDone>> {
    loop {
        let mut cmsg = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in6);
        let mut iov: [IoSliceMut<'_>; 0] = [];
        let flags = MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT;
        let msg = match recvmsg::<()>(fd.as_raw_fd(), &mut iov, Some(&mut cmsg), flags) {
            Ok(m) => m,
            Err(nix::errno::Errno::EAGAIN) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        for c in msg.cmsgs()? {
            let (ControlMessageOwned::Ipv4RecvErr(ee, _) | ControlMessageOwned::Ipv6RecvErr(ee, _)) =
                c
            else {
                continue;
            };
            if ee.ee_origin == SO_EE_ORIGIN_ZEROCOPY && ee.ee_errno == 0 {
                return Ok(Some(ZeroCopyDone {
                    lo: ee.ee_info,
                    hi: ee.ee_data,
                    copied: ee.ee_code & SO_EE_CODE_ZEROCOPY_COPIED != 0,
                }));
            }
        }
    }
}

/// poll(2) with no requested events: waits up to `timeout_ms` for POLLERR, which the kernel
/// sets while the socket's error queue holds something (a MSG_ZEROCOPY completion) or a
/// socket error is pending. Returns whether POLLERR was set.
pub fn wait_error_queue(fd: BorrowedFd<'_>, timeout_ms: u16) -> io::Result<bool> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(fd, PollFlags::empty())];
    match poll(&mut fds, PollTimeout::from(timeout_ms)) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(fds[0]
        .revents()
        .is_some_and(|r| r.contains(PollFlags::POLLERR)))
}

/// What [`recv_batch`] learnt about one received message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecvMeta {
    /// Bytes received into the message's slot.
    pub len: usize,
    /// With UDP_GRO: the size of the coalesced datagrams (the last one may be shorter);
    /// otherwise equal to `len`.
    pub segment: usize,
    /// SO_RXQ_OVFL: the socket's drop counter, when the option is on. It counts socket
    /// buffers (skbs): with UDP_GRO one dropped skb may have held many datagrams.
    pub dropped: Option<u32>,
    /// The datagram did not fit its slot (MSG_TRUNC).
    pub truncated: bool,
    /// SO_TIMESTAMPNS (socket(7)): when the kernel received the message, CLOCK_REALTIME ns,
    /// when the option is on ([`set_timestamp_ns`]). With UDP_GRO one stamp covers every
    /// datagram coalesced into the message.
    pub rx_time_ns: Option<u64>,
}

/// Control bytes per message: room for UDP_GRO (int), SO_RXQ_OVFL (u32) and
/// SCM_TIMESTAMPNS (timespec), each CMSG_SPACE-aligned.
const CMSG_ROOM: usize = 128;

/// recvmmsg(2) with MSG_WAITFORONE: blocks (bounded by SO_RCVTIMEO) until at least one
/// datagram is there, then takes what is queued, up to `metas.len()` messages of `slot` bytes
/// each from `buf`. `flags` is OR-ed in (MSG_DONTWAIT for a spinning receive). Decodes the
/// UDP_GRO segment size, the SO_RXQ_OVFL drop counter and the SCM_TIMESTAMPNS receive time.
/// No allocation.
pub fn recv_batch(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    slot: usize,
    metas: &mut [RecvMeta],
    flags: i32,
) -> io::Result<usize> {
    if slot == 0 {
        return Ok(0);
    }
    let count = (buf.len() / slot).min(metas.len()).min(MAX_BATCH);
    // SAFETY: iovec and mmsghdr are plain C structs for which all-zero bytes are valid.
    let mut iov: [libc::iovec; MAX_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    // u64 elements keep the control buffers aligned for cmsghdr.
    let mut control = [[0u64; CMSG_ROOM / 8]; MAX_BATCH];
    let base = buf.as_mut_ptr();
    for i in 0..count {
        // SAFETY: i * slot + slot <= buf.len(), so the offset stays inside `buf`.
        iov[i].iov_base = unsafe { base.add(i * slot) }.cast();
        iov[i].iov_len = slot;
        msgs[i].msg_hdr.msg_iov = &mut iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_control = control[i].as_mut_ptr().cast();
        // size_t in glibc, socklen_t (u32) in musl; CMSG_ROOM fits either.
        msgs[i].msg_hdr.msg_controllen = CMSG_ROOM as _;
    }
    // SAFETY: every msghdr points at one iovec covering a disjoint `slot`-sized part of `buf`
    // and at its own CMSG_ROOM-byte control buffer; all outlive the call, and the kernel
    // writes at most those lengths. No timeout pointer (SO_RCVTIMEO bounds the wait).
    let rc = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            count as libc::c_uint,
            (libc::MSG_WAITFORONE | flags) as _,
            std::ptr::null_mut(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = rc as usize;
    for (m, meta) in msgs[..n].iter().zip(metas.iter_mut()) {
        let len = m.msg_len as usize;
        *meta = RecvMeta {
            len: len.min(slot),
            segment: len.min(slot),
            dropped: None,
            truncated: m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            rx_time_ns: None,
        };
        // SAFETY: msg_control/msg_controllen are what the kernel left in this msghdr, and
        // the CMSG_* macros walk only within msg_controllen; CMSG_DATA of a header with
        // enough room for a c_int (or a timespec) is read unaligned.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&m.msg_hdr);
            while !c.is_null() {
                let (level, ty) = ((*c).cmsg_level, (*c).cmsg_type);
                let ts_len = libc::CMSG_LEN(std::mem::size_of::<libc::timespec>() as u32);
                if level == libc::SOL_SOCKET && ty == libc::SCM_TIMESTAMPNS {
                    if (*c).cmsg_len as usize >= ts_len as usize {
                        let ts =
                            std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                        meta.rx_time_ns = Some(
                            (ts.tv_sec as u64)
                                .saturating_mul(1_000_000_000)
                                .saturating_add(ts.tv_nsec as u64),
                        );
                    }
                } else if (*c).cmsg_len as usize >= libc::CMSG_LEN(4) as usize {
                    let v = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const u32);
                    if level == libc::SOL_UDP && ty == libc::UDP_GRO {
                        meta.segment = (v as usize).max(1);
                    } else if level == libc::SOL_SOCKET && ty == libc::SO_RXQ_OVFL {
                        meta.dropped = Some(v);
                    }
                }
                c = libc::CMSG_NXTHDR(&m.msg_hdr, c);
            }
        }
    }
    Ok(n)
}

/// setsockopt(SOL_UDP, UDP_SEGMENT): every send of more than `size` bytes is split by the
/// kernel into datagrams of `size` bytes (UDP GSO, udp(7) since Linux 4.18); 0 turns it off.
/// ENOPROTOOPT means the kernel has no GSO.
pub fn set_udp_segment(fd: BorrowedFd<'_>, size: u16) -> io::Result<()> {
    Ok(nix::sys::socket::setsockopt(
        &fd,
        nix::sys::socket::sockopt::UdpGsoSegment,
        &(size as i32),
    )?)
}

/// setsockopt(SOL_UDP, UDP_GRO): let the kernel hand over coalesced datagrams with their
/// segment size in a control message (Linux 5.0).
pub fn set_udp_gro(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    Ok(nix::sys::socket::setsockopt(
        &fd,
        nix::sys::socket::sockopt::UdpGroSegment,
        &on,
    )?)
}

/// setsockopt(SOL_SOCKET, SO_TIMESTAMPNS): every received message carries the kernel's
/// receive time (CLOCK_REALTIME, nanoseconds) in an SCM_TIMESTAMPNS control message
/// (socket(7)); [`recv_batch`] decodes it into [`RecvMeta::rx_time_ns`].
pub fn set_timestamp_ns(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    Ok(nix::sys::socket::setsockopt(
        &fd,
        nix::sys::socket::sockopt::ReceiveTimestampns,
        &on,
    )?)
}

/// setsockopt(SOL_SOCKET, SO_BUSY_POLL): busy-poll the device queue for up to `usecs`
/// microseconds on a blocking receive (socket(7)).
pub fn set_busy_poll(fd: BorrowedFd<'_>, usecs: u32) -> io::Result<()> {
    set_int(fd, libc::SO_BUSY_POLL, usecs as libc::c_int)
}

/// setsockopt(SOL_SOCKET, SO_RCVLOWAT): a blocking receive waits until `bytes` are queued (or
/// the stream ends, or SO_RCVTIMEO passes) before it returns (socket(7)).
pub fn set_recv_lowat(fd: BorrowedFd<'_>, bytes: u32) -> io::Result<()> {
    set_int(
        fd,
        libc::SO_RCVLOWAT,
        bytes.min(i32::MAX as u32) as libc::c_int,
    )
}

fn set_int(fd: BorrowedFd<'_>, name: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: a pointer to a live c_int and its exact size; the fd is borrowed for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// getsockopt(2) of an int-valued option at `level` (SOL_SOCKET, IPPROTO_TCP, SOL_UDP…): how
/// the socket options' setters read back what the kernel applied (a flag reads 0 or 1).
pub fn get_int(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a pointer to a live c_int and `len` holding its exact size; the kernel writes at
    // most `len` bytes and updates `len`; the fd is borrowed for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

/// CPU time the calling thread has used (getrusage(2) RUSAGE_THREAD): (user, system) µs.
pub fn thread_cpu_us() -> (u64, u64) {
    use nix::sys::resource::{UsageWho, getrusage};
    match getrusage(UsageWho::RUSAGE_THREAD) {
        Ok(u) => {
            let us = |t: nix::sys::time::TimeVal| {
                (t.tv_sec() as u64).saturating_mul(1_000_000) + t.tv_usec() as u64
            };
            (us(u.user_time()), us(u.system_time()))
        }
        Err(_) => (0, 0),
    }
}

/// Pins the calling thread to one CPU (sched_setaffinity(2)).
pub fn pin_thread(cpu: usize) -> io::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)?;
    Ok(nix::sched::sched_setaffinity(
        nix::unistd::Pid::from_raw(0),
        &set,
    )?)
}

/// CLOCK_MONOTONIC in nanoseconds (vDSO, no syscall on most systems).
pub fn monotonic_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(t) => (t.tv_sec() as u64).saturating_mul(1_000_000_000) + t.tv_nsec() as u64,
        Err(_) => 0,
    }
}

/// CLOCK_REALTIME in nanoseconds: the clock of SO_TIMESTAMPNS, so send times stamped with it
/// and kernel receive times differ by the transit time plus a constant clock offset.
pub fn realtime_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME) {
        Ok(t) => (t.tv_sec() as u64).saturating_mul(1_000_000_000) + t.tv_nsec() as u64,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn meminfo_charges_more_than_the_payload() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = mem_info(rx.as_fd()).unwrap();
        assert_eq!((before.rmem_alloc, before.drops), (0, 0));
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"x", rx.local_addr().unwrap()).unwrap();
        // Wait for the datagram with a bounded blocking peek, not a sleep.
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut b = [0u8; 1];
        rx.peek(&mut b).unwrap();
        let after = mem_info(rx.as_fd()).unwrap();
        assert!(after.rmem_alloc > 1, "{after:?}");
        assert_eq!(
            after.rcvbuf as usize,
            socket2::SockRef::from(&rx).recv_buffer_size().unwrap()
        );
    }
}
