//! SAML sign-in in a real browser: the test IdP's page on another site posts the response
//! cross-site to the ACS, and the same-site finish step ends on the account page.

use authx_server::config::{FederationFile, FileConfig, SamlProviderFile};
use authx_testkit::TestServer;

use crate::saml::{PROVIDER, idp_key, provider, refusals, request_of};
use crate::saml_idp::{self as idp, Key, Spec};

/// The test IdP as a web server on `localhost` (another site than the server's `127.0.0.1`):
/// `/sso` reads the AuthnRequest and answers the page an IdP answers, a form that posts the
/// signed response to the ACS the request names.
async fn idp_server() -> String {
    async fn sso(
        axum::extract::State(key): axum::extract::State<std::sync::Arc<Key>>,
        uri: axum::http::Uri,
    ) -> axum::response::Html<String> {
        let url = format!("/sso?{}", uri.query().unwrap_or_default());
        let (xml, started) = request_of(&url);
        let attr = |name: &str| {
            let at = xml.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
            xml[at..at + xml[at..].find('"').unwrap()].to_owned()
        };
        let acs = attr("AssertionConsumerServiceURL");
        let at = xml.find("Issuer>").unwrap() + "Issuer>".len();
        let sp = xml[at..at + xml[at..].find('<').unwrap()].to_owned();
        let now = authx_core::Clock::now(&authx_core::clock::SystemClock).secs();
        let spec = Spec {
            destination: acs.clone(),
            recipient: acs.clone(),
            audience: sp,
            in_response_to: Some(started.request_id),
            not_before: now - 60,
            not_on_or_after: now + 300,
            confirmation_not_on_or_after: now + 300,
            ..Spec::default()
        };
        let response = idp::b64(idp::response(&spec, &key).as_bytes());
        axum::response::Html(format!(
            r#"<!doctype html><title>IdP</title><form id="post" method="post" action="{acs}"><input type="hidden" name="SAMLResponse" value="{response}"><input type="hidden" name="RelayState" value="{}"><button id="continue" type="submit">Continue</button></form>"#,
            started.relay_state
        ))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new()
        .route("/sso", axum::routing::get(sso))
        .with_state(std::sync::Arc::new(idp_key()));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://localhost:{port}/sso")
}

/// In Chromium: the button, the IdP's page, its cross-site POST to the ACS (which gets no
/// cookie), the 303 to `finish` (which gets the `SameSite=Lax` binding cookie), the account.
#[tokio::test]
async fn a_browser_signs_in_through_the_idp_page() {
    let Some(browser) = authx_testkit::browser::Browser::start().await.unwrap() else {
        return;
    };
    let sso_url = idp_server().await;
    let local = TestServer::start_with(move |f: &mut FileConfig| {
        f.federation = Some(FederationFile {
            enable_saml: Some(true),
            saml: Some(vec![SamlProviderFile {
                sso_url: Some(sso_url.clone()),
                insecure_allow_http_loopback: Some(true),
                ..provider(true, true)
            }]),
            ..FederationFile::default()
        });
    })
    .await
    .unwrap();
    use authx_testkit::browser::fantoccini::Locator;
    let client = &browser.client;
    client.goto(&format!("{}/login", local.url)).await.unwrap();
    client
        .find(Locator::Css(&format!("a#federation-{PROVIDER}")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .for_element(Locator::Css("button#continue"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let account = format!("{}/account", local.url);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let url = client.current_url().await.unwrap().to_string();
        if url == account {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still at {url}: {:.2000}",
            client.source().await.unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let shown = client
        .find(Locator::Css("#email"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(shown, "ann@example.org");
    assert!(refusals(&local).await.is_empty());
    browser.close().await.unwrap();
    local.stop().await;
}
