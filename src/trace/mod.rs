//! The syscall recorder: every step of [`crate::sock`] hands one [`Event`] to a [`Sink`], then
//! goes on. With no sink attached ([`Recorder::off`]) nothing is formatted or allocated, so the
//! bench's hot loops use the same steps at no cost.
//!
//! An event carries the call with its arguments, the result or errno, and the socket's local
//! (getsockname(2)) and peer (getpeername(2)) addresses when the call changed them.

pub mod render;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

/// What a traced call returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The call succeeded with this return value (a byte count, an fd, or 0).
    Ok(i64),
    /// The call failed with this errno.
    Err {
        /// The raw errno value.
        errno: i32,
        /// Its symbolic name, e.g. `EADDRINUSE`.
        name: String,
    },
}

/// One socket call as it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// The syscall's name: `socket`, `bind`, `sendto`, `setsockopt` …
    pub call: &'static str,
    /// The file descriptor the call was made on (for `socket`, the one it returned, or -1).
    pub fd: i32,
    /// Its arguments as named values (`len`, `to`, `addr`, `option` …), for JSON; see
    /// docs/json.md for the names each call uses.
    #[serde(flatten)]
    pub fields: Fields,
    /// Its arguments as text, e.g. `127.0.0.1:9000` or `SOL_SOCKET, SO_RCVBUF, 65536`.
    pub args: String,
    /// The result or errno.
    pub result: Outcome,
    /// The local address after the call, present only when the call changed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<SocketAddr>,
    /// The peer address after the call, present only when the call changed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<SocketAddr>,
    /// When the call ran, on the wall clock, so that calls, captured packets and `ss`
    /// observations share one time axis (the lab's packet ladders); `None` when not measured.
    /// Left out of the JSON, whose lines stay the same from run to run.
    #[serde(skip)]
    pub span: Option<Span>,
}

/// When something ran: wall-clock times (CLOCK_REALTIME, the clock of the kernel's
/// SO_TIMESTAMPNS on captured frames) at its start and at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Just before the call was made.
    pub start: SystemTime,
    /// Just after it returned.
    pub end: SystemTime,
}

impl Span {
    /// From `start` until now.
    pub fn since(start: SystemTime) -> Self {
        Self {
            start,
            end: SystemTime::now(),
        }
    }

    /// An instant: starting and ending now.
    pub fn now() -> Self {
        Self::since(SystemTime::now())
    }
}

impl Event {
    /// The errno name if the call failed.
    pub fn errno_name(&self) -> Option<&str> {
        match &self.result {
            Outcome::Ok(_) => None,
            Outcome::Err { name, .. } => Some(name),
        }
    }
}

/// A call's arguments as named JSON values, in call order.
pub type Fields = serde_json::Map<String, serde_json::Value>;

/// A call's arguments, both ways: the text of the strace-like line and the named fields of
/// the JSON record. A plain `String` converts into text without fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args {
    /// As text, e.g. `5 bytes, 127.0.0.1:9001`.
    pub text: String,
    /// As named values, e.g. `{"len": 5, "to": "127.0.0.1:9001"}`.
    pub fields: Fields,
}

impl Args {
    /// Arguments shown as `text`, with no fields yet.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            fields: Fields::new(),
        }
    }

    /// Adds the field `name` (a socket address becomes its text, `127.0.0.1:9001`).
    pub fn field(mut self, name: &str, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        self.fields.insert(name.to_string(), value);
        self
    }
}

impl From<String> for Args {
    fn from(text: String) -> Self {
        Self::new(text)
    }
}

/// Where events go.
pub trait Sink: Send + Sync {
    /// Receives one event, in call order.
    fn record(&self, event: &Event);
}

/// The handle every socket step holds; cheap to clone.
#[derive(Clone, Default)]
pub struct Recorder {
    sink: Option<Arc<dyn Sink>>,
}

impl Recorder {
    /// A recorder that records nothing and costs nothing.
    pub fn off() -> Self {
        Self { sink: None }
    }

    /// A recorder that hands every event to `sink`.
    pub fn new(sink: Arc<dyn Sink>) -> Self {
        Self { sink: Some(sink) }
    }

    /// Whether a sink is attached.
    pub fn is_on(&self) -> bool {
        self.sink.is_some()
    }

    /// Builds the event with `make` and hands it to the sink, only if one is attached.
    pub fn record(&self, make: impl FnOnce() -> Event) {
        if let Some(sink) = &self.sink {
            sink.record(&make());
        }
    }
}

/// A sink that keeps every event in memory, for the lab and for tests.
#[derive(Default)]
pub struct Collector {
    events: Mutex<Vec<Event>>,
}

impl Collector {
    /// A new, empty collector, ready to be shared with a [`Recorder`].
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A copy of the events recorded so far.
    pub fn events(&self) -> Vec<Event> {
        self.lock().clone()
    }

    /// Takes the events recorded so far, leaving the collector empty.
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Event>> {
        // A panic while holding this lock cannot leave the Vec half-written; keep going.
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Sink for Collector {
    fn record(&self, event: &Event) {
        self.lock().push(event.clone());
    }
}
