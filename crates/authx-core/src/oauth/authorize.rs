//! The authorization endpoint's rules (OIDC Core §3.1.2): validating a request, consent per
//! client and API, and issuing the code. [`OAuthService::decide`] and
//! [`OAuthService::decide_consent`] run the endpoint and the consent form's answer and return an
//! [`AuthorizeDecision`] that the web layer only renders.
//!
//! # Security
//! - Until the client and redirect URI are validated, errors are pages, never redirects.
//! - `prompt=none` never shows a page: it redirects `login_required` or `consent_required`.
//! - `prompt=login` and `max_age` send the user to sign in again, and the sign-in they come
//!   back with must be newer than the request (`login_after`), so a stale session cannot
//!   satisfy them by going round the sign-in page.

use super::OAuthError;
use super::client::{Client, GrantType};
use super::clients::Clients;
use super::dpop::Jkt;
use super::grant::{AuthCode, Consent};
use super::pkce;
use super::scope::Scopes;
use super::service::OAuthService;
use super::types::AuthorizationCode;
use crate::amr::{ACR_VALUES, acr_of, acr_satisfies};
use crate::clock::Timestamp;
use crate::secret::TokenHash;
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
    /// The pushed request (RFC 9126) it came from, taken when the authorization ends.
    pub pushed: Option<TokenHash>,
    /// The authentication context class asked for: the first of `acr_values` that authx
    /// knows (OIDC Core §3.1.2.1 lists them in order of preference); unknown ones are ignored.
    pub acr: Option<&'static str>,
    /// The DPoP key the code is bound to (`dpop_jkt`, RFC 9449 §10), when DPoP is on.
    pub dpop_jkt: Option<Jkt>,
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
    /// `acr_values`.
    pub acr_values: Option<String>,
    /// `dpop_jkt` (RFC 9449 §10): the thumbprint of the DPoP key the code is to be bound to.
    pub dpop_jkt: Option<String>,
    /// `response_mode`.
    pub response_mode: Option<String>,
    /// `request` was sent (request objects are not supported).
    pub has_request_object: bool,
    /// `request_uri`: a pushed request's reference (RFC 9126).
    pub request_uri: Option<String>,
    /// Set by the provider when the parameters are those of a pushed request: its hash.
    pub pushed: Option<TokenHash>,
    /// `login_after`: set by this server on the way to a forced sign-in, the time (seconds
    /// since the epoch) that the sign-in must not be older than.
    pub login_after: Option<String>,
    /// Names of parameters that were repeated.
    pub repeated: Vec<String>,
}

/// The parameters a pushed request keeps, by name (the client's authentication and the
/// provider's own `login_after` are not among them).
const KEPT: [&str; 13] = [
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "resource",
    "acr_values",
    "dpop_jkt",
];

impl AuthorizeParams {
    /// Reads a query string or form body (RFC 6749 §3.1): empty values count as absent, and a
    /// name given twice is recorded in `repeated` (the last value is kept).
    #[must_use]
    pub fn from_query(raw: &str) -> Self {
        Self::from_pairs(form_urlencoded::parse(raw.as_bytes()))
    }

    /// As [`AuthorizeParams::from_query`], from decoded pairs; names it does not know are
    /// skipped.
    #[must_use]
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut p = Self::default();
        for (k, v) in pairs {
            let (k, v) = (k.as_ref(), v.as_ref());
            if v.is_empty() {
                continue;
            }
            let slot = match k {
                "client_id" => &mut p.client_id,
                "redirect_uri" => &mut p.redirect_uri,
                "response_type" => &mut p.response_type,
                "scope" => &mut p.scope,
                "state" => &mut p.state,
                "nonce" => &mut p.nonce,
                "code_challenge" => &mut p.code_challenge,
                "code_challenge_method" => &mut p.code_challenge_method,
                "prompt" => &mut p.prompt,
                "max_age" => &mut p.max_age,
                "resource" => &mut p.resource,
                "acr_values" => &mut p.acr_values,
                "dpop_jkt" => &mut p.dpop_jkt,
                "response_mode" => &mut p.response_mode,
                "request_uri" => &mut p.request_uri,
                "login_after" => &mut p.login_after,
                "request" => {
                    p.has_request_object = true;
                    continue;
                }
                _ => continue,
            };
            if slot.replace(v.to_owned()).is_some() {
                p.repeated.push(k.to_owned());
            }
        }
        p
    }

    /// The parameters a pushed request keeps, form-encoded; [`AuthorizeParams::from_query`]
    /// reads them back.
    #[must_use]
    pub fn to_query(&self) -> String {
        let values = [
            &self.client_id,
            &self.redirect_uri,
            &self.response_type,
            &self.scope,
            &self.state,
            &self.nonce,
            &self.code_challenge,
            &self.code_challenge_method,
            &self.prompt,
            &self.max_age,
            &self.resource,
            &self.acr_values,
            &self.dpop_jkt,
        ];
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (name, value) in KEPT.iter().zip(values) {
            if let Some(v) = value {
                ser.append_pair(name, v);
            }
        }
        ser.finish()
    }
}

/// What the authorization endpoint makes of a request's `request_uri`.
pub(super) enum Expansion {
    /// The parameters to run the request with: the pushed ones, or the query's when nothing
    /// was pushed.
    Params(Box<AuthorizeParams>),
    /// The `request_uri` is unknown, expired, used or another client's: an error page.
    Refused(&'static str),
}

/// The signed-in browser session an authorization request arrives with.
#[derive(Debug, Clone, Copy)]
pub struct SignedIn<'a> {
    /// The user.
    pub user: &'a UserId,
    /// The session.
    pub session: &'a SessionId,
    /// When the user signed in.
    pub auth_time: Timestamp,
    /// How the user signed in (the session's `auth_method`).
    pub auth_methods: &'a str,
    /// Whether the user has a second factor to step up with.
    pub can_step_up: bool,
}

/// What the authorization endpoint does with a request, for the web layer to render.
#[derive(Debug)]
pub enum AuthorizeDecision {
    /// The user must sign in (again) first, then resume `request`: the authorization request's
    /// query, with `login_after` when the sign-in must be newer than now.
    Login {
        /// The query string to resume the authorization request with.
        request: String,
    },
    /// The client asked for a stronger authentication (`acr_values`) than the session's, and
    /// the user has a second factor: prove it, then resume `request`.
    StepUp {
        /// The query string to resume the authorization request with.
        request: String,
    },
    /// Ask the user's consent to the request.
    Consent(Box<AuthorizeRequest>),
    /// Send the browser back to the client: its redirect URI with the code or the error,
    /// `state` and `iss` (RFC 6749 §4.1.2, RFC 9207).
    Redirect(String),
    /// The request cannot be trusted or completed: an error page with this message, never a
    /// redirect.
    Refused(String),
}

/// The message of a request with a repeated parameter that is answered with a page.
const REPEATED: &str = "A parameter is repeated.";

/// The message of a pushed request that another tab or request finished first.
const USED: &str = "This sign-in request was already used. Start again from the application.";

impl OAuthService {
    /// The authorization endpoint (OIDC Core §3.1.2): validates the request (`query` is its raw
    /// query string) and decides, for the browser's session `signed_in`, whether the user must
    /// sign in, consent, or go back to the client with a code or an error.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn decide(
        &self,
        p: &AuthorizeParams,
        query: &str,
        signed_in: Option<SignedIn<'_>>,
    ) -> Result<AuthorizeDecision, OAuthError> {
        if p.repeated
            .iter()
            .any(|k| k == "client_id" || k == "redirect_uri" || k == "request_uri")
        {
            return Ok(AuthorizeDecision::Refused(REPEATED.into()));
        }
        let p = match self.expand(p).await? {
            Expansion::Params(p) => *p,
            Expansion::Refused(msg) => return Ok(AuthorizeDecision::Refused(msg.into())),
        };
        let req = match self.validate_authorize(&p).await {
            Ok(r) => r,
            Err(e) => return self.refusal(e),
        };
        if let Some(k) = p.repeated.first() {
            let description = format!("parameter {k} is repeated");
            return Ok(self.redirect_error(&req, "invalid_request", Some(&description)));
        }
        if let Some(refused) = self.unpushed(&req) {
            return Ok(refused);
        }
        let now = self.ctx.clock.now();
        let login_after: Option<i64> = p.login_after.as_deref().and_then(|v| v.parse().ok());
        let auth = match signed_in {
            Some(a) if !needs_login(&req, a.auth_time, login_after, now) => a,
            _ if req.prompt.none => {
                return Ok(self.redirect_error(&req, "login_required", None));
            }
            _ => {
                return Ok(AuthorizeDecision::Login {
                    request: resume_query(query, &req, now),
                });
            }
        };
        let granted = acr_of(auth.auth_methods);
        let required = req.client.require_acr.as_deref();
        let wanted = match (req.acr, required) {
            (Some(a), Some(r)) if acr_satisfies(a, r) => Some(a),
            (_, Some(r)) => Some(r),
            (a, None) => a,
        };
        if wanted.is_some_and(|w| !acr_satisfies(granted, w)) {
            if auth.can_step_up {
                if req.prompt.none {
                    return Ok(self.redirect_error(&req, "interaction_required", None));
                }
                return Ok(AuthorizeDecision::StepUp {
                    request: resume_query(query, &req, now),
                });
            }
            // `acr_values` alone is a wish: the request goes on and the granted `acr` says
            // what happened. A client's own requirement is not: a user who cannot meet it is
            // refused.
            if required.is_some_and(|r| !acr_satisfies(granted, r)) {
                return Ok(self.redirect_error(
                    &req,
                    "access_denied",
                    Some(
                        "this application requires two-step verification: add an \
                         authenticator app to your account first",
                    ),
                ));
            }
        }
        if self.has_consent(auth.user, &req).await? && !req.prompt.consent {
            return self.code_redirect(&req, auth).await;
        }
        if req.prompt.none {
            return Ok(self.redirect_error(&req, "consent_required", None));
        }
        Ok(AuthorizeDecision::Consent(Box::new(req)))
    }

    /// The consent form's answer: `p` is the authorization request posted back with it
    /// (validated again: nothing in the form is trusted). Allowing records the consent and
    /// redirects with a code; anything else redirects `access_denied`.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn decide_consent(
        &self,
        p: &AuthorizeParams,
        auth: SignedIn<'_>,
        allow: bool,
    ) -> Result<AuthorizeDecision, OAuthError> {
        if !p.repeated.is_empty() {
            return Ok(AuthorizeDecision::Refused(REPEATED.into()));
        }
        let p = match self.expand(p).await? {
            Expansion::Params(p) => *p,
            Expansion::Refused(msg) => return Ok(AuthorizeDecision::Refused(msg.into())),
        };
        let req = match self.validate_authorize(&p).await {
            Ok(r) => r,
            Err(e) => return self.refusal(e),
        };
        if let Some(refused) = self.unpushed(&req) {
            return Ok(refused);
        }
        if allow {
            self.record_consent(auth.user, &req).await?;
            return self.code_redirect(&req, auth).await;
        }
        self.ctx.audit.record(
            crate::audit::AuditEvent::failure("consent_denied")
                .client(&req.client.id)
                .user(auth.user),
        );
        if let Some(hash) = &req.pushed {
            if !self.finish_pushed(hash).await? {
                return Ok(AuthorizeDecision::Refused(USED.into()));
            }
        }
        Ok(self.redirect_error(&req, "access_denied", None))
    }

    /// The refusal of a request that was not pushed, where the deployment or the client
    /// requires pushed requests.
    fn unpushed(&self, req: &AuthorizeRequest) -> Option<AuthorizeDecision> {
        let required = self.config().require_pushed_authorization_requests
            || req.client.require_pushed_authorization_requests;
        (required && req.pushed.is_none()).then(|| {
            self.redirect_error(
                req,
                "invalid_request",
                Some("this client must push its authorization requests (RFC 9126)"),
            )
        })
    }

    /// A failed validation as a decision: a page for an untrusted client or redirect URI
    /// (audited), a redirect for the rest.
    fn refusal(&self, e: AuthorizeError) -> Result<AuthorizeDecision, OAuthError> {
        match e {
            AuthorizeError::Page(msg) => {
                self.ctx.audit.record(
                    crate::audit::AuditEvent::failure("redirect_rejected").with("reason", &msg),
                );
                Ok(AuthorizeDecision::Refused(msg))
            }
            AuthorizeError::Redirect {
                error,
                description,
                redirect_uri,
                state,
            } => Ok(AuthorizeDecision::Redirect(self.client_redirect(
                &redirect_uri,
                &[("error", error), ("error_description", &description)],
                state.as_deref(),
            ))),
            AuthorizeError::Store(e) => Err(OAuthError::Store(e)),
        }
    }

    /// Issues a code for the request and sends it to the client.
    async fn code_redirect(
        &self,
        req: &AuthorizeRequest,
        auth: SignedIn<'_>,
    ) -> Result<AuthorizeDecision, OAuthError> {
        if let Some(hash) = &req.pushed {
            if !self.finish_pushed(hash).await? {
                return Ok(AuthorizeDecision::Refused(USED.into()));
            }
        }
        let code = self.issue_code(req, auth).await?;
        Ok(AuthorizeDecision::Redirect(self.client_redirect(
            &req.redirect_uri,
            &[("code", &code)],
            req.state.as_deref(),
        )))
    }

    /// An error code (and description) sent to the client of a validated request.
    fn redirect_error(
        &self,
        req: &AuthorizeRequest,
        error: &str,
        description: Option<&str>,
    ) -> AuthorizeDecision {
        let mut pairs = vec![("error", error)];
        if let Some(d) = description {
            pairs.push(("error_description", d));
        }
        AuthorizeDecision::Redirect(self.client_redirect(
            &req.redirect_uri,
            &pairs,
            req.state.as_deref(),
        ))
    }

    /// `redirect_uri` with response parameters, `state` and `iss` appended (RFC 6749 §4.1.2,
    /// RFC 9207).
    fn client_redirect(
        &self,
        redirect_uri: &str,
        pairs: &[(&str, &str)],
        state: Option<&str>,
    ) -> String {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            ser.append_pair(k, v);
        }
        if let Some(s) = state {
            ser.append_pair("state", s);
        }
        ser.append_pair("iss", &self.config().issuer);
        let sep = if redirect_uri.contains('?') { '&' } else { '?' };
        format!("{redirect_uri}{sep}{}", ser.finish())
    }

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
            .ctx
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
        // RFC 9449 §10; ignored, as any unknown parameter, when DPoP is off.
        let dpop_jkt = match p.dpop_jkt.as_deref().filter(|_| self.config().dpop) {
            None => None,
            Some(s) => Some(Jkt::parse(s).ok_or_else(|| {
                fail(
                    "invalid_request",
                    "dpop_jkt must be a SHA-256 JWK thumbprint",
                )
            })?),
        };
        let requested = p.scope.as_deref().unwrap_or("");
        let scopes =
            Scopes::parse(requested).ok_or_else(|| fail("invalid_scope", "malformed scope"))?;
        // Scopes the client may not have are refused first; then the API is resolved once, here,
        // and stored with the code, so no refresh has to infer it again.
        if let Err(e) = Clients::grant_scope(&client, Some(&scopes.to_param()), None) {
            return Err(fail("invalid_scope", &e.to_string()));
        }
        let res = match self
            .ctx
            .clients
            .audience(&client, p.resource.as_deref(), &scopes)
            .await
        {
            Ok((_, r)) => r,
            Err(OAuthError::InvalidTarget(m)) => return Err(fail("invalid_target", &m)),
            Err(OAuthError::Store(e)) => return Err(AuthorizeError::Store(e)),
            Err(e) => return Err(fail("server_error", &e.to_string())),
        };
        let scope = match Clients::grant_scope(&client, Some(&scopes.to_param()), res.as_ref()) {
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
            pushed: p.pushed,
            acr: p.acr_values.as_deref().and_then(|v| {
                v.split(' ')
                    .find_map(|a| ACR_VALUES.iter().copied().find(|known| *known == a))
            }),
            dpop_jkt,
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
                .ctx
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
            .ctx
            .stores
            .grants
            .consent(user, &req.client.id, req.resource.as_deref())
            .await?;
        let mut scope = req.scope.clone();
        if let Some(prev) = earlier.and_then(|c| Scopes::parse(&c.scope)) {
            scope = Scopes::from_list(scope.iter().chain(prev.iter()).collect::<Vec<_>>());
        }
        self.ctx
            .stores
            .grants
            .put_consent(&Consent {
                user_id: user.clone(),
                client_id: req.client.id.clone(),
                resource: req.resource.clone(),
                scope: scope.to_param(),
                granted_at: self.ctx.clock.now(),
            })
            .await?;
        self.ctx.audit.record(
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
        auth: SignedIn<'_>,
    ) -> Result<String, OAuthError> {
        let code = AuthorizationCode::generate();
        let now = self.ctx.clock.now();
        self.ctx
            .stores
            .grants
            .put_code(&AuthCode {
                code_hash: code.hash(),
                client_id: req.client.id.clone(),
                user_id: auth.user.clone(),
                session_id: auth.session.clone(),
                redirect_uri: req.redirect_uri.clone(),
                code_challenge: req.code_challenge.clone(),
                nonce: req.nonce.clone(),
                scope: req.scope.to_param(),
                resource: req.resource.clone(),
                auth_time: auth.auth_time,
                auth_methods: auth.auth_methods.to_owned(),
                family_id: None,
                dpop_jkt: req.dpop_jkt.as_ref().map(|j| j.as_str().to_owned()),
                expires_at: now.plus(self.config().code_ttl_secs),
            })
            .await?;
        Ok(code.expose().to_owned())
    }
}

/// Whether a session that signed in at `auth_time` must sign in again for `req`: older than
/// `max_age`, or `prompt=login` or a forced sign-in (`login_after`) it does not satisfy yet.
fn needs_login(
    req: &AuthorizeRequest,
    auth_time: Timestamp,
    login_after: Option<i64>,
    now: Timestamp,
) -> bool {
    let too_old = req.max_age.is_some_and(|m| now.since(auth_time) > m);
    let forced = req.prompt.login && login_after.is_none_or(|t| auth_time.secs() < t);
    let stale = login_after.is_some_and(|t| auth_time.secs() < t);
    too_old || forced || stale
}

/// The request's query to come back with after sign-in; a forced re-authentication must be
/// newer than `now`.
fn resume_query(query: &str, req: &AuthorizeRequest, now: Timestamp) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k != "login_after" {
            ser.append_pair(&k, &v);
        }
    }
    if req.prompt.login || req.max_age.is_some() {
        ser.append_pair("login_after", &now.secs().to_string());
    }
    ser.finish()
}
