//! The grants of the token endpoint, one module each, and what they share: the tokens of a
//! family and the user who may receive them. [`TokenRequest`] is the endpoint's request as one
//! typed value, and `OAuthService::grant` the one entry point that runs it.

mod client_credentials;
mod code;
mod device;
mod refresh;
mod request;
mod session;

pub use request::TokenRequest;

use super::OAuthError;
use super::client::{Client, GrantType};
use super::grant::{RefreshFamily, RefreshToken};
use super::scope::Scopes;
use super::service::OAuthService;
use super::types::{RefreshTokenValue, TokenResponse};
use crate::clock::Timestamp;
use crate::session::SessionId;
use crate::user::{User, UserId, UserStatus};

/// What a first grant (a redeemed code or device code) hands to the family it opens.
struct Granted {
    /// The family id the redemption recorded.
    id: String,
    /// The browser session the family dies with, if any.
    session_id: Option<SessionId>,
    /// Granted scopes, space-delimited.
    scope: String,
    /// The resource (audience).
    resource: Option<String>,
    /// When the user authenticated.
    auth_time: Timestamp,
}

impl OAuthService {
    pub(crate) async fn family_tokens(
        &self,
        client: &Client,
        user: &User,
        family: &RefreshFamily,
        nonce: Option<&str>,
        refresh: Option<String>,
    ) -> Result<TokenResponse, OAuthError> {
        let scope = Scopes::parse(&family.scope).unwrap_or_default();
        // Checked at every issue (code, refresh, device): a resource deleted since the grant was
        // made, or no longer allowed to the client, gets nothing more.
        let (aud, _) = self
            .clients
            .audience(client, family.resource.as_deref(), &scope)
            .await?;
        let (access_token, expires_in) = self.issuer.issue_access_token(
            client,
            &user.id.0,
            &aud,
            &scope,
            family.session_id.as_ref(),
            Some(&family.id),
            Some(family.auth_time),
        )?;
        let id_token = if scope.contains("openid") {
            Some(
                self.issuer
                    .issue_id_token(client, user, family, nonce, &access_token, &scope)?,
            )
        } else {
            None
        };
        Ok(TokenResponse {
            access_token,
            expires_in,
            refresh_token: refresh,
            id_token,
            scope: scope.to_param(),
        })
    }

    pub(in crate::oauth) async fn active_user(&self, id: &UserId) -> Result<User, OAuthError> {
        match self.stores.accounts.user_by_id(id).await? {
            Some(u) if u.status == UserStatus::Active => Ok(u),
            _ => Err(OAuthError::InvalidGrant("the user cannot receive tokens")),
        }
    }

    /// Opens the family of a first grant: stores it with its first refresh token (when the
    /// client may refresh) in one call, issues its tokens and records the issue.
    async fn open_family(
        &self,
        client: &Client,
        user: &User,
        granted: Granted,
        nonce: Option<&str>,
        grant: &'static str,
        now: Timestamp,
    ) -> Result<TokenResponse, OAuthError> {
        let family = RefreshFamily {
            id: granted.id,
            client_id: client.id.clone(),
            user_id: user.id.clone(),
            session_id: granted.session_id,
            scope: granted.scope,
            resource: granted.resource,
            auth_time: granted.auth_time,
            created_at: now,
            expires_at: now.plus(client.refresh_token_ttl_secs),
            revoked_at: None,
        };
        let refresh = client
            .allows(GrantType::RefreshToken)
            .then(RefreshTokenValue::generate);
        let first = refresh.as_ref().map(|rt| RefreshToken {
            hash: rt.hash(),
            family_id: family.id.clone(),
            issued_at: now,
            idle_expires_at: now.plus(client.refresh_idle_secs).min(family.expires_at),
            consumed_at: None,
        });
        self.stores
            .grants
            .create_family(&family, first.as_ref())
            .await?;
        let resp = self
            .family_tokens(
                client,
                user,
                &family,
                nonce,
                refresh.as_ref().map(|r| r.expose().to_owned()),
            )
            .await?;
        self.audit.record(
            crate::audit::AuditEvent::success("token_issued")
                .client(&client.id)
                .user(&user.id)
                .with("grant", grant)
                .with("family_id", &family.id),
        );
        Ok(resp)
    }
}
