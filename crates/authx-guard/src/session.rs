//! Browser sessions checked against the shared store (same-site services).

use std::sync::Arc;

use authx_core::Timestamp;
use authx_core::cookie::{CookieLookup, find_cookie};
use authx_core::secret::SessionToken;
use authx_core::store::{AccountStore, SessionStore};
use authx_core::user::UserStatus;
use axum::http::{HeaderMap, Method, header};

use crate::{Identity, Refusal, TokenDefect};

/// The cookie names authx uses (plain and, over TLS, `__Host-`): one cookie, so carrying both
/// counts as a repeat.
const COOKIE_NAMES: [&str; 2] = ["authx_session", "__Host-authx_session"];

/// Checks the `authx_session` cookie against the same stores the authx server uses (for
/// example `authx_store::connect(...)` and, with Redis, `authx_store::redis_sessions`).
///
/// A browser sends the cookie with every request to the site, including requests that another
/// site's page makes it send, so:
/// - **CSRF**: a request with an unsafe method (anything but `GET`, `HEAD`, `OPTIONS`, `TRACE`)
///   is refused with `403 csrf_failed` unless its `Origin` is one of
///   [`SessionCheck::allow_origin`]'s, or, when it has no `Origin`, it carries an `X-CSRF-Token`
///   header (a custom header that no cross-site form or simple request can add).
/// - **Scopes**: a session holds only the scopes given with [`SessionCheck::grant_scopes`]
///   (none by default), so a route behind `require_scope` needs a token unless the service
///   grants that scope to its signed-in users.
///
/// ```
/// # fn stores() -> (std::sync::Arc<dyn authx_core::store::SessionStore>, std::sync::Arc<dyn authx_core::store::AccountStore>) { unimplemented!() }
/// # fn demo() {
/// let (sessions, accounts) = stores();
/// let check = authx_guard::SessionCheck::new(sessions, accounts)
///     .allow_origin("https://app.example.com")
///     .grant_scopes(["orders:read"]);
/// # }
/// ```
#[derive(Clone)]
pub struct SessionCheck {
    sessions: Arc<dyn SessionStore>,
    accounts: Arc<dyn AccountStore>,
    origins: Arc<Vec<String>>,
    scopes: Arc<Vec<String>>,
}

impl std::fmt::Debug for SessionCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCheck")
            .field("origins", &self.origins)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// Methods that must not change anything (RFC 9110 §9.2.1), so a cross-site request with
/// them does no harm.
fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Refuses an unsafe request that may come from another site: it needs one `Origin` that is
/// `trusted`, or no `Origin` and an `X-CSRF-Token` header.
fn check_csrf(trusted: &[String], method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
    if is_safe(method) {
        return Ok(());
    }
    let mut origins = headers.get_all(header::ORIGIN).iter();
    match (origins.next(), origins.next()) {
        (Some(origin), None) => {
            let ok = origin.to_str().is_ok_and(|o| {
                let o = o.trim();
                trusted.iter().any(|t| t.eq_ignore_ascii_case(o))
            });
            if ok { Ok(()) } else { Err(Refusal::CrossSite) }
        }
        (None, _) if headers.contains_key("x-csrf-token") => Ok(()),
        // No `Origin` and no custom header, or two `Origin` headers.
        _ => Err(Refusal::CrossSite),
    }
}

impl SessionCheck {
    /// Uses these stores; no origin is trusted for unsafe methods and no scope is granted until
    /// configured.
    #[must_use]
    pub fn new(sessions: Arc<dyn SessionStore>, accounts: Arc<dyn AccountStore>) -> Self {
        Self {
            sessions,
            accounts,
            origins: Arc::new(Vec::new()),
            scopes: Arc::new(Vec::new()),
        }
    }

    /// Trusts `origin` (`scheme://host[:port]`, as browsers send it in `Origin`) to make
    /// unsafe requests with the session cookie: the service's own pages, usually.
    #[must_use]
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        let origin = origin.into();
        Arc::make_mut(&mut self.origins).push(origin.trim_end_matches('/').to_ascii_lowercase());
        self
    }

    /// The scopes a signed-in user holds through the session cookie (default: none).
    #[must_use]
    pub fn grant_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Arc::make_mut(&mut self.scopes).extend(scopes.into_iter().map(Into::into));
        self
    }

    pub(crate) async fn identify(
        &self,
        method: &Method,
        headers: &HeaderMap,
        denied: impl Fn(&str) -> bool,
    ) -> Result<Identity, Refusal> {
        let lookup = find_cookie(
            headers.get_all(header::COOKIE).iter().map(|v| v.as_bytes()),
            &COOKIE_NAMES,
        );
        let value = match lookup {
            CookieLookup::Absent => return Err(Refusal::Missing),
            CookieLookup::Once(v) => v,
            // Two session cookies (one was planted) or a hostile header.
            CookieLookup::Refused => return Err(Refusal::BadRequest),
        };
        check_csrf(&self.origins, method, headers)?;
        let token =
            SessionToken::parse(value).ok_or(Refusal::InvalidToken(TokenDefect::Malformed))?;
        let hash = token.hash();
        let unavailable = |e: authx_core::StoreError| {
            tracing::warn!(error = %e, "session store unavailable");
            Refusal::Unavailable
        };
        let session = self
            .sessions
            .session_by_hash(&hash)
            .await
            .map_err(unavailable)?
            .filter(|s| s.token_hash.ct_eq(&hash))
            .ok_or(Refusal::InvalidToken(TokenDefect::Revoked))?;
        let now = Timestamp(crate::now_secs());
        if !session.is_live(now) || denied(&session.id.0) {
            return Err(Refusal::InvalidToken(TokenDefect::Revoked));
        }
        let user = self
            .accounts
            .user_by_id(&session.user_id)
            .await
            .map_err(unavailable)?
            .filter(|u| u.status == UserStatus::Active)
            .ok_or(Refusal::InvalidToken(TokenDefect::Revoked))?;
        Ok(Identity::Session {
            user_id: user.id.0,
            session_id: session.id.0,
            scopes: self.scopes.as_ref().clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn unsafe_methods_need_a_trusted_origin_or_the_custom_header() {
        let trusted = vec!["https://app.example.com".to_owned()];
        let c = |m: &Method, h: &HeaderMap| check_csrf(&trusted, m, h);
        let post = Method::POST;
        assert!(c(&Method::GET, &headers(&[])).is_ok());
        assert!(
            c(
                &Method::HEAD,
                &headers(&[("origin", "https://evil.example")])
            )
            .is_ok()
        );
        assert!(c(&post, &headers(&[("origin", "https://app.example.com")])).is_ok());
        assert!(c(&post, &headers(&[("origin", "HTTPS://APP.example.com")])).is_ok());
        assert!(c(&post, &headers(&[("x-csrf-token", "1")])).is_ok());
        for refused in [
            headers(&[]),
            headers(&[("origin", "https://evil.example")]),
            headers(&[("origin", "null")]),
            headers(&[("origin", "https://app.example.com.evil.example")]),
            // An untrusted Origin is not rescued by the custom header.
            headers(&[("origin", "https://evil.example"), ("x-csrf-token", "1")]),
            headers(&[
                ("origin", "https://app.example.com"),
                ("origin", "https://evil.example"),
            ]),
        ] {
            assert_eq!(c(&post, &refused), Err(Refusal::CrossSite), "{refused:?}");
        }
        for m in [Method::PUT, Method::PATCH, Method::DELETE] {
            assert_eq!(c(&m, &headers(&[])), Err(Refusal::CrossSite));
        }
        assert_eq!(
            check_csrf(
                &[],
                &post,
                &headers(&[("origin", "https://app.example.com")])
            ),
            Err(Refusal::CrossSite)
        );
    }
}
