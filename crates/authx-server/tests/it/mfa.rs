//! Two-step verification through the real server, on SQLite and PostgreSQL: an authenticator
//! app enrolled from the account page (the code computed here from the key the page shows),
//! sign-in by page and by API with the code, replay and clock skew, recovery codes (single use,
//! mailed about), policy-forced enrolment, and factor removal behind a recent sign-in.

use authx_core::Timestamp;
use authx_core::clock::Clock as _;
use authx_core::mfa::totp::{Totp, TotpSecret};
use authx_server::config::{FileConfig, MfaFile};
use authx_testkit::smtp::SmtpSink;
use authx_testkit::{PASSWORD, TestServer, session_cookie};
use serde_json::{Value, json};

use crate::email_change::{Db, WAIT, audit_trail, cookie_set, csrf_field, finish, server_on};

const EMAIL: &str = "kate@example.com";

/// The text between `start` and the next `end` in `html`.
fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    html.split(start)
        .nth(1)
        .unwrap_or_else(|| panic!("no {start:?} in {html}"))
        .split(end)
        .next()
        .unwrap()
}

/// The code an authenticator app with `secret` shows at `at`.
fn code(secret: &TotpSecret, at: Timestamp) -> String {
    Totp::new(secret).code_at(at)
}

/// A browser's `POST path` with the session `cookie` and `fields`.
async fn post(
    server: &TestServer,
    path: &str,
    cookie: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    server
        .client
        .post(format!("{}{path}", server.url))
        .header("origin", server.origin())
        .header("cookie", cookie)
        .form(fields)
        .send()
        .await
        .unwrap()
}

/// Enrols an authenticator app for the session `cookie` from the account page: its key and
/// the recovery codes shown once.
async fn enrol(server: &TestServer, cookie: &str) -> (TotpSecret, Vec<String>) {
    let account = server.get("/account", Some(cookie)).await.unwrap();
    let html = account.text().await.unwrap();
    assert!(html.contains("id=\"mfa-off\""), "{html}");
    let csrf = csrf_field(&html);
    let page = post(
        server,
        "/account/mfa/totp",
        cookie,
        &[("name", "phone"), ("csrf_token", &csrf)],
    )
    .await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<svg"), "a QR code is drawn: {html}");
    let secret = TotpSecret::from_base32(between(&html, "id=\"totp-secret\">", "<")).unwrap();
    let factor = between(&html, "name=\"factor_id\" value=\"", "\"").to_owned();
    // A wrong first code shows the same key again.
    let wrong = post(
        server,
        "/account/mfa/totp/confirm",
        cookie,
        &[
            ("factor_id", &factor),
            ("code", "000000"),
            ("csrf_token", &csrf),
        ],
    )
    .await;
    assert_eq!(wrong.status(), 400);
    let again = wrong.text().await.unwrap();
    assert_eq!(
        TotpSecret::from_base32(between(&again, "id=\"totp-secret\">", "<"))
            .unwrap()
            .expose_bytes(),
        secret.expose_bytes()
    );
    let now = server.clock.now();
    let done = post(
        server,
        "/account/mfa/totp/confirm",
        cookie,
        &[
            ("factor_id", &factor),
            ("code", &code(&secret, now)),
            ("csrf_token", &csrf),
        ],
    )
    .await;
    assert_eq!(done.status(), 200);
    let html = done.text().await.unwrap();
    let codes: Vec<String> = between(&html, "id=\"recovery-codes\"", "</ul>")
        .split("<code>")
        .skip(1)
        .map(|c| c.split("</code>").next().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10, "{html}");
    // The code used to confirm belongs to this step; the next sign-in uses a later one.
    server.clock.advance(30);
    (secret, codes)
}

/// `POST /api/v1/auth/sign-in`: status, body, and the waiting sign-in's cookie.
async fn api_sign_in(server: &TestServer) -> (u16, Value, Option<String>, Option<String>) {
    let res = server
        .client
        .post(format!("{}/api/v1/auth/sign-in", server.url))
        .header("origin", server.origin())
        .json(&json!({"email": EMAIL, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let waiting = cookie_set(&res, "authx_mfa");
    let session = session_cookie(&res);
    (
        res.status().as_u16(),
        res.json().await.unwrap(),
        waiting,
        session,
    )
}

/// `POST /api/v1/auth/second-factor` with the waiting cookie: status, body, the next waiting
/// cookie and the session cookie.
async fn api_code(
    server: &TestServer,
    waiting: &str,
    typed: &str,
) -> (u16, Value, Option<String>, Option<String>) {
    let res = server
        .client
        .post(format!("{}/api/v1/auth/second-factor", server.url))
        .header("origin", server.origin())
        .header("cookie", waiting)
        .json(&json!({"code": typed}))
        .send()
        .await
        .unwrap();
    let next = cookie_set(&res, "authx_mfa").filter(|c| c != "authx_mfa=");
    let session = session_cookie(&res);
    (
        res.status().as_u16(),
        res.json().await.unwrap(),
        next,
        session,
    )
}

async fn enrol_sign_in_replay_and_recovery(db: Db) {
    let sink = SmtpSink::start().await.unwrap();
    let Some((server, services)) = server_on(db, "mfa_flow", &sink, |_| {}).await else {
        return;
    };
    server.create_user(EMAIL, PASSWORD).await.unwrap();
    let cookie = server.sign_in(EMAIL, PASSWORD).await.unwrap();
    let (secret, recovery) = enrol(&server, &cookie).await;

    // The password alone now starts no session.
    let (status, body, waiting, session) = api_sign_in(&server).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("second_factor_required"))
    );
    assert!(session.is_none(), "no session before the code");
    let waiting = waiting.expect("waiting cookie");

    // A wrong code: refused, a new waiting sign-in.
    let (status, body, next, session) = api_code(&server, &waiting, "000000").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_code"))
    );
    assert!(session.is_none());
    let next = next.expect("a new waiting cookie");
    // The old cookie was spent.
    let (status, body, _, _) =
        api_code(&server, &waiting, &code(&secret, server.clock.now())).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("sign_in_expired"))
    );

    let now = server.clock.now();
    let right = code(&secret, now);
    let (status, body, _, session) = api_code(&server, &next, &right).await;
    assert_eq!(status, 200, "{body}");
    let session = session.expect("session cookie");
    assert_eq!(body["session"]["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(body["session"]["acr"], "urn:authx:acr:mfa");
    let me = server.get("/api/v1/me", Some(&session)).await.unwrap();
    assert_eq!(me.status(), 200);

    // The same code again, in a new sign-in within its step: refused (replay).
    let (_, _, waiting, _) = api_sign_in(&server).await;
    let (status, body, _, session) = api_code(&server, &waiting.unwrap(), &right).await;
    assert_eq!(
        (status, body["error"].as_str(), session),
        (401, Some("invalid_code"), None)
    );

    // A recovery code works once; its owner is mailed.
    let (_, _, waiting, _) = api_sign_in(&server).await;
    let (status, body, _, session) =
        api_code(&server, &waiting.unwrap(), &recovery[0].to_uppercase()).await;
    assert_eq!(status, 200, "{body}");
    assert!(session.is_some());
    assert_eq!(body["recovery_codes_left"], 9);
    let mails = sink.wait_for(1, WAIT).await.unwrap();
    let mail = mails
        .iter()
        .find(|m| {
            m.header("subject")
                .is_some_and(|s| s.contains("recovery code was used"))
        })
        .expect("the recovery-code notice");
    assert_eq!(mail.rcpt_to, [EMAIL]);
    assert!(
        mail.decoded().contains("Recovery codes left: 9"),
        "{}",
        mail.decoded()
    );
    let (_, _, waiting, _) = api_sign_in(&server).await;
    let (status, body, _, _) = api_code(&server, &waiting.unwrap(), &recovery[0]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_code"))
    );

    // The trail and the metrics show it.
    let trail = audit_trail(&server).await;
    let kinds: Vec<(&str, &str)> = trail
        .iter()
        .map(|e| (e.kind.as_str(), e.outcome.as_str()))
        .collect();
    for expected in [
        ("mfa_factor_confirmed", "success"),
        ("second_factor_asked", "success"),
        ("mfa_code_refused", "failure"),
        ("mfa_recovery_code_used", "success"),
    ] {
        assert!(kinds.contains(&expected), "{expected:?} in {kinds:?}");
    }
    assert!(
        trail
            .iter()
            .any(|e| e.kind == "sign_in" && e.detail.contains("password+totp"))
    );
    let metrics = server.metrics().await.unwrap();
    assert!(
        metrics.contains("second_factor_checks_total{outcome=\"success\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("sign_ins_total{outcome=\"second_factor\"}"));
    finish(server, services).await;
}

#[tokio::test]
async fn enrol_sign_in_replay_and_recovery_sqlite() {
    enrol_sign_in_replay_and_recovery(Db::Sqlite).await;
}

#[tokio::test]
async fn enrol_sign_in_replay_and_recovery_postgres() {
    enrol_sign_in_replay_and_recovery(Db::Postgres).await;
}

#[tokio::test]
async fn codes_one_step_off_are_accepted_and_two_steps_off_refused() {
    let server = TestServer::start().await.unwrap();
    server.create_user(EMAIL, PASSWORD).await.unwrap();
    let cookie = server.sign_in(EMAIL, PASSWORD).await.unwrap();
    let (secret, _) = enrol(&server, &cookie).await;
    server.clock.advance(300);
    for (offset, ok) in [(-60, false), (60, false), (-30, true), (30, true)] {
        let (_, _, waiting, _) = api_sign_in(&server).await;
        let at = Timestamp(server.clock.now().0 + offset);
        let (status, body, _, _) = api_code(&server, &waiting.unwrap(), &code(&secret, at)).await;
        assert_eq!(status == 200, ok, "offset {offset}: {body}");
        // Each accepted code uses up its step and those before it.
        server.clock.advance(120);
    }
    server.stop().await;
}

#[tokio::test]
async fn sign_in_page_asks_for_the_code_and_returns_where_it_was_going() {
    let server = TestServer::start().await.unwrap();
    server.create_user(EMAIL, PASSWORD).await.unwrap();
    let cookie = server.sign_in(EMAIL, PASSWORD).await.unwrap();
    let (secret, _) = enrol(&server, &cookie).await;

    let login = server
        .get("/login?return_to=/account%3Ffrom%3Dmfa", None)
        .await
        .unwrap();
    let pre = cookie_set(&login, "authx_csrf").unwrap();
    let html = login.text().await.unwrap();
    let res = post(
        &server,
        "/login",
        &pre,
        &[
            ("email", EMAIL),
            ("password", PASSWORD),
            ("return_to", "/account?from=mfa"),
            ("csrf_token", &csrf_field(&html)),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(session_cookie(&res).is_none());
    let waiting = cookie_set(&res, "authx_mfa").unwrap();
    let page = res.text().await.unwrap();
    assert!(page.contains("Two-step verification"), "{page}");
    let jar = format!("{pre}; {waiting}");
    let wrong = post(
        &server,
        "/login/second-factor",
        &jar,
        &[("code", "000000"), ("csrf_token", &csrf_field(&page))],
    )
    .await;
    assert_eq!(wrong.status(), 401);
    let waiting = cookie_set(&wrong, "authx_mfa").unwrap();
    let page = wrong.text().await.unwrap();
    assert!(page.contains("not valid"), "{page}");
    assert!(page.contains("4 tries left"), "{page}");
    // Without the page's form token: refused, nothing spent.
    let forged = post(
        &server,
        "/login/second-factor",
        &format!("{pre}; {waiting}"),
        &[("code", &code(&secret, server.clock.now()))],
    )
    .await;
    assert!(session_cookie(&forged).is_none());
    let done = post(
        &server,
        "/login/second-factor",
        &format!("{pre}; {waiting}"),
        &[
            ("code", &code(&secret, server.clock.now())),
            ("csrf_token", &csrf_field(&page)),
        ],
    )
    .await;
    assert_eq!(done.status(), 303);
    assert_eq!(done.headers()["location"], "/account?from=mfa");
    let session = session_cookie(&done).expect("session");
    let account = server
        .get("/account", Some(&session))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        account.contains("password and an authenticator app"),
        "{account}"
    );
    server.stop().await;
}

#[tokio::test]
async fn removing_a_factor_needs_a_recent_sign_in_or_the_password() {
    let server = TestServer::start().await.unwrap();
    server.create_user(EMAIL, PASSWORD).await.unwrap();
    let cookie = server.sign_in(EMAIL, PASSWORD).await.unwrap();
    let _ = enrol(&server, &cookie).await;
    server.clock.advance(301);
    let html = server
        .get("/account", Some(&cookie))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_field(&html);
    let id = between(&html, "class=\"factor\" data-id=\"", "\"").to_owned();
    // Renaming is a label: no password needed.
    let renamed = post(
        &server,
        &format!("/account/mfa/{id}/rename"),
        &cookie,
        &[("name", "work phone"), ("csrf_token", &csrf)],
    )
    .await;
    assert_eq!(renamed.status(), 303);
    let html = server
        .get("/account", Some(&cookie))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("work phone"), "{html}");
    let path = format!("/account/mfa/{id}/remove");
    let stale = post(&server, &path, &cookie, &[("csrf_token", &csrf)]).await;
    assert_eq!(stale.status(), 403);
    assert!(stale.text().await.unwrap().contains("current password"));
    let wrong = post(
        &server,
        &path,
        &cookie,
        &[
            ("current_password", "nope nope nope"),
            ("csrf_token", &csrf),
        ],
    )
    .await;
    assert_eq!(wrong.status(), 403);
    // Another user's session cannot remove it either: the factor is not theirs.
    server
        .create_user("eve@example.com", PASSWORD)
        .await
        .unwrap();
    let eve = server.sign_in("eve@example.com", PASSWORD).await.unwrap();
    let eve_csrf = csrf_field(
        &server
            .get("/account", Some(&eve))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let theft = post(&server, &path, &eve, &[("csrf_token", &eve_csrf)]).await;
    assert_eq!(theft.status(), 404);
    let (status, _, _, _) = api_sign_in(&server).await;
    assert_eq!(status, 401, "the factor is still there");
    let ok = post(
        &server,
        &path,
        &cookie,
        &[("current_password", PASSWORD), ("csrf_token", &csrf)],
    )
    .await;
    assert_eq!(ok.status(), 303);
    let (status, _, _, session) = api_sign_in(&server).await;
    assert_eq!(status, 200);
    assert!(session.is_some());
    server.stop().await;
}

#[tokio::test]
async fn policy_makes_everyone_enrol_at_the_next_sign_in() {
    let server = TestServer::start_with(|f: &mut FileConfig| {
        f.mfa = Some(MfaFile {
            required_for: Some("everyone".into()),
        });
    })
    .await
    .unwrap();
    server.create_user(EMAIL, PASSWORD).await.unwrap();
    let (status, body, waiting, session) = api_sign_in(&server).await;
    assert_eq!(status, 401);
    assert!(session.is_none());
    let uri = body["enrolment"]["otpauth_uri"]
        .as_str()
        .expect("enrolment");
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    let secret = TotpSecret::from_base32(body["enrolment"]["secret"].as_str().unwrap()).unwrap();
    let (status, body, _, session) = api_code(
        &server,
        &waiting.unwrap(),
        &code(&secret, server.clock.now()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(session.is_some());
    assert_eq!(body["recovery_codes"].as_array().map(Vec::len), Some(10));
    server.stop().await;
}

#[tokio::test]
async fn administrators_need_their_second_factor_for_the_admin_api_when_policy_says_so() {
    let server = TestServer::start_with(|f: &mut FileConfig| {
        f.mfa = Some(MfaFile {
            required_for: Some("admins".into()),
        });
    })
    .await
    .unwrap();
    let state = &server.running().unwrap().state;
    let admin = state.auth.create_user(EMAIL, PASSWORD, true).await.unwrap();
    // A session from before the policy: the password alone.
    let old = state
        .auth
        .start_session(
            admin,
            &authx_core::session::ClientContext::default(),
            "password",
        )
        .await
        .unwrap();
    let old_cookie = format!("authx_session={}", old.token.expose());
    let res = server
        .get("/api/v1/admin/users", Some(&old_cookie))
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "second_factor_required");
    // The console sends it to step-up first, on every page.
    for path in ["/admin", "/admin/users?q=a"] {
        let res = server.get(path, Some(&old_cookie)).await.unwrap();
        assert_eq!(res.status(), 303, "{path}");
        let to = res.headers()["location"].to_str().unwrap();
        assert!(to.starts_with("/login/step-up?return_to=%2Fadmin"), "{to}");
    }

    // Signing in now enrols the factor, and the new session may administer.
    let (status, body, waiting, _) = api_sign_in(&server).await;
    assert_eq!(status, 401);
    let secret = TotpSecret::from_base32(body["enrolment"]["secret"].as_str().unwrap()).unwrap();
    let (status, _, _, session) = api_code(
        &server,
        &waiting.unwrap(),
        &code(&secret, server.clock.now()),
    )
    .await;
    assert_eq!(status, 200);
    let session = session.unwrap();
    let res = server
        .get("/api/v1/admin/users", Some(&session))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        server.get("/admin", Some(&session)).await.unwrap().status(),
        200
    );
    // A user who is not an administrator is not asked for a factor by this policy.
    server
        .create_user("eve@example.com", PASSWORD)
        .await
        .unwrap();
    assert!(server.sign_in("eve@example.com", PASSWORD).await.is_ok());
    server.stop().await;
}

#[tokio::test]
async fn the_json_api_adds_lists_and_removes_an_authenticator() {
    use reqwest::Method;
    let server = TestServer::start().await.unwrap();
    server.create_user(EMAIL, PASSWORD).await.unwrap();
    let cookie = server.sign_in(EMAIL, PASSWORD).await.unwrap();
    let json = |res: reqwest::Response| async move {
        let status = res.status().as_u16();
        (status, res.json::<Value>().await.unwrap_or(Value::Null))
    };
    let (status, listed) = json(server.get("/api/v1/mfa", Some(&cookie)).await.unwrap()).await;
    assert_eq!(
        (status, listed["factors"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    // Without the CSRF header: refused.
    let forged = server
        .client
        .post(format!("{}/api/v1/mfa/totp", server.url))
        .header("origin", server.origin())
        .header("cookie", &cookie)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let (status, begun) = json(
        server
            .send_json(
                Method::POST,
                "/api/v1/mfa/totp",
                &cookie,
                Some(json!({"name": "cli"})),
            )
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{begun}");
    let secret = TotpSecret::from_base32(begun["secret"].as_str().unwrap()).unwrap();
    let id = begun["factor_id"].as_str().unwrap().to_owned();
    let confirm = format!("/api/v1/mfa/totp/{id}/confirm");
    let (status, body) = json(
        server
            .send_json(
                Method::POST,
                &confirm,
                &cookie,
                Some(json!({"code": "000000"})),
            )
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_code"))
    );
    let code_now = code(&secret, server.clock.now());
    let (status, body) = json(
        server
            .send_json(
                Method::POST,
                &confirm,
                &cookie,
                Some(json!({"code": code_now})),
            )
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["recovery_codes"].as_array().map(Vec::len), Some(10));
    let (_, listed) = json(server.get("/api/v1/mfa", Some(&cookie)).await.unwrap()).await;
    assert_eq!(listed["factors"][0]["name"], "cli");
    let rename = format!("/api/v1/mfa/{id}/rename");
    let res = server
        .send_json(
            Method::POST,
            &rename,
            &cookie,
            Some(json!({"name": "laptop"})),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let (status, body) = json(
        server
            .send_json(
                Method::POST,
                &rename,
                &cookie,
                Some(json!({"name": "x".repeat(65)})),
            )
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_name"))
    );
    let (_, listed) = json(server.get("/api/v1/mfa", Some(&cookie)).await.unwrap()).await;
    assert_eq!(listed["factors"][0]["name"], "laptop");
    assert_eq!(listed["factors"][0]["kind"], "totp");
    assert_eq!(listed["recovery_codes_left"], 10);
    // Five minutes on, removal needs the password.
    server.clock.advance(301);
    let remove = format!("/api/v1/mfa/{id}/remove");
    let (status, body) = json(
        server
            .send_json(Method::POST, &remove, &cookie, Some(json!({})))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("reauthentication_required"))
    );
    let res = server
        .send_json(
            Method::POST,
            &remove,
            &cookie,
            Some(json!({"current_password": PASSWORD})),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let (_, listed) = json(server.get("/api/v1/mfa", Some(&cookie)).await.unwrap()).await;
    assert_eq!(listed["factors"].as_array().map(Vec::len), Some(0));
    server.stop().await;
}

#[tokio::test]
async fn code_guessing_from_one_network_meets_the_sign_in_rate_limit() {
    let server = TestServer::start_with(|f: &mut FileConfig| {
        f.rate_limit = Some(authx_server::config::RateLimitFile {
            sign_in: Some(3),
            ..authx_server::config::RateLimitFile::default()
        });
    })
    .await
    .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let (status, _, _, _) = api_code(&server, "authx_mfa=x", "000000").await;
        statuses.push(status);
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
    let page = server.get("/login/step-up", None).await.unwrap();
    assert_eq!(page.status(), 429);
    server.stop().await;
}
