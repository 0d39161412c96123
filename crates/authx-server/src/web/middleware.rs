//! Middleware: request ids and tracing, security headers, size and time limits, metrics, and the
//! origin check that every state-changing browser request passes.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use authx_core::ratelimit::RateLimit;

use super::error::http::{forbidden, panic_response, too_many_requests, unavailable};
use super::extract::client_context;
use crate::config::{RateLimits, origin_of};
use crate::state::AppState;

/// Largest request body accepted anywhere (SECURITY.md #71).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Request ids: 16 random bytes (from the thread's CSPRNG), base64url.
#[derive(Clone, Copy, Debug, Default)]
pub struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _req: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&authx_core::secret::request_id())
            .ok()
            .map(RequestId::new)
    }
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Wraps the whole router, once, in the layers every request passes through, outermost first:
/// the security headers (on every response, those of the layers below included), a request id,
/// the request's span, the request id on the response, a panic turned into a 500, the body
/// limit, and a 30-second limit.
///
/// Around the router rather than on each route: `Router::layer` boxes every route once per
/// layer, and each box is cloned on every request.
pub fn around(
    router: Router,
    state: &AppState,
) -> impl tower::Service<
    Request,
    Response = Response,
    Error = std::convert::Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ use<> {
    let hsts = state.config.cookie_secure;
    tower::ServiceBuilder::new()
        .map_response(move |res: Response| security_headers(res, hsts))
        .map_response(IntoResponse::into_response)
        .layer(SetRequestIdLayer::new(X_REQUEST_ID, RandomRequestId))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(span)
                .on_request(())
                // One line per request only at debug: at info the log carries what happened
                // (audit events, warnings), not the traffic, which costs a formatted line per
                // request (`AUTHX_LOG=info,tower_http=debug` brings the lines back).
                .on_response(DefaultOnResponse::new().level(tracing::Level::DEBUG)),
        )
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .service(router)
}

/// The span of one request: id, method and path. Never the query string, which may carry
/// codes or tokens, and never headers, which carry cookies.
fn span(req: &Request) -> tracing::Span {
    let id = req
        .headers()
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
}

/// Security headers on every response and `Cache-Control: no-store` unless the handler chose
/// otherwise (SECURITY.md #10, #14); with `hsts` (served over TLS), Strict-Transport-Security.
fn security_headers(mut res: Response, hsts: bool) -> Response {
    let h = res.headers_mut();
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // A page may narrow or extend this (the consent page allows its client's origin as a form
    // target); every policy keeps frame-ancestors 'none'.
    h.entry(header::CONTENT_SECURITY_POLICY).or_insert(HeaderValue::from_static(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ));
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
    if hsts {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    res
}

/// What every request passes through, as one layer (each layer clones the routes below it per
/// request): the audit context of the request ([`audit_context`]), the request metrics by
/// matched route, the rate limits ([`rate_limit`]), and one read of the shared count of
/// changes per request ([`authx_core::generation::in_request`]).
pub async fn per_request(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let audit_ctx = audit_context(&state, &parts);
    let req = Request::from_parts(parts, body);
    let served = authx_core::audit::in_request(audit_ctx, observe(state, req, next));
    authx_core::generation::in_request(served).await
}

/// Counts and times requests by matched route.
async fn observe(state: AppState, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let res = rate_limit(&state, req, next).await;
    state.metrics.observe_request(
        &method,
        &route,
        res.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    res
}

/// CSRF layers one and two for every state-changing request to the browser-facing routes
/// (SECURITY.md #11, #12): a cross-site `Sec-Fetch-Site` is refused, then the `Origin` header, or
/// failing that the `Referer`, must match a trusted origin exactly; a request with neither, or
/// with any of these headers repeated, is refused. The synchronizer token (layer three) is
/// checked by each handler.
pub async fn origin_check(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if *req.method() == Method::OPTIONS {
        audit_preflight(&state, &req);
        return next.run(req).await;
    }
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    match verdict(&state, &req) {
        Ok(()) => next.run(req).await,
        Err(reason) => {
            state.auth.audit().record(
                authx_core::audit::AuditEvent::failure("csrf_rejected")
                    .with("reason", reason)
                    .with("path", req.uri().path()),
            );
            forbidden(req.uri().path(), reason)
        }
    }
}

/// A CORS preflight from an origin that is not allowed gets no CORS headers (the browser then
/// refuses the call); it is recorded as a CORS rejection.
fn audit_preflight(state: &AppState, req: &Request) {
    let headers = req.headers();
    if !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        return;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return;
    };
    let origin = String::from_utf8_lossy(origin.as_bytes());
    if !state
        .config
        .cors_allowed_origins
        .iter()
        .any(|o| *o == origin)
    {
        state.auth.audit().record(
            authx_core::audit::AuditEvent::failure("cors_rejected")
                .with("origin", &origin)
                .with("path", req.uri().path()),
        );
    }
}

fn verdict(state: &AppState, req: &Request) -> Result<(), &'static str> {
    let headers = req.headers();
    // A browser sends each of these once. Two values are ambiguous (which one would a proxy or
    // another check believe?), so the request is refused, like a repeated session cookie.
    for (name, reason) in [
        (header::ORIGIN, "repeated Origin"),
        (header::REFERER, "repeated Referer"),
        (SEC_FETCH_SITE, "repeated Sec-Fetch-Site"),
    ] {
        if headers.get_all(&name).iter().nth(1).is_some() {
            return Err(reason);
        }
    }
    match headers.get(&SEC_FETCH_SITE).map(HeaderValue::as_bytes) {
        Some(v) if v.eq_ignore_ascii_case(b"cross-site") => return Err("cross-site request"),
        // Fetch Metadata is set by the browser itself and cannot be forged by a page. Pages
        // here send `Referrer-Policy: no-referrer`, under which browsers serialize the Origin of
        // a same-origin form POST as `null`; the browser's own same-origin verdict settles it.
        Some(v) if v.eq_ignore_ascii_case(b"same-origin") => return Ok(()),
        _ => {}
    }
    let trusted = &state.config.trusted_origins;
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().map_err(|_| "unreadable Origin")?;
        // Exact string match on the serialized origin: `null` and look-alike hosts never match.
        return if origin_of(origin)
            .is_some_and(|o| o == origin.to_ascii_lowercase() && trusted.contains(&o))
        {
            Ok(())
        } else {
            Err("untrusted Origin")
        };
    }
    if let Some(referer) = headers.get(header::REFERER) {
        let referer = referer.to_str().map_err(|_| "unreadable Referer")?;
        return match origin_of(referer) {
            Some(o) if trusted.contains(&o) => Ok(()),
            _ => Err("untrusted Referer"),
        };
    }
    Err("missing Origin and Referer")
}

/// An empty body, for 204 answers.
#[must_use]
pub fn empty(status: StatusCode) -> Response {
    (status, Body::empty()).into_response()
}

/// The rate-limit class of a request, if its endpoint is limited (SECURITY.md #73).
fn rate_class(
    limits: &RateLimits,
    method: &Method,
    path: &str,
    has_query: bool,
) -> Option<(&'static str, RateLimit)> {
    let post = *method == Method::POST;
    Some(match path {
        "/api/v1/auth/sign-in" | "/login" | "/federation/link" if post => {
            ("sign_in", limits.sign_in)
        }
        // A second factor's code is a credential too; a step-up stores a waiting sign-in.
        "/api/v1/auth/second-factor" | "/login/second-factor" if post => {
            ("sign_in", limits.sign_in)
        }
        "/login/step-up" => ("sign_in", limits.sign_in),
        // Each start stores a transaction: counted with sign-ins.
        p if p.starts_with("/federation/") && p.ends_with("/start") => ("sign_in", limits.sign_in),
        // An upstream's answer: the OpenID callback redeems a code upstream, the SAML ACS
        // stores the posted response and its finish step verifies (and decrypts) it. Counted
        // apart from sign-ins, with the same allowance.
        p if p.starts_with("/federation/")
            && (p.ends_with("/callback")
                || p.ends_with("/finish")
                || (post && p.ends_with("/acs"))) =>
        {
            ("federation_callback", limits.sign_in)
        }
        "/api/v1/auth/sign-up" | "/signup" if post => ("sign_up", limits.sign_up),
        "/api/v1/password/forgot" | "/forgot" if post => ("password_reset", limits.password_reset),
        // Each asks for a verification mail: counted with the reset requests.
        "/verify/resend" if post => ("password_reset", limits.password_reset),
        // A sign-in link is a mail to an address, like a reset link: the same allowance.
        "/magic-link" if post => ("password_reset", limits.password_reset),
        // A push authenticates the client and stores a request: counted with token requests.
        "/oauth2/token" | "/oauth2/par" if post => ("token", limits.token),
        // Dynamic client registration (RFC 7591, RFC 7592): each call presents a bearer token
        // and may store a client, so it gets the token endpoint's allowance, counted apart.
        p if p == "/oauth2/register" || p.starts_with("/oauth2/register/") => {
            ("registration", limits.token)
        }
        "/oauth2/introspect" if post => ("introspect", limits.introspect),
        "/oauth2/revoke" if post => ("revoke", limits.revoke),
        "/oauth2/device_authorization" if post => {
            ("device_authorization", limits.device_authorization)
        }
        // A code arrives in a POST, or in the query of the complete verification URI.
        "/device" if post || has_query => ("device_verification", limits.device_verification),
        _ => return None,
    })
}

/// Request rate limits per client address on the endpoints that take credentials or codes.
/// The address is the TCP peer, or the nearest untrusted `X-Forwarded-For` hop when the peer
/// is a configured trusted proxy (see [`client_context`]), so a client cannot pick its own key.
/// Runs before the body is read: a refused request costs one counter update.
async fn rate_limit(state: &AppState, req: Request, next: Next) -> Response {
    let Some((class, limit)) = rate_class(
        &state.config.rate_limits,
        req.method(),
        req.uri().path(),
        req.uri().query().is_some(),
    ) else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    let ctx = client_context(&parts, state);
    let req = Request::from_parts(parts, body);
    let who = rate_key(ctx.ip.as_deref());
    match state.limiter.check(class, &who, limit).await {
        Ok(None) => next.run(req).await,
        Ok(Some(retry_after)) => {
            state.auth.audit().record(
                authx_core::audit::AuditEvent::failure("rate_limited")
                    .with("class", class)
                    .with("key", &who),
            );
            state.metrics.rate_limited(class);
            too_many_requests(req.uri().path(), retry_after)
        }
        Err(e) => {
            tracing::warn!(error = %e, "rate limit store unavailable");
            unavailable(req.uri().path())
        }
    }
}

/// Whose allowance a request spends: the IPv4 address, or the /64 of an IPv6 address (one
/// subscriber usually holds a whole /64 and could otherwise rotate through it).
fn rate_key(ip: Option<&str>) -> String {
    match ip.and_then(|s| s.parse::<std::net::IpAddr>().ok()) {
        Some(std::net::IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Some(v4) => v4.to_string(),
        None => "-".to_owned(),
    }
}

/// The request's id, client address and user agent: the context of every audit event
/// recorded while it is served.
fn audit_context(
    state: &AppState,
    parts: &axum::http::request::Parts,
) -> authx_core::audit::RequestContext {
    let ctx = client_context(parts, state);
    let request_id = parts
        .headers
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    authx_core::audit::RequestContext {
        request_id,
        ip: ctx.ip,
        user_agent: ctx.user_agent,
        recorder: Some(state.auth.audit().clone()),
    }
}
