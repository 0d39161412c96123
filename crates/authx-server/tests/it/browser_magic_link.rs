//! Browser test of a magic-link sign-in: a headless Chromium asks for a link on the sign-in
//! page, the link arrives at a real SMTP server, and the same browser opens it, presses the
//! button and lands on its account page, signed in.
//!
//! Skips (printing `SKIPPED:`) when Chromium is not installed, unless
//! `AUTHX_TEST_REQUIRE_SERVICES=1`.

use authx_testkit::PASSWORD;
use authx_testkit::browser::Browser;
use authx_testkit::browser::fantoccini::Locator;
use authx_testkit::smtp::SmtpSink;

use crate::browser::{account_email, wait_for_path};
use crate::email_change::{Db, WAIT, link_in, server_on};

const EMAIL: &str = "ada@example.com";

#[tokio::test]
async fn ask_for_a_link_open_it_and_land_signed_in() {
    let Some(browser) = Browser::start().await.unwrap() else {
        return;
    };
    let sink = SmtpSink::start().await.unwrap();
    let on = |f: &mut authx_server::config::FileConfig| {
        if let Some(e) = f.email.as_mut() {
            e.magic_links = Some(true);
        }
    };
    let (server, _) = server_on(Db::Sqlite, "", &sink, on).await.unwrap();
    server.create_user(EMAIL, PASSWORD).await.unwrap();
    let client = &browser.client;

    client.goto(&format!("{}/login", server.url)).await.unwrap();
    let form = client.form(Locator::Css("form#magic-link")).await.unwrap();
    form.set_by_name("email", EMAIL).await.unwrap();
    client
        .find(Locator::Css("form#magic-link [type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(client, &server, "/magic-link").await.unwrap();
    let got = sink.wait_for(1, WAIT).await.unwrap();

    let link = link_in(&got[0], "/magic-link/sign-in?token=");
    client.goto(&format!("{}{link}", server.url)).await.unwrap();
    client
        .find(Locator::Css("form#magic-sign-in [type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(client, &server, "/account").await.unwrap();
    assert_eq!(account_email(client).await.unwrap(), EMAIL);

    browser.close().await.unwrap();
    server.stop().await;
}
