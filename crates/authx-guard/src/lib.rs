//! The authx guard: a tower layer and axum extractors that protect a resource server's routes
//! with authx access tokens (or, for same-site services, authx browser sessions), and that hear
//! of revocations within a fraction of a second instead of waiting for tokens to expire.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use authx_guard::{Claims, Guard, GuardConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let guard = Guard::start(
//!     GuardConfig::new("https://id.example.com", "https://api.example.com")
//!         // The API's own client credentials: they open the revocation feed.
//!         .credentials("https://api.example.com", std::env::var("API_SECRET")?),
//! )
//! .await?;
//! let app: Router = Router::new()
//!     .route("/orders", get(|c: Claims| async move { format!("orders of {}", c.sub) }))
//!     .route_layer(guard.layer().require_scope("orders:read"));
//! # Ok(()) }
//! ```
//!
//! How a request is checked:
//! - **JWT** (the default): the `Authorization: Bearer` token is verified locally against the
//!   issuer's JWKS (keys cached; an unknown `kid` refetches at most once a minute, and
//!   concurrent requests share one fetch), with the algorithm taken from the key and never from
//!   the token, `typ: at+jwt` (an ID token is not an access token), `iss`, `aud`,
//!   `exp`/`nbf`/`iat` with a leeway, and claims of the right JSON types (the same token rules
//!   as the issuer's, from `authx_core::oauth::jwt`). Then the deny-set built from the
//!   revocation feed is consulted.
//! - **Introspection** (RFC 7662): the issuer is asked, and the answer cached until the token
//!   expires or for [`GuardConfig::introspection_cache`], whichever is sooner.
//! - **Session**: the `authx_session` cookie is hashed and looked up in the shared session
//!   store ([`GuardConfig::sessions`]), for services on the same site as authx. Requests with
//!   unsafe methods need a trusted `Origin` (or, without one, an `X-CSRF-Token` header), and a
//!   session holds only the scopes the [`SessionCheck`] grants (none by default).
//!
//! The revocation feed: with [`GuardConfig::credentials`], the guard subscribes to the issuer's
//! `/api/v1/revocations` and keeps a bounded deny-set (token ids, sessions, refresh families,
//! subjects not-before) until the tokens concerned expire. If the feed has been silent for longer
//! than [`GuardConfig::staleness`], the guard fails closed (503) or falls back to introspection,
//! as [`GuardConfig::when_stale`] says.
//!
//! Errors follow RFC 6750: `401` with `WWW-Authenticate: Bearer error="invalid_token"`, `403`
//! with `error="insufficient_scope"` when a route needs a scope the token lacks.
//!
//! DPoP (RFC 9449): a token bound to a key (`cnf.jkt`) is accepted only as `Authorization:
//! DPoP` with a `DPoP` proof by that key, made for this request (method, and the URL as
//! [`GuardConfig::public_url`] or the `Host` header gives it), for this token (`ath`), recent
//! and never seen before by this process; anything else is `401` with a `DPoP` challenge.
//! Unbound tokens keep working as bearer tokens, and only as those.

mod deny;
mod dpop;
mod feed;
mod http;
mod layer;
mod session;
mod verify;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use authx_core::secret::TokenHash;
use serde_json::Value;

pub use layer::{GuardLayer, GuardService, Refusal};
pub use session::SessionCheck;
pub use verify::{Claims, JWKS_REFETCH_INTERVAL, MAX_TOKEN_LEN, TokenDefect};

/// How tokens are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Verify JWTs locally against the JWKS (fast; revocations come from the feed).
    Jwt,
    /// Ask the issuer's introspection endpoint (needs credentials).
    Introspection,
}

/// What to do when the revocation feed has been silent for longer than the staleness bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenStale {
    /// Refuse with `503` and `Retry-After` until the feed is back.
    FailClosed,
    /// Ask the introspection endpoint for each token until the feed is back.
    Introspect,
}

/// The guard's settings.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// The issuer, exactly as in its discovery document.
    pub issuer: String,
    /// This API's identifier: tokens must list it in `aud`.
    pub audience: String,
    /// The API's client credentials at the issuer (for the feed and introspection).
    pub credentials: Option<(String, String)>,
    /// How tokens are checked.
    pub mode: Mode,
    /// Clock leeway for `exp`, `nbf` and `iat` (default 30 s, at most 60 s).
    pub leeway: Duration,
    /// How long the feed may be silent before the guard stops trusting its deny-set (default
    /// 30 s).
    pub staleness: Duration,
    /// What happens then.
    pub when_stale: WhenStale,
    /// How long an introspection answer is reused at most (default 60 s; never past `exp`).
    pub introspection_cache: Duration,
    /// Most deny-set entries; beyond it the guard treats itself as stale (default 1,000,000).
    pub max_deny_entries: usize,
    /// Timeout of each call to the issuer (default 5 s).
    pub http_timeout: Duration,
    /// How long [`Guard::start`] waits for the feed's first replay (default 5 s).
    pub startup_wait: Duration,
    /// Check authx browser sessions against the shared store.
    pub sessions: Option<SessionCheck>,
    /// The least time between two JWKS fetches caused by unknown key ids (default
    /// [`JWKS_REFETCH_INTERVAL`], at least 1 s).
    pub jwks_refetch_interval: Duration,
    /// The API's public base URL as clients address it (`https://api.example.com`, with a
    /// path prefix if it has one): a DPoP proof's `htu` must be this followed by the request's
    /// path. Without it, the request's `Host` header is used, with `https` (plain `http` for a
    /// loopback host); set it behind a proxy that rewrites the host or the scheme.
    pub public_url: Option<String>,
    /// How recent a DPoP proof must be (default: made at most 60 s ago, 5 s of skew).
    pub dpop_proof: authx_core::oauth::dpop::ProofPolicy,
}

impl GuardConfig {
    /// JWT mode for `audience` at `issuer`, failing closed when the feed goes stale.
    #[must_use]
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            credentials: None,
            mode: Mode::Jwt,
            leeway: Duration::from_secs(30),
            staleness: Duration::from_secs(30),
            when_stale: WhenStale::FailClosed,
            introspection_cache: Duration::from_secs(60),
            max_deny_entries: 1_000_000,
            http_timeout: Duration::from_secs(5),
            startup_wait: Duration::from_secs(5),
            sessions: None,
            jwks_refetch_interval: JWKS_REFETCH_INTERVAL,
            public_url: None,
            dpop_proof: authx_core::oauth::dpop::ProofPolicy::default(),
        }
    }

    /// The API's public base URL, which DPoP proofs name (see [`GuardConfig::public_url`]).
    #[must_use]
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into());
        self
    }

    /// The API's client credentials: they open the revocation feed and introspection.
    #[must_use]
    pub fn credentials(mut self, client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.credentials = Some((client_id.into(), secret.into()));
        self
    }

    /// How tokens are checked.
    #[must_use]
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The staleness bound and what happens beyond it.
    #[must_use]
    pub fn when_stale(mut self, staleness: Duration, then: WhenStale) -> Self {
        self.staleness = staleness;
        self.when_stale = then;
        self
    }

    /// Also accept the `authx_session` cookie, checked against the shared session store.
    #[must_use]
    pub fn sessions(mut self, check: SessionCheck) -> Self {
        self.sessions = Some(check);
        self
    }

    /// The least time between two JWKS fetches caused by unknown key ids (at least 1 s). A
    /// token signed with a key the issuer has just started using waits at most this long to
    /// be accepted; a lower value lets unknown key ids cause more fetches at the issuer.
    #[must_use]
    pub fn jwks_refetch_interval(mut self, interval: Duration) -> Self {
        self.jwks_refetch_interval = interval.max(Duration::from_secs(1));
        self
    }

    /// Clock leeway (capped at 60 s).
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway.min(Duration::from_secs(60));
        self
    }
}

/// Why the guard could not start.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The configuration cannot work.
    #[error("guard configuration: {0}")]
    Config(String),
    /// The issuer could not be reached or answered nonsense.
    #[error("issuer: {0}")]
    Issuer(String),
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
// Held once per request; boxing the claims would change the public pattern `Token(c)`.
#[allow(clippy::large_enum_variant)]
pub enum Identity {
    /// An access token: a bearer token, or a DPoP-bound one whose proof was checked.
    Token(Claims),
    /// An authx browser session.
    Session {
        /// The user.
        user_id: String,
        /// The session.
        session_id: String,
        /// The scopes the guard grants to sessions ([`SessionCheck::grant_scopes`]).
        scopes: Vec<String>,
    },
}

impl Identity {
    /// The subject: the user id, or `client:<id>` for a client on its own behalf.
    #[must_use]
    pub fn subject(&self) -> &str {
        match self {
            Self::Token(c) => &c.sub,
            Self::Session { user_id, .. } => user_id,
        }
    }

    /// Whether `scope` is granted: by the token, or, for a browser session, by the guard's
    /// configuration ([`SessionCheck::grant_scopes`]; none by default, so a route that requires
    /// a scope needs a token).
    #[must_use]
    pub fn has_scope(&self, scope: &str) -> bool {
        match self {
            Self::Token(c) => c.has_scope(scope),
            Self::Session { scopes, .. } => scopes.iter().any(|s| s == scope),
        }
    }
}

/// A running guard; cheap to clone.
#[derive(Clone)]
pub struct Guard {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("issuer", &self.shared.config.issuer)
            .field("audience", &self.shared.config.audience)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    pub(crate) config: GuardConfig,
    pub(crate) http: http::Http,
    pub(crate) keys: verify::KeySet,
    pub(crate) introspection_endpoint: Option<String>,
    pub(crate) feed_url: String,
    pub(crate) deny: RwLock<deny::DenySet>,
    pub(crate) feed: Mutex<feed::FeedState>,
    pub(crate) caught_up: tokio::sync::Notify,
    introspected: Mutex<HashMap<TokenHash, (Claims, i64)>>,
    last_prune: Mutex<Instant>,
    /// DPoP proofs seen recently (replay).
    pub(crate) seen_proofs: dpop::SeenProofs,
}

/// Most cached introspection answers.
const INTROSPECTION_CACHE_ENTRIES: usize = 10_000;

impl Shared {
    /// Called for every event: cached introspection answers may now be wrong.
    pub(crate) fn on_event(&self) {
        if let Ok(mut c) = self.introspected.lock() {
            c.clear();
        }
    }
}

fn now_secs() -> i64 {
    authx_core::clock::Clock::now(&authx_core::clock::SystemClock).secs()
}

impl Guard {
    /// Reads the issuer's discovery document and JWKS, subscribes to the revocation feed when
    /// credentials are given, and waits (up to [`GuardConfig::startup_wait`]) for its replay.
    ///
    /// # Errors
    /// An unusable configuration (plain `http` to anything but loopback, introspection without
    /// credentials), an unreachable issuer, or a discovery document for another issuer.
    pub async fn start(config: GuardConfig) -> Result<Self, GuardError> {
        let issuer = config.issuer.trim_end_matches('/').to_owned();
        if !http::acceptable_url(&issuer) {
            return Err(GuardError::Config(format!(
                "issuer {issuer} must be https (plain http only to a loopback address)"
            )));
        }
        if config.audience.is_empty() {
            return Err(GuardError::Config("audience is required".into()));
        }
        if config.credentials.is_none()
            && (config.mode == Mode::Introspection || config.when_stale == WhenStale::Introspect)
        {
            return Err(GuardError::Config(
                "introspection needs the API's client credentials".into(),
            ));
        }
        let http = http::Http::new(config.http_timeout)?;
        let discovery: Value = http
            .get_json(&format!("{issuer}/.well-known/openid-configuration"))
            .await?;
        if discovery.get("issuer").and_then(Value::as_str) != Some(config.issuer.as_str()) {
            return Err(GuardError::Issuer(
                "the discovery document names another issuer".into(),
            ));
        }
        let endpoint = |name: &str| -> Result<Option<String>, GuardError> {
            match discovery.get(name).and_then(Value::as_str) {
                None => Ok(None),
                Some(u) if http::acceptable_url(u) => Ok(Some(u.to_owned())),
                Some(u) => Err(GuardError::Issuer(format!("{name} {u} is not https"))),
            }
        };
        let jwks_uri = endpoint("jwks_uri")?
            .ok_or_else(|| GuardError::Issuer("discovery has no jwks_uri".into()))?;
        let introspection_endpoint = endpoint("introspection_endpoint")?;
        let keys = verify::KeySet::new(
            jwks_uri,
            config.jwks_refetch_interval.max(Duration::from_secs(1)),
        );
        keys.fetch(&http).await?;
        let shared = Arc::new(Shared {
            feed_url: format!("{issuer}/api/v1/revocations"),
            config,
            http,
            keys,
            introspection_endpoint,
            deny: RwLock::new(deny::DenySet::default()),
            feed: Mutex::new(feed::FeedState::default()),
            caught_up: tokio::sync::Notify::new(),
            introspected: Mutex::new(HashMap::new()),
            last_prune: Mutex::new(Instant::now()),
            seen_proofs: dpop::SeenProofs::default(),
        });
        if let Some((id, secret)) = shared.config.credentials.clone() {
            let notified = shared.caught_up.notified();
            tokio::spawn(feed::run(Arc::downgrade(&shared), id, secret));
            if tokio::time::timeout(shared.config.startup_wait, notified)
                .await
                .is_err()
            {
                tracing::warn!("the revocation feed has not caught up yet; the guard is stale");
            }
        } else {
            tracing::warn!(
                "no credentials: the guard does not hear revocations, and a revoked token \
                 stays valid here until it expires"
            );
        }
        Ok(Self { shared })
    }

    /// A layer that checks every request and puts its [`Identity`] in the request extensions.
    #[must_use]
    pub fn layer(&self) -> GuardLayer {
        GuardLayer::new(self.clone())
    }

    /// Whether the deny-set is trustworthy now: the feed caught up at least once, spoke within
    /// the staleness bound, sent no event this guard could not read, and the deny-set is within
    /// its size bound. Always `true` without credentials (no feed is expected).
    #[must_use]
    pub fn is_fresh(&self) -> bool {
        if self.shared.config.credentials.is_none() {
            return true;
        }
        let feed_ok = self.shared.feed.lock().is_ok_and(|f| {
            f.caught_up_once
                && !f.blocked
                && f.last_contact
                    .is_some_and(|t| t.elapsed() <= self.shared.config.staleness)
        });
        let size_ok = self
            .shared
            .deny
            .read()
            .is_ok_and(|d| d.len() <= self.shared.config.max_deny_entries);
        feed_ok && size_ok
    }

    /// The feed position up to which every event has been applied, and how many were applied.
    #[must_use]
    pub fn feed_position(&self) -> (i64, u64) {
        self.shared
            .feed
            .lock()
            .map_or((0, 0), |f| (f.position, f.applied))
    }

    /// Checks a bearer token (RFC 6750): a token bound to a DPoP key is refused, since it is
    /// valid only with a proof by that key ([`Guard::identify_request`] checks those).
    ///
    /// # Errors
    /// The refusal to send.
    pub async fn check_bearer(&self, token: &str) -> Result<Claims, Refusal> {
        let claims = self.check_token(token).await?;
        if claims.dpop_jkt().is_some() {
            // RFC 9449 §7.1: a bound token is worth nothing without its key.
            return Err(Refusal::InvalidDpopToken(TokenDefect::WrongScheme));
        }
        Ok(claims)
    }

    /// Verifies a token (signature, claims, revocation), whether it is bound to a key or not.
    pub(crate) async fn check_token(&self, token: &str) -> Result<Claims, Refusal> {
        let now = now_secs();
        self.prune(now);
        let fresh = self.is_fresh();
        let introspect = match (self.shared.config.mode, fresh) {
            (Mode::Introspection, _) => true,
            (Mode::Jwt, true) => false,
            (Mode::Jwt, false) => match self.shared.config.when_stale {
                WhenStale::FailClosed => return Err(Refusal::Unavailable),
                WhenStale::Introspect => true,
            },
        };
        let claims = if introspect {
            self.introspect(token, now, fresh).await?
        } else {
            let s = &self.shared;
            verify::verify_jwt(
                token,
                &s.keys,
                &s.http,
                &s.config.issuer,
                &s.config.audience,
                now,
                leeway_secs(&s.config),
            )
            .await
            .map_err(Refusal::InvalidToken)?
        };
        let denied = self.shared.deny.read().map_or(true, |d| d.denies(&claims));
        if denied {
            return Err(Refusal::InvalidToken(TokenDefect::Revoked));
        }
        Ok(claims)
    }

    async fn introspect(&self, token: &str, now: i64, use_cache: bool) -> Result<Claims, Refusal> {
        let s = &self.shared;
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(Refusal::InvalidToken(TokenDefect::Malformed));
        }
        let key = TokenHash::of(token.as_bytes());
        if use_cache {
            let hit = s
                .introspected
                .lock()
                .ok()
                .and_then(|c| c.get(&key).filter(|(_, until)| *until > now).cloned());
            if let Some((claims, _)) = hit {
                return Ok(claims);
            }
        }
        let (Some(url), Some((id, secret))) = (&s.introspection_endpoint, &s.config.credentials)
        else {
            return Err(Refusal::Unavailable);
        };
        let res = s
            .http
            .client
            .post(url)
            .header(reqwest::header::AUTHORIZATION, http::basic_auth(id, secret))
            .form(&[("token", token)])
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "introspection failed");
                Refusal::Unavailable
            })?;
        let body: Value = http::read_json(url, res).await.map_err(|e| {
            tracing::warn!(error = %e, "introspection failed");
            Refusal::Unavailable
        })?;
        if body.get("active") != Some(&Value::Bool(true)) {
            return Err(Refusal::InvalidToken(TokenDefect::Revoked));
        }
        let claims: Claims = serde_json::from_value(body)
            .map_err(|_| Refusal::InvalidToken(TokenDefect::Invalid))?;
        verify::check_claims(
            &claims,
            &s.config.issuer,
            &s.config.audience,
            now,
            leeway_secs(&s.config),
        )
        .map_err(Refusal::InvalidToken)?;
        let ttl = i64::try_from(s.config.introspection_cache.as_secs()).unwrap_or(60);
        if let Ok(mut c) = s.introspected.lock() {
            if c.len() >= INTROSPECTION_CACHE_ENTRIES {
                c.retain(|_, (_, until)| *until > now);
                if c.len() >= INTROSPECTION_CACHE_ENTRIES {
                    c.clear();
                }
            }
            c.insert(
                key,
                (claims.clone(), claims.exp.min(now.saturating_add(ttl))),
            );
        }
        Ok(claims)
    }

    /// Forgets deny-set entries whose tokens have expired, at most once a minute.
    fn prune(&self, now: i64) {
        let due = self.shared.last_prune.lock().is_ok_and(|mut t| {
            if t.elapsed() >= Duration::from_secs(60) {
                *t = Instant::now();
                true
            } else {
                false
            }
        });
        if due {
            if let Ok(mut d) = self.shared.deny.write() {
                d.prune(now);
            }
        }
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }
}

fn leeway_secs(c: &GuardConfig) -> i64 {
    i64::try_from(c.leeway.min(Duration::from_secs(60)).as_secs()).unwrap_or(60)
}
