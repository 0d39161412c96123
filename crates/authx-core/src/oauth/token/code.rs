//! The authorization-code grant (RFC 6749 §4.1.3, RFC 7636 §4.6).

use super::super::OAuthError;
use super::super::client::{Client, GrantType};
use super::super::dpop::Jkt;
use super::super::grant::{CodeRedemption, Redemption};
use super::super::pkce;
use super::super::types::{AuthorizationCode, TokenResponse};
use super::Granted;
use super::Tokens;

impl Tokens<'_> {
    /// The authorization-code grant (RFC 6749 §4.1.3, RFC 7636 §4.6).
    ///
    /// # Errors
    /// `invalid_grant` for an unknown, expired, replayed, foreign or PKCE-failing code (the code
    /// is spent either way); a replay also revokes what the code issued.
    pub async fn exchange_code(
        &self,
        client: &Client,
        code: &str,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        self.exchange_code_with(client, code, redirect_uri, verifier, None)
            .await
    }

    /// [`Tokens::exchange_code`] with the key of the request's DPoP proof, if any: a code
    /// bound to a key (`dpop_jkt`) needs a proof by it, and the tokens are bound to it.
    pub(super) async fn exchange_code_with(
        &self,
        client: &Client,
        code: &str,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
        dpop: Option<&Jkt>,
    ) -> Result<TokenResponse, OAuthError> {
        Self::require_binding(client, dpop)?;
        if !client.allows(GrantType::AuthorizationCode) {
            return Err(OAuthError::UnauthorizedClient);
        }
        let redirect_uri = redirect_uri
            .ok_or_else(|| OAuthError::InvalidRequest("redirect_uri is required".into()))?;
        // A missing verifier fails PKCE like a wrong one, after redemption: the code is spent
        // (RFC 7636 §4.6, SECURITY.md #35).
        let verifier = verifier.unwrap_or_default();
        let Some(code) = AuthorizationCode::parse(code) else {
            return Err(OAuthError::InvalidGrant("invalid authorization code"));
        };
        let now = self.ctx.clock.now();
        let family_id = crate::secret::random_id();
        let record = match self
            .ctx
            .stores
            .grants
            .redeem_code(Redemption {
                hash: &code.hash(),
                family_id: &family_id,
                now,
            })
            .await?
        {
            CodeRedemption::Redeemed(c) => *c,
            CodeRedemption::AlreadyRedeemed { family_id } => {
                // A replayed code: whatever the first redemption issued is revoked.
                if let Some(fid) = family_id {
                    if let Some(f) = self.ctx.stores.grants.family(&fid).await? {
                        self.revocation().revoke_family(&f).await?;
                    }
                }
                self.ctx
                    .audit
                    .record(crate::audit::AuditEvent::failure("code_reuse").client(&client.id));
                return Err(OAuthError::InvalidGrant("authorization code already used"));
            }
            CodeRedemption::Unknown => {
                return Err(OAuthError::InvalidGrant(
                    "invalid or expired authorization code",
                ));
            }
        };
        if record.client_id != client.id {
            return Err(OAuthError::InvalidGrant(
                "the code was issued to another client",
            ));
        }
        if record.redirect_uri != redirect_uri {
            return Err(OAuthError::InvalidGrant(
                "redirect_uri differs from the authorization request",
            ));
        }
        if !pkce::verify(verifier, &record.code_challenge) {
            self.ctx.audit.record(
                crate::audit::AuditEvent::failure("pkce_failed")
                    .client(&client.id)
                    .user(&record.user_id),
            );
            return Err(OAuthError::InvalidGrant("PKCE verification failed"));
        }
        // RFC 9449 §10: a code bound to a key is redeemed only with a proof by that key (after
        // redemption, so a failed attempt spends the code, as a failed PKCE check does).
        if let Some(bound) = &record.dpop_jkt {
            if !dpop.is_some_and(|j| j.matches(bound)) {
                self.ctx.audit.record(
                    crate::audit::AuditEvent::failure("dpop_key_mismatch")
                        .client(&client.id)
                        .user(&record.user_id),
                );
                return Err(OAuthError::InvalidGrant(
                    "the code is bound to another DPoP key",
                ));
            }
        }
        let user = self.ctx.active_user(&record.user_id).await?;
        // The code stands on the sign-in that made it: once that session has ended (sign-out,
        // revocation, expiry, a password change or a disable, which end every session), or the
        // user authenticated before the last password change, the code is worth nothing. The
        // session store is asked, not the code row: sessions may live in Redis.
        if record.auth_time < user.password_changed_at
            || !self
                .ctx
                .session_is_live(&user.id, &record.session_id, now)
                .await?
        {
            self.ctx.audit.record(
                crate::audit::AuditEvent::failure("code_session_ended")
                    .client(&client.id)
                    .user(&user.id),
            );
            return Err(OAuthError::InvalidGrant(
                "the sign-in that authorized the code has ended",
            ));
        }
        if record
            .resource
            .as_deref()
            .is_some_and(|r| !client.may_target(r))
        {
            return Err(OAuthError::InvalidTarget(
                "the client may no longer request tokens for this resource".into(),
            ));
        }
        let granted = Granted {
            id: family_id,
            session_id: Some(record.session_id.clone()),
            scope: record.scope.clone(),
            resource: record.resource.clone(),
            auth_time: record.auth_time,
            auth_methods: record.auth_methods.clone(),
        };
        self.open_family(
            client,
            &user,
            granted,
            record.nonce.as_deref(),
            "authorization_code",
            now,
            dpop,
        )
        .await
    }
}
