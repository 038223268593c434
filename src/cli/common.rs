//! Flag groups shared by the endpoint commands, and their conversion into library types.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use socklab::addr::{self, Family};
use socklab::sock::options::{Applied, SockOpts};
use socklab::trace::{Recorder, render::StderrSink};
use socklab::{jsonl, units};

use super::output::diag;

/// `-4`/`-6`.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct FamilyArgs {
    /// Use IPv4 only.
    #[arg(short = '4', conflicts_with = "ipv6")]
    ipv4: bool,
    /// Use IPv6 only.
    #[arg(short = '6')]
    ipv6: bool,
}

impl FamilyArgs {
    pub(crate) fn family(&self) -> Family {
        match (self.ipv4, self.ipv6) {
            (true, _) => Family::V4,
            (_, true) => Family::V6,
            _ => Family::Any,
        }
    }

    /// Resolves an address argument; a failure is a usage error (exit 2).
    pub(crate) fn resolve(&self, text: &str) -> anyhow::Result<SocketAddr> {
        Ok(addr::resolve_one(text, self.family())?)
    }

    /// Resolves a local address (`--bind`): a host without a port means port 0, the kernel
    /// picks one at bind(2).
    pub(crate) fn resolve_local(&self, text: &str) -> anyhow::Result<SocketAddr> {
        Ok(addr::resolve_local(text, self.family())?)
    }

    /// Resolves a destination (connect, sendto): like [`Self::resolve`], but port 0 is a usage
    /// error, as nothing can listen there (connect would be refused, sendto silently lost).
    pub(crate) fn resolve_dest(&self, text: &str) -> anyhow::Result<SocketAddr> {
        Ok(self.resolve_dests(text)?[0])
    }

    /// Every address a destination resolves to, in resolver order (a name such as
    /// `localhost` may have an IPv6 and an IPv4 address, never none); port 0 is a usage error.
    pub(crate) fn resolve_dests(&self, text: &str) -> anyhow::Result<Vec<SocketAddr>> {
        let all = addr::resolve(text, self.family())?;
        if all.iter().any(|a| a.port() == 0) {
            anyhow::bail!(
                "'{text}': port 0 is not a destination (only a local address may use it)"
            );
        }
        Ok(all)
    }
}

/// When a run started, for the summary's `duration_ms` (monotonic clock).
#[derive(Debug)]
pub(crate) struct Started(Instant);

impl Default for Started {
    fn default() -> Self {
        Self(Instant::now())
    }
}

impl Started {
    /// Milliseconds since the start.
    pub(crate) fn ms(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// How the run reports itself.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct OutputArgs {
    /// Print each socket call to stderr: arguments, result or errno, and local/peer addresses
    /// when they change.
    #[arg(long)]
    pub(crate) trace: bool,
    /// Make all output JSON lines (`{"type": …, "data": {…}}`), the trace included.
    #[arg(long)]
    pub(crate) json: bool,
    /// Say what happens on stderr: where the socket is bound or listening, its peers, applied
    /// buffer sizes, and a summary of what was sent and received at the end.
    #[arg(short, long)]
    pub(crate) verbose: bool,
}

impl OutputArgs {
    pub(crate) fn recorder(&self) -> Recorder {
        if self.trace {
            Recorder::new(Arc::new(StderrSink::new(self.json)))
        } else {
            Recorder::off()
        }
    }

    /// A diagnostic line on stderr, shown with `-v` (as JSON with `--json`).
    pub(crate) fn note(&self, kind: &str, text: impl FnOnce() -> String) {
        if !self.verbose {
            return;
        }
        if self.json {
            diag!(
                "{}",
                jsonl::line(kind, serde_json::json!({"message": text()}))
            );
        } else {
            diag!("socklab: {}", text());
        }
    }

    /// The end-of-run summary on stderr, shown with `-v`: `text` as a line, or with `--json`
    /// the `data` object (its figures as numbers, the text as `message`).
    pub(crate) fn summary(
        &self,
        text: impl FnOnce() -> String,
        data: impl FnOnce() -> serde_json::Value,
    ) {
        if !self.verbose {
            return;
        }
        if self.json {
            diag!("{}", jsonl::line("summary", data()));
        } else {
            diag!("socklab: {}", text());
        }
    }

    /// Reports buffer sizes as the kernel applied them (always: the user asked for them).
    pub(crate) fn applied(&self, applied: &[Applied]) {
        for a in applied {
            if self.json {
                diag!("{}", jsonl::line("sockopt", a));
            } else {
                diag!(
                    "socklab: {} asked {} bytes, kernel applied {} (socket(7): doubled for bookkeeping, capped by net.core.*mem_max)",
                    a.option,
                    a.asked,
                    a.applied
                );
            }
        }
    }
}

/// SO_REUSEADDR where it is off by default (clients, UDP).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct ReuseAddrArgs {
    /// SO_REUSEADDR: bind even though connections on this address are in TIME_WAIT (TCP), or
    /// share the address with other sockets that set it too (UDP).
    #[arg(long)]
    reuseaddr: bool,
}

impl ReuseAddrArgs {
    /// SO_REUSEADDR when asked for, else left alone.
    pub(crate) fn reuseaddr(&self) -> Option<bool> {
        self.reuseaddr.then_some(true)
    }
}

/// SO_REUSEADDR on a TCP listener: on by default, as nc, ncat and iperf3 do, so a server can
/// listen again at once while the last run's connections sit in TIME_WAIT.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct ListenReuseArgs {
    /// Do not set SO_REUSEADDR (set by default): bind then fails with EADDRINUSE while a
    /// connection on this port is in TIME_WAIT.
    #[arg(long, conflicts_with = "reuseaddr")]
    no_reuseaddr: bool,
    /// SO_REUSEADDR (the default for listeners; accepted for scripts that ask for it).
    #[arg(long, hide = true)]
    reuseaddr: bool,
}

impl ListenReuseArgs {
    /// SO_REUSEADDR as set on the listener: on, or explicitly off with `--no-reuseaddr`.
    pub(crate) fn reuseaddr(&self) -> Option<bool> {
        Some(!self.no_reuseaddr)
    }
}

/// Options every endpoint accepts.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct SockArgs {
    /// SO_REUSEPORT: share the address with other sockets that set it too.
    #[arg(long)]
    reuseport: bool,
    /// SO_RCVBUF in bytes (64K, 1M …); the value the kernel applied is printed.
    #[arg(long, value_name = "SIZE", value_parser = parse_buf)]
    rcvbuf: Option<usize>,
    /// SO_SNDBUF in bytes; the value the kernel applied is printed.
    #[arg(long, value_name = "SIZE", value_parser = parse_buf)]
    sndbuf: Option<usize>,
    /// SO_BINDTODEVICE: use only this interface (a name from `ip link`).
    // Interfaces are known only where the command runs, not when the completion script is
    // generated: the hint keeps shells from offering file names instead.
    #[arg(long, value_name = "IFACE", value_hint = clap::ValueHint::Other)]
    device: Option<String>,
    /// IP_TTL / IPV6_UNICAST_HOPS (1-255).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=255))]
    ttl: Option<u32>,
    /// IP_TOS / IPV6_TCLASS (0-255).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=255))]
    tos: Option<u32>,
    /// IPV6_V6ONLY: an IPv6 socket bound to [::] takes IPv6 only.
    #[arg(long)]
    v6only: bool,
}

/// TCP-only options.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct TcpArgs {
    /// TCP_NODELAY: send small segments at once (no Nagle).
    #[arg(long)]
    nodelay: bool,
    /// SO_LINGER: close waits up to SECS for unsent data; 0 resets the connection instead.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(0..=3600))]
    linger: Option<u64>,
}

/// UDP-only options.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct UdpArgs {
    /// SO_BROADCAST: allow sending to broadcast addresses.
    #[arg(long)]
    broadcast: bool,
    /// Join a multicast group, optionally on an interface: GROUP[%IFACE]. Repeatable.
    #[arg(long, value_name = "GROUP[%IFACE]", value_parser = parse_join)]
    join: Vec<(std::net::IpAddr, Option<String>)>,
    /// IP_MULTICAST_TTL / IPV6_MULTICAST_HOPS (0-255).
    #[arg(long, value_name = "TTL", value_parser = clap::value_parser!(u32).range(0..=255))]
    multicast_ttl: Option<u32>,
    /// IP_MULTICAST_LOOP: whether our own multicast comes back to this host.
    #[arg(long, value_name = "on|off", value_parser = Hinted::new(parse_on_off, ["on", "off"]))]
    multicast_loop: Option<bool>,
}

impl SockArgs {
    /// The library's option set, with the TCP or UDP extras.
    /// `reuseaddr` is SO_REUSEADDR as the command's flags decided it (`None`: not set).
    pub(crate) fn opts(
        &self,
        reuseaddr: Option<bool>,
        tcp: Option<&TcpArgs>,
        udp: Option<&UdpArgs>,
    ) -> SockOpts {
        let mut o = SockOpts {
            reuse_address: reuseaddr,
            reuse_port: self.reuseport,
            recv_buffer: self.rcvbuf,
            send_buffer: self.sndbuf,
            device: self.device.clone(),
            ttl: self.ttl,
            tos: self.tos,
            only_v6: self.v6only.then_some(true),
            ..SockOpts::default()
        };
        if let Some(t) = tcp {
            o.nodelay = t.nodelay;
            o.linger = t.linger.map(Duration::from_secs);
        }
        if let Some(u) = udp {
            o.broadcast = u.broadcast;
            o.join = u.join.clone();
            o.multicast_ttl = u.multicast_ttl;
            o.multicast_loop = u.multicast_loop;
        }
        o
    }
}

// The receive and limit flags come in a TCP and a UDP variant: the same fields, each
// documented in its own protocol's words, so `tcp listen --help` never talks of datagrams
// and `udp recv --help` never of clients or streams.

/// `tcp listen`'s `--count` and `--idle-timeout`.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct ListenLimitArgs {
    /// With -k, stop after serving N clients.
    #[arg(long, short = 'c', value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,
    /// Stop when no new client came for this long (500ms, 5s, 2m) while none is connected
    /// (accept(2) with SO_RCVTIMEO).
    #[arg(long, value_name = "DUR", value_parser = parse_dur)]
    pub(crate) idle_timeout: Option<Duration>,
}

/// The UDP commands' `--count` and `--idle-timeout`.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct UdpLimitArgs {
    /// Stop after receiving N datagrams, or sending N.
    #[arg(long, short = 'c', value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,
    /// Stop when no datagram arrived for this long (500ms, 5s, 2m; SO_RCVTIMEO).
    #[arg(long, value_name = "DUR", value_parser = parse_dur)]
    pub(crate) idle_timeout: Option<Duration>,
}

/// The TCP commands' `--recv-size` and `--show`.
#[derive(Args, Debug, Clone)]
pub(crate) struct TcpRecvArgs {
    /// Buffer size of each recv(2) call; with --show, each read is one line, so this shows
    /// how the stream was cut into reads.
    #[arg(long, value_name = "SIZE", value_parser = parse_recv_size, default_value = "65536")]
    pub(crate) recv_size: usize,
    /// Print one line per recv(2) call (its length and bytes) instead of the raw stream.
    #[arg(long)]
    pub(crate) show: bool,
}

/// The UDP commands' `--recv-size` and `--show`.
#[derive(Args, Debug, Clone)]
pub(crate) struct UdpRecvArgs {
    /// Buffer size of each recvmsg(2) call. A larger datagram is reported as truncated with
    /// its real length (MSG_TRUNC).
    #[arg(long, value_name = "SIZE", value_parser = parse_recv_size, default_value = "65536")]
    pub(crate) recv_size: usize,
    /// Print one line per datagram (source, length, real length, flags, payload) instead of
    /// the raw payload.
    #[arg(long)]
    pub(crate) show: bool,
}

/// The socket options the bench applies to its data sockets (and no others).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct BenchSockArgs {
    /// SO_RCVBUF of the data sockets in bytes (64K, 1M; Linux doubles it). Default: 4 MiB
    /// for UDP (16 MiB with SO_RCVBUFFORCE as root), the kernel's autotuning for TCP.
    #[arg(long, value_name = "SIZE", value_parser = parse_buf)]
    rcvbuf: Option<usize>,
    /// SO_SNDBUF of the data sockets in bytes. Default: 4 MiB for UDP; for TCP 256 KiB when
    /// the peer is on this host, else the kernel's autotuning.
    #[arg(long, value_name = "SIZE", value_parser = parse_buf)]
    sndbuf: Option<usize>,
    /// TCP_NODELAY on TCP data sockets (always on for rr and latency probes).
    #[arg(long)]
    nodelay: bool,
    /// TCP_NOTSENT_LOWAT of TCP data sockets: a sender's write waits while more than SIZE bytes
    /// are queued unsent (the data in flight is not limited). `off` keeps the kernel's default.
    /// The default, 128K, lets one 128 KiB write be queued without the sender sleeping in it.
    #[arg(long, value_name = "SIZE|off", default_value = "128K", value_parser = parse_notsent_lowat)]
    notsent_lowat: NotsentLowat,
}

/// `--notsent-lowat`: a size, or `off`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NotsentLowat(pub(crate) Option<u32>);

fn parse_notsent_lowat(s: &str) -> Result<NotsentLowat, String> {
    if s == "off" {
        return Ok(NotsentLowat(None));
    }
    let n = parse_buf(s)?;
    Ok(NotsentLowat(Some(n as u32)))
}

impl BenchSockArgs {
    /// `--notsent-lowat` in bytes, `None` for `off`.
    pub(crate) fn notsent_lowat(&self) -> Option<u32> {
        self.notsent_lowat.0
    }

    /// The library's option set with these three options.
    pub(crate) fn opts(&self) -> SockOpts {
        SockOpts {
            recv_buffer: self.rcvbuf,
            send_buffer: self.sndbuf,
            nodelay: self.nodelay,
            ..SockOpts::default()
        }
    }
}

/// A value parser that offers `values` to shell completion and help while `parser` decides
/// what is valid: for values that are not a closed list (`raw:SIZE`), or whose list is known
/// only at run time (the lab's claim numbers).
#[derive(Clone)]
pub(crate) struct Hinted<P> {
    parser: P,
    values: Vec<String>,
}

impl<P> Hinted<P> {
    /// `parser`, offering `values` to completion.
    pub(crate) fn new(parser: P, values: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            parser,
            values: values.into_iter().map(Into::into).collect(),
        }
    }
}

impl<P: clap::builder::TypedValueParser> clap::builder::TypedValueParser for Hinted<P> {
    type Value = P::Value;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        self.parser.parse_ref(cmd, arg, value)
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            self.values
                .iter()
                .map(|v| clap::builder::PossibleValue::new(v.clone())),
        ))
    }
}

fn parse_buf(s: &str) -> Result<usize, String> {
    let n = units::parse_size(s).map_err(|e| e.to_string())?;
    if n == 0 || n > i32::MAX as u64 / 2 {
        return Err(format!("buffer size {n} out of range (1 to 1G)"));
    }
    Ok(n as usize)
}

fn parse_recv_size(s: &str) -> Result<usize, String> {
    let n = units::parse_size(s).map_err(|e| e.to_string())?;
    if n == 0 || n > 16 << 20 {
        return Err(format!("receive size {n} out of range (1 to 16M)"));
    }
    Ok(n as usize)
}

pub(crate) fn parse_dur(s: &str) -> Result<Duration, String> {
    let d = units::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("duration must be above zero".into());
    }
    Ok(d)
}

fn parse_join(s: &str) -> Result<(std::net::IpAddr, Option<String>), String> {
    addr::parse_group(s).map_err(|e| e.to_string())
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "1" | "true" | "yes" => Ok(true),
        "off" | "0" | "false" | "no" => Ok(false),
        _ => Err(format!("'{s}' is neither on nor off")),
    }
}
