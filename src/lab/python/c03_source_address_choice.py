#!/usr/bin/env python3
"""Claim 3 of socklab's lab, in Python: who picks the source address.

The article: in patterns (a) and (c) the side that sends first does not choose its source IP;
the system picks one, and it may not be the one you wanted.

Calls (as src/lab/c03_source_address_choice.rs): a receiver and three senders (unbound with
sendto, connected, bound to the address "we wanted"), getsockname before and after, the source
the receiver saw, and ``ip route get``. Once on 127.0.0.1 (127.0.0.2 is the wanted address:
local through 127.0.0.0/8), and, as root on Linux, across two network namespaces joined by a
veth pair on TEST-NET-2 (198.51.100.1 and .11 on host a, 198.51.100.2 on host b), created and
removed by this script. Elsewhere that part is skipped with the reason.
"""

import contextlib

import _socklab_lab as lab

CLAIM = 3
TITLE = "Who picks the source address"

STATEMENT_D_SKIPPED = "needs CAP_NET_ADMIN (run as root) to create network namespaces"


def seen(rx):
    """The source of the next datagram, as the lab's fact: {"Ok": addr} or {"Err": errno}."""
    try:
        _, frm = rx.recvfrom(512)
    except OSError as e:
        return {"Err": lab.errname(e)}
    return {"Ok": lab.show_addr(frm[:2])}


def observe_choice(socks, tx_ns, rx_ns, rx_addr, wanted):
    def where(ns):
        return socks.netns.inside(ns) if ns else contextlib.nullcontext()

    with where(rx_ns):
        rx = socks.udp_bound((rx_addr, 0))
    dest = rx.getsockname()
    with where(tx_ns):
        u, c, b = socks.new(), socks.new(), socks.new()
    unbound_before = lab.local(u)
    u.sendto(b"unbound", dest)
    unbound_after = lab.local(u)
    unbound_seen = seen(rx)

    c.connect(dest)
    connected_local = lab.local(c)
    c.send(b"connected")
    connected_seen = seen(rx)

    # Recorded where the lab records it: where it can make namespaces (root), not elsewhere.
    route = lab.route_get(dest[0], tx_ns) if lab.can_namespaces() is None else None
    err = lab.outcome(b.bind, (wanted, 0))
    if err is None:
        b.sendto(b"bound", dest)
        bound_seen = seen(rx)
    else:
        bound_seen = {"Err": "bind: " + err}
    return {"dest": lab.show_addr(dest), "wanted": wanted, "unbound_before": unbound_before,
            "unbound_after": unbound_after, "unbound_seen": unbound_seen,
            "connected_local": connected_local, "connected_seen": connected_seen,
            "bound_seen": bound_seen, "route": route}


def ip_of(addr_text):
    return addr_text.rsplit(":", 1)[0]


def port_of(addr_text):
    return int(addr_text.rsplit(":", 1)[1])


def wanted_part(exp, pid, role, s):
    if "Ok" not in s["bound_seen"]:
        exp.not_run(pid, role, "inconclusive: no datagram from the wanted address %s (%s)"
                    % (s["wanted"], s["bound_seen"].get("Err")))
        return
    not_wanted = "Ok" in s["unbound_seen"] and ip_of(s["unbound_seen"]["Ok"]) != s["wanted"] \
        and ip_of(s["bound_seen"]["Ok"]) == s["wanted"]
    exp.part(pid, role, not_wanted, s)


def observe(exp, socks):
    h = observe_choice(socks, None, None, "127.0.0.1", "127.0.0.2")
    two = None
    why_not = lab.can_namespaces()
    if why_not is None:
        a, b = socks.netns.pair("c03")
        lab.ip("-n", a, "addr", "add", "198.51.100.11/24", "dev", "veth-a")
        two = observe_choice(socks, a, b, "198.51.100.2", "198.51.100.11")

    before_any = h["unbound_before"] == "0.0.0.0:0"
    picked = "Ok" in h["unbound_seen"] and ip_of(h["unbound_seen"]["Ok"]) != "0.0.0.0" \
        and port_of(h["unbound_seen"]["Ok"]) == port_of(h["unbound_after"])
    exp.part("a", "vote", before_any and picked,
             {k: h[k] for k in ("dest", "unbound_before", "unbound_after", "unbound_seen")})
    local = h["connected_local"]
    connected_ok = local != "none" and ip_of(local) != "0.0.0.0" and port_of(local) != 0 \
        and h["connected_seen"] == {"Ok": local}
    exp.part("b", "vote", connected_ok,
             {k: h[k] for k in ("dest", "connected_local", "connected_seen")})
    wanted_part(exp, "c", "aside", h)
    if two is not None:
        wanted_part(exp, "d", "vote", two)
    else:
        exp.not_run("d", "vote", why_not)


if __name__ == "__main__":
    lab.main(observe, CLAIM, TITLE)
