//! The provider's rules against the in-memory store and a manual clock: no network, no
//! server. One module per rule family: the authorization decision, codes, refresh rotation,
//! device pacing, the user-code entry, the token endpoint's dispatch, consent and logout.

use std::sync::Arc;

use super::OAuthError;
use super::authorize::{AuthorizeParams, AuthorizeRequest};
use super::client::{Client, GrantType, Resource};
use super::keys::SigningAlg;
use super::pkce;
use super::service::OAuthService;
use super::store::ClientStore;
use super::types::{OAuthConfig, TokenResponse};
use crate::Timestamp;
use crate::clock::{Clock, ManualClock};
use crate::events::InProcessBus;
use crate::memory::MemoryStore;
use crate::secret::TokenHash;
use crate::session::{Session, SessionId};
use crate::store::{AccountStore, SessionStore};
use crate::user::{User, UserId, UserStatus};

pub(super) mod authorize;
mod code;
mod consent;
mod device;
mod entry;
mod grant;
mod logout;
mod par;
mod refresh;

const ISSUER: &str = "https://authx.example";
const REDIRECT: &str = "https://app.example/callback";
const API: &str = "https://api.example";
const NOW: i64 = 1_700_000_000;
/// A PKCE verifier of 43 characters; [`challenge`] is its S256 challenge.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn challenge() -> String {
    pkce::s256(VERIFIER)
}

/// A provider over one in-memory store, its clock, a signed-in user and that user's session.
struct Rig {
    store: MemoryStore,
    clock: ManualClock,
    oauth: OAuthService,
    user: User,
    session: SessionId,
}

impl Rig {
    async fn new() -> Self {
        Self::with(|_| {}).await
    }

    async fn with(configure: impl FnOnce(&mut OAuthConfig)) -> Self {
        let store = MemoryStore::default();
        let clock = ManualClock::new(Timestamp(NOW));
        let mut config = OAuthConfig::new(ISSUER);
        configure(&mut config);
        let oauth = OAuthService::new(
            store.oauth_stores(),
            Arc::new(InProcessBus::default()),
            Arc::new(clock.clone()),
            config,
            &[7; 32],
        )
        .unwrap();
        oauth.ensure_keys().await.unwrap();
        let user = User {
            id: UserId::generate(),
            email: "ada@example.com".into(),
            password_hash: String::new(),
            status: UserStatus::Active,
            is_admin: false,
            created_at: Timestamp(NOW - 100),
            password_changed_at: Timestamp(NOW - 100),
            email_verified: false,
        };
        store.create_user(&user).await.unwrap();
        store
            .put_resource(&Resource {
                id: API.into(),
                scopes: vec!["read".into(), "write".into()],
                created_at: Timestamp(NOW - 100),
            })
            .await
            .unwrap();
        let rig = Self {
            store,
            clock,
            oauth,
            user,
            session: SessionId(String::new()),
        };
        let session = rig.sign_in("first").await;
        Self { session, ..rig }
    }

    /// A fresh browser session of the user.
    async fn sign_in(&self, name: &str) -> SessionId {
        let now = self.clock.now();
        let id = SessionId(name.into());
        self.store
            .create_session(&Session {
                id: id.clone(),
                token_hash: TokenHash::of(name.as_bytes()),
                user_id: self.user.id.clone(),
                created_at: now,
                last_seen_at: now,
                idle_expires_at: now.plus(3_600),
                absolute_expires_at: now.plus(86_400),
                ip: None,
                user_agent: None,
                auth_method: "password".into(),
            })
            .await
            .unwrap();
        id
    }

    /// Registers a public client with these grants that may use [`API`].
    async fn client(&self, id: &str, grants: &[GrantType], first_party: bool) -> Client {
        let client = Client {
            id: id.into(),
            name: id.into(),
            secret_hash: None,
            token_endpoint_auth_method: crate::oauth::client::TokenEndpointAuthMethod::None,
            jwks: None,
            jwks_uri: None,
            dpop_bound_access_tokens: false,
            redirect_uris: vec![REDIRECT.into()],
            post_logout_redirect_uris: vec![],
            backchannel_logout_uri: None,
            grant_types: grants.to_vec(),
            scopes: ["openid", "email", "offline_access", "read", "write"]
                .map(String::from)
                .to_vec(),
            resources: vec![API.into()],
            first_party,
            require_pushed_authorization_requests: false,
            require_acr: None,
            id_token_alg: SigningAlg::Es256,
            access_token_ttl_secs: 300,
            refresh_token_ttl_secs: 86_400,
            refresh_idle_secs: 3_600,
            created_at: Timestamp(0),
        };
        self.oauth.register_client(client, false).await.unwrap().0
    }

    /// A client for the code and refresh grants.
    async fn web_client(&self, id: &str) -> Client {
        self.client(
            id,
            &[GrantType::AuthorizationCode, GrantType::RefreshToken],
            false,
        )
        .await
    }

    /// A validated authorization request of `client` for `scope` (and `resource`).
    async fn request(
        &self,
        client: &Client,
        scope: &str,
        resource: Option<&str>,
    ) -> AuthorizeRequest {
        let params = AuthorizeParams {
            client_id: Some(client.id.clone()),
            redirect_uri: Some(REDIRECT.into()),
            response_type: Some("code".into()),
            scope: Some(scope.into()),
            state: Some("s".into()),
            code_challenge: Some(challenge()),
            code_challenge_method: Some("S256".into()),
            resource: resource.map(str::to_owned),
            ..AuthorizeParams::default()
        };
        self.oauth.validate_authorize(&params).await.unwrap()
    }

    /// A code for `client` minted by the rig's session.
    async fn code(&self, client: &Client, scope: &str) -> String {
        let req = self.request(client, scope, None).await;
        self.oauth
            .issue_code(&req, self.signed_in_at(self.clock.now()))
            .await
            .unwrap()
    }

    /// Redeems `code` as a well-behaved client does.
    async fn redeem(&self, client: &Client, code: &str) -> Result<TokenResponse, OAuthError> {
        self.oauth
            .tokens()
            .exchange_code(client, code, Some(REDIRECT), Some(VERIFIER))
            .await
    }

    /// Tokens of the code grant, with a refresh token.
    async fn tokens(&self, client: &Client) -> TokenResponse {
        let code = self.code(client, "openid offline_access").await;
        self.redeem(client, &code).await.unwrap()
    }

    /// The family an access token belongs to, as stored.
    async fn family_of(&self, t: &TokenResponse) -> super::grant::RefreshFamily {
        let claims = self
            .oauth
            .active_access_token(&t.access_token)
            .await
            .unwrap()
            .expect("an active access token");
        self.store
            .stored_family(&claims.fid.expect("a family"))
            .expect("a stored family")
    }
}

/// The `invalid_grant` message of a result, or a panic.
fn invalid_grant<T: std::fmt::Debug>(r: Result<T, OAuthError>) -> &'static str {
    match r {
        Err(OAuthError::InvalidGrant(m)) => m,
        other => panic!("expected invalid_grant, got {other:?}"),
    }
}
