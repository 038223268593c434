//! Claims 1–5 of the lab, run for real: assert what the experiments observed that is a fact of
//! Linux's socket API (errnos, addresses, what arrived), never the verdict strings.

use serde_json::{Value, json};
use socklab::lab::{Finding, Lab};

use crate::lab_util;

/// Runs the experiment of `claim` (namespaces when root, the host's lo otherwise).
fn run(claim: u8) -> Finding {
    let f = lab_util::run(claim, &Lab::new());
    assert!(!f.errored(), "claim {claim} failed: {f:?}");
    f
}

/// The fact `key` of part `id`.
fn fact<'a>(f: &'a Finding, id: &str, key: &str) -> &'a Value {
    lab_util::fact(lab_util::part(f, id), key)
}

fn root() -> bool {
    let r = socklab::netns::have_net_admin();
    if !r {
        eprintln!("not root: the namespace-only facts are skipped");
    }
    r
}

fn ip_of(v: &Value) -> String {
    let s = v.as_str().unwrap_or_else(|| panic!("not an address: {v}"));
    s.rsplit_once(':')
        .map(|(ip, _)| ip.to_string())
        .unwrap_or_default()
}

fn port_of(v: &Value) -> u16 {
    let s = v.as_str().unwrap_or_else(|| panic!("not an address: {v}"));
    s.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(0)
}

#[test]
fn claim1_tcp_sendto_facts() {
    let f = run(1);
    assert_eq!(fact(&f, "a", "server_got"), "hello");
    assert_eq!(fact(&f, "a", "client_got"), "world");
    // Aside 1e: connect() to a bound port that does not listen is refused; a socket can
    // connect to itself.
    assert_eq!(
        fact(&f, "e", "connect_to_bound_not_listening"),
        &json!({"Err": "ECONNREFUSED"})
    );
    assert_eq!(fact(&f, "e", "self_connect"), &json!({"Ok": null}));
    // sendto with an address on a connected TCP socket: accepted, delivered to the peer,
    // and nobody connected to the address given.
    assert_eq!(fact(&f, "c", "sendto"), &json!({"Ok": 10}));
    assert_eq!(fact(&f, "c", "peer_got"), "via-sendto");
    assert_eq!(fact(&f, "c", "other_accept"), &json!({"Err": "EAGAIN"}));
    // On an unconnected TCP socket sendto fails with EPIPE (tcp_sendmsg, not ENOTCONN).
    assert_eq!(fact(&f, "d", "sendto"), &json!({"Err": "EPIPE"}));
    assert_eq!(fact(&f, "d", "target_accept"), &json!({"Err": "EAGAIN"}));
    if root() {
        // 1b: two bound sockets on two hosts connect to each other, neither listens: a TCP
        // simultaneous open (two bare SYNs cross) gives one connection carrying data both ways
        // — the peer pattern the article says TCP cannot have.
        assert_eq!(fact(&f, "b", "a_connect"), &json!({"Ok": null}));
        assert_eq!(fact(&f, "b", "b_connect"), &json!({"Ok": null}));
        assert_eq!(fact(&f, "b", "a_got"), "from-b");
        assert_eq!(fact(&f, "b", "b_got"), "from-a");
        assert_eq!(fact(&f, "b", "bare_syns"), 2);
        let calls = fact(&f, "b", "calls").to_string();
        assert!(
            !calls.contains("listen") && !calls.contains("accept"),
            "{calls}"
        );
        assert_eq!(fact(&f, "c", "other_syns"), 0);
        let wire = &f.parts[0].evidence.wire;
        assert!(wire.iter().any(|w| w.contains("[SYN]")), "{wire:?}");
        assert!(wire.iter().any(|w| w.contains("[SYN,ACK]")), "{wire:?}");
    }
}

#[test]
fn claim2_udp_pattern_facts() {
    let f = run(2);
    let received = |id: &str| -> Vec<String> {
        fact(&f, id, "received")
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["Ok"][0].as_str().unwrap_or("-").to_string())
            .collect()
    };
    assert_eq!(received("a"), ["a"]);
    assert_eq!(received("b"), ["b1", "b2"]);
    assert_eq!(received("c"), ["c1", "c2"]);
    assert_eq!(
        fact(&f, "d", "unconnected_send"),
        &json!({"Err": "EDESTADDRREQ"})
    );
    assert_eq!(fact(&f, "d", "connected_send"), &json!({"Ok": 1}));
    // 2f: pattern 3's bound side, which the article lists with send, gets EDESTADDRREQ from it
    // after receiving from the connected side.
    assert_eq!(fact(&f, "f", "send"), &json!({"Err": "EDESTADDRREQ"}));
    assert!(fact(&f, "f", "last_from").is_string());
    // A connected UDP socket does not receive a third socket's datagram; an unconnected one does.
    assert_eq!(fact(&f, "e", "received"), &json!(["peer"]));
    assert_eq!(fact(&f, "e", "drain_end"), "EAGAIN");
    assert_eq!(
        fact(&f, "e", "control_bound_socket")["received"],
        json!(["stranger", "peer"])
    );
    // 2e, the filter, is an aside: the article says "such as", not "only".
    assert!(!lab_util::part(&f, "e").votes());
    if root() {
        // The stranger's datagram found no socket: counted, and answered with ICMP.
        let counters = &lab_util::part(&f, "e").evidence.counters;
        assert_eq!(counters.get("Udp.NoPorts"), Some(&1), "{counters:?}");
        assert_eq!(
            counters.get("Icmp.OutDestUnreachs"),
            Some(&1),
            "{counters:?}"
        );
    }
}

#[test]
fn claim3_source_address_facts() {
    let f = run(3);
    assert_eq!(fact(&f, "a", "unbound_before"), "0.0.0.0:0");
    let after = fact(&f, "a", "unbound_after");
    assert_eq!(ip_of(after), "0.0.0.0");
    assert_ne!(port_of(after), 0, "sendto bound an ephemeral port");
    let seen = &fact(&f, "a", "unbound_seen")["Ok"];
    assert_eq!(ip_of(seen), "127.0.0.1");
    assert_eq!(port_of(seen), port_of(after));
    assert_eq!(ip_of(fact(&f, "b", "connected_local")), "127.0.0.1");
    assert_eq!(ip_of(&fact(&f, "c", "bound_seen")["Ok"]), "127.0.0.2");
    if root() {
        assert_eq!(ip_of(&fact(&f, "d", "unbound_seen")["Ok"]), "198.51.100.1");
        assert_eq!(ip_of(fact(&f, "d", "connected_local")), "198.51.100.1");
        assert_eq!(ip_of(&fact(&f, "d", "bound_seen")["Ok"]), "198.51.100.11");
        let route = fact(&f, "d", "route").as_str().unwrap();
        assert!(route.contains("src 198.51.100.1 "), "{route}");
    }
}

#[test]
fn claim4_udp_connect_facts() {
    let f = run(4);
    assert_eq!(fact(&f, "b", "connect"), &json!({"Ok": null}));
    // 4c and 4d are asides: their facts are claim 5's ground (4d is 5c's ECONNREFUSED), so
    // they are not counted twice.
    for id in ["c", "d"] {
        assert!(!lab_util::part(&f, id).votes(), "4{id} is an aside");
    }
    assert_eq!(fact(&f, "b", "peer"), fact(&f, "b", "dest"));
    assert_eq!(fact(&f, "c", "first_send"), &json!({"Ok": 4}));
    // The ICMP port unreachable of the 1st send is the 2nd send's error, once.
    assert_eq!(
        fact(&f, "d", "sends"),
        &json!([{"Ok": 4}, {"Err": "ECONNREFUSED"}, {"Ok": 4}])
    );
    assert_eq!(fact(&f, "d", "pollerr"), true);
    assert_eq!(
        fact(&f, "d", "unconnected_control")["sends"],
        json!([{"Ok": 4}, {"Ok": 4}, {"Ok": 4}])
    );
    if root() {
        assert_eq!(fact(&f, "a", "wire_during_connect"), &json!([]));
        let after = fact(&f, "a", "wire_after_send").to_string();
        assert!(after.contains("len 4"), "{after}");
        assert!(after.contains("type 3 code 3"), "{after}");
        let counters = &lab_util::part(&f, "d").evidence.counters;
        // The refused send sent nothing: two datagrams left and reached the closed port.
        assert_eq!(counters.get("Udp.OutDatagrams"), Some(&2), "{counters:?}");
        assert_eq!(counters.get("Udp.NoPorts"), Some(&2), "{counters:?}");
        assert_eq!(
            counters.get("Icmp.OutDestUnreachs"),
            Some(&2),
            "{counters:?}"
        );
    }
}

#[test]
fn claim5_receiver_first_facts() {
    let f = run(5);
    assert_eq!(
        fact(&f, "a", "sends"),
        &json!([{"Ok": 4}, {"Ok": 4}, {"Ok": 4}])
    );
    assert_eq!(fact(&f, "a", "icmp_back"), true);
    assert_eq!(fact(&f, "a", "recv_after"), &json!({"Err": "EAGAIN"}));
    // With IP_RECVERR the unconnected sender does hear the ICMP error.
    assert_eq!(
        fact(&f, "a", "with_ip_recverr")["sends"][1],
        json!({"Err": "ECONNREFUSED"})
    );
    assert_eq!(fact(&f, "b", "early_send"), &json!({"Ok": 5}));
    assert_eq!(fact(&f, "b", "received"), &json!(["late"]));
    assert_eq!(fact(&f, "b", "drain_end"), "EAGAIN");
    assert_eq!(fact(&f, "c", "sends")[1], json!({"Err": "ECONNREFUSED"}));
    if root() {
        assert_eq!(f.parts[0].evidence.counters.get("Udp.NoPorts"), Some(&3));
    }
}
