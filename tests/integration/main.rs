//! The one integration-test binary: one module per area.

mod lab_c06_c08;
mod lab_c09_c14;
