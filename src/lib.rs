//! socklab: TCP and UDP socket semantics you can run, see and measure.
//!
//! The library is what the `socklab` binary, the lab, the bench and the tests all drive:
//! - [`addr`] parses `HOST:PORT`, `[V6]:PORT`, `[fe80::1%eth0]:PORT` and `:PORT` into socket addresses;
//! - [`units`] parses sizes (`64K`) and durations (`500ms`);
//! - [`sock`] is the step layer: one method is one syscall is one trace event;
//! - [`trace`] is the recorder those steps report to, and the renderers that print it;
//! - [`jsonl`] is the `{"type": …, "data": {…}}` envelope every JSON-lines output uses.
//!
//! `sock` and `trace` never import the lab, the bench or the CLI, so they can become crates of
//! their own by a mechanical move.

pub mod addr;
pub mod bench;
pub mod jsonl;
pub mod lab;
pub mod netns;
pub mod sock;
pub mod trace;
pub mod units;
