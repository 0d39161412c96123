//! Types the provider's parts share: its settings and stores, the secrets it hands out, how a
//! client authenticates, and the token response.

use std::sync::Arc;

use serde_json::{Value, json};

use super::device::DeviceStore;
use super::keys::{RotationPolicy, SigningAlg};
use super::store::{ClientStore, GrantStore, KeyStore, PushedRequestStore};
use crate::secret::opaque_secret;
use crate::store::{AccountStore, SessionStore, ThrottleStore};
use crate::throttle::ThrottlePolicy;

opaque_secret!(
    /// A client secret: 256 random bits, shown once at registration, stored as SHA-256.
    ClientSecret
);
opaque_secret!(
    /// An authorization code (RFC 6749 §4.1.2).
    AuthorizationCode
);
opaque_secret!(
    /// An opaque refresh token (RFC 6749 §1.5).
    RefreshTokenValue
);

/// Scopes that OpenID Connect defines; they need no API resource.
pub const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// Provider settings.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// The issuer URL.
    pub issuer: String,
    /// Access-token signing algorithm (default ES256).
    pub access_token_alg: SigningAlg,
    /// Authorization code lifetime (default 60 s).
    pub code_ttl_secs: i64,
    /// ID token lifetime (default 15 min).
    pub id_token_ttl_secs: i64,
    /// Window in which a retry of the immediately previous refresh token gets the same
    /// successor instead of revoking the family (default 10 s; 0 turns it off).
    pub refresh_grace_secs: i64,
    /// Clock skew allowed when verifying tokens.
    pub leeway_secs: i64,
    /// Key rotation.
    pub rotation: RotationPolicy,
    /// Client-authentication throttling.
    pub client_throttle: ThrottlePolicy,
    /// Whether every authorization request must be pushed first (RFC 9126 §5).
    pub require_pushed_authorization_requests: bool,
    /// Whether DPoP (RFC 9449) binds what is issued to a proof's key (`[oauth] dpop`; default
    /// off). Turn it on only once every instance and guard understands `cnf`: an older
    /// verifier ignores the claim and would accept a bound token as a bearer token.
    pub dpop: bool,
    /// Whether DPoP proofs must carry a server nonce (RFC 9449 §8, §9).
    pub dpop_require_nonce: bool,
    /// How recent a DPoP proof must be.
    pub dpop_proof: super::dpop::ProofPolicy,
    /// Whether dynamic client registration is served (RFC 7591): discovery then names the
    /// `registration_endpoint`.
    pub registration_enabled: bool,
}

impl OAuthConfig {
    /// Defaults for an issuer.
    #[must_use]
    pub fn new(issuer: &str) -> Self {
        Self {
            issuer: issuer.to_owned(),
            access_token_alg: SigningAlg::Es256,
            code_ttl_secs: 60,
            id_token_ttl_secs: 900,
            refresh_grace_secs: 10,
            leeway_secs: 30,
            rotation: RotationPolicy::default(),
            client_throttle: ThrottlePolicy {
                account_free_failures: 20,
                lock_after: 100,
                ..ThrottlePolicy::default()
            },
            require_pushed_authorization_requests: false,
            dpop: false,
            dpop_require_nonce: false,
            dpop_proof: super::dpop::ProofPolicy::default(),
            registration_enabled: false,
        }
    }
}

/// The stores the provider needs.
#[derive(Clone)]
pub struct OAuthStores {
    /// Clients and resources.
    pub clients: Arc<dyn ClientStore>,
    /// Signing keys.
    pub keys: Arc<dyn KeyStore>,
    /// Codes, families, consents.
    pub grants: Arc<dyn GrantStore>,
    /// Accounts.
    pub accounts: Arc<dyn AccountStore>,
    /// Browser sessions.
    pub sessions: Arc<dyn SessionStore>,
    /// Failure counters.
    pub throttle: Arc<dyn ThrottleStore>,
    /// Device authorization grants.
    pub devices: Arc<dyn DeviceStore>,
    /// Pushed authorization requests.
    pub pushed: Arc<dyn PushedRequestStore>,
}

/// How a client presented its credentials.
#[derive(Debug)]
pub enum ClientAuth {
    /// `client_secret_basic` or `client_secret_post`.
    Secret {
        /// `client_id`.
        id: String,
        /// `client_secret`.
        secret: String,
    },
    /// A public client: `client_id` only.
    Public {
        /// `client_id`.
        id: String,
    },
    /// `private_key_jwt`: a JWT signed with one of the client's keys (RFC 7523 §2.2).
    Assertion {
        /// `client_id`, when the request names it (it must equal the assertion's `sub`).
        id: Option<String>,
        /// `client_assertion`.
        assertion: String,
        /// The URL of the endpoint called, one of the audiences the assertion may name.
        endpoint: String,
    },
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug)]
pub struct TokenResponse {
    /// The JWT access token.
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// A refresh token, when the grant yields one.
    pub refresh_token: Option<String>,
    /// An ID token, when `openid` was granted.
    pub id_token: Option<String>,
    /// Granted scopes.
    pub scope: String,
    /// Whether the access token is bound to a DPoP key (`token_type: DPoP`, RFC 9449 §5).
    pub dpop_bound: bool,
}

impl TokenResponse {
    /// An access token alone, with its granted scopes: no refresh token, no ID token.
    #[must_use]
    pub(crate) fn access_only(
        (access_token, expires_in): (String, i64),
        scope: &super::scope::Scopes,
    ) -> Self {
        Self {
            access_token,
            expires_in,
            refresh_token: None,
            id_token: None,
            scope: scope.to_param(),
            dpop_bound: false,
        }
    }

    /// The JSON body.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "access_token": self.access_token,
            "token_type": if self.dpop_bound { "DPoP" } else { "Bearer" },
            "expires_in": self.expires_in,
        });
        if !self.scope.is_empty() {
            v["scope"] = Value::String(self.scope.clone());
        }
        if let Some(rt) = &self.refresh_token {
            v["refresh_token"] = Value::String(rt.clone());
        }
        if let Some(id) = &self.id_token {
            v["id_token"] = Value::String(id.clone());
        }
        v
    }
}
