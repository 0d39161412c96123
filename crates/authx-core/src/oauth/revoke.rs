//! Revocation (RFC 7009), the end of a refresh-token family, and the user's own grants.

use super::OAuthError;
use super::client::Client;
use super::context::Context;
use super::grant::RefreshFamily;
use super::introspect::Introspection;
use super::types::RefreshTokenValue;
use crate::clock::Timestamp;
use crate::events::RevocationEvent;
use crate::user::UserId;

/// Revocation of tokens and families, and the user's own grants. Borrows the provider's shared
/// [`Context`]; [`crate::oauth::service::OAuthService::revocation`] hands one out.
pub struct Revocation<'a> {
    ctx: &'a Context,
}

impl<'a> Revocation<'a> {
    pub(super) fn new(ctx: &'a Context) -> Self {
        Self { ctx }
    }

    /// A token is revoked only if it is active.
    fn introspection(&self) -> Introspection<'a> {
        Introspection::new(self.ctx)
    }

    /// Revocation (RFC 7009): a token of another client is left untouched; an unknown token is
    /// not an error. Revoking a refresh token ends its family and the access tokens it issued.
    ///
    /// # Errors
    /// `unsupported_token_type` for an unknown hint; storage failures.
    pub async fn revoke(
        &self,
        caller: &Client,
        token: &str,
        hint: Option<&str>,
    ) -> Result<(), OAuthError> {
        if hint.is_some_and(|h| h != "access_token" && h != "refresh_token") {
            return Err(OAuthError::UnsupportedTokenType);
        }
        if let Some(rt) = RefreshTokenValue::parse(token) {
            if let Some((_, f)) = self.ctx.stores.grants.refresh_token(&rt.hash()).await? {
                if f.client_id == caller.id {
                    self.revoke_family(&f).await?;
                }
            }
            return Ok(());
        }
        if let Some(c) = self.introspection().active_access_token(token).await? {
            if c.client_id == caller.id {
                self.ctx
                    .stores
                    .grants
                    .revoke_jti(&c.jti, Timestamp(c.exp))
                    .await?;
                self.ctx
                    .events
                    .publish(&RevocationEvent::AccessTokenRevoked {
                        jti: c.jti.clone(),
                        user_id: UserId(c.sub.clone()),
                        expires_at: c.exp,
                    })
                    .await?;
                self.ctx.audit.record(
                    crate::audit::AuditEvent::success("access_token_revoked")
                        .client(&caller.id)
                        .user(&c.sub)
                        .with("jti", &c.jti),
                );
            }
        }
        Ok(())
    }

    pub(super) async fn revoke_family(&self, family: &RefreshFamily) -> Result<(), OAuthError> {
        if self
            .ctx
            .stores
            .grants
            .revoke_family(&family.id, self.ctx.clock.now())
            .await?
        {
            self.ctx
                .events
                .publish(&RevocationEvent::FamilyRevoked {
                    family_id: family.id.clone(),
                    user_id: family.user_id.clone(),
                })
                .await?;
            if let Some(o) = self.ctx.observer.get() {
                o.grant_revoked(&family.id);
            }
            self.ctx.audit.record(
                crate::audit::AuditEvent::success("family_revoked")
                    .client(&family.client_id)
                    .user(&family.user_id)
                    .with("family_id", &family.id),
            );
        }
        Ok(())
    }

    /// The user's live grants (refresh-token families), newest first, with their clients.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn user_grants(
        &self,
        user: &UserId,
    ) -> Result<Vec<(RefreshFamily, Option<Client>)>, OAuthError> {
        let families = self
            .ctx
            .stores
            .grants
            .list_user_families(user, self.ctx.clock.now())
            .await?;
        let mut out = Vec::with_capacity(families.len());
        for f in families {
            let client = self.ctx.stores.clients.client(&f.client_id).await?;
            out.push((f, client));
        }
        Ok(out)
    }

    /// Revokes one of the user's grants. Returns `false` when the user has no such live grant.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn revoke_user_grant(
        &self,
        user: &UserId,
        family_id: &str,
    ) -> Result<bool, OAuthError> {
        match self.ctx.stores.grants.family(family_id).await? {
            Some(f) if &f.user_id == user && f.is_live(self.ctx.clock.now()) => {
                self.revoke_family(&f).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
