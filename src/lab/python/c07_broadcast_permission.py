#!/usr/bin/env python3
"""Claim 7 of socklab's lab, in Python: broadcast permission.

The article: broadcast: the sending socket must set SO_BROADCAST. In the peer pattern you cannot
bind a broadcast address, but in the connected pattern you can connect() to a broadcast address.

Two hosts only: as root on Linux this script creates two network namespaces joined by a veth
pair (a 198.51.100.1/24, b 198.51.100.2/24, a default route on veth-a so 255.255.255.255 has a
way out), and every broadcast stays inside them; they are deleted on any exit. Elsewhere every
part is skipped with the reason. Calls (as src/lab/c07_broadcast_permission.rs): sendto the
subnet broadcast and 255.255.255.255 with and without SO_BROADCAST (without: EACCES,
PermissionError in Python); bind to each broadcast address and use the socket as a peer; connect
to each with and without SO_BROADCAST, then send. A receiver in b says what arrived; a marker
datagram sent after the others (from the same CPU) proves what did not.
"""

import os
import socket

import _socklab_lab as lab

CLAIM = 7
TITLE = "broadcast permission"

A_IP, B_IP = "198.51.100.1", "198.51.100.2"
SUBNET_BCAST = "198.51.100.255"
RX_PORT, PEER_PORT, WITNESS_PORT, BOUND_PORT = 7000, 7001, 7002, 7003
MARKER = b"marker"
ROLES = (("a", "vote"), ("b", "vote"), ("c", "aside"), ("d", "vote"))


def pin_cpu():
    """Runs on one CPU from now on, so datagrams and the marker after them keep their order."""
    allowed = sorted(os.sched_getaffinity(0))
    if allowed:
        os.sched_setaffinity(0, {allowed[0]})


def send_marker(socks, to):
    s = socks.new()
    s.sendto(MARKER, to)


def read_until_marker(s, what):
    """Every datagram up to the marker and what was queued after it: [(payload, source)]."""
    got, draining = [], False
    for _ in range(128):
        try:
            data, frm = s.recvfrom(512, socket.MSG_DONTWAIT if draining else 0)
        except OSError:
            break
        got.append((data, frm[:2]))
        draining = draining or data == MARKER
    if not draining:
        raise RuntimeError("the marker did not reach %s" % what)
    return got


def source_of(got, tag):
    return next((frm for data, frm in got if data == tag.encode()), None)


def drain(s):
    out = []
    for _ in range(64):
        try:
            out.append(s.recv(512, socket.MSG_DONTWAIT))
        except OSError:
            break
    return out


def reply_reaches(socks, b, from_b, to, witness, target):
    with socks.netns.inside(b):
        try:
            from_b.sendto(b"reply", to)
        except OSError:
            pass  # an ICMP error from an earlier reply: an observation, not a failure
        send_marker(socks, (A_IP, WITNESS_PORT))
    read_until_marker(witness, "the witness")
    return b"reply" in drain(target)


def observe(exp, socks):
    why_not = lab.can_namespaces()
    if why_not is not None:
        for pid, role in ROLES:
            exp.not_run(pid, role, why_not)
        return
    a, b = socks.netns.pair("c07")
    lab.ip("-n", a, "route", "add", "default", "dev", "veth-a")
    with socks.netns.inside(b):
        rx = socks.udp_bound(("0.0.0.0", RX_PORT))
        peer = socks.udp_bound((B_IP, PEER_PORT))
    with socks.netns.inside(a):
        witness = socks.udp_bound(("0.0.0.0", WITNESS_PORT))
    rx_at = (B_IP, RX_PORT)
    dsts = [SUBNET_BCAST, "255.255.255.255"]
    sends, connects = [], []
    pin_cpu()
    with socks.netns.inside(a):
        for dst in dsts:
            for bc in (False, True):
                s = socks.new()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, int(bc))
                tag = "sendto %s:%d broadcast=%s" % (dst, RX_PORT, str(bc).lower())
                sends.append({"dst": dst, "broadcast": bc, "tag": tag,
                              "errno": lab.outcome(s.sendto, tag.encode(), (dst, RX_PORT))})
        for dst in dsts:
            for bc in (False, True):
                s = socks.new()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, int(bc))
                err = lab.outcome(s.connect, (dst, RX_PORT))
                tag = "connect %s:%d broadcast=%s" % (dst, RX_PORT, str(bc).lower())
                connects.append({"dst": dst, "broadcast": bc, "tag": tag, "sock": s,
                                 "connect_errno": err, "local": lab.local(s),
                                 "send_errno": lab.outcome(s.send, tag.encode()),
                                 "reply": None})
        send_marker(socks, rx_at)
    got = read_until_marker(rx, lab.show_addr(rx_at))
    for c in sends + connects:
        c["delivered"] = source_of(got, c["tag"]) is not None
    for c in connects:
        frm = source_of(got, c["tag"])
        if frm is not None:
            c["reply"] = reply_reaches(socks, b, rx, frm, witness, c["sock"])

    binds = []
    for ip_ in dsts:
        addr = (ip_, BOUND_PORT)
        case = {"addr": addr, "send_errno": None, "seen_from": None, "reply": None}
        with socks.netns.inside(a):
            s = socks.new()
            case["errno"] = lab.outcome(s.bind, addr)
            if case["errno"] is None:
                case["send_errno"] = lab.outcome(s.sendto, b"from a bound broadcast",
                                                 (B_IP, PEER_PORT)) or "ok"
                send_marker(socks, (B_IP, PEER_PORT))
        if case["send_errno"] is not None:
            pgot = read_until_marker(peer, "the peer")
            case["seen_from"] = pgot[0][1] if pgot else None
            if case["seen_from"] is not None:
                case["reply"] = reply_reaches(socks, b, peer, case["seen_from"], witness, s)
        binds.append(case)

    def w(bc):
        return "with" if bc else "without"

    send_lines = ["sendto %s %s SO_BROADCAST → %s%s" % (
        c["dst"], w(c["broadcast"]), c["errno"] or "ok", ", received" if c["delivered"] else "")
        for c in sends]
    must = bool(sends) and all(
        (c["errno"] is None and c["delivered"]) if c["broadcast"]
        else (c["errno"] is not None and not c["delivered"]) for c in sends)
    exp.part("a", "vote", must, {"sends": send_lines})

    bind_lines = ["bind %s → %s" % (lab.show_addr(c["addr"]), c["errno"] or "ok") for c in binds]
    exp.part("b", "vote", bool(binds) and all(c["errno"] is not None for c in binds),
             {"binds": bind_lines})

    peers = []
    for c in binds:
        at = lab.show_addr(c["addr"])
        if c["send_errno"] is None:
            peers.append("bound %s: bind failed, no peer" % at)
        elif c["send_errno"] != "ok":
            peers.append("bound %s: sendto → %s" % (at, c["send_errno"]))
        elif c["seen_from"] is None:
            peers.append("bound %s: sent, the peer got nothing" % at)
        else:
            peers.append("bound %s: the peer saw source %s; its reply %s" % (
                at, lab.show_addr(c["seen_from"]),
                "arrived" if c["reply"] else "did not arrive"))
    exp.part("c", "aside", bool(binds) and all(c["reply"] is not True for c in binds),
             {"peer_pattern": peers})

    connect_lines = ["connect %s %s SO_BROADCAST → %s (local %s), send → %s%s%s" % (
        c["dst"], w(c["broadcast"]), c["connect_errno"] or "ok", c["local"],
        c["send_errno"] or "ok", ", received" if c["delivered"] else "",
        {True: ", reply arrived", False: ", reply not delivered", None: ""}[c["reply"]])
        for c in connects]
    can = any(c["connect_errno"] is None and c["send_errno"] is None and c["delivered"]
              for c in connects)
    exp.part("d", "vote", can, {"connects": connect_lines})


if __name__ == "__main__":
    lab.main(observe, CLAIM, TITLE)
