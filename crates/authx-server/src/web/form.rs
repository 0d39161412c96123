//! Reading OAuth requests: form and query parameters (RFC 6749 §3.1), the client's credentials
//! (RFC 6749 §2.3.1), and the client-authenticated request of the token, introspection,
//! revocation and device-authorization endpoints as one extractor.
//!
//! # Security
//! - Parameters may not repeat; empty values count as absent; oversized ones are refused.
//! - Credentials never come from the query string; a client uses exactly one authentication
//!   method.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use authx_core::oauth::OAuthError;
use authx_core::oauth::assertion::JWT_BEARER_ASSERTION_TYPE;
use authx_core::oauth::client::Client;
use authx_core::oauth::types::ClientAuth;

use super::error::oauth::{invalid_request, oauth_error};
use super::extract::SourceAddr;
use crate::state::AppState;

/// Form or query pairs with repeats reported (RFC 6749 §3.1): empty values count as absent.
///
/// Public so that the fuzz targets (`fuzz/`) can drive the decoder with hostile input.
#[derive(Debug)]
pub struct Params {
    map: HashMap<String, String>,
    repeated: Vec<String>,
}

impl Params {
    /// Decodes `application/x-www-form-urlencoded` pairs (a body or a query string). A name
    /// that appears twice with a non-empty value is reported by [`Params::repeated`].
    #[must_use]
    pub fn parse(raw: &[u8]) -> Self {
        let mut map = HashMap::new();
        let mut repeated = Vec::new();
        for (k, v) in form_urlencoded::parse(raw) {
            if v.is_empty() {
                continue;
            }
            if map.insert(k.to_string(), v.to_string()).is_some() {
                repeated.push(k.to_string());
            }
        }
        Self { map, repeated }
    }

    /// The non-empty value of `k` (the last one when it was repeated).
    #[must_use]
    pub fn get(&self, k: &str) -> Option<&str> {
        self.map.get(k).map(String::as_str)
    }

    /// Names that appeared more than once with a non-empty value, in order of their repeat.
    #[must_use]
    pub fn repeated(&self) -> &[String] {
        &self.repeated
    }

    /// The value of `k`, owned.
    pub(crate) fn owned(&self, k: &str) -> Option<String> {
        self.map.get(k).cloned()
    }

    /// The pairs, in no particular order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn too_long(&self) -> Option<&str> {
        self.map
            .iter()
            .find(|(k, v)| k.len() > 64 || v.len() > 4096)
            .map(|(k, _)| k.as_str())
    }
}

/// A browser form's body, read as [`Params`] (the CSRF token and the fields are checked by
/// the handler).
impl FromRequest<AppState> for Params {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Self::parse(&body))
    }
}

/// Reads a form-encoded endpoint request and the client's credentials: the content type, no
/// repeated or oversized parameter, no credentials in the query string, and exactly one client
/// authentication method (`client_secret_basic` or the body). The `bool` tells whether Basic was
/// used. Public so that the fuzz targets (`fuzz/`) can drive it.
///
/// # Errors
/// The finished `400` or `401` response (RFC 6749 §5.2).
#[allow(clippy::result_large_err)] // The error is the finished response.
pub fn read_form(
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<(Params, ClientAuth, bool), Response> {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !form_type {
        // RFC 6749 §5.2: a malformed request is `400 invalid_request`, whatever is wrong with it.
        return Err(invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let p = Params::parse(body);
    if let Some(k) = p.repeated.first() {
        return Err(invalid_request(&format!("parameter {k} is repeated")));
    }
    if let Some(k) = p.too_long() {
        return Err(invalid_request(&format!("parameter {k} is too long")));
    }
    if query.is_some_and(|q| {
        Params::parse(q.as_bytes())
            .map
            .keys()
            .any(|k| k == "client_secret" || k == "client_assertion")
    }) {
        return Err(invalid_request(
            "client credentials are not accepted in the query string",
        ));
    }
    let basic = match headers.get(header::AUTHORIZATION) {
        Some(v) => {
            Some(parse_basic(v).ok_or_else(|| oauth_error(&OAuthError::InvalidClient, true))?)
        }
        None => None,
    };
    let assertion = match (p.get("client_assertion_type"), p.owned("client_assertion")) {
        (None, None) => None,
        (Some(JWT_BEARER_ASSERTION_TYPE), Some(a)) => Some(a),
        (Some(JWT_BEARER_ASSERTION_TYPE), None) | (None, Some(_)) => {
            return Err(invalid_request(
                "client_assertion and client_assertion_type go together",
            ));
        }
        (Some(_), _) => {
            return Err(invalid_request(
                "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ));
        }
    };
    if let Some(assertion) = assertion {
        if basic.is_some() || p.get("client_secret").is_some() {
            return Err(invalid_request(
                "use exactly one client authentication method",
            ));
        }
        let auth = ClientAuth::Assertion {
            id: p.owned("client_id"),
            assertion,
            // Set by the endpoint, which knows its URL.
            endpoint: String::new(),
        };
        return Ok((p, auth, false));
    }
    let auth = match (basic, p.owned("client_id"), p.owned("client_secret")) {
        (Some(_), _, Some(_)) => {
            return Err(invalid_request(
                "use exactly one client authentication method",
            ));
        }
        (Some((id, _)), Some(body_id), None) if body_id != id => {
            return Err(invalid_request(
                "client_id differs from the Basic credentials",
            ));
        }
        (Some((id, secret)), _, None) => (ClientAuth::Secret { id, secret }, true),
        (None, Some(id), Some(secret)) => (ClientAuth::Secret { id, secret }, false),
        (None, Some(id), None) => (ClientAuth::Public { id }, false),
        (None, None, _) => return Err(oauth_error(&OAuthError::InvalidClient, false)),
    };
    Ok((p, auth.0, auth.1))
}

/// `client_secret_basic`: base64 of the form-encoded id and secret joined by `:` (RFC 6749 §2.3.1).
pub(crate) fn parse_basic(v: &HeaderValue) -> Option<(String, String)> {
    let s = v.to_str().ok()?;
    let (scheme, b64) = s.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |s: &str| -> Option<String> {
        let pairs = format!("v={s}");
        form_urlencoded::parse(pairs.as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

/// A form-encoded request of a client that authenticated (RFC 6749 §2.3): the token, revocation
/// and device-authorization endpoints. A request that cannot be read, or whose client fails to
/// authenticate, is answered with the RFC 6749 §5.2 error before the handler runs.
#[derive(Debug)]
pub struct AuthenticatedClient {
    /// The client.
    pub client: Client,
    /// The request's parameters.
    pub params: Params,
    /// Whether the client used HTTP Basic (a `401` then challenges it again).
    pub basic: bool,
}

/// As [`AuthenticatedClient`], for endpoints that a public client may not call: RFC 7662 §2.1
/// introspection. A public client is refused before its id is looked up.
#[derive(Debug)]
pub struct ConfidentialClient(pub AuthenticatedClient);

impl AuthenticatedClient {
    async fn read(req: Request, state: &AppState, confidential: bool) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let source = match SourceAddr::from_request_parts(&mut parts, state).await {
            Ok(s) => s,
            Err(never) => match never {},
        };
        let headers = parts.headers.clone();
        let query = parts.uri.query().map(str::to_owned);
        let path = parts.uri.path().to_owned();
        let body = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        let (params, mut auth, basic) = read_form(&headers, query.as_deref(), &body)?;
        if let ClientAuth::Assertion { endpoint, .. } = &mut auth {
            *endpoint = format!("{}{path}", state.oauth.config().issuer);
        }
        if confidential && matches!(auth, ClientAuth::Public { .. }) {
            return Err(oauth_error(&OAuthError::InvalidClient, basic));
        }
        let client = state
            .oauth
            .authenticate_client(&auth, source.as_deref())
            .await
            .map_err(|e| oauth_error(&e, basic))?;
        Ok(Self {
            client,
            params,
            basic,
        })
    }
}

impl FromRequest<AppState> for AuthenticatedClient {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        Self::read(req, state, false).await
    }
}

impl FromRequest<AppState> for ConfidentialClient {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        AuthenticatedClient::read(req, state, true).await.map(Self)
    }
}
