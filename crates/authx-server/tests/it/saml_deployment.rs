//! SAML across a deployment: instances on one database share the SP key the first one made
//! (and one with another key-encryption key cannot open it), and IdP metadata fetched from a
//! URL at start is pinned for the life of the process.

use std::sync::{Arc, Mutex};

use authx_server::config::{FederationFile, FileConfig, OAuthFile, SamlProviderFile};
use authx_testkit::services::SharedServices;
use authx_testkit::{TestServer, session_cookie};

use crate::saml::{
    Browser, PROVIDER, SSO_URL, assert_refused, data, idp_key, location, me, param, provider,
    sign_in_with,
};
use crate::saml_idp::{self as idp, Key};

/// SAML switched on with the one provider `make` describes (called at every (re)start).
fn saml(
    make: impl Fn() -> SamlProviderFile + Send + Sync + 'static,
) -> impl Fn(&mut FileConfig) + Send + Sync + 'static {
    move |f: &mut FileConfig| {
        f.federation = Some(FederationFile {
            enable_saml: Some(true),
            saml: Some(vec![make()]),
            ..FederationFile::default()
        });
    }
}

/// The certificate our metadata publishes for encryption (base64, as in the document).
async fn published_certificate(local: &TestServer) -> String {
    let md = local
        .get(&format!("/federation/saml/{PROVIDER}/metadata"), None)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = md.find(r#"use="encryption""#).unwrap();
    let start = md[at..].find("<ds:X509Certificate>").unwrap() + at + 20;
    let end = md[start..].find('<').unwrap() + start;
    md[start..end].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_of_one_deployment_share_the_key_the_first_one_made() {
    let Some(services) = SharedServices::acquire(
        "saml_deployment::instances_of_one_deployment_share_the_key_the_first_one_made",
    )
    .await
    else {
        return;
    };
    let instance = || {
        let shared = services.configure_without_redis();
        let saml = saml(|| provider(true, true));
        TestServer::start_on(&services.database_url, move |f| {
            shared(f);
            saml(f);
        })
    };
    // Two instances start at once on an empty key table: one key lands, both use it.
    let (a, b) = tokio::join!(instance(), instance());
    let (a, b) = (a.unwrap(), b.unwrap());
    let cert = published_certificate(&a).await;
    assert_eq!(published_certificate(&b).await, cert);
    let c = instance().await.unwrap();
    assert_eq!(published_certificate(&c).await, cert);
    // One of them made it, and says so once in the trail they share.
    let _ = crate::email_change::audit_trail(&b).await;
    let _ = crate::email_change::audit_trail(&c).await;
    let made = crate::email_change::audit_trail(&a)
        .await
        .into_iter()
        .filter(|r| r.kind == "saml_sp_key_created")
        .count();
    assert_eq!(made, 1);

    // Another key-encryption key cannot open the stored key: the instance does not start.
    let saml_only = saml(|| provider(true, true));
    let err = TestServer::start_on(&services.database_url, move |f| {
        saml_only(f);
        f.oauth
            .get_or_insert_with(OAuthFile::default)
            .key_encryption_key = Some("ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=".into());
    })
    .await
    .err()
    .expect("started with another key-encryption key");
    let err = format!("{err:#}");
    assert!(
        err.contains("cannot be decrypted with the configured key-encryption key"),
        "{err}"
    );
    for s in [a, b, c] {
        s.stop().await;
    }
    services.cleanup().await;
}

/// IdP metadata naming `cert_file`'s certificate, asking for signed requests.
fn idp_metadata(cert_file: &str) -> String {
    let cert: String = std::fs::read_to_string(data(cert_file))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    format!(
        r#"<?xml version="1.0"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{}">
  <md:IDPSSODescriptor WantAuthnRequestsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{SSO_URL}"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>"#,
        idp::IDP
    )
}

/// A plain HTTP server on loopback answering `GET /metadata` with whatever `body` holds now,
/// and counting the fetches.
async fn metadata_server(body: Arc<Mutex<String>>, fetches: Arc<Mutex<u32>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().route(
        "/metadata",
        axum::routing::get(move || {
            let body = Arc::clone(&body);
            let fetches = Arc::clone(&fetches);
            async move {
                *fetches.lock().unwrap() += 1;
                let text = body.lock().unwrap().clone();
                ([("content-type", "application/samlmetadata+xml")], text)
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://127.0.0.1:{port}/metadata")
}

fn by_url(url: &str) -> SamlProviderFile {
    SamlProviderFile {
        name: PROVIDER.into(),
        metadata_url: Some(url.into()),
        emails_verified: Some(true),
        allow_sign_up: Some(true),
        insecure_allow_http_loopback: Some(true),
        ..SamlProviderFile::default()
    }
}

#[tokio::test]
async fn metadata_from_a_url_is_fetched_once_at_start_and_its_keys_stay_pinned() {
    let body = Arc::new(Mutex::new(idp_metadata("idp-ec.cert.pem")));
    let fetches = Arc::new(Mutex::new(0));
    let url = metadata_server(Arc::clone(&body), Arc::clone(&fetches)).await;
    let local = {
        let url = url.clone();
        TestServer::start_with(saml(move || by_url(&url)))
            .await
            .unwrap()
    };
    assert_eq!(*fetches.lock().unwrap(), 1);

    // The metadata asks for signed requests: they are signed.
    let mut browser = Browser::default();
    let res = browser
        .get(&local, &format!("/federation/saml/{PROVIDER}/start"))
        .await;
    assert!(param(&location(&res), "Signature").is_some());
    let res = sign_in_with(&local, &mut browser, &idp_key(), |_| {}).await;
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    assert_eq!(
        me(&local, &session_cookie(&res).unwrap()).await["user"]["email"],
        "ann@example.org"
    );

    // The IdP now publishes another key: the running server keeps the pinned one until it
    // restarts, and signs in nobody with the new key.
    *body.lock().unwrap() = idp_metadata("idp-rsa.cert.pem");
    let rsa = Key::from_pem(&std::fs::read_to_string(data("idp-rsa.key.pem")).unwrap());
    let res = sign_in_with(&local, &mut browser, &rsa, |s| {
        s.assertion_id = "_assert-2".into()
    })
    .await;
    assert_refused(&local, res, 1, "pinned key", "invalid assertion").await;
    assert_eq!(*fetches.lock().unwrap(), 1, "fetched again while running");

    // After a restart, the new key is the pinned one.
    let local = local.restart().await.unwrap();
    assert_eq!(*fetches.lock().unwrap(), 2);
    let res = sign_in_with(&local, &mut browser, &rsa, |s| {
        s.assertion_id = "_assert-3".into()
    })
    .await;
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
}

#[tokio::test]
async fn metadata_urls_that_cannot_be_used_stop_the_start() {
    let body = Arc::new(Mutex::new(idp_metadata("idp-ec.cert.pem")));
    let url = metadata_server(Arc::clone(&body), Arc::new(Mutex::new(0))).await;
    type Make = Box<dyn Fn() -> SamlProviderFile + Send + Sync>;
    let u = url.clone();
    let cases: Vec<(Make, &str)> = vec![
        // Plain http is for loopback with the explicit insecure switch only.
        (
            Box::new(move || SamlProviderFile {
                insecure_allow_http_loopback: None,
                ..by_url(&u)
            }),
            "must be an https URL",
        ),
        (
            Box::new(|| by_url("http://idp.example.org/metadata")),
            "must be an https URL",
        ),
        // Nothing listens there.
        (
            Box::new(|| by_url("http://127.0.0.1:9/metadata")),
            "cannot fetch the IdP metadata",
        ),
        (
            Box::new({
                let u = url.replace("/metadata", "/missing");
                move || by_url(&u)
            }),
            "the IdP answered 404",
        ),
        // The metadata asks for signed requests and the configuration says no.
        (
            Box::new({
                let u = url.clone();
                move || SamlProviderFile {
                    sign_authn_requests: Some(false),
                    ..by_url(&u)
                }
            }),
            "asks for signed AuthnRequests",
        ),
        // Both a URL and a file.
        (
            Box::new({
                let u = url.clone();
                move || SamlProviderFile {
                    metadata_file: Some(data("idp-ec.cert.pem")),
                    ..by_url(&u)
                }
            }),
            "give either metadata_file, or metadata_url",
        ),
    ];
    for (make, says) in cases {
        let err = TestServer::start_with(saml(make)).await.err().unwrap();
        let err = format!("{err:#}");
        assert!(err.contains(says), "{says:?} not in {err}");
    }
    // Not metadata at all.
    *body.lock().unwrap() = "<html>not metadata</html>".into();
    let err = TestServer::start_with(saml(move || by_url(&url)))
        .await
        .err()
        .unwrap();
    let err = format!("{err:#}");
    assert!(err.contains("the metadata is not usable"), "{err}");
}
