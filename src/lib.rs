//! socklab: TCP and UDP socket semantics you can run, see and measure.
//!
//! The library is what the `socklab` binary, the lab, the bench and the tests all drive.
//!
//! # Layers
//!
//! Each module imports only from layers below its own, never sideways within a layer
//! (`tests/integration/layers.rs` checks every `crate::` path in `src/`):
//!
//! ```text
//!  cli (src/main.rs, src/cli/)        the binary: flags, output formats, exit codes
//!  ───────────────────────────────────────────────────────────────────────────
//!  lab                bench           experiments on the article's claims | iperf3-like tests
//!  ───────────────────────────────────────────────────────────────────────────
//!  netns                              network namespaces and veth pairs for tests and the lab
//!  sock                               traced socket steps
//!  trace                              the recorder sock reports to, and its renderers
//!  ───────────────────────────────────────────────────────────────────────────
//!  os  addr  units  jsonl  meta       errno names, /proc/net counters | parsing | JSON lines |
//!                                     the meta block of every JSON document
//! ```
//!
//! - [`os`] holds OS facts every layer reads: errno names and hints, the /proc/net counters;
//! - [`addr`] parses `HOST:PORT`, `[V6]:PORT`, `[fe80::1%eth0]:PORT` and `:PORT` into socket addresses;
//! - [`units`] parses sizes (`64K`) and durations (`500ms`);
//! - [`jsonl`] is the `{"type": …, "data": {…}}` envelope every JSON-lines output uses;
//! - [`meta`] is the `meta` block lab and bench documents share (version, kernel, CPUs, host,
//!   start time, parameters);
//! - [`trace`] is the recorder the socket steps report to, and the renderers that print it;
//! - [`sock`] is the step layer: one method is one syscall is one trace event;
//! - [`netns`] creates network namespaces and veth pairs (root only);
//! - [`lab`] runs the article's claims as experiments; [`bench`](mod@bench) measures throughput, loss and
//!   latency between two endpoints.
//!
//! Inside `bench` the same rule holds from the bottom up: `wire`, `stats`, `culprit`,
//! `zerocopy`; then `protocol`; then `sender` and `receiver` (neither imports the other); then
//! `session`; then `kind` (the test kinds), `client`, `server`, `search`, `report`, `plot`,
//! `underload` and `mesh`. The one standing
//! exception: `protocol`'s `Message` carries the mesh agent's reply (`mesh::wire`).
//!
//! # Where to add things
//!
//! (CONTRIBUTING.md has the step-by-step recipes.)
//! - **An experiment**: a `src/lab/cNN_*.rs` module implementing [`lab::Experiment`], listed in
//!   [`lab::registry`].
//! - **A socket option**: a traced setter on [`sock::Sock`] in `src/sock/options.rs`, and a field
//!   of [`sock::options::SockOpts`] that [`sock::options::SockOpts::apply`] sets.
//! - **An output format**: a trace format beside [`trace::render::text`] and
//!   [`trace::render::json`]; a bench format as a `Format` variant in `src/cli/bench.rs` rendering
//!   the rows of [`bench::report::rows`]; JSON lines always through [`jsonl::line`].
//! - **A bench test kind**: a [`bench::protocol::TestKind`] variant and one module in
//!   `src/bench/kind/` implementing [`bench::kind::Kind`] (and the per-stream loops of
//!   [`bench::session::StreamLoops`]), mapped to the variant in [`bench::kind::of`].

pub mod addr;
pub mod bench;
pub mod jsonl;
pub mod lab;
pub mod meta;
pub mod netns;
pub mod os;
pub mod sock;
pub mod trace;
pub mod units;
