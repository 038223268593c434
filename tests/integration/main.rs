//! The one integration-test binary: one module per area.

mod lab_c01_c05;
mod lab_c06_c08;
mod lab_c09_c14;
mod lab_cli;
mod lab_util;
