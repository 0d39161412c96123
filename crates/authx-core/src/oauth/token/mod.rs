//! The grants of the token endpoint as one type, [`Tokens`], one module per grant, and what
//! they share: the tokens of a family and the family a first grant opens. [`TokenRequest`] is
//! the endpoint's request as one typed value, and [`Tokens::grant`] the one entry point that
//! runs it.

mod client_credentials;
mod code;
mod device;
mod refresh;
mod request;
mod session;

pub use request::TokenRequest;

use super::OAuthError;
use super::client::{Client, GrantType};
use super::context::Context;
use super::dpop::Jkt;
use super::grant::{RefreshFamily, RefreshToken};
use super::revoke::Revocation;
use super::scope::Scopes;
use super::types::{RefreshTokenValue, TokenResponse};
use crate::clock::Timestamp;
use crate::session::SessionId;
use crate::user::User;

/// The token endpoint's grants and the session-minted token. Borrows the provider's shared
/// [`Context`]; [`crate::oauth::service::OAuthService::tokens`] hands one out.
pub struct Tokens<'a> {
    ctx: &'a Context,
    /// Derives a refresh token's successor from it, so a retry gets the same one.
    successor_key: &'a [u8; 32],
}

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
    /// How the user authenticated.
    auth_methods: String,
}

impl<'a> Tokens<'a> {
    pub(super) fn new(ctx: &'a Context, successor_key: &'a [u8; 32]) -> Self {
        Self { ctx, successor_key }
    }

    /// RFC 9449 §5.2: a client registered with `dpop_bound_access_tokens` gets no token that is
    /// not bound, so every token request of it needs a proof (a thief of its credentials
    /// cannot fall back to bearer tokens).
    fn require_binding(client: &Client, dpop: Option<&Jkt>) -> Result<(), OAuthError> {
        if client.dpop_bound_access_tokens && dpop.is_none() {
            return Err(OAuthError::InvalidRequest(
                "this client gets DPoP-bound tokens only: send a DPoP proof".into(),
            ));
        }
        Ok(())
    }

    /// Ending a family (reuse of a refresh token, replay of a code) is revocation's.
    fn revocation(&self) -> Revocation<'a> {
        Revocation::new(self.ctx)
    }

    /// The access token (bound to `dpop` when given), ID token and response of a family's
    /// grant.
    pub(crate) async fn family_tokens(
        &self,
        client: &Client,
        user: &User,
        family: &RefreshFamily,
        nonce: Option<&str>,
        refresh: Option<String>,
        dpop: Option<&Jkt>,
    ) -> Result<TokenResponse, OAuthError> {
        let scope = Scopes::parse(&family.scope).unwrap_or_default();
        // Checked at every issue (code, refresh, device): a resource deleted since the grant was
        // made, or no longer allowed to the client, gets nothing more.
        let (aud, _) = self
            .ctx
            .clients
            .audience(client, family.resource.as_deref(), &scope)
            .await?;
        let (access_token, expires_in) = self.ctx.issuer.issue_access_token(
            client,
            &user.id.0,
            &aud,
            &scope,
            family.session_id.as_ref(),
            Some(&family.id),
            Some(family.auth_time),
            Some(&family.auth_methods),
            dpop,
        )?;
        let id_token = if scope.contains("openid") {
            Some(self.ctx.issuer.issue_id_token(
                client,
                user,
                family,
                nonce,
                &access_token,
                &scope,
            )?)
        } else {
            None
        };
        Ok(TokenResponse {
            access_token,
            expires_in,
            refresh_token: refresh,
            id_token,
            scope: scope.to_param(),
            dpop_bound: dpop.is_some(),
        })
    }

    /// Opens the family of a first grant: stores it with its first refresh token (when the
    /// client may refresh) in one call, issues its tokens and records the issue. With a DPoP
    /// proof's key `dpop`, the access token is bound to it, and so is the family of a public
    /// client (RFC 9449 §5: a confidential client's refresh tokens are bound to its
    /// authentication instead).
    #[allow(clippy::too_many_arguments)]
    async fn open_family(
        &self,
        client: &Client,
        user: &User,
        granted: Granted,
        nonce: Option<&str>,
        grant: &'static str,
        now: Timestamp,
        dpop: Option<&Jkt>,
    ) -> Result<TokenResponse, OAuthError> {
        let family = RefreshFamily {
            id: granted.id,
            client_id: client.id.clone(),
            user_id: user.id.clone(),
            session_id: granted.session_id,
            scope: granted.scope,
            resource: granted.resource,
            auth_time: granted.auth_time,
            auth_methods: granted.auth_methods,
            created_at: now,
            expires_at: now.plus(client.refresh_token_ttl_secs),
            revoked_at: None,
            dpop_jkt: dpop
                .filter(|_| !client.is_confidential())
                .map(|j| j.as_str().to_owned()),
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
        self.ctx
            .stores
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
                dpop,
            )
            .await?;
        self.ctx.audit.record(
            crate::audit::AuditEvent::success("token_issued")
                .client(&client.id)
                .user(&user.id)
                .with("grant", grant)
                .with("family_id", &family.id),
        );
        Ok(resp)
    }
}
