//! Changing the account's email address: asked for by the signed-in user, confirmed from the
//! new address, and undoable from the old one.
//!
//! # Security
//! - [`AuthService::request_email_change`] needs proof that the owner is at the keyboard: the
//!   current password (throttled and counted like a sign-in), or a sign-in at most
//!   [`REAUTH_WINDOW_SECS`] old. A wrong password is refused even within the window.
//! - The address changes only when a link mailed to the *new* address is used
//!   ([`AuthService::confirm_email_change`]): the link's record carries the new address, so
//!   nothing the confirming browser sends can point it elsewhere. An address another account
//!   holds by then is refused and nothing changes.
//! - The *old* address gets a notice with a "this wasn't me" link
//!   ([`AuthService::cancel_email_change`]): it drops the pending change, puts the old address
//!   back if the change went through meanwhile (and it is still free), and ends every session
//!   and refresh-token family of the user.
//! - An email change is a credential change (the address is where password resets go): when it
//!   takes effect, every other session and every refresh-token family of the user ends; the
//!   session that confirmed it, if it is the user's, stays.
//! - A new address already held by another account gets no mail, but the request is answered
//!   like any other, so the form does not tell which addresses have accounts.
//! - Neither the addresses nor the tokens are written to the audit log.

use crate::audit::AuditEvent;
use crate::events::RevocationEvent;
use crate::links::{LinkPurpose, LinkRecord, LinkToken};
use crate::mail::Message;
use crate::password::{MAX_PASSWORD_BYTES, Verified};
use crate::session::{ClientContext, SessionId};
use crate::store::StoreError;
use crate::user::{User, UserStatus, canonical_email};

use super::throttling::Counters;
use super::{AuthError, AuthService, Authenticated, Recovery};

/// How recent a sign-in must be to stand in for the current password in a sensitive change
/// (email change; multi-factor and console changes use the same window): five minutes.
pub const REAUTH_WINDOW_SECS: i64 = 300;

impl AuthService {
    /// The link tokens and mailer (configured with password reset).
    pub(super) fn mail_links(&self) -> Result<&Recovery, AuthError> {
        self.recovery
            .as_ref()
            .ok_or_else(|| AuthError::Internal("mail links are not configured".into()))
    }

    /// Queues `message` for `to`.
    pub(super) async fn mail_to(&self, to: &str, message: Message) -> Result<(), AuthError> {
        self.mail_links()?
            .mailer
            .send(to, message)
            .await
            .map(|_| ())
            .map_err(|e| AuthError::Internal(format!("cannot queue the mail: {e}")))
    }

    /// Whether `email` may be mailed once more for `class` now (the per-address allowance of
    /// reset mails, counted apart per class), under the address's keyed hash
    /// ([`AddressLimit::key`]); `Some(seconds)` to wait when not.
    pub(super) async fn address_refused(
        &self,
        class: &str,
        email: &str,
    ) -> Result<Option<i64>, AuthError> {
        let Some(l) = &self.mail_links()?.per_address else {
            return Ok(None);
        };
        l.refused(class, email).await
    }

    /// Asks to change the signed-in user's address to `new_email`: with the current password
    /// (`Some`, non-empty) or a sign-in within [`REAUTH_WINDOW_SECS`]. A link valid 24 hours
    /// goes to the new address, and a notice with a "this wasn't me" link to the old one. A
    /// new request replaces the pending one.
    ///
    /// # Errors
    /// [`AuthError::InvalidEmail`], [`AuthError::EmailUnchanged`],
    /// [`AuthError::WrongPassword`], [`AuthError::RecentSignInRequired`],
    /// [`AuthError::Throttled`], storage and mail failures.
    pub async fn request_email_change(
        &self,
        auth: &Authenticated,
        new_email: &str,
        current_password: Option<&str>,
        ctx: &ClientContext,
    ) -> Result<(), AuthError> {
        let links = &self.mail_links()?.links;
        let new = canonical_email(new_email).map_err(|_| AuthError::InvalidEmail)?;
        let user = self
            .prove_owner(auth, current_password, ctx, "email_change_refused")
            .await?;
        if new == user.email {
            return Err(AuthError::EmailUnchanged);
        }
        if let Some(retry_after_secs) = self.address_refused("email_change_address", &new).await? {
            self.audit.record(
                AuditEvent::failure("email_change_requested")
                    .user(&user.id)
                    .with("reason", "rate_limited"),
            );
            return Err(AuthError::Throttled { retry_after_secs });
        }
        let now = self.clock.now();
        links
            .delete_user_link_tokens(&user.id, LinkPurpose::ChangeEmail)
            .await?;
        let taken = self.stores.accounts.user_by_email(&new).await?.is_some();
        if !taken {
            let (token, record) = LinkRecord::issue(LinkPurpose::ChangeEmail, &user.id, now);
            links.insert_link_token(&record.with_detail(&new)).await?;
            let message = Message::EmailChangeConfirm {
                token: token.expose().to_owned(),
                valid_hours: LinkPurpose::ChangeEmail.lifetime_secs() / 3600,
            };
            self.mail_to(&new, message).await?;
        }
        let (cancel, record) = LinkRecord::issue(LinkPurpose::CancelEmailChange, &user.id, now);
        links
            .insert_link_token(&record.with_detail(&user.email))
            .await?;
        let notice = Message::EmailChangeNotice {
            token: cancel.expose().to_owned(),
            new_email: new,
        };
        self.mail_to(&user.email, notice).await?;
        let event = if taken {
            AuditEvent::failure("email_change_requested").with("reason", "address_taken")
        } else {
            AuditEvent::success("email_change_requested")
        };
        self.audit.record(event.user(&user.id));
        Ok(())
    }

    /// Whether the signed-in user proved to be at the keyboard for a sensitive action (the
    /// console's destructive ones): a sign-in within [`REAUTH_WINDOW_SECS`], else the current
    /// password, throttled like a sign-in. A refusal is audited as `reauthentication_refused`.
    ///
    /// # Errors
    /// [`AuthError::RecentSignInRequired`], [`AuthError::WrongPassword`],
    /// [`AuthError::Throttled`]; [`AuthError::NotFound`] for a disabled account.
    pub async fn confirm_presence(
        &self,
        auth: &Authenticated,
        current_password: Option<&str>,
        ctx: &ClientContext,
    ) -> Result<(), AuthError> {
        let password = current_password.filter(|p| !p.is_empty());
        let fresh = auth
            .authentication()
            .is_fresh(self.clock.now(), REAUTH_WINDOW_SECS);
        // Within the window the password is not asked for, and a stray one is not checked.
        let password = if fresh { None } else { password };
        self.prove_owner(auth, password, ctx, "reauthentication_refused")
            .await
            .map(|_| ())
    }

    /// The stored account of the signed-in user, once the owner proved to be there: the
    /// current password when given (throttled like a sign-in; a wrong one counts), else a
    /// sign-in within [`REAUTH_WINDOW_SECS`]. A refusal is audited as `refused_kind`.
    pub(super) async fn prove_owner(
        &self,
        auth: &Authenticated,
        current_password: Option<&str>,
        ctx: &ClientContext,
        refused_kind: &'static str,
    ) -> Result<User, AuthError> {
        let now = self.clock.now();
        let user = self
            .stores
            .accounts
            .user_by_id(&auth.user.id)
            .await?
            .filter(|u| u.status == UserStatus::Active)
            .ok_or(AuthError::NotFound)?;
        let refuse = |reason: &'static str| {
            AuditEvent::failure(refused_kind)
                .user(&user.id)
                .with("reason", reason)
        };
        let Some(password) = current_password.filter(|p| !p.is_empty()) else {
            if auth.authentication().is_fresh(now, REAUTH_WINDOW_SECS) {
                return Ok(user);
            }
            self.audit.record(refuse("sign_in_not_recent"));
            return Err(AuthError::RecentSignInRequired);
        };
        let keys = Counters::new(&user.email, ctx);
        if let Err(e) = self.check_throttle(&keys, now).await {
            self.audit.record(refuse("throttled"));
            return Err(e);
        }
        if password.len() > MAX_PASSWORD_BYTES
            || self.hasher.verify(&user.password_hash, password).await? == Verified::Mismatch
        {
            self.record_failure(&keys, now, Some(&user)).await?;
            self.audit.record(refuse("wrong_current_password"));
            return Err(AuthError::WrongPassword);
        }
        self.clear_failures(&keys).await?;
        Ok(user)
    }

    /// Confirms an email change with the token of the link mailed to the new address: the
    /// account takes the new address, and every session of the user but `current` (the
    /// confirming browser's, when it is the user's) ends with the user's refresh-token families.
    ///
    /// # Errors
    /// [`AuthError::InvalidLink`] for an unknown, used, expired or foreign token, or a disabled
    /// account; [`AuthError::EmailTaken`] when another account took the address meanwhile
    /// (nothing changes; the link is spent). Storage failures.
    pub async fn confirm_email_change(
        &self,
        token: &str,
        current: Option<&Authenticated>,
    ) -> Result<User, AuthError> {
        let links = &self.mail_links()?.links;
        let now = self.clock.now();
        let token = LinkToken::parse(token).ok_or(AuthError::InvalidLink)?;
        let record = links
            .take_link_token(&token.hash(), LinkPurpose::ChangeEmail, now)
            .await?
            .ok_or(AuthError::InvalidLink)?;
        let (user, new) = match (
            self.stores.accounts.user_by_id(&record.user_id).await?,
            record.detail,
        ) {
            (Some(u), Some(new)) if u.status == UserStatus::Active => (u, new),
            _ => return Err(AuthError::InvalidLink),
        };
        match self.stores.accounts.set_email(&user.id, &new).await {
            Ok(true) => {}
            Ok(false) => return Err(AuthError::InvalidLink),
            Err(StoreError::Conflict) => {
                self.audit.record(
                    AuditEvent::failure("email_change_failed")
                        .user(&user.id)
                        .with("reason", "address_taken"),
                );
                return Err(AuthError::EmailTaken);
            }
            Err(e) => return Err(e.into()),
        }
        links
            .delete_user_link_tokens(&user.id, LinkPurpose::ChangeEmail)
            .await?;
        let kept = current
            .filter(|a| a.user.id == user.id)
            .map(|a| a.session.id.clone());
        let ended = self.end_sessions_after_change(&user, kept.as_ref()).await?;
        self.audit.record(
            AuditEvent::success("email_changed")
                .user(&user.id)
                .with_count("sessions_ended", ended as u64),
        );
        Ok(User { email: new, ..user })
    }

    /// Ends every session of `user` but `kept`, with the refresh-token families, and makes
    /// sure no cached session still shows the old address; returns how many sessions ended.
    async fn end_sessions_after_change(
        &self,
        user: &User,
        kept: Option<&SessionId>,
    ) -> Result<usize, AuthError> {
        let ended = self.end_user_sessions(&user.id, kept).await?;
        let n = ended.len();
        self.emit(RevocationEvent::UserSessionsEnded {
            user_id: user.id.clone(),
            kept: kept.cloned(),
            ended,
        })
        .await?;
        // The kept session's cached account holds the old address: it is read again.
        self.cache.invalidate(&RevocationEvent::UserSessionsEnded {
            user_id: user.id.clone(),
            kept: None,
            ended: Vec::new(),
        });
        Ok(n)
    }

    /// "This wasn't me", with the token of the notice mailed to the old address: drops the
    /// pending change, puts the old address back if the change was confirmed meanwhile (and
    /// no other account took it since), and ends every session and refresh-token family of the
    /// user. Returns the account as it now is.
    ///
    /// # Errors
    /// [`AuthError::InvalidLink`] for an unknown, used, expired or foreign token. Storage
    /// failures.
    pub async fn cancel_email_change(&self, token: &str) -> Result<User, AuthError> {
        let links = &self.mail_links()?.links;
        let now = self.clock.now();
        let token = LinkToken::parse(token).ok_or(AuthError::InvalidLink)?;
        let record = links
            .take_link_token(&token.hash(), LinkPurpose::CancelEmailChange, now)
            .await?
            .ok_or(AuthError::InvalidLink)?;
        let mut user = self
            .stores
            .accounts
            .user_by_id(&record.user_id)
            .await?
            .ok_or(AuthError::InvalidLink)?;
        links
            .delete_user_link_tokens(&user.id, LinkPurpose::ChangeEmail)
            .await?;
        let mut restored = false;
        if let Some(old) = record.detail.filter(|old| *old != user.email) {
            match self.stores.accounts.set_email(&user.id, &old).await {
                Ok(_) => {
                    restored = true;
                    user.email = old;
                }
                // Another account holds it now: the sessions still end below.
                Err(StoreError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let ended = self.end_sessions_after_change(&user, None).await?;
        self.audit.record(
            AuditEvent::success("email_change_cancelled")
                .user(&user.id)
                .with("address_restored", restored)
                .with_count("sessions_ended", ended as u64),
        );
        Ok(user)
    }
}
