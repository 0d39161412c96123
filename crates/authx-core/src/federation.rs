//! Federation: signing in through an upstream OpenID provider, with authx as the relying party.
//!
//! This module holds what must be right and needs no network: the one-time transaction of an
//! upstream sign-in, validation of the upstream ID token (OIDC Core §3.1.3.7), the link between
//! an upstream identity and a local account, and the store that keeps them. [`flow`] is the
//! relying party's whole decision, from the authorization request to a local session; it
//! reaches the upstream through the [`UpstreamClient`] port, which the server implements with
//! its outbound HTTP calls and caches.
//!
//! # Security
//! - A transaction is taken from the store in one step, so a `state` is redeemed at most once,
//!   and it is bound to the browser that started it (SECURITY.md #61).
//! - Identities are keyed by (issuer, subject), never by email. An upstream email that matches
//!   an existing account only leads to a *pending* link, completed when the user proves control
//!   of the account by signing in with its password, and only when the upstream says the email
//!   is verified (SECURITY.md #64; the nOAuth failure).
//! - The ID token's algorithm comes from the upstream key, never from the token, and only
//!   asymmetric algorithms exist (RFC 8725 §3.1).

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::Value;

use crate::Timestamp;
use crate::oauth::keys::{SigningAlg, Verifier, verifier_from_jwk};
use crate::secret::{TokenHash, ct_eq};
use crate::store::{AccountStore, StoreError, StoreResult};
use crate::user::{User, UserId, UserStatus, canonical_email};

pub mod flow;
pub mod upstream;

pub use flow::{Browser, Completed, FederationError, RelyingParty, SignInCounter, Started};
pub use upstream::{Metadata, Provider, UpstreamClient, UpstreamError, UpstreamTokens};

/// The stored password hash of an account created through federation: it is not a PHC string,
/// so no password ever verifies against it.
pub const NO_PASSWORD: &str = "!federated";

/// Whether an account has a local password (accounts created by federation have none).
#[must_use]
pub fn has_password(user: &User) -> bool {
    user.password_hash.starts_with('$')
}

/// How long an upstream sign-in may take from start to callback.
pub const TRANSACTION_TTL_SECS: i64 = 600;

/// How long a pending link waits for the local password.
pub const PENDING_LINK_TTL_SECS: i64 = 600;

/// Longest ID token looked at (SECURITY.md #50).
pub const MAX_ID_TOKEN_LEN: usize = 8 * 1024;

/// Longest `sub` accepted (OIDC Core §2: at most 255 ASCII characters).
pub const MAX_SUBJECT_LEN: usize = 255;

crate::secret::opaque_secret!(
    /// The `state` of an upstream authorization request (RFC 6749 §10.12): 256 random bits,
    /// stored only as its hash.
    FederationState
);

crate::secret::opaque_secret!(
    /// The value of the cookie that binds upstream sign-ins to the browser that started them.
    BrowserBinding
);

crate::secret::opaque_secret!(
    /// The value of the cookie that names a pending link waiting for the local password.
    LinkToken
);

/// One upstream sign-in in flight, from `/federation/{provider}/start` to its callback.
#[derive(Clone, PartialEq, Eq)]
pub struct Transaction {
    /// SHA-256 of the `state` sent upstream.
    pub state_hash: TokenHash,
    /// The configured provider's name.
    pub provider: String,
    /// The issuer the response must come from (mix-up defence, RFC 9700 §4.4).
    pub issuer: String,
    /// SHA-256 of the browser-binding cookie of the browser that started it.
    pub browser_hash: TokenHash,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier (RFC 7636) sent with the code; lives only as long as the transaction.
    pub pkce_verifier: String,
    /// The local path to go to afterwards.
    pub return_to: String,
    /// When it started.
    pub created_at: Timestamp,
    /// When it stops being accepted.
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("provider", &self.provider)
            .field("issuer", &self.issuer)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A local account's link to an upstream identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Public identifier (for listing and removal).
    pub id: String,
    /// The configured provider's name when the link was made.
    pub provider: String,
    /// The upstream issuer.
    pub issuer: String,
    /// The upstream subject.
    pub subject: String,
    /// The local account.
    pub user_id: UserId,
    /// The upstream email when the link was made, for display.
    pub email: Option<String>,
    /// When it was made.
    pub created_at: Timestamp,
}

/// An upstream identity waiting for the user to prove control of the local account it names.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingLink {
    /// SHA-256 of the [`LinkToken`] cookie.
    pub token_hash: TokenHash,
    /// The provider.
    pub provider: String,
    /// The upstream issuer.
    pub issuer: String,
    /// The upstream subject.
    pub subject: String,
    /// The local account whose email the upstream asserted.
    pub user_id: UserId,
    /// The (verified) upstream email.
    pub email: String,
    /// Where to go once linked.
    pub return_to: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it stops being accepted.
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for PendingLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLink")
            .field("provider", &self.provider)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// Transactions, links and pending links.
#[async_trait]
pub trait FederationStore: Send + Sync + 'static {
    /// Stores a new transaction.
    async fn put_transaction(&self, t: &Transaction) -> StoreResult<()>;
    /// Removes and returns the transaction of a `state` in one step, expired or not, so a
    /// `state` is used at most once.
    async fn take_transaction(&self, state_hash: &TokenHash) -> StoreResult<Option<Transaction>>;
    /// The link of an upstream identity.
    async fn link(&self, issuer: &str, subject: &str) -> StoreResult<Option<Link>>;
    /// Creates a link. [`StoreError::Conflict`] when the upstream identity is already linked.
    async fn create_link(&self, link: &Link) -> StoreResult<()>;
    /// The links of a user, oldest first.
    async fn user_links(&self, user: &UserId) -> StoreResult<Vec<Link>>;
    /// Removes one link of `user`; returns whether there was one.
    async fn delete_link(&self, user: &UserId, id: &str) -> StoreResult<bool>;
    /// Stores a pending link.
    async fn put_pending_link(&self, p: &PendingLink) -> StoreResult<()>;
    /// A pending link by the hash of its cookie, expired or not.
    async fn pending_link(&self, token_hash: &TokenHash) -> StoreResult<Option<PendingLink>>;
    /// Removes a pending link; returns whether it was there (exactly one caller gets `true`).
    async fn delete_pending_link(&self, token_hash: &TokenHash) -> StoreResult<bool>;
    /// Deletes expired transactions and pending links; returns how many.
    async fn purge_federation(&self, now: Timestamp) -> StoreResult<u64>;
}

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

/// The public keys of an upstream, built from its JWK Set.
#[derive(Debug, Clone, Default)]
pub struct UpstreamKeys {
    keys: Vec<(Option<String>, Verifier)>,
}

/// Shortest RSA modulus accepted, in bytes (2048 bits; RFC 8725 §3.5, SECURITY.md #47).
const MIN_RSA_MODULUS_BYTES: usize = 256;

impl UpstreamKeys {
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
    fn find(&self, kid: Option<&str>, alg: jsonwebtoken::Algorithm) -> Option<&Verifier> {
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
    let alg = header.alg;
    if !matches!(
        alg,
        jsonwebtoken::Algorithm::RS256
            | jsonwebtoken::Algorithm::ES256
            | jsonwebtoken::Algorithm::EdDSA
    ) {
        return Err(IdTokenError::Algorithm);
    }
    let verifier = keys
        .find(header.kid.as_deref(), alg)
        .ok_or(IdTokenError::UnknownKey)?;
    if verifier.alg.jwt_algorithm() != alg {
        return Err(IdTokenError::Algorithm);
    }
    let mut v = jsonwebtoken::Validation::new(alg);
    // Every claim is checked below, against the injected clock and with exact types.
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let data =
        jsonwebtoken::decode::<RequiredClaims>(token, &verifier.key, &v).map_err(|e| {
            match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => IdTokenError::Signature,
                _ => IdTokenError::Malformed,
            }
        })?;
    let c = data.claims;
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

/// An upstream identity after validation, with its claims mapped to local fields.
#[derive(Debug, Clone)]
pub struct UpstreamIdentity {
    /// The configured provider's name.
    pub provider: String,
    /// The upstream issuer.
    pub issuer: String,
    /// The upstream subject.
    pub subject: String,
    /// The upstream email, canonicalized; `None` when absent or unusable.
    pub email: Option<String>,
    /// Whether the upstream says the email is verified (`true` only for a JSON `true`).
    pub email_verified: bool,
}

impl UpstreamIdentity {
    /// Maps the claims of a validated ID token: `email_claim` and `email_verified_claim` name
    /// the upstream claims that hold the email and its verification.
    #[must_use]
    pub fn from_token(
        provider: &str,
        issuer: &str,
        token: &VerifiedIdToken,
        email_claim: &str,
        email_verified_claim: &str,
    ) -> Self {
        let email = token
            .claims
            .get(email_claim)
            .and_then(Value::as_str)
            .and_then(|e| canonical_email(e).ok());
        // Only a JSON boolean `true` counts: "true" as a string is not a verification.
        let email_verified = token.claims.get(email_verified_claim) == Some(&Value::Bool(true));
        Self {
            provider: provider.to_owned(),
            issuer: issuer.to_owned(),
            subject: token.subject.clone(),
            email,
            email_verified,
        }
    }
}

/// Why an upstream identity cannot sign in here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The linked local account is disabled.
    #[error("this account is disabled")]
    Disabled,
    /// The upstream sent no usable email, and there is no link.
    #[error(
        "the identity provider did not share an email address, so no account can be found or created"
    )]
    NoEmail,
    /// A local account has the email, and the upstream does not say it is verified.
    #[error(
        "an account with this email address already exists here, and the identity provider does not confirm that the address is verified, so the accounts cannot be linked"
    )]
    EmailNotVerified,
    /// A local account has the email but no password to prove control with.
    #[error(
        "an account with this email address already exists here and cannot be linked automatically; ask an administrator"
    )]
    CannotProveControl,
    /// No account matches, and the upstream does not say the email address is verified, so
    /// no account is created for it.
    #[error(
        "your identity provider did not verify your email address, so no account can be created for it here"
    )]
    UnverifiedEmailSignUp,
    /// No account matches and this provider may not create accounts.
    #[error(
        "there is no account here for this identity, and this identity provider is not allowed to create accounts"
    )]
    SignUpNotAllowed,
}

/// Where an upstream identity leads.
#[derive(Debug)]
pub enum Resolution {
    /// A linked, active account: sign it in.
    Linked(User),
    /// A new account was created and linked: sign it in.
    Created(User),
    /// An existing account has the verified email: the user must prove control of it first.
    ProveControl(User),
    /// Refused.
    Refused(Refusal),
}

/// Finds (or creates) the local account of an upstream identity, by (issuer, subject) only.
///
/// # Errors
/// Storage failures.
pub async fn resolve(
    accounts: &dyn AccountStore,
    links: &dyn FederationStore,
    id: &UpstreamIdentity,
    allow_sign_up: bool,
    now: Timestamp,
) -> Result<Resolution, StoreError> {
    if let Some(link) = links.link(&id.issuer, &id.subject).await? {
        if let Some(user) = accounts.user_by_id(&link.user_id).await? {
            return Ok(if user.status == UserStatus::Active {
                Resolution::Linked(user)
            } else {
                Resolution::Refused(Refusal::Disabled)
            });
        }
    }
    let Some(email) = &id.email else {
        return Ok(Resolution::Refused(Refusal::NoEmail));
    };
    if let Some(user) = accounts.user_by_email(email).await? {
        return Ok(Resolution::Refused(if !id.email_verified {
            Refusal::EmailNotVerified
        } else if user.status != UserStatus::Active {
            Refusal::Disabled
        } else if !has_password(&user) {
            Refusal::CannotProveControl
        } else {
            return Ok(Resolution::ProveControl(user));
        }));
    }
    if !allow_sign_up {
        return Ok(Resolution::Refused(Refusal::SignUpNotAllowed));
    }
    // An address the upstream did not verify may belong to someone else: an account created
    // for it would keep its real owner from signing up or linking. Nothing is created.
    if !id.email_verified {
        return Ok(Resolution::Refused(Refusal::UnverifiedEmailSignUp));
    }
    let user = User {
        id: UserId::generate(),
        email: email.clone(),
        password_hash: NO_PASSWORD.to_owned(),
        status: UserStatus::Active,
        is_admin: false,
        created_at: now,
        password_changed_at: now,
    };
    match accounts.create_user(&user).await {
        Ok(()) => {}
        // The address was registered a moment ago, perhaps by a parallel callback of this
        // same identity: only its link, never the email, may lead to that account.
        Err(StoreError::Conflict) => {
            if let Some(link) = links.link(&id.issuer, &id.subject).await? {
                if let Some(user) = accounts.user_by_id(&link.user_id).await? {
                    if user.status == UserStatus::Active {
                        return Ok(Resolution::Linked(user));
                    }
                }
            }
            return Ok(Resolution::Refused(Refusal::CannotProveControl));
        }
        Err(e) => return Err(e),
    }
    let link = new_link(id, &user.id, now);
    match links.create_link(&link).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => {
            return Ok(Resolution::Refused(Refusal::CannotProveControl));
        }
        Err(e) => return Err(e),
    }
    crate::audit::record_current(
        crate::audit::AuditEvent::success("federated_user_created")
            .user(&user.id)
            .with("provider", &id.provider),
    );
    Ok(Resolution::Created(user))
}

/// A link of `id` to `user`, made now.
#[must_use]
pub fn new_link(id: &UpstreamIdentity, user: &UserId, now: Timestamp) -> Link {
    Link {
        id: crate::secret::random_id(),
        provider: id.provider.clone(),
        issuer: id.issuer.clone(),
        subject: id.subject.clone(),
        user_id: user.clone(),
        email: id.email.clone(),
        created_at: now,
    }
}

#[cfg(test)]
mod tests;
