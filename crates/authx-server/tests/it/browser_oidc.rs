//! The authorization code flow in headless Chromium for a client that is not first-party:
//! authorize → sign-in page → consent page → back to the client's own page with a code (or
//! `access_denied`) → token exchange with the PKCE verifier.
//!
//! Every test skips (printing `SKIPPED:`) when Chromium is not installed, unless
//! `AUTHX_TEST_REQUIRE_SERVICES=1`, as in CI.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use authx_core::oauth::client::{Client as OAuthClient, GrantType};
use authx_core::oauth::keys::SigningAlg;
use authx_testkit::browser::Browser;
use authx_testkit::browser::fantoccini::{Client, Locator};
use authx_testkit::{PASSWORD, TestServer};
use base64::Engine as _;
use serde_json::Value;

pub(crate) const EMAIL: &str = "ada@example.com";
pub(crate) const CLIENT_ID: &str = "partner";
const CLIENT_NAME: &str = "Partner app";
/// RFC 7636 Appendix B: a verifier and its S256 challenge.
pub(crate) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// How long a navigation may take to land on the expected page.
const NAVIGATION_TIMEOUT: Duration = Duration::from_secs(15);

/// The client's own web server: a page at `/cb` on a port of 127.0.0.1, recording the request
/// target of every request it answers.
pub(crate) struct Callback {
    /// `http://127.0.0.1:PORT/cb`, the registered redirect URI.
    pub(crate) url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Callback {
    fn start() -> anyhow::Result<Callback> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let url = format!("http://{}/cb", listener.local_addr()?);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        // Serves until the test process exits.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Ok(target) = answer(stream) {
                    record.lock().unwrap().push(target);
                }
            }
        });
        Ok(Callback { url, seen })
    }

    /// `http://127.0.0.1:PORT/bye`, the registered post-logout redirect URI.
    fn bye_url(&self) -> String {
        format!("{}/bye", self.url.trim_end_matches("/cb"))
    }

    /// Whether a request with this exact target (path and query) reached the client.
    fn saw_target(&self, target: &str) -> bool {
        self.seen.lock().unwrap().iter().any(|t| t == target)
    }

    /// Whether a request for `/cb` with these query parameters reached the client.
    fn saw(&self, query: &str) -> bool {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .any(|t| t == &format!("/cb?{query}"))
    }
}

/// Reads one request and answers it with a small page; returns the request target.
fn answer(mut stream: TcpStream) -> std::io::Result<String> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    let html = "<!doctype html><html><head><title>client</title></head><body>back at the client</body></html>";
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{html}",
        html.len()
    )?;
    stream.flush()?;
    Ok(request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned())
}

pub(crate) struct Setup {
    pub(crate) server: TestServer,
    pub(crate) browser: Browser,
    pub(crate) callback: Callback,
    pub(crate) secret: String,
}

/// A browser, the client's callback page, and a server with one user and the confidential,
/// not first-party client `partner` redirecting to that page; `None` when the test is skipped.
pub(crate) async fn setup() -> anyhow::Result<Option<Setup>> {
    let Some(browser) = Browser::start().await? else {
        return Ok(None);
    };
    let callback = Callback::start()?;
    let server = TestServer::start().await?;
    server.create_user(EMAIL, PASSWORD).await?;
    let client = OAuthClient {
        id: CLIENT_ID.into(),
        name: CLIENT_NAME.into(),
        secret_hash: None,
        token_endpoint_auth_method: authx_core::oauth::client::TokenEndpointAuthMethod::None,
        jwks: None,
        jwks_uri: None,
        dpop_bound_access_tokens: false,
        redirect_uris: vec![callback.url.clone()],
        post_logout_redirect_uris: vec![callback.bye_url()],
        backchannel_logout_uri: None,
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        scopes: vec!["openid".into(), "email".into()],
        resources: vec![],
        first_party: false,
        require_pushed_authorization_requests: false,
        require_acr: None,
        id_token_alg: SigningAlg::Rs256,
        access_token_ttl_secs: 900,
        refresh_token_ttl_secs: 30 * 86_400,
        refresh_idle_secs: 7 * 86_400,
        created_at: authx_core::Timestamp(0),
    };
    let (_, secret) = server
        .running()?
        .state
        .oauth
        .register_client(client, true)
        .await?;
    let Some(secret) = secret else {
        bail!("a confidential client got no secret");
    };
    Ok(Some(Setup {
        server,
        browser,
        callback,
        secret,
    }))
}

pub(crate) fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The authorization request the client sends the browser to.
pub(crate) fn authorize_url(s: &Setup, state: &str, nonce: &str) -> String {
    format!(
        "{}/oauth2/authorize?response_type=code&client_id={CLIENT_ID}&redirect_uri={}\
         &scope={}&state={}&nonce={}&code_challenge={CHALLENGE}&code_challenge_method=S256",
        s.server.url,
        urlencode(&s.callback.url),
        urlencode("openid email"),
        urlencode(state),
        urlencode(nonce),
    )
}

/// Waits until the browser shows a fully loaded page whose URL satisfies `done`.
pub(crate) async fn wait_for(
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
            bail!(
                "expected {what}, still at {url} ({ready}) after {NAVIGATION_TIMEOUT:?}:\n{source:.2000}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn wait_for_server_path(s: &Setup, path: &str) -> anyhow::Result<String> {
    let page = format!("{}{path}", s.server.url);
    wait_for(&s.browser.client, path, move |u| {
        u == page || u.starts_with(&format!("{page}?"))
    })
    .await
}

pub(crate) async fn wait_for_callback(s: &Setup) -> anyhow::Result<String> {
    let callback = s.callback.url.clone();
    wait_for(&s.browser.client, &callback, |u| {
        u.starts_with(&format!("{callback}?"))
    })
    .await
}

/// The query string of a URL (no fragment is expected).
fn query(url: &str) -> &str {
    url.split_once('?').map_or("", |(_, q)| q)
}

pub(crate) fn param(url: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query(url).as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Starts the flow in the browser, signs in on the page the server sends it to, and waits for
/// the consent page, whose contents it checks.
async fn reach_consent(s: &Setup, state: &str, nonce: &str) -> anyhow::Result<()> {
    let client = &s.browser.client;
    client.goto(&authorize_url(s, state, nonce)).await?;
    let login = wait_for_server_path(s, "/login").await?;
    let return_to = param(&login, "return_to").unwrap_or_default();
    assert!(
        return_to.starts_with("/oauth2/authorize?"),
        "the sign-in page does not lead back to the request: {login}"
    );

    let form = client.form(Locator::Css("form#login")).await?;
    form.set_by_name("email", EMAIL).await?;
    form.set_by_name("password", PASSWORD).await?;
    client
        .find(Locator::Css("form#login [type=submit]"))
        .await?
        .click()
        .await?;

    wait_for_server_path(s, "/oauth2/authorize").await?;
    client.find(Locator::Css("form#consent")).await?;
    let name = client
        .find(Locator::Css("#client-name"))
        .await?
        .text()
        .await?;
    assert_eq!(name, CLIENT_NAME);
    let scopes = client.find(Locator::Css("#scopes")).await?.text().await?;
    for scope in ["openid", "email"] {
        assert!(scopes.contains(scope), "{scope} not shown: {scopes:?}");
    }
    for selector in [
        "form#consent #allow",
        "form#consent #deny",
        "form#consent input[name=csrf_token][type=hidden]",
    ] {
        client.find(Locator::Css(selector)).await?;
    }
    Ok(())
}

/// The client's token request for `code`, with its secret and the PKCE verifier.
pub(crate) async fn exchange(s: &Setup, code: &str) -> reqwest::Response {
    s.server
        .client
        .post(format!("{}/oauth2/token", s.server.url))
        .basic_auth(CLIENT_ID, Some(&s.secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", s.callback.url.as_str()),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap()
}

/// The claims of a JWT, unverified.
pub(crate) fn jwt_claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn authorize_sign_in_consent_allow_then_exchange_the_code() {
    let Some(s) = setup().await.unwrap() else {
        return;
    };
    let client = &s.browser.client;
    let state = "xyz state/1";
    let nonce = "n-0S6_WzA2Mj";

    reach_consent(&s, state, nonce).await.unwrap();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&shots).unwrap();
    s.browser
        .save_screenshot(&shots.join("consent.png"))
        .await
        .unwrap();

    client
        .find(Locator::Css("form#consent #allow"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let back = wait_for_callback(&s).await.unwrap();
    assert_eq!(param(&back, "state").as_deref(), Some(state));
    assert_eq!(
        param(&back, "iss").as_deref(),
        Some(s.server.url.as_str()),
        "RFC 9207 iss"
    );
    assert_eq!(param(&back, "error"), None);
    let code = param(&back, "code").expect("no code in the redirect");
    assert!(
        s.callback.saw(query(&back)),
        "the client's page was not requested"
    );

    // The client exchanges the code with its secret and the PKCE verifier.
    let res = exchange(&s, &code).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let tokens: Value = res.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(
        tokens["access_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    assert!(
        tokens["refresh_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    let id = jwt_claims(tokens["id_token"].as_str().expect("no ID token"));
    assert_eq!(id["iss"], s.server.url);
    assert_eq!(id["aud"], CLIENT_ID);
    assert_eq!(id["nonce"], nonce);

    let info: Value = s
        .server
        .client
        .get(format!("{}/oauth2/userinfo", s.server.url))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["email"], EMAIL);
    assert_eq!(info["sub"], id["sub"]);

    // The consent is remembered: the next request goes straight back to the client.
    client
        .goto(&authorize_url(&s, "again", "n-2"))
        .await
        .unwrap();
    let again = wait_for_callback(&s).await.unwrap();
    assert_eq!(param(&again, "state").as_deref(), Some("again"));
    assert!(param(&again, "code").is_some(), "{again}");

    let Setup {
        server, browser, ..
    } = s;
    browser.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn authorize_sign_in_consent_deny_sends_access_denied() {
    let Some(s) = setup().await.unwrap() else {
        return;
    };
    let client = &s.browser.client;
    let state = "deny-me";

    reach_consent(&s, state, "n-1").await.unwrap();
    client
        .find(Locator::Css("form#consent #deny"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let back = wait_for_callback(&s).await.unwrap();
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&back, "state").as_deref(), Some(state));
    assert_eq!(param(&back, "iss").as_deref(), Some(s.server.url.as_str()));
    assert_eq!(param(&back, "code"), None, "a code despite the denial");
    assert!(s.callback.saw(query(&back)));

    // Nothing was remembered: asking again shows the consent page again.
    client
        .goto(&authorize_url(&s, "second", "n-2"))
        .await
        .unwrap();
    wait_for_server_path(&s, "/oauth2/authorize").await.unwrap();
    client.find(Locator::Css("form#consent")).await.unwrap();

    let Setup {
        server, browser, ..
    } = s;
    browser.close().await.unwrap();
    server.stop().await;
}

/// The client exchanges a code for tokens; returns the ID token.
async fn exchange_for_id_token(s: &Setup, code: &str) -> String {
    let res = s
        .server
        .client
        .post(format!("{}/oauth2/token", s.server.url))
        .basic_auth(CLIENT_ID, Some(&s.secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", s.callback.url.as_str()),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let tokens: Value = res.json().await.unwrap();
    tokens["id_token"].as_str().expect("no ID token").to_owned()
}

/// The RP-initiated logout request the client sends the browser to.
fn logout_url(s: &Setup, state: &str, id_token_hint: Option<&str>) -> String {
    let mut url = format!(
        "{}/oauth2/logout?client_id={CLIENT_ID}&post_logout_redirect_uri={}&state={}",
        s.server.url,
        urlencode(&s.callback.bye_url()),
        urlencode(state),
    );
    if let Some(hint) = id_token_hint {
        url.push_str(&format!("&id_token_hint={}", urlencode(hint)));
    }
    url
}

async fn wait_for_bye(s: &Setup) -> anyhow::Result<String> {
    let bye = s.callback.bye_url();
    wait_for(&s.browser.client, &bye, |u| {
        u.starts_with(&format!("{bye}?"))
    })
    .await
}

/// After logout the browser has no session: a new authorization request asks it to sign in.
async fn assert_signed_out(s: &Setup, state: &str) {
    s.browser
        .client
        .goto(&authorize_url(s, state, "n-out"))
        .await
        .unwrap();
    wait_for_server_path(s, "/login").await.unwrap();
}

/// Issue 14 item 5: RP-initiated logout in Chromium, with the application on another origin (the
/// callback's port). Without an `id_token_hint` the user confirms on a page whose POST ends in a
/// redirect to the application, which the page's CSP `form-action` must allow (Chromium applies
/// it to the redirect); with a hint of the current session the browser goes straight back.
/// `state` comes back both times.
#[tokio::test]
async fn rp_initiated_logout_returns_to_the_application_on_another_origin() {
    let Some(s) = setup().await.unwrap() else {
        return;
    };
    let client = &s.browser.client;

    // Signed in and consented; the application got its code.
    reach_consent(&s, "login-1", "n-1").await.unwrap();
    client
        .find(Locator::Css("form#consent #allow"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_callback(&s).await.unwrap();

    // 1. No hint: a confirmation page, then back to the application with `state`.
    let state = "bye one/1";
    client.goto(&logout_url(&s, state, None)).await.unwrap();
    wait_for_server_path(&s, "/oauth2/logout").await.unwrap();
    client
        .find(Locator::Css("form#logout [type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let back = wait_for_bye(&s).await.unwrap();
    assert_eq!(param(&back, "state").as_deref(), Some(state));
    assert!(
        s.callback
            .saw_target(&format!("/bye?state={}", urlencode(state))),
        "the application's page was not requested"
    );
    assert_signed_out(&s, "after-1").await;

    // Sign in again; the consent is remembered, so the browser goes straight to the client.
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
    let back = wait_for_callback(&s).await.unwrap();
    assert_eq!(param(&back, "state").as_deref(), Some("after-1"));
    let code = param(&back, "code").expect("no code");
    let id_token = exchange_for_id_token(&s, &code).await;

    // 2. The ID token of this session as the hint: no confirmation, straight back.
    let state = "bye two/2";
    client
        .goto(&logout_url(&s, state, Some(&id_token)))
        .await
        .unwrap();
    let back = wait_for_bye(&s).await.unwrap();
    assert_eq!(param(&back, "state").as_deref(), Some(state));
    assert!(
        s.callback
            .saw_target(&format!("/bye?state={}", urlencode(state)))
    );
    assert_signed_out(&s, "after-2").await;

    let Setup {
        server, browser, ..
    } = s;
    browser.close().await.unwrap();
    server.stop().await;
}
