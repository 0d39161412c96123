//! Magic links: signing in with a single-use link mailed to the account's address, in the
//! browser that asked for it.
//!
//! # Security
//! - [`AuthService::request_magic_link`] has one outcome whatever the address, like a reset
//!   request: a token is made every time, and only the owner of an active account gets a mail.
//!   Mails per address are limited (the reset allowance, counted apart).
//! - The link is bound to the browser that asked: the request carries the hash of a random
//!   cookie ([`LinkBinding`]) and the link's record keeps it. Used without that cookie, the link
//!   is refused ([`AuthError::OtherBrowser`]) and stays for the browser that asked, so a mail
//!   read by someone else (a leaked inbox, a forwarded mail) is not a session.
//! - Using a link is a first factor like a password: it gives a [`super::PendingSignIn`] with
//!   [`AuthMethod::MagicLink`] and goes through [`AuthService::complete_sign_in`], so the steps
//!   a sign-in owes still apply, the presented session ends (no fixation) and the session cap
//!   holds. A disabled account is refused. Using one link removes the user's others.

use crate::audit::AuditEvent;
use crate::links::{LinkPurpose, LinkRecord, LinkToken};
use crate::mail::Message;
use crate::secret::SessionToken;
use crate::secret::TokenHash;
use crate::session::ClientContext;
use crate::user::{UserId, UserStatus, canonical_email};

use super::{AuthError, AuthMethod, AuthService, PendingSignIn, SignedIn};

crate::secret::opaque_secret!(
    /// The value of the cookie that binds a magic link to the browser that asked for it.
    LinkBinding
);

/// A magic-link sign-in: the session, and the local path the request asked to return to.
#[derive(Debug)]
pub struct MagicSignIn {
    /// The new session.
    pub signed: SignedIn,
    /// The return path given with the request (the caller checks it again).
    pub return_to: String,
}

/// What a magic link's record keeps besides its user: the hex SHA-256 of the binding cookie,
/// then `:` and the return path.
fn detail(binding: &TokenHash, return_to: &str) -> String {
    format!("{}:{return_to}", binding.to_hex())
}

/// The binding hash and return path of a stored detail.
fn parse_detail(detail: &str) -> Option<(TokenHash, &str)> {
    let (hex, return_to) = detail.split_once(':')?;
    Some((TokenHash::from_hex(hex)?, return_to))
}

impl AuthService {
    /// Asks for a sign-in link for `email`, bound to the browser whose binding cookie hashes
    /// to `binding`. The same `Ok(())` whatever the address: an active account gets a link
    /// valid 10 minutes; an unknown address, a disabled account, or an address past its
    /// allowance of mails gets nothing.
    ///
    /// # Errors
    /// Storage and mail failures only.
    pub async fn request_magic_link(
        &self,
        email: &str,
        binding: &TokenHash,
        return_to: &str,
    ) -> Result<(), AuthError> {
        let links = &self.mail_links()?.links;
        let now = self.clock.now();
        // Made for every request, so an unknown address costs the same before the lookups.
        let (token, record) =
            LinkRecord::issue(LinkPurpose::MagicLink, &UserId(String::new()), now);
        let refuse = |reason: &'static str| {
            AuditEvent::failure("magic_link_requested").with("reason", reason)
        };
        let user = match canonical_email(email) {
            Ok(e)
                if self
                    .address_refused("magic_link_address", &e)
                    .await?
                    .is_some() =>
            {
                self.audit.record(refuse("rate_limited"));
                return Ok(());
            }
            Ok(e) => self.stores.accounts.user_by_email(&e).await?,
            Err(_) => None,
        };
        let Some(user) = user.filter(|u| u.status == UserStatus::Active) else {
            self.audit.record(refuse("no_account"));
            return Ok(());
        };
        let record = LinkRecord {
            user_id: user.id.clone(),
            ..record
        }
        .with_detail(detail(binding, return_to));
        links.insert_link_token(&record).await?;
        let message = Message::MagicLink {
            token: token.expose().to_owned(),
            valid_minutes: LinkPurpose::MagicLink.lifetime_secs() / 60,
        };
        self.mail_to(&user.email, message).await?;
        self.audit
            .record(AuditEvent::success("magic_link_requested").user(&user.id));
        Ok(())
    }

    /// Signs in with the token of a magic link, in the browser that asked for it (`binding`
    /// is its binding cookie): a first factor, then the steps the sign-in owes, then a fresh
    /// session; `previous` (any session the browser presented) ends.
    ///
    /// # Errors
    /// [`AuthError::InvalidLink`] for an unknown, used, expired or foreign token or a disabled
    /// account; [`AuthError::OtherBrowser`] without the binding cookie of the browser that
    /// asked (the link stays usable there). Storage failures.
    pub async fn sign_in_with_magic_link(
        &self,
        token: &str,
        binding: Option<&LinkBinding>,
        ctx: &ClientContext,
        previous: Option<&SessionToken>,
    ) -> Result<MagicSignIn, AuthError> {
        let links = &self.mail_links()?.links;
        let now = self.clock.now();
        let token = LinkToken::parse(token).ok_or(AuthError::InvalidLink)?;
        let record = links
            .take_link_token(&token.hash(), LinkPurpose::MagicLink, now)
            .await?
            .ok_or(AuthError::InvalidLink)?;
        let Some((bound, return_to)) = record.detail.as_deref().and_then(parse_detail) else {
            return Err(AuthError::InvalidLink);
        };
        let return_to = return_to.to_owned();
        if !binding.is_some_and(|b| b.hash().ct_eq(&bound)) {
            // The browser that asked may still use it.
            links.insert_link_token(&record).await?;
            self.audit.record(
                AuditEvent::failure("magic_link_refused")
                    .user(&record.user_id)
                    .with("reason", "other_browser"),
            );
            return Err(AuthError::OtherBrowser);
        }
        let mut user = match self.stores.accounts.user_by_id(&record.user_id).await? {
            Some(u) if u.status == UserStatus::Active => u,
            _ => {
                self.audit.record(
                    AuditEvent::failure("magic_link_refused")
                        .user(&record.user_id)
                        .with("reason", "disabled"),
                );
                return Err(AuthError::InvalidLink);
            }
        };
        links
            .delete_user_link_tokens(&user.id, LinkPurpose::MagicLink)
            .await?;
        // The link came through the account's mailbox: the address is proved, and a sign-in
        // that requires a verified address does not ask for another link.
        if !user.email_verified {
            self.stores
                .accounts
                .set_email_verified(&user.id, true)
                .await?;
            user.email_verified = true;
            self.audit.record(
                AuditEvent::success("email_verified")
                    .user(&user.id)
                    .with("method", "magic_link"),
            );
        }
        let pending = PendingSignIn::new(user, AuthMethod::MagicLink, now).returning_to(&return_to);
        let signed = self.complete_sign_in(pending, ctx, previous).await?;
        Ok(MagicSignIn { signed, return_to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detail_round_trips_and_refuses_garbage() {
        let b = LinkBinding::generate();
        let d = detail(&b.hash(), "/oauth2/authorize?a=b:c");
        let (h, rt) = parse_detail(&d).unwrap();
        assert!(h.ct_eq(&b.hash()));
        assert_eq!(rt, "/oauth2/authorize?a=b:c");
        assert!(!d.contains(b.expose()), "only the hash is stored");
        assert!(parse_detail("nothex:/account").is_none());
        assert!(parse_detail("/account").is_none());
    }
}
