//! Fetches the key sets of `private_key_jwt` clients from their `jwks_uri`, under the same
//! outbound rules as federation ([`crate::upstream`]): `https://` only (plain http on loopback
//! only when `[oauth] client_jwks_insecure_http_loopback` allows it, for tests), no redirects,
//! a connect and a total timeout, at most 64 KiB read. Core caches what is fetched.

use std::time::Duration;

use async_trait::async_trait;
use authx_core::oauth::clients::ClientKeyFetcher;
use serde_json::Value;

use crate::config::outbound_url_allowed;
use crate::upstream::{read_capped, send_for_json};

/// Largest client JWK Set read.
const MAX_CLIENT_JWKS_BYTES: usize = 64 * 1024;

/// The HTTP client that fetches client key sets.
pub struct ClientJwksFetcher {
    http: reqwest::Client,
    insecure_http_loopback: bool,
}

impl ClientJwksFetcher {
    /// A fetcher; `insecure_http_loopback` also allows plain http to loopback addresses.
    ///
    /// # Errors
    /// When no HTTP client can be built.
    pub fn new(insecure_http_loopback: bool) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .user_agent("authx")
            .build()?;
        Ok(Self {
            http,
            insecure_http_loopback,
        })
    }
}

#[async_trait]
impl ClientKeyFetcher for ClientJwksFetcher {
    async fn fetch(&self, uri: &str) -> Result<Value, String> {
        if !outbound_url_allowed(uri, self.insecure_http_loopback) {
            return Err("jwks_uri is not an allowed outbound URL".into());
        }
        let res = send_for_json(self.http.get(uri))
            .await
            .map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("jwks_uri answered {}", res.status()));
        }
        let body = read_capped(res, MAX_CLIENT_JWKS_BYTES, "client key set")
            .await
            .map_err(|e| e.to_string())?;
        serde_json::from_slice(&body).map_err(|_| "jwks_uri did not return JSON".to_owned())
    }
}
