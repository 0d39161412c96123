//! Two-step verification in headless Chromium, through an application on another origin:
//! authorize → password → the code of an authenticator app → consent → back at the
//! application, whose ID token says `amr` `pwd otp mfa` and `acr` `urn:authx:acr:mfa`; and the
//! step-up of a password-only session when the application asks for `acr_values`.
//!
//! Every test skips (printing `SKIPPED:`) when Chromium is not installed, unless
//! `AUTHX_TEST_REQUIRE_SERVICES=1`, as in CI.

use authx_core::clock::Clock as _;
use authx_core::mfa::totp::{Totp, TotpSecret};
use authx_testkit::browser::fantoccini::{Client, Locator};
use serde_json::Value;

use crate::browser_oidc::{
    EMAIL, Setup, authorize_url, exchange, jwt_claims, param, setup, urlencode, wait_for_callback,
    wait_for_server_path,
};

/// Enrols an authenticator app for the test user (the account page's enrolment is tested in
/// `mfa`); returns its secret.
async fn enrol(s: &Setup) -> TotpSecret {
    s.server.enrol_totp(EMAIL).await.unwrap()
}

/// Types `code` into the second-factor form the browser shows and submits it.
async fn type_code(client: &Client, code: &str) {
    let form = client
        .wait()
        .for_element(Locator::Css("form#second-factor"))
        .await
        .unwrap();
    let _ = form;
    client
        .find(Locator::Css("form#second-factor #code"))
        .await
        .unwrap()
        .send_keys(code)
        .await
        .unwrap();
    client
        .find(Locator::Css("form#second-factor [type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Signs in on the sign-in page the browser shows.
async fn password(client: &Client) {
    let form = client.form(Locator::Css("form#login")).await.unwrap();
    form.set_by_name("email", EMAIL).await.unwrap();
    form.set_by_name("password", authx_testkit::PASSWORD)
        .await
        .unwrap();
    client
        .find(Locator::Css("form#login [type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Allows the consent page, follows the redirect to the application and exchanges the code;
/// returns the ID token's claims.
async fn consent_and_exchange(s: &Setup) -> Value {
    let client = &s.browser.client;
    client
        .wait()
        .for_element(Locator::Css("form#consent #allow"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let back = wait_for_callback(s).await.unwrap();
    let code = param(&back, "code").expect("a code");
    let res = exchange(s, &code).await;
    assert_eq!(res.status(), 200);
    let tokens: Value = res.json().await.unwrap();
    jwt_claims(tokens["id_token"].as_str().unwrap())
}

#[tokio::test]
async fn sign_in_with_a_code_lands_at_the_application_with_mfa_in_the_id_token() {
    let Some(s) = setup().await.unwrap() else {
        return;
    };
    let secret = enrol(&s).await;
    let client = &s.browser.client;
    client.goto(&authorize_url(&s, "st", "n-1")).await.unwrap();
    wait_for_server_path(&s, "/login").await.unwrap();
    password(client).await;
    // A wrong code first: the page says so and asks again.
    type_code(client, "000000").await;
    let error = client
        .wait()
        .for_element(Locator::Css("p.error"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(error.contains("not valid"), "{error}");
    let code = Totp::new(&secret).code_at(s.server.clock.now());
    type_code(client, &code).await;
    let claims = consent_and_exchange(&s).await;
    assert_eq!(claims["amr"], serde_json::json!(["pwd", "otp", "mfa"]));
    assert_eq!(claims["acr"], "urn:authx:acr:mfa");
    assert_eq!(claims["nonce"], "n-1");
    s.browser.close().await.unwrap();
}

#[tokio::test]
async fn acr_values_step_a_password_session_up_and_back_to_the_application() {
    let Some(s) = setup().await.unwrap() else {
        return;
    };
    let client = &s.browser.client;
    // Signed in with the password alone, before any factor existed.
    client
        .goto(&format!("{}/login", s.server.url))
        .await
        .unwrap();
    password(client).await;
    wait_for_server_path(&s, "/account").await.unwrap();
    let secret = enrol(&s).await;

    let url = format!(
        "{}&acr_values={}",
        authorize_url(&s, "st2", "n-2"),
        urlencode("urn:authx:acr:mfa")
    );
    client.goto(&url).await.unwrap();
    let step_up = wait_for_server_path(&s, "/login/step-up").await.unwrap();
    assert!(step_up.contains("return_to="), "{step_up}");
    let code = Totp::new(&secret).code_at(s.server.clock.now());
    type_code(client, &code).await;
    let claims = consent_and_exchange(&s).await;
    assert_eq!(claims["acr"], "urn:authx:acr:mfa");
    assert_eq!(claims["amr"], serde_json::json!(["pwd", "otp", "mfa"]));
    s.browser.close().await.unwrap();
}
