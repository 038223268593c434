//! A table of bad inputs: each exits 2 with exactly one line on stderr, and never panics or
//! hangs.

use std::net::{TcpListener, UdpSocket};

use crate::util::{Input, Output, socklab, spawn};

/// Bad addresses, option values, conflicting flags, missing arguments, an address in use, an
/// address no interface has, an unknown interface.
#[test]
fn each_bad_input_is_one_line_and_exit_2() {
    let tcp_taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp_taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tcp_in_use = tcp_taken.local_addr().unwrap().to_string();
    let udp_in_use = udp_taken.local_addr().unwrap().to_string();
    let cases: Vec<(&str, Vec<&str>)> = vec![
        // Addresses.
        ("no port", vec!["tcp", "listen", "127.0.0.1"]),
        ("port above 65535", vec!["tcp", "listen", "127.0.0.1:65536"]),
        ("negative port", vec!["tcp", "listen", "127.0.0.1:-1"]),
        (
            "port not a number",
            vec!["tcp", "listen", "127.0.0.1:http8"],
        ),
        ("octet above 255", vec!["tcp", "connect", "999.1.1.1:80"]),
        ("unclosed bracket", vec!["tcp", "connect", "[::1:80"]),
        ("no colon after bracket", vec!["tcp", "connect", "[::1]80"]),
        ("IPv4 in brackets", vec!["tcp", "connect", "[1.2.3.4]:80"]),
        (
            "unknown scope",
            vec!["tcp", "connect", "[fe80::1%nosuchif0]:80"],
        ),
        (
            "unresolvable name",
            vec!["tcp", "connect", "no-such-host.invalid:80"],
        ),
        (
            "-4 with an IPv6 address",
            vec!["tcp", "connect", "-4", "[::1]:80"],
        ),
        (
            "-6 with an IPv4 address",
            vec!["udp", "send", "-6", "127.0.0.1:80"],
        ),
        (
            "port 0 as destination",
            vec!["tcp", "connect", "127.0.0.1:0"],
        ),
        (
            "port 0 as UDP destination",
            vec!["udp", "send", "127.0.0.1:0"],
        ),
        (
            "bad --bind port",
            vec!["tcp", "connect", "127.0.0.1:1", "--bind", "127.0.0.1:99999"],
        ),
        // Option values.
        ("rcvbuf zero", vec!["tcp", "listen", ":0", "--rcvbuf", "0"]),
        (
            "rcvbuf not a size",
            vec!["tcp", "listen", ":0", "--rcvbuf", "lots"],
        ),
        (
            "sndbuf too big",
            vec!["tcp", "listen", ":0", "--sndbuf", "5G"],
        ),
        ("ttl zero", vec!["tcp", "listen", ":0", "--ttl", "0"]),
        (
            "ttl 256",
            vec!["udp", "recv", "--bind", ":0", "--ttl", "256"],
        ),
        ("tos 300", vec!["tcp", "listen", ":0", "--tos", "300"]),
        (
            "negative linger",
            vec!["tcp", "listen", ":0", "--linger", "-1"],
        ),
        (
            "max-clients zero",
            vec!["tcp", "listen", ":0", "-k", "--max-clients", "0"],
        ),
        (
            "recv-size zero",
            vec!["udp", "recv", "--bind", ":0", "--recv-size", "0"],
        ),
        (
            "recv-size too big",
            vec!["udp", "recv", "--bind", ":0", "--recv-size", "20M"],
        ),
        (
            "idle-timeout zero",
            vec!["udp", "recv", "--bind", ":0", "--idle-timeout", "0s"],
        ),
        (
            "idle-timeout words",
            vec!["udp", "recv", "--bind", ":0", "--idle-timeout", "soon"],
        ),
        (
            "count zero",
            vec!["udp", "recv", "--bind", ":0", "--count", "0"],
        ),
        (
            "framing raw:0",
            vec!["udp", "send", "127.0.0.1:9", "--framing", "raw:0"],
        ),
        (
            "framing unknown",
            vec!["udp", "send", "127.0.0.1:9", "--framing", "chunks"],
        ),
        (
            "framing over 64K",
            vec!["udp", "send", "127.0.0.1:9", "--framing", "raw:70000"],
        ),
        (
            "join a unicast address",
            vec!["udp", "recv", "--bind", ":0", "--join", "10.0.0.1"],
        ),
        (
            "join on unknown interface",
            vec![
                "udp",
                "recv",
                "--bind",
                ":0",
                "--join",
                "239.1.1.1%nosuchif0",
            ],
        ),
        (
            "multicast-loop maybe",
            vec!["udp", "recv", "--bind", ":0", "--multicast-loop", "maybe"],
        ),
        (
            "multicast-ttl 300",
            vec!["udp", "recv", "--bind", ":0", "--multicast-ttl", "300"],
        ),
        // Conflicting, missing or unknown flags.
        (
            "-4 and -6",
            vec!["tcp", "connect", "-4", "-6", "127.0.0.1:80"],
        ),
        ("recv without --bind", vec!["udp", "recv"]),
        ("peer without --to", vec!["udp", "peer", "--bind", ":0"]),
        ("unknown flag", vec!["tcp", "listen", ":0", "--bogus"]),
        (
            "--count on tcp connect",
            vec!["tcp", "connect", "127.0.0.1:9", "--count", "3"],
        ),
        ("unknown subcommand", vec!["tcp", "frobnicate"]),
        (
            "--bind of the other family",
            vec!["tcp", "connect", "127.0.0.1:9", "--bind", "[::1]:0"],
        ),
        // Setup failures the kernel reports.
        ("TCP port in use", vec!["tcp", "listen", &tcp_in_use]),
        (
            "UDP port in use",
            vec!["udp", "recv", "--bind", &udp_in_use],
        ),
        (
            "address no interface has",
            vec!["tcp", "listen", "192.0.2.1:0"],
        ),
        (
            "unknown interface",
            vec!["udp", "recv", "--bind", ":0", "--device", "nosuchif0"],
        ),
        (
            "v6only on IPv4",
            vec!["udp", "recv", "--bind", "127.0.0.1:0", "--v6only"],
        ),
    ];
    assert!(cases.len() >= 30);
    let mut wrong = Vec::new();
    for (what, args) in &cases {
        let mut p = spawn(socklab(args), Input::Null, Output::Keep);
        let f = p.finish();
        let lines: Vec<&str> = f.stderr.lines().collect();
        let ok = f.status.code() == Some(2)
            && lines.len() == 1
            && lines[0].starts_with("socklab: ")
            && !f.stderr.contains("panicked")
            && f.stdout.is_empty();
        if !ok {
            wrong.push(format!("--- {what}:\n{}", f.shown));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} bad inputs not one line + exit 2:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
    // The in-use errors name what holds the port (here a live listener).
    let mut p = spawn(
        socklab(&["tcp", "listen", &tcp_in_use]),
        Input::Null,
        Output::Keep,
    );
    let f = p.expect_code(2);
    f.check(
        f.stderr.contains("(EADDRINUSE)") && f.stderr.contains("LISTEN"),
        "EADDRINUSE with its hint",
    );
}

/// More bad command lines, one per line: what is wrong, then the arguments (split on spaces).
/// Every subcommand is covered: tcp, udp, bench server/client/local, lab, demo, completions, man.
const MORE: &[(&str, &str)] = &[
    // Missing subcommands and arguments.
    ("no subcommand at all", ""),
    ("tcp without a subcommand", "tcp"),
    ("udp without a subcommand", "udp"),
    ("bench without a subcommand", "bench"),
    ("tcp listen without an address", "tcp listen"),
    ("tcp connect without an address", "tcp connect"),
    ("udp send without a destination", "udp send"),
    ("udp connect without a destination", "udp connect"),
    ("udp serve without --bind", "udp serve"),
    ("udp peer without --bind", "udp peer --to 127.0.0.1:9"),
    ("--bind without a value", "udp recv --bind"),
    ("completions without a shell", "completions"),
    ("bench client without an address", "bench client"),
    // Unknown subcommands, flags and extra arguments.
    ("unknown top-level subcommand", "frobnicate"),
    ("unknown udp subcommand", "udp listen"),
    ("unknown bench subcommand", "bench run"),
    ("unknown lab subcommand", "lab frob"),
    ("unknown top-level flag", "--bogus"),
    ("demo with an argument", "demo extra"),
    ("demo with an unknown flag", "demo --bogus"),
    ("completions for an unknown shell", "completions tcsh"),
    ("completions with two shells", "completions bash zsh"),
    ("man with an argument", "man extra"),
    ("man with an unknown flag", "man --bogus"),
    ("lab list with an unknown flag", "lab list --bogus"),
    ("lab --markdown without a file", "lab --markdown"),
    ("lab --pcap without a directory", "lab run --pcap"),
    ("tcp listen with two addresses", "tcp listen :0 :1"),
    (
        "udp send with two destinations",
        "udp send 127.0.0.1:9 127.0.0.1:10",
    ),
    ("--echo on tcp connect", "tcp connect 127.0.0.1:9 --echo"),
    ("-k on tcp connect", "tcp connect 127.0.0.1:9 -k"),
    ("--framing on udp recv", "udp recv --bind :0 --framing line"),
    ("--broadcast on tcp listen", "tcp listen :0 --broadcast"),
    ("--nodelay on udp recv", "udp recv --bind :0 --nodelay"),
    (
        "--max-clients on udp serve",
        "udp serve --bind :0 --max-clients 3",
    ),
    // Lab claims.
    ("lab claim out of range", "lab run 99"),
    ("lab claim zero", "lab show 0"),
    ("lab claim not a number", "lab run abc"),
    ("lab claim negative", "lab run -1"),
    // Addresses.
    ("empty address", "tcp listen ''"),
    ("port only a colon", "tcp listen 127.0.0.1:"),
    ("IPv6 without brackets", "tcp connect ::1:80"),
    ("empty brackets", "tcp connect []:80"),
    ("garbage after the port", "tcp connect 127.0.0.1:80x"),
    ("space in the port", "udp send 127.0.0.1:8_0"),
    (
        "udp recv: ADDR without a port (only --bind HOST means port 0)",
        "udp recv 127.0.0.1",
    ),
    (
        "udp recv: port above 65535",
        "udp recv --bind 127.0.0.1:70000",
    ),
    (
        "udp peer: --to port 0",
        "udp peer --bind :0 --to 127.0.0.1:0",
    ),
    ("udp connect: port 0", "udp connect 127.0.0.1:0"),
    (
        "udp connect: bad --bind",
        "udp connect 127.0.0.1:9 --bind nohost.invalid:0",
    ),
    ("udp serve: IPv6 with -4", "udp serve --bind [::1]:0 -4"),
    ("tcp listen: IPv4 with -6", "tcp listen 127.0.0.1:0 -6"),
    (
        "bench server --bind without port",
        "bench server --bind 127.0.0.1",
    ),
    ("bench client: port 99999", "bench client 127.0.0.1:99999"),
    ("bench client: malformed IPv6", "bench client [::1:5301"),
    // Endpoint option values.
    (
        "--connect-timeout zero",
        "tcp connect 127.0.0.1:9 --connect-timeout 0s",
    ),
    (
        "--connect-timeout words",
        "tcp connect 127.0.0.1:9 --connect-timeout soon",
    ),
    ("-w words", "tcp connect 127.0.0.1:9 -w soon"),
    ("-w without a value", "tcp connect 127.0.0.1:9 -w"),
    (
        "--idle-timeout on connect zero",
        "tcp connect 127.0.0.1:9 --idle-timeout 0ms",
    ),
    (
        "tcp listen --idle-timeout unit",
        "tcp listen :0 --idle-timeout 5 parsecs",
    ),
    (
        "--max-clients above 65536",
        "tcp listen :0 -k --max-clients 70000",
    ),
    (
        "--max-clients negative",
        "tcp listen :0 -k --max-clients -3",
    ),
    ("--count words", "tcp listen :0 -k --count many"),
    ("--recv-size words", "tcp listen :0 --recv-size big"),
    (
        "--linger above an hour",
        "tcp connect 127.0.0.1:9 --linger 4000",
    ),
    ("--sndbuf zero", "udp send 127.0.0.1:9 --sndbuf 0"),
    ("--rcvbuf negative", "udp recv --bind :0 --rcvbuf -4K"),
    ("--ttl words", "udp send 127.0.0.1:9 --ttl high"),
    ("--tos negative", "udp send 127.0.0.1:9 --tos -1"),
    (
        "--multicast-ttl words",
        "udp send 127.0.0.1:9 --multicast-ttl x",
    ),
    ("--join garbage", "udp recv --bind :0 --join not-an-ip"),
    (
        "--join empty interface",
        "udp recv --bind :0 --join 239.1.1.1%",
    ),
    (
        "--framing raw without a size",
        "udp send 127.0.0.1:9 --framing raw:",
    ),
    (
        "--framing raw words",
        "udp send 127.0.0.1:9 --framing raw:big",
    ),
    (
        "udp serve --framing raw:0",
        "udp serve --bind :0 --framing raw:0",
    ),
    (
        "udp peer --recv-size zero",
        "udp peer --bind :0 --to 127.0.0.1:9 --recv-size 0",
    ),
    (
        "udp connect --count zero",
        "udp connect 127.0.0.1:9 --count 0",
    ),
    // bench server.
    (
        "bench server --max-tests zero",
        "bench server --max-tests 0",
    ),
    (
        "bench server --max-tests huge",
        "bench server --max-tests 100000",
    ),
    (
        "bench server --max-duration zero",
        "bench server --max-duration 0s",
    ),
    (
        "bench server --max-duration words",
        "bench server --max-duration forever",
    ),
    (
        "bench server --max-rate words",
        "bench server --max-rate fast",
    ),
    (
        "bench server --idle-timeout words",
        "bench server --idle-timeout never",
    ),
    ("bench server --count zero", "bench server --count 0"),
    (
        "bench server --cpu beyond this machine",
        "bench server --cpu 99999",
    ),
    ("bench server --cpu garbage", "bench server --cpu a-b"),
    ("bench server unknown flag", "bench server --bogus"),
    ("bench server -4 and -6", "bench server -4 -6"),
    // bench client.
    (
        "bench client --test unknown",
        "bench client 127.0.0.1:5301 --test nope",
    ),
    (
        "bench client --len zero",
        "bench client 127.0.0.1:5301 -l 0",
    ),
    (
        "bench client --len list with garbage",
        "bench client 127.0.0.1:5301 -l 64,x",
    ),
    (
        "bench client UDP size over 64K",
        "bench client 127.0.0.1:5301 -l 70000 -u",
    ),
    (
        "bench client --time zero",
        "bench client 127.0.0.1:5301 -t 0s",
    ),
    (
        "bench client --parallel zero",
        "bench client 127.0.0.1:5301 -P 0",
    ),
    (
        "bench client --parallel huge",
        "bench client 127.0.0.1:5301 -P 100000",
    ),
    (
        "bench client --bitrate words",
        "bench client 127.0.0.1:5301 -b lots",
    ),
    (
        "bench client --interval zero",
        "bench client 127.0.0.1:5301 -i 0s",
    ),
    (
        "bench client --tcp and --udp",
        "bench client 127.0.0.1:5301 --tcp --udp",
    ),
    (
        "bench client -R and --bidir",
        "bench client 127.0.0.1:5301 -R --bidir",
    ),
    (
        "bench client --json and --csv",
        "bench client 127.0.0.1:5301 --json --csv",
    ),
    (
        "bench client --json and --json-stream",
        "bench client 127.0.0.1:5301 --json --json-stream",
    ),
    (
        "bench client --ttl zero",
        "bench client 127.0.0.1:5301 --ttl 0",
    ),
    (
        "bench client --tos 300",
        "bench client 127.0.0.1:5301 --tos 300",
    ),
    (
        "bench client --linger words",
        "bench client 127.0.0.1:5301 --linger long",
    ),
    (
        "bench client --token without a value",
        "bench client 127.0.0.1:5301 --token",
    ),
    // bench local.
    ("bench local --test unknown", "bench local --test nope"),
    ("bench local --time zero", "bench local -t 0s"),
    ("bench local --len garbage", "bench local -l abc"),
    ("bench local --parallel zero", "bench local -P 0"),
    ("bench local --cpu garbage", "bench local --cpu x"),
    ("bench local --rcvbuf zero", "bench local --rcvbuf 0"),
    ("bench local --ttl zero", "bench local --ttl 0"),
    (
        "bench local --json and --markdown",
        "bench local --json --markdown",
    ),
    ("bench local with an address", "bench local 127.0.0.1:5301"),
];

/// The same checks for [`MORE`].
#[test]
fn more_bad_inputs_are_one_line_and_exit_2() {
    let mut wrong = Vec::new();
    for (what, line) in MORE {
        let args: Vec<&str> = line
            .split(' ')
            .filter(|a| !a.is_empty())
            .map(|a| if a == "''" { "" } else { a })
            .collect();
        if let Some(why) = not_one_line_exit(&args, 2) {
            wrong.push(format!("--- {what}: {why}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} bad inputs not one line + exit 2:\n{}",
        wrong.len(),
        MORE.len(),
        wrong.join("\n")
    );
}

/// Runtime failures, after the command line was fine: exit 1 with one line.
#[test]
fn runtime_failures_are_one_line_and_exit_1() {
    let closed_tcp = crate::util::free_tcp_port(crate::util::V4).to_string();
    let closed_tcp = format!("127.0.0.1:{closed_tcp}");
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("tcp connect refused", vec!["tcp", "connect", &closed_tcp]),
        (
            "tcp connect refused, -v",
            vec!["tcp", "connect", &closed_tcp, "-w", "2s"],
        ),
        (
            "tcp connect refused, --connect-timeout",
            vec!["tcp", "connect", &closed_tcp, "--connect-timeout", "2s"],
        ),
    ];
    let mut wrong = Vec::new();
    for (what, args) in &cases {
        if let Some(why) = not_one_line_exit(args, 1) {
            wrong.push(format!("--- {what}: {why}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Runs `socklab ARGS` with stdin empty; `None` when it exited `code` with exactly one line
/// on stderr (`socklab: …`), nothing on stdout and no panic; otherwise what was wrong.
fn not_one_line_exit(args: &[&str], code: i32) -> Option<String> {
    let mut p = spawn(socklab(args), Input::Null, Output::Keep);
    let f = p.finish();
    let lines: Vec<&str> = f.stderr.lines().collect();
    let ok = f.status.code() == Some(code)
        && lines.len() == 1
        && lines[0].starts_with("socklab: ")
        && !f.stderr.contains("panicked")
        && f.stdout.is_empty();
    (!ok).then_some(f.shown)
}
