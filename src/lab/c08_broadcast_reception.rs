//! Claim 8: which receivers get a broadcast — the article's matrix, checked whole.
//!
//! Two hosts joined by veth (`a` 198.51.100.1/24, `b` 198.51.100.2/24, each with a default route
//! on its veth, as a host on a LAN has). Eighteen receivers in `b`, each on a port of its own:
//! bound to 0.0.0.0, to `b`'s own address, to 127.0.0.1, to the broadcast addresses
//! 198.51.100.255, 255.255.255.255 and 127.255.255.255, each without SO_BINDTODEVICE, with
//! `veth-b` and with `lo`. An unbound sender with SO_BROADCAST sends to 255.255.255.255, the
//! subnet broadcast and 127.255.255.255, first from `b` itself (the article's setup: sender and
//! receivers on one machine), then from `a`. After each round a unicast marker to a witness
//! socket in `b` proves that everything sent before has been delivered or dropped (the lab's
//! `marker` module), and every receiver is drained without blocking: absence is observed, not
//! guessed. IP_PKTINFO gives each datagram's destination.
//!
//! Then a host with two interfaces (a star of three namespaces): which one does a
//! 255.255.255.255 broadcast leave by, with no default route, with one, bound to one
//! interface's address, with SO_BINDTODEVICE? The captures in the two neighbours answer.
//!
//! Broadcasts only ever leave inside these namespaces: without root every part is `not run`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde_json::json;

use super::article::{BCAST_ONLY_ANY, BCAST_TEST_1, BCAST_TEST_2, BCAST_TEST_3, BCAST_TEST_4};
use super::host::anchor;
use super::host::{Link, needs_root};
use super::marker::{self, read_until_marker};
use super::observe::{Trial, drain, errno_name, ok_or_errno, res, show_addr, udp_bound};
use super::{Evidence, Experiment, Family, Lab, Part, Quote};
use crate::sock::{Proto, Sock, StepError};
use crate::trace::{Event, Recorder};

/// The experiment of claim 8.
pub struct BroadcastReception;

const B_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const SUBNET_BCAST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 255);
const LOOPBACK_BCAST: Ipv4Addr = Ipv4Addr::new(127, 255, 255, 255);
const LINK_IF: &str = "veth-b";
const BASE_PORT: u16 = 20_000;
const WITNESS_PORT: u16 = 20_100;
const EGRESS_PORT: u16 = 20_200;
/// Wire lines kept per part, so evidence stays readable.
const WIRE_LINES: usize = 12;

const STMT_UNBOUND: &str = "A sender that does not bind shows 0.0.0.0 in getsockname, yet the packet leaves with the interface's address";
const STMT_OWN_IP: &str = "A receiver bound to its own unicast address gets neither 255.255.255.255 nor the subnet broadcast";
const STMT_LOOPBACK: &str =
    "A receiver bound to 127.0.0.1 gets neither 127.255.255.255 nor 255.255.255.255";
const STMT_ANY: &str = "A receiver bound to 0.0.0.0 gets the subnet broadcast and 255.255.255.255 but not 127.255.255.255";
const STMT_ONLY_ANY: &str =
    "Only a receiver bound to 0.0.0.0 gets broadcasts, and Linux behaves the same";
const STMT_DEVICE: &str = "Bound to 0.0.0.0 with SO_BINDTODEVICE, a receiver gets the broadcasts of its interface and only those (the suggestion the author reports and doubts, \"我没看出有什么道理可言\", tested on its own)";
const STMT_EGRESS: &str = "A 255.255.255.255 broadcast leaves by one interface, chosen by the route lookup: unbound it follows the default route, and the sender chooses another by binding that interface's address or with SO_BINDTODEVICE";

/// What a receiver is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// 0.0.0.0 (INADDR_ANY).
    Any,
    /// The host's own unicast address on the link, 198.51.100.2.
    OwnIp,
    /// 127.0.0.1.
    Loopback,
    /// The subnet (directed) broadcast 198.51.100.255.
    SubnetBcast,
    /// The limited broadcast 255.255.255.255.
    LimitedBcast,
    /// The loopback network's broadcast 127.255.255.255.
    LoopbackBcast,
}

impl Bound {
    const ALL: [Self; 6] = [
        Self::Any,
        Self::OwnIp,
        Self::Loopback,
        Self::SubnetBcast,
        Self::LimitedBcast,
        Self::LoopbackBcast,
    ];

    /// The address bound.
    pub fn addr(self) -> Ipv4Addr {
        match self {
            Self::Any => Ipv4Addr::UNSPECIFIED,
            Self::OwnIp => B_IP,
            Self::Loopback => Ipv4Addr::LOCALHOST,
            Self::SubnetBcast => SUBNET_BCAST,
            Self::LimitedBcast => Ipv4Addr::BROADCAST,
            Self::LoopbackBcast => LOOPBACK_BCAST,
        }
    }
}

/// The SO_BINDTODEVICE of a receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// None.
    None,
    /// The veth interface to the other host.
    Link,
    /// The loopback interface.
    Lo,
}

impl Device {
    const ALL: [Self; 3] = [Self::None, Self::Link, Self::Lo];

    /// The interface name, if any.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::Link => Some(LINK_IF),
            Self::Lo => Some("lo"),
        }
    }
}

/// One receiver of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Its bind address.
    pub bound: Bound,
    /// Its SO_BINDTODEVICE.
    pub device: Device,
}

impl Row {
    /// Every combination, in matrix order.
    pub fn all() -> Vec<Self> {
        Bound::ALL
            .iter()
            .flat_map(|&bound| {
                Device::ALL
                    .iter()
                    .map(move |&device| Self { bound, device })
            })
            .collect()
    }

    /// `198.51.100.2 (own IP) + SO_BINDTODEVICE veth-b`.
    pub fn label(self) -> String {
        let mut s = self.bound.addr().to_string();
        if self.bound == Bound::OwnIp {
            s.push_str(" (own IP)");
        }
        if let Some(d) = self.device.name() {
            s.push_str(" + SO_BINDTODEVICE ");
            s.push_str(d);
        }
        s
    }
}

/// Where the broadcast is sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dst {
    /// 255.255.255.255.
    Limited,
    /// 198.51.100.255.
    Subnet,
    /// 127.255.255.255.
    LoopbackBcast,
}

impl Dst {
    const ALL: [Self; 3] = [Self::Limited, Self::Subnet, Self::LoopbackBcast];

    /// The destination address.
    pub fn addr(self) -> Ipv4Addr {
        match self {
            Self::Limited => Ipv4Addr::BROADCAST,
            Self::Subnet => SUBNET_BCAST,
            Self::LoopbackBcast => LOOPBACK_BCAST,
        }
    }
}

/// Where the sender is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// On the receivers' host (the article's setup).
    SameHost,
    /// On the other host, across the veth.
    OtherHost,
}

/// One column of the matrix: a destination sent to from one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Col {
    /// The destination.
    pub dst: Dst,
    /// Where the sender is.
    pub from: Origin,
}

impl Col {
    /// Every column, in matrix order.
    pub fn all() -> Vec<Self> {
        [Origin::SameHost, Origin::OtherHost]
            .iter()
            .flat_map(|&from| Dst::ALL.iter().map(move |&dst| Self { dst, from }))
            .collect()
    }

    /// `255.255.255.255 (same host)`; also the payload of the datagrams of this column.
    pub fn label(self) -> String {
        let w = match self.from {
            Origin::SameHost => "same host",
            Origin::OtherHost => "other host",
        };
        format!("{} ({w})", self.dst.addr())
    }
}

/// One cell: did the receiver get the datagram?
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// It arrived.
    Yes,
    /// It did not (proven by the marker).
    No,
    /// A setup call failed: `bind failed: EADDRNOTAVAIL`, `send failed: ENETUNREACH` …
    Failed(String),
}

impl Cell {
    fn text(&self) -> String {
        match self {
            Self::Yes => "yes".into(),
            Self::No => "no".into(),
            Self::Failed(s) => s.clone(),
        }
    }
}

/// An unbound sender of the matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// Where it is.
    pub from: Origin,
    /// getsockname after its sends.
    pub local: Option<SocketAddr>,
    /// The sources receivers saw on its datagrams.
    pub seen_from: Vec<SocketAddr>,
    /// Wire lines (captured in `b`) of packets from its port.
    pub wire: Vec<String>,
}

/// One way of sending to 255.255.255.255 from the host with two interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Egress {
    /// `no default route, unbound`, …
    pub case: String,
    /// A default route (via `veth-b`) existed.
    pub default_route: bool,
    /// The socket was neither bound nor bound to a device.
    pub plain: bool,
    /// sendto's errno, `None` if it succeeded.
    pub errno: Option<String>,
    /// getsockname after sendto.
    pub local: Option<SocketAddr>,
    /// The interfaces (of the sender) behind which the broadcast was received.
    pub reached: Vec<String>,
    /// The interfaces behind which the broadcast was captured on the wire.
    pub captured: Vec<String>,
}

/// What claim 8's calls showed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// Receivers.
    pub rows: Vec<Row>,
    /// Destinations and senders.
    pub cols: Vec<Col>,
    /// `cells[row][col]`.
    pub cells: Vec<Vec<Cell>>,
    /// The control of each column: did its datagrams reach the receivers' host at all (sent
    /// there, or seen arriving in its capture)? A cell of a column that did not is no evidence
    /// about the receiver and never counts.
    pub reached: Vec<bool>,
    /// Each delivery: `row ← col: from F to T`.
    pub deliveries: Vec<String>,
    /// The matrix's senders.
    pub senders: Vec<Sender>,
    /// The two-interface cases.
    pub egress: Vec<Egress>,
    /// Calls of the matrix.
    pub trace: Vec<Event>,
    /// Counters of the receivers' host that moved during the matrix (IpExt.InBcastPkts …).
    pub counters: BTreeMap<String, i64>,
    /// Calls of the two-interface cases.
    pub egress_trace: Vec<Event>,
    /// Wire lines of the two-interface cases, per neighbour.
    pub egress_wire: Vec<String>,
}

impl Observation {
    /// The cell of the receiver bound to `bound` with `device`, for `dst` sent `from`.
    pub fn cell(&self, bound: Bound, device: Device, dst: Dst, from: Origin) -> Option<&Cell> {
        let r = self
            .rows
            .iter()
            .position(|r| r.bound == bound && r.device == device)?;
        let c = self
            .cols
            .iter()
            .position(|c| c.dst == dst && c.from == from)?;
        self.cells.get(r)?.get(c)
    }

    /// Whether the datagrams to `dst` sent `from` reached the receivers' host.
    pub fn reached(&self, dst: Dst, from: Origin) -> bool {
        self.cols
            .iter()
            .position(|c| c.dst == dst && c.from == from)
            .and_then(|c| self.reached.get(c).copied())
            .unwrap_or(false)
    }

    /// Whether every named cell whose datagram reached the receivers' host exists and is `want`
    /// (Yes or No), and at least one did: cells no packet could reach are left out.
    fn all(
        &self,
        bound: Bound,
        device: Device,
        dsts: &[Dst],
        froms: &[Origin],
        want: &Cell,
    ) -> bool {
        let mut counted = 0;
        let held = dsts.iter().all(|&d| {
            froms.iter().all(|&f| {
                if !self.reached(d, f) {
                    return true;
                }
                counted += 1;
                self.cell(bound, device, d, f) == Some(want)
            })
        });
        held && counted > 0
    }

    /// The text of cell (`r`, `c`): `yes`, `no`, a failure, or `unreached` when the column's
    /// datagrams never reached the receivers' host.
    fn cell_text(&self, r: usize, c: usize) -> String {
        match self.cells.get(r).and_then(|row| row.get(c)) {
            Some(Cell::No) if !self.reached.get(c).copied().unwrap_or(false) => "unreached".into(),
            Some(cell) => cell.text(),
            None => "?".into(),
        }
    }

    /// The matrix as the report renders it: a first row, the control, says whether each
    /// column's datagrams reached the receivers' host.
    pub fn matrix(&self) -> serde_json::Value {
        let mut rows = vec!["(control) reached the receivers' host".to_string()];
        rows.extend(self.rows.iter().map(|r| r.label()));
        let mut cells = vec![
            self.reached
                .iter()
                .map(|&r| if r { "yes" } else { "no" }.to_string())
                .collect::<Vec<_>>(),
        ];
        cells.extend((0..self.rows.len()).map(|r| {
            (0..self.cols.len())
                .map(|c| self.cell_text(r, c))
                .collect::<Vec<_>>()
        }));
        json!({
            "title": "receiver bound to",
            "rows": rows,
            "cols": self.cols.iter().map(|c| c.label()).collect::<Vec<_>>(),
            "cells": cells,
        })
    }

    /// One receiver's cells grouped by sender: `same host: 255.255.255.255 no, …; other host: …`.
    fn row_line(&self, bound: Bound, device: Device) -> String {
        let Some(r) = self
            .rows
            .iter()
            .position(|r| r.bound == bound && r.device == device)
        else {
            return "not observed".into();
        };
        [
            (Origin::SameHost, "same host"),
            (Origin::OtherHost, "other host"),
        ]
        .iter()
        .map(|&(origin, name)| {
            let cells: Vec<String> = self
                .cols
                .iter()
                .enumerate()
                .filter(|(_, c)| c.from == origin)
                .map(|(ci, c)| format!("{} {}", c.dst.addr(), self.cell_text(r, ci)))
                .collect();
            format!("{name}: {}", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
    }
}

impl Experiment for BroadcastReception {
    fn claim(&self) -> u8 {
        8
    }
    fn title(&self) -> &'static str {
        "who receives a broadcast"
    }
    fn article(&self) -> &'static str {
        "An unbound sender shows 0.0.0.0 yet sends from the interface's address. Receivers bound to their own address or to 127.0.0.1 get no broadcast; bound to 0.0.0.0 they get the subnet broadcast and 255.255.255.255 but not 127.255.255.255: only 0.0.0.0 gets broadcasts, on Linux too; SO_BINDTODEVICE was suggested as the way out."
    }
    fn explanation(&self) -> &'static str {
        "Linux hands a broadcast to every UDP socket on the port whose bound address is 0.0.0.0 \
         or the destination address itself, and whose device is unset or the receiving \
         interface (__udp4_lib_mcast_deliver); a socket bound to a unicast address matches only \
         datagrams to that address. socket(7) SO_BINDTODEVICE: \"If a socket is bound to an \
         interface, only packets received from that particular interface are processed by the \
         socket\" (a broadcast a host sends to itself comes back on the interface it went out \
         of). 127.255.255.255 is the broadcast address of lo's 127.0.0.0/8 in the local routing \
         table, so it behaves like any subnet broadcast. ip(7) says that datagrams to broadcast \
         addresses \"can be sent or received only when the SO_BROADCAST socket flag is set\" and \
         that INADDR_BROADCAST \"has the same effect on bind as INADDR_ANY\": the receivers here \
         never set SO_BROADCAST and one is bound to 255.255.255.255, so the matrix tests both. \
         RFC 919 (255.255.255.255, never forwarded), RFC 922 (directed/subnet broadcast); RFC \
         1122 §3.3.6 (a host must receive both kinds) and §3.2.1.3 (a broadcast address is never \
         a source: an unbound socket sends with the outgoing interface's address). The output \
         interface of 255.255.255.255 comes from the route lookup: with no default route it \
         fails (ENETUNREACH) unless the socket is bound to an interface's address or has \
         SO_BINDTODEVICE, which then decides the interface."
    }
    fn analogue(&self, family: Family) -> Option<&'static str> {
        (family == Family::Ipv6).then_some(super::all_nodes::ANALOGUE)
    }
    fn run(&self, lab: &Lab) -> anyhow::Result<Vec<Part>> {
        if lab.family() == Family::Ipv6 {
            return super::all_nodes::parts(lab, 8);
        }
        if !lab.is_root() {
            return Ok(needs_root(&STATEMENTS));
        }
        let obs = observe(lab)?;
        Ok(judge(&obs))
    }
}

/// The parts: id, statement, the article's sentence a vote tests (f and g are asides).
const STATEMENTS: [(&str, &str, Option<Quote>); 7] = [
    ("a", STMT_UNBOUND, Some(BCAST_TEST_1)),
    ("b", STMT_OWN_IP, Some(BCAST_TEST_2)),
    ("c", STMT_LOOPBACK, Some(BCAST_TEST_3)),
    ("d", STMT_ANY, Some(BCAST_TEST_4)),
    ("e", STMT_ONLY_ANY, Some(BCAST_ONLY_ANY)),
    ("f", STMT_DEVICE, None),
    ("g", STMT_EGRESS, None),
];

fn port(row: usize) -> u16 {
    // 18 rows: the cast cannot truncate.
    BASE_PORT + row as u16
}

/// Builds the namespaces, runs the matrix and the two-interface cases, and records what
/// happened. Needs root.
pub fn observe(lab: &Lab) -> anyhow::Result<Observation> {
    let mut o = matrix(lab)?;
    let (egress, trace, wire) = egress(lab)?;
    o.egress = egress;
    o.egress_trace = trace;
    o.egress_wire = wire;
    Ok(o)
}

fn matrix(lab: &Lab) -> anyhow::Result<Observation> {
    let (a, b) = lab.pair("c08")?;
    for (h, dev) in [(&a, "veth-a"), (&b, LINK_IF)] {
        h.add_default_route(dev)?;
    }
    let t = Trial::new();
    let rec = t.rec();
    let counters_before = b.counters()?;
    let rows = Row::all();
    let cols = Col::all();
    let receivers: Vec<Result<Sock, String>> = b.run(|| {
        rows.iter()
            .enumerate()
            .map(|(i, r)| open_receiver(rec, *r, port(i)))
            .collect()
    })?;
    let witness = b.run(|| udp_bound(rec, Family::Ipv4.any(WITNESS_PORT)))??;

    let mut o = Observation {
        cells: receivers
            .iter()
            .map(|r| {
                let c = match r {
                    Ok(_) => Cell::No,
                    Err(e) => Cell::Failed(e.clone()),
                };
                vec![c; cols.len()]
            })
            .collect(),
        reached: vec![false; cols.len()],
        rows,
        cols: cols.clone(),
        ..Observation::default()
    };
    for from in [Origin::SameHost, Origin::OtherHost] {
        let host = if from == Origin::SameHost { &b } else { &a };
        let round: Vec<(usize, Col)> = cols
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, c)| c.from == from)
            .collect();
        let (local, send_errs) = host.run(|| send_round(rec, &round, o.rows.len()))??;
        read_until_marker(&witness, "the witness")?;
        for (r, e) in send_errs {
            if o.cells[r.0][r.1] == Cell::No {
                o.cells[r.0][r.1] = Cell::Failed(format!("send failed: {e}"));
            }
        }
        let mut seen_from = Vec::new();
        for (ri, rx) in receivers.iter().enumerate() {
            let Ok(rx) = rx else { continue };
            for g in drain(rx).0 {
                let Some(ci) = round
                    .iter()
                    .find(|(_, c)| g.payload == c.label().as_bytes())
                    .map(|(i, _)| *i)
                else {
                    continue;
                };
                o.cells[ri][ci] = Cell::Yes;
                seen_from.extend(g.datagram.from);
                o.deliveries.push(format!(
                    "{} ← {}: from {} to {}",
                    o.rows[ri].label(),
                    o.cols[ci].label(),
                    show_addr(g.datagram.from),
                    g.datagram
                        .to
                        .map_or_else(|| "?".into(), |t: IpAddr| t.to_string())
                ));
            }
        }
        seen_from.sort();
        seen_from.dedup();
        let from_sender: Vec<String> = local.map_or_else(Vec::new, |l| {
            let pat = format!(":{} >", l.port());
            b.wire().into_iter().filter(|w| w.contains(&pat)).collect()
        });
        // The control: a datagram sent on the receivers' host is there; one from the other
        // host must be seen arriving in the receivers' host's capture.
        for (ci, c) in &round {
            let to = format!("> {}:", c.dst.addr());
            o.reached[*ci] =
                from == Origin::SameHost || from_sender.iter().any(|w| w.contains(&to));
        }
        let wire = one_per_destination(from_sender.into_iter());
        o.senders.push(Sender {
            from,
            local,
            seen_from,
            wire,
        });
    }
    o.trace = t.take();
    o.counters = counters_before.delta(&b.counters()?);
    Ok(o)
}

/// A receiver: socket, IP_PKTINFO, SO_BINDTODEVICE (if any), bind. A failed step becomes the
/// cell's text.
fn open_receiver(rec: &Recorder, row: Row, port: u16) -> Result<Sock, String> {
    let fail = |what: &str, e: StepError| format!("{what} failed: {}", errno_name(&e));
    let s = Sock::open(&Family::Ipv4.lo(0), Proto::Udp, rec).map_err(|e| fail("socket", e))?;
    s.set_recv_pktinfo(true)
        .map_err(|e| fail("setsockopt", e))?;
    if let Some(d) = row.device.name() {
        s.bind_device(d).map_err(|e| fail("setsockopt", e))?;
    }
    s.bind(SocketAddr::from((row.bound.addr(), port)))
        .map_err(|e| fail("bind", e))?;
    Ok(s)
}

type SendErrs = Vec<((usize, usize), String)>;

/// One unbound sender with SO_BROADCAST sends each column's destination to every receiver's
/// port, then a marker to the witness. Runs pinned to one CPU inside the sender's host.
fn send_round(
    rec: &Recorder,
    round: &[(usize, Col)],
    rows: usize,
) -> anyhow::Result<(Option<SocketAddr>, SendErrs)> {
    marker::pin_thread();
    let s = Sock::open(&Family::Ipv4.lo(0), Proto::Udp, rec)?;
    s.set_broadcast(true)?;
    let mut errs = Vec::new();
    for (ci, c) in round {
        let label = c.label();
        for r in 0..rows {
            let to = SocketAddr::from((c.dst.addr(), port(r)));
            if let Err(e) = res(s.send_to(label.as_bytes(), to)) {
                errs.push(((r, *ci), e));
            }
        }
    }
    let local = s.local_addr();
    marker::send(rec, &[SocketAddr::from((B_IP, WITNESS_PORT))])?;
    Ok((local, errs))
}

/// How the two-interface sender is set up.
#[derive(Clone, Copy)]
enum How {
    Plain,
    BoundTo(Ipv4Addr),
    Device(&'static str),
}

fn egress(lab: &Lab) -> anyhow::Result<(Vec<Egress>, Vec<Event>, Vec<String>)> {
    const C_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 129);
    let links = [
        Link {
            center_if: "veth-b",
            center_cidr: "198.51.100.1/25",
            leaf_if: "veth-x",
            leaf_cidr: "198.51.100.2/25",
        },
        Link {
            center_if: "veth-c",
            center_cidr: "198.51.100.129/25",
            leaf_if: "veth-x",
            leaf_cidr: "198.51.100.130/25",
        },
    ];
    let leaf_ips = [B_IP, Ipv4Addr::new(198, 51, 100, 130)];
    let (x, leaves) = lab.star("c08e", &links)?;
    let t = Trial::new();
    let rec = t.rec();
    let rxs = leaves
        .iter()
        .map(|l| Ok(l.run(|| udp_bound(rec, Family::Ipv4.any(EGRESS_PORT)))??))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cases = [
        ("no default route, unbound", false, How::Plain),
        (
            "no default route, bound to 198.51.100.129 (veth-c's address)",
            false,
            How::BoundTo(C_IP),
        ),
        (
            "no default route, SO_BINDTODEVICE veth-c",
            false,
            How::Device("veth-c"),
        ),
        ("default route via veth-b, unbound", true, How::Plain),
        (
            "default route via veth-b, bound to 198.51.100.129 (veth-c's address)",
            true,
            How::BoundTo(C_IP),
        ),
        (
            "default route via veth-b, SO_BINDTODEVICE veth-c",
            true,
            How::Device("veth-c"),
        ),
    ];
    let mut out = Vec::new();
    let mut routed = false;
    for (case, default_route, how) in cases {
        if default_route && !routed {
            x.add_default_route("veth-b")?;
            routed = true;
        }
        let (errno, local) = x.run(|| {
            marker::pin_thread();
            let s = Sock::open(&Family::Ipv4.lo(0), Proto::Udp, rec)?;
            s.set_broadcast(true)?;
            match how {
                How::Plain => {}
                How::BoundTo(ip) => s.bind(SocketAddr::from((ip, 0)))?,
                How::Device(d) => s.bind_device(d)?,
            }
            let to = SocketAddr::from((Ipv4Addr::BROADCAST, EGRESS_PORT));
            let e = res(s.send_to(case.as_bytes(), to)).err();
            anyhow::Ok((e, s.local_addr()))
        })??;
        out.push(Egress {
            case: case.into(),
            default_route,
            plain: matches!(how, How::Plain),
            errno,
            local,
            reached: vec![],
            captured: vec![],
        });
    }
    x.run(|| {
        marker::pin_thread();
        marker::send(rec, &leaf_ips.map(|ip| SocketAddr::from((ip, EGRESS_PORT))))
    })??;
    let mut wire_all = Vec::new();
    for ((leaf, rx), link) in leaves.iter().zip(&rxs).zip(&links) {
        let got = read_until_marker(rx, format!("the receiver behind {}", link.center_if))?;
        let wire = leaf.wire();
        for e in &mut out {
            if got.iter().any(|g| g.payload == e.case.as_bytes()) {
                e.reached.push(link.center_if.into());
            }
            if let Some(l) = e.local {
                let pat = format!(":{} > 255.255.255.255:{EGRESS_PORT}", l.port());
                if wire.iter().any(|w| w.contains(&pat)) {
                    e.captured.push(link.center_if.into());
                }
            }
        }
        wire_all.extend(
            wire.into_iter()
                .filter(|w| w.starts_with("UDP"))
                .map(|w| format!("behind {}: {w}", link.center_if)),
        );
    }
    Ok((out, t.take(), wire_all))
}

/// The first wire line to each destination address (ports aside), at most [`WIRE_LINES`].
fn one_per_destination(lines: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for line in lines {
        let dst = line
            .split(" > ")
            .nth(1)
            .and_then(|rest| rest.rsplit_once(':'))
            .map(|(ip, _)| ip.to_string());
        if out.len() < WIRE_LINES && !seen.contains(&dst) {
            seen.push(dst);
            out.push(line);
        }
    }
    out
}

/// Judges the article's statements from an observation.
pub fn judge(o: &Observation) -> Vec<Part> {
    use Bound::*;
    use Device as D;
    use Dst::{Limited, Subnet};
    let both = [Origin::SameHost, Origin::OtherHost];
    let (yes, no) = (Cell::Yes, Cell::No);
    let with_matrix = || {
        let mut e = Evidence::default();
        e.fact("matrix", o.matrix());
        e
    };

    // a: the unbound senders.
    let mut ev = with_matrix();
    // The broadcast sendto calls that bound their socket: each carries the new local address.
    let marker_dst = format!(":{WITNESS_PORT}");
    ev.trace = o
        .trace
        .iter()
        .filter(|e| e.call == "sendto" && e.local.is_some() && !e.args.ends_with(&marker_dst))
        .cloned()
        .collect();
    let mut lines = Vec::new();
    let mut held = !o.senders.is_empty();
    for s in &o.senders {
        let unbound_shown = s
            .local
            .is_some_and(|l| l.ip().is_unspecified() && l.port() != 0);
        let real_source = !s.seen_from.is_empty()
            && s.seen_from
                .iter()
                .all(|f| !f.ip().is_unspecified() && Some(f.port()) == s.local.map(|l| l.port()));
        held &= unbound_shown && real_source;
        lines.push(format!(
            "sender {}: getsockname {}, receivers saw {}",
            match s.from {
                Origin::SameHost => "on b",
                Origin::OtherHost => "on a",
            },
            show_addr(s.local),
            s.seen_from
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        ));
        ev.wire.extend(s.wire.iter().cloned());
    }
    ev.fact("senders", &lines);
    let a = Part::judged("a", STMT_UNBOUND, lines.join("; "), held, ev);

    let part = |id: &str, stmt: &str, held: bool, rows: &[(Bound, Device)]| {
        let lines: Vec<String> = rows
            .iter()
            .map(|&(b, d)| {
                format!(
                    "{}: {}",
                    Row {
                        bound: b,
                        device: d
                    }
                    .label(),
                    o.row_line(b, d)
                )
            })
            .collect();
        Part::judged(id, stmt, lines.join("; "), held, with_matrix())
    };
    let b = part(
        "b",
        STMT_OWN_IP,
        o.all(OwnIp, D::None, &[Limited, Subnet], &both, &no),
        &[(OwnIp, D::None)],
    );
    let c = part(
        "c",
        STMT_LOOPBACK,
        o.all(
            Loopback,
            D::None,
            &[Limited, Dst::LoopbackBcast],
            &both,
            &no,
        ),
        &[(Loopback, D::None)],
    );
    let d = part(
        "d",
        STMT_ANY,
        o.all(Any, D::None, &[Limited, Subnet], &both, &yes)
            && o.all(Any, D::None, &[Dst::LoopbackBcast], &both, &no),
        &[(Any, D::None)],
    );

    // e: every "yes" is in a row bound to 0.0.0.0.
    let others: Vec<String> = o
        .rows
        .iter()
        .zip(&o.cells)
        .filter(|(r, cells)| r.bound != Any && cells.contains(&Cell::Yes))
        .map(|(r, _)| r.label())
        .collect();
    let any_yes = o.cells.iter().flatten().any(|c| *c == Cell::Yes);
    let mut ev = with_matrix();
    ev.trace = o.trace.clone();
    ev.counters = o.counters.clone();
    ev.fact("deliveries", &o.deliveries);
    let e = Part::judged(
        "e",
        STMT_ONLY_ANY,
        if others.is_empty() {
            "only receivers bound to 0.0.0.0 got broadcasts".into()
        } else {
            format!("also got broadcasts: {}", others.join(", "))
        },
        any_yes && others.is_empty(),
        ev,
    );

    // f: 0.0.0.0 + SO_BINDTODEVICE veth-b gets the link's broadcasts, not lo's.
    let link_ok = o.all(Any, D::Link, &[Limited, Subnet], &[Origin::OtherHost], &yes)
        && o.all(Any, D::Link, &[Dst::LoopbackBcast], &both, &no);
    let lo_ok = o.all(Any, D::Lo, &[Limited, Subnet], &[Origin::OtherHost], &no);
    let f = part(
        "f",
        STMT_DEVICE,
        link_ok && lo_ok,
        &[(Any, D::Link), (Any, D::Lo), (OwnIp, D::Link)],
    );

    // g (aside): which interface 255.255.255.255 leaves by.
    let lines: Vec<String> = o
        .egress
        .iter()
        .map(|e| {
            format!(
                "{}: sendto → {}, left by {}",
                e.case,
                ok_or_errno(&e.errno),
                if e.captured.is_empty() {
                    "none".into()
                } else {
                    e.captured.join(" and ")
                }
            )
        })
        .collect();
    let interfaces = |e: &Egress| {
        let mut ifs = e.captured.clone();
        ifs.extend(e.reached.iter().cloned());
        ifs.sort();
        ifs.dedup();
        ifs
    };
    let plain_one = o
        .egress
        .iter()
        .find(|e| e.default_route && e.plain)
        .is_some_and(|e| e.errno.is_none() && interfaces(e).len() == 1);
    // Every case where the sender named an interface (its address or SO_BINDTODEVICE) and
    // the send went out left by that interface alone.
    let chosen: Vec<&Egress> = o
        .egress
        .iter()
        .filter(|e| !e.plain && e.errno.is_none())
        .collect();
    let sender_chose = !chosen.is_empty() && chosen.iter().all(|e| interfaces(e) == ["veth-c"]);
    let picked_one = plain_one && sender_chose;
    let mut ev = Evidence {
        trace: o.egress_trace.clone(),
        wire: o.egress_wire.clone(),
        ..Evidence::default()
    };
    ev.fact("cases", &lines);
    let g = Part::judged("g", STMT_EGRESS, lines.join("; "), picked_one, ev);
    anchor(vec![a, b, c, d, e, f, g], &STATEMENTS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::Verdict;
    use crate::lab::testing::verdicts;

    /// The matrix a kernel following `rule` would give; all senders honest.
    fn observation(rule: impl Fn(Row, Col) -> bool) -> Observation {
        let rows = Row::all();
        let cols = Col::all();
        let cells = rows
            .iter()
            .map(|&r| {
                cols.iter()
                    .map(|&c| if rule(r, c) { Cell::Yes } else { Cell::No })
                    .collect()
            })
            .collect();
        let sender = |from, ip: &str| Sender {
            from,
            local: "0.0.0.0:40000".parse().ok(),
            seen_from: vec![format!("{ip}:40000").parse().unwrap()],
            wire: vec![],
        };
        // A datagram to 127.255.255.255 sent on the other host never leaves it.
        let reached = cols
            .iter()
            .map(|c| c.from == Origin::SameHost || c.dst != Dst::LoopbackBcast)
            .collect();
        let chosen = |case: &str, default_route| Egress {
            case: case.into(),
            default_route,
            plain: false,
            errno: None,
            local: "198.51.100.129:40002".parse().ok(),
            reached: vec!["veth-c".into()],
            captured: vec!["veth-c".into()],
        };
        Observation {
            rows,
            cols,
            cells,
            reached,
            senders: vec![
                sender(Origin::SameHost, "198.51.100.2"),
                sender(Origin::OtherHost, "198.51.100.1"),
            ],
            egress: vec![
                Egress {
                    case: "default route via veth-b, unbound".into(),
                    default_route: true,
                    plain: true,
                    errno: None,
                    local: "0.0.0.0:40001".parse().ok(),
                    reached: vec!["veth-b".into()],
                    captured: vec!["veth-b".into()],
                },
                chosen("bound to veth-c's address", true),
                chosen("SO_BINDTODEVICE veth-c", false),
            ],
            ..Observation::default()
        }
    }

    /// Linux: bound to 0.0.0.0 or to the destination itself, device unset or matching.
    fn linux(r: Row, c: Col) -> bool {
        let addr_ok = r.bound == Bound::Any || r.bound.addr() == c.dst.addr();
        let via_lo = c.dst == Dst::LoopbackBcast;
        let reaches = c.from == Origin::SameHost || !via_lo;
        let dev_ok = match r.device {
            Device::None => true,
            Device::Link => !via_lo,
            Device::Lo => via_lo,
        };
        addr_ok && reaches && dev_ok
    }

    /// The article: only 0.0.0.0 gets broadcasts, and never 127.255.255.255.
    fn article(r: Row, c: Col) -> bool {
        r.bound == Bound::Any && c.dst != Dst::LoopbackBcast && r.device != Device::Lo
    }

    #[test]
    fn linux_like_matrix() {
        use Verdict::*;
        assert_eq!(
            verdicts(judge(&observation(linux))),
            [
                Confirmed, Confirmed, Confirmed, Refuted, Refuted, Confirmed, Confirmed
            ]
        );
    }

    #[test]
    fn article_like_matrix_confirms_the_article() {
        use Verdict::*;
        assert_eq!(
            verdicts(judge(&observation(article))),
            [
                Confirmed, Confirmed, Confirmed, Confirmed, Confirmed, Confirmed, Confirmed
            ]
        );
    }

    #[test]
    fn each_rule_goes_the_other_way() {
        use Verdict::*;
        // Everybody gets everything; a sender that leaks 0.0.0.0; broadcast on every link.
        let mut o = observation(|_, _| true);
        o.senders[0].seen_from = vec!["0.0.0.0:40000".parse().unwrap()];
        o.egress[0].captured.push("veth-c".into());
        assert_eq!(
            verdicts(judge(&o)),
            [
                Refuted, Refuted, Refuted, Refuted, Refuted, Refuted, Refuted
            ]
        );
        // Nobody gets anything: "only 0.0.0.0" needs at least one delivery to hold.
        let o = observation(|_, _| false);
        let v = verdicts(judge(&o));
        assert_eq!(
            (&v[1], &v[2], &v[3], &v[4]),
            (&Confirmed, &Confirmed, &Refuted, &Refuted)
        );
        // A failed bind is not a "no".
        let mut o = observation(linux);
        o.cells[3][0] = Cell::Failed("bind failed: EADDRNOTAVAIL".into());
        assert_eq!(verdicts(judge(&o))[1], Refuted);
        // A sendto error in the routed case is not "one interface".
        let mut o = observation(linux);
        o.egress[0].errno = Some("ENETUNREACH".into());
        assert_eq!(verdicts(judge(&o))[6], Refuted);
        // The sender's choice ignored: bound to veth-c's address, it left by veth-b.
        let mut o = observation(linux);
        o.egress[1].captured = vec!["veth-b".into()];
        o.egress[1].reached = vec!["veth-b".into()];
        assert_eq!(verdicts(judge(&o))[6], Refuted);
    }

    #[test]
    fn cells_no_packet_reached_do_not_vote() {
        use Verdict::Refuted;
        // Bound to 127.0.0.1, the receiver gets nothing; the 127.255.255.255 sent on the other
        // host never reached its host. Were that cell counted as support, 8c would hold on it
        // alone: with the same-host cells "yes", 8c is refuted whatever that cell says.
        let mut o = observation(linux);
        assert!(!o.reached(Dst::LoopbackBcast, Origin::OtherHost));
        let r = o
            .rows
            .iter()
            .position(|r| r.bound == Bound::Loopback && r.device == Device::None)
            .unwrap();
        for c in 0..o.cols.len() {
            if o.cols[c].from == Origin::SameHost {
                o.cells[r][c] = Cell::Yes;
            }
        }
        assert_eq!(verdicts(judge(&o))[2], Refuted);
        // No column reached: nothing to judge "gets neither" on.
        let mut o = observation(|_, _| false);
        o.reached = vec![false; o.cols.len()];
        assert_eq!(verdicts(judge(&o))[1], Refuted);
        let m = observation(linux).matrix();
        assert_eq!(m["rows"][0], "(control) reached the receivers' host");
        assert_eq!(m["cells"][0][5], "no");
        assert_eq!(m["cells"][3][5], "unreached", "{m}");
        let parts = judge(&observation(linux));
        assert_eq!(
            parts.iter().filter(|p| p.votes()).count(),
            5,
            "f and g are asides"
        );
    }

    #[test]
    fn matrix_has_the_report_shape() {
        let m = observation(linux).matrix();
        assert_eq!(m["rows"].as_array().unwrap().len(), 19);
        assert_eq!(m["cols"].as_array().unwrap().len(), 6);
        assert_eq!(m["cells"][1].as_array().unwrap().len(), 6);
        assert_eq!(m["rows"][1], "0.0.0.0");
        assert_eq!(m["cols"][0], "255.255.255.255 (same host)");
        assert_eq!(m["cells"][1][0], "yes");
    }

    #[test]
    fn one_wire_line_per_destination() {
        let lines = [
            "UDP 198.51.100.1:5 > 255.255.255.255:20000 len 3",
            "UDP 198.51.100.1:5 > 255.255.255.255:20001 len 3",
            "UDP 198.51.100.1:5 > 198.51.100.255:20000 len 3",
        ];
        let kept = one_per_destination(lines.iter().map(ToString::to_string));
        assert_eq!(kept, [lines[0], lines[2]]);
    }

    #[test]
    fn not_run_without_root() {
        let parts = BroadcastReception.run(&Lab::with_root(false)).unwrap();
        assert_eq!(parts.len(), 7);
        assert!(
            parts
                .iter()
                .all(|p| matches!(p.verdict, Verdict::NotRun(_)))
        );
    }
}
