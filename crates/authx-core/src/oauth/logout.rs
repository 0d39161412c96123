//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): where the browser may be sent
//! after signing out, and whether the request proves that it comes from the application.
//!
//! # Security
//! - The browser is sent back only to a post-logout URI registered for the client named by
//!   `client_id` (or the `aud` of a valid `id_token_hint`); anything else is refused.
//! - Only an ID token this server issued for the very session, to the application asking,
//!   ends the session without the user's confirmation (RP-Initiated Logout §2).

use super::OAuthError;
use super::jwt::IdTokenClaims;
use super::service::OAuthService;
use crate::session::SessionId;
use crate::user::UserId;

/// The parameters of a logout request.
#[derive(Debug, Default, Clone)]
pub struct LogoutParams {
    /// `id_token_hint`.
    pub id_token_hint: Option<String>,
    /// `post_logout_redirect_uri`.
    pub post_logout_redirect_uri: Option<String>,
    /// `client_id`.
    pub client_id: Option<String>,
    /// `state`.
    pub state: Option<String>,
}

/// What the logout endpoint does with a request, for the web layer to render. `target` is
/// where the browser goes afterwards (a registered post-logout URI with `state`), if anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogoutDecision {
    /// No session to end: just go.
    Leave {
        /// Where to go.
        target: Option<String>,
    },
    /// End the session, then go.
    EndSession {
        /// Where to go.
        target: Option<String>,
    },
    /// Ask the signed-in user to confirm.
    Confirm {
        /// Where to go once confirmed.
        target: Option<String>,
    },
    /// The address to return to is not registered for the application.
    Refused,
}

impl OAuthService {
    /// Decides a logout request for the browser's session `signed_in` (its user and session).
    /// `confirmed` is the user's confirmation (the form the confirmation page posts), which
    /// ends the session whatever the request proves.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn decide_logout(
        &self,
        p: &LogoutParams,
        signed_in: Option<(&UserId, &SessionId)>,
        confirmed: bool,
    ) -> Result<LogoutDecision, OAuthError> {
        let hint = p
            .id_token_hint
            .as_deref()
            .and_then(|h| self.id_token_hint(h));
        let Some(target) = self.logout_target(p, hint.as_ref()).await? else {
            return Ok(LogoutDecision::Refused);
        };
        Ok(match signed_in {
            _ if confirmed => LogoutDecision::EndSession { target },
            None => LogoutDecision::Leave { target },
            Some((user, session))
                if hint.as_ref().is_some_and(|h| {
                    hint_is_for_session(h, user, session, p.client_id.as_deref())
                }) =>
            {
                LogoutDecision::EndSession { target }
            }
            Some(_) => LogoutDecision::Confirm { target },
        })
    }

    /// Where to send the browser after logout (`Some(None)`: nowhere), or `None` when the
    /// address asked for is not registered for the client.
    async fn logout_target(
        &self,
        p: &LogoutParams,
        hint: Option<&IdTokenClaims>,
    ) -> Result<Option<Option<String>>, OAuthError> {
        let Some(uri) = p.post_logout_redirect_uri.as_deref() else {
            return Ok(Some(None));
        };
        let client_id = p.client_id.as_deref().or(hint.map(|h| h.aud.as_str()));
        let client = match client_id {
            Some(id) => self.ctx.stores.clients.client(id).await?,
            None => None,
        };
        if !client.is_some_and(|c| c.post_logout_redirect_uris.iter().any(|r| r == uri)) {
            return Ok(None);
        }
        let mut target = uri.to_owned();
        if let Some(st) = p.state.as_deref() {
            target.push(if uri.contains('?') { '&' } else { '?' });
            target.push_str("state=");
            target.extend(form_urlencoded::byte_serialize(st.as_bytes()));
        }
        Ok(Some(Some(target)))
    }
}

/// Whether a verified `id_token_hint` was issued for `session` of `user` (its `sid` and `sub`)
/// and, when the request names a client, to that client.
fn hint_is_for_session(
    hint: &IdTokenClaims,
    user: &UserId,
    session: &SessionId,
    client_id: Option<&str>,
) -> bool {
    hint.sid.as_deref() == Some(session.0.as_str())
        && hint.sub == user.0
        && client_id.is_none_or(|c| c == hint.aud)
}
