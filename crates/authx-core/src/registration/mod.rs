//! Dynamic client registration (RFC 7591) and its management protocol (RFC 7592).
//!
//! An administrator issues an initial access token ([`Registration::create_initial_token`]);
//! whoever holds it may register as many clients as it has uses left, within the scopes and
//! APIs it allows. Each registration is checked by the rules an administrator's registration
//! passes ([`crate::admin::ClientSpec`], `Clients::register`), and answers a generated
//! `client_id`, a secret for a confidential client, and a registration access token with which
//! the client reads, replaces or deletes its own registration.
//!
//! # Security
//! - Both kinds of token are 256 random bits from the OS CSPRNG, handed out once and stored
//!   only as SHA-256 hashes; a presented token is looked up by hash or compared in constant
//!   time.
//! - A wrong, missing, expired, used-up or revoked token, and a token of another client, are
//!   the same [`RegistrationError::InvalidToken`]: whether a client exists is not told.
//! - A use of an initial access token is spent with one atomic update, so the last use
//!   registers one client however many requests race for it.
//! - A registered client is never first-party (its users always see the consent page) and
//!   gets no API the initial access token does not name.
//! - Each update rotates the registration access token (RFC 7592 §2.2 allows it) with a
//!   compare-and-set: the old token stops working, and of two updates with it one wins.

use crate::admin::{Actor, AdminError};
use crate::audit::AuditEvent;
use crate::oauth::OAuthError;
use crate::oauth::client::Client;
use crate::oauth::service::OAuthService;
use crate::oauth::types::OIDC_SCOPES;
use crate::secret::{TokenHash, opaque_secret};

pub mod metadata;
pub mod store;

pub use metadata::{ClientMetadata, client_information};
pub use store::{ClientRegistration, InitialToken, RegistrationStore};

opaque_secret!(
    /// An initial access token (RFC 7591 §3): 256 random bits, shown once, stored as SHA-256.
    InitialAccessToken
);
opaque_secret!(
    /// A registration access token (RFC 7592 §1.1): 256 random bits, handed to the client
    /// that registered, stored as SHA-256.
    RegistrationAccessToken
);

/// Default lifetime of an initial access token.
pub const DEFAULT_INITIAL_TOKEN_TTL_SECS: i64 = 86_400;
/// Longest lifetime of an initial access token.
pub const MAX_INITIAL_TOKEN_TTL_SECS: i64 = 90 * 86_400;
/// Most uses one initial access token may have.
pub const MAX_INITIAL_TOKEN_USES: i64 = 10_000;

/// Why a registration request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// The initial or registration access token is missing, wrong, expired, used up, revoked
    /// or another client's (RFC 6750 `invalid_token`, 401).
    #[error("the access token is missing, invalid, expired or revoked")]
    InvalidToken,
    /// `invalid_redirect_uri` (RFC 7591 §3.2.2).
    #[error("{0}")]
    InvalidRedirectUri(String),
    /// `invalid_client_metadata` (RFC 7591 §3.2.2).
    #[error("{0}")]
    InvalidClientMetadata(String),
    /// An administrator's request for an initial access token is malformed.
    #[error("{0}")]
    InvalidRequest(String),
    /// Storage or the provider failed.
    #[error(transparent)]
    OAuth(#[from] OAuthError),
}

impl From<crate::StoreError> for RegistrationError {
    fn from(e: crate::StoreError) -> Self {
        Self::OAuth(OAuthError::Store(e))
    }
}

impl From<AdminError> for RegistrationError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::OAuth(e) => e.into(),
            AdminError::Auth(crate::auth::AuthError::Store(e)) => e.into(),
            other => Self::InvalidClientMetadata(other.to_string()),
        }
    }
}

impl RegistrationError {
    /// The RFC 7591 §3.2.2 / RFC 6750 §3.1 error code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidToken => "invalid_token",
            Self::InvalidRedirectUri(_) => "invalid_redirect_uri",
            Self::InvalidClientMetadata(_) => "invalid_client_metadata",
            Self::InvalidRequest(_) => "invalid_request",
            Self::OAuth(e) => e.code(),
        }
    }
}

/// What an administrator asks of a new initial access token.
#[derive(Debug, Clone, Default)]
pub struct InitialTokenRequest {
    /// Lifetime in seconds (default one day, at most 90 days).
    pub ttl_secs: Option<i64>,
    /// How many clients it may register (default 1).
    pub uses: Option<i64>,
    /// The scopes its clients may have (default the OpenID Connect scopes).
    pub scopes: Vec<String>,
    /// The APIs its clients may get tokens for (default none); each must be registered.
    pub resources: Vec<String>,
}

/// A client as the protocol answers it.
#[derive(Debug)]
pub struct Registered {
    /// The client.
    pub client: Client,
    /// Its secret, when one was just generated (shown once).
    pub client_secret: Option<String>,
    /// Its registration access token, when one was just issued.
    pub registration_access_token: Option<String>,
}

impl Registered {
    /// The client information response (RFC 7591 §3.2.1), with the secret and the
    /// registration access token when they were just issued.
    #[must_use]
    pub fn to_json(&self, registration_client_uri: &str) -> serde_json::Value {
        let mut v = client_information(&self.client, registration_client_uri);
        if let Some(secret) = &self.client_secret {
            v["client_secret"] = secret.clone().into();
            // The secret does not expire (RFC 7591 §3.2.1: 0 for never).
            v["client_secret_expires_at"] = 0.into();
        }
        if let Some(token) = &self.registration_access_token {
            v["registration_access_token"] = token.clone().into();
        }
        v
    }
}

/// Dynamic client registration over the provider's clients and a [`RegistrationStore`].
pub struct Registration<'a> {
    oauth: &'a OAuthService,
    store: &'a dyn RegistrationStore,
}

/// The actor named in the audit events of the protocol's calls.
const ACTOR: &str = "registration";

impl<'a> Registration<'a> {
    /// Registration over these services.
    #[must_use]
    pub fn new(oauth: &'a OAuthService, store: &'a dyn RegistrationStore) -> Self {
        Self { oauth, store }
    }

    fn record(&self, event: AuditEvent) {
        self.oauth.audit().record(event);
    }

    // -----------------------------------------------------------------------------------------
    // Administration.

    /// Issues an initial access token; the token comes back once, next to what is stored.
    ///
    /// # Errors
    /// [`RegistrationError::InvalidRequest`] for a lifetime, use count, scope or resource out
    /// of bounds (an unknown resource included); storage failures.
    pub async fn create_initial_token(
        &self,
        request: InitialTokenRequest,
        actor: &Actor,
    ) -> Result<(InitialToken, String), RegistrationError> {
        let ttl = request.ttl_secs.unwrap_or(DEFAULT_INITIAL_TOKEN_TTL_SECS);
        if !(60..=MAX_INITIAL_TOKEN_TTL_SECS).contains(&ttl) {
            return Err(RegistrationError::InvalidRequest(format!(
                "the lifetime must be between 60 seconds and {} days",
                MAX_INITIAL_TOKEN_TTL_SECS / 86_400
            )));
        }
        let uses = request.uses.unwrap_or(1);
        if !(1..=MAX_INITIAL_TOKEN_USES).contains(&uses) {
            return Err(RegistrationError::InvalidRequest(format!(
                "uses must be between 1 and {MAX_INITIAL_TOKEN_USES}"
            )));
        }
        let scopes = if request.scopes.is_empty() {
            OIDC_SCOPES.iter().map(|s| (*s).to_owned()).collect()
        } else {
            let joined = request.scopes.join(" ");
            let parsed = crate::oauth::scope::Scopes::parse(&joined)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| RegistrationError::InvalidRequest("malformed scope".into()))?;
            parsed.iter().map(str::to_owned).collect()
        };
        for r in &request.resources {
            if self.oauth.stores().clients.resource(r).await?.is_none() {
                return Err(RegistrationError::InvalidRequest(format!(
                    "unknown resource {r:?}: register the API first"
                )));
            }
        }
        let secret = InitialAccessToken::generate();
        let now = self.oauth.now();
        let token = InitialToken {
            id: crate::secret::random_id(),
            hash: secret.hash(),
            created_at: now,
            expires_at: now.plus(ttl),
            uses_left: uses,
            scopes,
            resources: request.resources,
        };
        if let Some(admin) = actor.admin_id() {
            self.record(
                AuditEvent::success("admin_action")
                    .user(admin)
                    .with("action", "create_registration_token")
                    .with("target", &token.id)
                    .with("via", actor.via()),
            );
        }
        self.store.insert_initial_token(&token).await?;
        self.record(
            by_actor(AuditEvent::success("registration_token_created"), actor)
                .with("token", &token.id)
                .with_count("uses", u64::try_from(uses).unwrap_or_default())
                .with("expires_at", token.expires_at.secs()),
        );
        Ok((token, secret.expose().to_owned()))
    }

    /// Every initial access token, oldest first (used-up and expired ones until purged).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn initial_tokens(&self) -> Result<Vec<InitialToken>, RegistrationError> {
        Ok(self.store.list_initial_tokens().await?)
    }

    /// Revokes an initial access token. Returns whether it existed. Clients it registered
    /// stay.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn revoke_initial_token(
        &self,
        id: &str,
        actor: &Actor,
    ) -> Result<bool, RegistrationError> {
        if let Some(admin) = actor.admin_id() {
            self.record(
                AuditEvent::success("admin_action")
                    .user(admin)
                    .with("action", "revoke_registration_token")
                    .with("target", id)
                    .with("via", actor.via()),
            );
        }
        let found = self.store.delete_initial_token(id).await?;
        if found {
            self.record(
                by_actor(AuditEvent::success("registration_token_revoked"), actor)
                    .with("token", id),
            );
        }
        Ok(found)
    }

    // -----------------------------------------------------------------------------------------
    // The protocol.

    /// Registers a client (RFC 7591 §3) with the initial access token `initial`.
    ///
    /// # Errors
    /// [`RegistrationError::InvalidToken`] for a missing or unusable initial access token;
    /// [`RegistrationError::InvalidRedirectUri`] and
    /// [`RegistrationError::InvalidClientMetadata`] for metadata authx cannot honour (no use
    /// is spent then); storage failures.
    pub async fn register(
        &self,
        initial: Option<&str>,
        metadata: ClientMetadata,
    ) -> Result<Registered, RegistrationError> {
        let now = self.oauth.now();
        let hash = initial
            .and_then(InitialAccessToken::parse)
            .map(|t| t.hash())
            .ok_or_else(|| self.refused("initial access token missing or malformed"))?;
        let grant = self
            .store
            .initial_token(&hash, now)
            .await?
            .ok_or_else(|| self.refused("initial access token unknown, expired or used up"))?;
        let id = crate::secret::random_id();
        let spec = metadata.to_spec(&id, &grant.scopes, &grant.resources)?;
        let (client, confidential) = spec.into_client()?;
        // Checked before the use is spent, so a registration the rules refuse costs none.
        self.oauth
            .clients()
            .check_registration(&client, confidential)
            .await
            .map_err(metadata_error)?;
        if !self.store.spend_initial_token(&hash, now).await? {
            return Err(self.refused("initial access token used up meanwhile"));
        }
        let (client, client_secret) = self
            .oauth
            .clients()
            .register_by(client, confidential, Some(ACTOR))
            .await
            .map_err(metadata_error)?;
        let token = RegistrationAccessToken::generate();
        let registration = ClientRegistration {
            client_id: client.id.clone(),
            token_hash: token.hash(),
            allowed_scopes: grant.scopes,
            updated_at: now,
        };
        if let Err(e) = self.store.insert_client_registration(&registration).await {
            // A client nobody can manage is not left behind.
            let _ = self.oauth.delete_client(&client.id).await;
            return Err(e.into());
        }
        Ok(Registered {
            client,
            client_secret,
            registration_access_token: Some(token.expose().to_owned()),
        })
    }

    /// Reads a client's registration (RFC 7592 §2.1), without its secret.
    ///
    /// # Errors
    /// [`RegistrationError::InvalidToken`] unless `token` is the client's registration access
    /// token; storage failures.
    pub async fn read(
        &self,
        client_id: &str,
        token: Option<&str>,
    ) -> Result<Registered, RegistrationError> {
        let (_, client) = self.authorize(client_id, token).await?;
        Ok(Registered {
            client,
            client_secret: None,
            registration_access_token: None,
        })
    }

    /// Replaces a client's metadata (RFC 7592 §2.2) under the rules of registration, keeping
    /// its id, secret, registration time, APIs and grants, and rotates its registration access
    /// token (the new one is in the answer). `token_endpoint_auth_method` may move between
    /// `client_secret_basic` and `client_secret_post` only: any other change is a new client.
    ///
    /// # Errors
    /// [`RegistrationError::InvalidToken`] unless `token` is the client's registration access
    /// token; the metadata errors of [`Registration::register`], also for a `client_id` that
    /// is not the client's or a `client_secret` that is not its secret; storage failures.
    pub async fn update(
        &self,
        client_id: &str,
        token: Option<&str>,
        metadata: ClientMetadata,
    ) -> Result<Registered, RegistrationError> {
        let (registration, current) = self.authorize(client_id, token).await?;
        if metadata
            .client_id
            .as_deref()
            .is_some_and(|id| id != client_id)
        {
            return Err(RegistrationError::InvalidClientMetadata(
                "client_id cannot change".into(),
            ));
        }
        if let Some(secret) = &metadata.client_secret {
            let matches = current
                .secret_hash
                .is_some_and(|h| h.ct_eq(&TokenHash::of(secret.as_bytes())));
            if !matches {
                return Err(RegistrationError::InvalidClientMetadata(
                    "client_secret is not the client's secret; a client cannot choose its own"
                        .into(),
                ));
            }
        }
        let spec = metadata.to_spec(client_id, &registration.allowed_scopes, &current.resources)?;
        let (mut client, confidential) = spec.into_client()?;
        // A secret is generated once, at registration: the method may move between the two
        // ways of sending it, never to or from another kind of authentication.
        let (from, to) = (
            current.token_endpoint_auth_method,
            client.token_endpoint_auth_method,
        );
        if from != to && !(from.uses_secret() && to.uses_secret()) {
            return Err(RegistrationError::InvalidClientMetadata(format!(
                "token_endpoint_auth_method cannot change from {} to {}; register a new client",
                from.as_str(),
                to.as_str()
            )));
        }
        client.secret_hash = current.secret_hash;
        client.created_at = current.created_at;
        // The rules first, then the token rotates (of two updates with one token, only one
        // gets this far), then the metadata are written.
        self.oauth
            .clients()
            .check_registration(&client, confidential)
            .await
            .map_err(metadata_error)?;
        let new_token = RegistrationAccessToken::generate();
        let next = ClientRegistration {
            token_hash: new_token.hash(),
            updated_at: self.oauth.now(),
            ..registration.clone()
        };
        if !self
            .store
            .replace_client_registration(&next, &registration.token_hash)
            .await?
        {
            return Err(self.refused("registration access token rotated meanwhile"));
        }
        let replaced = self.oauth.clients().replace(&client).await;
        if !matches!(replaced, Ok(true)) {
            // The client never saw the new token: give the old one back.
            let _ = self
                .store
                .replace_client_registration(&registration, &next.token_hash)
                .await;
            return Err(match replaced {
                Err(e) => metadata_error(e),
                Ok(_) => RegistrationError::InvalidToken,
            });
        }
        self.record(
            AuditEvent::success("client_updated")
                .client(client_id)
                .with("actor", ACTOR),
        );
        Ok(Registered {
            client,
            client_secret: None,
            registration_access_token: Some(new_token.expose().to_owned()),
        })
    }

    /// Deletes a client (RFC 7592 §2.3) with everything issued to it, announced to every guard.
    ///
    /// # Errors
    /// [`RegistrationError::InvalidToken`] unless `token` is the client's registration access
    /// token; storage failures or an event that could not be published.
    pub async fn delete(
        &self,
        client_id: &str,
        token: Option<&str>,
    ) -> Result<(), RegistrationError> {
        self.authorize(client_id, token).await?;
        if !self.oauth.delete_client(client_id).await? {
            return Err(RegistrationError::InvalidToken);
        }
        self.record(
            AuditEvent::success("client_deleted")
                .client(client_id)
                .with("actor", ACTOR),
        );
        Ok(())
    }

    /// The registration and client that `token` manages, if it is `client_id`'s.
    async fn authorize(
        &self,
        client_id: &str,
        token: Option<&str>,
    ) -> Result<(ClientRegistration, Client), RegistrationError> {
        let presented = token
            .and_then(RegistrationAccessToken::parse)
            .map(|t| t.hash())
            .ok_or_else(|| self.refused("registration access token missing or malformed"))?;
        if client_id.is_empty() || client_id.len() > 255 {
            return Err(self.refused("no such registration"));
        }
        let registration = self.store.client_registration(client_id).await?;
        let Some(registration) = registration.filter(|r| r.token_hash.ct_eq(&presented)) else {
            self.record(
                AuditEvent::failure("registration_token_rejected")
                    .client(client_id)
                    .with("reason", "not this client's registration access token"),
            );
            return Err(RegistrationError::InvalidToken);
        };
        let client = self
            .oauth
            .stores()
            .clients
            .client(client_id)
            .await?
            .ok_or(RegistrationError::InvalidToken)?;
        Ok((registration, client))
    }

    /// Records a refused token and returns the error.
    fn refused(&self, reason: &str) -> RegistrationError {
        self.record(AuditEvent::failure("registration_token_rejected").with("reason", reason));
        RegistrationError::InvalidToken
    }
}

/// `event` naming who acted.
fn by_actor(event: AuditEvent, actor: &Actor) -> AuditEvent {
    actor.on(event)
}

/// The provider's refusal of a registration as RFC 7591 metadata errors; failures stay.
fn metadata_error(e: OAuthError) -> RegistrationError {
    match e {
        OAuthError::InvalidRequest(m) if m.contains("redirect URI") => {
            RegistrationError::InvalidRedirectUri(m)
        }
        OAuthError::InvalidRequest(m) => RegistrationError::InvalidClientMetadata(m),
        other => RegistrationError::OAuth(other),
    }
}

#[cfg(test)]
mod tests;
