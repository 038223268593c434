#!/usr/bin/env python3
"""Claim 11 of socklab's lab, in Python: full receive buffer, drop or flow control.

The article: when the receive buffer is full, UDP drops what arrives, TCP's flow control stops
the sender. Loopback only (127.0.0.1); Linux (SO_MEMINFO, SO_RXQ_OVFL).

Calls (as src/lab/c11_full_buffer.rs): a UDP receiver with a 32 KiB SO_RCVBUF that does not read
is filled with 512 B datagrams until it counts a drop (the fill of claim 10, imported from
c10_buffer_bookkeeping.py); then a TCP connection (receiver SO_RCVBUF 16 KiB, sender SO_SNDBUF
128 KiB) whose sender writes a byte pattern without blocking until send() raises
BlockingIOError (EAGAIN), waits (at most 1 s) for the receiver's zero-window advertisement to be
counted, shuts down for writing, and the receiver reads and checks every byte. As root it runs
in a network namespace of its own (created and removed here) with an AF_PACKET capture of its
loopback, to count the receiver's segments with window 0; elsewhere 11c is skipped.
"""

import contextlib
import socket
import sys
import time

import _socklab_lab as lab
from c04_udp_connect_sends_nothing import ETH_P_ALL, PACKET_OUTGOING, counters
from c10_buffer_bookkeeping import FILL_RCVBUF, fill

CLAIM = 11
TITLE = "full receive buffer: drop or flow control"

UDP_PAYLOAD = 512
TCP_RCVBUF = 16 * 1024
TCP_SNDBUF = 128 * 1024
CHUNK = 16 * 1024
MAX_STREAM = 64 << 20
SETTLE = 1.0
PATTERN = bytes(i % 251 for i in range(CHUNK + 251 + 64 * 1024))


def pattern(start, n):
    return PATTERN[start % 251:start % 251 + n]


def write_until_stopped(client):
    client.setblocking(False)
    sent = 0
    while sent < MAX_STREAM:
        try:
            sent += client.send(pattern(sent, CHUNK))
        except BlockingIOError:
            return sent, True
    return sent, False


def read_and_check(server, expect):
    got, bad = 0, None
    while got <= expect + 64 * 1024:
        data = server.recv(64 * 1024)
        if not data:
            break
        if bad is None and data != pattern(got, len(data)):
            bad = got + next(i for i, (a, b) in enumerate(zip(data, pattern(got, len(data))))
                             if a != b)
        got += len(data)
    return got, bad


def zero_windows(cap, server):
    """Segments from ``server`` (ip, port) with a zero window field, captured so far."""
    n = 0
    for _ in range(100000):
        try:
            frame, addr = cap.recvfrom(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
        if addr[2] == PACKET_OUTGOING or frame[12:14] != b"\x08\x00" or frame[23] != 6:
            continue
        ihl = (frame[14] & 0x0F) * 4
        tcp = frame[14 + ihl:]
        src = (socket.inet_ntoa(frame[26:30]), int.from_bytes(tcp[0:2], "big"))
        if src == server and int.from_bytes(tcp[14:16], "big") == 0:
            n += 1
    return n


def observe(exp, socks):
    if not sys.platform.startswith("linux"):
        for pid, role in (("a", "vote"), ("b", "vote"), ("c", "aside"), ("d", "vote")):
            exp.not_run(pid, role, "needs Linux (SO_MEMINFO, SO_RXQ_OVFL)")
        return
    isolated = lab.can_namespaces() is None
    where = socks.netns.inside(socks.netns.create("c11")) if isolated \
        else contextlib.nullcontext()
    with where:
        u = fill(socks, UDP_PAYLOAD, FILL_RCVBUF)
        cap = None
        if isolated:
            cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            socks.open.append(cap)
            cap.bind(("lo", 0))
        before = counters() if isolated else None
        listener = socks.new(socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, TCP_RCVBUF)
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        client = socks.new(socket.SOCK_STREAM)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, TCP_SNDBUF)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
        socks.open.append(server)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, lab.timeval(lab.TIMEOUT))
        sent, stopped = write_until_stopped(client)
        adv = None
        if before is not None:
            name = "TcpExt.TCPToZeroWindowAdv"
            deadline = time.monotonic() + SETTLE
            while counters().get(name, 0) <= before.get(name, 0) \
                    and time.monotonic() < deadline:
                time.sleep(0.002)
        client.shutdown(socket.SHUT_WR)
        received, first_bad = read_and_check(server, sent)
        if before is not None:
            now = counters()
            adv = now.get("TcpExt.TCPToZeroWindowAdv", 0) \
                - before.get("TcpExt.TCPToZeroWindowAdv", 0)
        zeros = zero_windows(cap, server.getsockname()) if isolated else None
    lost = max(u["sent"] - u["received"], 0)
    agree = lost == u["drops"] and u["rxq_ovfl"] == u["drops"]
    exp.part("a", "vote", lost > 0 and agree, {"fill": u, "sent_minus_received": lost})
    stream = {"sent": sent, "stopped": stopped, "received": received, "first_bad": first_bad,
              "zero_windows": zeros}
    exp.part("b", "vote", stopped, {"stream": stream})
    if zeros is not None and adv is not None:
        exp.part("c", "aside", zeros > 0 or adv > 0, {"stream": stream})
    else:
        exp.not_run("c", "aside", lab.can_namespaces())
    intact = received == sent and first_bad is None
    exp.part("d", "vote", not intact, {"stream": stream})


if __name__ == "__main__":
    lab.main(observe, CLAIM, TITLE)
