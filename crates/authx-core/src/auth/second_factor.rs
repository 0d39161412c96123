//! The second-factor step of a sign-in, step-up of a signed-in session, and the account's own
//! management of its factors.
//!
//! A sign-in whose user has a confirmed factor (or must have one, by policy) does not start a
//! session after its first factor: [`AuthService::complete_sign_in`] answers
//! [`AuthError::SecondFactorRequired`] with a [`SecondFactorChallenge`], and
//! [`AuthService::answer_second_factor`] takes the code and starts the session. Every way in
//! (password, magic link, upstream provider, the step-up of a session) ends at that one step.
//!
//! # Security
//! - **Server-side state.** What the first factor proved (user, methods, when, where to go
//!   next) is stored under the SHA-256 of a fresh 32-byte token, for
//!   [`LinkPurpose::SecondFactor`]'s five minutes; the browser holds only the token (an
//!   HttpOnly cookie). Taking the record deletes it in the same atomic step, so an answer is
//!   checked once; a wrong code issues a new token (the old one is spent), and after
//!   [`MAX_TRIES`] wrong codes the sign-in starts over from the first factor.
//! - **No session before the second factor.** A correct password with a wrong, replayed or
//!   missing code is no sign-in: no session exists until the code is accepted.
//! - **Throttling.** A wrong code or recovery code counts toward the account's and the
//!   address's failure counters, the same ones wrong passwords count toward, and a locked
//!   account is refused at this step too. The account's count is cleared only when a session
//!   starts, never by the correct password alone, so knowing the password does not buy
//!   endless guesses at the code.
//! - **Recovery codes** are accepted here in place of a code; each use is audited and the
//!   account's owner is mailed (where mail is configured), with how many codes remain.
//! - **Changes** to factors need the current password or a sign-in within
//!   [`super::REAUTH_WINDOW_SECS`]; removing the last factor is refused when policy requires
//!   one; removing a factor ends every other session of the user, so no session keeps the
//!   step-up it got from a factor that is gone.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::audit::AuditEvent;
use crate::clock::Timestamp;
use crate::links::{LinkPurpose, LinkRecord, LinkToken, LinkTokenStore};
use crate::mail::Message;
use crate::mfa::recovery::RecoveryCodes;
use crate::mfa::{Confirmed, FactorId, FactorInfo, Factors, MfaError, TotpEnrolment};
use crate::secret::SessionToken;
use crate::session::ClientContext;
use crate::user::{User, UserStatus};

use super::throttling::Counters;
use super::{AuthError, AuthMethod, AuthService, Authenticated, PendingSignIn, SignedIn};

/// Wrong answers one second-factor step takes before the sign-in starts over.
pub const MAX_TRIES: u32 = 5;

/// Who must have a second factor (`[mfa] required_for`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MfaRequirement {
    /// Nobody: a user who enrolled one is asked for it; the others are not.
    #[default]
    None,
    /// Administrators: one without a factor enrols at the next sign-in.
    Admins,
    /// Everyone: a user without a factor enrols at the next sign-in.
    Everyone,
}

impl MfaRequirement {
    /// Parses the configured name (`none`, `admins`, `everyone`).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "admins" => Some(Self::Admins),
            "everyone" => Some(Self::Everyone),
            _ => None,
        }
    }

    /// Whether `user` must have a second factor.
    #[must_use]
    pub fn applies_to(self, user: &User) -> bool {
        match self {
            Self::None => false,
            Self::Admins => user.is_admin,
            Self::Everyone => true,
        }
    }
}

/// What the second-factor step needs: the factors, a store for waiting sign-ins, and the
/// policy.
#[derive(Clone)]
pub struct SecondFactors {
    /// The users' factors.
    pub factors: Arc<Factors>,
    /// Where waiting sign-ins are kept (as link tokens of [`LinkPurpose::SecondFactor`]).
    pub links: Arc<dyn LinkTokenStore>,
    /// Who must have a factor.
    pub required_for: MfaRequirement,
}

/// A sign-in waiting for its second factor. The token goes to the browser once (a cookie);
/// `Debug` never prints it.
pub struct SecondFactorChallenge {
    token: LinkToken,
    /// When the user must enrol first: the new factor, to show as a QR code and text.
    pub enrolment: Option<TotpEnrolment>,
    /// Whether the answer before this one was refused.
    pub failed: bool,
    /// Wrong answers left before the sign-in starts over.
    pub tries_left: u32,
    /// Where the browser goes once the session starts.
    pub return_to: Option<String>,
    /// Whether the user has a passkey to answer with (the page offers "Use a passkey").
    pub passkey: bool,
}

impl SecondFactorChallenge {
    /// The token that names the waiting sign-in (send once, as an HttpOnly cookie).
    #[must_use]
    pub fn token(&self) -> &LinkToken {
        &self.token
    }
}

impl std::fmt::Debug for SecondFactorChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecondFactorChallenge")
            .field("enrolment", &self.enrolment.is_some())
            .field("failed", &self.failed)
            .field("tries_left", &self.tries_left)
            .finish_non_exhaustive()
    }
}

/// A sign-in completed by its second factor.
#[derive(Debug)]
pub struct SecondFactorDone {
    /// The new session.
    pub signed: SignedIn,
    /// Where the browser goes now, if the sign-in said.
    pub return_to: Option<String>,
    /// A first set of recovery codes, when the step enrolled the user's first factor: show
    /// them once.
    pub recovery_codes: Option<RecoveryCodes>,
    /// When a recovery code was used: how many remain.
    pub recovery_codes_left: Option<u64>,
}

/// What a waiting sign-in stores beside its user (the link record's `detail`).
#[derive(Serialize, Deserialize)]
pub(super) struct Waiting {
    /// The methods proved so far, in their stored form.
    methods: String,
    /// When the first factor was proved.
    started_at: i64,
    /// Wrong answers so far.
    tries: u32,
    /// Where to go afterwards.
    return_to: Option<String>,
    /// The factor being enrolled, when the user must enrol.
    enrol: Option<String>,
    /// A begun passkey assertion (its server-side state, JSON), when the browser asked to
    /// answer with a passkey.
    #[serde(default)]
    pub(super) passkey: Option<String>,
}

impl Waiting {
    /// Whether the user is enrolling their first factor at this step.
    pub(super) fn enrolling(&self) -> bool {
        self.enrol.is_some()
    }

    /// Wrong answers so far.
    pub(super) fn tries(&self) -> u32 {
        self.tries
    }
}

/// A waiting sign-in taken from the store to be answered.
pub(super) struct Resumed {
    /// What it stored.
    pub(super) waiting: Waiting,
    /// The sign-in, with the methods proved so far.
    pub(super) pending: PendingSignIn,
    /// Its failure counters.
    pub(super) keys: Counters,
    /// Now.
    pub(super) now: Timestamp,
    /// When the waiting sign-in would have lapsed.
    pub(super) expires_at: Timestamp,
}

/// Whether a typed answer is an authenticator code (six digits, spaces allowed) rather than a
/// recovery code.
fn is_totp_code(typed: &str) -> bool {
    let digits: Vec<char> = typed.chars().filter(|c| !c.is_whitespace()).collect();
    digits.len() == 6 && digits.iter().all(char::is_ascii_digit)
}

impl AuthService {
    /// Turns on second factors: sign-ins of users with a factor ask for it.
    #[must_use]
    pub fn with_second_factors(mut self, second: SecondFactors) -> Self {
        self.second = Some(second);
        self
    }

    /// The users' factors, when second factors are on.
    #[must_use]
    pub fn factors(&self) -> Option<&Arc<Factors>> {
        self.second.as_ref().map(|s| &s.factors)
    }

    /// Who must have a second factor.
    #[must_use]
    pub fn mfa_requirement(&self) -> MfaRequirement {
        self.second
            .as_ref()
            .map_or(MfaRequirement::None, |s| s.required_for)
    }

    fn second(&self) -> Result<&SecondFactors, AuthError> {
        self.second
            .as_ref()
            .ok_or_else(|| AuthError::Internal("second factors are not configured".into()))
    }

    /// `pending` with what the second-factor steps need to know: whether the user has a
    /// factor, and whether policy requires one.
    pub(super) async fn second_factor_state(
        &self,
        pending: PendingSignIn,
    ) -> Result<PendingSignIn, AuthError> {
        let Some(second) = &self.second else {
            return Ok(pending);
        };
        let has = second.factors.has_second_factor(&pending.user().id).await?;
        let required = second.required_for.applies_to(pending.user());
        Ok(pending.with_second_factor(has, required))
    }

    /// Stores `pending` as a sign-in waiting for its second factor and returns the challenge
    /// (with a new enrolment when `enrol`).
    pub(super) async fn challenge(
        &self,
        pending: &PendingSignIn,
        enrolment: Option<TotpEnrolment>,
        tries: u32,
    ) -> Result<SecondFactorChallenge, AuthError> {
        self.challenge_with(pending, enrolment, tries, None, None)
            .await
    }

    /// [`AuthService::challenge`], the waiting sign-in also holding a begun passkey
    /// assertion's state, and keeping the deadline `expires_at` of the one it replaces (so
    /// asking for a passkey never extends a waiting sign-in's five minutes).
    pub(super) async fn challenge_with(
        &self,
        pending: &PendingSignIn,
        enrolment: Option<TotpEnrolment>,
        tries: u32,
        passkey_state: Option<String>,
        expires_at: Option<Timestamp>,
    ) -> Result<SecondFactorChallenge, AuthError> {
        let second = self.second()?;
        let passkey = enrolment.is_none()
            && second.factors.passkeys_enabled()
            && second.factors.has_passkey(&pending.user().id).await?;
        let waiting = Waiting {
            methods: pending.stored_methods(),
            started_at: pending.started_at().secs(),
            tries,
            return_to: pending.return_to().map(str::to_owned),
            enrol: enrolment.as_ref().map(|e| e.factor_id().0.clone()),
            passkey: passkey_state,
        };
        let detail = serde_json::to_string(&waiting)
            .map_err(|e| AuthError::Internal(format!("cannot store the sign-in: {e}")))?;
        let (token, mut record) = LinkRecord::issue(
            LinkPurpose::SecondFactor,
            &pending.user().id,
            self.clock.now(),
        );
        if let Some(deadline) = expires_at {
            record.expires_at = record.expires_at.min(deadline);
        }
        second
            .links
            .insert_link_token(&record.with_detail(detail))
            .await?;
        Ok(SecondFactorChallenge {
            token,
            enrolment,
            failed: tries > 0,
            tries_left: MAX_TRIES.saturating_sub(tries),
            return_to: waiting.return_to,
            passkey,
        })
    }

    /// The error a sign-in that owes its second factor ends with: the challenge to answer.
    pub(super) async fn owe_second_factor(
        &self,
        pending: &PendingSignIn,
        enrol: bool,
    ) -> Result<AuthError, AuthError> {
        let enrolment = if enrol {
            Some(
                self.second()?
                    .factors
                    .begin_totp(pending.user(), "")
                    .await?,
            )
        } else {
            None
        };
        let challenge = self.challenge(pending, enrolment, 0).await?;
        self.audit.record(
            AuditEvent::success("second_factor_asked")
                .user(&pending.user().id)
                .with("methods", pending.stored_methods())
                .with("enrol", enrol),
        );
        Ok(AuthError::SecondFactorRequired(Box::new(challenge)))
    }

    /// Answers the second-factor step of the sign-in named by `token` with `code`: an
    /// authenticator code, a recovery code, or (when the user is enrolling) the new factor's
    /// first code. On success the session starts (`previous`, any session the browser
    /// presented, ends).
    ///
    /// # Errors
    /// [`AuthError::SecondFactorRequired`] with a new challenge after a wrong code;
    /// [`AuthError::SignInExpired`] for an unknown, used or expired sign-in, a disabled
    /// account, or the last try used up; [`AuthError::Throttled`]; storage failures.
    pub async fn answer_second_factor(
        &self,
        token: &str,
        code: &str,
        ctx: &ClientContext,
        previous: Option<&SessionToken>,
    ) -> Result<SecondFactorDone, AuthError> {
        let second = self.second()?;
        let Resumed {
            waiting,
            mut pending,
            keys,
            now,
            ..
        } = self.resume_waiting(token, ctx).await?;
        let id = &pending.user().id;
        let factors = &second.factors;
        let answer = match &waiting.enrol {
            Some(factor) => factors
                .confirm_totp(id, &FactorId(factor.clone()), code)
                .await
                .map(|c: Confirmed| (AuthMethod::Totp, c.recovery_codes, None)),
            None if is_totp_code(code) => factors
                .verify_totp(id, code)
                .await
                .map(|_| (AuthMethod::Totp, None, None)),
            None => factors
                .use_recovery_code(id, code)
                .await
                .map(|left| (AuthMethod::RecoveryCode, None, Some(left))),
        };
        let (method, recovery_codes, left) = match answer {
            Ok(done) => done,
            Err(MfaError::InvalidCode | MfaError::NoSecondFactor) => {
                return Err(self.wrong_code(pending, &keys, now, &waiting).await?);
            }
            Err(MfaError::NoPendingEnrolment) => return Err(AuthError::SignInExpired),
            Err(e) => return Err(e.into()),
        };
        if let Some(left) = left {
            self.recovery_code_used(pending.user(), left).await;
        }
        pending.proved(method);
        let return_to = pending.return_to().map(str::to_owned);
        let signed = self.complete_sign_in(pending, ctx, previous).await?;
        Ok(SecondFactorDone {
            signed,
            return_to,
            recovery_codes,
            recovery_codes_left: left,
        })
    }

    /// Takes the waiting sign-in named by `token` (so it is answered once), checks its user
    /// may still sign in and is not throttled, and rebuilds the sign-in.
    pub(super) async fn resume_waiting(
        &self,
        token: &str,
        ctx: &ClientContext,
    ) -> Result<Resumed, AuthError> {
        let second = self.second()?;
        let now = self.clock.now();
        let token = LinkToken::parse(token).ok_or(AuthError::SignInExpired)?;
        let record = second
            .links
            .take_link_token(&token.hash(), LinkPurpose::SecondFactor, now)
            .await?
            .ok_or(AuthError::SignInExpired)?;
        let waiting: Waiting = record
            .detail
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok())
            .ok_or(AuthError::SignInExpired)?;
        let user = match self.stores.accounts.user_by_id(&record.user_id).await? {
            Some(u) if u.status == UserStatus::Active => u,
            _ => return Err(AuthError::SignInExpired),
        };
        let keys = Counters::new(&user.email, ctx);
        if let Err(e) = self.check_throttle(&keys, now).await {
            self.audit.record(
                AuditEvent::failure("sign_in_throttled")
                    .user(&user.id)
                    .with("step", "second_factor"),
            );
            return Err(e);
        }
        let mut pending =
            PendingSignIn::resumed(user, &waiting.methods, Timestamp(waiting.started_at));
        if let Some(to) = &waiting.return_to {
            pending = pending.returning_to(to.clone());
        }
        Ok(Resumed {
            waiting,
            pending,
            keys,
            now,
            expires_at: record.expires_at,
        })
    }

    /// A wrong answer: counted against the account, audited, and answered with a new
    /// challenge, or with [`AuthError::SignInExpired`] once the tries are used up.
    pub(super) async fn wrong_code(
        &self,
        pending: PendingSignIn,
        keys: &Counters,
        now: Timestamp,
        waiting: &Waiting,
    ) -> Result<AuthError, AuthError> {
        self.record_failure(keys, now, Some(pending.user())).await?;
        let tries = waiting.tries + 1;
        self.audit.record(
            AuditEvent::failure("sign_in_failed")
                .user(&pending.user().id)
                .with("reason", "wrong_second_factor")
                .with_count("tries", u64::from(tries)),
        );
        if tries >= MAX_TRIES {
            return Ok(AuthError::SignInExpired);
        }
        let enrolment = match &waiting.enrol {
            Some(factor) => Some(
                self.second()?
                    .factors
                    .pending_enrolment(pending.user(), &FactorId(factor.clone()))
                    .await?,
            ),
            None => None,
        };
        let challenge = self.challenge(&pending, enrolment, tries).await?;
        Ok(AuthError::SecondFactorRequired(Box::new(challenge)))
    }

    /// Mails the owner that a recovery code was used (best effort: the sign-in stands if
    /// the mail cannot be queued, and the failure is logged).
    async fn recovery_code_used(&self, user: &User, left: u64) {
        if self.recovery.is_none() {
            return;
        }
        let message = Message::RecoveryCodeUsed { remaining: left };
        if let Err(e) = self.mail_to(&user.email, message).await {
            tracing::warn!(error = %e, "cannot mail the recovery-code notice");
        }
    }

    /// Asks the signed-in user for their second factor again (step-up): a challenge whose
    /// answer replaces the session with one that records the factor.
    ///
    /// # Errors
    /// [`AuthError::Factor`] with [`MfaError::NoSecondFactor`] when the user has none;
    /// storage failures.
    pub async fn step_up(
        &self,
        auth: &Authenticated,
        return_to: &str,
    ) -> Result<SecondFactorChallenge, AuthError> {
        let second = self.second()?;
        if !second.factors.has_second_factor(&auth.user.id).await? {
            return Err(MfaError::NoSecondFactor.into());
        }
        let pending = PendingSignIn::resumed(
            auth.user.clone(),
            &auth.session.auth_method,
            auth.session.created_at,
        )
        .returning_to(return_to);
        let challenge = self.challenge(&pending, None, 0).await?;
        self.audit.record(
            AuditEvent::success("step_up_asked")
                .user(&auth.user.id)
                .with("session_id", &auth.session.id),
        );
        Ok(challenge)
    }

    /// The signed-in user's factors.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn list_factors(&self, auth: &Authenticated) -> Result<Vec<FactorInfo>, AuthError> {
        Ok(self.second()?.factors.list(&auth.user.id).await?)
    }

    /// Begins enrolling an authenticator app for the signed-in user, once they proved to be
    /// there (the current password, or a sign-in within the re-authentication window).
    ///
    /// # Errors
    /// [`AuthError::WrongPassword`], [`AuthError::RecentSignInRequired`], [`AuthError::Factor`]
    /// (too many factors, a bad name), storage failures.
    pub async fn begin_totp_enrolment(
        &self,
        auth: &Authenticated,
        name: &str,
        current_password: Option<&str>,
        ctx: &ClientContext,
    ) -> Result<TotpEnrolment, AuthError> {
        let factors = &self.second()?.factors;
        let user = self
            .prove_owner(auth, current_password, ctx, "mfa_change_refused")
            .await?;
        Ok(factors.begin_totp(&user, name).await?)
    }

    /// The enrolment `id` of the signed-in user again (after a wrong first code).
    ///
    /// # Errors
    /// [`AuthError::Factor`] with [`MfaError::NoPendingEnrolment`]; storage failures.
    pub async fn pending_enrolment(
        &self,
        auth: &Authenticated,
        id: &FactorId,
    ) -> Result<TotpEnrolment, AuthError> {
        Ok(self
            .second()?
            .factors
            .pending_enrolment(&auth.user, id)
            .await?)
    }

    /// Confirms the signed-in user's enrolment `id` with its first code. No new proof of
    /// presence is asked: beginning the enrolment needed one, and it lapses in ten minutes.
    ///
    /// # Errors
    /// [`AuthError::Factor`] (wrong code, no such enrolment), storage failures.
    pub async fn confirm_totp_enrolment(
        &self,
        auth: &Authenticated,
        id: &FactorId,
        code: &str,
    ) -> Result<Confirmed, AuthError> {
        Ok(self
            .second()?
            .factors
            .confirm_totp(&auth.user.id, id, code)
            .await?)
    }

    /// Removes one of the signed-in user's factors, once they proved to be there. Every
    /// other session of the user ends, with the step-up it may have had.
    ///
    /// # Errors
    /// [`AuthError::WrongPassword`], [`AuthError::RecentSignInRequired`],
    /// [`AuthError::LastFactorRequired`] when policy requires a factor and this is the last,
    /// [`AuthError::Factor`] for an unknown factor, storage failures.
    pub async fn remove_factor(
        &self,
        auth: &Authenticated,
        id: &FactorId,
        current_password: Option<&str>,
        ctx: &ClientContext,
    ) -> Result<(), AuthError> {
        let second = self.second()?;
        let user = self
            .prove_owner(auth, current_password, ctx, "mfa_change_refused")
            .await?;
        let factors = second.factors.list(&user.id).await?;
        if !factors.iter().any(|f| &f.id == id) {
            return Err(MfaError::UnknownFactor.into());
        }
        if factors.len() == 1 && second.required_for.applies_to(&user) {
            self.audit.record(
                AuditEvent::failure("mfa_change_refused")
                    .user(&user.id)
                    .with("reason", "last_factor_required"),
            );
            return Err(AuthError::LastFactorRequired);
        }
        second.factors.remove(&user.id, id).await?;
        self.revoke_other_sessions(&user.id, Some(&auth.session.id))
            .await?;
        Ok(())
    }

    /// Renames one of the signed-in user's factors (a label only: no proof of presence is
    /// asked).
    ///
    /// # Errors
    /// [`AuthError::Factor`] for an unknown factor or a bad name, storage failures.
    pub async fn rename_factor(
        &self,
        auth: &Authenticated,
        id: &FactorId,
        name: &str,
    ) -> Result<(), AuthError> {
        Ok(self
            .second()?
            .factors
            .rename(&auth.user.id, id, name)
            .await?)
    }

    /// Replaces the signed-in user's recovery codes, once they proved to be there.
    ///
    /// # Errors
    /// [`AuthError::WrongPassword`], [`AuthError::RecentSignInRequired`],
    /// [`AuthError::Factor`] without a factor, storage failures.
    pub async fn regenerate_recovery_codes(
        &self,
        auth: &Authenticated,
        current_password: Option<&str>,
        ctx: &ClientContext,
    ) -> Result<RecoveryCodes, AuthError> {
        let factors = &self.second()?.factors;
        let user = self
            .prove_owner(auth, current_password, ctx, "mfa_change_refused")
            .await?;
        Ok(factors.regenerate_recovery_codes(&user.id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_digits_are_a_code_and_the_rest_a_recovery_code() {
        assert!(is_totp_code("123456"));
        assert!(is_totp_code(" 123 456 "));
        assert!(!is_totp_code("12345"));
        assert!(!is_totp_code("abcde-fghij"));
        assert!(!is_totp_code("１２３４５６"));
    }

    #[test]
    fn requirement_names_round_trip() {
        assert_eq!(MfaRequirement::parse("none"), Some(MfaRequirement::None));
        assert_eq!(
            MfaRequirement::parse("admins"),
            Some(MfaRequirement::Admins)
        );
        assert_eq!(
            MfaRequirement::parse("everyone"),
            Some(MfaRequirement::Everyone)
        );
        assert_eq!(MfaRequirement::parse("all"), None);
    }
}
