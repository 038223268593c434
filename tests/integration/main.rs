//! The one integration-test binary: every area in its own module, the harness in `util`.

mod bad_inputs;
mod bench;
mod bench_hostile;
mod bench_zerocopy;
mod habits;
mod help_docs;
mod interop;
mod json;
mod keep_open_load;
mod lab_c01_c05;
mod lab_c06_c08;
mod lab_c09_c14;
mod lab_cli;
mod lab_ladder;
mod lab_python;
mod lab_util;
mod lab_v6;
mod layers;
mod mesh;
mod netns_endpoints;
mod stdout_errors;
mod tcp;
mod tcp_timeouts;
mod trace_snapshots;
mod udp;
mod util;
