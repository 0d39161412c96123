//! Email change through the real server, on SQLite and PostgreSQL: the account form and the
//! JSON API, the links read from the mails a real SMTP server received, the confirm and
//! "this wasn't me" pages, and what each of them ends.

use std::time::Duration;

use authx_server::config::FileConfig;
use authx_testkit::services::SharedServices;
use authx_testkit::smtp::{Received, SmtpSink};
use authx_testkit::{PASSWORD, TestServer, set_cookies};
use reqwest::Method;
use serde_json::{Value, json};

use crate::recovery::mail_to;

pub(crate) const WAIT: Duration = Duration::from_secs(20);
const OLD: &str = "kate@example.com";
const NEW: &str = "kate@new.example.com";

/// Which database a test runs on.
#[derive(Clone, Copy)]
pub(crate) enum Db {
    Sqlite,
    Postgres,
}

/// A server on `db` mailing through `sink`, adjusted by `extra`; `None` (reported) when
/// PostgreSQL is not configured. The services are dropped by [`finish`].
pub(crate) async fn server_on(
    db: Db,
    test: &str,
    sink: &SmtpSink,
    extra: fn(&mut FileConfig),
) -> Option<(TestServer, Option<SharedServices>)> {
    let port = sink.port();
    match db {
        Db::Sqlite => {
            let server = TestServer::start_with(move |f: &mut FileConfig| {
                mail_to(f, port);
                extra(f);
            })
            .await
            .unwrap();
            Some((server, None))
        }
        Db::Postgres => {
            let services = SharedServices::acquire(test).await?;
            let shared = services.configure();
            let server = TestServer::start_on(&services.database_url, move |f: &mut FileConfig| {
                shared(f);
                mail_to(f, port);
                extra(f);
            })
            .await
            .unwrap();
            Some((server, Some(services)))
        }
    }
}

/// Stops the server and drops the test's PostgreSQL schema, if any.
pub(crate) async fn finish(server: TestServer, services: Option<SharedServices>) {
    server.stop().await;
    if let Some(s) = services {
        s.cleanup().await;
    }
}

/// The audit trail so far (queued events stored first).
pub(crate) async fn audit_trail(server: &TestServer) -> Vec<authx_core::audit::AuditRecord> {
    let state = &server.running().unwrap().state;
    state.auth.audit().flush().await;
    state
        .audit_store
        .list_audit(&authx_core::audit::AuditQuery {
            limit: 500,
            ..Default::default()
        })
        .await
        .unwrap()
}

/// The path and query of the link starting with `prefix` in `mail`.
pub(crate) fn link_in(mail: &Received, prefix: &str) -> String {
    let text = mail.decoded();
    let start = text
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix} in {text}"));
    text[start..start + prefix.len() + 43].to_owned()
}

/// The mail of `mails` sent to `to`.
pub(crate) fn mail_for<'a>(mails: &'a [Received], to: &str) -> &'a Received {
    mails
        .iter()
        .find(|m| m.rcpt_to == [to])
        .unwrap_or_else(|| panic!("no mail to {to}"))
}

/// The `name=value` of the cookie `name` that `res` sets.
pub(crate) fn cookie_set(res: &reqwest::Response, name: &str) -> Option<String> {
    set_cookies(res)
        .into_iter()
        .filter_map(|c| c.split(';').next().map(str::to_owned))
        .find(|nv| nv.starts_with(&format!("{name}=")))
}

/// The value of the first `csrf_token` field of a page.
pub(crate) fn csrf_field(html: &str) -> String {
    html.split("name=\"csrf_token\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned()
}

/// Opens the link page `path` in a browser whose cookies are `jar` (each `name=value`; the
/// pre-session cookie the page sets is added) and presses its button: the answer to the POST.
pub(crate) async fn press(
    server: &TestServer,
    path: &str,
    jar: &mut Vec<String>,
) -> reqwest::Response {
    let page = server.get(path, Some(&jar.join("; "))).await.unwrap();
    assert_eq!(page.status(), 200, "{path}");
    if let Some(pre) = cookie_set(&page, "authx_csrf") {
        jar.retain(|c| !c.starts_with("authx_csrf="));
        jar.push(pre);
    }
    let html = page.text().await.unwrap();
    assert!(html.contains("<button"), "GET shows a button: {html}");
    let action = path.split('?').next().unwrap();
    let token = path.split("token=").nth(1).unwrap();
    server
        .client
        .post(format!("{}{action}", server.url))
        .header("origin", server.origin())
        .header("cookie", jar.join("; "))
        .form(&[("token", token), ("csrf_token", &csrf_field(&html))])
        .send()
        .await
        .unwrap()
}

/// Posts the account page's email form for the session `cookie`.
async fn change_form(
    server: &TestServer,
    cookie: &str,
    new_email: &str,
    password: &str,
) -> reqwest::Response {
    let html = server
        .get("/account", Some(cookie))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("form id=\"email-change\""), "{html}");
    server
        .client
        .post(format!("{}/account/email", server.url))
        .header("origin", server.origin())
        .header("cookie", cookie)
        .form(&[
            ("new_email", new_email),
            ("current_password", password),
            ("csrf_token", &csrf_field(&html)),
        ])
        .send()
        .await
        .unwrap()
}

/// `POST /api/v1/email` for the session `cookie`: status and body.
async fn change_api(server: &TestServer, cookie: &str, body: Value) -> (u16, Value) {
    let res = server
        .send_json(Method::POST, "/api/v1/email", cookie, Some(body))
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// The address `/api/v1/me` shows for `cookie`, or the status when it is not 200.
async fn me(server: &TestServer, cookie: &str) -> Result<String, u16> {
    let res = server.get("/api/v1/me", Some(cookie)).await.unwrap();
    if res.status() != 200 {
        return Err(res.status().as_u16());
    }
    let v: Value = res.json().await.unwrap();
    Ok(v["user"]["email"].as_str().unwrap().to_owned())
}

async fn confirmed_change_moves_the_address_and_ends_other_sessions(db: Db) {
    let sink = SmtpSink::start().await.unwrap();
    let test = "email_change::confirmed_change";
    let Some((server, services)) = server_on(db, test, &sink, |_| {}).await else {
        return;
    };
    server.create_user(OLD, PASSWORD).await.unwrap();
    let here = server.sign_in(OLD, PASSWORD).await.unwrap();
    let elsewhere = server.sign_in(OLD, PASSWORD).await.unwrap();
    // Long after the sign-in: the password stands in for a fresh one.
    server.clock.advance(600);

    let res = change_form(&server, &here, NEW, PASSWORD).await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/account?done=email");
    let mails = sink.wait_for(2, WAIT).await.unwrap();
    let confirm = link_in(mail_for(&mails, NEW), "/account/email/confirm?token=");
    let notice = mail_for(&mails, OLD);
    assert!(
        notice.decoded().contains(NEW),
        "the notice names the new address"
    );
    assert!(notice.decoded().contains("/account/email/cancel?token="));
    server
        .sign_in(OLD, PASSWORD)
        .await
        .expect("nothing changes before the confirmation");

    // Opening the link changes nothing; the button does.
    assert_eq!(server.get(&confirm, None).await.unwrap().status(), 200);
    assert_eq!(me(&server, &here).await, Ok(OLD.to_owned()));
    let mut jar = vec![here.clone()];
    let done = press(&server, &confirm, &mut jar).await;
    assert_eq!(done.status(), 200);
    assert!(done.text().await.unwrap().contains("Email address changed"));

    assert_eq!(
        me(&server, &here).await,
        Ok(NEW.to_owned()),
        "this session stays"
    );
    assert_eq!(me(&server, &elsewhere).await, Err(401), "the others end");
    assert!(server.sign_in(OLD, PASSWORD).await.is_err());
    server.sign_in(NEW, PASSWORD).await.unwrap();

    let again = press(&server, &confirm, &mut vec![]).await;
    assert_eq!(again.status(), 400, "a used link is refused");
    assert!(
        again
            .text()
            .await
            .unwrap()
            .contains("invalid or has expired")
    );
    finish(server, services).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_change_moves_the_address_and_ends_other_sessions_sqlite() {
    confirmed_change_moves_the_address_and_ends_other_sessions(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_change_moves_the_address_and_ends_other_sessions_postgres() {
    confirmed_change_moves_the_address_and_ends_other_sessions(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_needs_the_password_or_a_fresh_sign_in() {
    let sink = SmtpSink::start().await.unwrap();
    let Some((server, _)) = server_on(Db::Sqlite, "", &sink, |_| {}).await else {
        return;
    };
    server.create_user(OLD, PASSWORD).await.unwrap();
    let cookie = server.sign_in(OLD, PASSWORD).await.unwrap();
    server.clock.advance(301);

    let res = change_form(&server, &cookie, NEW, "").await;
    assert_eq!(res.status(), 403);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("enter your current password")
    );
    let (status, body) = change_api(&server, &cookie, json!({ "new_email": NEW })).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"], "reauthentication_required");

    let res = change_form(&server, &cookie, NEW, "not the password at all").await;
    assert_eq!(res.status(), 403);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("current password is incorrect")
    );
    let (status, body) = change_api(
        &server,
        &cookie,
        json!({ "new_email": NEW, "current_password": "not the password at all" }),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("wrong_password"))
    );

    // A session without a CSRF token, or from another site, changes nothing either.
    let forged = server
        .client
        .post(format!("{}/api/v1/email", server.url))
        .header("origin", server.origin())
        .header("cookie", &cookie)
        .json(&json!({ "new_email": NEW, "current_password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(sink.received().is_empty(), "nothing was mailed");

    // Within five minutes of a sign-in, no password is needed.
    let fresh = server.sign_in(OLD, PASSWORD).await.unwrap();
    let (status, _) = change_api(&server, &fresh, json!({ "new_email": NEW })).await;
    assert_eq!(status, 202);
    let mails = sink.wait_for(2, WAIT).await.unwrap();
    link_in(mail_for(&mails, NEW), "/account/email/confirm?token=");
    assert_eq!(me(&server, &fresh).await, Ok(OLD.to_owned()));
    server.stop().await;
}

async fn this_wasnt_me_cancels_undoes_and_ends_every_session(db: Db) {
    let sink = SmtpSink::start().await.unwrap();
    let test = "email_change::this_wasnt_me";
    let Some((server, services)) = server_on(db, test, &sink, |_| {}).await else {
        return;
    };
    server.create_user(OLD, PASSWORD).await.unwrap();
    let attacker = server.sign_in(OLD, PASSWORD).await.unwrap();
    let owner = server.sign_in(OLD, PASSWORD).await.unwrap();

    // Cancelled before it was confirmed: the confirmation link is dead.
    let (status, _) = change_api(&server, &attacker, json!({ "new_email": NEW })).await;
    assert_eq!(status, 202);
    let mails = sink.wait_for(2, WAIT).await.unwrap();
    let confirm = link_in(mail_for(&mails, NEW), "/account/email/confirm?token=");
    let cancel = link_in(mail_for(&mails, OLD), "/account/email/cancel?token=");
    assert_eq!(server.get(&cancel, None).await.unwrap().status(), 200);
    assert_eq!(
        me(&server, &attacker).await,
        Ok(OLD.to_owned()),
        "GET changes nothing"
    );
    let done = press(&server, &cancel, &mut vec![]).await;
    assert_eq!(done.status(), 200);
    assert!(
        done.text()
            .await
            .unwrap()
            .contains("Email change cancelled")
    );
    assert_eq!(me(&server, &attacker).await, Err(401));
    assert_eq!(me(&server, &owner).await, Err(401));
    assert_eq!(press(&server, &confirm, &mut vec![]).await.status(), 400);
    assert_eq!(
        press(&server, &cancel, &mut vec![]).await.status(),
        400,
        "used once"
    );

    // Confirmed before the owner saw the notice: cancelling puts the old address back.
    let attacker = server.sign_in(OLD, PASSWORD).await.unwrap();
    let (status, _) = change_api(&server, &attacker, json!({ "new_email": NEW })).await;
    assert_eq!(status, 202);
    let mails = sink.wait_for(4, WAIT).await.unwrap();
    let confirm = link_in(mail_for(&mails[2..], NEW), "/account/email/confirm?token=");
    let cancel = link_in(mail_for(&mails[2..], OLD), "/account/email/cancel?token=");
    let confirmed = press(&server, &confirm, &mut vec![attacker.clone()]).await;
    assert_eq!(confirmed.status(), 200);
    assert_eq!(me(&server, &attacker).await, Ok(NEW.to_owned()));
    assert_eq!(press(&server, &cancel, &mut vec![]).await.status(), 200);
    assert_eq!(me(&server, &attacker).await, Err(401));
    assert!(server.sign_in(NEW, PASSWORD).await.is_err());
    server.sign_in(OLD, PASSWORD).await.unwrap();
    finish(server, services).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn this_wasnt_me_cancels_undoes_and_ends_every_session_sqlite() {
    this_wasnt_me_cancels_undoes_and_ends_every_session(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn this_wasnt_me_cancels_undoes_and_ends_every_session_postgres() {
    this_wasnt_me_cancels_undoes_and_ends_every_session(Db::Postgres).await;
}

async fn an_address_taken_meanwhile_is_refused(db: Db) {
    let sink = SmtpSink::start().await.unwrap();
    let test = "email_change::address_taken";
    let Some((server, services)) = server_on(db, test, &sink, |_| {}).await else {
        return;
    };
    server.create_user(OLD, PASSWORD).await.unwrap();
    server
        .create_user("bob@example.com", PASSWORD)
        .await
        .unwrap();
    let kate = server.sign_in(OLD, PASSWORD).await.unwrap();

    // An address that has an account gets no link, and the answer is the same.
    let (status, _) = change_api(&server, &kate, json!({ "new_email": "bob@example.com" })).await;
    assert_eq!(status, 202);
    let mails = sink.wait_for(1, WAIT).await.unwrap();
    assert_eq!(mails[0].rcpt_to, [OLD], "only the notice");

    let (status, _) = change_api(&server, &kate, json!({ "new_email": NEW })).await;
    assert_eq!(status, 202);
    let mails = sink.wait_for(3, WAIT).await.unwrap();
    let confirm = link_in(mail_for(&mails, NEW), "/account/email/confirm?token=");
    server.create_user(NEW, PASSWORD).await.unwrap();
    let refused = press(&server, &confirm, &mut vec![kate.clone()]).await;
    assert_eq!(refused.status(), 409);
    assert!(refused.text().await.unwrap().contains("already exists"));
    assert_eq!(
        me(&server, &kate).await,
        Ok(OLD.to_owned()),
        "nothing changed"
    );
    server.sign_in(OLD, PASSWORD).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        sink.received()
            .iter()
            .all(|m| m.rcpt_to != ["bob@example.com"]),
        "the holder of a taken address is not mailed"
    );
    finish(server, services).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_taken_meanwhile_is_refused_sqlite() {
    an_address_taken_meanwhile_is_refused(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_taken_meanwhile_is_refused_postgres() {
    an_address_taken_meanwhile_is_refused(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_is_audited_without_tokens() {
    let sink = SmtpSink::start().await.unwrap();
    let Some((server, _)) = server_on(Db::Sqlite, "", &sink, |_| {}).await else {
        return;
    };
    server.create_user(OLD, PASSWORD).await.unwrap();
    let cookie = server.sign_in(OLD, PASSWORD).await.unwrap();
    server.clock.advance(301);
    let (status, _) = change_api(&server, &cookie, json!({ "new_email": NEW })).await;
    assert_eq!(status, 403);
    let body = json!({ "new_email": NEW, "current_password": PASSWORD });
    assert_eq!(change_api(&server, &cookie, body).await.0, 202);
    let mails = sink.wait_for(2, WAIT).await.unwrap();
    let confirm = link_in(mail_for(&mails, NEW), "/account/email/confirm?token=");
    let cancel = link_in(mail_for(&mails, OLD), "/account/email/cancel?token=");
    assert_eq!(
        press(&server, &confirm, &mut vec![cookie.clone()])
            .await
            .status(),
        200
    );
    assert_eq!(press(&server, &cancel, &mut vec![]).await.status(), 200);

    let events = audit_trail(&server).await;
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.kind.as_str(), e.outcome.as_str()))
        .collect();
    for expected in [
        ("email_change_refused", "failure"),
        ("email_change_requested", "success"),
        ("email_changed", "success"),
        ("email_change_cancelled", "success"),
    ] {
        assert!(kinds.contains(&expected), "{expected:?} in {kinds:?}");
    }
    let all = format!("{events:?}");
    for token in [&confirm, &cancel] {
        let token = token.split("token=").nth(1).unwrap();
        assert!(!all.contains(token), "a link token is in the audit trail");
    }
    server.stop().await;
}
