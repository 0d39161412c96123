//! PKCE verifier and challenge checks (SECURITY.md #33-#35; §2 #9).
//!
//! Input: `verifier \n challenge` (UTF-8; without `\n` the input is both). Properties: never a
//! panic; only 43-128 characters of `[A-Za-z0-9-._~]` are a verifier; only 43 canonical
//! base64url characters are a challenge; a verifier verifies exactly against its own S256
//! challenge.

#![no_main]

use authx_core::oauth::pkce;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (verifier, challenge) = text.split_once('\n').unwrap_or((text, text));

    let shape = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    assert_eq!(pkce::is_valid_verifier(verifier), shape, "{verifier:?}");

    let own = pkce::s256(verifier);
    assert!(pkce::is_valid_challenge(&own));
    assert_eq!(pkce::verify(verifier, &own), shape);

    let verified = pkce::verify(verifier, challenge);
    assert_eq!(
        verified,
        shape && challenge == own,
        "{verifier:?} {challenge:?}"
    );
    if pkce::is_valid_challenge(challenge) {
        assert_eq!(challenge.len(), 43);
    }
    // Sending the challenge itself as the verifier proves nothing.
    assert!(!pkce::verify(challenge, challenge) || pkce::s256(challenge) == challenge);
});
