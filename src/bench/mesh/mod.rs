//! `bench mesh`: every ordered pair of a fleet of `bench server` agents measured, as a matrix.
//!
//! A coordinator (the `bench mesh` command) holds no data socket of its own. For each ordered
//! pair (source, target) it opens a control connection to the source agent, proves the shared
//! token (the same HMAC-over-nonce handshake as a client's `Start`) and sends
//! [`RunTest`](super::protocol::Message::RunTest). The source agent then runs an ordinary
//! [`bench client`](super::client::run_test) test toward the target agent, which must itself
//! accept it through its own Hello/Start handshake with the same token; data sockets open only
//! after the target's `Accepted`, so no agent can be told to send to a host that is not an
//! agent. The agent streams progress and the result back ([`agent`], [`wire`]).
//!
//! - [`peers`]: the agent list from `--peers`, a file, or every A/AAAA record of a DNS name
//!   (a Kubernetes headless Service);
//! - [`schedule`]: rounds of disjoint pairs (round-robin tournament), or batches of N tests
//!   that may share agents to measure contention on purpose;
//! - [`run`]: the coordinator: one request per pair, a cell per pair whatever happens;
//! - [`matrix`]: the matrix table, JSON, CSV, Markdown, and the baseline comparison;
//! - [`heatmap`]: the SVG heatmap.
//!
//! Latency histograms travel whole ([`wire::HistogramWire`]) and are merged, never averaged.

pub mod agent;
pub mod heatmap;
pub mod matrix;
pub mod peers;
pub mod run;
pub mod schedule;
pub mod wire;
