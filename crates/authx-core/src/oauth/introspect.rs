//! Whether an access token is active at this server (signature, then everything that can
//! revoke it), introspection (RFC 7662) and userinfo (OIDC Core §5.3).

use serde_json::{Value, json};

use super::OAuthError;
use super::client::Client;
use super::context::Context;
use super::dpop::Jkt;
use super::jwt::{self, AccessTokenClaims};
use super::scope::Scopes;
use super::types::RefreshTokenValue;
use crate::clock::Timestamp;
use crate::secret::TokenHash;
use crate::session::SessionId;
use crate::user::{UserId, UserStatus};

/// How an access token was presented to a resource endpoint (RFC 9449 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    /// `Authorization: Bearer` (RFC 6750).
    Bearer,
    /// `Authorization: DPoP`, with a verified proof by the key of this thumbprint.
    Dpop(&'a Jkt),
}

impl Presented<'_> {
    /// Whether a token bound to `bound` (or to nothing) may be used when presented so: a bound
    /// token only with a proof by its key, an unbound one only as a bearer token.
    #[must_use]
    pub fn fits(self, bound: Option<&str>) -> bool {
        match (self, bound) {
            (Self::Bearer, None) => true,
            (Self::Dpop(jkt), Some(b)) => jkt.matches(b),
            (Self::Bearer, Some(_)) | (Self::Dpop(_), None) => false,
        }
    }
}

/// What the userinfo endpoint answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Userinfo {
    /// The user's claims.
    Claims(Value),
    /// The token is not valid here (RFC 6750 `invalid_token`).
    InvalidToken,
    /// The token is bound to a DPoP key and came without a proof by it: `invalid_token`, with
    /// a `DPoP` challenge (RFC 9449 §7.1).
    NeedsProof,
}

/// Whether an access token is active, introspection and userinfo. Borrows the provider's
/// shared [`Context`]; [`crate::oauth::service::OAuthService::introspection`] hands one out.
pub struct Introspection<'a> {
    ctx: &'a Context,
}

impl<'a> Introspection<'a> {
    pub(super) fn new(ctx: &'a Context) -> Self {
        Self { ctx }
    }

    /// Checks an access token for use at this server: signature and claims, then that nothing
    /// revoked it (its `jti`, its family, its session for session-minted tokens, its client for
    /// client-credentials tokens, a later password change, a disabled user).
    ///
    /// # Errors
    /// Storage failures (the caller fails closed).
    pub async fn active_access_token(
        &self,
        token: &str,
    ) -> Result<Option<AccessTokenClaims>, OAuthError> {
        let now = self.ctx.clock.now();
        let Some(cache) = self.ctx.issuer.token_cache() else {
            return self.check_access_token(token, now).await;
        };
        if token.len() > jwt::MAX_JWT_LEN {
            return Ok(None);
        }
        let hash = TokenHash::of(token.as_bytes());
        let stamp = cache.stamp().await?;
        if let Some(c) = cache.get(&hash, now, stamp) {
            return Ok(Some(c));
        }
        let claims = self.check_access_token(token, now).await?;
        // Not a token minted from a browser session (a `sid` without a family): the session
        // can idle out, which publishes nothing. A family's tokens die with the family only.
        if let Some(c) = claims
            .as_ref()
            .filter(|c| c.fid.is_some() || c.sid.is_none())
        {
            let expires = c.exp.saturating_add(self.ctx.config().leeway_secs);
            cache.put(hash, c, stamp, now, expires);
        }
        Ok(claims)
    }

    async fn check_access_token(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<Option<AccessTokenClaims>, OAuthError> {
        let claims = self.ctx.issuer.verify_access_token(token, now).await?;
        let Some(c) = claims else { return Ok(None) };
        if self.ctx.stores.grants.is_jti_revoked(&c.jti).await? {
            return Ok(None);
        }
        if let Some(fid) = &c.fid {
            match self.ctx.stores.grants.family(fid).await? {
                Some(f) if f.revoked_at.is_none() => {}
                _ => return Ok(None),
            }
        } else if let Some(sid) = &c.sid {
            // Minted from a browser session: dies with it.
            let alive = self
                .ctx
                .session_is_live(&UserId(c.sub.clone()), &SessionId(sid.clone()), now)
                .await?;
            if !alive {
                return Ok(None);
            }
        } else {
            // Client credentials: no family or session to die with, so the client itself must
            // still exist, and be the one the token was issued to rather than a client
            // registered later under the same id (within the clock leeway).
            match self.ctx.stores.clients.client(&c.client_id).await? {
                Some(client)
                    if c.iat.saturating_add(self.ctx.config().leeway_secs)
                        >= client.created_at.secs() => {}
                _ => return Ok(None),
            }
        }
        if !c.sub.starts_with("client:") {
            match self
                .ctx
                .stores
                .accounts
                .user_by_id(&UserId(c.sub.clone()))
                .await?
            {
                Some(u)
                    if u.status == UserStatus::Active && c.iat >= u.password_changed_at.secs() => {}
                _ => return Ok(None),
            }
        }
        Ok(Some(c))
    }

    /// Introspection (RFC 7662): `{"active": false}` alike for unknown, expired, revoked,
    /// malformed and other clients' tokens.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn introspect(&self, caller: &Client, token: &str) -> Result<Value, OAuthError> {
        let inactive = json!({"active": false});
        let now = self.ctx.clock.now();
        if let Some(rt) = RefreshTokenValue::parse(token) {
            if let Some((r, f)) = self.ctx.stores.grants.refresh_token(&rt.hash()).await? {
                let usable = f.is_live(now) && r.consumed_at.is_none() && now < r.idle_expires_at;
                if usable
                    && f.client_id == caller.id
                    && self.ctx.active_user(&f.user_id).await.is_ok()
                {
                    let mut v = json!({
                        "active": true,
                        "token_type": "refresh_token",
                        "client_id": f.client_id,
                        "sub": f.user_id,
                        "scope": f.scope,
                        "iat": r.issued_at.secs(),
                        "exp": r.idle_expires_at.min(f.expires_at).secs(),
                        "iss": self.ctx.config().issuer,
                    });
                    if let Some(jkt) = f.dpop_jkt {
                        v["cnf"] = json!({"jkt": jkt});
                    }
                    return Ok(v);
                }
            }
            return Ok(inactive);
        }
        let Some(c) = self.active_access_token(token).await? else {
            return Ok(inactive);
        };
        // Only the client the token was issued to, or the API it is for, may inspect it.
        if caller.id != c.client_id && caller.id != c.aud {
            return Ok(inactive);
        }
        let mut v = json!({
            "active": true,
            // RFC 9449 §6.2: a bound token is a DPoP token, and says to which key.
            "token_type": if c.dpop_jkt().is_some() { "DPoP" } else { "Bearer" },
            "client_id": c.client_id,
            "sub": c.sub,
            "aud": c.aud,
            "iss": c.iss,
            "exp": c.exp,
            "iat": c.iat,
            "jti": c.jti,
        });
        if let Some(jkt) = c.dpop_jkt() {
            v["cnf"] = json!({"jkt": jkt});
        }
        if !c.scope.is_empty() {
            v["scope"] = Value::String(c.scope);
        }
        if let Some(sid) = c.sid {
            v["sid"] = Value::String(sid);
        }
        Ok(v)
    }

    /// Userinfo (OIDC Core §5.3) for an access token issued with `openid`, presented as
    /// `presented` says: a token bound to a DPoP key is valid only under the `DPoP` scheme with
    /// a proof by that key, and the `DPoP` scheme only with a bound token (RFC 9449 §7.1).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn userinfo(
        &self,
        token: &str,
        presented: Presented<'_>,
    ) -> Result<Userinfo, OAuthError> {
        let Some(c) = self.active_access_token(token).await? else {
            return Ok(Userinfo::InvalidToken);
        };
        if !presented.fits(c.dpop_jkt()) {
            return Ok(if c.dpop_jkt().is_some() {
                Userinfo::NeedsProof
            } else {
                Userinfo::InvalidToken
            });
        }
        let scope = Scopes::parse(&c.scope).unwrap_or_default();
        if !scope.contains("openid") || c.sub.starts_with("client:") {
            return Ok(Userinfo::InvalidToken);
        }
        let Some(user) = self
            .ctx
            .stores
            .accounts
            .user_by_id(&UserId(c.sub.clone()))
            .await?
        else {
            return Ok(Userinfo::InvalidToken);
        };
        let mut v = json!({"sub": user.id});
        if scope.contains("email") {
            v["email"] = Value::String(user.email);
            v["email_verified"] = Value::Bool(user.email_verified);
        }
        Ok(Userinfo::Claims(v))
    }
}
