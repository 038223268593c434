//! `socklab bench mesh` across a fleet: four "hosts" as network namespaces, each with a veth
//! into a fifth namespace that holds only a bridge (198.51.100.0/24, TEST-NET-2; nothing on
//! the host's own namespace), a `bench server --token` agent on each, and the coordinator on
//! a sixth host of the same bridge. Root-only parts skip with a reason; the loopback parts
//! (token refusal, baseline regression, the Kubernetes Job's command line) run everywhere.

use std::process::Command;

use socklab::bench::RrSummary;
use socklab::bench::mesh::wire::HistogramWire;
use socklab::netns::{self, Netns};
use socklab::os::counters::Snapshot;

use crate::util::{self, BIN, Input, Output, Proc, have_nft, socklab, spawn};

const TOKEN: &str = "fleet-secret";

/// The bridge namespace, the host namespaces (198.51.100.{1..=n}) and the coordinator's
/// namespace (198.51.100.100), all joined by the bridge `br0`. Everything goes on drop.
struct Fleet {
    hosts: Vec<Netns>,
    coordinator: Netns,
    _bridge: Netns,
}

impl Fleet {
    fn new(tag: &str, n: usize) -> Option<Self> {
        if !netns::have_net_admin() {
            eprintln!("skipped: needs root to create network namespaces");
            return None;
        }
        let bridge = Netns::create(&format!("{tag}-br")).expect("bridge namespace");
        bridge
            .ip(&["link", "add", "br0", "type", "bridge"])
            .expect("bridge");
        bridge.ip(&["link", "set", "br0", "up"]).expect("bridge up");
        let attach = |ns: &Netns, last_octet: usize| {
            let port = format!("p{last_octet}");
            ns.ip(&[
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                bridge.name(),
            ])
            .expect("veth");
            ns.ip(&[
                "addr",
                "add",
                &format!("198.51.100.{last_octet}/24"),
                "dev",
                "eth0",
            ])
            .expect("address");
            ns.ip(&["link", "set", "eth0", "up"]).expect("up");
            bridge
                .ip(&["link", "set", &port, "master", "br0", "up"])
                .expect("into the bridge");
        };
        let hosts: Vec<Netns> = (1..=n)
            .map(|i| {
                let h = Netns::create(&format!("{tag}-h{i}")).expect("host namespace");
                attach(&h, i);
                h
            })
            .collect();
        let coordinator = Netns::create(&format!("{tag}-c")).expect("coordinator namespace");
        attach(&coordinator, 100);
        Some(Self {
            hosts,
            coordinator,
            _bridge: bridge,
        })
    }

    /// Starts an agent on host `i` (from 1), bound to 198.51.100.i:5301; waits until it listens.
    fn agent(&self, i: usize, token: Option<&str>) -> Proc {
        let mut c = self.hosts[i - 1].command(BIN);
        c.args(["bench", "server", "--bind", &format!("198.51.100.{i}:5301")]);
        c.args(["--idle-timeout", "3s"]);
        if let Some(t) = token {
            c.args(["--token", t]);
        }
        let p = spawn(c, Input::Null, Output::Keep);
        p.ready();
        p
    }

    /// `socklab bench mesh ARGS` from the coordinator's namespace (not yet waited for).
    fn mesh(&self, args: &[&str]) -> Proc {
        let mut c = self.coordinator.command(BIN);
        c.args(["bench", "mesh", "--token", TOKEN]).args(args);
        spawn(c, Input::Null, Output::Keep)
    }
}

fn peers(hosts: &[usize]) -> String {
    hosts
        .iter()
        .map(|i| format!("198.51.100.{i}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn doc(stdout: &[u8]) -> serde_json::Value {
    serde_json::from_slice(stdout).expect("one JSON document on stdout")
}

fn u(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

/// nftables counters in `ns`: one per other host, counting the UDP datagrams from that host
/// that reach the input hook (control traffic is TCP, so only bench data is counted).
fn count_udp_from(ns: &Netns, others: &[usize]) {
    let mut cmds = vec![
        "add table inet mesh".to_string(),
        "add chain inet mesh in { type filter hook input priority 0; }".to_string(),
    ];
    for o in others {
        cmds.push(format!(
            "add rule inet mesh in ip saddr 198.51.100.{o} meta l4proto udp counter"
        ));
    }
    util::nft(ns, &cmds);
}

/// (packets, bytes) of the counter for datagrams from `from` in `ns` (bytes: whole IP packets).
fn udp_counted(ns: &Netns, from: &str) -> (u64, u64) {
    let out = ns
        .command("nft")
        .args(["-j", "list", "table", "inet", "mesh"])
        .output()
        .expect("nft list");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nft JSON");
    for item in v["nftables"].as_array().expect("nftables list") {
        let Some(expr) = item["rule"]["expr"].as_array() else {
            continue;
        };
        let saddr = expr.iter().find_map(|e| {
            e["match"]["right"]
                .as_str()
                .filter(|_| e["match"]["left"]["payload"]["field"] == "saddr")
        });
        if saddr == Some(from) {
            let c = expr
                .iter()
                .find_map(|e| e.get("counter"))
                .expect("a counter");
            return (u(c, "packets"), u(c, "bytes"));
        }
    }
    panic!("no counter for {from}: {v}");
}

/// All 12 ordered pairs of 4 agents, TCP then UDP. Each UDP cell's bytes equal what reached
/// the target's namespace from that source (nftables counter: IP bytes − 28 bytes of IPv4 and
/// UDP header per datagram; GSO/GRO off so that a counted packet is one datagram); each TCP
/// cell's bytes (the target's count) equal the source's count of bytes sent.
#[test]
fn four_hosts_every_ordered_pair_tcp_and_udp_bytes_match_the_receivers() {
    if !have_nft() {
        return;
    }
    let Some(fleet) = Fleet::new("mesh4", 4) else {
        return;
    };
    let _agents: Vec<Proc> = (1..=4).map(|i| fleet.agent(i, Some(TOKEN))).collect();
    for i in 1..=4 {
        let others: Vec<usize> = (1..=4).filter(|&o| o != i).collect();
        count_udp_from(&fleet.hosts[i - 1], &others);
    }
    let mut run = fleet.mesh(&[
        "--peers",
        &peers(&[1, 2, 3, 4]),
        "--test",
        "compare",
        "-t",
        "0.3",
        "-b",
        "40M",
        "--no-gso",
        "--no-gro",
        "--json",
    ]);
    let f = run.expect_code(0);
    let d = doc(&f.stdout);
    assert_eq!(d["summary"]["ok"], 24, "{}", f.shown);
    assert_eq!(d["agents"].as_array().map(Vec::len), Some(4));
    let tests = d["tests"].as_array().expect("tests");
    assert_eq!(tests.len(), 2);
    for t in tests {
        let pairs = t["pairs"].as_array().expect("pairs");
        assert_eq!(pairs.len(), 12, "every ordered pair: {t}");
        let mut seen = std::collections::HashSet::new();
        for p in pairs {
            let (s, dst) = (p["source"].as_str().unwrap(), p["target"].as_str().unwrap());
            assert_ne!(s, dst);
            assert!(seen.insert((s.to_string(), dst.to_string())));
            assert_eq!(p["status"], "ok", "{p}");
            let row = &p["rows"][0];
            let bytes = u(row, "bytes");
            assert!(bytes > 0 && p["value"].as_f64().unwrap() > 0.0, "{p}");
            if t["transport"] == "tcp" {
                assert_eq!(bytes, u(row, "sent_bytes"), "TCP: received = sent: {p}");
            } else {
                let target = dst.trim_end_matches(":5301");
                let host =
                    &fleet.hosts[target.rsplit('.').next().unwrap().parse::<usize>().unwrap() - 1];
                let (packets, ip_bytes) = udp_counted(host, s.trim_end_matches(":5301"));
                assert_eq!(u(row, "packets"), packets, "datagrams that arrived: {p}");
                assert_eq!(bytes, ip_bytes - 28 * packets, "payload that arrived: {p}");
            }
        }
        // Rounds of disjoint pairs: no agent in two tests of the same round.
        let mut rounds = std::collections::HashMap::<u64, Vec<&str>>::new();
        for p in pairs {
            let r = rounds.entry(u(p, "round")).or_default();
            for who in ["source", "target"] {
                let a = p[who].as_str().unwrap();
                assert!(!r.contains(&a), "{a} twice in round {}", p["round"]);
                r.push(a);
            }
        }
        assert_eq!(rounds.len(), 6);
    }
}

/// latency-under-load over all 12 ordered pairs of 4 agents (TCP): the probes alone, then
/// beside a bulk stream from the same source to the same target (two tests at the target,
/// within its default --max-tests 4). Every cell carries its probe histogram with the
/// expected number of round trips (500 probes/s for 0.2 s, open loop), its figure is its
/// own p99, the loaded cells report the bulk stream's goodput, and the fleet's percentiles
/// are those of all cells' histograms merged (recomputed here from the shipped buckets).
#[test]
fn four_hosts_latency_under_load_cells_ship_histograms_that_merge() {
    let Some(fleet) = Fleet::new("meshl", 4) else {
        return;
    };
    let _agents: Vec<Proc> = (1..=4).map(|i| fleet.agent(i, Some(TOKEN))).collect();
    let mut run = fleet.mesh(&[
        "--peers",
        &peers(&[1, 2, 3, 4]),
        "--test",
        "latency-under-load",
        "--tcp",
        "-t",
        "0.2",
        "--probe-rate",
        "500",
        "--json",
    ]);
    let f = run.expect_code(0);
    let d = doc(&f.stdout);
    assert_eq!(d["summary"]["ok"], 24, "{}", f.shown);
    let tests = d["tests"].as_array().expect("tests");
    assert_eq!(tests.len(), 2, "probes alone, then under load");
    let scheduled = 500 * 200 / 1000;
    for (t, loaded) in tests.iter().zip([false, true]) {
        assert_eq!(t["test"], "probe");
        assert_eq!(t["under_load"], loaded, "{t}");
        assert_eq!(t["figure"], "rtt_p99_us");
        let pairs = t["pairs"].as_array().expect("pairs");
        assert_eq!(pairs.len(), 12, "every ordered pair: {t}");
        let mut merged = socklab::bench::sender::new_histogram();
        for p in pairs {
            assert_eq!(p["status"], "ok", "{p}");
            let wire: HistogramWire =
                serde_json::from_value(p["histogram"].clone()).expect("a histogram per cell");
            let h = wire.to_histogram().expect("a valid histogram");
            let n = h.len();
            assert!(
                (scheduled / 2..=scheduled + 1).contains(&n),
                "{n} probe round trips, {scheduled} scheduled: {p}"
            );
            assert_eq!(u(&p["latency"], "count"), n, "{p}");
            let p99_us = u(&p["latency"], "p99_ns") as f64 / 1e3;
            assert_eq!(
                p["value"].as_f64(),
                Some(p99_us),
                "the cell is its p99: {p}"
            );
            let row = &p["rows"][0];
            assert_eq!(row["under_load"], loaded, "{row}");
            match row["load_bits_per_second"].as_f64() {
                Some(bps) => assert!(loaded && bps > 0.0, "{row}"),
                None => assert!(!loaded, "a loaded cell reports its load: {row}"),
            }
            merged.add(&h).expect("same bounds");
        }
        let fleet_latency = &t["fleet_latency"];
        let expect = RrSummary::from_histogram(&merged, 0);
        assert_eq!(u(fleet_latency, "count"), merged.len());
        for k in ["min_ns", "p50_ns", "p90_ns", "p99_ns", "p999_ns", "max_ns"] {
            let want = serde_json::to_value(&expect).unwrap()[k].clone();
            assert_eq!(fleet_latency[k], want, "{k}: fleet = merged histograms");
        }
    }
}

/// An agent killed during the mesh: the mesh finishes, every pair of the other three agents
/// is measured, and every pair of the dead agent after its death is marked, not measured.
#[test]
fn an_agent_killed_midway_leaves_marked_cells_and_the_mesh_finishes() {
    let Some(fleet) = Fleet::new("meshk", 4) else {
        return;
    };
    let mut agents: Vec<Option<Proc>> =
        (1..=4).map(|i| Some(fleet.agent(i, Some(TOKEN)))).collect();
    let mut run = fleet.mesh(&[
        "--peers",
        &peers(&[1, 2, 3, 4]),
        "--test",
        "stream",
        "-u",
        "-t",
        "0.3",
        "-b",
        "10M",
        "--handshake-timeout",
        "1s",
        "--json",
    ]);
    // When round 3 of 6 begins, agent 4 dies (SIGKILL: no goodbye on any socket).
    run.wait_line("round 3/6");
    drop(agents[3].take());
    let f = run.expect_code(1);
    let d = doc(&f.stdout);
    let pairs = d["tests"][0]["pairs"].as_array().expect("pairs");
    assert_eq!(pairs.len(), 12, "the mesh finished: {}", f.shown);
    let dead = "198.51.100.4:5301";
    for p in pairs {
        let involved = p["source"] == dead || p["target"] == dead;
        let round = u(p, "round");
        if !involved || round < 2 {
            assert_eq!(p["status"], "ok", "{p}\n{}", f.shown);
        } else {
            assert_ne!(p["status"], "ok", "a dead agent's cell is marked: {p}");
            assert!(p["value"].is_null() && p["error"].is_string(), "{p}");
        }
    }
    assert_eq!(
        u(&d["summary"], "not_ok"),
        4,
        "rounds 3 to 6 each had one pair with agent 4"
    );
    assert!(
        f.stderr.contains("4 of 12 pairs not measured"),
        "{}",
        f.stderr
    );
}

/// A listed peer that is not an agent (plain TCP and UDP sockets bound on the agents' port,
/// counting what arrives) is never sent payload: over the whole mesh its TCP listener reads 0
/// bytes from its accepted connections, exactly one per attempt to reach it (the coordinator
/// asking it to be a source, an agent trying it as a target: 3 + 3 per test, 2 tests), the
/// namespace receives no UDP datagram at all (Udp.InDatagrams + Udp.NoPorts unchanged), and
/// Tcp.InSegs grows by at most 8 segments per connection (SYN, ACK, FIN, ACK, and one
/// retransmission of each on a loaded machine: no data stream).
#[test]
fn a_peer_that_is_not_an_agent_gets_no_traffic() {
    let Some(fleet) = Fleet::new("meshn", 4) else {
        return;
    };
    let _agents: Vec<Proc> = (1..=3).map(|i| fleet.agent(i, Some(TOKEN))).collect();
    let stranger = &fleet.hosts[3];
    let (tcp, udp, before) = stranger
        .run(|| {
            let t = std::net::TcpListener::bind("198.51.100.4:5301").expect("tcp bind");
            let u = std::net::UdpSocket::bind("198.51.100.4:5301").expect("udp bind");
            (t, u, Snapshot::read().expect("snmp"))
        })
        .expect("in the namespace");
    tcp.set_nonblocking(true).expect("nonblocking");
    udp.set_nonblocking(true).expect("nonblocking");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    // Accepts and reads until the mesh is over; never writes.
    let counter = std::thread::spawn(move || {
        use std::io::Read;
        let (mut conns, mut bytes, mut datagrams) = (Vec::new(), 0u64, 0u64);
        let mut accepted = 0u64;
        let mut buf = [0u8; 2048];
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            while let Ok((c, _)) = tcp.accept() {
                c.set_nonblocking(true).expect("nonblocking");
                accepted += 1;
                conns.push(c);
            }
            conns.retain_mut(|c| match c.read(&mut buf) {
                Ok(0) => false,
                Ok(n) => {
                    bytes += n as u64;
                    true
                }
                Err(_) => true,
            });
            while udp.recv_from(&mut buf).is_ok() {
                datagrams += 1;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        (accepted, bytes, datagrams)
    });
    let mut run = fleet.mesh(&[
        "--peers",
        &peers(&[1, 2, 3, 4]),
        "--test",
        "compare",
        "-t",
        "0.2",
        "-b",
        "10M",
        "--handshake-timeout",
        "500ms",
        "--json",
    ]);
    let f = run.expect_code(1);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (accepted, bytes, datagrams) = counter.join().expect("counter thread");
    let after = stranger
        .run(|| Snapshot::read().expect("snmp"))
        .expect("ns");
    let d = doc(&f.stdout);
    let stranger_addr = "198.51.100.4:5301";
    for t in d["tests"].as_array().expect("tests") {
        for p in t["pairs"].as_array().expect("pairs") {
            let want = if p["source"] == stranger_addr {
                "source_handshake"
            } else if p["target"] == stranger_addr {
                "target_handshake"
            } else {
                "ok"
            };
            assert_eq!(p["status"], want, "{p}");
        }
    }
    assert_eq!(bytes, 0, "no payload reached the stranger's TCP socket");
    assert_eq!(
        datagrams, 0,
        "no datagram reached the stranger's UDP socket"
    );
    assert_eq!(
        accepted, 12,
        "one connection per attempt, 6 per test: {}",
        f.stderr
    );
    let delta = |k: &str| after.get(k) - before.get(k);
    assert_eq!(
        delta("Udp.InDatagrams") + delta("Udp.NoPorts"),
        0,
        "no UDP at all arrived in the stranger's namespace"
    );
    assert!(
        delta("Tcp.InSegs") <= 8 * accepted as i64,
        "only handshakes and closes: {} segments",
        delta("Tcp.InSegs")
    );
}

/// On loopback: latency-under-load needs two test slots at the target (the probes and the
/// bulk stream each go through its handshake). Agents with `--max-tests 1` measure the probes
/// alone, and every loaded pair is a marked cell saying the target was busy; the mesh
/// finishes and exits 1.
#[test]
fn latency_under_load_needs_two_slots_at_the_target() {
    let start = || {
        let p = spawn(
            socklab(&[
                "bench",
                "server",
                "--bind",
                "127.0.0.1:0",
                "--token",
                TOKEN,
                "--max-tests",
                "1",
            ]),
            Input::Null,
            Output::Keep,
        );
        let a = p.ready();
        (p, a.to_string())
    };
    let ((_a, a), (_b, b)) = (start(), start());
    let f = spawn(
        socklab(&[
            "bench",
            "mesh",
            "--peers",
            &format!("{a},{b}"),
            "--token",
            TOKEN,
            "--tcp",
            "--test",
            "latency-under-load",
            "-t",
            "0.2",
            "--json",
        ]),
        Input::Null,
        Output::Keep,
    )
    .expect_code(1);
    let d = doc(&f.stdout);
    let tests = d["tests"].as_array().expect("tests");
    assert_eq!(tests.len(), 2, "{}", f.shown);
    for (t, loaded) in tests.iter().zip([false, true]) {
        assert_eq!(t["under_load"], loaded);
        for p in t["pairs"].as_array().expect("pairs") {
            if loaded {
                assert_eq!(p["status"], "target_handshake", "{p}");
                assert!(p["error"].as_str().unwrap().contains("busy"), "{p}");
            } else {
                assert_eq!(p["status"], "ok", "{p}");
            }
        }
    }
    assert!(
        f.stderr.contains("2 of 4 pairs not measured"),
        "{}",
        f.stderr
    );
}

/// On loopback: a tokenless agent refuses mesh requests, a wrong token is refused, and a run
/// compared with a baseline ten times better exits 1 naming every pair.
#[test]
fn tokens_are_required_and_a_baseline_names_the_regressed_pairs() {
    let start = |token: Option<&str>| {
        let mut args = vec!["bench", "server", "--bind", "127.0.0.1:0"];
        if let Some(t) = token {
            args.extend(["--token", t]);
        }
        let p = spawn(socklab(&args), Input::Null, Output::Keep);
        let a = p.ready();
        (p, a.to_string())
    };
    let (_a, a) = start(Some(TOKEN));
    let (_b, b) = start(Some(TOKEN));
    let (_c, c) = start(None);
    let mesh = |peers: &str, token: &str, extra: &[&str]| {
        let mut args = vec![
            "bench", "mesh", "--peers", peers, "--token", token, "--tcp", "--test", "stream", "-t",
            "0.2", "--json",
        ];
        args.extend_from_slice(extra);
        spawn(socklab(&args), Input::Null, Output::Keep)
    };
    let ok = mesh(&format!("{a},{b}"), TOKEN, &[]).expect_code(0);
    let base = doc(&ok.stdout);
    assert_eq!(base["summary"]["ok"], 2);

    let f = mesh(&format!("{a},{c}"), TOKEN, &[]).expect_code(1);
    let d = doc(&f.stdout);
    let pairs = d["tests"][0]["pairs"].as_array().expect("pairs");
    let from_c = pairs
        .iter()
        .find(|p| p["source"] == c.as_str())
        .expect("c → a");
    assert_eq!(from_c["status"], "source_handshake");
    assert!(
        from_c["error"].as_str().unwrap().contains("no --token"),
        "{from_c}"
    );
    let f = mesh(&format!("{a},{b}"), "wrong", &[]).expect_code(1);
    assert!(
        !f.stdout.is_empty() && f.stderr.contains("2 of 2 pairs not measured"),
        "{}",
        f.shown
    );
    assert!(
        doc(&f.stdout)["tests"][0]["pairs"][0]["error"]
            .as_str()
            .unwrap()
            .contains("authentication failed")
    );

    // A baseline ten times better than this run: both pairs regressed.
    let mut better = base.clone();
    for p in better["tests"][0]["pairs"].as_array_mut().expect("pairs") {
        let v = p["value"].as_f64().expect("value");
        p["value"] = serde_json::json!(v * 10.0);
    }
    let dir = std::env::temp_dir().join(format!("socklab-mesh-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("baseline.json");
    std::fs::write(&path, better.to_string()).expect("write baseline");
    let svg = dir.join("heatmap.svg");
    let f = mesh(
        &format!("{a},{b}"),
        TOKEN,
        &[
            "--baseline",
            path.to_str().unwrap(),
            "--tolerance",
            "20",
            "--svg",
            svg.to_str().unwrap(),
        ],
    )
    .expect_code(1);
    let err = f.stderr.lines().last().unwrap_or_default();
    assert!(
        err.contains("2 pair(s) regressed beyond 20 %"),
        "{}",
        f.shown
    );
    assert!(
        err.contains(&format!("{a} → {b}")) && err.contains(&format!("{b} → {a}")),
        "{err}"
    );
    assert_eq!(
        doc(&f.stdout)["baseline"]["regressions"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let picture = std::fs::read_to_string(&svg).expect("heatmap written");
    assert!(
        picture.starts_with("<svg") && picture.contains("TCP stream 1472 B"),
        "{picture}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Kubernetes Job's command line (the one-line `args` list in deploy/kubernetes/mesh-job.yaml)
/// parses with socklab's own CLI: `--dry-run` prints the plan, resolving and sending nothing.
#[test]
fn the_kubernetes_job_command_line_parses() {
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/kubernetes/mesh-job.yaml"
    ))
    .expect("the Job manifest");
    let line = yaml
        .lines()
        .find(|l| l.trim_start().starts_with("args: [") && l.contains("\"mesh\""))
        .expect("a one-line args list running bench mesh");
    let list = line.trim_start().trim_start_matches("args:").trim();
    let args: Vec<String> = serde_json::from_str(list).expect("a flow list of strings");
    assert!(
        args.iter().any(|a| a == "$(SOCKLAB_TOKEN)"),
        "token from the Secret"
    );
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.replace("$(SOCKLAB_TOKEN)", "from-the-secret"))
        .chain(["--dry-run".to_string()])
        .collect();
    let out = Command::new(BIN).args(&args).output().expect("run socklab");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("every A/AAAA record of socklab-agent:5301"),
        "{text}"
    );
    assert!(
        text.contains("test: Stream Tcp") && text.contains("test: Stream Udp"),
        "{text}"
    );
}
