//! `--show` and `--json` output for received data: one line per receive call, so a user sees
//! datagram boundaries, truncation (with the real length) and zero-length datagrams, or how a
//! TCP stream was cut into reads.

use std::io::{self, Write};

use socklab::jsonl;
use socklab::sock::Datagram;

/// Formats receive calls as text or JSON lines.
pub(crate) struct Shower {
    json: bool,
}

impl Shower {
    pub(crate) fn new(json: bool) -> Self {
        Self { json }
    }

    /// One TCP read of `data` (empty: the peer closed).
    pub(crate) fn stream_read(&self, out: &mut impl Write, data: &[u8]) -> io::Result<()> {
        if self.json {
            let mut v = serde_json::json!({"len": data.len(), "eof": data.is_empty()});
            if let Some(o) = v.as_object_mut() {
                o.extend(jsonl::payload(data));
            }
            writeln!(out, "{}", jsonl::line("read", v))
        } else if data.is_empty() {
            writeln!(
                out,
                "recv 0 bytes: end of stream (the peer closed its side)"
            )
        } else {
            writeln!(out, "recv {} bytes: \"{}\"", data.len(), escape(data))
        }
    }

    /// One datagram, whose first `d.len` bytes are in `payload`.
    pub(crate) fn datagram(
        &self,
        out: &mut impl Write,
        d: &Datagram,
        payload: &[u8],
    ) -> io::Result<()> {
        if self.json {
            let mut v = serde_json::json!({
                "from": d.from, "to": d.to, "len": d.len, "real_len": d.real_len,
                "truncated": d.truncated, "flags": d.flags});
            if let Some(o) = v.as_object_mut() {
                o.extend(jsonl::payload(payload));
            }
            return writeln!(out, "{}", jsonl::line("datagram", v));
        }
        let from = d.from.map_or("?".to_string(), |a| a.to_string());
        write!(out, "from {from} len {}", d.len)?;
        if let Some(to) = d.to {
            write!(out, " to {to}")?;
        }
        if d.truncated {
            write!(
                out,
                " TRUNCATED real_len {} ({} bytes discarded)",
                d.real_len,
                d.real_len - d.len
            )?;
        }
        if d.real_len == 0 {
            writeln!(out, ": empty datagram (not an end of file)")
        } else {
            writeln!(out, ": \"{}\"", escape(payload))
        }
    }
}

/// Bytes as printable ASCII with escapes (`\n`, `\x00`), like Rust's `escape_ascii`.
fn escape(data: &[u8]) -> String {
    data.escape_ascii().to_string()
}
