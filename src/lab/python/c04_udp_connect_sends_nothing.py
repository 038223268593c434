#!/usr/bin/env python3
"""Claim 4 of socklab's lab, in Python: UDP connect() sends nothing.

The article: in pattern 3, connect does not really set up a connection; it performs operations
such as choosing the source IP and recording the destination address. Loopback only
(127.0.0.1).

Calls (as src/lab/c04_udp_connect_sends_nothing.rs): connect() to a UDP port nobody has open,
the frames captured on lo (an AF_PACKET socket, Linux) and the kernel counters that moved
(/proc/net/snmp, netstat, snmp6) between connect() and the first send, then the first send and
its frames; getsockname/getpeername; and the closed-port probe of claim 5 (imported from
c05_receiver_first.py), connected and unconnected. As root on Linux it all runs in a network
namespace of its own (created and removed here), whose loopback carries only this script's
packets, as in the lab; elsewhere part 4a is skipped with the reason.
"""

import contextlib
import socket
import struct

import _socklab_lab as lab
from c05_receiver_first import closed_port, closed_port_sends

CLAIM = 4
TITLE = "UDP connect() sends nothing"

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def counters():
    """Every counter of /proc/net/snmp, netstat and snmp6 as ``Group.Name`` → value."""
    out = {}
    for name in ("snmp", "netstat"):
        with open("/proc/self/net/" + name) as f:
            lines = f.read().splitlines()
        for head, values in zip(lines[0::2], lines[1::2]):
            h, v = head.split(), values.split()
            for key, val in zip(h[1:], v[1:]):
                out["%s.%s" % (h[0].rstrip(":"), key)] = int(val)
    try:
        with open("/proc/self/net/snmp6") as f:
            for line in f:
                w = line.split()
                if len(w) >= 2 and "6" in w[0] and w[1].lstrip("-").isdigit():
                    i = w[0].index("6") + 1
                    out["%s.%s" % (w[0][:i], w[0][i:])] = int(w[1])
    except OSError:
        pass
    return out


def delta(before, after):
    return {k: v - before.get(k, 0) for k, v in sorted(after.items()) if v != before.get(k, 0)}


def describe(frame):
    """A frame as the lab's wire line (IPv4 UDP and ICMP; None for anything else)."""
    if len(frame) < 34 or struct.unpack("!H", frame[12:14])[0] != 0x0800:
        return None
    ip_ = frame[14:]
    ihl = (ip_[0] & 0x0F) * 4
    src, dst = socket.inet_ntoa(ip_[12:16]), socket.inet_ntoa(ip_[16:20])
    body = ip_[ihl:]
    if ip_[9] == 17:
        sport, dport, length = struct.unpack("!HHH", body[:6])
        return "UDP %s:%d > %s:%d len %d" % (src, sport, dst, dport, length - 8)
    if ip_[9] == 1:
        return "ICMP %s > %s type %d code %d" % (src, dst, body[0], body[1])
    return None


def wire(cap):
    """The frames captured so far (each once: lo's outgoing copies are left out)."""
    lines = []
    for _ in range(1024):
        try:
            frame, addr = cap.recvfrom(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
        if addr[2] != PACKET_OUTGOING:
            line = describe(frame)
            if line is not None:
                lines.append(line)
    return lines


def observe_connect(socks, isolated):
    dest = ("127.0.0.1", closed_port(socks))
    s = socks.new()
    cap = None
    if isolated:
        cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        socks.open.append(cap)
        cap.bind(("lo", 0))
    before = counters() if isolated else {}
    connect = lab.res(s.connect, dest)
    during = wire(cap) if isolated else None
    moved = delta(before, counters()) if isolated else {}
    local, peer = lab.local(s), lab.show_addr(s.getpeername()[:2])
    first_send = lab.res(s.send, b"ping")
    after = wire(cap) if isolated else None
    return {"dest": lab.show_addr(dest), "connect": connect, "local": local, "peer": peer,
            "first_send": first_send, "wire_during_connect": during,
            "counters_during_connect": moved, "wire_after_send": after}


def observe(exp, socks):
    why_not = lab.can_namespaces()
    isolated = why_not is None
    where = socks.netns.inside(socks.netns.create("c04")) if isolated \
        else contextlib.nullcontext()
    with where:
        c = observe_connect(socks, isolated)
        connected = closed_port_sends(socks, "connected")
        unconnected = closed_port_sends(socks, "unconnected")
    if c["wire_during_connect"] is None:
        exp.not_run("a", "vote", why_not)
    elif not c["wire_after_send"]:
        exp.not_run("a", "vote", "inconclusive: the capture saw no packet even after the send")
    else:
        exp.part("a", "vote", not c["wire_during_connect"]
                 and not any("Out" in k for k in c["counters_during_connect"]), dict(c))
    local = c["local"]
    exp.part("b", "vote", "Ok" in c["connect"] and c["peer"] == c["dest"]
             and not local.startswith("0.0.0.0:") and not local.endswith(":0"),
             {k: c[k] for k in ("dest", "connect", "local", "peer")})
    exp.part("c", "aside", c["first_send"] == {"Ok": 4},
             {k: c[k] for k in ("dest", "first_send")})
    exp.part("d", "aside", connected["sends"] != unconnected["sends"]
             or connected["recv_after"] != unconnected["recv_after"],
             dict(connected, unconnected_control=unconnected))


if __name__ == "__main__":
    lab.main(observe, CLAIM, TITLE)
