//! SAML federation (issue #21, server slice): a response signed by a test IdP, posted to the
//! assertion consumer service the way an IdP's page posts it (cross-site), ends in a local
//! session, and every defect is refused on a readable page with an audit event, no session and
//! no account.
//!
//! The IdP is `authx-saml`'s test IdP (`crate::saml_idp`), signing with the key of
//! `authx-saml/tests/data/idp-ec.*.pem`; the server pins the certificate.

use authx_server::config::{FederationFile, FileConfig, SamlProviderFile};
use authx_testkit::{PASSWORD, TestServer, session_cookie, set_cookies};
use base64::Engine as _;
use serde_json::Value;

use crate::email_change::audit_trail;
use crate::saml_idp::{self as idp, Key, Spec};

pub(crate) const PROVIDER: &str = "corp";
pub(crate) const SSO_URL: &str = "https://idp.example.org/sso";
const BINDING_COOKIE: &str = "authx_federation";

pub(crate) fn data(file: &str) -> String {
    format!(
        "{}/../authx-saml/tests/data/{file}",
        env!("CARGO_MANIFEST_DIR")
    )
}

pub(crate) fn idp_key() -> Key {
    Key::from_pem(&std::fs::read_to_string(data("idp-ec.key.pem")).unwrap())
}

pub(crate) fn provider(emails_verified: bool, allow_sign_up: bool) -> SamlProviderFile {
    SamlProviderFile {
        name: PROVIDER.into(),
        display_name: Some("Corp SAML".into()),
        idp_entity_id: Some(idp::IDP.into()),
        sso_url: Some(SSO_URL.into()),
        certificate_file: Some(data("idp-ec.cert.pem")),
        emails_verified: Some(emails_verified),
        allow_sign_up: Some(allow_sign_up),
        ..SamlProviderFile::default()
    }
}

pub(crate) async fn server(emails_verified: bool, allow_sign_up: bool) -> TestServer {
    TestServer::start_with(move |f: &mut FileConfig| {
        f.federation = Some(FederationFile {
            enable_saml: Some(true),
            saml: Some(vec![provider(emails_verified, allow_sign_up)]),
            ..FederationFile::default()
        });
    })
    .await
    .unwrap()
}

pub(crate) fn param(url: &str, name: &str) -> Option<String> {
    let q = url.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub(crate) fn location(res: &reqwest::Response) -> String {
    res.headers()["location"].to_str().unwrap().to_owned()
}

/// A browser: the cookies it was given (name=value), sent back on every request, as a
/// browser does for these same-site requests.
#[derive(Default, Clone)]
pub(crate) struct Browser {
    pub(crate) cookies: Vec<String>,
}

impl Browser {
    fn keep(&mut self, res: &reqwest::Response) {
        for c in set_cookies(res) {
            let Some(nv) = c.split(';').next() else {
                continue;
            };
            let name = nv.split('=').next().unwrap_or_default().to_owned();
            self.cookies
                .retain(|old| !old.starts_with(&format!("{name}=")));
            if !nv.ends_with('=') {
                self.cookies.push(nv.to_owned());
            }
        }
    }

    pub(crate) async fn get(&mut self, local: &TestServer, url: &str) -> reqwest::Response {
        let url = if url.starts_with('/') {
            format!("{}{url}", local.url)
        } else {
            url.to_owned()
        };
        let mut req = local.client.get(url);
        if !self.cookies.is_empty() {
            req = req.header("cookie", self.cookies.join("; "));
        }
        let res = req.send().await.unwrap();
        self.keep(&res);
        res
    }
}

/// A sign-in started in `browser`: the AuthnRequest's ID and the RelayState.
pub(crate) struct Started {
    pub(crate) request_id: String,
    pub(crate) relay_state: String,
}

pub(crate) async fn start(local: &TestServer, browser: &mut Browser) -> Started {
    let res = browser
        .get(local, &format!("/federation/saml/{PROVIDER}/start"))
        .await;
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    assert!(
        browser
            .cookies
            .iter()
            .any(|c| c.starts_with(&format!("{BINDING_COOKIE}="))),
        "no binding cookie"
    );
    let to = location(&res);
    assert!(to.starts_with(&format!("{SSO_URL}?SAMLRequest=")), "{to}");
    let (xml, started) = request_of(&to);
    assert!(xml.contains(&format!(
        "AssertionConsumerServiceURL=\"{}/federation/saml/{PROVIDER}/acs\"",
        local.url
    )));
    started
}

/// The AuthnRequest of an HTTP-Redirect URL (inflated) and what the response must refer to.
pub(crate) fn request_of(url: &str) -> (String, Started) {
    let deflated = base64::engine::general_purpose::STANDARD
        .decode(param(url, "SAMLRequest").unwrap())
        .unwrap();
    let xml =
        String::from_utf8(miniz_oxide::inflate::decompress_to_vec(&deflated).unwrap()).unwrap();
    let id_at = xml.find(" ID=\"").unwrap() + 5;
    let request_id = xml[id_at..id_at + xml[id_at..].find('"').unwrap()].to_owned();
    let relay_state = param(url, "RelayState").unwrap();
    (
        xml,
        Started {
            request_id,
            relay_state,
        },
    )
}

/// The response the IdP would send for `request_id` now, for this server.
pub(crate) fn spec(local: &TestServer, request_id: &str) -> Spec {
    let now = authx_core::Clock::now(&local.clock).secs();
    let acs = format!("{}/federation/saml/{PROVIDER}/acs", local.url);
    Spec {
        destination: acs.clone(),
        recipient: acs,
        audience: format!("{}/federation/saml/{PROVIDER}/metadata", local.url),
        in_response_to: Some(request_id.into()),
        not_before: now - 60,
        not_on_or_after: now + 300,
        confirmation_not_on_or_after: now + 300,
        ..Spec::default()
    }
}

/// The IdP's page posting the response: cross-site, and without the browser's `SameSite=Lax`
/// cookies (a browser does not send them on a cross-site POST).
pub(crate) async fn post_acs(
    local: &TestServer,
    xml: &str,
    relay_state: &str,
) -> reqwest::Response {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("SAMLResponse", &idp::b64(xml.as_bytes()))
        .append_pair("RelayState", relay_state)
        .finish();
    local
        .client
        .post(format!("{}/federation/saml/{PROVIDER}/acs", local.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "https://idp.example.org")
        .header("sec-fetch-site", "cross-site")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Posts `xml` at the ACS, which must park it and send the browser on to `finish`; returns
/// the finish URL.
pub(crate) async fn parked(local: &TestServer, xml: &str, relay_state: &str) -> String {
    let res = post_acs(local, xml, relay_state).await;
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    assert!(session_cookie(&res).is_none());
    let to = location(&res);
    assert!(
        to.starts_with(&format!("/federation/saml/{PROVIDER}/finish?id=")),
        "{to}"
    );
    to
}

/// A whole sign-in in `browser` with the response `edit` makes of the default one.
pub(crate) async fn sign_in_with(
    local: &TestServer,
    browser: &mut Browser,
    key: &Key,
    edit: impl FnOnce(&mut Spec),
) -> reqwest::Response {
    let s = start(local, browser).await;
    let mut spec = spec(local, &s.request_id);
    edit(&mut spec);
    let to = parked(local, &idp::response(&spec, key), &s.relay_state).await;
    browser.get(local, &to).await
}

pub(crate) async fn user_count(local: &TestServer) -> usize {
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
        .len()
}

pub(crate) async fn me(local: &TestServer, cookie: &str) -> Value {
    let res = local.get("/api/v1/me", Some(cookie)).await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// The reasons of the `federation_refused` events recorded so far.
pub(crate) async fn refusals(local: &TestServer) -> Vec<String> {
    audit_trail(local)
        .await
        .into_iter()
        .filter(|r| r.kind == "federation_refused" && r.outcome == "failure")
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

/// A refusal: a readable page (4xx, HTML, with a heading and `says`), no session cookie, no
/// new account, and one more `federation_refused` audit event whose reason holds `reason`.
pub(crate) async fn assert_refused(
    local: &TestServer,
    res: reqwest::Response,
    users_before: usize,
    says: &str,
    reason: &str,
) {
    let status = res.status();
    assert!(status.is_client_error(), "status {status}");
    assert!(session_cookie(&res).is_none(), "a session was created");
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let body = res.text().await.unwrap();
    assert!(body.contains("<h1>"), "{body}");
    assert!(body.contains(says), "{says:?} not in {body}");
    assert_eq!(user_count(local).await, users_before, "an account was made");
    let events = refusals(local).await;
    assert!(
        events.last().is_some_and(|e| e.contains(reason)),
        "no refusal {reason:?} audited: {events:?}"
    );
}

#[tokio::test]
async fn a_signed_response_ends_in_a_session_of_the_linked_account() {
    let local = server(true, true).await;
    let key = idp_key();
    let mut browser = Browser::default();

    // SP metadata names the entity id and ACS the requests use.
    let res = local
        .get(&format!("/federation/saml/{PROVIDER}/metadata"), None)
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let md = res.text().await.unwrap();
    assert!(md.contains(&format!(
        "entityID=\"{}/federation/saml/{PROVIDER}/metadata\"",
        local.url
    )));
    assert!(md.contains(&format!("{}/federation/saml/{PROVIDER}/acs", local.url)));

    // The first sign-in creates the account (verified email, sign-up allowed) and links it.
    let res = sign_in_with(&local, &mut browser, &key, |_| {}).await;
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let cookie = session_cookie(&res).unwrap();
    let first = me(&local, &cookie).await;
    assert_eq!(first["user"]["email"], "ann@example.org");

    // A later sign-in of the same NameID, with a new assertion, reaches the linked account.
    let mut other = Browser::default();
    let res = sign_in_with(&local, &mut other, &key, |s| {
        s.assertion_id = "_assert-2".into();
        s.response_id = "_resp-2".into();
    })
    .await;
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let again = me(&local, &session_cookie(&res).unwrap()).await;
    assert_eq!(again["user"]["id"], first["user"]["id"]);
    assert_eq!(user_count(&local).await, 1);

    let state = &local.running().unwrap().state;
    let link = state.federation.link(idp::IDP, "u-4711").await.unwrap();
    assert_eq!(
        link.unwrap().user_id.to_string(),
        first["user"]["id"].as_str().unwrap()
    );
    let kinds: Vec<String> = audit_trail(&local)
        .await
        .into_iter()
        .map(|r| r.kind)
        .collect();
    for k in [
        "federation_started",
        "federated_user_created",
        "federated_sign_in",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} not in {kinds:?}");
    }
    assert!(refusals(&local).await.is_empty());
}

#[tokio::test]
async fn a_replayed_response_is_refused() {
    let local = server(true, true).await;
    let key = idp_key();
    let mut browser = Browser::default();
    let s = start(&local, &mut browser).await;
    let xml = idp::response(&spec(&local, &s.request_id), &key);
    let to = parked(&local, &xml, &s.relay_state).await;
    let res = browser.get(&local, &to).await;
    assert_eq!(res.status(), 303);
    let users = user_count(&local).await;

    // The same post again: its RelayState was used up.
    let res = post_acs(&local, &xml, &s.relay_state).await;
    assert_refused(
        &local,
        res,
        users,
        "already completed",
        "unknown or replayed state",
    )
    .await;
    // The same finish step again.
    let res = browser.get(&local, &to).await;
    assert_refused(
        &local,
        res,
        users,
        "already completed",
        "unknown or replayed state",
    )
    .await;
    // The same assertion, in a response to a new request: the shared replay cache knows its id.
    let s2 = start(&local, &mut browser).await;
    let xml2 = idp::response(
        &Spec {
            response_id: "_resp-2".into(),
            ..spec(&local, &s2.request_id)
        },
        &key,
    );
    let to = parked(&local, &xml2, &s2.relay_state).await;
    let res = browser.get(&local, &to).await;
    assert_refused(&local, res, users, "already used", "replayed assertion").await;
    // The old response for a new request: InResponseTo names another request.
    let s3 = start(&local, &mut browser).await;
    let to = parked(&local, &xml, &s3.relay_state).await;
    let res = browser.get(&local, &to).await;
    assert_refused(&local, res, users, "InResponseTo", "invalid assertion").await;
}

#[tokio::test]
async fn a_response_for_another_browser_is_refused() {
    let local = server(true, true).await;
    let key = idp_key();
    let (mut a, mut b) = (Browser::default(), Browser::default());
    let sa = start(&local, &mut a).await;
    let sb = start(&local, &mut b).await;
    let for_a = idp::response(&spec(&local, &sa.request_id), &key);

    // A's response, parked for A, finished in B (login CSRF): B is not the browser of A's
    // request.
    let to = parked(&local, &for_a, &sa.relay_state).await;
    let res = b.get(&local, &to).await;
    assert_refused(
        &local,
        res,
        0,
        "another browser",
        "state from another browser",
    )
    .await;
    // A's response posted with B's RelayState and finished in B: its InResponseTo is A's.
    let to = parked(&local, &for_a, &sb.relay_state).await;
    let res = b.get(&local, &to).await;
    assert_refused(&local, res, 0, "InResponseTo", "invalid assertion").await;
}

#[tokio::test]
async fn assertion_defects_are_refused() {
    let local = server(true, true).await;
    let key = idp_key();
    let mut browser = Browser::default();
    type Edit = fn(&mut Spec);
    let cases: [(&str, Edit, &str); 4] = [
        ("unsigned", |s| s.sign_assertion = false, "not signed"),
        (
            "wrong audience",
            |s| s.audience = "https://other-sp.example/metadata".into(),
            "wrong audience",
        ),
        (
            "expired",
            |s| {
                s.not_before -= 3_600;
                s.not_on_or_after -= 1_000;
                s.confirmation_not_on_or_after -= 1_000;
            },
            "expired",
        ),
        (
            "signed by another key",
            |_| {},
            "does not verify with any pinned key",
        ),
    ];
    let evil = Key::ec();
    for (i, (what, edit, says)) in cases.into_iter().enumerate() {
        let signer = if what == "signed by another key" {
            &evil
        } else {
            &key
        };
        let res = sign_in_with(&local, &mut browser, signer, |s| {
            s.assertion_id = format!("_assert-d{i}");
            edit(s);
        })
        .await;
        assert_refused(&local, res, 0, says, "invalid assertion").await;
    }
}

#[tokio::test]
async fn a_transient_name_id_creates_no_account() {
    let local = server(true, true).await;
    let mut browser = Browser::default();
    let res = sign_in_with(&local, &mut browser, &idp_key(), |s| {
        s.name_id_format = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient".into();
        s.name_id = "_tr4ns13nt".into();
    })
    .await;
    assert_refused(&local, res, 0, "transient NameID", "transient subject").await;
    let state = &local.running().unwrap().state;
    assert!(
        state
            .federation
            .link(idp::IDP, "_tr4ns13nt")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn an_unverified_email_does_not_link_an_existing_password_account() {
    // emails_verified = false: the IdP's address does not vouch for the local account.
    let local = server(false, true).await;
    local
        .create_user("ann@example.org", PASSWORD)
        .await
        .unwrap();
    let mut browser = Browser::default();
    let res = sign_in_with(&local, &mut browser, &idp_key(), |_| {}).await;
    assert_refused(
        &local,
        res,
        1,
        "does not confirm that the address is verified",
        "email not verified for an existing account",
    )
    .await;
    let state = &local.running().unwrap().state;
    assert!(
        state
            .federation
            .link(idp::IDP, "u-4711")
            .await
            .unwrap()
            .is_none()
    );
    // Another NameID with the same address: still not linked to the password account.
    let mut browser = Browser::default();
    let res = sign_in_with(&local, &mut browser, &idp_key(), |s| {
        s.assertion_id = "_assert-2".into();
        s.name_id = "u-other".into();
        s.name_id_format = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent".into();
    })
    .await;
    assert_refused(
        &local,
        res,
        1,
        "does not confirm",
        "email not verified for an existing account",
    )
    .await;
}

#[tokio::test]
async fn the_acs_takes_a_cross_site_post_but_finish_needs_the_binding_cookie() {
    let local = server(true, true).await;
    let key = idp_key();
    let mut browser = Browser::default();
    let s = start(&local, &mut browser).await;
    let xml = idp::response(&spec(&local, &s.request_id), &key);
    // Cross-site POST with a foreign Origin: accepted by the ACS (and only there).
    let to = parked(&local, &xml, &s.relay_state).await;
    // The finish step without the binding cookie (as a cross-site POST would arrive).
    let mut cookieless = Browser::default();
    let res = cookieless.get(&local, &to).await;
    assert_refused(
        &local,
        res,
        0,
        "another browser",
        "state from another browser",
    )
    .await;

    // Every other POST still passes the origin check.
    let res = local
        .client
        .post(format!("{}/federation/link", local.url))
        .header("origin", "https://idp.example.org")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("password=x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn saml_is_off_without_the_switch_and_names_are_unique() {
    let local = TestServer::start_with(|f: &mut FileConfig| {
        f.federation = Some(FederationFile {
            saml: Some(vec![provider(true, true)]),
            ..FederationFile::default()
        });
    })
    .await
    .unwrap();
    for path in ["metadata", "start"] {
        let res = local
            .get(&format!("/federation/saml/{PROVIDER}/{path}"), None)
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{path}");
    }
    let res = local
        .client
        .post(format!("{}/federation/saml/{PROVIDER}/acs", local.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("SAMLResponse=PHg%2BPC94Pg%3D%3D")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error());
    assert!(session_cookie(&res).is_none());

    // A SAML provider may not take an OpenID provider's name.
    let clash = TestServer::start_with(|f: &mut FileConfig| {
        f.federation = Some(FederationFile {
            providers: Some(vec![crate::federation::provider_file(
                "https://op.example.com",
                "secret",
                false,
            )]),
            enable_saml: Some(true),
            saml: Some(vec![provider(true, true)]),
        });
    })
    .await;
    let err = clash.err().unwrap().to_string();
    assert!(err.contains("already used by another provider"), "{err}");
}

#[tokio::test]
async fn the_idp_can_be_configured_from_its_metadata_file() {
    let cert: String = std::fs::read_to_string(data("idp-ec.cert.pem"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("idp.xml");
    std::fs::write(
        &file,
        format!(
            r#"<?xml version="1.0"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{}">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{SSO_URL}"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>"#,
            idp::IDP
        ),
    )
    .unwrap();
    let path = file.display().to_string();
    let local = TestServer::start_with(move |f: &mut FileConfig| {
        f.federation = Some(FederationFile {
            enable_saml: Some(true),
            saml: Some(vec![SamlProviderFile {
                name: PROVIDER.into(),
                metadata_file: Some(path.clone()),
                emails_verified: Some(true),
                allow_sign_up: Some(true),
                ..SamlProviderFile::default()
            }]),
            ..FederationFile::default()
        });
    })
    .await
    .unwrap();
    let mut browser = Browser::default();
    let res = sign_in_with(&local, &mut browser, &idp_key(), |_| {}).await;
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let cookie = session_cookie(&res).unwrap();
    assert_eq!(
        me(&local, &cookie).await["user"]["email"],
        "ann@example.org"
    );
    // A key the metadata does not list is not believed.
    let res = sign_in_with(&local, &mut browser, &Key::ec(), |s| {
        s.assertion_id = "_assert-2".into();
    })
    .await;
    assert_refused(&local, res, 1, "pinned key", "invalid assertion").await;
}

#[tokio::test]
async fn incomplete_or_ambiguous_provider_configurations_are_refused() {
    let cases: [(SamlProviderFile, &str); 3] = [
        (
            SamlProviderFile {
                certificate_file: None,
                ..provider(false, false)
            },
            "give either metadata_file, or metadata_url, or idp_entity_id, sso_url and certificate_file",
        ),
        (
            SamlProviderFile {
                metadata_file: Some(data("idp-ec.cert.pem")),
                ..provider(false, false)
            },
            "give either metadata_file",
        ),
        (
            SamlProviderFile {
                sso_url: Some("http://idp.example.org/sso".into()),
                ..provider(false, false)
            },
            "must be an https URL",
        ),
    ];
    for (p, says) in cases {
        let p = std::sync::Mutex::new(Some(p));
        let res = TestServer::start_with(move |f: &mut FileConfig| {
            f.federation = Some(FederationFile {
                enable_saml: Some(true),
                saml: p.lock().unwrap().take().map(|p| vec![p]),
                ..FederationFile::default()
            });
        })
        .await;
        let err = res.err().unwrap().to_string();
        assert!(err.contains(says), "{says:?} not in {err}");
    }
}

#[tokio::test]
async fn the_sign_in_page_offers_the_provider_and_the_sign_in_returns_where_asked() {
    let local = server(true, true).await;
    let page = local
        .get("/login?return_to=%2Faccount%2Fsessions", None)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let href =
        format!("href=\"/federation/saml/{PROVIDER}/start?return_to=%2Faccount%2Fsessions\"");
    assert!(page.contains(&href), "{href} not in {page}");
    assert!(page.contains("Corp SAML"));

    let mut browser = Browser::default();
    let res = browser
        .get(
            &local,
            &format!("/federation/saml/{PROVIDER}/start?return_to=%2Faccount%2Fsessions"),
        )
        .await;
    assert_eq!(res.status(), 303);
    let (_, started) = request_of(&location(&res));
    let xml = idp::response(&spec(&local, &started.request_id), &idp_key());
    let finish = parked(&local, &xml, &started.relay_state).await;
    let res = browser.get(&local, &finish).await;
    assert_eq!(res.status(), 303);
    assert!(session_cookie(&res).is_some());
    assert_eq!(location(&res), "/account/sessions");
}

#[tokio::test]
async fn a_verified_email_links_an_existing_account_only_with_its_password() {
    let local = server(true, false).await;
    let ann = local
        .create_user("ann@example.org", PASSWORD)
        .await
        .unwrap();
    let mut browser = Browser::default();
    let res = sign_in_with(&local, &mut browser, &idp_key(), |_| {}).await;
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    assert_eq!(location(&res), "/federation/link");
    assert!(
        session_cookie(&res).is_none(),
        "no session before the password"
    );
    let state = &local.running().unwrap().state;
    assert!(
        state
            .federation
            .user_links(&ann.id)
            .await
            .unwrap()
            .is_empty()
    );

    let page = browser.get(&local, "/federation/link").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Corp SAML"), "{html}");
    let csrf = html
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let post = |password: &'static str| {
        local
            .client
            .post(format!("{}/federation/link", local.url))
            .header("origin", &local.url)
            .header("cookie", browser.cookies.join("; "))
            .form(&[("password", password), ("csrf_token", csrf.as_str())])
            .send()
    };
    let wrong = post("not the right password at all").await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(session_cookie(&wrong).is_none());
    assert!(
        state
            .federation
            .user_links(&ann.id)
            .await
            .unwrap()
            .is_empty()
    );
    let ok = post(PASSWORD).await.unwrap();
    assert_eq!(ok.status(), 303);
    let cookie = session_cookie(&ok).unwrap();
    assert_eq!(me(&local, &cookie).await["user"]["id"], ann.id.to_string());
    let links = state.federation.user_links(&ann.id).await.unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(
        (links[0].issuer.as_str(), links[0].subject.as_str()),
        (idp::IDP, "u-4711")
    );
}
