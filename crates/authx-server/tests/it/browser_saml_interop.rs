//! In headless Chromium, an application on another origin signs its user in through authx,
//! and authx through pysaml2 (`saml_interop`'s IdP): the application's authorization request,
//! authx's sign-in page, the SAML provider's button, pysaml2's own sign-in page, its
//! auto-submitting HTTP-POST form (cross-site, to the assertion consumer service), authx's
//! `finish` step, the consent page, and back to the application with a code, which it
//! exchanges.
//!
//! Three origins: authx on `127.0.0.1:A`, the application on `127.0.0.1:B`, pysaml2 on
//! `localhost:C`. Skips (printing `SKIPPED:`) without Chromium or the pysaml2 environment,
//! unless `AUTHX_TEST_REQUIRE_SERVICES=1`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use authx_core::oauth::client::GrantType;
use authx_testkit::TestServer;
use authx_testkit::browser::Browser;
use authx_testkit::browser::fantoccini::{Client, Locator};
use serde_json::Value;

use crate::browser_oidc::{jwt_claims, param, urlencode};
use crate::saml_interop::{
    DISPLAY_NAME, EMAIL, PASSWORD, PROVIDER, Pysaml2, USERNAME, clock_to_now, refusals, server_for,
};

const CLIENT_ID: &str = "interop-app";
/// RFC 7636 Appendix B: a verifier and its S256 challenge.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// How long a page may take to come (Python and xmlsec1 on a busy machine are slow).
const NAVIGATION_TIMEOUT: Duration = Duration::from_secs(60);

/// What the application learned from authx.
#[derive(Debug, Clone)]
struct Learned {
    state: String,
    id_token: Value,
    userinfo: Value,
}

/// The application: a confidential OAuth client of authx with its own web server. Its `/cb`
/// page exchanges the code (with its secret and the PKCE verifier), reads userinfo, and shows
/// the user's email address.
struct App {
    callback: String,
    learned: Arc<Mutex<Option<Learned>>>,
}

#[derive(Clone)]
struct AppState {
    authx: String,
    secret: String,
    callback: String,
    learned: Arc<Mutex<Option<Learned>>>,
}

impl App {
    async fn start(local: &TestServer) -> App {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let callback = format!("http://{}/cb", listener.local_addr().unwrap());
        let mut client = crate::oidc::client(CLIENT_ID, &[GrantType::AuthorizationCode], false);
        client.redirect_uris = vec![callback.clone()];
        client.scopes = vec!["openid".into(), "email".into()];
        client.resources = vec![];
        let (_, secret) = local
            .running()
            .unwrap()
            .state
            .oauth
            .register_client(client, true)
            .await
            .unwrap();
        let learned = Arc::new(Mutex::new(None));
        let state = AppState {
            authx: local.url.clone(),
            secret: secret.unwrap(),
            callback: callback.clone(),
            learned: Arc::clone(&learned),
        };
        let app = axum::Router::new()
            .route("/cb", axum::routing::get(callback_page))
            .with_state(state);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        App { callback, learned }
    }

    fn authorize_url(&self, local: &TestServer, state: &str, nonce: &str) -> String {
        format!(
            "{}/oauth2/authorize?response_type=code&client_id={CLIENT_ID}&redirect_uri={}\
             &scope={}&state={}&nonce={}&code_challenge={CHALLENGE}&code_challenge_method=S256",
            local.url,
            urlencode(&self.callback),
            urlencode("openid email"),
            urlencode(state),
            urlencode(nonce),
        )
    }
}

async fn callback_page(
    axum::extract::State(app): axum::extract::State<AppState>,
    uri: axum::http::Uri,
) -> axum::response::Html<String> {
    let url = format!("/cb?{}", uri.query().unwrap_or_default());
    let body = match redeem(&app, &url).await {
        Ok(learned) => {
            let email = learned.userinfo["email"].as_str().unwrap_or_default();
            let page = format!("<p>Signed in as <span id=user>{email}</span></p>");
            *app.learned.lock().unwrap() = Some(learned);
            page
        }
        Err(e) => format!("<p id=error>{e:#}</p>"),
    };
    axum::response::Html(format!(
        "<!doctype html><html><head><title>Application</title></head><body>{body}</body></html>"
    ))
}

/// The application's side of the code flow: the code for tokens, the access token for
/// userinfo.
async fn redeem(app: &AppState, url: &str) -> anyhow::Result<Learned> {
    if let Some(error) = param(url, "error") {
        bail!("authx answered {error}");
    }
    if param(url, "iss").as_deref() != Some(app.authx.as_str()) {
        bail!("no or another iss in {url}");
    }
    let code = param(url, "code").context("no code")?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let res = http
        .post(format!("{}/oauth2/token", app.authx))
        .basic_auth(CLIENT_ID, Some(&app.secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", app.callback.as_str()),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await?;
    if !res.status().is_success() {
        bail!("token endpoint: {} {}", res.status(), res.text().await?);
    }
    let tokens: Value = res.json().await?;
    let access = tokens["access_token"].as_str().context("no access token")?;
    let id_token = jwt_claims(tokens["id_token"].as_str().context("no ID token")?);
    let userinfo: Value = http
        .get(format!("{}/oauth2/userinfo", app.authx))
        .bearer_auth(access)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(Learned {
        state: param(url, "state").unwrap_or_default(),
        id_token,
        userinfo,
    })
}

/// Waits until the browser shows a fully loaded page whose URL satisfies `done`.
async fn wait_for(client: &Client, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + NAVIGATION_TIMEOUT;
    loop {
        let url = client.current_url().await.unwrap().to_string();
        let ready = client
            .execute("return document.readyState", vec![])
            .await
            .unwrap();
        if done(&url) && ready == "complete" {
            return url;
        }
        if tokio::time::Instant::now() >= deadline {
            let source = client.source().await.unwrap_or_default();
            panic!("expected {what}, still at {url} ({ready}):\n{source:.3000}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_application_signs_its_user_in_through_authx_and_pysaml2_in_chromium() {
    let test = "browser_saml_interop::an_application_signs_its_user_in_through_authx_and_pysaml2_in_chromium";
    let Some(browser) = Browser::start().await.unwrap() else {
        return;
    };
    let Some(mut idp) = Pysaml2::start(test, &[]).await else {
        return;
    };
    let local = server_for(&mut idp, |_| {}).await;
    let app = App::start(&local).await;
    let client = &browser.client;

    // The application sends the browser to authx, which asks it to sign in.
    let (state, nonce) = ("app-state/1", "n-pysaml2");
    client
        .goto(&app.authorize_url(&local, state, nonce))
        .await
        .unwrap();
    let login = format!("{}/login?", local.url);
    wait_for(client, "authx's sign-in page", |u| u.starts_with(&login)).await;
    let button = client
        .find(Locator::Css(&format!("a#federation-{PROVIDER}")))
        .await
        .unwrap();
    assert_eq!(button.text().await.unwrap(), DISPLAY_NAME);
    button.click().await.unwrap();

    // pysaml2's sign-in page, after it accepted authx's AuthnRequest.
    let sso = format!("{}/sso?", idp.base);
    wait_for(client, "pysaml2's sign-in page", |u| u.starts_with(&sso)).await;
    let sp = client.find(Locator::Css("#sp")).await.unwrap();
    assert_eq!(
        sp.text().await.unwrap(),
        format!("{}/federation/saml/{PROVIDER}/metadata", local.url)
    );
    let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&shots).unwrap();
    browser
        .save_screenshot(&shots.join("pysaml2-sign-in.png"))
        .await
        .unwrap();
    let form = client.form(Locator::Css("form#login")).await.unwrap();
    form.set_by_name("username", USERNAME).await.unwrap();
    form.set_by_name("password", PASSWORD).await.unwrap();
    clock_to_now(&local);
    client
        .find(Locator::Css("button#sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // pysaml2's page posts the response to the ACS by itself; authx parks it, finishes in a
    // same-site GET with the binding cookie, signs the user in and resumes the authorization
    // request: the consent page for the application.
    let authorize = format!("{}/oauth2/authorize?", local.url);
    wait_for(client, "the consent page", |u| u.starts_with(&authorize)).await;
    client
        .find(Locator::Css("form#consent #allow"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // Back at the application, which exchanged the code.
    let back = format!("{}?", app.callback);
    wait_for(client, "the application's page", |u| u.starts_with(&back)).await;
    let shown = match client.find(Locator::Css("#user")).await {
        Ok(e) => e.text().await.unwrap(),
        Err(_) => panic!("{}", client.source().await.unwrap_or_default()),
    };
    assert_eq!(shown, EMAIL);
    browser
        .save_screenshot(&shots.join("pysaml2-application.png"))
        .await
        .unwrap();
    let learned = app
        .learned
        .lock()
        .unwrap()
        .clone()
        .expect("nothing learned");
    assert_eq!(learned.state, state);
    assert_eq!(learned.userinfo["email"], EMAIL);
    assert_eq!(learned.id_token["iss"], local.url);
    assert_eq!(learned.id_token["aud"], CLIENT_ID);
    assert_eq!(learned.id_token["nonce"], nonce);
    assert_eq!(learned.id_token["sub"], learned.userinfo["sub"]);

    // The browser holds an authx session of that user (cookies of 127.0.0.1 are the same for
    // every port, so the application's page sees authx's cookie too).
    let cookies = client.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| matches!(c.name(), "authx_session" | "__Host-authx_session"))
        .unwrap_or_else(|| panic!("no authx session cookie in {cookies:?}"));
    assert_eq!(session.http_only(), Some(true));
    let me = local
        .get(
            "/api/v1/me",
            Some(&format!("{}={}", session.name(), session.value())),
        )
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["user"]["email"], EMAIL);
    assert_eq!(me["user"]["id"], learned.id_token["sub"]);
    let state = &local.running().unwrap().state;
    let user = authx_core::user::UserId(me["user"]["id"].as_str().unwrap().to_owned());
    let links = state.federation.user_links(&user).await.unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].issuer, format!("{}/metadata", idp.base));
    assert!(refusals(&local).await.is_empty(), "{}", idp.log());

    browser.close().await.unwrap();
    local.stop().await;
}
