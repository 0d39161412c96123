//! The whole life of a browser session.

use authx_testkit::{PASSWORD, TestServer, session_cookie, set_cookies};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Row as _;

use super::signed_in;

async fn me_status(server: &TestServer, cookie: &str) -> u16 {
    server
        .get("/api/v1/me", Some(cookie))
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn sign_in_sets_a_strict_cookie_and_me_works_until_sign_out() {
    let server = TestServer::start().await.unwrap();
    server
        .create_user("kate@example.com", PASSWORD)
        .await
        .unwrap();
    let res = server
        .client
        .post(format!("{}/api/v1/auth/sign-in", server.url))
        .header("origin", server.origin())
        .json(&json!({"email": "Kate@Example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let set = set_cookies(&res);
    let session = set
        .iter()
        .find(|c| c.starts_with("authx_session="))
        .expect("session cookie");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=86400"] {
        assert!(session.contains(attr), "{session} lacks {attr}");
    }
    assert!(!session.contains("Domain"), "{session}");
    let cookie = session_cookie(&res).unwrap();
    let token = cookie.split_once('=').unwrap().1.to_owned();
    assert_eq!(token.len(), 43);
    let body: Value = res.json().await.unwrap();
    assert!(
        body.get("session_token").is_none(),
        "token only in the body when asked for"
    );
    assert_eq!(body["user"]["email"], "kate@example.com");

    let me = server.get("/api/v1/me", Some(&cookie)).await.unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(me.headers()["cache-control"], "no-store");
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["user"]["email"], "kate@example.com");

    let out = server
        .send_json(Method::POST, "/api/v1/auth/sign-out", &cookie, None)
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    let cleared = set_cookies(&out);
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with("authx_session=;") && c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    assert_eq!(out.headers()["clear-site-data"], "\"cookies\"");
    // The captured cookie is dead: the row is gone, not just the browser's copy.
    assert_eq!(me_status(&server, &cookie).await, 401);
}

#[tokio::test]
async fn the_database_holds_only_hashes_and_a_hash_is_not_a_cookie() {
    let (server, cookie) = signed_in("hash@example.com").await;
    let token = cookie.split_once('=').unwrap().1.to_owned();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", server.db_path().display()))
        .await
        .unwrap();
    let rows = sqlx::query("SELECT * FROM sessions")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let mut stored_hash = String::new();
    for row in &rows {
        for i in 0..row.len() {
            if let Ok(Some(text)) = row.try_get::<Option<String>, _>(i) {
                assert!(!text.contains(&token), "raw token stored in column {i}");
                if text.len() == 64 {
                    stored_hash = text;
                }
            }
        }
    }
    // Also grep the raw file, WAL included: the token never touches disk.
    for suffix in ["", "-wal"] {
        let path = format!("{}{suffix}", server.db_path().display());
        if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                "raw token in {path}"
            );
        }
    }
    assert_eq!(stored_hash.len(), 64, "SHA-256 hex stored");
    assert_eq!(
        me_status(&server, &format!("authx_session={stored_hash}")).await,
        401
    );
    pool.close().await;
}

#[tokio::test]
async fn sign_in_replaces_a_planted_session_no_fixation() {
    let server = TestServer::start().await.unwrap();
    server
        .create_user("fix@example.com", PASSWORD)
        .await
        .unwrap();
    let a = server.sign_in("fix@example.com", PASSWORD).await.unwrap();
    // Sign in again presenting A: the answer sets B != A and A is dead.
    let res = server
        .client
        .post(format!("{}/api/v1/auth/sign-in", server.url))
        .header("origin", server.origin())
        .header("cookie", &a)
        .json(&json!({"email": "fix@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let b = session_cookie(&res).unwrap();
    assert_ne!(a, b);
    assert_eq!(me_status(&server, &a).await, 401);
    assert_eq!(me_status(&server, &b).await, 200);
    // A never-issued token presented at sign-in is not adopted either.
    let planted = "authx_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let res = server
        .client
        .post(format!("{}/api/v1/auth/sign-in", server.url))
        .header("origin", server.origin())
        .header("cookie", planted)
        .json(&json!({"email": "fix@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_ne!(session_cookie(&res).unwrap(), planted);
    assert_eq!(me_status(&server, planted).await, 401);
}

#[tokio::test]
async fn idle_timeout_and_absolute_lifetime_are_enforced() {
    let (server, cookie) = signed_in("idle@example.com").await;
    // Idle: one hour without a request ends the session.
    server.clock.advance(3600 + 1);
    assert_eq!(me_status(&server, &cookie).await, 401);

    // Absolute: a session used every 30 minutes still ends after 24 hours.
    let cookie = server.sign_in("idle@example.com", PASSWORD).await.unwrap();
    let mut elapsed = 0;
    while elapsed + 1800 < 86_400 {
        server.clock.advance(1800);
        elapsed += 1800;
        assert_eq!(
            me_status(&server, &cookie).await,
            200,
            "active session refused at {elapsed}s"
        );
    }
    server.clock.advance(86_400 - elapsed);
    assert_eq!(me_status(&server, &cookie).await, 401);
}

#[tokio::test]
async fn activity_is_written_at_most_once_per_minute() {
    let (server, cookie) = signed_in("touch@example.com").await;
    let first: Value = server
        .get("/api/v1/me", Some(&cookie))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    server.clock.advance(30);
    let second: Value = server
        .get("/api/v1/me", Some(&cookie))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        first["session"]["last_seen_at"],
        second["session"]["last_seen_at"]
    );
    server.clock.advance(31);
    let third: Value = server
        .get("/api/v1/me", Some(&cookie))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(
        first["session"]["last_seen_at"],
        third["session"]["last_seen_at"]
    );
}

#[tokio::test]
async fn list_revoke_one_and_revoke_others() {
    let (server, a) = signed_in("many@example.com").await;
    let b = server.sign_in("many@example.com", PASSWORD).await.unwrap();
    let c = server.sign_in("many@example.com", PASSWORD).await.unwrap();
    let list: Value = server
        .get("/api/v1/sessions", Some(&a))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3);
    for s in sessions {
        for key in [
            "id",
            "created_at",
            "last_seen_at",
            "ip",
            "user_agent",
            "current",
            "kind",
        ] {
            assert!(s.get(key).is_some(), "session lacks {key}: {s}");
        }
    }
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);

    // Revoke B by id from A.
    let me_b: Value = server
        .get("/api/v1/me", Some(&b))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b_id = me_b["session"]["id"].as_str().unwrap().to_owned();
    let res = server
        .send_json(
            Method::DELETE,
            &format!("/api/v1/sessions/{b_id}"),
            &a,
            None,
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(me_status(&server, &b).await, 401);
    // Revoking it again, or someone else's id, is a 404.
    let res = server
        .send_json(
            Method::DELETE,
            &format!("/api/v1/sessions/{b_id}"),
            &a,
            None,
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    let res = server
        .send_json(Method::POST, "/api/v1/sessions/revoke-others", &a, None)
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(me_status(&server, &c).await, 401);
    assert_eq!(me_status(&server, &a).await, 200);
}

#[tokio::test]
async fn another_users_session_cannot_be_revoked() {
    let (server, a) = signed_in("one@example.com").await;
    server
        .create_user("two@example.com", PASSWORD)
        .await
        .unwrap();
    let b = server.sign_in("two@example.com", PASSWORD).await.unwrap();
    let me_b: Value = server
        .get("/api/v1/me", Some(&b))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b_id = me_b["session"]["id"].as_str().unwrap().to_owned();
    let res = server
        .send_json(
            Method::DELETE,
            &format!("/api/v1/sessions/{b_id}"),
            &a,
            None,
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(me_status(&server, &b).await, 200);
}

#[tokio::test]
async fn password_change_needs_the_current_password_and_revokes_every_other_session() {
    let (server, a) = signed_in("pw@example.com").await;
    let b = server.sign_in("pw@example.com", PASSWORD).await.unwrap();
    let new_password = "an entirely different passphrase";

    let wrong = server
        .send_json(Method::POST, "/api/v1/password", &a, Some(json!({"current_password": "wrong wrong wrong wrong", "new_password": new_password})))
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let weak = server
        .send_json(
            Method::POST,
            "/api/v1/password",
            &a,
            Some(json!({"current_password": PASSWORD, "new_password": "short"})),
        )
        .await
        .unwrap();
    assert_eq!(weak.status(), 400);
    assert_eq!(
        me_status(&server, &b).await,
        200,
        "failed changes revoke nothing"
    );

    let ok = server
        .send_json(
            Method::POST,
            "/api/v1/password",
            &a,
            Some(json!({"current_password": PASSWORD, "new_password": new_password})),
        )
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let a2 = session_cookie(&ok).expect("the current session is re-issued");
    assert_ne!(a2, a);
    assert_eq!(me_status(&server, &b).await, 401);
    assert_eq!(me_status(&server, &a).await, 401);
    assert_eq!(me_status(&server, &a2).await, 200);
    assert!(server.sign_in("pw@example.com", PASSWORD).await.is_err());
    assert!(server.sign_in("pw@example.com", new_password).await.is_ok());
}

#[tokio::test]
async fn sessions_survive_a_restart() {
    let (server, cookie) = signed_in("restart@example.com").await;
    let server = server.restart().await.unwrap();
    assert_eq!(me_status(&server, &cookie).await, 200);
}

#[tokio::test]
async fn disabled_users_lose_their_sessions_and_cannot_sign_in() {
    let (server, cookie) = signed_in("gone@example.com").await;
    let user = server
        .running()
        .unwrap()
        .state
        .auth
        .stores()
        .accounts
        .user_by_email("gone@example.com")
        .await
        .unwrap()
        .unwrap();
    server
        .running()
        .unwrap()
        .state
        .auth
        .disable_user(&user.id)
        .await
        .unwrap();
    assert_eq!(me_status(&server, &cookie).await, 401);
    let err = server
        .sign_in("gone@example.com", PASSWORD)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("401"), "{err}");
}

#[tokio::test]
async fn session_cap_evicts_the_oldest() {
    let server = TestServer::start_with(|c| {
        c.session = Some(authx_server::config::SessionFile {
            max_per_user: Some(2),
            ..Default::default()
        });
    })
    .await
    .unwrap();
    server
        .create_user("cap@example.com", PASSWORD)
        .await
        .unwrap();
    let first = server.sign_in("cap@example.com", PASSWORD).await.unwrap();
    server.clock.advance(1);
    let second = server.sign_in("cap@example.com", PASSWORD).await.unwrap();
    server.clock.advance(1);
    let third = server.sign_in("cap@example.com", PASSWORD).await.unwrap();
    assert_eq!(me_status(&server, &first).await, 401);
    assert_eq!(me_status(&server, &second).await, 200);
    assert_eq!(me_status(&server, &third).await, 200);
}

#[tokio::test]
async fn sign_up_creates_and_signs_in_and_can_be_turned_off() {
    let server = TestServer::start().await.unwrap();
    let res = server
        .client
        .post(format!("{}/api/v1/auth/sign-up", server.url))
        .header("origin", server.origin())
        .json(&json!({"email": "new@example.com", "password": PASSWORD, "return_token": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let cookie = session_cookie(&res).unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        format!("authx_session={}", body["session_token"].as_str().unwrap()),
        cookie
    );
    assert_eq!(me_status(&server, &cookie).await, 200);
    // Look-alike addresses are the same account.
    let dup = server
        .client
        .post(format!("{}/api/v1/auth/sign-up", server.url))
        .header("origin", server.origin())
        .json(&json!({"email": "ＮＥＷ@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), 409);
    let weak = server
        .client
        .post(format!("{}/api/v1/auth/sign-up", server.url))
        .header("origin", server.origin())
        .json(&json!({"email": "weak@example.com", "password": "1qaz2wsx3edc4rfv"}))
        .send()
        .await
        .unwrap();
    assert_eq!(weak.status(), 400);
    assert_eq!(
        weak.json::<Value>().await.unwrap()["error"],
        "weak_password"
    );

    let closed = TestServer::start_with(|c| c.sign_up_enabled = Some(false))
        .await
        .unwrap();
    let res = closed
        .client
        .post(format!("{}/api/v1/auth/sign-up", closed.url))
        .header("origin", closed.origin())
        .json(&json!({"email": "new@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn argon2id_hash_is_stored_and_upgraded_on_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("authx.db").display());
    let state_with = |iterations: u32| {
        let url = url.clone();
        async move {
            let file = authx_server::config::FileConfig {
                database_url: Some(url),
                password: Some(authx_server::config::PasswordFile {
                    argon2_iterations: Some(iterations),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let config =
                authx_server::Config::from_parts(file, &authx_server::Overrides::default())
                    .unwrap();
            authx_server::build_state(config, std::sync::Arc::new(authx_core::SystemClock))
                .await
                .unwrap()
        }
    };
    let read_hash = || async {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let h: String = sqlx::query_scalar("SELECT password_hash FROM users")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        h
    };
    let ctx = authx_core::session::ClientContext::default();
    let old = state_with(2).await;
    old.auth
        .create_user("rehash@example.com", PASSWORD, false)
        .await
        .unwrap();
    let before = read_hash().await;
    assert!(
        before.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{before}"
    );
    old.auth
        .sign_in("rehash@example.com", PASSWORD, &ctx, None)
        .await
        .unwrap();
    assert_eq!(read_hash().await, before, "same parameters: no rehash");
    // Same database, stronger parameters: the next sign-in rehashes.
    let new = state_with(3).await;
    new.auth
        .sign_in("rehash@example.com", PASSWORD, &ctx, None)
        .await
        .unwrap();
    let after = read_hash().await;
    assert!(
        after.starts_with("$argon2id$v=19$m=19456,t=3,p=1$"),
        "{after}"
    );
    new.auth
        .sign_in("rehash@example.com", PASSWORD, &ctx, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    // One hashing slot: five sign-ins queue behind each other for a while.
    let server = TestServer::start_with(|c| {
        c.password = Some(authx_server::config::PasswordFile {
            hash_concurrency: Some(1),
            ..Default::default()
        });
    })
    .await
    .unwrap();
    server
        .create_user("drain@example.com", PASSWORD)
        .await
        .unwrap();
    let mut inflight = Vec::new();
    for _ in 0..5 {
        let client = server.client.clone();
        let url = format!("{}/api/v1/auth/sign-in", server.url);
        let origin = server.url.clone();
        inflight.push(tokio::spawn(async move {
            client
                .post(url)
                .header("origin", origin)
                .json(&json!({"email": "drain@example.com", "password": PASSWORD}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    // Let every request reach the server, then stop it while they wait for the hasher.
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    server.stop().await;
    for task in inflight {
        assert_eq!(
            task.await.unwrap().unwrap(),
            200,
            "an in-flight request was cut off"
        );
    }
}

#[tokio::test]
async fn optional_user_agent_binding_refuses_a_session_moved_to_another_browser() {
    let server = TestServer::start_with(|c| {
        c.session = Some(authx_server::config::SessionFile {
            bind_user_agent: Some(true),
            ..Default::default()
        });
    })
    .await
    .unwrap();
    server
        .create_user("ua@example.com", PASSWORD)
        .await
        .unwrap();
    let cookie = server.sign_in("ua@example.com", PASSWORD).await.unwrap();
    assert_eq!(me_status(&server, &cookie).await, 200);
    let moved = server
        .client
        .get(format!("{}/api/v1/me", server.url))
        .header("cookie", &cookie)
        .header("user-agent", "SomethingElse/1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 401);
}
