//! The two cookies authx sets, and strict parsing of the `Cookie` header.
//!
//! # Security
//! Values are only ever accepted in the exact shape authx issues. When a request carries the
//! same cookie name twice (cookie tossing from a sibling domain), neither value is used.

use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue};

/// Cookie names and attributes for this server.
#[derive(Debug, Clone)]
pub struct CookieNames {
    /// The session cookie's name.
    pub session: &'static str,
    /// The pre-session (sign-in form CSRF) cookie's name.
    pub pre_session: &'static str,
    /// The cookie binding upstream sign-ins to the browser that started them.
    pub federation_binding: &'static str,
    /// The cookie naming a pending federation link.
    pub federation_link: &'static str,
    secure: bool,
}

impl CookieNames {
    /// Names for a server that serves over TLS (`secure`) or not.
    #[must_use]
    pub fn new(secure: bool) -> Self {
        if secure {
            // The __Host- prefix forbids Domain and requires Secure and Path=/ (RFC 6265bis §4.1.3.2).
            Self {
                session: "__Host-authx_session",
                pre_session: "__Host-authx_csrf",
                federation_binding: "__Host-authx_federation",
                federation_link: "__Host-authx_federation_link",
                secure,
            }
        } else {
            Self {
                session: "authx_session",
                pre_session: "authx_csrf",
                federation_binding: "authx_federation",
                federation_link: "authx_federation_link",
                secure,
            }
        }
    }

    /// `Set-Cookie` for a new session, living at most `max_age` seconds.
    #[must_use]
    pub fn set_session(&self, value: &str, max_age: i64) -> String {
        self.build(self.session, value, max_age)
    }

    /// `Set-Cookie` that removes the session cookie.
    #[must_use]
    pub fn clear_session(&self) -> String {
        self.build(self.session, "", 0)
    }

    /// `Set-Cookie` for the pre-session cookie (one hour).
    #[must_use]
    pub fn set_pre_session(&self, value: &str) -> String {
        self.build(self.pre_session, value, 3600)
    }

    /// `Set-Cookie` that removes the pre-session cookie.
    #[must_use]
    pub fn clear_pre_session(&self) -> String {
        self.build(self.pre_session, "", 0)
    }

    /// `Set-Cookie` for the federation browser binding.
    #[must_use]
    pub fn set_federation_binding(&self, value: &str, max_age: i64) -> String {
        self.build(self.federation_binding, value, max_age)
    }

    /// `Set-Cookie` for a pending federation link.
    #[must_use]
    pub fn set_federation_link(&self, value: &str, max_age: i64) -> String {
        self.build(self.federation_link, value, max_age)
    }

    /// `Set-Cookie` that removes the pending-link cookie.
    #[must_use]
    pub fn clear_federation_link(&self) -> String {
        self.build(self.federation_link, "", 0)
    }

    fn build(&self, name: &str, value: &str, max_age: i64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
    }
}

/// The magic-link browser binding: set when a sign-in link is asked for, required when it is
/// used, so only the browser that asked signs in with it.
impl CookieNames {
    /// The binding cookie's name.
    #[must_use]
    pub fn magic_link_binding(&self) -> &'static str {
        if self.secure {
            "__Host-authx_magic_link"
        } else {
            "authx_magic_link"
        }
    }

    /// `Set-Cookie` for the binding, living as long as a sign-in link.
    #[must_use]
    pub fn set_magic_link_binding(&self, value: &str, max_age: i64) -> String {
        self.build(self.magic_link_binding(), value, max_age)
    }

    /// `Set-Cookie` that removes the binding.
    #[must_use]
    pub fn clear_magic_link_binding(&self) -> String {
        self.build(self.magic_link_binding(), "", 0)
    }
}

/// The second-factor cookie: names a sign-in waiting for its second factor (the token of its
/// server-side record), for the five minutes the record lives.
impl CookieNames {
    /// The cookie's name.
    #[must_use]
    pub fn second_factor(&self) -> &'static str {
        if self.secure {
            "__Host-authx_mfa"
        } else {
            "authx_mfa"
        }
    }

    /// `Set-Cookie` for a waiting sign-in.
    #[must_use]
    pub fn set_second_factor(&self, value: &str) -> String {
        let lifetime = authx_core::links::LinkPurpose::SecondFactor.lifetime_secs();
        self.build(self.second_factor(), value, lifetime)
    }

    /// `Set-Cookie` that removes it.
    #[must_use]
    pub fn clear_second_factor(&self) -> String {
        self.build(self.second_factor(), "", 0)
    }
}

/// The single value of cookie `name`, or `None` when it is absent, repeated or oversized (the
/// rules of [`authx_core::cookie::find_cookie`]).
#[must_use]
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    authx_core::cookie::find_cookie(
        headers.get_all(COOKIE).iter().map(HeaderValue::as_bytes),
        &[name],
    )
    .value()
}

/// Sets the cookie of a session just issued (living as long as the session may), and with
/// `sign_in` also clears the pre-session cookie, whose CSRF token dies with sign-in.
pub fn append_new_session(
    headers: &mut HeaderMap,
    names: &CookieNames,
    signed: &authx_core::auth::SignedIn,
    sign_in: bool,
) {
    let max_age = signed
        .session
        .absolute_expires_at
        .since(signed.session.created_at);
    append_cookie(headers, &names.set_session(signed.token.expose(), max_age));
    if sign_in {
        append_cookie(headers, &names.clear_pre_session());
    }
}

/// Appends a `Set-Cookie` header with `value`, a cookie built by `CookieNames`.
pub fn append_cookie(headers: &mut HeaderMap, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.append(SET_COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn finds_one_value_and_refuses_duplicates() {
        assert_eq!(
            cookie_value(&headers(&["a=1; authx_session=xyz; b=2"]), "authx_session"),
            Some("xyz")
        );
        assert_eq!(
            cookie_value(
                &headers(&["authx_session=1; authx_session=2"]),
                "authx_session"
            ),
            None
        );
        assert_eq!(
            cookie_value(
                &headers(&["authx_session=1", "authx_session=2"]),
                "authx_session"
            ),
            None
        );
        assert_eq!(cookie_value(&headers(&["other=1"]), "authx_session"), None);
        let huge = format!("authx_session={}", "A".repeat(10_000));
        assert_eq!(cookie_value(&headers(&[&huge]), "authx_session"), None);
    }

    #[test]
    fn attributes() {
        let c = CookieNames::new(true);
        let s = c.set_session("v", 86_400);
        assert_eq!(
            s,
            "__Host-authx_session=v; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax; Secure"
        );
        assert!(!s.contains("Domain"));
        assert!(
            CookieNames::new(false)
                .set_session("v", 1)
                .starts_with("authx_session=v;")
        );
    }
}
