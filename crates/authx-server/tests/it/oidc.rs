//! The OpenID provider over HTTP: discovery, keys, every grant, introspection, revocation,
//! userinfo, and the hostile inputs of SECURITY.md that apply.

use authx_core::oauth::client::{Client, GrantType};
use authx_core::oauth::keys::SigningAlg;
use authx_core::oauth::pkce;
use authx_testkit::{PASSWORD, TestServer};
use base64::Engine as _;
use serde_json::{Value, json};

pub(crate) const REDIRECT: &str = "https://app.example.com/cb";
pub(crate) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

pub(crate) fn client(id: &str, grants: &[GrantType], first_party: bool) -> Client {
    Client {
        id: id.into(),
        name: format!("{id} app"),
        secret_hash: None,
        token_endpoint_auth_method: authx_core::oauth::client::TokenEndpointAuthMethod::None,
        jwks: None,
        jwks_uri: None,
        dpop_bound_access_tokens: false,
        redirect_uris: vec![REDIRECT.into()],
        post_logout_redirect_uris: vec!["https://app.example.com/bye".into()],
        backchannel_logout_uri: None,
        grant_types: grants.to_vec(),
        scopes: vec![
            "openid".into(),
            "email".into(),
            "read".into(),
            "write".into(),
        ],
        resources: vec!["https://api.example.com".into()],
        first_party,
        require_pushed_authorization_requests: false,
        require_acr: None,
        id_token_alg: SigningAlg::Rs256,
        access_token_ttl_secs: 900,
        refresh_token_ttl_secs: 30 * 86_400,
        refresh_idle_secs: 7 * 86_400,
        created_at: authx_core::Timestamp(0),
    }
}

pub(crate) struct Op {
    pub(crate) server: TestServer,
    pub(crate) secret: String,
    pub(crate) cookie: String,
}

/// Registers the API `https://api.example.com` with the scopes `read` and `write`.
pub(crate) async fn register_example_api(state: &authx_server::state::AppState) {
    authx_server::web::api::register_resource(
        state,
        "https://api.example.com".into(),
        vec!["read".into(), "write".into()],
    )
    .await
    .unwrap();
}

/// A server with an API resource, a confidential first-party client `app` and a signed-in user.
pub(crate) async fn op_with(
    customize: impl Fn(&mut authx_server::config::FileConfig) + Send + Sync + 'static,
) -> Op {
    let server = TestServer::start_with(customize).await.unwrap();
    let state = &server.running().unwrap().state;
    crate::oidc::register_example_api(state).await;
    let (_, secret) = state
        .oauth
        .register_client(
            client(
                "app",
                &[
                    GrantType::AuthorizationCode,
                    GrantType::RefreshToken,
                    GrantType::ClientCredentials,
                ],
                true,
            ),
            true,
        )
        .await
        .unwrap();
    server
        .create_user("kate@example.com", PASSWORD)
        .await
        .unwrap();
    let cookie = server.sign_in("kate@example.com", PASSWORD).await.unwrap();
    Op {
        server,
        secret: secret.unwrap(),
        cookie,
    }
}

async fn op() -> Op {
    op_with(|_| {}).await
}

fn authorize_url(op: &Op, client_id: &str, scope: &str, extra: &str) -> String {
    format!(
        "{}/oauth2/authorize?response_type=code&client_id={client_id}&redirect_uri={}&scope={}&state=st%20ate&nonce=n-1&code_challenge={}&code_challenge_method=S256{extra}",
        op.server.url,
        urlencode(REDIRECT),
        urlencode(scope),
        pkce::s256(VERIFIER)
    )
}

pub(crate) fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub(crate) fn query_param(location: &str, name: &str) -> Option<String> {
    let q = location.split_once('?')?.1;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn get(op: &Op, url: &str) -> reqwest::Response {
    op.server
        .client
        .get(url)
        .header("cookie", &op.cookie)
        .send()
        .await
        .unwrap()
}

/// Runs authorize for a first-party client and returns the code.
async fn code(op: &Op, scope: &str) -> String {
    let res = get(op, &authorize_url(op, "app", scope, "")).await;
    assert_eq!(
        res.status(),
        302,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let loc = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(loc.starts_with(REDIRECT), "{loc}");
    assert_eq!(
        query_param(&loc, "state").as_deref(),
        Some("st ate"),
        "state echoed"
    );
    assert_eq!(
        query_param(&loc, "iss").as_deref(),
        Some(op.server.url.as_str()),
        "RFC 9207 iss"
    );
    query_param(&loc, "code").unwrap()
}

async fn token(op: &Op, form: &[(&str, &str)]) -> reqwest::Response {
    op.server
        .client
        .post(format!("{}/oauth2/token", op.server.url))
        .basic_auth("app", Some(&op.secret))
        .form(form)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn exchange(op: &Op, code: &str) -> reqwest::Response {
    token(
        op,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
}

async fn introspect(op: &Op, t: &str) -> Value {
    op.server
        .client
        .post(format!("{}/oauth2/introspect", op.server.url))
        .basic_auth("app", Some(&op.secret))
        .form(&[("token", t)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn claims(jwt: &str) -> (Value, Value) {
    let mut parts = jwt.split('.');
    let dec = |p: &str| -> Value {
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .unwrap(),
        )
        .unwrap()
    };
    (dec(parts.next().unwrap()), dec(parts.next().unwrap()))
}

#[tokio::test]
async fn discovery_and_jwks_state_exactly_what_is_supported() {
    let op = op().await;
    let d: Value = op
        .server
        .get("/.well-known/openid-configuration", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["issuer"], op.server.url);
    assert_eq!(d["response_types_supported"], json!(["code"]));
    assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(d["authorization_response_iss_parameter_supported"], true);
    assert!(
        !d["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == "password" || g == "implicit")
    );
    let jwks: Value = op
        .server
        .get("/oauth2/jwks", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert!(keys.len() >= 3);
    let mut kids = std::collections::HashSet::new();
    for k in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(
                k.get(private).is_none(),
                "private member {private} published"
            );
        }
        assert_eq!(k["use"], "sig");
        assert!(["RS256", "ES256", "EdDSA"].contains(&k["alg"].as_str().unwrap()));
        assert!(
            kids.insert(k["kid"].as_str().unwrap().to_owned()),
            "kid repeated"
        );
    }
}

#[tokio::test]
async fn code_flow_issues_rfc9068_access_token_id_token_and_refresh_token() {
    let op = op().await;
    let c = code(&op, "openid email read").await;
    let res = exchange(&op, &c).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["scope"], "email openid read");
    let at = body["access_token"].as_str().unwrap();
    let (h, c1) = claims(at);
    assert_eq!(h["typ"], "at+jwt");
    assert_eq!(h["alg"], "ES256");
    assert!(h["kid"].is_string());
    for k in [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "jti",
        "client_id",
        "scope",
    ] {
        assert!(c1.get(k).is_some(), "access token lacks {k}");
    }
    assert_eq!(c1["aud"], "https://api.example.com");
    assert_eq!(c1["client_id"], "app");
    assert!(c1["exp"].as_i64().unwrap() - c1["iat"].as_i64().unwrap() <= 900);
    let (ih, id) = claims(body["id_token"].as_str().unwrap());
    assert_eq!(ih["alg"], "RS256");
    assert_eq!(id["iss"], op.server.url);
    assert_eq!(id["aud"], "app");
    assert_eq!(id["nonce"], "n-1");
    assert_eq!(id["sub"], c1["sub"]);
    assert!(id["auth_time"].is_i64() && id["at_hash"].is_string() && id["sid"].is_string());
    assert_eq!(
        id["at_hash"],
        authx_core::oauth::jwt::at_hash(at, SigningAlg::Rs256)
    );
    let rt = body["refresh_token"].as_str().unwrap();
    assert_eq!(rt.len(), 43);

    // userinfo with the access token
    let ui = op
        .server
        .client
        .get(format!("{}/oauth2/userinfo", op.server.url))
        .bearer_auth(at)
        .send()
        .await
        .unwrap();
    assert_eq!(ui.status(), 200);
    let ui: Value = ui.json().await.unwrap();
    assert_eq!(ui["email"], "kate@example.com");
    let bad = op
        .server
        .client
        .get(format!("{}/oauth2/userinfo", op.server.url))
        .bearer_auth("x.y.z")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    assert!(
        bad.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );

    // refresh keeps sub, aud and auth_time
    let r = token(
        &op,
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
    )
    .await;
    assert_eq!(r.status(), 200);
    let r: Value = r.json().await.unwrap();
    let (_, id2) = claims(r["id_token"].as_str().unwrap());
    assert_eq!(id2["sub"], id["sub"]);
    assert_eq!(id2["aud"], id["aud"]);
    assert_eq!(id2["auth_time"], id["auth_time"]);
    assert_ne!(r["refresh_token"], body["refresh_token"], "rotated");
}

#[tokio::test]
async fn bad_client_or_redirect_gets_a_page_never_a_redirect() {
    let op = op().await;
    let variants = [
        "https://app.example.com/cb/",
        "https://APP.example.com/cb",
        "http://app.example.com/cb",
        "https://app.example.com/cb?x=1",
        "https://app.example.com/cb#f",
        "https://app.example.com/cb/../evil",
        "https://app.example.com/cb/%2e%2e/evil",
        "https://app.example.com/cb/%252e%252e/evil",
        "https://app.example.com/cb/..;/evil",
        "https://app.example.com@evil.com/cb",
        "https://evil.com/cb",
        "javascript:alert(1)",
    ];
    for v in variants {
        let url =
            authorize_url(&op, "app", "openid", "").replace(&urlencode(REDIRECT), &urlencode(v));
        let res = get(&op, &url).await;
        assert_eq!(res.status(), 400, "{v}");
        assert!(res.headers().get("location").is_none(), "{v} redirected");
    }
    let res = get(&op, &authorize_url(&op, "nobody", "openid", "")).await;
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
    // A repeated redirect_uri is refused without a redirect too.
    let res = get(
        &op,
        &format!(
            "{}&redirect_uri={}",
            authorize_url(&op, "app", "openid", ""),
            urlencode(REDIRECT)
        ),
    )
    .await;
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
}

#[tokio::test]
async fn other_errors_redirect_with_state_and_iss() {
    let op = op().await;
    let cases = [
        (authorize_url(&op, "app", "admin", ""), "invalid_scope"),
        (
            authorize_url(&op, "app", "openid", "")
                .replace("response_type=code", "response_type=token"),
            "unsupported_response_type",
        ),
        (
            authorize_url(&op, "app", "openid", "").replace("S256", "plain"),
            "invalid_request",
        ),
        (
            authorize_url(&op, "app", "openid", "")
                .replace(&format!("&code_challenge={}", pkce::s256(VERIFIER)), ""),
            "invalid_request",
        ),
        (
            authorize_url(&op, "app", "openid", "").replace(&pkce::s256(VERIFIER), &"a".repeat(42)),
            "invalid_request",
        ),
        (
            authorize_url(&op, "app", "openid", "&nonce=again"),
            "invalid_request",
        ),
    ];
    for (url, error) in cases {
        let res = get(&op, &url).await;
        assert_eq!(res.status(), 302, "{url}");
        let loc = res.headers()["location"].to_str().unwrap();
        assert!(loc.starts_with(REDIRECT));
        assert_eq!(query_param(loc, "error").as_deref(), Some(error), "{url}");
        assert_eq!(query_param(loc, "state").as_deref(), Some("st ate"));
        assert_eq!(
            query_param(loc, "iss").as_deref(),
            Some(op.server.url.as_str())
        );
    }
}

#[tokio::test]
async fn prompt_none_and_login_required() {
    let op = op().await;
    // Not signed in: prompt=none answers login_required without UI.
    let res = op
        .server
        .client
        .get(authorize_url(&op, "app", "openid", "&prompt=none"))
        .send()
        .await
        .unwrap();
    let loc = res.headers()["location"].to_str().unwrap();
    assert_eq!(query_param(loc, "error").as_deref(), Some("login_required"));
    // Not signed in, no prompt: the login page, coming back to authorize.
    let res = op
        .server
        .client
        .get(authorize_url(&op, "app", "openid", ""))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let loc = res.headers()["location"].to_str().unwrap();
    assert!(
        loc.starts_with("/login?return_to=%2Foauth2%2Fauthorize"),
        "{loc}"
    );
    // max_age exceeded sends a signed-in user back to the login page.
    op.server.clock.advance(120);
    let res = get(&op, &authorize_url(&op, "app", "openid", "&max_age=60")).await;
    assert_eq!(res.status(), 303);
    assert!(
        res.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/login")
    );
}

#[tokio::test]
async fn consent_page_then_remembered_and_denial() {
    let op = op().await;
    let state = &op.server.running().unwrap().state;
    let (_, secret) = state
        .oauth
        .register_client(
            client("third", &[GrantType::AuthorizationCode], false),
            true,
        )
        .await
        .unwrap();
    let _ = secret;
    let url = authorize_url(&op, "third", "openid email", "");
    let page = get(&op, &url).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("third app") && html.contains("email"));
    let field = |name: &str| -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let v = html
            .split(&marker)
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        v.replace("&amp;", "&")
            .replace("&quot;", "\"")
            .replace("&#x27;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
    };
    let (csrf, request) = (field("csrf_token"), field("request"));
    // A GET of the consent route changes nothing; a foreign origin and a missing token are refused.
    assert_eq!(
        get(&op, &format!("{}/consent", op.server.url))
            .await
            .status(),
        405
    );
    let post = |origin: &str, token: &str, decision: &str| {
        op.server
            .client
            .post(format!("{}/consent", op.server.url))
            .header("cookie", &op.cookie)
            .header("origin", origin)
            .form(&[
                ("csrf_token", token),
                ("request", request.as_str()),
                ("decision", decision),
            ])
            .send()
    };
    assert_eq!(
        post("https://evil.example", &csrf, "allow")
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        post(&op.server.url, "forged", "allow")
            .await
            .unwrap()
            .status(),
        403
    );
    let denied = post(&op.server.url, &csrf, "deny").await.unwrap();
    assert_eq!(denied.status(), 303);
    assert_eq!(
        query_param(denied.headers()["location"].to_str().unwrap(), "error").as_deref(),
        Some("access_denied")
    );
    let allowed = post(&op.server.url, &csrf, "allow").await.unwrap();
    assert_eq!(allowed.status(), 303);
    assert!(query_param(allowed.headers()["location"].to_str().unwrap(), "code").is_some());
    // Remembered: no page the second time; prompt=consent asks again.
    let again = get(&op, &url).await;
    assert_eq!(again.status(), 302);
    assert_eq!(
        get(&op, &format!("{url}&prompt=consent")).await.status(),
        200
    );
    // The user can withdraw it.
    let res = op
        .server
        .send_json(
            reqwest::Method::DELETE,
            "/api/v1/consents/third",
            &op.cookie,
            None,
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(get(&op, &url).await.status(), 200);
    let none = get(&op, &format!("{url}&prompt=none")).await;
    assert_eq!(
        query_param(none.headers()["location"].to_str().unwrap(), "error").as_deref(),
        Some("consent_required")
    );
}

#[tokio::test]
async fn codes_are_single_use_bound_and_short_lived() {
    let op = op().await;
    // Replay: the second redemption fails and revokes the first one's tokens.
    let c = code(&op, "openid read").await;
    let first: Value = exchange(&op, &c).await.json().await.unwrap();
    let at = first["access_token"].as_str().unwrap();
    assert_eq!(introspect(&op, at).await["active"], true);
    let again = exchange(&op, &c).await;
    assert_eq!(again.status(), 400);
    assert_eq!(
        again.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    assert_eq!(
        introspect(&op, at).await["active"],
        false,
        "replay revoked the first tokens"
    );
    let rt = first["refresh_token"].as_str().unwrap();
    assert_eq!(
        token(
            &op,
            &[("grant_type", "refresh_token"), ("refresh_token", rt)]
        )
        .await
        .status(),
        400
    );

    // Wrong redirect_uri, wrong verifier, missing verifier: invalid_grant, and the code is spent.
    for form in [
        vec![
            ("redirect_uri", "https://app.example.com/other"),
            ("code_verifier", VERIFIER),
        ],
        vec![
            ("redirect_uri", REDIRECT),
            ("code_verifier", &"x".repeat(43)),
        ],
        vec![("redirect_uri", REDIRECT)],
    ] {
        let c = code(&op, "openid").await;
        let mut f = vec![("grant_type", "authorization_code"), ("code", c.as_str())];
        f.extend(form);
        let res = token(&op, &f).await;
        assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant");
        assert_eq!(
            exchange(&op, &c).await.status(),
            400,
            "code still alive after a failed redemption"
        );
    }
    // Expired after 60 s.
    let c = code(&op, "openid").await;
    op.server.clock.advance(61);
    assert_eq!(
        exchange(&op, &c).await.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );

    // 20 parallel redemptions: exactly one 200.
    op.server.clock.advance(0);
    let cookie = op
        .server
        .sign_in("kate@example.com", PASSWORD)
        .await
        .unwrap();
    let op2 = Op {
        server: op.server,
        secret: op.secret,
        cookie,
    };
    let c = code(&op2, "openid").await;
    let results = futures_util::future::join_all((0..20).map(|_| exchange(&op2, &c))).await;
    assert_eq!(results.iter().filter(|r| r.status() == 200).count(), 1);
}

#[tokio::test]
async fn a_code_of_another_client_is_refused() {
    let op = op().await;
    let state = &op.server.running().unwrap().state;
    let (_, other_secret) = state
        .oauth
        .register_client(client("other", &[GrantType::AuthorizationCode], true), true)
        .await
        .unwrap();
    let c = code(&op, "openid").await;
    let res = op
        .server
        .client
        .post(format!("{}/oauth2/token", op.server.url))
        .basic_auth("other", other_secret.as_deref())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", c.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant");
}

#[tokio::test]
async fn refresh_reuse_revokes_the_family() {
    let op = op_with(|c| {
        c.oauth = Some(authx_server::config::OAuthFile {
            refresh_grace_secs: Some(0),
            ..Default::default()
        })
    })
    .await;
    let c = code(&op, "openid read").await;
    let t1: Value = exchange(&op, &c).await.json().await.unwrap();
    let rt1 = t1["refresh_token"].as_str().unwrap().to_owned();
    let t2: Value = token(
        &op,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt1)],
    )
    .await
    .json()
    .await
    .unwrap();
    let rt2 = t2["refresh_token"].as_str().unwrap().to_owned();
    let at2 = t2["access_token"].as_str().unwrap().to_owned();
    assert_eq!(introspect(&op, &at2).await["active"], true);
    // Replay of RT1: invalid_grant, and RT2 and AT2 die with the family.
    let replay = token(
        &op,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt1)],
    )
    .await;
    assert_eq!(
        replay.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    assert_eq!(
        token(
            &op,
            &[("grant_type", "refresh_token"), ("refresh_token", &rt2)]
        )
        .await
        .status(),
        400
    );
    assert_eq!(introspect(&op, &at2).await, json!({"active": false}));
}

#[tokio::test]
async fn fifty_parallel_refreshes_one_winner() {
    let op = op_with(|c| {
        c.oauth = Some(authx_server::config::OAuthFile {
            refresh_grace_secs: Some(0),
            ..Default::default()
        })
    })
    .await;
    let c = code(&op, "openid").await;
    let t1: Value = exchange(&op, &c).await.json().await.unwrap();
    let rt1 = t1["refresh_token"].as_str().unwrap().to_owned();
    let results = {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", rt1.as_str()),
        ];
        futures_util::future::join_all((0..50).map(|_| token(&op, &form))).await
    };
    let ok = results.iter().filter(|r| r.status() == 200).count();
    assert_eq!(ok, 1, "exactly one of 50 parallel refreshes succeeds");
}

#[tokio::test]
async fn grace_window_returns_the_same_successor_and_never_forks() {
    let op = op().await; // default grace: 10 s
    let c = code(&op, "openid").await;
    let t1: Value = exchange(&op, &c).await.json().await.unwrap();
    let rt1 = t1["refresh_token"].as_str().unwrap().to_owned();
    let results = {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", rt1.as_str()),
        ];
        futures_util::future::join_all((0..20).map(|_| token(&op, &form))).await
    };
    let mut successors = std::collections::HashSet::new();
    for r in results {
        assert_eq!(r.status(), 200);
        successors.insert(
            r.json::<Value>().await.unwrap()["refresh_token"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(successors.len(), 1, "one successor, never a fork");
    let rt2 = successors.into_iter().next().unwrap();
    // Once the successor is used, or after the window, RT1 is a replay.
    let t3: Value = token(
        &op,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt2)],
    )
    .await
    .json()
    .await
    .unwrap();
    let replay = token(
        &op,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt1)],
    )
    .await;
    assert_eq!(replay.status(), 400);
    let rt3 = t3["refresh_token"].as_str().unwrap();
    assert_eq!(
        token(
            &op,
            &[("grant_type", "refresh_token"), ("refresh_token", rt3)]
        )
        .await
        .status(),
        400,
        "family revoked"
    );
}

#[tokio::test]
async fn refresh_is_bound_to_client_scope_and_lifetime() {
    let op = op().await;
    let state = &op.server.running().unwrap().state;
    let (_, b_secret) = state
        .oauth
        .register_client(
            client(
                "b",
                &[GrantType::AuthorizationCode, GrantType::RefreshToken],
                true,
            ),
            true,
        )
        .await
        .unwrap();
    let c = code(&op, "openid read").await;
    let t: Value = exchange(&op, &c).await.json().await.unwrap();
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    let as_b = op
        .server
        .client
        .post(format!("{}/oauth2/token", op.server.url))
        .basic_auth("b", b_secret.as_deref())
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        as_b.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    let wider = token(
        &op,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt),
            ("scope", "openid read write"),
        ],
    )
    .await;
    assert_eq!(
        wider.json::<Value>().await.unwrap()["error"],
        "invalid_scope"
    );
    // Idle expiry (7 days) ends it.
    op.server.clock.advance(7 * 86_400 + 1);
    assert_eq!(
        token(
            &op,
            &[("grant_type", "refresh_token"), ("refresh_token", &rt)]
        )
        .await
        .status(),
        400
    );
}

#[tokio::test]
async fn password_change_and_disable_revoke_tokens() {
    let op = op().await;
    let c = code(&op, "openid read").await;
    let t: Value = exchange(&op, &c).await.json().await.unwrap();
    let (at, rt) = (
        t["access_token"].as_str().unwrap().to_owned(),
        t["refresh_token"].as_str().unwrap().to_owned(),
    );
    // Introspected once, so that a server keeping active tokens in memory has it there.
    assert_eq!(introspect(&op, &at).await["active"], true);
    op.server.clock.advance(1);
    let res = op
        .server
        .send_json(reqwest::Method::POST, "/api/v1/password", &op.cookie, Some(json!({"current_password": PASSWORD, "new_password": "a different long passphrase"})))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        token(
            &op,
            &[("grant_type", "refresh_token"), ("refresh_token", &rt)]
        )
        .await
        .json::<Value>()
        .await
        .unwrap()["error"],
        "invalid_grant"
    );
    assert_eq!(introspect(&op, &at).await["active"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_reset_revokes_tokens_and_sessions() {
    let sink = authx_testkit::smtp::SmtpSink::start().await.unwrap();
    let port = sink.port();
    let op = op_with(move |f| crate::recovery::mail_to(f, port)).await;
    let c = code(&op, "openid read").await;
    let t: Value = exchange(&op, &c).await.json().await.unwrap();
    let (at, rt) = (
        t["access_token"].as_str().unwrap().to_owned(),
        t["refresh_token"].as_str().unwrap().to_owned(),
    );
    assert_eq!(introspect(&op, &at).await["active"], true);
    op.server.clock.advance(1);
    crate::recovery::forgot_api(&op.server, "kate@example.com").await;
    let mail = sink
        .wait_for(1, std::time::Duration::from_secs(20))
        .await
        .unwrap();
    let path = crate::recovery::reset_path(&mail[0]);
    let res = crate::recovery::reset(&op.server, &path, "a different long passphrase").await;
    assert_eq!(res.status(), 200);
    let refreshed = token(
        &op,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
    )
    .await;
    assert_eq!(
        refreshed.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    assert_eq!(introspect(&op, &at).await["active"], false);
    let me = op.server.get("/api/v1/me", Some(&op.cookie)).await.unwrap();
    assert_eq!(me.status(), 401);
}

#[tokio::test]
async fn client_credentials_for_confidential_clients_only() {
    let op = op().await;
    let res = token(
        &op,
        &[("grant_type", "client_credentials"), ("scope", "read")],
    )
    .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert!(body.get("refresh_token").is_none());
    let (_, c) = claims(body["access_token"].as_str().unwrap());
    assert_eq!(c["sub"], "client:app", "namespaced subject");
    assert_eq!(c["aud"], "https://api.example.com");
    assert_eq!(
        token(
            &op,
            &[("grant_type", "client_credentials"), ("scope", "admin")]
        )
        .await
        .json::<Value>()
        .await
        .unwrap()["error"],
        "invalid_scope"
    );
    assert_eq!(
        token(
            &op,
            &[
                ("grant_type", "client_credentials"),
                ("resource", "https://unknown.example.com")
            ]
        )
        .await
        .json::<Value>()
        .await
        .unwrap()["error"],
        "invalid_target"
    );
    // A public client cannot register for it, nor use it.
    let state = &op.server.running().unwrap().state;
    assert!(
        state
            .oauth
            .register_client(client("pub", &[GrantType::ClientCredentials], false), false)
            .await
            .is_err()
    );
    state
        .oauth
        .register_client(client("pub", &[GrantType::AuthorizationCode], false), false)
        .await
        .unwrap();
    let res = op
        .server
        .client
        .post(format!("{}/oauth2/token", op.server.url))
        .form(&[("grant_type", "client_credentials"), ("client_id", "pub")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "unauthorized_client"
    );
    assert_eq!(
        token(
            &op,
            &[
                ("grant_type", "password"),
                ("username", "a"),
                ("password", "b")
            ]
        )
        .await
        .json::<Value>()
        .await
        .unwrap()["error"],
        "unsupported_grant_type"
    );
}

#[tokio::test]
async fn token_endpoint_refuses_hostile_requests() {
    let op = op().await;
    let url = format!("{}/oauth2/token", op.server.url);
    assert_eq!(
        op.server.client.get(&url).send().await.unwrap().status(),
        405
    );
    let json_body = op
        .server
        .client
        .post(&url)
        .basic_auth("app", Some(&op.secret))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    // RFC 6749 §5.2: 400 invalid_request, not 415 (issue 14 item 15).
    assert_eq!(json_body.status(), 400);
    assert_eq!(
        json_body.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );
    // Repeated parameters.
    let dup = op
        .server
        .client
        .post(&url)
        .basic_auth("app", Some(&op.secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(
        dup.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );
    // Basic plus a secret in the body.
    let both = op
        .server
        .client
        .post(&url)
        .basic_auth("app", Some(&op.secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_secret", op.secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), 400);
    // A secret in the query string.
    let q = op
        .server
        .client
        .post(format!("{url}?client_secret={}", op.secret))
        .form(&[("grant_type", "client_credentials"), ("client_id", "app")])
        .send()
        .await
        .unwrap();
    assert_eq!(q.status(), 400);
    // Wrong secret: 401 with a Basic challenge.
    let wrong = op
        .server
        .client
        .post(&url)
        .basic_auth("app", Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(
        wrong.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_eq!(
        wrong.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );
    // client_secret_post works too.
    let post = op
        .server
        .client
        .post(&url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "app"),
            ("client_secret", op.secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 200);
    // Brute force on one client is throttled.
    let mut throttled = false;
    for _ in 0..40 {
        let r = op
            .server
            .client
            .post(&url)
            .basic_auth("app", Some("wrong"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            assert!(r.headers().get("retry-after").is_some());
            throttled = true;
            break;
        }
    }
    assert!(throttled, "wrong secrets were never throttled");
    // The secret is stored hashed only.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", op.server.db_path().display()))
        .await
        .unwrap();
    let rows: Vec<(String,)> = sqlx::query_as("SELECT CAST(secret_hash AS TEXT) FROM clients")
        .fetch_all(&pool)
        .await
        .unwrap_or_default();
    assert!(rows.iter().all(|(h,)| !h.contains(&op.secret)));
    pool.close().await;
}

#[tokio::test]
async fn introspection_and_revocation() {
    let op = op().await;
    let url = format!("{}/oauth2/introspect", op.server.url);
    assert_eq!(
        op.server
            .client
            .post(&url)
            .form(&[("token", "x")])
            .send()
            .await
            .unwrap()
            .status(),
        401,
        "unauthenticated"
    );
    let c = code(&op, "openid read").await;
    let t: Value = exchange(&op, &c).await.json().await.unwrap();
    let (at, rt) = (
        t["access_token"].as_str().unwrap().to_owned(),
        t["refresh_token"].as_str().unwrap().to_owned(),
    );
    let active = introspect(&op, &at).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["client_id"], "app");
    assert_eq!(introspect(&op, &rt).await["active"], true);
    // Unknown, malformed: exactly {"active": false}.
    for t in ["", "nonsense", &"A".repeat(43), "eyJhbGciOiJub25lIn0.e30."] {
        if t.is_empty() {
            continue;
        }
        assert_eq!(introspect(&op, t).await, json!({"active": false}), "{t}");
    }
    // Another client cannot see or revoke app's tokens.
    let state = &op.server.running().unwrap().state;
    let (_, b_secret) = state
        .oauth
        .register_client(client("b", &[GrantType::ClientCredentials], true), true)
        .await
        .unwrap();
    let b = |path: &str, token: &str| {
        op.server
            .client
            .post(format!("{}{path}", op.server.url))
            .basic_auth("b", b_secret.as_deref())
            .form(&[("token", token.to_owned())])
            .send()
    };
    assert_eq!(
        b("/oauth2/introspect", &at)
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap(),
        json!({"active": false})
    );
    assert_eq!(b("/oauth2/revoke", &rt).await.unwrap().status(), 200);
    assert_eq!(
        introspect(&op, &rt).await["active"],
        true,
        "B's revocation left A's token alone"
    );
    // Unsupported hint.
    let res = op
        .server
        .client
        .post(format!("{}/oauth2/revoke", op.server.url))
        .basic_auth("app", Some(&op.secret))
        .form(&[("token", rt.as_str()), ("token_type_hint", "id_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "unsupported_token_type"
    );
    // A revokes its refresh token: the family and its access token die.
    let res = op
        .server
        .client
        .post(format!("{}/oauth2/revoke", op.server.url))
        .basic_auth("app", Some(&op.secret))
        .form(&[("token", rt.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(introspect(&op, &rt).await, json!({"active": false}));
    assert_eq!(introspect(&op, &at).await, json!({"active": false}));
    // Revoking an access token directly.
    let cc: Value = token(
        &op,
        &[("grant_type", "client_credentials"), ("scope", "read")],
    )
    .await
    .json()
    .await
    .unwrap();
    let cat = cc["access_token"].as_str().unwrap();
    assert_eq!(introspect(&op, cat).await["active"], true);
    op.server
        .client
        .post(format!("{}/oauth2/revoke", op.server.url))
        .basic_auth("app", Some(&op.secret))
        .form(&[("token", cat)])
        .send()
        .await
        .unwrap();
    assert_eq!(introspect(&op, cat).await, json!({"active": false}));
    // Expired.
    let cc: Value = token(
        &op,
        &[("grant_type", "client_credentials"), ("scope", "read")],
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        introspect(&op, cc["access_token"].as_str().unwrap()).await["active"],
        true
    );
    op.server.clock.advance(900 + 31);
    assert_eq!(
        introspect(&op, cc["access_token"].as_str().unwrap()).await,
        json!({"active": false})
    );
}

#[tokio::test]
async fn a_removed_resource_or_client_is_refused_from_the_next_request() {
    let op = op().await;
    let cc = |resource: Option<&'static str>| {
        let mut form = vec![("grant_type", "client_credentials"), ("scope", "read")];
        form.extend(resource.map(|r| ("resource", r)));
        let op = &op;
        async move { token(op, &form).await }
    };
    // Used once, so that a server keeping clients and resources in memory has both there.
    assert_eq!(cc(Some("https://api.example.com")).await.status(), 200);
    // A user's access token, checked once so that it is kept in memory too.
    let c = code(&op, "openid read").await;
    let t: Value = exchange(&op, &c).await.json().await.unwrap();
    let at = t["access_token"].as_str().unwrap().to_owned();
    let userinfo = || {
        op.server
            .client
            .get(format!("{}/oauth2/userinfo", op.server.url))
            .bearer_auth(&at)
            .send()
    };
    assert_eq!(userinfo().await.unwrap().status(), 200);
    let stores = op.server.running().unwrap().state.oauth.stores().clone();
    assert!(
        stores
            .clients
            .delete_resource("https://api.example.com")
            .await
            .unwrap()
    );
    let res = cc(Some("https://api.example.com")).await;
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "invalid_target"
    );

    assert!(stores.clients.delete_client("app").await.unwrap());
    let res = cc(None).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );
    // Its grants went with it: the user's access token is dead from the next request.
    assert_eq!(userinfo().await.unwrap().status(), 401);
}

/// Issue 14 item 4: a deleted client's client-credentials access tokens die with it
/// (introspection says inactive, also from the token cache), the deletion is published on the
/// revocation feed as a client-level event, and a client registered later under the same id
/// does not bring the old tokens back.
#[tokio::test]
async fn deleting_a_client_ends_its_client_credentials_tokens() {
    const API: &str = "https://api.example.com";
    let op = op().await;
    let state = &op.server.running().unwrap().state;
    let register = |id: &'static str| async move {
        state
            .oauth
            .register_client(client(id, &[GrantType::ClientCredentials], false), true)
            .await
            .unwrap()
            .1
            .unwrap()
    };
    // The API as a client under its resource id: it introspects its tokens and reads the feed.
    let api_secret = register(API).await;
    let worker_secret = register("worker").await;
    let res = op
        .server
        .client
        .post(format!("{}/oauth2/token", op.server.url))
        .basic_auth("worker", Some(&worker_secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "read"),
            ("resource", API),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let at = res.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let as_api = |path: &'static str| {
        op.server
            .client
            .post(format!("{}{path}", op.server.url))
            .basic_auth(urlencode(API), Some(urlencode(&api_secret)))
    };
    let introspect = || async {
        as_api("/oauth2/introspect")
            .form(&[("token", at.as_str())])
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    // Twice: the second answer comes from the token cache of a single instance.
    assert_eq!(introspect().await["active"], true);
    assert_eq!(introspect().await["client_id"], "worker");

    state
        .auth
        .create_user("admin@example.com", PASSWORD, true)
        .await
        .unwrap();
    let cookie = op
        .server
        .sign_in("admin@example.com", PASSWORD)
        .await
        .unwrap();
    let res = op
        .server
        .send_json(
            reqwest::Method::DELETE,
            "/api/v1/admin/clients/worker",
            &cookie,
            None,
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(introspect().await, json!({"active": false}));

    // Guards hear of it: a client-level event on the feed.
    let feed: Value = op
        .server
        .client
        .get(format!("{}/api/v1/revocations?after=0", op.server.url))
        .basic_auth(urlencode(API), Some(urlencode(&api_secret)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = feed["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == json!({"kind": "client_revoked", "client_id": "worker"})),
        "{feed}"
    );

    // A client registered later under the same id is another client.
    op.server.clock.advance(120);
    register("worker").await;
    assert_eq!(introspect().await, json!({"active": false}));
}

#[tokio::test]
async fn session_mints_a_short_lived_token_that_dies_with_it() {
    let op = op().await;
    let res = op
        .server
        .send_json(
            reqwest::Method::POST,
            "/api/v1/auth/token",
            &op.cookie,
            Some(json!({"resource": "https://api.example.com", "scope": "read"})),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let at = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(body["expires_in"], 300);
    let (_, c) = claims(&at);
    assert_eq!(c["aud"], "https://api.example.com");
    let as_api = |token: String| async move {
        // The API (registered as a client with the resource's id) introspects.
        token
    };
    let _ = as_api;
    assert_eq!(
        op.server
            .send_json(
                reqwest::Method::POST,
                "/api/v1/auth/sign-out",
                &op.cookie,
                None
            )
            .await
            .unwrap()
            .status(),
        204
    );
    let state = &op.server.running().unwrap().state;
    assert!(
        state
            .oauth
            .active_access_token(&at)
            .await
            .unwrap()
            .is_none(),
        "token outlived its session"
    );
    // Without the CSRF token the call is refused.
    let cookie = op
        .server
        .sign_in("kate@example.com", PASSWORD)
        .await
        .unwrap();
    let res = op
        .server
        .client
        .post(format!("{}/api/v1/auth/token", op.server.url))
        .header("origin", op.server.origin())
        .header("cookie", cookie)
        .json(&json!({"resource": "https://api.example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn key_rotation_publishes_first_and_keeps_old_tokens_valid() {
    let op = op().await;
    let state = &op.server.running().unwrap().state;
    let before: Value = op
        .server
        .get("/oauth2/jwks", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let old: Value = token(
        &op,
        &[("grant_type", "client_credentials"), ("scope", "read")],
    )
    .await
    .json()
    .await
    .unwrap();
    let old_at = old["access_token"].as_str().unwrap().to_owned();
    let new_kid = state
        .oauth
        .publish_next_key(SigningAlg::Es256)
        .await
        .unwrap();
    state.oauth.ensure_keys().await.unwrap();
    let published: Value = op
        .server
        .get("/oauth2/jwks", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        published["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == new_kid.as_str()),
        "published before signing"
    );
    let still_old: Value = token(
        &op,
        &[("grant_type", "client_credentials"), ("scope", "read")],
    )
    .await
    .json()
    .await
    .unwrap();
    assert_ne!(
        claims(still_old["access_token"].as_str().unwrap()).0["kid"],
        new_kid.as_str(),
        "not signing during the lead time"
    );
    op.server.clock.advance(3600);
    state.oauth.ensure_keys().await.unwrap();
    let fresh: Value = token(
        &op,
        &[("grant_type", "client_credentials"), ("scope", "read")],
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        claims(fresh["access_token"].as_str().unwrap()).0["kid"],
        new_kid.as_str()
    );
    // Both keys verify while the old one's tokens can still be alive.
    assert_eq!(
        introspect(&op, fresh["access_token"].as_str().unwrap()).await["active"],
        true
    );
    let jwks: Value = op
        .server
        .get("/oauth2/jwks", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        jwks["keys"].as_array().unwrap().len(),
        before["keys"].as_array().unwrap().len() + 1
    );
    // After the longest token lifetime the retired key leaves the set.
    op.server.clock.advance(900 + 31);
    state.oauth.ensure_keys().await.unwrap();
    let after: Value = op
        .server
        .get("/oauth2/jwks", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        after["keys"].as_array().unwrap().len(),
        before["keys"].as_array().unwrap().len()
    );
    let _ = old_at;
}

#[tokio::test]
async fn rp_initiated_logout_returns_only_to_registered_uris() {
    let op = op().await;
    let res = get(
        &op,
        &format!(
            "{}/oauth2/logout?client_id=app&post_logout_redirect_uri={}",
            op.server.url,
            urlencode("https://evil.example/")
        ),
    )
    .await;
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
    let page = get(
        &op,
        &format!(
            "{}/oauth2/logout?client_id=app&state=s1&post_logout_redirect_uri={}",
            op.server.url,
            urlencode("https://app.example.com/bye")
        ),
    )
    .await;
    assert_eq!(page.status(), 200);
    assert_eq!(
        op.server
            .get("/api/v1/me", Some(&op.cookie))
            .await
            .unwrap()
            .status(),
        200,
        "GET changes nothing"
    );
    let html = page.text().await.unwrap();
    let field = |name: &str| {
        html.split(&format!("name=\"{name}\" value=\""))
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .replace("&amp;", "&")
    };
    let res = op
        .server
        .client
        .post(format!("{}/oauth2/logout", op.server.url))
        .header("cookie", &op.cookie)
        .header("origin", op.server.origin())
        .form(&[
            ("csrf_token", field("csrf_token")),
            ("request", field("request")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(
        res.headers()["location"],
        "https://app.example.com/bye?state=s1"
    );
    assert_eq!(
        op.server
            .get("/api/v1/me", Some(&op.cookie))
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn grants_stand_in_the_session_inventory_and_can_be_revoked_there() {
    let op = op().await;
    let c = code(&op, "openid read").await;
    let t: Value = exchange(&op, &c).await.json().await.unwrap();
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    let list: Value = op
        .server
        .get("/api/v1/sessions", Some(&op.cookie))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let grant = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "application")
        .cloned()
        .expect("grant listed");
    assert_eq!(grant["client_id"], "app");
    let account = op
        .server
        .get("/account", Some(&op.cookie))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        account.contains("app app"),
        "the account page names the application"
    );
    let id = grant["id"].as_str().unwrap();
    let res = op
        .server
        .send_json(
            reqwest::Method::DELETE,
            &format!("/api/v1/sessions/{id}"),
            &op.cookie,
            None,
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(
        token(
            &op,
            &[("grant_type", "refresh_token"), ("refresh_token", &rt)]
        )
        .await
        .status(),
        400
    );
    assert_eq!(
        introspect(&op, t["access_token"].as_str().unwrap()).await["active"],
        false
    );
}

/// Accepts one HTTP POST and returns its body.
async fn receive_one_post(listener: tokio::net::TcpListener) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (mut s, _) = listener.accept().await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.unwrap();
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await
                    .unwrap();
                return body.to_owned();
            }
        }
        if n == 0 {
            return String::new();
        }
    }
}

#[tokio::test]
async fn back_channel_logout_token_reaches_the_client_when_the_session_ends() {
    let op = op().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}/backchannel", listener.local_addr().unwrap());
    let state = &op.server.running().unwrap().state;
    let mut c = client(
        "rp",
        &[GrantType::AuthorizationCode, GrantType::RefreshToken],
        true,
    );
    c.backchannel_logout_uri = Some(uri);
    let (_, secret) = state.oauth.register_client(c, true).await.unwrap();
    let res = get(&op, &authorize_url(&op, "rp", "openid", "")).await;
    let code = query_param(res.headers()["location"].to_str().unwrap(), "code").unwrap();
    let t: Value = op
        .server
        .client
        .post(format!("{}/oauth2/token", op.server.url))
        .basic_auth("rp", secret.as_deref())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (_, id) = claims(t["id_token"].as_str().unwrap());
    let received = tokio::spawn(receive_one_post(listener));
    assert_eq!(
        op.server
            .send_json(
                reqwest::Method::POST,
                "/api/v1/auth/sign-out",
                &op.cookie,
                None
            )
            .await
            .unwrap()
            .status(),
        204
    );
    let body = tokio::time::timeout(std::time::Duration::from_secs(10), received)
        .await
        .expect("no logout token arrived")
        .unwrap();
    let token = form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "logout_token")
        .unwrap()
        .1
        .into_owned();
    let (h, c) = claims(&token);
    assert_eq!(h["typ"], "logout+jwt");
    assert_eq!(c["aud"], "rp");
    assert_eq!(c["iss"], op.server.url);
    assert_eq!(c["sub"], id["sub"]);
    assert_eq!(c["sid"], id["sid"]);
    assert!(c["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(c.get("nonce").is_none());
}

#[tokio::test]
async fn first_party_spa_keeps_its_refresh_token_in_a_strict_cookie() {
    let op = op_with(|c| {
        c.oauth = Some(authx_server::config::OAuthFile {
            refresh_grace_secs: Some(0),
            ..Default::default()
        })
    })
    .await;
    let state = &op.server.running().unwrap().state;
    state
        .oauth
        .register_client(
            client(
                "spa",
                &[GrantType::AuthorizationCode, GrantType::RefreshToken],
                true,
            ),
            false,
        )
        .await
        .unwrap();
    let res = get(&op, &authorize_url(&op, "spa", "openid", "")).await;
    let code = query_param(res.headers()["location"].to_str().unwrap(), "code").unwrap();
    let url = format!("{}/oauth2/token", op.server.url);
    let res = op
        .server
        .client
        .post(&url)
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "spa"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("refresh_token_delivery", "cookie"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let set = authx_testkit::set_cookies(&res);
    let cookie = set
        .iter()
        .find(|c| c.starts_with("authx_refresh="))
        .expect("refresh cookie")
        .clone();
    for attr in ["Path=/oauth2/token", "HttpOnly", "SameSite=Strict"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    let body: Value = res.json().await.unwrap();
    assert!(
        body.get("refresh_token").is_none(),
        "not in script-readable JSON"
    );
    let rt1 = cookie.split(';').next().unwrap().to_owned();
    // Refresh with the cookie alone: rotation and reuse detection work as ever.
    let refresh = |c: String| {
        op.server
            .client
            .post(&url)
            .header("cookie", c)
            .form(&[("grant_type", "refresh_token"), ("client_id", "spa")])
            .send()
    };
    let r2 = refresh(rt1.clone()).await.unwrap();
    assert_eq!(r2.status(), 200);
    let rt2 = authx_testkit::set_cookies(&r2)
        .into_iter()
        .find(|c| c.starts_with("authx_refresh="))
        .unwrap();
    let rt2 = rt2.split(';').next().unwrap().to_owned();
    assert_ne!(rt1, rt2);
    assert_eq!(refresh(rt1).await.unwrap().status(), 400, "replay refused");
    assert_eq!(refresh(rt2).await.unwrap().status(), 400, "family revoked");
    // Only first-party public clients may ask for it.
    let res = token(
        &op,
        &[
            ("grant_type", "client_credentials"),
            ("refresh_token_delivery", "cookie"),
        ],
    )
    .await;
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn signing_out_everywhere_else_ends_every_application_grant() {
    let op = op().await;
    let c = code(&op, "openid read").await;
    let t: Value = exchange(&op, &c).await.json().await.unwrap();
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    let res = op
        .server
        .send_json(
            reqwest::Method::POST,
            "/api/v1/sessions/revoke-others",
            &op.cookie,
            None,
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        op.server
            .get("/api/v1/me", Some(&op.cookie))
            .await
            .unwrap()
            .status(),
        200,
        "this session stays"
    );
    assert_eq!(
        token(
            &op,
            &[("grant_type", "refresh_token"), ("refresh_token", &rt)]
        )
        .await
        .status(),
        400
    );
    assert_eq!(
        introspect(&op, t["access_token"].as_str().unwrap()).await["active"],
        false
    );
}

/// Issue 14 item 15: every endpoint that takes a form (token, introspection, revocation, device
/// authorization) answers a body of another type with RFC 6749 §5.2's `400 invalid_request`
/// JSON, not `415`.
#[tokio::test]
async fn form_endpoints_answer_400_invalid_request_to_other_bodies() {
    let op = op().await;
    let bodies: [(Option<&str>, &str); 4] = [
        (
            Some("application/json"),
            r#"{"grant_type":"client_credentials","token":"x"}"#,
        ),
        (Some("text/plain"), "grant_type=client_credentials&token=x"),
        (Some("multipart/form-data; boundary=x"), "--x--"),
        (None, "grant_type=client_credentials&token=x"),
    ];
    for path in [
        "/oauth2/token",
        "/oauth2/introspect",
        "/oauth2/revoke",
        "/oauth2/device_authorization",
    ] {
        for (content_type, body) in bodies {
            let mut req = op
                .server
                .client
                .post(format!("{}{path}", op.server.url))
                .basic_auth("app", Some(&op.secret))
                .body(body);
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 400, "{path} with {content_type:?}");
            assert!(
                res.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("application/json"),
                "{path}"
            );
            assert_eq!(res.headers()["cache-control"], "no-store", "{path}");
            let v: Value = res.json().await.unwrap();
            assert_eq!(
                v["error"], "invalid_request",
                "{path} with {content_type:?}"
            );
            assert!(v["error_description"].is_string());
        }
    }
}

/// An ID token of `app` for the session behind `cookie` (authorization code flow).
async fn id_token_for(op: &Op, cookie: &str) -> String {
    let res = op
        .server
        .client
        .get(authorize_url(op, "app", "openid", ""))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    let loc = res.headers()["location"].to_str().unwrap().to_owned();
    let code = query_param(&loc, "code").unwrap();
    let t: Value = exchange(op, &code).await.json().await.unwrap();
    t["id_token"].as_str().unwrap().to_owned()
}

async fn logout_get(op: &Op, cookie: &str, query: &[(&str, &str)]) -> reqwest::Response {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query)
        .finish();
    op.server
        .client
        .get(format!("{}/oauth2/logout?{q}", op.server.url))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

async fn me_status(op: &Op, cookie: &str) -> u16 {
    op.server
        .get("/api/v1/me", Some(cookie))
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Issue 14 item 5: an `id_token_hint` issued for the current session to the asking client ends
/// the session without a confirmation page (still only to a registered URI, `state` kept); a
/// hint of another session, of another client, or one not signed by this server asks first.
/// The confirmation page's CSP lets its form's redirect reach the application's origin.
#[tokio::test]
async fn logout_with_a_hint_of_this_session_skips_the_confirmation() {
    let op = op().await;
    let state = &op.server.running().unwrap().state;
    let mut other = client("other", &[GrantType::AuthorizationCode], true);
    other.post_logout_redirect_uris = vec!["https://other.example.com/bye".into()];
    state.oauth.register_client(other, true).await.unwrap();
    let second = op
        .server
        .sign_in("kate@example.com", PASSWORD)
        .await
        .unwrap();
    let hint_first = id_token_for(&op, &op.cookie).await;
    let hint_second = id_token_for(&op, &second).await;
    assert_ne!(claims(&hint_first).1["sid"], claims(&hint_second).1["sid"]);
    let bye = "https://app.example.com/bye";

    // Another session's ID token (same user, same client): confirmation, nothing ended.
    let forged = {
        let mut parts: Vec<&str> = hint_first.split('.').collect();
        let sig = parts[2].chars().rev().collect::<String>();
        parts[2] = &sig;
        parts.join(".")
    };
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "another session's hint",
            vec![
                ("id_token_hint", &hint_second),
                ("post_logout_redirect_uri", bye),
                ("state", "s1"),
            ],
        ),
        (
            "another session's hint, with client_id",
            vec![
                ("client_id", "app"),
                ("id_token_hint", &hint_second),
                ("post_logout_redirect_uri", bye),
            ],
        ),
        (
            "a hint for another client than the one asking",
            vec![
                ("client_id", "other"),
                ("id_token_hint", &hint_first),
                ("post_logout_redirect_uri", "https://other.example.com/bye"),
            ],
        ),
        (
            "a hint with a broken signature",
            vec![
                ("client_id", "app"),
                ("id_token_hint", &forged),
                ("post_logout_redirect_uri", bye),
            ],
        ),
        (
            "no hint",
            vec![("client_id", "app"), ("post_logout_redirect_uri", bye)],
        ),
    ];
    for (name, query) in &cases {
        let res = logout_get(&op, &op.cookie, query).await;
        assert_eq!(res.status(), 200, "{name}");
        let csp = res.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        let origin = if name.contains("another client") {
            "https://other.example.com"
        } else {
            "https://app.example.com"
        };
        assert!(
            csp.contains(&format!("form-action 'self' {origin};")),
            "{name}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{name}: {csp}");
        let html = res.text().await.unwrap();
        assert!(
            html.contains("id=\"logout\""),
            "{name}: no confirmation form"
        );
        assert_eq!(me_status(&op, &op.cookie).await, 200, "{name}: signed out");
    }
    // A hint never makes an unregistered address acceptable.
    let res = logout_get(
        &op,
        &op.cookie,
        &[
            ("id_token_hint", &hint_first),
            ("post_logout_redirect_uri", "https://evil.example/"),
        ],
    )
    .await;
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
    assert_eq!(me_status(&op, &op.cookie).await, 200);

    // This session's own hint: signed out at once, back to the application with `state`.
    let res = logout_get(
        &op,
        &op.cookie,
        &[
            ("id_token_hint", &hint_first),
            ("post_logout_redirect_uri", bye),
            ("state", "s 2"),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(
        res.headers()["location"],
        "https://app.example.com/bye?state=s+2"
    );
    assert!(
        authx_testkit::set_cookies(&res)
            .iter()
            .any(|c| c.starts_with("authx_session=;")),
        "the session cookie is cleared"
    );
    assert_eq!(me_status(&op, &op.cookie).await, 401);
    assert_eq!(
        me_status(&op, &second).await,
        200,
        "only this session ended"
    );

    // Without a return address the hint still skips the question; a signed-out page follows.
    let res = logout_get(
        &op,
        &second,
        &[("client_id", "app"), ("id_token_hint", &hint_second)],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("You are signed out"));
    assert_eq!(me_status(&op, &second).await, 401);
}

/// A compact JWS whose header names `kid` (the signature is never looked at: the kid is unknown).
fn token_with_kid(kid: &str) -> String {
    let b64 = |v: Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap())
    };
    format!(
        "{}.{}.{}",
        b64(json!({"alg": "ES256", "typ": "at+jwt", "kid": kid})),
        b64(json!({"sub": "nobody"})),
        "c2lnbmF0dXJl"
    )
}

async fn userinfo_status(op: &Op, token: &str) -> u16 {
    op.server
        .client
        .get(format!("{}/oauth2/userinfo", op.server.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Issue 14 item 8: bearer tokens with unknown `kid`s, sent at once to the unauthenticated and
/// unlimited userinfo endpoint, reload the keys at most once a minute (one reload for all of
/// them), and a reload that finds the same keys neither rebuilds the ring nor flushes the token
/// cache. A key that another instance really activated is still picked up: by the scheduled
/// reload, or by the first token naming it once the minute has passed.
#[tokio::test]
async fn unknown_kids_reload_the_keys_at_most_once_a_minute() {
    use authx_core::oauth::keys::{KeyEncryptor, Signer, generate};
    use authx_core::oauth::store::KeyStateChange;
    const KEK: [u8; 32] = [7; 32];
    let op = op_with(|f| {
        f.oauth = Some(authx_server::config::OAuthFile {
            key_encryption_key: Some(base64::engine::general_purpose::STANDARD.encode(KEK)),
            ..authx_server::config::OAuthFile::default()
        });
    })
    .await;
    let state = &op.server.running().unwrap().state;
    let generation = || state.revocations.generation().current();
    let reloads = || state.oauth.unknown_kid_reloads();

    // A token found active is kept in the token cache.
    let cc: Value = token(
        &op,
        &[("grant_type", "client_credentials"), ("scope", "read")],
    )
    .await
    .json()
    .await
    .unwrap();
    let cached = cc["access_token"].as_str().unwrap().to_owned();
    assert_eq!(introspect(&op, &cached).await["active"], true);
    let (gen_before, reloads_before) = (generation(), reloads());

    // 200 requests at once, each with a made-up kid.
    let answers = futures_util::future::join_all((0..200).map(|i| {
        let t = token_with_kid(&format!("made-up-{i}"));
        let op = &op;
        async move { userinfo_status(op, &t).await }
    }))
    .await;
    assert!(answers.iter().all(|s| *s == 401), "{answers:?}");
    for i in 0..20 {
        assert_eq!(
            userinfo_status(&op, &token_with_kid(&format!("later-{i}"))).await,
            401
        );
    }
    assert!(
        reloads() - reloads_before <= 1,
        "{} reloads for unknown kids within a minute",
        reloads() - reloads_before
    );
    assert_eq!(generation(), gen_before, "the token cache was flushed");
    // The scheduled reload finds the same keys: no flush either.
    state.oauth.ensure_keys().await.unwrap();
    assert_eq!(
        generation(),
        gen_before,
        "an unchanged key set flushed the cache"
    );
    assert_eq!(introspect(&op, &cached).await["active"], true);

    // Another instance activates a key of its own and signs with it.
    let kate = state
        .auth
        .stores()
        .accounts
        .user_by_email("kate@example.com")
        .await
        .unwrap()
        .unwrap();
    let enc = KeyEncryptor::new(&KEK).unwrap();
    let keys = state.oauth.stores().keys.clone();
    let activate = |alg| {
        let enc = &enc;
        let keys = keys.clone();
        let clock = op.server.clock.clone();
        async move {
            let now = authx_core::Clock::now(&clock);
            let k = generate(alg, enc, now).unwrap();
            keys.insert_key(&k).await.unwrap();
            keys.set_key_state(KeyStateChange::activate(&k.kid, now))
                .await
                .unwrap();
            let pkcs8 = enc.open(&k.kid, &k.private_key_encrypted).unwrap();
            Signer::from_pkcs8(alg, &k.kid, &pkcs8).unwrap()
        }
    };
    let user_token = |signer: &Signer| {
        let now = authx_core::Clock::now(&op.server.clock).secs();
        authx_core::oauth::jwt::sign(
            signer,
            "at+jwt",
            &json!({
                "iss": op.server.url, "sub": kate.id, "aud": op.server.url, "exp": now + 300,
                "iat": now, "jti": format!("jti-{}", signer.kid()), "client_id": "app",
                "scope": "openid",
            }),
        )
        .unwrap()
    };
    let fresh = activate(SigningAlg::EdDsa).await;
    let fresh_token = user_token(&fresh);
    // Within the minute its kid is one more unknown kid.
    assert_eq!(userinfo_status(&op, &fresh_token).await, 401);
    assert!(reloads() - reloads_before <= 1);
    // A minute later the first token that names it reloads the keys once, and it verifies.
    op.server.clock.advance(61);
    let before = reloads();
    assert_eq!(userinfo_status(&op, &fresh_token).await, 200);
    assert_eq!(reloads(), before + 1);
    assert_ne!(generation(), gen_before, "a new key set flushes the cache");
    assert_eq!(
        userinfo_status(&op, &token_with_kid("made-up-again")).await,
        401
    );
    assert_eq!(reloads(), before + 1, "the minute starts again");

    // The scheduled reload picks up the next one without any unknown-kid reload.
    let next = activate(SigningAlg::Es256).await;
    state.oauth.ensure_keys().await.unwrap();
    assert_eq!(userinfo_status(&op, &user_token(&next)).await, 200);
    assert_eq!(reloads(), before + 1);
}
