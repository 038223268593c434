//! Endpoint addresses as users type them, resolved to [`SocketAddr`]s.
//!
//! Accepted forms: `HOST:PORT` (a name such as `localhost` is resolved with getaddrinfo(3)),
//! `1.2.3.4:PORT`, `[V6ADDR]:PORT`, `[fe80::1%eth0]:PORT` (scope by interface name or index),
//! `:PORT` and a bare `PORT` (the wildcard address of the chosen family). A [`Family`] filter
//! implements `-4`/`-6`. Every failure is a typed [`AddrError`] whose Display is one line.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, ToSocketAddrs};

/// Which address family the user asked for (`-4`, `-6`, or neither).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    /// Whatever the address is; the wildcard defaults to IPv4.
    #[default]
    Any,
    /// IPv4 only (`-4`).
    V4,
    /// IPv6 only (`-6`).
    V6,
}

impl Family {
    /// Whether `addr` belongs to this family.
    pub fn admits(self, addr: &SocketAddr) -> bool {
        match self {
            Self::Any => true,
            Self::V4 => addr.is_ipv4(),
            Self::V6 => addr.is_ipv6(),
        }
    }
}

/// Why an address could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddrError {
    /// No `:PORT` part.
    #[error("address '{0}' has no port (expected HOST:PORT, [V6]:PORT or :PORT)")]
    MissingPort(String),
    /// The port is not a number from 0 to 65535.
    #[error("invalid port '{port}' in '{text}' (a port is a number from 0 to 65535)")]
    BadPort {
        /// The whole address as given.
        text: String,
        /// The port part.
        port: String,
    },
    /// `[` without a matching `]`, or text after the `]` that is not `:PORT`.
    #[error("malformed IPv6 address '{0}' (expected [V6ADDR]:PORT)")]
    BadBracket(String),
    /// Inside the brackets is not an IPv6 address.
    #[error("'{0}' is not an IPv6 address")]
    NotIpv6(String),
    /// A `%scope` that names no interface.
    #[error("unknown interface '{scope}' in '{text}'")]
    BadScope {
        /// The whole address as given.
        text: String,
        /// The scope part.
        scope: String,
    },
    /// getaddrinfo(3) failed or returned nothing.
    #[error("cannot resolve '{host}': {reason}")]
    Unresolved {
        /// The host part.
        host: String,
        /// What the resolver said.
        reason: String,
    },
    /// The name resolved, but not to the family asked for.
    #[error("'{text}' has no {family} address")]
    WrongFamily {
        /// The whole address as given.
        text: String,
        /// "IPv4" or "IPv6".
        family: &'static str,
    },
    /// `HOST:PORT PORT`: a port given twice.
    #[error("'{text}' already has a port; give either HOST:PORT or HOST PORT")]
    PortTwice {
        /// The address that already had a port.
        text: String,
    },
}

/// Parses and resolves `text` into one or more socket addresses of `family`, in resolver order.
///
/// ```
/// use socklab::addr::{AddrError, Family, resolve};
///
/// assert_eq!(resolve(":9000", Family::V6)?[0].to_string(), "[::]:9000");
/// assert_eq!(resolve("[::1]:53", Family::Any)?[0].to_string(), "[::1]:53");
/// assert!(matches!(resolve("127.0.0.1:65536", Family::Any), Err(AddrError::BadPort { .. })));
/// # Ok::<(), AddrError>(())
/// ```
pub fn resolve(text: &str, family: Family) -> Result<Vec<SocketAddr>, AddrError> {
    let (host, port_text) = split_host_port(text)?;
    let port: u16 = port_text.parse().map_err(|_| AddrError::BadPort {
        text: text.to_string(),
        port: port_text.to_string(),
    })?;
    let addrs = match host {
        Host::Wildcard => vec![match family {
            Family::V6 => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
            _ => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
        }],
        Host::V6 { addr, scope } => {
            let scope_id = match scope {
                None => 0,
                Some(s) => scope_index(s).ok_or_else(|| AddrError::BadScope {
                    text: text.to_string(),
                    scope: s.to_string(),
                })?,
            };
            vec![SocketAddr::V6(SocketAddrV6::new(addr, port, 0, scope_id))]
        }
        Host::Name(name) => match name.parse::<Ipv4Addr>() {
            Ok(ip) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
            Err(_) => (name, port)
                .to_socket_addrs()
                .map_err(|e| AddrError::Unresolved {
                    host: name.to_string(),
                    reason: resolver_reason(&e),
                })?
                .collect(),
        },
    };
    let admitted: Vec<SocketAddr> = addrs.into_iter().filter(|a| family.admits(a)).collect();
    if admitted.is_empty() {
        return Err(AddrError::WrongFamily {
            text: text.to_string(),
            family: if family == Family::V6 { "IPv6" } else { "IPv4" },
        });
    }
    Ok(admitted)
}

/// Like [`resolve`], keeping only the first address.
pub fn resolve_one(text: &str, family: Family) -> Result<SocketAddr, AddrError> {
    resolve(text, family).map(|v| v[0])
}

/// Joins nc's two arguments `HOST PORT` into the one address [`resolve`] takes, bracketing a
/// bare IPv6 host (`::1 53` becomes `[::1]:53`). A host that already has a port is an error.
///
/// ```
/// use socklab::addr::join_host_port;
///
/// assert_eq!(join_host_port("127.0.0.1", "9000")?, "127.0.0.1:9000");
/// assert_eq!(join_host_port("::1", "53")?, "[::1]:53");
/// assert!(join_host_port("127.0.0.1:80", "81").is_err());
/// # Ok::<(), socklab::addr::AddrError>(())
/// ```
pub fn join_host_port(host: &str, port: &str) -> Result<String, AddrError> {
    if !host.starts_with('[') && host.contains(':') && is_bare_v6(host) {
        return Ok(format!("[{host}]:{port}"));
    }
    match split_host_port(host) {
        Err(AddrError::MissingPort(_)) => Ok(format!("{host}:{port}")),
        _ => Err(AddrError::PortTwice {
            text: host.to_string(),
        }),
    }
}

/// Like [`resolve_one`] for a local address (`--bind`): a host without a port (`10.0.0.1`,
/// `::1`, `[::1]`, `localhost`) means port 0, so the kernel picks the port at bind(2).
///
/// ```
/// use socklab::addr::{Family, resolve_local};
///
/// assert_eq!(resolve_local("127.0.0.1", Family::Any)?.to_string(), "127.0.0.1:0");
/// assert_eq!(resolve_local("::1", Family::Any)?.to_string(), "[::1]:0");
/// assert_eq!(resolve_local("127.0.0.1:7", Family::Any)?.to_string(), "127.0.0.1:7");
/// # Ok::<(), socklab::addr::AddrError>(())
/// ```
pub fn resolve_local(text: &str, family: Family) -> Result<SocketAddr, AddrError> {
    if is_bare_v6(text) {
        return resolve_one(&format!("[{text}]:0"), family);
    }
    match resolve_one(text, family) {
        Err(AddrError::MissingPort(_)) => resolve_one(&format!("{text}:0"), family),
        other => other,
    }
}

/// Whether `text` is an IPv6 address without brackets (with an optional `%scope`).
fn is_bare_v6(text: &str) -> bool {
    let ip = text.split_once('%').map_or(text, |(ip, _)| ip);
    ip.parse::<Ipv6Addr>().is_ok()
}

enum Host<'a> {
    Wildcard,
    V6 {
        addr: Ipv6Addr,
        scope: Option<&'a str>,
    },
    Name(&'a str),
}

fn split_host_port(text: &str) -> Result<(Host<'_>, &str), AddrError> {
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| AddrError::BadBracket(text.to_string()))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| match after.is_empty() {
                true => AddrError::MissingPort(text.to_string()),
                false => AddrError::BadBracket(text.to_string()),
            })?;
        let (ip, scope) = match inside.split_once('%') {
            Some((ip, scope)) => (ip, Some(scope)),
            None => (inside, None),
        };
        let addr = ip
            .parse::<Ipv6Addr>()
            .map_err(|_| AddrError::NotIpv6(ip.to_string()))?;
        return Ok((Host::V6 { addr, scope }, port));
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok((Host::Wildcard, text));
    }
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| AddrError::MissingPort(text.to_string()))?;
    if host.contains(':') {
        // A bare IPv6 address without brackets: the port cannot be told apart from the address.
        return Err(AddrError::BadBracket(text.to_string()));
    }
    if host.is_empty() {
        return Ok((Host::Wildcard, port));
    }
    Ok((Host::Name(host), port))
}

fn scope_index(scope: &str) -> Option<u32> {
    if let Ok(n) = scope.parse::<u32>() {
        return Some(n);
    }
    nix::net::if_::if_nametoindex(scope).ok()
}

fn resolver_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    s.strip_prefix("failed to lookup address information: ")
        .unwrap_or(&s)
        .to_string()
}

/// Parses a multicast group with an optional interface: `GROUP[%IFACE]`, e.g. `239.1.2.3%veth0`
/// or `ff02::1:3%lo`. Returns the group and the interface name, if one was given.
pub fn parse_group(text: &str) -> Result<(IpAddr, Option<String>), AddrError> {
    let (group, iface) = match text.split_once('%') {
        Some((g, i)) => (g, Some(i.to_string())),
        None => (text, None),
    };
    let ip: IpAddr = group
        .trim_matches(|c| c == '[' || c == ']')
        .parse()
        .map_err(|_| AddrError::Unresolved {
            host: text.to_string(),
            reason: "not a multicast group address".into(),
        })?;
    if !ip.is_multicast() {
        return Err(AddrError::Unresolved {
            host: text.to_string(),
            reason: "not a multicast group address".into(),
        });
    }
    if let Some(i) = &iface {
        if scope_index(i).is_none() {
            return Err(AddrError::BadScope {
                text: text.to_string(),
                scope: i.clone(),
            });
        }
    }
    Ok((ip, iface))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let one = |t| resolve_one(t, Family::Any).unwrap().to_string();
        assert_eq!(one("127.0.0.1:80"), "127.0.0.1:80");
        assert_eq!(one(":9000"), "0.0.0.0:9000");
        assert_eq!(one("9000"), "0.0.0.0:9000");
        assert_eq!(one("[::1]:53"), "[::1]:53");
        assert_eq!(one("[fe80::1%lo]:53"), "[fe80::1%1]:53");
        assert_eq!(resolve_one(":7", Family::V6).unwrap().to_string(), "[::]:7");
        assert!(
            resolve("localhost:80", Family::V4).unwrap()[0]
                .ip()
                .is_loopback()
        );
    }

    #[test]
    fn errors() {
        let err = |t| resolve(t, Family::Any).unwrap_err();
        assert!(matches!(err("127.0.0.1"), AddrError::MissingPort(_)));
        assert!(matches!(err("127.0.0.1:65536"), AddrError::BadPort { .. }));
        assert!(matches!(err("127.0.0.1:-1"), AddrError::BadPort { .. }));
        assert!(matches!(err("127.0.0.1:"), AddrError::BadPort { .. }));
        assert!(matches!(err("[::1:80"), AddrError::BadBracket(_)));
        assert!(matches!(err("::1:80"), AddrError::BadBracket(_)));
        assert!(matches!(err("[::1]"), AddrError::MissingPort(_)));
        assert!(matches!(err("[zz::1]:80"), AddrError::NotIpv6(_)));
        assert!(matches!(
            err("[fe80::1%nosuch0]:80"),
            AddrError::BadScope { .. }
        ));
        assert!(matches!(
            err("no-such-host.invalid:80"),
            AddrError::Unresolved { .. }
        ));
        assert!(matches!(
            resolve("[::1]:80", Family::V4).unwrap_err(),
            AddrError::WrongFamily { .. }
        ));
        assert!(parse_group("10.0.0.1").is_err());
        assert_eq!(
            parse_group("239.1.2.3%lo").unwrap().1.as_deref(),
            Some("lo")
        );
    }
}
