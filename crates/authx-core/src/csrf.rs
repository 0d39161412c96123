//! Synchronizer tokens for HTML forms and single-page apps (OWASP CSRF cheat sheet, "HMAC based
//! token pattern"). A token is an HMAC keyed by the session secret, so it needs no storage, dies
//! with the session, and reveals nothing about the cookie it is derived from.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secret::{PreSessionToken, SessionToken, b64url, ct_eq};

const LABEL: &[u8] = b"authx csrf v1";

/// The CSRF token bound to a browser session.
#[must_use]
pub fn token_for_session(session: &SessionToken) -> String {
    derive(session.expose().as_bytes())
}

/// The CSRF token bound to the pre-session cookie of the sign-in and sign-up forms.
#[must_use]
pub fn token_for_pre_session(pre: &PreSessionToken) -> String {
    derive(pre.expose().as_bytes())
}

/// Checks a presented token against the expected one in constant time.
#[must_use]
pub fn matches(expected: &str, presented: &str) -> bool {
    ct_eq(expected.as_bytes(), presented.as_bytes())
}

fn derive(key: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail; an empty tag would never match.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(LABEL);
            b64url(&mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_per_session_and_hides_the_cookie() {
        let a = SessionToken::generate();
        let b = SessionToken::generate();
        let ta = token_for_session(&a);
        assert_eq!(ta.len(), 43);
        assert!(matches(&ta, &token_for_session(&a)));
        assert!(!matches(&ta, &token_for_session(&b)));
        assert!(!matches(&ta, ""));
        assert!(!ta.contains(a.expose()));
    }
}
