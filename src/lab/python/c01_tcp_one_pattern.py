#!/usr/bin/env python3
"""Claim 1 of socklab's lab, in Python: TCP's one pattern; sendto() on TCP.

The article: TCP has one client/server pattern; sendto() with an address on a connected TCP
socket is accepted on some platforms, but the address is ignored.

Calls (as src/lab/c01_tcp_one_pattern.rs), on 127.0.0.1: the pattern (server socket,
setsockopt SO_REUSEADDR, bind, listen, accept; client socket, connect; then "hello" and
"world"), each call written down as it is made (the lab reads them from its trace; the lab's
own SO_RCVTIMEO is left out, as there); connect() to a port bound but not listening, and a
socket connecting to its own address; sendto() with another listener's address on a connected
socket (where the bytes go, whether the other listener gets a connection or a SYN); sendto()
with an address on an unconnected socket (Linux: EPIPE, BrokenPipeError in Python, which
ignores SIGPIPE).

Two hosts, as root on Linux only: a TCP simultaneous open (RFC 793 §3.4) between two network
namespaces joined by a veth pair (198.51.100.1 and .2), created and removed here: two bound
sockets connect to each other, neither listens. Host b ignores ARP (arp_ignore=8) until its own
connect, so a's SYN waits in a's neighbour queue and crosses b's; an AF_PACKET capture at b
counts the bare SYNs. As root the loopback parts run in a namespace of their own too, whose
capture shows no SYN towards the other listener; elsewhere 1b is skipped and ``other_syns`` is
null, as in the lab.
"""

import contextlib
import errno
import select
import socket

import _socklab_lab as lab

CLAIM = 1
TITLE = "TCP's one pattern; sendto() on TCP"

#: The ports of the simultaneous open, one per host.
SIM_PORTS = (40001, 40002)
PAYLOAD = b"via-sendto"


class Calls:
    """The calls made on some sockets, as the lab lists them from its trace: ``call``, or
    ``call=ERRNO`` for a call that failed (the exception is raised on)."""

    def __init__(self):
        self.made = []

    def __call__(self, name, fn, *args):
        try:
            value = fn(*args)
        except OSError as e:
            self.made.append("%s=%s" % (name, lab.errname(e)))
            raise
        self.made.append(name)
        return value


def read_upto(s, n, calls=None):
    """Up to ``n`` bytes of a stream, one recv(2) at a time (each bounded by SO_RCVTIMEO)."""
    got = b""
    while len(got) < n:
        try:
            data = calls("recv", s.recv, 256) if calls else s.recv(256)
        except OSError:
            break
        if not data:
            break
        got += data
    return got.decode("utf-8", "replace")


def listener(socks, calls=None):
    """A listener on 127.0.0.1 (SO_REUSEADDR, port chosen by the kernel) and its address."""
    rec = calls or (lambda name, fn, *args: fn(*args))
    l = socks.new(socket.SOCK_STREAM)
    if calls:
        calls.made.append("socket")
    rec("setsockopt", l.setsockopt, socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    rec("bind", l.bind, ("127.0.0.1", 0))
    rec("listen", l.listen, 8)
    return l, l.getsockname()[:2]


def accept_now(l):
    """accept() without blocking: {"Err": "EAGAIN"} when no connection is queued."""
    l.setblocking(False)
    r = lab.res(l.accept)
    return {"Ok": None} if "Ok" in r else r


def pattern(socks):
    server, client = Calls(), Calls()
    l, addr = listener(socks, server)
    c = socks.new(socket.SOCK_STREAM)
    client.made.append("socket")
    client("connect", c.connect, addr)
    conn, _ = server("accept", l.accept)
    socks.open.append(conn)
    client("send", c.send, b"hello")
    server_got = read_upto(conn, 5, server)
    server("send", conn.send, b"world")
    client_got = read_upto(c, 5, client)
    return {"server_calls": server.made, "client_calls": client.made,
            "server_got": server_got, "client_got": client_got}


def finish_connect(s):
    """The end of a non-blocking connect(2): POLLOUT within the lab's timeout, then SO_ERROR."""
    if not select.select([], [s], [], lab.TIMEOUT)[1]:
        return {"Err": "ETIMEDOUT"}
    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        return {"Err": lab.errname(OSError(err, ""))}
    return {"Ok": None}


def start_connect(s, to):
    s.setblocking(False)
    err = s.connect_ex(to)
    if err not in (0, errno.EINPROGRESS):
        return {"Err": lab.errname(OSError(err, ""))}
    return None


def simultaneous_open(socks, a, b):
    calls = Calls()
    with socks.netns.inside(b):
        for conf in ("all", "veth-b"):
            with open("/proc/sys/net/ipv4/conf/%s/arp_ignore" % conf, "w") as f:
                f.write("8")
    addr_a, addr_b = ("198.51.100.1", SIM_PORTS[0]), ("198.51.100.2", SIM_PORTS[1])
    with socks.netns.inside(a):
        sa = socks.new(socket.SOCK_STREAM)
    calls.made += ["socket", "setsockopt"]
    calls("bind", sa.bind, addr_a)
    with socks.netns.inside(b):
        sb = socks.new(socket.SOCK_STREAM)
        cap = lab.Capture(socks)
    calls.made += ["socket", "setsockopt"]
    calls("bind", sb.bind, addr_b)
    a_connect = start_connect(sa, addr_b)
    # b connects once a is in SYN-SENT (its SYN waiting for ARP).
    with socks.netns.inside(a):
        lab.poll_until(lab.TIMEOUT, lambda: lab.ss("-tn", "state", "syn-sent",
                                                   "sport = :%d" % SIM_PORTS[0]), bool)
    b_connect = start_connect(sb, addr_a)
    a_connect = a_connect or finish_connect(sa)
    b_connect = b_connect or finish_connect(sb)
    calls.made += ["connect=%s" % r["Err"] if "Err" in r else "connect"
                   for r in (a_connect, b_connect)]
    a_got = b_got = ""
    if "Ok" in a_connect and "Ok" in b_connect:
        sa.setblocking(True)
        sb.setblocking(True)
        calls("send", sa.send, b"from-a")
        calls("send", sb.send, b"from-b")
        a_got = read_upto(sa, 6, calls)
        b_got = read_upto(sb, 6, calls)
    bare_syns = sum(1 for line in cap.lines() if line.startswith("TCP ") and "[SYN]" in line)
    return {"a": lab.show_addr(addr_a), "b": lab.show_addr(addr_b), "a_connect": a_connect,
            "b_connect": b_connect, "calls": calls.made, "a_got": a_got, "b_got": b_got,
            "bare_syns": bare_syns}


def no_listener(socks):
    bound = socks.new(socket.SOCK_STREAM)
    bound.bind(("127.0.0.1", 0))
    c = socks.new(socket.SOCK_STREAM)
    refused = lab.res(c.connect, bound.getsockname())
    me = socks.new(socket.SOCK_STREAM)
    me.bind(("127.0.0.1", 0))
    self_connect = lab.res(me.connect, me.getsockname())
    return {"connect_to_bound_not_listening": refused, "self_connect": self_connect}


def sendto_connected(socks, isolated):
    l, peer = listener(socks)
    other_l, other = listener(socks)
    c = socks.new(socket.SOCK_STREAM)
    c.connect(peer)
    conn, _ = l.accept()
    socks.open.append(conn)
    cap = lab.Capture(socks) if isolated else None
    sendto = lab.res(c.sendto, PAYLOAD, other)
    peer_got = read_upto(conn, len(PAYLOAD))
    other_accept = accept_now(other_l)
    syn_to = "> %s [SYN]" % lab.show_addr(other)
    other_syns = sum(1 for line in cap.lines() if syn_to in line) if cap else None
    return {"peer": lab.show_addr(peer), "other": lab.show_addr(other), "sendto": sendto,
            "peer_got": peer_got, "other_accept": other_accept, "other_syns": other_syns}


def sendto_unconnected(socks):
    l, target = listener(socks)
    s = socks.new(socket.SOCK_STREAM)
    sendto = lab.res(s.sendto, PAYLOAD, target)
    return {"target": lab.show_addr(target), "sendto": sendto, "target_accept": accept_now(l)}


def observe(exp, socks):
    why_not = lab.can_namespaces()
    isolated = why_not is None
    sim = simultaneous_open(socks, *socks.netns.pair("c01")) if isolated else None
    where = socks.netns.inside(socks.netns.create("c01")) if isolated \
        else contextlib.nullcontext()
    with where:
        p = pattern(socks)
        n = no_listener(socks)
        c = sendto_connected(socks, isolated)
        u = sendto_unconnected(socks)

    def all_ok(calls):
        return all("=" not in x for x in calls)

    server_ok = all_ok(p["server_calls"]) and all(
        x in p["server_calls"] for x in ("socket", "setsockopt", "bind", "listen", "accept"))
    client_ok = all_ok(p["client_calls"]) and "connect" in p["client_calls"]
    exchanged = p["server_got"] == "hello" and p["client_got"] == "world"
    exp.part("a", "vote", server_ok and client_ok and exchanged, p)
    if sim is None:
        exp.not_run("b", "vote", why_not)
    else:
        connected = "Ok" in sim["a_connect"] and "Ok" in sim["b_connect"] \
            and sim["a_got"] == "from-b" and sim["b_got"] == "from-a" \
            and not any(x.startswith(("listen", "accept")) for x in sim["calls"])
        exp.part("b", "vote", not connected, sim)
    ignored = c["sendto"] == {"Ok": len(PAYLOAD)} and c["peer_got"] == PAYLOAD.decode() \
        and c["other_accept"] == {"Err": "EAGAIN"} and not c["other_syns"]
    exp.part("c", "vote", ignored, c)
    exp.part("d", "aside", "Err" in u["sendto"] and u["target_accept"] == {"Err": "EAGAIN"}, u)
    exp.part("e", "aside", "Err" in n["connect_to_bound_not_listening"], n)


if __name__ == "__main__":
    lab.main(observe, CLAIM, TITLE)
