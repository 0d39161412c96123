//! `private_key_jwt` client authentication (RFC 7523 §2.2, OIDC Core §9) over HTTP: a client
//! signs an assertion with its own key instead of sending a secret, at the token, PAR,
//! introspection and revocation endpoints; keys inline or fetched from its `jwks_uri`; and each
//! attack on the assertion tried and refused.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use authx_core::Clock as _;
use authx_core::oauth::client::{Client, GrantType, TokenEndpointAuthMethod};
use authx_core::oauth::jwt::sign;
use authx_core::oauth::keys::{KeyEncryptor, Signer, SigningAlg, generate};
use authx_server::config::{FileConfig, OAuthFile};
use authx_testkit::TestServer;
use authx_testkit::services::SharedServices;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const API: &str = "https://api.example.com";

/// A fresh key pair of `alg`.
fn key(alg: SigningAlg) -> Signer {
    let enc = KeyEncryptor::new(&[7u8; 32]).unwrap();
    let k = generate(alg, &enc, authx_core::Timestamp(0)).unwrap();
    let pkcs8 = enc.open(&k.kid, &k.private_key_encrypted).unwrap();
    Signer::from_pkcs8(alg, &k.kid, &pkcs8).unwrap()
}

fn jwks(keys: &[&Signer]) -> Value {
    json!({"keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>()})
}

/// A `private_key_jwt` client `id` allowed client credentials (and codes), with its keys
/// inline or at `jwks_uri`.
fn client(id: &str, jwks: Option<Value>, jwks_uri: Option<String>) -> Client {
    let mut c = crate::oidc::client(
        id,
        &[
            GrantType::ClientCredentials,
            GrantType::AuthorizationCode,
            GrantType::RefreshToken,
        ],
        true,
    );
    c.token_endpoint_auth_method = TokenEndpointAuthMethod::PrivateKeyJwt;
    c.jwks = jwks.map(|j| j.to_string());
    c.jwks_uri = jwks_uri;
    c
}

struct Rp {
    server: TestServer,
    key: Signer,
}

/// A server with the API and a `private_key_jwt` client `app` whose ES256 key is inline.
async fn rp_with(customize: impl Fn(&mut FileConfig) + Send + Sync + 'static) -> Rp {
    let server = TestServer::start_with(customize).await.unwrap();
    setup(server).await
}

async fn setup(server: TestServer) -> Rp {
    let key = key(SigningAlg::Es256);
    let state = &server.running().unwrap().state;
    authx_server::web::api::register_resource(state, API.into(), vec!["read".into()])
        .await
        .unwrap();
    let (registered, secret) = state
        .oauth
        .register_client(client("app", Some(jwks(&[&key])), None), true)
        .await
        .unwrap();
    assert!(secret.is_none(), "a private_key_jwt client gets no secret");
    assert!(registered.is_confidential());
    Rp { server, key }
}

async fn rp() -> Rp {
    rp_with(|_| {}).await
}

static JTI: AtomicU64 = AtomicU64::new(0);

fn fresh_jti() -> String {
    format!("jti-{}", JTI.fetch_add(1, Ordering::Relaxed))
}

/// The claims of a good assertion of `app` for `server`'s token endpoint.
fn claims(server: &TestServer) -> Value {
    let now = server.clock.now().secs();
    json!({
        "iss": "app",
        "sub": "app",
        "aud": format!("{}/oauth2/token", server.url),
        "iat": now,
        "exp": now + 60,
        "jti": fresh_jti(),
    })
}

fn assertion(key: &Signer, claims: &Value) -> String {
    sign(key, "JWT", claims).unwrap()
}

/// A client-credentials request authenticated by `assertion` (and `extra` fields).
async fn token(server: &TestServer, assertion: &str, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("scope", "read"),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
    ];
    form.extend_from_slice(extra);
    server
        .client
        .post(format!("{}/oauth2/token", server.url))
        .form(&form)
        .send()
        .await
        .unwrap()
}

async fn refused(res: reqwest::Response) {
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client", "{body}");
}

#[tokio::test]
async fn a_signed_assertion_gets_a_token_once() {
    let rp = rp().await;
    let a = assertion(&rp.key, &claims(&rp.server));
    let res = token(&rp.server, &a, &[("client_id", "app")]).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap().to_owned();

    // The same assertion again, even without client_id, is a replay.
    refused(token(&rp.server, &a, &[]).await).await;

    // A fresh one works, at introspection too (its URL as the audience).
    let info = introspect(&rp, &access).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["client_id"], "app");

    // Revocation with the issuer as the audience; the token is then inactive.
    let mut c = claims(&rp.server);
    c["aud"] = json!(rp.server.url);
    let res = rp
        .server
        .client
        .post(format!("{}/oauth2/revoke", rp.server.url))
        .form(&[
            ("token", access.as_str()),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &assertion(&rp.key, &c)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(introspect(&rp, &access).await["active"], false);
}

/// Introspects `token` as `app`, authenticated by a fresh assertion for the introspection URL.
async fn introspect(rp: &Rp, token: &str) -> Value {
    let mut c = claims(&rp.server);
    c["aud"] = json!(format!("{}/oauth2/introspect", rp.server.url));
    let res = rp
        .server
        .client
        .post(format!("{}/oauth2/introspect", rp.server.url))
        .form(&[
            ("token", token),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &assertion(&rp.key, &c)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test]
async fn a_pushed_request_can_be_authenticated_with_an_assertion() {
    let rp = rp().await;
    let mut c = claims(&rp.server);
    c["aud"] = json!(format!("{}/oauth2/par", rp.server.url));
    let res = rp
        .server
        .client
        .post(format!("{}/oauth2/par", rp.server.url))
        .form(&[
            ("response_type", "code"),
            ("redirect_uri", crate::oidc::REDIRECT),
            ("scope", "openid"),
            (
                "code_challenge",
                &authx_core::oauth::pkce::s256(crate::oidc::VERIFIER),
            ),
            ("code_challenge_method", "S256"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &assertion(&rp.key, &c)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert!(body["request_uri"].as_str().is_some());
}

#[tokio::test]
async fn assertions_with_the_wrong_claims_are_refused() {
    let rp = rp().await;
    let now = rp.server.clock.now().secs();
    let with = |k: &str, v: Value| {
        let mut c = claims(&rp.server);
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = claims(&rp.server);
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let cases = [
        (
            "aud of another server",
            with("aud", json!("https://other.example/oauth2/token")),
        ),
        (
            "aud of another server in a list",
            with("aud", json!(["https://other.example"])),
        ),
        ("iss of another client", with("iss", json!("other"))),
        ("sub of another client", with("sub", json!("other"))),
        ("expired", with("exp", json!(now - 120))),
        ("lives ten minutes", with("exp", json!(now + 600))),
        ("issued in the future", with("iat", json!(now + 600))),
        ("no jti", without("jti")),
        ("no exp", without("exp")),
        (
            "exp as a string",
            with("exp", json!((now + 60).to_string())),
        ),
    ];
    for (what, c) in cases {
        let res = token(&rp.server, &assertion(&rp.key, &c), &[]).await;
        assert_eq!(res.status(), 401, "{what}");
    }
    // client_id naming another client than the assertion's sub.
    let res = token(
        &rp.server,
        &assertion(&rp.key, &claims(&rp.server)),
        &[("client_id", "other")],
    )
    .await;
    refused(res).await;
    // The audit trail says why.
    let state = &rp.server.running().unwrap().state;
    state.oauth.audit().flush().await;
    let failures = state
        .audit_store
        .list_audit(&authx_core::audit::AuditQuery {
            kind: Some("client_auth_failed".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        failures
            .iter()
            .any(|r| r.detail.to_string().contains("another server")),
        "{failures:?}"
    );
}

/// A compact JWS with `header` and `claims`, signed with HMAC-SHA256 under `secret`.
fn hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

#[tokio::test]
async fn forged_signatures_and_algorithms_are_refused() {
    let rp = rp().await;
    let c = claims(&rp.server);
    let kid = rp.key.kid().to_owned();
    let public = rp.key.public_jwk();
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": kid}).to_string()),
        URL_SAFE_NO_PAD.encode(c.to_string())
    );
    // HS256 "keyed" with what an attacker knows: the public key, as JSON and as its x bytes.
    let x = URL_SAFE_NO_PAD
        .decode(public["x"].as_str().unwrap())
        .unwrap();
    let hs_json = hs256(
        &json!({"alg": "HS256", "kid": kid}),
        &c,
        public.to_string().as_bytes(),
    );
    let hs_x = hs256(&json!({"alg": "HS256", "kid": kid}), &c, &x);
    // Another key under the registered key's kid.
    let impostor = key(SigningAlg::Es256);
    let forged = {
        let good = assertion(&impostor, &c);
        let mut parts = good.split('.');
        let (_, payload, sig) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        let header =
            URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "kid": kid, "typ": "JWT"}).to_string());
        format!("{header}.{payload}.{sig}")
    };
    // The right key, but the header claims RS256.
    let wrong_alg = {
        let good = assertion(&rp.key, &claims(&rp.server));
        let mut parts = good.split('.');
        let (_, payload, sig) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "kid": kid}).to_string());
        format!("{header}.{payload}.{sig}")
    };
    for (what, a) in [
        ("alg none", unsigned),
        ("HS256 keyed with the public JWK", hs_json),
        ("HS256 keyed with the public point", hs_x),
        ("another key under the kid", forged),
        ("RS256 header on an ES256 key", wrong_alg),
        ("not a JWT", "not.a.jwt".to_owned()),
    ] {
        let res = token(&rp.server, &a, &[]).await;
        assert_eq!(res.status(), 401, "{what}");
    }
    // The right key still works afterwards.
    let res = token(&rp.server, &assertion(&rp.key, &claims(&rp.server)), &[]).await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn one_client_one_method() {
    let rp = rp().await;
    // A secret does not authenticate a private_key_jwt client.
    let res = rp
        .server
        .client
        .post(format!("{}/oauth2/token", rp.server.url))
        .basic_auth("app", Some("guess"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // Nor does naming it as a public client.
    let res = rp
        .server
        .client
        .post(format!("{}/oauth2/token", rp.server.url))
        .form(&[("grant_type", "client_credentials"), ("client_id", "app")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // Two methods at once are a malformed request.
    let res = rp
        .server
        .client
        .post(format!("{}/oauth2/token", rp.server.url))
        .basic_auth("app", Some("guess"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &assertion(&rp.key, &claims(&rp.server))),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // An unknown assertion type, or an assertion without its type.
    for form in [
        vec![
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:example:saml"),
            ("client_assertion", "x.y.z"),
        ],
        vec![
            ("grant_type", "client_credentials"),
            ("client_assertion", "x.y.z"),
        ],
    ] {
        let res = rp
            .server
            .client
            .post(format!("{}/oauth2/token", rp.server.url))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request");
    }
    // A secret client cannot authenticate with an assertion, even one signed by app's key.
    let state = &rp.server.running().unwrap().state;
    let mut secret_client = crate::oidc::client("sc", &[GrantType::ClientCredentials], false);
    secret_client.resources = vec![API.into()];
    state
        .oauth
        .register_client(secret_client, true)
        .await
        .unwrap();
    let mut c = claims(&rp.server);
    c["iss"] = json!("sc");
    c["sub"] = json!("sc");
    refused(token(&rp.server, &assertion(&rp.key, &c), &[]).await).await;
}

#[tokio::test]
async fn keys_must_be_public_signature_keys_at_registration() {
    let rp = rp().await;
    let state = &rp.server.running().unwrap().state;
    let register = |c: Client| async move { state.oauth.register_client(c, true).await };
    let k = key(SigningAlg::Rs256);
    let mut private = k.public_jwk();
    private["d"] = json!("c2VjcmV0");
    let cases = [
        (
            "a private key",
            client("a", Some(json!({"keys": [private]})), None),
        ),
        (
            "a symmetric key",
            client(
                "b",
                Some(json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})),
                None,
            ),
        ),
        ("no keys", client("c", Some(json!({"keys": []})), None)),
        (
            "both jwks and jwks_uri",
            client(
                "d",
                Some(jwks(&[&k])),
                Some("https://keys.example/jwks".into()),
            ),
        ),
        ("neither", client("e", None, None)),
        (
            "plain http elsewhere than loopback",
            client("f", None, Some("http://keys.example/jwks".into())),
        ),
        (
            "credentials in the URL",
            client("g", None, Some("https://user:pw@keys.example/jwks".into())),
        ),
    ];
    for (what, c) in cases {
        let err = register(c).await.expect_err(what);
        assert!(
            matches!(err, authx_core::oauth::OAuthError::InvalidRequest(_)),
            "{what}: {err:?}"
        );
    }
    // Keys on a secret client make no sense either.
    let mut with_keys = crate::oidc::client("h", &[GrantType::ClientCredentials], false);
    with_keys.jwks = Some(jwks(&[&k]).to_string());
    assert!(register(with_keys).await.is_err());
    // An RSA key, by contrast, is fine.
    register(client("i", Some(jwks(&[&k])), None))
        .await
        .unwrap();
}

/// A key server on loopback: serves `keys` at `/jwks` and counts the fetches.
async fn key_server(keys: Arc<Mutex<Value>>, fetches: Arc<AtomicU64>) -> String {
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let keys = Arc::clone(&keys);
            let fetches = Arc::clone(&fetches);
            async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                axum::Json(keys.lock().unwrap().clone())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn loopback_keys(f: &mut FileConfig) {
    f.oauth = Some(OAuthFile {
        client_jwks_insecure_http_loopback: Some(true),
        ..OAuthFile::default()
    });
}

#[tokio::test]
async fn keys_are_fetched_from_the_jwks_uri_and_again_for_a_new_kid() {
    let first = key(SigningAlg::Es256);
    let keys = Arc::new(Mutex::new(jwks(&[&first])));
    let fetches = Arc::new(AtomicU64::new(0));
    let uri = key_server(Arc::clone(&keys), Arc::clone(&fetches)).await;
    let rp = rp_with(loopback_keys).await;
    let state = &rp.server.running().unwrap().state;
    state
        .oauth
        .register_client(client("remote", None, Some(uri)), true)
        .await
        .unwrap();
    let claims_of = |server: &TestServer| {
        let mut c = claims(server);
        c["iss"] = json!("remote");
        c["sub"] = json!("remote");
        c
    };
    for _ in 0..3 {
        let res = token(&rp.server, &assertion(&first, &claims_of(&rp.server)), &[]).await;
        assert_eq!(res.status(), 200);
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "the key set is cached");

    // The client rotates: its new key is found by fetching again for the unknown kid.
    let second = key(SigningAlg::EdDsa);
    *keys.lock().unwrap() = jwks(&[&first, &second]);
    let res = token(&rp.server, &assertion(&second, &claims_of(&rp.server)), &[]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);

    // A flood of unknown kids costs no more fetches within the minute.
    for _ in 0..5 {
        let stranger = key(SigningAlg::Es256);
        let res = token(
            &rp.server,
            &assertion(&stranger, &claims_of(&rp.server)),
            &[],
        )
        .await;
        assert_eq!(res.status(), 401);
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn plain_http_key_sets_are_not_fetched_unless_allowed() {
    let k = key(SigningAlg::Es256);
    let fetches = Arc::new(AtomicU64::new(0));
    let uri = key_server(Arc::new(Mutex::new(jwks(&[&k]))), Arc::clone(&fetches)).await;
    let rp = rp().await;
    let state = &rp.server.running().unwrap().state;
    state
        .oauth
        .register_client(client("remote", None, Some(uri)), true)
        .await
        .unwrap();
    let mut c = claims(&rp.server);
    c["iss"] = json!("remote");
    c["sub"] = json!("remote");
    refused(token(&rp.server, &assertion(&k, &c), &[]).await).await;
    assert_eq!(fetches.load(Ordering::SeqCst), 0);
}

/// Two instances of one deployment (one issuer, one PostgreSQL database): an assertion used at
/// one is a replay at the other.
#[tokio::test]
async fn an_assertion_is_used_once_across_instances() {
    let Some(services) =
        SharedServices::acquire("private_key_jwt::an_assertion_is_used_once_across_instances")
            .await
    else {
        return;
    };
    const ISSUER: &str = "https://auth.example.test";
    let instance = || {
        let configure = services.configure();
        TestServer::start_on(&services.database_url, move |f| {
            configure(f);
            f.issuer = Some(ISSUER.into());
        })
    };
    let a = instance().await.unwrap();
    let b = instance().await.unwrap();
    let rp = setup(a).await;
    let used_at_a = {
        let mut c = claims(&rp.server);
        c["aud"] = json!(ISSUER);
        assertion(&rp.key, &c)
    };
    assert_eq!(token(&rp.server, &used_at_a, &[]).await.status(), 200);
    refused(token(&b, &used_at_a, &[]).await).await;
    // A fresh one for the same deployment works at b, once.
    let fresh = {
        let mut c = claims(&b);
        c["aud"] = json!(ISSUER);
        assertion(&rp.key, &c)
    };
    assert_eq!(token(&b, &fresh, &[]).await.status(), 200);
    refused(token(&rp.server, &fresh, &[]).await).await;
    b.stop().await;
    rp.server.stop().await;
    services.cleanup().await;
}
