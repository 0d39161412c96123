//! `authx login`: signs a command line in through the device authorization grant (RFC 8628)
//! of any server that publishes it in its metadata (RFC 8414 / OpenID Connect Discovery).
//!
//! It asks for a code, shows it with the verification URIs, polls politely (never faster than
//! the server's `interval`, and 5 s slower after each `slow_down`), and returns the token
//! response; [`save_tokens`] writes it to a file only the owner can read.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;

/// What to sign in to.
#[derive(Debug, Clone)]
pub struct LoginOptions {
    /// The issuer URL.
    pub issuer: String,
    /// The client id registered for the device grant.
    pub client_id: String,
    /// The client secret of a confidential client.
    pub client_secret: Option<String>,
    /// Scopes to ask for, space-delimited.
    pub scope: Option<String>,
}

/// What the person has to do, as the server said.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// The code to enter.
    pub user_code: String,
    /// Where to enter it.
    pub verification_uri: String,
    /// The same with the code filled in, when the server gives one.
    pub verification_uri_complete: Option<String>,
    /// Seconds before the code expires.
    pub expires_in: u64,
}

impl Prompt {
    /// The text shown to the person.
    #[must_use]
    pub fn message(&self) -> String {
        let mut s = format!(
            "To sign in, open {}\nand enter the code: {}\n",
            self.verification_uri, self.user_code
        );
        if let Some(c) = &self.verification_uri_complete {
            s.push_str(&format!("Or open this link, which carries the code: {c}\n"));
        }
        s.push_str(&format!(
            "The code expires in {}. Waiting for approval...\n",
            authx_core::plural::count(self.expires_in.div_ceil(60), "minute", "minutes")
        ));
        s
    }
}

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// The interval used when the server names none (RFC 8628 §3.2).
const DEFAULT_INTERVAL: u64 = 5;
/// Longest interval the client accepts from the server.
const MAX_INTERVAL: u64 = 300;

fn http() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("authx-login/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// Only `https`, or `http` to this machine (development servers).
fn check_url(url: &str) -> anyhow::Result<()> {
    let lower = url.to_ascii_lowercase();
    let local = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| {
            lower.strip_prefix(p).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with(':') || rest.starts_with('/')
            })
        });
    if lower.starts_with("https://") || local {
        Ok(())
    } else {
        bail!(
            "refusing {url}: use https (plain http is accepted only for 127.0.0.1, [::1] and localhost)"
        )
    }
}

/// The server's endpoints, from its metadata.
async fn discover(http: &reqwest::Client, issuer: &str) -> anyhow::Result<(String, String)> {
    let issuer = issuer.trim_end_matches('/');
    check_url(issuer)?;
    let mut last = None;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let res = http
            .get(format!("{issuer}{path}"))
            .send()
            .await
            .with_context(|| format!("cannot reach {issuer}"))?;
        if !res.status().is_success() {
            last = Some(res.status());
            continue;
        }
        let meta: Value = res
            .json()
            .await
            .context("the server metadata is not JSON")?;
        if meta["issuer"].as_str().map(|s| s.trim_end_matches('/')) != Some(issuer) {
            bail!(
                "the server metadata names another issuer: {}",
                meta["issuer"]
            );
        }
        let device = meta["device_authorization_endpoint"]
            .as_str()
            .context("the server does not offer the device authorization grant")?;
        let token = meta["token_endpoint"]
            .as_str()
            .context("the server metadata has no token_endpoint")?;
        check_url(device)?;
        check_url(token)?;
        return Ok((device.to_owned(), token.to_owned()));
    }
    bail!(
        "no server metadata at {issuer} (HTTP {})",
        last.map(|s| s.as_u16()).unwrap_or_default()
    )
}

fn with_client<'a>(
    req: reqwest::RequestBuilder,
    opts: &'a LoginOptions,
    form: &mut Vec<(&'a str, &'a str)>,
) -> reqwest::RequestBuilder {
    match &opts.client_secret {
        Some(secret) => {
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            req.basic_auth(enc(&opts.client_id), Some(enc(secret)))
        }
        None => {
            form.push(("client_id", opts.client_id.as_str()));
            req
        }
    }
}

/// A form-encoded body (RFC 6749 §3.2 / RFC 8628 §3.1), also when it is empty: a confidential
/// client asking for its default scopes sends no field at all, and a server may refuse a form
/// content type without a body, so the empty form goes out as one with `Content-Length: 0`.
fn form_body(req: reqwest::RequestBuilder, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    req.header(
        reqwest::header::CONTENT_TYPE,
        "application/x-www-form-urlencoded",
    )
    .header(reqwest::header::CONTENT_LENGTH, body.len())
    .body(body)
}

fn error_of(v: &Value) -> String {
    let code = v["error"].as_str().unwrap_or("unknown_error");
    match v["error_description"].as_str() {
        Some(d) => format!("{code}: {d}"),
        None => code.to_owned(),
    }
}

/// Runs the whole flow: `on_prompt` shows the code, `sleep` waits between polls. Returns the
/// token response (JSON).
///
/// # Errors
/// Discovery or transport failures, a refusal, a denial, or expiry.
pub async fn run<S, F>(
    opts: &LoginOptions,
    on_prompt: impl FnOnce(&Prompt),
    sleep: S,
) -> anyhow::Result<Value>
where
    S: Fn(Duration) -> F,
    F: Future<Output = ()>,
{
    let http = http()?;
    let (device_endpoint, token_endpoint) = discover(&http, &opts.issuer).await?;

    let mut form: Vec<(&str, &str)> = Vec::new();
    if let Some(s) = &opts.scope {
        form.push(("scope", s.as_str()));
    }
    let req = with_client(http.post(&device_endpoint), opts, &mut form);
    let res = form_body(req, &form)
        .send()
        .await
        .context("device authorization request failed")?;
    let ok = res.status().is_success();
    let v: Value = res
        .json()
        .await
        .context("the device authorization response is not JSON")?;
    if !ok {
        bail!("the server refused: {}", error_of(&v));
    }
    let device_code = v["device_code"]
        .as_str()
        .context("the response has no device_code")?
        .to_owned();
    let expires_in = v["expires_in"].as_u64().unwrap_or(600);
    let prompt = Prompt {
        user_code: v["user_code"]
            .as_str()
            .context("the response has no user_code")?
            .to_owned(),
        verification_uri: v["verification_uri"]
            .as_str()
            .context("the response has no verification_uri")?
            .to_owned(),
        verification_uri_complete: v["verification_uri_complete"].as_str().map(str::to_owned),
        expires_in,
    };
    on_prompt(&prompt);

    let mut interval = v["interval"]
        .as_u64()
        .unwrap_or(DEFAULT_INTERVAL)
        .clamp(1, MAX_INTERVAL);
    let mut waited = 0u64;
    loop {
        if waited >= expires_in {
            bail!("the code expired before it was approved");
        }
        sleep(Duration::from_secs(interval)).await;
        waited += interval;
        let mut form = vec![
            ("grant_type", DEVICE_GRANT),
            ("device_code", device_code.as_str()),
        ];
        let req = with_client(http.post(&token_endpoint), opts, &mut form);
        let res = match form_body(req, &form).send().await {
            Ok(r) => r,
            // A network hiccup: try again at the next interval.
            Err(e) if e.is_timeout() || e.is_connect() => continue,
            Err(e) => return Err(e).context("token request failed"),
        };
        let ok = res.status().is_success();
        let v: Value = res.json().await.context("the token response is not JSON")?;
        if ok {
            return Ok(v);
        }
        match v["error"].as_str() {
            Some("authorization_pending") => {}
            Some("slow_down") => interval = (interval + 5).min(MAX_INTERVAL),
            Some("access_denied") => bail!("the request was denied"),
            Some("expired_token") => bail!("the code expired before it was approved"),
            _ => bail!("the server refused: {}", error_of(&v)),
        }
    }
}

/// Checks, before a flow starts, that [`save_tokens`] will be able to write `path`: an
/// existing file is opened for writing (not truncated), a missing one is created and removed
/// again. Finding out after the approval would spend the device code for nothing.
///
/// # Errors
/// The file cannot be opened or created for writing.
pub fn check_save_path(path: &Path) -> anyhow::Result<()> {
    let cannot = || format!("cannot write {}", path.display());
    if path.is_dir() {
        bail!("cannot write {}: it is a directory", path.display());
    }
    if path.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(cannot)?;
        return Ok(());
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    drop(opts.open(path).with_context(cannot)?);
    std::fs::remove_file(path).with_context(cannot)
}

/// Writes the tokens to `path`, readable and writable by the owner only (0600 on Unix).
///
/// # Errors
/// The file cannot be written.
pub fn save_tokens(path: &Path, tokens: &Value) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // An existing file keeps its mode on open: narrow it before anything is written.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(serde_json::to_string_pretty(tokens)?.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http() {
        for ok in [
            "https://id.example.com",
            "http://127.0.0.1:8080",
            "http://localhost",
            "http://[::1]:9/x",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://id.example.com",
            "http://127.0.0.1.evil.com",
            "http://localhost.evil.com",
            "ftp://x",
            "javascript:alert(1)",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
