//! Reading one cookie out of `Cookie` request headers (RFC 6265 §5.4): the one set of rules used
//! by the server and by the guard.
//!
//! Header values come in as bytes, so this module needs no HTTP types:
//!
//! ```
//! use authx_core::cookie::{CookieLookup, find_cookie};
//!
//! let headers: [&[u8]; 1] = [b"theme=dark; authx_session=\"abc\""];
//! assert_eq!(find_cookie(headers, &["authx_session"]), CookieLookup::Once("abc"));
//! let tossed: [&[u8]; 2] = [b"authx_session=a", b"authx_session=b"];
//! assert_eq!(find_cookie(tossed, &["authx_session"]), CookieLookup::Refused);
//! ```
//!
//! # Security
//! A cookie whose name appears twice is never used: a sibling domain can plant a second one
//! (cookie tossing) and nothing tells which is genuine. A header longer than
//! [`MAX_COOKIE_HEADER`] is hostile and spoils the lookup. A header with bytes other than
//! visible ASCII cannot hold a cookie authx issued and is skipped.

/// Longest `Cookie` header value considered; a longer one refuses the lookup.
pub const MAX_COOKIE_HEADER: usize = 8 * 1024;

/// What the `Cookie` headers of a request say about one cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieLookup<'a> {
    /// The cookie was not sent.
    Absent,
    /// The cookie was sent exactly once, with this value (surrounding whitespace and double
    /// quotes removed).
    Once(&'a str),
    /// The cookie cannot be used: its name appears more than once, or a `Cookie` header is
    /// longer than [`MAX_COOKIE_HEADER`].
    Refused,
}

impl<'a> CookieLookup<'a> {
    /// The value when the cookie was sent exactly once.
    #[must_use]
    pub fn value(self) -> Option<&'a str> {
        match self {
            Self::Once(v) => Some(v),
            Self::Absent | Self::Refused => None,
        }
    }
}

/// Whether `b` may appear in a header value that is read as text (visible ASCII and tab, the
/// same rule as `http::HeaderValue::to_str`).
fn is_visible_ascii(b: u8) -> bool {
    (32..127).contains(&b) || b == b'\t'
}

/// Finds the cookie called by any of `names` in the `Cookie` header values `headers`, in the
/// order they were received. Several names stand for one cookie (for example `authx_session`
/// and `__Host-authx_session`): a request carrying two of them is refused like a repeated name.
///
/// # Security
/// See the module documentation: a repeated cookie or an oversized header gives
/// [`CookieLookup::Refused`], never one of the values.
pub fn find_cookie<'a, I>(headers: I, names: &[&str]) -> CookieLookup<'a>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut found = None;
    for header in headers {
        if !header.iter().copied().all(is_visible_ascii) {
            continue;
        }
        let Ok(text) = std::str::from_utf8(header) else {
            continue;
        };
        if text.len() > MAX_COOKIE_HEADER {
            return CookieLookup::Refused;
        }
        for pair in text.split(';') {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            if names.contains(&k.trim()) {
                if found.is_some() {
                    return CookieLookup::Refused;
                }
                found = Some(v.trim().trim_matches('"'));
            }
        }
    }
    found.map_or(CookieLookup::Absent, CookieLookup::Once)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(headers: &[&'a str], names: &[&str]) -> CookieLookup<'a> {
        find_cookie(headers.iter().map(|h| h.as_bytes()), names)
    }

    const S: &[&str] = &["authx_session"];

    #[test]
    fn one_value_is_found_and_trimmed() {
        assert_eq!(
            find(&["a=1; authx_session=xyz; b=2"], S),
            CookieLookup::Once("xyz")
        );
        assert_eq!(
            find(&[" authx_session = \"xyz\" "], S),
            CookieLookup::Once("xyz")
        );
        assert_eq!(find(&["other=1", "x"], S), CookieLookup::Absent);
        assert_eq!(find(&[], S), CookieLookup::Absent);
        // A name is matched whole, not as a prefix or suffix.
        assert_eq!(
            find(&["xauthx_session=1; authx_sessions=2"], S),
            CookieLookup::Absent
        );
    }

    #[test]
    fn repeats_in_one_header_or_across_headers_or_names_are_refused() {
        assert_eq!(
            find(&["authx_session=1; authx_session=2"], S),
            CookieLookup::Refused
        );
        assert_eq!(
            find(&["authx_session=1", "authx_session=2"], S),
            CookieLookup::Refused
        );
        let both = &["authx_session", "__Host-authx_session"];
        assert_eq!(
            find(&["authx_session=1; __Host-authx_session=2"], both),
            CookieLookup::Refused
        );
        assert_eq!(
            find(&["__Host-authx_session=2"], both),
            CookieLookup::Once("2")
        );
    }

    #[test]
    fn oversized_headers_refuse_and_non_ascii_headers_are_skipped() {
        let huge = format!("authx_session={}", "A".repeat(MAX_COOKIE_HEADER));
        assert_eq!(find(&[&huge], S), CookieLookup::Refused);
        assert_eq!(find(&["authx_session=1", &huge], S), CookieLookup::Refused);
        let raw: [&[u8]; 2] = [b"authx_session=\xff\xfe", b"authx_session=ok"];
        assert_eq!(find_cookie(raw, S), CookieLookup::Once("ok"));
        let utf8 = ["authx_session=caf\u{e9}", "authx_session=ok"];
        assert_eq!(find(&utf8, S), CookieLookup::Once("ok"));
        assert_eq!(CookieLookup::Refused.value(), None);
        assert_eq!(CookieLookup::Once("v").value(), Some("v"));
    }
}
