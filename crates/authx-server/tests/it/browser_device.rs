//! Browser tests of the device flow: a device asks over HTTP, a headless Chromium signs in on
//! `/device`, enters or receives the code, and approves or denies; the device polls.
//!
//! Each test skips (printing `SKIPPED:`) when Chromium is not installed, unless
//! `AUTHX_TEST_REQUIRE_SERVICES=1`.

use std::time::Duration;

use anyhow::bail;
use authx_core::Timestamp;
use authx_core::oauth::client::{Client as OAuthClient, GrantType};
use authx_core::oauth::keys::SigningAlg;
use authx_testkit::browser::Browser;
use authx_testkit::browser::fantoccini::{Client, Locator};
use authx_testkit::{PASSWORD, TestServer};
use serde_json::Value;

const EMAIL: &str = "dev@example.com";
const NAVIGATION_TIMEOUT: Duration = Duration::from_secs(15);

async fn server_and_browser() -> anyhow::Result<Option<(TestServer, Browser)>> {
    let Some(browser) = Browser::start().await? else {
        return Ok(None);
    };
    let server = TestServer::start().await?;
    server.create_user(EMAIL, PASSWORD).await?;
    server
        .running()?
        .state
        .oauth
        .register_client(
            OAuthClient {
                id: "tv".into(),
                name: "Living Room TV".into(),
                secret_hash: None,
                token_endpoint_auth_method:
                    authx_core::oauth::client::TokenEndpointAuthMethod::None,
                jwks: None,
                jwks_uri: None,
                dpop_bound_access_tokens: false,
                redirect_uris: vec![],
                post_logout_redirect_uris: vec![],
                backchannel_logout_uri: None,
                grant_types: vec![GrantType::DeviceCode, GrantType::RefreshToken],
                scopes: vec!["openid".into(), "email".into()],
                resources: vec![],
                first_party: false,
                require_pushed_authorization_requests: false,
                require_acr: None,
                id_token_alg: SigningAlg::Rs256,
                access_token_ttl_secs: 900,
                refresh_token_ttl_secs: 86_400,
                refresh_idle_secs: 86_400,
                created_at: Timestamp(0),
            },
            false,
        )
        .await?;
    Ok(Some((server, browser)))
}

/// The device's request: the JSON of the device authorization endpoint.
async fn device_asks(server: &TestServer) -> Value {
    server
        .client
        .post(format!("{}/oauth2/device_authorization", server.url))
        .form(&[("client_id", "tv"), ("scope", "openid email")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn device_polls(server: &TestServer, device_code: &str) -> (u16, Value) {
    device_polls_after(server, device_code, 5_000).await
}

/// A poll `wait_ms` milliseconds (on the server's clock) after the previous request.
async fn device_polls_after(server: &TestServer, device_code: &str, wait_ms: i64) -> (u16, Value) {
    server.clock.advance_millis(wait_ms);
    let res = server
        .client
        .post(format!("{}/oauth2/token", server.url))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
            ("client_id", "tv"),
        ])
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn wait_for_path(client: &Client, server: &TestServer, path: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + NAVIGATION_TIMEOUT;
    loop {
        let url = client.current_url().await?;
        let ready = client.execute("return document.readyState", vec![]).await?;
        if url.as_str().starts_with(&server.url) && url.path() == path && ready == "complete" {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let source = client.source().await.unwrap_or_default();
            bail!("expected {path}, still at {url}:\n{source:.2000}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until an element appears on the current page.
async fn wait_for(client: &Client, css: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + NAVIGATION_TIMEOUT;
    loop {
        if client.find(Locator::Css(css)).await.is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let source = client.source().await.unwrap_or_default();
            bail!("no {css} after {NAVIGATION_TIMEOUT:?}:\n{source:.2000}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// On the sign-in page the verification page sent the browser to: sign in.
async fn sign_in_here(client: &Client, server: &TestServer) -> anyhow::Result<()> {
    wait_for_path(client, server, "/login").await?;
    let form = client.form(Locator::Css("form#login")).await?;
    form.set_by_name("email", EMAIL).await?;
    form.set_by_name("password", PASSWORD).await?;
    client
        .find(Locator::Css("form#login [type=submit]"))
        .await?
        .click()
        .await?;
    wait_for_path(client, server, "/device").await
}

#[tokio::test]
async fn a_device_is_approved_in_the_browser_and_gets_tokens() {
    let Some((server, browser)) = server_and_browser().await.unwrap() else {
        return;
    };
    let client = &browser.client;
    let asked = device_asks(&server).await;
    let user_code = asked["user_code"].as_str().unwrap();
    let device_code = asked["device_code"].as_str().unwrap();

    // The person opens the verification URI, signs in, and types the code (lower case).
    client
        .goto(asked["verification_uri"].as_str().unwrap())
        .await
        .unwrap();
    sign_in_here(client, &server).await.unwrap();
    client
        .find(Locator::Css("form#device-entry input#user_code"))
        .await
        .unwrap()
        .send_keys(&user_code.to_lowercase())
        .await
        .unwrap();
    client
        .find(Locator::Css("form#device-entry [type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(client, "form#device-decision").await.unwrap();
    let name = client
        .find(Locator::Css("#client-name"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(name, "Living Room TV");
    let warning = client
        .find(Locator::Css("#device-warning"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(warning.contains("access to your account"), "{warning}");
    let shown = client
        .find(Locator::Css("#device-code"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(shown, user_code);
    let (status, v) = device_polls(&server, device_code).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("authorization_pending"))
    );

    client
        .find(Locator::Css("button#approve"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(client, "#device-done").await.unwrap();

    let (status, tokens) = device_polls(&server, device_code).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["access_token"].is_string());
    assert!(tokens["refresh_token"].is_string());
    let (status, v) = device_polls(&server, device_code).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")));

    browser.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_device_denied_in_the_browser_gets_access_denied() {
    let Some((server, browser)) = server_and_browser().await.unwrap() else {
        return;
    };
    let client = &browser.client;
    let asked = device_asks(&server).await;
    let device_code = asked["device_code"].as_str().unwrap();

    // Arriving from the complete URI: sign in, then the request is shown, not decided.
    client
        .goto(asked["verification_uri_complete"].as_str().unwrap())
        .await
        .unwrap();
    sign_in_here(client, &server).await.unwrap();
    wait_for(client, "form#device-decision").await.unwrap();
    let (status, v) = device_polls(&server, device_code).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("authorization_pending"))
    );

    client
        .find(Locator::Css("button#deny"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(client, "#device-denied").await.unwrap();
    let (status, v) = device_polls(&server, device_code).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("access_denied")));

    browser.close().await.unwrap();
    server.stop().await;
}

/// Issue 14 item 6: a device that polled early once (a retry) and then follows RFC 8628 §3.5
/// (wait the interval, 5 s more after each `slow_down`) gets its tokens once the person
/// approves in the browser, without a second `slow_down`.
#[tokio::test]
async fn a_device_that_polled_early_once_gets_its_tokens_after_approval_in_the_browser() {
    let Some((server, browser)) = server_and_browser().await.unwrap() else {
        return;
    };
    let client = &browser.client;
    let asked = device_asks(&server).await;
    let device_code = asked["device_code"].as_str().unwrap();
    let mut interval_ms = asked["interval"].as_i64().unwrap() * 1000;
    // Requests never land on whole seconds.
    server.clock.advance_millis(370);
    let (status, v) = device_polls_after(&server, device_code, interval_ms).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("authorization_pending"))
    );
    let (status, v) = device_polls_after(&server, device_code, 900).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("slow_down")));
    interval_ms += 5_000;

    client
        .goto(asked["verification_uri_complete"].as_str().unwrap())
        .await
        .unwrap();
    sign_in_here(client, &server).await.unwrap();
    wait_for(client, "form#device-decision").await.unwrap();
    // Still waiting: the device polls at its new interval, arriving a little early.
    let (status, v) = device_polls_after(&server, device_code, interval_ms - 200).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("authorization_pending"))
    );
    client
        .find(Locator::Css("button#approve"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(client, "#device-done").await.unwrap();

    let (status, tokens) = device_polls_after(&server, device_code, interval_ms - 150).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["access_token"].is_string());

    browser.close().await.unwrap();
    server.stop().await;
}
