//! Packet ladders: one part's socket calls, the packets its sockets exchanged and the socket
//! states `ss` saw, on one time axis, as a sequence diagram with a column per socket address.
//!
//! Built from the evidence only, the same way for every experiment:
//! - **columns** are socket addresses: each traced socket (an fd from its `socket()` or
//!   `accept()` until the fd is reused) stands in the column of the first local address the
//!   trace shows for it (getsockname after bind, connect or an implicit bind), else of the
//!   address it tried to `bind()` (so a failed rebind sits under the socket that holds the
//!   address); sockets sharing an address (a listener and the sockets it accepted) share a
//!   column. Addresses only seen on the wire or in `ss` (a closed port, another process's
//!   socket) get a column of their own.
//! - **calls** are placed at their start ([`Span`](crate::trace::Span) of the trace event); a call that waited
//!   for a packet or state shown in its own column (a blocking `connect`, `accept`, `recv`) is
//!   split strace-style into the call and its `<... resumed>` return.
//! - **packets** are the part's wire lines (matched by description to the experiment's
//!   capture, which gives each its kernel timestamp and its frame number in the pcap) plus
//!   every captured frame to or from one of the part's sockets while the part ran. An arrow
//!   goes from the column of the packet's source address to that of its destination; an ICMP
//!   error goes back from the quoted datagram's destination to its source (RFC 792: it quotes
//!   the IP header and the first 8 bytes). A frame captured twice (leaving one namespace and
//!   entering the other over a veth) is drawn once.
//! - **states** are the part's `ss` lines placed at the end of the `ss` run that printed them
//!   ([`SsSeen`]), drawn where the state of a connection (local, peer) changed.
//!
//! A new scene starts where none of the current scene's columns is used again
//! ([`Ladder::scenes`]), and ports of one IP without a traced socket share a column.
//! Long repetitive stretches (a sender filling a buffer) are folded: a cycle of up to
//! [`MAX_CYCLE`] rows repeated four times or more is drawn twice (first and last), the
//! repeats between counted.
//! Renderers: [`ascii`] (the terminal, at most 100 columns), [`mermaid`] (the Markdown
//! report) and [`svg`] (the HTML report).

pub mod ascii;
pub mod mermaid;
pub mod svg;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

use super::capture::{self, Frame};
use super::{Evidence, Finding, Part, SsSeen};
use crate::trace::{Event, Outcome, render};

/// How long after a part's last call its sockets' packets still belong to it (the FIN that
/// follows a close, the last ACK).
pub const TRAILING: Duration = Duration::from_millis(200);
/// Longest cycle of rows folded when it repeats.
pub const MAX_CYCLE: usize = 4;
/// Ports of one IP without a traced socket drawn as one column from this many on.
pub const MERGE_PORTS: usize = 3;
/// Rows drawn at most; the middle of a longer ladder is left out, saying how many rows.
pub const MAX_ROWS: usize = 240;

/// One column: a socket address (or a socket that never had one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The address it stands for; `None` for a socket that never had one.
    pub addr: Option<SocketAddr>,
    /// The host, for a column known only by an IP address: an ICMP error quoting nothing, or
    /// [`MERGE_PORTS`] or more ports of one IP without a traced socket drawn as one column
    /// (`255.255.255.255:* (5 ports)`).
    pub host: Option<IpAddr>,
    /// Shown above it: `127.0.0.1:80`, `fd 5`, `127.0.0.1`.
    pub label: String,
    /// The traced sockets (fds) drawn in it; empty for an address only seen on the wire or
    /// in `ss` (no socket, or another process's).
    pub fds: Vec<i32>,
}

/// What happens on one row of the ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rung {
    /// A socket call, at its start. `waited`: it returned only after later rows, in a
    /// [`Rung::Return`]; else `text` includes its result.
    Call {
        /// Its column.
        col: usize,
        /// `connect(3, 127.0.0.1:80) = 0` (strace-like, [`render::text`]).
        text: String,
        /// It failed (an errno).
        failed: bool,
        /// It returned only later (a [`Rung::Return`] follows).
        waited: bool,
    },
    /// The return of a call that waited.
    Return {
        /// Its column.
        col: usize,
        /// `<... connect resumed> = 0`.
        text: String,
        /// It failed (an errno).
        failed: bool,
    },
    /// A packet, as an arrow.
    Packet {
        /// Column of its source address.
        from: usize,
        /// Column of its destination address.
        to: usize,
        /// Short label for the arrow: `SYN,ACK`, `PSH,ACK 5`, `UDP 5`, `ICMP port unreachable`.
        label: String,
        /// The wire line ([`capture::wire_lines`]).
        line: String,
        /// Its frame number in the experiment's pcapng file ([`capture::pcap_numbers`]).
        frame: usize,
    },
    /// A socket state `ss` saw, where it changed.
    State {
        /// The column of its local address.
        col: usize,
        /// `TIME-WAIT`, `ESTAB`, …
        state: String,
        /// The `ss` line.
        line: String,
    },
    /// Rows left out: a repeated cycle or the middle of a too long ladder.
    Folded {
        /// What was left out, e.g. `the 3 rows above 12 more times`.
        text: String,
    },
}

/// One row: when, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Time since the ladder's first row.
    pub at: Duration,
    /// What happened.
    pub rung: Rung,
}

/// A part's ladder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ladder {
    /// The wall-clock time of the first row (rows count from it).
    pub t0: Option<SystemTime>,
    /// Columns, left to right, in order of first appearance.
    pub columns: Vec<Column>,
    /// Rows in time order.
    pub rows: Vec<Row>,
}

impl Ladder {
    /// Whether there is a ladder to draw: two parties at least (two columns, or a packet).
    pub fn is_drawn(&self) -> bool {
        self.columns.len() >= 2
            || self
                .rows
                .iter()
                .any(|r| matches!(r.rung, Rung::Packet { .. }))
    }

    /// The ladder cut into scenes, each with only its own columns: a new scene begins where
    /// none of the current scene's columns is used again (a new connection on new addresses,
    /// as when an experiment repeats a trial). Times stay those of the whole ladder.
    pub fn scenes(&self) -> Vec<Self> {
        let mut last_use = vec![0; self.columns.len()];
        for (k, r) in self.rows.iter().enumerate() {
            for c in cols_of(&r.rung) {
                last_use[c] = k;
            }
        }
        let mut scenes: Vec<(Vec<usize>, Vec<Row>)> = Vec::new();
        let mut open_until = 0;
        for (k, r) in self.rows.iter().enumerate() {
            let cols = cols_of(&r.rung);
            if scenes.is_empty() || (k > open_until && !cols.is_empty()) {
                scenes.push((Vec::new(), Vec::new()));
            }
            let Some((seen, rows)) = scenes.last_mut() else {
                continue;
            };
            for c in cols {
                open_until = open_until.max(last_use[c]);
                if !seen.contains(&c) {
                    seen.push(c);
                }
            }
            rows.push(r.clone());
        }
        scenes
            .into_iter()
            .map(|(seen, rows)| Self {
                t0: self.t0,
                columns: seen.iter().map(|&c| self.columns[c].clone()).collect(),
                rows: rows
                    .into_iter()
                    .map(|r| Row {
                        at: r.at,
                        rung: remap(r.rung, |c| seen.iter().position(|&s| s == c).unwrap_or(c)),
                    })
                    .collect(),
            })
            .collect()
    }

    /// The short name of column `i` in drawings: `A`, `B`, … `Z`, `AA`, …
    pub fn letter(i: usize) -> String {
        let mut s = String::new();
        let mut n = i + 1;
        while n > 0 {
            let r = (n - 1) % 26;
            s.insert(0, char::from(b'A' + r as u8));
            n = (n - 1) / 26;
        }
        s
    }

    /// The legend of column `i`: `127.0.0.1:80 (fd 3, 5)`, or `(no traced socket)`.
    pub fn legend(&self, i: usize) -> String {
        let c = &self.columns[i];
        if c.fds.is_empty() {
            format!("{} (no traced socket)", c.label)
        } else if c.addr.is_none() {
            format!("{} (no address)", c.label)
        } else {
            let fds: Vec<String> = c.fds.iter().map(i32::to_string).collect();
            format!("{} (fd {})", c.label, fds.join(", "))
        }
    }
}

/// The note beside a row: the call, the packet without its addresses (`TCP [SYN] seq 1 win
/// 65495 len 0 #3`), the state. Columns are named by `letter`.
pub fn note(rung: &Rung) -> String {
    match rung {
        Rung::Call { col, .. } | Rung::Return { col, .. } | Rung::State { col, .. } => {
            format!("{}: {}", Ladder::letter(*col), detail(rung))
        }
        _ => detail(rung),
    }
}

/// The note without the column's letter, for drawings that put it over the column.
pub fn detail(rung: &Rung) -> String {
    match rung {
        Rung::Call { text, .. } | Rung::Return { text, .. } => text.clone(),
        Rung::Packet { line, frame, .. } => format!("{} #{frame}", packet_detail(line)),
        Rung::State { state, .. } => format!("{state} (ss)"),
        Rung::Folded { text } => text.clone(),
    }
}

/// A wire line without its addresses: `TCP [SYN] seq 1 win 65495 len 0`.
fn packet_detail(line: &str) -> String {
    let t: Vec<&str> = line.split_whitespace().collect();
    if t.len() >= 4 && t[2] == ">" {
        std::iter::once(t[0])
            .chain(t[4..].iter().copied())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        line.to_string()
    }
}

/// The ladder of part `p` of finding `f`.
pub fn of(f: &Finding, p: &Part) -> Ladder {
    build(&p.evidence, &f.frames, &f.ss_seen)
}

/// The part of `f` (by index) whose evidence draws the same ladder as part `i`, if one comes
/// before it (parts resting on one observation share its trace, wire and states).
pub fn drawn_before(f: &Finding, i: usize) -> Option<&Part> {
    let same =
        |a: &Evidence, b: &Evidence| a.trace == b.trace && a.wire == b.wire && a.states == b.states;
    let p = f.parts.get(i)?;
    f.parts[..i].iter().find(|q| same(&q.evidence, &p.evidence))
}

/// What a report says about part `p`'s ladder: `Some(Ok(ladder))` to draw, `Some(Err(q))`
/// when part `q` before it has the same one (drawn there), `None` when there is nothing to
/// draw (fewer than two parties).
pub fn for_part<'a>(f: &'a Finding, p: &Part) -> Option<Result<Ladder, &'a Part>> {
    let i = f.parts.iter().position(|q| std::ptr::eq(q, p))?;
    match drawn_before(f, i) {
        Some(q) => of(f, q).is_drawn().then_some(Err(q)),
        None => {
            let l = of(f, p);
            l.is_drawn().then_some(Ok(l))
        }
    }
}

/// The ladder of one part's evidence, with the experiment's captured frames (in capture order)
/// and its `ss` runs.
pub fn build(ev: &Evidence, frames: &[Frame], ss_seen: &[SsSeen]) -> Ladder {
    let mut b = Builder::default();
    let placed = b.sockets(&ev.trace);
    let window = window(&ev.trace);
    let mut rows: Vec<(SystemTime, Rung)> = Vec::new();
    for (ts, rung) in b.packets(ev, frames, window) {
        rows.push((ts, rung));
    }
    for (ts, rung) in b.states(&ev.states, ss_seen) {
        rows.push((ts, rung));
    }
    let calls = calls(&ev.trace, &placed, &rows);
    rows.extend(calls);
    rows.sort_by_key(|(t, _)| *t);
    let t0 = rows.first().map(|(t, _)| *t);
    let rows: Vec<Row> = rows
        .into_iter()
        .map(|(t, rung)| Row {
            at: t0.map_or(Duration::ZERO, |t0| {
                t.duration_since(t0).unwrap_or_default()
            }),
            rung,
        })
        .collect();
    let mut ladder = b.finish(rows);
    ladder.t0 = t0;
    ladder.rows = cap(fold(ladder.rows));
    ladder
}

/// The frame number in the experiment's pcapng file ([`capture::pcap_numbers`]) of each wire
/// line, matched by its description: the first frame not matched yet with that description,
/// searching on from the last match (wire lines are kept in capture order). A packet seen
/// leaving one namespace and entering another has the number of the copy the file keeps.
pub fn wire_frames(wire: &[String], frames: &[Frame]) -> Vec<Option<usize>> {
    let numbers = capture::pcap_numbers(frames);
    wire_frames_of(wire, &capture::wire_lines(frames))
        .into_iter()
        .map(|i| i.map(|i| numbers[i]))
        .collect()
}

/// The index in `lines` (the frames' wire lines, `None` for link chatter) of each wire line,
/// as [`wire_frames`].
fn wire_frames_of(wire: &[String], lines: &[Option<String>]) -> Vec<Option<usize>> {
    let mut taken = vec![false; lines.len()];
    let mut cursor = 0;
    wire.iter()
        .map(|w| {
            let hit = (cursor..lines.len())
                .chain(0..cursor)
                .find(|&i| !taken[i] && lines[i].as_ref() == Some(w))?;
            taken[hit] = true;
            cursor = hit + 1;
            Some(hit)
        })
        .collect()
}

/// From the first call's start to the last call's end plus [`TRAILING`].
fn window(trace: &[Event]) -> Option<(SystemTime, SystemTime)> {
    let start = trace.iter().filter_map(|e| e.span).map(|s| s.start).min()?;
    let end = trace.iter().filter_map(|e| e.span).map(|s| s.end).max()?;
    Some((start, end + TRAILING))
}

/// What a column is known by while building.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Addr(SocketAddr),
    Host(IpAddr),
    Fd(usize),
}

#[derive(Default)]
struct Builder {
    keys: Vec<Key>,
    fds: Vec<Vec<i32>>,
}

/// One traced socket: its fd, and the addresses the trace shows for it.
struct Traced {
    fd: i32,
    local: Option<SocketAddr>,
    bind_try: Option<SocketAddr>,
}

impl Builder {
    fn column(&mut self, key: Key) -> usize {
        if let Some(i) = self.keys.iter().position(|k| *k == key) {
            return i;
        }
        self.keys.push(key);
        self.fds.push(Vec::new());
        self.keys.len() - 1
    }

    /// The column of an address seen on the wire or in `ss`: the socket's own, else a
    /// wildcard-bound socket's on that port, else a column of its own.
    fn column_of(&mut self, addr: SocketAddr) -> usize {
        if let Some(i) = self.keys.iter().position(|k| *k == Key::Addr(addr)) {
            return i;
        }
        let wildcard = self.keys.iter().position(|k| {
            matches!(k, Key::Addr(a) if a.ip().is_unspecified() && a.port() == addr.port()
                && a.is_ipv4() == addr.is_ipv4())
        });
        wildcard.unwrap_or_else(|| self.column(Key::Addr(addr)))
    }

    /// The column of a host known only by IP: the one socket column with that IP, else its
    /// own.
    fn column_of_host(&mut self, ip: IpAddr) -> usize {
        let with_ip: Vec<usize> = (0..self.keys.len())
            .filter(|&i| matches!(self.keys[i], Key::Addr(a) if a.ip() == ip))
            .collect();
        match with_ip[..] {
            [one] => one,
            _ => self.column(Key::Host(ip)),
        }
    }

    fn owns(&self, addr: SocketAddr) -> bool {
        self.keys.iter().enumerate().any(|(i, k)| {
            !self.fds[i].is_empty()
                && matches!(k, Key::Addr(a) if *a == addr
                    || (a.ip().is_unspecified() && a.port() == addr.port()))
        })
    }

    /// Finds the traced sockets and their columns; returns each event's column.
    fn sockets(&mut self, trace: &[Event]) -> Vec<usize> {
        let mut socks: Vec<Traced> = Vec::new();
        let mut by_fd: HashMap<i32, usize> = HashMap::new();
        let mut on: Vec<usize> = Vec::with_capacity(trace.len());
        for e in trace {
            let new = |socks: &mut Vec<Traced>, fd: i32| {
                socks.push(Traced {
                    fd,
                    local: None,
                    bind_try: None,
                });
                socks.len() - 1
            };
            let s = match (e.call, &e.result) {
                ("socket", Outcome::Ok(fd)) => {
                    let s = new(&mut socks, *fd as i32);
                    by_fd.insert(*fd as i32, s);
                    s
                }
                ("socket", Outcome::Err { .. }) => new(&mut socks, -1),
                _ => match by_fd.get(&e.fd) {
                    Some(&s) => s,
                    None => {
                        let s = new(&mut socks, e.fd);
                        by_fd.insert(e.fd, s);
                        s
                    }
                },
            };
            if let ("accept", Outcome::Ok(fd)) = (e.call, &e.result) {
                let child = new(&mut socks, *fd as i32);
                socks[child].local = e.local;
                by_fd.insert(*fd as i32, child);
            } else if let Some(l) = e.local {
                socks[s].local.get_or_insert(l);
            }
            if e.call == "bind" {
                if let Ok(a) = e.args.parse::<SocketAddr>() {
                    socks[s].bind_try.get_or_insert(a);
                }
            }
            on.push(s);
        }
        let cols: Vec<usize> = socks
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let col = match t.local.or(t.bind_try) {
                    Some(a) => self.column(Key::Addr(a)),
                    None => self.column(Key::Fd(i)),
                };
                if !self.fds[col].contains(&t.fd) && t.fd >= 0 {
                    self.fds[col].push(t.fd);
                }
                col
            })
            .collect();
        on.into_iter().map(|s| cols[s]).collect()
    }

    /// The packets of the part: its wire lines and its sockets' frames while it ran.
    fn packets(
        &mut self,
        ev: &Evidence,
        frames: &[Frame],
        window: Option<(SystemTime, SystemTime)>,
    ) -> Vec<(SystemTime, Rung)> {
        let lines = capture::wire_lines(frames);
        let numbers = capture::pcap_numbers(frames);
        // A packet is drawn as the copy the pcapng file keeps (the arriving one of a packet
        // crossing a veth pair), so it is drawn once, at the frame number the file gives it.
        let copies = capture::kept_copies(frames);
        let mut chosen = vec![false; frames.len()];
        for n in wire_frames_of(&ev.wire, &lines).into_iter().flatten() {
            chosen[copies[n]] = true;
        }
        let ends: Vec<Option<Ends>> = frames.iter().map(ends).collect();
        if let Some((start, end)) = window {
            for (i, f) in frames.iter().enumerate() {
                let t = timestamp(f);
                if t < start || t > end || lines[i].is_none() {
                    continue;
                }
                if let Some(Ends::Sockets(s, d)) = ends[i] {
                    if self.owns(s) || self.owns(d) {
                        chosen[copies[i]] = true;
                    }
                }
            }
        }
        let mut picked: Vec<usize> = (0..frames.len()).filter(|&i| chosen[i]).collect();
        picked.sort_by_key(|&i| timestamp(&frames[i]));
        let mut out: Vec<(SystemTime, Rung)> = Vec::new();
        for i in picked {
            let Some(line) = &lines[i] else {
                continue;
            };
            let (from, to) = match ends[i] {
                Some(Ends::Sockets(s, d)) => (self.column_of(s), self.column_of(d)),
                Some(Ends::Hosts(s, d)) => (self.column_of_host(s), self.column_of_host(d)),
                None => continue,
            };
            out.push((
                timestamp(&frames[i]),
                Rung::Packet {
                    from,
                    to,
                    label: label(line),
                    line: line.clone(),
                    frame: numbers[i],
                },
            ));
        }
        out
    }

    /// The part's `ss` lines at the time `ss` printed them, where a connection's state changed.
    fn states(&mut self, states: &[String], ss_seen: &[SsSeen]) -> Vec<(SystemTime, Rung)> {
        let mut out = Vec::new();
        let mut last: HashMap<(String, String), String> = HashMap::new();
        let mut cursor = 0;
        for line in states {
            let hit = (cursor..ss_seen.len())
                .chain(0..cursor)
                .find(|&i| ss_seen[i].lines.contains(line));
            let (Some(i), Some((state, local, peer))) = (hit, parse_ss(line)) else {
                continue;
            };
            cursor = i;
            let Some(addr) = ss_addr(&local) else {
                continue;
            };
            if last.get(&(local.clone(), peer.clone())) == Some(&state) {
                continue;
            }
            last.insert((local, peer), state.clone());
            let col = self.column_of(addr);
            out.push((
                ss_seen[i].span.end,
                Rung::State {
                    col,
                    state,
                    line: line.clone(),
                },
            ));
        }
        out
    }

    /// The ladder with columns in order of first appearance.
    fn finish(self, rows: Vec<Row>) -> Ladder {
        // Ports of one IP without a traced socket (broadcasts to many ports) share a column.
        let mut rep: Vec<usize> = (0..self.keys.len()).collect();
        let mut by_ip: Vec<(IpAddr, Vec<usize>)> = Vec::new();
        for (i, k) in self.keys.iter().enumerate() {
            if let (Key::Addr(a), true) = (k, self.fds[i].is_empty()) {
                match by_ip.iter_mut().find(|(ip, _)| *ip == a.ip()) {
                    Some((_, group)) => group.push(i),
                    None => by_ip.push((a.ip(), vec![i])),
                }
            }
        }
        let mut merged: HashMap<usize, (IpAddr, usize)> = HashMap::new();
        for (ip, group) in by_ip {
            if group.len() >= MERGE_PORTS {
                for &i in &group {
                    rep[i] = group[0];
                }
                merged.insert(group[0], (ip, group.len()));
            }
        }
        let rows: Vec<Row> = rows
            .into_iter()
            .map(|r| Row {
                at: r.at,
                rung: remap(r.rung, |c| rep[c]),
            })
            .collect();
        let mut order: Vec<usize> = Vec::new();
        for r in &rows {
            for c in cols_of(&r.rung) {
                if !order.contains(&c) {
                    order.push(c);
                }
            }
        }
        let new_index = |c: usize| order.iter().position(|&o| o == c).unwrap_or(c);
        let rows = rows
            .into_iter()
            .map(|r| Row {
                at: r.at,
                rung: remap(r.rung, new_index),
            })
            .collect();
        let columns = order
            .iter()
            .map(|&c| {
                let (addr, host, label) = match (&self.keys[c], merged.get(&c)) {
                    (_, Some((ip, n))) => {
                        let any = SocketAddr::new(*ip, 0).to_string();
                        let host = any.strip_suffix(":0").unwrap_or(&any);
                        (None, Some(*ip), format!("{host}:* ({n} ports)"))
                    }
                    (Key::Addr(a), None) => (Some(*a), None, a.to_string()),
                    (Key::Host(h), None) => (None, Some(*h), h.to_string()),
                    (Key::Fd(_), None) => (
                        None,
                        None,
                        format!("fd {}", self.fds[c].first().unwrap_or(&-1)),
                    ),
                };
                Column {
                    addr,
                    host,
                    label,
                    fds: self.fds[c].clone(),
                }
            })
            .collect();
        Ladder {
            t0: None,
            columns,
            rows,
        }
    }
}

/// The rung with its columns renumbered by `to`.
fn remap(mut r: Rung, to: impl Fn(usize) -> usize) -> Rung {
    match &mut r {
        Rung::Call { col, .. } | Rung::Return { col, .. } | Rung::State { col, .. } => {
            *col = to(*col);
        }
        Rung::Packet { from, to: dst, .. } => {
            *from = to(*from);
            *dst = to(*dst);
        }
        Rung::Folded { .. } => {}
    }
    r
}

/// The columns a rung touches.
fn cols_of(r: &Rung) -> Vec<usize> {
    match r {
        Rung::Call { col, .. } | Rung::Return { col, .. } | Rung::State { col, .. } => vec![*col],
        Rung::Packet { from, to, .. } => vec![*from, *to],
        Rung::Folded { .. } => vec![],
    }
}

/// The calls of the trace as rows: each at its start; one that waited for a packet or state
/// in its own column is split into the call and its return.
fn calls(
    trace: &[Event],
    placed: &[usize],
    others: &[(SystemTime, Rung)],
) -> Vec<(SystemTime, Rung)> {
    let mut out = Vec::new();
    for (e, &col) in trace.iter().zip(placed) {
        let Some(span) = e.span else { continue };
        let failed = e.errno_name().is_some();
        let text = render::text(e)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        let waited = others.iter().any(|(t, r)| {
            *t > span.start
                && *t < span.end
                && match r {
                    Rung::Packet { to, .. } => *to == col,
                    Rung::State { col: c, .. } => *c == col,
                    _ => false,
                }
        });
        match (waited, text.rfind(") = ")) {
            (true, Some(at)) => {
                out.push((
                    span.start,
                    Rung::Call {
                        col,
                        text: format!("{} ...", &text[..=at]),
                        failed,
                        waited: true,
                    },
                ));
                out.push((
                    span.end,
                    Rung::Return {
                        col,
                        text: format!("<... {} resumed> {}", e.call, &text[at + 2..]),
                        failed,
                    },
                ));
            }
            _ => out.push((
                span.start,
                Rung::Call {
                    col,
                    text,
                    failed,
                    waited: false,
                },
            )),
        }
    }
    out
}

/// What a row is like, for finding repeated cycles: kind, columns, call name or flags.
fn shape(r: &Rung) -> String {
    match r {
        Rung::Call { col, text, .. } => format!("c{col}{}", text.split('(').next().unwrap_or("")),
        Rung::Return { col, text, .. } => format!("r{col}{}", text.split(' ').nth(1).unwrap_or("")),
        Rung::Packet {
            from, to, label, ..
        } => {
            let flags = label.split(' ').next().unwrap_or("");
            format!("p{from}-{to}{flags}")
        }
        Rung::State { col, state, .. } => format!("s{col}{state}"),
        Rung::Folded { .. } => "f".into(),
    }
}

/// Folds cycles of up to [`MAX_CYCLE`] rows repeated four times or more: the first cycle is
/// kept, then one row saying how many more times it came, then the last cycle.
fn fold(rows: Vec<Row>) -> Vec<Row> {
    let shapes: Vec<String> = rows.iter().map(|r| shape(&r.rung)).collect();
    let mut out = Vec::with_capacity(rows.len());
    let mut i = 0;
    while i < rows.len() {
        let mut best: Option<(usize, usize)> = None;
        for p in 1..=MAX_CYCLE {
            let mut n = 1;
            while i + (n + 1) * p <= rows.len()
                && shapes[i + n * p..i + (n + 1) * p] == shapes[i..i + p]
            {
                n += 1;
            }
            if n >= 4 && best.is_none_or(|(bp, bn)| n * p > bp * bn) {
                best = Some((p, n));
            }
        }
        match best {
            Some((p, n)) => {
                out.extend_from_slice(&rows[i..i + p]);
                let last = i + (n - 1) * p;
                out.push(Row {
                    at: rows[i + p].at,
                    rung: Rung::Folded {
                        text: format!(
                            "... the {p} row{} above {} more time{} ...",
                            if p == 1 { "" } else { "s" },
                            n - 2,
                            if n - 2 == 1 { "" } else { "s" }
                        ),
                    },
                });
                out.extend_from_slice(&rows[last..last + p]);
                i += n * p;
            }
            None => {
                out.push(rows[i].clone());
                i += 1;
            }
        }
    }
    out
}

/// Leaves out the middle of a ladder longer than [`MAX_ROWS`].
fn cap(rows: Vec<Row>) -> Vec<Row> {
    if rows.len() <= MAX_ROWS {
        return rows;
    }
    let keep = MAX_ROWS / 2;
    let left_out = rows.len() - 2 * keep;
    let mut out = rows[..keep].to_vec();
    out.push(Row {
        at: rows[keep].at,
        rung: Rung::Folded {
            text: format!("... {left_out} rows left out ..."),
        },
    });
    out.extend_from_slice(&rows[rows.len() - keep..]);
    out
}

/// A frame's kernel timestamp on the wall clock.
fn timestamp(f: &Frame) -> SystemTime {
    SystemTime::UNIX_EPOCH + f.ts
}

/// Where a packet goes, by address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ends {
    /// Source and destination with ports (TCP, UDP, or an ICMP error quoting one).
    Sockets(SocketAddr, SocketAddr),
    /// Only hosts known (other IP packets).
    Hosts(IpAddr, IpAddr),
}

/// The source and destination of a frame; for an ICMP error, from the host that sends it
/// (the quoted datagram's destination) to the quoted datagram's source socket.
fn ends(f: &Frame) -> Option<Ends> {
    let p = SlicedPacket::from_ethernet(&f.data).ok()?;
    let (src, dst): (IpAddr, IpAddr) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        Some(NetSlice::Ipv6(ip)) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        None => return None,
    };
    let ports = match &p.transport {
        Some(TransportSlice::Udp(u)) => Some((u.source_port(), u.destination_port())),
        Some(TransportSlice::Tcp(t)) => Some((t.source_port(), t.destination_port())),
        Some(TransportSlice::Icmpv4(i)) => quoted_ports(i.payload(), false).map(|(s, d)| (d, s)),
        Some(TransportSlice::Icmpv6(i)) => quoted_ports(i.payload(), true).map(|(s, d)| (d, s)),
        None => None,
    };
    Some(match ports {
        Some((sp, dp)) => Ends::Sockets(SocketAddr::new(src, sp), SocketAddr::new(dst, dp)),
        None => Ends::Hosts(src, dst),
    })
}

/// The ports of the datagram an ICMP error quotes (RFC 792, RFC 4443: the IP header, then
/// at least the first 8 bytes of the transport header), if it quotes TCP or UDP.
fn quoted_ports(quote: &[u8], v6: bool) -> Option<(u16, u16)> {
    const TCP: u8 = 6;
    const UDP: u8 = 17;
    let (proto, header_len) = if v6 {
        (*quote.get(6)?, 40)
    } else {
        (*quote.get(9)?, usize::from(quote.first()? & 0x0f) * 4)
    };
    if proto != TCP && proto != UDP {
        return None;
    }
    let ports = quote.get(header_len..header_len + 4)?;
    Some((
        u16::from_be_bytes([ports[0], ports[1]]),
        u16::from_be_bytes([ports[2], ports[3]]),
    ))
}

/// The label on a packet's arrow: TCP flags (and the payload length when there is one),
/// `UDP 5`, `ICMP port unreachable`.
fn label(line: &str) -> String {
    let t: Vec<&str> = line.split_whitespace().collect();
    let len = t
        .iter()
        .rposition(|w| *w == "len")
        .and_then(|i| t.get(i + 1))
        .copied()
        .unwrap_or("0");
    match t.first().copied() {
        Some("TCP") => {
            let flags = t
                .iter()
                .find(|w| w.starts_with('['))
                .map_or("", |w| w.trim_matches(|c| c == '[' || c == ']'));
            if len == "0" {
                flags.to_string()
            } else {
                format!("{flags} {len}")
            }
        }
        Some("UDP") => format!("UDP {len}"),
        Some(icmp @ ("ICMP" | "ICMPv6")) => {
            let num = |k: &str| t.iter().position(|w| *w == k).and_then(|i| t.get(i + 1));
            match (icmp, num("type").copied(), num("code").copied()) {
                ("ICMP", Some("3"), Some("3")) | ("ICMPv6", Some("1"), Some("4")) => {
                    format!("{icmp} port unreachable")
                }
                (_, Some(ty), Some(code)) => format!("{icmp} {ty}/{code}"),
                _ => icmp.to_string(),
            }
        }
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// An `ss -H` line as (state, local, peer); a leading Netid column (`tcp`, `udp`) is skipped.
pub fn parse_ss(line: &str) -> Option<(String, String, String)> {
    let mut t: Vec<&str> = line.split_whitespace().collect();
    if matches!(t.first(), Some(&("tcp" | "udp" | "raw"))) {
        t.remove(0);
    }
    (t.len() >= 5).then(|| (t[0].to_string(), t[3].to_string(), t[4].to_string()))
}

/// An address as `ss` prints it (`127.0.0.1:80`, `[::1]:80`, `*:80`), if it names a port.
pub fn ss_addr(text: &str) -> Option<SocketAddr> {
    if let Ok(a) = text.parse() {
        return Some(a);
    }
    let port = text.strip_prefix("*:")?.parse().ok()?;
    Some(SocketAddr::from(([0, 0, 0, 0], port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_flags_lengths_and_icmp_errors() {
        assert_eq!(
            label("TCP 127.0.0.1:1 > 127.0.0.1:2 [SYN,ACK] seq 5 win 65483 len 0"),
            "SYN,ACK"
        );
        assert_eq!(
            label("TCP 127.0.0.1:1 > 127.0.0.1:2 [PSH,ACK] seq 5 win 512 len 5"),
            "PSH,ACK 5"
        );
        assert_eq!(label("UDP 127.0.0.1:1 > 127.0.0.1:9 len 4"), "UDP 4");
        assert_eq!(
            label("ICMP 127.0.0.1 > 127.0.0.1 type 3 code 3"),
            "ICMP port unreachable"
        );
        assert_eq!(
            label("ICMPv6 ::1 > ::1 type 1 code 4"),
            "ICMPv6 port unreachable"
        );
        assert_eq!(
            packet_detail("TCP 127.0.0.1:1 > 127.0.0.1:2 [SYN] seq 5 win 9 len 0"),
            "TCP [SYN] seq 5 win 9 len 0"
        );
    }

    #[test]
    fn ss_lines_parse_with_or_without_netid() {
        let want = Some((
            "TIME-WAIT".to_string(),
            "127.0.0.1:5000".to_string(),
            "127.0.0.1:80".to_string(),
        ));
        assert_eq!(parse_ss("TIME-WAIT 0 0 127.0.0.1:5000 127.0.0.1:80"), want);
        assert_eq!(
            parse_ss("tcp TIME-WAIT 0 0 127.0.0.1:5000 127.0.0.1:80"),
            want
        );
        assert_eq!(parse_ss("LISTEN 0"), None);
        assert_eq!(ss_addr("*:80"), Some("0.0.0.0:80".parse().unwrap()));
        assert_eq!(ss_addr("[::1]:80"), Some("[::1]:80".parse().unwrap()));
        assert_eq!(ss_addr("0.0.0.0:*"), None);
    }

    #[test]
    fn icmp_quotes_give_the_ports_of_the_datagram() {
        // An IPv4 header of 20 bytes (IHL 5) carrying UDP, then ports 40000 > 9.
        let mut q = vec![0x45, 0, 0, 32, 0, 0, 0, 0, 64, 17, 0, 0];
        q.extend([127, 0, 0, 1, 127, 0, 0, 1]);
        q.extend([0x9c, 0x40, 0, 9, 0, 12, 0, 0]);
        assert_eq!(quoted_ports(&q, false), Some((40000, 9)));
        q[9] = 1;
        assert_eq!(quoted_ports(&q, false), None, "ICMP in ICMP has no ports");
        assert_eq!(quoted_ports(&q[..22], false), None, "too short");
    }

    fn row(rung: Rung) -> Row {
        Row {
            at: Duration::ZERO,
            rung,
        }
    }

    fn call(name: &str) -> Rung {
        Rung::Call {
            col: 0,
            text: format!("{name}(3) = 1"),
            failed: false,
            waited: false,
        }
    }

    #[test]
    fn repeated_cycles_are_folded_once_counted() {
        let mut rows = vec![row(call("socket"))];
        for _ in 0..6 {
            rows.push(row(call("send")));
            rows.push(row(Rung::Packet {
                from: 0,
                to: 1,
                label: "PSH,ACK 9".into(),
                line: String::new(),
                frame: 1,
            }));
        }
        rows.push(row(call("close")));
        let folded = fold(rows);
        let shapes: Vec<String> = folded.iter().map(|r| shape(&r.rung)).collect();
        assert_eq!(
            shapes,
            [
                "c0socket",
                "c0send",
                "p0-1PSH,ACK",
                "f",
                "c0send",
                "p0-1PSH,ACK",
                "c0close"
            ]
        );
        assert_eq!(
            note(&folded[3].rung),
            "... the 2 rows above 4 more times ..."
        );
        let short = vec![row(call("send")), row(call("send")), row(call("close"))];
        assert_eq!(
            fold(short.clone()),
            short,
            "two repeats are drawn as they are"
        );
    }

    #[test]
    fn letters_go_past_z() {
        assert_eq!(Ladder::letter(0), "A");
        assert_eq!(Ladder::letter(25), "Z");
        assert_eq!(Ladder::letter(26), "AA");
    }
}
