//! Claims 6–8 of the lab: the observations that are facts of Linux's socket API (errnos,
//! addresses, which receiver gets which broadcast), never the verdict strings.

use socklab::lab::{
    self, Lab, c06_bind_before_send, c07_broadcast_permission, c08_broadcast_reception,
};

use crate::lab_util;

#[test]
fn c06_implicit_bind_then_bind_is_einval() {
    let o = c06_bind_before_send::observe(socklab::lab::Family::Ipv4).expect("observe claim 6");
    assert_eq!(o.before.map(|a| a.port()), Some(0), "{o:?}");
    let after = o.after.expect("getsockname after sendto");
    assert!(
        after.ip().is_unspecified(),
        "autobind keeps 0.0.0.0: {after}"
    );
    assert_ne!(after.port(), 0, "autobind picked a port");
    assert!(!o.rebinds.is_empty());
    for r in &o.rebinds {
        assert_eq!(
            r.errno.as_deref(),
            Some("EINVAL"),
            "bind {} after autobind",
            r.addr
        );
    }
    assert!(
        o.reply_reached_implicit,
        "a reply to the autobound port is delivered"
    );
    assert!(o.forward && o.back);
    assert_eq!(o.bound_local.0, o.bound_local.1);
}

#[test]
fn c06_runs_in_the_lab_with_four_parts() {
    let f = lab_util::run(6, &Lab::new());
    assert_eq!(f.parts.len(), 4, "{f:?}");
    assert!(f.parts.iter().all(|p| !p.evidence.trace.is_empty()));
    // 6d ("sending first, it cannot receive") is the lab's inference, not the article's: an
    // aside, whose fact is that the reply to the autobound port arrives.
    let d = lab_util::part(&f, "d");
    assert!(!d.votes());
    assert_eq!(lab_util::fact(d, "reply_to_autobound_port_delivered"), true);
}

/// Serialises the tests that build claim 8's namespaces, so the cleanup check sees only its own.
static NAMESPACES: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn root_lab(test: &str) -> Option<Lab> {
    let lab = Lab::new();
    if !lab.is_root() {
        eprintln!(
            "skipped {test}: needs root (CAP_NET_ADMIN) for namespaces; broadcasts never run on the host"
        );
        return None;
    }
    Some(lab)
}

#[test]
fn c07_broadcast_needs_so_broadcast_and_bind_to_broadcast_is_allowed() {
    let Some(lab) = root_lab("c07") else { return };
    let (a, b) = lab.pair("it-c07").expect("pair");
    let o = c07_broadcast_permission::observe(&a, &b).expect("observe claim 7");
    for c in &o.sends {
        if c.broadcast {
            assert_eq!((c.errno.as_deref(), c.delivered), (None, true), "{c:?}");
        } else {
            assert_eq!(
                (c.errno.as_deref(), c.delivered),
                (Some("EACCES"), false),
                "{c:?}"
            );
        }
    }
    // Linux lists broadcast addresses as local (RTN_BROADCAST): bind accepts them.
    for c in &o.binds {
        assert_eq!(c.errno, None, "{c:?}");
        let from = c.seen_from.expect("the peer got the datagram");
        assert_eq!(
            from.ip().to_string(),
            "198.51.100.1",
            "sent from the interface address"
        );
        assert_eq!(c.reply_delivered, Some(false), "{c:?}");
    }
    for c in &o.connects {
        if c.broadcast {
            assert_eq!(c.connect_errno, None, "{c:?}");
            assert!(c.delivered, "{c:?}");
            assert_eq!(
                c.reply_delivered,
                Some(false),
                "a reply never comes from the broadcast address"
            );
        } else {
            assert_eq!(c.connect_errno.as_deref(), Some("EACCES"), "{c:?}");
            assert_eq!(c.send_errno.as_deref(), Some("EDESTADDRREQ"), "{c:?}");
        }
    }
}

#[test]
fn c08_matrix_cells_that_are_linux_facts() {
    use c08_broadcast_reception::{Bound, Cell, Device, Dst, Origin};
    let Some(lab) = root_lab("c08") else { return };
    let _one = NAMESPACES.lock().unwrap_or_else(|e| e.into_inner());
    let o = c08_broadcast_reception::observe(&lab).expect("observe claim 8");
    let cell = |bound, device, dst, from| o.cell(bound, device, dst, from).unwrap().clone();
    for from in [Origin::SameHost, Origin::OtherHost] {
        // INADDR_ANY gets both broadcasts of the link; a unicast bind gets neither.
        assert_eq!(
            cell(Bound::Any, Device::None, Dst::Limited, from),
            Cell::Yes
        );
        assert_eq!(cell(Bound::Any, Device::None, Dst::Subnet, from), Cell::Yes);
        assert_eq!(
            cell(Bound::OwnIp, Device::None, Dst::Limited, from),
            Cell::No
        );
        assert_eq!(
            cell(Bound::OwnIp, Device::None, Dst::Subnet, from),
            Cell::No
        );
        assert_eq!(
            cell(Bound::Loopback, Device::None, Dst::Limited, from),
            Cell::No
        );
        // A socket bound to the broadcast address itself gets that broadcast.
        assert_eq!(
            cell(Bound::SubnetBcast, Device::None, Dst::Subnet, from),
            Cell::Yes
        );
        assert_eq!(
            cell(Bound::LimitedBcast, Device::None, Dst::Limited, from),
            Cell::Yes
        );
        // SO_BINDTODEVICE lo filters out what came in on the veth.
        assert_eq!(cell(Bound::Any, Device::Lo, Dst::Subnet, from), Cell::No);
    }
    // 127.255.255.255 is lo's subnet broadcast: 0.0.0.0 on the same host gets it.
    assert_eq!(
        cell(
            Bound::Any,
            Device::None,
            Dst::LoopbackBcast,
            Origin::SameHost
        ),
        Cell::Yes
    );
    assert_eq!(
        cell(
            Bound::Loopback,
            Device::None,
            Dst::LoopbackBcast,
            Origin::SameHost
        ),
        Cell::No
    );
    // The control: every column's datagrams reached the receivers' host except
    // 127.255.255.255 sent on the other host, which never leaves it (lo's broadcast).
    for c in &o.cols {
        let reached = !(c.dst == Dst::LoopbackBcast && c.from == Origin::OtherHost);
        assert_eq!(o.reached(c.dst, c.from), reached, "{}", c.label());
    }
    let parts = c08_broadcast_reception::judge(&o);
    let votes: Vec<&str> = parts
        .iter()
        .filter(|p| p.votes())
        .map(|p| p.id.as_str())
        .collect();
    assert_eq!(votes, ["a", "b", "c", "d", "e"], "8f and 8g are asides");
    // The unbound sender: 0.0.0.0:PORT locally, the interface address on the packet.
    for s in &o.senders {
        let l = s.local.expect("sender bound by sendto");
        assert!(l.ip().is_unspecified() && l.port() != 0, "{l}");
        assert!(!s.seen_from.is_empty());
        assert!(
            s.seen_from
                .iter()
                .all(|f| !f.ip().is_unspecified() && f.port() == l.port())
        );
    }
    let other = o
        .senders
        .iter()
        .find(|s| s.from == Origin::OtherHost)
        .unwrap();
    assert!(
        other
            .wire
            .iter()
            .all(|w| w.starts_with("UDP 198.51.100.1:")),
        "{:?}",
        other.wire
    );
    // 255.255.255.255 with no default route: ENETUNREACH; with one: out of that interface only.
    let e = |case: &str| o.egress.iter().find(|e| e.case == case).unwrap();
    assert_eq!(
        e("no default route, unbound").errno.as_deref(),
        Some("ENETUNREACH")
    );
    assert_eq!(
        e("no default route, SO_BINDTODEVICE veth-c").captured,
        ["veth-c"]
    );
    assert_eq!(e("default route via veth-b, unbound").captured, ["veth-b"]);
    assert_eq!(e("default route via veth-b, unbound").reached, ["veth-b"]);
    // 8g: the sender does choose: bound to veth-c's address, or SO_BINDTODEVICE veth-c, the
    // broadcast leaves by veth-c whatever the default route says.
    for case in [
        "default route via veth-b, bound to 198.51.100.129 (veth-c's address)",
        "default route via veth-b, SO_BINDTODEVICE veth-c",
    ] {
        assert_eq!(e(case).captured, ["veth-c"], "{case}");
    }
}

#[test]
fn c07_c08_leave_no_namespace_behind() {
    let Some(lab) = root_lab("cleanup") else {
        return;
    };
    let _one = NAMESPACES.lock().unwrap_or_else(|e| e.into_inner());
    for claim in [7, 8] {
        let f = lab_util::run(claim, &lab);
        assert_eq!(f.parts.len(), if claim == 7 { 4 } else { 7 }, "{f:?}");
        assert!(
            f.parts
                .iter()
                .all(|p| !matches!(p.verdict, lab::Verdict::NotRun(_))),
            "{f:?}"
        );
    }
    // Names are socklab-<tag>-<pid>-<n>; the tags of claims 7 and 8 are c07*, c08*.
    let pid = format!("-{}-", std::process::id());
    let left: Vec<String> = socklab::netns::existing()
        .into_iter()
        .filter(|n| n.contains(&pid) && n.starts_with("socklab-c0"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
