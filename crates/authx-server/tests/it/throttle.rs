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

/// A public client `spa` and a confidential client `svc` (returned: its secret) on a server
/// behind a trusted proxy, so each request can name its client address in `X-Forwarded-For`,
/// with request rate limits high enough that every request reaches client authentication.
async fn clients_behind_proxy() -> (TestServer, String) {
    use authx_core::Timestamp;
    use authx_core::oauth::client::{Client, GrantType};
    use authx_core::oauth::keys::SigningAlg;
    use authx_server::config::RateLimitFile;

    let server = TestServer::start_with(|f| {
        f.trusted_proxies = Some(vec!["127.0.0.1".into()]);
        f.rate_limit = Some(RateLimitFile {
            token: Some(10_000),
            revoke: Some(10_000),
            introspect: Some(10_000),
            ..RateLimitFile::default()
        });
    })
    .await
    .unwrap();
    let client = |id: &str| Client {
        id: id.into(),
        name: id.into(),
        secret_hash: None,
        token_endpoint_auth_method: authx_core::oauth::client::TokenEndpointAuthMethod::None,
        jwks: None,
        jwks_uri: None,
        dpop_bound_access_tokens: false,
        redirect_uris: vec![],
        post_logout_redirect_uris: vec![],
        backchannel_logout_uri: None,
        grant_types: vec![GrantType::RefreshToken, GrantType::DeviceCode],
        scopes: vec!["openid".into()],
        resources: vec![],
        first_party: false,
        require_pushed_authorization_requests: false,
        require_acr: None,
        id_token_alg: SigningAlg::Rs256,
        access_token_ttl_secs: 900,
        refresh_token_ttl_secs: 86_400,
        refresh_idle_secs: 86_400,
        created_at: Timestamp(0),
    };
    let oauth = &server.running().unwrap().state.oauth;
    oauth.register_client(client("spa"), false).await.unwrap();
    let (_, secret) = oauth.register_client(client("svc"), true).await.unwrap();
    (server, secret.unwrap())
}

/// A revocation request (RFC 7009) from `from`: any authenticated client gets 200 for a token
/// it does not know, so 200 means the client authenticated.
async fn revoke_as(
    server: &TestServer,
    from: &str,
    client_id: &str,
    secret: Option<&str>,
) -> reqwest::Response {
    let mut form = vec![("token", "not-a-token"), ("client_id", client_id)];
    if let Some(s) = secret {
        form.push(("client_secret", s));
    }
    server
        .client
        .post(format!("{}/oauth2/revoke", server.url))
        .header("x-forwarded-for", from)
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// Issue 14 item 2: naming a client is not authenticating as it. Failures used to be counted
/// per client id, so 20 bad requests naming a client locked every user of it out.
#[tokio::test]
async fn nobody_can_lock_a_client_out_by_naming_it() {
    let (server, secret) = clients_behind_proxy().await;

    // A public client has no secret to guess: made-up secrets cost nothing, from any address.
    for i in 0..120 {
        let from = format!("203.0.113.{}", i % 3);
        let res = revoke_as(&server, &from, "spa", Some("made-up")).await;
        assert_eq!(res.status(), 401, "request {i}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["error"], "invalid_client");
    }
    for from in ["198.51.100.7", "203.0.113.0"] {
        assert_eq!(
            revoke_as(&server, from, "spa", None).await.status(),
            200,
            "the public client works from {from}"
        );
    }

    // Wrong secrets for the confidential client from one network (an IPv6 /64 rotating its
    // addresses) throttle that network only.
    let mut throttled = false;
    for i in 0..120 {
        let from = format!("2001:db8:77:1::{:x}", i + 1);
        let res = revoke_as(&server, &from, "svc", Some("wrong secret")).await;
        match res.status().as_u16() {
            401 => assert!(!throttled, "request {i}: throttled, then let through"),
            429 => {
                assert!(res.headers().contains_key("retry-after"));
                throttled = true;
            }
            other => panic!("request {i}: {other}"),
        }
    }
    assert!(throttled, "the attacker's network was never throttled");
    // The attacker's network stays throttled, even with the right secret...
    assert_eq!(
        revoke_as(&server, "2001:db8:77:1::ffff", "svc", Some(&secret))
            .await
            .status(),
        429
    );
    // ...while the client's legitimate users elsewhere are not affected.
    for from in ["198.51.100.7", "2001:db8:77:2::1"] {
        assert_eq!(
            revoke_as(&server, from, "svc", Some(&secret))
                .await
                .status(),
            200,
            "the confidential client works from {from}"
        );
    }
    // Another day, the attacker's counter has expired.
    server.clock.advance(86_400);
    assert_eq!(
        revoke_as(&server, "2001:db8:77:1::1", "svc", Some(&secret))
            .await
            .status(),
        200
    );
}
