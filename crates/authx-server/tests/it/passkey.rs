//! Passkeys end to end: a headless Chromium with a WebAuthn virtual authenticator (CTAP2,
//! discoverable credentials, user verification) registers a passkey from `/account`, signs in
//! with the password and the passkey, signs in with the passkey alone, and removes it behind a
//! recent sign-in. Negative paths through the same real server: a replayed ceremony, a
//! ceremony without its form token, and a removal after the re-authentication window.
//!
//! WebAuthn refuses an IP address as relying-party id, so the server's issuer is
//! `http://localhost:PORT` (Chromium resolves `localhost` only).
//!
//! Every test skips (printing `SKIPPED:`) when Chromium is not installed, unless
//! `AUTHX_TEST_REQUIRE_SERVICES=1`.

use std::time::Duration;

use anyhow::bail;
use authx_testkit::browser::Browser;
use authx_testkit::browser::fantoccini::{Client, Locator};
use authx_testkit::{PASSWORD, TestServer};
use serde_json::{Value, json};

const EMAIL: &str = "pia@example.com";
const TIMEOUT: Duration = Duration::from_secs(15);

/// A server whose issuer is `http://localhost:PORT`, and the base URL the browser uses.
async fn localhost_server() -> anyhow::Result<(TestServer, String)> {
    let server = TestServer::start_with(|f| {
        let ip = f.issuer.clone().unwrap_or_default();
        // The test client's helpers still speak to 127.0.0.1: trust that origin too.
        f.trusted_origins = Some(vec![ip.clone()]);
        f.issuer = Some(ip.replace("127.0.0.1", "localhost"));
    })
    .await?;
    let base = server.url.replace("127.0.0.1", "localhost");
    server.create_user(EMAIL, PASSWORD).await?;
    Ok((server, base))
}

/// Waits until the browser shows a loaded page at `path` (any query).
async fn wait_for(client: &Client, path: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let url = client.current_url().await?;
        let ready = client.execute("return document.readyState", vec![]).await?;
        if url.path() == path && ready == "complete" {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let source = client.source().await.unwrap_or_default();
            bail!("expected {path}, still at {url} ({ready}):\n{source:.3000}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the element at `css` is displayed.
async fn wait_for_visible(
    client: &Client,
    css: &str,
) -> anyhow::Result<authx_testkit::browser::fantoccini::elements::Element> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Ok(e) = client.find(Locator::Css(css)).await {
            if e.is_displayed().await? {
                return Ok(e);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            let source = client.source().await.unwrap_or_default();
            bail!("{css} not shown:\n{source:.3000}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn text(client: &Client, css: &str) -> anyhow::Result<String> {
    Ok(client.find(Locator::Css(css)).await?.text().await?)
}

async fn password_sign_in(client: &Client, base: &str) -> anyhow::Result<()> {
    client.goto(&format!("{base}/login")).await?;
    let form = client.form(Locator::Css("form#login")).await?;
    form.set_by_name("email", EMAIL).await?;
    form.set_by_name("password", PASSWORD).await?;
    client
        .find(Locator::Css("form#login [type=submit]"))
        .await?
        .click()
        .await?;
    Ok(())
}

/// The current session as `/api/v1/sessions` shows it, fetched by the page.
async fn current_session(client: &Client) -> anyhow::Result<Value> {
    let sessions = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/api/v1/sessions', {credentials: 'same-origin'})
               .then(r => r.json()).then(done, e => done(String(e)));",
            vec![],
        )
        .await?;
    let list = sessions["sessions"]
        .as_array()
        .or_else(|| sessions.as_array())
        .cloned()
        .unwrap_or_default();
    list.into_iter()
        .find(|s| s["current"] == true)
        .ok_or_else(|| anyhow::anyhow!("no current session in {sessions}"))
}

async fn sign_out(client: &Client, base: &str) -> anyhow::Result<()> {
    client.goto(&format!("{base}/logout")).await?;
    client
        .find(Locator::Css("form#logout [type=submit]"))
        .await?
        .click()
        .await?;
    wait_for(client, "/login").await
}

/// Runs a passwordless ceremony in the page with its one answer posted `times` times at
/// once; returns the statuses and bodies of the finishes.
async fn passwordless_in_page(client: &Client, times: u32) -> anyhow::Result<Value> {
    Ok(client
        .execute_async(
            r#"const [times, done] = [arguments[0], arguments[arguments.length - 1]];
            const b64 = s => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')
                + '==='.slice((s.length + 3) % 4)), c => c.charCodeAt(0));
            const enc = b => btoa(String.fromCharCode(...new Uint8Array(b)))
                .replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
            const csrf = document.querySelector('form#login input[name=csrf_token]').value;
            const post = (url, body) => fetch(url, {method: 'POST', credentials: 'same-origin',
                headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)})
                .then(async r => ({status: r.status, body: await r.json()}));
            (async () => {
              const begun = (await post('/login/passkey/begin', {csrf_token: csrf})).body;
              const pk = begun.options.publicKey;
              pk.challenge = b64(pk.challenge);
              pk.allowCredentials = [];
              const c = await navigator.credentials.get({publicKey: pk});
              const credential = {id: c.id, rawId: enc(c.rawId), type: c.type, response: {
                authenticatorData: enc(c.response.authenticatorData),
                clientDataJSON: enc(c.response.clientDataJSON),
                signature: enc(c.response.signature),
                userHandle: c.response.userHandle ? enc(c.response.userHandle) : null}};
              // All at once, while the pre-session's form token is still good for each.
              return await Promise.all(Array.from({length: times}, () =>
                post('/login/passkey/finish', {csrf_token: csrf, ceremony: begun.ceremony,
                  credential})));
            })().then(done, e => done(String(e)));"#,
            vec![json!(times)],
        )
        .await?)
}

#[tokio::test]
async fn passkey_registration_second_factor_passwordless_and_removal() {
    let Some(browser) = Browser::start().await.unwrap() else {
        return;
    };
    let (server, base) = localhost_server().await.unwrap();
    let client = &browser.client;
    let authenticator = browser.add_virtual_authenticator().await.unwrap();

    // Register a passkey from the account page, right after signing in.
    password_sign_in(client, &base).await.unwrap();
    wait_for(client, "/account").await.unwrap();
    let form = client.form(Locator::Css("form#add-passkey")).await.unwrap();
    form.set_by_name("name", "Work laptop").await.unwrap();
    client
        .find(Locator::Css("form#add-passkey [type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The account's first factor: recovery codes are shown once, then on to the account.
    let codes = wait_for_visible(client, "#passkey-codes").await.unwrap();
    assert_eq!(codes.find_all(Locator::Css("li")).await.unwrap().len(), 10);
    client
        .find(Locator::Css("#passkey-codes-continue"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(client, "/account").await.unwrap();
    assert_eq!(
        text(client, "tr.factor .factor-name").await.unwrap(),
        "Work laptop"
    );
    assert_eq!(
        text(client, "tr.factor .factor-kind").await.unwrap(),
        "Passkey"
    );
    let held = browser
        .authenticator_credentials(&authenticator)
        .await
        .unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["isResidentCredential"], true);
    assert_eq!(held[0]["rpId"], "localhost");

    // Password, then the passkey at the second step.
    sign_out(client, &base).await.unwrap();
    password_sign_in(client, &base).await.unwrap();
    wait_for_visible(client, "#passkey-second-factor")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(client, "/account").await.unwrap();
    assert_eq!(
        text(client, "#signed-in-with").await.unwrap(),
        "This session signed in with password and a passkey."
    );
    let s = current_session(client).await.unwrap();
    assert_eq!(s["amr"], json!(["pwd", "pop", "user", "mfa"]), "{s}");
    assert_eq!(s["acr"], "urn:authx:acr:phishing-resistant");

    // The passkey alone, from the sign-in page's button.
    sign_out(client, &base).await.unwrap();
    client.goto(&format!("{base}/login")).await.unwrap();
    client
        .find(Locator::Css("#passkey-signin"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(client, "/account").await.unwrap();
    assert_eq!(
        text(client, "#signed-in-with").await.unwrap(),
        "This session signed in with a passkey."
    );
    let s = current_session(client).await.unwrap();
    assert_eq!(s["amr"], json!(["pop", "user", "mfa"]), "{s}");
    assert_eq!(s["acr"], "urn:authx:acr:phishing-resistant");

    // A replayed ceremony: of three posts of one answer, one signs in and the others find
    // the ceremony spent.
    sign_out(client, &base).await.unwrap();
    client.goto(&format!("{base}/login")).await.unwrap();
    let finishes = passwordless_in_page(client, 3).await.unwrap();
    let finishes = finishes.as_array().cloned().unwrap_or_default();
    assert_eq!(finishes.len(), 3, "{finishes:?}");
    let ok = finishes.iter().filter(|f| f["status"] == 200).count();
    let spent = finishes
        .iter()
        .filter(|f| f["status"] == 400 && f["body"]["error"] == "ceremony_expired")
        .count();
    assert_eq!((ok, spent), (1, 2), "{finishes:?}");

    // Removal long after the sign-in needs the password.
    client.goto(&format!("{base}/account")).await.unwrap();
    wait_for(client, "/account").await.unwrap();
    server
        .clock
        .advance(authx_core::auth::REAUTH_WINDOW_SECS + 1);
    client
        .find(Locator::Css("form.remove-factor [type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let source = client.source().await.unwrap();
        if source.contains("enter your current password") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "removal without a recent sign-in was not refused: {source:.3000}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.goto(&format!("{base}/account")).await.unwrap();
    assert_eq!(
        text(client, "tr.factor .factor-kind").await.unwrap(),
        "Passkey"
    );
    let form = client
        .form(Locator::Css("form.remove-factor"))
        .await
        .unwrap();
    form.set_by_name("current_password", PASSWORD)
        .await
        .unwrap();
    client
        .find(Locator::Css("form.remove-factor [type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // Back on the account page, with two-step verification off again.
    wait_for_visible(client, "#mfa-off").await.unwrap();
    wait_for(client, "/account").await.unwrap();
    assert!(client.find(Locator::Css("tr.factor")).await.is_err());

    browser.close().await.unwrap();
    server.stop().await;
}

/// Signs in `email` with the password and adds a passkey named `name` from the account page
/// (going past the recovery codes when they are shown), then signs out.
async fn register_passkey(client: &Client, base: &str, email: &str, name: &str) {
    client.goto(&format!("{base}/login")).await.unwrap();
    let form = client.form(Locator::Css("form#login")).await.unwrap();
    form.set_by_name("email", email).await.unwrap();
    form.set_by_name("password", PASSWORD).await.unwrap();
    client
        .find(Locator::Css("form#login [type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_visible(client, "form#add-passkey").await.unwrap();
    let form = client.form(Locator::Css("form#add-passkey")).await.unwrap();
    form.set_by_name("name", name).await.unwrap();
    client
        .find(Locator::Css("form#add-passkey [type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_visible(client, "#passkey-codes-continue")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_visible(client, "tr.factor").await.unwrap();
    sign_out(client, base).await.unwrap();
}

#[tokio::test]
async fn another_users_passkey_is_refused_at_the_second_step() {
    let Some(browser) = Browser::start().await.unwrap() else {
        return;
    };
    let (server, base) = localhost_server().await.unwrap();
    const OTHER: &str = "rex@example.com";
    server.create_user(OTHER, PASSWORD).await.unwrap();
    let client = &browser.client;
    let authenticator = browser.add_virtual_authenticator().await.unwrap();
    // Both accounts have a passkey on this one authenticator.
    register_passkey(client, &base, OTHER, "Rex's key").await;
    let rex_key = browser
        .authenticator_credentials(&authenticator)
        .await
        .unwrap()[0]["credentialId"]
        .as_str()
        .unwrap()
        .to_owned();
    register_passkey(client, &base, EMAIL, "Pia's key").await;

    // Pia's password, then an assertion signed (validly) by Rex's credential.
    password_sign_in(client, &base).await.unwrap();
    wait_for_visible(client, "#passkey-second-factor")
        .await
        .unwrap();
    let answer = client
        .execute_async(
            r#"const [rexKey, done] = [arguments[0], arguments[arguments.length - 1]];
            const b64 = s => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')
                + '==='.slice((s.length + 3) % 4)), c => c.charCodeAt(0));
            const enc = b => btoa(String.fromCharCode(...new Uint8Array(b)))
                .replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
            const csrf = document.querySelector('form#second-factor input[name=csrf_token]').value;
            const post = (url, body) => fetch(url, {method: 'POST', credentials: 'same-origin',
                headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)})
                .then(async r => ({status: r.status, body: await r.json()}));
            (async () => {
              const begun = (await post('/login/second-factor/passkey/begin',
                {csrf_token: csrf})).body;
              const pk = begun.options.publicKey;
              pk.challenge = b64(pk.challenge);
              pk.allowCredentials = [{type: 'public-key', id: b64(rexKey)}];
              const c = await navigator.credentials.get({publicKey: pk});
              return await post('/login/second-factor/passkey/finish', {csrf_token: csrf,
                credential: {id: c.id, rawId: enc(c.rawId), type: c.type, response: {
                  authenticatorData: enc(c.response.authenticatorData),
                  clientDataJSON: enc(c.response.clientDataJSON),
                  signature: enc(c.response.signature),
                  userHandle: c.response.userHandle ? enc(c.response.userHandle) : null}}});
            })().then(done, e => done(String(e)));"#,
            vec![json!(rex_key)],
        )
        .await
        .unwrap();
    assert_eq!(answer["status"], 401, "{answer}");
    assert_eq!(answer["body"]["error"], "invalid_passkey", "{answer}");
    // No session: the account page still sends the browser to sign in.
    client.goto(&format!("{base}/account")).await.unwrap();
    wait_for(client, "/login").await.unwrap();
    // Pia's own passkey still works, after the password again.
    password_sign_in(client, &base).await.unwrap();
    wait_for_visible(client, "#passkey-second-factor")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_visible(client, "#signed-in-with").await.unwrap();
    assert_eq!(text(client, "#email").await.unwrap(), EMAIL);

    browser.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn passkey_pages_allow_the_script_file_and_nothing_inline() {
    let (server, base) = localhost_server().await.unwrap();
    let res = server.get("/login", None).await.unwrap();
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let html = res.text().await.unwrap();
    assert!(html.contains(r#"<script src="/assets/passkey.js" defer></script>"#));
    assert!(!html.contains("<script>"), "inline script on /login");
    let js = server.get("/assets/passkey.js", None).await.unwrap();
    assert_eq!(js.status(), 200);
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    // Pages that do not use it keep the strict default.
    let signup = server.get("/signup", None).await.unwrap();
    let csp = signup.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(!csp.contains("script-src"), "{csp}");
    let _ = base;
    server.stop().await;
}

#[tokio::test]
async fn passkey_ceremonies_need_their_form_token() {
    let (server, _) = localhost_server().await.unwrap();
    let cookie = server.sign_in(EMAIL, PASSWORD).await.unwrap();
    let http = reqwest::Client::new();
    for (path, cookie) in [
        ("/login/passkey/begin", None),
        ("/login/passkey/finish", None),
        ("/login/second-factor/passkey/begin", None),
        ("/login/second-factor/passkey/finish", None),
        ("/account/passkeys/begin", Some(cookie.as_str())),
        ("/account/passkeys/finish", Some(cookie.as_str())),
    ] {
        let mut req = http
            .post(format!("{}{path}", server.url))
            .header("origin", &server.url)
            .json(&json!({"csrf_token": "forged", "ceremony": "x", "credential": {}}));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 403, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "csrf_failed", "{path}");
    }
    // An IP-address issuer turns passkeys off rather than failing the start.
    let plain = TestServer::start().await.unwrap();
    let res = plain.get("/login", None).await.unwrap();
    assert!(!res.text().await.unwrap().contains("passkey-signin"));
    plain.stop().await;
    server.stop().await;
}
