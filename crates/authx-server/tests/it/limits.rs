//! Request rate limits (SECURITY.md #70, #73) and the connection limits of the server loop
//! (#71): every limited endpoint answers 429 with `Retry-After` once its allowance is spent,
//! the client address cannot be chosen by the client, and the counters hold across instances.

use std::time::{Duration, Instant};

use authx_server::config::{FileConfig, RateLimitFile};
use authx_testkit::TestServer;
use authx_testkit::services::SharedServices;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Every class allowed `max` requests per window.
fn tight(max: u32) -> impl Fn(&mut FileConfig) + Send + Sync + 'static {
    move |f: &mut FileConfig| {
        f.rate_limit = Some(RateLimitFile {
            window_secs: Some(60),
            sign_in: Some(max),
            sign_up: Some(max),
            token: Some(max),
            introspect: Some(max),
            revoke: Some(max),
            device_authorization: Some(max),
            device_verification: Some(max),
            password_reset: Some(max),
            password_reset_per_address: None,
        });
    }
}

/// One request to a limited endpoint, with whatever (possibly wrong) content: the limit counts
/// requests, not successes.
async fn hit(server: &TestServer, endpoint: &str, xff: Option<&str>) -> reqwest::Response {
    let url = format!("{}{endpoint}", server.url);
    let c = &server.client;
    let mut req = match endpoint {
        "/api/v1/auth/sign-in" | "/api/v1/auth/sign-up" => c
            .post(&url)
            .header("origin", server.origin())
            .json(&json!({"email": "nobody@example.com", "password": "not the password at all"})),
        "/login" | "/signup" => c
            .post(&url)
            .header("origin", server.origin())
            .form(&[("email", "nobody@example.com"), ("password", "x")]),
        "/device?user_code=BCDF-GHJK" => c.get(&url),
        "/device" => c
            .post(&url)
            .header("origin", server.origin())
            .form(&[("user_code", "BCDF-GHJK")]),
        _ => c.post(&url).form(&[
            ("client_id", "nobody"),
            ("grant_type", "client_credentials"),
        ]),
    };
    if let Some(v) = xff {
        req = req.header("x-forwarded-for", v);
    }
    req.send().await.unwrap()
}

const LIMITED: [&str; 10] = [
    "/api/v1/auth/sign-in",
    "/login",
    "/api/v1/auth/sign-up",
    "/signup",
    "/oauth2/token",
    "/oauth2/introspect",
    "/oauth2/revoke",
    "/oauth2/device_authorization",
    "/device?user_code=BCDF-GHJK",
    "/device",
];

#[tokio::test]
async fn every_limited_endpoint_answers_429_with_retry_after() {
    // Each endpoint once per server, so classes sharing a counter do not interfere.
    for endpoint in LIMITED {
        let server = TestServer::start_with(tight(2)).await.unwrap();
        for i in 0..2 {
            let res = hit(&server, endpoint, None).await;
            assert_ne!(
                res.status(),
                429,
                "{endpoint} request {i} is within the limit"
            );
        }
        let res = hit(&server, endpoint, None).await;
        assert_eq!(res.status(), 429, "{endpoint}");
        let retry: i64 = res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "{endpoint}: Retry-After {retry}");
        let ctype = res.headers()["content-type"].to_str().unwrap().to_owned();
        let text = res.text().await.unwrap();
        if endpoint.starts_with("/oauth2/") {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["error"], "slow_down", "{endpoint}");
        } else if endpoint.starts_with("/api/") {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["error"], "too_many_requests", "{endpoint}");
        } else {
            assert!(ctype.starts_with("text/html"), "{endpoint}: {ctype}");
            assert!(text.contains("Too many requests"), "{endpoint}");
        }
        // The window ends, the allowance comes back.
        server.clock.advance(60);
        assert_ne!(
            hit(&server, endpoint, None).await.status(),
            429,
            "{endpoint}"
        );
        // Unlimited routes are untouched.
        assert_eq!(server.get("/healthz", None).await.unwrap().status(), 200);
        server.stop().await;
    }
}

#[tokio::test]
async fn rotating_x_forwarded_for_does_not_escape_the_limit() {
    // No trusted proxy: the header is ignored, the TCP peer is the client.
    let server = TestServer::start_with(tight(3)).await.unwrap();
    for i in 0..3 {
        let xff = format!("203.0.113.{i}");
        assert_ne!(
            hit(&server, "/oauth2/token", Some(&xff)).await.status(),
            429
        );
    }
    for i in 3..10 {
        let xff = format!("203.0.113.{i}, 198.51.100.{i}");
        assert_eq!(
            hit(&server, "/oauth2/token", Some(&xff)).await.status(),
            429,
            "a forged X-Forwarded-For from an untrusted peer changed the key"
        );
    }
    server.stop().await;

    // Behind a trusted proxy, the nearest hop the proxy appended is the client; whatever the
    // client put to its left is not believed.
    let server = TestServer::start_with(move |f| {
        tight(3)(f);
        f.trusted_proxies = Some(vec!["127.0.0.1".into()]);
    })
    .await
    .unwrap();
    for i in 0..10 {
        let xff = if i % 2 == 0 {
            format!("10.9.{i}.1, 192.0.2.77")
        } else {
            format!("not-an-address-{i}, 192.0.2.77")
        };
        let status = hit(&server, "/oauth2/token", Some(&xff)).await.status();
        assert_eq!(status == 429, i >= 3, "request {i}: {status}");
    }
    // Distinct clients behind the proxy each get their own allowance.
    for i in 0..3 {
        let xff = format!("192.0.2.{}", 100 + i);
        assert_ne!(
            hit(&server, "/oauth2/token", Some(&xff)).await.status(),
            429
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn limits_hold_across_instances() {
    let Some(services) = SharedServices::acquire("limits::limits_hold_across_instances").await
    else {
        return;
    };
    let customize = || {
        let configure = services.configure();
        move |f: &mut FileConfig| {
            configure(f);
            tight(4)(f);
        }
    };
    let a = TestServer::start_on(&services.database_url, customize())
        .await
        .unwrap();
    let b = TestServer::start_on(&services.database_url, customize())
        .await
        .unwrap();
    // Both instances share one clock reading: the windows line up.
    b.clock.set(authx_core::Clock::now(&a.clock));
    for server in [&a, &b, &a, &b] {
        assert_ne!(hit(server, "/oauth2/revoke", None).await.status(), 429);
    }
    assert_eq!(hit(&a, "/oauth2/revoke", None).await.status(), 429);
    assert_eq!(hit(&b, "/oauth2/revoke", None).await.status(), 429);
    a.stop().await;
    b.stop().await;
    services.cleanup().await;
}

#[tokio::test]
async fn the_default_limits_let_legitimate_bursts_through() {
    let server = TestServer::start().await.unwrap();
    // (The unknown client's failed authentications are throttled on their own after a few
    // dozen; only the request rate limit answers `slow_down`.)
    for _ in 0..100 {
        let res = hit(&server, "/oauth2/token", None).await;
        let v: Value = res.json().await.unwrap();
        assert_ne!(v["error"], "slow_down");
    }
    for _ in 0..100 {
        assert_ne!(
            hit(&server, "/device?user_code=BCDF-GHJK", None)
                .await
                .status(),
            429
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off() {
    let server = TestServer::start().await.unwrap();
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let started = Instant::now();
    s.write_all(b"POST /api/v1/auth/sign-in HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // One header byte a second, never finishing the head.
    let mut cut_off = None;
    for i in 0..40 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if s.write_all(format!("X-{i}: a\r\n").as_bytes())
            .await
            .is_err()
        {
            cut_off = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 512];
        // Closed, or an error status before closing.
        if tokio::time::timeout(Duration::from_millis(10), s.read(&mut buf))
            .await
            .is_ok()
        {
            cut_off = Some(started.elapsed());
            break;
        }
    }
    let after = cut_off.expect("the server kept a half-sent request head open for 40 s");
    assert!(
        after < Duration::from_secs(15),
        "cut off only after {after:?}"
    );
    // Everyone else is still served.
    assert_eq!(server.get("/healthz", None).await.unwrap().status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn a_ten_megabyte_body_gets_a_fast_413() {
    let server = TestServer::start().await.unwrap();
    let addr = server.url.trim_start_matches("http://").to_owned();
    for path in ["/api/v1/auth/sign-in", "/oauth2/token"] {
        // Declared length: refused from the head alone, before any of the body is sent.
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let started = Instant::now();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nOrigin: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            server.origin(),
            10 * 1024 * 1024
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .expect("no answer within 2 s")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 413"), "{path}: {text}");
        assert!(started.elapsed() < Duration::from_secs(2));
        // The refusal carries the security headers and a request id, as every answer does.
        let lower = text.to_ascii_lowercase();
        for h in [
            "x-content-type-options: nosniff",
            "cache-control: no-store",
            "content-security-policy: default-src 'none'",
            "x-request-id: ",
        ] {
            assert!(lower.contains(h), "{path}: no {h:?} in {text}");
        }

        // No declared length: the server stops reading at the limit and answers (or closes)
        // at once instead of waiting for the remaining megabytes.
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nOrigin: {}\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n",
            server.origin()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let chunk = format!("4000\r\n{}\r\n", "a".repeat(0x4000));
        for _ in 0..5 {
            if s.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
        }
        let mut buf = vec![0u8; 1024];
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                let text = String::from_utf8_lossy(&buf[..n]);
                assert!(text.starts_with("HTTP/1.1 413"), "{path}: {text}");
            }
            // Closed (or reset) after refusing: also not waiting for the rest.
            Ok(_) => {}
            Err(_) => panic!("{path}: the server waited for more than 80 KiB of body"),
        }
    }
    assert_eq!(server.get("/healthz", None).await.unwrap().status(), 200);
    server.stop().await;
}
