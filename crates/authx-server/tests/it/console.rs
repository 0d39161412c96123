//! The administration console under `/admin`, over HTTP: who may see it, what every action
//! needs (token, origin, a recent sign-in or the password), what it does, and that what users
//! typed is shown as text.

use authx_testkit::{PASSWORD, TestServer};

use super::{sign_in_raw, token_status};

/// The console's router source: every `/admin` route it declares is walked below, so a new
/// route cannot escape the access tests.
const CONSOLE_ROUTES: &str = include_str!("../../src/web/console/mod.rs");

/// A server with an administrator signed in: (server, admin cookie).
pub(crate) async fn with_admin() -> (TestServer, String) {
    let server = TestServer::start().await.unwrap();
    server
        .running()
        .unwrap()
        .state
        .auth
        .create_user("root@example.com", PASSWORD, true)
        .await
        .unwrap();
    let cookie = server.sign_in("root@example.com", PASSWORD).await.unwrap();
    (server, cookie)
}

/// `GET path` as `cookie`: (status, body).
async fn page(server: &TestServer, path: &str, cookie: &str) -> (u16, String) {
    let res = server.get(path, Some(cookie)).await.unwrap();
    let status = res.status().as_u16();
    (status, res.text().await.unwrap())
}

/// The form token of a console page.
fn form_token(html: &str) -> String {
    html.split("name=\"csrf_token\" value=\"")
        .nth(1)
        .expect("the page has a form")
        .split('"')
        .next()
        .unwrap()
        .to_owned()
}

/// A same-origin form POST as `cookie`.
async fn post(
    server: &TestServer,
    path: &str,
    cookie: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    server
        .client
        .post(format!("{}{path}", server.url))
        .header("cookie", cookie)
        .header("origin", &server.url)
        .form(fields)
        .send()
        .await
        .unwrap()
}

/// The console's token for `cookie`, from the keys page's form.
async fn console_token(server: &TestServer, cookie: &str) -> String {
    let (status, html) = page(server, "/admin/keys", cookie).await;
    assert_eq!(status, 200, "{html}");
    form_token(&html)
}

/// Every `/admin` route of the router, with its methods, path parameters filled in.
fn console_routes() -> Vec<(&'static str, String)> {
    let mut routes = Vec::new();
    let mut rest = CONSOLE_ROUTES;
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        let start = rest.find('"').unwrap() + 1;
        let end = start + rest[start..].find('"').unwrap();
        let path = &rest[start..end];
        let call_end = rest
            .find("\n        .route(")
            .or_else(|| rest.find("\n}"))
            .unwrap_or(rest.len());
        let call = &rest[end..call_end];
        if !path.starts_with("/admin") {
            continue;
        }
        let filled = path
            .replace("{id}", "some-id")
            .replace("{session}", "some-session")
            .replace("{grant}", "some-grant")
            .replace("{name}", "corp");
        assert!(!filled.contains('{'), "unfilled parameter in {path}");
        if call.contains("get(") {
            routes.push(("GET", filled.clone()));
        }
        if call.contains("post(") {
            routes.push(("POST", filled));
        }
    }
    routes
}

#[tokio::test]
async fn every_console_route_refuses_anyone_but_an_administrator() {
    let (server, _admin) = with_admin().await;
    server
        .create_user("mallory@example.com", PASSWORD)
        .await
        .unwrap();
    let user = server
        .sign_in("mallory@example.com", PASSWORD)
        .await
        .unwrap();
    let token = server.csrf_token(&user).await.unwrap();
    let routes = console_routes();
    assert!(routes.len() >= 25, "walked only {routes:?}");
    for (method, path) in &routes {
        let res = match *method {
            "GET" => server.get(path, Some(&user)).await.unwrap(),
            _ => post(&server, path, &user, &[("csrf_token", &token)]).await,
        };
        assert_eq!(res.status(), 403, "{method} {path} as a user");
        let html = res.text().await.unwrap();
        assert!(
            html.contains("Administrators only"),
            "{method} {path}: {html}"
        );
        // Signed out: GETs go to the sign-in page, POSTs are refused.
        let res = match *method {
            "GET" => server.get(path, None).await.unwrap(),
            _ => server
                .client
                .post(format!("{}{path}", server.url))
                .header("origin", &server.url)
                .form(&[("csrf_token", "x")])
                .send()
                .await
                .unwrap(),
        };
        let status = res.status().as_u16();
        if *method == "GET" {
            assert_eq!(status, 303, "{method} {path} signed out");
            let to = res.headers()["location"].to_str().unwrap();
            assert!(to.starts_with("/login?return_to=/admin"), "{path}: {to}");
        } else {
            assert!(
                matches!(status, 303 | 403),
                "{method} {path} signed out: {status}"
            );
        }
    }
    // Nothing changed for the user.
    let u = server
        .running()
        .unwrap()
        .state
        .auth
        .stores()
        .accounts
        .user_by_email("mallory@example.com")
        .await
        .unwrap()
        .unwrap();
    assert!(!u.is_admin);
}

#[tokio::test]
async fn htmx_is_sent_to_the_sign_in_page_by_a_full_load() {
    let (server, admin) = with_admin().await;
    let htmx_get = |cookie: Option<String>| {
        let mut req = server
            .client
            .get(format!("{}/admin/users?q=a%20b", server.url))
            .header("hx-request", "true");
        if let Some(cookie) = cookie {
            req = req.header("cookie", cookie);
        }
        req.send()
    };
    // Signed out: no 303 (the browser would follow it and htmx would swap the sign-in page
    // into the console) but an instruction to load it.
    let res = htmx_get(None).await.unwrap();
    assert_eq!(res.status(), 204);
    assert!(res.headers().get("location").is_none());
    assert_eq!(
        res.headers()["hx-redirect"],
        "/login?return_to=/admin/users%3Fq%3Da%2520b"
    );
    assert_eq!(res.headers()["cache-control"], "no-store");
    // Signed in, the page itself.
    let res = htmx_get(Some(admin)).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("hx-redirect").is_none());
}

#[tokio::test]
async fn console_pages_allow_only_their_own_script_and_are_never_cached() {
    let (server, admin) = with_admin().await;
    for path in [
        "/admin",
        "/admin/users",
        "/admin/clients",
        "/admin/clients/new",
        "/admin/apis",
        "/admin/registration",
        "/admin/keys",
        "/admin/federation",
        "/admin/audit",
    ] {
        let res = server.get(path, Some(&admin)).await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let csp = res.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(res.headers()["cache-control"], "no-store", "{path}");
        let html = res.text().await.unwrap();
        assert_eq!(html.matches("<script").count(), 1, "{path}: {html}");
        assert!(html.contains("<script src=\"/assets/htmx.min.js\" defer></script>"));
        for banned in ["<style", " style=", " onclick=", " hx-on", "javascript:"] {
            assert!(!html.contains(banned), "{path}: {banned}");
        }
        assert!(html.contains("\"includeIndicatorStyles\":false"), "{path}");
    }
    let res = server.get("/assets/htmx.min.js", None).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("htmx"));
}

#[tokio::test]
async fn console_actions_need_the_form_token_and_a_same_site_origin() {
    let (server, admin) = with_admin().await;
    let kate = server
        .create_user("kate@example.com", PASSWORD)
        .await
        .unwrap();
    let token = console_token(&server, &admin).await;
    let path = format!("/admin/users/{}/disable", kate.id.0);
    for (name, fields) in [
        ("no token", vec![]),
        ("wrong token", vec![("csrf_token", "forged")]),
    ] {
        let res = post(&server, &path, &admin, &fields).await;
        assert_eq!(res.status(), 403, "{name}");
    }
    let res = server
        .client
        .post(format!("{}{path}", server.url))
        .header("cookie", &admin)
        .header("origin", "https://evil.example")
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "foreign origin");
    let state = &server.running().unwrap().state;
    let u = state
        .auth
        .stores()
        .accounts
        .user_by_id(&kate.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.status, authx_core::user::UserStatus::Active);
    // With both, it works.
    let res = post(&server, &path, &admin, &[("csrf_token", &token)]).await;
    assert_eq!(res.status(), 303);
    let u = state
        .auth
        .stores()
        .accounts
        .user_by_id(&kate.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.status, authx_core::user::UserStatus::Disabled);
}

#[tokio::test]
async fn destructive_actions_after_five_minutes_need_the_password() {
    let (server, admin) = with_admin().await;
    let kate = server
        .create_user("kate@example.com", PASSWORD)
        .await
        .unwrap();
    let kate_cookie = server.sign_in("kate@example.com", PASSWORD).await.unwrap();
    let token = console_token(&server, &admin).await;
    server
        .clock
        .advance(authx_core::auth::REAUTH_WINDOW_SECS + 1);
    let (_, html) = page(&server, &format!("/admin/users/{}", kate.id.0), &admin).await;
    assert!(
        html.contains("name=\"current_password\""),
        "the form asks for it"
    );
    let path = format!("/admin/users/{}/revoke-all", kate.id.0);
    let res = post(&server, &path, &admin, &[("csrf_token", &token)]).await;
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("Confirm it is you"));
    let res = post(
        &server,
        &path,
        &admin,
        &[
            ("csrf_token", &token),
            ("current_password", "not the password at all"),
        ],
    )
    .await;
    assert_eq!(res.status(), 403);
    assert_eq!(
        server
            .get("/api/v1/me", Some(&kate_cookie))
            .await
            .unwrap()
            .status(),
        200,
        "refused actions did nothing"
    );
    let res = post(
        &server,
        &path,
        &admin,
        &[("csrf_token", &token), ("current_password", PASSWORD)],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(
        server
            .get("/api/v1/me", Some(&kate_cookie))
            .await
            .unwrap()
            .status(),
        401,
        "every session of hers ended"
    );
}

#[tokio::test]
async fn the_last_administrator_cannot_be_demoted_or_disabled() {
    let (server, admin) = with_admin().await;
    let state = &server.running().unwrap().state;
    let root = state
        .auth
        .stores()
        .accounts
        .user_by_email("root@example.com")
        .await
        .unwrap()
        .unwrap();
    let token = console_token(&server, &admin).await;
    let demote = format!("/admin/users/{}/admin", root.id.0);
    let res = post(
        &server,
        &demote,
        &admin,
        &[("csrf_token", &token), ("admin", "false")],
    )
    .await;
    assert_eq!(res.status(), 409);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("last active administrator")
    );
    let disable = format!("/admin/users/{}/disable", root.id.0);
    let res = post(&server, &disable, &admin, &[("csrf_token", &token)]).await;
    assert_eq!(res.status(), 409);
    let u = state
        .auth
        .stores()
        .accounts
        .user_by_id(&root.id)
        .await
        .unwrap()
        .unwrap();
    assert!(u.is_admin);
    assert_eq!(u.status, authx_core::user::UserStatus::Active);
    assert_eq!(page(&server, "/admin", &admin).await.0, 200, "still in");

    // With a second administrator, the first may step down, and loses the console at once.
    let kate = server
        .create_user("kate@example.com", PASSWORD)
        .await
        .unwrap();
    let grant = format!("/admin/users/{}/admin", kate.id.0);
    let res = post(
        &server,
        &grant,
        &admin,
        &[("csrf_token", &token), ("admin", "true")],
    )
    .await;
    assert_eq!(res.status(), 303);
    let res = post(
        &server,
        &demote,
        &admin,
        &[("csrf_token", &token), ("admin", "false")],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(page(&server, "/admin", &admin).await.0, 403);
}

#[tokio::test]
async fn what_users_typed_is_shown_as_text() {
    let (server, admin) = with_admin().await;
    let token = console_token(&server, &admin).await;
    let payload = "<img src=x onerror=alert(1)>";
    // An audit detail: a sign-in attempt with markup for an address.
    let res = sign_in_raw(&server, payload, "whatever it is").await;
    assert_eq!(res.status(), 401);
    // A client name.
    let res = post(
        &server,
        "/admin/clients",
        &admin,
        &[
            ("csrf_token", &token),
            ("id", "xss-app"),
            ("name", "<script>alert(1)</script>"),
            ("kind", "confidential"),
            ("grant", "client_credentials"),
            ("scopes", ""),
        ],
    )
    .await;
    assert_eq!(res.status(), 201);
    // An address: markup is refused outright, and `&` is shown escaped.
    let res = post(
        &server,
        "/admin/users",
        &admin,
        &[
            ("csrf_token", &token),
            ("email", "<b>bold</b>@example.com"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(res.status(), 400);
    assert!(!res.text().await.unwrap().contains("<b>bold"));
    server
        .create_user("tom&jerry@example.com", PASSWORD)
        .await
        .unwrap();
    server.running().unwrap().state.auth.audit().flush().await;

    let (_, audit) = page(&server, "/admin/audit?kind=sign_in_failed", &admin).await;
    assert!(!audit.contains("<img"), "{audit}");
    assert!(
        audit.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{audit}"
    );
    let (_, clients) = page(&server, "/admin/clients", &admin).await;
    assert!(!clients.contains("<script>alert"), "{clients}");
    assert!(clients.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let (_, client) = page(&server, "/admin/clients/xss-app", &admin).await;
    assert!(client.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let (_, users) = page(&server, "/admin/users?q=jerry", &admin).await;
    assert!(users.contains("tom&amp;jerry@example.com"), "{users}");
}

#[tokio::test]
async fn a_client_registered_in_the_console_gets_tokens_until_rotated_or_deleted() {
    let (server, admin) = with_admin().await;
    let token = console_token(&server, &admin).await;
    let res = post(
        &server,
        "/admin/clients",
        &admin,
        &[
            ("csrf_token", &token),
            ("id", "reports"),
            ("name", "Reports"),
            ("kind", "confidential"),
            ("grant", "client_credentials"),
            ("scopes", ""),
            ("access_token_ttl_secs", "600"),
        ],
    )
    .await;
    assert_eq!(res.status(), 201);
    let html = res.text().await.unwrap();
    let first = secret_of(&html);
    assert_eq!(token_status(&server, "reports", &first).await, 200);

    let res = post(
        &server,
        "/admin/clients/reports/secret",
        &admin,
        &[("csrf_token", &token)],
    )
    .await;
    assert_eq!(res.status(), 200);
    let second = secret_of(&res.text().await.unwrap());
    assert_ne!(first, second);
    assert_eq!(
        token_status(&server, "reports", &first).await,
        401,
        "the old secret is dead"
    );
    assert_eq!(token_status(&server, "reports", &second).await, 200);
    let (_, page_html) = page(&server, "/admin/clients/reports", &admin).await;
    assert!(!page_html.contains(&second), "a secret is shown once");

    // A registration the rules refuse says why, on the form, and stores nothing.
    let res = post(
        &server,
        "/admin/clients",
        &admin,
        &[
            ("csrf_token", &token),
            ("id", "bad"),
            ("name", "Bad"),
            ("kind", "public"),
            ("grant", "client_credentials"),
            ("access_token_ttl_secs", "99999"),
        ],
    )
    .await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("Not registered"));
    assert_eq!(page(&server, "/admin/clients/bad", &admin).await.0, 404);

    let res = post(
        &server,
        "/admin/clients/reports/delete",
        &admin,
        &[("csrf_token", &token)],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(token_status(&server, "reports", &second).await, 401);
    // The trail names the administrator and the console.
    server.running().unwrap().state.auth.audit().flush().await;
    let (_, audit) = page(&server, "/admin/audit?kind=admin_action", &admin).await;
    assert!(audit.contains("rotate_client_secret"), "{audit}");
    assert!(
        audit.contains("&quot;via&quot;:&quot;console&quot;"),
        "{audit}"
    );
}

/// The secret shown once on a client's page.
fn secret_of(html: &str) -> String {
    html.split("id=\"client-secret\" type=\"text\" readonly value=\"")
        .nth(1)
        .expect("a secret is shown")
        .split('"')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn users_are_searched_and_paged_on_the_server() {
    let (server, admin) = with_admin().await;
    for i in 0..60 {
        server
            .create_user(&format!("member{i:02}@corp.example"), PASSWORD)
            .await
            .unwrap();
    }
    server
        .create_user("guest@home.example", PASSWORD)
        .await
        .unwrap();
    let (status, html) = page(&server, "/admin/users?q=corp", &admin).await;
    assert_eq!(status, 200);
    assert!(html.contains("1–50 of 60 users"), "{html}");
    assert_eq!(html.matches("<tr class=\"user\">").count(), 50);
    assert!(!html.contains("guest@home.example"));
    assert!(
        html.contains("href=\"/admin/users?q=corp&amp;page=1\""),
        "{html}"
    );
    let (_, html) = page(&server, "/admin/users?q=corp&page=1", &admin).await;
    assert!(html.contains("51–60 of 60 users"));
    assert_eq!(html.matches("<tr class=\"user\">").count(), 10);
    let (_, html) = page(&server, "/admin/users?q=%25", &admin).await;
    assert!(
        html.contains("of 0 users") || html.contains("No users"),
        "{html}"
    );
}

#[tokio::test]
async fn the_audit_trail_filters_pages_and_tails() {
    let (server, admin) = with_admin().await;
    for _ in 0..3 {
        let res = sign_in_raw(&server, "nobody@example.com", "not it at all").await;
        assert_eq!(res.status(), 401);
    }
    server.running().unwrap().state.auth.audit().flush().await;
    let (_, html) = page(
        &server,
        "/admin/audit?outcome=failure&kind=sign_in_failed",
        &admin,
    )
    .await;
    assert!(html.contains("3 events match"), "{html}");
    assert_eq!(html.matches("<tr class=\"event failure\"").count(), 3);
    let (_, html) = page(
        &server,
        "/admin/audit?outcome=success&kind=sign_in_failed",
        &admin,
    )
    .await;
    assert!(html.contains("No event matches"), "{html}");
    let (_, html) = page(&server, "/admin/audit?since=2999-01-01T00:00", &admin).await;
    assert!(html.contains("No event matches"), "{html}");
    let (status, html) = page(&server, "/admin/audit?since=yesterday", &admin).await;
    assert_eq!(status, 200);
    assert!(html.contains("The from field could not be read"), "{html}");

    // The live tail answers the events after the last one seen, and the next poll.
    let (_, html) = page(&server, "/admin/audit?kind=sign_in_failed", &admin).await;
    let tail = html
        .split("hx-get=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    assert!(
        tail.starts_with("/admin/audit/tail?kind=sign_in_failed&after="),
        "{tail}"
    );
    let (_, rows) = page(&server, &tail, &admin).await;
    assert_eq!(rows.matches("<tr class=\"event").count(), 0, "{rows}");
    let res = sign_in_raw(&server, "late@example.com", "not it at all").await;
    assert_eq!(res.status(), 401);
    server.running().unwrap().state.auth.audit().flush().await;
    let (_, rows) = page(&server, &tail, &admin).await;
    assert_eq!(
        rows.matches("<tr class=\"event failure\"").count(),
        1,
        "{rows}"
    );
    assert!(rows.contains("late@example.com"));
    assert!(
        rows.starts_with("<tr id=\"tail\""),
        "the next poll comes first: {rows}"
    );
}

#[tokio::test]
async fn an_application_is_edited_and_keeps_its_secret() {
    let (server, admin) = with_admin().await;
    let token = console_token(&server, &admin).await;
    let res = post(
        &server,
        "/admin/clients",
        &admin,
        &[
            ("csrf_token", &token),
            ("id", "shop"),
            ("name", "Shop"),
            ("kind", "confidential"),
            ("redirect_uris", "https://shop.example/cb"),
            ("grant", "authorization_code"),
            ("grant", "client_credentials"),
            ("scopes", "openid email"),
        ],
    )
    .await;
    assert_eq!(res.status(), 201);
    let secret = secret_of(&res.text().await.unwrap());
    let (status, form) = page(&server, "/admin/clients/shop/edit", &admin).await;
    assert_eq!(status, 200);
    assert!(form.contains("https://shop.example/cb"), "{form}");
    assert!(
        form.contains("value=\"client_credentials\" checked"),
        "{form}"
    );

    // A redirect URI the rules refuse: said on the form, nothing saved.
    let res = post(
        &server,
        "/admin/clients/shop",
        &admin,
        &[
            ("csrf_token", &token),
            ("name", "Shop 2"),
            ("redirect_uris", "javascript:alert(1)"),
            ("grant", "authorization_code"),
        ],
    )
    .await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("Not saved"));
    let res = post(
        &server,
        "/admin/clients/shop",
        &admin,
        &[
            ("csrf_token", &token),
            ("name", "Shop & Co"),
            (
                "redirect_uris",
                "https://shop.example/cb\r\nhttps://shop.example/cb2",
            ),
            ("grant", "authorization_code"),
            ("grant", "client_credentials"),
            ("scopes", "openid"),
            ("access_token_ttl_secs", "300"),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    let state = &server.running().unwrap().state;
    let c = state
        .oauth
        .stores()
        .clients
        .client("shop")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.name, "Shop & Co");
    assert_eq!(
        c.redirect_uris,
        ["https://shop.example/cb", "https://shop.example/cb2"]
    );
    assert_eq!(c.access_token_ttl_secs, 300);
    assert!(c.is_confidential());
    assert_eq!(
        token_status(&server, "shop", &secret).await,
        200,
        "the secret stays"
    );
}

#[tokio::test]
async fn initial_access_tokens_are_issued_once_and_revoked_in_the_console() {
    let (server, admin) = with_admin().await;
    let token = console_token(&server, &admin).await;
    let (status, html) = page(&server, "/admin/registration", &admin).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("id=\"registration-off\""),
        "registration is off by default"
    );
    let res = post(
        &server,
        "/admin/registration",
        &admin,
        &[("csrf_token", &token), ("hours", "99999"), ("uses", "1")],
    )
    .await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("Not issued"));
    let res = post(
        &server,
        "/admin/registration",
        &admin,
        &[
            ("csrf_token", &token),
            ("hours", "2"),
            ("uses", "3"),
            ("scopes", "openid"),
        ],
    )
    .await;
    assert_eq!(res.status(), 201);
    let html = res.text().await.unwrap();
    let secret = html
        .split("id=\"initial-token\" type=\"text\" readonly value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let state = &server.running().unwrap().state;
    let tokens = state.registration().initial_tokens().await.unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].uses_left, 3);
    assert_eq!(tokens[0].expires_at.0 - tokens[0].created_at.0, 7_200);
    let (_, list) = page(&server, "/admin/registration", &admin).await;
    assert!(list.contains(&tokens[0].id));
    assert!(!list.contains(&secret), "a token is shown once");
    let revoke = format!("/admin/registration/{}/revoke", tokens[0].id);
    let res = post(&server, &revoke, &admin, &[("csrf_token", &token)]).await;
    assert_eq!(res.status(), 303);
    assert!(
        state
            .registration()
            .initial_tokens()
            .await
            .unwrap()
            .is_empty()
    );
    state.auth.audit().flush().await;
    let (_, audit) = page(&server, "/admin/audit?kind=admin_action", &admin).await;
    assert!(audit.contains("create_registration_token"));
    assert!(audit.contains("revoke_registration_token"));
}

#[tokio::test]
async fn a_test_mail_is_queued_from_the_overview() {
    let (server, admin) = with_admin().await;
    let (_, html) = page(&server, "/admin", &admin).await;
    let token = form_token(&html);
    let res = post(
        &server,
        "/admin/mail/test",
        &admin,
        &[("csrf_token", &token), ("to", "ops@example.com")],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/admin?done=mail");
    let res = post(
        &server,
        "/admin/mail/test",
        &admin,
        &[("csrf_token", &token), ("to", "not an address")],
    )
    .await;
    assert_eq!(res.status(), 400);
    server.running().unwrap().state.auth.audit().flush().await;
    let (_, audit) = page(&server, "/admin/audit?kind=admin_action", &admin).await;
    assert!(audit.contains("email_test"), "{audit}");
}
