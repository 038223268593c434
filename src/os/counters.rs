//! Kernel protocol counters: /proc/net/snmp (Ip, Icmp, Tcp, Udp …), /proc/net/netstat (TcpExt,
//! IpExt) and /proc/net/snmp6, read through `/proc/thread-self/net` so that a thread inside a
//! namespace reads that namespace's counters. An experiment snapshots before and after and
//! reports the deltas (`Udp.NoPorts`, `Udp.RcvbufErrors`, `TcpExt.TCPToZeroWindowAdv` …).

use std::collections::BTreeMap;
use std::io;

/// Counter values by `Group.Name`, e.g. `Udp.NoPorts`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot(pub BTreeMap<String, i64>);

impl Snapshot {
    /// Reads the counters of the calling thread's network namespace.
    pub fn read() -> io::Result<Self> {
        let mut map = BTreeMap::new();
        for file in ["snmp", "netstat"] {
            let text = std::fs::read_to_string(format!("/proc/thread-self/net/{file}"))?;
            parse_pairs(&text, &mut map);
        }
        if let Ok(text) = std::fs::read_to_string("/proc/thread-self/net/snmp6") {
            parse_snmp6(&text, &mut map);
        }
        Ok(Self(map))
    }

    /// The value of `name` (0 if the kernel has no such counter).
    pub fn get(&self, name: &str) -> i64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// The counters that changed from `self` to `later`, with their deltas.
    pub fn delta(&self, later: &Self) -> BTreeMap<String, i64> {
        later
            .0
            .iter()
            .filter_map(|(k, v)| {
                let d = v - self.get(k);
                (d != 0).then(|| (k.clone(), d))
            })
            .collect()
    }
}

/// Parses the header/value line pairs of /proc/net/snmp and /proc/net/netstat.
fn parse_pairs(text: &str, map: &mut BTreeMap<String, i64>) {
    let mut lines = text.lines();
    while let (Some(head), Some(values)) = (lines.next(), lines.next()) {
        let mut h = head.split_whitespace();
        let mut v = values.split_whitespace();
        let (Some(group), Some(_)) = (h.next(), v.next()) else {
            continue;
        };
        let group = group.trim_end_matches(':');
        for (name, value) in h.zip(v) {
            if let Ok(n) = value.parse::<i64>() {
                map.insert(format!("{group}.{name}"), n);
            }
        }
    }
}

/// Parses /proc/net/snmp6's `Udp6InDatagrams 0` lines as `Udp6.InDatagrams`.
fn parse_snmp6(text: &str, map: &mut BTreeMap<String, i64>) {
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(name), Some(value)) = (it.next(), it.next()) else {
            continue;
        };
        let Ok(n) = value.parse::<i64>() else {
            continue;
        };
        // The group ends at its "6": Ip6, Icmp6, Udp6, UdpLite6.
        let Some(split) = name.find('6').map(|i| i + 1) else {
            continue;
        };
        let (group, rest) = name.split_at(split);
        map.insert(format!("{group}.{rest}"), n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_and_deltas() {
        let mut a = BTreeMap::new();
        parse_pairs(
            "Udp: InDatagrams NoPorts\nUdp: 10 2\nTcpExt: TW\nTcpExt: 5\n",
            &mut a,
        );
        assert_eq!(a["Udp.NoPorts"], 2);
        assert_eq!(a["TcpExt.TW"], 5);
        let mut b = a.clone();
        b.insert("Udp.NoPorts".into(), 3);
        let d = Snapshot(a).delta(&Snapshot(b));
        assert_eq!(d.len(), 1);
        assert_eq!(d["Udp.NoPorts"], 1);
        let mut c = BTreeMap::new();
        parse_snmp6("Udp6InDatagrams 7\nIcmp6OutDestUnreachs 1\n", &mut c);
        assert_eq!(c["Udp6.InDatagrams"], 7);
        assert_eq!(c["Icmp6.OutDestUnreachs"], 1);
    }

    #[test]
    fn reads_this_namespace() {
        let s = Snapshot::read().unwrap();
        assert!(s.0.contains_key("Udp.NoPorts"));
    }
}
