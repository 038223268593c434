//! Sizes and durations typed on the command line: `socklab::units::parse_size` (`64K`, `1MiB`)
//! and `socklab::units::parse_duration` (`250ms`, `1.5`, `2m`). The CLI's own range checks
//! (`--time`, `--len`, `--rcvbuf`...) wrap these two.

use std::time::Duration;

use bolero::{TypeGenerator, check};
use socklab::units::{UnitError, parse_duration, parse_size};

use crate::{CI_INPUTS, is_multiline};

/// Size suffixes and the power of two each stands for.
const SIZE_SUFFIXES: [(&str, u32); 10] = [
    ("", 0),
    ("b", 0),
    ("k", 10),
    ("KB", 10),
    ("KiB", 10),
    ("m", 20),
    ("MB", 20),
    ("MiB", 20),
    ("g", 30),
    ("GiB", 30),
];

/// Duration suffixes and the nanoseconds each stands for.
const DURATION_SUFFIXES: [(&str, u64); 7] = [
    ("us", 1_000),
    ("ms", 1_000_000),
    ("", 1_000_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("min", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Below this many nanoseconds (2^51 ns, 26 days) a duration survives the parser's f64 exactly:
/// half an f64 ulp of the value in seconds is then under half a nanosecond, and the parser
/// rounds to the nearest nanosecond.
const EXACT_NS: u128 = 1 << 51;

/// A size as `N` and a suffix index, with optional surrounding blanks.
#[derive(Debug, TypeGenerator)]
struct SizeText {
    n: u64,
    suffix: u8,
    upper: bool,
    blanks: bool,
}

/// `parse_size("{n}{suffix}") == n << shift`, or `TooLarge` exactly when that overflows u64;
/// case and surrounding blanks do not matter.
#[test]
fn fuzz_size_round_trip() {
    check!()
        .with_type::<SizeText>()
        .with_iterations(CI_INPUTS)
        .for_each(|t| {
            let (suffix, shift) = SIZE_SUFFIXES[t.suffix as usize % SIZE_SUFFIXES.len()];
            let suffix = match t.upper {
                true => suffix.to_ascii_uppercase(),
                false => suffix.to_ascii_lowercase(),
            };
            let pad = if t.blanks { " \t" } else { "" };
            let text = format!("{pad}{}{suffix}{pad}", t.n);
            let want = u64::try_from(u128::from(t.n) << shift).ok();
            match (parse_size(&text), want) {
                (Ok(got), Some(want)) => assert_eq!(got, want, "{text:?}"),
                (Err(UnitError::TooLarge { .. }), None) => {}
                (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
            }
        });
}

/// Arbitrary text: no panic; a size it accepts is printed back as a plain number that parses
/// to the same size; a refusal is one line when the input is.
#[test]
fn fuzz_size_text() {
    check!()
        .with_iterations(CI_INPUTS)
        .for_each(|bytes: &[u8]| {
            let text = String::from_utf8_lossy(bytes);
            match parse_size(&text) {
                Ok(n) => {
                    assert!(text.trim().starts_with(|c: char| c.is_ascii_digit()));
                    assert_eq!(parse_size(&n.to_string()), Ok(n), "{text:?}");
                }
                Err(e) => {
                    if !is_multiline(&text) {
                        assert!(!is_multiline(&e.to_string()), "{text:?}: {e}");
                    }
                }
            }
        });
}

/// A duration as a whole number of some unit, or as seconds with nine decimals.
#[derive(Debug, TypeGenerator)]
enum DurationText {
    Whole { n: u64, suffix: u8 },
    Decimal { secs: u64, nanos: u32 },
}

/// parse(display(d)) == d: `"{n}{unit}"` and `"{secs}.{nanos:09}"` come back to the nanosecond
/// below 2^51 ns, within one part in 2^50 above it, and `TooLarge` only past `Duration::MAX`.
#[test]
fn fuzz_duration_round_trip() {
    check!()
        .with_type::<DurationText>()
        .with_iterations(CI_INPUTS)
        .for_each(|t| {
            let (text, want_ns) = match *t {
                DurationText::Whole { n, suffix } => {
                    let (suffix, ns) = DURATION_SUFFIXES[suffix as usize % DURATION_SUFFIXES.len()];
                    (format!("{n}{suffix}"), u128::from(n) * u128::from(ns))
                }
                DurationText::Decimal { secs, nanos } => {
                    let nanos = nanos % 1_000_000_000;
                    (
                        format!("{secs}.{nanos:09}"),
                        u128::from(secs) * 1_000_000_000 + u128::from(nanos),
                    )
                }
            };
            let max_ns = Duration::MAX.as_nanos();
            match parse_duration(&text) {
                Ok(d) if want_ns < EXACT_NS => assert_eq!(d.as_nanos(), want_ns, "{text:?}"),
                Ok(d) => {
                    let err = d.as_nanos().abs_diff(want_ns);
                    assert!(err <= want_ns >> 50, "{text:?}: got {d:?}, off by {err} ns");
                }
                Err(UnitError::TooLarge { .. }) => {
                    assert!(
                        want_ns > max_ns - (max_ns >> 50),
                        "{text:?} refused as too large"
                    )
                }
                Err(e) => panic!("{text:?}: {e}"),
            }
        });
}

/// Arbitrary text: no panic; an accepted duration starts with a digit or a dot; a refusal is
/// one line when the input is.
#[test]
fn fuzz_duration_text() {
    check!()
        .with_iterations(CI_INPUTS)
        .for_each(|bytes: &[u8]| {
            let text = String::from_utf8_lossy(bytes);
            match parse_duration(&text) {
                Ok(_) => assert!(
                    text.trim()
                        .starts_with(|c: char| c.is_ascii_digit() || c == '.')
                ),
                Err(e) => {
                    if !is_multiline(&text) {
                        assert!(!is_multiline(&e.to_string()), "{text:?}: {e}");
                    }
                }
            }
        });
}
