//! Claims 6–8 of the lab: the observations that are facts of Linux's socket API (errnos,
//! addresses, which receiver gets which broadcast), never the verdict strings.

use socklab::lab::{self, Lab, c06_bind_before_send, c07_broadcast_permission};

#[test]
fn c06_implicit_bind_then_bind_is_einval() {
    let o = c06_bind_before_send::observe().expect("observe claim 6");
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
    let lab = Lab::new();
    let exp = lab::registry()
        .into_iter()
        .find(|e| e.claim() == 6)
        .expect("claim 6 registered");
    let f = lab::run_one(exp, &lab);
    assert_eq!(f.parts.len(), 4, "{f:?}");
    assert!(f.parts.iter().all(|p| !p.evidence.trace.is_empty()));
}

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
    a.netns()
        .unwrap()
        .ip(&["route", "add", "default", "dev", "veth-a"])
        .unwrap();
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
