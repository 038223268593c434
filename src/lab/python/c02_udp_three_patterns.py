#!/usr/bin/env python3
"""Claim 2 of socklab's lab, in Python: UDP's three patterns; send() needs connect().

The article: UDP has three patterns: send/receive (only the receiver binds), peers (both bind),
connected (one connects, one binds); only a connected UDP socket can use send() instead of
sendto(). Loopback only (127.0.0.1), runs anywhere.

Calls (as src/lab/c02_udp_three_patterns.rs): each pattern's sendto/send and recvfrom; send()
on an unconnected and on a connected socket (EDESTADDRREQ: OSError: [Errno 89] Destination
address required in Python); the bound side of pattern 3 calling send(); a stranger and then
the peer sending to a connected socket and to an unconnected control, read until the peer's
datagram and drained with MSG_DONTWAIT (BlockingIOError ends the drain: EAGAIN).
"""

import socket

import _socklab_lab as lab

CLAIM = 2
TITLE = "UDP's three patterns; send() needs connect()"

#: Datagrams read from one socket at most, as the lab's.
MAX_READS = 64
LO = ("127.0.0.1", 0)


def recv_text(s, flags=0):
    """recvfrom as the lab's fact: ``{"Ok": [text, source]}`` or ``{"Err": "ERRNO"}``."""
    try:
        data, frm = s.recvfrom(512, flags)
    except OSError as e:
        return {"Err": lab.errname(e)}
    return {"Ok": [data.decode("utf-8", "replace"), lab.show_addr(frm[:2])]}


def exchange(sent, received, addresses):
    return {"sent": sent, "received": received, "addresses": addresses}


def worked(x):
    return len(x["sent"]) == len(x["received"]) and all(
        s == {"Ok": len(p)} and "Ok" in r and r["Ok"][0] == p
        for (p, s), r in zip(x["sent"], x["received"]))


def pattern_a(socks):
    rx = socks.udp_bound(LO)
    to = rx.getsockname()
    tx = socks.new()
    sent = [["a", lab.res(tx.sendto, b"a", to)]]
    received = [recv_text(rx)]
    return exchange(sent, received, [["receiver", lab.local(rx)], ["sender", lab.local(tx)]])


def pattern_b(socks):
    p1, p2 = socks.udp_bound(LO), socks.udp_bound(LO)
    a1, a2 = p1.getsockname(), p2.getsockname()
    sent = [["b1", lab.res(p1.sendto, b"b1", a2)], ["b2", lab.res(p2.sendto, b"b2", a1)]]
    received = [recv_text(p2), recv_text(p1)]
    return exchange(sent, received,
                    [["peer 1", lab.show_addr(a1)], ["peer 2", lab.show_addr(a2)]])


def pattern_c(socks):
    srv = socks.udp_bound(LO)
    to = srv.getsockname()
    cli = socks.new()
    cli.connect(to)
    sent = [["c1", lab.res(cli.send, b"c1")]]
    first = recv_text(srv)
    if "Ok" in first:
        host, port = first["Ok"][1].rsplit(":", 1)
        reply = lab.res(srv.sendto, b"c2", (host, int(port)))
    else:
        reply = {"Err": "no source to answer"}
    sent.append(["c2", reply])
    received = [first, recv_text(cli)]
    return exchange(sent, received,
                    [["bound side", lab.show_addr(to)], ["connected side", lab.local(cli)]])


def bound_side_send(socks):
    srv = socks.udp_bound(LO)
    to = srv.getsockname()
    cli = socks.new()
    cli.connect(to)
    cli.send(b"f1")
    got = recv_text(srv)
    last_from = got["Ok"][1] if "Ok" in got else None
    return {"bound": lab.show_addr(to), "last_from": last_from, "send": lab.res(srv.send, b"f2")}


def send_unconnected(socks):
    rx = socks.udp_bound(LO)
    to = rx.getsockname()
    u = socks.new()
    unconnected_send = lab.res(u.send, b"d")
    c = socks.new()
    c.connect(to)
    return {"unconnected_send": unconnected_send, "connected_send": lab.res(c.send, b"d")}


def read_through(s, last):
    """Receives (bounded by SO_RCVTIMEO) until ``last`` arrives, then drains what else is queued;
    returns the payloads and the errno that ended it."""
    got = []
    draining = False
    for _ in range(2 * MAX_READS):
        try:
            data = s.recv(512, socket.MSG_DONTWAIT if draining else 0)
        except OSError as e:
            return got, lab.errname(e)
        got.append(data.decode("utf-8", "replace"))
        draining = draining or data == last
    return got, "more than %d datagrams" % MAX_READS


def filter_(socks, connected):
    peer = socks.udp_bound(LO)
    me = socks.udp_bound(LO)
    my_addr = me.getsockname()
    if connected:
        me.connect(peer.getsockname())
    stranger = socks.new()
    stranger.sendto(b"stranger", my_addr)
    peer.sendto(b"peer", my_addr)
    received, drain_end = read_through(me, b"peer")
    return {"connected": connected, "received": received, "drain_end": drain_end}


def observe(exp, socks):
    a, b, c = pattern_a(socks), pattern_b(socks), pattern_c(socks)
    bs = bound_side_send(socks)
    d = send_unconnected(socks)
    conn, bound = filter_(socks, True), filter_(socks, False)
    exp.part("a", "vote", worked(a), a)
    exp.part("b", "vote", worked(b), b)
    exp.part("c", "vote", worked(c), c)
    exp.part("d", "vote", "Err" in d["unconnected_send"] and "Ok" in d["connected_send"], d)
    exp.part("f", "vote", "Ok" in bs["send"], bs)
    conclusive = "stranger" in bound["received"] and "peer" in conn["received"] \
        and conn["drain_end"] == "EAGAIN" and bound["drain_end"] == "EAGAIN"
    if conclusive:
        exp.part("e", "aside", "stranger" not in conn["received"],
                 dict(conn, control_bound_socket=bound))
    else:
        exp.not_run("e", "aside", "inconclusive: the unconnected control socket did not receive "
                    "the stranger's datagram, or a queue did not drain")


if __name__ == "__main__":
    lab.main(observe, CLAIM, TITLE)
