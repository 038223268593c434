//! The data header every bench datagram (and the first write of every TCP data stream) starts
//! with, as a Packet/Repr pair in the style of smoltcp's `wire` module: byte ranges are named
//! once in [`field`], [`Packet::new_checked`] validates length, magic and version before any
//! accessor runs, and [`Repr`] is the parsed, plain form. All integers are big-endian.
//! [`send_all`] puts a whole buffer on a socket, for every bench module that writes one.
//!
//! ```text
//!  0      4   5   6       8               16              24
//!  +------+---+---+-------+---------------+---------------+
//!  | SLBD |ver|flg|stream |   sequence    |  send time ns |
//!  +------+---+---+-------+---------------+---------------+
//! ```

use crate::sock::Sock;

/// Byte ranges of the header fields.
pub mod field {
    use std::ops::Range;
    /// Magic bytes `SLBD` ("socklab bench data").
    pub const MAGIC: Range<usize> = 0..4;
    /// Header version.
    pub const VERSION: usize = 4;
    /// Flags (reserved, sent as 0, ignored on receipt).
    pub const FLAGS: usize = 5;
    /// Stream id within a test.
    pub const STREAM: Range<usize> = 6..8;
    /// 64-bit sequence number, 0 for the first datagram of a stream.
    pub const SEQ: Range<usize> = 8..16;
    /// Send time, nanoseconds on the sender's CLOCK_REALTIME, the clock of SO_TIMESTAMPNS
    /// (only differences of transit times are used, so the clocks' offset cancels).
    pub const TIMESTAMP: Range<usize> = 16..24;
}

/// The magic bytes.
pub const MAGIC: [u8; 4] = *b"SLBD";
/// The header version this code reads and writes.
pub const VERSION: u8 = 1;
/// Header length in bytes: the smallest payload a bench datagram can have.
pub const HEADER_LEN: usize = field::TIMESTAMP.end;

/// Why bytes are not a bench data header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than [`HEADER_LEN`].
    #[error("data header too short: {0} bytes, need {HEADER_LEN}")]
    Short(usize),
    /// The first four bytes are not `SLBD`.
    #[error("not a socklab bench datagram (bad magic)")]
    BadMagic,
    /// A header version this build does not know.
    #[error("data header version {0}, this socklab speaks {VERSION}")]
    BadVersion(u8),
}

/// A read-only view of a header at the start of a buffer.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` after checking its length, magic and version.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Short(b.len()));
        }
        if b[field::MAGIC] != MAGIC {
            return Err(WireError::BadMagic);
        }
        if b[field::VERSION] != VERSION {
            return Err(WireError::BadVersion(b[field::VERSION]));
        }
        Ok(Self { buffer })
    }

    fn u64_at(&self, r: std::ops::Range<usize>) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&self.buffer.as_ref()[r]);
        u64::from_be_bytes(a)
    }

    /// The stream id.
    pub fn stream(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::STREAM.start], b[field::STREAM.start + 1]])
    }

    /// The sequence number.
    pub fn seq(&self) -> u64 {
        self.u64_at(field::SEQ)
    }

    /// The send timestamp in nanoseconds.
    pub fn timestamp_ns(&self) -> u64 {
        self.u64_at(field::TIMESTAMP)
    }
}

/// A parsed data header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Repr {
    /// Stream id within the test.
    pub stream: u16,
    /// Sequence number.
    pub seq: u64,
    /// Send time in nanoseconds.
    pub timestamp_ns: u64,
}

impl Repr {
    /// Parses the header at the start of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let p = Packet::new_checked(bytes)?;
        Ok(Self {
            stream: p.stream(),
            seq: p.seq(),
            timestamp_ns: p.timestamp_ns(),
        })
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `buf`; a shorter buffer is an
    /// error, not a panic.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::Short(buf.len()));
        }
        buf[field::MAGIC].copy_from_slice(&MAGIC);
        buf[field::VERSION] = VERSION;
        buf[field::FLAGS] = 0;
        buf[field::STREAM].copy_from_slice(&self.stream.to_be_bytes());
        buf[field::SEQ].copy_from_slice(&self.seq.to_be_bytes());
        buf[field::TIMESTAMP].copy_from_slice(&self.timestamp_ns.to_be_bytes());
        Ok(())
    }
}

/// Sends all of `buf` (retrying short writes and EAGAIN); false if the connection failed.
pub fn send_all(sock: &Sock, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        match sock.send(buf) {
            Ok(k) => buf = &buf[k..],
            Err(e) if matches!(e.errno(), Some(libc::EAGAIN | libc::EINTR)) => {
                std::hint::spin_loop()
            }
            Err(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: [u8; 24] = [
        b'S', b'L', b'B', b'D', 1, 0, 0x01, 0x02, // magic, version, flags, stream 0x0102
        0, 0, 0, 0, 0, 0, 0x30, 0x39, // seq 12345
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, // timestamp u64::MAX - 1
    ];

    #[test]
    fn parses_literal_bytes() {
        let r = Repr::parse(&GOOD).unwrap();
        assert_eq!(
            r,
            Repr {
                stream: 0x0102,
                seq: 12345,
                timestamp_ns: u64::MAX - 1
            }
        );
        // Trailing payload is not part of the header.
        let mut long = GOOD.to_vec();
        long.extend_from_slice(&[0xaa; 40]);
        assert_eq!(Repr::parse(&long).unwrap(), r);
    }

    #[test]
    fn emits_literal_bytes() {
        let mut buf = [0x55u8; 30];
        Repr {
            stream: 0x0102,
            seq: 12345,
            timestamp_ns: u64::MAX - 1,
        }
        .emit(&mut buf)
        .unwrap();
        assert_eq!(buf[..24], GOOD);
        assert_eq!(buf[24..], [0x55; 6], "payload after the header untouched");
    }

    #[test]
    fn flags_are_ignored() {
        let mut b = GOOD;
        b[field::FLAGS] = 0x80;
        assert_eq!(Repr::parse(&b).unwrap().seq, 12345);
    }

    #[test]
    fn malformed() {
        assert_eq!(Repr::parse(&[]), Err(WireError::Short(0)));
        assert_eq!(Repr::parse(&GOOD[..23]), Err(WireError::Short(23)));
        let mut b = GOOD;
        b[0] = b'X';
        assert_eq!(Repr::parse(&b), Err(WireError::BadMagic));
        let mut b = GOOD;
        b[field::VERSION] = 2;
        assert_eq!(Repr::parse(&b), Err(WireError::BadVersion(2)));
        let mut b = GOOD;
        b[field::VERSION] = 0;
        assert_eq!(Repr::parse(&b), Err(WireError::BadVersion(0)));
        let mut short = [0u8; 10];
        assert_eq!(Repr::default().emit(&mut short), Err(WireError::Short(10)));
    }
}
