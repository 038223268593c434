//! The `meta` block every socklab JSON document opens with (lab runs, bench runs, the mesh):
//! who made it, on which kernel and machine, when, and with which parameters, under the same
//! keys and types everywhere (after hyperfine's export header). Each document adds its own
//! fields beside these (the lab its isolation and sysctls, the bench its target) by flattening
//! [`Meta`] into its own struct.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

/// The fields every `meta` block has.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Meta {
    /// This program's version (Cargo.toml).
    pub socklab_version: String,
    /// The kernel release (`uname -r`, from /proc/sys/kernel/osrelease).
    pub kernel: String,
    /// CPUs available to this process (sched_getaffinity(2), as `nproc`).
    pub cpu_count: usize,
    /// This host's name (`uname -n`, from /proc/sys/kernel/hostname; empty if unreadable).
    pub hostname: String,
    /// When the run started: RFC 3339, UTC, milliseconds (`2026-11-25T01:30:00.250Z`).
    pub started_at: String,
    /// Every parameter of the run, as the command line gave it (units in the names).
    pub parameters: Value,
}

impl Meta {
    /// The meta block of a run starting now.
    pub fn now(parameters: Value) -> Self {
        Self {
            socklab_version: env!("CARGO_PKG_VERSION").into(),
            kernel: proc_sys("kernel/osrelease").unwrap_or_else(|| "unknown".into()),
            cpu_count: std::thread::available_parallelism().map_or(1, |n| n.get()),
            hostname: hostname(),
            started_at: rfc3339(SystemTime::now()),
            parameters,
        }
    }
}

/// This host's name (/proc/sys/kernel/hostname, as `uname -n`), or "" if unreadable.
pub fn hostname() -> String {
    proc_sys("kernel/hostname").unwrap_or_default()
}

fn proc_sys(name: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/sys/{name}"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// `2026-11-25T01:30:00.250Z` for a time (UTC, milliseconds).
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(951_786_061_250);
        assert_eq!(rfc3339(t), "2000-02-29T01:01:01.250Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_570_229);
        assert_eq!(rfc3339(t), "2026-11-25T01:30:29.000Z");
    }

    #[test]
    fn now_fills_every_field() {
        let m = Meta::now(serde_json::json!({"a": 1}));
        assert_eq!(m.socklab_version, env!("CARGO_PKG_VERSION"));
        assert!(!m.kernel.is_empty() && m.kernel != "unknown");
        assert!(m.cpu_count >= 1);
        assert!(m.started_at.ends_with('Z'), "{}", m.started_at);
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["parameters"]["a"], 1);
    }
}
