//! Dynamic client registration (RFC 7591) and its management protocol (RFC 7592) over HTTP:
//! an administrator's initial access token registers a client that then gets tokens, reads,
//! replaces and deletes its own registration; every misuse is refused. One run on PostgreSQL
//! where `AUTHX_TEST_POSTGRES_URL` is set.

use authx_core::admin::Actor;
use authx_core::audit::AuditQuery;
use authx_core::oauth::client::GrantType;
use authx_core::registration::InitialTokenRequest;
use authx_server::config::{FileConfig, RateLimitFile, RegistrationFile};
use authx_testkit::services::SharedServices;
use authx_testkit::{PASSWORD, TestServer};
use serde_json::{Value, json};

const API: &str = "https://api.example.com";

fn enabled(f: &mut FileConfig) {
    f.registration = Some(RegistrationFile {
        enabled: Some(true),
    });
}

/// A server with registration on, an API, and a signed-in administrator (its cookie), on
/// `database` (a fresh SQLite file when `None`).
async fn server(database: Option<&SharedServices>) -> (TestServer, String) {
    let server = match database {
        None => TestServer::start_with(enabled).await.unwrap(),
        Some(s) => {
            let shared = s.configure_without_redis();
            TestServer::start_on(&s.database_url, move |f: &mut FileConfig| {
                shared(f);
                enabled(f);
            })
            .await
            .unwrap()
        }
    };
    let state = &server.running().unwrap().state;
    authx_server::web::api::register_resource(state, API.into(), vec!["read".into()])
        .await
        .unwrap();
    state
        .auth
        .create_user("admin@example.com", PASSWORD, true)
        .await
        .unwrap();
    let admin = server.sign_in("admin@example.com", PASSWORD).await.unwrap();
    (server, admin)
}

/// An initial access token issued through the admin API.
async fn initial_token(server: &TestServer, admin: &str, body: Value) -> (String, String) {
    let res = server
        .send_json(
            reqwest::Method::POST,
            "/api/v1/admin/registration-tokens",
            admin,
            Some(body),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    (
        body["initial_access_token"].as_str().unwrap().to_owned(),
        body["registration_token"]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

/// An initial access token issued in the core (for lifetimes the API is not about).
async fn core_token(server: &TestServer, request: InitialTokenRequest) -> String {
    let state = &server.running().unwrap().state;
    state
        .registration()
        .create_initial_token(request, &Actor::CommandLine)
        .await
        .unwrap()
        .1
}

async fn register(server: &TestServer, token: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = server
        .client
        .post(format!("{}/oauth2/register", server.url))
        .json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

async fn manage(
    server: &TestServer,
    method: reqwest::Method,
    uri: &str,
    token: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut req = server.client.request(method, uri).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(b);
    }
    req.send().await.unwrap()
}

async fn client_credentials(server: &TestServer, id: &str, secret: &str) -> reqwest::Response {
    server
        .client
        .post(format!("{}/oauth2/token", server.url))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "read"),
            ("client_id", id),
            ("client_secret", secret),
        ])
        .send()
        .await
        .unwrap()
}

/// Asserts a 401 `invalid_token` with a bearer challenge.
async fn assert_invalid_token(res: reqwest::Response) {
    assert_eq!(res.status(), 401);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"),
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");
}

fn service() -> Value {
    json!({
        "client_name": "Billing robot",
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "client_secret_post",
        "scope": "read",
        "software_id": "ignored-by-authx",
    })
}

#[tokio::test]
async fn registration_is_off_by_default() {
    let server = TestServer::start().await.unwrap();
    let res = register(&server, Some("x"), &service()).await;
    assert_eq!(res.status(), 404);
    let res = server
        .client
        .get(format!("{}/oauth2/register/some-client", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let doc: Value = server
        .get("/.well-known/openid-configuration", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc.get("registration_endpoint").is_none());
}

async fn a_registered_client_gets_tokens_and_manages_itself_until_deleted(
    database: Option<&SharedServices>,
) {
    let (server, admin) = server(database).await;
    let doc: Value = server
        .get("/.well-known/openid-configuration", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        doc["registration_endpoint"],
        format!("{}/oauth2/register", server.url)
    );
    let (initial, _) = initial_token(
        &server,
        &admin,
        json!({"scopes": ["read"], "resources": [API], "uses": 1}),
    )
    .await;

    let res = register(&server, Some(&initial), &service()).await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let created: Value = res.json().await.unwrap();
    let id = created["client_id"].as_str().unwrap().to_owned();
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    let first_token = created["registration_access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let uri = created["registration_client_uri"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(uri, format!("{}/oauth2/register/{id}", server.url));
    assert_eq!(created["client_secret_expires_at"], 0);
    assert!(created["client_id_issued_at"].as_i64().unwrap() > 0);
    assert_eq!(created["token_endpoint_auth_method"], "client_secret_post");
    assert_eq!(created["grant_types"], json!(["client_credentials"]));
    assert_eq!(created["scope"], "read");
    assert!(created.get("software_id").is_none());
    let state = &server.running().unwrap().state;
    let stored = state
        .oauth
        .stores()
        .clients
        .client(&id)
        .await
        .unwrap()
        .unwrap();
    assert!(!stored.first_party);
    assert_eq!(stored.resources, [API]);

    // The client works at the token endpoint.
    let res = client_credentials(&server, &id, &secret).await;
    assert_eq!(res.status(), 200);
    let access: Value = res.json().await.unwrap();
    let access = access["access_token"].as_str().unwrap().to_owned();

    // Read: the metadata, never the secret.
    let res = manage(&server, reqwest::Method::GET, &uri, &first_token, None).await;
    assert_eq!(res.status(), 200);
    let read: Value = res.json().await.unwrap();
    assert_eq!(read["client_name"], "Billing robot");
    assert!(read.get("client_secret").is_none());
    assert!(read.get("registration_access_token").is_none());

    // Update: replaced metadata, the same secret, a rotated registration access token.
    let mut changed = service();
    changed["client_name"] = json!("Billing robot 2");
    changed["client_id"] = json!(id);
    changed["client_secret"] = json!(secret);
    let res = manage(
        &server,
        reqwest::Method::PUT,
        &uri,
        &first_token,
        Some(&changed),
    )
    .await;
    assert_eq!(res.status(), 200);
    let updated: Value = res.json().await.unwrap();
    assert_eq!(updated["client_name"], "Billing robot 2");
    let rotated = updated["registration_access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(rotated, first_token);
    // The old token is dead, for every verb.
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let body = (method == reqwest::Method::PUT).then_some(&changed);
        assert_invalid_token(manage(&server, method, &uri, &first_token, body).await).await;
    }
    assert_eq!(
        client_credentials(&server, &id, &secret).await.status(),
        200
    );

    // Delete: the client and its tokens are gone.
    let res = manage(&server, reqwest::Method::DELETE, &uri, &rotated, None).await;
    assert_eq!(res.status(), 204);
    assert_invalid_token(manage(&server, reqwest::Method::GET, &uri, &rotated, None).await).await;
    assert_eq!(
        client_credentials(&server, &id, &secret).await.status(),
        401
    );
    let mut introspector = authx_core::oauth::client::Client {
        id: "introspector".into(),
        name: "Introspector".into(),
        ..stored.clone()
    };
    introspector.grant_types = vec![GrantType::ClientCredentials];
    let (_, spy_secret) = state
        .oauth
        .register_client(introspector, true)
        .await
        .unwrap();
    let res: Value = server
        .client
        .post(format!("{}/oauth2/introspect", server.url))
        .basic_auth("introspector", spy_secret.as_deref())
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(res["active"], false, "{res}");

    state.auth.audit().flush().await;
    for kind in ["client_registered", "client_updated", "client_deleted"] {
        let events = state
            .audit_store
            .list_audit(&AuditQuery {
                kind: Some(kind.into()),
                limit: 10,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        let ours: Vec<_> = events
            .iter()
            .filter(|e| e.client_id.as_deref() == Some(id.as_str()))
            .collect();
        assert_eq!(ours.len(), 1, "{kind}: {events:?}");
        let detail: Value = serde_json::from_str(&ours[0].detail).unwrap();
        assert_eq!(detail["actor"], "registration", "{kind}");
    }
}

#[tokio::test]
async fn a_registered_client_gets_tokens_and_manages_itself_on_sqlite() {
    a_registered_client_gets_tokens_and_manages_itself_until_deleted(None).await;
}

#[tokio::test]
async fn a_registered_client_gets_tokens_and_manages_itself_on_postgres() {
    let Some(services) = SharedServices::acquire("registration on postgres").await else {
        return;
    };
    a_registered_client_gets_tokens_and_manages_itself_until_deleted(Some(&services)).await;
    services.cleanup().await;
}

#[tokio::test]
async fn initial_access_tokens_that_are_missing_expired_used_up_or_revoked_register_nothing() {
    let (server, admin) = server(None).await;
    let web = json!({"redirect_uris": ["https://app.example.com/cb"]});

    let res = register(&server, None, &web).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"authx\"");
    let res = register(&server, Some("not-a-token"), &web).await;
    assert_eq!(
        res.headers()["www-authenticate"],
        "Bearer realm=\"authx\", error=\"invalid_token\""
    );
    assert_invalid_token(res).await;

    let short = core_token(
        &server,
        InitialTokenRequest {
            ttl_secs: Some(60),
            ..InitialTokenRequest::default()
        },
    )
    .await;
    server.clock.advance(61);
    assert_invalid_token(register(&server, Some(&short), &web).await).await;

    let (once, _) = initial_token(&server, &admin, json!({})).await;
    assert_eq!(register(&server, Some(&once), &web).await.status(), 201);
    assert_invalid_token(register(&server, Some(&once), &web).await).await;

    let (revoked, id) = initial_token(&server, &admin, json!({"uses": 5})).await;
    let listed: Value = server
        .get("/api/v1/admin/registration-tokens", Some(&admin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = listed["registration_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap();
    assert_eq!(entry["uses_left"], 5);
    assert!(!listed.to_string().contains(&revoked), "never listed");
    let res = server
        .send_json(
            reqwest::Method::DELETE,
            &format!("/api/v1/admin/registration-tokens/{id}"),
            &admin,
            None,
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_invalid_token(register(&server, Some(&revoked), &web).await).await;

    // The maintenance pass (which may also have run on its own meanwhile) deletes the
    // expired and the used-up token, and keeps a live one.
    let (_, live) = initial_token(&server, &admin, json!({})).await;
    let state = &server.running().unwrap().state;
    authx_server::purge_expired(state).await.unwrap();
    let left = state.registration().initial_tokens().await.unwrap();
    assert_eq!(
        left.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        [live.as_str()]
    );

    // Only an administrator issues tokens, with the session's CSRF token.
    server
        .create_user("kate@example.com", PASSWORD)
        .await
        .unwrap();
    let kate = server.sign_in("kate@example.com", PASSWORD).await.unwrap();
    let res = server
        .send_json(
            reqwest::Method::POST,
            "/api/v1/admin/registration-tokens",
            &kate,
            Some(json!({})),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = server
        .client
        .post(format!("{}/api/v1/admin/registration-tokens", server.url))
        .header("origin", &server.url)
        .header("cookie", &admin)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "no CSRF token");
}

#[tokio::test]
async fn metadata_authx_cannot_honour_is_refused_without_spending_the_token() {
    let (server, admin) = server(None).await;
    let (token, id) = initial_token(&server, &admin, json!({})).await;
    for (body, status, code) in [
        (
            json!({"redirect_uris": ["http://app.example.com/cb"]}),
            400,
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://app.example.com/cb#fragment"]}),
            400,
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://app.example.com/cb"], "response_types": ["code", "token"]}),
            400,
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://app.example.com/cb"], "scope": "openid read"}),
            400,
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": "https://app.example.com/cb"}),
            400,
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://app.example.com/cb"], "padding": "x".repeat(17 * 1024)}),
            413,
            "invalid_client_metadata",
        ),
    ] {
        let res = register(&server, Some(&token), &body).await;
        assert_eq!(res.status(), status, "{body}");
        let answer: Value = res.json().await.unwrap();
        assert_eq!(answer["error"], code, "{body}");
        assert!(answer["error_description"].is_string());
    }
    let res = server
        .client
        .post(format!("{}/oauth2/register", server.url))
        .bearer_auth(&token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("redirect_uris=https://app.example.com/cb")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    // None of that spent the token's one use.
    let state = &server.running().unwrap().state;
    let tokens = state.registration().initial_tokens().await.unwrap();
    assert_eq!(tokens.iter().find(|t| t.id == id).unwrap().uses_left, 1);
    let res = register(
        &server,
        Some(&token),
        &json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"}),
    )
    .await;
    assert_eq!(res.status(), 201);
    let public: Value = res.json().await.unwrap();
    assert!(public.get("client_secret").is_none());
    assert_eq!(public["response_types"], json!(["code"]));
}

#[tokio::test]
async fn a_registration_token_manages_only_its_own_client() {
    let (server, admin) = server(None).await;
    let (token, _) = initial_token(&server, &admin, json!({"uses": 2})).await;
    let web = json!({"redirect_uris": ["https://app.example.com/cb"]});
    let a: Value = register(&server, Some(&token), &web)
        .await
        .json()
        .await
        .unwrap();
    let b: Value = register(&server, Some(&token), &web)
        .await
        .json()
        .await
        .unwrap();
    let a_uri = a["registration_client_uri"].as_str().unwrap();
    let b_token = b["registration_access_token"].as_str().unwrap();
    assert_ne!(a["client_id"], b["client_id"]);
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let body = (method == reqwest::Method::PUT).then_some(&web);
        assert_invalid_token(manage(&server, method, a_uri, b_token, body).await).await;
    }
    // The initial access token is not a registration access token either.
    assert_invalid_token(manage(&server, reqwest::Method::GET, a_uri, &token, None).await).await;
    // A secret the client did not get is refused in an update.
    let a_token = a["registration_access_token"].as_str().unwrap();
    let mut forged = web.clone();
    forged["client_secret"] = json!("chosen-by-the-client");
    let res = manage(&server, reqwest::Method::PUT, a_uri, a_token, Some(&forged)).await;
    assert_eq!(res.status(), 400);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["error"], "invalid_client_metadata");
    // A client registered by an administrator has no registration to manage.
    let res = manage(
        &server,
        reqwest::Method::GET,
        &format!("{}/oauth2/register/admin-made", server.url),
        a_token,
        None,
    )
    .await;
    assert_invalid_token(res).await;
}

#[tokio::test]
async fn registration_is_rate_limited_per_address() {
    let server = TestServer::start_with(|f: &mut FileConfig| {
        enabled(f);
        f.rate_limit = Some(RateLimitFile {
            token: Some(3),
            ..RateLimitFile::default()
        });
    })
    .await
    .unwrap();
    let web = json!({"redirect_uris": ["https://app.example.com/cb"]});
    for _ in 0..3 {
        assert_eq!(register(&server, None, &web).await.status(), 401);
    }
    assert_eq!(register(&server, None, &web).await.status(), 429);
}

#[tokio::test]
async fn concurrent_registrations_with_the_last_use_register_one_client() {
    let (server, admin) = server(None).await;
    let (token, _) = initial_token(&server, &admin, json!({"uses": 1})).await;
    let web = json!({"redirect_uris": ["https://app.example.com/cb"]});
    let attempts = (0..8).map(|_| register(&server, Some(&token), &web));
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        7,
        "{statuses:?}"
    );
    let state = &server.running().unwrap().state;
    let clients = state.oauth.stores().clients.list_clients().await.unwrap();
    assert_eq!(clients.len(), 1);
}

#[tokio::test]
async fn issuing_initial_tokens_follows_the_administrators_second_factor_policy() {
    let server = TestServer::start_with(|f: &mut FileConfig| {
        enabled(f);
        f.mfa = Some(authx_server::config::MfaFile {
            required_for: Some("admins".into()),
        });
    })
    .await
    .unwrap();
    let state = &server.running().unwrap().state;
    let admin = state
        .auth
        .create_user("admin@example.com", PASSWORD, true)
        .await
        .unwrap();
    // A session proved by the password alone.
    let session = state
        .auth
        .start_session(
            admin,
            &authx_core::session::ClientContext::default(),
            "password",
        )
        .await
        .unwrap();
    let cookie = format!("authx_session={}", session.token.expose());
    for res in [
        server
            .send_json(
                reqwest::Method::POST,
                "/api/v1/admin/registration-tokens",
                &cookie,
                Some(json!({})),
            )
            .await
            .unwrap(),
        server
            .get("/api/v1/admin/registration-tokens", Some(&cookie))
            .await
            .unwrap(),
    ] {
        assert_eq!(res.status(), 403);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "second_factor_required");
    }
    assert!(
        state
            .registration()
            .initial_tokens()
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_private_key_jwt_client_registers_its_keys_and_authenticates_with_them() {
    use authx_core::Clock as _;
    use authx_core::oauth::keys::{KeyEncryptor, Signer, SigningAlg, generate};
    let (server, admin) = server(None).await;
    let (initial, _) = initial_token(
        &server,
        &admin,
        json!({"scopes": ["read"], "resources": [API]}),
    )
    .await;
    let enc = KeyEncryptor::new(&[7u8; 32]).unwrap();
    let k = generate(SigningAlg::Es256, &enc, authx_core::Timestamp(0)).unwrap();
    let pkcs8 = enc.open(&k.kid, &k.private_key_encrypted).unwrap();
    let key = Signer::from_pkcs8(SigningAlg::Es256, &k.kid, &pkcs8).unwrap();
    let res = register(
        &server,
        Some(&initial),
        &json!({
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [key.public_jwk()]},
            "scope": "read",
        }),
    )
    .await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    assert!(created.get("client_secret").is_none());
    assert_eq!(created["token_endpoint_auth_method"], "private_key_jwt");
    let id = created["client_id"].as_str().unwrap();
    let now = server.clock.now().secs();
    let assertion = authx_core::oauth::jwt::sign(
        &key,
        "JWT",
        &json!({
            "iss": id, "sub": id, "aud": format!("{}/oauth2/token", server.url),
            "iat": now, "exp": now + 60, "jti": "registered-1",
        }),
    )
    .unwrap();
    let res = server
        .client
        .post(format!("{}/oauth2/token", server.url))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "read"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}
