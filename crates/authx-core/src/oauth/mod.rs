//! The OAuth 2.0 / OpenID Connect provider: clients and API resources, scopes, PKCE, signing
//! keys and JWTs, authorization codes, rotating refresh tokens in families, consents, and the
//! service that runs the grants.
//!
//! The domain values (`client`, `grant`, `device`, `scope`, `pkce`, `keys`, `jwt`) and the
//! storage ports (`store`) stand alone. [`service::OAuthService`] is what the server holds; its
//! work is split by responsibility into types: [`issuer::Issuer`] (keys, discovery, JWKS,
//! signing) and [`clients::Clients`] (client authentication, registration, audiences and
//! scopes), each with its own state; [`token::Tokens`] (the grants, one module each),
//! [`introspect::Introspection`] (whether a token is active, introspection, userinfo) and
//! [`revoke::Revocation`] (revocation, the end of a family, the user's grants), which borrow
//! the state the service shares with them (`context`). [`authorize`], [`logout`] and
//! `device_flow` are modules of `OAuthService` methods; what they all share is in [`types`].
//! `service` depends on the parts, and the methods' modules on `service`; no circle. The flows
//! return a decision the web layer only renders: `AuthorizeDecision`, `TokenRequest` run by
//! `Tokens::grant`, `UserCodeEntry`, `LogoutDecision`.

pub mod assertion;
pub mod authorize;
pub mod client;
pub mod clients;
mod context;
pub mod device;
mod device_flow;
pub mod dpop;
pub mod grant;
pub mod introspect;
pub mod issuer;
pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod logout;
pub mod par;
pub mod pkce;
pub mod proofs;
pub mod revoke;
pub mod scope;
pub mod service;
pub mod store;
pub mod token;
pub mod token_cache;
pub mod types;

#[cfg(test)]
mod tests;

/// Told about every grant that ends (revocation, reuse detection, a session or password change),
/// for example to send OIDC back-channel logout tokens. Calls must return at once.
pub trait GrantObserver: Send + Sync + 'static {
    /// A refresh-token family was revoked.
    fn grant_revoked(&self, family_id: &str);
}

/// An error of the token, introspection or revocation endpoints, with its RFC 6749 §5.2 code.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// `invalid_request`: a parameter is missing, repeated, malformed or unsupported.
    #[error("{0}")]
    InvalidRequest(String),
    /// `invalid_client`: client authentication failed (401).
    #[error("client authentication failed")]
    InvalidClient,
    /// `invalid_grant`: the code, refresh token or device code is invalid, expired, revoked,
    /// bound to another client or already used.
    #[error("{0}")]
    InvalidGrant(&'static str),
    /// `unauthorized_client`: the client may not use this grant.
    #[error("the client is not allowed to use this grant type")]
    UnauthorizedClient,
    /// `unsupported_grant_type`.
    #[error("unsupported grant type")]
    UnsupportedGrantType,
    /// `invalid_scope`.
    #[error("{0}")]
    InvalidScope(String),
    /// `invalid_target` (RFC 8707): the resource is unknown or not allowed.
    #[error("{0}")]
    InvalidTarget(String),
    /// `unsupported_token_type` (RFC 7009 §2.2.1).
    #[error("unsupported token type")]
    UnsupportedTokenType,
    /// The client was throttled after repeated authentication failures.
    #[error("too many failed attempts")]
    Throttled {
        /// Seconds before another attempt.
        retry_after_secs: i64,
    },
    /// A device-code poll that gets no tokens yet, or ever (RFC 8628 §3.5).
    #[error(transparent)]
    Device(#[from] device::DevicePollError),
    /// An authorization request refused at the PAR endpoint (RFC 9126 §2.3), with the code
    /// the authorization endpoint would have sent.
    #[error("{description}")]
    Rejected {
        /// The RFC 6749 §4.1.2.1 code.
        code: &'static str,
        /// What is wrong.
        description: String,
    },
    /// `invalid_dpop_proof` (RFC 9449 §5): the DPoP proof is malformed, badly signed, for
    /// another request, too old or replayed.
    #[error("{0}")]
    InvalidDpopProof(String),
    /// `use_dpop_nonce` (RFC 9449 §8): the proof must carry the server's current nonce.
    #[error("the DPoP proof must carry the server's nonce")]
    UseDpopNonce,
    /// Storage failed (the caller fails closed).
    #[error("storage failed")]
    Store(#[from] crate::StoreError),
    /// Signing or an internal invariant failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl OAuthError {
    /// The RFC 6749 error code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::InvalidTarget(_) => "invalid_target",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::Throttled { .. } => "slow_down",
            Self::Device(e) => e.code(),
            Self::Rejected { code, .. } => code,
            Self::InvalidDpopProof(_) => "invalid_dpop_proof",
            Self::UseDpopNonce => "use_dpop_nonce",
            Self::Store(_) | Self::Internal(_) => "server_error",
        }
    }
}
