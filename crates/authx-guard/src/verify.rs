//! Local verification of authx access tokens (RFC 9068) against the issuer's JWKS.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use authx_core::oauth::jwt;
use authx_core::oauth::keys::{Verifier, verifier_from_jwk};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::http::Http;

/// Longest token looked at; anything longer is refused unread.
pub const MAX_TOKEN_LEN: usize = jwt::MAX_JWT_LEN;
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
    /// The authentication context class of the user's sign-in (`urn:authx:acr:pwd`, or
    /// `urn:authx:acr:mfa` after a second factor); absent for client tokens.
    #[serde(default)]
    pub acr: Option<String>,
    /// The key the token is bound to (RFC 9449 §6: `cnf.jkt`): the guard then accepts it only
    /// under the `DPoP` scheme, with a proof by that key.
    #[serde(default)]
    pub cnf: Option<authx_core::oauth::dpop::Confirmation>,
}

impl jwt::Issued for Claims {
    fn issuer(&self) -> &str {
        &self.iss
    }
}

impl Claims {
    /// The thumbprint of the DPoP key the token is bound to, if it is bound.
    #[must_use]
    pub fn dpop_jkt(&self) -> Option<&str> {
        self.cnf.as_ref().and_then(|c| c.jkt.as_deref())
    }

    /// The granted scopes.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split(' ').filter(|s| !s.is_empty())
    }

    /// Whether `scope` was granted.
    #[must_use]
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope)
    }

    /// Whether the user's sign-in earned at least `acr` (see `authx_core::amr`): a token
    /// without `acr`, or with a value authx does not rank, does not.
    #[must_use]
    pub fn meets_acr(&self, acr: &str) -> bool {
        self.acr
            .as_deref()
            .is_some_and(|granted| authx_core::amr::acr_satisfies(granted, acr))
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
    /// A DPoP-bound token presented as a bearer token, or an unbound one under the `DPoP`
    /// scheme (RFC 9449 §7.1).
    WrongScheme,
    /// A DPoP-bound token with a proof by another key.
    WrongKey,
}

/// The issuer's published keys, refreshed on an unknown key id at most once per refetch
/// interval ([`JWKS_REFETCH_INTERVAL`] unless configured), one fetch at a time.
pub(crate) struct KeySet {
    jwks_uri: String,
    refetch_interval: Duration,
    keys: RwLock<HashMap<String, Arc<Verifier>>>,
    /// When the last fetch ended; held for the whole of a fetch, so fetches never overlap.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl KeySet {
    pub(crate) fn new(jwks_uri: String, refetch_interval: Duration) -> Self {
        Self {
            jwks_uri,
            refetch_interval,
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
        self.fetch_locked(&mut last, http).await
    }

    /// Fetches the JWKS while the caller holds `last_fetch`.
    async fn fetch_locked(
        &self,
        last: &mut Option<Instant>,
        http: &Http,
    ) -> Result<usize, crate::GuardError> {
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

    /// The key for `kid`, fetching the JWKS again if it is unknown and the last fetch ended at
    /// least the refetch interval ago.
    ///
    /// Single flight: the check and the fetch happen under one lock, and the key is looked up
    /// again once the lock is held, so requests that arrive while a fetch is under way wait
    /// for it and use its result instead of fetching again.
    async fn key(&self, kid: &str, http: &Http) -> Option<Arc<Verifier>> {
        if let Some(v) = self.get(kid) {
            return Some(v);
        }
        let mut last = self.last_fetch.lock().await;
        if let Some(v) = self.get(kid) {
            return Some(v);
        }
        if last.is_some_and(|t| t.elapsed() < self.refetch_interval) {
            return None;
        }
        if let Err(e) = self.fetch_locked(&mut last, http).await {
            tracing::warn!(error = %e, "cannot refresh the issuer's JWKS");
            // Count the failed attempt too, so unknown kids cannot hammer the issuer.
            *last = Some(Instant::now());
        }
        drop(last);
        self.get(kid)
    }
}

/// Verifies a compact JWS access token with the rules of `authx_core::oauth::jwt` (shape,
/// `typ: at+jwt`, the published key named by `kid` and that key's algorithm only, the
/// signature, the issuer), then the claims, audience and times with `leeway`.
pub(crate) async fn verify_jwt(
    token: &str,
    keys: &KeySet,
    http: &Http,
    issuer: &str,
    audience: &str,
    now: i64,
    leeway: i64,
) -> Result<Claims, TokenDefect> {
    let header = jwt::access_token_header(token).map_err(TokenDefect::from)?;
    let verifier = keys
        .key(&header.kid, http)
        .await
        .ok_or(TokenDefect::UnknownKey)?;
    let c: Claims =
        jwt::decode_verified(token, &header, &verifier, issuer).map_err(TokenDefect::from)?;
    check_claims(&c, issuer, audience, now, leeway)?;
    Ok(c)
}

impl From<jwt::JwsDefect> for TokenDefect {
    fn from(d: jwt::JwsDefect) -> Self {
        match d {
            jwt::JwsDefect::Malformed => Self::Malformed,
            jwt::JwsDefect::WrongType => Self::WrongType,
            jwt::JwsDefect::UnknownKey => Self::UnknownKey,
            jwt::JwsDefect::WrongAlgorithm => Self::WrongAlgorithm,
            jwt::JwsDefect::Invalid => Self::Invalid,
        }
    }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn good() -> Value {
        json!({
            "iss": "https://id.example.com",
            "sub": "user",
            "aud": "https://api.example.com",
            "exp": 1900,
            "iat": 1000,
            "jti": "j",
            "client_id": "app",
            "scope": "read",
        })
    }

    fn decode(v: &Value) -> Option<Claims> {
        let c: Claims = serde_json::from_value(v.clone()).ok()?;
        check_claims(
            &c,
            "https://id.example.com",
            "https://api.example.com",
            1000,
            0,
        )
        .ok()?;
        Some(c)
    }

    /// Claims the guard does not know (RFC 9068 allows them) are ignored, so an issuer can add
    /// one (`x_future`, another confirmation method in `cnf`) without older guards refusing
    /// its tokens; `acr` and `cnf.jkt` are known, and read.
    #[test]
    fn unknown_claims_are_accepted() {
        let plain = decode(&good()).unwrap();
        let mut more = good();
        more["x_future"] = "urn:example:mfa".into();
        assert_eq!(decode(&more).as_ref(), Some(&plain));
        more["cnf"] = json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"});
        let other_method = decode(&more).unwrap();
        assert_eq!(other_method.dpop_jkt(), None);
        more["cnf"] = json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"});
        assert_eq!(
            decode(&more).unwrap().dpop_jkt(),
            Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")
        );
        assert_eq!(plain.dpop_jkt(), None);
        let mut with_acr = good();
        with_acr["acr"] = "urn:authx:acr:mfa".into();
        let c = decode(&with_acr).unwrap();
        assert!(c.meets_acr("urn:authx:acr:mfa") && c.meets_acr("urn:authx:acr:pwd"));
        with_acr["acr"] = "urn:authx:acr:pwd".into();
        assert!(!decode(&with_acr).unwrap().meets_acr("urn:authx:acr:mfa"));
        with_acr["acr"] = "urn:example:loa:4".into();
        assert!(!decode(&with_acr).unwrap().meets_acr("urn:authx:acr:pwd"));
        assert!(!plain.meets_acr("urn:authx:acr:pwd"));
    }

    /// The claims the guard knows stay typed and required.
    #[test]
    fn known_claims_are_required_and_typed() {
        for required in ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"] {
            let mut c = good();
            c.as_object_mut().unwrap().remove(required);
            assert_eq!(decode(&c), None, "without {required}");
        }
        for (claim, wrong) in [
            ("sub", json!(7)),
            ("aud", json!([])),
            ("exp", json!("1900")),
            ("nbf", json!("900")),
            ("jti", Value::Null),
            ("scope", json!(["read"])),
            ("sid", json!(1)),
            ("auth_time", json!("1000")),
        ] {
            let mut c = good();
            c[claim] = wrong;
            assert_eq!(decode(&c), None, "{claim} of the wrong type");
        }
    }
}
