//! Configuration: a TOML file, overridden by `AUTHX_*` environment variables, then by flags;
//! validated once into a [`Config`] that is passed explicitly, never read from a global.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde::Deserialize;

mod federation;
mod rate_limits;
mod rules;
mod saml;

pub use federation::{
    ClaimsFile, FederationFile, ProviderFile, TokenEndpointAuth, UpstreamProvider,
};
pub use rate_limits::{RateLimitFile, RateLimits};
pub use rules::outbound_url_allowed;
pub(crate) use saml::apply_fetched_metadata;
pub use saml::{SamlProvider, SamlProviderFile};

/// The configuration file's shape. Unknown keys are refused so a typo never goes unnoticed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Format version; only 1 exists.
    pub version: Option<u32>,
    /// Address to listen on.
    pub listen: Option<String>,
    /// The public URL of this server, without a trailing slash.
    pub issuer: Option<String>,
    /// `sqlite://PATH` or `postgres://...`.
    pub database_url: Option<String>,
    /// `redis://...` for the shared session store and event bus.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and of the event channel (default `authx:`); instances that
    /// serve one deployment share it.
    pub redis_key_prefix: Option<String>,
    /// Origins allowed to send state-changing browser requests (the issuer's origin is always in).
    pub trusted_origins: Option<Vec<String>>,
    /// Reverse proxies whose `X-Forwarded-For` is believed (exact addresses).
    pub trusted_proxies: Option<Vec<String>>,
    /// Origins allowed to call the JSON API cross-origin with credentials (none by default).
    pub cors_allowed_origins: Option<Vec<String>>,
    /// Whether anyone may create an account.
    pub sign_up_enabled: Option<bool>,
    /// `text` or `json`.
    pub log_format: Option<String>,
    /// Session settings.
    pub session: Option<SessionFile>,
    /// Password settings.
    pub password: Option<PasswordFile>,
    /// Sign-in throttling.
    pub throttle: Option<ThrottleFile>,
    /// Database pool settings.
    pub database: Option<DatabaseFile>,
    /// OpenID provider settings.
    pub oauth: Option<OAuthFile>,
    /// Request rate limits per client address.
    pub rate_limit: Option<RateLimitFile>,
    /// The audit trail.
    pub audit: Option<AuditFile>,
    /// Upstream identity providers users may sign in with.
    pub federation: Option<FederationFile>,
    /// `[email]`: outgoing mail.
    pub email: Option<crate::mail::settings::EmailFile>,
    /// Whether an account must verify its address before it can finish signing in (default
    /// `false`; needs an `[email]` section).
    pub require_verified_email: Option<bool>,
    /// `[mfa]`: second factors.
    pub mfa: Option<MfaFile>,
    /// `[webauthn]`: passkeys.
    pub webauthn: Option<WebauthnFile>,
    /// `[registration]`: dynamic client registration (RFC 7591, RFC 7592).
    pub registration: Option<RegistrationFile>,
}

/// `[registration]`: dynamic client registration. Off unless `enabled = true`; even then a
/// client registers only with an initial access token an administrator issued.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationFile {
    /// Serve `/oauth2/register` (default false).
    pub enabled: Option<bool>,
}

/// `[webauthn]`: passkeys. Without the section, passkeys are on when the issuer's host is a
/// domain name (WebAuthn refuses an IP address as relying-party id), with the issuer's host
/// as RP id and the issuer's origin as the only origin.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebauthnFile {
    /// Whether passkeys are offered (default `true`).
    pub enabled: Option<bool>,
    /// The relying-party id: the issuer's host, or a parent domain of it (default: the
    /// issuer's host). Passkeys are bound to it: changing it orphans every passkey.
    pub rp_id: Option<String>,
    /// The origin browsers make passkey ceremonies from (default: the issuer's origin).
    pub origin: Option<String>,
}

/// `[mfa]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MfaFile {
    /// Who must have a second factor: `none` (default), `admins` or `everyone`. A user who
    /// must and has none enrols an authenticator app at the next sign-in.
    pub required_for: Option<String>,
}

/// `[audit]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFile {
    /// Days audit events are kept in the store before the maintenance loop deletes them
    /// (default 90).
    pub retention_days: Option<i64>,
}

/// A secret read from the configuration: never printed (`Debug` shows `[redacted]`).
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a value.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// `[oauth]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthFile {
    /// 32 bytes, base64: encrypts signing keys at rest. Required with PostgreSQL; with SQLite a
    /// key file is created next to the database when absent.
    pub key_encryption_key: Option<String>,
    /// `ES256` (default), `EdDSA` or `RS256`.
    pub access_token_alg: Option<String>,
    /// Refresh-token retry grace window in seconds (default 10; 0 turns it off).
    pub refresh_grace_secs: Option<i64>,
    /// Authorization code lifetime in seconds (default 60, at most 600).
    pub code_ttl_secs: Option<i64>,
    /// Rotate signing keys automatically after this many days.
    pub key_rotation_days: Option<i64>,
    /// A new key is published this many seconds before it signs (default 3600).
    pub key_publish_ahead_secs: Option<i64>,
    /// Lifetime of the access tokens a browser session mints at `POST /api/v1/auth/token`, in
    /// seconds (default 300, between 10 and 3600).
    pub session_token_ttl_secs: Option<i64>,
    /// Refuse authorization requests that were not pushed first (RFC 9126 §5; default false).
    pub require_pushed_authorization_requests: Option<bool>,
    /// Also fetch `private_key_jwt` clients' `jwks_uri` over plain http on loopback (tests and
    /// local development only; default false).
    pub client_jwks_insecure_http_loopback: Option<bool>,
    /// Bind access tokens (and public clients' refresh tokens) to the key of a DPoP proof
    /// (RFC 9449; default false). Turn it on only once every instance and every guard runs a
    /// version that checks `cnf`: an older verifier ignores the claim and would accept a
    /// bound token as a bearer token.
    pub dpop: Option<bool>,
    /// DPoP proofs must carry a server nonce (RFC 9449 §8, §9; default false).
    pub dpop_require_nonce: Option<bool>,
    /// Clock skew allowed for a DPoP proof's `iat`, in seconds (default 5, at most 60); a
    /// proof is accepted up to 60 s after it was made.
    pub dpop_leeway_secs: Option<i64>,
}

/// `[session]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionFile {
    /// Idle timeout in seconds.
    pub idle_timeout_secs: Option<i64>,
    /// Absolute lifetime in seconds.
    pub absolute_lifetime_secs: Option<i64>,
    /// Minimum seconds between activity writes.
    pub touch_interval_secs: Option<i64>,
    /// Cap on concurrent sessions per user.
    pub max_per_user: Option<u32>,
    /// Refuse a session presented by another user agent.
    pub bind_user_agent: Option<bool>,
    /// `Secure` cookies: `true`, `false`, or absent for "when the issuer is https".
    pub cookie_secure: Option<bool>,
    /// Entries in the in-process session cache (0 disables it).
    pub cache_capacity: Option<usize>,
}

/// `[password]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordFile {
    /// Minimum length in characters.
    pub min_length: Option<usize>,
    /// Argon2id memory in KiB.
    pub argon2_memory_kib: Option<u32>,
    /// Argon2id passes.
    pub argon2_iterations: Option<u32>,
    /// Argon2id lanes.
    pub argon2_parallelism: Option<u32>,
    /// Hashes computed at once.
    pub hash_concurrency: Option<usize>,
}

/// `[throttle]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleFile {
    /// Failures per account before delays start.
    pub account_free_failures: Option<u32>,
    /// Failures per client address before delays start.
    pub ip_free_failures: Option<u32>,
    /// Longest progressive delay in seconds.
    pub max_delay_secs: Option<i64>,
    /// Failures at which the account is locked for `lock_secs`.
    pub lock_after: Option<u32>,
    /// Lock duration in seconds.
    pub lock_secs: Option<i64>,
}

/// `[database]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseFile {
    /// Pool size.
    pub max_connections: Option<u32>,
    /// Seconds to wait for a pooled connection.
    pub acquire_timeout_secs: Option<u64>,
    /// PostgreSQL: seconds one call may take before it fails (and, repeated, opens the
    /// circuit breaker).
    pub statement_timeout_secs: Option<u64>,
    /// SQLite `synchronous`: `full` (default, durable on power loss) or `normal`.
    pub sqlite_synchronous: Option<String>,
}

/// Values that come from the environment or flags and override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `AUTHX_LISTEN` / `--listen`.
    pub listen: Option<String>,
    /// `AUTHX_ISSUER` / `--issuer`.
    pub issuer: Option<String>,
    /// `AUTHX_DATABASE_URL` / `--database-url`.
    pub database_url: Option<String>,
    /// `AUTHX_REDIS_URL` / `--redis-url`.
    pub redis_url: Option<String>,
    /// `AUTHX_TRUSTED_ORIGINS` / `--trusted-origins`, comma separated.
    pub trusted_origins: Option<String>,
    /// `AUTHX_SIGN_UP_ENABLED` / `--sign-up-enabled`.
    pub sign_up_enabled: Option<bool>,
    /// `AUTHX_LOG_FORMAT` / `--log-format`.
    pub log_format: Option<String>,
    /// `AUTHX_KEY_ENCRYPTION_KEY`.
    pub key_encryption_key: Option<String>,
}

/// Validated provider settings.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    /// The key-encryption key, when configured.
    pub key_encryption_key: Option<Vec<u8>>,
    /// Access-token algorithm.
    pub access_token_alg: authx_core::oauth::keys::SigningAlg,
    /// Refresh grace window.
    pub refresh_grace_secs: i64,
    /// Code lifetime.
    pub code_ttl_secs: i64,
    /// Automatic rotation period.
    pub rotate_every_secs: Option<i64>,
    /// Publication lead time of new keys.
    pub publish_ahead_secs: i64,
    /// Lifetime of session-minted access tokens.
    pub session_token_ttl_secs: i64,
    /// Whether authorization requests must be pushed (RFC 9126).
    pub require_pushed_authorization_requests: bool,
    /// Whether client `jwks_uri`s may be plain http on loopback.
    pub client_jwks_insecure_http_loopback: bool,
    /// Whether DPoP-bound tokens are issued (RFC 9449).
    pub dpop: bool,
    /// Whether DPoP proofs must carry a server nonce.
    pub dpop_require_nonce: bool,
    /// Clock skew allowed for a DPoP proof's `iat`.
    pub dpop_leeway_secs: i64,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Public URL, no trailing slash.
    pub issuer: String,
    /// Database URL.
    pub database_url: String,
    /// Redis URL, if any.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and of the event channel.
    pub redis_key_prefix: String,
    /// Exact origins (`scheme://host[:port]`) trusted for state-changing browser requests.
    pub trusted_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// Origins allowed by CORS on the JSON API.
    pub cors_allowed_origins: Vec<String>,
    /// Whether cookies carry `Secure` (and the `__Host-` prefix).
    pub cookie_secure: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// Core rules.
    pub auth: authx_core::auth::AuthPolicy,
    /// Argon2id parameters.
    pub hash_params: authx_core::password::HashParams,
    /// Hashes computed at once.
    pub hash_concurrency: usize,
    /// Store options.
    pub store: authx_store::ConnectOptions,
    /// Provider settings.
    pub oauth: OAuthSettings,
    /// Request rate limits.
    pub rate_limits: RateLimits,
    /// Seconds audit events are kept in the store.
    pub audit_retention_secs: i64,
    /// Upstream identity providers, in configuration order.
    pub federation: Vec<UpstreamProvider>,
    /// Upstream SAML identity providers, in configuration order; empty unless
    /// `[federation] enable_saml = true`.
    pub saml: Vec<SamlProvider>,
    /// Outgoing mail.
    pub email: crate::mail::settings::EmailSettings,
    /// Email verification: `None` without an `[email]` section (sign-up then signs in at once
    /// and answers `409` for a taken address).
    pub verification: Option<VerificationSettings>,
    /// Who must have a second factor.
    pub mfa_required_for: authx_core::auth::MfaRequirement,
    /// Passkeys: `None` when off.
    pub webauthn: Option<WebauthnSettings>,
    /// Whether dynamic client registration is served (`[registration] enabled`, default false).
    pub registration_enabled: bool,
}

/// Passkey settings (`[webauthn]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebauthnSettings {
    /// The relying-party id (`None`: the origin's host).
    pub rp_id: Option<String>,
    /// The origin of the ceremonies.
    pub origin: String,
    /// Whether the operator configured it (a bad explicit setting stops the start; a default
    /// that cannot work, an IP-address issuer, only turns passkeys off).
    pub explicit: bool,
}

/// What an `[email]` section turns on: verification links, and a sign-up that answers the
/// same for every address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerificationSettings {
    /// `require_verified_email`: an unverified account cannot finish signing in.
    pub require_verified_email: bool,
}

/// Lifetime of session-minted access tokens when none is configured.
pub const DEFAULT_SESSION_TOKEN_TTL_SECS: i64 = 300;
/// The shortest session-minted token lifetime accepted: shorter ones would have every open page
/// refresh several times a minute.
pub const MIN_SESSION_TOKEN_TTL_SECS: i64 = 10;
/// The longest session-minted token lifetime accepted: the token outlives a revoked session at an
/// API that does not introspect, so it stays short.
pub const MAX_SESSION_TOKEN_TTL_SECS: i64 = 3_600;

/// The Redis key prefix when none is configured.
pub const DEFAULT_REDIS_KEY_PREFIX: &str = "authx:";

/// A configuration problem, worded for the operator.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

fn bad(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

impl Config {
    /// Reads the file (if any), applies overrides and validates.
    ///
    /// # Errors
    /// A message naming the bad key and why.
    pub fn load(file: Option<&Path>, o: &Overrides) -> Result<Self, ConfigError> {
        let f: FileConfig = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
                toml::from_str(&text).map_err(|e| bad(format!("{}: {e}", path.display())))?
            }
            None => FileConfig::default(),
        };
        Self::from_parts(f, o)
    }

    /// Builds a configuration from an already-parsed file and overrides.
    ///
    /// # Errors
    /// A message naming the bad key and why.
    pub fn from_parts(f: FileConfig, o: &Overrides) -> Result<Self, ConfigError> {
        if let Some(v) = f.version {
            if v != 1 {
                return Err(bad(format!("version = {v} is not supported (expected 1)")));
            }
        }
        let listen_s = o
            .listen
            .clone()
            .or(f.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let listen: SocketAddr = listen_s.parse().map_err(|_| {
            bad(format!(
                "listen = {listen_s:?} is not an address like 127.0.0.1:8080"
            ))
        })?;
        let issuer = o
            .issuer
            .clone()
            .or(f.issuer)
            .unwrap_or_else(|| format!("http://{listen}"));
        let issuer_origin = origin_of(&issuer).ok_or_else(|| {
            bad(format!(
                "issuer = {issuer:?} must be an absolute http(s) URL"
            ))
        })?;
        let issuer = issuer.trim_end_matches('/').to_owned();
        let database_url = o
            .database_url
            .clone()
            .or(f.database_url)
            .unwrap_or_else(|| "sqlite://authx.db".to_owned());
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(bad(format!(
                "database_url must start with sqlite:// or postgres:// (got {:?})",
                redact_url(&database_url)
            )));
        }
        let redis_url = o
            .redis_url
            .clone()
            .or(f.redis_url)
            .filter(|s| !s.is_empty());
        if let Some(r) = &redis_url {
            if !(r.starts_with("redis://") || r.starts_with("rediss://")) {
                return Err(bad("redis_url must start with redis:// or rediss://"));
            }
        }
        let redis_key_prefix = f
            .redis_key_prefix
            .unwrap_or_else(|| DEFAULT_REDIS_KEY_PREFIX.to_owned());
        if redis_key_prefix.is_empty()
            || redis_key_prefix.len() > 64
            || redis_key_prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad(
                "redis_key_prefix must be 1 to 64 characters without spaces",
            ));
        }
        let mut trusted_origins = vec![issuer_origin];
        let listed = match &o.trusted_origins {
            Some(s) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            None => f.trusted_origins.unwrap_or_default(),
        };
        for origin in listed {
            let norm = exact_origin(&origin).ok_or_else(|| {
                bad(format!(
                    "trusted_origins: {origin:?} is not an origin like https://app.example.com"
                ))
            })?;
            if !trusted_origins.contains(&norm) {
                trusted_origins.push(norm);
            }
        }
        let mut cors_allowed_origins = Vec::new();
        for origin in f.cors_allowed_origins.unwrap_or_default() {
            let norm = exact_origin(&origin)
                .ok_or_else(|| bad(format!("cors_allowed_origins: {origin:?} is not an exact origin (no wildcards, no null)")))?;
            cors_allowed_origins.push(norm);
        }
        let trusted_proxies = f
            .trusted_proxies
            .unwrap_or_default()
            .iter()
            .map(|p| {
                p.parse()
                    .map_err(|_| bad(format!("trusted_proxies: {p:?} is not an IP address")))
            })
            .collect::<Result<Vec<IpAddr>, _>>()?;
        let log_format = match o.log_format.clone().or(f.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(bad(format!(
                    "log_format = {other:?}: use \"text\" or \"json\""
                )));
            }
        };

        let mut auth = authx_core::auth::AuthPolicy {
            sign_up_enabled: o.sign_up_enabled.or(f.sign_up_enabled).unwrap_or(true),
            ..authx_core::auth::AuthPolicy::default()
        };
        let s = f.session.unwrap_or_default();
        let sp = &mut auth.session;
        if let Some(v) = s.idle_timeout_secs {
            sp.idle_timeout_secs = positive("session.idle_timeout_secs", v)?;
        }
        if let Some(v) = s.absolute_lifetime_secs {
            sp.absolute_lifetime_secs = positive("session.absolute_lifetime_secs", v)?;
        }
        if let Some(v) = s.touch_interval_secs {
            sp.touch_interval_secs = positive("session.touch_interval_secs", v)?;
        }
        if sp.idle_timeout_secs > sp.absolute_lifetime_secs {
            return Err(bad(
                "session.idle_timeout_secs must not exceed session.absolute_lifetime_secs",
            ));
        }
        if sp.touch_interval_secs >= sp.idle_timeout_secs {
            return Err(bad(
                "session.touch_interval_secs must be shorter than session.idle_timeout_secs",
            ));
        }
        if let Some(0) = s.max_per_user {
            return Err(bad(
                "session.max_per_user must be at least 1 (omit it for no cap)",
            ));
        }
        sp.max_per_user = s.max_per_user;
        sp.bind_user_agent = s.bind_user_agent.unwrap_or(false);
        if let Some(c) = s.cache_capacity {
            auth.cache_capacity = c;
        }
        let cookie_secure = s
            .cookie_secure
            .unwrap_or_else(|| issuer.starts_with("https://"));

        let p = f.password.unwrap_or_default();
        if let Some(min) = p.min_length {
            if !(8..=64).contains(&min) {
                return Err(bad("password.min_length must be between 8 and 64"));
            }
            auth.password.min_chars = min;
        }
        let defaults = authx_core::password::HashParams::default();
        let hash_params = authx_core::password::HashParams {
            memory_kib: p.argon2_memory_kib.unwrap_or(defaults.memory_kib),
            iterations: p.argon2_iterations.unwrap_or(defaults.iterations),
            parallelism: p.argon2_parallelism.unwrap_or(defaults.parallelism),
        };
        if hash_params.memory_kib < 19_456
            || hash_params.iterations < 2
            || hash_params.parallelism < 1
        {
            return Err(bad(
                "password.argon2_*: at least memory 19456 KiB, 2 iterations, 1 lane (OWASP minimum)",
            ));
        }
        let cpus = std::thread::available_parallelism()
            .map(std::num::NonZero::get)
            .unwrap_or(2);
        let hash_concurrency = p.hash_concurrency.unwrap_or(cpus).max(1);

        let t = f.throttle.unwrap_or_default();
        let tp = &mut auth.throttle;
        if let Some(v) = t.account_free_failures {
            tp.account_free_failures = v;
        }
        if let Some(v) = t.ip_free_failures {
            tp.ip_free_failures = v;
        }
        if let Some(v) = t.max_delay_secs {
            tp.max_delay_secs = positive("throttle.max_delay_secs", v)?;
        }
        if let Some(v) = t.lock_after {
            if v == 0 || v > 100 {
                return Err(bad("throttle.lock_after must be between 1 and 100"));
            }
            tp.lock_after = v;
        }
        if let Some(v) = t.lock_secs {
            tp.lock_secs = positive("throttle.lock_secs", v)?;
        }

        let d = f.database.unwrap_or_default();
        let mut store = authx_store::ConnectOptions::default();
        if let Some(n) = d.max_connections {
            if n == 0 {
                return Err(bad("database.max_connections must be at least 1"));
            }
            store.max_connections = n;
        }
        if let Some(s) = d.acquire_timeout_secs {
            store.acquire_timeout = std::time::Duration::from_secs(s.max(1));
        }
        if let Some(s) = d.statement_timeout_secs {
            store.statement_timeout = std::time::Duration::from_secs(s.max(1));
        }
        store.sqlite_synchronous_full = match d.sqlite_synchronous.as_deref() {
            None | Some("full") => true,
            Some("normal") => false,
            Some(other) => {
                return Err(bad(format!(
                    "database.sqlite_synchronous = {other:?}: use \"full\" or \"normal\""
                )));
            }
        };

        let oa = f.oauth.unwrap_or_default();
        let kek_text = o.key_encryption_key.clone().or(oa.key_encryption_key);
        let key_encryption_key = match kek_text {
            Some(t) => Some(
                decode_kek(&t)
                    .ok_or_else(|| bad("key_encryption_key must be 32 bytes in base64"))?,
            ),
            None => None,
        };
        let access_token_alg = match oa.access_token_alg.as_deref() {
            None => authx_core::oauth::keys::SigningAlg::Es256,
            Some(a) => authx_core::oauth::keys::SigningAlg::parse(a).ok_or_else(|| {
                bad(format!(
                    "oauth.access_token_alg = {a:?}: use ES256, EdDSA or RS256"
                ))
            })?,
        };
        let refresh_grace_secs = oa.refresh_grace_secs.unwrap_or(10);
        if !(0..=60).contains(&refresh_grace_secs) {
            return Err(bad("oauth.refresh_grace_secs must be between 0 and 60"));
        }
        let code_ttl_secs = oa.code_ttl_secs.unwrap_or(60);
        if !(1..=600).contains(&code_ttl_secs) {
            return Err(bad("oauth.code_ttl_secs must be between 1 and 600"));
        }
        let rotate_every_secs = match oa.key_rotation_days {
            Some(d) if d >= 1 => Some(d * 86_400),
            Some(_) => return Err(bad("oauth.key_rotation_days must be at least 1")),
            None => None,
        };
        let publish_ahead_secs = oa.key_publish_ahead_secs.unwrap_or(3600);
        if publish_ahead_secs < 0 {
            return Err(bad("oauth.key_publish_ahead_secs must not be negative"));
        }
        let session_token_ttl_secs = oa
            .session_token_ttl_secs
            .unwrap_or(DEFAULT_SESSION_TOKEN_TTL_SECS);
        if !(MIN_SESSION_TOKEN_TTL_SECS..=MAX_SESSION_TOKEN_TTL_SECS)
            .contains(&session_token_ttl_secs)
        {
            return Err(bad(format!(
                "oauth.session_token_ttl_secs must be between {MIN_SESSION_TOKEN_TTL_SECS} and {MAX_SESSION_TOKEN_TTL_SECS}"
            )));
        }
        let dpop_leeway_secs = oa.dpop_leeway_secs.unwrap_or(5);
        if !(0..=60).contains(&dpop_leeway_secs) {
            return Err(bad("oauth.dpop_leeway_secs must be between 0 and 60"));
        }
        let dpop = oa.dpop.unwrap_or(false);
        let dpop_require_nonce = oa.dpop_require_nonce.unwrap_or(false);
        if dpop_require_nonce && !dpop {
            return Err(bad("oauth.dpop_require_nonce needs oauth.dpop = true"));
        }
        let oauth = OAuthSettings {
            key_encryption_key,
            access_token_alg,
            refresh_grace_secs,
            code_ttl_secs,
            rotate_every_secs,
            publish_ahead_secs,
            session_token_ttl_secs,
            require_pushed_authorization_requests: oa
                .require_pushed_authorization_requests
                .unwrap_or(false),
            client_jwks_insecure_http_loopback: oa
                .client_jwks_insecure_http_loopback
                .unwrap_or(false),
            dpop,
            dpop_require_nonce,
            dpop_leeway_secs,
        };

        let rate_limits = RateLimits::from_file(f.rate_limit.unwrap_or_default())?;
        let retention_days = f.audit.unwrap_or_default().retention_days.unwrap_or(90);
        if !(1..=3_650).contains(&retention_days) {
            return Err(bad("audit.retention_days must be between 1 and 3650"));
        }
        let audit_retention_secs = retention_days * 86_400;

        let fed = f.federation.unwrap_or_default();
        let federation = federation::federation_providers(fed.providers.unwrap_or_default())?;
        let oidc_names: Vec<&str> = federation.iter().map(|p| p.name.as_str()).collect();
        let saml = saml::saml_providers(
            fed.enable_saml.unwrap_or(false),
            fed.saml.unwrap_or_default(),
            &oidc_names,
        )?;
        let issuer_host = issuer.split_once("://").map_or("", |(_, r)| r);
        let require_verified_email = f.require_verified_email.unwrap_or(false);
        if require_verified_email && f.email.is_none() {
            return Err(bad(
                "require_verified_email needs an [email] section to mail the links",
            ));
        }
        let verification = f.email.is_some().then_some(VerificationSettings {
            require_verified_email,
        });
        let email = crate::mail::settings::EmailSettings::from_file(
            f.email.unwrap_or_default(),
            issuer_host.split('/').next().unwrap_or_default(),
        )
        .map_err(bad)?;

        let mfa_required_for = match f.mfa.unwrap_or_default().required_for.as_deref() {
            None => authx_core::auth::MfaRequirement::None,
            Some(s) => authx_core::auth::MfaRequirement::parse(s).ok_or_else(|| {
                bad(format!(
                    "mfa.required_for = {s:?}: use \"none\", \"admins\" or \"everyone\""
                ))
            })?,
        };

        let webauthn = match f.webauthn {
            Some(WebauthnFile {
                enabled: Some(false),
                ..
            }) => None,
            Some(w) => Some(WebauthnSettings {
                explicit: w.rp_id.is_some() || w.origin.is_some() || w.enabled.is_some(),
                rp_id: w.rp_id,
                origin: w.origin.unwrap_or_else(|| issuer.clone()),
            }),
            None => Some(WebauthnSettings {
                rp_id: None,
                origin: issuer.clone(),
                explicit: false,
            }),
        };

        let registration_enabled = f.registration.and_then(|r| r.enabled).unwrap_or(false);

        Ok(Self {
            registration_enabled,
            webauthn,
            mfa_required_for,
            email,
            verification,
            oauth,
            rate_limits,
            audit_retention_secs,
            federation,
            saml,
            listen,
            issuer,
            database_url,
            redis_url,
            redis_key_prefix,
            trusted_origins,
            trusted_proxies,
            cors_allowed_origins,
            cookie_secure,
            log_format,
            auth,
            hash_params,
            hash_concurrency,
            store,
        })
    }
}

/// Decodes a 32-byte key given in standard or URL-safe base64.
#[must_use]
pub fn decode_kek(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let t = text.trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(t)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t))
        .ok()?;
    (bytes.len() == 32).then_some(bytes)
}

fn positive(key: &str, v: i64) -> Result<i64, ConfigError> {
    if v > 0 {
        Ok(v)
    } else {
        Err(bad(format!("{key} must be a positive number of seconds")))
    }
}

/// The origin (`scheme://host[:port]`, lower-cased scheme and host) of an absolute http(s) URL.
#[must_use]
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() || authority.contains('@') || authority.contains(char::is_whitespace) {
        return None;
    }
    Some(format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

/// An origin given in configuration: exactly `scheme://host[:port]` with no path.
fn exact_origin(s: &str) -> Option<String> {
    let o = origin_of(s)?;
    let rest = s.split_once("://").map(|(_, r)| r)?;
    (!rest.contains('/') && !rest.contains('*')).then_some(o)
}

/// A database URL with any password removed, for messages.
#[must_use]
pub fn redact_url(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(_)) => match rest.split_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}:***@{host}")
            }
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests;
