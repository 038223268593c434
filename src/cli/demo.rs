//! `socklab demo`: a TCP exchange and a UDP exchange on loopback, traced, so a newcomer sees
//! in one screen what calls each protocol makes and where they differ.

use std::net::{Shutdown, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use socklab::sock::options::SockOpts;
use socklab::sock::{tcp, udp};
use socklab::trace::{Recorder, render::StderrSink};

use super::output;

#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// Print the trace as JSON lines.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(a: DemoArgs) -> anyhow::Result<ExitCode> {
    let rec = Recorder::new(Arc::new(StderrSink::new(a.json)));
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let opts = SockOpts::default();

    eprintln!("== TCP: server socket, bind, listen, accept; client socket, connect; a stream");
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
    output::line(format_args!(
        "TCP: two sends of 5 bytes, recv(3) until 0 gave {reads:?}, then 0 = end of stream"
    ))?;

    eprintln!("== UDP: receiver socket, bind; sender socket, sendto (implicit bind); datagrams");
    let (rx, _) = udp::bound(any, &opts, &rec)?;
    let to = rx.local_addr().unwrap_or(any);
    let (tx, _) = udp::unbound(&to, &opts, &rec)?;
    tx.send_to(b"01234", to)?;
    tx.send_to(b"56789", to)?;
    tx.send_to(b"", to)?;
    let mut got = Vec::new();
    for _ in 0..3 {
        let d = rx.recv_datagram(&mut buf, 0)?;
        got.push(format!(
            "{:?} (real length {}{})",
            String::from_utf8_lossy(&buf[..d.len]),
            d.real_len,
            if d.truncated { ", truncated" } else { "" }
        ));
    }
    output::line(format_args!(
        "UDP: three datagrams (5, 5 and 0 bytes), recvmsg(3) each gave {got:?}\n     a zero-length datagram is data, not an end of file"
    ))?;
    Ok(ExitCode::SUCCESS)
}
