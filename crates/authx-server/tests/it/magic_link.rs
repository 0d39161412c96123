//! Magic-link sign-in through the real server, on SQLite and PostgreSQL: asked for from the
//! sign-in page in one cookie jar (a browser), the link read from the mail a real SMTP server
//! received, and used in the same jar, in another one, twice, late, and for nobody.

use std::time::Duration;

use authx_server::config::FileConfig;
use authx_testkit::smtp::SmtpSink;
use authx_testkit::{PASSWORD, TestServer, session_cookie, set_cookies};

use crate::email_change::{
    Db, WAIT, audit_trail, cookie_set, csrf_field, finish, link_in, press, server_on,
};

const EMAIL: &str = "ada@example.com";
const PREFIX: &str = "/magic-link/sign-in?token=";

/// `[email] magic_links = true`.
fn magic_on(f: &mut FileConfig) {
    if let Some(e) = f.email.as_mut() {
        e.magic_links = Some(true);
    }
}

/// Asks for a sign-in link for `email` from the sign-in page, in the browser whose cookies are
/// `jar` (the cookies the answers set are added).
async fn ask(server: &TestServer, jar: &mut Vec<String>, email: &str) -> reqwest::Response {
    ask_returning(server, jar, email, "/account?hello").await
}

/// As [`ask`], with the sign-in page's `return_to`.
async fn ask_returning(
    server: &TestServer,
    jar: &mut Vec<String>,
    email: &str,
    return_to: &str,
) -> reqwest::Response {
    let page = server
        .get("/login?return_to=/account%3Fhello", Some(&jar.join("; ")))
        .await
        .unwrap();
    if let Some(pre) = cookie_set(&page, "authx_csrf") {
        jar.push(pre);
    }
    let html = page.text().await.unwrap();
    assert!(
        html.contains("form id=\"magic-link\""),
        "the form is offered"
    );
    let res = server
        .client
        .post(format!("{}/magic-link", server.url))
        .header("origin", server.origin())
        .header("cookie", jar.join("; "))
        .form(&[
            ("email", email),
            ("return_to", return_to),
            ("csrf_token", &csrf_field(&html)),
        ])
        .send()
        .await
        .unwrap();
    if let Some(binding) = cookie_set(&res, "authx_magic_link") {
        jar.retain(|c| !c.starts_with("authx_magic_link="));
        jar.push(binding);
    }
    res
}

async fn a_link_signs_in_only_the_browser_that_asked(db: Db) {
    let sink = SmtpSink::start().await.unwrap();
    let test = "magic_link::only_the_browser_that_asked";
    let Some((server, services)) = server_on(db, test, &sink, magic_on).await else {
        return;
    };
    server.create_user(EMAIL, PASSWORD).await.unwrap();
    let planted = server.sign_in(EMAIL, PASSWORD).await.unwrap();
    let mut laptop = vec![planted.clone()];
    let asked = ask(&server, &mut laptop, EMAIL).await;
    assert_eq!(asked.status(), 200);
    let binding = set_cookies(&asked)
        .into_iter()
        .find(|c| c.starts_with("authx_magic_link="))
        .expect("a binding cookie");
    assert!(
        binding.contains("HttpOnly") && binding.contains("SameSite=Lax"),
        "{binding}"
    );
    assert!(binding.contains("Max-Age=600"), "{binding}");
    let mails = sink.wait_for(1, WAIT).await.unwrap();
    assert_eq!(mails[0].rcpt_to, [EMAIL]);
    let link = link_in(&mails[0], PREFIX);
    assert!(
        mails[0]
            .decoded()
            .contains(&format!("{}{link}", server.url))
    );

    // The mail read in another browser (or by whoever else reads it) signs nobody in.
    let mut phone = Vec::new();
    let refused = press(&server, &link, &mut phone).await;
    assert_eq!(refused.status(), 403);
    assert!(session_cookie(&refused).is_none());
    assert!(refused.text().await.unwrap().contains("another browser"));

    let done = press(&server, &link, &mut laptop).await;
    assert_eq!(done.status(), 303);
    assert_eq!(
        done.headers()["location"],
        "/account?hello",
        "return_to is honoured"
    );
    let session = session_cookie(&done).expect("a session");
    assert!(
        cookie_set(&done, "authx_magic_link").is_some_and(|c| c == "authx_magic_link="),
        "the binding is cleared"
    );
    let me = server.get("/api/v1/me", Some(&session)).await.unwrap();
    assert_eq!(me.status(), 200);
    let planted_now = server.get("/api/v1/me", Some(&planted)).await.unwrap();
    assert_eq!(
        planted_now.status(),
        401,
        "the presented session ended (fixation)"
    );

    let again = press(&server, &link, &mut laptop).await;
    assert_eq!(again.status(), 400, "a used link is refused");
    assert!(session_cookie(&again).is_none());

    let events = audit_trail(&server).await;
    let has = |kind: &str, detail: &str| {
        events
            .iter()
            .any(|e| e.kind == kind && e.detail.contains(detail))
    };
    assert!(has("magic_link_requested", ""));
    assert!(has("magic_link_refused", "other_browser"));
    assert!(has("sign_in", "magic_link"));
    let token = link.split("token=").nth(1).unwrap();
    assert!(
        !format!("{events:?}").contains(token),
        "a link token is audited"
    );
    finish(server, services).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_signs_in_only_the_browser_that_asked_sqlite() {
    a_link_signs_in_only_the_browser_that_asked(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_signs_in_only_the_browser_that_asked_postgres() {
    a_link_signs_in_only_the_browser_that_asked(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_addresses_expired_links_and_disabled_accounts() {
    let sink = SmtpSink::start().await.unwrap();
    let Some((server, _)) = server_on(Db::Sqlite, "", &sink, magic_on).await else {
        return;
    };
    let user = server.create_user(EMAIL, PASSWORD).await.unwrap();

    let mut jar = Vec::new();
    let known = ask(&server, &mut jar, EMAIL).await;
    let known = (known.status(), known.text().await.unwrap());
    let mut other = Vec::new();
    let unknown = ask(&server, &mut other, "nobody@example.com").await;
    assert!(other.iter().any(|c| c.starts_with("authx_magic_link=")));
    let unknown = (unknown.status(), unknown.text().await.unwrap());
    assert_eq!(known, unknown, "the same answer for an unknown address");
    let mails = sink.wait_for(1, WAIT).await.unwrap();
    let link = link_in(&mails[0], PREFIX);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.received().len(), 1, "nobody@ got nothing");

    // The button's page lets its POST end at an application, as the sign-in page does.
    let page = server.get(&link, None).await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        !csp.contains("form-action") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );

    server.clock.advance(600);
    let late = press(&server, &link, &mut jar).await;
    assert_eq!(late.status(), 400, "expired");
    assert!(session_cookie(&late).is_none());

    // A disabled account gets no session from a link it asked for before.
    ask(&server, &mut jar, EMAIL).await;
    let link = link_in(&sink.wait_for(2, WAIT).await.unwrap()[1], PREFIX);
    let state = &server.running().unwrap().state;
    state.auth.disable_user(&user.id).await.unwrap();
    let refused = press(&server, &link, &mut jar).await;
    assert_eq!(refused.status(), 400);
    assert!(session_cookie(&refused).is_none());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn magic_links_are_off_by_default() {
    let sink = SmtpSink::start().await.unwrap();
    let Some((server, _)) = server_on(Db::Sqlite, "", &sink, |_| {}).await else {
        return;
    };
    server.create_user(EMAIL, PASSWORD).await.unwrap();
    let login = server
        .get("/login", None)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!login.contains("magic-link"), "no form");
    let post = server
        .client
        .post(format!("{}/magic-link", server.url))
        .header("origin", server.origin())
        .form(&[("email", EMAIL)])
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 404);
    let page = server
        .get(&format!("{PREFIX}{}", "A".repeat(43)), None)
        .await;
    assert_eq!(page.unwrap().status(), 404);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sink.received().is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_request_continues_after_a_magic_link() {
    use authx_core::oauth::client::GrantType;
    use authx_core::oauth::pkce;

    use crate::oidc::{REDIRECT, VERIFIER, client, query_param, urlencode};

    let sink = SmtpSink::start().await.unwrap();
    let Some((server, _)) = server_on(Db::Sqlite, "", &sink, magic_on).await else {
        return;
    };
    let state = &server.running().unwrap().state;
    let api = "https://api.example.com".to_owned();
    authx_server::web::api::register_resource(state, api, vec!["read".into(), "write".into()])
        .await
        .unwrap();
    let app = client("app", &[GrantType::AuthorizationCode], true);
    state.oauth.register_client(app, false).await.unwrap();
    server.create_user(EMAIL, PASSWORD).await.unwrap();

    let authorize = format!(
        "/oauth2/authorize?response_type=code&client_id=app&redirect_uri={}&scope=openid&state=s\
         &nonce=n&code_challenge={}&code_challenge_method=S256",
        urlencode(REDIRECT),
        pkce::s256(VERIFIER)
    );
    let to_login = server.get(&authorize, None).await.unwrap();
    let location = to_login.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/login"), "{location}");
    let return_to = query_param(&location, "return_to").unwrap();

    let mut jar = Vec::new();
    ask_returning(&server, &mut jar, EMAIL, &return_to).await;
    let link = link_in(&sink.wait_for(1, WAIT).await.unwrap()[0], PREFIX);
    let done = press(&server, &link, &mut jar).await;
    assert_eq!(done.status(), 303);
    assert_eq!(done.headers()["location"].to_str().unwrap(), return_to);
    let session = session_cookie(&done).unwrap();
    let back = server.get(&return_to, Some(&session)).await.unwrap();
    let to_app = back.headers()["location"].to_str().unwrap();
    assert!(to_app.starts_with(REDIRECT), "{to_app}");
    assert!(query_param(to_app, "code").is_some(), "{to_app}");
    server.stop().await;
}
