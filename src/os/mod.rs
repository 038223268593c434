//! Facts about the operating system that every layer above may read: errno names, descriptions
//! and hints ([`errno`], from errno(3) via `nix`), and the kernel's protocol counters
//! ([`counters`], from /proc/net/snmp, /proc/net/netstat and /proc/net/snmp6). This module sits at
//! the bottom of the layer map in `lib.rs`: it imports nothing from the crate.

pub mod counters;
pub mod errno;
