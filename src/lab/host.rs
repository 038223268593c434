//! Where experiments run. [`Lab`] hands out [`Host`]s: a private loopback in a fresh network
//! namespace (with root) or the machine's own `lo` (without), and pairs of hosts joined by a
//! veth pair on TEST-NET-2 (198.51.100.0/24, RFC 5737) for two-host parts. A host captures its
//! frames while it lives and gives them to the lab when dropped; its namespace goes with it.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::Context;

use std::net::{IpAddr, SocketAddr};

use super::capture::{Capture, Frame};
use super::{Family, Part, Quote};
use crate::netns::{self, Netns};
use crate::os::counters::Snapshot;
use crate::trace::Span;

/// The reason given for parts that need namespaces when not root.
pub const NEEDS_ROOT: &str = "needs CAP_NET_ADMIN (run as root) to create network namespaces";

/// Every part of an experiment that runs only in namespaces, given as (id, statement, the
/// article's sentence for a vote or `None` for an aside), as `not run` for [`NEEDS_ROOT`].
pub(crate) fn needs_root(statements: &[(&str, &str, Option<Quote>)]) -> Vec<Part> {
    statements
        .iter()
        .map(|(id, s, q)| {
            let p = Part::not_run(id, s, NEEDS_ROOT);
            match q {
                Some(q) => p.votes_on(*q),
                None => p,
            }
        })
        .collect()
}

/// `parts` with each one whose id `statements` lists with a sentence made a vote on it.
pub(crate) fn anchor(parts: Vec<Part>, statements: &[(&str, &str, Option<Quote>)]) -> Vec<Part> {
    parts
        .into_iter()
        .map(|p| match statements.iter().find(|(id, _, _)| *id == p.id) {
            Some((_, _, Some(q))) => p.votes_on(*q),
            _ => p,
        })
        .collect()
}

/// Shared state of a lab run.
pub struct Lab {
    root: bool,
    frames: Mutex<Vec<Frame>>,
    ss_seen: Mutex<Vec<SsSeen>>,
    exe: Option<PathBuf>,
    family: Family,
}

impl Lab {
    /// A lab that uses namespaces if this process may create them.
    pub fn new() -> Self {
        Self::with_root(netns::have_net_admin())
    }

    /// A lab that uses namespaces only if `root` (false forces the host-loopback mode).
    pub fn with_root(root: bool) -> Self {
        if root {
            netns::sweep_stale();
        }
        Self {
            root,
            frames: Mutex::new(Vec::new()),
            ss_seen: Mutex::new(Vec::new()),
            exe: None,
            family: Family::Ipv4,
        }
    }

    /// Runs the experiments over `family`: its loopback address and its TEST-NET addresses
    /// between hosts ([`Family`]).
    #[must_use]
    pub fn with_family(mut self, family: Family) -> Self {
        self.family = family;
        self
    }

    /// The address family the experiments use.
    pub fn family(&self) -> Family {
        self.family
    }

    /// Uses `path` as the `socklab` executable that experiments spawn as victim processes
    /// (integration tests pass `env!("CARGO_BIN_EXE_socklab")`).
    pub fn with_exe(mut self, path: impl Into<PathBuf>) -> Self {
        self.exe = Some(path.into());
        self
    }

    /// The `socklab` executable to spawn: the one given to [`with_exe`](Self::with_exe), else
    /// this process's own (right when `socklab lab` runs).
    pub fn exe(&self) -> std::io::Result<PathBuf> {
        match &self.exe {
            Some(p) => Ok(p.clone()),
            None => std::env::current_exe(),
        }
    }

    /// Whether namespaces (and so captures and two-host parts) are available.
    pub fn is_root(&self) -> bool {
        self.root
    }

    /// A private loopback: a new namespace with only `lo` (root), or the host's `lo`.
    pub fn loopback(&self, tag: &str) -> anyhow::Result<Host<'_>> {
        if !self.root {
            return Ok(Host {
                lab: self,
                ns: None,
                capture: None,
                test_net: None,
            });
        }
        let ns = Netns::create(tag).context("create a network namespace")?;
        Host::isolated(self, ns)
    }

    /// Two hosts joined by a veth pair: `a` has 198.51.100.1/24 on `veth-a`, `b` has
    /// 198.51.100.2/24 on `veth-b`, plus 2001:db8::1/64 and ::2/64 (RFC 3849); each one's
    /// [`Host::addr`] is the address of the lab's family. Needs root.
    pub fn pair(&self, tag: &str) -> anyhow::Result<(Host<'_>, Host<'_>)> {
        anyhow::ensure!(self.root, NEEDS_ROOT);
        let (a, b) = netns::pair(tag)?;
        let (mut a, mut b) = (Host::isolated(self, a)?, Host::isolated(self, b)?);
        a.test_net = Some(1);
        b.test_net = Some(2);
        Ok((a, b))
    }

    /// A host joined to several others, one veth pair each (a star): for each
    /// [`Link`] `l`, the centre gets `l.center_if` with `l.center_cidr` and a new host gets
    /// `l.leaf_if` with `l.leaf_cidr`. Returns the centre and the leaves in link order. Used
    /// where a host needs two interfaces (which one a broadcast leaves by). Needs root.
    pub fn star(&self, tag: &str, links: &[Link<'_>]) -> anyhow::Result<(Host<'_>, Vec<Host<'_>>)> {
        anyhow::ensure!(self.root, NEEDS_ROOT);
        let center = Netns::create(&format!("{tag}-x"))?;
        let mut leaves = Vec::with_capacity(links.len());
        for (i, l) in links.iter().enumerate() {
            let leaf = Netns::create(&format!("{tag}-{i}"))?;
            netns::veth(
                &center,
                l.center_if,
                l.center_cidr,
                &leaf,
                l.leaf_if,
                l.leaf_cidr,
            )?;
            leaves.push(leaf);
        }
        let leaves = leaves
            .into_iter()
            .map(|ns| Host::isolated(self, ns))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok((Host::isolated(self, center)?, leaves))
    }

    /// Clears the frames and `ss` observations of the previous experiment.
    pub(crate) fn begin(&self) {
        self.frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.ss_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Takes the `ss` observations made since the current experiment began, in order.
    pub fn take_ss_seen(&self) -> Vec<SsSeen> {
        std::mem::take(&mut *self.ss_seen.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Takes the frames captured since the current experiment began.
    pub fn take_frames(&self) -> Vec<Frame> {
        std::mem::take(&mut *self.frames.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

/// One veth link of [`Lab::star`]: interface names and addresses (`198.51.100.1/25`) at the
/// centre and at the leaf.
#[derive(Debug, Clone, Copy)]
pub struct Link<'a> {
    /// Interface name in the centre.
    pub center_if: &'a str,
    /// Its address with prefix length.
    pub center_cidr: &'a str,
    /// Interface name in the leaf.
    pub leaf_if: &'a str,
    /// Its address with prefix length.
    pub leaf_cidr: &'a str,
}

/// One run of `ss` by [`Host::ss`]: when it ran and every line it printed, so that the
/// socket states an experiment keeps as evidence can be put on the time axis of its calls and
/// packets (the lab's packet ladders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsSeen {
    /// When `ss` ran: the states it printed held at some moment inside this span.
    pub span: Span,
    /// Its lines, as [`Host::ss`] returned them.
    pub lines: Vec<String>,
}

/// A place to run socket code: a namespace of its own, or the host.
pub struct Host<'lab> {
    lab: &'lab Lab,
    ns: Option<Netns>,
    capture: Option<Capture>,
    /// Its host number on the TEST-NET link of [`Lab::pair`] (1 for `a`, 2 for `b`).
    test_net: Option<u8>,
}

impl<'lab> Host<'lab> {
    fn isolated(lab: &'lab Lab, ns: Netns) -> anyhow::Result<Self> {
        let capture = ns
            .run(Capture::open)?
            .context("open an AF_PACKET capture")?;
        Ok(Self {
            lab,
            ns: Some(ns),
            capture: Some(capture),
            test_net: None,
        })
    }

    /// The address family of the lab this host belongs to.
    pub fn family(&self) -> Family {
        self.lab.family
    }

    /// This host's loopback address of the lab's family with `port`: 127.0.0.1 or ::1.
    pub fn lo(&self, port: u16) -> SocketAddr {
        self.family().lo(port)
    }

    /// The wildcard address of the lab's family with `port`: 0.0.0.0 or ::.
    pub fn any(&self, port: u16) -> SocketAddr {
        self.family().any(port)
    }

    /// This host's address on the link of [`Lab::pair`], in the lab's family: 198.51.100.1
    /// or 2001:db8::1 for `a`, …2 for `b`; `None` for a host not made by `pair`.
    pub fn addr(&self) -> Option<IpAddr> {
        self.test_net.map(|n| self.family().test_net(n))
    }

    /// The name of the kernel counter `v4_name` in the lab's family ([`Family::counter`]).
    pub fn counter(&self, v4_name: &str) -> String {
        self.family().counter(v4_name)
    }

    /// Whether this host is a namespace of its own (counters and wire are ours alone).
    pub fn is_isolated(&self) -> bool {
        self.ns.is_some()
    }

    /// The namespace, if isolated (to add interfaces or addresses with `ip`).
    pub fn netns(&self) -> Option<&Netns> {
        self.ns.as_ref()
    }

    /// `ip route add default dev DEV` in this host's namespace (ip-route(8)), as a host on a
    /// LAN has, so that 255.255.255.255 has a way out; an error for the machine's own host,
    /// whose routes the lab never changes.
    pub fn add_default_route(&self, dev: &str) -> anyhow::Result<()> {
        let ns = self
            .ns
            .as_ref()
            .context("a default route only in a namespace of the lab's own")?;
        ns.ip(&["route", "add", "default", "dev", dev])?;
        Ok(())
    }

    /// Makes this host leave the neighbour requests for its addresses on `dev` unanswered
    /// until it asks for the requester's address itself: for IPv4 `arp_ignore = 8` (ip-sysctl:
    /// never reply to ARP requests); for IPv6, which has no such switch, an nftables rule in
    /// this namespace drops incoming neighbour solicitations (RFC 4861 §7.2.3; its own
    /// solicitations and the advertisements answering them still pass). A packet to this host
    /// then waits in the sender's neighbour queue until this host's own request teaches the
    /// sender its link address (RFC 826 / RFC 4861 §7.2.5: a request carries the requester's
    /// link address). An error for the machine's own host.
    pub fn ignore_neighbour_requests(&self, dev: &str) -> anyhow::Result<()> {
        let ns = self
            .ns
            .as_ref()
            .context("neighbour requests are ignored only in a namespace of the lab's own")?;
        match self.family() {
            Family::Ipv4 => ns.run(|| {
                std::fs::write("/proc/sys/net/ipv4/conf/all/arp_ignore", "8").and_then(|()| {
                    std::fs::write(format!("/proc/sys/net/ipv4/conf/{dev}/arp_ignore"), "8")
                })
            })??,
            Family::Ipv6 => {
                let rules = format!(
                    "table ip6 socklab {{\n chain input {{\n  type filter hook input priority 0;\n  \
                     iifname \"{dev}\" icmpv6 type nd-neighbor-solicit drop\n }}\n}}\n"
                );
                let out = ns
                    .command("nft")
                    .args(["-f", "-"])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .and_then(|mut child| {
                        use std::io::Write;
                        if let Some(mut stdin) = child.stdin.take() {
                            stdin.write_all(rules.as_bytes())?;
                        }
                        child.wait_with_output()
                    })
                    .context("run nft (nftables)")?;
                anyhow::ensure!(
                    out.status.success(),
                    "nft failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        Ok(())
    }

    /// Runs `f` inside this host: on a thread in its namespace, or here for the host.
    /// Sockets made by `f` belong to this host for their whole life.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        match &self.ns {
            Some(ns) => Ok(ns.run(f)?),
            None => Ok(f()),
        }
    }

    /// The protocol counters of this host.
    pub fn counters(&self) -> anyhow::Result<Snapshot> {
        Ok(self.run(Snapshot::read)??)
    }

    /// `ss -H ARGS…` in this host: one line per socket (ss(8), via sock_diag).
    pub fn ss(&self, args: &[&str]) -> anyhow::Result<Vec<String>> {
        let mut cmd = match &self.ns {
            Some(ns) => ns.command("ss"),
            None => Command::new("ss"),
        };
        let start = SystemTime::now();
        let out = cmd
            .arg("-H")
            .args(args)
            .output()
            .context("run ss (iproute2)")?;
        anyhow::ensure!(
            out.status.success(),
            "ss failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        self.lab
            .ss_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(SsSeen {
                span: Span::since(start),
                lines: lines.clone(),
            });
        Ok(lines)
    }

    /// Frames seen so far in this host, one line each but for link-layer chatter
    /// ([`is_link_chatter`](super::capture::is_link_chatter)); every frame is kept for the pcap.
    pub fn wire(&self) -> Vec<String> {
        let Some(c) = &self.capture else {
            return Vec::new();
        };
        let mut frames = c.drain();
        let name = self.ns.as_ref().map_or("", |n| n.name());
        for f in &mut frames {
            f.host = name.to_string();
        }
        // Link-layer chatter (ARP, IPv6 ND/MLD) stays in the pcap, out of the evidence.
        let lines = frames
            .iter()
            .filter(|f| !super::capture::is_link_chatter(f))
            .map(|f| c.describe(f))
            .collect();
        self.lab
            .frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(frames);
        lines
    }
}

impl Drop for Host<'_> {
    fn drop(&mut self) {
        // Keep what is still queued for the experiment's pcap.
        let _ = self.wire();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sock::{Proto, Sock};
    use crate::trace::Recorder;

    #[test]
    fn private_loopback_captures_and_counts() {
        let lab = Lab::new();
        if !lab.is_root() {
            eprintln!("skipped: needs root for a namespace and AF_PACKET");
            return;
        }
        let host = lab.loopback("unit-host").unwrap();
        let before = host.counters().unwrap();
        host.run(|| {
            let s = Sock::open(
                &"127.0.0.1:0".parse().unwrap(),
                Proto::Udp,
                &Recorder::off(),
            )
            .unwrap();
            // Nobody listens on port 9 in a fresh namespace: the kernel answers with ICMP.
            s.send_to(b"ping", "127.0.0.1:9".parse().unwrap()).unwrap();
        })
        .unwrap();
        let delta = before.delta(&host.counters().unwrap());
        assert_eq!(delta.get("Udp.NoPorts"), Some(&1), "{delta:?}");
        let wire = host.wire();
        assert!(
            wire.iter()
                .any(|l| l.starts_with("UDP 127.0.0.1:") && l.ends_with("> 127.0.0.1:9 len 4")),
            "{wire:?}"
        );
        assert!(
            wire.iter()
                .any(|l| l.contains("ICMP 127.0.0.1 > 127.0.0.1 type 3 code 3")),
            "{wire:?}"
        );
    }
}
