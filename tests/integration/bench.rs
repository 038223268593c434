//! `socklab bench` end to end: the real binary, a server in one network namespace and clients
//! in another, joined by a veth pair (198.51.100.0/24, 2001:db8::/64). nftables inside the
//! receiver's namespace drops a random share of packets, and its counter is the ground truth
//! for the loss socklab reports. Needs root (and `nft` for the loss tests); skips otherwise.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use socklab::netns::{self, Netns};

use crate::util::{self, have_nft};

const BIN: &str = env!("CARGO_BIN_EXE_socklab");

/// Two namespaces joined by veth, or None (with the reason printed) without root.
fn pair(tag: &str) -> Option<(Netns, Netns)> {
    if !netns::have_net_admin() {
        eprintln!("skipped: needs root to create network namespaces");
        return None;
    }
    Some(netns::pair(tag).expect("two namespaces joined by veth"))
}

/// A `bench server` running inside a namespace; killed on drop.
struct ServerProc {
    child: Child,
    addr: String,
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `socklab bench server --bind BIND:0 ARGS` in `ns` and waits for its "listening on"
/// line (the readiness signal), which names the port.
fn server(ns: &Netns, bind_ip: &str, args: &[&str]) -> ServerProc {
    let bind = if bind_ip.contains(':') {
        format!("[{bind_ip}]:0")
    } else {
        format!("{bind_ip}:0")
    };
    let mut child = ns
        .command(BIN)
        .args(["bench", "server", "--bind", &bind, "--idle-timeout", "3s"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn server");
    let stderr = child.stderr.take().expect("stderr piped");
    let mut lines = BufReader::new(stderr).lines();
    let first = lines
        .next()
        .expect("server said something")
        .expect("read stderr");
    let addr = first
        .rsplit_once("listening on ")
        .map(|(_, a)| a.trim().to_string())
        .unwrap_or_else(|| panic!("unexpected first line: {first}"));
    // Keep draining the server's log so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    ServerProc { child, addr }
}

/// Runs `socklab bench client ADDR ARGS` in `ns`, bounded by a timeout.
fn client(ns: &Netns, addr: &str, args: &[&str]) -> Output {
    let mut child = ns
        .command(BIN)
        .args(["bench", "client", addr])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn client");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("client hung: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "client failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

fn u(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

/// The packet count of the first nft counter in `ns`'s table `t`.
fn nft_packets(ns: &Netns) -> u64 {
    let out = ns
        .command("nft")
        .args(["list", "table", "inet", "t"])
        .output()
        .expect("nft list");
    let text = String::from_utf8_lossy(&out.stdout);
    let after = text.split("counter packets ").nth(1).expect("a counter");
    after
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("packet count")
}

/// An input-hook table in `ns` with one `rule`.
fn nft_input_rule(ns: &Netns, rule: &str) {
    util::nft(
        ns,
        &[
            "add table inet t".to_string(),
            "add chain inet t in { type filter hook input priority 0; }".to_string(),
            format!("add rule inet t in {rule}"),
        ],
    );
}

#[test]
fn udp_loss_equals_the_nftables_drop_count() {
    let Some((a, b)) = pair("bloss") else { return };
    if !have_nft() {
        return;
    }
    // Control is TCP, so only the data datagrams can be dropped.
    nft_input_rule(
        &b,
        "meta l4proto udp numgen random mod 100 < 10 counter drop",
    );
    let srv = server(&b, "198.51.100.2", &["--count", "1"]);
    // No GSO: nftables must see (and count) each datagram, not one super-packet per batch.
    let out = client(
        &a,
        &srv.addr,
        &["-u", "-t", "0.5", "-b", "20M", "--no-gso", "--json"],
    );
    let doc = json(&out);
    let r = &doc["results"][0];
    let dropped = nft_packets(&b);
    assert!(dropped > 0, "nftables dropped something at 10 %");
    assert_eq!(
        u(r, "lost"),
        dropped,
        "socklab's loss is nftables' drop count: {r}"
    );
    assert_eq!(u(r, "packets") + u(r, "lost"), u(r, "sent_packets"));
    assert_eq!(u(r, "duplicates"), 0);
    assert_eq!(
        r["rcvbuf_errors"].as_u64(),
        Some(0),
        "no kernel drops muddle the count"
    );
}

#[test]
fn tcp_delivers_every_byte_through_loss_with_retransmits() {
    let Some((a, b)) = pair("btcp") else { return };
    if !have_nft() {
        return;
    }
    let srv = server(&b, "198.51.100.2", &["--count", "1"]);
    let port = srv
        .addr
        .rsplit_once(':')
        .map(|(_, p)| p.to_string())
        .expect("port");
    // Drop data segments only (not the control connection).
    nft_input_rule(
        &b,
        &format!("tcp dport != {port} numgen random mod 100 < 3 counter drop"),
    );
    let out = client(
        &a,
        &srv.addr,
        &["--tcp", "-t", "0.5", "-b", "50M", "--json"],
    );
    let doc = json(&out);
    let r = &doc["results"][0];
    assert!(nft_packets(&b) > 0, "nftables dropped segments");
    assert!(u(r, "bytes") > 0);
    assert_eq!(
        u(r, "bytes"),
        u(r, "sent_bytes"),
        "every byte sent arrived: {r}"
    );
    assert!(
        u(r, "retransmits") > 0,
        "losses were repaired by retransmission: {r}"
    );
}

#[test]
fn client_and_server_over_ipv4_and_ipv6_with_and_without_token() {
    let Some((a, b)) = pair("bfam") else { return };
    for ip in ["198.51.100.2", "2001:db8::2"] {
        let open = server(&b, ip, &["--count", "1"]);
        let doc = json(&client(
            &a,
            &open.addr,
            &["-u", "-t", "0.2", "-b", "10M", "--json"],
        ));
        let r = &doc["results"][0];
        assert!(u(r, "packets") > 0, "{ip}: {r}");
        assert_eq!(
            u(r, "lost"),
            0,
            "a clean veth loses nothing at 10 Mbit/s: {r}"
        );

        let locked = server(&b, ip, &["--count", "3", "--token", "s3cret"]);
        let doc = json(&client(
            &a,
            &locked.addr,
            &["--tcp", "-t", "0.2", "--token", "s3cret", "--json"],
        ));
        assert!(u(&doc["results"][0], "bytes") > 0);
        for bad in [&["--token", "wrong"][..], &[][..]] {
            let out = client(
                &a,
                &locked.addr,
                &[&["--tcp", "-t", "0.2", "--json"][..], bad].concat(),
            );
            assert!(!out.status.success());
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("token"), "clear error: {err}");
            assert_eq!(err.lines().count(), 1, "one line: {err}");
            assert!(
                out.stdout.is_empty(),
                "nothing ran: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}

#[test]
fn two_clients_at_once_get_separate_results_and_a_third_is_told_busy() {
    let Some((a, b)) = pair("btwo") else { return };
    let srv = server(&b, "198.51.100.2", &["--max-tests", "2"]);
    let addr = srv.addr.clone();
    let runs: Vec<_> = ["8M", "16M"]
        .into_iter()
        .map(|rate| {
            let ns_name = a.name().to_string();
            let addr = addr.clone();
            std::thread::spawn(move || {
                Command::new("ip")
                    .args(["netns", "exec", &ns_name, BIN, "bench", "client", &addr])
                    .args(["-u", "-t", "0.6", "-b", rate, "--json"])
                    .output()
                    .expect("client")
            })
        })
        .collect();
    let docs: Vec<_> = runs
        .into_iter()
        .map(|h| json(&h.join().expect("thread")))
        .collect();
    let sent: Vec<u64> = docs
        .iter()
        .map(|d| u(&d["results"][0], "sent_packets"))
        .collect();
    for d in &docs {
        let r = &d["results"][0];
        assert_eq!(
            u(r, "packets"),
            u(r, "sent_packets"),
            "each client sees exactly its own datagrams: {r}"
        );
        assert_eq!(u(r, "lost"), 0);
    }
    assert!(
        sent[1] > sent[0],
        "the 16M client sent more than the 8M one: {sent:?}"
    );

    // Occupy both slots with clients admitted (a complete Start) that then go quiet during
    // setup. (Connections that only connect no longer take a slot: see bench_hostile.rs.)
    let hold = |n: usize| -> Vec<std::net::TcpStream> {
        (0..n)
            .map(|_| {
                let addr: std::net::SocketAddr = addr.parse().expect("server address");
                a.run(move || {
                    let (mut s, _) = crate::bench_hostile::hello(addr);
                    let start = socklab::bench::protocol::Message::Start {
                        auth: None,
                        params: crate::bench_hostile::params(serde_json::json!({})),
                    };
                    socklab::bench::protocol::write_message(&mut s, &start).expect("start");
                    let reply = socklab::bench::protocol::read_message(&mut s);
                    assert!(
                        matches!(
                            reply,
                            Ok(socklab::bench::protocol::Message::Accepted { .. })
                        ),
                        "admitted: {reply:?}"
                    );
                    s
                })
                .expect("in namespace")
            })
            .collect()
    };
    let held = hold(2);
    let out = client(&a, &addr, &["-u", "-t", "0.2", "--json"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("busy"), "told busy: {err}");
    // A client that vanishes frees its slot at once: the next test runs (bounded retries,
    // since the server notices the close on its own thread).
    drop(held);
    let mut ok = false;
    for _ in 0..50 {
        let out = client(&a, &addr, &["-u", "-t", "0.1", "--json"]);
        if out.status.success() {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ok, "the slots came free");
}

/// Runs `socklab bench ARGS` on loopback (no root needed), bounded by `timeout`.
fn local(args: &[&str]) -> Output {
    let mut child = Command::new("timeout")
        .args(["30", BIN, "bench", "local"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let _ = child.stdin.take();
    child.wait_with_output().expect("output")
}

#[test]
fn local_rr_pinned_json_stream_and_svg() {
    let svg = std::env::temp_dir().join(format!("socklab-bench-{}.svg", std::process::id()));
    let svg_s = svg.to_string_lossy().to_string();
    let out = local(&[
        "--test",
        "rr",
        "-u",
        "-t",
        "0.2",
        "--cpu",
        "0",
        "--json-stream",
        "--svg",
        &svg_s,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(
        lines.first().map(|l| l["type"].clone()),
        Some("start".into())
    );
    assert_eq!(
        lines[0]["data"]["cpu_count"].as_u64().map(|n| n > 0),
        Some(true)
    );
    let end = lines.last().expect("end line");
    assert_eq!(end["type"], "end");
    let lat = &end["data"]["results"][0]["latency"];
    assert!(u(lat, "count") > 0, "round trips measured: {lat}");
    assert!(u(lat, "p50_ns") <= u(lat, "p99_ns") && u(lat, "p99_ns") <= u(lat, "max_ns"));
    let text = std::fs::read_to_string(&svg).expect("svg written");
    let _ = std::fs::remove_file(&svg);
    assert!(
        text.starts_with("<svg") && text.contains("<polyline"),
        "a plotted CDF"
    );
}

#[test]
fn local_compare_intervals_and_bad_input() {
    let out = local(&[
        "-t", "0.3", "-i", "100ms", "-l", "64,1472", "-b", "50M", "--json",
    ]);
    let doc = json(&out);
    let rows = doc["results"].as_array().expect("rows");
    assert_eq!(rows.len(), 4, "TCP and UDP for each of two sizes");
    assert!(
        doc["summary"]
            .as_str()
            .is_some_and(|s| s.contains("UDP 64 B") && s.contains("UDP 1472 B"))
    );
    for bad in [
        &["-l", "10", "-u"][..],
        &["--cpu", "99"][..],
        &["-b", "fast"][..],
        &["-t", "0"][..],
        &["--test", "nope"][..],
    ] {
        let out = local(bad);
        assert_eq!(out.status.code(), Some(2), "usage error for {bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "one line for {bad:?}: {err}");
        assert!(!err.contains("panicked"));
    }
}

#[test]
fn a_client_vanishing_mid_test_frees_its_slot() {
    let Some((a, b)) = pair("bgone") else { return };
    let srv = server(&b, "198.51.100.2", &["--max-tests", "1"]);
    let mut first = a
        .command(BIN)
        .args([
            "bench", "client", &srv.addr, "-u", "-t", "20", "-b", "5M", "-i", "100ms",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn client");
    // The first interval line says the test is running (and holds the only slot).
    let stdout = first.stdout.take().expect("piped");
    let line = BufReader::new(stdout)
        .lines()
        .next()
        .expect("an interval line")
        .expect("read");
    assert!(line.contains("UDP"), "interval line: {line}");
    let out = client(&a, &srv.addr, &["-u", "-t", "0.1", "--json"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("busy"),
        "the slot is taken"
    );
    first.kill().expect("kill the first client");
    let _ = first.wait();
    // Ten short tries take a few seconds, far less than the 20 s the first test asked for:
    // passing means the slot came free when the client vanished, not when its test would end.
    let ok = (0..10).any(|_| {
        let out = client(&a, &srv.addr, &["-u", "-t", "0.1", "--json"]);
        out.status.success() || {
            std::thread::sleep(Duration::from_millis(50));
            false
        }
    });
    assert!(ok, "the vanished client's slot came free");
}

#[test]
fn reverse_and_bidirectional_between_namespaces() {
    let Some((a, b)) = pair("bdir") else { return };
    let srv = server(&b, "198.51.100.2", &["--count", "2"]);
    // -R: the server sends, the client (in the other namespace) counts.
    let doc = json(&client(
        &a,
        &srv.addr,
        &["-u", "-R", "-P", "2", "-t", "0.3", "-b", "10M", "--json"],
    ));
    let r = &doc["results"][0];
    assert_eq!(r["dir"], "down");
    assert_eq!(u(r, "streams"), 2);
    assert!(u(r, "packets") > 0);
    assert_eq!(u(r, "packets") + u(r, "lost"), u(r, "sent_packets"), "{r}");
    // --bidir over TCP: one row per direction, every byte of each arrived.
    let doc = json(&client(
        &a,
        &srv.addr,
        &["--tcp", "--bidir", "-t", "0.3", "-b", "50M", "--json"],
    ));
    let rows = doc["results"].as_array().expect("rows");
    let dirs: Vec<_> = rows
        .iter()
        .map(|r| r["dir"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(dirs, ["up", "down"]);
    for r in rows {
        assert!(u(r, "bytes") > 0);
        assert_eq!(u(r, "bytes"), u(r, "sent_bytes"), "{r}");
        // The peer is across a veth, not on this host: send buffers stay autotuned.
        for side in ["client", "server"] {
            let opts = r["socket_options"][side].as_array().expect("options");
            assert!(
                opts.iter().all(|o| o["option"] != "SO_SNDBUF"),
                "{side}: {opts:?}"
            );
        }
        assert!(r["local_peer_sndbuf"].is_null(), "{r}");
        // Nor are stream threads paired on a CPU: the scheduler places them.
        assert_eq!(r["stream_cpus"]["client"], serde_json::json!([]), "{r}");
        assert_eq!(r["stream_cpus"]["server"], serde_json::json!([]), "{r}");
    }
}

/// A server's limits refuse a test before it runs, with one clear line and nothing on stdout:
/// a duration above `--max-duration`, and an unpaced or too fast rate under `--max-rate`; a
/// test within the limits runs. TCP request/response works between the namespaces too.
#[test]
fn server_limits_refuse_before_running_and_rr_crosses_namespaces() {
    let Some((a, b)) = pair("blim") else { return };
    let srv = server(
        &b,
        "198.51.100.2",
        &["--count", "4", "--max-duration", "1s", "--max-rate", "100M"],
    );
    for (args, why) in [
        (&["--tcp", "-t", "3", "-b", "10M"][..], "duration"),
        (&["-u", "-t", "0.2"][..], "rate"),
        (&["-u", "-t", "0.2", "-b", "1G"][..], "rate"),
    ] {
        let out = client(&a, &srv.addr, args);
        assert!(!out.status.success(), "{args:?} ran");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("refused") && err.contains(why),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing ran");
    }
    let doc = json(&client(
        &a,
        &srv.addr,
        &[
            "--tcp", "--test", "rr", "-l", "64", "-t", "0.2", "-b", "10M", "--json",
        ],
    ));
    let lat = &doc["results"][0]["latency"];
    assert!(u(lat, "count") > 0, "round trips measured: {lat}");
    assert!(u(lat, "p50_ns") <= u(lat, "p99_ns"), "{lat}");
    assert!(u(lat, "p99_ns") <= u(lat, "max_ns"), "{lat}");
}

fn f(v: &serde_json::Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

/// Paced without GSO, each datagram leaves in its own send call and arrives in its own skb:
/// the RFC 3550 jitter comes from real per-datagram send and kernel receive times, and the
/// scheduling noise of a real loopback makes it non-zero. Unpaced with GSO/GRO, the report
/// says how many datagrams shared one timestamp instead of printing a bare number.
#[test]
fn udp_jitter_comes_from_per_datagram_times() {
    let doc = json(&local(&[
        "-u", "-t", "0.5", "-b", "20M", "--no-gso", "--no-gro", "--json",
    ]));
    let r = &doc["results"][0];
    assert!(u(r, "jitter_samples") > 100, "{r}");
    assert!(f(r, "jitter_ms") > 0.0, "real variation shows: {r}");
    assert!(
        f(r, "datagrams_per_receive_time") < 1.01,
        "one SO_TIMESTAMPNS stamp per datagram: {r}"
    );
    let doc = json(&local(&["-u", "-t", "0.3", "-b", "0", "--json"]));
    let r = &doc["results"][0];
    assert!(f(r, "datagrams_per_send_time") > 1.0, "{r}");
    let note = r["jitter_note"].as_str().expect("a note on shared stamps");
    assert!(note.contains("share one"), "{note}");
}

/// A tiny --rcvbuf makes the receiving socket drop: the loss is attributed to the socket,
/// exactly as many datagrams as SO_RXQ_OVFL counted (no GRO: one datagram per skb), and the
/// four places add up to the loss.
#[test]
fn rcvbuf_drops_are_attributed_to_the_socket() {
    let doc = json(&local(&[
        "-u", "-t", "0.3", "-b", "0", "--no-gro", "--rcvbuf", "4k", "--json",
    ]));
    let r = &doc["results"][0];
    let by = &r["loss_by_place"];
    assert!(u(by, "socket") > 0, "a 4 KiB buffer overflows: {r}");
    assert_eq!(u(by, "socket"), u(r, "socket_drops_datagrams"), "{r}");
    assert_eq!(u(r, "socket_drops_datagrams"), u(r, "socket_drops_skbs"));
    assert_eq!(
        u(by, "sender") + u(by, "socket") + u(by, "receiving_host") + u(by, "path"),
        u(r, "lost"),
        "{by}"
    );
}

/// The TCP message rate counts complete -l-byte messages at the receiver, not read calls;
/// every table line fits 100 columns; `--svg` without `-i` still plots throughput.
#[test]
fn tcp_rate_counts_messages_and_the_table_fits_100_columns() {
    let doc = json(&local(&[
        "--test", "rate", "--tcp", "-t", "0.3", "-l", "100", "--json",
    ]));
    let r = &doc["results"][0];
    assert_eq!(u(r, "packets"), u(r, "bytes") / 100, "{r}");
    assert!(u(r, "reads") > 0 && u(r, "reads") != u(r, "packets"), "{r}");
    let svg = std::env::temp_dir().join(format!("socklab-bench-w{}.svg", std::process::id()));
    let svg_s = svg.to_string_lossy().to_string();
    let out = local(&["-t", "0.3", "-b", "50M", "-l", "64,1472", "--svg", &svg_s]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without -i the run picked its own intervals for the plot.
    let plot = std::fs::read_to_string(&svg).expect("svg written");
    let _ = std::fs::remove_file(&svg);
    assert!(
        plot.contains("<polyline") && !plot.contains("no data"),
        "{plot}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        assert!(line.chars().count() <= 100, "too wide: {line}");
    }
    assert!(!text.contains("x its receive rate"), "{text}");
}

/// nftables drops inside the receiver's namespace are loss on the path: the path share equals
/// nftables' counter and no host counter claims any of it.
#[test]
fn nftables_drops_are_attributed_to_the_path() {
    let Some((a, b)) = pair("bpath") else { return };
    if !have_nft() {
        return;
    }
    nft_input_rule(
        &b,
        "meta l4proto udp numgen random mod 100 < 5 counter drop",
    );
    let srv = server(&b, "198.51.100.2", &["--count", "1"]);
    let doc = json(&client(
        &a,
        &srv.addr,
        &["-u", "-t", "0.5", "-b", "20M", "--no-gso", "--json"],
    ));
    let r = &doc["results"][0];
    let by = &r["loss_by_place"];
    let dropped = nft_packets(&b);
    assert!(dropped > 0);
    assert_eq!(u(by, "path"), dropped, "{r}");
    assert_eq!(
        u(by, "sender") + u(by, "socket") + u(by, "receiving_host"),
        0,
        "{r}"
    );
}

/// The rate search never settles unpaced: with a target any probe meets (100 %), the unpaced
/// first probe passes, and the run is still paced, at a rate a paced probe met.
#[test]
fn rate_search_settles_paced_even_when_unpaced_passes() {
    let _loopback = util::loopback_exclusive();
    let out = local(&["-u", "-t", "0.2", "--target-loss", "100", "--json"]);
    let doc = json(&out);
    let r = &doc["results"][0];
    let probes = r["rate_search"]["probes"].as_array().expect("probes");
    assert_eq!(u(&probes[0], "paced_bits_per_second"), 0, "{probes:?}");
    let settled = u(&r["rate_search"], "settled_bits_per_second");
    assert!(settled > 0, "{r}");
    assert!(
        probes[1..]
            .iter()
            .any(|p| u(p, "paced_bits_per_second") == settled),
        "settled on a rate a paced probe met: {probes:?}"
    );
    assert_eq!(u(r, "paced_bits_per_second"), settled);
}

/// Without -b, UDP searches the highest paced rate within 1 % loss. Behind a 50 Mbit/s token
/// bucket (tc tbf on the sender's veth) it settles below the limit; the receiver's counts
/// come from the other namespace over the control connection.
#[test]
fn rate_search_settles_below_a_tbf_limit() {
    let Some((a, b)) = pair("bsrch") else { return };
    let tc = a
        .command("tc")
        .args([
            "qdisc", "add", "dev", "veth-a", "root", "tbf", "rate", "50mbit",
        ])
        // A short queue (5 ms): a longer one absorbs a probe's overrun above the limit, and a
        // 300 ms probe at 1.15x a 50 ms queue's limit would lose nothing.
        .args(["burst", "32kb", "latency", "5ms"])
        .output()
        .expect("tc");
    if !tc.status.success() {
        eprintln!("skipped: tc tbf: {}", String::from_utf8_lossy(&tc.stderr));
        return;
    }
    let srv = server(&b, "198.51.100.2", &["--count", "12"]);
    let out = client(&a, &srv.addr, &["-u", "-t", "0.5", "--json"]);
    let doc = json(&out);
    let r = &doc["results"][0];
    let s = &r["rate_search"];
    let settled = u(s, "settled_bits_per_second");
    let limit = 50_000_000u64;
    assert!(settled > 0 && settled <= limit * 11 / 10, "{s}");
    assert!(settled >= limit / 5, "not absurdly low: {s}");
    assert_eq!(u(r, "paced_bits_per_second"), settled);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rate search: settled on"), "{err}");
    // The unpaced probe overflowed the bucket: that loss was the sender's (qdisc drops).
    assert!(
        s["probes"][0]["lost_percent"].as_f64().unwrap_or(0.0) > 1.0,
        "{s}"
    );
}

/// Latency under load: probes leave on their schedule whatever the replies do (open loop:
/// the count sent is the schedule's, 500/s for 0.5 s), alone and beside a bulk stream of the
/// same transport, over TCP and UDP, with p50 ≤ p99 ≤ p99.9 from the HDR histogram.
#[test]
fn latency_under_load_probes_open_loop_beside_bulk() {
    let doc = json(&local(&[
        "--test",
        "latency-under-load",
        "-t",
        "0.5",
        "--probe-rate",
        "500",
        "-b",
        "200M",
        "--json",
    ]));
    let rows = doc["results"].as_array().expect("rows");
    let seen: Vec<(String, bool)> = rows
        .iter()
        .map(|r| {
            (
                r["transport"].as_str().unwrap_or("").to_string(),
                r["under_load"].as_bool().expect("under_load"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("tcp".into(), false),
            ("tcp".into(), true),
            ("udp".into(), false),
            ("udp".into(), true)
        ]
    );
    for r in rows {
        // At most the schedule's 250 (a ping-pong on loopback makes thousands), and not far
        // below it (the sender thread may start late on a busy machine).
        let sent = u(r, "sent_packets");
        assert!(
            (200..=250).contains(&sent),
            "the schedule, not the replies: {r}"
        );
        let lat = &r["latency"];
        assert!(u(lat, "count") > 0, "{r}");
        assert!(u(lat, "p50_ns") <= u(lat, "p99_ns") && u(lat, "p99_ns") <= u(lat, "p999_ns"));
        let load = r["load_bits_per_second"].as_f64();
        assert_eq!(load.is_some(), r["under_load"] == true, "{r}");
        assert!(load.is_none_or(|b| b > 0.0), "the bulk stream ran: {r}");
    }
    assert!(
        doc["summary"]
            .as_str()
            .is_some_and(|s| s.contains("TCP probes") && s.contains("UDP probes")),
        "{doc}"
    );
}

/// Runs `socklab bench local ARGS`, reads stdout lines until `ready` says enough arrived,
/// sends SIGINT to the process, and returns (exit code, every stdout line).
fn interrupted(args: &[&str], ready: impl Fn(&[String]) -> bool) -> (Option<i32>, Vec<String>) {
    let mut child = Command::new(BIN)
        .args(["bench", "local"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready(&lines) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) => lines.push(l),
            Err(_) => {
                let _ = child.kill();
                panic!("not ready: {lines:?}");
            }
        }
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("SIGINT did not end the run");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    lines.extend(rx.iter());
    (code, lines)
}

/// Ctrl-C (a real SIGINT to the client process) prints the intervals finished so far, as a
/// table or as JSON, and exits 130.
#[test]
fn ctrl_c_prints_the_intervals_so_far_and_exits_130() {
    let is_interval = |l: &String| l.starts_with("[TCP");
    let (code, lines) = interrupted(&["--tcp", "-t", "20", "-i", "100ms", "-b", "100M"], |ls| {
        ls.iter().filter(|l| is_interval(l)).count() >= 2
    });
    assert_eq!(code, Some(130), "{lines:?}");
    let at = lines
        .iter()
        .position(|l| l.starts_with("interrupted:"))
        .unwrap_or_else(|| panic!("a partial report: {lines:?}"));
    assert!(
        lines[at + 1..].iter().filter(|l| is_interval(l)).count() >= 2,
        "{lines:?}"
    );
    let (code, lines) = interrupted(
        &[
            "-u",
            "-t",
            "20",
            "-i",
            "100ms",
            "-b",
            "10M",
            "--json-stream",
        ],
        |ls| {
            ls.iter()
                .filter(|l| l.contains(r#""type":"interval""#))
                .count()
                >= 2
        },
    );
    assert_eq!(code, Some(130), "{lines:?}");
    let end: serde_json::Value =
        serde_json::from_str(lines.last().expect("an end line")).expect("JSON");
    assert_eq!(end["type"], "end");
    assert_eq!(end["data"]["interrupted"], true);
    assert!(
        end["data"]["intervals"]
            .as_array()
            .is_some_and(|a| a.len() >= 2),
        "{end}"
    );
}

/// The bench lists only flags it honours: endpoint-only socket options are not in its help and
/// clap refuses them (exit 2, one line); `--format json` is `--json`.
#[test]
fn bench_flags_are_only_those_it_honours() {
    let help = Command::new(BIN)
        .args(["bench", "local", "--help"])
        .output()
        .expect("help");
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--rcvbuf",
        "--sndbuf",
        "--nodelay",
        "--format",
        "--target-loss",
    ] {
        assert!(text.contains(flag), "{flag} listed: {text}");
    }
    for flag in [
        "--reuseaddr",
        "--reuseport",
        "--device",
        "--ttl",
        "--tos",
        "--v6only",
        "--linger",
    ] {
        assert!(!text.contains(flag), "{flag} is not a bench flag: {text}");
        let out = local(&[flag, "1"]);
        assert_eq!(out.status.code(), Some(2), "{flag} refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{flag}: {err}");
        assert!(err.contains(flag), "{flag}: {err}");
    }
    let doc = json(&local(&["--tcp", "-t", "0.2", "--format", "json"]));
    assert_eq!(doc["results"][0]["transport"], "tcp");
    let out = local(&["--tcp", "-t", "0.2", "--format", "json", "--csv"]);
    assert_eq!(out.status.code(), Some(2), "two formats at once");
}

/// On one host, each TCP stream's sender (client) and receiver (server) threads are pinned to
/// the same CPU, stream by stream, and different streams spread over the CPUs; UDP streams and
/// round trips are left to the scheduler.
#[test]
fn tcp_stream_threads_are_paired_on_one_cpu_on_one_host() {
    let _loopback = util::loopback_exclusive();
    let allowed = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).expect("affinity");
    let cpus = (0..nix::sched::CpuSet::count())
        .filter(|&c| allowed.is_set(c).unwrap_or(false))
        .count();
    let doc = json(&local(&["--tcp", "-P", "4", "-t", "0.2", "--json"]));
    let r = &doc["results"][0];
    let side = |s: &str| -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = r["stream_cpus"][s]
            .as_array()
            .unwrap_or_else(|| panic!("{s}: {r}"))
            .iter()
            .map(|c| (u(c, "stream"), u(c, "cpu")))
            .collect();
        v.sort();
        v
    };
    let (client, server) = (side("client"), side("server"));
    assert_eq!(client.len(), 4, "{r}");
    assert_eq!(client, server, "each stream's two threads on one CPU");
    let used: std::collections::BTreeSet<u64> = client.iter().map(|c| c.1).collect();
    assert_eq!(
        used.len(),
        cpus.min(4),
        "streams spread over the CPUs: {client:?}"
    );
    let text = String::from_utf8_lossy(&local(&["--tcp", "-t", "0.2"]).stdout).to_string();
    assert!(text.contains("stream threads pinned"), "{text}");
    for args in [&["-u", "-b", "10M"][..], &["--test", "rr", "-u"][..]] {
        let doc = json(&local(&[args, &["-t", "0.2", "--json"]].concat()));
        let r = &doc["results"][0];
        assert_eq!(
            r["stream_cpus"]["client"],
            serde_json::json!([]),
            "{args:?}: {r}"
        );
    }
}

/// CSV carries the JSON's copy and send-buffer figures, under the same names.
#[test]
fn csv_has_the_copy_and_send_buffer_columns() {
    let _loopback = util::loopback_exclusive();
    let out = local(&["--tcp", "-t", "0.2", "--format", "csv"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let row: Vec<&str> = lines.next().expect("a row").split(',').collect();
    let col = |name: &str| {
        let i = header.iter().position(|h| *h == name);
        row[i.unwrap_or_else(|| panic!("{name} missing from {header:?}"))]
    };
    let delivered: u64 = col("bytes").parse().expect("bytes");
    let copied: u64 = col("receiver_copied_bytes")
        .parse()
        .expect("receiver copies");
    assert_eq!(copied, delivered, "TCP: every delivered byte was read once");
    let per_byte: f64 = col("copied_bytes_per_delivered_byte")
        .parse()
        .expect("ratio");
    assert!(per_byte >= 1.0, "{per_byte}");
    assert_eq!(col("local_peer_sndbuf"), "262144");
}
