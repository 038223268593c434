"""Shared helpers of socklab's Python reproductions (``socklab lab export --python DIR``).

Each ``cNN_*.py`` script beside this module makes the socket calls of one experiment of
``socklab lab`` and prints one JSON document in the lab's schema (docs/lab.md): ``meta``, then
``experiments`` with one experiment whose ``parts`` carry ``id``, ``role``, ``verdict`` (and
``reason`` when not run) and ``evidence.facts`` with the same keys and values as the lab's.
``socklab lab compare lab.json python.json`` says where the two differ.

Standard library only. Traffic goes to 127.0.0.1 only (and, in scripts that need two hosts, to
network namespaces the script creates and removes). Parts the script cannot run here (no root,
not Linux) are reported as ``not_run`` with the reason, never guessed.
"""

import contextlib
import errno
import json
import os
import platform
import signal
import socket
import struct
import subprocess
import sys
import time

#: SO_RCVTIMEO of every socket, as the lab sets it (seconds): a receive that gets nothing
#: within it fails with EAGAIN, exactly like the lab's raw call (settimeout() would make the
#: socket non-blocking and raise TimeoutError instead).
TIMEOUT = 2

#: How long to wait for the kernel to finish what is already under way (the last ACK of a close
#: handshake) before taking things as they are (seconds), as the lab's SETTLE.
SETTLE = 1.0

VERDICTS = ("confirmed", "refuted", "partly", "not_run")


def errname(e):
    """The errno name of an OSError (``EINVAL``), as the lab's facts spell it."""
    if e.errno is None:
        return type(e).__name__
    return errno.errorcode.get(e.errno, "E%d" % e.errno)


def res(fn, *args):
    """Calls ``fn(*args)``: ``{"Ok": value}``, or ``{"Err": "ERRNO"}`` when it raised OSError."""
    try:
        return {"Ok": fn(*args)}
    except OSError as e:
        return {"Err": errname(e)}


def outcome(fn, *args):
    """Calls ``fn(*args)``: ``None`` when it succeeded, the errno name when it raised."""
    try:
        fn(*args)
        return None
    except OSError as e:
        return errname(e)


def show_addr(a):
    """An address as the lab shows it: ``127.0.0.1:5``, ``[::1]:5``, ``none`` for none."""
    if a is None:
        return "none"
    if ":" in a[0]:
        return "[%s]:%d" % (a[0], a[1])
    return "%s:%d" % (a[0], a[1])


def local(s):
    """getsockname(2) of ``s`` as the lab shows it (``0.0.0.0:0`` for an unbound socket)."""
    try:
        return show_addr(s.getsockname()[:2])
    except OSError:
        return "none"


def timeval(seconds):
    """A struct timeval for SO_RCVTIMEO (two C longs on Linux, macOS and the BSDs)."""
    whole = int(seconds)
    return struct.pack("ll", whole, int(round((seconds - whole) * 1e6)))


def recv_once(s, cap, flags=0):
    """One recv(2) of at most ``cap`` bytes as the lab's facts show it: ``{"data": text}``,
    ``"eof"`` (recv returned 0: b'' in Python), ``"would_block"`` (EAGAIN: nothing before
    SO_RCVTIMEO, BlockingIOError in Python) or ``{"error": "ERRNO"}``."""
    try:
        data = s.recv(cap, flags)
    except BlockingIOError:
        return "would_block"
    except OSError as e:
        return {"error": errname(e)}
    if not data:
        return "eof"
    return {"data": data.decode("utf-8", "replace")}


class Sockets:
    """Every socket a script opens, closed by :meth:`close_all` (call it in ``finally``)."""

    def __init__(self):
        self.open = []
        #: The namespaces of this run (set by :func:`run`).
        self.netns = None

    def new(self, kind=socket.SOCK_DGRAM, family=socket.AF_INET):
        """A socket with SO_RCVTIMEO set to :data:`TIMEOUT`, like every socket of the lab."""
        s = socket.socket(family, kind)
        self.open.append(s)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(TIMEOUT))
        return s

    def udp_bound(self, addr=("127.0.0.1", 0)):
        """A UDP socket bound to ``addr``."""
        s = self.new()
        s.bind(addr)
        return s

    def tcp_pair(self):
        """A listener on 127.0.0.1 (port chosen by the kernel), a client connected to it and the
        accepted server side: (listener, client, server)."""
        listener = self.new(socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        client = self.new(socket.SOCK_STREAM)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
        self.open.append(server)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(TIMEOUT))
        return listener, client, server

    def close_all(self):
        for s in self.open:
            try:
                s.close()
            except OSError:
                pass
        self.open = []


def can_namespaces():
    """Why two-host parts cannot run here, or ``None`` when they can (Linux, root, ip(8))."""
    if not sys.platform.startswith("linux"):
        return "needs Linux network namespaces (this is %s)" % sys.platform
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if not any(os.access(os.path.join(d, "ip"), os.X_OK)
               for d in os.environ.get("PATH", "/usr/sbin:/sbin").split(os.pathsep)):
        return "needs ip(8) to create network namespaces"
    return None


def ip(*args):
    """Runs ``ip ARGS`` (iproute2) and returns its output; raises on failure."""
    return subprocess.run(("ip",) + args, check=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True).stdout


def route_get(dest, ns=None):
    """The first line of ``ip route get DEST`` (in namespace ``ns``), whitespace collapsed, as
    the lab records it; ``None`` where there is no ip(8) (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        out = ip(*((("-n", ns) if ns else ()) + ("route", "get", dest)))
    except (OSError, subprocess.CalledProcessError):
        return None
    lines = out.splitlines()
    return " ".join(lines[0].split()) if lines else None


def poll_until(limit, read, done):
    """Calls ``read()`` until ``done(value)`` holds or ``limit`` seconds have passed, 2 ms apart
    (the lab's poll: the kernel offers no signal for a socket state ``ss`` shows); returns the
    last value read."""
    deadline = time.monotonic() + limit
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.002)


def ss(*args):
    """``ss -H ARGS`` (iproute2, Linux) in the calling thread's network namespace: its lines with
    whitespace collapsed, as the lab records them."""
    out = subprocess.run(("ss", "-H") + args, check=True, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True).stdout
    return [" ".join(line.split()) for line in out.splitlines()]


def _mentions_port(line, port):
    return any(t.endswith(":%d" % port) for t in line.split())


def _on_own_port(line, port):
    """The lab's rule on the machine's shared stack: the local address has the port, or the peer
    has it at the local end's IP (another program's connection to another address with the same
    port number is not the port's)."""
    f = line.split()
    if len(f) < 5:
        return _mentions_port(line, port)
    suffix = ":%d" % port
    return f[3].endswith(suffix) or (f[4].endswith(suffix)
                                     and f[3].rsplit(":", 1)[0] == f[4].rsplit(":", 1)[0])


def ss_of(kind, port, isolated):
    """``ss -tan`` (TCP) or ``ss -uan`` (UDP) lines naming ``port``, chosen as the lab chooses
    them: every line naming it in a namespace of the script's own (``isolated``), only the
    port's own lines on the machine's shared stack."""
    lines = ss("-tan" if kind == socket.SOCK_STREAM else "-uan")
    keep = _mentions_port if isolated else _on_own_port
    return [line for line in lines if keep(line, port)]


#: TCP states a closing connection passes through on its way to TIME-WAIT or CLOSED.
TRANSIENT = ("FIN-WAIT-1", "LAST-ACK", "CLOSING", "SYN-SENT")


def settled_tcp(port, isolated):
    """``ss -tan`` lines naming ``port`` once none is in a transient closing state (polled at
    most :data:`SETTLE`, then the lines as they are), as the lab reads them."""
    return poll_until(SETTLE, lambda: ss_of(socket.SOCK_STREAM, port, isolated),
                      lambda lines: not any(line.startswith(TRANSIENT) for line in lines))


def state_of(lines, local_addr, peer_addr):
    """The state column of the ``ss`` line whose local address is ``local_addr`` and peer
    ``peer_addr`` (both as :func:`show_addr` writes them), or None."""
    for line in lines:
        f = line.split()
        if len(f) >= 5 and f[3] == local_addr and f[4] == peer_addr:
            return f[0]
    return None


def bind_again(addr, kind, reuse, listen):
    """A fresh socket binds ``addr`` again (SO_REUSEADDR if ``reuse``; listen(8) too if
    ``listen``: a server restarting) and is closed at once: ``ok`` or the errno name."""
    s = socket.socket(socket.AF_INET, kind)
    try:
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(addr)
        if listen:
            s.listen(8)
        return "ok"
    except OSError as e:
        return errname(e)
    finally:
        s.close()


#: packet(7): every protocol, and the packet type of a frame this namespace sent.
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


class Capture:
    """An AF_PACKET socket (packet(7); Linux, CAP_NET_RAW) that sees every frame of every
    interface of the namespace it is opened in, read as the lab's wire lines
    (src/lab/capture.rs): ``TCP 127.0.0.1:80 > 127.0.0.1:5000 [SYN,ACK] seq 1 win 65495
    wscale 7 len 0``, ``UDP a:p > b:q len 5``, ``ICMP a > b type 3 code 3``. On ``lo`` each packet
    passes twice; its outgoing copy is left out. Non-IPv4 frames and ARP are left out (the lab
    keeps them in its pcap, not in its evidence)."""

    def __init__(self, socks):
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        socks.open.append(self.sock)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        #: Window-scale shifts announced in SYNs, by sending endpoint (RFC 7323 §2.2-2.3).
        self.scales = {}

    def lines(self):
        """The frames queued since the last call, one line each."""
        out = []
        for _ in range(10000):
            try:
                frame, addr = self.sock.recvfrom(65600, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            if addr[2] == PACKET_OUTGOING and addr[0] == "lo":
                continue
            line = self.describe(frame)
            if line is not None:
                out.append(line)
        return out

    def describe(self, frame):
        if len(frame) < 34 or frame[12:14] != b"\x08\x00":
            return None
        ip_ = frame[14:]
        ihl = (ip_[0] & 0x0F) * 4
        total = struct.unpack("!H", ip_[2:4])[0]
        src, dst = socket.inet_ntoa(ip_[12:16]), socket.inet_ntoa(ip_[16:20])
        body = ip_[ihl:total]
        if ip_[9] == 17:
            sport, dport = struct.unpack("!HH", body[:4])
            return "UDP %s:%d > %s:%d len %d" % (src, sport, dst, dport, len(body) - 8)
        if ip_[9] == 1:
            return "ICMP %s > %s type %d code %d" % (src, dst, body[0], body[1])
        if ip_[9] != 6:
            return "IP %s > %s len %d" % (src, dst, len(frame))
        sport, dport, seq = struct.unpack("!HHI", body[:8])
        doff = (body[12] >> 4) * 4
        flags = body[13]
        win = struct.unpack("!H", body[14:16])[0]
        names = [n for bit, n in ((0x02, "SYN"), (0x01, "FIN"), (0x04, "RST"), (0x08, "PSH"),
                                  (0x10, "ACK")) if flags & bit]
        frm, to = "%s:%d" % (src, sport), "%s:%d" % (dst, dport)
        extra = ""
        if flags & 0x02:
            announced = _window_scale(body[20:doff])
            if announced is not None:
                self.scales[frm] = announced
                extra = " wscale %d" % announced
        elif to in self.scales and frm in self.scales:
            win <<= self.scales[frm]
        return "TCP %s > %s [%s] seq %d win %d%s len %d" % (
            frm, to, ",".join(names), seq, win, extra, len(body) - doff)


def _window_scale(options):
    """The shift of a TCP window-scale option (kind 3, RFC 7323) among ``options``, or None."""
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(options) or options[i + 1] < 2:
            break
        if kind == 3 and options[i + 1] == 3 and i + 2 < len(options):
            return options[i + 2]
        i += options[i + 1]
    return None


def _setns(fd):
    """setns(2) into the network namespace open on ``fd`` (os.setns from Python 3.12, else the
    C library's through ctypes, still the standard library)."""
    if hasattr(os, "setns"):
        os.setns(fd, os.CLONE_NEWNET)
        return
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def wait_up(ns, ifname):
    """Waits (at most :data:`TIMEOUT`) until interface ``ifname`` of namespace ``ns`` is
    operationally up. A veth end brought up before its peer gets its carrier later, and the
    kernel attaches its real queue (dev_activate) only then, from the deferred linkwatch work:
    until it does, packets sent through it are dropped (seen under load: the first broadcasts
    of claim 8's star never left). Raises if it does not come up."""
    def state():
        return ip("-n", ns, "-o", "link", "show", "dev", ifname)
    if "state UP" not in poll_until(TIMEOUT, state, lambda out: "state UP" in out):
        raise RuntimeError("%s in %s did not come up" % (ifname, ns))


class Namespaces:
    """Network namespaces this script creates (``ip netns add``), deleted by :meth:`remove_all`
    (called in ``finally``). Only Linux with root; see :func:`can_namespaces`."""

    def __init__(self):
        self.names = []

    def create(self, tag):
        name = "socklab-py-%s-%d-%d" % (tag, os.getpid(), len(self.names))
        ip("netns", "add", name)
        self.names.append(name)
        ip("-n", name, "link", "set", "lo", "up")
        return name

    def pair(self, tag):
        """Two hosts joined by a veth pair on TEST-NET-2, as the lab's: ``a`` with veth-a
        198.51.100.1/24, ``b`` with veth-b 198.51.100.2/24. Returns their names."""
        a, b = self.create(tag + "-a"), self.create(tag + "-b")
        ip("-n", a, "link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b",
           "netns", b)
        for ns, ifname, cidr in ((a, "veth-a", "198.51.100.1/24"),
                                 (b, "veth-b", "198.51.100.2/24")):
            ip("-n", ns, "addr", "add", cidr, "dev", ifname)
            ip("-n", ns, "link", "set", ifname, "up")
        for ns, ifname in ((a, "veth-a"), (b, "veth-b")):
            wait_up(ns, ifname)
        return a, b

    @contextlib.contextmanager
    def inside(self, name):
        """Sockets created in this block belong to namespace ``name`` (and stay there)."""
        home = os.open("/proc/self/ns/net", os.O_RDONLY)
        target = os.open("/run/netns/" + name, os.O_RDONLY)
        try:
            _setns(target)
            yield
        finally:
            _setns(home)
            os.close(target)
            os.close(home)

    def remove_all(self):
        for name in self.names:
            subprocess.run(["ip", "netns", "del", name], stderr=subprocess.DEVNULL)
        self.names = []


class Experiment:
    """The parts of one experiment, printed as the lab's JSON by :meth:`emit`."""

    def __init__(self, claim, title):
        self.claim = claim
        self.title = title
        self.parts = []

    def part(self, pid, role, held, facts):
        """Part ``pid`` (``vote`` or ``aside``), confirmed when ``held``, with its facts."""
        verdict = held if held in VERDICTS else ("confirmed" if held else "refuted")
        self.parts.append({"id": pid, "role": role, "verdict": verdict,
                           "evidence": {"facts": facts}})

    def not_run(self, pid, role, reason):
        """Part ``pid`` not run here, with the reason (printed on stderr too)."""
        print("claim %d, part %d%s skipped: %s" % (self.claim, self.claim, pid, reason),
              file=sys.stderr)
        self.parts.append({"id": pid, "role": role, "verdict": "not_run",
                           "reason": reason, "evidence": {}})

    def verdict(self):
        """The claim's verdict from its voting parts only (the lab's rule, docs/lab.md)."""
        votes = [p["verdict"] for p in self.parts
                 if p["role"] == "vote" and p["verdict"] != "not_run"]
        if not votes:
            return "not_run"
        if all(v == "confirmed" for v in votes):
            return "confirmed"
        if all(v == "refuted" for v in votes):
            return "refuted"
        return "partly"

    def document(self):
        return {"claim": self.claim, "title": self.title, "verdict": self.verdict(),
                "parts": self.parts}


def meta():
    """Where the document was made."""
    return {"producer": "socklab python reproduction", "python": platform.python_version(),
            "system": platform.system(), "kernel": platform.release(),
            "root": can_namespaces() is None}


def run(observe, claim, title):
    """Runs ``observe(experiment, sockets)`` and returns the experiment's document; sockets are
    closed on any exit. An error becomes a ``not_run`` experiment whose reason says it."""
    exp = Experiment(claim, title)
    socks = Sockets()
    socks.netns = Namespaces()
    try:
        observe(exp, socks)
    except Exception as e:  # reported in the document, like the lab's failed experiments
        return {"claim": claim, "title": title, "verdict": "not_run",
                "reason": "error: %s: %s" % (type(e).__name__, e), "parts": []}
    finally:
        socks.close_all()
        socks.netns.remove_all()
    return exp.document()


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def print_document(experiments):
    """Prints ``{"meta": …, "experiments": […]}`` on stdout."""
    json.dump({"meta": meta(), "experiments": experiments}, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")


def main(observe, claim, title):
    """A script's entry point: runs its experiment and prints the document."""
    # SIGTERM unwinds like Ctrl-C, so the ``finally`` blocks remove sockets and namespaces.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    print_document([run(observe, claim, title)])
