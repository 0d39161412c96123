//! Browser tests: a headless Chromium signs in, reads its account page and signs out through the
//! HTML pages of the real server, and a page of another origin tries to post to them.
//!
//! Every test skips (printing `SKIPPED:`) when Chromium is not installed, unless
//! `AUTHX_TEST_REQUIRE_SERVICES=1`, as in CI.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use authx_testkit::browser::Browser;
use authx_testkit::browser::fantoccini::{Client, Locator};
use authx_testkit::{PASSWORD, TestServer};
use serde_json::json;

const EMAIL: &str = "ada@example.com";
/// How long a navigation may take to land on the expected page.
const NAVIGATION_TIMEOUT: Duration = Duration::from_secs(15);

/// A server with one user, and a browser; `None` when the browser test is skipped.
async fn server_and_browser() -> anyhow::Result<Option<(TestServer, Browser)>> {
    let Some(browser) = Browser::start().await? else {
        return Ok(None);
    };
    let server = TestServer::start().await?;
    server.create_user(EMAIL, PASSWORD).await?;
    Ok(Some((server, browser)))
}

/// Fills and submits the sign-in form as a person would.
pub(crate) async fn fill_login(
    client: &Client,
    server: &TestServer,
    email: &str,
    password: &str,
) -> anyhow::Result<()> {
    client.goto(&format!("{}/login", server.url)).await?;
    let form = client.form(Locator::Css("form#login")).await?;
    form.set_by_name("email", email).await?;
    form.set_by_name("password", password).await?;
    client
        .find(Locator::Css("form#login [type=submit]"))
        .await?
        .click()
        .await?;
    Ok(())
}

/// Signs in through `/login` and waits for `/account`.
async fn sign_in(client: &Client, server: &TestServer) -> anyhow::Result<()> {
    fill_login(client, server, EMAIL, PASSWORD).await?;
    wait_for_path(client, server, "/account").await
}

/// Waits until the browser shows a fully loaded page of `server` at `path`.
pub(crate) async fn wait_for_path(
    client: &Client,
    server: &TestServer,
    path: &str,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + NAVIGATION_TIMEOUT;
    loop {
        let url = client.current_url().await?;
        let ready = client.execute("return document.readyState", vec![]).await?;
        if url.as_str().starts_with(&server.url) && url.path() == path && ready == "complete" {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let source = client.source().await.unwrap_or_default();
            bail!(
                "expected {path}, still at {url} ({ready}) after {NAVIGATION_TIMEOUT:?}:\n{source:.2000}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the page's `h1` reads `text`: for a form that posts to its own path, where the
/// path cannot tell the answer from the form (read afresh each time, never a stale element).
pub(crate) async fn wait_for_heading(client: &Client, text: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + NAVIGATION_TIMEOUT;
    loop {
        let heading = client
            .execute(
                "const h = document.querySelector('h1'); \
                 return document.readyState === 'complete' && h ? h.textContent : null",
                vec![],
            )
            .await?;
        if heading.as_str() == Some(text) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "expected the heading {text:?}, the page shows {heading} after {NAVIGATION_TIMEOUT:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The HTTP status of the page the browser shows (Navigation Timing `responseStatus`).
async fn page_status(client: &Client) -> anyhow::Result<u64> {
    client
        .execute(
            "return performance.getEntriesByType('navigation')[0].responseStatus",
            vec![],
        )
        .await?
        .as_u64()
        .context("no responseStatus for the current page")
}

/// The signed-in email the account page shows.
pub(crate) async fn account_email(client: &Client) -> anyhow::Result<String> {
    Ok(client.find(Locator::Css("#email")).await?.text().await?)
}

/// Serves `html` to every request from 127.0.0.1 on a port of its own, i.e. from an origin other
/// than the server's, until the test process exits. Returns the page's URL.
fn serve_elsewhere(html: String) -> anyhow::Result<String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let url = format!("http://{}/", listener.local_addr()?);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = answer(stream, &html);
        }
    });
    Ok(url)
}

fn answer(mut stream: TcpStream, html: &str) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{html}",
        html.len()
    )?;
    stream.flush()
}

/// A page that posts `fields` to `action` as soon as it loads.
fn auto_submitting_form(action: &str, fields: &[(&str, &str)]) -> String {
    let inputs: String = fields
        .iter()
        .map(|(name, value)| format!("<input type=\"hidden\" name=\"{name}\" value=\"{value}\">"))
        .collect();
    format!(
        "<!doctype html><html><head><title>elsewhere</title></head><body>\
         <form id=\"attack\" method=\"post\" action=\"{action}\">{inputs}</form>\
         <script>document.getElementById('attack').submit();</script></body></html>"
    )
}

#[tokio::test]
async fn sign_in_see_the_account_and_sign_out() {
    let Some((server, browser)) = server_and_browser().await.unwrap() else {
        return;
    };
    let client = &browser.client;

    // The sign-in form has the fields of the page contract.
    client.goto(&format!("{}/login", server.url)).await.unwrap();
    for selector in [
        "form#login input[name=email]",
        "form#login input[name=password][type=password]",
        "form#login input[name=csrf_token][type=hidden]",
        "form#login [type=submit]",
    ] {
        client.find(Locator::Css(selector)).await.unwrap();
    }

    sign_in(client, &server).await.unwrap();
    assert_eq!(account_email(client).await.unwrap(), EMAIL);
    let sessions = client
        .find_all(Locator::Css("#sessions tr.session"))
        .await
        .unwrap();
    assert_eq!(sessions.len(), 1, "one session after one sign-in");
    let current = client
        .find_all(Locator::Css("#sessions tr.session.current"))
        .await
        .unwrap();
    assert_eq!(current.len(), 1, "the only session is the current one");
    for selector in [
        "form#revoke-others",
        "form#password input[name=current_password]",
        "form#password input[name=new_password]",
    ] {
        client.find(Locator::Css(selector)).await.unwrap();
    }

    // The session cookie exists but page scripts cannot read it.
    let cookie = client.get_named_cookie("authx_session").await.unwrap();
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(
        cookie.same_site().map(|s| s.to_string()).as_deref(),
        Some("Lax")
    );
    let script_cookies = client
        .execute("return document.cookie", vec![])
        .await
        .unwrap();
    let script_cookies = script_cookies.as_str().unwrap();
    assert!(
        !script_cookies.contains("authx_session"),
        "document.cookie exposes the session: {script_cookies:?}"
    );

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("account.png");
    browser.save_screenshot(&shot).await.unwrap();
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");

    // Sign out through the confirmation form.
    client
        .goto(&format!("{}/logout", server.url))
        .await
        .unwrap();
    client
        .find(Locator::Css("form#logout [type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(client, &server, "/login").await.unwrap();
    assert!(
        client.get_named_cookie("authx_session").await.is_err(),
        "the session cookie survived sign-out"
    );

    // The account page now sends the browser to sign in.
    client
        .goto(&format!("{}/account", server.url))
        .await
        .unwrap();
    wait_for_path(client, &server, "/login").await.unwrap();
    client.find(Locator::Css("form#login")).await.unwrap();

    browser.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_password_shows_an_error_and_no_session() {
    let Some((server, browser)) = server_and_browser().await.unwrap() else {
        return;
    };
    let client = &browser.client;

    fill_login(client, &server, EMAIL, "not the password at all")
        .await
        .unwrap();
    wait_for_path(client, &server, "/login").await.unwrap();
    let error = client.find(Locator::Css(".error")).await.unwrap();
    assert!(!error.text().await.unwrap().is_empty());
    assert!(client.get_named_cookie("authx_session").await.is_err());

    browser.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn other_sessions_can_be_signed_out_from_the_account_page() {
    let Some((server, browser)) = server_and_browser().await.unwrap() else {
        return;
    };
    let client = &browser.client;
    // A second session of the same user, from another device.
    let other = server.sign_in(EMAIL, PASSWORD).await.unwrap();

    sign_in(client, &server).await.unwrap();
    let rows = client
        .find_all(Locator::Css("#sessions tr.session"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    // The sessions read the way people think: this browser first, named by browser, version
    // and system (the raw user agent on hover), times relative with the exact UTC on hover.
    assert!(
        rows[0]
            .attr("class")
            .await
            .unwrap()
            .unwrap_or_default()
            .contains("current")
    );
    let device = rows[0].find(Locator::Css("td.device")).await.unwrap();
    let label = device.text().await.unwrap();
    assert!(
        label.contains("Chrome") && label.contains("on Linux") && label.contains("(this browser)"),
        "{label}"
    );
    let raw = device.attr("title").await.unwrap().unwrap_or_default();
    assert!(raw.contains("Chrome/"), "{raw}");
    let other_device = rows[1].find(Locator::Css("td.device")).await.unwrap();
    assert_eq!(other_device.text().await.unwrap(), "Other device");
    assert_eq!(
        other_device.attr("title").await.unwrap().as_deref(),
        Some("authx-testkit")
    );
    let signed_in = rows[0].find(Locator::Css("time")).await.unwrap();
    assert_eq!(signed_in.text().await.unwrap(), "just now");
    let exact = signed_in.attr("title").await.unwrap().unwrap_or_default();
    assert!(exact.ends_with(" UTC") && exact.len() == 20, "{exact}");

    client
        .find(Locator::Css("form#revoke-others [type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The form posts from /account back to /account: the path cannot tell the answer from the
    // page the click left, the notice the answer carries can.
    client
        .wait()
        .for_element(Locator::Css("p.notice"))
        .await
        .unwrap();
    wait_for_path(client, &server, "/account").await.unwrap();
    let rows = client
        .find_all(Locator::Css("#sessions tr.session"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "only this browser's session is left");
    client
        .find(Locator::Css("#sessions tr.session.current"))
        .await
        .unwrap();
    let me = server.get("/api/v1/me", Some(&other)).await.unwrap();
    assert_eq!(me.status(), 401, "the other session still works");

    browser.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_sign_out_posted_from_another_origin_is_refused() {
    let Some((server, browser)) = server_and_browser().await.unwrap() else {
        return;
    };
    let client = &browser.client;
    sign_in(client, &server).await.unwrap();

    // Even with this session's own form token (as if it had leaked), a form that another origin
    // posts is refused: only the Origin check stands between it and a sign-out.
    client
        .goto(&format!("{}/logout", server.url))
        .await
        .unwrap();
    let token = client
        .find(Locator::Css("form#logout input[name=csrf_token]"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    let attacker = serve_elsewhere(auto_submitting_form(
        &format!("{}/logout", server.url),
        &[("csrf_token", &token)],
    ))
    .unwrap();
    assert_ne!(
        attacker.trim_end_matches('/'),
        server.url,
        "same origin as the server"
    );

    client.goto(&attacker).await.unwrap();
    wait_for_path(client, &server, "/logout").await.unwrap();
    assert_eq!(page_status(client).await.unwrap(), 403);
    client.find(Locator::Css(".error")).await.unwrap();

    // Still signed in.
    client
        .goto(&format!("{}/account", server.url))
        .await
        .unwrap();
    wait_for_path(client, &server, "/account").await.unwrap();
    assert_eq!(account_email(client).await.unwrap(), EMAIL);

    browser.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_sign_in_posted_from_another_origin_is_refused() {
    let Some((server, browser)) = server_and_browser().await.unwrap() else {
        return;
    };
    let client = &browser.client;
    let mallory = "mallory@example.com";
    server.create_user(mallory, PASSWORD).await.unwrap();
    sign_in(client, &server).await.unwrap();

    // Login CSRF: another origin tries to sign the browser in to the attacker's account.
    let attacker = serve_elsewhere(auto_submitting_form(
        &format!("{}/login", server.url),
        &[("email", mallory), ("password", PASSWORD)],
    ))
    .unwrap();
    client.goto(&attacker).await.unwrap();
    wait_for_path(client, &server, "/login").await.unwrap();
    assert_eq!(page_status(client).await.unwrap(), 403);
    client.find(Locator::Css(".error")).await.unwrap();

    // The browser is still signed in, as itself.
    client
        .goto(&format!("{}/account", server.url))
        .await
        .unwrap();
    wait_for_path(client, &server, "/account").await.unwrap();
    assert_eq!(account_email(client).await.unwrap(), EMAIL);
    let sessions = client
        .execute(
            "return document.querySelectorAll('#sessions tr.session').length",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(sessions, json!(1));

    browser.close().await.unwrap();
    server.stop().await;
}
