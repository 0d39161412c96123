//! An independent relying party written in JavaScript, `oauth4webapi` (run by Node from
//! `interop/node`, installed by `npm ci` there), drives a real authx: the code flow with a
//! pushed authorization request (RFC 9126), its callback checks, the code exchange and
//! userinfo.

use std::path::PathBuf;
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

#[tokio::test]
async fn oauth4webapi_runs_the_code_flow_through_a_pushed_request() {
    let Some(dir) = interop_dir() else {
        return;
    };
    let op = op_with(|_| {}).await;
    let output = tokio::process::Command::new("node")
        .arg(dir.join("par.mjs"))
        .env("ISSUER", &op.server.url)
        .env("CLIENT_ID", "app")
        .env("CLIENT_SECRET", &op.secret)
        .env("REDIRECT_URI", REDIRECT)
        .env("SESSION_COOKIE", &op.cookie)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("node runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the client failed: {stderr}");
    let learned: Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
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
