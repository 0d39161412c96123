//! DPoP proofs at the provider (RFC 9449 §4.3, §8): the token, PAR and userinfo endpoints
//! check a request's proof with [`crate::oauth::dpop::verify_proof`], against the URL the
//! configured issuer gives the endpoint, then the server nonce when one is required, then the
//! proof's `jti`, which is single-use across every instance.
//!
//! # Security
//! - `htu` is built from the configured issuer, never from the request's `Host` header, so a
//!   proof made for another server (or a spoofed host) does not pass.
//! - A proof's `jti` is marked in the store every instance shares (`replay::SingleUse`) after
//!   everything else passed; a second use anywhere is `invalid_dpop_proof` (RFC 9449 §11.1).
//! - With nonces required, a proof without the current (or previous) window's nonce is
//!   `use_dpop_nonce`, so a proof made in advance cannot be used later (§11.2).

use super::OAuthError;
use super::dpop::{self, DpopError, Jkt, ProofRequest};
use super::service::OAuthService;
use crate::Timestamp;
use crate::replay::MarkKind;

/// The request a DPoP proof is checked against at this provider.
#[derive(Debug, Clone, Copy)]
pub struct DpopTarget<'a> {
    /// The request's HTTP method.
    pub method: &'a str,
    /// The endpoint's path under the issuer (`/oauth2/token`).
    pub path: &'a str,
    /// The access token presented with the proof (resource endpoints), whose hash `ath` must
    /// be.
    pub access_token: Option<&'a str>,
}

impl OAuthService {
    /// Checks the DPoP proofs sent with a request (`proofs`: every `DPoP` header value) for
    /// `target`, and returns the key to bind to. Without a proof, or at the token and PAR
    /// endpoints (no access token) while DPoP is off, nothing is bound and the header is
    /// ignored (RFC 9449 §5: a server that does not issue DPoP tokens ignores it).
    ///
    /// # Errors
    /// [`OAuthError::InvalidDpopProof`] for a bad, repeated or replayed proof,
    /// [`OAuthError::UseDpopNonce`] when the proof lacks a valid nonce that is required, and
    /// storage failures (the proof is then refused: its first use cannot be proven).
    pub async fn dpop_proof(
        &self,
        proofs: &[&str],
        target: DpopTarget<'_>,
    ) -> Result<Option<Jkt>, OAuthError> {
        let config = self.config();
        if proofs.is_empty() || (!config.dpop && target.access_token.is_none()) {
            return Ok(None);
        }
        // RFC 9449 §4.3 check 1: one proof per request.
        let [proof] = proofs else {
            return Err(DpopError::InvalidProof("more than one DPoP header").into());
        };
        let url = format!("{}{}", config.issuer, target.path);
        let now = self.now();
        let verified = dpop::verify_proof(
            proof,
            &ProofRequest {
                method: target.method,
                url: &url,
                access_token: target.access_token,
            },
            now,
            &config.dpop_proof,
        )?;
        if config.dpop_require_nonce
            && !verified
                .nonce
                .as_deref()
                .is_some_and(|n| self.dpop_nonces().is_valid(n, now))
        {
            return Err(OAuthError::UseDpopNonce);
        }
        let first = self
            .single_use()
            .first_use(
                MarkKind::DpopProof,
                verified.jkt.as_str(),
                &verified.jti,
                now,
                // The proof is refused by its `iat` after this anyway.
                Timestamp(
                    verified.iat + config.dpop_proof.max_age_secs + config.dpop_proof.leeway_secs,
                ),
            )
            .await?;
        if !first {
            self.audit().record(
                crate::audit::AuditEvent::failure("dpop_proof_replayed").with("path", target.path),
            );
            return Err(DpopError::InvalidProof("the proof was already used").into());
        }
        Ok(Some(verified.jkt))
    }

    /// The nonce to send in `DPoP-Nonce` when proofs must carry one (RFC 9449 §8.2: with every
    /// answer, so the client always holds a fresh one).
    #[must_use]
    pub fn dpop_nonce(&self) -> Option<String> {
        self.config()
            .dpop_require_nonce
            .then(|| self.dpop_nonces().current(self.now()))
    }
}
