//! The authorization endpoint's rules (OIDC Core §3.1.2): validating a request, consent per
//! client and API, and issuing the code.

use super::OAuthError;
use super::client::{Client, GrantType};
use super::grant::{AuthCode, Consent};
use super::pkce;
use super::scope::Scopes;
use super::service::OAuthService;
use super::types::AuthorizationCode;
use crate::clock::Timestamp;
use crate::session::SessionId;
use crate::user::UserId;

/// A validated authorization request (OIDC Core §3.1.2.1).
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    /// The client.
    pub client: Client,
    /// The redirect URI (validated).
    pub redirect_uri: String,
    /// `state`, echoed byte for byte.
    pub state: Option<String>,
    /// Requested scopes (validated against the client).
    pub scope: Scopes,
    /// `nonce`.
    pub nonce: Option<String>,
    /// The S256 challenge.
    pub code_challenge: String,
    /// `prompt`.
    pub prompt: Prompt,
    /// `max_age` in seconds.
    pub max_age: Option<i64>,
    /// The resource requested.
    pub resource: Option<String>,
}

/// `prompt` values that matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prompt {
    /// `none`: never show UI.
    pub none: bool,
    /// `login`: force re-authentication.
    pub login: bool,
    /// `consent`: ask again.
    pub consent: bool,
}

/// Why an authorization request failed.
#[derive(Debug)]
pub enum AuthorizeError {
    /// The client or redirect URI cannot be trusted: show an error page, never redirect.
    Page(String),
    /// Redirect the error to the (validated) client.
    Redirect {
        /// RFC 6749 §4.1.2.1 code.
        error: &'static str,
        /// Description.
        description: String,
        /// Where.
        redirect_uri: String,
        /// `state`.
        state: Option<String>,
    },
    /// Storage failed.
    Store(crate::StoreError),
}

/// The raw parameters of an authorization request.
#[derive(Debug, Default, Clone)]
pub struct AuthorizeParams {
    /// `client_id`.
    pub client_id: Option<String>,
    /// `redirect_uri`.
    pub redirect_uri: Option<String>,
    /// `response_type`.
    pub response_type: Option<String>,
    /// `scope`.
    pub scope: Option<String>,
    /// `state`.
    pub state: Option<String>,
    /// `nonce`.
    pub nonce: Option<String>,
    /// `code_challenge`.
    pub code_challenge: Option<String>,
    /// `code_challenge_method`.
    pub code_challenge_method: Option<String>,
    /// `prompt`.
    pub prompt: Option<String>,
    /// `max_age`.
    pub max_age: Option<String>,
    /// `resource`.
    pub resource: Option<String>,
    /// `response_mode`.
    pub response_mode: Option<String>,
    /// `request` or `request_uri` were sent (unsupported).
    pub has_request_object: bool,
}

impl OAuthService {
    /// Validates an authorization request. The client and redirect URI are checked first; until
    /// both are trusted, every error is a page, never a redirect (RFC 6749 §4.1.2.1).
    ///
    /// # Errors
    /// [`AuthorizeError`].
    pub async fn validate_authorize(
        &self,
        p: &AuthorizeParams,
    ) -> Result<AuthorizeRequest, AuthorizeError> {
        let client_id = p
            .client_id
            .as_deref()
            .filter(|s| !s.is_empty() && s.len() <= 255)
            .ok_or_else(|| AuthorizeError::Page("The request names no valid client.".into()))?;
        let client = self
            .stores
            .clients
            .client(client_id)
            .await
            .map_err(AuthorizeError::Store)?
            .ok_or_else(|| {
                AuthorizeError::Page("The application is not registered here.".into())
            })?;
        let redirect_uri = p
            .redirect_uri
            .clone()
            .filter(|r| client.redirect_uri_matches(r))
            .ok_or_else(|| {
                AuthorizeError::Page(
                    "The redirect address does not match the application's registration.".into(),
                )
            })?;
        let state = p.state.clone();
        let fail = |error: &'static str, description: &str| AuthorizeError::Redirect {
            error,
            description: description.to_owned(),
            redirect_uri: redirect_uri.clone(),
            state: state.clone(),
        };
        if state.as_ref().is_some_and(|s| s.len() > 512)
            || p.nonce.as_ref().is_some_and(|n| n.len() > 512)
        {
            return Err(fail(
                "invalid_request",
                "state and nonce are limited to 512 bytes",
            ));
        }
        if p.has_request_object {
            return Err(fail(
                "request_not_supported",
                "request objects are not supported",
            ));
        }
        match p.response_type.as_deref() {
            Some("code") => {}
            None => return Err(fail("invalid_request", "response_type is required")),
            Some(_) => {
                return Err(fail(
                    "unsupported_response_type",
                    "only response_type=code is supported",
                ));
            }
        }
        if p.response_mode.as_deref().is_some_and(|m| m != "query") {
            return Err(fail(
                "invalid_request",
                "only response_mode=query is supported",
            ));
        }
        if !client.allows(GrantType::AuthorizationCode) {
            return Err(fail(
                "unauthorized_client",
                "the client may not use the authorization code grant",
            ));
        }
        let Some(challenge) = p.code_challenge.as_deref() else {
            return Err(fail(
                "invalid_request",
                "PKCE is required: send code_challenge with code_challenge_method=S256",
            ));
        };
        if p.code_challenge_method.as_deref() != Some("S256") {
            return Err(fail(
                "invalid_request",
                "code_challenge_method must be S256",
            ));
        }
        if !pkce::is_valid_challenge(challenge) {
            return Err(fail(
                "invalid_request",
                "code_challenge must be 43 base64url characters",
            ));
        }
        let prompt = match p.prompt.as_deref() {
            None => Prompt::default(),
            Some(s) => {
                let mut pr = Prompt::default();
                for v in s.split(' ').filter(|v| !v.is_empty()) {
                    match v {
                        "none" => pr.none = true,
                        "login" => pr.login = true,
                        "consent" => pr.consent = true,
                        _ => return Err(fail("invalid_request", "unsupported prompt value")),
                    }
                }
                if pr.none && (pr.login || pr.consent) {
                    return Err(fail("invalid_request", "prompt=none cannot be combined"));
                }
                pr
            }
        };
        let max_age = match p.max_age.as_deref() {
            None => None,
            Some(s) => Some(s.parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(|| {
                fail("invalid_request", "max_age must be a non-negative integer")
            })?),
        };
        let requested = p.scope.as_deref().unwrap_or("");
        let scopes =
            Scopes::parse(requested).ok_or_else(|| fail("invalid_scope", "malformed scope"))?;
        // Scopes the client may not have are refused first; then the API is resolved once, here,
        // and stored with the code, so no refresh has to infer it again.
        if let Err(e) = Self::grant_scope(&client, Some(&scopes.to_param()), None) {
            return Err(fail("invalid_scope", &e.to_string()));
        }
        let res = match self.audience(&client, p.resource.as_deref(), &scopes).await {
            Ok((_, r)) => r,
            Err(OAuthError::InvalidTarget(m)) => return Err(fail("invalid_target", &m)),
            Err(OAuthError::Store(e)) => return Err(AuthorizeError::Store(e)),
            Err(e) => return Err(fail("server_error", &e.to_string())),
        };
        let scope = match Self::grant_scope(&client, Some(&scopes.to_param()), res.as_ref()) {
            Ok(s) => s,
            Err(e) => return Err(fail("invalid_scope", &e.to_string())),
        };
        Ok(AuthorizeRequest {
            client,
            redirect_uri,
            state,
            scope,
            nonce: p.nonce.clone(),
            code_challenge: challenge.to_owned(),
            prompt,
            max_age,
            resource: res.map(|r| r.id),
        })
    }

    /// Whether the user has already consented to at least these scopes for this client and
    /// this API.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn has_consent(
        &self,
        user: &UserId,
        req: &AuthorizeRequest,
    ) -> Result<bool, OAuthError> {
        if req.client.first_party {
            return Ok(true);
        }
        // Remembered per (client, API): a consent for one API never covers another.
        Ok(
            match self
                .stores
                .grants
                .consent(user, &req.client.id, req.resource.as_deref())
                .await?
            {
                Some(c) => {
                    Scopes::parse(&c.scope).is_some_and(|granted| req.scope.is_subset(&granted))
                }
                None => false,
            },
        )
    }

    /// Records the user's consent to the request's scopes for its API (merged with earlier
    /// consents for the same client and API).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn record_consent(
        &self,
        user: &UserId,
        req: &AuthorizeRequest,
    ) -> Result<(), OAuthError> {
        let earlier = self
            .stores
            .grants
            .consent(user, &req.client.id, req.resource.as_deref())
            .await?;
        let mut scope = req.scope.clone();
        if let Some(prev) = earlier.and_then(|c| Scopes::parse(&c.scope)) {
            scope = Scopes::from_list(scope.iter().chain(prev.iter()).collect::<Vec<_>>());
        }
        self.stores
            .grants
            .put_consent(&Consent {
                user_id: user.clone(),
                client_id: req.client.id.clone(),
                resource: req.resource.clone(),
                scope: scope.to_param(),
                granted_at: self.clock.now(),
            })
            .await?;
        self.audit.record(
            crate::audit::AuditEvent::success("consent_granted")
                .user(user)
                .client(&req.client.id)
                .with("resource", req.resource.as_deref().unwrap_or("-"))
                .with("scope", scope.to_param()),
        );
        Ok(())
    }

    /// Issues an authorization code for a validated request and a signed-in session.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn issue_code(
        &self,
        req: &AuthorizeRequest,
        user: &UserId,
        session: &SessionId,
        auth_time: Timestamp,
    ) -> Result<String, OAuthError> {
        let code = AuthorizationCode::generate();
        let now = self.clock.now();
        self.stores
            .grants
            .put_code(&AuthCode {
                code_hash: code.hash(),
                client_id: req.client.id.clone(),
                user_id: user.clone(),
                session_id: session.clone(),
                redirect_uri: req.redirect_uri.clone(),
                code_challenge: req.code_challenge.clone(),
                nonce: req.nonce.clone(),
                scope: req.scope.to_param(),
                resource: req.resource.clone(),
                auth_time,
                family_id: None,
                expires_at: now.plus(self.config().code_ttl_secs),
            })
            .await?;
        Ok(code.expose().to_owned())
    }
}
