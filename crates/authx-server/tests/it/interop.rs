//! The OpenID provider as a relying party written elsewhere sees it: the `openidconnect` crate
//! discovers the issuer, builds the authorization request (PKCE S256, nonce, state), exchanges the
//! code, verifies the ID token (signature against the JWKS, issuer, audience, expiry, nonce,
//! `at_hash`), calls userinfo, refreshes, and runs the client-credentials grant. Only the
//! browser's part (following the authorize redirect with a session cookie) and a look at
//! introspection are done by hand.

use authx_core::oauth::client::{Client, GrantType};
use authx_core::oauth::keys::SigningAlg;
use authx_testkit::{PASSWORD, TestServer};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreErrorResponseType, CoreIdToken,
    CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreTokenResponse, CoreUserInfoClaims,
};
use openidconnect::url::Url;
use openidconnect::{
    AccessTokenHash, AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse as _,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, TokenResponse as _,
};
use serde_json::Value;

const EMAIL: &str = "kate@example.com";
const API: &str = "https://api.example.com";
/// The confidential client's redirect URI; the test reads the redirect instead of following it.
const RP_REDIRECT: &str = "https://rp.example.com/cb";
/// The public client's registered loopback redirect URI: any port may be presented.
const NATIVE_REDIRECT: &str = "http://127.0.0.1/cb";
/// The ID token algorithm OpenID Connect requires every provider to support, and the default.
const RS256: CoreJwsSigningAlgorithm = CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256;

/// What discovery gives a relying party: the provider client type with the authorization
/// endpoint set and the token and userinfo endpoints set when the metadata names them.
type Rp = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

fn client(id: &str, redirect: &str, grants: &[GrantType]) -> Client {
    Client {
        id: id.into(),
        name: format!("{id} app"),
        secret_hash: None,
        token_endpoint_auth_method: authx_core::oauth::client::TokenEndpointAuthMethod::None,
        jwks: None,
        jwks_uri: None,
        dpop_bound_access_tokens: false,
        redirect_uris: vec![redirect.into()],
        post_logout_redirect_uris: Vec::new(),
        backchannel_logout_uri: None,
        grant_types: grants.to_vec(),
        scopes: vec![
            "openid".into(),
            "email".into(),
            "read".into(),
            "write".into(),
        ],
        resources: vec![API.into()],
        first_party: true,
        require_pushed_authorization_requests: false,
        require_acr: None,
        id_token_alg: SigningAlg::Rs256,
        access_token_ttl_secs: 900,
        refresh_token_ttl_secs: 30 * 86_400,
        refresh_idle_secs: 7 * 86_400,
        created_at: authx_core::Timestamp(0),
    }
}

/// A running provider, as seen by a relying party.
struct Provider {
    server: TestServer,
    /// The relying party's HTTP client: redirects off, as the library requires.
    http: reqwest::Client,
    metadata: CoreProviderMetadata,
    /// The secret of the confidential first-party client `rp`.
    secret: String,
    /// The `Cookie` header of the signed-in user's browser session.
    cookie: String,
}

impl Provider {
    /// A server with an API resource, a confidential first-party client `rp` (code, refresh,
    /// client credentials), a public first-party client `native` (code, refresh), a signed-in
    /// user, and the provider metadata discovered by the library.
    async fn start() -> Provider {
        let server = TestServer::start().await.unwrap();
        let state = &server.running().unwrap().state;
        authx_server::web::api::register_resource(
            state,
            API.into(),
            vec!["read".into(), "write".into()],
        )
        .await
        .unwrap();
        let (_, secret) = state
            .oauth
            .register_client(
                client(
                    "rp",
                    RP_REDIRECT,
                    &[
                        GrantType::AuthorizationCode,
                        GrantType::RefreshToken,
                        GrantType::ClientCredentials,
                    ],
                ),
                true,
            )
            .await
            .unwrap();
        state
            .oauth
            .register_client(
                client(
                    "native",
                    NATIVE_REDIRECT,
                    &[GrantType::AuthorizationCode, GrantType::RefreshToken],
                ),
                false,
            )
            .await
            .unwrap();
        server.create_user(EMAIL, PASSWORD).await.unwrap();
        let cookie = server.sign_in(EMAIL, PASSWORD).await.unwrap();

        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let issuer = IssuerUrl::new(server.url.clone()).unwrap();
        let metadata = CoreProviderMetadata::discover_async(issuer, &http)
            .await
            .unwrap_or_else(|e| panic!("discovery failed: {}", chain(&e)));
        Provider {
            server,
            http,
            metadata,
            secret: secret.unwrap(),
            cookie,
        }
    }

    /// The confidential client `rp`, configured from discovery.
    fn rp(&self) -> Rp {
        CoreClient::from_provider_metadata(
            self.metadata.clone(),
            ClientId::new("rp".into()),
            Some(ClientSecret::new(self.secret.clone())),
        )
        .set_redirect_uri(RedirectUrl::new(RP_REDIRECT.into()).unwrap())
    }

    /// The public client `native` (no secret), redirecting to a loopback port of its own.
    fn native(&self, port: u16) -> Rp {
        CoreClient::from_provider_metadata(
            self.metadata.clone(),
            ClientId::new("native".into()),
            None,
        )
        .set_redirect_uri(RedirectUrl::new(format!("http://127.0.0.1:{port}/cb")).unwrap())
    }

    /// Plays the browser: requests the library's authorization URL with the signed-in session's
    /// cookie and returns the redirect back to the client, checked for `state` and `iss`.
    async fn authorize(&self, url: &Url, redirect: &str, state: &CsrfToken) -> Url {
        let res = self
            .server
            .client
            .get(url.as_str())
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            302,
            "authorize did not redirect: {}",
            res.text().await.unwrap_or_default()
        );
        let location = res.headers()["location"].to_str().unwrap();
        let back = Url::parse(location).unwrap();
        assert!(location.starts_with(redirect), "{location}");
        assert_eq!(
            param(&back, "state").as_deref(),
            Some(state.secret().as_str()),
            "state echoed"
        );
        assert_eq!(
            param(&back, "iss").as_deref(),
            Some(self.metadata.issuer().as_str()),
            "RFC 9207 iss"
        );
        back
    }

    /// Runs the authorization request of `client` for `scopes` and returns the code, the PKCE
    /// verifier and the nonce.
    async fn code(
        &self,
        client: &Rp,
        redirect: &str,
        scopes: &[&str],
    ) -> (AuthorizationCode, PkceCodeVerifier, Nonce) {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for s in scopes {
            request = request.add_scope(Scope::new((*s).into()));
        }
        let (url, state, nonce) = request.url();
        assert_eq!(
            param(&url, "code_challenge_method").as_deref(),
            Some("S256")
        );
        let back = self.authorize(&url, redirect, &state).await;
        let code = param(&back, "code").expect("no code in the redirect");
        (AuthorizationCode::new(code), verifier, nonce)
    }

    async fn introspect(&self, token: &str) -> Value {
        self.server
            .client
            .post(format!("{}/oauth2/introspect", self.server.url))
            .basic_auth("rp", Some(&self.secret))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// An error with its causes, one per line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!("\n  caused by: {c}"));
        cause = c.source();
    }
    text
}

/// The OAuth error code of a failed token request, or a panic naming what else went wrong.
fn server_error<T: std::fmt::Debug>(
    result: Result<
        T,
        RequestTokenError<
            impl std::error::Error + 'static,
            openidconnect::StandardErrorResponse<CoreErrorResponseType>,
        >,
    >,
) -> CoreErrorResponseType {
    match result {
        Err(RequestTokenError::ServerResponse(e)) => e.error().clone(),
        Err(other) => panic!("not an OAuth error response: {}", chain(&other)),
        Ok(v) => panic!("the request succeeded: {v:?}"),
    }
}

/// Verifies the ID token of `tokens` with the library: signature (JWKS), issuer, audience,
/// expiry, the nonce check `nonce` performs, that it is signed with `alg` and nothing else, and
/// that `at_hash` matches the access token. Returns the subject and `auth_time`.
fn verify_id_token(
    client: &Rp,
    tokens: &CoreTokenResponse,
    nonce: impl openidconnect::NonceVerifier,
    alg: CoreJwsSigningAlgorithm,
) -> (openidconnect::SubjectIdentifier, i64) {
    let id_token = tokens.id_token().expect("no ID token");
    let verifier = client.id_token_verifier().set_allowed_algs([alg.clone()]);
    assert_eq!(id_token.signing_alg().unwrap(), &alg);
    let claims = id_token
        .claims(&verifier, nonce)
        .unwrap_or_else(|e| panic!("ID token refused: {}", chain(&e)));
    let expected = claims.access_token_hash().expect("no at_hash");
    let actual = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(&actual, expected, "at_hash does not match the access token");
    assert_eq!(
        claims.audiences(),
        &[openidconnect::Audience::new(client.client_id().to_string())]
    );
    let auth_time = claims.auth_time().expect("no auth_time").timestamp();
    (claims.subject().clone(), auth_time)
}

#[tokio::test]
async fn the_library_discovers_the_issuer_and_every_published_key() {
    let p = Provider::start().await;
    let m = &p.metadata;
    assert_eq!(m.issuer().as_str(), p.server.url);
    assert_eq!(
        m.token_endpoint().unwrap().as_str(),
        format!("{}/oauth2/token", p.server.url)
    );
    assert_eq!(
        m.userinfo_endpoint().unwrap().as_str(),
        format!("{}/oauth2/userinfo", p.server.url)
    );
    let raw: Value = p
        .server
        .get("/oauth2/jwks", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        m.jwks().keys().len(),
        raw["keys"].as_array().unwrap().len(),
        "the library could not read every published key: {raw}"
    );
}

#[tokio::test]
async fn code_flow_with_pkce_and_nonce_then_userinfo_and_refresh() {
    let p = Provider::start().await;
    let rp = p.rp();
    let (code, verifier, nonce) = p.code(&rp, RP_REDIRECT, &["email"]).await;
    let tokens = rp
        .exchange_code(code)
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&p.http)
        .await
        .unwrap_or_else(|e| panic!("code exchange failed: {}", chain(&e)));
    assert_eq!(
        tokens.token_type(),
        &openidconnect::core::CoreTokenType::Bearer
    );
    assert!(tokens.expires_in().is_some());
    let (sub, auth_time) = verify_id_token(&rp, &tokens, &nonce, RS256);

    // The library enforces the nonce: another one is refused.
    let other = Nonce::new("not-the-nonce".into());
    assert!(
        tokens
            .id_token()
            .unwrap()
            .claims(&rp.id_token_verifier(), &other)
            .is_err(),
        "the ID token verified with a nonce it does not carry"
    );

    // And the signature: one changed byte of it and the token is refused.
    let jwt = tokens.id_token().unwrap().to_string();
    let signature_start = jwt.rfind('.').unwrap() + 1;
    let at = signature_start + (jwt.len() - signature_start) / 2;
    let flipped = if &jwt[at..=at] == "A" { "B" } else { "A" };
    let tampered: CoreIdToken = format!("{}{flipped}{}", &jwt[..at], &jwt[at + 1..])
        .parse()
        .unwrap();
    assert!(
        tampered.claims(&rp.id_token_verifier(), &nonce).is_err(),
        "an ID token with a broken signature verified"
    );

    let info: CoreUserInfoClaims = rp
        .user_info(tokens.access_token().clone(), Some(sub.clone()))
        .unwrap()
        .request_async(&p.http)
        .await
        .unwrap_or_else(|e| panic!("userinfo failed: {}", chain(&e)));
    assert_eq!(info.subject(), &sub);
    assert_eq!(info.email().map(|e| e.as_str()), Some(EMAIL));

    // Refresh: the chain rotates, the user and the authentication stay the same.
    let refresh = tokens.refresh_token().expect("no refresh token").clone();
    let refreshed = rp
        .exchange_refresh_token(&refresh)
        .unwrap()
        .request_async(&p.http)
        .await
        .unwrap_or_else(|e| panic!("refresh failed: {}", chain(&e)));
    let next = refreshed.refresh_token().expect("no new refresh token");
    assert_ne!(next.secret(), refresh.secret(), "the refresh token rotated");
    assert_ne!(
        refreshed.access_token().secret(),
        tokens.access_token().secret()
    );
    let original = nonce.secret().clone();
    let (sub2, auth_time2) = verify_id_token(
        &rp,
        &refreshed,
        move |n: Option<&Nonce>| {
            // OpenID Connect Core §12.2: a refreshed ID token need not repeat the nonce; if it does,
            // it must be the original one.
            match n {
                Some(n) if n.secret() != &original => Err(format!("nonce {n:?} changed")),
                _ => Ok(()),
            }
        },
        RS256,
    );
    assert_eq!(sub2, sub);
    assert_eq!(auth_time2, auth_time);
    let info: CoreUserInfoClaims = rp
        .user_info(refreshed.access_token().clone(), Some(sub.clone()))
        .unwrap()
        .request_async(&p.http)
        .await
        .unwrap_or_else(|e| panic!("userinfo with the refreshed token failed: {}", chain(&e)));
    assert_eq!(info.email().map(|e| e.as_str()), Some(EMAIL));

    assert_eq!(p.introspect(next.secret()).await["active"], true);
    assert_eq!(
        p.introspect(refresh.secret()).await["active"],
        false,
        "the old one is spent"
    );
}

#[tokio::test]
async fn a_code_is_refused_without_the_verifier_or_a_second_time() {
    let p = Provider::start().await;
    let rp = p.rp();

    let (code, verifier, _) = p.code(&rp, RP_REDIRECT, &[]).await;
    // PKCE is required of every client: without the verifier the code fails and is spent.
    let no_verifier = rp
        .exchange_code(code.clone())
        .unwrap()
        .request_async(&p.http)
        .await;
    assert_eq!(
        server_error(no_verifier),
        CoreErrorResponseType::InvalidGrant
    );
    let late = rp
        .exchange_code(code)
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&p.http)
        .await;
    assert_eq!(server_error(late), CoreErrorResponseType::InvalidGrant);

    let (code, _verifier, _) = p.code(&rp, RP_REDIRECT, &[]).await;
    let wrong_verifier = rp
        .exchange_code(code)
        .unwrap()
        .set_pkce_verifier(PkceCodeVerifier::new("x".repeat(43)))
        .request_async(&p.http)
        .await;
    assert_eq!(
        server_error(wrong_verifier),
        CoreErrorResponseType::InvalidGrant
    );

    let (code, verifier, _) = p.code(&rp, RP_REDIRECT, &[]).await;
    let same_verifier = PkceCodeVerifier::new(verifier.secret().clone());
    rp.exchange_code(code.clone())
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&p.http)
        .await
        .unwrap_or_else(|e| panic!("code exchange failed: {}", chain(&e)));
    let again = rp
        .exchange_code(code)
        .unwrap()
        .set_pkce_verifier(same_verifier)
        .request_async(&p.http)
        .await;
    assert_eq!(server_error(again), CoreErrorResponseType::InvalidGrant);
}

#[tokio::test]
async fn client_credentials_through_the_library() {
    let p = Provider::start().await;
    for auth in [AuthType::BasicAuth, AuthType::RequestBody] {
        let rp = p.rp().set_auth_type(auth.clone());
        let tokens = rp
            .exchange_client_credentials()
            .unwrap()
            .add_scope(Scope::new("read".into()))
            .add_extra_param("resource", API)
            .request_async(&p.http)
            .await
            .unwrap_or_else(|e| panic!("client credentials ({auth:?}) failed: {}", chain(&e)));
        assert_eq!(
            tokens.token_type(),
            &openidconnect::core::CoreTokenType::Bearer
        );
        assert!(
            tokens.refresh_token().is_none(),
            "no refresh token for a client"
        );
        assert!(tokens.id_token().is_none(), "no ID token for a client");
        assert_eq!(
            tokens
                .scopes()
                .map(|s| s.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
            Some(vec!["read".to_owned()])
        );
        let active = p.introspect(tokens.access_token().secret()).await;
        assert_eq!(active["active"], true);
        assert_eq!(active["aud"], API);
        assert_eq!(active["client_id"], "rp");
    }

    // A wrong secret is an OAuth error the library understands.
    let wrong = CoreClient::from_provider_metadata(
        p.metadata.clone(),
        ClientId::new("rp".into()),
        Some(ClientSecret::new("not the secret".into())),
    )
    .exchange_client_credentials()
    .unwrap()
    .add_scope(Scope::new("read".into()))
    .request_async(&p.http)
    .await;
    assert_eq!(server_error(wrong), CoreErrorResponseType::InvalidClient);
}

#[tokio::test]
async fn a_public_client_with_pkce_and_no_secret() {
    let p = Provider::start().await;
    // A native app listens on a loopback port of its choosing.
    let port = 49_152;
    let native = p.native(port);
    let redirect = format!("http://127.0.0.1:{port}/cb");

    let (code, verifier, nonce) = p.code(&native, &redirect, &["email"]).await;
    let tokens = native
        .exchange_code(code)
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&p.http)
        .await
        .unwrap_or_else(|e| panic!("public code exchange failed: {}", chain(&e)));
    let (sub, _) = verify_id_token(&native, &tokens, &nonce, RS256);
    let info: CoreUserInfoClaims = native
        .user_info(tokens.access_token().clone(), Some(sub))
        .unwrap()
        .request_async(&p.http)
        .await
        .unwrap_or_else(|e| panic!("userinfo failed: {}", chain(&e)));
    assert_eq!(info.email().map(|e| e.as_str()), Some(EMAIL));

    let refresh = tokens.refresh_token().expect("no refresh token").clone();
    let refreshed = native
        .exchange_refresh_token(&refresh)
        .unwrap()
        .request_async(&p.http)
        .await
        .unwrap_or_else(|e| panic!("public refresh failed: {}", chain(&e)));
    assert_ne!(
        refreshed.refresh_token().unwrap().secret(),
        refresh.secret()
    );

    // Without the verifier a public client has nothing to prove it started the request: the
    // code fails and is spent.
    let (code, _, _) = p.code(&native, &redirect, &[]).await;
    let no_verifier = native
        .exchange_code(code)
        .unwrap()
        .request_async(&p.http)
        .await;
    assert_eq!(
        server_error(no_verifier),
        CoreErrorResponseType::InvalidGrant
    );

    // Nor can it use the confidential client's grant.
    let cc = native
        .exchange_client_credentials()
        .unwrap()
        .request_async(&p.http)
        .await;
    assert_eq!(server_error(cc), CoreErrorResponseType::UnauthorizedClient);
}

#[tokio::test]
async fn id_tokens_signed_with_es256_and_eddsa_verify_in_the_library() {
    let p = Provider::start().await;
    let state = &p.server.running().unwrap().state;
    for (id, alg, theirs) in [
        (
            "rp-es256",
            SigningAlg::Es256,
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        ),
        (
            "rp-eddsa",
            SigningAlg::EdDsa,
            CoreJwsSigningAlgorithm::EdDsa,
        ),
    ] {
        let mut registered = client(
            id,
            RP_REDIRECT,
            &[GrantType::AuthorizationCode, GrantType::RefreshToken],
        );
        registered.id_token_alg = alg;
        let (_, secret) = state.oauth.register_client(registered, true).await.unwrap();
        let rp: Rp = CoreClient::from_provider_metadata(
            p.metadata.clone(),
            ClientId::new(id.into()),
            Some(ClientSecret::new(secret.unwrap())),
        )
        .set_redirect_uri(RedirectUrl::new(RP_REDIRECT.into()).unwrap());
        let (code, verifier, nonce) = p.code(&rp, RP_REDIRECT, &[]).await;
        let tokens = rp
            .exchange_code(code)
            .unwrap()
            .set_pkce_verifier(verifier)
            .request_async(&p.http)
            .await
            .unwrap_or_else(|e| panic!("{id}: code exchange failed: {}", chain(&e)));
        verify_id_token(&rp, &tokens, &nonce, theirs);
        // The library allows what discovery advertises; a relying party that insists on RS256
        // refuses the token, so the signature check is not a formality.
        let rs256_only = rp.id_token_verifier().set_allowed_algs([RS256]);
        assert!(
            tokens
                .id_token()
                .unwrap()
                .claims(&rs256_only, &nonce)
                .is_err(),
            "{id}: an RS256-only verifier accepted {alg:?}"
        );
    }
}

/// Issue 14 item 11: a standard client asking a refresh for fewer scopes gets exactly those
/// (RFC 6749 §6); the grant keeps its original scope for the next refresh.
#[tokio::test]
async fn a_refresh_for_fewer_scopes_gets_exactly_those() {
    let p = Provider::start().await;
    let rp = p.rp();
    let (code, verifier, _) = p.code(&rp, RP_REDIRECT, &["email"]).await;
    let tokens = rp
        .exchange_code(code)
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&p.http)
        .await
        .unwrap_or_else(|e| panic!("code exchange failed: {}", chain(&e)));
    let refresh = tokens.refresh_token().expect("no refresh token").clone();
    let narrowed = rp
        .exchange_refresh_token(&refresh)
        .unwrap()
        .add_scope(Scope::new("openid".into()))
        .request_async(&p.http)
        .await
        .unwrap_or_else(|e| panic!("refresh failed: {}", chain(&e)));
    let scopes: Vec<String> = narrowed
        .scopes()
        .expect("the response names the scope")
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(scopes, ["openid"]);
    let at = p.introspect(narrowed.access_token().secret()).await;
    assert_eq!(at["scope"], "openid");
    // The next refresh without `scope` gets the whole grant back.
    let next = narrowed.refresh_token().expect("no new refresh token");
    let full = rp
        .exchange_refresh_token(next)
        .unwrap()
        .request_async(&p.http)
        .await
        .unwrap_or_else(|e| panic!("refresh failed: {}", chain(&e)));
    let mut scopes: Vec<String> = full
        .scopes()
        .expect("the response names the scope")
        .iter()
        .map(|s| s.to_string())
        .collect();
    scopes.sort();
    assert_eq!(scopes, ["email", "openid"]);
}

#[tokio::test]
async fn acr_values_step_up_then_the_library_reads_acr_and_amr() {
    use authx_core::clock::Clock as _;
    use authx_core::mfa::totp::Totp;
    use openidconnect::{AuthenticationContextClass, AuthenticationMethodReference};

    let p = Provider::start().await;
    // The user (signed in with the password alone) enrols an authenticator app.
    let secret = p.server.enrol_totp(EMAIL).await.unwrap();

    let rp = p.rp();
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf_state, nonce) = rp
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge)
        .add_auth_context_value(AuthenticationContextClass::new("urn:authx:acr:mfa".into()))
        .url();
    // The provider sends the browser to prove the second factor first.
    let res = p
        .server
        .client
        .get(url.as_str())
        .header("cookie", &p.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let step_up = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        step_up.starts_with("/login/step-up?return_to="),
        "{step_up}"
    );
    let page = p.server.get(&step_up, Some(&p.cookie)).await.unwrap();
    assert_eq!(page.status(), 200);
    let cookies: Vec<String> = authx_testkit::set_cookies(&page)
        .into_iter()
        .filter_map(|c| c.split(';').next().map(str::to_owned))
        .collect();
    let html = page.text().await.unwrap();
    let csrf = html
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let jar = format!("{}; {}", p.cookie, cookies.join("; "));
    let code = Totp::new(&secret).code_at(p.server.clock.now());
    let res = p
        .server
        .client
        .post(format!("{}/login/second-factor", p.server.url))
        .header("origin", p.server.origin())
        .header("cookie", &jar)
        .form(&[("code", code.as_str()), ("csrf_token", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let session = authx_testkit::session_cookie(&res).expect("a stepped-up session");
    let resume = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(resume.starts_with("/oauth2/authorize?"), "{resume}");
    let res = p
        .server
        .client
        .get(format!("{}{resume}", p.server.url))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    let back = Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(
        param(&back, "state").as_deref(),
        Some(csrf_state.secret().as_str())
    );
    let code = AuthorizationCode::new(param(&back, "code").expect("a code"));
    let tokens = rp
        .exchange_code(code)
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&p.http)
        .await
        .unwrap_or_else(|e| panic!("code exchange failed: {}", chain(&e)));
    verify_id_token(&rp, &tokens, &nonce, RS256);
    let claims = tokens
        .id_token()
        .unwrap()
        .claims(&rp.id_token_verifier(), &nonce)
        .unwrap();
    assert_eq!(
        claims.auth_context_ref().map(|a| a.as_str()),
        Some("urn:authx:acr:mfa")
    );
    let amr: Vec<&str> = claims
        .auth_method_refs()
        .expect("amr")
        .iter()
        .map(|m: &AuthenticationMethodReference| m.as_str())
        .collect();
    assert_eq!(amr, ["pwd", "otp", "mfa"]);
    // Discovery tells the library which classes exist.
    let supported: Vec<&str> = p
        .metadata
        .acr_values_supported()
        .expect("acr_values_supported")
        .iter()
        .map(|a| a.as_str())
        .collect();
    assert!(supported.contains(&"urn:authx:acr:mfa"), "{supported:?}");
}
