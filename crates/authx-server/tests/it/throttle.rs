//! Sign-in throttling and indistinguishable failures.

use authx_testkit::{PASSWORD, TestServer};
use serde_json::{Value, json};

async fn attempt(server: &TestServer, email: &str, password: &str) -> reqwest::Response {
    server
        .client
        .post(format!("{}/api/v1/auth/sign-in", server.url))
        .header("origin", server.origin())
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn unknown_user_wrong_password_and_disabled_look_the_same() {
    let server = TestServer::start().await.unwrap();
    server
        .create_user("real@example.com", PASSWORD)
        .await
        .unwrap();
    let disabled = server
        .create_user("off@example.com", PASSWORD)
        .await
        .unwrap();
    server
        .running()
        .unwrap()
        .state
        .auth
        .disable_user(&disabled.id)
        .await
        .unwrap();
    let mut bodies = Vec::new();
    for (email, pw) in [
        ("nobody@example.com", PASSWORD),
        ("real@example.com", "wrong password here"),
        ("off@example.com", PASSWORD),
    ] {
        let res = attempt(&server, email, pw).await;
        assert_eq!(res.status(), 401);
        bodies.push(res.json::<Value>().await.unwrap());
    }
    assert_eq!(bodies[0], bodies[1]);
    assert_eq!(bodies[1], bodies[2]);
}

#[tokio::test]
async fn repeated_failures_get_429_with_retry_after_then_recover() {
    let server = TestServer::start().await.unwrap();
    server
        .create_user("target@example.com", PASSWORD)
        .await
        .unwrap();
    for _ in 0..5 {
        assert_eq!(
            attempt(&server, "target@example.com", "wrong password here")
                .await
                .status(),
            401
        );
    }
    // Even the right password waits now: the throttle is decided before the password is checked.
    let res = attempt(&server, "target@example.com", PASSWORD).await;
    assert_eq!(res.status(), 429);
    let retry: i64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    // Unknown accounts are throttled the same way, so 429 reveals nothing.
    for _ in 0..5 {
        attempt(&server, "ghost@example.com", "wrong password here").await;
    }
    assert_eq!(
        attempt(&server, "ghost@example.com", "wrong password here")
            .await
            .status(),
        429
    );
    // The lock is temporary.
    server.clock.advance(retry);
    assert_eq!(
        attempt(&server, "target@example.com", PASSWORD)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn parallel_failures_each_count() {
    let server = TestServer::start_with(|c| {
        c.throttle = Some(authx_server::config::ThrottleFile {
            account_free_failures: Some(1000),
            ..Default::default()
        });
    })
    .await
    .unwrap();
    server
        .create_user("race@example.com", PASSWORD)
        .await
        .unwrap();
    let attempts = (0..50).map(|_| attempt(&server, "race@example.com", "wrong password here"));
    for res in futures_util::future::join_all(attempts).await {
        assert_eq!(res.status(), 401);
    }
    let count = server
        .running()
        .unwrap()
        .state
        .auth
        .stores()
        .throttle
        .failures("account:race@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(count.failures, 50);
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let server = TestServer::start_with(|c| {
        c.throttle = Some(authx_server::config::ThrottleFile {
            ip_free_failures: Some(3),
            account_free_failures: Some(100),
            ..Default::default()
        });
    })
    .await
    .unwrap();
    for i in 0..3 {
        let res = server
            .client
            .post(format!("{}/api/v1/auth/sign-in", server.url))
            .header("origin", server.origin())
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .json(&json!({"email": format!("u{i}@example.com"), "password": "wrong password here"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
    }
    let res = server
        .client
        .post(format!("{}/api/v1/auth/sign-in", server.url))
        .header("origin", server.origin())
        .header("x-forwarded-for", "198.51.100.77")
        .json(&json!({"email": "fresh@example.com", "password": "wrong password here"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        429,
        "rotating X-Forwarded-For escaped the per-IP limit"
    );
}
