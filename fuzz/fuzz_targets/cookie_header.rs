//! `Cookie` header parsing and the opaque-token parser behind it (SECURITY.md #4, §2 #13).
//!
//! Input: one or more `Cookie` header values separated by `\n`. Properties: never a panic; a
//! value is returned only when its name appears exactly once (through the server's `HeaderMap`
//! wrapper, and straight from `authx_core::cookie` with the guard's two names for one cookie);
//! a token parses only in the exact issued shape (43 canonical base64url characters of 32
//! bytes).

#![no_main]

use authx_core::cookie::{CookieLookup, find_cookie};
use authx_core::secret::{PreSessionToken, SessionToken};
use authx_server::cookies::cookie_value;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 4] = [
    "authx_session",
    "__Host-authx_session",
    "authx_csrf",
    "__Host-authx_csrf",
];

fn check_token(raw: &str) {
    if let Some(t) = SessionToken::parse(raw) {
        assert_eq!(t.expose(), raw);
        let bytes = URL_SAFE_NO_PAD.decode(raw).expect("a parsed token decodes");
        assert_eq!(bytes.len(), 32);
        assert_eq!(
            URL_SAFE_NO_PAD.encode(&bytes),
            raw,
            "one spelling per token"
        );
    }
    assert_eq!(
        PreSessionToken::parse(raw).is_some(),
        SessionToken::parse(raw).is_some()
    );
}

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append(COOKIE, v);
        }
    }
    for name in NAMES {
        if let Some(v) = cookie_value(&headers, name) {
            let occurrences = headers
                .get_all(COOKIE)
                .iter()
                .filter_map(|h| h.to_str().ok())
                .flat_map(|t| t.split(';'))
                .filter(|pair| pair.split_once('=').is_some_and(|(k, _)| k.trim() == name))
                .count();
            assert_eq!(occurrences, 1, "a repeated cookie name was trusted");
            assert!(!v.contains(';'));
            check_token(v);
        }
    }
    // The guard's lookup: both spellings of the session cookie count as one name.
    let session = ["authx_session", "__Host-authx_session"];
    let lines = || data.split(|b| *b == b'\n');
    if let CookieLookup::Once(v) = find_cookie(lines(), &session) {
        let occurrences = lines()
            .filter(|l| l.iter().all(|b| (32..127).contains(b) || *b == b'\t'))
            .filter_map(|l| std::str::from_utf8(l).ok())
            .flat_map(|t| t.split(';'))
            .filter(|pair| {
                pair.split_once('=')
                    .is_some_and(|(k, _)| session.contains(&k.trim()))
            })
            .count();
        assert_eq!(occurrences, 1, "a repeated session cookie was trusted");
        check_token(v);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        check_token(s);
    }
});
