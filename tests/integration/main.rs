//! The one integration-test binary: every area in its own module, the harness in `util`.

mod bad_inputs;
mod bench;
mod interop;
mod lab_c01_c05;
mod lab_c06_c08;
mod lab_c09_c14;
mod lab_cli;
mod lab_python;
mod lab_util;
mod netns_endpoints;
mod tcp;
mod trace_snapshots;
mod udp;
mod util;
