//! Pushed authorization requests (RFC 9126): only the pushed parameters count, a `request_uri`
//! serves one authorization of its own client within its lifetime, and a deployment that
//! requires pushed requests refuses the rest.

use super::super::OAuthError;
use super::super::authorize::AuthorizeDecision;
use super::super::par::REQUEST_URI_PREFIX;
use super::authorize::{param, params, redirected};
use super::*;

impl Rig {
    /// Pushes the well-formed request of `client` (with `extra` parameters); its `request_uri`.
    async fn push(&self, client: &Client, extra: &[(&str, &str)]) -> Result<String, OAuthError> {
        let (p, _) = params(client, extra);
        let pushed = self
            .oauth
            .push_authorization_request(client, p, None)
            .await?;
        assert_eq!(pushed.expires_in, 60);
        Ok(pushed.request_uri)
    }

    /// The authorization endpoint called with `query` by the signed-in browser.
    async fn authorize(&self, query: &[(&str, &str)]) -> AuthorizeDecision {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in query {
            ser.append_pair(k, v);
        }
        let raw = ser.finish();
        let p = AuthorizeParams::from_query(&raw);
        self.oauth
            .decide(&p, &raw, Some(self.signed_in()))
            .await
            .unwrap()
    }
}

fn refused(d: &AuthorizeDecision) -> bool {
    matches!(d, AuthorizeDecision::Refused(_))
}

#[tokio::test]
async fn a_pushed_request_serves_one_authorization_with_only_its_own_parameters() {
    let rig = Rig::new().await;
    let client = rig
        .client("spa", &[GrantType::AuthorizationCode], true)
        .await;
    let uri = rig.push(&client, &[("state", "pushed")]).await.unwrap();
    assert!(uri.starts_with(REQUEST_URI_PREFIX), "{uri}");

    // What the query adds beside the request_uri is ignored (RFC 9126 §4).
    let d = rig
        .authorize(&[
            ("client_id", "spa"),
            ("request_uri", &uri),
            ("redirect_uri", "https://evil.example/cb"),
            ("state", "forged"),
        ])
        .await;
    let back = redirected(d);
    assert_eq!(param(&back, "state"), Some("pushed"));
    let code = param(&back, "code").expect("a code");
    assert!(rig.redeem(&client, code).await.is_ok());

    // Used once: a second authorization with it is refused.
    let again = rig
        .authorize(&[("client_id", "spa"), ("request_uri", &uri)])
        .await;
    assert!(refused(&again), "{again:?}");
}

#[tokio::test]
async fn a_request_uri_is_its_own_clients_and_expires() {
    let rig = Rig::new().await;
    let client = rig
        .client("spa", &[GrantType::AuthorizationCode], true)
        .await;
    let other = rig
        .client("other", &[GrantType::AuthorizationCode], true)
        .await;
    let uri = rig.push(&client, &[]).await.unwrap();
    for query in [
        vec![("client_id", "other"), ("request_uri", uri.as_str())],
        vec![("request_uri", uri.as_str())],
        vec![
            ("client_id", "spa"),
            ("request_uri", "urn:ietf:params:oauth:request_uri:x"),
        ],
        vec![
            ("client_id", "spa"),
            ("request_uri", "https://evil.example/req"),
        ],
    ] {
        let d = rig.authorize(&query).await;
        assert!(refused(&d), "{query:?}: {d:?}");
    }
    assert_eq!(other.id, "other");

    // Not brought to the authorization endpoint within 60 s: gone.
    let late = rig.push(&client, &[]).await.unwrap();
    rig.clock.advance(61);
    let d = rig
        .authorize(&[("client_id", "spa"), ("request_uri", &late)])
        .await;
    assert!(refused(&d), "{d:?}");
}

#[tokio::test]
async fn a_browser_that_arrived_in_time_may_sign_in_and_consent_for_ten_minutes() {
    let rig = Rig::new().await;
    let client = rig.web_client("web").await;
    let uri = rig.push(&client, &[]).await.unwrap();
    let query = [("client_id", "web"), ("request_uri", uri.as_str())];
    rig.clock.advance(30);
    let d = rig.authorize(&query).await;
    assert!(matches!(d, AuthorizeDecision::Consent(_)), "{d:?}");
    // The consent form posts the same query back, minutes later.
    rig.clock.advance(500);
    let p = AuthorizeParams::from_query(&format!(
        "client_id=web&request_uri={}",
        form_urlencoded::byte_serialize(uri.as_bytes()).collect::<String>()
    ));
    let d = rig
        .oauth
        .decide_consent(&p, rig.signed_in(), false)
        .await
        .unwrap();
    assert_eq!(param(&redirected(d), "error"), Some("access_denied"));
    // The refusal took it.
    let d = rig.authorize(&query).await;
    assert!(refused(&d), "{d:?}");

    // Past ten minutes after the push, even an opened request is gone.
    let uri = rig.push(&client, &[]).await.unwrap();
    let query = [("client_id", "web"), ("request_uri", uri.as_str())];
    assert!(!refused(&rig.authorize(&query).await));
    rig.clock.advance(601);
    assert!(refused(&rig.authorize(&query).await));
}

#[tokio::test]
async fn a_pushed_request_is_validated_as_the_authorization_endpoint_would() {
    let rig = Rig::new().await;
    let client = rig.web_client("web").await;
    let rejected = |r: Result<String, OAuthError>| match r {
        Err(OAuthError::Rejected { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    };
    for (extra, code) in [
        (
            vec![("redirect_uri", "https://evil.example/cb")],
            "invalid_request",
        ),
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (vec![("scope", "openid admin")], "invalid_scope"),
        (vec![("client_id", "another")], "invalid_request"),
        (
            vec![("request_uri", "urn:ietf:params:oauth:request_uri:abc")],
            "invalid_request",
        ),
    ] {
        assert_eq!(rejected(rig.push(&client, &extra).await), code, "{extra:?}");
    }
    let (mut p, _) = params(&client, &[]);
    p.has_request_object = true;
    assert!(matches!(
        rig.oauth.push_authorization_request(&client, p, None).await,
        Err(OAuthError::Rejected {
            code: "request_not_supported",
            ..
        })
    ));
}

#[tokio::test]
async fn a_deployment_that_requires_pushed_requests_refuses_the_others() {
    let rig = Rig::with(|c| c.require_pushed_authorization_requests = true).await;
    let client = rig
        .client("spa", &[GrantType::AuthorizationCode], true)
        .await;
    let d = rig.decide(&client, &[], true).await;
    let back = redirected(d);
    assert_eq!(param(&back, "error"), Some("invalid_request"));
    assert_eq!(param(&back, "code"), None);

    let uri = rig.push(&client, &[]).await.unwrap();
    let d = rig
        .authorize(&[("client_id", "spa"), ("request_uri", &uri)])
        .await;
    assert!(param(&redirected(d), "code").is_some());
    assert_eq!(
        rig.oauth.issuer().discovery()["require_pushed_authorization_requests"],
        true
    );
}

#[tokio::test]
async fn a_client_that_requires_pushed_requests_gets_nothing_else() {
    let rig = Rig::new().await;
    let mut strict = rig
        .client("template", &[GrantType::AuthorizationCode], true)
        .await;
    strict.id = "strict".into();
    strict.require_pushed_authorization_requests = true;
    let strict = rig.oauth.register_client(strict, false).await.unwrap().0;
    let relaxed = rig
        .client("relaxed", &[GrantType::AuthorizationCode], true)
        .await;

    let back = redirected(rig.decide(&strict, &[], true).await);
    assert_eq!(param(&back, "error"), Some("invalid_request"));
    assert!(param(&redirected(rig.decide(&relaxed, &[], true).await), "code").is_some());

    let uri = rig.push(&strict, &[]).await.unwrap();
    let d = rig
        .authorize(&[("client_id", "strict"), ("request_uri", &uri)])
        .await;
    assert!(param(&redirected(d), "code").is_some());
}
