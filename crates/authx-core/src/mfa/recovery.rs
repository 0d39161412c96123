//! Recovery codes: ten single-use codes a user keeps on paper for when the authenticator is
//! lost.
//!
//! # Security
//! - Each code is 10 characters of RFC 4648 base32 (50 bits) from the OS CSPRNG, shown as
//!   `xxxxx-xxxxx`. Codes are shown once, when they are made, and never stored in the clear.
//! - Stored is `SHA-256(HMAC-SHA-256(recovery key, user id ‖ code))` ([`RecoveryKey`]), where the
//!   recovery key is derived from the key-encryption key. A fast keyed hash is enough here,
//!   unlike for passwords: the codes are random, not chosen, so there is no dictionary to try;
//!   online guessing meets the account throttle (2^50 codes, ten of them valid, against at
//!   most a hundred failures); and offline guessing from a copy of the database needs the
//!   key-encryption key, which also opens the TOTP secrets kept beside them, so it protects the
//!   codes no less than the factor they back up. The user id in the hash means a code is
//!   valid for its own account only, and equal hashes say nothing across accounts.
//!   (NIST 800-63B §5.1.2.1 asks look-up secrets under 112 bits for a salted key derivation
//!   function; the key stands in for its cost: without it, no guess can be checked at all.)
//! - Typed input is normalised (case, spaces, dashes and the look-alikes `0`→`O`, `1`→`I`,
//!   `8`→`B` that base32 leaves out) before hashing, so a code read aloud or retyped works.
//! - Using a code deletes its row in one statement, so of concurrent uses of one code one
//!   succeeds; regenerating replaces every code of the user in one transaction.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secret::{TokenHash, random_bytes};
use crate::user::UserId;

/// Codes in a set.
pub const COUNT: usize = 10;
/// Characters of a code (base32, five bits each: 50 bits).
pub const CODE_CHARS: usize = 10;

/// The key recovery codes are hashed under, derived from the key-encryption key.
pub struct RecoveryKey([u8; 32]);

impl RecoveryKey {
    /// Derives the key from the key-encryption key (HMAC-SHA-256 with a fixed label, so it is
    /// never the encryption key itself).
    #[must_use]
    pub fn derive(key_encryption_key: &[u8]) -> Self {
        let mut out = [0u8; 32];
        if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key_encryption_key) {
            mac.update(b"authx mfa recovery codes v1");
            out.copy_from_slice(&mac.finalize().into_bytes());
        }
        Self(out)
    }

    /// The stored form of `code` (already normalised) for `user`.
    fn hash(&self, user: &UserId, normalised: &str) -> TokenHash {
        let mut out = [0u8; 32];
        if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) {
            // Length-prefixed, so no (user, code) pair can collide with another.
            mac.update(&(user.0.len() as u64).to_be_bytes());
            mac.update(user.0.as_bytes());
            mac.update(normalised.as_bytes());
            out.copy_from_slice(&mac.finalize().into_bytes());
        }
        // Kept as a `TokenHash` (its SHA-256), the type every stored secret has.
        TokenHash::of(&out)
    }
}

impl std::fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryKey([redacted])")
    }
}

/// One recovery code as shown to its user (`xxxxx-xxxxx`). Redacted in `Debug`, not `Clone`.
pub struct RecoveryCode(String);

impl RecoveryCode {
    fn generate() -> Self {
        let bytes = random_bytes::<CODE_CHARS>();
        let chars: String = bytes
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
            .collect();
        Self(format!("{}-{}", &chars[..5], &chars[5..]))
    }

    /// The code to show, once.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryCode([redacted])")
    }
}

/// Lower-case RFC 4648 base32: easier to read back than upper case.
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A fresh set of codes: the codes to show and the hashes to store.
#[derive(Debug)]
pub struct RecoveryCodes {
    /// The codes, to show once.
    pub codes: Vec<RecoveryCode>,
    /// Their stored form.
    pub hashes: Vec<TokenHash>,
}

impl RecoveryCodes {
    /// [`COUNT`] new codes for `user`.
    #[must_use]
    pub fn generate(key: &RecoveryKey, user: &UserId) -> Self {
        let codes: Vec<RecoveryCode> = (0..COUNT).map(|_| RecoveryCode::generate()).collect();
        let hashes = codes
            .iter()
            .filter_map(|c| hash_typed(key, user, c.expose()))
            .collect();
        Self { codes, hashes }
    }
}

/// The stored form of a code as typed, or `None` when it cannot be a code (wrong length or
/// a character outside the alphabet after normalisation), so it is refused without a lookup.
#[must_use]
pub fn hash_typed(key: &RecoveryKey, user: &UserId, typed: &str) -> Option<TokenHash> {
    normalise(typed).map(|n| key.hash(user, &n))
}

/// The canonical form of a typed code: lower case, without spaces or dashes, with the digits
/// base32 lacks read as the letters they resemble. `None` unless 10 alphabet characters remain.
#[must_use]
pub fn normalise(typed: &str) -> Option<String> {
    if typed.len() > 64 {
        return None;
    }
    let mut out = String::with_capacity(CODE_CHARS);
    for c in typed.chars() {
        let c = match c.to_ascii_lowercase() {
            ' ' | '-' | '\t' => continue,
            '0' => 'o',
            '1' => 'i',
            '8' => 'b',
            c => c,
        };
        if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) {
            return None;
        }
        out.push(c);
    }
    (out.len() == CODE_CHARS).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn a_set_is_ten_distinct_codes_of_fifty_bits_stored_only_as_hashes() {
        let key = RecoveryKey::derive(&[7; 32]);
        let user = UserId::generate();
        let set = RecoveryCodes::generate(&key, &user);
        assert_eq!(set.codes.len(), COUNT);
        assert_eq!(set.hashes.len(), COUNT);
        let shown: HashSet<&str> = set.codes.iter().map(RecoveryCode::expose).collect();
        assert_eq!(shown.len(), COUNT);
        for (code, hash) in set.codes.iter().zip(&set.hashes) {
            let c = code.expose();
            assert_eq!(c.len(), 11);
            assert_eq!(&c[5..6], "-");
            assert_eq!(normalise(c).map(|n| n.len()), Some(CODE_CHARS));
            assert_eq!(hash_typed(&key, &user, c), Some(*hash));
            assert!(!hash.to_hex().contains(&c[..5]));
        }
        assert!(!format!("{set:?}").contains(set.codes[0].expose()));
    }

    #[test]
    fn typed_codes_are_normalised() {
        let key = RecoveryKey::derive(&[7; 32]);
        let user = UserId::generate();
        let want = hash_typed(&key, &user, "abcde-fghij");
        assert!(want.is_some());
        for typed in [
            "abcdefghij",
            "ABCDE-FGHIJ",
            " abcde fghij ",
            "ab-cd-ef-gh-ij",
            "abcde\tfghij",
        ] {
            assert_eq!(hash_typed(&key, &user, typed), want, "{typed:?}");
        }
        assert_eq!(normalise("0oi1b-82222").as_deref(), Some("ooiibb2222"));
        for bad in [
            "",
            "abcde",
            "abcde-fghijk",
            "abcde_fghij",
            "abcdé-fghij",
            "abcde-fgh9j",
        ] {
            assert_eq!(normalise(bad), None, "{bad:?}");
        }
        assert_eq!(normalise(&"a".repeat(100_000)), None);
    }

    #[test]
    fn a_code_is_bound_to_its_user_and_to_the_key() {
        let key = RecoveryKey::derive(&[7; 32]);
        let (ada, bob) = (UserId::generate(), UserId::generate());
        let code = "abcde-fghij";
        assert_ne!(hash_typed(&key, &ada, code), hash_typed(&key, &bob, code));
        let other = RecoveryKey::derive(&[8; 32]);
        assert_ne!(hash_typed(&key, &ada, code), hash_typed(&other, &ada, code));
    }
}
