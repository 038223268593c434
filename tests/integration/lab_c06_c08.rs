//! Claims 6–8 of the lab: the observations that are facts of Linux's socket API (errnos,
//! addresses, which receiver gets which broadcast), never the verdict strings.

use socklab::lab::{self, Lab, c06_bind_before_send};

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
