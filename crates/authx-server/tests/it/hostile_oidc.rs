//! The hostile inputs of SECURITY.md §2 that target the OpenID provider, sent to the real
//! server: forged and malformed JWTs (#1-#6) at userinfo and introspection, redirect URI
//! variants (#7), duplicate, empty and unknown parameters (#8), PKCE attacks (#9), CR/LF and
//! SQL metacharacters (#17) and method tricks (#23). Each is refused with a 4xx, never a 5xx.

use authx_core::Timestamp;
use authx_core::oauth::client::{Client, GrantType};
use authx_core::oauth::keys::{
    KeyEncryptor, KeyRing, KeyState, Signer, SigningAlg, StoredKey, generate,
};
use authx_core::oauth::pkce;
use authx_testkit::{PASSWORD, TestServer};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};

const REDIRECT: &str = "https://app.example.com/cb";
const NATIVE_REDIRECT: &str = "http://127.0.0.1/cb";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn client(id: &str, redirect: &str, grants: &[GrantType]) -> Client {
    Client {
        id: id.into(),
        name: format!("{id} app"),
        secret_hash: None,
        token_endpoint_auth_method: authx_core::oauth::client::TokenEndpointAuthMethod::None,
        jwks: None,
        jwks_uri: None,
        dpop_bound_access_tokens: false,
        redirect_uris: vec![redirect.into()],
        post_logout_redirect_uris: vec![],
        backchannel_logout_uri: None,
        grant_types: grants.to_vec(),
        scopes: vec!["openid".into(), "email".into(), "read".into()],
        resources: vec!["https://api.example.com".into()],
        first_party: true,
        require_pushed_authorization_requests: false,
        require_acr: None,
        id_token_alg: SigningAlg::Rs256,
        access_token_ttl_secs: 900,
        refresh_token_ttl_secs: 86_400,
        refresh_idle_secs: 86_400,
        created_at: Timestamp(0),
    }
}

/// A provider with an API, a confidential first-party client `app`, a public native client
/// `cli` (loopback redirect) and a signed-in user.
struct Op {
    server: TestServer,
    secret: String,
    cookie: String,
}

async fn op() -> Op {
    let server = TestServer::start().await.unwrap();
    let state = &server.running().unwrap().state;
    authx_server::web::api::register_resource(
        state,
        "https://api.example.com".into(),
        vec!["read".into()],
    )
    .await
    .unwrap();
    let grants = [
        GrantType::AuthorizationCode,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
    ];
    let (_, secret) = state
        .oauth
        .register_client(client("app", REDIRECT, &grants), true)
        .await
        .unwrap();
    state
        .oauth
        .register_client(
            client("cli", NATIVE_REDIRECT, &[GrantType::AuthorizationCode]),
            false,
        )
        .await
        .unwrap();
    server
        .create_user("kate@example.com", PASSWORD)
        .await
        .unwrap();
    let cookie = server.sign_in("kate@example.com", PASSWORD).await.unwrap();
    Op {
        server,
        secret: secret.unwrap(),
        cookie,
    }
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn authorize_url(op: &Op, client_id: &str, redirect: &str, extra: &str) -> String {
    format!(
        "{}/oauth2/authorize?response_type=code&client_id={}&redirect_uri={}&scope=openid%20email&state=s1&nonce=n1&code_challenge={}&code_challenge_method=S256{extra}",
        op.server.url,
        enc(client_id),
        enc(redirect),
        pkce::s256(VERIFIER)
    )
}

fn query_param(location: &str, name: &str) -> Option<String> {
    let q = location.split_once('?')?.1;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn get(op: &Op, url: &str) -> reqwest::Response {
    let res = op
        .server
        .client
        .get(url)
        .header("cookie", &op.cookie)
        .send()
        .await
        .unwrap();
    assert!(res.status().as_u16() < 500, "{url}: {}", res.status());
    res
}

/// A fresh authorization code for `app`.
async fn code(op: &Op, extra: &str) -> String {
    let res = get(op, &authorize_url(op, "app", REDIRECT, extra)).await;
    assert_eq!(res.status(), 302);
    let loc = res.headers()["location"].to_str().unwrap().to_owned();
    query_param(&loc, "code").unwrap_or_else(|| panic!("no code in {loc}"))
}

/// `POST path` with a raw form body, Basic credentials of `app`, and the status checked < 500.
async fn post_form(op: &Op, path: &str, body: &str) -> reqwest::Response {
    let res = op
        .server
        .client
        .post(format!("{}{path}", op.server.url))
        .basic_auth("app", Some(&op.secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert!(
        res.status().as_u16() < 500,
        "{path} {body:.60}: {}",
        res.status()
    );
    res
}

async fn error_of(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let v: Value = res.json().await.unwrap_or(Value::Null);
    (status, v["error"].as_str().unwrap_or_default().to_owned())
}

fn exchange_body(code: &str, verifier: &str) -> String {
    format!(
        "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={}",
        enc(code),
        enc(REDIRECT),
        enc(verifier)
    )
}

/// The server's own signing keys, read from its database and opened with its key file: what an
/// attacker can never have, used here to sign tokens whose only defect is in their claims.
async fn server_ring(server: &TestServer) -> KeyRing {
    let db = server.db_path();
    let kek_text = std::fs::read_to_string(format!("{}.key", db.display())).unwrap();
    let kek = authx_server::config::decode_kek(&kek_text).unwrap();
    let enc = KeyEncryptor::new(&kek).unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let rows: Vec<(String, String, String, Vec<u8>, String)> = sqlx::query_as(
        "SELECT kid, alg, state, private_key_encrypted, public_jwk FROM signing_keys",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    let keys: Vec<StoredKey> = rows
        .into_iter()
        .map(|(kid, alg, state, sealed, jwk)| StoredKey {
            kid,
            alg: SigningAlg::parse(&alg).unwrap(),
            state: KeyState::parse(&state).unwrap(),
            private_key_encrypted: sealed,
            public_jwk: jwk,
            created_at: Timestamp(0),
            activated_at: None,
            remove_after: None,
        })
        .collect();
    KeyRing::load(&keys, &enc).unwrap()
}

/// A key pair the attacker made.
fn attacker_signer(alg: SigningAlg) -> std::sync::Arc<Signer> {
    let enc = KeyEncryptor::new(&[9u8; 32]).unwrap();
    let mut k = generate(alg, &enc, Timestamp(0)).unwrap();
    k.state = KeyState::Active;
    KeyRing::load(&[k], &enc).unwrap().signer(alg).unwrap()
}

fn b64json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// `header.payload.signature` with `signer` over the exact header and payload bytes given.
fn sign_raw(signer: &Signer, header: &[u8], payload: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = signer.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn hs256(key: &[u8], header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", b64json(header), b64json(claims));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(input.as_bytes());
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

/// The DER form of a P1363 ECDSA signature (what JWS must not carry).
fn der(sig: &[u8]) -> Vec<u8> {
    let int = |x: &[u8]| {
        let mut v: Vec<u8> = x.iter().copied().skip_while(|b| *b == 0).collect();
        if v.first().is_none_or(|b| *b >= 0x80) {
            v.insert(0, 0);
        }
        let mut out = vec![0x02, u8::try_from(v.len()).unwrap()];
        out.extend(v);
        out
    };
    let body = [int(&sig[..32]), int(&sig[32..])].concat();
    let mut out = vec![0x30, u8::try_from(body.len()).unwrap()];
    out.extend(body);
    out
}

async fn userinfo_status(op: &Op, token: &str) -> (u16, String) {
    let res = op
        .server
        .client
        .get(format!("{}/oauth2/userinfo", op.server.url))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    let challenge = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (res.status().as_u16(), challenge)
}

async fn introspect(op: &Op, token: &str) -> (u16, Value) {
    let res = op
        .server
        .client
        .post(format!("{}/oauth2/introspect", op.server.url))
        .basic_auth("app", Some(&op.secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// SECURITY.md §2 #1-#6 and #50: every forged, malformed or misused token is refused at
/// userinfo (401 `invalid_token`) and is `{"active": false}` at introspection.
#[tokio::test]
async fn hostile_jwts_are_refused_at_userinfo_and_introspection() {
    let op = op().await;
    let c = code(&op, "").await;
    let res = post_form(&op, "/oauth2/token", &exchange_body(&c, VERIFIER)).await;
    assert_eq!(res.status(), 200);
    let tokens: Value = res.json().await.unwrap();
    let at = tokens["access_token"].as_str().unwrap().to_owned();
    let id_token = tokens["id_token"].as_str().unwrap().to_owned();
    let rt = tokens["refresh_token"].as_str().unwrap().to_owned();
    // The genuine token works, so each refusal below is the defect's doing.
    assert_eq!(userinfo_status(&op, &at).await.0, 200);
    assert_eq!(introspect(&op, &at).await.1["active"], true);

    let parts: Vec<&str> = at.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let kid = header["kid"].as_str().unwrap().to_owned();
    let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    let with_header = |h: Value, s: &str| format!("{}.{}.{s}", b64json(&h), parts[1]);
    let with_sig = |s: &[u8]| format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(s));
    let mut hostile: Vec<(&str, String)> = Vec::new();

    // #1: alg none in any case, with an empty or the original signature.
    for alg in ["none", "None", "nOnE", "NONE"] {
        let mut h = header.clone();
        h["alg"] = alg.into();
        hostile.push(("alg none, empty signature", with_header(h.clone(), "")));
        hostile.push(("alg none, kept signature", with_header(h, parts[2])));
    }
    // #2: HS256 keyed with the server's public key in every form a library might take.
    let jwks: Value = op
        .server
        .get("/oauth2/jwks", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap()
        .clone();
    let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    let y = URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap();
    let point = [&[4u8][..], &x, &y].concat();
    let mut hs_header = header.clone();
    hs_header["alg"] = "HS256".into();
    for key in [jwk.to_string().into_bytes(), point, x.clone()] {
        hostile.push((
            "HS256 with the public key",
            hs256(&key, &hs_header, &claims),
        ));
    }
    // #3: ES256 signatures that are zero, DER-encoded or of the wrong length.
    hostile.push(("r = s = 0", with_sig(&[0u8; 64])));
    hostile.push(("DER instead of P1363", with_sig(&der(&sig))));
    hostile.push(("63-byte signature", with_sig(&sig[..63])));
    hostile.push((
        "65-byte signature",
        with_sig(&[sig.as_slice(), &[0]].concat()),
    ));
    // #4: the attacker's own key, announced in the header or behind a hostile kid.
    let evil = attacker_signer(SigningAlg::Es256);
    let claims_bytes = claims.to_string().into_bytes();
    for (what, h) in [
        (
            "jwk header with the server's kid",
            json!({"alg": "ES256", "typ": "at+jwt", "kid": kid, "jwk": evil.public_jwk()}),
        ),
        (
            "jwk header with its own kid",
            json!({"alg": "ES256", "typ": "at+jwt", "kid": evil.kid(), "jwk": evil.public_jwk()}),
        ),
        (
            "jku header",
            json!({"alg": "ES256", "typ": "at+jwt", "kid": kid, "jku": "https://evil.example/jwks"}),
        ),
        (
            "x5u header",
            json!({"alg": "ES256", "typ": "at+jwt", "kid": kid, "x5u": "https://evil.example/cert"}),
        ),
        (
            "x5c header",
            json!({"alg": "ES256", "typ": "at+jwt", "kid": kid, "x5c": ["MIIBszCCAVmgAwIBAgIU"]}),
        ),
        (
            "kid path",
            json!({"alg": "ES256", "typ": "at+jwt", "kid": "../../dev/null"}),
        ),
        (
            "kid SQL",
            json!({"alg": "ES256", "typ": "at+jwt", "kid": "' OR 1=1--"}),
        ),
        (
            "kid URL",
            json!({"alg": "ES256", "typ": "at+jwt", "kid": "https://evil.example/key"}),
        ),
        (
            "kid 10 KB",
            json!({"alg": "ES256", "typ": "at+jwt", "kid": "k".repeat(10_000)}),
        ),
        (
            "kid CR/LF",
            json!({"alg": "ES256", "typ": "at+jwt", "kid": "k\r\nX-Injected: 1"}),
        ),
    ] {
        hostile.push((
            what,
            sign_raw(&evil, h.to_string().as_bytes(), &claims_bytes),
        ));
    }
    // #5: the server's own key over claims of the wrong type or shape: only the claims are wrong.
    let ring = server_ring(&op.server).await;
    let real = ring.signer(SigningAlg::Es256).unwrap();
    assert_eq!(
        real.kid(),
        kid,
        "the test signs with the key the server uses"
    );
    let real_header = header.to_string().into_bytes();
    let control = sign_raw(&real, &real_header, &claims_bytes);
    assert_eq!(
        userinfo_status(&op, &control).await.0,
        200,
        "a token signed here with the server's key is genuine"
    );
    let exp = claims["exp"].as_i64().unwrap();
    let mutate = |f: &dyn Fn(&mut Value)| {
        let mut c = claims.clone();
        f(&mut c);
        c.to_string().into_bytes()
    };
    for (what, payload) in [
        (
            "exp as a string",
            mutate(&|c| c["exp"] = exp.to_string().into()),
        ),
        ("exp as a float", mutate(&|c| c["exp"] = json!(1e300))),
        ("nbf as a string", mutate(&|c| c["nbf"] = "0".into())),
        ("aud as []", mutate(&|c| c["aud"] = json!([]))),
        ("aud as [\"\"]", mutate(&|c| c["aud"] = json!([""]))),
        (
            "aud nested",
            mutate(&|c| c["aud"] = json!([[c["aud"].clone()]])),
        ),
        ("sub as a number", mutate(&|c| c["sub"] = json!(1))),
        ("expired", mutate(&|c| c["exp"] = json!(1000))),
        (
            "issued in the future",
            mutate(&|c| c["iat"] = json!(exp + 86_400)),
        ),
        (
            "another issuer",
            mutate(&|c| c["iss"] = "https://evil.example".into()),
        ),
        (
            "duplicate keys",
            format!(
                "{{\"sub\":\"someone-else\",{}",
                claims.to_string().trim_start_matches('{')
            )
            .into_bytes(),
        ),
        ("invalid UTF-8", b"{\"iss\":\"\xff\xfe\"}".to_vec()),
        ("not JSON", b"not json".to_vec()),
    ] {
        hostile.push((what, sign_raw(&real, &real_header, &payload)));
    }
    // Other serialisations and sizes.
    hostile.push((
        "JSON serialization",
        json!({"protected": parts[0], "payload": parts[1], "signature": parts[2]}).to_string(),
    ));
    hostile.push((
        "JWE with a huge p2c",
        format!(
            "{}.AAAA.AAAA.AAAA.AAAA",
            b64json(&json!({"alg": "PBES2-HS256+A128KW", "enc": "A128GCM", "p2c": 2_000_000_000u32, "p2s": "AAAA", "kid": kid}))
        ),
    ));
    hostile.push(("two segments", format!("{}.{}", parts[0], parts[1])));
    hostile.push(("9 KB of token", format!("{at}{}", "A".repeat(9 * 1024))));
    // #6: the wrong kind of token: an ID token, a refresh token, an ID-token-typed JWT signed
    // by the server's key, and a client's own token, none of which is a user's access token.
    hostile.push(("ID token as an access token", id_token.clone()));
    hostile.push(("refresh token as an access token", rt.clone()));
    let mut jwt_typ = header.clone();
    jwt_typ["typ"] = "JWT".into();
    hostile.push((
        "typ JWT",
        sign_raw(&real, jwt_typ.to_string().as_bytes(), &claims_bytes),
    ));
    let cc = post_form(
        &op,
        "/oauth2/token",
        "grant_type=client_credentials&scope=read",
    )
    .await;
    let cc: Value = cc.json().await.unwrap();
    let cc_at = cc["access_token"].as_str().unwrap().to_owned();

    for (what, token) in &hostile {
        let (status, challenge) = userinfo_status(&op, token).await;
        assert_eq!(status, 401, "userinfo accepted {what}");
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{what}: {challenge}"
        );
        let (status, body) = introspect(&op, token).await;
        if token.len() > 4096 {
            // Past the form's length cap (SECURITY.md #68) the request itself is refused.
            assert_eq!(
                (status, body["error"].as_str()),
                (400, Some("invalid_request")),
                "introspection of {what}"
            );
        } else if *what != "refresh token as an access token" {
            assert_eq!(
                (status, body),
                (200, json!({"active": false})),
                "introspection of {what}"
            );
        }
    }
    // A client-credentials token is alive but is no user's: userinfo refuses it.
    assert_eq!(introspect(&op, &cc_at).await.1["active"], true);
    assert_eq!(userinfo_status(&op, &cc_at).await.0, 401);
    // A 1 MB token is refused before anyone parses it (the server may close the connection
    // before the client has finished sending it).
    let huge = "A".repeat(1024 * 1024);
    if let Ok(res) = op
        .server
        .client
        .get(format!("{}/oauth2/userinfo", op.server.url))
        .header("authorization", format!("Bearer {huge}"))
        .send()
        .await
    {
        let status = res.status().as_u16();
        assert!((400..500).contains(&status), "1 MB bearer token: {status}");
    }
    // Nothing above disturbed the genuine token.
    assert_eq!(userinfo_status(&op, &at).await.0, 200);
}

/// SECURITY.md §2 #7 and #23-#25: redirect URI variants get an error page on the server, never
/// a redirect; only a native client's loopback redirect may change its port.
#[tokio::test]
async fn redirect_uri_variants_never_redirect() {
    let op = op().await;
    let variants = [
        "https://app.example.com\\cb",
        "https://app.example.com\\@evil.example/cb",
        "https://app.example.com@evil.example/cb",
        "https://a@b@evil.example/cb",
        "https://app.example.com/cb@evil.example",
        "HTTPS://app.example.com/cb",
        "https://app.example.COM/cb",
        "https://app.example.com/cb/",
        "https://app.example.com/cb?",
        "https://app.example.com/cb?a=1",
        "https://app.example.com/cb#frag",
        "https://app.example.com/cb/./",
        "https://app.example.com/cb/../cb",
        "https://app.example.com/%63b",
        "https://app.example.com:443/cb",
        "https://app.example.com./cb",
        "https://\u{0430}pp.example.com/cb",
        "https://xn--pp-8kc.example.com/cb",
        "https://app.example.com.evil.example/cb",
        "http://app.example.com/cb",
        "JaVaScRiPt:alert(1)",
        "DaTa:text/html,<script>alert(1)</script>",
        "VbScRiPt:msgbox(1)",
        "//evil.example/cb",
        " https://app.example.com/cb",
        "https://app.example.com/cb%0d%0aLocation:%20https://evil.example",
    ];
    for v in variants {
        let res = get(&op, &authorize_url(&op, "app", v, "")).await;
        assert_eq!(res.status(), 400, "{v}");
        assert!(res.headers().get("location").is_none(), "{v} redirected");
    }
    // A native client: any port on its loopback IP literal, nothing else.
    let res = get(
        &op,
        &authorize_url(&op, "cli", "http://127.0.0.1:51234/cb", ""),
    )
    .await;
    assert_eq!(res.status(), 302, "the loopback port may vary");
    for v in [
        "http://localhost:51234/cb",
        "http://localhosts/cb",
        "http://[::1]:51234/cb",
        "http://127.0.0.2:51234/cb",
        "http://127.0.0.1:51234/cb?x=1",
        "http://127.0.0.1:51234/cb/",
        "http://127.0.0.1:51234@evil.example/cb",
        "http://127.0.0.1:51234.evil.example/cb",
        "https://127.0.0.1:51234/cb",
    ] {
        let res = get(&op, &authorize_url(&op, "cli", v, "")).await;
        assert_eq!(res.status(), 400, "{v}");
        assert!(res.headers().get("location").is_none(), "{v} redirected");
    }
}

/// SECURITY.md #25: the admin API refuses every dangerous redirect URI at registration.
#[tokio::test]
async fn dangerous_redirect_uris_cannot_be_registered() {
    let server = TestServer::start().await.unwrap();
    let state = &server.running().unwrap().state;
    state
        .auth
        .create_user("admin@example.com", PASSWORD, true)
        .await
        .unwrap();
    let cookie = server.sign_in("admin@example.com", PASSWORD).await.unwrap();
    let csrf = server.csrf_token(&cookie).await.unwrap();
    let register = |uri: &'static str| {
        let (server, cookie, csrf) = (&server, cookie.clone(), csrf.clone());
        async move {
            server
                .client
                .post(format!("{}/api/v1/admin/clients", server.url))
                .header("origin", server.origin())
                .header("cookie", cookie)
                .header("x-csrf-token", csrf)
                .json(&json!({"id": "c", "name": "C", "redirect_uris": [uri]}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for bad in [
        "http://app.example.com/cb",
        "http://localhost/cb",
        "https://app.example.com/cb#frag",
        "https://*.example.com/cb",
        "https://app.example.com/*",
        "javascript:alert(1)",
        "JaVaScRiPt://alert(1)",
        "DATA:text/html,x",
        "vbscript://x",
        "https://good@evil.example/cb",
        "https://app.example.com\\cb",
        "https:///cb",
        "app.example.com/cb",
        "https://app.example.com/c b",
        "https://app.example.com/cb\r\nX: 1",
    ] {
        assert_eq!(register(bad).await, 400, "{bad} was registered");
    }
    assert_eq!(register("https://app.example.com/cb").await, 201);
}

/// SECURITY.md §2 #8 and #36: repeated parameters are refused, empty ones are absent, unknown
/// ones are ignored, the query string is not a second body, and Basic and body credentials
/// never mix.
#[tokio::test]
async fn duplicate_empty_and_unknown_parameters() {
    let op = op().await;
    for (what, dup) in [
        ("code", "&code=x"),
        (
            "redirect_uri",
            "&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb",
        ),
        ("code_verifier", "&code_verifier=x"),
        ("grant_type", "&grant_type=authorization_code"),
    ] {
        let c = code(&op, "").await;
        let res = post_form(
            &op,
            "/oauth2/token",
            &format!("{}{dup}", exchange_body(&c, VERIFIER)),
        )
        .await;
        assert_eq!(
            error_of(res).await,
            (400, "invalid_request".into()),
            "{what}"
        );
    }
    // Empty values count as absent.
    let c = code(&op, "").await;
    let res = post_form(
        &op,
        "/oauth2/token",
        &format!(
            "grant_type=authorization_code&code=&code={}&redirect_uri={}&code_verifier={VERIFIER}",
            enc(&c),
            enc(REDIRECT)
        ),
    )
    .await;
    assert_eq!(res.status(), 200, "an empty repeat is no repeat");
    let res = post_form(
        &op,
        "/oauth2/token",
        &format!(
            "grant_type=authorization_code&code=&redirect_uri={}&code_verifier={VERIFIER}",
            enc(REDIRECT)
        ),
    )
    .await;
    assert_eq!(res.status(), 400, "an empty code is a missing code");
    // A code in the query string is not read; the code stays good.
    let c = code(&op, "").await;
    let res = op
        .server
        .client
        .post(format!("{}/oauth2/token?code={}", op.server.url, enc(&c)))
        .basic_auth("app", Some(&op.secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await.0, 400);
    // Unknown parameters are ignored.
    let res = post_form(
        &op,
        "/oauth2/token",
        &format!("{}&foo=bar&x%00y=%0d%0a", exchange_body(&c, VERIFIER)),
    )
    .await;
    assert_eq!(res.status(), 200, "the query-string code was spent");
    // The same credentials twice: Basic plus a body client_id that differs.
    let res = post_form(
        &op,
        "/oauth2/token",
        "grant_type=client_credentials&client_id=someone-else",
    )
    .await;
    assert_eq!(error_of(res).await, (400, "invalid_request".into()));
    // Basic with an unencoded `:` or `%` in the secret is a failed authentication, not a crash.
    for raw in ["app:with:colons", "app:100%", "app%zz:x", ":", "app"] {
        let res = op
            .server
            .client
            .post(format!("{}/oauth2/token", op.server.url))
            .header(
                "authorization",
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                ),
            )
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(res).await, (401, "invalid_client".into()), "{raw}");
    }
    // Introspection and revocation refuse repeats too.
    for path in ["/oauth2/introspect", "/oauth2/revoke"] {
        let res = post_form(&op, path, "token=a&token=b").await;
        assert_eq!(
            error_of(res).await,
            (400, "invalid_request".into()),
            "{path}"
        );
    }
    // At authorize: a repeated client_id is an error page; any other repeat is an error
    // redirect that keeps state and iss.
    let res = get(&op, &authorize_url(&op, "app", REDIRECT, "&client_id=app")).await;
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
    for extra in [
        "&scope=openid",
        "&code_challenge_method=S256",
        "&response_type=code",
    ] {
        let res = get(&op, &authorize_url(&op, "app", REDIRECT, extra)).await;
        assert_eq!(res.status(), 302, "{extra}");
        let loc = res.headers()["location"].to_str().unwrap();
        assert_eq!(
            query_param(loc, "error").as_deref(),
            Some("invalid_request"),
            "{extra}"
        );
        assert_eq!(
            query_param(loc, "iss").as_deref(),
            Some(op.server.url.as_str())
        );
    }
}

/// SECURITY.md §2 #9 and #35: a bad verifier gets `invalid_grant` and spends the code.
#[tokio::test]
async fn pkce_attacks_fail_and_spend_the_code() {
    let op = op().await;
    let challenge = pkce::s256(VERIFIER);
    let bad_verifiers = [
        ("missing", None),
        ("42 characters", Some("a".repeat(42))),
        ("129 characters", Some("a".repeat(129))),
        ("+ / =", Some(format!("{}+/=", &VERIFIER[..40]))),
        ("a space", Some(format!("{} ", &VERIFIER[..42]))),
        ("the challenge itself", Some(challenge.clone())),
        ("another valid verifier", Some("b".repeat(43))),
        ("the verifier with a suffix", Some(format!("{VERIFIER}A"))),
    ];
    for (what, verifier) in bad_verifiers {
        let c = code(&op, "").await;
        let mut body = format!(
            "grant_type=authorization_code&code={}&redirect_uri={}",
            enc(&c),
            enc(REDIRECT)
        );
        if let Some(v) = &verifier {
            body.push_str(&format!("&code_verifier={}", enc(v)));
        }
        let res = post_form(&op, "/oauth2/token", &body).await;
        assert_eq!(error_of(res).await, (400, "invalid_grant".into()), "{what}");
        let res = post_form(&op, "/oauth2/token", &exchange_body(&c, VERIFIER)).await;
        assert_eq!(
            error_of(res).await,
            (400, "invalid_grant".into()),
            "{what}: the code was not spent"
        );
    }
    // A challenge that is not S256-shaped, or `plain`, never yields a code.
    for extra in [
        format!("&code_challenge={}", "a".repeat(42)),
        format!("&code_challenge={}", "a".repeat(44)),
        format!("&code_challenge={}%3D", &challenge[..42]),
        "&code_challenge_method=plain".to_owned(),
    ] {
        let url = authorize_url(&op, "app", REDIRECT, "")
            .replace(&format!("&code_challenge={challenge}"), "")
            .replace("&code_challenge_method=S256", "");
        let url = if extra.contains("method") {
            format!("{url}&code_challenge={challenge}{extra}")
        } else {
            format!("{url}{extra}&code_challenge_method=S256")
        };
        let res = get(&op, &url).await;
        assert_eq!(res.status(), 302, "{extra}");
        let loc = res.headers()["location"].to_str().unwrap();
        assert_eq!(
            query_param(loc, "error").as_deref(),
            Some("invalid_request"),
            "{extra}"
        );
        assert!(query_param(loc, "code").is_none());
    }
}

/// SECURITY.md §2 #17 and #67: CR/LF and SQL metacharacters in every field are data, never
/// headers, queries or errors.
#[tokio::test]
async fn crlf_and_sql_metacharacters_are_inert() {
    let op = op().await;
    let nasty = "x\r\nSet-Cookie: evil=1\r\n' OR '1'='1'; DROP TABLE users;--\"$ne{}";
    // state is echoed byte for byte inside the redirect, and injects no header.
    let url = authorize_url(&op, "app", REDIRECT, "")
        .replace("state=s1", &format!("state={}", enc(nasty)));
    let res = get(&op, &url).await;
    assert_eq!(res.status(), 302);
    assert!(
        res.headers().get("set-cookie").is_none(),
        "a header was injected"
    );
    let loc = res.headers()["location"].to_str().unwrap();
    assert!(!loc.contains('\r') && !loc.contains('\n'));
    assert_eq!(query_param(loc, "state").as_deref(), Some(nasty));
    // nonce and login_hint: the code flow goes through, and the nonce returns unchanged.
    let url = authorize_url(&op, "app", REDIRECT, &format!("&login_hint={}", enc(nasty)))
        .replace("nonce=n1", &format!("nonce={}", enc(nasty)));
    let res = get(&op, &url).await;
    assert_eq!(res.status(), 302);
    let c = query_param(res.headers()["location"].to_str().unwrap(), "code").unwrap();
    let res = post_form(&op, "/oauth2/token", &exchange_body(&c, VERIFIER)).await;
    assert_eq!(res.status(), 200);
    let tokens: Value = res.json().await.unwrap();
    let id_token = tokens["id_token"].as_str().unwrap();
    let payload: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(id_token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["nonce"], nasty);
    // client_id: an error page at authorize, invalid_client at the token endpoint.
    for id in ["' OR 1=1--", "app'--", "app\r\nX: 1", "app%00", "*"] {
        let res = get(&op, &authorize_url(&op, id, REDIRECT, "")).await;
        assert_eq!(res.status(), 400, "{id:?}");
        assert!(res.headers().get("location").is_none());
        let res = op
            .server
            .client
            .post(format!("{}/oauth2/token", op.server.url))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", "' OR '1'='1"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_of(res).await,
            (401, "invalid_client".into()),
            "{id:?}"
        );
    }
    // scope: invalid_scope, redirected with state.
    for scope in [
        "openid\r\nemail",
        "openid' OR '1'='1",
        "openid;DROP",
        "openid \"x\"",
    ] {
        let url = authorize_url(&op, "app", REDIRECT, "")
            .replace("scope=openid%20email", &format!("scope={}", enc(scope)));
        let res = get(&op, &url).await;
        assert_eq!(res.status(), 302, "{scope:?}");
        let loc = res.headers()["location"].to_str().unwrap();
        assert_eq!(
            query_param(loc, "error").as_deref(),
            Some("invalid_scope"),
            "{scope:?}"
        );
        assert_eq!(query_param(loc, "state").as_deref(), Some("s1"));
    }
    // user_code on the device page: no match, no error.
    for typed in ["BCDF\r\nGHJK", "BCDF-GHJK' OR 1=1--", "%", "\u{0}"] {
        let res = get(
            &op,
            &format!("{}/device?user_code={}", op.server.url, enc(typed)),
        )
        .await;
        assert_eq!(res.status(), 400, "{typed:?}");
        assert!(res.headers().get("location").is_none());
    }
    // Token, introspection and revocation values with metacharacters are just unknown.
    for t in [nasty, "' OR 1=1--", "%00", "\u{0}"] {
        assert_eq!(introspect(&op, t).await, (200, json!({"active": false})));
        let res = op
            .server
            .client
            .post(format!("{}/oauth2/revoke", op.server.url))
            .basic_auth("app", Some(&op.secret))
            .form(&[("token", t)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    // The server still knows its user and its client.
    assert_eq!(
        op.server
            .get("/api/v1/me", Some(&op.cookie))
            .await
            .unwrap()
            .status(),
        200
    );
}

/// SECURITY.md §2 #23 and #12: GET, HEAD and OPTIONS never sign out, consent or approve.
#[tokio::test]
async fn method_tricks_change_nothing() {
    let op = op().await;
    let me = || op.server.get("/api/v1/me", Some(&op.cookie));
    for (method, path) in [
        ("GET", "/consent"),
        ("HEAD", "/consent"),
        ("OPTIONS", "/consent"),
        ("PUT", "/consent"),
        ("GET", "/api/v1/auth/sign-out"),
        ("HEAD", "/api/v1/auth/sign-out"),
        ("OPTIONS", "/api/v1/auth/sign-out"),
        ("GET", "/api/v1/sessions/revoke-others"),
        ("HEAD", "/logout"),
        ("OPTIONS", "/logout"),
        ("GET", "/logout"),
        ("GET", "/oauth2/logout"),
        ("HEAD", "/oauth2/logout"),
        ("GET", "/account/password"),
        ("GET", "/oauth2/token"),
        ("HEAD", "/oauth2/revoke"),
        ("OPTIONS", "/oauth2/token"),
        ("TRACE", "/login"),
    ] {
        let res = op
            .server
            .client
            .request(method.parse().unwrap(), format!("{}{path}", op.server.url))
            .header("cookie", &op.cookie)
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        assert!(status < 500, "{method} {path}: {status}");
        assert!(
            res.headers().get("access-control-allow-origin").is_none(),
            "{method} {path} allowed a foreign origin"
        );
        assert!(
            res.headers()
                .get_all("set-cookie")
                .iter()
                .all(|c| !c.to_str().unwrap().contains("Max-Age=0")),
            "{method} {path} cleared a cookie"
        );
        assert_eq!(
            me().await.unwrap().status(),
            200,
            "{method} {path} signed out"
        );
    }
    // A consent decision cannot ride on a GET either: the request stays undecided.
    let res = get(
        &op,
        &format!("{}/consent?decision=allow&client_id=app", op.server.url),
    )
    .await;
    assert_eq!(res.status(), 405);
}
