//! Secret values: generated from the OS CSPRNG, stored only as SHA-256 hashes, compared in
//! constant time, and never printed (`Debug` shows `[redacted]`; there is no `Display`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::TryRngCore as _;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Fills `N` bytes from the operating system's CSPRNG.
///
/// # Panics
/// Only if the operating system cannot provide randomness, where no secret can be made safely.
#[must_use]
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    rand::RngCore::fill_bytes(&mut OsRng.unwrap_err(), &mut buf);
    buf
}

/// A random public identifier (not a secret): `bytes` random bytes, base64url without padding.
#[must_use]
pub fn random_id() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<16>())
}

/// A random public identifier like [`random_id`], from this thread's CSPRNG (ChaCha, seeded
/// from the operating system) instead of a system call per id: for identifiers made on every
/// request (request ids), which must be unique and unguessable but guard nothing.
#[must_use]
pub fn request_id() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
}

/// Constant-time equality of two byte strings (the length is not hidden).
#[must_use]
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Base64url without padding, the encoding of every token authx issues.
#[must_use]
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A 32-byte key for one purpose (`label`), derived from a deployment secret with
/// HMAC-SHA-256, so keys for different purposes never coincide.
#[must_use]
pub fn derive_key(secret: &[u8], label: &[u8]) -> [u8; 32] {
    hmac_bytes(secret, label)
}

/// HMAC-SHA-256 of `msg` under `key` (all zeros for a key HMAC refuses, which it never does).
pub(crate) fn hmac_bytes(key: &[u8], msg: &[u8]) -> [u8; 32] {
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(msg);
            mac.finalize().into_bytes().into()
        }
        Err(_) => [0; 32],
    }
}

/// SHA-256 of a secret value: the only form in which authx stores a token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Hashes raw secret bytes.
    #[must_use]
    pub fn of(secret: &[u8]) -> Self {
        Self(Sha256::digest(secret).into())
    }

    /// Lower-case hex, the storage form.
    #[must_use]
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        s
    }

    /// Parses the storage form.
    #[must_use]
    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = hex_val(pair[0])?;
            let lo = hex_val(pair[1])?;
            out[i] = (hi << 4) | lo;
        }
        Some(Self(out))
    }

    /// The raw digest.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time comparison.
    #[must_use]
    pub fn ct_eq(&self, other: &Self) -> bool {
        ct_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A prefix is enough to correlate log lines and reveals nothing usable.
        write!(f, "TokenHash({}…)", &self.to_hex()[..8])
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Defines a 32-byte opaque bearer secret: generated from the OS CSPRNG, carried as 43
/// base64url characters, hashed with SHA-256 for storage, redacted in `Debug`, not `Clone`.
macro_rules! opaque_secret {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        pub struct $name(String);

        impl $name {
            /// A fresh value of 256 random bits.
            #[must_use]
            pub fn generate() -> Self {
                Self($crate::secret::b64url(&$crate::secret::random_bytes::<32>()))
            }

            /// Accepts exactly the shape authx issues (43 base64url characters that decode to
            /// 32 bytes); anything else is `None`, so hostile input never reaches a lookup.
            #[must_use]
            pub fn parse(raw: &str) -> Option<Self> {
                if raw.len() != 43 {
                    return None;
                }
                let decoded = ::base64::Engine::decode(&::base64::engine::general_purpose::URL_SAFE_NO_PAD, raw.as_bytes()).ok()?;
                (decoded.len() == 32).then(|| Self(raw.to_owned()))
            }

            /// The value to hand to the client, once.
            #[must_use]
            pub fn expose(&self) -> &str {
                &self.0
            }

            /// SHA-256 of the value, the only form that is stored.
            #[must_use]
            pub fn hash(&self) -> $crate::secret::TokenHash {
                $crate::secret::TokenHash::of(self.0.as_bytes())
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

pub(crate) use opaque_secret;

opaque_secret!(
    /// The browser session token sent as the `authx_session` cookie (32 random bytes).
    SessionToken
);

opaque_secret!(
    /// The pre-session token behind the CSRF cookie of the sign-in form.
    PreSessionToken
);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn tokens_are_43_chars_unique_and_parse_back() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let t = SessionToken::generate();
            assert_eq!(t.expose().len(), 43);
            assert!(seen.insert(t.expose().to_owned()));
            assert_eq!(
                SessionToken::parse(t.expose()).map(|p| p.hash()),
                Some(t.hash())
            );
        }
    }

    #[test]
    fn parse_refuses_every_other_shape() {
        let good = SessionToken::generate();
        for bad in [
            "",
            "short",
            &"A".repeat(10_000),
            &format!("{}=", &good.expose()[..42]),
            &format!("{}\0", &good.expose()[..42]),
            &format!("{}+", &good.expose()[..42]),
            &good.hash().to_hex(),
        ] {
            assert!(SessionToken::parse(bad).is_none(), "accepted {bad:?}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let t = SessionToken::generate();
        assert!(!format!("{t:?}").contains(t.expose()));
        assert!(!format!("{:?}", t.hash()).contains(&t.hash().to_hex()));
    }

    #[test]
    fn hex_round_trip() {
        let h = TokenHash::of(b"x");
        assert_eq!(TokenHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(TokenHash::from_hex("zz"), None);
        assert_eq!(TokenHash::from_hex(&"G".repeat(64)), None);
    }
}
