//! Pushed authorization requests (RFC 9126): a client sends its authorization request straight
//! to the provider, authenticated, and sends the browser to the authorization endpoint with only
//! `client_id` and the `request_uri` it got back.
//!
//! # Security
//! - A pushed request is validated exactly as the authorization endpoint validates one, for the
//!   client that authenticated at the PAR endpoint; a `client_id` in the body naming another
//!   client, a `request_uri` inside a pushed request and a request object are refused.
//! - The `request_uri` carries 256 random bits; only their SHA-256 is stored. It must reach the
//!   authorization endpoint within [`PUSHED_REQUEST_TTL_SECS`]; once it has, the browser may
//!   sign in and consent until [`PUSHED_INTERACTION_SECS`] after the push. The code issued for
//!   it, or the user's refusal at the consent page, takes it in one atomic step, so it serves
//!   one authorization.
//! - At the authorization endpoint only the pushed parameters count (RFC 9126 §4): the rest of
//!   the query is ignored, and the `client_id` beside the `request_uri` must be its client's.
//! - A deployment that requires pushed requests (`require_pushed_authorization_requests`)
//!   answers `invalid_request` to any request that was not pushed.

use serde_json::{Value, json};

use super::OAuthError;
use super::authorize::{AuthorizeError, AuthorizeParams, Expansion};
use super::client::Client;
use super::dpop::Jkt;
use super::service::OAuthService;
use super::store::PushedRequest;
use crate::audit::AuditEvent;
use crate::secret::{TokenHash, opaque_secret};

/// How a `request_uri` of this provider starts (RFC 9126 §2.2).
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

/// Seconds a pushed request waits for the browser at the authorization endpoint (`expires_in`).
pub const PUSHED_REQUEST_TTL_SECS: i64 = 60;

/// Seconds after the push within which a browser that reached the authorization endpoint in
/// time may finish signing in and consenting.
pub const PUSHED_INTERACTION_SECS: i64 = 600;

opaque_secret!(
    /// The random part of a `request_uri`.
    RequestUriSecret
);

/// The PAR endpoint's answer (RFC 9126 §2.2).
#[derive(Debug)]
pub struct Pushed {
    /// `request_uri`.
    pub request_uri: String,
    /// `expires_in`.
    pub expires_in: i64,
}

impl Pushed {
    /// The JSON body of the `201 Created` answer.
    #[must_use]
    pub fn to_json(&self) -> Value {
        json!({"request_uri": self.request_uri, "expires_in": self.expires_in})
    }
}

/// The page shown for a `request_uri` that cannot be used.
const UNUSABLE: &str =
    "This sign-in request has expired or was already used. Start again from the application.";

impl OAuthService {
    /// The PAR endpoint (RFC 9126 §2): validates `p` as the authorization endpoint would for
    /// the authenticated `client`, stores it and returns its `request_uri`. `dpop` is the key
    /// of the request's verified DPoP proof: the code is then bound to it, as with `dpop_jkt`
    /// (RFC 9449 §10.1), which must name the same key when both are sent.
    ///
    /// # Errors
    /// [`OAuthError::Rejected`] with the code the authorization endpoint would have sent;
    /// storage failures.
    pub async fn push_authorization_request(
        &self,
        client: &Client,
        mut p: AuthorizeParams,
        dpop: Option<&Jkt>,
    ) -> Result<Pushed, OAuthError> {
        if let Some(k) = p.repeated.first() {
            return Err(rejected(
                "invalid_request",
                &format!("parameter {k} is repeated"),
            ));
        }
        if p.request_uri.is_some() {
            return Err(rejected("invalid_request", "request_uri may not be pushed"));
        }
        if p.client_id.as_deref().is_some_and(|id| id != client.id) {
            return Err(rejected(
                "invalid_request",
                "client_id differs from the authenticated client",
            ));
        }
        p.client_id = Some(client.id.clone());
        p.login_after = None;
        if let Some(jkt) = dpop.filter(|_| self.config().dpop) {
            if p.dpop_jkt
                .as_deref()
                .is_some_and(|asked| !jkt.matches(asked))
            {
                return Err(rejected(
                    "invalid_dpop_proof",
                    "dpop_jkt differs from the DPoP proof's key",
                ));
            }
            p.dpop_jkt = Some(jkt.as_str().to_owned());
        }
        match self.validate_authorize(&p).await {
            Ok(_) => {}
            Err(AuthorizeError::Page(msg)) => return Err(rejected("invalid_request", &msg)),
            Err(AuthorizeError::Redirect {
                error, description, ..
            }) => return Err(rejected(error, &description)),
            Err(AuthorizeError::Store(e)) => return Err(OAuthError::Store(e)),
        }
        let now = self.ctx.clock.now();
        let secret = RequestUriSecret::generate();
        self.ctx
            .stores
            .pushed
            .insert_pushed_request(&PushedRequest {
                hash: secret.hash(),
                client_id: client.id.clone(),
                params: p.to_query(),
                created_at: now,
                expires_at: now.plus(PUSHED_REQUEST_TTL_SECS),
            })
            .await?;
        self.ctx
            .audit
            .record(AuditEvent::success("authorization_request_pushed").client(&client.id));
        Ok(Pushed {
            request_uri: format!("{REQUEST_URI_PREFIX}{}", secret.expose()),
            expires_in: PUSHED_REQUEST_TTL_SECS,
        })
    }

    /// The parameters an authorization request runs with: those pushed under its `request_uri`
    /// (with the sign-in deadline the query carries), or the query's own when it has none
    /// (which a deployment that requires pushed requests then refuses).
    ///
    /// # Errors
    /// Storage failures.
    pub(super) async fn expand(&self, p: &AuthorizeParams) -> Result<Expansion, OAuthError> {
        let Some(uri) = p.request_uri.as_deref() else {
            return Ok(Expansion::Params(Box::new(p.clone())));
        };
        let Some(hash) = request_uri_hash(uri) else {
            return Ok(Expansion::Refused(UNUSABLE));
        };
        let now = self.ctx.clock.now();
        let Some(pushed) = self
            .ctx
            .stores
            .pushed
            .open_pushed_request(&hash, now, PUSHED_INTERACTION_SECS)
            .await?
        else {
            return Ok(Expansion::Refused(UNUSABLE));
        };
        if p.client_id.as_deref() != Some(pushed.client_id.as_str()) {
            return Ok(Expansion::Refused(UNUSABLE));
        }
        let mut expanded = AuthorizeParams::from_query(&pushed.params);
        expanded.login_after.clone_from(&p.login_after);
        expanded.pushed = Some(hash);
        Ok(Expansion::Params(Box::new(expanded)))
    }

    /// Takes the pushed request an authorization ends with; `false` when another use took it
    /// first.
    ///
    /// # Errors
    /// Storage failures.
    pub(super) async fn finish_pushed(&self, hash: &TokenHash) -> Result<bool, OAuthError> {
        let now = self.ctx.clock.now();
        Ok(self
            .ctx
            .stores
            .pushed
            .take_pushed_request(hash, now)
            .await?
            .is_some())
    }
}

/// The stored hash of a `request_uri` of this provider, `None` for anything else.
fn request_uri_hash(uri: &str) -> Option<TokenHash> {
    let secret = uri.strip_prefix(REQUEST_URI_PREFIX)?;
    RequestUriSecret::parse(secret).map(|s| s.hash())
}

fn rejected(code: &'static str, description: &str) -> OAuthError {
    OAuthError::Rejected {
        code,
        description: description.to_owned(),
    }
}
