//! The browser SDK (`sdk/web`) in headless Chromium against the real server: the example
//! single-page app is served with the built bundle from a listener of the test, on an origin of
//! its own but on the same site as authx (127.0.0.1, another port), so the session cookie goes
//! with its calls; authx trusts that origin and allows it by CORS, as a deployment with the app on
//! `app.example.com` and authx on `id.example.com` would. Tokens live 10 s, so refresh rounds
//! come quickly; the server counts the token requests (its `/metrics`).
//!
//! The bundle comes from `sdk/web/dist/index.js` (`npm ci && npm run build` in `sdk/web`, as
//! `.ci/run` does before `cargo test`). Without it, or without Chromium, the tests print
//! `SKIPPED:` and pass, unless `AUTHX_TEST_REQUIRE_SERVICES=1`, as in CI.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use authx_core::session::SessionId;
use authx_server::config::OAuthFile;
use authx_testkit::browser::Browser;
use authx_testkit::browser::fantoccini::Client;
use authx_testkit::browser::fantoccini::Locator;
use authx_testkit::browser::fantoccini::wd::WindowHandle;
use authx_testkit::{PASSWORD, TestServer};
use serde_json::{Value, json};

const EMAIL: &str = "spa@example.com";
const RESOURCE: &str = "https://api.example.com";
/// The lifetime of session-minted tokens in these tests; refreshes come at 70-80 % of it.
const TOKEN_TTL_SECS: i64 = 10;
/// How long pages and counters may take to reach what a test waits for.
const WAIT: Duration = Duration::from_secs(15);

/// Registers the app's API and the first-party application that may use it: a session mints
/// tokens only for an API that some first-party client may use.
async fn register_api(server: &TestServer) -> Result<(), String> {
    use authx_core::oauth::client::GrantType;

    let state = &server.running().map_err(|e| e.to_string())?.state;
    authx_server::web::api::register_resource(state, RESOURCE.into(), vec!["read".into()])
        .await
        .map_err(|e| format!("{e:?}"))?;
    let app = crate::oidc::client("spa", &[GrantType::AuthorizationCode], true);
    state
        .oauth
        .register_client(app, false)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The example page and the built bundle; `None` (after `SKIPPED:`) when the bundle is missing.
fn spa_files() -> anyhow::Result<Option<(String, String)>> {
    let web = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../sdk/web");
    let bundle = web.join("dist/index.js");
    let Ok(js) = std::fs::read_to_string(&bundle) else {
        eprintln!(
            "SKIPPED: browser SDK test: {} is not built (run `npm ci && npm run build` in sdk/web)",
            bundle.display()
        );
        if std::env::var(authx_testkit::browser::REQUIRE_SERVICES_ENV).is_ok_and(|v| v == "1") {
            bail!("the browser SDK bundle is missing");
        }
        return Ok(None);
    };
    let html = std::fs::read_to_string(web.join("example/index.html"))
        .context("reading sdk/web/example/index.html")?;
    Ok(Some((html, js)))
}

/// Serves the example page at `/example/index.html`, the bundle at `/dist/index.js`, and a stand-in
/// API: `/api/echo` answers the `Authorization` header it got, `/api/reject` answers 401.
fn serve_spa(listener: TcpListener, html: String, js: String) {
    let files = Arc::new((html, js));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let files = Arc::clone(&files);
            std::thread::spawn(move || {
                let _ = answer(stream, &files.0, &files.1);
            });
        }
    });
}

fn answer(mut stream: TcpStream, html: &str, js: &str) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let path = path.split('?').next().unwrap_or("/").to_owned();
    let mut authorization = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                value.trim().clone_into(&mut authorization);
            }
        }
    }
    let (status, kind, body) = match path.as_str() {
        "/example/index.html" => ("200 OK", "text/html; charset=utf-8", html),
        "/dist/index.js" => ("200 OK", "text/javascript; charset=utf-8", js),
        "/api/echo" => ("200 OK", "text/plain", authorization.as_str()),
        "/api/reject" => ("401 Unauthorized", "text/plain", ""),
        _ => ("404 Not Found", "text/plain", ""),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A server with short session tokens that trusts the app's origin, an API, a user, and a
/// browser signed in to authx; `None` when the test is skipped.
struct Spa {
    server: TestServer,
    browser: Browser,
    /// The example page, with its query naming authx and the API.
    page: String,
    user: authx_core::user::User,
}

async fn spa() -> anyhow::Result<Option<Spa>> {
    let Some((html, js)) = spa_files()? else {
        return Ok(None);
    };
    let Some(browser) = Browser::start().await? else {
        return Ok(None);
    };
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let app_origin = format!("http://{}", listener.local_addr()?);
    serve_spa(listener, html, js);
    let origin = app_origin.clone();
    let server = TestServer::start_with(move |f| {
        f.trusted_origins = Some(vec![origin.clone()]);
        f.cors_allowed_origins = Some(vec![origin.clone()]);
        f.oauth = Some(OAuthFile {
            session_token_ttl_secs: Some(TOKEN_TTL_SECS),
            ..OAuthFile::default()
        });
    })
    .await?;
    register_api(&server)
        .await
        .map_err(|e| anyhow::anyhow!("registering the API: {e}"))?;
    let user = server.create_user(EMAIL, PASSWORD).await?;

    // Sign in at authx's own page, as a person would before opening the app.
    let c = &browser.client;
    c.goto(&format!("{}/login", server.url)).await?;
    let form = c.form(Locator::Css("form#login")).await?;
    form.set_by_name("email", EMAIL).await?;
    form.set_by_name("password", PASSWORD).await?;
    c.find(Locator::Css("form#login [type=submit]"))
        .await?
        .click()
        .await?;
    wait_until("the account page after sign-in", || async {
        Ok(c.current_url().await?.path() == "/account")
    })
    .await?;

    let page = format!(
        "{app_origin}/example/index.html?issuer={}&resource={RESOURCE}",
        server.url
    );
    Ok(Some(Spa {
        server,
        browser,
        page,
        user,
    }))
}

impl Spa {
    /// Opens the app in `n` tabs, one after the other, each loaded and holding its token.
    async fn open_tabs(&self, n: usize) -> anyhow::Result<Vec<WindowHandle>> {
        let c = &self.browser.client;
        let mut tabs = vec![c.window().await?];
        for _ in 1..n {
            tabs.push(c.new_window(true).await?.handle);
        }
        for tab in &tabs {
            c.switch_to_window(tab.clone()).await?;
            c.goto(&self.page).await?;
            wait_until("the app to load", || async {
                Ok(c.execute(
                    "return document.getElementById('status')?.dataset.ready === 'true'",
                    vec![],
                )
                .await?
                    == json!(true))
            })
            .await?;
            let status = status(c).await?;
            if status != "signed in" {
                bail!("the app says {status:?} after loading");
            }
        }
        Ok(tabs)
    }

    /// Token requests authx answered with `status`, from its metrics.
    async fn token_requests(&self, status: u16) -> anyhow::Result<u64> {
        let metrics = self.server.metrics().await?;
        let prefix = format!(
            "authx_http_requests_total{{method=\"POST\",route=\"/api/v1/auth/token\",status=\"{status}\"}} "
        );
        Ok(metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(Ok(0), str::parse)?)
    }

    /// What each tab's `getAccessToken` answers (from memory when the token is fresh), after
    /// checking that no storage of the page holds it.
    async fn tokens_and_storage(&self, tabs: &[WindowHandle]) -> anyhow::Result<Vec<String>> {
        let c = &self.browser.client;
        let mut out = Vec::new();
        for tab in tabs {
            c.switch_to_window(tab.clone()).await?;
            let v = run(c, INSPECT, vec![json!(RESOURCE)]).await?;
            let token = v["token"].as_str().context("no token")?.to_owned();
            assert_eq!(v["local"], 0, "localStorage is used: {v}");
            assert_eq!(v["session"], 0, "sessionStorage is used: {v}");
            assert_eq!(v["idb"], 0, "IndexedDB is used: {v}");
            assert_eq!(v["caches"], 0, "Cache Storage is used: {v}");
            assert_eq!(v["leaked"], false, "the token is in page storage: {v}");
            for cookie in c.get_all_cookies().await? {
                assert!(
                    !cookie.value().contains(&token),
                    "the token is in cookie {}",
                    cookie.name()
                );
            }
            out.push(token);
        }
        Ok(out)
    }

    /// Waits for the next refresh round: exactly one more token request within a token's
    /// lifetime, and none more while every tab's timer has had its turn.
    async fn refresh_round(&self, expected: u64) -> anyhow::Result<()> {
        wait_until("a refresh before the token expires", || async {
            Ok(self.token_requests(200).await? >= expected)
        })
        .await?;
        // Timers are spread over 10 % of the lifetime (plus background-tab timer alignment).
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        assert_eq!(
            self.token_requests(200).await?,
            expected,
            "one token request per refresh round"
        );
        Ok(())
    }
}

/// Reads every storage a page could keep a token in, and the token `getAccessToken` gives.
const INSPECT: &str = r"
const done = arguments[arguments.length - 1];
const resource = arguments[0];
(async () => {
  const token = await window.authx.getAccessToken({ resource });
  const dbs = indexedDB.databases ? await indexedDB.databases() : [];
  const cacheKeys = self.caches ? await caches.keys() : [];
  const dumps = [JSON.stringify({ ...localStorage }), JSON.stringify({ ...sessionStorage }),
    document.cookie, JSON.stringify(dbs), JSON.stringify(cacheKeys)];
  return { token, local: localStorage.length, session: sessionStorage.length, idb: dbs.length,
    caches: cacheKeys.length, leaked: dumps.some((d) => d.includes(token)) };
})().then(done, (e) => done({ error: String(e), status: e.status }));
";

/// Runs an async script whose last argument is the completion callback.
async fn run(c: &Client, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
    let v = c.execute_async(script, args).await?;
    if let Some(e) = v.get("error") {
        bail!("the page failed: {e} ({v})");
    }
    Ok(v)
}

async fn status(c: &Client) -> anyhow::Result<String> {
    Ok(c.execute(
        "return document.getElementById('status').textContent",
        vec![],
    )
    .await?
    .as_str()
    .unwrap_or_default()
    .to_owned())
}

async fn wait_until<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if check().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every tab shows "signed out" (its `onChange` listener ran).
async fn all_signed_out(c: &Client, tabs: &[WindowHandle]) -> anyhow::Result<()> {
    for tab in tabs {
        c.switch_to_window(tab.clone()).await?;
        wait_until("the tab to learn of the sign-out", || async {
            Ok(status(c).await? == "signed out")
        })
        .await?;
    }
    Ok(())
}

/// N tabs: one token request when they open, one per refresh round, the same token in every
/// tab and in no storage; a sign-out in one tab signs out all and stops their refreshes.
async fn tabs_share_one_refresh(n: usize) -> anyhow::Result<()> {
    let Some(spa) = spa().await? else {
        return Ok(());
    };
    let c = &spa.browser.client;
    let tabs = spa.open_tabs(n).await?;
    assert_eq!(
        spa.token_requests(200).await?,
        1,
        "{n} tabs opening: one token request"
    );
    let first = spa.tokens_and_storage(&tabs).await?;
    assert!(first.iter().all(|t| *t == first[0]), "{first:?}");

    // The bearer token reaches the API.
    let echoed = run(
        c,
        "const done = arguments[0];
         window.authx.fetch('/api/echo').then(async (r) => done({ status: r.status, body: await r.text() }),
           (e) => done({ error: String(e) }));",
        vec![],
    )
    .await?;
    assert_eq!(echoed["status"], 200);
    assert_eq!(echoed["body"], format!("Bearer {}", first[0]));

    let mut previous = first[0].clone();
    for round in 2..=3 {
        spa.refresh_round(round).await?;
        let now = spa.tokens_and_storage(&tabs).await?;
        assert!(
            now.iter().all(|t| *t == now[0]) && now[0] != previous,
            "round {round}: every tab holds the one new token: {now:?}"
        );
        assert_eq!(spa.token_requests(200).await?, round);
        previous.clone_from(&now[0]);
    }

    // Sign out in the last tab: every tab hears of it, and no tab refreshes any more.
    let last = tabs.last().context("no tab")?;
    c.switch_to_window(last.clone()).await?;
    run(
        c,
        "const done = arguments[0];
         window.authx.signOut().then(() => done({}), (e) => done({ error: String(e) }));",
        vec![],
    )
    .await?;
    all_signed_out(c, &tabs).await?;
    // The last token was obtained about 3 s ago: its refresh would have come within 6 s.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        spa.token_requests(200).await?,
        3,
        "a refresh after sign-out"
    );
    assert_eq!(spa.token_requests(401).await?, 0);
    spa.browser.close().await?;
    Ok(())
}

#[tokio::test]
async fn sdk_two_tabs_share_one_refresh_and_sign_out_together() {
    tabs_share_one_refresh(2).await.unwrap();
}

#[tokio::test]
async fn sdk_five_tabs_share_one_refresh_and_sign_out_together() {
    tabs_share_one_refresh(5).await.unwrap();
}

/// A session revoked elsewhere gets no token more: the next token request is refused, the
/// app's call fails instead of being retried with a new token, and every tab is signed out.
#[tokio::test]
async fn sdk_revoked_session_stops_token_issuance_at_once() {
    let Some(spa) = spa().await.unwrap() else {
        return;
    };
    let c = &spa.browser.client;
    let tabs = spa.open_tabs(2).await.unwrap();
    assert_eq!(spa.token_requests(200).await.unwrap(), 1);
    let session = run(
        c,
        "const done = arguments[0];
         window.authx.session().then(done, (e) => done({ error: String(e) }));",
        vec![],
    )
    .await
    .unwrap();
    let id = session["session"]["id"].as_str().unwrap().to_owned();
    spa.server
        .running()
        .unwrap()
        .state
        .auth
        .revoke_session(&spa.user.id, &SessionId(id))
        .await
        .unwrap();

    // The API refuses the (still unexpired) token; the fresh one the SDK asks for is refused.
    let res = run(
        c,
        "const done = arguments[0];
         window.authx.fetch('/api/reject').then((r) => done({ status: r.status }),
           (e) => done({ failed: e.status, code: e.code }));",
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(res, json!({"failed": 401, "code": "unauthenticated"}));
    assert_eq!(spa.token_requests(401).await.unwrap(), 1);
    all_signed_out(c, &tabs).await.unwrap();
    // The other tab's token is gone from memory too: asking again goes to authx, which refuses.
    c.switch_to_window(tabs[0].clone()).await.unwrap();
    let again = run(
        c,
        "const done = arguments[1];
         window.authx.getAccessToken({ resource: arguments[0] }).then((t) => done({ token: t }),
           (e) => done({ failed: e.status }));",
        vec![json!(RESOURCE)],
    )
    .await
    .unwrap();
    assert_eq!(again, json!({"failed": 401}));
    assert_eq!(spa.token_requests(401).await.unwrap(), 2);
    assert_eq!(spa.token_requests(200).await.unwrap(), 1);
    spa.browser.close().await.unwrap();
}

/// A page on an allowed origin can read `Retry-After`, which the SDK's backoff honours.
#[tokio::test]
async fn cors_lets_the_app_read_retry_after() {
    let server = TestServer::start_with(|f| {
        f.cors_allowed_origins = Some(vec!["https://app.example.com".into()]);
    })
    .await
    .unwrap();
    let res = server
        .client
        .get(format!("{}/api/v1/me", server.url))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    let exposed = res
        .headers()
        .get("access-control-expose-headers")
        .map(|v| v.to_str().unwrap().to_ascii_lowercase());
    assert_eq!(exposed.as_deref(), Some("retry-after"));
}

/// `oauth.session_token_ttl_secs` sets the lifetime of session-minted tokens (it was fixed at
/// 300 s): `expires_in` and the token's own `exp - iat` both follow it.
#[tokio::test]
async fn session_token_lifetime_follows_the_configuration() {
    let server = TestServer::start_with(|f| {
        f.oauth = Some(OAuthFile {
            session_token_ttl_secs: Some(TOKEN_TTL_SECS),
            ..OAuthFile::default()
        });
    })
    .await
    .unwrap();
    register_api(&server).await.unwrap();
    server.create_user(EMAIL, PASSWORD).await.unwrap();
    let cookie = server.sign_in(EMAIL, PASSWORD).await.unwrap();
    let res = server
        .send_json(
            reqwest::Method::POST,
            "/api/v1/auth/token",
            &cookie,
            Some(json!({"resource": RESOURCE})),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["expires_in"], TOKEN_TTL_SECS);
    let token = body["access_token"].as_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        TOKEN_TTL_SECS
    );
}
