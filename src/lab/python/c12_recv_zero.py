#!/usr/bin/env python3
"""Claim 12 of socklab's lab, in Python: what recv() == 0 means.

The article: recv() returning 0 means the connection is closed on TCP, but on UDP it means a
datagram with an empty payload arrived. Loopback only (127.0.0.1), runs anywhere.

Calls (as src/lab/c12_recv_zero.rs): TCP, the peer half-closes (shutdown SHUT_WR) on one
connection and closes on another, the reader's recv each time; UDP, an empty datagram read with
recv and with recvfrom_into(MSG_TRUNC) (real length, source), then a non-empty one; then a UDP
socket, unconnected and connected, shut down for reading. In Python, recv() returning 0 is b''.
"""

import select
import socket

import _socklab_lab as lab

CLAIM = 12
TITLE = "recv() == 0"

#: SO_RCVTIMEO of the shut-down sockets (seconds), as the lab's.
QUIET = 0.3


def observe_tcp(socks):
    reads = []
    for half in (True, False):
        _, client, server = socks.tcp_pair()
        if half:
            client.shutdown(socket.SHUT_WR)
        else:
            client.close()
        reads.append(lab.recv_once(server, 16))
    return reads


def observe_udp(socks):
    rx = socks.udp_bound()
    to = rx.getsockname()
    tx = socks.new()
    tx.sendto(b"", to)
    first = lab.recv_once(rx, 16)
    tx.sendto(b"", to)
    n, frm = rx.recvfrom_into(bytearray(16), 16, socket.MSG_TRUNC)
    empty = {"real_len": n, "from": lab.show_addr(frm[:2])}
    tx.sendto(b"after", to)
    nxt = lab.recv_once(rx, 16)
    return first, empty, nxt, lab.local(tx)


def observe_shut(socks):
    out = []
    for connected in (False, True):
        rx = socks.udp_bound()
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, lab.timeval(QUIET))
        to = rx.getsockname()
        tx = socks.new()
        tx.bind(("127.0.0.1", 0))
        if connected:
            rx.connect(tx.getsockname())
        tx.sendto(b"queued", to)
        shutdown = lab.outcome(rx.shutdown, socket.SHUT_RD) or "ok"
        reads = [lab.recv_once(rx, 16)]
        poll_readable = bool(select.select([rx], [], [], 0)[0])
        reads.append(lab.recv_once(rx, 16))
        tx.sendto(b"later", to)
        later = lab.recv_once(rx, 16)
        out.append({"connected": connected, "shutdown": shutdown, "reads": reads,
                    "poll_readable": poll_readable, "later": later})
    return out


def observe(exp, socks):
    tcp = observe_tcp(socks)
    first, empty, nxt, sender = observe_udp(socks)
    shut = observe_shut(socks)
    exp.part("a", "vote", tcp == ["eof", "eof"], {"reads_after_shutdown_wr_and_close": tcp})
    exp.part("b", "vote",
             first == "eof" and empty["real_len"] == 0 and nxt == {"data": "after"},
             {"recv_empty": first, "recvmsg_empty": empty, "recv_next": nxt, "sender": sender})
    zero_without_datagram = any(r == "eof" for s in shut for r in s["reads"] + [s["later"]])
    exp.part("c", "aside", zero_without_datagram, {"shut_rd": shut})


if __name__ == "__main__":
    lab.main(observe, CLAIM, TITLE)
