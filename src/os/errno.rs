//! errno values as users read them: the symbolic name (`EADDRINUSE`), a lower-case description,
//! and, where one helps, a hint about the cause. `sock::StepError` builds its one-line error from
//! these: `bind 127.0.0.1:80: permission denied (EACCES)`.

use nix::errno::Errno;

/// The symbolic name of an errno value, e.g. `ECONNREFUSED`.
pub fn name(errno: i32) -> String {
    format!("{:?}", Errno::from_raw(errno))
}

/// The description of an errno value in lower case, e.g. `connection refused`.
pub fn describe(errno: i32) -> String {
    Errno::from_raw(errno).desc().to_lowercase()
}

/// A hint for an errno that a user of `call` usually hits for a known reason.
pub fn hint(call: &str, errno: i32) -> Option<&'static str> {
    match (call, Errno::from_raw(errno)) {
        ("bind", Errno::EADDRINUSE) => Some(
            "another socket holds this address, or a closed TCP connection left it in TIME_WAIT; --reuseaddr allows binding over TIME_WAIT",
        ),
        ("bind", Errno::EACCES) => Some("ports below 1024 need root or CAP_NET_BIND_SERVICE"),
        ("bind", Errno::EADDRNOTAVAIL) => Some("no local interface has this address"),
        ("sendto" | "send" | "connect", Errno::EACCES) => {
            Some("sending to a broadcast address needs --broadcast (SO_BROADCAST)")
        }
        // TCP learns it from the peer's RST to its SYN; connected UDP learns it later, on a
        // send or receive, from an ICMP port unreachable.
        ("connect", Errno::ECONNREFUSED) => {
            Some("nothing listens on that port (the peer answered RST)")
        }
        (_, Errno::ECONNREFUSED) => {
            Some("nothing listens on that port: an ICMP port unreachable came back")
        }
        (_, Errno::EMSGSIZE) => Some(
            "a UDP datagram carries at most 65507 bytes over IPv4 and 65527 over IPv6, and is never split",
        ),
        (_, Errno::EPIPE | Errno::ECONNRESET) => Some("the peer closed the connection"),
        ("setsockopt", Errno::EPERM) => Some("this option needs root or CAP_NET_ADMIN/CAP_NET_RAW"),
        ("setsockopt", Errno::ENOPROTOOPT | Errno::EOPNOTSUPP) => {
            Some("this kernel or socket type does not support the option")
        }
        ("setsockopt", Errno::ENODEV) => Some("no such interface"),
        _ => None,
    }
}

/// Whether the errno means "this kernel or socket does not support that" (reported as
/// unsupported, not as a failure).
pub fn is_unsupported(errno: i32) -> bool {
    matches!(
        Errno::from_raw(errno),
        Errno::ENOPROTOOPT | Errno::EOPNOTSUPP | Errno::EAFNOSUPPORT | Errno::EPROTONOSUPPORT
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_lines() {
        assert_eq!(name(libc::EADDRINUSE), "EADDRINUSE");
        assert_eq!(describe(libc::ECONNREFUSED), "connection refused");
        assert!(is_unsupported(libc::ENOPROTOOPT));
        assert!(!is_unsupported(libc::EPERM));
    }
}
