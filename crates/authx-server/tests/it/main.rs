//! Integration tests: the real server on 127.0.0.1:0 with a real SQLite file, spoken to over HTTP.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub
)]

mod admin_api;
mod audit;
mod browser;
mod browser_console;
mod browser_device;
mod browser_federation;
mod browser_magic_link;
mod browser_mfa;
mod browser_oidc;
mod browser_recovery;
mod browser_saml_interop;
mod browser_sdk;
mod cli;
mod code_session;
mod console;
mod csrf;
mod device;
mod dpop;
mod email_change;
mod federation;
mod frozen;
mod hostile;
mod hostile_oidc;
mod interop;
mod interop_node;
mod limits;
mod magic_link;
mod mail;
mod mfa;
mod oidc;
mod ops;
mod par;
mod passkey;
mod private_key_jwt;
mod proxy;
mod purge;
mod recovery;
mod saml;
mod saml_browser;
mod saml_deployment;
mod saml_interop;
mod saml_sp;
// The IdP of authx-saml's own tests, which signs responses the way IdPs do.
mod registration;
mod resources;
#[allow(dead_code)]
#[path = "../../../authx-saml/tests/it/idp.rs"]
mod saml_idp;
mod scale;
mod scale_changes;
mod sessions;
mod throttle;
mod verify;

use authx_testkit::{PASSWORD, TestServer};

/// A sign-in over the JSON API from the server's own origin, whatever its answer.
async fn sign_in_raw(server: &TestServer, email: &str, password: &str) -> reqwest::Response {
    server
        .client
        .post(format!("{}/api/v1/auth/sign-in", server.url))
        .header("origin", server.origin())
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

/// The status `/oauth2/token` answers a client_credentials request of `id` with `secret`
/// (HTTP Basic).
async fn token_status(server: &TestServer, id: &str, secret: &str) -> u16 {
    server
        .client
        .post(format!("{}/oauth2/token", server.url))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A server with one user signed in: (server, cookie).
async fn signed_in(email: &str) -> (TestServer, String) {
    let server = TestServer::start().await.unwrap();
    server.create_user(email, PASSWORD).await.unwrap();
    let cookie = server.sign_in(email, PASSWORD).await.unwrap();
    (server, cookie)
}
