//! Pushed authorization requests (RFC 9126) over HTTP: the client pushes, the browser brings
//! only `client_id` and `request_uri`, and the code flow ends as usual; every misuse is refused.

use authx_core::oauth::pkce;
use authx_server::config::OAuthFile;
use serde_json::Value;

use crate::oidc::{Op, REDIRECT, VERIFIER, exchange, op_with, query_param, urlencode};

/// The form of a well-formed authorization request of `app`, with `extra` fields.
fn request(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, String)> {
    let mut form = vec![
        ("response_type", "code".to_owned()),
        ("redirect_uri", REDIRECT.to_owned()),
        ("scope", "openid email".to_owned()),
        ("state", "pushed state".to_owned()),
        ("nonce", "n-1".to_owned()),
        ("code_challenge", pkce::s256(VERIFIER)),
        ("code_challenge_method", "S256".to_owned()),
    ];
    // An extra field replaces the default of its name.
    for (k, v) in extra {
        match form.iter_mut().find(|(n, _)| n == k) {
            Some(slot) => slot.1 = (*v).to_owned(),
            None => form.push((k, (*v).to_owned())),
        }
    }
    form
}

async fn push(op: &Op, secret: &str, form: &[(&str, String)]) -> reqwest::Response {
    op.server
        .client
        .post(format!("{}/oauth2/par", op.server.url))
        .basic_auth("app", Some(secret))
        .form(form)
        .send()
        .await
        .unwrap()
}

/// Pushes a well-formed request and returns its `request_uri`.
async fn pushed(op: &Op) -> String {
    let res = push(op, &op.secret, &request(&[])).await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["expires_in"], 60);
    body["request_uri"].as_str().unwrap().to_owned()
}

/// The signed-in browser at the authorization endpoint with `query`.
async fn authorize(op: &Op, query: &str) -> reqwest::Response {
    op.server
        .client
        .get(format!("{}/oauth2/authorize?{query}", op.server.url))
        .header("cookie", &op.cookie)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_pushed_request_runs_the_code_flow_once() {
    let op = op_with(|_| {}).await;
    let uri = pushed(&op).await;
    let query = format!("client_id=app&request_uri={}", urlencode(&uri));
    // What the browser adds is ignored: only the pushed parameters count.
    let res = authorize(
        &op,
        &format!("{query}&state=forged&redirect_uri=https%3A%2F%2Fevil.example%2Fcb"),
    )
    .await;
    assert_eq!(res.status(), 302);
    let loc = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(loc.starts_with(REDIRECT), "{loc}");
    assert_eq!(query_param(&loc, "state").as_deref(), Some("pushed state"));
    let code = query_param(&loc, "code").expect("a code");
    assert_eq!(exchange(&op, &code).await.status(), 200);

    // The request_uri served its authorization: a second use is a page, never a redirect.
    let again = authorize(&op, &query).await;
    assert_eq!(again.status(), 400);
    assert!(again.headers().get("location").is_none());
}

#[tokio::test]
async fn the_par_endpoint_refuses_bad_clients_and_bad_requests() {
    let op = op_with(|_| {}).await;
    let res = push(&op, "wrong secret", &request(&[])).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );

    for (extra, code) in [
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (vec![("scope", "openid admin")], "invalid_scope"),
        (
            vec![("request_uri", "urn:ietf:params:oauth:request_uri:abc")],
            "invalid_request",
        ),
        (
            vec![("request", "eyJhbGciOiJub25lIn0.e30.")],
            "request_not_supported",
        ),
    ] {
        let res = push(&op, &op.secret, &request(&extra)).await;
        assert_eq!(res.status(), 400, "{extra:?}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], code, "{extra:?}: {body}");
    }
    // A redirect URI the client did not register.
    let res = push(
        &op,
        &op.secret,
        &request(&[("redirect_uri", "https://evil.example/cb")]),
    )
    .await;
    assert_eq!(res.status(), 400);

    // A request_uri that was never issued, or another client's name beside it.
    let uri = pushed(&op).await;
    for query in [
        format!("client_id=other&request_uri={}", urlencode(&uri)),
        "client_id=app&request_uri=urn%3Aietf%3Aparams%3Aoauth%3Arequest_uri%3Anope".to_owned(),
    ] {
        let res = authorize(&op, &query).await;
        assert_eq!(res.status(), 400, "{query}");
        assert!(res.headers().get("location").is_none());
    }
}

#[tokio::test]
async fn a_deployment_that_requires_pushed_requests_says_so_and_refuses_the_others() {
    let op = op_with(|c| {
        c.oauth = Some(OAuthFile {
            require_pushed_authorization_requests: Some(true),
            ..OAuthFile::default()
        });
    })
    .await;
    let d: Value = op
        .server
        .get("/.well-known/openid-configuration", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        d["pushed_authorization_request_endpoint"],
        format!("{}/oauth2/par", op.server.url)
    );
    assert_eq!(d["require_pushed_authorization_requests"], true);

    let plain: Vec<String> = request(&[])
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect();
    let res = authorize(&op, &format!("client_id=app&{}", plain.join("&"))).await;
    assert_eq!(res.status(), 302);
    let loc = res.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        query_param(&loc, "error").as_deref(),
        Some("invalid_request")
    );
    assert_eq!(query_param(&loc, "code"), None);

    let uri = pushed(&op).await;
    let res = authorize(
        &op,
        &format!("client_id=app&request_uri={}", urlencode(&uri)),
    )
    .await;
    let loc = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(query_param(&loc, "code").is_some(), "{loc}");
}
