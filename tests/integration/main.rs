//! The one integration-test binary: every area in its own module, the harness in `util`.

mod tcp;
mod udp;
mod util;
