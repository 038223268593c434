//! Printing trace events: strace-like text, or JSON lines in the `{"type":"syscall","data":{…}}`
//! envelope. Both write whole lines to stderr so traces never mix with data on stdout.

use std::io::Write;

use super::{Event, Outcome, Sink};
use crate::os::errno;

/// Formats one event as strace-like text: `bind(3, 127.0.0.1:9000) = 0`, then an indented
/// `local …` / `peer …` line for each address the call changed.
pub fn text(event: &Event) -> String {
    // socket(2) has no fd argument: its fd is the result.
    let mut s = match event.call {
        "socket" => format!("socket({}", event.args),
        call if event.args.is_empty() => format!("{call}({}", event.fd),
        call => format!("{call}({}, {}", event.fd, event.args),
    };
    s.push_str(") = ");
    match &event.result {
        Outcome::Ok(v) => s.push_str(&v.to_string()),
        Outcome::Err { errno: e, name } => {
            s.push_str(&format!("-1 {name} ({})", errno::describe(*e)));
        }
    }
    if let Some(local) = event.local {
        s.push_str(&format!("\n    local {local}"));
    }
    if let Some(peer) = event.peer {
        s.push_str(&format!("\n    peer {peer}"));
    }
    s
}

/// Formats one event as a JSON line `{"type":"syscall","data":{"call":…,"fd":…,…}}`: the
/// call, its fd, its arguments as named fields, the same arguments as text (`args`), the
/// result and any changed addresses.
pub fn json(event: &Event) -> String {
    crate::jsonl::line("syscall", event)
}

/// A sink printing each event to stderr as text ([`text`]) or JSON ([`json`]).
pub struct StderrSink {
    json: bool,
}

impl StderrSink {
    /// A sink printing text lines, or JSON lines if `json`.
    pub fn new(json: bool) -> Self {
        Self { json }
    }
}

impl Sink for StderrSink {
    fn record(&self, event: &Event) {
        let line = if self.json { json(event) } else { text(event) };
        // Tracing must never abort the traced program: a closed stderr just loses the trace.
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}
