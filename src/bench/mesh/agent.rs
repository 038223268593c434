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

use std::io::Write as _;
use std::net::TcpStream;
use std::time::Duration;

use crate::bench::BenchError;
use crate::bench::client::{self, ClientCfg};
use crate::bench::protocol::{self, Message};
use crate::bench::server::{ServerCfg, refuse, validate};

use super::wire::{FailStage, PairOutcome, PairReport};

/// Accepted handshake timeouts toward a target, ms.
pub const HANDSHAKE_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 100..=60_000;

/// Serves one [`Message::RunTest`] on `conn`, after this agent sent Hello with `nonce`:
/// checks it, answers `Accepted`, relays interval samples as `Interval` frames while the test
/// runs, then sends `RunTestResult`. `id` names the test in the answer.
pub fn serve(
    conn: &mut TcpStream,
    cfg: &ServerCfg,
    nonce: &str,
    id: u64,
    request: Message,
) -> Result<(), BenchError> {
    let Message::RunTest {
        auth,
        target,
        params,
        handshake_timeout_ms,
    } = request
    else {
        return Err(BenchError::Protocol("expected run_test".into()));
    };
    let Some(token) = &cfg.token else {
        return Err(refuse(
            conn,
            "this agent has no --token: it runs tests toward other agents only for a coordinator that proves a shared token".into(),
            false,
        ));
    };
    if !auth.is_some_and(|t| protocol::auth_ok(token, nonce, &t)) {
        return Err(refuse(
            conn,
            "authentication failed: wrong or missing token".into(),
            false,
        ));
    }
    if let Err(why) = validate(&params, cfg) {
        return Err(refuse(conn, why, false));
    }
    if !HANDSHAKE_TIMEOUT_MS.contains(&handshake_timeout_ms) {
        return Err(refuse(
            conn,
            format!(
                "handshake timeout {handshake_timeout_ms} ms outside {}..={} ms",
                HANDSHAKE_TIMEOUT_MS.start(),
                HANDSHAKE_TIMEOUT_MS.end()
            ),
            false,
        ));
    }
    protocol::write_message(
        conn,
        &Message::Accepted {
            test_id: id,
            tcp_port: None,
            udp_ports: Vec::new(),
        },
    )?;
    let client_cfg = ClientCfg {
        server: target,
        token: Some(token.clone()),
        cpus: cfg.cpus.clone(),
        timeout: Duration::from_millis(handshake_timeout_ms),
    };
    let mut progress = conn.try_clone()?;
    let mut relay = |_, s: &protocol::IntervalSample| {
        // Progress is best effort: a coordinator that stopped reading loses it, not the test.
        let _ = protocol::write_message(&mut progress, &Message::Interval { samples: vec![*s] });
    };
    let result = client::run_test(&client_cfg, &params, &mut relay);
    let (outcome, ret) = match result {
        Ok(o) => (
            PairOutcome::Done(PairReport::from_outcome(&o, hostname())),
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
                PairOutcome::Failed {
                    stage,
                    message: message.clone(),
                },
                Err(BenchError::Test(message)),
            )
        }
    };
    protocol::write_message(
        conn,
        &Message::RunTestResult {
            outcome: Box::new(outcome),
        },
    )?;
    conn.flush()?;
    ret
}

/// This host's name (/proc/sys/kernel/hostname, as uname -n), or "" if unreadable.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
