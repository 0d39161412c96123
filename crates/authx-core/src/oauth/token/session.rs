//! Access tokens minted for a signed-in browser session (the first-party hybrid).

use super::super::OAuthError;
use super::super::client::Client;
use super::super::keys::SigningAlg;
use super::super::scope::Scopes;
use super::super::types::TokenResponse;
use super::Tokens;
use crate::clock::Timestamp;
use crate::session::Session;
use crate::user::User;

impl Tokens<'_> {
    /// Mints a short-lived access token for a signed-in browser session (the first-party
    /// hybrid): the token dies with the session.
    ///
    /// # Errors
    /// `invalid_target` for an unknown resource or one that no first-party client may use,
    /// `invalid_scope` for scopes the API does not offer.
    pub async fn session_token(
        &self,
        user: &User,
        session: &Session,
        resource: &str,
        scope: Option<&str>,
        ttl_secs: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let res = self
            .ctx
            .stores
            .clients
            .resource(resource)
            .await?
            .ok_or_else(|| OAuthError::InvalidTarget("unknown resource".into()))?;
        // The browser session stands for the first-party applications: it may mint tokens only
        // for an API that some first-party client may use.
        let first_party_api = self
            .ctx
            .stores
            .clients
            .list_clients()
            .await?
            .iter()
            .any(|c| c.first_party && c.may_target(&res.id));
        if !first_party_api {
            return Err(OAuthError::InvalidTarget(
                "no first-party application may request tokens for this resource".into(),
            ));
        }
        let offered = Scopes::from_list(res.scopes.iter().map(String::as_str));
        let granted = match scope {
            Some(s) => {
                let asked = Scopes::parse(s)
                    .ok_or_else(|| OAuthError::InvalidScope("malformed scope".into()))?;
                if !asked.is_subset(&offered) {
                    return Err(OAuthError::InvalidScope(
                        "scope not offered by this API".into(),
                    ));
                }
                asked
            }
            None => offered,
        };
        let pseudo = Client {
            id: "authx-session".into(),
            name: "authx session".into(),
            secret_hash: None,
            token_endpoint_auth_method: crate::oauth::client::TokenEndpointAuthMethod::None,
            jwks: None,
            jwks_uri: None,
            dpop_bound_access_tokens: false,
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            backchannel_logout_uri: None,
            grant_types: vec![],
            scopes: vec![],
            resources: vec![res.id.clone()],
            first_party: true,
            require_pushed_authorization_requests: false,
            require_acr: None,
            id_token_alg: SigningAlg::Rs256,
            access_token_ttl_secs: ttl_secs,
            refresh_token_ttl_secs: 0,
            refresh_idle_secs: 0,
            created_at: Timestamp(0),
        };
        let access = self.ctx.issuer.issue_access_token(
            &pseudo,
            &user.id.0,
            &res.id,
            &granted,
            Some(&session.id),
            None,
            Some(session.created_at),
            Some(&session.auth_method),
            None,
        )?;
        Ok(TokenResponse::access_only(access, &granted))
    }
}
