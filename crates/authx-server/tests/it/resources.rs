//! Issue 14 item 3: a client gets access tokens only for the APIs it was registered with
//! (RFC 8707 `invalid_target` otherwise, whether the API is named or inferred from scopes, at
//! every grant and for session-minted tokens), the consent page names the API, and consent is
//! remembered per (client, API). Item 11: a refresh for fewer scopes gets exactly those.

use authx_core::oauth::client::GrantType;
use authx_core::oauth::pkce;
use authx_testkit::{PASSWORD, TestServer};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::oidc::{REDIRECT, VERIFIER, client, query_param, urlencode};

const API: &str = "https://api.example.com";
const BILLING: &str = "https://billing.example.com";
const EMAIL: &str = "kate@example.com";

struct World {
    server: TestServer,
    cookie: String,
    secret: String,
}

/// Two APIs (`read write` and `bill`); the confidential first-party client `app` (every
/// grant) may use the first only; the third-party client `third` may use both.
async fn world() -> World {
    let server = TestServer::start().await.unwrap();
    let state = &server.running().unwrap().state;
    authx_server::web::api::register_resource(
        state,
        API.into(),
        vec!["read".into(), "write".into()],
    )
    .await
    .unwrap();
    authx_server::web::api::register_resource(state, BILLING.into(), vec!["bill".into()])
        .await
        .unwrap();
    let mut app = client(
        "app",
        &[
            GrantType::AuthorizationCode,
            GrantType::RefreshToken,
            GrantType::ClientCredentials,
            GrantType::DeviceCode,
        ],
        true,
    );
    app.scopes.push("bill".into());
    app.resources = vec![API.into()];
    let (_, secret) = state.oauth.register_client(app, true).await.unwrap();
    let mut third = client("third", &[GrantType::AuthorizationCode], false);
    third.scopes.push("bill".into());
    third.resources = vec![API.into(), BILLING.into()];
    state.oauth.register_client(third, true).await.unwrap();
    server.create_user(EMAIL, PASSWORD).await.unwrap();
    let cookie = server.sign_in(EMAIL, PASSWORD).await.unwrap();
    World {
        server,
        cookie,
        secret: secret.unwrap(),
    }
}

fn authorize_url(w: &World, client_id: &str, scope: &str, extra: &str) -> String {
    format!(
        "{}/oauth2/authorize?response_type=code&client_id={client_id}&redirect_uri={}&scope={}&state=s&code_challenge={}&code_challenge_method=S256{extra}",
        w.server.url,
        urlencode(REDIRECT),
        urlencode(scope),
        pkce::s256(VERIFIER)
    )
}

async fn get(w: &World, url: &str) -> reqwest::Response {
    w.server
        .client
        .get(url)
        .header("cookie", &w.cookie)
        .send()
        .await
        .unwrap()
}

/// The `error` of an authorization error redirect.
async fn authorize_error(w: &World, client_id: &str, scope: &str, extra: &str) -> String {
    let res = get(w, &authorize_url(w, client_id, scope, extra)).await;
    assert_eq!(
        res.status(),
        302,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let loc = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(loc.starts_with(REDIRECT), "{loc}");
    query_param(&loc, "error").unwrap_or_else(|| panic!("no error in {loc}"))
}

async fn token(w: &World, form: &[(&str, &str)]) -> (u16, Value) {
    let res = w
        .server
        .client
        .post(format!("{}/oauth2/token", w.server.url))
        .basic_auth("app", Some(&w.secret))
        .form(form)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn code_for(w: &World, scope: &str, extra: &str) -> String {
    let res = get(w, &authorize_url(w, "app", scope, extra)).await;
    assert_eq!(res.status(), 302);
    let loc = res.headers()["location"].to_str().unwrap().to_owned();
    query_param(&loc, "code").unwrap_or_else(|| panic!("no code in {loc}"))
}

async fn exchange(w: &World, code: &str) -> (u16, Value) {
    token(
        w,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

fn assert_invalid_target((status, body): (u16, Value), what: &str) {
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target")),
        "{what}: {body}"
    );
}

#[tokio::test]
async fn a_client_gets_tokens_only_for_its_apis() {
    let w = world().await;
    let billing = format!("&resource={}", urlencode(BILLING));

    // /oauth2/authorize: named, then inferred from the scopes.
    assert_eq!(
        authorize_error(&w, "app", "openid bill", &billing).await,
        "invalid_target"
    );
    assert_eq!(
        authorize_error(&w, "app", "openid bill", "").await,
        "invalid_target"
    );
    // Its own API works, named or inferred.
    let code = code_for(&w, "openid read", "").await;
    let (status, t) = exchange(&w, &code).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(claims(t["access_token"].as_str().unwrap())["aud"], API);

    // Client credentials.
    assert_invalid_target(
        token(
            &w,
            &[("grant_type", "client_credentials"), ("resource", BILLING)],
        )
        .await,
        "client_credentials naming the API",
    );
    assert_invalid_target(
        token(
            &w,
            &[("grant_type", "client_credentials"), ("scope", "bill")],
        )
        .await,
        "client_credentials inferring the API",
    );
    let (status, t) = token(
        &w,
        &[
            ("grant_type", "client_credentials"),
            ("resource", API),
            ("scope", "read"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{t}");

    // Device authorization.
    let res = w
        .server
        .client
        .post(format!("{}/oauth2/device_authorization", w.server.url))
        .basic_auth("app", Some(&w.secret))
        .form(&[("scope", "bill"), ("resource", BILLING)])
        .send()
        .await
        .unwrap();
    assert_invalid_target(
        (res.status().as_u16(), res.json().await.unwrap()),
        "device authorization",
    );

    // A session-minted token (`POST /api/v1/auth/token`) may name only an API that a
    // first-party client may use: the billing API belongs to the third-party client only.
    let mint = |resource: &'static str| {
        w.server.send_json(
            reqwest::Method::POST,
            "/api/v1/auth/token",
            &w.cookie,
            Some(json!({"resource": resource})),
        )
    };
    let res = mint(BILLING).await.unwrap();
    assert_invalid_target(
        (res.status().as_u16(), res.json().await.unwrap()),
        "session token",
    );
    assert_eq!(mint(API).await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_grant_ends_when_its_api_is_taken_from_the_client() {
    let w = world().await;
    let state = &w.server.running().unwrap().state;
    let code = code_for(&w, "openid read", "").await;
    let (_, t) = exchange(&w, &code).await;
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    let pending = code_for(&w, "openid read", "").await;
    // The API is deleted and registered again: no client has it until it is granted again.
    assert!(
        state
            .oauth
            .stores()
            .clients
            .delete_resource(API)
            .await
            .unwrap()
    );
    authx_server::web::api::register_resource(state, API.into(), vec!["read".into()])
        .await
        .unwrap();
    assert_invalid_target(
        token(
            &w,
            &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
        )
        .await,
        "refresh",
    );
    assert_invalid_target(exchange(&w, &pending).await, "code");
}

#[tokio::test]
async fn consent_names_the_api_and_is_remembered_per_api() {
    let w = world().await;
    let for_api = |api: &str| format!("&resource={}", urlencode(api));
    let page = get(
        &w,
        &authorize_url(&w, "third", "openid read", &for_api(API)),
    )
    .await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(&format!("<code id=\"resource\">{API}</code>")),
        "{html}"
    );
    let field = |name: &str| -> String {
        let marker = format!("name=\"{name}\" value=\"");
        html.split(&marker)
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .replace("&amp;", "&")
            .replace("&quot;", "\"")
            .replace("&#x27;", "'")
    };
    let allowed = w
        .server
        .client
        .post(format!("{}/consent", w.server.url))
        .header("cookie", &w.cookie)
        .header("origin", w.server.origin())
        .form(&[
            ("csrf_token", field("csrf_token").as_str()),
            ("request", field("request").as_str()),
            ("decision", "allow"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 303);
    // Remembered for this API...
    assert_eq!(
        get(
            &w,
            &authorize_url(&w, "third", "openid read", &for_api(API))
        )
        .await
        .status(),
        302
    );
    // ...and not for the other one, whose page names it.
    let page = get(
        &w,
        &authorize_url(&w, "third", "openid bill", &for_api(BILLING)),
    )
    .await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(&format!("<code id=\"resource\">{BILLING}</code>")),
        "{html}"
    );
    let listed: Value = w
        .server
        .get("/api/v1/consents", Some(&w.cookie))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["consents"][0]["resource"], API);
    assert_eq!(listed["consents"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_admin_api_grants_apis_to_clients() {
    let w = world().await;
    let state = &w.server.running().unwrap().state;
    state
        .auth
        .create_user("admin@example.com", PASSWORD, true)
        .await
        .unwrap();
    let admin = w
        .server
        .sign_in("admin@example.com", PASSWORD)
        .await
        .unwrap();
    let register = |body: Value| {
        w.server.send_json(
            reqwest::Method::POST,
            "/api/v1/admin/clients",
            &admin,
            Some(body),
        )
    };
    let res = register(json!({
        "id": "svc", "name": "Service", "grant_types": ["client_credentials"],
        "scopes": ["bill"], "resources": [BILLING],
    }))
    .await
    .unwrap();
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["client"]["resources"], json!([BILLING]));
    let secret = body["client_secret"].as_str().unwrap().to_owned();
    let cc = |resource: &'static str| {
        w.server
            .client
            .post(format!("{}/oauth2/token", w.server.url))
            .basic_auth("svc", Some(&secret))
            .form(&[("grant_type", "client_credentials"), ("resource", resource)])
            .send()
    };
    assert_eq!(cc(BILLING).await.unwrap().status(), 200);
    let res = cc(API).await.unwrap();
    assert_invalid_target(
        (res.status().as_u16(), res.json().await.unwrap()),
        "an API not granted",
    );
    // An unknown API cannot be granted.
    let res = register(json!({"id": "svc2", "name": "S", "resources": ["urn:nope"]}))
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

/// Item 11: the narrower scope is what the access token and the response carry; the grant
/// keeps the original scope (RFC 6749 §6).
#[tokio::test]
async fn a_refresh_for_fewer_scopes_gets_exactly_those() {
    let w = world().await;
    let code = code_for(&w, "openid read write", "").await;
    let (_, t) = exchange(&w, &code).await;
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    let (status, narrow) = token(
        &w,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt),
            ("scope", "read"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{narrow}");
    assert_eq!(narrow["scope"], "read");
    assert_eq!(
        claims(narrow["access_token"].as_str().unwrap())["scope"],
        "read"
    );
    assert!(narrow.get("id_token").is_none(), "openid was not asked for");
    let rt = narrow["refresh_token"].as_str().unwrap().to_owned();
    let (status, full) = token(
        &w,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
    )
    .await;
    assert_eq!(status, 200, "{full}");
    assert_eq!(full["scope"], "openid read write");
    assert!(full.get("id_token").is_some());
}
