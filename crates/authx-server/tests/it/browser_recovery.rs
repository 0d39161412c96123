//! Browser test of a password reset: a headless Chromium follows "Forgot your password?", the
//! link arrives at a real SMTP server, the browser sets a new password from it and signs in
//! with it, and the sessions that stood on the old password are gone.
//!
//! Skips (printing `SKIPPED:`) when Chromium is not installed, unless
//! `AUTHX_TEST_REQUIRE_SERVICES=1`.

use std::time::Duration;

use authx_testkit::PASSWORD;
use authx_testkit::browser::Browser;
use authx_testkit::browser::fantoccini::Locator;
use authx_testkit::smtp::SmtpSink;

use crate::browser::{account_email, fill_login, wait_for_heading, wait_for_path};
use crate::recovery::{reset_path, server_with};

const EMAIL: &str = "ada@example.com";
const NEW_PASSWORD: &str = "a brand new passphrase";

#[tokio::test]
async fn forgot_mail_reset_and_sign_in_with_the_new_password() {
    let Some(browser) = Browser::start().await.unwrap() else {
        return;
    };
    let sink = SmtpSink::start().await.unwrap();
    let server = server_with(&sink).await;
    server.create_user(EMAIL, PASSWORD).await.unwrap();
    let old_session = server.sign_in(EMAIL, PASSWORD).await.unwrap();
    let client = &browser.client;

    client.goto(&format!("{}/login", server.url)).await.unwrap();
    client
        .find(Locator::Css("a#forgot-link"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(client, &server, "/forgot").await.unwrap();
    let form = client.form(Locator::Css("form#forgot")).await.unwrap();
    form.set_by_name("email", EMAIL).await.unwrap();
    client
        .find(Locator::Css("form#forgot [type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(client, &server, "/forgot").await.unwrap();
    let got = sink.wait_for(1, Duration::from_secs(20)).await.unwrap();

    client
        .goto(&format!("{}{}", server.url, reset_path(&got[0])))
        .await
        .unwrap();
    let form = client.form(Locator::Css("form#reset")).await.unwrap();
    form.set_by_name("password", NEW_PASSWORD).await.unwrap();
    client
        .find(Locator::Css("form#reset [type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The answer comes back on the form's own path: its heading tells it from the form.
    wait_for_heading(client, "Password changed").await.unwrap();
    wait_for_path(client, &server, "/reset").await.unwrap();

    fill_login(client, &server, EMAIL, NEW_PASSWORD)
        .await
        .unwrap();
    wait_for_path(client, &server, "/account").await.unwrap();
    assert_eq!(account_email(client).await.unwrap(), EMAIL);
    let me = server.get("/api/v1/me", Some(&old_session)).await.unwrap();
    assert_eq!(me.status(), 401, "the old session ended");

    browser.close().await.unwrap();
    server.stop().await;
}
