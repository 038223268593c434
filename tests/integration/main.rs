//! The one integration-test binary: every area in its own module, the harness in `util`.

mod bad_inputs;
mod interop;
mod tcp;
mod trace_snapshots;
mod udp;
mod util;
