//! Validation of an upstream ID token (OIDC Core §3.1.3.7) against the upstream's keys.
//!
//! # Security
//! The algorithm comes from the upstream key, never from the token, and only asymmetric
//! algorithms exist (RFC 8725 §3.1).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::Value;

use crate::Timestamp;
use crate::oauth::jwks::KeyedJwsError;
pub use crate::oauth::jwks::PublicKeys as UpstreamKeys;
use crate::secret::ct_eq;

/// Longest ID token looked at (SECURITY.md #50).
pub const MAX_ID_TOKEN_LEN: usize = 8 * 1024;

/// Longest `sub` accepted (OIDC Core §2: at most 255 ASCII characters).
pub const MAX_SUBJECT_LEN: usize = 255;

/// Why an upstream ID token was refused (OIDC Core §3.1.3.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    /// Not a compact JWS of acceptable size, or claims of the wrong JSON type.
    #[error("the ID token is malformed")]
    Malformed,
    /// No upstream key has the token's `kid` (the caller may refetch the key set once).
    #[error("the ID token is signed with an unknown key")]
    UnknownKey,
    /// The header's algorithm is not the key's, or not an allowed one.
    #[error("the ID token's algorithm is not allowed for its key")]
    Algorithm,
    /// The signature does not verify.
    #[error("the ID token's signature is invalid")]
    Signature,
    /// `iss` is not the expected issuer.
    #[error("the ID token comes from another issuer")]
    Issuer,
    /// `aud` does not contain this client.
    #[error("the ID token is not meant for this client")]
    Audience,
    /// Several audiences without `azp`, or an `azp` naming another client.
    #[error("the ID token's authorized party is wrong")]
    AuthorizedParty,
    /// `exp` has passed.
    #[error("the ID token has expired")]
    Expired,
    /// `iat` is in the future or too far in the past, or `nbf` is in the future.
    #[error("the ID token's issue time is out of range")]
    IssuedAt,
    /// `nonce` is missing or differs from the one sent.
    #[error("the ID token's nonce does not match")]
    Nonce,
    /// `at_hash` does not match the access token.
    #[error("the ID token's at_hash does not match the access token")]
    AtHash,
    /// `sub` is empty or too long.
    #[error("the ID token's subject is invalid")]
    Subject,
}

/// What the ID token must say.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    /// The configured issuer, compared exactly.
    pub issuer: &'a str,
    /// This relying party's client id at the upstream.
    pub client_id: &'a str,
    /// The nonce of the transaction.
    pub nonce: &'a str,
    /// The access token that came with the ID token, for `at_hash`.
    pub access_token: Option<&'a str>,
    /// The time now.
    pub now: Timestamp,
    /// Clock skew allowed, in seconds (at most 60, SECURITY.md #50).
    pub leeway_secs: i64,
    /// Oldest acceptable `iat`, in seconds before now.
    pub max_age_secs: i64,
}

/// A validated upstream ID token.
#[derive(Debug, Clone)]
pub struct VerifiedIdToken {
    /// The upstream subject.
    pub subject: String,
    /// Every claim, for the configured claim mapping.
    pub claims: serde_json::Map<String, Value>,
}

/// `aud`: one string or a non-empty array of strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// The claims every ID token has, with their JSON types enforced: `exp` as a string is refused,
/// not ignored (CVE-2026-25537), and `aud` of any other shape is refused (CVE-2020-26160).
#[derive(Deserialize)]
struct RequiredClaims {
    iss: String,
    sub: String,
    aud: Audience,
    exp: i64,
    iat: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    at_hash: Option<String>,
}

/// Validates an upstream ID token per OIDC Core §3.1.3.7: size and shape, a key from the
/// upstream's set whose algorithm equals the header's, the signature, `iss`, `aud` (and `azp`
/// with several audiences), `exp`, `iat` and `nbf` against the injected time, `nonce`, and
/// `at_hash` when present. Header `jwk`, `jku`, `x5u` and `x5c` are ignored; `kid` is only a
/// lookup key.
///
/// # Errors
/// The first check that failed.
pub fn verify_id_token(
    token: &str,
    keys: &UpstreamKeys,
    expected: &Expected<'_>,
) -> Result<VerifiedIdToken, IdTokenError> {
    if token.len() > MAX_ID_TOKEN_LEN || token.bytes().filter(|b| *b == b'.').count() != 2 {
        return Err(IdTokenError::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| IdTokenError::Malformed)?;
    // An access token is not an ID token (RFC 8725 §3.12).
    if header
        .typ
        .as_deref()
        .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
    {
        return Err(IdTokenError::Malformed);
    }
    let (c, verifier) = keys
        .verify::<RequiredClaims>(token, &header)
        .map_err(|e| match e {
            KeyedJwsError::Algorithm => IdTokenError::Algorithm,
            KeyedJwsError::UnknownKey => IdTokenError::UnknownKey,
            KeyedJwsError::Signature => IdTokenError::Signature,
            KeyedJwsError::Malformed => IdTokenError::Malformed,
        })?;
    if c.iss != expected.issuer {
        return Err(IdTokenError::Issuer);
    }
    let audiences: Vec<&str> = match &c.aud {
        Audience::One(a) => vec![a.as_str()],
        Audience::Many(list) => list.iter().map(String::as_str).collect(),
    };
    if !audiences.contains(&expected.client_id) {
        return Err(IdTokenError::Audience);
    }
    match c.azp.as_deref() {
        Some(azp) if azp != expected.client_id => return Err(IdTokenError::AuthorizedParty),
        None if audiences.len() > 1 => return Err(IdTokenError::AuthorizedParty),
        _ => {}
    }
    let now = expected.now.secs();
    let leeway = expected.leeway_secs.clamp(0, 60);
    if c.exp + leeway <= now {
        return Err(IdTokenError::Expired);
    }
    if c.iat - leeway > now || c.iat < now - expected.max_age_secs - leeway {
        return Err(IdTokenError::IssuedAt);
    }
    if c.nbf.is_some_and(|nbf| nbf - leeway > now) {
        return Err(IdTokenError::IssuedAt);
    }
    if !c
        .nonce
        .as_deref()
        .is_some_and(|n| ct_eq(n.as_bytes(), expected.nonce.as_bytes()))
    {
        return Err(IdTokenError::Nonce);
    }
    if let Some(at_hash) = c.at_hash.as_deref() {
        let Some(access_token) = expected.access_token else {
            return Err(IdTokenError::AtHash);
        };
        let want = crate::oauth::jwt::at_hash(access_token, verifier.alg);
        if !ct_eq(want.as_bytes(), at_hash.as_bytes()) {
            return Err(IdTokenError::AtHash);
        }
    }
    if c.sub.is_empty() || c.sub.len() > MAX_SUBJECT_LEN || c.sub.chars().any(|ch| ch.is_control())
    {
        return Err(IdTokenError::Subject);
    }
    // The signature held, so the payload is the one the upstream signed; read it again whole
    // for the claim mapping.
    let claims = token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|bytes| serde_json::from_slice::<serde_json::Map<String, Value>>(&bytes).ok())
        .ok_or(IdTokenError::Malformed)?;
    Ok(VerifiedIdToken {
        subject: c.sub,
        claims,
    })
}

#[cfg(test)]
pub(super) mod tests;
