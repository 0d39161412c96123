//! Issue 14 item 1: an authorization code lives no longer than the sign-in that made it.
//! Sign-out, "sign out everywhere else", a password change, a disable (even when the account
//! is enabled again) and the session's expiry all leave the code worthless: redeeming it
//! answers `invalid_grant`, and the store no longer holds it. Sessions may live in Redis while
//! codes live in SQL, so the check at redemption asks the session store.

use authx_core::oauth::client::GrantType;
use authx_core::oauth::pkce;
use authx_core::secret::TokenHash;
use authx_testkit::services::SharedServices;
use authx_testkit::{PASSWORD, TestServer};
use serde_json::{Value, json};

use crate::oidc::{REDIRECT, VERIFIER, client, query_param, urlencode};

const API: &str = "https://api.example.com";
const EMAIL: &str = "kate@example.com";

/// Registers the API and the confidential first-party client `app`; returns its secret.
async fn provider(server: &TestServer) -> String {
    let state = &server.running().unwrap().state;
    authx_server::web::api::register_resource(state, API.into(), vec!["read".into()])
        .await
        .unwrap();
    let (_, secret) = state
        .oauth
        .register_client(
            client(
                "app",
                &[GrantType::AuthorizationCode, GrantType::RefreshToken],
                true,
            ),
            true,
        )
        .await
        .unwrap();
    server.create_user(EMAIL, PASSWORD).await.unwrap();
    secret.unwrap()
}

/// Authorizes `app` with the session behind `cookie` and returns the code.
async fn authorize(server: &TestServer, cookie: &str) -> String {
    let url = format!(
        "{}/oauth2/authorize?response_type=code&client_id=app&redirect_uri={}&scope={}&state=s&code_challenge={}&code_challenge_method=S256",
        server.url,
        urlencode(REDIRECT),
        urlencode("openid read"),
        pkce::s256(VERIFIER)
    );
    let res = server
        .client
        .get(url)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    let loc = res.headers()["location"].to_str().unwrap().to_owned();
    query_param(&loc, "code").unwrap()
}

/// Redeems a code: (status, body).
async fn redeem(server: &TestServer, secret: &str, code: &str) -> (u16, Value) {
    let res = server
        .client
        .post(format!("{}/oauth2/token", server.url))
        .basic_auth("app", Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn refused(server: &TestServer, secret: &str, code: &str, why: &str) {
    let (status, body) = redeem(server, secret, code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{why}: {body}"
    );
}

/// How many rows the store holds for a code (any backend).
async fn code_rows(database_url: &str, code: &str) -> i64 {
    let hex = TokenHash::of(code.as_bytes()).to_hex();
    let sql = "SELECT COUNT(*) FROM auth_codes WHERE code_hash = $1";
    if database_url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(database_url).await.unwrap();
        let (n,): (i64,) = sqlx::query_as(sql)
            .bind(hex)
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    } else {
        let pool = sqlx::PgPool::connect(database_url).await.unwrap();
        let (n,): (i64,) = sqlx::query_as(sql)
            .bind(hex)
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    }
}

fn sqlite_url(server: &TestServer) -> String {
    format!("sqlite://{}", server.db_path().display())
}

async fn user_id(server: &TestServer) -> authx_core::user::UserId {
    server
        .running()
        .unwrap()
        .state
        .auth
        .stores()
        .accounts
        .user_by_email(EMAIL)
        .await
        .unwrap()
        .unwrap()
        .id
}

/// Every way a sign-in ends, on one server: the code it minted is gone and refused.
async fn codes_die_with_their_sign_in(server: &TestServer, db: &str) {
    let secret = provider(server).await;

    // Sign-out.
    let cookie = server.sign_in(EMAIL, PASSWORD).await.unwrap();
    let code = authorize(server, &cookie).await;
    let res = server
        .send_json(
            reqwest::Method::POST,
            "/api/v1/auth/sign-out",
            &cookie,
            None,
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(code_rows(db, &code).await, 0, "sign-out left the code");
    refused(server, &secret, &code, "sign-out").await;

    // One session revoked from another.
    let phone = server.sign_in(EMAIL, PASSWORD).await.unwrap();
    let code = authorize(server, &phone).await;
    let laptop = server.sign_in(EMAIL, PASSWORD).await.unwrap();
    let listed: Value = server
        .get("/api/v1/sessions", Some(&phone))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let phone_id = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = server
        .send_json(
            reqwest::Method::DELETE,
            &format!("/api/v1/sessions/{phone_id}"),
            &laptop,
            None,
        )
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(
        code_rows(db, &code).await,
        0,
        "revoking the session left the code"
    );
    refused(server, &secret, &code, "session revoked").await;

    // "Sign out everywhere else" from another session; that session's own code survives.
    let phone = server.sign_in(EMAIL, PASSWORD).await.unwrap();
    let laptop = server.sign_in(EMAIL, PASSWORD).await.unwrap();
    let code = authorize(server, &phone).await;
    let kept = authorize(server, &laptop).await;
    let res = server
        .send_json(
            reqwest::Method::POST,
            "/api/v1/sessions/revoke-others",
            &laptop,
            None,
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(code_rows(db, &code).await, 0, "revoke-others left the code");
    refused(server, &secret, &code, "revoke-others").await;
    assert_eq!(redeem(server, &secret, &kept).await.0, 200);

    // A password change made in another session.
    let phone = server.sign_in(EMAIL, PASSWORD).await.unwrap();
    let code = authorize(server, &phone).await;
    server.clock.advance(1);
    let res = server
        .send_json(
            reqwest::Method::POST,
            "/api/v1/password",
            &laptop,
            Some(json!({"current_password": PASSWORD, "new_password": "a different long passphrase"})),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let laptop = authx_testkit::session_cookie(&res).unwrap();
    assert_eq!(
        code_rows(db, &code).await,
        0,
        "password change left the code"
    );
    refused(server, &secret, &code, "password change").await;

    // A disable, then the account enabled again: the old code stays dead.
    let code = authorize(server, &laptop).await;
    let state = &server.running().unwrap().state;
    let id = user_id(server).await;
    state.auth.disable_user(&id).await.unwrap();
    state.auth.enable_user(&id).await.unwrap();
    assert_eq!(code_rows(db, &code).await, 0, "disable left the code");
    refused(server, &secret, &code, "disable and re-enable").await;

    // The session idles out while its code is still unexpired: nothing deleted the code, and
    // redemption still refuses it because the session store says the session is over. Once
    // the dead session is presented again, its codes go.
    let cookie = server
        .sign_in(EMAIL, "a different long passphrase")
        .await
        .unwrap();
    let code = authorize(server, &cookie).await;
    let other = authorize(server, &cookie).await;
    server.clock.advance(41);
    assert_eq!(code_rows(db, &code).await, 1);
    refused(server, &secret, &code, "idle expiry").await;
    assert_eq!(
        server
            .get("/api/v1/me", Some(&cookie))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(code_rows(db, &other).await, 0, "expiry left the code");
}

/// A 40 s idle timeout, so a session can end while its 60 s code is alive.
fn short_idle(f: &mut authx_server::config::FileConfig) {
    let s = f.session.get_or_insert_with(Default::default);
    s.idle_timeout_secs = Some(40);
    s.touch_interval_secs = Some(10);
}

#[tokio::test]
async fn a_code_dies_with_the_sign_in_that_made_it() {
    let server = TestServer::start_with(short_idle).await.unwrap();
    let db = sqlite_url(&server);
    codes_die_with_their_sign_in(&server, &db).await;
}

/// The same with sessions in Redis and codes in PostgreSQL.
#[tokio::test]
async fn a_code_dies_with_its_sign_in_when_sessions_live_in_redis() {
    let Some(services) = SharedServices::acquire(
        "code_session::a_code_dies_with_its_sign_in_when_sessions_live_in_redis",
    )
    .await
    else {
        return;
    };
    let configure = services.configure();
    let server = TestServer::start_on(&services.database_url, move |f| {
        configure(f);
        short_idle(f);
    })
    .await
    .unwrap();
    codes_die_with_their_sign_in(&server, &services.database_url).await;
    server.stop().await;
    services.cleanup().await;
}

/// A device approval no device has redeemed yet is withdrawn by a disable: enabling the
/// account again does not bring it back.
#[tokio::test]
async fn a_device_approval_does_not_survive_a_disable() {
    let server = TestServer::start().await.unwrap();
    let state = &server.running().unwrap().state;
    let mut tv = client("tv", &[GrantType::DeviceCode], false);
    tv.redirect_uris.clear();
    tv.resources.clear();
    state.oauth.register_client(tv, false).await.unwrap();
    server.create_user(EMAIL, PASSWORD).await.unwrap();
    let cookie = server.sign_in(EMAIL, PASSWORD).await.unwrap();
    let v: Value = server
        .client
        .post(format!("{}/oauth2/device_authorization", server.url))
        .form(&[("client_id", "tv"), ("scope", "openid")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let device_code = v["device_code"].as_str().unwrap().to_owned();
    let csrf = server.csrf_token(&cookie).await.unwrap();
    let res = server
        .client
        .post(format!("{}/device", server.url))
        .header("origin", server.origin())
        .header("cookie", &cookie)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("user_code", v["user_code"].as_str().unwrap()),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let id = user_id(&server).await;
    state.auth.disable_user(&id).await.unwrap();
    state.auth.enable_user(&id).await.unwrap();
    let res = server
        .client
        .post(format!("{}/oauth2/token", server.url))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code.as_str()),
            ("client_id", "tv"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "access_denied");
}
