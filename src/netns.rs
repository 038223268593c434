//! Network namespaces for experiments and tests: private loopbacks and "hosts" joined by veth
//! pairs with TEST-NET addresses, so nothing reaches a real network and kernel counters move
//! only because of what runs inside.
//!
//! Namespaces are made and removed with iproute2 (`ip netns add/del`, ip-netns(8)); code runs
//! inside one on a dedicated thread that enters it with setns(2), so the calling thread never
//! changes namespace. A socket created inside stays in that namespace wherever it is used.
//! Every namespace is deleted on Drop; names carry the creating pid, so [`sweep_stale`] can
//! remove what a killed run left behind.

use std::fs::File;
use std::io;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sched::{CloneFlags, setns};

const PREFIX: &str = "socklab-";

/// Whether this process may create namespaces and interfaces (effective uid 0).
pub fn have_net_admin() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A network namespace that exists until this value is dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// `ip netns add socklab-<tag>-<pid>-<n>`, then brings its loopback up.
    pub fn create(tag: &str) -> io::Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{tag}-{}-{n}", std::process::id());
        run_ip(&["netns", "add", &name])?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        ns.enable_ipv6()?;
        Ok(ns)
    }

    /// Makes sure IPv6 is on in the namespace (`net.ipv6.conf.{all,default}.disable_ipv6 = 0`,
    /// ip-sysctl): a new namespace copies `default` from the machine, which may have IPv6 off;
    /// interfaces added later take `default`. A kernel without IPv6 has no such files: left
    /// as it is.
    pub fn enable_ipv6(&self) -> io::Result<()> {
        self.run(|| {
            for conf in ["all", "default", "lo"] {
                let path = format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6");
                match std::fs::write(&path, "0") {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    r => r?,
                }
            }
            Ok(())
        })?
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <name> ARGS…`.
    pub fn ip(&self, args: &[&str]) -> io::Result<String> {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run_ip(&full)
    }

    /// `ip addr add CIDR dev DEV`; an IPv6 address with `nodad`, so that it is usable at once
    /// instead of "tentative" until duplicate address detection ends (RFC 4862 §5.4).
    pub fn add_addr(&self, cidr: &str, dev: &str) -> io::Result<String> {
        let mut args = vec!["addr", "add", cidr, "dev", dev];
        if cidr.contains(':') {
            args.push("nodad");
        }
        self.ip(&args)
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `f` on a new thread that has entered this namespace (setns(2)), and returns its
    /// result. Sockets `f` creates belong to the namespace for their whole life.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        let file = File::open(format!("/run/netns/{}", self.name))?;
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    setns(&file, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                    Ok(f())
                })
                .join()
                .map_err(|_| io::Error::other("the thread inside the namespace panicked"))?
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace also deletes the veth ends inside it, and their peers.
        let _ = run_ip(&["netns", "del", &self.name]);
    }
}

/// Joins `a` and `b` with a veth pair: interface `a_if` in `a` with address `a_cidr`
/// (e.g. `198.51.100.1/24`), `b_if` in `b` with `b_cidr`, both up.
pub fn veth(
    a: &Netns,
    a_if: &str,
    a_cidr: &str,
    b: &Netns,
    b_if: &str,
    b_cidr: &str,
) -> io::Result<()> {
    a.ip(&[
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])?;
    for (ns, ifname, cidr) in [(a, a_if, a_cidr), (b, b_if, b_cidr)] {
        ns.add_addr(cidr, ifname)?;
        ns.ip(&["link", "set", ifname, "up"])?;
    }
    for (ns, ifname) in [(a, a_if), (b, b_if)] {
        wait_operational(ns, ifname)?;
    }
    Ok(())
}

/// Waits (at most 2 s) until `ifname` in `ns` is operationally up (`state UP` in
/// `ip link show`). A veth end set up is not ready to send at once: the kernel attaches its
/// transmit queue from deferred link-watch work once the carrier is seen, and drops what is
/// sent before (seen as a lab experiment's first broadcasts never leaving under load).
fn wait_operational(ns: &Netns, ifname: &str) -> io::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        if ns
            .ip(&["-o", "link", "show", "dev", ifname])?
            .contains("state UP")
        {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{ifname} in {} not operationally up after 2 s", ns.name()),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Two namespaces `<tag>-a` and `<tag>-b` joined by a veth pair: `veth-a` in `a` with
/// 198.51.100.1/24 and 2001:db8::1/64, `veth-b` in `b` with 198.51.100.2/24 and
/// 2001:db8::2/64 (TEST-NET-2, RFC 5737; documentation prefix, RFC 3849), all up.
pub fn pair(tag: &str) -> io::Result<(Netns, Netns)> {
    let a = Netns::create(&format!("{tag}-a"))?;
    let b = Netns::create(&format!("{tag}-b"))?;
    veth(
        &a,
        "veth-a",
        "198.51.100.1/24",
        &b,
        "veth-b",
        "198.51.100.2/24",
    )?;
    a.add_addr("2001:db8::1/64", "veth-a")?;
    b.add_addr("2001:db8::2/64", "veth-b")?;
    Ok((a, b))
}

/// Deletes namespaces named by this module whose creating process no longer exists.
pub fn sweep_stale() {
    let Ok(list) = run_ip(&["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.rsplit('-').nth(1).and_then(|p| p.parse::<i32>().ok());
        if let Some(pid) = pid {
            let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
            if !alive {
                let _ = run_ip(&["netns", "del", name]);
            }
        }
    }
}

/// Names of the namespaces this module created and that still exist (all processes).
pub fn existing() -> Vec<String> {
    run_ip(&["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(PREFIX))
        .map(str::to_string)
        .collect()
}

fn run_ip(args: &[&str]) -> io::Result<String> {
    let out: Output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run ip (iproute2): {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sock::{Proto, Sock};
    use crate::trace::Recorder;

    #[test]
    fn two_hosts_talk_over_veth_and_vanish() {
        if !have_net_admin() {
            eprintln!("skipped: needs root (CAP_NET_ADMIN) to create namespaces");
            return;
        }
        let a = Netns::create("unit-a").unwrap();
        let b = Netns::create("unit-b").unwrap();
        veth(&a, "va", "198.51.100.1/24", &b, "vb", "198.51.100.2/24").unwrap();
        let rx = b
            .run(|| {
                let s = Sock::open(&"0.0.0.0:0".parse().unwrap(), Proto::Udp, &Recorder::off())
                    .unwrap();
                s.bind("198.51.100.2:7000".parse().unwrap()).unwrap();
                s
            })
            .unwrap();
        a.run(|| {
            let s =
                Sock::open(&"0.0.0.0:0".parse().unwrap(), Proto::Udp, &Recorder::off()).unwrap();
            s.send_to(b"over veth", "198.51.100.2:7000".parse().unwrap())
                .unwrap();
        })
        .unwrap();
        let mut buf = [0u8; 64];
        let d = rx.recv_datagram(&mut buf, 0).unwrap();
        assert_eq!(&buf[..d.len], b"over veth");
        assert_eq!(d.from.unwrap().ip().to_string(), "198.51.100.1");
        let names = [a.name().to_string(), b.name().to_string()];
        drop((a, b));
        let left = existing();
        assert!(
            names.iter().all(|n| !left.contains(n)),
            "left behind: {left:?}"
        );
    }
}
