#!/usr/bin/env python3
"""Claim 10 of socklab's lab, in Python: SO_RCVBUF/SO_SNDBUF include bookkeeping.

The article: SO_RCVBUF and SO_SNDBUF can be set, but their size is not all payload. Linux only
(net.core.rmem_max from /proc/sys, SO_MEMINFO, SO_RXQ_OVFL); loopback (127.0.0.1).

Calls (as src/lab/c10_buffer_bookkeeping.rs): each size set with setsockopt and read back with
getsockopt on a fresh UDP socket (1, 32 KiB, twice rmem_max / wmem_max); then a receiver with a
32 KiB SO_RCVBUF that does not read is sent datagrams of 1, 64 and 1472 bytes until
getsockopt(SO_MEMINFO) counts a drop, its rmem_alloc is what the datagrams were charged, and a
last datagram's SO_RXQ_OVFL control message says how many were dropped. As root it runs in a
network namespace of its own (created and removed here) so that the sysctls are the defaults
of a fresh namespace, as in the lab.
"""

import contextlib
import socket
import struct
import sys

import _socklab_lab as lab

CLAIM = 10
TITLE = "SO_RCVBUF/SO_SNDBUF include bookkeeping"

FILL_RCVBUF = 32 * 1024
PAYLOADS = (1, 64, 1472)
MAX_SENDS = 70000
SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55)
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)
#: SK_MEMINFO_* indexes (linux/sock_diag.h) and how many there are.
RMEM_ALLOC, DROPS, VARS = 0, 8, 9


def sysctl(name):
    with open("/proc/sys/net/core/" + name) as f:
        return int(f.read().strip())


def meminfo(s):
    raw = s.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 4 * VARS)
    return struct.unpack("%dI" % VARS, raw[:4 * VARS])


def applied(option, ask):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        opt = getattr(socket, option)
        s.setsockopt(socket.SOL_SOCKET, opt, ask)
        return {"option": option, "asked": ask,
                "applied": s.getsockopt(socket.SOL_SOCKET, opt)}
    finally:
        s.close()


def fill(socks, payload, ask):
    rx = socks.udp_bound()
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, ask)
    rcvbuf = rx.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    rx.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
    to = rx.getsockname()
    tx = socks.new()
    limit = min(rcvbuf // max(payload, 1) + 64, MAX_SENDS)
    data = b"x" * payload
    sent = 0
    while sent < limit:
        tx.sendto(data, to)
        sent += 1
        if meminfo(rx)[DROPS] > 0:
            break
    full = meminfo(rx)
    received = 0
    while received < sent:
        try:
            rx.recv(max(payload, 1), socket.MSG_DONTWAIT)
        except OSError:
            break
        received += 1
    tx.sendto(b"after", to)
    _, anc, _, _ = rx.recvmsg(max(payload, 1), socket.CMSG_SPACE(4))
    ovfl = next((struct.unpack("I", d[:4])[0] for level, kind, d in anc
                 if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL), None)
    return {"payload": payload, "rcvbuf": rcvbuf, "sent": sent,
            "charged_bytes": full[RMEM_ALLOC], "received": received, "drops": full[DROPS],
            "rxq_ovfl": ovfl}


def observe(exp, socks):
    if not sys.platform.startswith("linux"):
        for pid in "abc":
            exp.not_run(pid, "vote", "needs Linux (/proc/sys/net/core, SO_MEMINFO, SO_RXQ_OVFL)")
        return
    private = lab.can_namespaces() is None
    where = socks.netns.inside(socks.netns.create("c10")) if private \
        else contextlib.nullcontext()
    with where:
        rmem_max, wmem_max = sysctl("rmem_max"), sysctl("wmem_max")
        s = socks.new()
        defaults = (s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
                    s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))
        sizes = [applied("SO_RCVBUF", a) for a in (1, FILL_RCVBUF, 2 * rmem_max)]
        sizes += [applied("SO_SNDBUF", a) for a in (1, FILL_RCVBUF, 2 * wmem_max)]
        fills = [fill(socks, p, FILL_RCVBUF) for p in PAYLOADS]

    def default_of(a):
        return defaults[0] if a["option"] == "SO_RCVBUF" else defaults[1]

    ordinary = [a for a in sizes if a["asked"] == FILL_RCVBUF]
    settable = bool(ordinary) and all(
        a["applied"] != default_of(a) and a["applied"] >= a["asked"] for a in ordinary)
    grown = bool(ordinary) and all(a["applied"] > a["asked"] for a in ordinary)
    set_facts = {"rmem_max": rmem_max, "wmem_max": wmem_max, "default_rcvbuf": defaults[0],
                 "default_sndbuf": defaults[1], "applied": sizes}
    exp.part("a", "vote", settable, set_facts)
    exp.part("b", "vote", grown, dict(set_facts))
    filled = bool(fills) and all(f["drops"] > 0 for f in fills)
    below = filled and all(f["received"] * f["payload"] < f["rcvbuf"] for f in fills)
    exp.part("c", "vote", below, {"fills": fills})


if __name__ == "__main__":
    lab.main(observe, CLAIM, TITLE)
