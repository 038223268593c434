//! `socklab demo`: a TCP exchange and a UDP exchange on loopback, traced, so a newcomer sees
//! in one screen what calls each protocol makes and where they differ.

use std::net::{Shutdown, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use socklab::jsonl;
use socklab::sock::options::SockOpts;
use socklab::sock::{tcp, udp};
use socklab::trace::{Recorder, render::StderrSink};

use super::output::{self, diag};

#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// Print everything as JSON lines: the trace and section titles on stderr, the results
    /// on stdout (`{"type": "result", "data": {…}}`).
    #[arg(long)]
    json: bool,
}

/// A section title on stderr, as text or as a JSON line.
fn section(json: bool, title: &str) {
    match json {
        true => diag!(
            "{}",
            jsonl::line("section", serde_json::json!({"title": title}))
        ),
        false => diag!("== {title}"),
    }
}

/// A result on stdout: `text`, or with `--json` the `data` object with `text` as `message`.
fn result(json: bool, text: &str, mut data: serde_json::Value) -> anyhow::Result<()> {
    if json {
        data["message"] = text.into();
        output::line(jsonl::line("result", data))?;
    } else {
        output::line(text)?;
    }
    Ok(())
}

pub(crate) fn run(a: DemoArgs) -> anyhow::Result<ExitCode> {
    let rec = Recorder::new(Arc::new(StderrSink::new(a.json)));
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let opts = SockOpts::default();

    section(
        a.json,
        "TCP: server socket, bind, listen, accept; client socket, connect; a stream",
    );
    let (listener, _) = tcp::listen(any, &opts, 1, &rec)?;
    let server_addr = listener.local_addr().unwrap_or(any);
    let (client, _) = tcp::connect(server_addr, None, &opts, &rec)?;
    let (conn, _) = listener.accept()?;
    client.send(b"01234")?;
    client.send(b"56789")?;
    client.shutdown(Shutdown::Write)?;
    let mut buf = [0u8; 3];
    let mut reads = Vec::new();
    loop {
        let n = conn.recv(&mut buf)?;
        if n == 0 {
            break;
        }
        reads.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    result(
        a.json,
        &format!(
            "TCP: two sends of 5 bytes, recv(3) until 0 gave {reads:?}, then 0 = end of stream"
        ),
        serde_json::json!({"protocol": "tcp", "sends": [5, 5], "recv_size": 3, "reads": reads}),
    )?;

    section(
        a.json,
        "UDP: receiver socket, bind; sender socket, sendto (implicit bind); datagrams",
    );
    let (rx, _) = udp::bound(any, &opts, &rec)?;
    let to = rx.local_addr().unwrap_or(any);
    let (tx, _) = udp::unbound(&to, &opts, &rec)?;
    tx.send_to(b"01234", to)?;
    tx.send_to(b"56789", to)?;
    tx.send_to(b"", to)?;
    let mut got = Vec::new();
    let mut datagrams = Vec::new();
    for _ in 0..3 {
        let d = rx.recv_datagram(&mut buf, 0)?;
        let kept = String::from_utf8_lossy(&buf[..d.len]);
        got.push(format!(
            "{kept:?} (real length {}{})",
            d.real_len,
            if d.truncated { ", truncated" } else { "" }
        ));
        datagrams.push(serde_json::json!({"payload": kept, "len": d.len,
            "real_len": d.real_len, "truncated": d.truncated}));
    }
    result(
        a.json,
        &format!(
            "UDP: three datagrams (5, 5 and 0 bytes), recvmsg(3) each gave {got:?}\n     a zero-length datagram is data, not an end of file"
        ),
        serde_json::json!({"protocol": "udp", "sends": [5, 5, 0], "recv_size": 3,
            "datagrams": datagrams}),
    )?;
    Ok(ExitCode::SUCCESS)
}
