//! The tower layer, the axum extractors and the RFC 6750 error responses.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::{Claims, Guard, Identity, TokenDefect};

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No credentials at all: `401` with a bare `Bearer` challenge.
    Missing,
    /// A token or session that does not hold: `401 invalid_token`.
    InvalidToken(TokenDefect),
    /// A DPoP-bound token without a proof by its key (as a bearer token, or with another
    /// key's proof), or an unbound token under the `DPoP` scheme: `401` with a `DPoP`
    /// challenge and `invalid_token` (RFC 9449 §7.1).
    InvalidDpopToken(TokenDefect),
    /// A DPoP proof that is missing, repeated, malformed, for another request or token, too
    /// old or replayed: `401` with a `DPoP` challenge and `invalid_dpop_proof`.
    InvalidDpopProof,
    /// Malformed credentials (two schemes, a broken header): `400 invalid_request`.
    BadRequest,
    /// The token lacks a scope the route needs: `403 insufficient_scope`.
    InsufficientScope(String),
    /// The user's sign-in was weaker than the route needs (RFC 9470): `401
    /// insufficient_user_authentication` with the `acr_values` to ask for.
    InsufficientAuthentication(String),
    /// The guard cannot currently tell whether tokens were revoked: `503`.
    Unavailable,
    /// A session-cookie request with an unsafe method that may come from another site (no
    /// trusted `Origin`, no `X-CSRF-Token`): `403 csrf_failed`.
    CrossSite,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, challenge, body) = match &self {
            Self::Missing => (
                StatusCode::UNAUTHORIZED,
                "Bearer".to_owned(),
                json!({"error": "unauthorized", "error_description": "a bearer token is required"}),
            ),
            Self::InvalidToken(_) => (
                StatusCode::UNAUTHORIZED,
                "Bearer error=\"invalid_token\"".to_owned(),
                json!({"error": "invalid_token", "error_description": "the access token is not valid"}),
            ),
            Self::InvalidDpopToken(_) => (
                StatusCode::UNAUTHORIZED,
                dpop_challenge("invalid_token"),
                json!({"error": "invalid_token", "error_description": "the access token is not valid"}),
            ),
            Self::InvalidDpopProof => (
                StatusCode::UNAUTHORIZED,
                dpop_challenge("invalid_dpop_proof"),
                json!({"error": "invalid_dpop_proof", "error_description": "the DPoP proof is not valid"}),
            ),
            Self::BadRequest => (
                StatusCode::BAD_REQUEST,
                "Bearer error=\"invalid_request\"".to_owned(),
                json!({"error": "invalid_request", "error_description": "malformed credentials"}),
            ),
            Self::InsufficientScope(scope) => (
                StatusCode::FORBIDDEN,
                format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\""),
                json!({"error": "insufficient_scope", "error_description": format!("this needs scope {scope}"), "scope": scope}),
            ),
            Self::InsufficientAuthentication(acr) => (
                StatusCode::UNAUTHORIZED,
                format!(
                    "Bearer error=\"insufficient_user_authentication\", \
                     error_description=\"a stronger sign-in is required\", acr_values=\"{acr}\""
                ),
                json!({"error": "insufficient_user_authentication", "error_description": "a stronger sign-in is required", "acr_values": acr}),
            ),
            Self::CrossSite => (
                StatusCode::FORBIDDEN,
                String::new(),
                json!({"error": "csrf_failed", "error_description": "a cross-site request cannot use the session cookie"}),
            ),
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                String::new(),
                json!({"error": "temporarily_unavailable", "error_description": "cannot check revocations right now"}),
            ),
        };
        let mut res = (status, axum::Json(body)).into_response();
        let h = res.headers_mut();
        if !challenge.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                h.insert(header::WWW_AUTHENTICATE, v);
            }
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

/// A `DPoP` challenge (RFC 9449 §7.1) with the proof algorithms accepted.
fn dpop_challenge(error: &str) -> String {
    format!(
        "DPoP algs=\"{}\", error=\"{error}\"",
        authx_core::oauth::dpop::SIGNING_ALGS.join(" ")
    )
}

/// The layer built by [`Guard::layer`].
#[derive(Clone, Debug)]
pub struct GuardLayer {
    guard: Guard,
    scopes: Arc<Vec<String>>,
    acr: Option<Arc<str>>,
}

impl GuardLayer {
    pub(crate) fn new(guard: Guard) -> Self {
        Self {
            guard,
            scopes: Arc::new(Vec::new()),
            acr: None,
        }
    }

    /// Also require `scope` (every listed scope must be granted).
    #[must_use]
    pub fn require_scope(mut self, scope: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.scopes).push(scope.into());
        self
    }

    /// Also require a user sign-in of at least `acr` (for example `urn:authx:acr:mfa`): a
    /// token whose `acr` is weaker, or that has none (a client's own token, a browser
    /// session), is refused with `401 insufficient_user_authentication` and the `acr_values`
    /// to ask for (RFC 9470), so the application can send its user through step-up.
    #[must_use]
    pub fn require_acr(mut self, acr: impl Into<String>) -> Self {
        self.acr = Some(Arc::from(acr.into()));
        self
    }
}

impl<S> tower::Layer<S> for GuardLayer {
    type Service = GuardService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GuardService {
            inner,
            guard: self.guard.clone(),
            scopes: Arc::clone(&self.scopes),
            acr: self.acr.clone(),
        }
    }
}

/// The service of [`GuardLayer`].
#[derive(Clone, Debug)]
pub struct GuardService<S> {
    inner: S,
    guard: Guard,
    scopes: Arc<Vec<String>>,
    acr: Option<Arc<str>>,
}

impl<S> tower::Service<Request> for GuardService<S>
where
    S: tower::Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        // The clone that was made ready is the one that is called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        let scopes = Arc::clone(&self.scopes);
        let acr = self.acr.clone();
        Box::pin(async move {
            // The path the client addressed, before any `nest` stripped its prefix: the one a
            // DPoP proof names.
            let uri = req
                .extensions()
                .get::<axum::extract::OriginalUri>()
                .map_or_else(|| req.uri().clone(), |o| o.0.clone());
            let identity = match guard
                .identify_request(req.method(), &uri, req.headers())
                .await
            {
                Ok(i) => i,
                Err(r) => return Ok(r.into_response()),
            };
            if let Some(missing) = scopes.iter().find(|s| !identity.has_scope(s)) {
                return Ok(Refusal::InsufficientScope(missing.clone()).into_response());
            }
            if let Some(acr) = acr {
                let met = matches!(&identity, Identity::Token(c) if c.meets_acr(&acr));
                if !met {
                    return Ok(Refusal::InsufficientAuthentication(acr.to_string()).into_response());
                }
            }
            req.extensions_mut().insert(identity);
            inner.call(req).await
        })
    }
}

impl Guard {
    /// Checks a request's credentials without its URI: as [`Guard::identify_request`], except
    /// that a DPoP proof cannot be checked, so a DPoP-bound token is refused.
    ///
    /// # Errors
    /// The refusal to send.
    pub async fn identify(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<Identity, Refusal> {
        self.identify_at(method, None, headers).await
    }

    /// Checks a request's credentials: a bearer token, a DPoP-bound token with its proof for
    /// this request (`Authorization: DPoP` and a `DPoP` header, RFC 9449 §7), or (with
    /// [`crate::GuardConfig::sessions`]) the session cookie, for which `method` decides whether
    /// the CSRF rules apply. A DPoP-bound token is never accepted as a bearer token.
    ///
    /// # Errors
    /// The refusal to send.
    pub async fn identify_request(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<Identity, Refusal> {
        self.identify_at(method, Some(uri), headers).await
    }

    async fn identify_at(
        &self,
        method: &Method,
        uri: Option<&Uri>,
        headers: &HeaderMap,
    ) -> Result<Identity, Refusal> {
        let mut auths = headers.get_all(header::AUTHORIZATION).iter();
        match (auths.next(), auths.next()) {
            (Some(_), Some(_)) => Err(Refusal::BadRequest),
            (Some(v), None) => {
                let v = v.to_str().map_err(|_| Refusal::BadRequest)?;
                let (scheme, token) = v.split_once(' ').ok_or(Refusal::BadRequest)?;
                let dpop = scheme.eq_ignore_ascii_case("dpop");
                if !dpop && !scheme.eq_ignore_ascii_case("bearer") {
                    return Err(Refusal::Missing);
                }
                let token = token.trim();
                if token.is_empty() {
                    return Err(Refusal::BadRequest);
                }
                let claims = self.check_token(token).await?;
                if dpop {
                    let s = self.shared();
                    crate::dpop::check(
                        &s.seen_proofs,
                        s.config.public_url.as_deref(),
                        &s.config.dpop_proof,
                        &crate::dpop::DpopRequest {
                            method,
                            uri,
                            headers,
                        },
                        token,
                        &claims,
                        crate::now_secs(),
                    )?;
                } else if claims.dpop_jkt().is_some() {
                    // RFC 9449 §7.1: a bound token is worth nothing without its key.
                    return Err(Refusal::InvalidDpopToken(TokenDefect::WrongScheme));
                }
                Ok(Identity::Token(claims))
            }
            (None, _) => self.identify_session(method, headers).await,
        }
    }

    async fn identify_session(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<Identity, Refusal> {
        match &self.shared().config.sessions {
            Some(check) => {
                let denied = |sid: &str| {
                    self.shared()
                        .deny
                        .read()
                        .map_or(true, |d| d.denies_session(sid))
                };
                check.identify(method, headers, denied).await
            }
            None => Err(Refusal::Missing),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Refusal> {
        // Present only behind the layer; a route outside it refuses rather than trusting.
        parts
            .extensions
            .get::<Identity>()
            .cloned()
            .ok_or(Refusal::Missing)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Claims {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Refusal> {
        match parts.extensions.get::<Identity>() {
            Some(Identity::Token(c)) => Ok(c.clone()),
            _ => Err(Refusal::Missing),
        }
    }
}
