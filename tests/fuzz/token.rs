//! The bench token handshake, `socklab::bench::protocol::{hmac_sha256, auth_tag, auth_ok}`: the
//! server sends a nonce, the client answers HMAC-SHA-256(token, nonce) in hex, the server
//! accepts the answer only if it is exactly that.

use bolero::{TypeGenerator, check};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use socklab::bench::protocol::{auth_ok, auth_tag, hmac_sha256};

use crate::CI_INPUTS;

/// hmac_sha256 agrees with the RustCrypto `hmac` crate (RFC 2104) for every key and message,
/// keys longer than the 64-byte block included.
#[test]
fn fuzz_token_hmac_matches_reference() {
    check!()
        .with_type::<(Vec<u8>, Vec<u8>)>()
        .with_iterations(CI_INPUTS)
        .for_each(|(key, msg)| {
            let mut reference = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
            reference.update(msg);
            let want: [u8; 32] = reference.finalize().into_bytes().into();
            assert_eq!(hmac_sha256(key, msg), want);
        });
}

/// What a client (or an attacker) answers the nonce with.
#[derive(Debug, TypeGenerator)]
enum Answer {
    /// The right tag.
    Right,
    /// Any text.
    Text(String),
    /// The right tag with one byte replaced.
    Flip(u8, u8),
    /// The right tag cut short.
    Cut(u8),
    /// The right tag with text after it.
    Append(String),
    /// The right tag in upper-case hex.
    Upper,
    /// The tag for another token.
    OtherToken(String),
    /// The tag for another nonce (a replayed answer).
    OtherNonce(String),
}

/// `auth_ok(token, nonce, answer)` is true for exactly one answer: the lower-case hex
/// HMAC-SHA-256 of the nonce under the token. A tag made with another token or nonce is refused
/// unless it is the same tag.
///
/// Tokens here contain no NUL byte: HMAC pads a short key with zeros (RFC 2104 section 2), so
/// `s3cret` and `s3cret\0` are the same key. socklab takes the token from the command line,
/// where a NUL cannot occur.
#[test]
fn fuzz_token_only_the_right_tag_passes() {
    check!()
        .with_type::<(String, String, Answer)>()
        .with_iterations(CI_INPUTS)
        .for_each(|(token, nonce, answer)| {
            let token = token.replace('\0', "");
            let right = auth_tag(&token, nonce);
            assert_eq!(right.len(), 64);
            assert!(
                right
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            let tag = match answer {
                Answer::Right => right.clone(),
                Answer::Text(t) => t.clone(),
                Answer::Flip(at, value) => {
                    let mut b = right.clone().into_bytes();
                    b[usize::from(*at) % 64] = *value;
                    String::from_utf8_lossy(&b).into_owned()
                }
                Answer::Cut(n) => right[..usize::from(*n) % 64].to_string(),
                Answer::Append(t) => format!("{right}{t}"),
                Answer::Upper => right.to_ascii_uppercase(),
                Answer::OtherToken(other) => {
                    let other = other.replace('\0', "");
                    let tag = auth_tag(&other, nonce);
                    assert_eq!(tag == right, other == token, "{other:?} vs {token:?}");
                    tag
                }
                Answer::OtherNonce(other) => {
                    let tag = auth_tag(&token, other);
                    assert_eq!(tag == right, other == nonce, "{other:?} vs {nonce:?}");
                    tag
                }
            };
            assert_eq!(auth_ok(&token, nonce, &tag), tag == right, "answer {tag:?}");
        });
}
