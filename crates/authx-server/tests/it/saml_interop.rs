//! SAML interoperability with an identity provider that is not ours: pysaml2
//! (`interop/python/saml_idp.py`, run from the virtual environment .ci/run installs), whose
//! `saml2.server.Server` reads our AuthnRequest, checks it against the SP metadata it fetched
//! from the running server, and builds and signs the response with xmlsec1 and its own key.
//! authx is configured from the IdP's own metadata document (`metadata_file`).
//!
//! These tests speak HTTP as a browser would (reqwest); `browser_saml_interop` runs the same
//! IdP in Chromium. The IdP is addressed as `localhost` and the server as `127.0.0.1`, so its
//! POST to the assertion consumer service is cross-site, as in a real deployment.
//!
//! Without the environment (`AUTHX_SAML_IDP_PYTHON`, default
//! `/var/cache/authx/venv-saml/bin/python`) or xmlsec1 the tests print `SKIPPED:` and pass,
//! unless `AUTHX_TEST_REQUIRE_SERVICES=1`, as in CI.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authx_server::config::{FederationFile, FileConfig, SamlProviderFile};
use authx_testkit::{TestServer, session_cookie, set_cookies};
use base64::Engine as _;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::email_change::audit_trail;

/// The provider's name in authx's configuration and URLs.
pub(crate) const PROVIDER: &str = "pysaml2";
pub(crate) const DISPLAY_NAME: &str = "pysaml2 IdP";
/// The IdP's one user (`saml_idp.py`).
pub(crate) const USERNAME: &str = "grace";
pub(crate) const PASSWORD: &str = "pysaml2-interop-password";
/// The `mail` attribute pysaml2 sends for that user.
pub(crate) const EMAIL: &str = "grace@pysaml2.example";

/// Environment variable naming the Python of the virtual environment with pysaml2.
pub(crate) const PYTHON_ENV: &str = "AUTHX_SAML_IDP_PYTHON";
/// Where .ci/run installs it.
const DEFAULT_PYTHON: &str = "/var/cache/authx/venv-saml/bin/python";
/// How long the IdP may take to start, or to answer a command (a busy CI machine is slow to
/// start Python and import pysaml2).
const IDP_TIMEOUT: Duration = Duration::from_secs(90);
/// The most of the IdP's log kept for failure messages.
const LOG_KEEP: usize = 20_000;

const PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";
const EMAIL_ADDRESS: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
const RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";

/// A running pysaml2 IdP. Dropping it (also when a test panics) kills the process; it also
/// exits by itself when its standard input closes.
pub(crate) struct Pysaml2 {
    /// `http://localhost:PORT`: metadata at `/metadata`, single sign-on at `/sso`.
    pub(crate) base: String,
    /// A client for the IdP's pages: no redirects followed, no proxy, a time limit.
    http: reqwest::Client,
    /// Killed on drop (`kill_on_drop`).
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    log: Arc<Mutex<String>>,
    /// The IdP's key and certificate; removed on drop.
    dir: tempfile::TempDir,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/python/saml_idp.py")
}

/// The virtual environment's Python, or `None` (after `SKIPPED:`) when it or xmlsec1 is
/// missing.
fn python(test: &str) -> Option<PathBuf> {
    let python = std::env::var_os(PYTHON_ENV)
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_PYTHON), PathBuf::from);
    if !python.is_file() {
        return authx_testkit::services::skip(
            test,
            &format!(
                "no Python with pysaml2 at {} (set {PYTHON_ENV}, or install \
                 interop/python/requirements.txt into a virtual environment there)",
                python.display()
            ),
        );
    }
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("xmlsec1").is_file()));
    if !on_path {
        return authx_testkit::services::skip(
            test,
            "xmlsec1 is not installed (Debian package xmlsec1); pysaml2 signs with it",
        );
    }
    Some(python)
}

impl Pysaml2 {
    /// Starts the IdP with `flags` (see `saml_idp.py --help`); `None` when skipped.
    pub(crate) async fn start(test: &str, flags: &[&str]) -> Option<Pysaml2> {
        let python = python(test)?;
        let dir = tempfile::Builder::new()
            .prefix("authx-pysaml2-")
            .tempdir()
            .unwrap();
        let mut child = Command::new(&python)
            .arg(script())
            .arg("--dir")
            .arg(dir.path())
            .args(flags)
            // The SP metadata is fetched from 127.0.0.1, never through a proxy.
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not run: {e}", python.display()));
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let keep = Arc::clone(&log);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = keep.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
                if log.len() > 2 * LOG_KEEP {
                    let cut = log.len() - LOG_KEEP;
                    let cut = (cut..log.len())
                        .find(|i| log.is_char_boundary(*i))
                        .unwrap_or(0);
                    log.drain(..cut);
                }
            }
        });
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut idp = Pysaml2 {
            base: String::new(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .timeout(IDP_TIMEOUT)
                .build()
                .unwrap(),
            _child: child,
            stdin,
            stdout,
            log,
            dir,
        };
        let line = idp.next_line("start").await;
        let Some(base) = line.strip_prefix("listening ") else {
            panic!("the IdP said {line:?}:\n{}", idp.log());
        };
        idp.base = base.to_owned();
        Some(idp)
    }

    /// The IdP's stderr so far (its request log and any Python traceback).
    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    async fn next_line(&mut self, what: &str) -> String {
        match tokio::time::timeout(IDP_TIMEOUT, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => panic!("the IdP exited during {what}:\n{}", self.log()),
            Ok(Err(e)) => panic!("reading the IdP's output during {what}: {e}"),
            Err(_) => panic!(
                "the IdP did not answer within {IDP_TIMEOUT:?} during {what}:\n{}",
                self.log()
            ),
        }
    }

    /// The IdP's metadata document, as pysaml2 generates it.
    pub(crate) async fn metadata(&self) -> String {
        let res = self
            .http
            .get(format!("{}/metadata", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.text().await.unwrap()
    }

    /// Makes pysaml2 fetch `local`'s SP metadata for `PROVIDER`; from then on it accepts that
    /// SP's requests (issuer and assertion consumer service as the metadata names them).
    pub(crate) async fn trust(&mut self, local: &TestServer) {
        let url = format!("{}/federation/saml/{PROVIDER}/metadata", local.url);
        self.stdin
            .write_all(format!("sp-metadata {url}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
        let line = self.next_line("loading the SP metadata").await;
        assert_eq!(line, "ready", "{}", self.log());
    }
}

/// A server with the IdP configured from its metadata file (and `customize`d), trusted by the
/// IdP in turn.
pub(crate) async fn server_for(
    idp: &mut Pysaml2,
    customize: impl Fn(&mut SamlProviderFile) + Send + Sync + 'static,
) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pysaml2-idp.xml");
    std::fs::write(&file, idp.metadata().await).unwrap();
    let path = file.display().to_string();
    let local = TestServer::start_with(move |f: &mut FileConfig| {
        let mut p = SamlProviderFile {
            name: PROVIDER.into(),
            display_name: Some(DISPLAY_NAME.into()),
            metadata_file: Some(path.clone()),
            emails_verified: Some(true),
            allow_sign_up: Some(true),
            insecure_allow_http_loopback: Some(true),
            ..SamlProviderFile::default()
        };
        customize(&mut p);
        f.federation = Some(FederationFile {
            enable_saml: Some(true),
            saml: Some(vec![p]),
            ..FederationFile::default()
        });
    })
    .await
    .unwrap();
    // The metadata file is read once, at start.
    drop(dir);
    idp.trust(&local).await;
    local
}

/// Moves the server's clock (which stands still in tests) to now: pysaml2 dates its
/// assertions by the real clock.
pub(crate) fn clock_to_now(local: &TestServer) {
    local
        .clock
        .set(authx_core::Clock::now(&authx_core::SystemClock));
}

/// The cookies a browser keeps for the server.
#[derive(Default)]
struct Jar(Vec<String>);

impl Jar {
    fn keep(&mut self, res: &reqwest::Response) {
        for c in set_cookies(res) {
            let Some(nv) = c.split(';').next() else {
                continue;
            };
            let name = format!("{}=", nv.split('=').next().unwrap_or_default());
            self.0.retain(|old| !old.starts_with(&name));
            if !nv.ends_with('=') {
                self.0.push(nv.to_owned());
            }
        }
    }

    async fn get(&mut self, local: &TestServer, path: &str) -> reqwest::Response {
        let mut req = local.client.get(format!("{}{path}", local.url));
        if !self.0.is_empty() {
            req = req.header("cookie", self.0.join("; "));
        }
        let res = req.send().await.unwrap();
        self.keep(&res);
        res
    }
}

fn location(res: &reqwest::Response) -> String {
    res.headers()["location"].to_str().unwrap().to_owned()
}

/// The `value` of the input named `name` in a page.
fn input_value(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\" value=\""))
        .map(|i| i + name.len() + 15)
        .or_else(|| {
            html.find(&format!("name={name} value=\""))
                .map(|i| i + name.len() + 13)
        })
        .unwrap_or_else(|| panic!("no input {name} in {html:.3000}"));
    let raw = &html[at..at + html[at..].find('"').unwrap()];
    raw.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// What the IdP's HTTP-POST page sent the browser on with.
pub(crate) struct Posted {
    /// The form's action: where pysaml2 posts the response.
    pub(crate) action: String,
    /// The response XML, decoded.
    pub(crate) xml: String,
    /// `SAMLResponse` as posted (base64).
    saml_response: String,
    relay_state: String,
}

/// A sign-in as far as the IdP's answer: `/start` at the server, the IdP's sign-in page, the
/// password, and pysaml2's page with the signed response.
async fn through_the_idp(local: &TestServer, idp: &Pysaml2, jar: &mut Jar) -> Posted {
    let res = jar
        .get(local, &format!("/federation/saml/{PROVIDER}/start"))
        .await;
    assert_eq!(res.status(), 303);
    let sso = location(&res);
    assert!(
        sso.starts_with(&format!("{}/sso?SAMLRequest=", idp.base)),
        "{sso}"
    );
    let page = idp.http.get(&sso).send().await.unwrap();
    let status = page.status();
    let page = page.text().await.unwrap();
    assert_eq!(status, 200, "{page}\n{}", idp.log());
    // pysaml2 read our request: it names the SP it is signing in to.
    assert!(
        page.contains(&format!(
            "<span id=sp>{}/federation/saml/{PROVIDER}/metadata</span>",
            local.url
        )),
        "{page}"
    );
    clock_to_now(local);
    let res = idp
        .http
        .post(format!("{}/login", idp.base))
        .form(&[
            ("request", input_value(&page, "request").as_str()),
            ("username", USERNAME),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    let status = res.status();
    let html = res.text().await.unwrap();
    assert_eq!(status, 200, "{html}\n{}", idp.log());
    let action = html
        .split("<form action=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no form in {html:.3000}"))
        .to_owned();
    let saml_response = input_value(&html, "SAMLResponse");
    let xml = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(&saml_response)
            .unwrap(),
    )
    .unwrap();
    Posted {
        action,
        xml,
        saml_response,
        relay_state: input_value(&html, "RelayState"),
    }
}

/// The browser posts pysaml2's form to the ACS (cross-site, without the server's cookies), is
/// sent on to `finish`, and follows; returns the answer of `finish`.
async fn post_and_finish(
    local: &TestServer,
    idp: &Pysaml2,
    jar: &mut Jar,
    posted: &Posted,
) -> reqwest::Response {
    let acs = format!("{}/federation/saml/{PROVIDER}/acs", local.url);
    assert_eq!(posted.action, acs);
    let res = local
        .client
        .post(&acs)
        .header("origin", &idp.base)
        .header("sec-fetch-site", "cross-site")
        .form(&[
            ("SAMLResponse", posted.saml_response.as_str()),
            ("RelayState", posted.relay_state.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    assert!(session_cookie(&res).is_none());
    let finish = location(&res);
    assert!(
        finish.starts_with(&format!("/federation/saml/{PROVIDER}/finish?id=")),
        "{finish}"
    );
    jar.get(local, &finish).await
}

/// The text of the first `NameID` element (any prefix) in `xml`, and its `Format`.
fn name_id(xml: &str) -> (String, String) {
    let start = xml.find(":NameID ").unwrap_or_else(|| panic!("{xml}"));
    let tag_end = start + xml[start..].find('>').unwrap();
    let tag = &xml[start..tag_end];
    let format = tag
        .split("Format=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_default()
        .to_owned();
    let text = &xml[tag_end + 1..tag_end + 1 + xml[tag_end + 1..].find('<').unwrap()];
    (text.to_owned(), format)
}

/// The algorithm of each `ds:SignatureMethod` (any prefix) in the XML: one per signature.
fn signatures(xml: &str) -> Vec<String> {
    xml.split(":SignatureMethod Algorithm=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_owned)
        .collect()
}

async fn users(local: &TestServer) -> Vec<authx_core::user::User> {
    local
        .running()
        .unwrap()
        .state
        .auth
        .stores()
        .accounts
        .list_users()
        .await
        .unwrap()
}

/// The `reason: error` of each `federation_refused` event of the provider so far.
pub(crate) async fn refusals(local: &TestServer) -> Vec<String> {
    audit_trail(local)
        .await
        .into_iter()
        .filter(|r| r.kind == "federation_refused")
        .map(|r| {
            let d: Value = serde_json::from_str(&r.detail).unwrap();
            assert_eq!(d["provider"], PROVIDER);
            format!(
                "{}: {}",
                d["reason"].as_str().unwrap_or_default(),
                d["error"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

/// What a user sees of a refused sign-in: a readable 400 page saying `says`, no session and
/// no account; and the refusal is audited.
async fn assert_refused(local: &TestServer, res: reqwest::Response, says: &str) {
    assert_eq!(res.status(), 400);
    assert!(session_cookie(&res).is_none(), "a session was created");
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = res.text().await.unwrap();
    assert!(page.contains("<h1>Sign-in refused</h1>"), "{page}");
    assert!(
        page.contains(&format!(
            "{DISPLAY_NAME} sent a sign-in that cannot be trusted"
        )),
        "{page}"
    );
    assert!(page.contains(says), "{says:?} not in {page}");
    assert!(users(local).await.is_empty(), "an account was made");
    let events = refusals(local).await;
    assert!(
        events
            .last()
            .is_some_and(|e| e.starts_with("invalid assertion") && e.contains(says)),
        "no refusal {says:?} audited: {events:?}"
    );
}

async fn me(local: &TestServer, cookie: &str) -> Value {
    let res = local.get("/api/v1/me", Some(cookie)).await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// pysaml2 signs the response and the assertion with RSA-SHA256 (as it is configured here by
/// default): the first sign-in creates the account from the `mail` attribute and links the
/// persistent NameID; a second one, in another browser, finds the same account.
#[tokio::test]
async fn pysaml2_signing_response_and_assertion_signs_the_user_in() {
    let test = "saml_interop::pysaml2_signing_response_and_assertion_signs_the_user_in";
    let Some(mut idp) = Pysaml2::start(test, &[]).await else {
        return;
    };
    let local = server_for(&mut idp, |_| {}).await;

    let mut jar = Jar::default();
    let posted = through_the_idp(&local, &idp, &mut jar).await;
    // What pysaml2 made of our request: both signed with SHA-256, a persistent NameID, the
    // bearer confirmation for our ACS and our request.
    assert_eq!(signatures(&posted.xml), [RSA_SHA256, RSA_SHA256]);
    let (subject, format) = name_id(&posted.xml);
    assert_eq!(format, PERSISTENT);
    assert!(posted.xml.contains(&format!(
        "Recipient=\"{}/federation/saml/{PROVIDER}/acs\"",
        local.url
    )));
    let res = post_and_finish(&local, &idp, &mut jar, &posted).await;
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let cookie = session_cookie(&res).expect("no session");
    let user = me(&local, &cookie).await;
    assert_eq!(user["user"]["email"], EMAIL);

    let state = &local.running().unwrap().state;
    let entity = format!("{}/metadata", idp.base);
    let link = state.federation.link(&entity, &subject).await.unwrap();
    assert_eq!(
        link.expect("no link").user_id.to_string(),
        user["user"]["id"].as_str().unwrap()
    );

    // Again in a fresh browser: pysaml2 sends the same persistent NameID in a new assertion.
    let mut other = Jar::default();
    let posted = through_the_idp(&local, &idp, &mut other).await;
    assert_eq!(name_id(&posted.xml).0, subject);
    let res = post_and_finish(&local, &idp, &mut other, &posted).await;
    assert_eq!(res.status(), 303);
    let again = me(&local, &session_cookie(&res).expect("no session")).await;
    assert_eq!(again["user"]["id"], user["user"]["id"]);
    assert_eq!(users(&local).await.len(), 1);

    let kinds: Vec<String> = audit_trail(&local)
        .await
        .into_iter()
        .map(|r| r.kind)
        .collect();
    for k in ["federated_user_created", "federated_sign_in"] {
        assert!(kinds.iter().any(|x| x == k), "{k} not in {kinds:?}");
    }
    assert!(refusals(&local).await.is_empty());
    local.stop().await;
}

/// pysaml2 signing only the response (`sign_assertion=False`) is refused by default; with the
/// provider's `allow_signed_response_only = true` the signed response vouches for the
/// assertion.
#[tokio::test]
async fn pysaml2_signing_only_the_response_is_refused_unless_allowed() {
    let test = "saml_interop::pysaml2_signing_only_the_response_is_refused_unless_allowed";
    let Some(mut idp) = Pysaml2::start(test, &["--no-sign-assertion"]).await else {
        return;
    };
    let local = server_for(&mut idp, |_| {}).await;
    let mut jar = Jar::default();
    let posted = through_the_idp(&local, &idp, &mut jar).await;
    assert_eq!(signatures(&posted.xml), [RSA_SHA256]);
    let res = post_and_finish(&local, &idp, &mut jar, &posted).await;
    assert_refused(&local, res, "the assertion is not signed").await;

    let allowing = server_for(&mut idp, |p| p.allow_signed_response_only = Some(true)).await;
    let mut jar = Jar::default();
    let posted = through_the_idp(&allowing, &idp, &mut jar).await;
    let res = post_and_finish(&allowing, &idp, &mut jar, &posted).await;
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let cookie = session_cookie(&res).expect("no session");
    assert_eq!(me(&allowing, &cookie).await["user"]["email"], EMAIL);
    local.stop().await;
    allowing.stop().await;
}

/// pysaml2 signing only the assertion (not the response), with an `emailAddress` NameID: the
/// NameID is the linked subject and the account's address.
#[tokio::test]
async fn pysaml2_signing_only_the_assertion_with_an_email_name_id_signs_the_user_in() {
    let test =
        "saml_interop::pysaml2_signing_only_the_assertion_with_an_email_name_id_signs_the_user_in";
    let flags = ["--no-sign-response", "--name-id-format", "email"];
    let Some(mut idp) = Pysaml2::start(test, &flags).await else {
        return;
    };
    let local = server_for(&mut idp, |_| {}).await;
    let mut jar = Jar::default();
    let posted = through_the_idp(&local, &idp, &mut jar).await;
    assert_eq!(signatures(&posted.xml), [RSA_SHA256]);
    assert!(
        posted.xml.find(":SignatureMethod ") > posted.xml.find(":Assertion "),
        "the response is signed: {}",
        posted.xml
    );
    assert_eq!(
        name_id(&posted.xml),
        (EMAIL.to_owned(), EMAIL_ADDRESS.into())
    );
    let res = post_and_finish(&local, &idp, &mut jar, &posted).await;
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let cookie = session_cookie(&res).expect("no session");
    let user = me(&local, &cookie).await;
    assert_eq!(user["user"]["email"], EMAIL);
    let state = &local.running().unwrap().state;
    let link = state
        .federation
        .link(&format!("{}/metadata", idp.base), EMAIL)
        .await
        .unwrap();
    assert_eq!(
        link.expect("no link").user_id.to_string(),
        user["user"]["id"].as_str().unwrap()
    );
    local.stop().await;
}

/// pysaml2 signing with RSA-SHA1 and SHA-1 digests is refused, whatever else is right.
#[tokio::test]
async fn pysaml2_signing_with_sha1_is_refused() {
    let test = "saml_interop::pysaml2_signing_with_sha1_is_refused";
    let Some(mut idp) = Pysaml2::start(test, &["--algorithm", "sha1"]).await else {
        return;
    };
    let local = server_for(&mut idp, |_| {}).await;
    let mut jar = Jar::default();
    let posted = through_the_idp(&local, &idp, &mut jar).await;
    assert_eq!(signatures(&posted.xml), [RSA_SHA1, RSA_SHA1]);
    let res = post_and_finish(&local, &idp, &mut jar, &posted).await;
    assert_refused(&local, res, "SHA-1 is refused").await;
    local.stop().await;
}

/// The metadata pysaml2 publishes (its own prefixes, an `md:Extensions` block listing
/// algorithms, no XML declaration) configures the provider: entity id, redirect endpoint and
/// the certificate, whose key is pinned.
#[tokio::test]
async fn pysaml2_metadata_configures_the_provider() {
    let test = "saml_interop::pysaml2_metadata_configures_the_provider";
    let Some(idp) = Pysaml2::start(test, &[]).await else {
        return;
    };
    let xml = idp.metadata().await;
    let md = authx_saml::IdpMetadata::parse(xml.as_bytes(), &authx_saml::Limits::default())
        .unwrap_or_else(|e| panic!("{e}: {xml}"));
    assert_eq!(md.entity_id, format!("{}/metadata", idp.base));
    assert_eq!(md.sso_redirect_url, format!("{}/sso", idp.base));
    assert!(!md.want_authn_requests_signed);
    assert_eq!(md.signing_keys.len(), 1);
    let cert = std::fs::read_to_string(
        std::fs::read_dir(idp.dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "pem") && is_cert(p))
            .expect("the IdP's certificate file"),
    )
    .unwrap();
    assert_eq!(
        md.signing_keys[0],
        authx_saml::PinnedKey::from_certificate_pem(&cert).unwrap()
    );
}

fn is_cert(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.contains("cert"))
}
