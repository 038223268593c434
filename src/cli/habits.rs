//! Habits users bring from nc, ncat and iperf3: their two-word `HOST PORT`, port ranges for
//! `-z`, and, for a flag socklab spells differently, a one-line pointer to socklab's spelling.

use std::ops::RangeInclusive;

use socklab::addr;
use socklab::sock::holders::AddrInUse;
use socklab::sock::{Proto, StepError};

/// The address text of `ADDR [PORT]`: `ADDR` alone (`HOST:PORT`, `:PORT`, `PORT`), or nc's two
/// words `HOST PORT` joined into one address.
pub(crate) fn host_port(addr: &str, port: Option<&str>) -> anyhow::Result<String> {
    Ok(match port {
        Some(p) => addr::join_host_port(addr, p)?,
        None => addr.to_string(),
    })
}

/// The host and the ports of a `-z` target: `HOST PORTS` or `HOST:PORTS`, where PORTS is a
/// port or a range `LOW-HIGH` (as nc: `nc -z host 20-25`).
pub(crate) fn scan_targets(
    addr: &str,
    port: Option<&str>,
) -> anyhow::Result<(String, RangeInclusive<u16>)> {
    let (host, spec) = match port {
        Some(p) => (addr, p),
        None => addr.rsplit_once(':').ok_or_else(|| {
            anyhow::anyhow!("'{addr}' has no port (expected HOST PORT[-PORT] or HOST:PORT[-PORT])")
        })?,
    };
    Ok((host.to_string(), port_range(spec)?))
}

/// `PORT` or `LOW-HIGH`, each from 1 to 65535, LOW <= HIGH.
fn port_range(spec: &str) -> anyhow::Result<RangeInclusive<u16>> {
    let port = |p: &str| -> anyhow::Result<u16> {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => {
                anyhow::bail!("invalid port '{p}' in '{spec}' (a port is a number from 1 to 65535)")
            }
        }
    };
    let (low, high) = match spec.split_once('-') {
        Some((l, h)) => (port(l)?, port(h)?),
        None => (port(spec)?, port(spec)?),
    };
    if low > high {
        anyhow::bail!("port range '{spec}' runs backwards (LOW-HIGH, LOW <= HIGH)");
    }
    Ok(low..=high)
}

/// A failed step as the error to report: a bind that failed with EADDRINUSE says exactly who
/// holds the port (a live socket, its state and process, or TIME_WAIT; UDP in its own words).
/// `reuseaddr` is whether the socket had SO_REUSEADDR set.
pub(crate) fn step_error(e: StepError, proto: Proto, reuseaddr: Option<bool>) -> anyhow::Error {
    match AddrInUse::explain(e, proto, reuseaddr == Some(true)) {
        Ok(in_use) => in_use.into(),
        Err(e) => e.into(),
    }
}

/// For an argument clap rejected, socklab's spelling of what an nc or iperf3 user meant, if
/// there is one. `argv` is the whole command line (some flags mean different things under
/// `bench`, where iperf3 habits apply, and elsewhere, where nc's do).
pub(crate) fn pointer(arg: &str, argv: &[String]) -> Option<&'static str> {
    let bench = argv.iter().skip(1).any(|a| a == "bench");
    let flag = arg.split_once('=').map_or(arg, |(f, _)| f);
    Some(match (flag, bench) {
        ("-J", _) => "iperf3's -J is --json here",
        ("-c", _) => "iperf3's -c HOST is `socklab bench client HOST`",
        ("-s", _) => "iperf3's -s is `socklab bench server`",
        ("-p", true) => {
            "iperf3's -p PORT is part of the address here: `bench server --bind :PORT`, `bench client HOST:PORT`"
        }
        ("-p", false) => {
            "nc's -p PORT is part of the address here: `tcp listen :PORT`, or --bind :PORT for a client's local port"
        }
        ("-l", false) => {
            "nc's -l is a subcommand here: `socklab tcp listen ADDR` (`socklab udp recv ADDR` for UDP)"
        }
        ("-u", false) => "nc's -u is a subcommand here: `socklab udp send|recv|connect|serve …`",
        ("-N", _) => {
            "socklab always half-closes (shutdown SHUT_WR) when stdin ends; nothing to ask for"
        }
        ("-n", _) => "socklab resolves a name only when you give one; an address is used as is",
        ("-U", _) => "socklab speaks TCP and UDP, not Unix sockets",
        ("-e" | "--exec" | "--sh-exec", _) => {
            "socklab does not run programs; pipe through it instead"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_words_and_ranges() {
        assert_eq!(host_port("127.0.0.1", Some("9")).unwrap(), "127.0.0.1:9");
        assert_eq!(host_port(":9", None).unwrap(), ":9");
        assert_eq!(
            scan_targets("h", Some("20-25")).unwrap(),
            ("h".into(), 20..=25)
        );
        assert_eq!(
            scan_targets("[::1]:7", None).unwrap(),
            ("[::1]".into(), 7..=7)
        );
        assert!(scan_targets("h", Some("25-20")).is_err());
        assert!(scan_targets("h", Some("0")).is_err());
        assert!(scan_targets("h", None).is_err());
    }

    #[test]
    fn pointers_depend_on_the_tool() {
        let argv = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert!(
            pointer("-p", &argv("socklab bench server -p 5201"))
                .unwrap()
                .contains("--bind :PORT")
        );
        assert!(
            pointer("-p", &argv("socklab tcp listen -p 9"))
                .unwrap()
                .contains("tcp listen :PORT")
        );
        assert!(
            pointer("-J", &argv("socklab bench client h -J"))
                .unwrap()
                .contains("--json")
        );
        assert_eq!(pointer("-Q", &argv("socklab tcp connect h 1 -Q")), None);
    }
}
