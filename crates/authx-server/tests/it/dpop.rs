//! DPoP (RFC 9449) over HTTP: tokens bound to a proof's key at the token and PAR endpoints,
//! for every grant; bound tokens at userinfo and in introspection; nonces; and the attacks of
//! RFC 9449 §11, each tried and refused.

use authx_core::clock::Clock as _;
use authx_core::oauth::client::GrantType;
use authx_core::oauth::keys::SigningAlg;
use authx_core::oauth::pkce;
use authx_server::config::{FileConfig, OAuthFile};
use authx_testkit::dpop::DpopKey;
use authx_testkit::services::SharedServices;
use authx_testkit::{PASSWORD, TestServer};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::oidc::{Op, REDIRECT, VERIFIER, client, query_param, urlencode};

/// Where the server runs.
#[derive(Clone, Copy)]
enum Db {
    Sqlite,
    Postgres,
}

/// `[oauth]` with DPoP on, and nonces when `nonce`.
fn dpop_on(nonce: bool) -> impl Fn(&mut FileConfig) + Send + Sync + 'static {
    move |f: &mut FileConfig| {
        // Kept: the key-encryption key that instances on one database share.
        let oauth = f.oauth.get_or_insert_with(OAuthFile::default);
        oauth.dpop = Some(true);
        oauth.dpop_require_nonce = Some(nonce);
    }
}

/// A server on `db` with DPoP on (and nonces when `nonce`), an API, the confidential
/// first-party client `app` (code, refresh, client credentials), the public client `spa`
/// (code, refresh) and a signed-in user. `None` (reported) when PostgreSQL is not configured.
async fn op_on(db: Db, test: &str, nonce: bool) -> Option<(Op, Option<SharedServices>)> {
    let (server, services) = match db {
        Db::Sqlite => (TestServer::start_with(dpop_on(nonce)).await.unwrap(), None),
        Db::Postgres => {
            let services = SharedServices::acquire(test).await?;
            let shared = services.configure();
            let on = dpop_on(nonce);
            let server = TestServer::start_on(&services.database_url, move |f| {
                shared(f);
                on(f);
            })
            .await
            .unwrap();
            (server, Some(services))
        }
    };
    let state = &server.running().unwrap().state;
    crate::oidc::register_example_api(state).await;
    let grants = [
        GrantType::AuthorizationCode,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
    ];
    let (_, secret) = state
        .oauth
        .register_client(client("app", &grants, true), true)
        .await
        .unwrap();
    state
        .oauth
        .register_client(client("spa", &grants[..2], true), false)
        .await
        .unwrap();
    server
        .create_user("kate@example.com", PASSWORD)
        .await
        .unwrap();
    let cookie = server.sign_in("kate@example.com", PASSWORD).await.unwrap();
    let op = Op {
        server,
        secret: secret.unwrap(),
        cookie,
    };
    Some((op, services))
}

async fn op(nonce: bool) -> Op {
    op_on(Db::Sqlite, "dpop", nonce).await.unwrap().0
}

fn url(op: &Op, path: &str) -> String {
    format!("{}{path}", op.server.url)
}

/// A token request of `client_id` (`app` with its secret, `spa` without), with `proofs` as
/// `DPoP` headers.
async fn token(op: &Op, client_id: &str, form: &[(&str, &str)], proofs: &[&str]) -> Response {
    let mut req = op.server.client.post(url(op, "/oauth2/token")).form(form);
    req = if client_id == "app" {
        req.basic_auth("app", Some(&op.secret))
    } else {
        req.form(&[form, &[("client_id", client_id)]].concat())
    };
    for p in proofs {
        req = req.header("DPoP", *p);
    }
    Response::of(req.send().await.unwrap()).await
}

/// An answer, read once.
struct Response {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Response {
    async fn of(res: reqwest::Response) -> Self {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.json().await.unwrap_or(Value::Null);
        Self {
            status,
            headers,
            body,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts `400` with `error`.
    fn refused(&self, error: &str) {
        assert_eq!(
            (self.status, self.body["error"].as_str()),
            (400, Some(error)),
            "{}",
            self.body
        );
    }
}

/// A client-credentials request of `app` with `proofs`.
async fn client_credentials(op: &Op, proofs: &[&str]) -> Response {
    token(
        op,
        "app",
        &[("grant_type", "client_credentials"), ("scope", "read")],
        proofs,
    )
    .await
}

fn payload(jwt: &str) -> Value {
    let p = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap(),
    )
    .unwrap()
}

async fn introspect(op: &Op, t: &str) -> Value {
    op.server
        .client
        .post(url(op, "/oauth2/introspect"))
        .basic_auth("app", Some(&op.secret))
        .form(&[("token", t)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `GET /oauth2/userinfo` with `authorization` and `proof`.
async fn userinfo(op: &Op, authorization: &str, proof: Option<&str>) -> reqwest::Response {
    let mut req = op
        .server
        .client
        .get(url(op, "/oauth2/userinfo"))
        .header("authorization", authorization);
    if let Some(p) = proof {
        req = req.header("DPoP", p);
    }
    req.send().await.unwrap()
}

fn challenge(res: &reqwest::Response) -> String {
    res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// A code for `client_id`, with `extra` authorization parameters.
async fn code(op: &Op, client_id: &str, extra: &str) -> String {
    let res = op
        .server
        .client
        .get(format!(
            "{}/oauth2/authorize?response_type=code&client_id={client_id}&redirect_uri={}&scope={}&state=s&code_challenge={}&code_challenge_method=S256{extra}",
            op.server.url,
            urlencode(REDIRECT),
            urlencode("openid email read"),
            pkce::s256(VERIFIER)
        ))
        .header("cookie", &op.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    let loc = res.headers()["location"].to_str().unwrap().to_owned();
    query_param(&loc, "code").unwrap_or_else(|| panic!("no code: {loc}"))
}

/// Redeems `code` as `client_id` with `proofs`.
async fn exchange(op: &Op, client_id: &str, code: &str, proofs: &[&str]) -> Response {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    token(op, client_id, &form, proofs).await
}

/// Refreshes `rt` as `client_id` with `proofs`.
async fn refresh(op: &Op, client_id: &str, rt: &str, proofs: &[&str]) -> Response {
    let form = [("grant_type", "refresh_token"), ("refresh_token", rt)];
    token(op, client_id, &form, proofs).await
}

/// A proof by `key` for the token endpoint.
fn at_token(op: &Op, key: &DpopKey) -> String {
    key.proof("POST", &url(op, "/oauth2/token"), None)
}

/// A proof by `key` for userinfo with `token`.
fn at_userinfo(op: &Op, key: &DpopKey, token: &str) -> String {
    key.proof("GET", &url(op, "/oauth2/userinfo"), Some(token))
}

#[tokio::test]
async fn a_proof_binds_the_client_credentials_token_to_its_key() {
    let op = op(false).await;
    let key = DpopKey::es256().on(&op.server.clock);
    let res = client_credentials(&op, &[&at_token(&op, &key)]).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["token_type"], "DPoP");
    let at = res.body["access_token"].as_str().unwrap();
    assert_eq!(payload(at)["cnf"], json!({"jkt": key.jkt().as_str()}));
    // RFC 7662 + RFC 9449 §6.2: introspection says the token is bound, and to which key.
    let i = introspect(&op, at).await;
    assert_eq!(
        (i["active"].as_bool(), i["token_type"].as_str()),
        (Some(true), Some("DPoP"))
    );
    assert_eq!(i["cnf"]["jkt"], key.jkt().as_str());

    // Without a proof, a bearer token as before.
    let res = client_credentials(&op, &[]).await;
    assert_eq!(res.body["token_type"], "Bearer");
    let at = res.body["access_token"].as_str().unwrap();
    assert!(payload(at).get("cnf").is_none());
    let i = introspect(&op, at).await;
    assert_eq!(i["token_type"], "Bearer");
    assert!(i.get("cnf").is_none());

    let d: Value = op
        .server
        .get("/.well-known/openid-configuration", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        d["dpop_signing_alg_values_supported"],
        json!(["ES256", "EdDSA", "RS256", "PS256"])
    );
}

/// RFC 9449 §11.1, §11.6, §11.8, §4.3: every bad proof at the token endpoint is
/// `invalid_dpop_proof`, and nothing is issued.
#[tokio::test]
async fn the_token_endpoint_refuses_bad_proofs() {
    let op = op(false).await;
    let key = DpopKey::es256().on(&op.server.clock);
    let token_url = url(&op, "/oauth2/token");

    // Replay: the same proof twice.
    let proof = at_token(&op, &key);
    assert_eq!(client_credentials(&op, &[&proof]).await.status, 200);
    client_credentials(&op, &[&proof])
        .await
        .refused("invalid_dpop_proof");

    let claims = |method: &str, htu: &str| key.claims(method, htu, None, None);
    let bad = [
        // For another URL, and for another method.
        key.sign(&key.header(), &claims("POST", &url(&op, "/oauth2/par"))),
        key.sign(
            &key.header(),
            &claims("POST", "https://evil.example/oauth2/token"),
        ),
        key.sign(&key.header(), &claims("GET", &token_url)),
        // A private key in the header's jwk (the client published its key).
        {
            let mut h = key.header();
            h["jwk"]["d"] = json!("AAAA");
            key.sign(&h, &claims("POST", &token_url))
        },
        // Signed by another key than the one in the header.
        DpopKey::es256().sign(&key.header(), &claims("POST", &token_url)),
        // Not a DPoP proof.
        {
            let mut h = key.header();
            h["typ"] = json!("JWT");
            key.sign(&h, &claims("POST", &token_url))
        },
        // Too old.
        {
            let mut c = claims("POST", &token_url);
            c["iat"] = json!(op.server.clock.now().secs() - 300);
            key.sign(&key.header(), &c)
        },
        hs256_proof(&claims("POST", &token_url)),
        none_proof(&key, &claims("POST", &token_url)),
        "not a jwt".to_owned(),
    ];
    for proof in &bad {
        let res = client_credentials(&op, &[proof]).await;
        res.refused("invalid_dpop_proof");
        assert!(res.body.get("access_token").is_none());
    }
    // Two proofs in one request.
    client_credentials(&op, &[&at_token(&op, &key), &at_token(&op, &key)])
        .await
        .refused("invalid_dpop_proof");
}

/// An HS256 "proof" under a symmetric key the sender chose (RFC 9449 §11.6).
fn hs256_proof(claims: &Value) -> String {
    use hmac::{Hmac, Mac};
    let secret = b"a key the attacker chose";
    let enc = |v: &Value| authx_core::secret::b64url(v.to_string().as_bytes());
    let h = json!({"typ": "dpop+jwt", "alg": "HS256",
        "jwk": {"kty": "oct", "k": authx_core::secret::b64url(secret)}});
    let input = format!("{}.{}", enc(&h), enc(claims));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    format!(
        "{input}.{}",
        authx_core::secret::b64url(&mac.finalize().into_bytes())
    )
}

/// An unsigned proof (`alg: none`).
fn none_proof(key: &DpopKey, claims: &Value) -> String {
    let enc = |v: &Value| authx_core::secret::b64url(v.to_string().as_bytes());
    let mut h = key.header();
    h["alg"] = json!("none");
    format!("{}.{}.", enc(&h), enc(claims))
}

/// RFC 9449 §7.1, §11.10: a bound token is accepted at userinfo only as `DPoP` with a fresh
/// proof by its key for this request and this token.
#[tokio::test]
async fn userinfo_takes_a_bound_token_only_with_its_proof() {
    let op = op(false).await;
    let key = DpopKey::es256().on(&op.server.clock);
    let c = code(&op, "app", "").await;
    let res = exchange(&op, "app", &c, &[&at_token(&op, &key)]).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["token_type"], "DPoP");
    let at = res.body["access_token"].as_str().unwrap().to_owned();
    let dpop = format!("DPoP {at}");

    let ok = userinfo(&op, &dpop, Some(&at_userinfo(&op, &key, &at))).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.json::<Value>().await.unwrap()["email"],
        "kate@example.com"
    );

    // As a bearer token: refused, with a DPoP challenge.
    let res = userinfo(&op, &format!("Bearer {at}"), None).await;
    assert_eq!(res.status(), 401);
    assert!(challenge(&res).starts_with("DPoP "), "{}", challenge(&res));
    assert!(challenge(&res).contains("error=\"invalid_token\""));

    let other = DpopKey::es256().on(&op.server.clock);
    let userinfo_url = url(&op, "/oauth2/userinfo");
    for (proof, error) in [
        // No proof.
        (None, "invalid_dpop_proof"),
        // A proof by another key.
        (Some(at_userinfo(&op, &other, &at)), "invalid_token"),
        // A proof for another token (ath).
        (
            Some(at_userinfo(&op, &key, "another.access.token")),
            "invalid_dpop_proof",
        ),
        // A proof without ath.
        (
            Some(key.proof("GET", &userinfo_url, None)),
            "invalid_dpop_proof",
        ),
        // For another method.
        (
            Some(key.proof("POST", &userinfo_url, Some(&at))),
            "invalid_dpop_proof",
        ),
        // For another URL.
        (
            Some(key.proof("GET", &url(&op, "/oauth2/token"), Some(&at))),
            "invalid_dpop_proof",
        ),
    ] {
        let res = userinfo(&op, &dpop, proof.as_deref()).await;
        assert_eq!(res.status(), 401, "{proof:?}");
        assert!(
            challenge(&res).contains(&format!("error=\"{error}\"")),
            "{proof:?}: {}",
            challenge(&res)
        );
    }
    // A replayed proof.
    let proof = at_userinfo(&op, &key, &at);
    assert_eq!(userinfo(&op, &dpop, Some(&proof)).await.status(), 200);
    let again = userinfo(&op, &dpop, Some(&proof)).await;
    assert_eq!(again.status(), 401);
    assert!(challenge(&again).contains("invalid_dpop_proof"));

    // An unbound token under the DPoP scheme is refused; as a bearer token it works.
    let c = code(&op, "app", "").await;
    let plain = exchange(&op, "app", &c, &[]).await;
    let plain = plain.body["access_token"].as_str().unwrap().to_owned();
    let res = userinfo(
        &op,
        &format!("DPoP {plain}"),
        Some(&at_userinfo(&op, &key, &plain)),
    )
    .await;
    assert_eq!(res.status(), 401);
    assert!(challenge(&res).contains("invalid_token"));
    assert_eq!(
        userinfo(&op, &format!("Bearer {plain}"), None)
            .await
            .status(),
        200
    );
}

/// RFC 9449 §8, §11.2: with nonces required, a proof without one gets `use_dpop_nonce` and a
/// nonce, and the same request with it succeeds (and brings the next nonce).
#[tokio::test]
async fn a_missing_nonce_is_asked_for_then_accepted() {
    let op = op(true).await;
    let key = DpopKey::es256().on(&op.server.clock);
    let res = client_credentials(&op, &[&at_token(&op, &key)]).await;
    res.refused("use_dpop_nonce");
    let nonce = res.header("dpop-nonce").expect("a nonce").to_owned();
    // A made-up nonce is no better.
    let made_up = key.proof_with_nonce("POST", &url(&op, "/oauth2/token"), "made-up");
    client_credentials(&op, &[&made_up])
        .await
        .refused("use_dpop_nonce");

    let proof = key.proof_with_nonce("POST", &url(&op, "/oauth2/token"), &nonce);
    let res = client_credentials(&op, &[&proof]).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["token_type"], "DPoP");
    assert!(res.header("dpop-nonce").is_some());

    // A nonce from two windows ago is stale.
    op.server
        .clock
        .advance(2 * authx_core::oauth::dpop::NONCE_WINDOW_SECS);
    let key = DpopKey::es256().on(&op.server.clock);
    let stale = key.proof_with_nonce("POST", &url(&op, "/oauth2/token"), &nonce);
    let res = client_credentials(&op, &[&stale]).await;
    res.refused("use_dpop_nonce");
    assert_ne!(res.header("dpop-nonce"), Some(nonce.as_str()));

    // Userinfo asks as a resource server does: 401 and a DPoP challenge.
    let fresh = res.header("dpop-nonce").unwrap().to_owned();
    let proof = key.proof_with_nonce("POST", &url(&op, "/oauth2/token"), &fresh);
    let c = code(&op, "app", "").await;
    let tokens = exchange(&op, "app", &c, &[&proof]).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let at = tokens.body["access_token"].as_str().unwrap();
    let res = userinfo(
        &op,
        &format!("DPoP {at}"),
        Some(&at_userinfo(&op, &key, at)),
    )
    .await;
    assert_eq!(res.status(), 401);
    assert!(
        challenge(&res).contains("use_dpop_nonce"),
        "{}",
        challenge(&res)
    );
    assert!(res.headers().get("dpop-nonce").is_some());
}

/// RFC 9449 §5: a public client's refresh token is bound to the key of the proof it was issued
/// with; a confidential client's is not, but each new access token is bound to the proof sent.
async fn refresh_tokens_of_public_clients_are_bound(db: Db) {
    let Some((op, services)) = op_on(
        db,
        "dpop::refresh_tokens_of_public_clients_are_bound",
        false,
    )
    .await
    else {
        return;
    };
    let key = DpopKey::es256().on(&op.server.clock);
    let other = DpopKey::es256().on(&op.server.clock);
    let c = code(&op, "spa", "").await;
    let res = exchange(&op, "spa", &c, &[&at_token(&op, &key)]).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let rt = res.body["refresh_token"].as_str().unwrap().to_owned();

    // Another key, or none: refused, and the token is not spent.
    refresh(&op, "spa", &rt, &[&at_token(&op, &other)])
        .await
        .refused("invalid_grant");
    refresh(&op, "spa", &rt, &[]).await.refused("invalid_grant");
    let res = refresh(&op, "spa", &rt, &[&at_token(&op, &key)]).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["token_type"], "DPoP");
    let at = res.body["access_token"].as_str().unwrap();
    assert_eq!(payload(at)["cnf"]["jkt"], key.jkt().as_str());
    // The successor is bound too.
    let next = res.body["refresh_token"].as_str().unwrap();
    refresh(&op, "spa", next, &[&at_token(&op, &other)])
        .await
        .refused("invalid_grant");

    // A confidential client's refresh token stays unbound.
    let c = code(&op, "app", "").await;
    let res = exchange(&op, "app", &c, &[&at_token(&op, &key)]).await;
    let rt = res.body["refresh_token"].as_str().unwrap().to_owned();
    let res = refresh(&op, "app", &rt, &[&at_token(&op, &other)]).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let at = res.body["access_token"].as_str().unwrap();
    assert_eq!(payload(at)["cnf"]["jkt"], other.jkt().as_str());
    let rt = res.body["refresh_token"].as_str().unwrap();
    let res = refresh(&op, "app", rt, &[]).await;
    assert_eq!(res.body["token_type"], "Bearer");

    if let Some(s) = services {
        op.server.stop().await;
        s.cleanup().await;
    }
}

#[tokio::test]
async fn refresh_tokens_of_public_clients_are_bound_sqlite() {
    refresh_tokens_of_public_clients_are_bound(Db::Sqlite).await;
}

#[tokio::test]
async fn refresh_tokens_of_public_clients_are_bound_postgres() {
    refresh_tokens_of_public_clients_are_bound(Db::Postgres).await;
}

/// RFC 9449 §10: `dpop_jkt` binds the code; its redemption needs a proof by that key, and a
/// failed one spends the code.
async fn a_code_bound_by_dpop_jkt_needs_its_key(db: Db) {
    let Some((op, services)) =
        op_on(db, "dpop::a_code_bound_by_dpop_jkt_needs_its_key", false).await
    else {
        return;
    };
    let key = DpopKey::es256().on(&op.server.clock);
    let other = DpopKey::new(SigningAlg::EdDsa).on(&op.server.clock);
    let bound = format!("&dpop_jkt={}", key.jkt().as_str());

    let c = code(&op, "spa", &bound).await;
    exchange(&op, "spa", &c, &[&at_token(&op, &other)])
        .await
        .refused("invalid_grant");
    // The code was spent by the failed attempt.
    exchange(&op, "spa", &c, &[&at_token(&op, &key)])
        .await
        .refused("invalid_grant");

    let c = code(&op, "spa", &bound).await;
    exchange(&op, "spa", &c, &[]).await.refused("invalid_grant");

    let c = code(&op, "spa", &bound).await;
    let res = exchange(&op, "spa", &c, &[&at_token(&op, &key)]).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["token_type"], "DPoP");

    // A dpop_jkt that is no thumbprint is refused at the client's redirect URI.
    let res = op
        .server
        .client
        .get(format!(
            "{}/oauth2/authorize?response_type=code&client_id=spa&redirect_uri={}&scope=openid&code_challenge={}&code_challenge_method=S256&dpop_jkt=not-a-thumbprint",
            op.server.url,
            urlencode(REDIRECT),
            pkce::s256(VERIFIER)
        ))
        .header("cookie", &op.cookie)
        .send()
        .await
        .unwrap();
    let loc = res.headers()["location"].to_str().unwrap();
    assert_eq!(
        query_param(loc, "error").as_deref(),
        Some("invalid_request")
    );
    if let Some(s) = services {
        op.server.stop().await;
        s.cleanup().await;
    }
}

#[tokio::test]
async fn a_code_bound_by_dpop_jkt_needs_its_key_sqlite() {
    a_code_bound_by_dpop_jkt_needs_its_key(Db::Sqlite).await;
}

#[tokio::test]
async fn a_code_bound_by_dpop_jkt_needs_its_key_postgres() {
    a_code_bound_by_dpop_jkt_needs_its_key(Db::Postgres).await;
}

/// RFC 9449 §10.1: a proof at the PAR endpoint binds the code, as `dpop_jkt` does, and both
/// must name the same key.
#[tokio::test]
async fn a_proof_at_the_par_endpoint_binds_the_code() {
    let op = op(false).await;
    let key = DpopKey::es256().on(&op.server.clock);
    let other = DpopKey::es256().on(&op.server.clock);
    let form = |extra: &[(&'static str, String)]| {
        let mut f = vec![
            ("response_type", "code".to_owned()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("scope", "openid".to_owned()),
            ("code_challenge", pkce::s256(VERIFIER)),
            ("code_challenge_method", "S256".to_owned()),
        ];
        f.extend_from_slice(extra);
        f
    };
    let push = |form: Vec<(&'static str, String)>, proof: String| {
        op.server
            .client
            .post(url(&op, "/oauth2/par"))
            .basic_auth("app", Some(&op.secret))
            .header("DPoP", proof)
            .form(&form)
            .send()
    };
    let par_proof = |k: &DpopKey| k.proof("POST", &url(&op, "/oauth2/par"), None);

    let res = push(form(&[]), par_proof(&key)).await.unwrap();
    assert_eq!(res.status(), 201);
    let uri = res.json::<Value>().await.unwrap()["request_uri"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = code(&op, "app", &format!("&request_uri={}", urlencode(&uri))).await;
    exchange(&op, "app", &c, &[&at_token(&op, &other)])
        .await
        .refused("invalid_grant");

    // dpop_jkt naming another key than the proof's.
    let res = push(
        form(&[("dpop_jkt", other.jkt().as_str().to_owned())]),
        par_proof(&key),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "invalid_dpop_proof"
    );
    // A proof for the token endpoint is not one for PAR.
    let res = push(form(&[]), at_token(&op, &key)).await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "invalid_dpop_proof"
    );

    let res = push(form(&[]), par_proof(&key)).await.unwrap();
    let uri = res.json::<Value>().await.unwrap()["request_uri"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = code(&op, "app", &format!("&request_uri={}", urlencode(&uri))).await;
    let res = exchange(&op, "app", &c, &[&at_token(&op, &key)]).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["token_type"], "DPoP");
}

/// With DPoP off (the default) a proof is ignored (RFC 9449 §5): bearer tokens, and discovery
/// does not offer DPoP.
#[tokio::test]
async fn with_dpop_off_proofs_are_ignored() {
    let op = crate::oidc::op_with(|_| {}).await;
    let key = DpopKey::es256().on(&op.server.clock);
    let res = client_credentials(&op, &[&at_token(&op, &key)]).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["token_type"], "Bearer");
    assert!(
        payload(res.body["access_token"].as_str().unwrap())
            .get("cnf")
            .is_none()
    );
    let d: Value = op
        .server
        .get("/.well-known/openid-configuration", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(d.get("dpop_signing_alg_values_supported").is_none());
}

/// RFC 9449 §11.1 across instances: two instances of one deployment (one PostgreSQL database,
/// one issuer) share the proofs' single-use marks, so a proof used at one is refused at the
/// other, and nonces, which need no store, are accepted by both.
#[tokio::test]
async fn a_proof_used_at_one_instance_is_refused_at_another() {
    const ISSUER: &str = "https://id.example.com";
    let Some(services) =
        SharedServices::acquire("dpop::a_proof_used_at_one_instance_is_refused_at_another").await
    else {
        return;
    };
    let start = || {
        let shared = services.configure();
        let on = dpop_on(true);
        TestServer::start_on(&services.database_url, move |f| {
            shared(f);
            on(f);
            f.issuer = Some(ISSUER.into());
        })
    };
    let (a, b) = (start().await.unwrap(), start().await.unwrap());
    let state = &a.running().unwrap().state;
    authx_server::web::api::register_resource(
        state,
        "https://api.example.com".into(),
        vec!["read".into()],
    )
    .await
    .unwrap();
    let (_, secret) = state
        .oauth
        .register_client(client("svc", &[GrantType::ClientCredentials], false), true)
        .await
        .unwrap();
    let secret = secret.unwrap();
    let ask = |server: &TestServer, proof: &str| {
        server
            .client
            .post(format!("{}/oauth2/token", server.url))
            .basic_auth("svc", Some(&secret))
            .header("DPoP", proof)
            .form(&[("grant_type", "client_credentials"), ("scope", "read")])
            .send()
    };
    let key = DpopKey::es256().on(&a.clock);
    let htu = format!("{ISSUER}/oauth2/token");
    // A nonce from one instance is good at the other.
    let first = Response::of(ask(&a, &key.proof("POST", &htu, None)).await.unwrap()).await;
    first.refused("use_dpop_nonce");
    let nonce = first.header("dpop-nonce").unwrap().to_owned();
    let proof = key.proof_with_nonce("POST", &htu, &nonce);
    let at_b = Response::of(ask(&b, &proof).await.unwrap()).await;
    assert_eq!(at_b.status, 200, "{}", at_b.body);
    assert_eq!(at_b.body["token_type"], "DPoP");
    // The same proof at the first instance: already used.
    Response::of(ask(&a, &proof).await.unwrap())
        .await
        .refused("invalid_dpop_proof");
    a.stop().await;
    b.stop().await;
    services.cleanup().await;
}

/// RFC 9449 §5.2: a client registered with `dpop_bound_access_tokens` gets nothing without a
/// proof (`invalid_request`), at any grant.
#[tokio::test]
async fn a_client_registered_for_bound_tokens_gets_none_without_a_proof() {
    let op = op(false).await;
    let mut bound = client(
        "bound",
        &[GrantType::ClientCredentials, GrantType::AuthorizationCode],
        true,
    );
    bound.dpop_bound_access_tokens = true;
    let state = &op.server.running().unwrap().state;
    let (_, secret) = state.oauth.register_client(bound, true).await.unwrap();
    let secret = secret.unwrap();
    let ask = |proof: Option<String>| {
        let mut req = op
            .server
            .client
            .post(url(&op, "/oauth2/token"))
            .basic_auth("bound", Some(&secret))
            .form(&[("grant_type", "client_credentials"), ("scope", "read")]);
        if let Some(p) = proof {
            req = req.header("DPoP", p);
        }
        req.send()
    };
    let res = Response::of(ask(None).await.unwrap()).await;
    res.refused("invalid_request");
    assert!(res.body.get("access_token").is_none());
    let key = DpopKey::es256().on(&op.server.clock);
    let res = Response::of(ask(Some(at_token(&op, &key))).await.unwrap()).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["token_type"], "DPoP");

    // The code grant too; the code is not spent by the refusal.
    let c = code(&op, "bound", "").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", c.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let exchange = |proof: Option<String>| {
        let mut req = op
            .server
            .client
            .post(url(&op, "/oauth2/token"))
            .basic_auth("bound", Some(&secret))
            .form(&form);
        if let Some(p) = proof {
            req = req.header("DPoP", p);
        }
        req.send()
    };
    Response::of(exchange(None).await.unwrap())
        .await
        .refused("invalid_request");
    let res = Response::of(exchange(Some(at_token(&op, &key))).await.unwrap()).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["token_type"], "DPoP");
}
