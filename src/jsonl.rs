//! The one JSON-lines envelope every `--json` output uses: `{"type": KIND, "data": {…}}`, one
//! object per line (as ripgrep's `--json`). `KIND` names what the line describes (`syscall`,
//! `datagram`, `summary` …); `data` holds its fields. docs/json.md lists every kind.
//!
//! A bottom-layer module: `trace`, `sock` users, the lab, the bench and the CLI all emit
//! through [`line()`], so the envelope is spelled in one place.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

/// One JSON-lines record: what it is (`type`) and its fields (`data`).
#[derive(Debug, Serialize)]
pub struct Envelope<'a, T: Serialize> {
    /// The kind of record, e.g. `syscall` or `summary`.
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// Its fields.
    pub data: T,
}

/// The envelope `{"type": kind, "data": data}` as one line of JSON (no newline).
///
/// ```
/// assert_eq!(
///     socklab::jsonl::line("summary", serde_json::json!({"bytes_sent": 5})),
///     r#"{"type":"summary","data":{"bytes_sent":5}}"#
/// );
/// ```
pub fn line(kind: &str, data: impl Serialize) -> String {
    // Serialising plain data (no maps with non-string keys, no failing Serialize impls) into
    // a String cannot fail; should a future type break that, the line says so.
    serde_json::to_string(&Envelope { kind, data })
        .unwrap_or_else(|e| format!(r#"{{"type":"error","data":{{"message":"{e}"}}}}"#))
}

/// A payload as JSON fields: `{"payload": "text"}` when the bytes are valid UTF-8, else
/// `{"payload_base64": "…"}` (RFC 4648 standard alphabet, with padding), so any bytes round-trip
/// exactly and text stays readable.
pub fn payload(bytes: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    match std::str::from_utf8(bytes) {
        Ok(text) => m.insert("payload".into(), text.into()),
        Err(_) => m.insert("payload_base64".into(), STANDARD.encode(bytes).into()),
    };
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_text_or_base64() {
        assert_eq!(payload(b"hi\n")["payload"], "hi\n");
        let bin = payload(b"hello\x00\xff\n");
        assert!(!bin.contains_key("payload"));
        assert_eq!(bin["payload_base64"], "aGVsbG8A/wo=");
    }
}
