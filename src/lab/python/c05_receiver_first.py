#!/usr/bin/env python3
"""Claim 5 of socklab's lab, in Python: start the receiver first.

The article: start the receiver first: a UDP sender gets no error even if nobody has the port
open, and what is sent before the receiver binds is lost. Loopback only (127.0.0.1).

Calls (as src/lab/c05_receiver_first.rs and closed_port.rs): three sends to a UDP port nobody
has open (a port the kernel chose, then closed) — unconnected, unconnected with IP_RECVERR, and
connected — waiting after the first until the ICMP port unreachable is counted (Icmp
InDestUnreachs in /proc/net/snmp moved, at most 2 s), then poll for POLLERR, then a recv with
MSG_DONTWAIT; and a datagram sent before the receiver binds, one after. In Python a pending
ICMP error surfaces as ConnectionRefusedError on the next call. As root on Linux the probe runs
in a network namespace of its own (created and removed here), so that the counter moves only
because of it, as in the lab; elsewhere it reads the host's counter (another program's ICMP
may then end the wait early), and where there is no /proc/net/snmp (macOS, the BSDs) it waits
for POLLERR instead and ``icmp_back`` is null.
"""

import contextlib
import select
import socket
import sys
import time

import _socklab_lab as lab

CLAIM = 5
TITLE = "Start the receiver first"

#: IP_RECVERR (ip(7)), Linux only; Python names it from 3.12.
IP_RECVERR = getattr(socket, "IP_RECVERR", 11 if sys.platform.startswith("linux") else None)


def icmp_dest_unreachs():
    """Icmp InDestUnreachs of this network namespace, or None without /proc/net/snmp."""
    try:
        with open("/proc/net/snmp") as f:
            rows = [line.split() for line in f if line.startswith("Icmp:")]
    except OSError:
        return None
    return int(rows[1][rows[0].index("InDestUnreachs")])


def closed_port(socks):
    s = socks.udp_bound()
    port = s.getsockname()[1]
    s.close()
    return port


def wait_error(s):
    """Whether POLLERR comes within the lab's timeout (does not consume the error)."""
    p = select.poll()
    p.register(s, 0)
    return any(ev & select.POLLERR for _, ev in p.poll(lab.TIMEOUT * 1000))


def closed_port_sends(socks, sender):
    to = ("127.0.0.1", closed_port(socks))
    before = icmp_dest_unreachs()
    s = socks.new()
    if sender == "unconnected_recv_err":
        s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
    connected = sender == "connected"
    connect = lab.res(s.connect, to) if connected else None

    def send():
        return lab.res(s.send, b"ping") if connected else lab.res(s.sendto, b"ping", to)

    sends = [send()]
    icmp_back = None
    if before is not None:
        deadline = time.monotonic() + lab.TIMEOUT
        icmp_back = False
        while time.monotonic() < deadline:
            if icmp_dest_unreachs() > before:
                icmp_back = True
                break
            time.sleep(0.002)
    pollerr = sender != "unconnected" and wait_error(s)
    sends.append(send())
    sends.append(send())
    try:
        n = s.recv_into(bytearray(16), 0, socket.MSG_DONTWAIT | socket.MSG_TRUNC)
        recv_after = {"Ok": n}
    except OSError as e:
        recv_after = {"Err": lab.errname(e)}
    return {"sender": sender, "connect": connect, "sends": sends, "icmp_back": icmp_back,
            "pollerr": pollerr, "recv_after": recv_after}


def read_through(s, last):
    got, draining = [], False
    for _ in range(128):
        try:
            data = s.recv(512, socket.MSG_DONTWAIT if draining else 0)
        except OSError as e:
            return got, lab.errname(e)
        got.append(data.decode("utf-8", "replace"))
        draining = draining or data == last
    return got, "more than 64 datagrams"


def early_late(socks):
    port = closed_port(socks)
    tx = socks.new()
    early = lab.res(tx.sendto, b"early", ("127.0.0.1", port))
    rx = socks.udp_bound(("127.0.0.1", port))
    late = lab.res(tx.sendto, b"late", ("127.0.0.1", port))
    received, drain_end = read_through(rx, b"late")
    return {"port": port, "early_send": early, "late_send": late, "received": received,
            "drain_end": drain_end}


def closed_port_held(r):
    return all("Ok" in x for x in r["sends"]) and r["recv_after"] == {"Err": "EAGAIN"}


def observe(exp, socks):
    private = lab.can_namespaces() is None
    where = socks.netns.inside(socks.netns.create("c05")) if private \
        else contextlib.nullcontext()
    with where:
        unconnected = closed_port_sends(socks, "unconnected")
        recverr = closed_port_sends(socks, "unconnected_recv_err") \
            if IP_RECVERR is not None else None
        el = early_late(socks)
        connected = closed_port_sends(socks, "connected")
    exp.part("a", "vote", closed_port_held(unconnected),
             dict(unconnected, with_ip_recverr=recverr))
    if "late" in el["received"] and el["drain_end"] == "EAGAIN":
        exp.part("b", "vote", "early" not in el["received"], el)
    else:
        exp.not_run("b", "vote", "inconclusive: the datagram sent after bind() did not arrive "
                    "or the queue did not drain")
    exp.part("c", "vote", closed_port_held(connected), connected)


if __name__ == "__main__":
    lab.main(observe, CLAIM, TITLE)
