#!/usr/bin/env python3
"""Claim 6 of socklab's lab, in Python: bind before send.

The article: a UDP socket that both sends and receives must bind before sending; sending first
binds it implicitly and a later bind() fails. Loopback only (127.0.0.1), runs anywhere.

Calls (as src/lab/c06_bind_before_send.rs): getsockname before and after the first sendto of
an unbound socket; bind() afterwards to 127.0.0.1:0, to the address it got, to 127.0.0.1 with
that port; the peer's reply to the implicitly chosen port; then bind-first, send both ways.
In Python a failing bind raises OSError: [Errno 22] Invalid argument (EINVAL) on Linux.
"""

import socket

import _socklab_lab as lab

CLAIM = 6
TITLE = "bind before send"


def port(addr_text):
    return int(addr_text.rsplit(":", 1)[1]) if addr_text != "none" else 0


def both_ways(peer, me, payload):
    """The peer reads ``payload``, replies to its source; returns (peer got it, reply came back)."""
    try:
        data, src = peer.recvfrom(64, socket.MSG_TRUNC)
    except OSError:
        return False, False
    if data != payload:
        return False, False
    try:
        peer.sendto(b"reply", src)
        _, frm = me.recvfrom(64, socket.MSG_TRUNC)
        back = frm == peer.getsockname()
    except OSError:
        back = False
    return True, back


def observe(exp, socks):
    peer = socks.udp_bound(("127.0.0.1", 0))
    peer_addr = peer.getsockname()

    # Send first: the implicit bind.
    first = socks.new()
    before = lab.local(first)
    first.sendto(b"send-first", peer_addr)
    after = lab.local(first)
    rebinds = []
    for host, p in [("127.0.0.1", 0), ("0.0.0.0", port(after)), ("127.0.0.1", port(after))]:
        err = lab.outcome(first.bind, (host, p))
        rebinds.append("bind %s → %s" % (lab.show_addr((host, p)), err or "ok"))
    reply_reached_implicit = both_ways(peer, first, b"send-first")[1]

    # Bind first, then send both ways.
    bound = socks.udp_bound(("127.0.0.1", 0))
    l0 = lab.local(bound)
    bound.sendto(b"bind-first", peer_addr)
    l1 = lab.local(bound)
    forward, back = both_ways(peer, bound, b"bind-first")

    base = {"getsockname_before_sendto": before, "getsockname_after_sendto": after}
    exp.part("a", "vote", port(before) == 0 and port(after) != 0, dict(base))
    exp.part("b", "vote", all(not r.endswith("→ ok") for r in rebinds),
             dict(base, rebinds=rebinds))
    exp.part("c", "vote", l0 != "none" and l0 == l1 and forward and back,
             dict(base, bound_after_bind=l0, bound_after_sendto=l1,
                  forward_delivered=forward, reply_delivered=back))
    exp.part("d", "aside", reply_reached_implicit,
             dict(base, reply_to_autobound_port_delivered=reply_reached_implicit))


if __name__ == "__main__":
    lab.main(observe, CLAIM, TITLE)
