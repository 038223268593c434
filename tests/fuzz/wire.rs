//! The bench data header, `socklab::bench::wire` (`Packet::new_checked`, `Repr::parse`,
//! `Repr::emit`): the first 24 bytes of every bench datagram, read from any peer.

use bolero::{TypeGenerator, check};
use socklab::bench::wire::{HEADER_LEN, MAGIC, Packet, Repr, VERSION, WireError, field};

use crate::CI_INPUTS;

/// Arbitrary bytes: `Packet::new_checked` never panics, accepts exactly the buffers of at least
/// [`HEADER_LEN`] bytes with the right magic and version (and refuses the others with the
/// reason that applies first), its accessors never panic, and emit(parse(bytes)) gives back
/// the header bytes (with the reserved flags byte as 0).
#[test]
fn fuzz_wire_header_bytes() {
    check!()
        .with_iterations(CI_INPUTS)
        .for_each(|bytes: &[u8]| {
            let want = if bytes.len() < HEADER_LEN {
                Err(WireError::Short(bytes.len()))
            } else if bytes[field::MAGIC] != MAGIC {
                Err(WireError::BadMagic)
            } else if bytes[field::VERSION] != VERSION {
                Err(WireError::BadVersion(bytes[field::VERSION]))
            } else {
                Ok(())
            };
            let packet = Packet::new_checked(bytes);
            assert_eq!(packet.as_ref().map(|_| ()), want.as_ref().map(|_| ()));
            let repr = Repr::parse(bytes);
            assert_eq!(repr.map(|_| ()), want);
            if let (Ok(p), Ok(r)) = (packet, repr) {
                assert_eq!(
                    (p.stream(), p.seq(), p.timestamp_ns()),
                    (r.stream, r.seq, r.timestamp_ns)
                );
                let mut out = [0xa5u8; HEADER_LEN];
                r.emit(&mut out).unwrap();
                let mut header = [0u8; HEADER_LEN];
                header.copy_from_slice(&bytes[..HEADER_LEN]);
                header[field::FLAGS] = 0;
                assert_eq!(out, header);
            }
        });
}

/// A header and the buffer it is written into.
#[derive(Debug, TypeGenerator)]
struct Emit {
    stream: u16,
    seq: u64,
    timestamp_ns: u64,
    buf_len: u8,
    fill: u8,
}

/// parse(emit(repr)) == repr for every header and buffer length: a buffer shorter than
/// [`HEADER_LEN`] is refused and left untouched, a longer one keeps its bytes past the header.
#[test]
fn fuzz_wire_repr_round_trip() {
    check!()
        .with_type::<Emit>()
        .with_iterations(CI_INPUTS)
        .for_each(|e| {
            let repr = Repr {
                stream: e.stream,
                seq: e.seq,
                timestamp_ns: e.timestamp_ns,
            };
            let mut buf = vec![e.fill; usize::from(e.buf_len % 64)];
            match repr.emit(&mut buf) {
                Ok(()) => {
                    assert!(buf.len() >= HEADER_LEN);
                    assert_eq!(Repr::parse(&buf), Ok(repr));
                    assert!(buf[HEADER_LEN..].iter().all(|&b| b == e.fill));
                }
                Err(err) => {
                    assert_eq!(err, WireError::Short(buf.len()));
                    assert!(buf.iter().all(|&b| b == e.fill));
                }
            }
        });
}
