#!/usr/bin/env python3
"""Claim 9 of socklab's lab, in Python: stream vs datagram receive buffer.

The article: after "01234" and "56789" are sent, recv(3) returns "012", "567" and then blocks on
UDP, but "012", "345", "678", "9" on TCP; a datagram larger than the buffer is cut and the rest
discarded. Loopback only (127.0.0.1), runs anywhere.

Calls (as src/lab/c09_stream_vs_datagram.rs): UDP reads of 3 bytes until one blocks (a 0.3 s
SO_RCVTIMEO: EAGAIN, BlockingIOError in Python); TCP over a connection that stays open, reading
once recv(MSG_PEEK|MSG_WAITALL) says all ten bytes are queued, until a read blocks (select says
not readable for 0.3 s too), then the client closes and the last read returns b''; recvmsg_into
a 3-byte buffer with MSG_TRUNC (the real length, the MSG_TRUNC flag); two 60 000 B datagrams to
a receiver with the smallest SO_RCVBUF, then a marker.
"""

import select
import socket

import _socklab_lab as lab

CLAIM = 9
TITLE = "stream vs datagram receive buffer"

MESSAGES = (b"01234", b"56789")
RECV = 3
#: How long a read waits before "it would block" (seconds), as the lab's.
QUIET = 0.3
OVERSIZED = 60000
MARKER = b"marker"


def read_until_empty(s):
    out = []
    for _ in range(8):
        r = lab.recv_once(s, RECV)
        out.append(r)
        if not isinstance(r, dict) or "data" not in r:
            break
    return out


def data(reads):
    return [r["data"] for r in reads if isinstance(r, dict) and "data" in r]


def observe_udp(socks):
    rx = socks.udp_bound()
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, lab.timeval(QUIET))
    to = rx.getsockname()
    tx = socks.new()
    for m in MESSAGES:
        tx.sendto(m, to)
    return read_until_empty(rx), lab.show_addr(to)


def observe_tcp(socks):
    _, client, server = socks.tcp_pair()
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for m in MESSAGES:
        client.send(m)
    try:
        peeked = len(server.recv(10, socket.MSG_PEEK | socket.MSG_WAITALL))
    except OSError:
        peeked = 0
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, lab.timeval(QUIET))
    reads = read_until_empty(server)
    blocked = bool(reads) and reads[-1] == "would_block" \
        and not select.select([server], [], [], QUIET)[0]
    client.close()
    if select.select([server], [], [], lab.TIMEOUT)[0]:
        reads.append(lab.recv_once(server, RECV))
    return reads, blocked, peeked


def observe_cut(socks):
    rx = socks.udp_bound()
    to = rx.getsockname()
    tx = socks.new()
    for m in MESSAGES:
        tx.sendto(m, to)
    cuts = []
    for _ in MESSAGES:
        buf = bytearray(RECV)
        n, _, flags, _ = rx.recvmsg_into([buf], 0, socket.MSG_TRUNC)
        cuts.append({"bytes": bytes(buf[:min(n, RECV)]).decode("utf-8", "replace"),
                     "real_len": n, "truncated": bool(flags & socket.MSG_TRUNC)})
    return cuts


def observe_oversized(socks):
    rx = socks.udp_bound()
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
    rcvbuf = rx.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    to = rx.getsockname()
    tx = socks.new()
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * OVERSIZED)
    big = b"x" * OVERSIZED
    sends = [lab.res(tx.sendto, big, to) for _ in range(2)]
    read = []
    buf = bytearray(65536)
    # What is queued now (nonblocking), then the marker, read blocking (SO_RCVTIMEO bounds it).
    while True:
        try:
            read.append({"Ok": rx.recv_into(buf, 0, socket.MSG_DONTWAIT)})
        except OSError:
            break
        if len(read) > 2:
            break
    tx.sendto(MARKER, to)
    read.append(lab.res(rx.recv_into, buf, 0))
    return {"rcvbuf": rcvbuf, "datagram": OVERSIZED, "sends": sends, "read": read}


def observe(exp, socks):
    udp, receiver = observe_udp(socks)
    tcp, blocked, peeked = observe_tcp(socks)
    cuts = observe_cut(socks)
    big = observe_oversized(socks)
    exp.part("a", "vote", data(udp) == ["012", "567"] and udp[-1] == "would_block",
             {"reads": udp, "receiver": receiver})
    exp.part("b", "vote",
             data(tcp) == ["012", "345", "678", "9"] and len(tcp) > 4
             and tcp[4] == "would_block" and blocked,
             {"reads": tcp, "blocked_while_open": blocked, "queued_before_reading": peeked})
    cut_held = len(cuts) == 2 and cuts[0]["truncated"] and cuts[0]["real_len"] == 5 \
        and cuts[0]["bytes"] == "012" and cuts[1]["bytes"] == "567"
    exp.part("c", "vote", cut_held, {"reads": cuts})
    oversized_read = sum(1 for r in big["read"] if r == {"Ok": OVERSIZED})
    marker_read = bool(big["read"]) and big["read"][-1] == {"Ok": len(MARKER)}
    exp.part("d", "vote", marker_read and oversized_read == 0, {"oversized": big})


if __name__ == "__main__":
    lab.main(observe, CLAIM, TITLE)
