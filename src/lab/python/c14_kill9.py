#!/usr/bin/env python3
"""Claim 14 of socklab's lab, in Python: kill -9 and "Address already in use".

The article: UDP has no TIME_WAIT, but kill -9 also leaves the port giving "Address already in
use", and SO_REUSEADDR does not help, because a violent kill makes the kernel skip closing the
program's sockets. Loopback only (127.0.0.1); Linux (ss(8), /proc).

Calls (as src/lab/c14_kill9.rs): a victim process (this script run again with ``--victim``, a
separate Python process doing what ``socklab udp recv`` / ``socklab tcp listen`` do for the
lab) holds a bound UDP socket, a TCP listener, an accepted connection (with and without its
SO_REUSEADDR), or a connection with unread data (the victim is stopped with SIGSTOP before the
data arrives). It is killed with SIGKILL and reaped with waitpid; then ``ss``, what the peer's
recv returns, the FIN or RST its port sent (an AF_PACKET capture, as root) and bind(2) of its
port without and with SO_REUSEADDR. A SIGTERM victim (its normal exit path) is the control.
Beside them: a worker that inherited the socket (``sh`` starts a ``sleep`` holding it, as the
lab does) outlives its killed parent and keeps the port; a killed victim not yet reaped (a
zombie) holds nothing.

As root on Linux it runs in a network namespace of its own (created and removed here), as in the
lab; elsewhere on Linux on the machine's loopback, without the capture (``wire`` is empty, as
in the lab). Every process it starts is killed and reaped on any exit, and every wait is
bounded.
"""

import os
import select
import signal
import socket
import subprocess
import sys
import time

import _socklab_lab as lab

CLAIM = 14
TITLE = "kill -9 and Address already in use"

#: How long a victim may take to say it is ready (seconds).
READY = 5.0
#: Bytes the peer sends to a stopped victim, left unread when it is killed.
UNREAD = 1000
#: SO_RXQ_OVFL (socket(7)), which ``socklab udp recv`` turns on; Linux.
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)


def victim_main(kind, reuse):
    """The victim: binds (and listens, accepts one connection), says so on stderr the way socklab
    does, and reads until the end. SIGTERM runs its normal exit path (exit status 143)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    tcp = kind == "tcp"
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
    if reuse:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    if tcp:
        s.listen(1024)
        print("socklab: listening on %s" % lab.show_addr(s.getsockname()), file=sys.stderr,
              flush=True)
        conn, frm = s.accept()
        print("socklab: connection from %s" % lab.show_addr(frm), file=sys.stderr, flush=True)
        s.close()
        while conn.recv(65536):
            pass
    else:
        s.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
        print("socklab: bound to %s" % lab.show_addr(s.getsockname()), file=sys.stderr,
              flush=True)
        while True:
            s.recv(65536)


class Victim:
    """A child process whose stderr lines are read with a bounded wait; killed and reaped by
    :meth:`close` if the experiment did not get that far."""

    def __init__(self, argv, stdin=subprocess.PIPE):
        self.proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.buf = b""

    def await_line(self, prefix):
        """Waits (at most READY) for the stderr line ``socklab: PREFIX…``; returns the rest."""
        want = ("socklab: " + prefix).encode()
        deadline = time.monotonic() + READY
        fd = self.proc.stderr.fileno()
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                if line.startswith(want):
                    return line[len(want):].decode().strip()
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise RuntimeError("victim never said %r" % want.decode())
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError("victim exited before %r" % want.decode())
            self.buf += chunk

    def stop(self):
        """SIGSTOP, then waitpid(WUNTRACED) until it is stopped."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        _, status = os.waitpid(self.proc.pid, os.WUNTRACED)
        if not os.WIFSTOPPED(status):
            raise RuntimeError("victim did not stop")

    def end(self, sig):
        """Sends ``sig``, then waitpid: how it ended (``SIGKILL``, ``exit 143`` …)."""
        os.kill(self.proc.pid, sig)
        code = self.proc.wait(timeout=READY)
        if code == -signal.SIGKILL:
            return "SIGKILL"
        if code < 0:
            return "signal %d" % -code
        return "exit %d" % code

    def state(self):
        """Its state letter in /proc/PID/stat (``S``, ``Z`` …), ``gone`` without one."""
        try:
            with open("/proc/%d/stat" % self.proc.pid) as f:
                return f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return "gone"

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stderr):
            if f is not None:
                f.close()


def spawn(victims, kind, reuse):
    argv = [sys.executable, os.path.abspath(__file__), "--victim", kind]
    if reuse:
        argv.append("--reuseaddr")
    v = Victim(argv)
    victims.append(v)
    return v


def parse_addr(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


def one(socks, victims, cap, isolated, held, victim_reuse, by_kill9):
    kind = socket.SOCK_DGRAM if held == "udp" else socket.SOCK_STREAM
    victim = spawn(victims, "udp" if held == "udp" else "tcp", victim_reuse)
    addr = parse_addr(victim.await_line("bound to " if held == "udp" else "listening on "))
    port = addr[1]
    peer = None
    if held in ("established", "unread"):
        peer = socks.new(socket.SOCK_STREAM)
        peer.connect(addr)
        victim.await_line("connection from ")
    if held == "unread":
        victim.stop()
        peer.sendall(b"u" * UNREAD)
        local = lab.show_addr(addr)

        def unread_shown(lines):
            return any(len(f) >= 4 and f[3] == local and f[1].isdigit() and int(f[1]) >= UNREAD
                       for f in (line.split() for line in lines))
        before = lab.poll_until(lab.SETTLE, lambda: lab.ss_of(kind, port, isolated),
                                unread_shown)
    else:
        before = lab.ss_of(kind, port, isolated)
    ended = victim.end(signal.SIGKILL if by_kill9 else signal.SIGTERM)
    # A connection closed with a FIN leaves both ends listed (CLOSE-WAIT and FIN-WAIT); read
    # once both are (bounded by SETTLE), as one ss snapshot can fall mid-transition.
    if held == "established":
        after_kill = lab.poll_until(lab.SETTLE, lambda: lab.ss_of(kind, port, isolated),
                                    lambda lines: len(lines) >= 2)
    else:
        after_kill = lab.ss_of(kind, port, isolated)
    peer_saw, after_peer_close = None, []
    if peer is not None:
        peer_saw = lab.recv_once(peer, 64)
        peer.close()
        after_peer_close = lab.settled_tcp(port, isolated)
    from_victim = "TCP %s >" % lab.show_addr(addr)
    wire = [line for line in (cap.lines() if cap else [])
            if any(t.endswith(":%d" % port) for t in line.split())
            and line.startswith(from_victim) and ("FIN" in line or "RST" in line)]
    listen = kind == socket.SOCK_STREAM
    return {"held": held, "victim_reuse": victim_reuse, "addr": lab.show_addr(addr),
            "ended": ended, "before": before, "after_kill": after_kill, "peer_saw": peer_saw,
            "after_peer_close": after_peer_close, "wire": wire,
            "bind_plain": lab.bind_again(addr, kind, False, listen),
            "bind_reuse": lab.bind_again(addr, kind, True, listen), "by_kill9": by_kill9}


def inherited(socks, victims, isolated, held, daemon):
    """A worker inherits a socket: the script binds it, hands it as stdin to ``sh``, whose script
    starts a ``sleep`` that inherits it on fd 3 (a forked child, or with ``daemon`` a grandchild
    whose parent subshell exits at once) and then becomes a ``sleep`` itself (every sleep ends by
    itself after 30 s). The parent is killed and reaped; the port is bound again while the worker
    lives, then once it is killed too."""
    kind = socket.SOCK_DGRAM if held == "udp" else socket.SOCK_STREAM
    listen = kind == socket.SOCK_STREAM
    s = socks.new(kind)
    s.bind(("127.0.0.1", 0))
    if listen:
        s.listen(8)
    addr = s.getsockname()[:2]
    if daemon:
        script = "exec 3<&0; (sleep 30 & echo \"socklab: worker $!\" >&2); exec sleep 30"
    else:
        script = "exec 3<&0; sleep 30 & echo \"socklab: worker $!\" >&2; exec sleep 30"
    parent = Victim(["sh", "-c", script], stdin=s.fileno())
    victims.append(parent)
    s.close()
    worker = int(parent.await_line("worker "))
    try:
        parent_ended = parent.end(signal.SIGKILL)
        after_kill = lab.ss_of(kind, addr[1], isolated)
        bind_plain = lab.bind_again(addr, kind, False, listen)
        bind_reuse = lab.bind_again(addr, kind, True, listen)
    finally:
        os.kill(worker, signal.SIGKILL)
    bind_after_worker = lab.poll_until(lab.TIMEOUT,
                                       lambda: lab.bind_again(addr, kind, False, listen),
                                       lambda r: r == "ok")
    return {"worker": "daemonised grandchild" if daemon else "forked child", "held": held,
            "addr": lab.show_addr(addr), "parent_ended": parent_ended, "after_kill": after_kill,
            "bind_plain": bind_plain, "bind_reuse": bind_reuse,
            "bind_after_worker": bind_after_worker}


def zombie(victims, isolated):
    """A UDP victim killed with SIGKILL and not reaped: once /proc says it is a zombie (polled,
    bounded), its port is bound again; then it is reaped."""
    victim = spawn(victims, "udp", False)
    addr = parse_addr(victim.await_line("bound to "))
    os.kill(victim.proc.pid, signal.SIGKILL)
    state = lab.poll_until(lab.TIMEOUT, victim.state, lambda s: s == "Z")
    ss = lab.ss_of(socket.SOCK_DGRAM, addr[1], isolated)
    bind_plain = lab.bind_again(addr, socket.SOCK_DGRAM, False, False)
    victim.close()
    return {"addr": lab.show_addr(addr), "state": state, "ss": ss, "bind_plain": bind_plain}


def states(lines):
    words = sorted("FIN-WAIT" if w in ("FIN-WAIT-1", "FIN-WAIT-2") else w
                   for w in (line.split()[0] if line.split() else "" for line in lines))
    return "+".join(words) if words else "no socket"


def left_open(c):
    def state(line):
        return line.split()[0] if line.split() else ""
    before = [state(line) for line in c["before"]]
    still = any(state(line) != "CLOSE-WAIT" and state(line) in before for line in c["after_kill"])
    return still or c["peer_saw"] == "would_block"


def mixed(held, n):
    return "refuted" if held == 0 else ("confirmed" if held == n else "partly")


def observe_all(socks, victims, isolated):
    cap = lab.Capture(socks) if isolated else None
    cases = [one(socks, victims, cap, isolated, held, reuse, by_kill9)
             for held, reuse, by_kill9 in (("udp", False, True), ("listener", False, True),
                                           ("established", False, True),
                                           ("established", True, True),
                                           ("unread", False, True),
                                           ("established", False, False))]
    workers = [inherited(socks, victims, isolated, held, daemon)
               for held, daemon in (("udp", False), ("listener", True))]
    return cases, workers, zombie(victims, isolated)


def observe(exp, socks):
    if not sys.platform.startswith("linux"):
        for pid, role in (("a", "aside"), ("b", "vote"), ("c", "vote"), ("d", "vote"),
                          ("e", "aside"), ("f", "aside"), ("g", "aside"), ("h", "aside")):
            exp.not_run(pid, role, "needs Linux (ss(8), /proc/PID/stat)")
        return
    isolated = lab.can_namespaces() is None
    victims = []
    try:
        if isolated:
            with socks.netns.inside(socks.netns.create("c14")):
                cases, workers, z = observe_all(socks, victims, isolated)
        else:
            cases, workers, z = observe_all(socks, victims, isolated)
    finally:
        for v in victims:
            v.close()
    facts = {"cases": cases}
    killed = [c for c in cases if c["by_kill9"]]
    udp = [c for c in killed if c["held"] == "udp"]
    exp.part("a", "aside", bool(udp) and all(not c["after_kill"] and c["bind_plain"] == "ok"
                                             for c in udp), facts)
    exp.part("b", "vote", any(left_open(c) for c in killed), facts)
    blocked = [c for c in killed if c["bind_plain"] == "EADDRINUSE"]
    exp.part("c", "vote", mixed(len(blocked), len(killed)), facts)
    if not blocked:
        exp.not_run("d", "vote", "no victim's port gave EADDRINUSE, so there was nothing for "
                    "SO_REUSEADDR to help with")
    else:
        still = [c for c in blocked if c["bind_reuse"] == "EADDRINUSE"]
        exp.part("d", "vote", mixed(len(still), len(blocked)), facts)
    for w, pid in zip(workers, "ef"):
        exp.part(pid, "aside", w["bind_plain"] == "EADDRINUSE" and w["bind_reuse"] == "EADDRINUSE"
                 and w["bind_after_worker"] == "ok", {"inherited": w})
    exp.part("g", "aside", z["state"] == "Z" and not z["ss"] and z["bind_plain"] == "ok",
             {"zombie": z})
    n = next((c for c in cases if not c["by_kill9"]), None)
    k = next((c for c in cases if c["by_kill9"] and c["held"] == "established"
              and not c["victim_reuse"]), None)
    if n is not None and k is not None:
        exp.part("h", "aside", n["bind_plain"] == k["bind_plain"]
                 and states(n["after_peer_close"]) == states(k["after_peer_close"])
                 and n["peer_saw"] == k["peer_saw"], {"normal_exit": n, "kill9": k})


if __name__ == "__main__":
    if sys.argv[1:2] == ["--victim"]:
        victim_main(sys.argv[2], "--reuseaddr" in sys.argv[3:])
    else:
        lab.main(observe, CLAIM, TITLE)
