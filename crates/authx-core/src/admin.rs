//! Administration, shared by the console, the JSON admin API and the `authx` command line:
//! users (search, detail, creation, roles, disabling, revoking sessions and grants, reset links
//! and factor resets), clients (registration, edits, secret rotation, removal), APIs, signing
//! keys, the audit trail and the overview. The rules an action must pass live here once,
//! whoever asks.
//!
//! # Audit
//! An administrator acting through the console or the API leaves an `admin_action` event naming
//! what was done to what and `via` which, before the action runs (so a refused or failed action
//! is on record too). The command line runs with the database's own authority and records only
//! the outcome.

use serde::Deserialize;

use crate::audit::{AuditEvent, AuditQuery, AuditRecord, AuditStore};
use crate::auth::{AuthError, AuthService};
use crate::oauth::OAuthError;
use crate::oauth::client::{Client, GrantType, Resource, TokenEndpointAuthMethod};
use crate::oauth::grant::RefreshFamily;
use crate::oauth::keys::SigningAlg;
use crate::oauth::keys::StoredKey;
use crate::oauth::scope::Scopes;
use crate::oauth::service::OAuthService;
use crate::oauth::types::ClientSecret;
use crate::session::{Session, SessionId};
use crate::store::{UserPage, UserSearch};
use crate::user::{User, UserId, UserStatus, canonical_email};

/// Why an administrative action was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The request is malformed (a bad lifetime, grant, algorithm or resource id).
    #[error("{0}")]
    InvalidRequest(String),
    /// A scope of a resource is malformed.
    #[error("malformed scope")]
    InvalidScope,
    /// The thing acted on does not exist.
    #[error("{0}")]
    NotFound(&'static str),
    /// The account service refused or failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The provider refused or failed.
    #[error(transparent)]
    OAuth(#[from] OAuthError),
}

impl From<crate::StoreError> for AdminError {
    fn from(e: crate::StoreError) -> Self {
        Self::Auth(AuthError::Store(e))
    }
}

/// Who performs an administrative action.
#[derive(Debug, Clone)]
pub enum Actor {
    /// A signed-in administrator, through the JSON API.
    Administrator(UserId),
    /// A signed-in administrator, through the console's pages.
    Console(UserId),
    /// The `authx` command line, with direct access to the database.
    CommandLine,
}

impl Actor {
    /// The administrator acting, if an account acts (the command line has none).
    #[must_use]
    pub fn admin_id(&self) -> Option<&UserId> {
        match self {
            Self::Administrator(id) | Self::Console(id) => Some(id),
            Self::CommandLine => None,
        }
    }

    /// Through what the action came, as the audit trail's `via` names it.
    #[must_use]
    pub fn via(&self) -> &'static str {
        match self {
            Self::Administrator(_) => "api",
            Self::Console(_) => "console",
            Self::CommandLine => "cli",
        }
    }

    /// `event` naming who acted: the administrator, or `via=cli`.
    #[must_use]
    pub fn on(&self, event: AuditEvent) -> AuditEvent {
        match self.admin_id() {
            Some(admin) => event.user(admin),
            None => event.with("via", "cli"),
        }
    }
}

/// A client registration, as the admin API and the CLI take it.
#[derive(Debug, Clone, Deserialize)]
pub struct ClientSpec {
    /// `client_id`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Exact redirect URIs.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Allowed grants (`authorization_code`, `refresh_token`, `client_credentials`).
    #[serde(default)]
    pub grant_types: Vec<String>,
    /// Allowed scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The APIs (resource ids) the client may get access tokens for; each must be registered.
    #[serde(default)]
    pub resources: Vec<String>,
    /// A public client (no secret, PKCE only).
    #[serde(default)]
    pub public: bool,
    /// `client_secret_basic` (the default for a confidential client), `client_secret_post`,
    /// `private_key_jwt` (with `jwks` or `jwks_uri`) or `none` (the same as `public`).
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    /// The client's public keys for `private_key_jwt`: a JWK Set.
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// Where the client publishes its keys for `private_key_jwt` (HTTPS).
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Every access token it gets must be bound to a DPoP key (RFC 9449 §5.2).
    #[serde(default)]
    pub dpop_bound_access_tokens: bool,
    /// Skips the consent page.
    #[serde(default)]
    pub first_party: bool,
    /// Its authorization requests must be pushed first (RFC 9126).
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
    /// The least `acr` its users must have signed in with (`urn:authx:acr:mfa`).
    #[serde(default)]
    pub require_acr: Option<String>,
    /// Post-logout redirect URIs.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// OIDC back-channel logout URI.
    pub backchannel_logout_uri: Option<String>,
    /// ID token algorithm (`RS256` default, `ES256`, `EdDSA`).
    pub id_token_alg: Option<String>,
    /// Access token lifetime in seconds (default 900, at most 3600).
    pub access_token_ttl_secs: Option<i64>,
    /// Refresh family lifetime in seconds (default 30 days).
    pub refresh_token_ttl_secs: Option<i64>,
    /// Refresh inactivity expiry in seconds (default 7 days).
    pub refresh_idle_secs: Option<i64>,
}

/// Default access-token lifetime of a client.
const DEFAULT_ACCESS_TTL_SECS: i64 = 900;
/// Default refresh-family lifetime of a client.
const DEFAULT_REFRESH_TTL_SECS: i64 = 30 * 86_400;
/// Default refresh inactivity expiry of a client.
const DEFAULT_REFRESH_IDLE_SECS: i64 = 7 * 86_400;

impl ClientSpec {
    /// The client this registration describes (secret and time set at registration), and
    /// whether it is confidential.
    ///
    /// # Errors
    /// [`AdminError::InvalidRequest`] for an unknown grant or algorithm or a bad lifetime.
    pub fn into_client(self) -> Result<(Client, bool), AdminError> {
        let grant_types = if self.grant_types.is_empty() {
            vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
        } else {
            self.grant_types
                .iter()
                .map(|g| {
                    GrantType::parse(g).ok_or_else(|| invalid(format!("unknown grant type {g:?}")))
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let id_token_alg = match self.id_token_alg.as_deref() {
            None => SigningAlg::Rs256,
            Some(a) => {
                SigningAlg::parse(a).ok_or_else(|| invalid(format!("unknown algorithm {a:?}")))?
            }
        };
        let access = self
            .access_token_ttl_secs
            .unwrap_or(DEFAULT_ACCESS_TTL_SECS);
        if !(60..=3600).contains(&access) {
            return Err(invalid("access_token_ttl_secs must be between 60 and 3600"));
        }
        let refresh = self
            .refresh_token_ttl_secs
            .unwrap_or(DEFAULT_REFRESH_TTL_SECS);
        let idle = self.refresh_idle_secs.unwrap_or(DEFAULT_REFRESH_IDLE_SECS);
        if refresh < 60 || idle < 60 {
            return Err(invalid("refresh lifetimes must be at least 60 seconds"));
        }
        if let Some(acr) = &self.require_acr {
            if !crate::amr::ACR_VALUES.contains(&acr.as_str()) {
                return Err(invalid(format!(
                    "require_acr must be one of {}",
                    crate::amr::ACR_VALUES.join(", ")
                )));
            }
        }
        let method = match self.token_endpoint_auth_method.as_deref() {
            None if self.public => TokenEndpointAuthMethod::None,
            None => TokenEndpointAuthMethod::ClientSecretBasic,
            Some(m) => TokenEndpointAuthMethod::parse(m).ok_or_else(|| {
                invalid(format!(
                    "unknown token_endpoint_auth_method {m:?}: use client_secret_basic, \
                     client_secret_post, private_key_jwt or none"
                ))
            })?,
        };
        if self.public && method != TokenEndpointAuthMethod::None {
            return Err(invalid(
                "a public client has token_endpoint_auth_method none",
            ));
        }
        let jwks = self.jwks.map(|j| j.to_string());
        let client = Client {
            id: self.id,
            name: self.name,
            secret_hash: None,
            token_endpoint_auth_method: method,
            jwks,
            jwks_uri: self.jwks_uri,
            dpop_bound_access_tokens: self.dpop_bound_access_tokens,
            redirect_uris: self.redirect_uris,
            post_logout_redirect_uris: self.post_logout_redirect_uris,
            backchannel_logout_uri: self.backchannel_logout_uri,
            grant_types,
            scopes: self.scopes,
            resources: self.resources,
            first_party: self.first_party,
            require_pushed_authorization_requests: self.require_pushed_authorization_requests,
            require_acr: self.require_acr,
            id_token_alg,
            access_token_ttl_secs: access,
            refresh_token_ttl_secs: refresh,
            refresh_idle_secs: idle.min(refresh),
            created_at: crate::Timestamp(0),
        };
        Ok((client, method != TokenEndpointAuthMethod::None))
    }
}

fn invalid(message: impl Into<String>) -> AdminError {
    AdminError::InvalidRequest(message.into())
}

/// Checks an API's registration: an absolute URI or URN of at most 255 characters without
/// spaces or controls, and well-formed scopes.
///
/// # Errors
/// [`AdminError::InvalidRequest`] for the identifier, [`AdminError::InvalidScope`].
pub fn check_resource(id: &str, scopes: &[String]) -> Result<(), AdminError> {
    let absolute = id.contains(':')
        && id.len() <= 255
        && !id.chars().any(|c| c.is_whitespace() || c.is_control());
    if !absolute {
        return Err(invalid("a resource id is an absolute URI or URN"));
    }
    if Scopes::parse(&scopes.join(" ")).is_none() {
        return Err(AdminError::InvalidScope);
    }
    Ok(())
}

/// The administrative actions, performed by one [`Actor`].
pub struct Administration<'a> {
    auth: &'a AuthService,
    oauth: &'a OAuthService,
    audit_store: &'a dyn AuditStore,
    actor: Actor,
}

/// The figures of the console's overview.
#[derive(Debug, Clone, Default)]
pub struct Overview {
    /// Accounts.
    pub users: u64,
    /// Sessions not yet expired.
    pub live_sessions: u64,
    /// Grants applications hold (live refresh-token families).
    pub grants: u64,
    /// Registered clients.
    pub clients: u64,
    /// Registered APIs.
    pub resources: u64,
    /// Successful sign-ins in the last 24 hours.
    pub sign_ins_24h: u64,
    /// Failed sign-ins in the last 24 hours.
    pub sign_in_failures_24h: u64,
    /// Every event recorded as a failure in the last 24 hours.
    pub failures_24h: u64,
    /// Mails given up on in the last 24 hours (`mail_failed`).
    pub mail_failures_24h: u64,
    /// The signing keys, newest first.
    pub keys: Vec<StoredKey>,
}

/// How old the active signing key of an algorithm may grow before the overview warns.
pub const KEY_ROTATION_DUE_SECS: i64 = 90 * 86_400;

/// Most users one page of a search lists.
pub const MAX_USERS_PAGE: u32 = 200;

impl<'a> Administration<'a> {
    /// Actions of `actor` on these services.
    #[must_use]
    pub fn new(
        auth: &'a AuthService,
        oauth: &'a OAuthService,
        audit_store: &'a dyn AuditStore,
        actor: Actor,
    ) -> Self {
        Self {
            auth,
            oauth,
            audit_store,
            actor,
        }
    }

    /// Records the action about to run (only an administrator's: the command line has no
    /// account to name).
    fn action(&self, action: &str, target: &str) {
        if let Some(admin) = self.actor.admin_id() {
            self.auth.audit().record(
                AuditEvent::success("admin_action")
                    .user(admin)
                    .with("action", action)
                    .with("target", target)
                    .with("via", self.actor.via()),
            );
        }
    }

    /// `event` with who acted.
    fn by_actor(&self, event: AuditEvent) -> AuditEvent {
        self.actor.on(event)
    }

    /// Every user, oldest first.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn users(&self) -> Result<Vec<User>, AdminError> {
        Ok(self.auth.stores().accounts.list_users().await?)
    }

    /// The user with this email address, `None` when there is none.
    ///
    /// # Errors
    /// [`AdminError::InvalidRequest`] for an address that cannot be anyone's; storage failures.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>, AdminError> {
        let canonical = canonical_email(email).map_err(|e| invalid(e.to_string()))?;
        Ok(self
            .auth
            .stores()
            .accounts
            .user_by_email(&canonical)
            .await?)
    }

    /// A user id as given, or the id of the user with that email address; an address that
    /// matches no one gives the empty id, which matches nothing.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn user_filter(&self, user: &str) -> Result<String, AdminError> {
        if !user.contains('@') {
            return Ok(user.to_owned());
        }
        match self.user_by_email(user).await {
            Ok(found) => Ok(found.map(|u| u.id.0).unwrap_or_default()),
            Err(AdminError::InvalidRequest(_)) => Ok(String::new()),
            Err(e) => Err(e),
        }
    }

    /// Disables a user and ends everything of theirs.
    ///
    /// # Errors
    /// [`AuthError::NotFound`] when there is no such user; storage failures.
    pub async fn disable_user(&self, id: &UserId) -> Result<(), AdminError> {
        self.action("disable_user", &id.0);
        Ok(self.auth.disable_user(id).await?)
    }

    /// Re-enables a disabled user.
    ///
    /// # Errors
    /// [`AuthError::NotFound`] when there is no such user; storage failures.
    pub async fn enable_user(&self, id: &UserId) -> Result<(), AdminError> {
        self.action("enable_user", &id.0);
        Ok(self.auth.enable_user(id).await?)
    }

    /// The stored audit events matching `query`.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, AdminError> {
        Ok(self.audit_store.list_audit(query).await?)
    }

    /// Every registered client.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn clients(&self) -> Result<Vec<Client>, AdminError> {
        Ok(self.oauth.stores().clients.list_clients().await?)
    }

    /// One page of the clients by id (page from 0, at most [`MAX_USERS_PAGE`] a page), and
    /// how many there are.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn clients_page(
        &self,
        page: u64,
        per_page: u32,
    ) -> Result<(Vec<Client>, u64), AdminError> {
        let per_page = per_page.clamp(1, MAX_USERS_PAGE);
        Ok(self
            .oauth
            .stores()
            .clients
            .page_clients(page.saturating_mul(u64::from(per_page)), per_page)
            .await
            .map_err(OAuthError::from)?)
    }

    /// Registers a client; a confidential client's secret comes back once.
    ///
    /// # Errors
    /// [`AdminError::InvalidRequest`] for a bad registration; the provider's refusals (a taken
    /// id is a store conflict).
    pub async fn register_client(
        &self,
        spec: ClientSpec,
    ) -> Result<(Client, Option<String>), AdminError> {
        self.action("register_client", &spec.id);
        let (client, confidential) = spec.into_client()?;
        Ok(self.oauth.register_client(client, confidential).await?)
    }

    /// Replaces a client's registration with `spec` (the same id), under the rules of a new
    /// one. Its secret, registration time and grants stay; it keeps its kind of
    /// authentication (a secret may move between Basic and the form body, nothing else).
    ///
    /// # Errors
    /// [`AdminError::NotFound`]; [`AdminError::InvalidRequest`] for a bad registration or a
    /// change of authentication; the provider's refusals.
    pub async fn update_client(&self, spec: ClientSpec) -> Result<Client, AdminError> {
        self.action("update_client", &spec.id);
        let current = self.client(&spec.id).await?;
        let (mut client, _) = spec.into_client()?;
        let (from, to) = (
            current.token_endpoint_auth_method,
            client.token_endpoint_auth_method,
        );
        if from != to && !(from.uses_secret() && to.uses_secret()) {
            return Err(invalid(format!(
                "token_endpoint_auth_method cannot change from {} to {}; register a new client",
                from.as_str(),
                to.as_str()
            )));
        }
        client.secret_hash = current.secret_hash;
        client.created_at = current.created_at;
        if !self.oauth.clients().replace(&client).await? {
            return Err(AdminError::NotFound("no such client"));
        }
        self.auth
            .audit()
            .record(self.by_actor(AuditEvent::success("client_updated").client(&client.id)));
        Ok(client)
    }

    /// Removes a client and everything issued to it (announced to every guard).
    ///
    /// # Errors
    /// [`AdminError::NotFound`] when there is no such client; storage failures.
    pub async fn delete_client(&self, id: &str) -> Result<(), AdminError> {
        self.action("delete_client", id);
        if !self.oauth.delete_client(id).await? {
            return Err(AdminError::NotFound("no such client"));
        }
        self.auth
            .audit()
            .record(self.by_actor(AuditEvent::success("client_deleted").client(id)));
        Ok(())
    }

    /// Every registered API.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn resources(&self) -> Result<Vec<Resource>, AdminError> {
        Ok(self.oauth.stores().clients.list_resources().await?)
    }

    /// Registers an API resource after checking its identifier and scopes.
    ///
    /// # Errors
    /// As [`check_resource`]; a store conflict for a taken identifier.
    pub async fn register_resource(
        &self,
        id: String,
        scopes: Vec<String>,
    ) -> Result<Resource, AdminError> {
        self.action("register_resource", &id);
        check_resource(&id, &scopes)?;
        let r = Resource {
            id,
            scopes,
            created_at: self.auth.clock().now(),
        };
        self.oauth
            .stores()
            .clients
            .put_resource(&r)
            .await
            .map_err(OAuthError::from)?;
        self.auth.audit().record(
            AuditEvent::success("resource_registered")
                .with("resource", &r.id)
                .with("scope", r.scopes.join(" ")),
        );
        Ok(r)
    }

    /// One page of the users whose address contains `text`, oldest first: page `page` (from 0)
    /// of `per_page` (at most [`MAX_USERS_PAGE`]).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn search_users(
        &self,
        text: &str,
        page: u64,
        per_page: u32,
    ) -> Result<UserPage, AdminError> {
        let per_page = per_page.clamp(1, MAX_USERS_PAGE);
        let q = UserSearch {
            email_contains: text.trim().to_lowercase(),
            offset: page.saturating_mul(u64::from(per_page)),
            limit: per_page,
        };
        Ok(self.auth.stores().accounts.search_users(&q).await?)
    }

    /// The user with this id.
    ///
    /// # Errors
    /// [`AdminError::NotFound`]; storage failures.
    pub async fn user(&self, id: &UserId) -> Result<User, AdminError> {
        self.auth
            .stores()
            .accounts
            .user_by_id(id)
            .await?
            .ok_or(AdminError::NotFound("no such user"))
    }

    /// A user's live sessions, newest first.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn user_sessions(&self, id: &UserId) -> Result<Vec<Session>, AdminError> {
        Ok(self.auth.sessions(id).await?)
    }

    /// A user's live grants (refresh-token families), each with its client when it still
    /// exists.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn user_grants(
        &self,
        id: &UserId,
    ) -> Result<Vec<(RefreshFamily, Option<Client>)>, AdminError> {
        Ok(self.oauth.user_grants(id).await?)
    }

    /// Creates an account; administrators may create administrators.
    ///
    /// # Errors
    /// The account service's refusals (a bad address or password, a taken address).
    pub async fn create_user(
        &self,
        email: &str,
        password: &str,
        admin: bool,
    ) -> Result<User, AdminError> {
        self.action("create_user", email);
        Ok(self.auth.create_user(email, password, admin).await?)
    }

    /// Ends one session of a user.
    ///
    /// # Errors
    /// [`AuthError::NotFound`] when the user has no such session; storage failures.
    pub async fn revoke_session(
        &self,
        user: &UserId,
        session: &SessionId,
    ) -> Result<(), AdminError> {
        self.action("revoke_session", &user.0);
        Ok(self.auth.revoke_session(user, session).await?)
    }

    /// Ends one grant (refresh-token family) of a user and the access tokens minted from it.
    ///
    /// # Errors
    /// [`AdminError::NotFound`] when the user has no such live grant; storage failures.
    pub async fn revoke_grant(&self, user: &UserId, family_id: &str) -> Result<(), AdminError> {
        self.action("revoke_grant", &user.0);
        if self.oauth.revoke_user_grant(user, family_id).await? {
            Ok(())
        } else {
            Err(AdminError::NotFound("no such grant"))
        }
    }

    /// Ends every session and grant of a user (the account stays usable: they sign in
    /// again); returns how many sessions ended.
    ///
    /// # Errors
    /// [`AdminError::NotFound`] when there is no such user; storage failures.
    pub async fn revoke_everything(&self, id: &UserId) -> Result<usize, AdminError> {
        self.action("revoke_everything", &id.0);
        self.user(id).await?;
        Ok(self.auth.revoke_other_sessions(id, None).await?)
    }

    /// Makes a user an administrator or no longer one; the last active administrator stays.
    ///
    /// # Errors
    /// [`AuthError::NotFound`], [`AuthError::LastAdministrator`]; storage failures.
    pub async fn set_admin(&self, id: &UserId, admin: bool) -> Result<(), AdminError> {
        self.action(
            if admin {
                "grant_admin"
            } else {
                "withdraw_admin"
            },
            &id.0,
        );
        Ok(self.auth.set_admin(id, admin).await?)
    }

    /// Mails the user a password-reset link, as "Forgot your password?" does (an account
    /// without a password gets the mail that says so).
    ///
    /// # Errors
    /// [`AdminError::NotFound`]; [`AdminError::InvalidRequest`] for a disabled account or
    /// where mail is not configured; storage and mail failures.
    pub async fn send_reset_link(&self, id: &UserId) -> Result<(), AdminError> {
        self.action("send_reset_link", &id.0);
        let user = self.user(id).await?;
        if user.status != UserStatus::Active {
            return Err(invalid("a disabled account gets no reset link"));
        }
        if !self.auth.resets_passwords() {
            return Err(invalid("password reset by mail is not configured"));
        }
        Ok(self.auth.request_reset(&user.email).await?)
    }

    /// Removes every second factor and recovery code of a user (a lost phone); returns how
    /// many factors went.
    ///
    /// # Errors
    /// [`AdminError::NotFound`]; [`AdminError::InvalidRequest`] where second factors are
    /// off; storage failures.
    pub async fn reset_factors(&self, id: &UserId) -> Result<u64, AdminError> {
        self.action("reset_factors", &id.0);
        self.user(id).await?;
        let factors = self
            .auth
            .factors()
            .ok_or_else(|| invalid("second factors are not enabled"))?;
        factors
            .remove_all(id)
            .await
            .map_err(|e| AdminError::Auth(AuthError::Factor(e)))
    }

    /// The client with this id.
    ///
    /// # Errors
    /// [`AdminError::NotFound`]; storage failures.
    pub async fn client(&self, id: &str) -> Result<Client, AdminError> {
        self.oauth
            .stores()
            .clients
            .client(id)
            .await
            .map_err(OAuthError::from)?
            .ok_or(AdminError::NotFound("no such client"))
    }

    /// Gives a confidential client a new secret, shown once; the old one stops working at
    /// once. Tokens already issued stay valid.
    ///
    /// # Errors
    /// [`AdminError::NotFound`]; [`AdminError::InvalidRequest`] for a client without a
    /// secret; storage failures.
    pub async fn rotate_client_secret(&self, id: &str) -> Result<String, AdminError> {
        self.action("rotate_client_secret", id);
        let mut client = self.client(id).await?;
        if !client.token_endpoint_auth_method.uses_secret() {
            return Err(invalid("this client authenticates without a secret"));
        }
        let secret = ClientSecret::generate();
        client.secret_hash = Some(secret.hash());
        if !self
            .oauth
            .stores()
            .clients
            .update_client(&client)
            .await
            .map_err(OAuthError::from)?
        {
            return Err(AdminError::NotFound("no such client"));
        }
        self.auth
            .audit()
            .record(self.by_actor(AuditEvent::success("client_secret_rotated").client(id)));
        Ok(secret.expose().to_owned())
    }

    /// The signing keys, newest first.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn keys(&self) -> Result<Vec<StoredKey>, AdminError> {
        let mut keys = self
            .oauth
            .stores()
            .keys
            .list_keys()
            .await
            .map_err(OAuthError::from)?;
        keys.sort_by_key(|k| std::cmp::Reverse(k.created_at));
        Ok(keys)
    }

    /// Publishes a new key of every algorithm; each starts signing after the publication lead
    /// time. Returns the algorithms and key ids published.
    ///
    /// # Errors
    /// Storage and key-generation failures.
    pub async fn rotate_keys(&self) -> Result<Vec<(SigningAlg, String)>, AdminError> {
        self.action("rotate_keys", "signing keys");
        let mut published = Vec::new();
        for alg in [SigningAlg::Rs256, SigningAlg::Es256, SigningAlg::EdDsa] {
            published.push((alg, self.oauth.publish_next_key(alg).await?));
        }
        Ok(published)
    }

    /// The figures of the console's overview: counts from the stores, the last 24 hours from
    /// the audit trail, and the keys.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn overview(&self) -> Result<Overview, AdminError> {
        let now = self.auth.clock().now();
        let day = Some(crate::Timestamp(now.secs() - 86_400));
        let count = |kind: Option<&str>, outcome: Option<&str>| AuditQuery {
            kind: kind.map(str::to_owned),
            outcome: outcome.map(str::to_owned),
            since: day,
            ..AuditQuery::default()
        };
        let users = self
            .auth
            .stores()
            .accounts
            .search_users(&UserSearch {
                limit: 1,
                ..UserSearch::default()
            })
            .await?
            .total;
        let (_, clients) = self.clients_page(0, 1).await?;
        let resources = self.resources().await?;
        Ok(Overview {
            users,
            live_sessions: self.auth.stores().sessions.count_live_sessions(now).await?,
            grants: self
                .oauth
                .stores()
                .grants
                .count_live_families(now)
                .await
                .map_err(OAuthError::from)?,
            clients,
            resources: resources.len() as u64,
            sign_ins_24h: self
                .audit_store
                .count_audit(&count(Some("sign_in"), None))
                .await?,
            sign_in_failures_24h: self
                .audit_store
                .count_audit(&count(Some("sign_in_failed"), None))
                .await?,
            failures_24h: self
                .audit_store
                .count_audit(&count(None, Some("failure")))
                .await?,
            mail_failures_24h: self
                .audit_store
                .count_audit(&count(Some("mail_failed"), None))
                .await?,
            keys: self.keys().await?,
        })
    }

    /// One page of the audit trail: the newest `q.limit` events matching `q`, newest first,
    /// and how many match in all.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn audit_page(&self, q: &AuditQuery) -> Result<(Vec<AuditRecord>, u64), AdminError> {
        let mut events = self.audit_store.list_audit(q).await?;
        if q.after_id.is_none() {
            events.reverse();
        }
        let total = self.audit_store.count_audit(q).await?;
        Ok((events, total))
    }
}

#[cfg(test)]
mod tests;
