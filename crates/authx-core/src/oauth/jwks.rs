//! A JWK Set's public signature keys ([`PublicKeys`]): an upstream provider's, which verify its
//! ID tokens, and a client's, which verify its `private_key_jwt` assertions.
//!
//! # Security
//! Only asymmetric keys are kept (a symmetric `oct` key is never a verifier, so an HMAC keyed
//! with a public key cannot pass), each with exactly one algorithm, RSA keys of 2048 bits or
//! more (RFC 8725 §3.1, §3.5).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::keys::{SigningAlg, Verifier, verifier_from_jwk};

/// The public signature keys of a JWK Set: an upstream provider's, or a client's for
/// `private_key_jwt`.
#[derive(Debug, Clone, Default)]
pub struct PublicKeys {
    keys: Vec<(Option<String>, Verifier)>,
}

/// Shortest RSA modulus accepted, in bytes (2048 bits; RFC 8725 §3.5, SECURITY.md #47).
const MIN_RSA_MODULUS_BYTES: usize = 256;

impl PublicKeys {
    /// The usable signature keys of a JWK Set. A key's algorithm is its `alg` member when
    /// present, else the only one its type allows (RSA: RS256, P-256: ES256, Ed25519: EdDSA);
    /// symmetric keys, encryption keys, other algorithms and RSA keys under 2048 bits are left
    /// out.
    #[must_use]
    pub fn from_jwks(doc: &Value) -> Self {
        let mut keys = Vec::new();
        let Some(list) = doc.get("keys").and_then(Value::as_array) else {
            return Self { keys };
        };
        for jwk in list.iter().take(64) {
            if jwk
                .get("use")
                .and_then(Value::as_str)
                .is_some_and(|u| u != "sig")
            {
                continue;
            }
            let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or_default();
            let crv = jwk.get("crv").and_then(Value::as_str).unwrap_or_default();
            let alg = match jwk.get("alg") {
                Some(a) => match a.as_str().and_then(SigningAlg::parse) {
                    Some(alg) => alg,
                    None => continue,
                },
                None => match (kty, crv) {
                    ("RSA", _) => SigningAlg::Rs256,
                    ("EC", "P-256") => SigningAlg::Es256,
                    ("OKP", "Ed25519") => SigningAlg::EdDsa,
                    _ => continue,
                },
            };
            if alg == SigningAlg::Rs256 {
                let n_len = jwk
                    .get("n")
                    .and_then(Value::as_str)
                    .and_then(|n| URL_SAFE_NO_PAD.decode(n).ok())
                    .map_or(0, |n| n.iter().skip_while(|b| **b == 0).count());
                if n_len < MIN_RSA_MODULUS_BYTES {
                    continue;
                }
            }
            let mut with_alg = jwk.clone();
            if let Some(o) = with_alg.as_object_mut() {
                o.insert("alg".into(), Value::String(alg.as_str().into()));
            }
            if let Some(v) = verifier_from_jwk(&with_alg) {
                let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_owned);
                keys.push((kid, v));
            }
        }
        Self { keys }
    }

    /// How many usable keys there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no usable key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key for a token header: by `kid`, or the only key of the header's algorithm when
    /// the header names none.
    pub(crate) fn find(
        &self,
        kid: Option<&str>,
        alg: jsonwebtoken::Algorithm,
    ) -> Option<&Verifier> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|(k, _)| k.as_deref() == Some(kid))
                .map(|(_, v)| v),
            None => {
                let mut same_alg = self
                    .keys
                    .iter()
                    .filter(|(_, v)| v.alg.jwt_algorithm() == alg);
                match (same_alg.next(), same_alg.next()) {
                    (Some((_, v)), None) => Some(v),
                    _ => None,
                }
            }
        }
    }
}

/// Why a compact JWS was refused by the keys of a [`PublicKeys`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyedJwsError {
    /// The header's algorithm is not RS256, ES256 or EdDSA, or not its key's.
    Algorithm,
    /// No key has the header's `kid` (or, without one, no single key has its algorithm).
    UnknownKey,
    /// The signature does not verify.
    Signature,
    /// The claims do not decode as the caller's type.
    Malformed,
}

impl PublicKeys {
    /// Verifies `token`, whose header is `header`, with the key the header names ([`find`])
    /// under that key's one algorithm (RS256, ES256 or EdDSA), and decodes its claims as `T`.
    /// Times, issuer and audience are the caller's to check, against its own clock and rules;
    /// the key is returned for checks that depend on its algorithm (`at_hash`).
    ///
    /// [`find`]: PublicKeys::find
    pub(crate) fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        header: &jsonwebtoken::Header,
    ) -> Result<(T, &Verifier), KeyedJwsError> {
        let alg = header.alg;
        if !matches!(
            alg,
            jsonwebtoken::Algorithm::RS256
                | jsonwebtoken::Algorithm::ES256
                | jsonwebtoken::Algorithm::EdDSA
        ) {
            return Err(KeyedJwsError::Algorithm);
        }
        let verifier = self
            .find(header.kid.as_deref(), alg)
            .ok_or(KeyedJwsError::UnknownKey)?;
        if verifier.alg.jwt_algorithm() != alg {
            return Err(KeyedJwsError::Algorithm);
        }
        // The caller checks every claim, against the injected clock and with exact types.
        let claims = super::jwt::verify_signed::<T>(token, verifier).map_err(|e| match e {
            super::jwt::JwsDefect::Invalid => KeyedJwsError::Signature,
            _ => KeyedJwsError::Malformed,
        })?;
        Ok((claims, verifier))
    }
}
