//! Fuzz targets for everything socklab parses from a user or a peer: addresses, sizes and
//! durations typed on the command line, bench control frames, the bench data header and the
//! token handshake.
//!
//! Each target is a [bolero](https://camshaft.github.io/bolero/) `check!()` inside a plain
//! `#[test]`, so it runs two ways:
//!
//! - `cargo test --release --test fuzz`: bolero's random engine, a fixed number of inputs per
//!   target ([`CI_INPUTS`], a few seconds in all), on stable Rust. This is the bounded pass CI
//!   makes with its normal test run.
//! - `scripts/fuzz.sh SECONDS`: each target under libFuzzer (coverage-guided, through
//!   `cargo bolero`, nightly toolchain) for a set time, printing inputs run and crashes found.
//!
//! Every target asserts a property, not only "no panic". Inputs that once broke a property are
//! kept as `#[test]`s with the input as literal bytes, named `regression_*`.

mod addr;
mod control;
mod token;
mod units;
mod wire;

/// Inputs each target tries under plain `cargo test` (bolero's random engine). An exported
/// `BOLERO_RANDOM_ITERATIONS` or `BOLERO_RANDOM_TEST_TIME_MS` overrides it.
const CI_INPUTS: usize = 20_000;

/// Whether `text` spans more than one line: an error message built from a one-line input must
/// stay one line (socklab prints every failure as one stderr line).
fn is_multiline(text: &str) -> bool {
    text.contains(['\n', '\r'])
}
