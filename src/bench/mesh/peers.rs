//! The agents of a mesh: from a list (`--peers A,B,C`), a file (one or more per line, `#`
//! comments), or every A/AAAA record of a DNS name (`--peers-dns NAME[:PORT]`, e.g. a
//! Kubernetes headless Service, whose name resolves to one record per ready pod), resolved
//! with getaddrinfo(3) through std's `ToSocketAddrs`.

use std::net::SocketAddr;

use crate::addr::{self, AddrError, Family};

/// Appends `:port` to `text` when it names no port (`host`, `1.2.3.4`, `[::1]`, `::1`).
pub fn with_port(text: &str, port: u16) -> String {
    let t = text.trim();
    if t.starts_with('[') {
        if t.ends_with(']') {
            return format!("{t}:{port}");
        }
        return t.to_string();
    }
    match t.matches(':').count() {
        0 => format!("{t}:{port}"),
        1 => t.to_string(),
        // A bare IPv6 address.
        _ => format!("[{t}]:{port}"),
    }
}

/// The entries of a peers file: separated by commas, blanks or newlines; `#` starts a comment.
pub fn parse_file(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.split(|c: char| c == ',' || c.is_whitespace()))
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect()
}

/// Resolves list entries, one agent each (the first address of a name), in the order given,
/// without duplicates.
pub fn resolve_list(
    entries: &[String],
    port: u16,
    family: Family,
) -> Result<Vec<SocketAddr>, AddrError> {
    let mut out = Vec::new();
    for e in entries {
        let a = addr::resolve_one(&with_port(e, port), family)?;
        if !out.contains(&a) {
            out.push(a);
        }
    }
    Ok(out)
}

/// Every address `name` resolves to (all A and AAAA records the resolver returns), sorted
/// and without duplicates, so that two runs against the same fleet list it the same way.
pub fn resolve_dns(name: &str, port: u16, family: Family) -> Result<Vec<SocketAddr>, AddrError> {
    let mut all = addr::resolve(&with_port(name, port), family)?;
    all.sort();
    all.dedup();
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ports() {
        assert_eq!(with_port("10.0.0.1", 5301), "10.0.0.1:5301");
        assert_eq!(with_port("10.0.0.1:9", 5301), "10.0.0.1:9");
        assert_eq!(with_port("agent", 5301), "agent:5301");
        assert_eq!(with_port("2001:db8::1", 5301), "[2001:db8::1]:5301");
        assert_eq!(with_port("[2001:db8::1]", 5301), "[2001:db8::1]:5301");
        assert_eq!(with_port("[2001:db8::1]:7", 5301), "[2001:db8::1]:7");
    }

    #[test]
    fn files_and_lists() {
        let f = "# fleet\n198.51.100.1, 198.51.100.2\n\n  198.51.100.3:7 # third\n";
        assert_eq!(
            parse_file(f),
            ["198.51.100.1", "198.51.100.2", "198.51.100.3:7"]
        );
        let got = resolve_list(&parse_file(f), 5301, Family::Any).unwrap();
        assert_eq!(got[2].to_string(), "198.51.100.3:7");
        assert_eq!(got[0].port(), 5301);
        let dup = resolve_list(
            &["127.0.0.1".into(), "127.0.0.1:5301".into()],
            5301,
            Family::Any,
        )
        .unwrap();
        assert_eq!(dup.len(), 1, "one agent listed twice is one agent");
        assert!(resolve_list(&["127.0.0.1".into()], 5301, Family::V6).is_err());
    }

    #[test]
    fn literal_dns_name() {
        // A literal resolves without a lookup; the sort makes the order stable.
        let got = resolve_dns("::1", 5301, Family::Any).unwrap();
        assert_eq!(got[0].to_string(), "[::1]:5301");
    }
}
