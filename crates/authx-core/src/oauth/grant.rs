//! What the provider stores about grants: authorization codes, refresh-token families and their
//! tokens, and consents.

use crate::Timestamp;
use crate::secret::TokenHash;
use crate::session::SessionId;
use crate::user::UserId;

/// An authorization code (RFC 6749 §4.1.2), bound to everything the token request must repeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthCode {
    /// SHA-256 of the code.
    pub code_hash: TokenHash,
    /// The client it was issued to.
    pub client_id: String,
    /// The user who authorized.
    pub user_id: UserId,
    /// The browser session that authorized.
    pub session_id: SessionId,
    /// The redirect URI of the authorization request.
    pub redirect_uri: String,
    /// The S256 PKCE challenge.
    pub code_challenge: String,
    /// The OIDC nonce.
    pub nonce: Option<String>,
    /// Granted scopes, space-delimited.
    pub scope: String,
    /// The resource (audience) requested, if any.
    pub resource: Option<String>,
    /// When the user authenticated.
    pub auth_time: Timestamp,
    /// How the user authenticated (the session's `auth_method`; empty when unknown).
    pub auth_methods: String,
    /// The family created when the code was redeemed (set by redemption).
    pub family_id: Option<String>,
    /// The DPoP key the code is bound to (`dpop_jkt`, RFC 9449 §10): its redemption needs a
    /// proof by that key.
    pub dpop_jkt: Option<String>,
    /// The code dies at this time (≤ 60 s after issue).
    pub expires_at: Timestamp,
}

/// What happened when a code was presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeRedemption {
    /// First redemption: the code, now marked redeemed with the given family.
    Redeemed(Box<AuthCode>),
    /// The code was redeemed before: whatever it issued must be revoked.
    AlreadyRedeemed {
        /// The family the first redemption created.
        family_id: Option<String>,
    },
    /// No such code.
    Unknown,
}

/// A refresh-token family: every token rotated from one grant. Revoking the family revokes all
/// of its refresh tokens and the access tokens issued from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshFamily {
    /// Family id (carried as `fid` in access tokens).
    pub id: String,
    /// The client.
    pub client_id: String,
    /// The user.
    pub user_id: UserId,
    /// The browser session of the original grant, if any.
    pub session_id: Option<SessionId>,
    /// Granted scopes, space-delimited.
    pub scope: String,
    /// The resource (audience).
    pub resource: Option<String>,
    /// When the user authenticated.
    pub auth_time: Timestamp,
    /// How the user authenticated (the session's `auth_method`; empty when unknown).
    pub auth_methods: String,
    /// When the grant was made.
    pub created_at: Timestamp,
    /// Absolute end of the family.
    pub expires_at: Timestamp,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
    /// The DPoP key the family's refresh tokens are bound to (a public client's grant made
    /// with a proof, RFC 9449 §5): a refresh needs a proof by that key.
    pub dpop_jkt: Option<String>,
}

impl RefreshFamily {
    /// Whether tokens of the family may be used at `now`.
    #[must_use]
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

/// One refresh token of a family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    /// SHA-256 of the token.
    pub hash: TokenHash,
    /// Its family.
    pub family_id: String,
    /// Issue time.
    pub issued_at: Timestamp,
    /// Inactivity expiry.
    pub idle_expires_at: Timestamp,
    /// When it was rotated away; a token is usable once.
    pub consumed_at: Option<Timestamp>,
}

/// A user's remembered consent for a client and one API (or none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    /// The user.
    pub user_id: UserId,
    /// The client.
    pub client_id: String,
    /// The API the consent covers (`None`: OpenID Connect scopes only, the issuer). A consent
    /// for one API never covers another.
    pub resource: Option<String>,
    /// Consented scopes, space-delimited.
    pub scope: String,
    /// When.
    pub granted_at: Timestamp,
}

/// A redemption to record, of a code or of a device grant: it succeeds once, for a record that
/// is still redeemable at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redemption<'a> {
    /// The code's or the device code's hash.
    pub hash: &'a TokenHash,
    /// The family the redemption opens.
    pub family_id: &'a str,
    /// When it is redeemed.
    pub now: Timestamp,
}

/// One refresh-token rotation: `old` is spent and `new` takes its place, at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation<'a> {
    /// The hash of the token presented.
    pub old: &'a TokenHash,
    /// Its successor, of the same family.
    pub new: &'a RefreshToken,
    /// When.
    pub now: Timestamp,
}
