//! The audit trail (SECURITY.md #66, #67): a scenario produces the expected events, in order,
//! in the store and through the admin API; nothing secret is in them; a value carrying CR/LF
//! stays on one escaped log line.

use std::sync::{Arc, Mutex};

use authx_testkit::{PASSWORD, TestServer, session_cookie};

use super::sign_in_raw;
use reqwest::Method;
use serde_json::{Value, json};

async fn audit_api(server: &TestServer, cookie: &str, query: &str) -> reqwest::Response {
    server
        .get(&format!("/api/v1/admin/audit{query}"), Some(cookie))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_scenario_leaves_the_expected_trail() {
    let server = TestServer::start().await.unwrap();
    let state = &server.running().unwrap().state;
    let admin = state
        .auth
        .create_user("admin@example.com", PASSWORD, true)
        .await
        .unwrap();
    let kate = server
        .create_user("kate@example.com", PASSWORD)
        .await
        .unwrap();

    assert_eq!(
        sign_in_raw(&server, "kate@example.com", "not the password at all")
            .await
            .status(),
        401
    );
    let res = sign_in_raw(&server, "kate@example.com", PASSWORD).await;
    assert_eq!(res.status(), 200);
    let cookie = session_cookie(&res).unwrap();
    // A cookie-authenticated call without its CSRF token.
    let res = server
        .client
        .post(format!("{}/api/v1/sessions/revoke-others", server.url))
        .header("origin", server.origin())
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let new_password = "a brand new passphrase here";
    let res = server
        .send_json(
            Method::POST,
            "/api/v1/password",
            &cookie,
            Some(json!({"current_password": PASSWORD, "new_password": new_password})),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cookie = session_cookie(&res).unwrap();
    let res = server
        .send_json(Method::POST, "/api/v1/auth/sign-out", &cookie, None)
        .await
        .unwrap();
    assert_eq!(res.status(), 204);

    // The administrator reads Kate's trail.
    let admin_cookie = server.sign_in("admin@example.com", PASSWORD).await.unwrap();
    state.auth.audit().flush().await;
    let res = audit_api(&server, &admin_cookie, "?user=kate@example.com").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let events = body["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "user_created",
            "sign_in_failed",
            "sign_in",
            "csrf_rejected",
            "password_changed",
            "sign_in",
            "sign_out",
        ]
    );
    let outcomes: Vec<&str> = events
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "success", "failure", "success", "failure", "success", "success", "success"
        ]
    );
    for e in events {
        assert_eq!(e["user_id"], kate.id.0.as_str());
        assert!(e["at"].as_str().unwrap().ends_with('Z'), "UTC: {e}");
    }
    // Events of HTTP requests carry the request's id, address and user agent.
    for e in &events[1..] {
        assert!(
            e["request_id"].as_str().is_some_and(|s| !s.is_empty()),
            "{e}"
        );
        assert_eq!(e["ip"], "127.0.0.1", "{e}");
        assert_eq!(e["user_agent"], "authx-testkit", "{e}");
    }
    assert_eq!(events[1]["detail"]["reason"], "wrong_password");
    // No secret: not the passwords, not a session token.
    let text = body.to_string();
    for secret in [PASSWORD, new_password, "not the password at all"] {
        assert!(!text.contains(secret), "a password is in the audit trail");
    }
    for c in [&cookie, &admin_cookie] {
        let token = c.split_once('=').unwrap().1;
        assert!(
            !text.contains(token),
            "a session token is in the audit trail"
        );
    }

    // Filters: kind, since, limit; `after` follows.
    let res = audit_api(&server, &admin_cookie, "?kind=sign_in&limit=2").await;
    let v: Value = res.json().await.unwrap();
    let list = v["events"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|e| e["kind"] == "sign_in"));
    assert_eq!(list[1]["user_id"], admin.id.0.as_str(), "newest last");
    let last_id = list[1]["id"].as_i64().unwrap();
    let res = audit_api(&server, &admin_cookie, &format!("?after={last_id}")).await;
    let v: Value = res.json().await.unwrap();
    assert!(
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["id"].as_i64().unwrap() > last_id)
    );
    let future = authx_core::Clock::now(&server.clock).plus(10).secs();
    let res = audit_api(&server, &admin_cookie, &format!("?since={future}")).await;
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["events"].as_array().unwrap().len(), 0);
    assert_eq!(
        audit_api(&server, &admin_cookie, "?limit=lots")
            .await
            .status(),
        400
    );

    // Administrators only.
    let kate_cookie = server
        .sign_in("kate@example.com", new_password)
        .await
        .unwrap();
    assert_eq!(audit_api(&server, &kate_cookie, "").await.status(), 403);
    assert_eq!(
        server
            .get("/api/v1/admin/audit", None)
            .await
            .unwrap()
            .status(),
        401
    );
    server.stop().await;
}

#[tokio::test]
async fn token_events_name_client_user_and_family_but_no_token() {
    let server = TestServer::start().await.unwrap();
    let state = &server.running().unwrap().state;
    // The API first: the client is registered with it.
    authx_server::web::api::register_resource(
        state,
        "https://api.example.com".into(),
        vec!["read".into()],
    )
    .await
    .unwrap();
    let (_, secret) = state
        .oauth
        .register_client(
            super::oidc::client(
                "worker",
                &[authx_core::oauth::client::GrantType::ClientCredentials],
                false,
            ),
            true,
        )
        .await
        .unwrap();
    let secret = secret.unwrap();
    let res = server
        .client
        .post(format!("{}/oauth2/token", server.url))
        .basic_auth("worker", Some(&secret))
        .form(&[("grant_type", "client_credentials"), ("scope", "read")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let at = res.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = server
        .client
        .post(format!("{}/oauth2/token", server.url))
        .basic_auth("worker", Some("wrong secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    state.auth.audit().flush().await;
    let events = state
        .audit_store
        .list_audit(&authx_core::audit::AuditQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let issued = events.iter().find(|e| e.kind == "token_issued").unwrap();
    assert_eq!(issued.client_id.as_deref(), Some("worker"));
    assert!(issued.detail.contains("client_credentials"));
    let failed = events
        .iter()
        .find(|e| e.kind == "client_auth_failed")
        .unwrap();
    assert_eq!(failed.outcome, "failure");
    let all = format!("{events:?}");
    assert!(!all.contains(&at), "an access token is in the audit trail");
    assert!(
        !all.contains(&secret),
        "a client secret is in the audit trail"
    );
    assert!(events.iter().any(|e| e.kind == "key_created"));
    server.stop().await;
}

/// Log output captured from this thread (the test runtime runs every task on it).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_username_with_cr_lf_stays_one_escaped_line() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = TestServer::start().await.unwrap();
    let forged = "victim@example.com\r\nFAKE event=sign_in outcome=success user_id=\"admin\"";
    let res = sign_in_raw(&server, forged, "not the password at all").await;
    assert_eq!(res.status(), 401);
    // A user agent is client-controlled too (the HTTP layer drops control characters in it).
    let state = &server.running().unwrap().state;
    state.auth.audit().flush().await;

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("FAKE")).collect();
    assert_eq!(lines.len(), 1, "the forged value split the line: {log}");
    assert!(lines[0].contains("sign_in_failed"), "{}", lines[0]);
    assert!(lines[0].contains("authx::audit"), "{}", lines[0]);
    assert!(!lines[0].trim_start().starts_with("FAKE"));
    assert!(!log.contains('\r'), "a raw carriage return reached the log");
    assert!(!log.contains("not the password at all"));

    // The store keeps the value as typed, safely inside a JSON object.
    let events = state
        .audit_store
        .list_audit(&authx_core::audit::AuditQuery {
            kind: Some("sign_in_failed".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    let detail: Value = serde_json::from_str(&events[0].detail).unwrap();
    assert_eq!(detail["email"], forged);
    assert!(!events[0].to_line().contains('\n'));
    server.stop().await;
}

#[tokio::test]
async fn a_broken_audit_table_fails_no_request_and_is_reported() {
    let server = TestServer::start().await.unwrap();
    server
        .create_user("kate@example.com", PASSWORD)
        .await
        .unwrap();
    let state = &server.running().unwrap().state;
    state.auth.audit().flush().await;
    let db = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}", server.db_path().display()))
        .await
        .unwrap();
    sqlx::query("DROP TABLE audit_events")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;

    // The user's request is answered as ever.
    let res = sign_in_raw(&server, "kate@example.com", PASSWORD).await;
    assert_eq!(res.status(), 200);
    // The event could not be stored: it was retried, then counted, never silently lost.
    state.auth.audit().flush().await;
    assert!(state.auth.audit().unstored() >= 1);
    let metrics = server.metrics().await.unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("authx_audit_unstored_events"))
        .unwrap();
    let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 1.0, "{line}");
    server.stop().await;
}
