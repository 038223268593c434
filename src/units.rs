//! Human units on the command line: byte sizes (`1472`, `64K`, `1M`, `1GiB`) and durations
//! (`250ms`, `5s`, `2m`, a bare number is seconds). Errors are typed so the CLI can print one line.

use std::time::Duration;

/// A size or duration that could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnitError {
    /// The text is not a number followed by a known suffix.
    #[error("invalid {what} '{text}' (examples: {examples})")]
    Invalid {
        /// "size" or "duration".
        what: &'static str,
        /// The text as given.
        text: String,
        /// What would have been accepted.
        examples: &'static str,
    },
    /// The number is too large to represent.
    #[error("{what} '{text}' is too large")]
    TooLarge {
        /// "size" or "duration".
        what: &'static str,
        /// The text as given.
        text: String,
    },
}

/// Parses a byte count: a whole number with an optional binary suffix `K`, `M`, `G`
/// (also `KiB`, `MiB`, `GiB`, `k`, `m`, `g`; all mean powers of 1024).
///
/// ```
/// assert_eq!(socklab::units::parse_size("64K"), Ok(65536));
/// assert!(socklab::units::parse_size("12X").is_err());
/// ```
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let invalid = || UnitError::Invalid {
        what: "size",
        text: text.to_string(),
        examples: "1472, 64K, 1M, 1GiB",
    };
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    if num.is_empty() {
        return Err(invalid());
    }
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(invalid()),
    };
    let too_large = || UnitError::TooLarge {
        what: "size",
        text: text.to_string(),
    };
    let n: u64 = num.parse().map_err(|_| too_large())?;
    n.checked_mul(1u64 << shift).ok_or_else(too_large)
}

/// Parses a duration: a number (fractions allowed) with an optional suffix `us`, `ms`, `s`, `m`,
/// `h`; a bare number means seconds.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let invalid = || UnitError::Invalid {
        what: "duration",
        text: text.to_string(),
        examples: "500ms, 5s, 2m, 1.5",
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| invalid())?;
    let scale = match suffix {
        "us" => 1e-6,
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(invalid()),
    };
    Duration::try_from_secs_f64(value * scale).map_err(|_| UnitError::TooLarge {
        what: "duration",
        text: text.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1472"), Ok(1472));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("K").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("-1").is_err());
        assert!(matches!(
            parse_size("99999999999999999999"),
            Err(UnitError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_size("99999999999G"),
            Err(UnitError::TooLarge { .. })
        ));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 days").is_err());
        assert!(parse_duration("1e400").is_err());
    }
}
