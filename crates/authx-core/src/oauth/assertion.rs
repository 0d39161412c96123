//! `private_key_jwt` client authentication (RFC 7523 §2.2 and §3, OIDC Core §9): the rules a
//! client's keys must meet at registration, and the checks of a client assertion.
//!
//! # Security
//! - The key comes from the client's registered set, by `kid` or as its only key of the
//!   header's algorithm; the algorithm is the key's own (RS256, ES256 or EdDSA), so `none`,
//!   HS256 keyed with a public key and algorithm swaps are refused ([`super::jwks`]). Header
//!   `jwk`, `jku`, `x5u` and `x5c` are never looked at.
//! - `iss` and `sub` are the client id; `aud` names this server: its issuer, or the URL of the
//!   endpoint called or of its token endpoint (RFC 7523 §3, OIDC Core §9). An assertion made
//!   for another server is refused.
//! - `exp` is required and at most [`MAX_ASSERTION_LIFETIME_SECS`] ahead; `jti` is required
//!   and used once while it could be valid ([`crate::replay`], shared by every instance).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::Value;

use super::client::{Client, TokenEndpointAuthMethod};
use super::jwks::{KeyedJwsError, PublicKeys};
use crate::Timestamp;

/// `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Longest assertion looked at.
pub const MAX_ASSERTION_LEN: usize = 8 * 1024;

/// Longest lifetime an assertion may claim: `exp` at most this far ahead of now.
pub const MAX_ASSERTION_LIFETIME_SECS: i64 = crate::replay::MAX_MARKED_LIFETIME_SECS;

/// Largest inline JWK Set a client may register, in bytes of JSON.
pub const MAX_JWKS_BYTES: usize = 16 * 1024;

/// Most keys in a client's inline JWK Set.
const MAX_JWKS_KEYS: usize = 16;

/// Longest `jti` accepted.
const MAX_JTI_LEN: usize = 256;

/// JWK members that only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4.1;
/// RFC 8037 §2).
const PRIVATE_MEMBERS: [&str; 9] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv"];

/// Why a client's key registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeysRejected(pub String);

/// Checks the keys of a client before it is stored: a `private_key_jwt` client names exactly
/// one of `jwks` (a JWK Set of at most [`MAX_JWKS_BYTES`] with 1 to 16 usable public signature
/// keys and no private member) and `jwks_uri` (an absolute `https` URL, or `http` on
/// loopback, without a fragment); any other client names neither.
///
/// # Errors
/// [`KeysRejected`] with the reason.
pub fn check_registration(client: &Client) -> Result<(), KeysRejected> {
    let reject = |m: &str| Err(KeysRejected(m.to_owned()));
    if client.token_endpoint_auth_method != TokenEndpointAuthMethod::PrivateKeyJwt {
        if client.jwks.is_some() || client.jwks_uri.is_some() {
            return reject("jwks and jwks_uri belong to private_key_jwt clients");
        }
        return Ok(());
    }
    match (&client.jwks, &client.jwks_uri) {
        (Some(_), Some(_)) => reject("give jwks or jwks_uri, not both"),
        (None, None) => reject("a private_key_jwt client needs jwks or jwks_uri"),
        (Some(jwks), None) => check_jwks(jwks),
        (None, Some(uri)) => check_jwks_uri(uri),
    }
}

fn check_jwks(text: &str) -> Result<(), KeysRejected> {
    let reject = |m: &str| Err(KeysRejected(m.to_owned()));
    if text.len() > MAX_JWKS_BYTES {
        return reject("jwks is too large");
    }
    let Ok(doc) = serde_json::from_str::<Value>(text) else {
        return reject("jwks is not JSON");
    };
    let Some(list) = doc.get("keys").and_then(Value::as_array) else {
        return reject("jwks is not a JWK Set (no keys array)");
    };
    if list.is_empty() || list.len() > MAX_JWKS_KEYS {
        return reject("jwks must hold 1 to 16 keys");
    }
    if list.iter().any(|k| {
        k.as_object()
            .is_none_or(|o| PRIVATE_MEMBERS.iter().any(|m| o.contains_key(*m)))
    }) {
        return reject("jwks holds a private or symmetric key: register public keys only");
    }
    if PublicKeys::from_jwks(&doc).len() != list.len() {
        return reject(
            "every jwks key must be a public signature key for RS256 (2048 bits or more), \
             ES256 or EdDSA",
        );
    }
    Ok(())
}

fn check_jwks_uri(uri: &str) -> Result<(), KeysRejected> {
    let Ok(url) = url::Url::parse(uri) else {
        return Err(KeysRejected("jwks_uri is not an absolute URL".into()));
    };
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
    let ok = uri.len() <= 2048
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none()
        && (url.scheme() == "https" || (url.scheme() == "http" && loopback));
    if ok {
        Ok(())
    } else {
        Err(KeysRejected(
            "jwks_uri must be an https URL without credentials or fragment".into(),
        ))
    }
}

/// Why a client assertion was refused. Every variant answers `invalid_client`; the variant is
/// for the audit trail and the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    /// Not a compact JWS of acceptable size, or claims of the wrong JSON type.
    #[error("the assertion is malformed")]
    Malformed,
    /// No registered key has the header's `kid` (the caller may fetch the key set again once).
    #[error("the assertion is signed with an unknown key")]
    UnknownKey,
    /// The header's algorithm is not the key's own.
    #[error("the assertion's algorithm is not its key's")]
    Algorithm,
    /// The signature does not verify.
    #[error("the assertion's signature is invalid")]
    Signature,
    /// `iss` or `sub` is not the client id.
    #[error("the assertion's iss or sub is not the client")]
    Subject,
    /// `aud` names another server.
    #[error("the assertion is meant for another server")]
    Audience,
    /// `exp` has passed, lies too far ahead, or `iat`/`nbf` lie in the future.
    #[error("the assertion's times are out of range")]
    Time,
    /// `jti` is missing or too long.
    #[error("the assertion has no usable jti")]
    Jti,
}

/// The client id an assertion names (`sub`, which must equal `iss`), read before the signature
/// is checked only to find the client whose keys verify it.
///
/// # Errors
/// [`AssertionError::Malformed`] when it cannot be read.
pub fn claimed_client(assertion: &str) -> Result<String, AssertionError> {
    if assertion.len() > MAX_ASSERTION_LEN || assertion.bytes().filter(|b| *b == b'.').count() != 2
    {
        return Err(AssertionError::Malformed);
    }
    let payload = assertion
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .ok_or(AssertionError::Malformed)?;
    payload
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 255)
        .map(str::to_owned)
        .ok_or(AssertionError::Malformed)
}

/// `aud`: one string or a non-empty array of strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Audience,
    exp: i64,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
}

/// What the assertion must say.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    /// The client id.
    pub client_id: &'a str,
    /// The audiences this server answers to: its issuer, its token endpoint and the endpoint
    /// called.
    pub audiences: &'a [&'a str],
    /// The time now.
    pub now: Timestamp,
    /// Clock skew allowed, in seconds.
    pub leeway_secs: i64,
}

/// A verified assertion: what is left to check is that its `jti` is used once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    /// `jti`.
    pub jti: String,
    /// `exp`.
    pub expires_at: Timestamp,
}

/// Verifies a client assertion against the client's keys (module docs).
///
/// # Errors
/// The first check that failed.
pub fn verify(
    assertion: &str,
    keys: &PublicKeys,
    expected: &Expected<'_>,
) -> Result<VerifiedAssertion, AssertionError> {
    if assertion.len() > MAX_ASSERTION_LEN || assertion.bytes().filter(|b| *b == b'.').count() != 2
    {
        return Err(AssertionError::Malformed);
    }
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| AssertionError::Malformed)?;
    let (c, _) = keys
        .verify::<Claims>(assertion, &header)
        .map_err(|e| match e {
            KeyedJwsError::Algorithm => AssertionError::Algorithm,
            KeyedJwsError::UnknownKey => AssertionError::UnknownKey,
            KeyedJwsError::Signature => AssertionError::Signature,
            KeyedJwsError::Malformed => AssertionError::Malformed,
        })?;
    if c.iss != expected.client_id || c.sub != expected.client_id {
        return Err(AssertionError::Subject);
    }
    let named = match &c.aud {
        Audience::One(a) => std::slice::from_ref(a),
        Audience::Many(list) => list.as_slice(),
    };
    if !named
        .iter()
        .any(|a| expected.audiences.contains(&a.as_str()))
    {
        return Err(AssertionError::Audience);
    }
    let now = expected.now.secs();
    let leeway = expected.leeway_secs.clamp(0, 60);
    let too_late = c.exp.saturating_add(leeway) <= now;
    let too_long = c.exp > now.saturating_add(MAX_ASSERTION_LIFETIME_SECS + leeway);
    let early = c.iat.is_some_and(|t| t.saturating_sub(leeway) > now)
        || c.nbf.is_some_and(|t| t.saturating_sub(leeway) > now);
    if too_late || too_long || early {
        return Err(AssertionError::Time);
    }
    let jti = c
        .jti
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_LEN)
        .ok_or(AssertionError::Jti)?;
    Ok(VerifiedAssertion {
        jti,
        expires_at: Timestamp(c.exp),
    })
}
