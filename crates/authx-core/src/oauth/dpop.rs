//! DPoP (RFC 9449): proofs of possession that bind access tokens, and the refresh tokens of
//! public clients, to a key the client holds.
//!
//! A client sends a proof (a JWT it signs with its own key, whose public half is in the proof's
//! header) with each request. The provider binds what it issues to the key's RFC 7638
//! thumbprint ([`Jkt`]); a resource server (userinfo, the guard) accepts a bound token only
//! with a fresh proof by that key for that very request. [`verify_proof`] is the one verifier
//! of proofs, used by the provider and by the guard alike.
//!
//! # Security
//! - Only asymmetric algorithms ([`SIGNING_ALGS`]); `none` and `HS*` are refused, and so is a
//!   header key that carries a private member (`d`, `p`, `k`, ...), which would mean the client
//!   published its private key (RFC 9449 §4.3 checks 5 and 7).
//! - The key comes from the proof's own header and proves only possession: what it is bound
//!   to is decided by the caller, who compares thumbprints.
//! - `htu` is compared with the URL the *configured* public address gives the endpoint, not
//!   the request's `Host` header, after normalisation (RFC 9449 §4.3 check 9, RFC 3986 §6).
//! - `iat` must be recent ([`ProofPolicy`]); each proof's `jti` is single-use, which the caller
//!   enforces (shared marks at the provider, a per-process cache at the guard).
//! - Server nonces ([`DpopNonces`]) are stateless: an HMAC of a time window under a key derived
//!   from the deployment secret, so every instance issues and accepts the same ones.

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::Timestamp;

/// The `typ` of a DPoP proof (RFC 9449 §4.2).
pub const DPOP_TYP: &str = "dpop+jwt";

/// The proof algorithms accepted, as published in `dpop_signing_alg_values_supported`.
pub const SIGNING_ALGS: [&str; 4] = ["ES256", "EdDSA", "RS256", "PS256"];

/// Longest `DPoP` header value looked at (an RSA-8192 key and signature fit).
pub const MAX_PROOF_LEN: usize = 8 * 1024;

/// Longest `jti` accepted (the value is only hashed, but a proof has no business with more).
pub const MAX_JTI_LEN: usize = 256;

/// Longest `nonce` accepted in a proof.
pub const MAX_NONCE_LEN: usize = 256;

/// How long a server nonce's window lasts; a nonce is accepted in its window and the next.
pub const NONCE_WINDOW_SECS: i64 = 180;

/// The key thumbprint a token is bound to: the base64url SHA-256 JWK thumbprint (RFC 7638) of
/// the client's proof key, as in `cnf.jkt` (RFC 9449 §6.1) and `dpop_jkt` (§10).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Jkt(String);

impl Jkt {
    /// Reads a thumbprint sent by a client (`dpop_jkt`): exactly 43 base64url characters, the
    /// encoding of 32 bytes.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        let ok = s.len() == 43
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && URL_SAFE_NO_PAD.decode(s).is_ok_and(|d| d.len() == 32);
        ok.then(|| Self(s.to_owned()))
    }

    /// The thumbprint, base64url.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `other` names the same key (thumbprints are public: a plain comparison).
    #[must_use]
    pub fn matches(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// The confirmation claim of a bound access token (RFC 7800 §3.1, RFC 9449 §6.1). Members
/// authx does not know are ignored, so another confirmation method can be added later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// The thumbprint of the DPoP key the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
}

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    /// The proof is malformed, badly signed, for another request, too old, replayed or bound to
    /// another token: `invalid_dpop_proof` (RFC 9449 §5, §7.1).
    #[error("invalid DPoP proof: {0}")]
    InvalidProof(&'static str),
    /// The server requires a nonce and the proof has none, or a stale one: `use_dpop_nonce`
    /// (RFC 9449 §8, §9), answered with a fresh `DPoP-Nonce`.
    #[error("a DPoP nonce is required")]
    UseNonce,
}

impl From<DpopError> for super::OAuthError {
    fn from(e: DpopError) -> Self {
        match e {
            DpopError::InvalidProof(why) => {
                Self::InvalidDpopProof(format!("invalid DPoP proof: {why}"))
            }
            DpopError::UseNonce => Self::UseDpopNonce,
        }
    }
}

/// The request a proof must be made for.
#[derive(Debug, Clone, Copy)]
pub struct ProofRequest<'a> {
    /// The HTTP method, as sent (`htm` must equal it exactly).
    pub method: &'a str,
    /// The endpoint's URL as the server's configured public address gives it (`htu` must equal
    /// it after normalisation); a query or fragment is ignored.
    pub url: &'a str,
    /// The access token presented with the proof, if any: `ath` must then be its hash.
    pub access_token: Option<&'a str>,
}

/// How recent a proof must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofPolicy {
    /// Oldest `iat` accepted, in seconds before now (default 60).
    pub max_age_secs: i64,
    /// Clock skew allowed either way, in seconds (default 5).
    pub leeway_secs: i64,
}

impl Default for ProofPolicy {
    fn default() -> Self {
        Self {
            max_age_secs: 60,
            leeway_secs: 5,
        }
    }
}

impl ProofPolicy {
    /// How long a proof can be accepted at most, which is how long its `jti` must be
    /// remembered.
    #[must_use]
    pub fn lifetime_secs(&self) -> i64 {
        self.max_age_secs
            .saturating_add(self.leeway_secs.saturating_mul(2))
    }
}

/// A proof that passed [`verify_proof`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// The thumbprint of the proof's key.
    pub jkt: Jkt,
    /// The proof's `jti`, for the caller's replay check.
    pub jti: String,
    /// When the proof says it was made.
    pub iat: i64,
    /// The server nonce it carries, for the caller to check when it requires one.
    pub nonce: Option<String>,
}

/// The header of a proof. Members other than these are ignored, but `crit` is refused: authx
/// understands no extension.
#[derive(Deserialize)]
struct ProofHeader {
    typ: String,
    alg: String,
    jwk: ProofJwk,
    #[serde(default)]
    crit: Option<Value>,
}

/// The public key of a proof's header. The private members are read only to refuse a key that
/// has them.
#[derive(Deserialize)]
struct ProofJwk {
    kty: String,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    d: Option<Value>,
    #[serde(default)]
    p: Option<Value>,
    #[serde(default)]
    q: Option<Value>,
    #[serde(default)]
    dp: Option<Value>,
    #[serde(default)]
    dq: Option<Value>,
    #[serde(default)]
    qi: Option<Value>,
    #[serde(default)]
    oth: Option<Value>,
    #[serde(default)]
    k: Option<Value>,
}

impl ProofJwk {
    fn has_private_member(&self) -> bool {
        [
            &self.d, &self.p, &self.q, &self.dp, &self.dq, &self.qi, &self.oth, &self.k,
        ]
        .iter()
        .any(|m| m.is_some())
    }
}

/// The claims of a proof (RFC 9449 §4.2); others are ignored.
#[derive(Deserialize)]
struct ProofClaims {
    jti: String,
    htm: String,
    htu: String,
    iat: i64,
    #[serde(default)]
    ath: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
}

/// The key of a proof's header, checked against the proof's algorithm, with its thumbprint.
fn proof_key(
    alg: &str,
    jwk: &ProofJwk,
) -> Result<(jsonwebtoken::Algorithm, jsonwebtoken::DecodingKey, Jkt), DpopError> {
    use jsonwebtoken::{Algorithm, DecodingKey};
    let bad_key = DpopError::InvalidProof("the header's jwk does not fit the algorithm");
    fn s<'k>(v: &'k Option<String>, bad: &DpopError) -> Result<&'k str, DpopError> {
        v.as_deref().ok_or_else(|| bad.clone())
    }
    // RFC 7638 §3.2: the required members only, in lexicographic order, no white space.
    // They are base64url or fixed names, so `to_string` of each only adds the quotes.
    let q = |v: &str| serde_json::to_string(v).unwrap_or_default();
    let (algorithm, key, canonical) = match (alg, jwk.kty.as_str()) {
        ("ES256", "EC") if jwk.crv.as_deref() == Some("P-256") => {
            let (x, y) = (s(&jwk.x, &bad_key)?, s(&jwk.y, &bad_key)?);
            let key = DecodingKey::from_ec_components(x, y).map_err(|_| bad_key.clone())?;
            let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":{},"y":{}}}"#, q(x), q(y));
            (Algorithm::ES256, key, canonical)
        }
        ("EdDSA", "OKP") if jwk.crv.as_deref() == Some("Ed25519") => {
            let x = s(&jwk.x, &bad_key)?;
            let key = DecodingKey::from_ed_components(x).map_err(|_| bad_key.clone())?;
            let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":{}}}"#, q(x));
            (Algorithm::EdDSA, key, canonical)
        }
        ("RS256" | "PS256", "RSA") => {
            let (n, e) = (s(&jwk.n, &bad_key)?, s(&jwk.e, &bad_key)?);
            // At least 2048 bits (the verifier refuses smaller keys too).
            if URL_SAFE_NO_PAD.decode(n).map_or(true, |m| m.len() < 256) {
                return Err(DpopError::InvalidProof("RSA keys need at least 2048 bits"));
            }
            let key = DecodingKey::from_rsa_components(n, e).map_err(|_| bad_key.clone())?;
            let canonical = format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, q(e), q(n));
            let algorithm = if alg == "RS256" {
                Algorithm::RS256
            } else {
                Algorithm::PS256
            };
            (algorithm, key, canonical)
        }
        _ => return Err(bad_key),
    };
    Ok((algorithm, key, Jkt(thumbprint_of(&canonical))))
}

fn thumbprint_of(canonical: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The RFC 7638 SHA-256 thumbprint of a public JWK (EC P-256, OKP Ed25519 or RSA), `None` for
/// any other key or one with a private member.
#[must_use]
pub fn thumbprint(jwk: &Value) -> Option<Jkt> {
    let key: ProofJwk = serde_json::from_value(jwk.clone()).ok()?;
    if key.has_private_member() {
        return None;
    }
    // The curve is checked with the key; the algorithm only picks the key's family.
    let alg = match key.kty.as_str() {
        "EC" => "ES256",
        "OKP" => "EdDSA",
        "RSA" => "RS256",
        _ => return None,
    };
    proof_key(alg, &key).ok().map(|(_, _, jkt)| jkt)
}

/// `ath` (RFC 9449 §4.2): the base64url SHA-256 of an access token.
#[must_use]
pub fn access_token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// An HTTP(S) URL normalised for comparing `htu` (RFC 9449 §4.3 check 9, RFC 3986 §6.2.2 and
/// §6.2.3): scheme and host in lower case, the default port dropped, dot segments resolved,
/// an empty path as `/`; the query and fragment are removed, and so is any user information.
/// `None` for anything that is not an absolute `http` or `https` URL.
#[must_use]
pub fn normalize_htu(raw: &str) -> Option<String> {
    let mut url = url::Url::parse(raw).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return None;
    }
    url.set_query(None);
    url.set_fragment(None);
    url.set_username("").ok()?;
    url.set_password(None).ok()?;
    Some(url.to_string())
}

/// Verifies a DPoP proof for `request` at `now` (RFC 9449 §4.3): its shape and size, `typ`,
/// an asymmetric `alg`, a public `jwk` that fits it, the signature by that key, the claims'
/// types, `htm`, `htu`, `iat` within `policy`, and, when an access token is presented, `ath`.
/// The `jti` (replay) and the nonce are the caller's to check, with what it returns.
///
/// # Errors
/// [`DpopError::InvalidProof`] saying what is wrong.
pub fn verify_proof(
    proof: &str,
    request: &ProofRequest<'_>,
    now: Timestamp,
    policy: &ProofPolicy,
) -> Result<VerifiedProof, DpopError> {
    let malformed = DpopError::InvalidProof("not a compact JWS of sane size");
    if proof.is_empty()
        || proof.len() > MAX_PROOF_LEN
        || !proof.is_ascii()
        || proof.bytes().filter(|b| *b == b'.').count() != 2
    {
        return Err(malformed);
    }
    let mut parts = proof.split('.');
    let (Some(h64), Some(c64), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(malformed);
    };
    let header: ProofHeader = URL_SAFE_NO_PAD
        .decode(h64)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or(DpopError::InvalidProof("the header does not decode"))?;
    if !header.typ.eq_ignore_ascii_case(DPOP_TYP) {
        return Err(DpopError::InvalidProof("typ must be dpop+jwt"));
    }
    if !SIGNING_ALGS.contains(&header.alg.as_str()) {
        return Err(DpopError::InvalidProof("the algorithm is not accepted"));
    }
    if header.crit.is_some() {
        return Err(DpopError::InvalidProof("no critical header is understood"));
    }
    if header.jwk.has_private_member() {
        return Err(DpopError::InvalidProof(
            "the header's jwk holds a private key",
        ));
    }
    let (algorithm, key, jkt) = proof_key(&header.alg, &header.jwk)?;
    let signing_input = proof
        .get(..h64.len() + 1 + c64.len())
        .ok_or(DpopError::InvalidProof("not a compact JWS of sane size"))?;
    let signed = jsonwebtoken::crypto::verify(sig, signing_input.as_bytes(), &key, algorithm)
        .unwrap_or(false);
    if !signed {
        return Err(DpopError::InvalidProof("the signature does not verify"));
    }
    let claims: ProofClaims = URL_SAFE_NO_PAD
        .decode(c64)
        .ok()
        .and_then(|c| serde_json::from_slice(&c).ok())
        .ok_or(DpopError::InvalidProof("the claims do not decode"))?;
    if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_LEN {
        return Err(DpopError::InvalidProof("jti is missing or too long"));
    }
    if claims.htm != request.method {
        return Err(DpopError::InvalidProof("htm is not the request's method"));
    }
    let same_url = match (normalize_htu(&claims.htu), normalize_htu(request.url)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    };
    if !same_url {
        return Err(DpopError::InvalidProof("htu is not the request's URL"));
    }
    let now = now.secs();
    if claims.iat > now.saturating_add(policy.leeway_secs) {
        return Err(DpopError::InvalidProof("iat is in the future"));
    }
    if claims.iat < now.saturating_sub(policy.max_age_secs.saturating_add(policy.leeway_secs)) {
        return Err(DpopError::InvalidProof("the proof is too old"));
    }
    if let Some(token) = request.access_token {
        let expected = access_token_hash(token);
        let bound = claims
            .ath
            .as_deref()
            .is_some_and(|ath| crate::secret::ct_eq(ath.as_bytes(), expected.as_bytes()));
        if !bound {
            return Err(DpopError::InvalidProof(
                "ath is not the access token's hash",
            ));
        }
    }
    if claims
        .nonce
        .as_ref()
        .is_some_and(|n| n.len() > MAX_NONCE_LEN)
    {
        return Err(DpopError::InvalidProof("nonce is too long"));
    }
    Ok(VerifiedProof {
        jkt,
        jti: claims.jti,
        iat: claims.iat,
        nonce: claims.nonce,
    })
}

/// Server-provided nonces (RFC 9449 §8, §9), without state: the nonce of a time window is an
/// HMAC-SHA-256 of the window's number under a key derived from the deployment secret, so
/// every instance computes the same; a nonce is accepted in its window and in the next one,
/// which lets it rotate without refusing a client that just received it.
pub struct DpopNonces {
    key: hmac::Key,
    window_secs: i64,
}

impl std::fmt::Debug for DpopNonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DpopNonces([redacted])")
    }
}

impl DpopNonces {
    /// Nonces under a key derived from `secret` (the key-encryption key) for this purpose only.
    #[must_use]
    pub fn new(secret: &[u8]) -> Self {
        let derived = crate::secret::derive_key(secret, b"authx dpop nonce v1");
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &derived),
            window_secs: NONCE_WINDOW_SECS,
        }
    }

    fn of_window(&self, window: i64) -> String {
        let mut msg = b"dpop-nonce:".to_vec();
        msg.extend_from_slice(&window.to_be_bytes());
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, &msg).as_ref())
    }

    fn window(&self, now: Timestamp) -> i64 {
        now.secs().div_euclid(self.window_secs)
    }

    /// The nonce to hand out at `now` (`DPoP-Nonce`).
    #[must_use]
    pub fn current(&self, now: Timestamp) -> String {
        self.of_window(self.window(now))
    }

    /// Whether `nonce` is this window's or the previous one's.
    #[must_use]
    pub fn is_valid(&self, nonce: &str, now: Timestamp) -> bool {
        let w = self.window(now);
        [w, w.saturating_sub(1)]
            .iter()
            .any(|w| crate::secret::ct_eq(self.of_window(*w).as_bytes(), nonce.as_bytes()))
    }
}

#[cfg(test)]
mod tests;
