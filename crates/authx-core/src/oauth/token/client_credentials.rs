//! The client-credentials grant (RFC 6749 §4.4).

use super::super::OAuthError;
use super::super::client::{Client, GrantType};
use super::super::clients::Clients;
use super::super::dpop::Jkt;
use super::super::scope::Scopes;
use super::super::types::{OIDC_SCOPES, TokenResponse};
use super::Tokens;

impl Tokens<'_> {
    /// The client-credentials grant (RFC 6749 §4.4): confidential clients only, no refresh
    /// token, and a subject namespaced so it can never equal a user's.
    ///
    /// # Errors
    /// As RFC 6749 §5.2.
    pub async fn client_credentials(
        &self,
        client: &Client,
        scope: Option<&str>,
        resource: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        self.client_credentials_with(client, scope, resource, None)
            .await
    }

    /// [`Tokens::client_credentials`], with the access token bound to the DPoP key `dpop` if
    /// given.
    pub(super) async fn client_credentials_with(
        &self,
        client: &Client,
        scope: Option<&str>,
        resource: Option<&str>,
        dpop: Option<&Jkt>,
    ) -> Result<TokenResponse, OAuthError> {
        Self::require_binding(client, dpop)?;
        if !client.is_confidential() || !client.allows(GrantType::ClientCredentials) {
            return Err(OAuthError::UnauthorizedClient);
        }
        let requested = match scope {
            Some(s) => Scopes::parse(s)
                .ok_or_else(|| OAuthError::InvalidScope("malformed scope".into()))?,
            None => Scopes::from_list(client.scopes.iter().map(String::as_str)),
        };
        let requested = requested.minus(&Scopes::from_list(OIDC_SCOPES));
        // Scopes the client may not have are refused before anything else is looked at.
        Clients::grant_scope(client, Some(&requested.to_param()), None)?;
        let (aud, res) = self
            .ctx
            .clients
            .audience(client, resource, &requested)
            .await?;
        let granted = Clients::grant_scope(client, Some(&requested.to_param()), res.as_ref())?;
        let access = self.ctx.issuer.issue_access_token(
            client,
            &format!("client:{}", client.id),
            &aud,
            &granted,
            None,
            None,
            None,
            None,
            dpop,
        )?;
        self.ctx.audit.record(
            crate::audit::AuditEvent::success("token_issued")
                .client(&client.id)
                .with("grant", "client_credentials"),
        );
        Ok(TokenResponse {
            dpop_bound: dpop.is_some(),
            ..TokenResponse::access_only(access, &granted)
        })
    }
}
