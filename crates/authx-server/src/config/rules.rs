//! Rules the OpenID and SAML provider sections share: provider names, and where outbound calls
//! may go.

use std::net::IpAddr;

/// Whether `name` may name a provider in URLs: 1 to 32 of `a-z 0-9 - _`.
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Whether an outbound call may go to `url` (SECURITY.md #65): `https://`, or `http://` to a
/// loopback host when `insecure_http_loopback` is set; never with user information.
#[must_use]
pub fn outbound_url_allowed(url: &str, insecure_http_loopback: bool) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty()
        || authority.contains('@')
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return false;
    }
    match scheme {
        "https" => true,
        "http" if insecure_http_loopback => is_loopback_authority(authority),
        _ => false,
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with an optional port.
fn is_loopback_authority(authority: &str) -> bool {
    let host = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, port)) if port.is_empty() || port.starts_with(':') => h,
            _ => return false,
        }
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
