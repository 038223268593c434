//! The one integration-test binary: a module per area.

mod lab_c01_c05;
mod lab_cli;
