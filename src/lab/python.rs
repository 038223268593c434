//! The lab for Python readers: the experiments as runnable Python 3 scripts, and each errno the
//! lab shows named as the exception Python raises for it.
//!
//! The scripts live beside this file in `python/` (one `cNN_*.py` per experiment, the shared
//! helper `_socklab_lab.py`, and `run_all.py` that runs them all into one document), embedded
//! here with `include_str!` so that `socklab lab export --python DIR` can write them out. Each
//! makes the same socket calls as its experiment (standard library only) and prints the same
//! facts, in the lab's JSON schema (docs/lab.md, "Python reproductions"); the integration test
//! `lab_python` runs every one and compares it with the lab fact for fact.
//!
//! The exception names follow PEP 3151 ("Reworking the OS and IO exception hierarchy"): an
//! `OSError` built from an errno becomes the subclass mapped to that errno, and every other
//! errno stays a plain `OSError`.

use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::Evidence;
use crate::os::errno;

/// One file written by `socklab lab export --python`.
#[derive(Debug, Clone, Copy)]
pub struct Script {
    /// Its file name.
    pub name: &'static str,
    /// The claim it reproduces (`None` for the shared helper and `run_all.py`).
    pub claim: Option<u8>,
    /// Its text.
    pub text: &'static str,
}

/// Every file of the export: the helper module, `run_all.py`, then one script per experiment,
/// in claim order.
pub const SCRIPTS: &[Script] = &[
    Script {
        name: "_socklab_lab.py",
        claim: None,
        text: include_str!("python/_socklab_lab.py"),
    },
    Script {
        name: "run_all.py",
        claim: None,
        text: include_str!("python/run_all.py"),
    },
    Script {
        name: "c01_tcp_one_pattern.py",
        claim: Some(1),
        text: include_str!("python/c01_tcp_one_pattern.py"),
    },
    Script {
        name: "c02_udp_three_patterns.py",
        claim: Some(2),
        text: include_str!("python/c02_udp_three_patterns.py"),
    },
    Script {
        name: "c03_source_address_choice.py",
        claim: Some(3),
        text: include_str!("python/c03_source_address_choice.py"),
    },
    Script {
        name: "c04_udp_connect_sends_nothing.py",
        claim: Some(4),
        text: include_str!("python/c04_udp_connect_sends_nothing.py"),
    },
    Script {
        name: "c05_receiver_first.py",
        claim: Some(5),
        text: include_str!("python/c05_receiver_first.py"),
    },
    Script {
        name: "c06_bind_before_send.py",
        claim: Some(6),
        text: include_str!("python/c06_bind_before_send.py"),
    },
    Script {
        name: "c07_broadcast_permission.py",
        claim: Some(7),
        text: include_str!("python/c07_broadcast_permission.py"),
    },
    Script {
        name: "c08_broadcast_reception.py",
        claim: Some(8),
        text: include_str!("python/c08_broadcast_reception.py"),
    },
    Script {
        name: "c09_stream_vs_datagram.py",
        claim: Some(9),
        text: include_str!("python/c09_stream_vs_datagram.py"),
    },
    Script {
        name: "c10_buffer_bookkeeping.py",
        claim: Some(10),
        text: include_str!("python/c10_buffer_bookkeeping.py"),
    },
    Script {
        name: "c11_full_buffer.py",
        claim: Some(11),
        text: include_str!("python/c11_full_buffer.py"),
    },
    Script {
        name: "c12_recv_zero.py",
        claim: Some(12),
        text: include_str!("python/c12_recv_zero.py"),
    },
    Script {
        name: "c13_time_wait.py",
        claim: Some(13),
        text: include_str!("python/c13_time_wait.py"),
    },
    Script {
        name: "c14_kill9.py",
        claim: Some(14),
        text: include_str!("python/c14_kill9.py"),
    },
];

/// Writes every script into `dir` (which must exist), executable where the OS has modes.
/// Returns the paths written, in [`SCRIPTS`] order.
pub fn export(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for s in SCRIPTS {
        let path = dir.join(s.name);
        std::fs::write(&path, s.text)?;
        #[cfg(unix)]
        if s.name != "_socklab_lab.py" {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        written.push(path);
    }
    Ok(written)
}

/// The errno value named `name` (`EINVAL`), if this OS knows it.
fn errno_named(name: &str) -> Option<Errno> {
    (1..4096)
        .map(Errno::from_raw)
        .find(|e| *e != Errno::UnknownErrno && errno::name(*e as i32) == name)
}

/// The Python exception class raised for `e`: PEP 3151's table, `OSError` for the rest.
fn exception_class(e: Errno) -> &'static str {
    match e {
        Errno::EAGAIN | Errno::EALREADY | Errno::EINPROGRESS => "BlockingIOError",
        Errno::ECHILD => "ChildProcessError",
        Errno::EPIPE | Errno::ESHUTDOWN => "BrokenPipeError",
        Errno::ECONNABORTED => "ConnectionAbortedError",
        Errno::ECONNREFUSED => "ConnectionRefusedError",
        Errno::ECONNRESET => "ConnectionResetError",
        Errno::EEXIST => "FileExistsError",
        Errno::ENOENT => "FileNotFoundError",
        Errno::EINTR => "InterruptedError",
        Errno::EISDIR => "IsADirectoryError",
        Errno::ENOTDIR => "NotADirectoryError",
        Errno::EACCES | Errno::EPERM => "PermissionError",
        Errno::ESRCH => "ProcessLookupError",
        Errno::ETIMEDOUT => "TimeoutError",
        _ => "OSError",
    }
}

/// How Python reports the errno named `name`, as its traceback's last line prints it:
/// `ConnectionRefusedError: [Errno 111] Connection refused` (the number and the C library's
/// strerror text of this OS). `None` for a name that is not an errno of this OS.
pub fn exception(name: &str) -> Option<String> {
    let e = errno_named(name)?;
    let text = io::Error::from_raw_os_error(e as i32).to_string();
    // std appends " (os error N)" to strerror's text; Python prints strerror alone.
    let text = text
        .strip_suffix(&format!(" (os error {})", e as i32))
        .unwrap_or(&text);
    Some(format!(
        "{}: [Errno {}] {text}",
        exception_class(e),
        e as i32
    ))
}

/// Where Python's own socket layer makes the same kernel behaviour look different from the raw
/// call the lab makes, keyed by what the lab shows (an errno name, or the `eof` of a read).
const DIFFERENCES: &[(&str, &str)] = &[
    (
        "EAGAIN",
        "with settimeout(t) Python makes the socket non-blocking and polls itself, so a receive that waits past t raises TimeoutError (socket.timeout), not BlockingIOError; the lab's scripts set SO_RCVTIMEO instead, like the lab",
    ),
    (
        "EPIPE",
        "Python ignores SIGPIPE at start-up, so a send on a closed connection raises BrokenPipeError instead of killing the process; sendall() loops over send() and raises without saying how much went out",
    ),
    (
        "ECONNRESET",
        "recv() raises ConnectionResetError where the raw call returns -1; a recv() on a socket Python already closed raises OSError: [Errno 9] Bad file descriptor",
    ),
    (
        "eof",
        "recv() returning 0 is b'' in Python (no exception); for UDP an empty datagram is b'' too",
    ),
];

/// The errno names (and `eof`) in `ev`'s trace and facts, in first-seen order, each once.
fn names_in(ev: &Evidence) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut add = |w: &str| {
        let known = w == "eof" || (w.starts_with('E') && errno_named(w).is_some());
        if known && !seen.iter().any(|s| s == w) {
            seen.push(w.to_string());
        }
    };
    for e in &ev.trace {
        if let Some(n) = e.errno_name() {
            add(n);
        }
    }
    let facts = serde_json::to_string(&ev.facts).unwrap_or_default();
    for w in facts.split(|c: char| !c.is_ascii_alphanumeric()) {
        add(w);
    }
    seen
}

/// For `lab show`: one line per errno in `ev` naming the Python exception beside it, then the
/// notes where Python's behaviour differs from the raw call (empty when `ev` shows no errno).
pub fn lines(ev: &Evidence) -> Vec<String> {
    let names = names_in(ev);
    let mut out: Vec<String> = names
        .iter()
        .filter_map(|n| exception(n).map(|x| format!("{n} → {x}")))
        .collect();
    out.extend(
        DIFFERENCES
            .iter()
            .filter(|(k, _)| names.iter().any(|n| n == k))
            .map(|(k, note)| format!("note ({k}): {note}")),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pep_3151_names() {
        assert_eq!(
            exception("ECONNREFUSED").as_deref(),
            Some("ConnectionRefusedError: [Errno 111] Connection refused")
        );
        assert_eq!(
            exception("EINVAL").as_deref(),
            Some("OSError: [Errno 22] Invalid argument")
        );
        assert_eq!(
            exception("EADDRINUSE").as_deref(),
            Some("OSError: [Errno 98] Address already in use")
        );
        assert!(
            exception("EAGAIN")
                .unwrap()
                .starts_with("BlockingIOError: [Errno 11]")
        );
        assert_eq!(exception("ENOTANERRNO"), None);
    }

    #[test]
    fn lines_name_errnos_in_facts_once() {
        let mut ev = Evidence::default();
        ev.fact("rebinds", ["bind 1 → EINVAL", "bind 2 → EINVAL"])
            .fact("read", "eof")
            .fact("ESTAB", "not an errno");
        let l = lines(&ev);
        assert_eq!(l[0], "EINVAL → OSError: [Errno 22] Invalid argument");
        assert!(l[1].starts_with("note (eof)"), "{l:?}");
        assert_eq!(l.len(), 2, "{l:?}");
    }

    #[test]
    fn every_script_is_exported() {
        let dir = std::env::temp_dir().join(format!("socklab-py-export-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let written = export(&dir).unwrap();
        assert_eq!(written.len(), SCRIPTS.len());
        for (p, s) in written.iter().zip(SCRIPTS) {
            assert_eq!(std::fs::read_to_string(p).unwrap(), s.text);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
