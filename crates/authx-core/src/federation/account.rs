//! The local account of an upstream identity: found by (issuer, subject) only, created only
//! for an email the upstream verified, and never taken over through an email match.

use serde_json::Value;

use super::id_token::VerifiedIdToken;
use super::records::{FederationStore, Link};
use crate::Timestamp;
use crate::store::{AccountStore, StoreError};
use crate::user::{User, UserId, UserStatus, canonical_email};

/// The stored password hash of an account created through federation: it is not a PHC string,
/// so no password ever verifies against it.
pub const NO_PASSWORD: &str = "!federated";

/// Whether an account has a local password (accounts created by federation have none).
#[must_use]
pub fn has_password(user: &User) -> bool {
    user.password_hash.starts_with('$')
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
    /// Whether the upstream says its user passed more than one factor (`amr` holds `mfa`).
    pub upstream_mfa: bool,
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
        let upstream_mfa = token
            .claims
            .get("amr")
            .and_then(Value::as_array)
            .is_some_and(|amr| amr.iter().any(|v| v.as_str() == Some("mfa")));
        Self {
            provider: provider.to_owned(),
            issuer: issuer.to_owned(),
            subject: token.subject.clone(),
            email,
            email_verified,
            upstream_mfa,
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
    /// The upstream named the user with a one-time identifier (a SAML transient NameID), which
    /// can neither find, link nor create an account.
    #[error(
        "the identity provider sent a one-time identifier for you (a transient NameID), which cannot be linked to an account; it must send a persistent one"
    )]
    NotPersistent,
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
        // Created only for an address the upstream verified.
        email_verified: true,
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
