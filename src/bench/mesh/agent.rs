//! The agent's side of a mesh request: a `bench server` that receives
//! [`RunTest`](Message::RunTest) instead of `Start` runs an ordinary client test toward
//! another agent and streams the result back to the coordinator.
//!
//! Guarantees, in the order they are checked:
//! 1. Only an agent started with `--token` takes mesh requests, and only from a coordinator
//!    that proved the token (HMAC-SHA-256 over this connection's nonce, RFC 2104).
//! 2. The test is checked against this agent's own limits (duration, rate, sizes) before
//!    anything is opened; the request already holds one of this agent's test slots, so the
//!    per-agent limit of concurrent tests counts mesh tests too.
//! 3. The test toward the target goes through [`client::run_test`], which sends nothing on its
//!    control connection before the target's Hello, and opens no data socket toward the
//!    target before the target's `Accepted`, i.e. before the target, knowing the same token,
//!    has authenticated this agent and accepted the test. Data goes only to the target's IP
//!    (the address that completed the handshake). A host that is not an agent therefore sees
//!    at most one TCP connection attempt (SYN, then a close) and no payload.
//! 4. latency-under-load: the probe test and its bulk stream are two ordinary client tests
//!    toward the same target ([`underload::with_load`]), each through the target's own
//!    handshake, so the target holds two of its test slots (`--max-tests` 2 or more; the
//!    default is 4) while this agent holds one for the request.

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::bench::BenchError;
use crate::bench::client::{self, ClientCfg};
use crate::bench::kind::{self, Pacing};
use crate::bench::protocol::{self, Message, TestParams};
use crate::bench::server::{ServerCfg, refuse, validate};
use crate::bench::underload;

use super::wire::{FailStage, PairReport, RunTestReply};

/// Accepted handshake timeouts toward a target, ms.
pub const HANDSHAKE_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 100..=60_000;

/// A checked mesh request: what [`run`] needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The target agent's control address.
    pub target: SocketAddr,
    /// The test.
    pub params: TestParams,
    /// latency-under-load: the bulk stream run beside the probe test `params`.
    pub load: Option<TestParams>,
    /// Connect and handshake timeout toward the target.
    pub handshake_timeout: Duration,
}

/// Checks a [`Message::RunTest`] that arrived after a Hello carrying `nonce`: this agent has a
/// token, the request proves it, the test fits this agent's limits. On refusal: the reason,
/// and whether retrying may work (never, here: a busy agent is refused before this).
pub fn check(request: Message, cfg: &ServerCfg, nonce: &str) -> Result<Request, (String, bool)> {
    let Message::RunTest {
        auth,
        target,
        params,
        handshake_timeout_ms,
        load,
    } = request
    else {
        return Err(("expected a run_test message".into(), false));
    };
    let Some(token) = &cfg.token else {
        return Err((
            "this agent has no --token: it runs tests toward other agents only for a coordinator that proves a shared token".into(),
            false,
        ));
    };
    if !auth.is_some_and(|t| protocol::auth_ok(token, nonce, &t)) {
        return Err((
            "authentication failed: wrong or missing token".into(),
            false,
        ));
    }
    validate(&params, cfg).map_err(|why| (why, false))?;
    if let Some(bulk) = &load {
        // The load must be of the kind the test's own kind runs beside it.
        let planned = kind::of(params.kind).load(&params, &Pacing::default());
        if planned.is_none_or(|p| p.kind != bulk.kind) {
            return Err((
                "a load runs only as a stream beside a probe test (latency-under-load)".into(),
                false,
            ));
        }
        let bulk = TestParams {
            duration_ms: params.duration_ms + underload::BULK_MARGIN_MS,
            ..(**bulk).clone()
        };
        validate(&bulk, cfg).map_err(|why| (format!("load: {why}"), false))?;
    }
    if !HANDSHAKE_TIMEOUT_MS.contains(&handshake_timeout_ms) {
        return Err((
            format!(
                "handshake timeout {handshake_timeout_ms} ms outside {}..={} ms",
                HANDSHAKE_TIMEOUT_MS.start(),
                HANDSHAKE_TIMEOUT_MS.end()
            ),
            false,
        ));
    }
    Ok(Request {
        target,
        params,
        load: load.map(|b| *b),
        handshake_timeout: Duration::from_millis(handshake_timeout_ms),
    })
}

/// Runs an admitted request (its test slot held by the caller): answers `Started`, relays
/// interval samples as `Interval` frames while the test runs, then sends `Done` or `Failed`.
/// `id` names the test. The token toward the target is this agent's own.
pub fn run(
    conn: &mut TcpStream,
    cfg: &ServerCfg,
    id: u64,
    req: &Request,
) -> Result<(), BenchError> {
    // A server may hand over a connection it polled in nonblocking mode: replies block, with
    // the server's idle timeout as their bound.
    conn.set_nonblocking(false)?;
    conn.set_write_timeout(Some(cfg.idle_timeout))?;
    let reply = |conn: &mut TcpStream, r: RunTestReply| {
        protocol::write_message(conn, &Message::RunTestReply { reply: Box::new(r) })
    };
    reply(conn, RunTestReply::Started { test_id: id })?;
    let client_cfg = ClientCfg {
        server: req.target,
        token: cfg.token.clone(),
        cpus: cfg.cpus.clone(),
        timeout: req.handshake_timeout,
    };
    let mut progress = conn.try_clone()?;
    let mut relay = |_, s: &protocol::IntervalSample| {
        // Progress is best effort: a coordinator that stopped reading loses it, not the test.
        let _ = protocol::write_message(&mut progress, &Message::Interval { samples: vec![*s] });
    };
    let target = req.target;
    let result = match &req.load {
        None => client::run_test(&client_cfg, &req.params, &mut relay).map(|o| (o, None)),
        // The probes' own samples are not relayed: the bulk stream runs beside them.
        Some(bulk) => underload::with_load(&client_cfg, &req.params, bulk)
            .map(|(o, b)| (o, Some(underload::load_bits_per_second(&b)))),
    };
    let (r, ret) = match result {
        Ok((o, load_bits_per_second)) => (
            RunTestReply::Done(Box::new(PairReport {
                load_bits_per_second,
                ..PairReport::from_outcome(&o, hostname())
            })),
            Ok(()),
        ),
        Err(e) => {
            let stage = match e {
                BenchError::Connect(..) => FailStage::Unreachable,
                BenchError::Test(_) => FailStage::Test,
                _ => FailStage::Handshake,
            };
            let message = format!("toward {target}: {e}");
            (
                RunTestReply::Failed {
                    stage,
                    message: message.clone(),
                },
                Err(BenchError::Test(message)),
            )
        }
    };
    reply(conn, r)?;
    conn.flush()?;
    ret
}

/// [`check`] then [`run`], for a server that has already given this connection a test slot:
/// a refused request is answered `Refused`.
pub fn serve(
    conn: &mut TcpStream,
    cfg: &ServerCfg,
    nonce: &str,
    id: u64,
    request: Message,
) -> Result<(), BenchError> {
    match check(request, cfg, nonce) {
        Ok(req) => run(conn, cfg, id, &req),
        Err((why, retry)) => Err(refuse(conn, why, retry)),
    }
}

/// This host's name (/proc/sys/kernel/hostname, as uname -n), or "" if unreadable.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
