//! The one integration-test binary: one module per area.

mod lab_c06_c08;
