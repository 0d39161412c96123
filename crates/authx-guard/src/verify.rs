//! Local verification of authx access tokens (RFC 9068) against the issuer's JWKS.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use authx_core::oauth::keys::{Verifier, verifier_from_jwk};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::http::Http;

/// Longest token looked at; anything longer is refused unread.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// The least time between two JWKS fetches caused by unknown key ids.
pub const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// The claims of a verified access token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// The user, or `client:<client_id>` for a client acting on its own behalf.
    pub sub: String,
    /// Audiences.
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    #[serde(default)]
    pub nbf: Option<i64>,
    /// Token id.
    pub jti: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// Granted scopes, space-delimited.
    #[serde(default)]
    pub scope: String,
    /// The browser session behind the grant.
    #[serde(default)]
    pub sid: Option<String>,
    /// The refresh-token family the token came from.
    #[serde(default)]
    pub fid: Option<String>,
    /// When the user authenticated.
    #[serde(default)]
    pub auth_time: Option<i64>,
}

impl Claims {
    /// The granted scopes.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split(' ').filter(|s| !s.is_empty())
    }

    /// Whether `scope` was granted.
    #[must_use]
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope)
    }

    /// Whether a client acting on its own behalf (client credentials) holds the token, rather
    /// than a user.
    #[must_use]
    pub fn is_client(&self) -> bool {
        self.sub.starts_with("client:")
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Aud {
        One(String),
        Many(Vec<String>),
    }
    let v = match Aud::deserialize(d)? {
        Aud::One(s) => vec![s],
        Aud::Many(v) => v,
    };
    if v.is_empty() || v.iter().any(String::is_empty) {
        return Err(serde::de::Error::custom(
            "aud must name at least one audience",
        ));
    }
    Ok(v)
}

/// Why a token was refused (kept for logs; the response never says more than `invalid_token`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenDefect {
    /// Not a compact JWS of sane size.
    Malformed,
    /// Not `typ: at+jwt` (an ID token, for example).
    WrongType,
    /// No `kid`, or one the issuer does not publish.
    UnknownKey,
    /// `alg` differs from the key's own algorithm.
    WrongAlgorithm,
    /// Bad signature, wrong issuer, or claims of the wrong shape.
    Invalid,
    /// Expired, not yet valid, or issued in the future.
    Expired,
    /// Not for this API.
    WrongAudience,
    /// Revoked (the revocation feed said so, or introspection did).
    Revoked,
}

/// The issuer's published keys, refreshed on an unknown key id at most once a minute.
pub(crate) struct KeySet {
    jwks_uri: String,
    keys: RwLock<HashMap<String, Arc<Verifier>>>,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl KeySet {
    pub(crate) fn new(jwks_uri: String) -> Self {
        Self {
            jwks_uri,
            keys: RwLock::new(HashMap::new()),
            last_fetch: tokio::sync::Mutex::new(None),
        }
    }

    fn get(&self, kid: &str) -> Option<Arc<Verifier>> {
        self.keys.read().ok()?.get(kid).cloned()
    }

    /// Fetches the JWKS now.
    pub(crate) async fn fetch(&self, http: &Http) -> Result<usize, crate::GuardError> {
        let mut last = self.last_fetch.lock().await;
        let set: Value = http.get_json(&self.jwks_uri).await?;
        let mut keys = HashMap::new();
        for jwk in set
            .get("keys")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            // Only signature keys with their own algorithm; a key is used with that one only.
            if jwk
                .get("use")
                .and_then(Value::as_str)
                .is_some_and(|u| u != "sig")
            {
                continue;
            }
            let Some(kid) = jwk.get("kid").and_then(Value::as_str) else {
                continue;
            };
            if let Some(v) = verifier_from_jwk(jwk) {
                keys.insert(kid.to_owned(), Arc::new(v));
            }
        }
        let n = keys.len();
        if let Ok(mut k) = self.keys.write() {
            *k = keys;
        }
        *last = Some(Instant::now());
        tracing::debug!(keys = n, "fetched the issuer's JWKS");
        Ok(n)
    }

    /// The key for `kid`, fetching the JWKS again if it is unknown and the last fetch is more
    /// than [`JWKS_REFETCH_INTERVAL`] ago.
    async fn key(&self, kid: &str, http: &Http) -> Option<Arc<Verifier>> {
        if let Some(v) = self.get(kid) {
            return Some(v);
        }
        let due = {
            let last = self.last_fetch.lock().await;
            last.is_none_or(|t| t.elapsed() >= JWKS_REFETCH_INTERVAL)
        };
        if due {
            if let Err(e) = self.fetch(http).await {
                tracing::warn!(error = %e, "cannot refresh the issuer's JWKS");
                // Count the failed attempt too, so unknown kids cannot hammer the issuer.
                *self.last_fetch.lock().await = Some(Instant::now());
            }
            return self.get(kid);
        }
        None
    }
}

/// Verifies a compact JWS access token: signature under the published key named by `kid` and
/// that key's algorithm only, `typ: at+jwt`, issuer, audience, and times with `leeway`.
pub(crate) async fn verify_jwt(
    token: &str,
    keys: &KeySet,
    http: &Http,
    issuer: &str,
    audience: &str,
    now: i64,
    leeway: i64,
) -> Result<Claims, TokenDefect> {
    if token.len() > MAX_TOKEN_LEN
        || !token.is_ascii()
        || token.bytes().filter(|b| *b == b'.').count() != 2
    {
        return Err(TokenDefect::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenDefect::Malformed)?;
    let typ_ok = header.typ.as_deref().is_some_and(|t| {
        t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
    });
    if !typ_ok {
        return Err(TokenDefect::WrongType);
    }
    // `jwk`, `jku`, `x5u` and `x5c` in the header are never looked at: keys come from the JWKS.
    let kid = header.kid.as_deref().ok_or(TokenDefect::UnknownKey)?;
    if kid.is_empty() || kid.len() > 256 {
        return Err(TokenDefect::UnknownKey);
    }
    let verifier = keys.key(kid, http).await.ok_or(TokenDefect::UnknownKey)?;
    if header.alg != verifier.alg.jwt_algorithm() {
        return Err(TokenDefect::WrongAlgorithm);
    }
    let mut v = jsonwebtoken::Validation::new(verifier.alg.jwt_algorithm());
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    v.set_issuer(&[issuer]);
    let c = jsonwebtoken::decode::<Claims>(token, &verifier.key, &v)
        .map_err(|_| TokenDefect::Invalid)?
        .claims;
    check_claims(&c, issuer, audience, now, leeway)?;
    Ok(c)
}

/// The checks that do not need the signature: issuer, times, audience, required values.
pub(crate) fn check_claims(
    c: &Claims,
    issuer: &str,
    audience: &str,
    now: i64,
    leeway: i64,
) -> Result<(), TokenDefect> {
    if c.iss != issuer || c.sub.is_empty() || c.jti.is_empty() || c.client_id.is_empty() {
        return Err(TokenDefect::Invalid);
    }
    if c.exp.saturating_add(leeway) <= now
        || c.iat.saturating_sub(leeway) > now
        || c.nbf.is_some_and(|nbf| nbf.saturating_sub(leeway) > now)
    {
        return Err(TokenDefect::Expired);
    }
    if !c.aud.iter().any(|a| a == audience) {
        return Err(TokenDefect::WrongAudience);
    }
    Ok(())
}
