//! The administration console in Chromium, with htmx active as users get it: an administrator
//! registers an application and rotates its secret, disables a user and filters the audit trail;
//! no page of it breaks its Content-Security-Policy; axe-core finds no serious or critical
//! accessibility violation on any page. `console_screenshots` (ignored, run on demand) renders
//! the screenshots of `docs/screenshots/`.
//!
//! Every test skips (printing `SKIPPED:`) when Chromium is missing, and the accessibility test
//! also when axe-core is (`npm ci` in `interop/node`), unless `AUTHX_TEST_REQUIRE_SERVICES=1`,
//! as in CI.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use authx_testkit::browser::fantoccini::{Client, Locator};
use authx_testkit::browser::{Browser, REQUIRE_SERVICES_ENV};
use authx_testkit::{PASSWORD, TestServer};
use serde_json::{Value, json};

use crate::browser::{fill_login, wait_for_heading, wait_for_path};
use crate::token_status;

const ADMIN: &str = "root@example.com";
/// How long a page may take to show what a test waits for.
const WAIT: Duration = Duration::from_secs(15);

/// A server with an administrator, and a browser; `None` when the browser test is skipped.
async fn server_and_browser() -> anyhow::Result<Option<(TestServer, Browser)>> {
    let Some(browser) = Browser::start().await? else {
        return Ok(None);
    };
    let server = TestServer::start().await?;
    server
        .running()?
        .state
        .auth
        .create_user(ADMIN, PASSWORD, true)
        .await?;
    Ok(Some((server, browser)))
}

/// Signs the administrator in through `/login`, then opens the console's overview.
async fn open_console(client: &Client, server: &TestServer) -> anyhow::Result<()> {
    fill_login(client, server, ADMIN, PASSWORD).await?;
    wait_for_path(client, server, "/account").await?;
    client.goto(&format!("{}/admin", server.url)).await?;
    wait_for_heading(client, "Overview").await
}

/// Polls `script` (a function body) until it returns something other than `null` or `false`.
async fn wait_for_value(client: &Client, script: &str, what: &str) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let value = client.execute(script, vec![]).await?;
        if !value.is_null() && value != json!(false) {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            let source = client.source().await.unwrap_or_default();
            bail!("waited {WAIT:?} for {what}; the page is:\n{source:.3000}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Clicks the element of `css`.
async fn click(client: &Client, css: &str) -> anyhow::Result<()> {
    client
        .find(Locator::Css(css))
        .await
        .with_context(|| format!("finding {css}"))?
        .click()
        .await
        .with_context(|| format!("clicking {css}"))?;
    Ok(())
}

/// Replaces the text of the field of `css` with `text`, as typed.
async fn type_into(client: &Client, css: &str, text: &str) -> anyhow::Result<()> {
    let field = client.find(Locator::Css(css)).await?;
    field.clear().await?;
    field.send_keys(text).await?;
    Ok(())
}

/// The client secret shown on the page, once the page shows one other than `not`.
async fn shown_secret(client: &Client, not: &str) -> anyhow::Result<String> {
    let script = format!(
        "const s = document.querySelector('#client-secret'); \
         return s && s.value !== {} ? s.value : null",
        json!(not)
    );
    let value = wait_for_value(client, &script, "a client secret").await?;
    value.as_str().map(str::to_owned).context("no secret")
}

/// The Content-Security-Policy violations Chromium reported since the last call.
async fn csp_violations(browser: &Browser) -> anyhow::Result<Vec<String>> {
    Ok(browser
        .console_log()
        .await?
        .iter()
        .filter_map(|entry| entry["message"].as_str())
        .filter(|message| message.contains("Content Security Policy"))
        .map(str::to_owned)
        .collect())
}

/// The rows of the audit table: (event, outcome, detail).
async fn audit_rows(client: &Client) -> anyhow::Result<Vec<(String, String, String)>> {
    let rows = client
        .execute(
            "return Array.from(document.querySelectorAll('#event-rows tr.event'))\
             .map(tr => [tr.cells[1].textContent, tr.cells[2].textContent, tr.cells[6].textContent])",
            vec![],
        )
        .await?;
    Ok(serde_json::from_value(rows)?)
}

/// Registers a confidential client_credentials application through `/admin/clients/new`,
/// starting from any console page, and returns the secret the answer shows once.
async fn register_service(client: &Client, id: &str, name: &str) -> anyhow::Result<String> {
    click(client, "nav a[href='/admin/clients']").await?;
    wait_for_heading(client, "Applications").await?;
    click(client, "a[href='/admin/clients/new']").await?;
    wait_for_heading(client, "Register an application").await?;
    type_into(client, "#client_id", id).await?;
    type_into(client, "#client_name", name).await?;
    click(client, "input[name=kind][value=confidential]").await?;
    // The form offers the code flow and refresh tokens; a service wants neither.
    for grant in ["authorization_code", "refresh_token"] {
        let css = format!("input[name=grant][value={grant}]");
        if client.find(Locator::Css(&css)).await?.is_selected().await? {
            click(client, &css).await?;
        }
    }
    click(client, "input[name=grant][value=client_credentials]").await?;
    type_into(client, "#scopes", "").await?;
    click(client, "form#new-client button[type=submit]").await?;
    wait_for_heading(client, name).await?;
    shown_secret(client, "").await
}

#[tokio::test]
async fn an_administrator_manages_applications_users_and_the_trail_in_chromium() {
    let Some((server, browser)) = server_and_browser().await.unwrap() else {
        return;
    };
    let client = &browser.client;
    open_console(client, &server).await.unwrap();
    let boosted = client
        .execute("return typeof htmx === 'object'", vec![])
        .await
        .unwrap();
    assert_eq!(boosted, json!(true), "htmx runs on the console");

    // An application, registered in the console, gets tokens with the secret shown once.
    let first = register_service(client, "billing", "Billing service")
        .await
        .unwrap();
    assert_eq!(token_status(&server, "billing", &first).await, 200);
    assert_eq!(
        client
            .find(Locator::Css("#client-id"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "billing"
    );

    // Rotation: the page shows the new secret; the old one is refused at once.
    click(client, "form#rotate-secret button[type=submit]")
        .await
        .unwrap();
    let second = shown_secret(client, &first).await.unwrap();
    let notice = client
        .find(Locator::Css("main .notice"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(notice.contains("rotated"), "{notice}");
    assert_eq!(token_status(&server, "billing", &first).await, 401);
    assert_eq!(token_status(&server, "billing", &second).await, 200);

    // A registration the rules refuse shows why on the form, though the answer is a 400.
    click(client, "nav a[href='/admin/clients']").await.unwrap();
    wait_for_heading(client, "Applications").await.unwrap();
    click(client, "a[href='/admin/clients/new']").await.unwrap();
    wait_for_heading(client, "Register an application")
        .await
        .unwrap();
    type_into(client, "#client_id", "billing").await.unwrap();
    type_into(client, "#client_name", "Billing again")
        .await
        .unwrap();
    click(client, "form#new-client button[type=submit]")
        .await
        .unwrap();
    let error = wait_for_value(
        client,
        "const e = document.querySelector('main .error'); return e ? e.textContent : null",
        "the refusal",
    )
    .await
    .unwrap();
    assert!(
        error.as_str().unwrap().starts_with("Not registered"),
        "{error}"
    );

    // A user signed in elsewhere, then once with a wrong password.
    server
        .create_user("grace@example.com", PASSWORD)
        .await
        .unwrap();
    let grace = server.sign_in("grace@example.com", PASSWORD).await.unwrap();
    assert_eq!(
        server
            .get("/api/v1/me", Some(&grace))
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(
        server
            .sign_in("grace@example.com", "not her password")
            .await
            .is_err()
    );

    // The administrator finds her through the search form and disables her.
    click(client, "nav a[href='/admin/users']").await.unwrap();
    wait_for_heading(client, "Users").await.unwrap();
    type_into(client, "#q", "grace").await.unwrap();
    click(client, "form#user-search button[type=submit]")
        .await
        .unwrap();
    let found = wait_for_value(
        client,
        "const rows = Array.from(document.querySelectorAll('#users tr.user')); \
         return location.search === '?q=grace' && rows.length > 0 \
           ? rows.map(r => r.cells[0].textContent) : null",
        "the search results",
    )
    .await
    .unwrap();
    assert_eq!(found, json!(["grace@example.com"]));
    click(client, "#users tr.user a").await.unwrap();
    wait_for_heading(client, "grace@example.com").await.unwrap();
    click(client, "form#disable-user button[type=submit]")
        .await
        .unwrap();
    let status = wait_for_value(
        client,
        "const s = document.querySelector('#user-status'); \
         return s && s.textContent !== 'active' ? s.textContent : null",
        "the status to change",
    )
    .await
    .unwrap();
    assert_eq!(status, json!("disabled"));
    assert_eq!(
        server
            .get("/api/v1/me", Some(&grace))
            .await
            .unwrap()
            .status(),
        401,
        "her session ended with the click"
    );

    // The trail, filtered by event, shows the console's actions and nothing else.
    server.running().unwrap().state.auth.audit().flush().await;
    click(client, "nav a[href='/admin/audit']").await.unwrap();
    wait_for_heading(client, "Audit trail").await.unwrap();
    type_into(client, "#f_kind", "admin_action").await.unwrap();
    click(client, "form#audit-filter button[type=submit]")
        .await
        .unwrap();
    wait_for_value(
        client,
        "return location.search.includes('kind=admin_action') \
           && document.querySelector('#f_kind').value === 'admin_action'",
        "the filtered trail",
    )
    .await
    .unwrap();
    let rows = audit_rows(client).await.unwrap();
    assert!(
        rows.iter()
            .all(|(kind, outcome, _)| kind == "admin_action" && outcome == "success"),
        "{rows:?}"
    );
    for action in ["register_client", "rotate_client_secret", "disable_user"] {
        let row = rows
            .iter()
            .find(|(_, _, detail)| detail.contains(&format!("\"action\":\"{action}\"")))
            .unwrap_or_else(|| panic!("no {action} in {rows:?}"));
        assert!(row.2.contains("\"via\":\"console\""), "{row:?}");
    }

    // Filtered by outcome: only failures, her wrong password among them.
    type_into(client, "#f_kind", "").await.unwrap();
    client
        .find(Locator::Css("#f_outcome"))
        .await
        .unwrap()
        .select_by_value("failure")
        .await
        .unwrap();
    click(client, "form#audit-filter button[type=submit]")
        .await
        .unwrap();
    wait_for_value(
        client,
        "return location.search.includes('outcome=failure') \
           && !location.search.includes('kind=admin_action')",
        "the trail of failures",
    )
    .await
    .unwrap();
    let rows = audit_rows(client).await.unwrap();
    assert!(!rows.is_empty());
    assert!(
        rows.iter().all(|(_, outcome, _)| outcome == "failure"),
        "{rows:?}"
    );
    assert!(
        rows.iter().any(|(kind, _, _)| kind == "sign_in_failed"),
        "{rows:?}"
    );

    // A new failure appears on the page by itself: htmx polls the tail under the policy.
    assert!(server.sign_in(ADMIN, "not the password").await.is_err());
    server.running().unwrap().state.auth.audit().flush().await;
    let script = format!(
        "return document.querySelectorAll('#event-rows tr.event').length > {}",
        rows.len()
    );
    wait_for_value(client, &script, "the new event in the tail")
        .await
        .unwrap();
    let now_shown = audit_rows(client).await.unwrap();
    assert_eq!(now_shown.len(), rows.len() + 1, "{now_shown:?}");
    assert_eq!(
        (now_shown[0].0.as_str(), now_shown[0].1.as_str()),
        ("sign_in_failed", "failure")
    );

    // No page above broke the policy; and the check sees a violation when there is one.
    let violations = csp_violations(&browser).await.unwrap();
    assert!(violations.is_empty(), "{violations:#?}");
    client
        .execute(
            "document.querySelector('main').setAttribute('style', 'color: red')",
            vec![],
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if !csp_violations(&browser).await.unwrap().is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "an inline style went unreported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser.close().await.unwrap();
}

/// Whether the page the browser shows came by a full load of `path` (its navigation entry
/// names it) rather than by an htmx swap, and runs without htmx.
async fn loaded_in_full(client: &Client, path: &str) -> anyhow::Result<bool> {
    let script = format!(
        "const n = performance.getEntriesByType('navigation')[0]; \
         return new URL(n.name).pathname === {} && typeof htmx === 'undefined'",
        json!(path)
    );
    Ok(client.execute(&script, vec![]).await? == json!(true))
}

#[tokio::test]
async fn pages_outside_the_console_load_in_full() {
    let Some((server, browser)) = server_and_browser().await.unwrap() else {
        return;
    };
    let client = &browser.client;
    open_console(client, &server).await.unwrap();

    // The account page, with its passkey script, is not swapped into the console.
    click(client, "nav a[href='/account']").await.unwrap();
    wait_for_path(client, &server, "/account").await.unwrap();
    assert!(loaded_in_full(client, "/account").await.unwrap());

    // Signed out in the meantime: a click in the console loads the sign-in page in full, and
    // signing in there leads back.
    client.goto(&format!("{}/admin", server.url)).await.unwrap();
    wait_for_heading(client, "Overview").await.unwrap();
    client.delete_all_cookies().await.unwrap();
    click(client, "nav a[href='/admin/users']").await.unwrap();
    wait_for_path(client, &server, "/login").await.unwrap();
    wait_for_value(
        client,
        "return document.querySelector('form#login') !== null",
        "the sign-in form",
    )
    .await
    .unwrap();
    assert!(loaded_in_full(client, "/login").await.unwrap());
    let form = client.form(Locator::Css("form#login")).await.unwrap();
    form.set_by_name("email", ADMIN).await.unwrap();
    form.set_by_name("password", PASSWORD).await.unwrap();
    click(client, "form#login [type=submit]").await.unwrap();
    wait_for_path(client, &server, "/admin/users")
        .await
        .unwrap();
    wait_for_heading(client, "Users").await.unwrap();

    let violations = csp_violations(&browser).await.unwrap();
    assert!(violations.is_empty(), "{violations:#?}");
    browser.close().await.unwrap();
}

/// axe-core's browser bundle from `interop/node`, or `None` (after `SKIPPED:`) when the
/// packages are not installed.
fn axe_source() -> Option<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/node");
    let path = dir.join("node_modules/axe-core/axe.min.js");
    if let Ok(source) = std::fs::read_to_string(&path) {
        return Some(source);
    }
    eprintln!(
        "SKIPPED: accessibility test: run `npm ci` in {}",
        dir.display()
    );
    let required = std::env::var(REQUIRE_SERVICES_ENV).is_ok_and(|v| v == "1");
    assert!(
        !required,
        "axe-core is missing (npm ci in interop/node), and {REQUIRE_SERVICES_ENV}=1"
    );
    None
}

/// Runs axe-core over the page the browser shows and returns its serious and critical
/// violations, one line each: rule, impact, the elements at fault. Serious and critical results
/// axe could not decide are printed.
async fn axe_violations(client: &Client, axe: &str) -> anyhow::Result<Vec<String>> {
    // WebDriver scripts are not subject to the page's Content-Security-Policy.
    client.execute(axe, vec![]).await?;
    let found = client
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             const grave = list => list \
               .filter(v => v.impact === 'serious' || v.impact === 'critical') \
               .map(v => `${v.id} (${v.impact}): ${v.help}; at ${v.nodes.map(n => n.target.join(' ')).join(', ')}`); \
             axe.run(document) \
               .then(r => done({ violations: grave(r.violations), incomplete: grave(r.incomplete) })) \
               .catch(e => done({ error: String(e) }));",
            vec![],
        )
        .await?;
    if let Some(error) = found.get("error") {
        bail!("axe-core failed: {error}");
    }
    // What axe could not decide (contrast over a scrolled table, say) is for a person to look at.
    let incomplete: Vec<String> = serde_json::from_value(found["incomplete"].clone())?;
    for item in incomplete {
        eprintln!("axe-core, to review: {item}");
    }
    Ok(serde_json::from_value(found["violations"].clone())?)
}

/// Seeds a console worth looking at: users, a signed-in user, failed sign-ins, an API.
/// Returns the id of the user with a session.
async fn seed(server: &TestServer) -> anyhow::Result<String> {
    for email in [
        "ada.lovelace@example.com",
        "grace.hopper@example.com",
        "alan.turing@example.com",
        "katherine.johnson@example.com",
    ] {
        server.create_user(email, PASSWORD).await?;
    }
    server.sign_in("grace.hopper@example.com", PASSWORD).await?;
    for _ in 0..2 {
        let _ = server
            .sign_in("alan.turing@example.com", "a wrong password")
            .await;
    }
    let admin = server.sign_in(ADMIN, PASSWORD).await?;
    let token = server.csrf_token(&admin).await?;
    let res = server
        .client
        .post(format!("{}/admin/apis", server.url))
        .header("cookie", &admin)
        .header("origin", &server.url)
        .form(&[
            ("csrf_token", token.as_str()),
            ("id", "https://api.example.com/invoices"),
            ("scopes", "invoices:read invoices:write"),
        ])
        .send()
        .await?;
    if !res.status().is_success() && !res.status().is_redirection() {
        bail!("registering an API answered {}", res.status());
    }
    let grace = server
        .running()?
        .state
        .auth
        .stores()
        .accounts
        .user_by_email("grace.hopper@example.com")
        .await?
        .context("no such user")?;
    Ok(grace.id.0)
}

#[tokio::test]
async fn every_console_page_passes_axe_without_serious_violations() {
    let Some(axe) = axe_source() else {
        return;
    };
    let Some((server, browser)) = server_and_browser().await.unwrap() else {
        return;
    };
    let client = &browser.client;
    let grace = seed(&server).await.unwrap();
    open_console(client, &server).await.unwrap();

    let mut report = Vec::new();
    // The answer to a registration, with its secret, is a page of its own.
    register_service(client, "demo-billing", "Demo billing service")
        .await
        .unwrap();
    for violation in axe_violations(client, &axe).await.unwrap() {
        report.push(format!("registered application: {violation}"));
    }
    server.running().unwrap().state.auth.audit().flush().await;
    let pages = [
        ("/admin", "Overview"),
        ("/admin/users", "Users"),
        (&format!("/admin/users/{grace}"), "grace.hopper@example.com"),
        ("/admin/clients", "Applications"),
        ("/admin/clients/new", "Register an application"),
        ("/admin/clients/demo-billing", "Demo billing service"),
        (
            "/admin/clients/demo-billing/edit",
            "Edit Demo billing service",
        ),
        ("/admin/apis", "APIs"),
        ("/admin/registration", "Client registration"),
        ("/admin/keys", "Signing keys"),
        ("/admin/federation", "Federation"),
        ("/admin/audit", "Audit trail"),
    ];
    for (path, heading) in pages {
        client.goto(&format!("{}{path}", server.url)).await.unwrap();
        wait_for_heading(client, heading).await.unwrap();
        for violation in axe_violations(client, &axe).await.unwrap() {
            report.push(format!("{path}: {violation}"));
        }
    }
    assert!(report.is_empty(), "axe-core found:\n{}", report.join("\n"));
    let violations = csp_violations(&browser).await.unwrap();
    assert!(violations.is_empty(), "{violations:#?}");

    // The check finds a real fault: a field without a label.
    client
        .execute(
            "const i = document.createElement('input'); i.type = 'text'; \
             document.querySelector('main').appendChild(i);",
            vec![],
        )
        .await
        .unwrap();
    let found = axe_violations(client, &axe).await.unwrap();
    assert!(
        found.iter().any(|v| v.starts_with("label ")),
        "an unlabelled field went unnoticed: {found:?}"
    );
    browser.close().await.unwrap();
}

/// Largest screenshot committed, in bytes.
const SCREENSHOT_BUDGET: usize = 150 * 1024;

/// Renders `docs/screenshots/console-*.png` from a seeded server:
/// `cargo test -p authx-server --test it browser_console::console_screenshots -- --ignored`.
#[tokio::test]
#[ignore = "writes docs/screenshots/; run on demand"]
async fn console_screenshots() {
    let Some((server, browser)) = server_and_browser().await.unwrap() else {
        return;
    };
    let client = &browser.client;
    let grace = seed(&server).await.unwrap();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    client.set_window_size(1280, 800).await.unwrap();
    open_console(client, &server).await.unwrap();
    register_service(client, "demo-billing", "Demo billing service")
        .await
        .unwrap();

    let mut shots = vec![("console-client-registered.png", None)];
    let user_page = format!("/admin/users/{grace}");
    shots.extend([
        ("console-overview.png", Some(("/admin", "Overview"))),
        ("console-users.png", Some(("/admin/users", "Users"))),
        (
            "console-user.png",
            Some((user_page.as_str(), "grace.hopper@example.com")),
        ),
        (
            "console-clients.png",
            Some(("/admin/clients", "Applications")),
        ),
        ("console-audit.png", Some(("/admin/audit", "Audit trail"))),
    ]);
    for (name, page) in shots {
        if let Some((path, heading)) = page {
            server.running().unwrap().state.auth.audit().flush().await;
            client.goto(&format!("{}{path}", server.url)).await.unwrap();
            wait_for_heading(client, heading).await.unwrap();
        }
        save(&browser, &dir.join(name)).await;
    }
    client.set_window_size(390, 844).await.unwrap();
    client
        .goto(&format!("{}/admin/users", server.url))
        .await
        .unwrap();
    wait_for_heading(client, "Users").await.unwrap();
    save(&browser, &dir.join("console-users-phone.png")).await;
    browser.close().await.unwrap();
}

/// Saves a screenshot and checks it fits the budget.
async fn save(browser: &Browser, path: &std::path::Path) {
    browser.save_screenshot(path).await.unwrap();
    let size = std::fs::metadata(path).unwrap().len();
    assert!(
        size <= SCREENSHOT_BUDGET as u64,
        "{} is {size} bytes",
        path.display()
    );
    eprintln!("wrote {} ({size} bytes)", path.display());
}
