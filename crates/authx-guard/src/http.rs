//! Outbound HTTP to the issuer: timeouts, size caps, no redirects.

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::GuardError;

/// Largest JSON document read from the issuer.
const MAX_JSON_BYTES: usize = 1024 * 1024;

/// A client for the issuer's endpoints.
#[derive(Clone)]
pub(crate) struct Http {
    pub(crate) client: reqwest::Client,
    /// A client without an overall timeout, for the long-lived revocation feed.
    pub(crate) streaming: reqwest::Client,
}

impl Http {
    pub(crate) fn new(timeout: Duration) -> Result<Self, GuardError> {
        let build = |overall: Option<Duration>| {
            let mut b = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(timeout)
                .user_agent(concat!("authx-guard/", env!("CARGO_PKG_VERSION")));
            if let Some(t) = overall {
                b = b.timeout(t);
            }
            b.build()
                .map_err(|e| GuardError::Config(format!("cannot build an HTTP client: {e}")))
        };
        Ok(Self {
            client: build(Some(timeout))?,
            streaming: build(None)?,
        })
    }

    /// GETs a JSON document of at most [`MAX_JSON_BYTES`].
    pub(crate) async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, GuardError> {
        let res = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| GuardError::Issuer(format!("GET {url}: {e}")))?;
        read_json(url, res).await
    }
}

/// Reads a successful JSON response of bounded size.
pub(crate) async fn read_json<T: DeserializeOwned>(
    url: &str,
    mut res: reqwest::Response,
) -> Result<T, GuardError> {
    if !res.status().is_success() {
        return Err(GuardError::Issuer(format!(
            "{url} answered {}",
            res.status()
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| GuardError::Issuer(format!("{url}: {e}")))?
    {
        if body.len() + chunk.len() > MAX_JSON_BYTES {
            return Err(GuardError::Issuer(format!("{url}: response too large")));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| GuardError::Issuer(format!("{url}: {e}")))
}

/// Whether `url` may be used: `https`, or `http` to a loopback address (development and tests).
pub(crate) fn acceptable_url(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    match u.scheme() {
        "https" => u.host().is_some(),
        "http" => match u.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// An HTTP Basic `Authorization` value for client credentials: each part form-urlencoded before
/// they are joined (RFC 6749 §2.3.1), so ids such as an API's URI survive their `:`.
pub(crate) fn basic_auth(id: &str, secret: &str) -> String {
    use base64::Engine as _;
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}
