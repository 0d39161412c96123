//! PKCE (RFC 7636) with S256 only (RFC 9700 §2.1.1).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::secret::ct_eq;

/// Whether `challenge` has the only shape an S256 challenge can have: 43 base64url characters.
#[must_use]
pub fn is_valid_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && URL_SAFE_NO_PAD
            .decode(challenge)
            .is_ok_and(|d| d.len() == 32)
}

/// Whether `verifier` is 43–128 characters of `[A-Za-z0-9-._~]` (RFC 7636 §4.1).
#[must_use]
pub fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The S256 challenge of a verifier.
#[must_use]
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Checks a verifier against a stored S256 challenge, in constant time.
#[must_use]
pub fn verify(verifier: &str, challenge: &str) -> bool {
    is_valid_verifier(verifier) && ct_eq(s256(verifier).as_bytes(), challenge.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert_eq!(s256(verifier), challenge);
        assert!(is_valid_challenge(challenge));
        assert!(verify(verifier, challenge));
        assert!(
            !verify(challenge, challenge),
            "the challenge is not its own verifier"
        );
    }

    #[test]
    fn shapes() {
        assert!(!is_valid_verifier(&"a".repeat(42)));
        assert!(is_valid_verifier(&"a".repeat(43)));
        assert!(is_valid_verifier(&"a".repeat(128)));
        assert!(!is_valid_verifier(&"a".repeat(129)));
        for bad in ["+", "=", " ", "/"] {
            assert!(!is_valid_verifier(&format!("{}{bad}", "a".repeat(43))));
        }
        assert!(!is_valid_challenge(&"a".repeat(42)));
        assert!(!is_valid_challenge(&format!("{}=", "a".repeat(42))));
        assert!(!is_valid_challenge("plain-is-not-a-challenge"));
    }
}
