//! CSRF: origin checks on every state-changing browser request, and synchronizer tokens.

use authx_testkit::{PASSWORD, TestServer, session_cookie, set_cookies};
use serde_json::json;

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
async fn foreign_missing_and_lookalike_origins_are_refused() {
    let (server, cookie) = signed_in("csrf@example.com").await;
    let token = server.csrf_token(&cookie).await.unwrap();
    let lookalike = format!("{}.evil.tld", server.url);
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        (
            "foreign Origin",
            vec![("origin", "https://evil.example".into())],
        ),
        ("null Origin", vec![("origin", "null".into())]),
        ("suffix look-alike", vec![("origin", lookalike)]),
        ("missing Origin and Referer", vec![]),
        (
            "foreign Referer",
            vec![("referer", "https://evil.example/page".into())],
        ),
        (
            "cross-site fetch",
            vec![
                ("origin", server.url.clone()),
                ("sec-fetch-site", "cross-site".into()),
            ],
        ),
    ];
    for path in ["/api/v1/auth/sign-out", "/api/v1/sessions/revoke-others"] {
        for (name, headers) in &cases {
            let mut req = server
                .client
                .post(format!("{}{path}", server.url))
                .header("cookie", &cookie)
                .header("x-csrf-token", &token);
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 403, "{path}: {name}");
        }
    }
    assert_eq!(
        me_status(&server, &cookie).await,
        200,
        "nothing was signed out"
    );
    // A same-origin Referer is enough when Origin is absent.
    let res = server
        .client
        .post(format!("{}/api/v1/sessions/revoke-others", server.url))
        .header("cookie", &cookie)
        .header("x-csrf-token", &token)
        .header("referer", format!("{}/account", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn json_calls_need_the_synchronizer_token() {
    let (server, cookie) = signed_in("token@example.com").await;
    for token in [None, Some("wrong"), Some("")] {
        let mut req = server
            .client
            .post(format!("{}/api/v1/auth/sign-out", server.url))
            .header("origin", server.origin())
            .header("cookie", &cookie);
        if let Some(t) = token {
            req = req.header("x-csrf-token", t);
        }
        assert_eq!(req.send().await.unwrap().status(), 403, "token {token:?}");
    }
    assert_eq!(me_status(&server, &cookie).await, 200);
    // Another session's token does not work either.
    let other = server.sign_in("token@example.com", PASSWORD).await.unwrap();
    let other_token = server.csrf_token(&other).await.unwrap();
    let res = server
        .client
        .post(format!("{}/api/v1/auth/sign-out", server.url))
        .header("origin", server.origin())
        .header("cookie", &cookie)
        .header("x-csrf-token", other_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn a_json_route_refuses_form_and_text_bodies() {
    let server = TestServer::start().await.unwrap();
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let res = server
            .client
            .post(format!("{}/api/v1/auth/sign-in", server.url))
            .header("origin", server.origin())
            .header("content-type", ct)
            .body(r#"{"email":"a@example.com","password":"x"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 415, "{ct}");
    }
}

/// The HTML sign-in form: its token is bound to a pre-session cookie.
#[tokio::test]
async fn login_form_needs_its_token_and_redirects_with_303() {
    let server = TestServer::start().await.unwrap();
    server
        .create_user("form@example.com", PASSWORD)
        .await
        .unwrap();
    let page = server.get("/login", None).await.unwrap();
    assert_eq!(page.status(), 200);
    for (h, v) in [
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("x-content-type-options", "nosniff"),
    ] {
        assert_eq!(page.headers()[h], v);
    }
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let pre = set_cookies(&page)
        .into_iter()
        .find(|c| c.starts_with("authx_csrf="))
        .unwrap();
    let pre = pre.split(';').next().unwrap().to_owned();
    let html = page.text().await.unwrap();
    let token = html
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();

    let post = |cookie: Option<String>, token: &str| {
        let mut req = server
            .client
            .post(format!("{}/login", server.url))
            .header("origin", server.origin())
            .form(&[
                ("email", "form@example.com"),
                ("password", PASSWORD),
                ("csrf_token", token),
                ("return_to", "/account"),
            ]);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        req.send()
    };
    // Missing token, wrong token, token without its cookie: refused, no session.
    for (cookie, tok) in [
        (Some(pre.clone()), ""),
        (Some(pre.clone()), "forged"),
        (None, token.as_str()),
    ] {
        let res = post(cookie, tok).await.unwrap();
        assert_eq!(res.status(), 403);
        assert!(session_cookie(&res).is_none());
    }
    let ok = post(Some(pre), &token).await.unwrap();
    assert_eq!(ok.status(), 303, "never 307/308 after a credential POST");
    assert_eq!(ok.headers()["location"], "/account");
    let cookies = set_cookies(&ok);
    assert!(
        cookies.iter().any(|c| c.starts_with("authx_csrf=;")),
        "pre-session cookie destroyed: {cookies:?}"
    );
    let session = session_cookie(&ok).unwrap();
    let account = server.get("/account", Some(&session)).await.unwrap();
    assert_eq!(account.status(), 200);
    assert!(account.text().await.unwrap().contains("form@example.com"));
}

#[tokio::test]
async fn a_form_posted_from_another_site_is_refused() {
    let (server, cookie) = signed_in("site@example.com").await;
    let account = server
        .get("/account", Some(&cookie))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = account
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    // Even with a valid token, a foreign origin is refused on every form.
    for path in [
        "/logout",
        "/account/sessions/revoke-others",
        "/account/password",
    ] {
        let res = server
            .client
            .post(format!("{}{path}", server.url))
            .header("origin", "https://evil.example")
            .header("cookie", &cookie)
            .form(&[("csrf_token", token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{path}");
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
    // Same origin without the token: refused too.
    let res = server
        .client
        .post(format!("{}/logout", server.url))
        .header("origin", server.origin())
        .header("cookie", &cookie)
        .form(&[("csrf_token", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(me_status(&server, &cookie).await, 200);
    // GET /logout changes nothing.
    let res = server.get("/logout", Some(&cookie)).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(me_status(&server, &cookie).await, 200);
    // The real form signs out.
    let res = server
        .client
        .post(format!("{}/logout", server.url))
        .header("origin", server.origin())
        .header("cookie", &cookie)
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(me_status(&server, &cookie).await, 401);
}

#[tokio::test]
async fn no_cors_unless_configured_then_an_exact_list() {
    let server = TestServer::start().await.unwrap();
    let res = server
        .client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/v1/me", server.url),
        )
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());

    let cors = TestServer::start_with(|c| {
        c.cors_allowed_origins = Some(vec!["https://app.example.com".into()])
    })
    .await
    .unwrap();
    for (origin, allowed) in [
        ("https://app.example.com", true),
        ("https://evil.example", false),
        ("null", false),
        ("https://app.example.com.evil.tld", false),
        ("https://evil-app.example.com", false),
    ] {
        let res = cors
            .client
            .request(reqwest::Method::OPTIONS, format!("{}/api/v1/me", cors.url))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
            .await
            .unwrap();
        let acao = res
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            acao.as_deref() == Some(origin),
            allowed,
            "{origin}: {acao:?}"
        );
        assert_ne!(acao.as_deref(), Some("*"));
        assert!(
            res.headers().get_all("vary").iter().any(|v| v
                .to_str()
                .unwrap()
                .to_lowercase()
                .contains("origin"))
        );
    }
    let _ = json!({});
}

/// Sends `head` (request line and headers, each ending in CRLF) and an empty body on a raw
/// connection, so that repeated headers reach the server exactly as written; returns the status.
async fn raw_post_status(server: &TestServer, head: &str) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = server.url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let raw = format!("{head}Host: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Issue 14 item 16: two `Origin` headers (or two `Referer`, or two `Sec-Fetch-Site`) are
/// refused whichever comes first, as a repeated session cookie is.
#[tokio::test]
async fn repeated_origin_headers_are_refused() {
    let (server, cookie) = signed_in("twice@example.com").await;
    let token = server.csrf_token(&cookie).await.unwrap();
    let origin = server.origin().to_owned();
    let evil = "https://evil.example";
    let start = format!(
        "POST /api/v1/sessions/revoke-others HTTP/1.1\r\nCookie: {cookie}\r\nX-CSRF-Token: {token}\r\n"
    );
    let cases = [
        (
            "trusted Origin first",
            format!("Origin: {origin}\r\nOrigin: {evil}\r\n"),
        ),
        (
            "foreign Origin first",
            format!("Origin: {evil}\r\nOrigin: {origin}\r\n"),
        ),
        (
            "the same trusted Origin twice",
            format!("Origin: {origin}\r\nOrigin: {origin}\r\n"),
        ),
        (
            "two Referers",
            format!("Referer: {origin}/account\r\nReferer: {evil}/\r\n"),
        ),
        (
            "two Sec-Fetch-Site",
            format!(
                "Origin: {origin}\r\nSec-Fetch-Site: same-origin\r\nSec-Fetch-Site: cross-site\r\n"
            ),
        ),
    ];
    for (name, headers) in &cases {
        assert_eq!(
            raw_post_status(&server, &format!("{start}{headers}")).await,
            403,
            "{name}"
        );
    }
    // The same raw request with one trusted Origin passes: only the repeat was refused.
    assert_eq!(
        raw_post_status(&server, &format!("{start}Origin: {origin}\r\n")).await,
        200
    );
    // A cookie-less JSON sign-in is refused the same way.
    let sign_in = "POST /api/v1/auth/sign-in HTTP/1.1\r\nContent-Type: application/json\r\n";
    assert_eq!(
        raw_post_status(
            &server,
            &format!("{sign_in}Origin: {origin}\r\nOrigin: {evil}\r\n")
        )
        .await,
        403
    );
    assert_eq!(me_status(&server, &cookie).await, 200);
}
