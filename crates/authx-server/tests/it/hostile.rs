//! Hostile cookies, headers and bodies get a clear 4xx, never a 5xx, and nothing stored changes.

use authx_testkit::{PASSWORD, TestServer};
use serde_json::{Value, json};

use super::signed_in;

#[tokio::test]
async fn hostile_cookies_are_anonymous_never_errors() {
    let (server, good) = signed_in("cookie@example.com").await;
    let huge = format!("authx_session={}", "A".repeat(10_000));
    let cases = [
        huge.as_str(),
        "authx_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", // well-formed, never issued
        "authx_session=not base64 at all!!",
        "authx_session=",
        "authx_session",
        "=;=;;;",
    ];
    for c in cases {
        let res = server.get("/api/v1/me", Some(c)).await.unwrap();
        assert_eq!(res.status(), 401, "{c:.40}");
    }
    // A duplicated session cookie (cookie tossing) is not trusted either.
    let dup = format!("{good}; {good}");
    assert_eq!(
        server.get("/api/v1/me", Some(&dup)).await.unwrap().status(),
        401
    );
    // NUL bytes cannot even be sent as a header value by a conforming client; send raw bytes.
    for bad in ["a\0b", "\u{1}\u{2}", "\u{7f}"] {
        let raw = format!(
            "GET /api/v1/me HTTP/1.1\r\nHost: x\r\nCookie: authx_session={bad}\r\nConnection: close\r\n\r\n"
        );
        let status = raw_request(&server.url, &raw).await;
        assert!(
            (400..500).contains(&status),
            "control bytes in the cookie: {status}"
        );
    }
    assert_eq!(
        server
            .get("/api/v1/me", Some(&good))
            .await
            .unwrap()
            .status(),
        200
    );
}

async fn raw_request(url: &str, raw: &str) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn oversized_headers_and_bodies_are_refused_quickly() {
    let server = TestServer::start().await.unwrap();
    let big_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let status = raw_request(&server.url, &big_header).await;
    assert!(status == 431 || status == 400, "64 KB header: {status}");

    let ten_mb = vec![b'a'; 10 * 1024 * 1024];
    let res = server
        .client
        .post(format!("{}/api/v1/auth/sign-in", server.url))
        .header("origin", server.origin())
        .header("content-type", "application/json")
        .body(ten_mb)
        .send()
        .await;
    // The server may answer 413 and close before the client finishes sending.
    if let Ok(res) = res {
        assert_eq!(res.status(), 413);
    }
    let many_fields = (0..100_000)
        .map(|i| format!("f{i}=x"))
        .collect::<Vec<_>>()
        .join("&");
    let res = server
        .client
        .post(format!("{}/login", server.url))
        .header("origin", server.origin())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(many_fields)
        .send()
        .await;
    if let Ok(res) = res {
        assert_eq!(res.status(), 413);
    }
    assert_eq!(server.get("/healthz", None).await.unwrap().status(), 200);
}

#[tokio::test]
async fn malformed_json_gets_400_with_a_stable_error() {
    let server = TestServer::start().await.unwrap();
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    for body in [
        "{",
        "null",
        "[]",
        "{\"email\": 1, \"password\": 2}",
        "{\"email\":\"a@b.c\"}",
        nested.as_str(),
        "\u{0}",
    ] {
        let res = server
            .client
            .post(format!("{}/api/v1/auth/sign-in", server.url))
            .header("origin", server.origin())
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{body:.30}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["error"], "invalid_request");
    }
}

#[tokio::test]
async fn hostile_credentials_are_refused_cleanly() {
    let server = TestServer::start().await.unwrap();
    server
        .create_user("victim@example.com", PASSWORD)
        .await
        .unwrap();
    let big = "p".repeat(60 * 1024);
    let cases = [
        ("victim@example.com", big.as_str(), 400),
        ("victim@example.com", "", 401),
        ("victim@example.com\r\nFAKE", PASSWORD, 401),
        ("' OR 1=1--", PASSWORD, 401),
        ("victim@example.com\u{0}", PASSWORD, 401),
        (
            "victim@example.com",
            "correct horse battery staple\u{0}",
            401,
        ),
    ];
    for (email, password, status) in cases {
        let res = server
            .client
            .post(format!("{}/api/v1/auth/sign-in", server.url))
            .header("origin", server.origin())
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{email:?}");
    }
    // Look-alike spellings of the address reach the same account.
    for email in [
        "VICTIM@example.com",
        " victim@example.com ",
        "ｖｉｃｔｉｍ@example.com",
    ] {
        assert!(server.sign_in(email, PASSWORD).await.is_ok(), "{email}");
    }
    // The password is not truncated: one changed character past 72 bytes fails.
    let long = format!("{}-tail-A", "long passphrase ".repeat(6));
    server.create_user("long@example.com", &long).await.unwrap();
    assert!(server.sign_in("long@example.com", &long).await.is_ok());
    assert!(
        server
            .sign_in("long@example.com", &long.replace("-tail-A", "-tail-B"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn unknown_pages_and_methods_are_clean_4xx() {
    let server = TestServer::start().await.unwrap();
    let res = server.get("/nope", None).await.unwrap();
    assert_eq!(res.status(), 404);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let res = server
        .client
        .put(format!("{}/api/v1/me", server.url))
        .header("origin", server.origin())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    let res = server.get("/account", None).await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/login?return_to=/account");
    let res = server
        .get("/login?return_to=//evil.example", None)
        .await
        .unwrap();
    let html = res.text().await.unwrap();
    assert!(
        !html.contains("evil.example"),
        "open redirect target echoed"
    );
}
