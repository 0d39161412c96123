//! Federation in headless Chromium: the local sign-in page's provider button leads to a second
//! authx instance (the upstream provider), whose own sign-in page the user fills in, and the
//! browser comes back signed in to the local account page.
//!
//! The upstream is addressed as `localhost` and the local server as `127.0.0.1`: cookies do
//! not distinguish ports, so two hosts keep the two servers' cookies apart in one browser.
//!
//! Skips (printing `SKIPPED:`) when Chromium is not installed, unless
//! `AUTHX_TEST_REQUIRE_SERVICES=1`.

use std::time::Duration;

use anyhow::bail;
use authx_testkit::browser::Browser;
use authx_testkit::browser::fantoccini::{Client, Locator};
use authx_testkit::{PASSWORD, TestServer};

use crate::federation::{PROVIDER, linked_account, local_server, register_rp};

const EMAIL: &str = "grace@corp.example";
const NAVIGATION_TIMEOUT: Duration = Duration::from_secs(15);

async fn wait_for(
    client: &Client,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + NAVIGATION_TIMEOUT;
    loop {
        let url = client.current_url().await?.to_string();
        let ready = client.execute("return document.readyState", vec![]).await?;
        if done(&url) && ready == "complete" {
            return Ok(url);
        }
        if tokio::time::Instant::now() >= deadline {
            let source = client.source().await.unwrap_or_default();
            bail!("expected {what}, still at {url} ({ready}):\n{source:.2000}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sign_in_with_the_company_provider_in_a_browser() {
    let Some(browser) = Browser::start().await.unwrap() else {
        return;
    };
    let upstream = TestServer::start_with(|f| {
        f.issuer = f
            .issuer
            .as_ref()
            .map(|i| i.replace("127.0.0.1", "localhost"));
    })
    .await
    .unwrap();
    let upstream_user = upstream.create_user(EMAIL, PASSWORD).await.unwrap();
    let upstream_issuer = upstream.url.replace("127.0.0.1", "localhost");
    let secret = authx_core::secret::b64url(&authx_core::secret::random_bytes::<32>());
    let local = local_server(&upstream_issuer, &secret, true).await;
    register_rp(&upstream, &local, &secret).await;
    // authx upstreams never verify emails, so only an identity already linked to a local
    // account signs in through one (a stranger's address creates nothing: it::federation).
    linked_account(&local, &upstream_issuer, &upstream_user.id.0, EMAIL).await;

    let client = &browser.client;
    client.goto(&format!("{}/login", local.url)).await.unwrap();
    client
        .find(Locator::Css(&format!("a#federation-{PROVIDER}")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let login_prefix = format!("{upstream_issuer}/login");
    wait_for(client, "the upstream sign-in page", |u| {
        u.starts_with(&login_prefix)
    })
    .await
    .unwrap();
    let form = client.form(Locator::Css("form#login")).await.unwrap();
    form.set_by_name("email", EMAIL).await.unwrap();
    form.set_by_name("password", PASSWORD).await.unwrap();
    client
        .find(Locator::Css("form#login [type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    let account = format!("{}/account", local.url);
    wait_for(client, "the local account page", |u| u == account)
        .await
        .unwrap();
    let shown = client
        .find(Locator::Css("#email"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(shown, EMAIL);
    let links = client
        .find(Locator::Css("table#links"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(links.contains("Corp SSO"), "{links}");

    browser.close().await.unwrap();
    local.stop().await;
    upstream.stop().await;
}
