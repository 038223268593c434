#!/usr/bin/env python3
"""Claim 13 of socklab's lab, in Python: TIME_WAIT and EADDRINUSE.

The article: after a normal TCP close the address stays in TIME_WAIT for a while, and binding it
again gives "Address already in use". Loopback only (127.0.0.1).

Calls (as src/lab/c13_time_wait.rs): eight connections, the client or the server closing first
(the active closer), SO_REUSEADDR on the closer's socket (for a server, its listener) or not, and
on the new socket that then binds the closer's exact local address (and listens, for a server)
or not. The passive side reads the FIN (recv() == 0, b'' in Python) and closes too; the states
come from ``ss -tan`` once no socket of the port is in a closing state (polled, at most 1 s), and
the side that closed second binds its own address again. After the first trial ``ss -tano state
time-wait`` shows the TIME-WAIT timer (how long the state lasts; nothing waits out its 60 s).

As root on Linux it runs in a network namespace of its own (created and removed here), so no
other program's connection can take a freed port, as in the lab. The socket states come from
ss(8) (iproute2, Linux): elsewhere 13a and 13b are skipped with the reason and the trials carry
no state.
"""

import contextlib
import shutil
import socket
import sys

import _socklab_lab as lab

CLAIM = 13
TITLE = "TIME_WAIT and EADDRINUSE"


def close_one(socks, server_closed_first, old_reuse):
    """A connection closed actively from the chosen side; the trial with its addresses, and the
    passive side's address."""
    listener = socks.new(socket.SOCK_STREAM)
    if server_closed_first and old_reuse:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    client = socks.new(socket.SOCK_STREAM)
    if not server_closed_first and old_reuse:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    client.connect(listener.getsockname())
    server, _ = listener.accept()
    socks.open.append(server)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, lab.timeval(lab.TIMEOUT))
    listener.close()
    closer, passive = (server, client) if server_closed_first else (client, server)
    addr, peer = closer.getsockname()[:2], passive.getsockname()[:2]
    closer.close()
    # Readiness: the passive side reads the FIN (recv == 0), then closes too.
    passive.recv(1)
    passive.close()
    return {"server_closed_first": server_closed_first, "old_reuse": old_reuse,
            "new_reuse": False, "addr": lab.show_addr(addr), "closer_state": None,
            "passive_state": None, "rebind": "", "passive_addr": lab.show_addr(peer),
            "passive_rebind": ""}, addr, peer


def timewait_timers():
    """The timers of the TIME-WAIT sockets (``ss -tano state time-wait``): ``timewait,59sec,0``."""
    out = []
    for line in lab.ss("-tano", "state", "time-wait"):
        start = line.find("timer:(")
        if start < 0:
            continue
        start += len("timer:(")
        end = line.find(")", start)
        if end >= 0:
            out.append(line[start:end])
    return out


def observe_trials(socks, isolated, with_ss):
    trials, timers = [], []
    for server_closed_first in (False, True):
        for old_reuse in (False, True):
            for new_reuse in (False, True):
                t, addr, passive = close_one(socks, server_closed_first, old_reuse)
                t["new_reuse"] = new_reuse
                if with_ss:
                    lines = lab.settled_tcp(addr[1], isolated)
                    t["closer_state"] = lab.state_of(lines, t["addr"], t["passive_addr"])
                    t["passive_state"] = lab.state_of(lines, t["passive_addr"], t["addr"])
                # A new socket binds the active closer's address (and listens, for a server).
                t["rebind"] = lab.bind_again(addr, socket.SOCK_STREAM, new_reuse,
                                             server_closed_first)
                # The side that closed second binds its own address again (the server restarts
                # its listener when the client closed first).
                t["passive_rebind"] = lab.bind_again(passive, socket.SOCK_STREAM, False,
                                                     not server_closed_first)
                if with_ss and not timers:
                    timers = timewait_timers()
                trials.append(t)
    return trials, timers


def observe(exp, socks):
    isolated = lab.can_namespaces() is None
    no_ss = None
    if not sys.platform.startswith("linux") or shutil.which("ss") is None:
        no_ss = "needs ss(8) (iproute2, Linux) to see socket states"
    where = socks.netns.inside(socks.netns.create("c13")) if isolated \
        else contextlib.nullcontext()
    with where:
        ts, timers = observe_trials(socks, isolated, no_ss is None)
    facts = {"trials": ts}
    closer_tw = bool(ts) and all(t["closer_state"] == "TIME-WAIT" for t in ts)
    passive_clear = bool(ts) and all(t["passive_state"] is None for t in ts)
    if no_ss is None:
        exp.part("a", "vote", closer_tw, dict(facts, time_wait_timers=timers))
        exp.part("b", "aside", closer_tw and passive_clear, facts)
    else:
        exp.not_run("a", "vote", no_ss)
        exp.not_run("b", "aside", no_ss)
    plain = [t for t in ts if not t["new_reuse"]]
    exp.part("c", "vote", bool(plain) and all(t["rebind"] == "EADDRINUSE" for t in plain),
             facts)
    both = [t for t in ts if t["new_reuse"] and t["old_reuse"]]
    new_only = [t for t in ts if t["new_reuse"] and not t["old_reuse"]]
    exp.part("d", "aside", bool(both) and all(t["rebind"] == "ok" for t in both)
             and all(t["rebind"] == "EADDRINUSE" for t in new_only), facts)
    servers = [t for t in ts if not t["server_closed_first"]]
    exp.part("e", "vote", bool(servers)
             and all(t["passive_rebind"] == "EADDRINUSE" for t in servers), facts)


if __name__ == "__main__":
    lab.main(observe, CLAIM, TITLE)
