//! The endpoints talk to netcat (OpenBSD) and socat, both directions, TCP and UDP, IPv4 and
//! IPv6. A missing tool skips its cases with a printed reason (CI installs both).

use std::process::Command;

use crate::util::{
    Fam, Input, Output, free_tcp_port, free_udp_port, have, on_both, server, socklab, spawn,
};

#[derive(Clone, Copy, Debug)]
enum Tool {
    Nc,
    Socat,
}

/// The tools present here (a missing one is reported and skipped).
fn tools() -> Vec<Tool> {
    let mut v = Vec::new();
    for (name, t) in [("nc", Tool::Nc), ("socat", Tool::Socat)] {
        if have(name) {
            v.push(t);
        } else {
            eprintln!(
                "skipping interop with {name}: not installed (apt-get install netcat-openbsd socat)"
            );
        }
    }
    v
}

/// Waits (bounded) until something on this host has `port` bound: a TCP socket listening or a
/// UDP socket bound, as /proc/net/{tcp,udp}{,6} list them (the tools print no usable readiness
/// line of their own).
fn wait_bound(proto: &str, port: u16) {
    let needle = format!(":{port:04X} ");
    let deadline = std::time::Instant::now() + crate::util::WAIT;
    loop {
        for table in [proto.to_string(), format!("{proto}6")] {
            let text = std::fs::read_to_string(format!("/proc/net/{table}")).unwrap_or_default();
            for line in text.lines().skip(1) {
                let cols: Vec<&str> = line.split_whitespace().collect();
                let listening = proto == "udp" || cols.get(3) == Some(&"0A");
                if cols
                    .get(1)
                    .is_some_and(|l| format!("{l} ").ends_with(&needle))
                    && listening
                {
                    return;
                }
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing bound {proto} port {port} in time"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn cmd(prog: &str, args: &[&str]) -> Command {
    let mut c = Command::new(prog);
    c.args(args);
    c
}

/// `HOST` for socat: brackets around IPv6.
fn bracket(fam: Fam) -> String {
    if fam.host.contains(':') {
        format!("[{}]", fam.host)
    } else {
        fam.host.to_string()
    }
}

/// The tool's commands for each role; `v` is "4" or "6" (socat names families in addresses).
fn tcp_client(tool: Tool, fam: Fam, port: u16) -> Command {
    let p = port.to_string();
    match tool {
        // -N: shutdown(SHUT_WR) on stdin EOF, as socklab does.
        Tool::Nc => cmd("nc", &["-N", fam.host, &p]),
        Tool::Socat => cmd(
            "socat",
            &["-", &format!("TCP{}:{}", v(fam), fam.addr(port))],
        ),
    }
}

fn tcp_server(tool: Tool, fam: Fam, port: u16) -> Command {
    let p = port.to_string();
    match tool {
        Tool::Nc => cmd("nc", &["-N", "-l", fam.host, &p]),
        Tool::Socat => cmd(
            "socat",
            &[
                &format!("TCP{}-LISTEN:{p},bind={}", v(fam), bracket(fam)),
                "-",
            ],
        ),
    }
}

fn udp_sender(tool: Tool, fam: Fam, port: u16) -> Command {
    let p = port.to_string();
    match tool {
        Tool::Nc => cmd("nc", &["-u", fam.host, &p]),
        Tool::Socat => cmd(
            "socat",
            &[
                "-u",
                "-",
                &format!("UDP{}-SENDTO:{}", v(fam), fam.addr(port)),
            ],
        ),
    }
}

fn udp_receiver(tool: Tool, fam: Fam, port: u16) -> Command {
    let p = port.to_string();
    match tool {
        Tool::Nc => cmd("nc", &["-u", "-l", fam.host, &p]),
        Tool::Socat => cmd(
            "socat",
            &[
                "-u",
                &format!("UDP{}-RECV:{p},bind={}", v(fam), bracket(fam)),
                "-",
            ],
        ),
    }
}

fn v(fam: Fam) -> &'static str {
    &fam.flag[1..]
}

/// A tool connecting to `socklab tcp listen`, and socklab connecting to the tool listening:
/// each side's bytes reach the other, and each side sees the other's end (both exit 0).
#[test]
fn tcp_with_nc_and_socat() {
    for tool in tools() {
        on_both(|fam| {
            let (mut l, addr) = server(
                &["tcp", "listen", &fam.any_port()],
                Input::Bytes(b"from socklab\n".to_vec()),
                Output::Keep,
            );
            let mut t = spawn(
                tcp_client(tool, fam, addr.port()),
                Input::Bytes(b"from tool\n".to_vec()),
                Output::Keep,
            );
            let tf = t.expect_code(0);
            let lf = l.expect_code(0);
            lf.check(
                lf.out() == "from tool\n",
                &format!("{tool:?} -> socklab listen"),
            );
            tf.check(
                tf.out() == "from socklab\n",
                &format!("socklab listen -> {tool:?}"),
            );

            let port = free_tcp_port(fam);
            let mut s = spawn(
                tcp_server(tool, fam, port),
                Input::Bytes(b"from tool\n".to_vec()),
                Output::Keep,
            );
            wait_bound("tcp", port);
            let mut c = spawn(
                socklab(&["tcp", "connect", &fam.addr(port)]),
                Input::Bytes(b"from socklab\n".to_vec()),
                Output::Keep,
            );
            let cf = c.expect_code(0);
            let sf = s.expect_code(0);
            cf.check(
                cf.out() == "from tool\n",
                &format!("{tool:?} listening -> socklab"),
            );
            sf.check(
                sf.out() == "from socklab\n",
                &format!("socklab -> {tool:?} listening"),
            );
        });
    }
}

/// A tool sending a datagram to `socklab udp recv`, and `socklab udp send` to the tool
/// receiving. The tools never end on their own (UDP has no end): they are killed once the
/// datagram is checked.
#[test]
fn udp_with_nc_and_socat() {
    for tool in tools() {
        on_both(|fam| {
            let (mut r, addr) = server(
                &[
                    "udp",
                    "recv",
                    "--bind",
                    &fam.any_port(),
                    "--show",
                    "--count",
                    "1",
                ],
                Input::Null,
                Output::Keep,
            );
            let mut sender = spawn(
                udp_sender(tool, fam, addr.port()),
                Input::Open,
                Output::Keep,
            );
            sender.write_stdin(b"from tool\n");
            let rf = r.expect_code(0);
            rf.check(
                rf.out().ends_with("len 10: \"from tool\\n\"\n"),
                &format!("{tool:?} -> socklab udp recv"),
            );
            drop(sender);

            let port = free_udp_port(fam);
            let rx = spawn(udp_receiver(tool, fam, port), Input::Open, Output::Keep);
            wait_bound("udp", port);
            spawn(
                socklab(&["udp", "send", &fam.addr(port)]),
                Input::Bytes(b"from socklab\n".to_vec()),
                Output::Keep,
            )
            .expect_code(0);
            rx.wait_stdout(13);
            if rx.stdout_text() != "from socklab\n" {
                rx.fail(&format!("socklab udp send -> {tool:?}"));
            }
        });
    }
}
