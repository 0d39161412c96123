//! DPoP at the resource server (RFC 9449 §7): a token bound to a key (`cnf.jkt`) is accepted
//! only under the `DPoP` scheme with a fresh proof by that key for this very request. The proof
//! is checked by `authx_core::oauth::dpop::verify_proof`, the issuer's own verifier.
//!
//! # Security
//! - `htu` is compared with the URL of the request as the API's configured public address
//!   ([`crate::GuardConfig::public_url`]) gives it; without one, as the `Host` header gives it.
//! - Each proof's `jti` is remembered per key until the proof could no longer be accepted, in a
//!   bounded map of this process (RFC 9449 §11.1 allows a per-server cache). When the map is
//!   full of live entries the guard refuses rather than forgets.

use std::collections::HashMap;
use std::sync::Mutex;

use authx_core::oauth::dpop::{self, ProofPolicy, ProofRequest};
use authx_core::secret::TokenHash;
use axum::http::{HeaderMap, Method, Uri, header};

use crate::{Claims, Refusal, TokenDefect};

/// Most proof ids remembered at once. An entry lives as long as its proof could be accepted
/// (about 65 s), so this bounds the sustained rate of DPoP requests one guard process takes at
/// about 15,000 a second, with about 50 MB for the map when full; beyond it the guard answers
/// 503 rather than forget a proof it has seen.
pub(crate) const MAX_SEEN_PROOFS: usize = 1_000_000;

/// The proofs seen recently: (key, `jti`) hashed, with when each may be forgotten.
#[derive(Default)]
pub(crate) struct SeenProofs {
    seen: Mutex<HashMap<TokenHash, i64>>,
}

impl SeenProofs {
    /// Records a proof's `jti` for `jkt` until `until`; `Ok(false)` when it was seen before.
    ///
    /// # Errors
    /// `Refusal::Unavailable` when the map is full of proofs that are still live.
    fn first_use(&self, jkt: &str, jti: &str, now: i64, until: i64) -> Result<bool, Refusal> {
        let mut input = Vec::with_capacity(jkt.len() + jti.len() + 1);
        input.extend_from_slice(jkt.as_bytes());
        input.push(0);
        input.extend_from_slice(jti.as_bytes());
        let key = TokenHash::of(&input);
        let mut seen = self.seen.lock().map_err(|_| Refusal::Unavailable)?;
        if seen.get(&key).is_some_and(|t| *t > now) {
            return Ok(false);
        }
        if seen.len() >= MAX_SEEN_PROOFS {
            seen.retain(|_, t| *t > now);
            if seen.len() >= MAX_SEEN_PROOFS {
                tracing::warn!("the DPoP replay cache is full; refusing proofs");
                return Err(Refusal::Unavailable);
            }
        }
        seen.insert(key, until);
        Ok(true)
    }
}

/// How a token came: its scheme and, for `DPoP`, what the proof must be made for.
pub(crate) struct DpopRequest<'a> {
    pub(crate) method: &'a Method,
    /// The request's path (the one the client addressed, before any nesting stripped it).
    pub(crate) uri: Option<&'a Uri>,
    pub(crate) headers: &'a HeaderMap,
}

/// The URL a proof for `uri` must name: the configured public address and the path, or the
/// request's own scheme and `Host` (plain `http` only for a loopback host).
fn request_url(public_url: Option<&str>, uri: &Uri, headers: &HeaderMap) -> Option<String> {
    let path = uri.path();
    if let Some(base) = public_url {
        return Some(format!("{}{path}", base.trim_end_matches('/')));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(axum::http::uri::Authority::as_str))?;
    let scheme = match uri.scheme_str() {
        Some(s) => s,
        None if is_loopback(host) => "http",
        None => "https",
    };
    Some(format!("{scheme}://{host}{path}"))
}

fn is_loopback(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((h, port)) if !h.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    matches!(name, "localhost" | "127.0.0.1" | "[::1]")
        || (name.starts_with("127.") && name.parse::<std::net::Ipv4Addr>().is_ok())
}

/// Checks the proof of a `DPoP`-scheme request for `token`, whose verified claims are
/// `claims`: a token bound to a key, one proof, made for this request and this token, by that
/// key, not seen before.
///
/// # Errors
/// The refusal to send.
pub(crate) fn check(
    seen: &SeenProofs,
    public_url: Option<&str>,
    policy: &ProofPolicy,
    req: &DpopRequest<'_>,
    token: &str,
    claims: &Claims,
    now: i64,
) -> Result<(), Refusal> {
    let Some(bound) = claims.dpop_jkt() else {
        // RFC 9449 §7.1: the DPoP scheme is for DPoP-bound tokens.
        return Err(Refusal::InvalidDpopToken(TokenDefect::WrongScheme));
    };
    let mut proofs = req.headers.get_all("dpop").iter();
    let (Some(proof), None) = (proofs.next(), proofs.next()) else {
        return Err(Refusal::InvalidDpopProof);
    };
    let proof = proof.to_str().map_err(|_| Refusal::InvalidDpopProof)?;
    let url = req
        .uri
        .and_then(|uri| request_url(public_url, uri, req.headers))
        .ok_or(Refusal::InvalidDpopProof)?;
    let verified = dpop::verify_proof(
        proof,
        &ProofRequest {
            method: req.method.as_str(),
            url: &url,
            access_token: Some(token),
        },
        authx_core::Timestamp(now),
        policy,
    )
    .map_err(|e| {
        tracing::debug!(error = %e, "DPoP proof refused");
        Refusal::InvalidDpopProof
    })?;
    if !verified.jkt.matches(bound) {
        return Err(Refusal::InvalidDpopToken(TokenDefect::WrongKey));
    }
    let until = now.saturating_add(policy.lifetime_secs());
    if !seen.first_use(verified.jkt.as_str(), &verified.jti, now, until)? {
        return Err(Refusal::InvalidDpopProof);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_id_is_accepted_once_per_key_until_it_expires() {
        let seen = SeenProofs::default();
        assert_eq!(seen.first_use("k1", "j", 100, 170), Ok(true));
        assert_eq!(seen.first_use("k1", "j", 150, 220), Ok(false));
        assert_eq!(seen.first_use("k2", "j", 150, 220), Ok(true));
        // Once no proof with it could be accepted, the entry may go.
        assert_eq!(seen.first_use("k1", "j", 171, 241), Ok(true));
    }

    #[test]
    fn the_url_comes_from_the_public_address_or_the_host() {
        let uri: Uri = "/orders?x=1".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "api.example.com".parse().unwrap());
        assert_eq!(
            request_url(Some("https://api.example.com/v1/"), &uri, &h).as_deref(),
            Some("https://api.example.com/v1/orders")
        );
        assert_eq!(
            request_url(None, &uri, &h).as_deref(),
            Some("https://api.example.com/orders")
        );
        h.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            request_url(None, &uri, &h).as_deref(),
            Some("http://127.0.0.1:8080/orders")
        );
        assert!(is_loopback("localhost:3000") && is_loopback("[::1]:80"));
        assert!(!is_loopback("127.example.com") && !is_loopback("api.example.com"));
    }
}
