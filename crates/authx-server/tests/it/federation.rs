//! Federation (issue #7): signing in through an upstream OpenID provider ends in a local
//! session, and every defect of SECURITY.md §Federation (#61-#65) is refused with no session.
//!
//! The happy paths run against a second authx instance as the upstream provider; the defects
//! come from a fake upstream served by the test itself (discovery, JWKS and token endpoint
//! with a test signing key), which sends exactly the defect each test names.

use std::sync::{Arc, Mutex};

use authx_core::Timestamp;
use authx_core::oauth::client::{Client as OAuthClient, GrantType};
use authx_core::oauth::jwt;
use authx_core::oauth::keys::{KeyEncryptor, Signer, SigningAlg, generate};
use authx_core::secret::{TokenHash, b64url, random_bytes};
use authx_server::config::{ClaimsFile, FederationFile, FileConfig, ProviderFile, SecretString};
use authx_testkit::{PASSWORD, TestServer, session_cookie, set_cookies};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub const CLIENT_ID: &str = "authx-rp";
pub const PROVIDER: &str = "corp";

/// The provider block of the local server's configuration.
pub fn provider_file(issuer: &str, secret: &str, allow_sign_up: bool) -> ProviderFile {
    ProviderFile {
        name: PROVIDER.into(),
        display_name: Some("Corp SSO".into()),
        issuer: issuer.into(),
        client_id: CLIENT_ID.into(),
        client_secret: Some(SecretString::new(secret)),
        scopes: Some(vec!["openid".into(), "email".into()]),
        allow_sign_up: Some(allow_sign_up),
        token_endpoint_auth_method: None,
        claims: Some(ClaimsFile::default()),
        insecure_allow_http_loopback: Some(true),
        trust_upstream_mfa: None,
    }
}

/// A local server whose one upstream provider is `issuer`.
pub async fn local_server(issuer: &str, secret: &str, allow_sign_up: bool) -> TestServer {
    let (issuer, secret) = (issuer.to_owned(), secret.to_owned());
    TestServer::start_with(move |f: &mut FileConfig| {
        f.federation = Some(FederationFile {
            providers: Some(vec![provider_file(&issuer, &secret, allow_sign_up)]),
            ..FederationFile::default()
        });
    })
    .await
    .unwrap()
}

/// Registers the local server as a first-party confidential client of an upstream authx,
/// with a secret chosen by the test (the local server is configured with it before it has the
/// port the upstream needs for its redirect URI).
pub async fn register_rp(upstream: &TestServer, local: &TestServer, secret: &str) {
    let client = OAuthClient {
        id: CLIENT_ID.into(),
        name: "authx downstream".into(),
        secret_hash: Some(TokenHash::of(secret.as_bytes())),
        token_endpoint_auth_method:
            authx_core::oauth::client::TokenEndpointAuthMethod::ClientSecretBasic,
        jwks: None,
        jwks_uri: None,
        dpop_bound_access_tokens: false,
        redirect_uris: vec![format!("{}/federation/{PROVIDER}/callback", local.url)],
        post_logout_redirect_uris: Vec::new(),
        backchannel_logout_uri: None,
        grant_types: vec![GrantType::AuthorizationCode],
        scopes: vec!["openid".into(), "email".into()],
        resources: vec![],
        first_party: true,
        require_pushed_authorization_requests: false,
        require_acr: None,
        id_token_alg: SigningAlg::Rs256,
        access_token_ttl_secs: 900,
        refresh_token_ttl_secs: 86_400,
        refresh_idle_secs: 86_400,
        created_at: Timestamp(0),
    };
    upstream
        .running()
        .unwrap()
        .state
        .oauth
        .stores()
        .clients
        .put_client(&client)
        .await
        .unwrap();
}

/// The value of a cookie set by a response.
fn cookie_named(res: &reqwest::Response, name: &str) -> Option<String> {
    set_cookies(res)
        .into_iter()
        .filter_map(|c| c.split(';').next().map(str::to_owned))
        .find(|nv| {
            nv.split_once('=')
                .is_some_and(|(n, v)| n == name && !v.is_empty())
        })
}

fn location(res: &reqwest::Response) -> String {
    res.headers()["location"].to_str().unwrap().to_owned()
}

fn param(url: &str, name: &str) -> Option<String> {
    let q = url.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Starts an upstream sign-in at the local server: (the upstream authorization URL, the
/// browser-binding cookie).
async fn start(local: &TestServer, return_to: &str) -> (String, String) {
    let res = local
        .get(
            &format!(
                "/federation/{PROVIDER}/start?return_to={}",
                urlencode(return_to)
            ),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let binding = cookie_named(&res, "authx_federation").expect("no binding cookie");
    (location(&res), binding)
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Follows an authorization URL at an upstream authx with its session cookie; returns the
/// callback URL it redirects to.
async fn authorize_upstream(upstream: &TestServer, url: &str, cookie: &str) -> String {
    let res = upstream
        .client
        .get(url)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert!(
        matches!(res.status().as_u16(), 302 | 303),
        "{}",
        res.text().await.unwrap_or_default()
    );
    location(&res)
}

/// Delivers a callback URL to the local server with the given cookies.
async fn callback(local: &TestServer, url: &str, cookies: &[&str]) -> reqwest::Response {
    let mut req = local.client.get(url);
    if !cookies.is_empty() {
        req = req.header("cookie", cookies.join("; "));
    }
    req.send().await.unwrap()
}

async fn user_count(server: &TestServer) -> usize {
    server
        .running()
        .unwrap()
        .state
        .auth
        .stores()
        .accounts
        .list_users()
        .await
        .unwrap()
        .len()
}

async fn me(local: &TestServer, cookie: &str) -> Value {
    let res = local.get("/api/v1/me", Some(cookie)).await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// A local account without a password, linked to the upstream identity `(issuer, subject)` as
/// an earlier sign-in with a verified email (or an administrator) would have left it.
pub async fn linked_account(
    local: &TestServer,
    issuer: &str,
    subject: &str,
    email: &str,
) -> authx_core::user::UserId {
    let state = &local.running().unwrap().state;
    let now = authx_core::Clock::now(&local.clock);
    let user = authx_core::user::User {
        id: authx_core::user::UserId::generate(),
        email: email.into(),
        password_hash: authx_core::federation::NO_PASSWORD.into(),
        status: authx_core::user::UserStatus::Active,
        is_admin: false,
        created_at: now,
        password_changed_at: now,
        email_verified: false,
    };
    state
        .auth
        .stores()
        .accounts
        .create_user(&user)
        .await
        .unwrap();
    let identity = authx_core::federation::UpstreamIdentity {
        provider: PROVIDER.into(),
        issuer: issuer.into(),
        subject: subject.into(),
        email: Some(email.into()),
        email_verified: true,
        upstream_mfa: false,
    };
    state
        .federation
        .create_link(&authx_core::federation::new_link(&identity, &user.id, now))
        .await
        .unwrap();
    user.id
}

#[tokio::test]
async fn sign_in_through_a_second_authx_ends_in_a_local_session() {
    let upstream = TestServer::start().await.unwrap();
    let ada_upstream = upstream
        .create_user("ada@corp.example", PASSWORD)
        .await
        .unwrap();
    // The secret is known before the local server starts; the upstream learns the callback
    // URL once the local server has a port.
    let secret = b64url(&random_bytes::<32>());
    let local = local_server(&upstream.url, &secret, true).await;
    register_rp(&upstream, &local, &secret).await;

    // The sign-in page offers the provider.
    let login = local.get("/login?return_to=/account", None).await.unwrap();
    let html = login.text().await.unwrap();
    assert!(
        html.contains(&format!(
            "/federation/{PROVIDER}/start?return_to=%2Faccount"
        )),
        "{html}"
    );
    assert!(html.contains("Corp SSO"));

    let (authorize, binding) = start(&local, "/account?from=sso").await;
    assert!(authorize.starts_with(&format!("{}/oauth2/authorize?", upstream.url)));
    assert_eq!(
        param(&authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(param(&authorize, "nonce").is_some_and(|n| n.len() >= 43));
    assert!(param(&authorize, "state").is_some_and(|s| s.len() == 43));
    assert_eq!(param(&authorize, "client_id").as_deref(), Some(CLIENT_ID));

    let upstream_cookie = upstream
        .sign_in("ada@corp.example", PASSWORD)
        .await
        .unwrap();
    let back = authorize_upstream(&upstream, &authorize, &upstream_cookie).await;
    assert!(back.starts_with(&format!("{}/federation/{PROVIDER}/callback?", local.url)));
    assert_eq!(param(&back, "iss").as_deref(), Some(upstream.url.as_str()));

    // Issue 14 item 14: authx does not verify emails (its ID tokens say `email_verified:
    // false`), so although sign-up is allowed, the stranger's address creates nothing.
    let res = callback(&local, &back, &[&binding]).await;
    assert_eq!(res.status(), 403);
    assert!(session_cookie(&res).is_none());
    let body = res.text().await.unwrap();
    assert!(body.contains("did not verify your email address"), "{body}");
    assert_eq!(user_count(&local).await, 0, "an account was created");
    assert!(
        local
            .running()
            .unwrap()
            .state
            .federation
            .link(&upstream.url, &ada_upstream.id.0)
            .await
            .unwrap()
            .is_none(),
        "a link was made"
    );
    // An identity already linked to a local account signs in through the upstream.
    linked_account(
        &local,
        &upstream.url,
        &ada_upstream.id.0,
        "ada@corp.example",
    )
    .await;
    let (authorize, binding) = start(&local, "/account?from=sso").await;
    let back = authorize_upstream(&upstream, &authorize, &upstream_cookie).await;
    let res = callback(&local, &back, &[&binding]).await;
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    assert_eq!(location(&res), "/account?from=sso");
    let cookie = session_cookie(&res).expect("no local session");
    let who = me(&local, &cookie).await;
    assert_eq!(who["user"]["email"], "ada@corp.example");
    assert_eq!(user_count(&local).await, 1);

    // The account page lists the link, and offers no password form: there is no password.
    let page = local.get("/account", Some(&cookie)).await.unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains("id=\"links\""), "{html}");
    assert!(html.contains("Corp SSO"));
    assert!(html.contains("id=\"no-password\""));
    assert!(!html.contains("id=\"password\""));

    // Replaying the callback is refused and creates nothing.
    let replay = callback(&local, &back, &[&binding]).await;
    assert_eq!(replay.status(), 400);
    assert!(session_cookie(&replay).is_none());

    // A second sign-in finds the same account by (issuer, subject).
    let (authorize, binding) = start(&local, "/account").await;
    let back = authorize_upstream(&upstream, &authorize, &upstream_cookie).await;
    let res = callback(&local, &back, &[&binding, &cookie]).await;
    assert_eq!(res.status(), 303);
    let second = session_cookie(&res).unwrap();
    assert_ne!(second, cookie, "a fresh session");
    assert_eq!(me(&local, &second).await["user"]["id"], who["user"]["id"]);
    // The session the request carried was ended (fixation defence).
    assert_eq!(
        local
            .get("/api/v1/me", Some(&cookie))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(user_count(&local).await, 1);

    // An existing local account with the same email is never taken over: authx upstreams do
    // not verify emails, so the identity is refused.
    let (authorize, binding) = start(&local, "/account").await;
    upstream
        .create_user("bob@corp.example", PASSWORD)
        .await
        .unwrap();
    local
        .create_user("bob@corp.example", PASSWORD)
        .await
        .unwrap();
    let bob_upstream = upstream
        .sign_in("bob@corp.example", PASSWORD)
        .await
        .unwrap();
    let back = authorize_upstream(&upstream, &authorize, &bob_upstream).await;
    let res = callback(&local, &back, &[&binding]).await;
    assert_eq!(res.status(), 403);
    assert!(session_cookie(&res).is_none());
    assert!(res.text().await.unwrap().contains("already exists"));

    local.stop().await;
    upstream.stop().await;
}

/// Issue 14 item 14: with `allow_sign_up`, an upstream identity whose email is not verified
/// (a second authx never verifies emails) is refused with a page that says so, and creates
/// neither an account, nor a link, nor a session; the address stays free for its owner.
#[tokio::test]
async fn an_unverified_upstream_email_creates_no_account() {
    let upstream = TestServer::start().await.unwrap();
    let dora = upstream
        .create_user("dora@corp.example", PASSWORD)
        .await
        .unwrap();
    let secret = b64url(&random_bytes::<32>());
    let local = local_server(&upstream.url, &secret, true).await;
    register_rp(&upstream, &local, &secret).await;
    let upstream_cookie = upstream
        .sign_in("dora@corp.example", PASSWORD)
        .await
        .unwrap();

    for _ in 0..2 {
        let (authorize, binding) = start(&local, "/account").await;
        let back = authorize_upstream(&upstream, &authorize, &upstream_cookie).await;
        let res = callback(&local, &back, &[&binding]).await;
        assert_eq!(res.status(), 403);
        assert!(cookie_named(&res, "authx_federation_link").is_none());
        let body = assert_refused(&local, res, 0).await;
        assert!(body.contains("did not verify your email address"), "{body}");
        assert!(body.contains("Corp SSO"), "{body}");
    }
    let state = &local.running().unwrap().state;
    assert!(
        state
            .federation
            .link(&upstream.url, &dora.id.0)
            .await
            .unwrap()
            .is_none(),
        "a link was made"
    );

    // The address is still free: its owner signs up with it.
    let res = local
        .client
        .post(format!("{}/api/v1/auth/sign-up", local.url))
        .header("origin", local.origin())
        .json(&json!({"email": "dora@corp.example", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        201,
        "{}",
        res.text().await.unwrap_or_default()
    );

    local.stop().await;
    upstream.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The fake upstream.

/// What the fake upstream does; tests change it between steps.
pub struct FakeConfig {
    /// The issuer its discovery document states (default: its own URL).
    pub discovery_issuer: Option<String>,
    /// Whether it advertises RFC 9207 `iss`.
    pub iss_supported: bool,
    /// Where `/jwks` redirects instead of answering.
    pub jwks_redirect: Option<String>,
    /// The nonce to put into ID tokens (set by the test from the authorization URL).
    pub nonce: String,
    /// Changes the claims of the next ID token.
    pub mutate: Box<dyn Fn(&mut Value) + Send>,
    /// Signs ID tokens instead of the published key (same kid: a bad signature).
    pub evil_signer: Option<Arc<Signer>>,
    /// Raw ID token to send instead.
    pub raw_id_token: Option<String>,
    /// What the token endpoint received.
    pub token_requests: Vec<String>,
    /// How often the key set was fetched.
    pub jwks_fetches: usize,
    /// The `jwks_uri` its discovery document states (default: its own `/jwks`).
    pub jwks_uri: Option<String>,
    /// The token endpoint answers 400 with this error code.
    pub token_error: Option<&'static str>,
}

#[derive(Clone)]
pub struct Fake {
    pub url: String,
    pub config: Arc<Mutex<FakeConfig>>,
    signer: Arc<Signer>,
}

fn test_signer(kid: Option<&str>) -> Signer {
    let enc = KeyEncryptor::new(&[5u8; 32]).unwrap();
    let k = generate(SigningAlg::Es256, &enc, Timestamp(0)).unwrap();
    let pkcs8 = enc.open(&k.kid, &k.private_key_encrypted).unwrap();
    Signer::from_pkcs8(SigningAlg::Es256, kid.unwrap_or(&k.kid), &pkcs8).unwrap()
}

impl Fake {
    pub async fn start() -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let fake = Fake {
            url,
            config: Arc::new(Mutex::new(FakeConfig {
                discovery_issuer: None,
                iss_supported: true,
                jwks_redirect: None,
                nonce: String::new(),
                mutate: Box::new(|_: &mut Value| {}),
                evil_signer: None,
                raw_id_token: None,
                token_requests: Vec::new(),
                jwks_fetches: 0,
                jwks_uri: None,
                token_error: None,
            })),
            signer: Arc::new(test_signer(None)),
        };
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(fake_discovery),
            )
            .route("/jwks", axum::routing::get(fake_jwks))
            .route("/token", axum::routing::post(fake_token))
            .with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fake
    }

    /// A signer with the published key's kid but another private key.
    pub fn evil_signer(&self) -> Arc<Signer> {
        Arc::new(test_signer(Some(self.signer.kid())))
    }

    fn set(&self, f: impl FnOnce(&mut FakeConfig)) {
        f(&mut self.config.lock().unwrap());
    }

    /// The claims of a good ID token for `nonce`.
    fn claims(&self, nonce: &str) -> Value {
        let now = time_now();
        json!({
            "iss": self.url, "sub": "fake-user-1", "aud": CLIENT_ID, "exp": now + 300,
            "iat": now, "nonce": nonce, "email": "carol@partner.example", "email_verified": true,
        })
    }
}

fn time_now() -> i64 {
    authx_core::Clock::now(&authx_core::SystemClock).secs()
}

async fn fake_discovery(State(f): State<Fake>) -> Response {
    let c = f.config.lock().unwrap();
    axum::Json(json!({
        "issuer": c.discovery_issuer.clone().unwrap_or_else(|| f.url.clone()),
        "authorization_endpoint": format!("{}/authorize", f.url),
        "token_endpoint": format!("{}/token", f.url),
        "jwks_uri": c.jwks_uri.clone().unwrap_or_else(|| format!("{}/jwks", f.url)),
        "authorization_response_iss_parameter_supported": c.iss_supported,
    }))
    .into_response()
}

async fn fake_jwks(State(f): State<Fake>) -> Response {
    let redirect = {
        let mut c = f.config.lock().unwrap();
        c.jwks_fetches += 1;
        c.jwks_redirect.clone()
    };
    if let Some(to) = redirect {
        return (
            axum::http::StatusCode::FOUND,
            [(axum::http::header::LOCATION, to)],
        )
            .into_response();
    }
    axum::Json(json!({"keys": [f.signer.public_jwk()]})).into_response()
}

async fn fake_token(State(f): State<Fake>, body: String) -> Response {
    let mut c = f.config.lock().unwrap();
    c.token_requests.push(body);
    if let Some(error) = c.token_error {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": error})),
        )
            .into_response();
    }
    let access_token = "fake-access-token";
    let id_token = match &c.raw_id_token {
        Some(t) => t.clone(),
        None => {
            let mut claims = f.claims(&c.nonce);
            claims["at_hash"] = json!(jwt::at_hash(access_token, SigningAlg::Es256));
            (c.mutate)(&mut claims);
            let signer = c
                .evil_signer
                .clone()
                .unwrap_or_else(|| Arc::clone(&f.signer));
            jwt::sign(&signer, "JWT", &claims).unwrap()
        }
    };
    axum::Json(json!({
        "access_token": access_token, "token_type": "Bearer", "expires_in": 300,
        "id_token": id_token,
    }))
    .into_response()
}

/// One upstream sign-in against the fake: start, then the callback the fake would send
/// (`iss` as given), with the binding cookie unless `cookies` says otherwise.
struct Attempt {
    state: String,
    binding: String,
}

async fn begin(local: &TestServer, fake: &Fake) -> Attempt {
    let (authorize, binding) = start(local, "/account").await;
    assert!(authorize.starts_with(&format!("{}/authorize?", fake.url)));
    let nonce = param(&authorize, "nonce").unwrap();
    fake.set(|c| c.nonce = nonce);
    Attempt {
        state: param(&authorize, "state").unwrap(),
        binding,
    }
}

fn callback_url(local: &TestServer, state: &str, iss: Option<&str>) -> String {
    let mut url = format!(
        "{}/federation/{PROVIDER}/callback?code=fake-code&state={}",
        local.url,
        urlencode(state)
    );
    if let Some(iss) = iss {
        url.push_str(&format!("&iss={}", urlencode(iss)));
    }
    url
}

async fn fake_setup(allow_sign_up: bool) -> (Fake, TestServer) {
    let fake = Fake::start().await;
    let local = local_server(&fake.url, "fake-secret", allow_sign_up).await;
    (fake, local)
}

/// Asserts a refusal: a readable page, not a 500, no session cookie, and no account made.
async fn assert_refused(local: &TestServer, res: reqwest::Response, users_before: usize) -> String {
    let status = res.status();
    assert!(status.is_client_error() || status == 502, "status {status}");
    assert!(session_cookie(&res).is_none(), "a session was created");
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let body = res.text().await.unwrap();
    assert!(body.contains("<h1>"), "{body}");
    assert_eq!(
        user_count(local).await,
        users_before,
        "an account was created"
    );
    body
}

#[tokio::test]
async fn a_good_fake_sign_in_works_and_uses_pkce_and_basic_auth() {
    let (fake, local) = fake_setup(true).await;
    let a = begin(&local, &fake).await;
    let res = callback(
        &local,
        &callback_url(&local, &a.state, Some(&fake.url)),
        &[&a.binding],
    )
    .await;
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let cookie = session_cookie(&res).unwrap();
    assert_eq!(
        me(&local, &cookie).await["user"]["email"],
        "carol@partner.example"
    );
    let req = fake.config.lock().unwrap().token_requests.pop().unwrap();
    assert!(req.contains("code_verifier="), "{req}");
    assert!(req.contains("grant_type=authorization_code"));
    assert!(
        !req.contains("client_secret"),
        "the secret goes in Basic auth"
    );
}

/// Each defect in the ID token is refused and creates neither an account nor a session.
#[tokio::test]
async fn id_token_defects_are_refused() {
    let (fake, local) = fake_setup(true).await;
    type Mutation = Box<dyn Fn(&mut Value) + Send>;
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "wrong iss",
            Box::new(|c: &mut Value| c["iss"] = json!("https://evil.example")),
        ),
        (
            "wrong aud",
            Box::new(|c: &mut Value| c["aud"] = json!("someone-else")),
        ),
        (
            "expired",
            Box::new(|c: &mut Value| c["exp"] = json!(time_now() - 3600)),
        ),
        (
            "issued in the future",
            Box::new(|c: &mut Value| c["iat"] = json!(time_now() + 3600)),
        ),
        (
            "nonce mismatch",
            Box::new(|c: &mut Value| c["nonce"] = json!("not-the-nonce")),
        ),
        (
            "no nonce",
            Box::new(|c: &mut Value| {
                c.as_object_mut().unwrap().remove("nonce");
            }),
        ),
        (
            "at_hash mismatch",
            Box::new(|c: &mut Value| c["at_hash"] = json!("AAAAAAAAAAAAAAAAAAAAAA")),
        ),
        (
            "multi-aud without azp",
            Box::new(|c: &mut Value| c["aud"] = json!([CLIENT_ID, "other"])),
        ),
        (
            "exp as a string",
            Box::new(|c: &mut Value| c["exp"] = json!((time_now() + 300).to_string())),
        ),
    ];
    for (name, mutate) in cases {
        fake.set(|c| c.mutate = mutate);
        let a = begin(&local, &fake).await;
        let res = callback(
            &local,
            &callback_url(&local, &a.state, Some(&fake.url)),
            &[&a.binding],
        )
        .await;
        let body = assert_refused(&local, res, 0).await;
        assert!(body.contains("cannot be trusted"), "{name}: {body}");
    }
    fake.set(|c| c.mutate = Box::new(|_: &mut Value| {}));

    // A signature by another key under the published kid.
    let evil = fake.evil_signer();
    fake.set(|c| c.evil_signer = Some(evil));
    let a = begin(&local, &fake).await;
    let res = callback(
        &local,
        &callback_url(&local, &a.state, Some(&fake.url)),
        &[&a.binding],
    )
    .await;
    let body = assert_refused(&local, res, 0).await;
    assert!(body.contains("signature"), "{body}");
    fake.set(|c| c.evil_signer = None);

    // alg=none.
    let a = begin(&local, &fake).await;
    let nonce = fake.config.lock().unwrap().nonce.clone();
    let claims = fake.claims(&nonce);
    let none = format!(
        "{}.{}.",
        b64url(json!({"alg": "none", "typ": "JWT"}).to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    fake.set(|c| c.raw_id_token = Some(none));
    let res = callback(
        &local,
        &callback_url(&local, &a.state, Some(&fake.url)),
        &[&a.binding],
    )
    .await;
    assert_refused(&local, res, 0).await;
    fake.set(|c| c.raw_id_token = None);

    // Still healthy: a good sign-in goes through afterwards.
    let a = begin(&local, &fake).await;
    let res = callback(
        &local,
        &callback_url(&local, &a.state, Some(&fake.url)),
        &[&a.binding],
    )
    .await;
    assert_eq!(res.status(), 303);
}

/// The callback's own defects: state missing, unknown, replayed, or from another browser;
/// `iss` missing or another issuer's (mix-up).
#[tokio::test]
async fn callback_defects_are_refused() {
    let (fake, local) = fake_setup(true).await;

    // Missing and forged state.
    let a = begin(&local, &fake).await;
    let no_state = format!(
        "{}/federation/{PROVIDER}/callback?code=c&iss={}",
        local.url,
        urlencode(&fake.url)
    );
    assert_refused(&local, callback(&local, &no_state, &[&a.binding]).await, 0).await;
    let forged = callback_url(&local, &b64url(&random_bytes::<32>()), Some(&fake.url));
    assert_refused(&local, callback(&local, &forged, &[&a.binding]).await, 0).await;

    // Another browser: no binding cookie, or another browser's binding cookie. The state is
    // spent by the attempt, so the victim's own callback fails too (no login CSRF).
    let a = begin(&local, &fake).await;
    let url = callback_url(&local, &a.state, Some(&fake.url));
    let res = callback(&local, &url, &[]).await;
    let body = assert_refused(&local, res, 0).await;
    assert!(body.contains("another browser"), "{body}");
    let a = begin(&local, &fake).await;
    let other = begin(&local, &fake).await;
    let url = callback_url(&local, &a.state, Some(&fake.url));
    assert_refused(&local, callback(&local, &url, &[&other.binding]).await, 0).await;

    // Mix-up: another issuer's iss, or none from an upstream that promises it.
    let a = begin(&local, &fake).await;
    let url = callback_url(&local, &a.state, Some("https://other-idp.example"));
    let body = assert_refused(&local, callback(&local, &url, &[&a.binding]).await, 0).await;
    assert!(body.contains("another identity provider"), "{body}");
    let a = begin(&local, &fake).await;
    let url = callback_url(&local, &a.state, None);
    assert_refused(&local, callback(&local, &url, &[&a.binding]).await, 0).await;
    assert!(
        fake.config.lock().unwrap().token_requests.is_empty(),
        "a code was redeemed before the checks"
    );

    // Replay: a successful callback, then the same again.
    let a = begin(&local, &fake).await;
    let url = callback_url(&local, &a.state, Some(&fake.url));
    let res = callback(&local, &url, &[&a.binding]).await;
    assert_eq!(res.status(), 303);
    let replay = callback(&local, &url, &[&a.binding]).await;
    let body = assert_refused(&local, replay, 1).await;
    assert!(body.contains("already completed"), "{body}");

    // An upstream error is shown, not a 500.
    let a = begin(&local, &fake).await;
    let url = format!(
        "{}&error=access_denied",
        callback_url(&local, &a.state, Some(&fake.url))
    );
    assert_refused(&local, callback(&local, &url, &[&a.binding]).await, 1).await;
    // Repeated parameters are refused.
    let url = format!(
        "{}&state=again",
        callback_url(&local, &a.state, Some(&fake.url))
    );
    assert_refused(&local, callback(&local, &url, &[&a.binding]).await, 1).await;
}

/// nOAuth: an upstream asserting the victim's email under a new subject never gets the
/// victim's session. Unverified: refused. Verified: only after the victim's own password.
#[tokio::test]
async fn an_existing_account_is_linked_only_with_a_verified_email_and_its_password() {
    let (fake, local) = fake_setup(true).await;
    let victim = local
        .create_user("carol@partner.example", PASSWORD)
        .await
        .unwrap();

    fake.set(|c| c.mutate = Box::new(|c: &mut Value| c["email_verified"] = json!(false)));
    let a = begin(&local, &fake).await;
    let url = callback_url(&local, &a.state, Some(&fake.url));
    let body = assert_refused(&local, callback(&local, &url, &[&a.binding]).await, 1).await;
    assert!(body.contains("does not confirm"), "{body}");

    // Verified: a pending link, no session yet.
    fake.set(|c| c.mutate = Box::new(|_: &mut Value| {}));
    let a = begin(&local, &fake).await;
    let url = callback_url(&local, &a.state, Some(&fake.url));
    let res = callback(&local, &url, &[&a.binding]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/federation/link");
    assert!(
        session_cookie(&res).is_none(),
        "signed in without the password"
    );
    let link_cookie = cookie_named(&res, "authx_federation_link").unwrap();

    let page = local
        .get("/federation/link", Some(&link_cookie))
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let pre = cookie_named(&page, "authx_csrf").unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains("carol@partner.example"));
    let csrf = html
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let cookies = format!("{link_cookie}; {pre}");
    let post = |password: &'static str, csrf: String, cookies: String| {
        let local = &local;
        async move {
            local
                .client
                .post(format!("{}/federation/link", local.url))
                .header("origin", &local.url)
                .header("cookie", cookies)
                .form(&[("password", password), ("csrf_token", csrf.as_str())])
                .send()
                .await
                .unwrap()
        }
    };
    // A wrong password links nothing; a missing CSRF token is refused.
    let wrong = post(
        "not the right password at all",
        csrf.clone(),
        cookies.clone(),
    )
    .await;
    assert_eq!(wrong.status(), 401);
    assert!(session_cookie(&wrong).is_none());
    let no_csrf = post(PASSWORD, String::new(), cookies.clone()).await;
    assert_eq!(no_csrf.status(), 403);
    let links = local
        .running()
        .unwrap()
        .state
        .federation
        .user_links(&victim.id)
        .await
        .unwrap();
    assert!(links.is_empty());

    let ok = post(PASSWORD, csrf, cookies).await;
    assert_eq!(ok.status(), 303);
    assert_eq!(location(&ok), "/account");
    assert!(session_cookie(&ok).is_some());
    let links = local
        .running()
        .unwrap()
        .state
        .federation
        .user_links(&victim.id)
        .await
        .unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].subject, "fake-user-1");

    // From now on the upstream identity signs straight in, to the same account.
    let a = begin(&local, &fake).await;
    let url = callback_url(&local, &a.state, Some(&fake.url));
    let res = callback(&local, &url, &[&a.binding]).await;
    assert_eq!(res.status(), 303);
    let cookie = session_cookie(&res).unwrap();
    assert_eq!(me(&local, &cookie).await["user"]["id"], victim.id.0);
    assert_eq!(user_count(&local).await, 1);

    // The link is listed and removable, with the CSRF token only.
    let id = &links[0].id;
    let path = format!("/account/links/{id}/remove");
    let res = local
        .client
        .post(format!("{}{path}", local.url))
        .header("origin", &local.url)
        .header("cookie", &cookie)
        .form(&[("csrf_token", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let token = local.csrf_token(&cookie).await.unwrap();
    let res = local
        .client
        .post(format!("{}{path}", local.url))
        .header("origin", &local.url)
        .header("cookie", &cookie)
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert!(
        local
            .running()
            .unwrap()
            .state
            .federation
            .user_links(&victim.id)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_provider_that_may_not_create_accounts_is_refused_for_strangers() {
    let (fake, local) = fake_setup(false).await;
    let a = begin(&local, &fake).await;
    let url = callback_url(&local, &a.state, Some(&fake.url));
    let body = assert_refused(&local, callback(&local, &url, &[&a.binding]).await, 0).await;
    assert!(body.contains("not allowed to create accounts"), "{body}");
}

/// SECURITY.md #65: redirects are never followed, whatever they point at; a discovery document
/// naming another issuer is refused (#62); an unreachable upstream is a readable 502.
#[tokio::test]
async fn outbound_calls_never_follow_redirects_and_check_the_issuer() {
    let (fake, local) = fake_setup(true).await;
    fake.set(|c| c.jwks_redirect = Some("http://169.254.169.254/latest/meta-data/".into()));
    let a = begin(&local, &fake).await;
    let url = callback_url(&local, &a.state, Some(&fake.url));
    let body = assert_refused(&local, callback(&local, &url, &[&a.binding]).await, 0).await;
    assert!(body.contains("redirects are not followed"), "{body}");

    // A key set named by discovery at a link-local address is never fetched.
    let (fake, local) = fake_setup(true).await;
    fake.set(|c| c.jwks_uri = Some("http://169.254.169.254/latest/meta-data/".into()));
    let res = local
        .get(&format!("/federation/{PROVIDER}/start"), None)
        .await
        .unwrap();
    let body = assert_refused(&local, res, 0).await;
    assert!(body.contains("not an allowed https URL"), "{body}");

    // The token endpoint's refusal is shown, not a 500.
    let (fake, local) = fake_setup(true).await;
    fake.set(|c| c.token_error = Some("invalid_grant"));
    let a = begin(&local, &fake).await;
    let url = callback_url(&local, &a.state, Some(&fake.url));
    let body = assert_refused(&local, callback(&local, &url, &[&a.binding]).await, 0).await;
    assert!(body.contains("invalid_grant"), "{body}");

    let (fake, local) = fake_setup(true).await;
    fake.set(|c| c.discovery_issuer = Some("https://other-idp.example".into()));
    let res = local
        .get(&format!("/federation/{PROVIDER}/start"), None)
        .await
        .unwrap();
    let body = assert_refused(&local, res, 0).await;
    assert!(body.contains("another issuer"), "{body}");

    // Nothing listens on port 9 of loopback.
    let local = local_server("http://127.0.0.1:9", "s", true).await;
    let res = local
        .get(&format!("/federation/{PROVIDER}/start"), None)
        .await
        .unwrap();
    assert_refused(&local, res, 0).await;
    let res = local.get("/federation/nope/start", None).await.unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn the_only_link_of_an_account_without_password_stays() {
    let (fake, local) = fake_setup(true).await;
    let a = begin(&local, &fake).await;
    let url = callback_url(&local, &a.state, Some(&fake.url));
    let res = callback(&local, &url, &[&a.binding]).await;
    let cookie = session_cookie(&res).unwrap();
    let user: authx_core::user::UserId =
        serde_json::from_value(me(&local, &cookie).await["user"]["id"].clone()).unwrap();
    let links = local
        .running()
        .unwrap()
        .state
        .federation
        .user_links(&user)
        .await
        .unwrap();
    let token = local.csrf_token(&cookie).await.unwrap();
    let res = local
        .client
        .post(format!(
            "{}/account/links/{}/remove",
            local.url, links[0].id
        ))
        .header("origin", &local.url)
        .header("cookie", &cookie)
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    assert_eq!(
        local
            .running()
            .unwrap()
            .state
            .federation
            .user_links(&user)
            .await
            .unwrap()
            .len(),
        1
    );
    // Its password cannot be guessed into existence: there is none.
    let res = local
        .client
        .post(format!("{}/api/v1/auth/sign-in", local.url))
        .header("origin", &local.url)
        .json(&json!({"email": "carol@partner.example", "password": "!federated"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

/// SECURITY.md #52: tokens naming unknown keys cause at most one key-set fetch a minute.
#[tokio::test]
async fn unknown_kids_refetch_the_key_set_at_most_once_a_minute() {
    let (fake, local) = fake_setup(true).await;
    let a = begin(&local, &fake).await;
    let url = callback_url(&local, &a.state, Some(&fake.url));
    assert_eq!(callback(&local, &url, &[&a.binding]).await.status(), 303);
    assert_eq!(fake.config.lock().unwrap().jwks_fetches, 1);

    let stranger = Arc::new(test_signer(None));
    fake.set(|c| c.evil_signer = Some(stranger));
    for _ in 0..5 {
        let a = begin(&local, &fake).await;
        let url = callback_url(&local, &a.state, Some(&fake.url));
        assert_refused(&local, callback(&local, &url, &[&a.binding]).await, 1).await;
    }
    assert_eq!(
        fake.config.lock().unwrap().jwks_fetches,
        2,
        "one refetch for the first unknown kid, none for the rest of the minute"
    );
    local.clock.advance(61);
    let a = begin(&local, &fake).await;
    let url = callback_url(&local, &a.state, Some(&fake.url));
    assert_refused(&local, callback(&local, &url, &[&a.binding]).await, 1).await;
    assert_eq!(fake.config.lock().unwrap().jwks_fetches, 3);
}

/// A disabled account stays out whichever way it comes, and `return_to` stays on this site.
#[tokio::test]
async fn disabled_accounts_are_refused_and_return_to_stays_local() {
    let (fake, local) = fake_setup(true).await;
    let (authorize, binding) = start(&local, "//evil.example/phish").await;
    let nonce = param(&authorize, "nonce").unwrap();
    fake.set(|c| c.nonce = nonce);
    let state = param(&authorize, "state").unwrap();
    let url = callback_url(&local, &state, Some(&fake.url));
    let res = callback(&local, &url, &[&binding]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/account", "an off-site return_to was kept");
    let cookie = session_cookie(&res).unwrap();
    let user: authx_core::user::UserId =
        serde_json::from_value(me(&local, &cookie).await["user"]["id"].clone()).unwrap();

    local
        .running()
        .unwrap()
        .state
        .auth
        .disable_user(&user)
        .await
        .unwrap();
    let a = begin(&local, &fake).await;
    let url = callback_url(&local, &a.state, Some(&fake.url));
    let body = assert_refused(&local, callback(&local, &url, &[&a.binding]).await, 1).await;
    assert!(body.contains("disabled"), "{body}");
}

/// One sign-in through the fake whose ID token says `amr`; the callback's answer.
async fn sign_in_with_amr(local: &TestServer, fake: &Fake, amr: Value) -> reqwest::Response {
    fake.set(move |c| {
        c.mutate = Box::new(move |claims: &mut Value| claims["amr"] = amr.clone());
    });
    let a = begin(local, fake).await;
    callback(
        local,
        &callback_url(local, &a.state, Some(&fake.url)),
        &[&a.binding],
    )
    .await
}

/// A local account (made by a first sign-in) that then enrols an authenticator app.
async fn account_with_a_factor(local: &TestServer, fake: &Fake) {
    let first = sign_in_with_amr(local, fake, json!(["pwd"])).await;
    assert_eq!(first.status(), 303);
    local.enrol_totp("carol@partner.example").await.unwrap();
}

#[tokio::test]
async fn a_provider_trusted_for_mfa_stands_in_for_the_local_second_factor() {
    let fake = Fake::start().await;
    let issuer = fake.url.clone();
    let local = TestServer::start_with(move |f: &mut FileConfig| {
        f.federation = Some(FederationFile {
            providers: Some(vec![ProviderFile {
                trust_upstream_mfa: Some(true),
                ..provider_file(&issuer, "fake-secret", true)
            }]),
            ..FederationFile::default()
        });
    })
    .await
    .unwrap();
    account_with_a_factor(&local, &fake).await;
    // The upstream says it asked for more than one factor: no local code.
    let res = sign_in_with_amr(&local, &fake, json!(["pwd", "otp", "mfa"])).await;
    assert_eq!(res.status(), 303);
    let cookie = session_cookie(&res).expect("a session without the local code");
    let session = &me(&local, &cookie).await["session"];
    assert_eq!(session["auth_method"], "federated:corp+upstream_mfa");
    assert_eq!(session["acr"], "urn:authx:acr:mfa");
    assert_eq!(session["amr"], json!(["fed", "mfa"]));
    // One factor upstream: the local code is asked.
    let res = sign_in_with_amr(&local, &fake, json!(["pwd"])).await;
    assert_eq!(res.status(), 200);
    assert!(session_cookie(&res).is_none());
    assert!(res.text().await.unwrap().contains("second-factor"));
    // An `amr` that is not a list of strings proves nothing.
    let res = sign_in_with_amr(&local, &fake, json!("mfa")).await;
    assert!(session_cookie(&res).is_none());
}

#[tokio::test]
async fn an_untrusted_provider_saying_mfa_still_meets_the_local_second_factor() {
    let (fake, local) = fake_setup(true).await;
    account_with_a_factor(&local, &fake).await;
    let res = sign_in_with_amr(&local, &fake, json!(["pwd", "mfa"])).await;
    assert_eq!(res.status(), 200);
    assert!(
        session_cookie(&res).is_none(),
        "the local factor was skipped"
    );
}

/// authx authenticates at the upstream's token endpoint with `private_key_jwt`: no secret
/// anywhere, the upstream verifies an assertion signed with the local server's key, fetched
/// from the local server's own JWKS. Without a registered key set the same exchange fails.
#[tokio::test]
async fn the_code_exchange_at_the_upstream_can_use_private_key_jwt() {
    let upstream = TestServer::start_with(|f: &mut FileConfig| {
        f.oauth = Some(authx_server::config::OAuthFile {
            client_jwks_insecure_http_loopback: Some(true),
            ..Default::default()
        });
    })
    .await
    .unwrap();
    let ada = upstream
        .create_user("ada@corp.example", PASSWORD)
        .await
        .unwrap();
    let upstream_url = upstream.url.clone();
    let local = TestServer::start_with(move |f: &mut FileConfig| {
        let mut p = provider_file(&upstream_url, "", false);
        p.client_secret = None;
        p.token_endpoint_auth_method = Some("private_key_jwt".into());
        f.federation = Some(FederationFile {
            providers: Some(vec![p]),
            ..FederationFile::default()
        });
    })
    .await
    .unwrap();
    // The upstream knows the local server by its JWKS URL, as an operator would register it.
    register_rp(&upstream, &local, "unused").await;
    let clients = &upstream.running().unwrap().state.oauth.stores().clients;
    let mut rp = clients.client(CLIENT_ID).await.unwrap().unwrap();
    clients.delete_client(CLIENT_ID).await.unwrap();
    rp.secret_hash = None;
    rp.token_endpoint_auth_method =
        authx_core::oauth::client::TokenEndpointAuthMethod::PrivateKeyJwt;
    rp.jwks_uri = Some(format!("{}/oauth2/jwks", local.url));
    clients.put_client(&rp).await.unwrap();
    linked_account(&local, &upstream.url, &ada.id.0, "ada@corp.example").await;

    let upstream_cookie = upstream
        .sign_in("ada@corp.example", PASSWORD)
        .await
        .unwrap();
    let (authorize, binding) = start(&local, "/account").await;
    let back = authorize_upstream(&upstream, &authorize, &upstream_cookie).await;
    let res = callback(&local, &back, &[&binding]).await;
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let cookie = session_cookie(&res).expect("no local session");
    assert_eq!(
        me(&local, &cookie).await["user"]["email"],
        "ada@corp.example"
    );

    // Registered with another key set, the upstream refuses the local server's assertions.
    clients.delete_client(CLIENT_ID).await.unwrap();
    let stranger = {
        let enc = KeyEncryptor::new(&[3u8; 32]).unwrap();
        let k = generate(SigningAlg::Es256, &enc, Timestamp(0)).unwrap();
        let pkcs8 = enc.open(&k.kid, &k.private_key_encrypted).unwrap();
        Signer::from_pkcs8(SigningAlg::Es256, &k.kid, &pkcs8).unwrap()
    };
    rp.jwks_uri = None;
    rp.jwks = Some(json!({"keys": [stranger.public_jwk()]}).to_string());
    clients.put_client(&rp).await.unwrap();
    let (authorize, binding) = start(&local, "/account").await;
    let back = authorize_upstream(&upstream, &authorize, &upstream_cookie).await;
    let res = callback(&local, &back, &[&binding]).await;
    assert!(session_cookie(&res).is_none());
    assert_ne!(res.status(), 303);
}

/// An administrator's "test discovery" (console and admin API) fetches the provider's
/// discovery document now and says what came back, or why it failed.
#[tokio::test]
async fn administrators_test_a_providers_discovery() {
    let upstream = TestServer::start().await.unwrap();
    let local = local_server(&upstream.url, "a secret of the test", false).await;
    local
        .running()
        .unwrap()
        .state
        .auth
        .create_user("root@example.com", PASSWORD, true)
        .await
        .unwrap();
    let admin = local.sign_in("root@example.com", PASSWORD).await.unwrap();
    let listed: Value = local
        .get("/api/v1/admin/federation", Some(&admin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["providers"][0]["name"], PROVIDER);
    assert_eq!(listed["providers"][0]["issuer"], upstream.url.as_str());
    assert!(!listed.to_string().contains("a secret of the test"));
    let res = local
        .send_json(
            reqwest::Method::POST,
            &format!("/api/v1/admin/federation/{PROVIDER}/test"),
            &admin,
            None,
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["token_endpoint"],
        format!("{}/oauth2/token", upstream.url)
    );

    // In the console, the same, on the federation page.
    let page = local.get("/admin/federation", Some(&admin)).await.unwrap();
    let html = page.text().await.unwrap();
    let token = html
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let res = local
        .client
        .post(format!("{}/admin/federation/{PROVIDER}/test", local.url))
        .header("cookie", &admin)
        .header("origin", &local.url)
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("discovery answered"));

    // A provider that does not answer is reported, not hidden.
    upstream.stop().await;
    let res = local
        .send_json(
            reqwest::Method::POST,
            &format!("/api/v1/admin/federation/{PROVIDER}/test"),
            &admin,
            None,
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 502);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "discovery_failed");
}
