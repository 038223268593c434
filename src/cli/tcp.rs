//! `socklab tcp listen` and `socklab tcp connect`: netcat-class TCP endpoints.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use clap::{Args, Subcommand};
use socklab::sock::{Proto, Sock, tcp};
use socklab::{addr, jsonl};

use super::common::{
    FamilyArgs, ListenLimitArgs, ListenReuseArgs, OutputArgs, ReuseAddrArgs, SockArgs, TcpArgs,
    TcpRecvArgs, parse_dur,
};
use super::exit::{Failure, exit_now, finished_soon, on_signal_summary};
use super::failure;
use super::habits::{host_port, scan_targets, step_error};
use super::keep_open;
use super::output;
use super::relay::{self, Counters};
use super::show::Shower;

#[derive(Subcommand, Debug)]
pub(crate) enum TcpCommand {
    /// Server: socket, setsockopt…, bind, listen, accept; then relay stdin/stdout with the
    /// client (one client, or many with -k).
    Listen(ListenArgs),
    /// Client: socket, (bind), connect; relay stdin/stdout. On stdin EOF it half-closes
    /// (shutdown SHUT_WR) and keeps reading until the peer closes.
    Connect(ConnectArgs),
}

#[derive(Args, Debug)]
pub(crate) struct ListenArgs {
    /// Address to listen on: HOST:PORT, [V6]:PORT, :PORT or PORT; or HOST PORT as two words.
    #[arg(value_name = "ADDR")]
    addr: String,
    /// The port, when ADDR is only the host (nc's `HOST PORT`).
    #[arg(value_name = "PORT")]
    port: Option<String>,
    /// Keep listening after the first client and serve many at once (each client's data to
    /// stdout; stdin is not read).
    #[arg(short = 'k', long)]
    keep_open: bool,
    /// Echo each client's data back to it instead of printing it.
    #[arg(long)]
    echo: bool,
    /// With -k, at most N clients at once; further ones are accepted and closed at once.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=65536))]
    max_clients: u64,
    #[command(flatten)]
    quit: QuitArgs,
    #[command(flatten)]
    reuse: ListenReuseArgs,
    #[command(flatten)]
    family: FamilyArgs,
    #[command(flatten)]
    sock: SockArgs,
    #[command(flatten)]
    tcp: TcpArgs,
    #[command(flatten)]
    recv: TcpRecvArgs,
    #[command(flatten)]
    limit: ListenLimitArgs,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(Args, Debug)]
pub(crate) struct ConnectArgs {
    /// Address to connect to: HOST:PORT or [V6]:PORT; or HOST PORT as two words. With -z,
    /// the port may be a range LOW-HIGH.
    #[arg(value_name = "ADDR")]
    addr: String,
    /// The port, when ADDR is only the host (nc's `HOST PORT`).
    #[arg(value_name = "PORT")]
    port: Option<String>,
    /// Bind the local end to this address first (fixes the source address; HOST alone or
    /// HOST:0 lets the kernel pick the port).
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
    /// Port check, as nc -z: connect, close, send nothing; one line per port on stdout
    /// (`ADDR open` or `ADDR closed: why`). Exit 0 if a port was open, 1 if none was.
    #[arg(short = 'z', long = "zero-io")]
    zero_io: bool,
    #[command(flatten)]
    quit: QuitArgs,
    #[command(flatten)]
    reuse: ReuseAddrArgs,
    /// Give up connecting after DUR (500ms, 5s): one line, exit 1. Without it the kernel
    /// decides (net.ipv4.tcp_syn_retries: about two minutes when SYNs go unanswered).
    #[arg(long, value_name = "DUR", value_parser = parse_dur)]
    connect_timeout: Option<Duration>,
    /// End the connection (exit 0) when nothing was sent or received for DUR.
    #[arg(long, value_name = "DUR", value_parser = parse_dur)]
    idle_timeout: Option<Duration>,
    /// As nc -w: both --connect-timeout DUR and --idle-timeout DUR (either flag, given too,
    /// takes precedence over -w for its half).
    #[arg(short = 'w', value_name = "DUR", value_parser = parse_dur)]
    wait: Option<Duration>,
    #[command(flatten)]
    family: FamilyArgs,
    #[command(flatten)]
    sock: SockArgs,
    #[command(flatten)]
    tcp: TcpArgs,
    #[command(flatten)]
    recv: TcpRecvArgs,
    #[command(flatten)]
    out: OutputArgs,
}

/// nc's `-q`.
#[derive(Args, Debug)]
pub(crate) struct QuitArgs {
    /// After stdin ends (and the FIN is sent), wait at most SECS for the peer to close, then
    /// stop reading (shutdown SHUT_RD) and quit, as nc -q. Default: wait until the peer closes.
    #[arg(short = 'q', value_name = "SECS", value_parser = parse_secs)]
    quit_after: Option<Duration>,
}

pub(crate) fn parse_secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && (0.0..=86400.0).contains(v))
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("'{s}' is not a number of seconds from 0 to 86400"))
}

pub(crate) fn run(cmd: TcpCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TcpCommand::Listen(a) => listen(a),
        TcpCommand::Connect(a) => connect(a),
    }
}

fn listen(a: ListenArgs) -> anyhow::Result<ExitCode> {
    let addr = a.family.resolve(&host_port(&a.addr, a.port.as_deref())?)?;
    let opts = a.sock.opts(a.reuse.reuseaddr(), Some(&a.tcp), None);
    let rec = a.out.recorder();
    let backlog = i32::try_from(a.max_clients.min(4096)).unwrap_or(4096);
    let (listener, applied) = tcp::listen(addr, &opts, backlog, &rec)
        .map_err(|e| step_error(e, Proto::Tcp, opts.reuse_address))?;
    a.out.applied(&applied);
    if let Some(t) = a.limit.idle_timeout {
        // accept(2) honours SO_RCVTIMEO: it fails with EAGAIN when no client came in time.
        listener.set_read_timeout(Some(t))?;
    }
    let local = listener.local_addr().unwrap_or(addr);
    a.out.note("listening", || format!("listening on {local}"));
    let counters = Arc::new(Counters::default());
    let c = counters.clone();
    on_signal_summary(move || c.summary());
    if a.keep_open {
        serve_many(&a, &listener, &counters)?;
    } else if let Some((conn, from)) = accept(&listener, a.limit.idle_timeout)? {
        a.out.note("accepted", || format!("connection from {from}"));
        drop(listener);
        serve_one(
            &a.out,
            &a.recv,
            a.echo,
            a.quit.quit_after,
            &conn,
            &counters,
            None,
        )?;
    } else {
        a.out.note("idle", idle_note);
    }
    a.out.summary(|| counters.summary(), || counters.json());
    Ok(ExitCode::SUCCESS)
}

fn serve_many(a: &ListenArgs, listener: &Sock, counters: &Counters) -> anyhow::Result<()> {
    let cfg = keep_open::Config {
        out: &a.out,
        echo: a.echo,
        show: show_mode(&a.out, &a.recv),
        recv_size: a.recv.recv_size,
        max_clients: usize::try_from(a.max_clients).unwrap_or(usize::MAX),
        count: a.limit.count,
        idle: a.limit.idle_timeout,
    };
    keep_open::serve(&cfg, listener, counters)
}

fn idle_note() -> String {
    "idle timeout: no client came".into()
}

/// accept(2); `None` when `--idle-timeout` ran out (EAGAIN from SO_RCVTIMEO).
/// The accepted socket inherits the listener's SO_RCVTIMEO (the kernel clones the socket), so
/// it is cleared again: the idle timeout is about clients arriving, not about a client's data.
fn accept(listener: &Sock, idle: Option<Duration>) -> anyhow::Result<Option<(Sock, SocketAddr)>> {
    match listener.accept() {
        Ok(c) => {
            if idle.is_some() {
                c.0.set_read_timeout(None)?;
            }
            Ok(Some(c))
        }
        Err(e) if e.errno() == Some(libc::EAGAIN) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn connect(a: ConnectArgs) -> anyhow::Result<ExitCode> {
    if a.zero_io {
        return port_check(&a);
    }
    let dests = a
        .family
        .resolve_dests(&host_port(&a.addr, a.port.as_deref())?)?;
    let local: Option<SocketAddr> = a
        .bind
        .as_deref()
        .map(|b| a.family.resolve_local(b))
        .transpose()?;
    let opts = a.sock.opts(a.reuse.reuseaddr(), Some(&a.tcp), None);
    let rec = a.out.recorder();
    let connect_timeout = a.connect_timeout.or(a.wait);
    let idle = a.idle_timeout.or(a.wait);
    let (to, (sock, applied)) = connect_any(&a.out, &dests, local, &opts, connect_timeout, &rec)?;
    a.out.applied(&applied);
    a.out.note("connected", || {
        format!(
            "connected to {to} from {}",
            sock.local_addr().map_or("?".into(), |l| l.to_string())
        )
    });
    let counters = Arc::new(Counters::default());
    let c = counters.clone();
    on_signal_summary(move || c.summary());
    serve_one(
        &a.out,
        &a.recv,
        false,
        a.quit.quit_after,
        &sock,
        &counters,
        idle,
    )?;
    a.out.summary(|| counters.summary(), || counters.json());
    Ok(ExitCode::SUCCESS)
}

/// Why a port check's connect failed, in a few words: `connection refused (ECONNREFUSED)`.
fn why_closed(e: &anyhow::Error) -> String {
    let step = e.chain().find_map(|c| {
        c.downcast_ref::<socklab::sock::StepError>().or_else(|| {
            c.downcast_ref::<Failure>()
                .and_then(|f| f.0.downcast_ref::<socklab::sock::StepError>())
        })
    });
    match step.and_then(|s| s.errno()) {
        Some(n) => format!(
            "{} ({})",
            socklab::os::errno::describe(n),
            socklab::os::errno::name(n)
        ),
        None => step.map_or_else(|| format!("{e}"), |s| s.source.to_string()),
    }
}

/// `-z`: for each port, connect and close at once (no data), and say whether it was open.
/// A connect the network answered (refused, unreachable, timed out) is a closed port; any
/// other error (a bad --bind, say) ends the run as a setup error.
fn port_check(a: &ConnectArgs) -> anyhow::Result<ExitCode> {
    let (host, ports) = scan_targets(&a.addr, a.port.as_deref())?;
    let local: Option<SocketAddr> = a
        .bind
        .as_deref()
        .map(|b| a.family.resolve_local(b))
        .transpose()?;
    // Resolve every port before the first connect: a bad address is a usage error up front.
    let targets = ports
        .map(|p| {
            a.family
                .resolve_dests(&addr::join_host_port(&host, &p.to_string())?)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let opts = a.sock.opts(a.reuse.reuseaddr(), Some(&a.tcp), None);
    let rec = a.out.recorder();
    let timeout = a.connect_timeout.or(a.wait);
    let mut any_open = false;
    for dests in targets {
        let (to, result) = match connect_any(&a.out, &dests, local, &opts, timeout, &rec) {
            Ok((to, (sock, _))) => {
                sock.close();
                (to, Ok(()))
            }
            Err(e) if e.is::<Failure>() => (dests[0], Err(e)),
            Err(e) => return Err(e),
        };
        any_open |= result.is_ok();
        let line = match (a.out.json, &result) {
            (true, r) => jsonl::line(
                "port",
                serde_json::json!({"addr": to, "open": r.is_ok(),
                    "error": r.as_ref().err().map(why_closed)}),
            ),
            (false, Ok(())) => format!("{to} open"),
            (false, Err(e)) => format!("{to} closed: {}", why_closed(e)),
        };
        output::line(line)?;
    }
    Ok(match any_open {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(1),
    })
}

/// The relay of one connection: stdin → socket on a thread, socket → stdout here (or echo).
/// Ends when the peer has closed and, if stdin is not a terminal, stdin is sent too; or when
/// nothing was sent or received for `idle`.
/// With `quit_after` (-q), once stdin has ended the peer gets that long to close; then the
/// receive side is shut down (shutdown SHUT_RD wakes the blocked recv with 0) and the run ends.
fn serve_one(
    out: &OutputArgs,
    recv: &TcpRecvArgs,
    echo: bool,
    quit_after: Option<Duration>,
    sock: &Sock,
    counters: &Counters,
    idle: Option<Duration>,
) -> anyhow::Result<()> {
    if echo {
        return relay::echo(sock, counters);
    }
    let shower = show_mode(out, recv);
    let interactive = std::io::stdin().is_terminal();
    let receiving_done = (Mutex::new(false), Condvar::new());
    std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            if let Err(e) = relay::stdin_to_socket(sock, counters) {
                exit_now(Err(e));
            }
            if let Some(q) = quit_after {
                let (done, cond) = &receiving_done;
                let guard = done.lock().unwrap_or_else(|e| e.into_inner());
                let (guard, _) = cond
                    .wait_timeout_while(guard, q, |done| !*done)
                    .unwrap_or_else(|e| e.into_inner());
                if !*guard {
                    if let Err(e) = sock.shutdown(std::net::Shutdown::Read) {
                        exit_now(Err(failure(e)));
                    }
                }
            }
        });
        let received =
            relay::socket_to_stdout(sock, counters, shower.as_ref(), recv.recv_size, idle);
        *receiving_done.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        receiving_done.1.notify_all();
        let idled = matches!(received, Ok(relay::End::Idle));
        if let (true, Some(t)) = (idled, idle) {
            out.note("idle", || {
                format!("idle timeout: nothing sent or received for {t:?}")
            });
        }
        // A failed receive ends the run (after the grace period that lets the sender record
        // its last call); a terminal may never reach EOF, so the peer's end ends it too, and
        // so does the idle timeout.
        let stop = match received.is_err() {
            true => {
                finished_soon(&sender);
                true
            }
            false => idled || (interactive && !finished_soon(&sender)),
        };
        let received = received.map(|_| ());
        if stop {
            // A terminal may never reach EOF: the peer is gone, so are we (as nc does), with
            // the summary the normal end would have printed.
            if received.is_ok() {
                out.summary(|| counters.summary(), || counters.json());
            }
            exit_now(received);
        }
        sender
            .join()
            .map_err(|_| anyhow::anyhow!("the stdin thread panicked"))
    })
}

/// Like nc: a name with several addresses (localhost may be ::1 and 127.0.0.1) is tried
/// address by address, each with its own socket, until one connects; the last error counts.
/// With `--bind`, only addresses of its family are tried.
fn connect_any(
    out: &OutputArgs,
    dests: &[SocketAddr],
    local: Option<SocketAddr>,
    opts: &socklab::sock::options::SockOpts,
    timeout: Option<Duration>,
    rec: &socklab::trace::Recorder,
) -> anyhow::Result<(SocketAddr, (Sock, Vec<socklab::sock::options::Applied>))> {
    let dests: Vec<SocketAddr> = dests
        .iter()
        .filter(|d| local.is_none_or(|l| l.is_ipv4() == d.is_ipv4()))
        .copied()
        .collect();
    let mut last = None;
    for (i, to) in dests.iter().enumerate() {
        match tcp::connect_within(*to, local, opts, timeout, rec) {
            Ok(ok) => return Ok((*to, ok)),
            Err(e) => {
                if i + 1 < dests.len() {
                    out.note("retry", || format!("{e}; trying the next address"));
                }
                last = Some(e);
            }
        }
    }
    match last {
        Some(e) => Err(connect_error(e, timeout, opts.reuse_address)),
        None => anyhow::bail!("the destination has no address of the --bind address's family"),
    }
}

/// A connect(2) the network answered (refused, unreachable, timed out) or that
/// `--connect-timeout` gave up on is a finding of the run, exit 1 as with nc; anything else
/// (a bad option, bind) is a setup error, exit 2.
fn connect_error(
    e: socklab::sock::StepError,
    timeout: Option<Duration>,
    reuseaddr: Option<bool>,
) -> anyhow::Error {
    if let (true, Some(t)) = (
        e.call == "connect" && e.errno() == Some(libc::ETIMEDOUT),
        timeout,
    ) {
        return failure(anyhow::anyhow!(
            "connect {}: no answer within {t:?} (--connect-timeout/-w): the SYNs went unanswered; check the address, or allow more time",
            e.target
        ));
    }
    let answered = matches!(
        e.errno(),
        Some(
            libc::ECONNREFUSED
                | libc::ETIMEDOUT
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::ECONNRESET
        )
    );
    if e.call == "connect" && answered {
        failure(e)
    } else {
        step_error(e, Proto::Tcp, reuseaddr)
    }
}

fn show_mode(out: &OutputArgs, recv: &TcpRecvArgs) -> Option<Shower> {
    (recv.show || out.json).then(|| Shower::new(out.json))
}
