#!/usr/bin/env python3
"""Claim 8 of socklab's lab, in Python: who receives a broadcast.

The article: an unbound sender shows 0.0.0.0 yet sends from the interface's address. Receivers
bound to their own address or to 127.0.0.1 get no broadcast; bound to 0.0.0.0 they get the
subnet broadcast and 255.255.255.255 but not 127.255.255.255: only 0.0.0.0 gets broadcasts, on
Linux too; SO_BINDTODEVICE was suggested as the way out.

Two hosts only: as root on Linux this script creates two network namespaces joined by a veth
pair (a 198.51.100.1/24, b 198.51.100.2/24, each with a default route on its veth), and every
broadcast stays inside them; they are deleted on any exit. Elsewhere every part is skipped with
the reason. Calls (as src/lab/c08_broadcast_reception.rs): eighteen receivers in b, each on a
port of its own (bound to 0.0.0.0, 198.51.100.2, 127.0.0.1, 198.51.100.255, 255.255.255.255,
127.255.255.255, each without SO_BINDTODEVICE, with veth-b, with lo; IP_PKTINFO gives each
datagram's destination); an unbound sender with SO_BROADCAST sends to 255.255.255.255, the
subnet broadcast and 127.255.255.255 on every receiver's port, first from b, then from a. A
unicast marker to a witness in b, sent after them from the same CPU, proves what did not
arrive; an AF_PACKET capture in b says whether a's datagrams reached b at all. Then a host with
two interfaces (three namespaces in a star): which one a 255.255.255.255 broadcast leaves by,
with no default route and with one, unbound, bound to one interface's address, with
SO_BINDTODEVICE; captures in the two neighbours answer.
"""

import socket
import struct

import _socklab_lab as lab
from c07_broadcast_permission import MARKER, pin_cpu

CLAIM = 8
TITLE = "who receives a broadcast"

A_IP, B_IP = "198.51.100.1", "198.51.100.2"
SUBNET_BCAST, LIMITED, LOOPBACK_BCAST = "198.51.100.255", "255.255.255.255", "127.255.255.255"
LINK_IF = "veth-b"
BASE_PORT, WITNESS_PORT, EGRESS_PORT = 20000, 20100, 20200
#: Datagrams read from one socket at most, as the lab's MAX_READS.
MAX_READS = 64
#: IP_PKTINFO and SO_BINDTODEVICE (ip(7), socket(7)); Linux.
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
ROLES = (("a", "vote"), ("b", "vote"), ("c", "vote"), ("d", "vote"), ("e", "vote"),
         ("f", "aside"), ("g", "aside"))

BOUND = (("0.0.0.0", ""), (B_IP, " (own IP)"), ("127.0.0.1", ""), (SUBNET_BCAST, ""),
         (LIMITED, ""), (LOOPBACK_BCAST, ""))
DEVICES = (None, LINK_IF, "lo")
ROWS = [(ip_, note, dev) for ip_, note in BOUND for dev in DEVICES]
DSTS = (LIMITED, SUBNET_BCAST, LOOPBACK_BCAST)
COLS = [(dst, origin) for origin in ("same host", "other host") for dst in DSTS]


def row_label(row):
    ip_, note, dev = row
    return ip_ + note + (" + SO_BINDTODEVICE " + dev if dev else "")


def col_label(col):
    return "%s (%s)" % col


def recv_datagram(s, flags):
    """One recvmsg(2) with IP_PKTINFO: (payload, source, destination address or "?")."""
    data, anc, _, frm = s.recvmsg(512, socket.CMSG_SPACE(12), flags)
    to = "?"
    for level, kind, value in anc:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(value) >= 12:
            to = socket.inet_ntoa(value[8:12])  # ipi_addr: the header's destination
    return data, frm[:2], to


def drain(s):
    out = []
    for _ in range(MAX_READS):
        try:
            out.append(recv_datagram(s, socket.MSG_DONTWAIT))
        except OSError:
            break
    return out


def read_until_marker(s, what):
    """Every datagram but the marker up to the marker (and what was queued after it)."""
    got = []
    for _ in range(MAX_READS):
        try:
            g = recv_datagram(s, 0)
        except OSError:
            break
        got.append(g)
        if g[0] == MARKER:
            got += drain(s)
            break
    if not any(g[0] == MARKER for g in got):
        raise RuntimeError("the marker to %s did not arrive" % what)
    return [g for g in got if g[0] != MARKER]


def send_marker(socks, to):
    s = socks.new()
    for addr in to:
        s.sendto(MARKER, addr)


def open_receiver(socks, row, port):
    """socket, IP_PKTINFO, SO_BINDTODEVICE (if any), bind; a failed step is the cell's text."""
    ip_, _, dev = row
    step = "socket"
    try:
        s = socks.new()
        step = "setsockopt"
        s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        if dev:
            s.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, dev.encode())
        step = "bind"
        s.bind((ip_, port))
        return s, None
    except OSError as e:
        return None, "%s failed: %s" % (step, lab.errname(e))


def send_round(socks, round_, rows):
    pin_cpu()
    s = socks.new()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    errs = []
    for ci, col in round_:
        for r in range(rows):
            err = lab.outcome(s.sendto, col_label(col).encode(), (col[0], BASE_PORT + r))
            if err is not None:
                errs.append(((r, ci), err))
    local = s.getsockname()[:2]
    send_marker(socks, [(B_IP, WITNESS_PORT)])
    return local, errs


def ip_key(addr):
    return socket.inet_aton(addr[0]), addr[1]


def matrix(socks):
    a, b = socks.netns.pair("c08")
    for ns, dev in ((a, "veth-a"), (b, LINK_IF)):
        lab.ip("-n", ns, "route", "add", "default", "dev", dev)
    with socks.netns.inside(b):
        cap = lab.Capture(socks)
        receivers = [open_receiver(socks, row, BASE_PORT + i) for i, row in enumerate(ROWS)]
        witness = socks.udp_bound(("0.0.0.0", WITNESS_PORT))
    cells = [["no" if rx else err] * len(COLS) for rx, err in receivers]
    reached = [False] * len(COLS)
    deliveries, senders = [], []
    for origin, host in (("same host", b), ("other host", a)):
        round_ = [(ci, c) for ci, c in enumerate(COLS) if c[1] == origin]
        with socks.netns.inside(host):
            local, errs = send_round(socks, round_, len(ROWS))
        read_until_marker(witness, "the witness")
        for (r, c), e in errs:
            if cells[r][c] == "no":
                cells[r][c] = "send failed: %s" % e
        seen_from = []
        for ri, (rx, _) in enumerate(receivers):
            if rx is None:
                continue
            for payload, frm, to in drain(rx):
                ci = next((i for i, c in round_ if payload == col_label(c).encode()), None)
                if ci is None:
                    continue
                cells[ri][ci] = "yes"
                if frm not in seen_from:
                    seen_from.append(frm)
                deliveries.append("%s ← %s: from %s to %s" % (
                    row_label(ROWS[ri]), col_label(COLS[ci]), lab.show_addr(frm), to))
        seen_from.sort(key=ip_key)
        pat = ":%d >" % local[1]
        from_sender = [w for w in cap.lines() if pat in w]
        # The control: a datagram sent on the receivers' host is there; one from the other
        # host must be seen arriving in the receivers' host's capture.
        for ci, c in round_:
            reached[ci] = origin == "same host" or any("> %s:" % c[0] in w for w in from_sender)
        senders.append("sender %s: getsockname %s, receivers saw %s" % (
            "on b" if origin == "same host" else "on a", lab.show_addr(local),
            " ".join(lab.show_addr(f) for f in seen_from)))
    shown = [["yes" if r else "no" for r in reached]] + [
        ["unreached" if cell == "no" and not reached[ci] else cell
         for ci, cell in enumerate(row)] for row in cells]
    m = {"title": "receiver bound to",
         "rows": ["(control) reached the receivers' host"] + [row_label(r) for r in ROWS],
         "cols": [col_label(c) for c in COLS], "cells": shown}
    return m, cells, reached, deliveries, senders


def star(socks):
    """A centre ``x`` with veth-b 198.51.100.1/25 to leaf 0 (veth-x .2/25) and veth-c
    198.51.100.129/25 to leaf 1 (veth-x .130/25), as the lab's ``Lab::star``."""
    x = socks.netns.create("c08e-x")
    leaves = []
    for i, (cif, ccidr, lcidr) in enumerate((("veth-b", "198.51.100.1/25", "198.51.100.2/25"),
                                            ("veth-c", "198.51.100.129/25",
                                             "198.51.100.130/25"))):
        leaf = socks.netns.create("c08e-%d" % i)
        lab.ip("-n", x, "link", "add", cif, "type", "veth", "peer", "name", "veth-x",
               "netns", leaf)
        for ns, ifname, cidr in ((x, cif, ccidr), (leaf, "veth-x", lcidr)):
            lab.ip("-n", ns, "addr", "add", cidr, "dev", ifname)
            lab.ip("-n", ns, "link", "set", ifname, "up")
        leaves.append((leaf, cif))
        lab.wait_up(x, cif)
        lab.wait_up(leaf, "veth-x")
    return x, leaves


def egress(socks):
    c_ip = "198.51.100.129"
    x, leaves = star(socks)
    caps, rxs = [], []
    for leaf, _ in leaves:
        with socks.netns.inside(leaf):
            caps.append(lab.Capture(socks))
            rxs.append(socks.udp_bound(("0.0.0.0", EGRESS_PORT)))
    cases = [("no default route, unbound", False, None, None),
             ("no default route, bound to 198.51.100.129 (veth-c's address)", False, c_ip, None),
             ("no default route, SO_BINDTODEVICE veth-c", False, None, "veth-c"),
             ("default route via veth-b, unbound", True, None, None),
             ("default route via veth-b, bound to 198.51.100.129 (veth-c's address)", True,
              c_ip, None),
             ("default route via veth-b, SO_BINDTODEVICE veth-c", True, None, "veth-c")]
    out, routed = [], False
    for case, default_route, bind_ip, dev in cases:
        if default_route and not routed:
            lab.ip("-n", x, "route", "add", "default", "dev", "veth-b")
            routed = True
        with socks.netns.inside(x):
            pin_cpu()
            s = socks.new()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            if bind_ip:
                s.bind((bind_ip, 0))
            if dev:
                s.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, dev.encode())
            err = lab.outcome(s.sendto, case.encode(), (LIMITED, EGRESS_PORT))
            local = s.getsockname()[:2]
        out.append({"case": case, "default_route": default_route,
                    "plain": not bind_ip and not dev, "errno": err, "local": local,
                    "reached": [], "captured": []})
    with socks.netns.inside(x):
        pin_cpu()
        send_marker(socks, [(B_IP, EGRESS_PORT), ("198.51.100.130", EGRESS_PORT)])
    for (leaf, cif), rx, cap in zip(leaves, rxs, caps):
        got = read_until_marker(rx, "the receiver behind %s" % cif)
        wire = cap.lines()
        for e in out:
            if any(g[0] == e["case"].encode() for g in got):
                e["reached"].append(cif)
            pat = ":%d > %s:%d" % (e["local"][1], LIMITED, EGRESS_PORT)
            if any(pat in w for w in wire):
                e["captured"].append(cif)
    return out


def observe(exp, socks):
    why_not = lab.can_namespaces()
    if why_not is not None:
        for pid, role in ROLES:
            exp.not_run(pid, role, why_not)
        return
    m, cells, reached, deliveries, senders = matrix(socks)
    eg = egress(socks)

    def cell(ip_, dev, dst, origin):
        r = next(i for i, row in enumerate(ROWS) if row[0] == ip_ and row[2] == dev)
        return cells[r][COLS.index((dst, origin))]

    def all_(ip_, dev, dsts, origins, want):
        counted = [(d, o) for d in dsts for o in origins if reached[COLS.index((d, o))]]
        return bool(counted) and all(cell(ip_, dev, d, o) == want for d, o in counted)

    both = ("same host", "other host")
    facts = {"matrix": m}
    held_a = bool(senders)
    for line in senders:
        local = line.split("getsockname ", 1)[1].split(",", 1)[0]
        saw = line.split("receivers saw ", 1)[1].split()
        port = local.rsplit(":", 1)[1]
        held_a = held_a and local.startswith("0.0.0.0:") and port != "0" and bool(saw) and all(
            not s.startswith("0.0.0.0:") and s.rsplit(":", 1)[1] == port for s in saw)
    exp.part("a", "vote", held_a, dict(facts, senders=senders))
    exp.part("b", "vote", all_(B_IP, None, (LIMITED, SUBNET_BCAST), both, "no"), facts)
    exp.part("c", "vote", all_("127.0.0.1", None, (LIMITED, LOOPBACK_BCAST), both, "no"), facts)
    exp.part("d", "vote", all_("0.0.0.0", None, (LIMITED, SUBNET_BCAST), both, "yes")
             and all_("0.0.0.0", None, (LOOPBACK_BCAST,), both, "no"), facts)
    others = [r for r, row in zip(ROWS, cells) if r[0] != "0.0.0.0" and "yes" in row]
    any_yes = any("yes" in row for row in cells)
    exp.part("e", "vote", any_yes and not others, dict(facts, deliveries=deliveries))
    link_ok = all_("0.0.0.0", LINK_IF, (LIMITED, SUBNET_BCAST), ("other host",), "yes") \
        and all_("0.0.0.0", LINK_IF, (LOOPBACK_BCAST,), both, "no")
    lo_ok = all_("0.0.0.0", "lo", (LIMITED, SUBNET_BCAST), ("other host",), "no")
    exp.part("f", "aside", link_ok and lo_ok, facts)
    lines = ["%s: sendto → %s, left by %s" % (e["case"], e["errno"] or "ok",
                                             " and ".join(e["captured"]) or "none") for e in eg]

    def interfaces(e):
        return sorted(set(e["captured"] + e["reached"]))
    routed_plain = next((e for e in eg if e["default_route"] and e["plain"]), None)
    plain_one = routed_plain is not None and routed_plain["errno"] is None \
        and len(interfaces(routed_plain)) == 1
    chosen = [e for e in eg if not e["plain"] and e["errno"] is None]
    sender_chose = bool(chosen) and all(interfaces(e) == ["veth-c"] for e in chosen)
    exp.part("g", "aside", plain_one and sender_chose, {"cases": lines})


if __name__ == "__main__":
    lab.main(observe, CLAIM, TITLE)
