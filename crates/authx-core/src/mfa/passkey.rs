//! Passkeys (WebAuthn): the relying party ([`RelyingParty`]) and the [`Factors`] operations
//! that register a passkey, and check an assertion made with one.
//!
//! A passkey is a factor of kind [`FactorKind::Passkey`] in the same store as authenticator
//! apps: it is listed, renamed and removed like one, and counts as a second factor. Ceremony
//! state (which challenge was sent, to whom) is kept by the caller, server-side
//! ([`crate::auth`]'s passkey steps store it as a [`super::Ceremony`]).
//!
//! # Security
//! - **Relying party.** The RP id is the issuer's host (or `[webauthn] rp_id`), the only
//!   origin accepted is the issuer's (or `[webauthn] origin`): an assertion made for another
//!   site or origin is refused by the signature check over the client data and RP id hash.
//! - **User verification** is *preferred*: an authenticator that can verify its user (PIN,
//!   biometrics) does, and [`PasskeyUse::user_verified`] says whether it did, so the sign-in
//!   earns `amr` `user` and the phishing-resistant `acr` only then. A credential registered
//!   with verification is refused later without it (webauthn-rs checks the registered state).
//! - **Credentials at rest** are sealed like TOTP secrets (AES-256-GCM under the
//!   key-encryption key, bound to user and factor): a public key written into the database by
//!   someone without the key does not open, so it cannot be used to plant a credential.
//! - **One account per credential.** A credential id is unique across users (a unique index);
//!   an assertion is checked against the user the ceremony was for, and a passwordless
//!   assertion's user handle must name the credential's owner.
//! - **Counters.** A signature counter that does not grow is refused (a cloned authenticator),
//!   and the stored credential is updated after each use.

use serde::{Deserialize, Serialize};
use webauthn_rs_core::proto::{
    AuthenticationState, CreationChallengeResponse, Credential, PublicKeyCredential,
    RegisterPublicKeyCredential, RegistrationState, RequestChallengeResponse,
    ResidentKeyRequirement, UserVerificationPolicy,
};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::audit::AuditEvent;
use crate::user::{User, UserId};

pub use super::relying_party::{CEREMONY_SECS, RelyingParty, RelyingPartyError};
use super::service::{Confirmed, Factors, MAX_FACTORS, MfaError, factor_name};
use super::store::{Factor, FactorId, FactorKind};

/// The name of a passkey registered without one.
pub const DEFAULT_PASSKEY_NAME: &str = "Passkey";

/// What a passkey assertion proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyUse {
    /// The passkey's owner.
    pub user_id: UserId,
    /// The passkey.
    pub factor_id: FactorId,
    /// Whether the authenticator verified its user (PIN or biometrics).
    pub user_verified: bool,
}

/// The state of a begun assertion, to keep server-side until its answer.
#[derive(Serialize, Deserialize)]
pub struct PendingAssertion(AuthenticationState);

/// The state of a begun registration, to keep server-side until its answer.
#[derive(Serialize, Deserialize)]
pub struct PendingRegistration(RegistrationState);

/// The user handle authenticators store for `user`: the account's id, no personal data.
fn user_handle(user: &UserId) -> Vec<u8> {
    user.0.as_bytes().to_vec()
}

/// A credential id as stored (base64url without padding).
#[must_use]
pub fn credential_id_text(raw: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(raw)
}

/// The associated data a passkey's credential is sealed with.
fn passkey_aad(user: &UserId, id: &FactorId) -> String {
    format!("authx mfa passkey {} {}", user.0, id.0)
}

impl Factors {
    /// Turns on passkeys with relying party `rp`.
    #[must_use]
    pub fn with_relying_party(mut self, rp: RelyingParty) -> Self {
        self.rp = Some(rp);
        self
    }

    /// Whether passkeys are on.
    #[must_use]
    pub fn passkeys_enabled(&self) -> bool {
        self.rp.is_some()
    }

    fn rp(&self) -> Result<&RelyingParty, MfaError> {
        self.rp.as_ref().ok_or(MfaError::PasskeysOff)
    }

    /// Begins registering a passkey for `user`: the options for the browser's
    /// `navigator.credentials.create()` and the state to keep server-side. The user's other
    /// passkeys are excluded, so one authenticator is registered once.
    ///
    /// # Errors
    /// [`MfaError::PasskeysOff`], [`MfaError::TooManyFactors`], a store failure.
    pub async fn begin_passkey_registration(
        &self,
        user: &User,
    ) -> Result<(CreationChallengeResponse, PendingRegistration), MfaError> {
        let rp = self.rp()?;
        let confirmed = self.confirmed(&user.id).await?;
        if confirmed.len() >= MAX_FACTORS {
            return Err(MfaError::TooManyFactors);
        }
        let exclude: Vec<Vec<u8>> = confirmed
            .iter()
            .filter_map(|f| f.credential_id.as_deref())
            .filter_map(|c| URL_SAFE_NO_PAD.decode(c).ok())
            .collect();
        let builder = rp
            .core
            .new_challenge_register_builder(&user_handle(&user.id), &user.email, &user.email)
            .map_err(|e| MfaError::Passkey(e.to_string()))?
            .user_verification_policy(UserVerificationPolicy::Preferred)
            .require_resident_key(false)
            .exclude_credentials(Some(exclude));
        let (mut ccr, state) = rp
            .core
            .generate_challenge_register(builder)
            .map_err(|e| MfaError::Passkey(e.to_string()))?;
        // A discoverable credential where the authenticator can keep one, so the passkey also
        // signs in without a password; a security key that cannot still works as a factor.
        if let Some(sel) = ccr.public_key.authenticator_selection.as_mut() {
            sel.resident_key = Some(ResidentKeyRequirement::Preferred);
            sel.require_resident_key = false;
        }
        Ok((ccr, PendingRegistration(state)))
    }

    /// Finishes registering a passkey for `user` with the browser's answer `reg` to the
    /// registration begun as `state`, naming it `name`.
    ///
    /// # Errors
    /// [`MfaError::InvalidPasskey`] for an answer that does not verify (wrong challenge,
    /// origin, RP), [`MfaError::CredentialTaken`] when the credential is registered already,
    /// [`MfaError::InvalidName`], [`MfaError::TooManyFactors`], a store or sealing failure.
    ///
    /// When the user had no recovery codes (this is their first factor), a first set is made
    /// and returned, to show once, as after an authenticator app's confirmation.
    pub async fn finish_passkey_registration(
        &self,
        user: &UserId,
        name: &str,
        reg: &RegisterPublicKeyCredential,
        state: &PendingRegistration,
    ) -> Result<Confirmed, MfaError> {
        let rp = self.rp()?;
        let name = factor_name(name, DEFAULT_PASSKEY_NAME)?;
        let credential = match rp.core.register_credential(reg, &state.0, None) {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(error = %e, "passkey registration refused");
                return Err(self.refused(
                    "passkey_registration_refused",
                    user,
                    "invalid_response",
                    MfaError::InvalidPasskey,
                ));
            }
        };
        if self.confirmed(user).await?.len() >= MAX_FACTORS {
            return Err(MfaError::TooManyFactors);
        }
        let credential_id = credential_id_text(&credential.cred_id);
        if self
            .store
            .factor_by_credential(&credential_id)
            .await?
            .is_some()
        {
            return Err(self.refused(
                "passkey_registration_refused",
                user,
                "credential_taken",
                MfaError::CredentialTaken,
            ));
        }
        let id = FactorId::generate();
        let sealed = self.seal_credential(user, &id, &credential)?;
        let now = self.clock.now();
        let inserted = self
            .store
            .insert_factor(&Factor {
                id: id.clone(),
                user_id: user.clone(),
                kind: FactorKind::Passkey,
                name,
                sealed_secret: sealed,
                created_at: now,
                pending_until: None,
                last_step: None,
                last_used_at: None,
                credential_id: Some(credential_id),
            })
            .await;
        match inserted {
            Ok(()) => {}
            Err(crate::store::StoreError::Conflict) => return Err(MfaError::CredentialTaken),
            Err(e) => return Err(e.into()),
        }
        self.audit.record(
            AuditEvent::success("mfa_factor_confirmed")
                .user(&user.0)
                .with("factor", &id)
                .with("kind", FactorKind::Passkey.as_str())
                .with("user_verified", credential.user_verified),
        );
        let recovery_codes = if self.store.count_recovery_codes(user).await? == 0 {
            Some(self.replace_codes(user, now).await?)
        } else {
            None
        };
        Ok(Confirmed {
            factor_id: id,
            recovery_codes,
        })
    }

    /// Begins an assertion: by `user`'s passkeys (a second factor), or by any discoverable
    /// passkey when `user` is `None` (a sign-in without a password).
    ///
    /// # Errors
    /// [`MfaError::PasskeysOff`], [`MfaError::NoSecondFactor`] when `user` has no passkey, a
    /// store or sealing failure.
    pub async fn begin_passkey_assertion(
        &self,
        user: Option<&UserId>,
    ) -> Result<(RequestChallengeResponse, PendingAssertion), MfaError> {
        let rp = self.rp()?;
        let creds = match user {
            Some(u) => {
                let creds: Vec<Credential> = self
                    .passkeys(u)
                    .await?
                    .into_iter()
                    .map(|(_, c)| c)
                    .collect();
                if creds.is_empty() {
                    return Err(MfaError::NoSecondFactor);
                }
                creds
            }
            None => Vec::new(),
        };
        let builder = rp
            .core
            .new_challenge_authenticate_builder(creds, Some(UserVerificationPolicy::Preferred))
            .map_err(|e| MfaError::Passkey(e.to_string()))?;
        let (rcr, state) = rp
            .core
            .generate_challenge_authenticate(builder)
            .map_err(|e| MfaError::Passkey(e.to_string()))?;
        Ok((rcr, PendingAssertion(state)))
    }

    /// Checks the browser's assertion `cred` against the assertion begun as `state` for
    /// `user` (or for anyone, when `None`), and records the passkey's use.
    ///
    /// # Errors
    /// [`MfaError::InvalidPasskey`] for an unknown credential, one of another user, a user
    /// handle that does not name the owner, or an assertion that does not verify (signature,
    /// challenge, origin, counter); a store or sealing failure.
    pub async fn finish_passkey_assertion(
        &self,
        user: Option<&UserId>,
        cred: &PublicKeyCredential,
        mut state: PendingAssertion,
    ) -> Result<PasskeyUse, MfaError> {
        let rp = self.rp()?;
        let refused = |who: &UserId, reason: &'static str| {
            self.refused("passkey_refused", who, reason, MfaError::InvalidPasskey)
        };
        let credential_id = credential_id_text(cred.get_credential_id());
        let factor = match self.store.factor_by_credential(&credential_id).await? {
            Some(f) if f.kind == FactorKind::Passkey && f.is_confirmed() => f,
            _ => {
                self.audit.record(
                    AuditEvent::failure("passkey_refused").with("reason", "unknown_credential"),
                );
                return Err(MfaError::InvalidPasskey);
            }
        };
        if let Some(expected) = user {
            if &factor.user_id != expected {
                return Err(refused(expected, "credential_of_another_user"));
            }
        }
        // When the authenticator names the user, it must name the credential's owner.
        let handle_ok = match cred.get_user_unique_id() {
            Some(h) => h == user_handle(&factor.user_id).as_slice(),
            None => user.is_some(),
        };
        if !handle_ok {
            return Err(refused(&factor.user_id, "user_handle_mismatch"));
        }
        let mut credential = self.open_credential(&factor)?;
        if user.is_none() {
            state.0.set_allowed_credentials(vec![credential.clone()]);
        }
        let result = match rp.core.authenticate_credential(cred, &state.0) {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(error = %e, "passkey assertion refused");
                return Err(refused(&factor.user_id, "invalid_assertion"));
            }
        };
        if result.counter() > credential.counter {
            credential.counter = result.counter();
        }
        credential.backup_state = result.backup_state();
        credential.backup_eligible |= result.backup_eligible();
        let sealed = self.seal_credential(&factor.user_id, &factor.id, &credential)?;
        let now = self.clock.now();
        if !self
            .store
            .update_factor_secret(&factor.user_id, &factor.id, &sealed, now)
            .await?
        {
            // Removed while the browser was answering.
            return Err(refused(&factor.user_id, "passkey_removed"));
        }
        self.audit.record(
            AuditEvent::success("passkey_used")
                .user(&factor.user_id.0)
                .with("factor", &factor.id)
                .with("user_verified", result.user_verified()),
        );
        Ok(PasskeyUse {
            user_id: factor.user_id,
            factor_id: factor.id,
            user_verified: result.user_verified(),
        })
    }

    /// Whether `user` has a confirmed passkey.
    ///
    /// # Errors
    /// A store failure.
    pub async fn has_passkey(&self, user: &UserId) -> Result<bool, MfaError> {
        Ok(self
            .confirmed(user)
            .await?
            .iter()
            .any(|f| f.kind == FactorKind::Passkey))
    }

    /// The user's confirmed passkeys with their credentials.
    async fn passkeys(&self, user: &UserId) -> Result<Vec<(Factor, Credential)>, MfaError> {
        let mut out = Vec::new();
        for f in self.confirmed(user).await? {
            if f.kind == FactorKind::Passkey {
                let c = self.open_credential(&f)?;
                out.push((f, c));
            }
        }
        Ok(out)
    }

    /// Stores `credential` (a WebAuthn credential as webauthn-rs serializes it) as a passkey
    /// of `user`, as a registration would: for tests that need a passkey without a browser.
    #[cfg(test)]
    pub(crate) async fn plant_passkey(&self, user: &UserId, credential: &str) -> FactorId {
        let credential: Credential = serde_json::from_str(credential).expect("credential");
        let id = FactorId::generate();
        let sealed = self
            .seal_credential(user, &id, &credential)
            .expect("sealed");
        self.store
            .insert_factor(&Factor {
                id: id.clone(),
                user_id: user.clone(),
                kind: FactorKind::Passkey,
                name: "planted".into(),
                sealed_secret: sealed,
                created_at: self.clock.now(),
                pending_until: None,
                last_step: None,
                last_used_at: None,
                credential_id: Some(credential_id_text(&credential.cred_id)),
            })
            .await
            .expect("stored");
        id
    }

    fn seal_credential(
        &self,
        user: &UserId,
        id: &FactorId,
        credential: &Credential,
    ) -> Result<Vec<u8>, MfaError> {
        let json = serde_json::to_vec(credential)
            .map_err(|e| MfaError::Passkey(format!("cannot encode the credential: {e}")))?;
        self.encryptor
            .seal(&passkey_aad(user, id), &json)
            .map_err(MfaError::Sealing)
    }

    fn open_credential(&self, factor: &Factor) -> Result<Credential, MfaError> {
        let plain = self
            .encryptor
            .open(
                &passkey_aad(&factor.user_id, &factor.id),
                &factor.sealed_secret,
            )
            .map_err(MfaError::Sealing)?;
        serde_json::from_slice(&plain)
            .map_err(|e| MfaError::Passkey(format!("a stored credential does not decode: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relying_party_follows_the_issuer() {
        let rp = RelyingParty::new("https://id.example.com", None, "authx").unwrap();
        assert_eq!(rp.rp_id(), "id.example.com");
        let rp = RelyingParty::new("https://id.example.com", Some("example.com"), "authx").unwrap();
        assert_eq!(rp.rp_id(), "example.com");
        let rp = RelyingParty::new("http://localhost:8080", None, "authx").unwrap();
        assert_eq!(rp.rp_id(), "localhost");
    }

    #[test]
    fn relying_party_refuses_ips_and_foreign_ids() {
        assert!(matches!(
            RelyingParty::new("http://127.0.0.1:8080", None, "authx"),
            Err(RelyingPartyError::RpId(_))
        ));
        assert!(matches!(
            RelyingParty::new("https://id.example.com", Some("other.com"), "authx"),
            Err(RelyingPartyError::Mismatch { .. })
        ));
        assert!(matches!(
            RelyingParty::new("https://evil-example.com", Some("example.com"), "authx"),
            Err(RelyingPartyError::Mismatch { .. })
        ));
        assert!(matches!(
            RelyingParty::new("ftp://example.com", None, "authx"),
            Err(RelyingPartyError::Origin(_))
        ));
    }
}
