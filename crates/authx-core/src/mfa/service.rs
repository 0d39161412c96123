//! [`Factors`]: enrolment, use and management of a user's second factors and recovery codes.

use std::sync::Arc;

use crate::audit::{Audit, AuditEvent};
use crate::clock::{Clock, Timestamp};
use crate::oauth::keys::{KeyEncryptor, KeyError};
use crate::store::StoreError;
use crate::user::{User, UserId};

use super::enrol::{otpauth_uri, qr_svg};
use super::recovery::{RecoveryCodes, RecoveryKey, hash_typed};
use super::store::{Factor, FactorId, FactorKind, FactorStore, StepUse};
use super::totp::{Totp, TotpSecret};

/// How long an enrolment waits for its first code before it lapses, in seconds.
pub const PENDING_SECS: i64 = 10 * 60;
/// Confirmed factors one user may have.
pub const MAX_FACTORS: usize = 10;
/// Longest factor name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// The name of a factor enrolled without one.
pub const DEFAULT_TOTP_NAME: &str = "Authenticator app";

/// Why a factor operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    /// The code is wrong, already used, or outside the accepted window.
    #[error("the code is not valid")]
    InvalidCode,
    /// There is no enrolment waiting for this code: unknown, already confirmed or lapsed.
    #[error("no enrolment is waiting for a code; start again")]
    NoPendingEnrolment,
    /// The user has no such factor.
    #[error("no such factor")]
    UnknownFactor,
    /// The user has no confirmed second factor (recovery codes need one).
    #[error("no second factor is enrolled")]
    NoSecondFactor,
    /// The user already has [`MAX_FACTORS`] factors.
    #[error("too many factors; remove one first")]
    TooManyFactors,
    /// The name is longer than [`MAX_NAME_CHARS`] or holds control characters.
    #[error("the name is too long or holds control characters")]
    InvalidName,
    /// A stored secret cannot be opened (wrong key-encryption key or altered row).
    #[error("a stored factor secret cannot be decrypted")]
    Sealing(#[source] KeyError),
    /// The store failed.
    #[error("storage failed")]
    Store(#[from] StoreError),
    /// The passkey ceremony is unknown, used, expired, or was begun elsewhere.
    #[error("this passkey request has expired; try again")]
    CeremonyExpired,
    /// Passkeys are not configured.
    #[error("passkeys are not enabled")]
    PasskeysOff,
    /// A passkey's answer does not verify, or names a credential that is unknown or not this
    /// account's.
    #[error("the passkey was not accepted")]
    InvalidPasskey,
    /// The credential is registered already (to this account or another).
    #[error("this passkey is registered already")]
    CredentialTaken,
    /// The WebAuthn library refused to build a ceremony (a configuration fault).
    #[error("passkey ceremony failed: {0}")]
    Passkey(String),
}

/// A factor as its owner sees it in a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactorInfo {
    /// Its identifier.
    pub id: FactorId,
    /// Its kind.
    pub kind: FactorKind,
    /// Its name.
    pub name: String,
    /// When it was enrolled.
    pub created_at: Timestamp,
    /// When it last served.
    pub last_used_at: Option<Timestamp>,
}

/// A begun TOTP enrolment: what the user's app needs, shown once. Redacted in `Debug`.
pub struct TotpEnrolment {
    factor_id: FactorId,
    secret: TotpSecret,
    uri: String,
    qr_svg: String,
}

impl TotpEnrolment {
    /// The factor that the first code confirms.
    #[must_use]
    pub fn factor_id(&self) -> &FactorId {
        &self.factor_id
    }

    /// The secret (base32) for typing into an app, in groups of four.
    #[must_use]
    pub fn secret_text(&self) -> String {
        let b32 = self.secret.to_base32();
        let groups: Vec<&str> = b32
            .as_bytes()
            .chunks(4)
            .filter_map(|c| std::str::from_utf8(c).ok())
            .collect();
        groups.join(" ")
    }

    /// The secret itself.
    #[must_use]
    pub fn secret(&self) -> &TotpSecret {
        &self.secret
    }

    /// The `otpauth://` URI.
    #[must_use]
    pub fn otpauth_uri(&self) -> &str {
        &self.uri
    }

    /// The URI as a QR code, an SVG document.
    #[must_use]
    pub fn qr_svg(&self) -> &str {
        &self.qr_svg
    }
}

impl std::fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpEnrolment")
            .field("factor_id", &self.factor_id)
            .finish_non_exhaustive()
    }
}

/// A confirmed enrolment.
#[derive(Debug)]
pub struct Confirmed {
    /// The factor now in use.
    pub factor_id: FactorId,
    /// A first set of recovery codes, made when the user had none: show them once.
    pub recovery_codes: Option<RecoveryCodes>,
}

/// A user's second factors and recovery codes: enrolment, verification, management.
///
/// Every change is audited; verification failures are audited too. Policy (who must have a
/// factor, recent authentication before a change, throttling) belongs to the caller.
pub struct Factors {
    pub(super) store: Arc<dyn FactorStore>,
    pub(super) encryptor: KeyEncryptor,
    recovery_key: RecoveryKey,
    issuer: String,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) audit: Audit,
    pub(super) rp: Option<super::relying_party::RelyingParty>,
}

impl std::fmt::Debug for Factors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Factors")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Factors {
    /// The service over `store`, sealing secrets and hashing recovery codes under keys from
    /// the 32-byte `key_encryption_key`; `issuer` names the service in authenticator apps.
    ///
    /// # Errors
    /// [`MfaError::Sealing`] when the key is not 32 bytes.
    pub fn new(
        store: Arc<dyn FactorStore>,
        key_encryption_key: &[u8],
        issuer: impl Into<String>,
        clock: Arc<dyn Clock>,
        audit: Audit,
    ) -> Result<Self, MfaError> {
        Ok(Self {
            store,
            encryptor: KeyEncryptor::new(key_encryption_key).map_err(MfaError::Sealing)?,
            recovery_key: RecoveryKey::derive(key_encryption_key),
            issuer: issuer.into(),
            clock,
            audit,
            rp: None,
        })
    }

    /// Begins a TOTP enrolment for `user` (replacing any other pending one). The factor
    /// cannot be used until [`Factors::confirm_totp`] sees its first code, and lapses after
    /// [`PENDING_SECS`].
    ///
    /// # Errors
    /// [`MfaError::InvalidName`], [`MfaError::TooManyFactors`], or a store or sealing failure.
    pub async fn begin_totp(&self, user: &User, name: &str) -> Result<TotpEnrolment, MfaError> {
        let name = factor_name(name, DEFAULT_TOTP_NAME)?;
        let confirmed = self.confirmed(&user.id).await?;
        if confirmed.len() >= MAX_FACTORS {
            return Err(MfaError::TooManyFactors);
        }
        self.store.delete_pending_factors(&user.id).await?;
        let now = self.clock.now();
        let (id, secret) = (FactorId::generate(), TotpSecret::generate());
        let sealed = self
            .encryptor
            .seal(&aad(&user.id, &id), secret.expose_bytes())
            .map_err(MfaError::Sealing)?;
        self.store
            .insert_factor(&Factor {
                id: id.clone(),
                user_id: user.id.clone(),
                kind: FactorKind::Totp,
                name,
                sealed_secret: sealed,
                created_at: now,
                pending_until: Some(now.plus(PENDING_SECS)),
                last_step: None,
                last_used_at: None,
                credential_id: None,
            })
            .await?;
        let uri = otpauth_uri(&secret, &self.issuer, &user.email);
        let qr_svg = qr_svg(&uri).unwrap_or_default();
        self.audit.record(
            AuditEvent::success("mfa_enrolment_started")
                .user(&user.id.0)
                .with("factor", &id)
                .with("kind", FactorKind::Totp.as_str()),
        );
        Ok(TotpEnrolment {
            factor_id: id,
            secret,
            uri,
            qr_svg,
        })
    }

    /// Confirms a pending enrolment with a first valid code. When the user had no recovery
    /// codes, a first set is made and returned (to show once).
    ///
    /// # Errors
    /// [`MfaError::NoPendingEnrolment`] (unknown, confirmed or lapsed), [`MfaError::InvalidCode`],
    /// or a store or sealing failure.
    pub async fn confirm_totp(
        &self,
        user: &UserId,
        id: &FactorId,
        code: &str,
    ) -> Result<Confirmed, MfaError> {
        let now = self.clock.now();
        let factor = match self.store.factor(user, id).await? {
            Some(f) if f.pending_until.is_some_and(|until| until > now) => f,
            _ => {
                return Err(self.refused(
                    "mfa_enrolment_refused",
                    user,
                    "no_pending_enrolment",
                    MfaError::NoPendingEnrolment,
                ));
            }
        };
        let secret = self.open(&factor)?;
        let Some(step) = Totp::new(&secret).matching_step(code, now) else {
            return Err(self.refused(
                "mfa_enrolment_refused",
                user,
                "wrong_code",
                MfaError::InvalidCode,
            ));
        };
        let used = StepUse {
            id,
            user_id: user,
            step,
            at: now,
        };
        if !self.store.confirm_factor(used).await? {
            return Err(self.refused(
                "mfa_enrolment_refused",
                user,
                "no_pending_enrolment",
                MfaError::NoPendingEnrolment,
            ));
        }
        let recovery_codes = if self.store.count_recovery_codes(user).await? == 0 {
            Some(self.replace_codes(user, now).await?)
        } else {
            None
        };
        self.audit.record(
            AuditEvent::success("mfa_factor_confirmed")
                .user(&user.0)
                .with("factor", id)
                .with("kind", factor.kind.as_str()),
        );
        Ok(Confirmed {
            factor_id: id.clone(),
            recovery_codes,
        })
    }

    /// The pending enrolment `id` of `user` again, to show after a wrong first code.
    ///
    /// # Errors
    /// [`MfaError::NoPendingEnrolment`] (unknown, confirmed or lapsed), or a store or sealing
    /// failure.
    pub async fn pending_enrolment(
        &self,
        user: &User,
        id: &FactorId,
    ) -> Result<TotpEnrolment, MfaError> {
        let now = self.clock.now();
        let factor = match self.store.factor(&user.id, id).await? {
            Some(f) if f.pending_until.is_some_and(|until| until > now) => f,
            _ => return Err(MfaError::NoPendingEnrolment),
        };
        let secret = self.open(&factor)?;
        let uri = otpauth_uri(&secret, &self.issuer, &user.email);
        let qr_svg = qr_svg(&uri).unwrap_or_default();
        Ok(TotpEnrolment {
            factor_id: factor.id,
            secret,
            uri,
            qr_svg,
        })
    }

    /// Checks a TOTP code against the user's confirmed TOTP factors and, if one matches a step
    /// not used before, records that step so the code never works again.
    ///
    /// # Errors
    /// [`MfaError::NoSecondFactor`] without a confirmed TOTP factor, [`MfaError::InvalidCode`]
    /// for a wrong, replayed or out-of-window code, or a store or sealing failure.
    pub async fn verify_totp(&self, user: &UserId, code: &str) -> Result<FactorId, MfaError> {
        let now = self.clock.now();
        let factors: Vec<Factor> = self
            .confirmed(user)
            .await?
            .into_iter()
            .filter(|f| f.kind == FactorKind::Totp)
            .collect();
        if factors.is_empty() {
            return Err(MfaError::NoSecondFactor);
        }
        let mut reason = "wrong_code";
        for factor in &factors {
            let secret = self.open(factor)?;
            let Some(step) = Totp::new(&secret).matching_step(code, now) else {
                continue;
            };
            let used = StepUse {
                id: &factor.id,
                user_id: user,
                step,
                at: now,
            };
            // The store refuses a step at or before the last accepted one (RFC 6238 §5.2).
            if self.store.accept_step(used).await? {
                return Ok(factor.id.clone());
            }
            reason = "replayed_code";
        }
        Err(self.refused("mfa_code_refused", user, reason, MfaError::InvalidCode))
    }

    /// The user's confirmed factors, oldest first.
    ///
    /// # Errors
    /// A store failure.
    pub async fn list(&self, user: &UserId) -> Result<Vec<FactorInfo>, MfaError> {
        Ok(self
            .confirmed(user)
            .await?
            .into_iter()
            .map(|f| FactorInfo {
                id: f.id,
                kind: f.kind,
                name: f.name,
                created_at: f.created_at,
                last_used_at: f.last_used_at,
            })
            .collect())
    }

    /// Whether the user has a confirmed second factor.
    ///
    /// # Errors
    /// A store failure.
    pub async fn has_second_factor(&self, user: &UserId) -> Result<bool, MfaError> {
        Ok(!self.confirmed(user).await?.is_empty())
    }

    /// Renames a factor.
    ///
    /// # Errors
    /// [`MfaError::InvalidName`], [`MfaError::UnknownFactor`] or a store failure.
    pub async fn rename(&self, user: &UserId, id: &FactorId, name: &str) -> Result<(), MfaError> {
        let name = factor_name(name, DEFAULT_TOTP_NAME)?;
        if !self.store.rename_factor(user, id, &name).await? {
            return Err(MfaError::UnknownFactor);
        }
        self.audit.record(
            AuditEvent::success("mfa_factor_renamed")
                .user(&user.0)
                .with("factor", id),
        );
        Ok(())
    }

    /// Removes a factor (confirmed or pending). When no confirmed factor remains, the recovery
    /// codes go too: they back up a factor, and must not outlive the last one.
    ///
    /// # Errors
    /// [`MfaError::UnknownFactor`] or a store failure.
    pub async fn remove(&self, user: &UserId, id: &FactorId) -> Result<(), MfaError> {
        if !self.store.delete_factor(user, id).await? {
            return Err(MfaError::UnknownFactor);
        }
        let last = self.confirmed(user).await?.is_empty();
        if last {
            self.store
                .replace_recovery_codes(user, &[], self.clock.now())
                .await?;
        }
        self.audit.record(
            AuditEvent::success("mfa_factor_removed")
                .user(&user.0)
                .with("factor", id)
                .with("recovery_codes_removed", last),
        );
        Ok(())
    }

    /// Removes every factor and recovery code of the user (an administrator's reset, or the
    /// account's deletion); returns how many factors went.
    ///
    /// # Errors
    /// A store failure.
    pub async fn remove_all(&self, user: &UserId) -> Result<u64, MfaError> {
        let n = self.store.delete_user_factors(user).await?;
        self.audit.record(
            AuditEvent::success("mfa_factors_removed")
                .user(&user.0)
                .with_count("factors", n),
        );
        Ok(n)
    }

    /// Replaces the user's recovery codes with a new set (the old ones stop working at once).
    ///
    /// # Errors
    /// [`MfaError::NoSecondFactor`] without a confirmed factor, or a store failure.
    pub async fn regenerate_recovery_codes(
        &self,
        user: &UserId,
    ) -> Result<RecoveryCodes, MfaError> {
        if !self.has_second_factor(user).await? {
            return Err(MfaError::NoSecondFactor);
        }
        let codes = self.replace_codes(user, self.clock.now()).await?;
        self.audit
            .record(AuditEvent::success("mfa_recovery_codes_regenerated").user(&user.0));
        Ok(codes)
    }

    /// Uses one recovery code (typed in any case, with or without spaces and dashes); returns
    /// how many remain.
    ///
    /// # Errors
    /// [`MfaError::InvalidCode`] for a wrong or used code, or a store failure.
    pub async fn use_recovery_code(&self, user: &UserId, typed: &str) -> Result<u64, MfaError> {
        let Some(hash) = hash_typed(&self.recovery_key, user, typed) else {
            return Err(self.refused(
                "mfa_recovery_code_refused",
                user,
                "malformed",
                MfaError::InvalidCode,
            ));
        };
        if !self.store.consume_recovery_code(user, &hash).await? {
            return Err(self.refused(
                "mfa_recovery_code_refused",
                user,
                "wrong_or_used",
                MfaError::InvalidCode,
            ));
        }
        let left = self.store.count_recovery_codes(user).await?;
        self.audit.record(
            AuditEvent::success("mfa_recovery_code_used")
                .user(&user.0)
                .with_count("remaining", left),
        );
        Ok(left)
    }

    /// Unused recovery codes of the user.
    ///
    /// # Errors
    /// A store failure.
    pub async fn recovery_codes_left(&self, user: &UserId) -> Result<u64, MfaError> {
        Ok(self.store.count_recovery_codes(user).await?)
    }

    /// The store (for the ceremonies the account service keeps).
    #[must_use]
    pub fn store(&self) -> &Arc<dyn FactorStore> {
        &self.store
    }

    /// Deletes enrolments that lapsed unconfirmed; returns how many (for the purge pass).
    ///
    /// # Errors
    /// A store failure.
    pub async fn purge(&self) -> Result<u64, MfaError> {
        Ok(self.store.purge_pending_factors(self.clock.now()).await?)
    }

    pub(super) async fn confirmed(&self, user: &UserId) -> Result<Vec<Factor>, MfaError> {
        let mut all = self.store.list_factors(user).await?;
        all.retain(Factor::is_confirmed);
        Ok(all)
    }

    pub(super) async fn replace_codes(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> Result<RecoveryCodes, MfaError> {
        let codes = RecoveryCodes::generate(&self.recovery_key, user);
        self.store
            .replace_recovery_codes(user, &codes.hashes, now)
            .await?;
        Ok(codes)
    }

    fn open(&self, factor: &Factor) -> Result<TotpSecret, MfaError> {
        let plain = self
            .encryptor
            .open(&aad(&factor.user_id, &factor.id), &factor.sealed_secret)
            .map_err(MfaError::Sealing)?;
        Ok(TotpSecret::from_bytes(plain))
    }

    /// Audits a refusal (`kind`, with its `reason`) and returns `err`.
    pub(super) fn refused(
        &self,
        kind: &'static str,
        user: &UserId,
        reason: &'static str,
        err: MfaError,
    ) -> MfaError {
        self.audit.record(
            AuditEvent::failure(kind)
                .user(&user.0)
                .with("reason", reason),
        );
        err
    }
}

/// The associated data a factor's secret is sealed with: it binds the ciphertext to its kind,
/// user and factor, so a sealed secret copied to another row (or user) does not open.
fn aad(user: &UserId, id: &FactorId) -> String {
    format!("authx mfa totp {} {}", user.0, id.0)
}

/// A factor name as given (trimmed), `default` for an empty one.
pub(super) fn factor_name(raw: &str, default: &str) -> Result<String, MfaError> {
    let name = raw.trim();
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(MfaError::InvalidName);
    }
    Ok(if name.is_empty() { default } else { name }.to_owned())
}
