//! `socklab bench`: TCP and UDP measured side by side.
//!
//! - [`wire`]: the fixed data header of every bench datagram (Packet/Repr, literal-byte tests);
//! - [`protocol`]: the length-prefixed control messages between client and server;
//! - [`stats`]: receiver-side loss, duplicate, reordering (RFC 4737) and jitter (RFC 3550)
//!   accounting with 64-bit counters.

pub mod protocol;
pub mod stats;
pub mod wire;
