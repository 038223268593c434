//! The one integration-test binary: every area in its own module, the harness in `util`.

mod bad_inputs;
mod interop;
mod netns_endpoints;
mod tcp;
mod trace_snapshots;
mod udp;
mod util;
