//! Password reset through the real server: the forgot page and API, the mail read from a real
//! SMTP server (the test kit's sink), the reset page, and what a reset ends.

use std::time::Duration;

use authx_server::config::FileConfig;
use authx_server::mail::settings::EmailFile;
use authx_testkit::smtp::{Received, SmtpSink};
use authx_testkit::{PASSWORD, TestServer, set_cookies};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);
const NEW_PASSWORD: &str = "a brand new passphrase";

/// A server that mails through `sink`.
pub(crate) async fn server_with(sink: &SmtpSink) -> TestServer {
    limited_server(sink, None).await
}

/// A server that mails through `sink`, with `[rate_limit]` when given.
async fn limited_server(
    sink: &SmtpSink,
    limits: Option<fn() -> authx_server::config::RateLimitFile>,
) -> TestServer {
    let port = sink.port();
    TestServer::start_with(move |f: &mut FileConfig| {
        f.rate_limit = limits.map(|l| l());
        mail_to(f, port);
    })
    .await
    .unwrap()
}

/// `[email]` sending through the sink on `port`.
pub(crate) fn mail_to(f: &mut FileConfig, port: u16) {
    f.email = Some(EmailFile {
        transport: Some("smtp".into()),
        smtp_host: Some("127.0.0.1".into()),
        smtp_port: Some(port),
        tls: Some("none".into()),
        from: Some("Example ID <id@example.com>".into()),
        product_name: Some("Example ID".into()),
        poll_interval_ms: Some(50),
        ..EmailFile::default()
    });
}

/// The pre-session cookie and the form token of the page at `path`.
async fn form(server: &TestServer, path: &str) -> (String, String) {
    let page = server.get(path, None).await.unwrap();
    assert_eq!(page.status(), 200, "{path}");
    let cookie = set_cookies(&page)
        .into_iter()
        .find(|c| c.starts_with("authx_csrf="))
        .unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let html = page.text().await.unwrap();
    let token = html
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    (cookie, token)
}

/// Posts `fields` (and the form token) to the form page at `path`, as its browser would.
async fn post_form(server: &TestServer, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    let (cookie, csrf) = form(server, path).await;
    let action = path.split('?').next().unwrap();
    let mut body = fields.to_vec();
    body.push(("csrf_token", &csrf));
    server
        .client
        .post(format!("{}{action}", server.url))
        .header("origin", server.origin())
        .header("cookie", cookie)
        .form(&body)
        .send()
        .await
        .unwrap()
}

/// `POST /api/v1/password/forgot` for `email`: its status and body.
pub(crate) async fn forgot_api(server: &TestServer, email: &str) -> (u16, Value) {
    let res = server
        .client
        .post(format!("{}/api/v1/password/forgot", server.url))
        .header("origin", server.origin())
        .json(&json!({ "email": email }))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// The path and query of the reset link in `mail`.
pub(crate) fn reset_path(mail: &Received) -> String {
    let text = mail.decoded();
    let start = text.find("/reset?token=").expect("a reset link");
    text[start..start + "/reset?token=".len() + 43].to_owned()
}

/// Resets the password with the link `path`.
pub(crate) async fn reset(server: &TestServer, path: &str, password: &str) -> reqwest::Response {
    let token = path.split("token=").nth(1).unwrap();
    post_form(server, path, &[("token", token), ("password", password)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgot_mail_reset_then_only_the_new_password_works() {
    let sink = SmtpSink::start().await.unwrap();
    let server = server_with(&sink).await;
    server
        .create_user("kate@example.com", PASSWORD)
        .await
        .unwrap();
    server
        .create_user("bob@example.com", PASSWORD)
        .await
        .unwrap();
    let other_session = server.sign_in("kate@example.com", PASSWORD).await.unwrap();

    let login = server
        .get("/login", None)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        login.contains("href=\"/forgot\""),
        "a link from the sign-in page"
    );
    let sent = post_form(&server, "/forgot", &[("email", "kate@example.com")]).await;
    assert_eq!(sent.status(), 200);
    assert!(sent.text().await.unwrap().contains("If an account exists"));
    let got = sink.wait_for(1, WAIT).await.unwrap();
    assert_eq!(got[0].rcpt_to, ["kate@example.com"]);
    let path = reset_path(&got[0]);
    assert!(
        got[0].decoded().contains(&format!("{}{path}", server.url)),
        "absolute link"
    );

    // Opening the link (a mail scanner does) uses nothing up.
    for _ in 0..2 {
        let page = server.get(&path, None).await.unwrap();
        assert_eq!(page.status(), 200);
    }
    let done = reset(&server, &path, NEW_PASSWORD).await;
    assert_eq!(done.status(), 200);
    assert!(
        authx_testkit::session_cookie(&done).is_none(),
        "a reset signs nobody in"
    );
    assert!(done.text().await.unwrap().contains("Password changed"));

    let me = server
        .get("/api/v1/me", Some(&other_session))
        .await
        .unwrap();
    assert_eq!(me.status(), 401, "the other sessions ended");
    assert!(server.sign_in("kate@example.com", PASSWORD).await.is_err());
    server
        .sign_in("kate@example.com", NEW_PASSWORD)
        .await
        .unwrap();
    server.sign_in("bob@example.com", PASSWORD).await.unwrap();

    let notice = sink.wait_for(2, WAIT).await.unwrap();
    assert_eq!(notice[1].rcpt_to, ["kate@example.com"]);
    assert!(
        notice[1]
            .header("Subject")
            .unwrap()
            .contains("your password was changed")
    );

    let again = reset(&server, &path, "yet another passphrase").await;
    assert_eq!(again.status(), 400, "a used link is refused");
    assert!(
        again
            .text()
            .await
            .unwrap()
            .contains("invalid or has expired")
    );
    server
        .sign_in("kate@example.com", NEW_PASSWORD)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_address_gets_the_same_answer_and_only_owners_get_mail() {
    let sink = SmtpSink::start().await.unwrap();
    let server = server_with(&sink).await;
    server
        .create_user("kate@example.com", PASSWORD)
        .await
        .unwrap();
    let unknown = forgot_api(&server, "nobody@example.com").await;
    let malformed = forgot_api(&server, "not an address").await;
    let known = forgot_api(&server, "kate@example.com").await;
    assert_eq!(known.0, 202);
    assert_eq!(unknown, known);
    assert_eq!(malformed, known);
    let (page_known, page_unknown) = (
        post_form(&server, "/forgot", &[("email", "kate@example.com")]).await,
        post_form(&server, "/forgot", &[("email", "nobody@example.com")]).await,
    );
    assert_eq!(page_known.status(), page_unknown.status());
    assert_eq!(
        page_known.text().await.unwrap(),
        page_unknown.text().await.unwrap()
    );
    sink.wait_for(2, WAIT).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = sink.received();
    assert_eq!(got.len(), 2, "mail went to the owner only");
    assert!(got.iter().all(|m| m.rcpt_to == ["kate@example.com"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_link_is_refused_and_changes_nothing() {
    let sink = SmtpSink::start().await.unwrap();
    let server = server_with(&sink).await;
    server
        .create_user("kate@example.com", PASSWORD)
        .await
        .unwrap();
    forgot_api(&server, "kate@example.com").await;
    let path = reset_path(&sink.wait_for(1, WAIT).await.unwrap()[0]);
    server.clock.advance(30 * 60);
    let res = reset(&server, &path, NEW_PASSWORD).await;
    assert_eq!(res.status(), 400);
    server.sign_in("kate@example.com", PASSWORD).await.unwrap();
    // A forged token, and a form without its pre-session token, change nothing either.
    let forged = reset(
        &server,
        &format!("/reset?token={}", "A".repeat(43)),
        NEW_PASSWORD,
    )
    .await;
    assert_eq!(forged.status(), 400);
    let no_csrf = server
        .client
        .post(format!("{}/reset", server.url))
        .header("origin", server.origin())
        .form(&[("token", "x"), ("password", NEW_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_without_a_password_is_told_so() {
    let sink = SmtpSink::start().await.unwrap();
    let server = server_with(&sink).await;
    let state = &server.running().unwrap().state;
    let now = authx_core::Clock::now(&server.clock);
    let user = authx_core::user::User {
        id: authx_core::user::UserId::generate(),
        email: "fed@example.com".into(),
        password_hash: authx_core::federation::NO_PASSWORD.into(),
        status: authx_core::user::UserStatus::Active,
        is_admin: false,
        created_at: now,
        password_changed_at: now,
        email_verified: false,
    };
    state
        .auth
        .stores()
        .accounts
        .create_user(&user)
        .await
        .unwrap();
    assert_eq!(forgot_api(&server, "fed@example.com").await.0, 202);
    let got = sink.wait_for(1, WAIT).await.unwrap();
    let text = got[0].decoded();
    assert!(text.contains("has no password"), "{text}");
    assert!(!text.contains("/reset?token="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_for_one_address_is_limited_and_others_still_get_mail() {
    let sink = SmtpSink::start().await.unwrap();
    let server = limited_server(
        &sink,
        Some(|| authx_server::config::RateLimitFile {
            password_reset_per_address: Some(2),
            ..Default::default()
        }),
    )
    .await;
    server
        .create_user("kate@example.com", PASSWORD)
        .await
        .unwrap();
    server
        .create_user("bob@example.com", PASSWORD)
        .await
        .unwrap();
    let first = forgot_api(&server, "kate@example.com").await;
    for _ in 0..9 {
        assert_eq!(
            forgot_api(&server, "kate@example.com").await,
            first,
            "the same answer"
        );
    }
    forgot_api(&server, "bob@example.com").await;
    sink.wait_for(3, WAIT).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = sink.received();
    let to = |who: &str| got.iter().filter(|m| m.rcpt_to == [who]).count();
    assert_eq!(
        (to("kate@example.com"), to("bob@example.com")),
        (2, 1),
        "{got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_network_is_refused_with_429() {
    let sink = SmtpSink::start().await.unwrap();
    let server = limited_server(
        &sink,
        Some(|| authx_server::config::RateLimitFile {
            password_reset: Some(3),
            ..Default::default()
        }),
    )
    .await;
    for i in 0..3 {
        assert_eq!(
            forgot_api(&server, &format!("u{i}@example.com")).await.0,
            202
        );
    }
    let res = server
        .client
        .post(format!("{}/api/v1/password/forgot", server.url))
        .header("origin", server.origin())
        .json(&json!({ "email": "kate@example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    // Signing in is a class of its own: not slowed.
    server
        .create_user("kate@example.com", PASSWORD)
        .await
        .unwrap();
    server.sign_in("kate@example.com", PASSWORD).await.unwrap();
}
