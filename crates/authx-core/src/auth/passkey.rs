//! Passkey ceremonies of the account service: registering a passkey from the account,
//! answering the second-factor step with one, and signing in with one alone.
//!
//! Every ceremony has two halves: *begin* returns the options for the browser's
//! `navigator.credentials.create()`/`get()` and keeps the state (the challenge) server-side;
//! *finish* takes the browser's answer.
//!
//! # Security
//! - **Server-side, single-use state.** A registration's or a passwordless sign-in's state is a
//!   [`Ceremony`] stored under the SHA-256 of a fresh 32-byte token for
//!   [`CEREMONY_SECS`]; finishing takes (deletes) it in one statement, so a replayed answer
//!   finds nothing. The second-factor step keeps its assertion state inside the waiting
//!   sign-in, which is taken the same way.
//! - **Bound to who began it.** A registration is bound to the session that began it (and
//!   its user); a passwordless sign-in to the pre-session token of the browser that began it:
//!   a ceremony token carried to another browser or session is refused.
//! - **Recent authentication.** Beginning a registration needs the current password or a
//!   sign-in within [`super::REAUTH_WINDOW_SECS`] (as other factor changes); removal goes
//!   through [`AuthService::remove_factor`].
//! - **Another user's credential** is refused in the second-factor step (the assertion must
//!   be made with one of the waiting user's passkeys), counted as a wrong answer.
//! - **Passwordless sign-in needs user verification**: a passkey that did not verify its user
//!   (PIN, biometrics) proves possession only, one factor, and is refused on its own.

use serde::{Deserialize, Serialize};

use crate::audit::AuditEvent;
use crate::links::LinkToken;
use crate::mfa::passkey::{CEREMONY_SECS, PendingAssertion, PendingRegistration};
use crate::mfa::{Ceremony, Confirmed, MfaError};
use crate::secret::{SessionToken, TokenHash};
use crate::session::ClientContext;
use crate::user::UserStatus;

use super::second_factor::Resumed;
use super::{
    AuthError, AuthMethod, AuthService, Authenticated, PendingSignIn, SecondFactorChallenge,
    SecondFactorDone, SignedIn,
};

/// A begun ceremony: the options to hand to the browser, and (for a registration or a
/// passwordless sign-in) the token that names its server-side state.
pub struct PasskeyCeremony {
    token: Option<LinkToken>,
    /// The options for `navigator.credentials.create()` (`{"publicKey": …}`) or `get()`, as
    /// JSON with binary fields in base64url.
    pub options: serde_json::Value,
}

impl PasskeyCeremony {
    /// The token naming the ceremony (send to the browser once; it comes back with the answer).
    #[must_use]
    pub fn token(&self) -> Option<&LinkToken> {
        self.token.as_ref()
    }
}

impl std::fmt::Debug for PasskeyCeremony {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasskeyCeremony").finish_non_exhaustive()
    }
}

/// What a stored ceremony is for.
#[derive(Serialize, Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Register,
    SignIn,
}

/// A ceremony's stored state.
#[derive(Serialize, Deserialize)]
struct Stored {
    kind: Kind,
    /// SHA-256 (hex) of what the ceremony is bound to: the session id of a registration, the
    /// pre-session token of a passwordless sign-in.
    binding: String,
    /// The WebAuthn library's state.
    state: serde_json::Value,
}

fn binding_hash(binding: &str) -> String {
    TokenHash::of(binding.as_bytes()).to_hex()
}

fn to_json<T: Serialize>(v: &T) -> Result<serde_json::Value, AuthError> {
    serde_json::to_value(v).map_err(|e| AuthError::Internal(format!("cannot encode: {e}")))
}

/// The browser's answer, parsed; a malformed one is a refused passkey, not a fault.
fn parse_answer<T: serde::de::DeserializeOwned>(answer: &str) -> Result<T, AuthError> {
    serde_json::from_str(answer).map_err(|_| AuthError::Factor(MfaError::InvalidPasskey))
}

impl AuthService {
    fn passkey_factors(&self) -> Result<&crate::mfa::Factors, AuthError> {
        match self.factors() {
            Some(f) if f.passkeys_enabled() => Ok(f),
            _ => Err(MfaError::PasskeysOff.into()),
        }
    }

    /// Whether passkeys are on.
    #[must_use]
    pub fn passkeys_enabled(&self) -> bool {
        self.factors().is_some_and(|f| f.passkeys_enabled())
    }

    async fn store_ceremony(
        &self,
        user: Option<&crate::user::UserId>,
        stored: &Stored,
    ) -> Result<LinkToken, AuthError> {
        let factors = self.passkey_factors()?;
        let now = self.clock.now();
        let token = LinkToken::generate();
        let state = serde_json::to_string(stored)
            .map_err(|e| AuthError::Internal(format!("cannot store the ceremony: {e}")))?;
        factors
            .store()
            .insert_ceremony(&Ceremony {
                hash: token.hash(),
                user_id: user.cloned(),
                state,
                created_at: now,
                expires_at: now.plus(CEREMONY_SECS),
            })
            .await?;
        Ok(token)
    }

    /// Takes the ceremony named by `token` if it is of `kind` and bound to `binding`.
    async fn take_ceremony(
        &self,
        token: &str,
        kind: Kind,
        binding: &str,
    ) -> Result<(Ceremony, serde_json::Value), AuthError> {
        let factors = self.passkey_factors()?;
        let expired = || AuthError::Factor(MfaError::CeremonyExpired);
        let token = LinkToken::parse(token).ok_or_else(expired)?;
        let ceremony = factors
            .store()
            .take_ceremony(&token.hash(), self.clock.now())
            .await?
            .ok_or_else(expired)?;
        let stored: Stored = serde_json::from_str(&ceremony.state).map_err(|_| expired())?;
        if stored.kind != kind || stored.binding != binding_hash(binding) {
            self.audit.record(
                AuditEvent::failure("passkey_refused").with("reason", "ceremony_not_bound_here"),
            );
            return Err(expired());
        }
        Ok((ceremony, stored.state))
    }

    /// Begins registering a passkey for the signed-in user, once they proved to be there (the
    /// current password, or a sign-in within the re-authentication window). The ceremony is
    /// bound to this session.
    ///
    /// # Errors
    /// [`AuthError::WrongPassword`], [`AuthError::RecentSignInRequired`],
    /// [`AuthError::Factor`] (passkeys off, too many factors), storage failures.
    pub async fn begin_passkey_registration(
        &self,
        auth: &Authenticated,
        current_password: Option<&str>,
        ctx: &ClientContext,
    ) -> Result<PasskeyCeremony, AuthError> {
        let factors = self.passkey_factors()?;
        let user = self
            .prove_owner(auth, current_password, ctx, "mfa_change_refused")
            .await?;
        let (options, state) = factors.begin_passkey_registration(&user).await?;
        let stored = Stored {
            kind: Kind::Register,
            binding: binding_hash(&auth.session.id.0),
            state: to_json(&state)?,
        };
        let token = self.store_ceremony(Some(&user.id), &stored).await?;
        self.audit.record(
            AuditEvent::success("mfa_enrolment_started")
                .user(&user.id)
                .with("kind", "passkey"),
        );
        Ok(PasskeyCeremony {
            token: Some(token),
            options: to_json(&options)?,
        })
    }

    /// Finishes the registration named by `ceremony` with the browser's `answer` (the
    /// `PublicKeyCredential` as JSON), naming the passkey `name`.
    ///
    /// # Errors
    /// [`AuthError::Factor`] with [`MfaError::CeremonyExpired`] (unknown, used, expired, or
    /// begun by another session), [`MfaError::InvalidPasskey`], [`MfaError::CredentialTaken`],
    /// [`MfaError::InvalidName`]; storage failures.
    pub async fn finish_passkey_registration(
        &self,
        auth: &Authenticated,
        ceremony: &str,
        name: &str,
        answer: &str,
    ) -> Result<Confirmed, AuthError> {
        let factors = self.passkey_factors()?;
        let (taken, state) = self
            .take_ceremony(ceremony, Kind::Register, &auth.session.id.0)
            .await?;
        if taken.user_id.as_ref() != Some(&auth.user.id) {
            return Err(MfaError::CeremonyExpired.into());
        }
        let state: PendingRegistration =
            serde_json::from_value(state).map_err(|_| MfaError::CeremonyExpired)?;
        let reg = parse_answer(answer)?;
        Ok(factors
            .finish_passkey_registration(&auth.user.id, name, &reg, &state)
            .await?)
    }

    /// Begins a sign-in with a passkey alone (a discoverable credential names its user), bound
    /// to `binding` (the browser's pre-session token).
    ///
    /// # Errors
    /// [`AuthError::Factor`] when passkeys are off; storage failures.
    pub async fn begin_passkey_sign_in(&self, binding: &str) -> Result<PasskeyCeremony, AuthError> {
        let factors = self.passkey_factors()?;
        let (options, state) = factors.begin_passkey_assertion(None).await?;
        let stored = Stored {
            kind: Kind::SignIn,
            binding: binding_hash(binding),
            state: to_json(&state)?,
        };
        let token = self.store_ceremony(None, &stored).await?;
        Ok(PasskeyCeremony {
            token: Some(token),
            options: to_json(&options)?,
        })
    }

    /// Finishes a passwordless sign-in: the `answer` (the `PublicKeyCredential` as JSON) to
    /// the ceremony named by `ceremony`, begun by the browser bound as `binding`. The session
    /// starts (ending `previous`) when the passkey verified its user.
    ///
    /// # Errors
    /// [`AuthError::Factor`] with [`MfaError::CeremonyExpired`] or
    /// [`MfaError::InvalidPasskey`] (unknown credential, failed signature, no user
    /// verification); [`AuthError::InvalidCredentials`] for a disabled account;
    /// [`AuthError::EmailNotVerified`]; [`AuthError::Throttled`]; storage failures.
    pub async fn finish_passkey_sign_in(
        &self,
        ceremony: &str,
        binding: &str,
        answer: &str,
        ctx: &ClientContext,
        previous: Option<&SessionToken>,
        return_to: Option<&str>,
    ) -> Result<SignedIn, AuthError> {
        let factors = self.passkey_factors()?;
        let (_, state) = self.take_ceremony(ceremony, Kind::SignIn, binding).await?;
        let state: PendingAssertion =
            serde_json::from_value(state).map_err(|_| MfaError::CeremonyExpired)?;
        let cred = parse_answer(answer)?;
        let used = factors.finish_passkey_assertion(None, &cred, state).await?;
        let user = match self.stores.accounts.user_by_id(&used.user_id).await? {
            Some(u) if u.status == UserStatus::Active => u,
            _ => return Err(AuthError::InvalidCredentials),
        };
        let keys = super::throttling::Counters::new(&user.email, ctx);
        self.check_throttle(&keys, self.clock.now()).await?;
        if !used.user_verified {
            self.audit.record(
                AuditEvent::failure("sign_in_failed")
                    .user(&user.id)
                    .with("reason", "passkey_without_user_verification"),
            );
            return Err(MfaError::InvalidPasskey.into());
        }
        let mut pending = PendingSignIn::new(user, AuthMethod::PasskeyVerified, self.clock.now());
        if let Some(to) = return_to {
            pending = pending.returning_to(to);
        }
        self.complete_sign_in(pending, ctx, previous).await
    }

    /// Begins answering the second-factor step named by `token` with a passkey: the waiting
    /// sign-in is taken and stored again (a new token, the same tries and the same deadline)
    /// holding the assertion's state; the new challenge's token replaces the old in the
    /// browser.
    ///
    /// # Errors
    /// [`AuthError::SignInExpired`] for an unknown, used or expired sign-in (or one that must
    /// enrol a factor first); [`AuthError::Factor`] when the user has no passkey;
    /// [`AuthError::Throttled`]; storage failures.
    pub async fn begin_second_factor_passkey(
        &self,
        token: &str,
        ctx: &ClientContext,
    ) -> Result<(SecondFactorChallenge, PasskeyCeremony), AuthError> {
        let factors = self.passkey_factors()?;
        let Resumed {
            waiting,
            pending,
            expires_at,
            ..
        } = self.resume_waiting(token, ctx).await?;
        if waiting.enrolling() {
            return Err(AuthError::SignInExpired);
        }
        let (options, state) = factors
            .begin_passkey_assertion(Some(&pending.user().id))
            .await?;
        let state = serde_json::to_string(&state)
            .map_err(|e| AuthError::Internal(format!("cannot store the ceremony: {e}")))?;
        let challenge = self
            .challenge_with(
                &pending,
                None,
                waiting.tries(),
                Some(state),
                Some(expires_at),
            )
            .await?;
        Ok((
            challenge,
            PasskeyCeremony {
                token: None,
                options: to_json(&options)?,
            },
        ))
    }

    /// Answers the second-factor step named by `token` with the browser's passkey `answer`
    /// (the `PublicKeyCredential` as JSON) to the assertion begun by
    /// [`AuthService::begin_second_factor_passkey`]. A refused passkey counts as a wrong code.
    ///
    /// # Errors
    /// As [`AuthService::answer_second_factor`].
    pub async fn answer_second_factor_passkey(
        &self,
        token: &str,
        answer: &str,
        ctx: &ClientContext,
        previous: Option<&SessionToken>,
    ) -> Result<SecondFactorDone, AuthError> {
        let factors = self.passkey_factors()?;
        let Resumed {
            waiting,
            mut pending,
            keys,
            now,
            ..
        } = self.resume_waiting(token, ctx).await?;
        let Some(state) = waiting.passkey.as_deref() else {
            return Err(AuthError::SignInExpired);
        };
        let state: PendingAssertion =
            serde_json::from_str(state).map_err(|_| AuthError::SignInExpired)?;
        let used = match parse_answer(answer) {
            Ok(cred) => {
                factors
                    .finish_passkey_assertion(Some(&pending.user().id), &cred, state)
                    .await
            }
            Err(_) => Err(MfaError::InvalidPasskey),
        };
        let used = match used {
            Ok(u) => u,
            Err(MfaError::InvalidPasskey) => {
                return Err(self.wrong_code(pending, &keys, now, &waiting).await?);
            }
            Err(e) => return Err(e.into()),
        };
        pending.proved(if used.user_verified {
            AuthMethod::PasskeyVerified
        } else {
            AuthMethod::Passkey
        });
        let return_to = pending.return_to().map(str::to_owned);
        let signed = self.complete_sign_in(pending, ctx, previous).await?;
        Ok(SecondFactorDone {
            signed,
            return_to,
            recovery_codes: None,
            recovery_codes_left: None,
        })
    }
}
