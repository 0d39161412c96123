//! An independent relying party written in JavaScript, `oauth4webapi` (run by Node from
//! `interop/node`, installed by `npm ci` there), drives a real authx: the code flow with a
//! pushed authorization request (RFC 9126), its callback checks, the code exchange and
//! userinfo, with private_key_jwt and DPoP (RFC 9449).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

use crate::oidc::{REDIRECT, op_with};

/// `interop/node`, or `None` (after `SKIPPED:`) when its packages are not installed.
fn interop_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/node");
    if dir.join("node_modules/oauth4webapi").is_dir() {
        return Some(dir);
    }
    eprintln!(
        "SKIPPED: oauth4webapi interop test: run `npm ci` in {}",
        dir.display()
    );
    let required =
        std::env::var(authx_testkit::browser::REQUIRE_SERVICES_ENV).is_ok_and(|v| v == "1");
    assert!(
        !required,
        "the interop packages are missing (npm ci in interop/node)"
    );
    None
}

/// Runs `script` from `dir` with Node against `op`'s server (`ISSUER` and `env` set) and
/// returns the one JSON line it prints; the test fails with Node's error output otherwise.
/// The server's test clock stands still: it is set to now first, as Node dates its proofs and
/// assertions now.
async fn run_node(dir: &Path, op: &crate::oidc::Op, script: &str, env: &[(&str, &str)]) -> Value {
    op.server
        .clock
        .set(authx_core::Clock::now(&authx_core::SystemClock));
    let output = tokio::process::Command::new("node")
        .arg(dir.join(script))
        .env("ISSUER", &op.server.url)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .await
        .expect("node runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the client failed: {stderr}");
    serde_json::from_slice(&output.stdout).expect("one JSON line")
}

#[tokio::test]
async fn oauth4webapi_runs_the_code_flow_through_a_pushed_request() {
    let Some(dir) = interop_dir() else {
        return;
    };
    let op = op_with(|_| {}).await;
    let learned = run_node(
        &dir,
        &op,
        "par.mjs",
        &[
            ("CLIENT_ID", "app"),
            ("CLIENT_SECRET", op.secret.as_str()),
            ("REDIRECT_URI", REDIRECT),
            ("SESSION_COOKIE", op.cookie.as_str()),
        ],
    )
    .await;
    assert_eq!(learned["expires_in"], 60);
    assert_eq!(learned["email"], "kate@example.com");
    let user = op
        .server
        .running()
        .unwrap()
        .state
        .auth
        .stores()
        .accounts
        .user_by_email("kate@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(learned["sub"], user.id.0);
    // A second visit with the same request_uri is a page, not a second code.
    assert_eq!(learned["reuse_status"], 400);
    assert_eq!(learned["reuse_location"], Value::Null);
}

/// Registers a `private_key_jwt` client `fapi` at `op` with a fresh P-256 key; returns the
/// key as base64 PKCS#8 and its `kid`.
async fn private_key_jwt_client(op: &crate::oidc::Op, dpop_bound: bool) -> (String, String) {
    use authx_core::oauth::client::{GrantType, TokenEndpointAuthMethod};
    use authx_core::oauth::keys::{KeyEncryptor, Signer, SigningAlg, generate};
    use base64::Engine as _;

    let enc = KeyEncryptor::new(&[5u8; 32]).unwrap();
    let k = generate(SigningAlg::Es256, &enc, authx_core::Timestamp(0)).unwrap();
    let pkcs8 = enc.open(&k.kid, &k.private_key_encrypted).unwrap();
    let signer = Signer::from_pkcs8(SigningAlg::Es256, &k.kid, &pkcs8).unwrap();
    let mut client = crate::oidc::client(
        "fapi",
        &[GrantType::AuthorizationCode, GrantType::RefreshToken],
        true,
    );
    client.scopes.push("offline_access".into());
    client.token_endpoint_auth_method = TokenEndpointAuthMethod::PrivateKeyJwt;
    client.jwks = Some(serde_json::json!({"keys": [signer.public_jwk()]}).to_string());
    client.require_pushed_authorization_requests = true;
    client.dpop_bound_access_tokens = dpop_bound;
    let state = &op.server.running().unwrap().state;
    state.oauth.register_client(client, true).await.unwrap();
    (
        base64::engine::general_purpose::STANDARD.encode(&pkcs8),
        k.kid,
    )
}

#[tokio::test]
async fn oauth4webapi_runs_par_and_private_key_jwt_with_a_refresh() {
    let Some(dir) = interop_dir() else {
        return;
    };
    let op = op_with(|_| {}).await;
    let (key, kid) = private_key_jwt_client(&op, false).await;
    let learned = run_node(
        &dir,
        &op,
        "fapi.mjs",
        &[
            ("CLIENT_ID", "fapi"),
            ("CLIENT_KEY_PKCS8", key.as_str()),
            ("CLIENT_KID", kid.as_str()),
            ("REDIRECT_URI", REDIRECT),
            ("SESSION_COOKIE", op.cookie.as_str()),
        ],
    )
    .await;
    assert_eq!(learned["email"], "kate@example.com");
    assert_eq!(learned["token_type"], "bearer");
    // authx saw the assertions: one per request, each used once.
    let state = &op.server.running().unwrap().state;
    state.oauth.audit().flush().await;
    let failures = state
        .audit_store
        .list_audit(&authx_core::audit::AuditQuery {
            kind: Some("client_auth_failed".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(failures.is_empty(), "{failures:?}");
}

/// RFC 9449 with an independent client: oauth4webapi binds the code with `dpop_jkt` at PAR,
/// sends proofs to the token endpoint (retrying once when authx asks for a nonce), refreshes,
/// and calls userinfo with `Authorization: DPoP`, for a client registered for bound tokens
/// only, on a server that requires nonces.
#[tokio::test]
async fn oauth4webapi_binds_every_token_with_dpop_and_answers_nonce_challenges() {
    let Some(dir) = interop_dir() else {
        return;
    };
    let op = op_with(|f| {
        let oauth = f
            .oauth
            .get_or_insert_with(authx_server::config::OAuthFile::default);
        oauth.dpop = Some(true);
        oauth.dpop_require_nonce = Some(true);
        // Node may start slowly on a busy machine; its proofs must still count as recent.
        oauth.dpop_leeway_secs = Some(60);
    })
    .await;
    let (key, kid) = private_key_jwt_client(&op, true).await;
    let learned = run_node(
        &dir,
        &op,
        "fapi.mjs",
        &[
            ("CLIENT_ID", "fapi"),
            ("CLIENT_KEY_PKCS8", key.as_str()),
            ("CLIENT_KID", kid.as_str()),
            ("REDIRECT_URI", REDIRECT),
            ("SESSION_COOKIE", op.cookie.as_str()),
            ("DPOP", "1"),
        ],
    )
    .await;
    assert_eq!(learned["email"], "kate@example.com");
    assert_eq!(learned["token_type"], "dpop");
    assert_eq!(learned["refreshed_token_type"], "dpop");
    assert!(learned["dpop_jkt"].is_string(), "{learned}");
    // Each of the client's proofs was taken once: no retry reused one.
    let state = &op.server.running().unwrap().state;
    state.oauth.audit().flush().await;
    let replays = state
        .audit_store
        .list_audit(&authx_core::audit::AuditQuery {
            kind: Some("dpop_proof_replayed".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(replays.is_empty(), "{replays:?}");
}
