//! The address family a lab run uses: IPv4 (the article's own, the default) or IPv6. An
//! experiment never writes an address literal for its loopback or two-host parts; it asks its
//! [`Host`](super::Host) (which asks the [`Lab`](super::Lab)) for the family and takes the
//! addresses from here, so the same calls run over 127.0.0.1 and 198.51.100.0/24 (TEST-NET-2,
//! RFC 5737) or over ::1 and 2001:db8::/64 (the documentation prefix, RFC 3849), and the
//! same judge functions give the verdicts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::Serialize;

/// IPv4 or IPv6 (socket(2) `AF_INET` / `AF_INET6`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// AF_INET: 127.0.0.1 and 198.51.100.0/24.
    #[default]
    Ipv4,
    /// AF_INET6: ::1 and 2001:db8::/64.
    Ipv6,
}

impl Family {
    /// `ipv4` or `ipv6`, as in the JSON report.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ipv4 => "ipv4",
            Self::Ipv6 => "ipv6",
        }
    }

    /// `v4` or `v6`, for table headers.
    pub fn short(self) -> &'static str {
        match self {
            Self::Ipv4 => "v4",
            Self::Ipv6 => "v6",
        }
    }

    /// The loopback address: 127.0.0.1 or ::1.
    pub fn loopback(self) -> IpAddr {
        match self {
            Self::Ipv4 => Ipv4Addr::LOCALHOST.into(),
            Self::Ipv6 => Ipv6Addr::LOCALHOST.into(),
        }
    }

    /// The wildcard address: 0.0.0.0 (INADDR_ANY) or :: (in6addr_any).
    pub fn unspecified(self) -> IpAddr {
        match self {
            Self::Ipv4 => Ipv4Addr::UNSPECIFIED.into(),
            Self::Ipv6 => Ipv6Addr::UNSPECIFIED.into(),
        }
    }

    /// The loopback address with `port` (0 lets the kernel choose).
    pub fn lo(self, port: u16) -> SocketAddr {
        SocketAddr::new(self.loopback(), port)
    }

    /// The wildcard address with `port`.
    pub fn any(self, port: u16) -> SocketAddr {
        SocketAddr::new(self.unspecified(), port)
    }

    /// Host `n`'s address on the TEST-NET link of [`Lab::pair`](super::Lab::pair):
    /// 198.51.100.`n` or 2001:db8::`n`.
    pub fn test_net(self, n: u8) -> IpAddr {
        match self {
            Self::Ipv4 => Ipv4Addr::new(198, 51, 100, n).into(),
            Self::Ipv6 => Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(n)).into(),
        }
    }

    /// The name of a kernel counter of this family: IPv4's `Udp.NoPorts`, `Icmp.InDestUnreachs`
    /// become `Udp6.NoPorts`, `Icmp6.InDestUnreachs` (/proc/net/snmp6) for IPv6; TCP's
    /// counters are shared by both families and stay as they are.
    pub fn counter(self, v4_name: &str) -> String {
        match (self, v4_name.split_once('.')) {
            (Self::Ipv6, Some((group @ ("Udp" | "Icmp" | "Ip"), rest))) => {
                format!("{group}6.{rest}")
            }
            _ => v4_name.to_string(),
        }
    }

    /// The family of `addr`.
    pub fn of(addr: &SocketAddr) -> Self {
        if addr.is_ipv4() {
            Self::Ipv4
        } else {
            Self::Ipv6
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_each_family() {
        assert_eq!(Family::Ipv4.lo(5).to_string(), "127.0.0.1:5");
        assert_eq!(Family::Ipv6.lo(5).to_string(), "[::1]:5");
        assert_eq!(Family::Ipv6.any(0).to_string(), "[::]:0");
        assert_eq!(Family::Ipv6.test_net(11).to_string(), "2001:db8::b");
        assert_eq!(Family::Ipv4.test_net(2).to_string(), "198.51.100.2");
        assert_eq!(Family::of(&Family::Ipv6.lo(0)), Family::Ipv6);
    }

    #[test]
    fn counters_of_each_family() {
        assert_eq!(Family::Ipv6.counter("Udp.NoPorts"), "Udp6.NoPorts");
        assert_eq!(
            Family::Ipv6.counter("Icmp.InDestUnreachs"),
            "Icmp6.InDestUnreachs"
        );
        assert_eq!(
            Family::Ipv6.counter("TcpExt.TCPToZeroWindowAdv"),
            "TcpExt.TCPToZeroWindowAdv"
        );
        assert_eq!(Family::Ipv4.counter("Udp.NoPorts"), "Udp.NoPorts");
    }
}
