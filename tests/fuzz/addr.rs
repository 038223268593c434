//! The endpoint address parser, `socklab::addr::resolve` (`HOST:PORT`, `[V6%SCOPE]:PORT`,
//! `:PORT`, `PORT`).
//!
//! No target hands a host name to getaddrinfo(3): that could send DNS queries off this host,
//! and the fuzz targets, like every test, keep their traffic on loopback.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use bolero::{TypeGenerator, check};
use socklab::addr::{AddrError, Family, resolve};

use crate::{CI_INPUTS, is_multiline};

/// Whether `resolve(text, _)` would ask the resolver about a host name (a `HOST` part that is
/// neither bracketed, empty, all digits nor an IPv4 literal, with a valid port).
fn asks_resolver(text: &str) -> bool {
    if text.starts_with('[') || text.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    text.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && !host.contains(':')
            && host.parse::<Ipv4Addr>().is_err()
            && port.parse::<u16>().is_ok()
    })
}

/// A piece of an address as a user might type it; sequences of these reach the parser's
/// branches far more often than random characters do.
#[derive(Debug, TypeGenerator)]
enum Piece {
    Open,
    Close,
    Colon,
    DoubleColon,
    Percent,
    Dot,
    Digits(u16),
    Hex(u16),
    Port(u32),
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
    Iface(u8),
    Char(char),
}

fn render(pieces: &[Piece]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for p in pieces {
        let _ = match p {
            Piece::Open => write!(s, "["),
            Piece::Close => write!(s, "]"),
            Piece::Colon => write!(s, ":"),
            Piece::DoubleColon => write!(s, "::"),
            Piece::Percent => write!(s, "%"),
            Piece::Dot => write!(s, "."),
            Piece::Digits(n) => write!(s, "{n}"),
            Piece::Hex(n) => write!(s, "{n:x}"),
            Piece::Port(n) => write!(s, "{}", n % 70_000),
            Piece::Ipv4(ip) => write!(s, "{ip}"),
            Piece::Ipv6(ip) => write!(s, "{ip}"),
            Piece::Iface(i) => write!(s, "{}", ["lo", "eth0", "nosuch0", "1", ""][*i as usize % 5]),
            Piece::Char(c) => write!(s, "{c}"),
        };
    }
    s
}

/// The properties every input must keep, for each family filter:
/// - no panic;
/// - a success is exactly one address (no resolver is involved), of the family asked for, and
///   its own Display parses back to the same address;
/// - `-4`/`-6` agree with the unfiltered parse: they keep the address when it is of their family
///   and refuse it with `WrongFamily` otherwise (the wildcard forms `:P`/`P` give each family's
///   own wildcard);
/// - a failure's message is one line when the input is.
fn check_text(text: &str) {
    if asks_resolver(text) {
        return;
    }
    let any = resolve(text, Family::Any);
    for family in [Family::Any, Family::V4, Family::V6] {
        let got = resolve(text, family);
        match &got {
            Ok(addrs) => {
                assert_eq!(addrs.len(), 1, "{text:?}: {addrs:?}");
                assert!(family.admits(&addrs[0]), "{text:?} {family:?}: {addrs:?}");
                let shown = addrs[0].to_string();
                assert_eq!(
                    resolve(&shown, family).as_ref(),
                    Ok(addrs),
                    "{text:?} parsed to {shown}, which does not parse back"
                );
            }
            Err(e) => {
                if !is_multiline(text) {
                    assert!(!is_multiline(&e.to_string()), "{text:?}: {e}");
                }
            }
        }
        match (&any, &got) {
            (Ok(a), Ok(g)) if a[0].ip().is_unspecified() => {
                assert_eq!(a[0].port(), g[0].port(), "{text:?} {family:?}");
            }
            (Ok(a), _) if family.admits(&a[0]) => assert_eq!(&got, &any, "{text:?} {family:?}"),
            (Ok(_), _) => {
                assert!(
                    matches!(got, Err(AddrError::WrongFamily { .. })),
                    "{text:?} {family:?}: {got:?}"
                );
            }
            (Err(_), _) => assert!(got.is_err(), "{text:?}: {family:?} accepts, Any refuses"),
        }
    }
}

/// Arbitrary bytes, read as text, through the parser.
#[test]
fn fuzz_addr_text() {
    check!()
        .with_iterations(CI_INPUTS)
        .for_each(|bytes: &[u8]| check_text(&String::from_utf8_lossy(bytes)));
}

/// Address-shaped text (brackets, colons, scopes, literals, ports) through the parser.
#[test]
fn fuzz_addr_pieces() {
    check!()
        .with_type::<Vec<Piece>>()
        .with_iterations(CI_INPUTS)
        .for_each(|pieces| check_text(&render(pieces)));
}

/// parse(display(addr)) == addr for every socket address, and the wildcard spellings `:P` and
/// `P` give each family's unspecified address.
#[test]
fn fuzz_addr_display_round_trip() {
    check!()
        .with_type::<SocketAddr>()
        .with_iterations(CI_INPUTS)
        .for_each(|addr| {
            // Display does not show the IPv6 flow label, so it cannot come back.
            let addr = match *addr {
                SocketAddr::V6(a) => {
                    SocketAddr::V6(SocketAddrV6::new(*a.ip(), a.port(), 0, a.scope_id()))
                }
                a => a,
            };
            assert_eq!(resolve(&addr.to_string(), Family::Any), Ok(vec![addr]));
            let port = addr.port();
            for text in [format!(":{port}"), port.to_string()] {
                let want4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
                let want6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
                assert_eq!(resolve(&text, Family::Any), Ok(vec![want4]));
                assert_eq!(resolve(&text, Family::V4), Ok(vec![want4]));
                assert_eq!(resolve(&text, Family::V6), Ok(vec![want6]));
            }
        });
}

#[test]
fn asks_resolver_only_for_names() {
    assert!(asks_resolver("example.invalid:80"));
    assert!(asks_resolver("localhost:0"));
    for t in [
        "",
        "80",
        ":80",
        "1.2.3.4:80",
        "[::1]:80",
        "name:99999",
        "name:x",
        "name",
        "::1:80",
    ] {
        assert!(!asks_resolver(t), "{t:?}");
    }
}
