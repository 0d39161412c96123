//! Email verification and the sign-up that reveals nothing, through the real server: links read
//! from the mail the SMTP sink received, the verify page, the OpenID tokens that report the
//! state, the `require_verified_email` gate, and sign-up for a taken address. On SQLite, and on
//! PostgreSQL where `AUTHX_TEST_POSTGRES_URL` is set.

use std::time::Duration;

use authx_core::oauth::client::GrantType;
use authx_server::config::FileConfig;
use authx_testkit::services::SharedServices;
use authx_testkit::smtp::{Received, SmtpSink};
use authx_testkit::{PASSWORD, TestServer, session_cookie, set_cookies};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::oidc::{REDIRECT, VERIFIER, client, query_param, urlencode};
use crate::recovery::{mail_to, reset, reset_path};

const WAIT: Duration = Duration::from_secs(20);

/// A server mailing through `sink`, with `require_verified_email` as given, on `database` (a
/// fresh SQLite file when `None`).
async fn server(sink: &SmtpSink, require: bool, database: Option<&SharedServices>) -> TestServer {
    let port = sink.port();
    let customize = move |f: &mut FileConfig| {
        mail_to(f, port);
        f.require_verified_email = Some(require);
    };
    match database {
        None => TestServer::start_with(customize).await.unwrap(),
        Some(s) => {
            let shared = s.configure_without_redis();
            TestServer::start_on(&s.database_url, move |f: &mut FileConfig| {
                shared(f);
                customize(f);
            })
            .await
            .unwrap()
        }
    }
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
    (cookie, form_token(&html))
}

fn form_token(html: &str) -> String {
    html.split("name=\"csrf_token\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned()
}

/// Posts `fields` with the pre-session `cookie` and form `token` to `action`.
async fn post(
    server: &TestServer,
    action: &str,
    (cookie, token): &(String, String),
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut body = fields.to_vec();
    body.push(("csrf_token", token));
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

/// Opens the form page at `path`, then posts `fields` to its action, as a browser would.
async fn post_form(server: &TestServer, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    let pre = form(server, path).await;
    post(server, path.split('?').next().unwrap(), &pre, fields).await
}

/// `POST /api/v1/auth/sign-up`: status and body.
async fn sign_up_api(server: &TestServer, email: &str, password: &str) -> (u16, bool, Value) {
    let res = server
        .client
        .post(format!("{}/api/v1/auth/sign-up", server.url))
        .header("origin", server.origin())
        .json(&json!({"email": email, "password": password, "return_token": true}))
        .send()
        .await
        .unwrap();
    let cookie = session_cookie(&res).is_some();
    (res.status().as_u16(), cookie, res.json().await.unwrap())
}

/// The path and query of the verification link in `mail`.
fn verify_path(mail: &Received) -> String {
    let text = mail.decoded();
    let start = text.find("/verify?token=").expect("a verification link");
    text[start..start + "/verify?token=".len() + 43].to_owned()
}

/// Opens the verification link `path` and presses its button.
async fn verify(server: &TestServer, path: &str) -> reqwest::Response {
    let token = path.split("token=").nth(1).unwrap();
    post_form(server, path, &[("token", token)]).await
}

/// The mails of the sink once there are `n`, sent to `to`.
async fn mails_to(sink: &SmtpSink, n: usize, to: &str) -> Vec<Received> {
    sink.wait_for(n, WAIT)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.rcpt_to == [to])
        .collect()
}

/// The ID token claims and the userinfo of a code flow with `openid email` for the browser
/// session `cookie`, through the first-party client `app` with `secret`.
async fn oidc_claims(server: &TestServer, secret: &str, cookie: &str) -> (Value, Value) {
    let url = format!(
        "{}/oauth2/authorize?response_type=code&client_id=app&redirect_uri={}&scope=openid%20email&state=s&nonce=n&code_challenge={}&code_challenge_method=S256",
        server.url,
        urlencode(REDIRECT),
        authx_core::oauth::pkce::s256(VERIFIER)
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
    let code = query_param(&loc, "code").unwrap();
    let t: Value = server
        .client
        .post(format!("{}/oauth2/token", server.url))
        .basic_auth("app", Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id_token = t["id_token"].as_str().unwrap();
    let payload = id_token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    let userinfo: Value = server
        .client
        .get(format!("{}/oauth2/userinfo", server.url))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (claims, userinfo)
}

/// Registers the first-party client `app`; returns its secret.
async fn register_app(server: &TestServer) -> String {
    let state = &server.running().unwrap().state;
    authx_server::web::api::register_resource(
        state,
        "https://api.example.com".into(),
        vec!["read".into()],
    )
    .await
    .unwrap();
    let grants = [GrantType::AuthorizationCode, GrantType::RefreshToken];
    let (_, secret) = state
        .oauth
        .register_client(client("app", &grants, true), true)
        .await
        .unwrap();
    secret.unwrap()
}

/// Sign-up mails a link and signs nobody in; the ID token and userinfo say unverified until
/// the link's button is pressed, then verified; the used link is refused.
async fn sign_up_verify_then_tokens_say_verified(database: Option<&SharedServices>) {
    let sink = SmtpSink::start().await.unwrap();
    let server = server(&sink, false, database).await;
    let secret = register_app(&server).await;

    let (status, cookie, body) = sign_up_api(&server, "sue@example.com", PASSWORD).await;
    assert_eq!(status, 202, "{body}");
    assert!(!cookie, "with email on, sign-up signs nobody in");
    assert!(body.get("session_token").is_none());
    let mail = &mails_to(&sink, 1, "sue@example.com").await[0];
    assert!(
        mail.header("Subject")
            .unwrap()
            .contains("verify your email address")
    );
    let path = verify_path(mail);
    assert!(
        mail.decoded().contains(&format!("{}{path}", server.url)),
        "absolute link"
    );

    let session = server.sign_in("sue@example.com", PASSWORD).await.unwrap();
    let (id, info) = oidc_claims(&server, &secret, &session).await;
    assert_eq!(id["email_verified"], false);
    assert_eq!(info["email_verified"], false);

    // Opening the link (a mail scanner does) changes nothing.
    for _ in 0..2 {
        let page = server.get(&path, None).await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap().contains("Verify my address"));
    }
    let (id, _) = oidc_claims(&server, &secret, &session).await;
    assert_eq!(id["email_verified"], false, "a GET verified nothing");

    let done = verify(&server, &path).await;
    assert_eq!(done.status(), 200);
    assert!(
        session_cookie(&done).is_none(),
        "verification signs nobody in"
    );
    assert!(done.text().await.unwrap().contains("Address verified"));

    let (id, info) = oidc_claims(&server, &secret, &session).await;
    assert_eq!(id["email"], "sue@example.com");
    assert_eq!(id["email_verified"], true);
    assert_eq!(info["email_verified"], true);
    let page = server
        .get("/account", Some(&session))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("verify-email"), "no button once verified");

    let again = verify(&server, &path).await;
    assert_eq!(again.status(), 400, "a used link is refused");
    assert!(
        again
            .text()
            .await
            .unwrap()
            .contains("invalid or has expired")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_mail_verify_then_tokens_say_verified() {
    sign_up_verify_then_tokens_say_verified(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_mail_verify_then_tokens_say_verified_on_postgres() {
    let Some(services) =
        SharedServices::acquire("verify::sign_up_mail_verify_then_tokens_say_verified_on_postgres")
            .await
    else {
        return;
    };
    sign_up_verify_then_tokens_say_verified(Some(&services)).await;
    services.cleanup().await;
}

/// Sign-up for a taken address answers exactly as for a new one, changes nothing of the
/// account, and mails its owner a notice with absolute links.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_for_a_taken_address_answers_alike_and_tells_the_owner() {
    let sink = SmtpSink::start().await.unwrap();
    let server = server(&sink, false, None).await;
    server
        .create_user("kate@example.com", PASSWORD)
        .await
        .unwrap();
    let other = "another long passphrase";

    let new = sign_up_api(&server, "new@example.com", other).await;
    // A look-alike spelling of kate's address is kate's address.
    let taken = sign_up_api(&server, "KATE@Example.com", other).await;
    assert_eq!(new, taken, "the same status, cookies and body");
    assert_eq!(new.0, 202);

    // The sign-up page too.
    let page_new = post_form(
        &server,
        "/signup",
        &[("email", "new2@example.com"), ("password", other)],
    )
    .await;
    let page_taken = post_form(
        &server,
        "/signup",
        &[("email", "kate@example.com"), ("password", other)],
    )
    .await;
    assert_eq!(page_new.status(), 200);
    assert_eq!(page_new.status(), page_taken.status());
    assert!(session_cookie(&page_taken).is_none());
    let (a, b) = (
        page_new.text().await.unwrap(),
        page_taken.text().await.unwrap(),
    );
    assert_eq!(a, b);
    assert!(a.contains("Check your mail"));

    let all = sink.wait_for(4, WAIT).await.unwrap();
    let notices: Vec<&Received> = all
        .iter()
        .filter(|m| m.rcpt_to == ["kate@example.com"])
        .collect();
    assert_eq!(notices.len(), 2, "one notice per attempt");
    let text = notices[0].decoded();
    assert!(text.contains("already has one"));
    assert!(text.contains(&format!("{}/login", server.url)));
    assert!(text.contains(&format!("{}/forgot", server.url)));
    assert!(
        !text.contains("/verify?token="),
        "no link that acts on the account"
    );
    assert_eq!(
        all.iter()
            .filter(|m| m.rcpt_to == ["new@example.com"] || m.rcpt_to == ["new2@example.com"])
            .count(),
        2
    );

    // Kate's account is as it was: her password, not the stranger's.
    server.sign_in("kate@example.com", PASSWORD).await.unwrap();
    assert!(server.sign_in("kate@example.com", other).await.is_err());
    server.stop().await;
}

/// A reset link is not a verification link, and the other way round; an expired verification
/// link is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_and_verification_links_do_not_cross_and_expire() {
    let sink = SmtpSink::start().await.unwrap();
    let server = server(&sink, false, None).await;
    let kate = server
        .create_user("kate@example.com", PASSWORD)
        .await
        .unwrap();
    crate::recovery::forgot_api(&server, "kate@example.com").await;
    let reset_link = reset_path(&sink.wait_for(1, WAIT).await.unwrap()[0]);
    let pre = form(&server, "/login").await;
    let asked = post(
        &server,
        "/verify/resend",
        &pre,
        &[("email", "kate@example.com")],
    )
    .await;
    assert_eq!(asked.status(), 200);
    let verify_link = verify_path(&sink.wait_for(2, WAIT).await.unwrap()[1]);
    let reset_token = reset_link.split("token=").nth(1).unwrap();
    let verify_token = verify_link.split("token=").nth(1).unwrap();

    let crossed = post_form(&server, &verify_link, &[("token", reset_token)]).await;
    assert_eq!(crossed.status(), 400, "a reset token does not verify");
    let crossed = reset(
        &server,
        &format!("/reset?token={verify_token}"),
        "a fresh long passphrase",
    )
    .await;
    assert_eq!(crossed.status(), 400, "a verification token does not reset");
    server.sign_in("kate@example.com", PASSWORD).await.unwrap();

    // Both links still work for what they are, the verification one until it expires.
    let done = reset(&server, &reset_link, "a fresh long passphrase").await;
    assert_eq!(done.status(), 200);
    server.clock.advance(24 * 3600 + 1);
    let late = verify(&server, &verify_link).await;
    assert_eq!(late.status(), 400, "an expired link is refused");
    let state = &server.running().unwrap().state;
    let stored = state
        .auth
        .stores()
        .accounts
        .user_by_id(&kate.id)
        .await
        .unwrap()
        .unwrap();
    assert!(!stored.email_verified);
    server.stop().await;
}

/// With `require_verified_email`, an account from before verification cannot finish signing
/// in (page and API), gets a link at its attempt, can ask for another, and signs in once
/// verified; the resend form answers every address alike.
async fn required_verification_blocks_until_verified(database: Option<&SharedServices>) {
    let sink = SmtpSink::start().await.unwrap();
    let server = server(&sink, true, database).await;
    server
        .create_user("old@example.com", PASSWORD)
        .await
        .unwrap();

    let login = form(&server, "/login").await;
    let blocked = post(
        &server,
        "/login",
        &login,
        &[("email", "old@example.com"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(blocked.status(), 403);
    assert!(session_cookie(&blocked).is_none());
    let page = blocked.text().await.unwrap();
    assert!(page.contains("we sent you a link"), "{page}");
    assert!(page.contains("action=\"/verify/resend\""));
    let first = verify_path(&mails_to(&sink, 1, "old@example.com").await[0]);

    let api = server
        .client
        .post(format!("{}/api/v1/auth/sign-in", server.url))
        .header("origin", server.origin())
        .json(&json!({"email": "old@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 403);
    assert!(session_cookie(&api).is_none());
    assert_eq!(
        api.json::<Value>().await.unwrap()["error"],
        "email_not_verified"
    );
    sink.wait_for(2, WAIT).await.unwrap();

    // A wrong password is refused as ever and mails nothing.
    let wrong = server
        .sign_in("old@example.com", "not the password at all")
        .await;
    assert!(wrong.unwrap_err().to_string().contains("401"));

    // The resend button on the blocked page; an unknown address gets the same answer.
    let pre = (login.0.clone(), form_token(&page));
    let known = post(
        &server,
        "/verify/resend",
        &pre,
        &[("email", "old@example.com")],
    )
    .await;
    let unknown = post(
        &server,
        "/verify/resend",
        &pre,
        &[("email", "nobody@example.com")],
    )
    .await;
    assert_eq!(known.status(), 200);
    assert_eq!(known.status(), unknown.status());
    assert_eq!(known.text().await.unwrap(), unknown.text().await.unwrap());
    let latest = verify_path(&sink.wait_for(3, WAIT).await.unwrap()[2]);
    assert_ne!(latest, first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.received().len(), 3, "nothing for an unknown address");

    assert_eq!(verify(&server, &latest).await.status(), 200);
    // Every other link of the account stopped working with it.
    assert_eq!(verify(&server, &first).await.status(), 400);
    server.sign_in("old@example.com", PASSWORD).await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_verification_blocks_sign_in_until_verified() {
    required_verification_blocks_until_verified(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_verification_blocks_sign_in_until_verified_on_postgres() {
    let Some(services) = SharedServices::acquire(
        "verify::required_verification_blocks_sign_in_until_verified_on_postgres",
    )
    .await
    else {
        return;
    };
    required_verification_blocks_until_verified(Some(&services)).await;
    services.cleanup().await;
}

/// The `/account` button mails a link to the signed-in account, and only with its form token;
/// without an `[email]` section, sign-up keeps signing in at once and a taken address is a 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_button_sends_a_link_and_no_email_keeps_the_old_sign_up() {
    let sink = SmtpSink::start().await.unwrap();
    let server = server(&sink, false, None).await;
    server
        .create_user("kate@example.com", PASSWORD)
        .await
        .unwrap();
    let cookie = server.sign_in("kate@example.com", PASSWORD).await.unwrap();
    let page = server
        .get("/account", Some(&cookie))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("action=\"/account/verify\""));
    let token = form_token(&page);
    let send = |t: String| {
        let server = &server;
        let cookie = cookie.clone();
        async move {
            server
                .client
                .post(format!("{}/account/verify", server.url))
                .header("origin", server.origin())
                .header("cookie", cookie)
                .form(&[("csrf_token", t)])
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(send("forged".into()).await.status(), 403);
    let sent = send(token).await;
    assert_eq!(sent.status(), 303);
    let first = verify_path(&sink.wait_for(1, WAIT).await.unwrap()[0]);

    // The same from an application: a session call with its CSRF token, forged calls refused.
    let api = "/api/v1/email/verification";
    let forged = server
        .client
        .post(format!("{}{api}", server.url))
        .header("origin", server.origin())
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let sent = server
        .send_json(reqwest::Method::POST, api, &cookie, None)
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    let path = verify_path(&sink.wait_for(2, WAIT).await.unwrap()[1]);
    assert_eq!(verify(&server, &path).await.status(), 200);
    // Verifying with one link ends the account's others.
    assert_eq!(verify(&server, &first).await.status(), 400);
    server.stop().await;

    let plain = TestServer::start().await.unwrap();
    let (status, cookie, _) = sign_up_api(&plain, "new@example.com", PASSWORD).await;
    assert_eq!((status, cookie), (201, true));
    let (status, _, body) = sign_up_api(&plain, "new@example.com", PASSWORD).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("email_taken")));
    assert_eq!(
        plain.get("/verify?token=x", None).await.unwrap().status(),
        404
    );
    let cookie = plain.sign_in("new@example.com", PASSWORD).await.unwrap();
    let off = plain
        .send_json(
            reqwest::Method::POST,
            "/api/v1/email/verification",
            &cookie,
            None,
        )
        .await
        .unwrap();
    assert_eq!(off.status(), 404);
    plain.stop().await;
}
