//! The refresh-token grant (RFC 6749 §6) with rotation and reuse detection (RFC 9700
//! §4.14.2).

use super::super::OAuthError;
use super::super::client::{Client, GrantType};
use super::super::dpop::Jkt;
use super::super::grant::{RefreshFamily, RefreshToken, Rotation};
use super::super::scope::Scopes;
use super::super::types::{RefreshTokenValue, TokenResponse};
use super::Tokens;
use crate::secret::b64url;
use crate::secret::hmac_bytes;

impl Tokens<'_> {
    fn successor_of(&self, raw: &str) -> Option<RefreshTokenValue> {
        RefreshTokenValue::parse(&b64url(&hmac_bytes(self.successor_key, raw.as_bytes())))
    }

    /// The refresh-token grant (RFC 6749 §6) with rotation and reuse detection (RFC 9700 §4.14.2).
    ///
    /// # Errors
    /// `invalid_grant` for an unknown, expired, revoked, foreign or replayed token (a replay
    /// outside the grace window revokes the family); `invalid_scope` for a wider scope.
    pub async fn refresh(
        &self,
        client: &Client,
        token: &str,
        scope: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        self.refresh_with(client, token, scope, None).await
    }

    /// [`Tokens::refresh`] with the key of the request's DPoP proof, if any: a family bound
    /// to a key (a public client's) refreshes only with a proof by it; the new access token
    /// is bound to the proof's key.
    pub(super) async fn refresh_with(
        &self,
        client: &Client,
        token: &str,
        scope: Option<&str>,
        dpop: Option<&Jkt>,
    ) -> Result<TokenResponse, OAuthError> {
        Self::require_binding(client, dpop)?;
        if !client.allows(GrantType::RefreshToken) {
            return Err(OAuthError::UnauthorizedClient);
        }
        let Some(presented) = RefreshTokenValue::parse(token) else {
            return Err(OAuthError::InvalidGrant("invalid refresh token"));
        };
        let now = self.ctx.clock.now();
        let Some((record, family)) = self
            .ctx
            .stores
            .grants
            .refresh_token(&presented.hash())
            .await?
        else {
            return Err(OAuthError::InvalidGrant("invalid refresh token"));
        };
        if family.client_id != client.id {
            return Err(OAuthError::InvalidGrant(
                "the refresh token was issued to another client",
            ));
        }
        if !family.is_live(now) {
            return Err(OAuthError::InvalidGrant(
                "the refresh token was revoked or has expired",
            ));
        }
        // RFC 9449 §5: checked before the token is spent, so someone who stole a bound
        // refresh token but not its key can neither use it nor burn the owner's chain.
        if let Some(bound) = &family.dpop_jkt {
            if !dpop.is_some_and(|j| j.matches(bound)) {
                self.ctx.audit.record(
                    crate::audit::AuditEvent::failure("dpop_key_mismatch")
                        .client(&client.id)
                        .user(&family.user_id)
                        .with("family_id", &family.id),
                );
                return Err(OAuthError::InvalidGrant(
                    "the refresh token is bound to another DPoP key",
                ));
            }
        }
        // RFC 6749 §6: a narrower `scope` gets exactly that subset in this access token (and
        // ID token); the grant itself, and so the next refresh token, keeps the original scope.
        let narrowed = match scope {
            Some(s) => {
                let asked = Scopes::parse(s)
                    .ok_or_else(|| OAuthError::InvalidScope("malformed scope".into()))?;
                if !asked.is_subset(&Scopes::parse(&family.scope).unwrap_or_default()) {
                    return Err(OAuthError::InvalidScope(
                        "a refresh cannot widen the scope".into(),
                    ));
                }
                Some(asked)
            }
            None => None,
        };
        if family
            .resource
            .as_deref()
            .is_some_and(|r| !client.may_target(r))
        {
            return Err(OAuthError::InvalidTarget(
                "the client may no longer request tokens for this resource".into(),
            ));
        }
        let user = match self.ctx.active_user(&family.user_id).await {
            Ok(u) => u,
            Err(e) => {
                self.revocation().revoke_family(&family).await?;
                return Err(e);
            }
        };
        let successor = self
            .successor_of(presented.expose())
            .ok_or_else(|| OAuthError::Internal("successor".into()))?;
        let mut rotated = false;
        if record.consumed_at.is_none() && now < record.idle_expires_at {
            let next = RefreshToken {
                hash: successor.hash(),
                family_id: family.id.clone(),
                issued_at: now,
                idle_expires_at: now.plus(client.refresh_idle_secs).min(family.expires_at),
                consumed_at: None,
            };
            rotated = self
                .ctx
                .stores
                .grants
                .rotate_refresh(Rotation {
                    old: &presented.hash(),
                    new: &next,
                    now,
                })
                .await?;
        } else if record.consumed_at.is_none() {
            return Err(OAuthError::InvalidGrant("the refresh token has expired"));
        }
        if !rotated {
            // Consumed already: an immediate retry of the previous token gets the same successor
            // while that successor is unused; anything else is reuse and ends the family.
            let consumed_at = match self
                .ctx
                .stores
                .grants
                .refresh_token(&presented.hash())
                .await?
            {
                Some((r, _)) => r.consumed_at,
                None => None,
            };
            let within_grace =
                consumed_at.is_some_and(|t| now.since(t) <= self.ctx.config().refresh_grace_secs);
            let successor_unused = matches!(
                self.ctx.stores.grants.refresh_token(&successor.hash()).await?,
                Some((r, _)) if r.consumed_at.is_none()
            );
            if !(within_grace && successor_unused && self.ctx.config().refresh_grace_secs > 0) {
                self.revocation().revoke_family(&family).await?;
                self.ctx.audit.record(
                    crate::audit::AuditEvent::failure("refresh_token_reuse")
                        .client(&client.id)
                        .user(&user.id)
                        .with("family_id", &family.id),
                );
                return Err(OAuthError::InvalidGrant(
                    "refresh token already used; the grant was revoked",
                ));
            }
        }
        let issued = match narrowed {
            Some(asked) => RefreshFamily {
                scope: asked.to_param(),
                ..family.clone()
            },
            None => family.clone(),
        };
        let resp = self
            .family_tokens(
                client,
                &user,
                &issued,
                None,
                Some(successor.expose().to_owned()),
                dpop,
            )
            .await?;
        self.ctx.audit.record(
            crate::audit::AuditEvent::success("token_issued")
                .client(&client.id)
                .user(&user.id)
                .with("grant", "refresh_token")
                .with("family_id", &family.id),
        );
        Ok(resp)
    }
}
