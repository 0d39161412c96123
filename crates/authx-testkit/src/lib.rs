//! Test kit for authx: starts the real server in-process on `127.0.0.1:0` with a real SQLite
//! file and an injected clock, and gives tests an HTTP client with redirects off and no cookie
//! jar, so every cookie a test sends is one it chose.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let server = authx_testkit::TestServer::start().await?;
//! server.create_user("kate@example.com", "correct horse battery staple").await?;
//! let cookie = server.sign_in("kate@example.com", "correct horse battery staple").await?;
//! let me = server.get("/api/v1/me", Some(&cookie)).await?;
//! assert_eq!(me.status(), 200);
//! # Ok(()) }
//! ```

pub mod browser;
pub mod dpop;
pub mod services;
pub mod smtp;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use authx_core::ManualClock;
use authx_core::mfa::totp::{Totp, TotpSecret};
use authx_server::config::{Config, FileConfig, Overrides};
use authx_server::{Running, build_state, start_with_state};
use tokio::net::TcpListener;

/// A password that satisfies the default policy, for fixtures.
pub const PASSWORD: &str = "correct horse battery staple";

/// A running authx server with its own database file and clock.
pub struct TestServer {
    running: Option<Running>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The server's clock; move it to test expiry.
    pub clock: ManualClock,
    /// An HTTP client: no redirects followed, no cookie store.
    pub client: reqwest::Client,
    db_path: PathBuf,
    database_url: String,
    customize: Arc<dyn Fn(&mut FileConfig) + Send + Sync>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A server with the default configuration on a fresh SQLite file.
    ///
    /// # Errors
    /// When the server cannot start.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// A server whose configuration file `customize` adjusts.
    ///
    /// # Errors
    /// When the server cannot start.
    pub async fn start_with(
        customize: impl Fn(&mut FileConfig) + Send + Sync + 'static,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let db_path = dir.path().join("authx.db");
        let clock = ManualClock::starting_now();
        let database_url = format!("sqlite://{}", db_path.display());
        let mut server =
            Self::boot(&db_path, &database_url, clock, Arc::new(customize), None).await?;
        server._dir = Some(dir);
        Ok(server)
    }

    /// A server on an existing database (`postgres://...` or `sqlite://PATH`), configured by
    /// `customize` (for example to set `redis_url`); several servers on one database and one
    /// Redis prefix form one deployment. See [`services::SharedServices`] for fresh ones.
    ///
    /// # Errors
    /// When the server cannot start.
    pub async fn start_on(
        database_url: &str,
        customize: impl Fn(&mut FileConfig) + Send + Sync + 'static,
    ) -> anyhow::Result<Self> {
        let clock = ManualClock::starting_now();
        Self::boot(
            Path::new(""),
            database_url,
            clock,
            Arc::new(customize),
            None,
        )
        .await
    }

    async fn boot(
        db_path: &Path,
        database_url: &str,
        clock: ManualClock,
        customize: Arc<dyn Fn(&mut FileConfig) + Send + Sync>,
        port: Option<u16>,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port.unwrap_or(0))).await?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        let mut file = FileConfig {
            listen: Some(addr.to_string()),
            issuer: Some(url.clone()),
            database_url: Some(database_url.to_owned()),
            ..FileConfig::default()
        };
        customize(&mut file);
        let config = Config::from_parts(file, &Overrides::default())?;
        let state = build_state(config, Arc::new(clock.clone())).await?;
        let running = start_with_state(state, listener);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("authx-testkit")
            .build()?;
        Ok(Self {
            running: Some(running),
            url,
            clock,
            client,
            db_path: db_path.to_owned(),
            database_url: database_url.to_owned(),
            customize,
            _dir: None,
        })
    }

    /// Stops the server (graceful) and starts a new one on the same database file, port and clock.
    ///
    /// # Errors
    /// When the server cannot start again.
    pub async fn restart(self) -> anyhow::Result<Self> {
        self.reboot(false).await
    }

    /// Kills the server as a crash would (nothing flushed, no graceful shutdown), then starts a
    /// new one on the same database, port and clock.
    ///
    /// # Errors
    /// When the server cannot start again.
    pub async fn crash_and_restart(self) -> anyhow::Result<Self> {
        self.reboot(true).await
    }

    async fn reboot(mut self, crash: bool) -> anyhow::Result<Self> {
        let running = self.running.take().context("server already stopped")?;
        let port = running.addr.port();
        if crash {
            running.abort().await;
        } else {
            running.stop().await;
        }
        let mut next = Self::boot(
            &self.db_path,
            &self.database_url,
            self.clock.clone(),
            Arc::clone(&self.customize),
            Some(port),
        )
        .await?;
        next._dir = self._dir.take();
        Ok(next)
    }

    /// The running server's state.
    ///
    /// # Errors
    /// When the server was stopped.
    pub fn running(&self) -> anyhow::Result<&Running> {
        self.running.as_ref().context("server stopped")
    }

    /// The SQLite file behind the server (empty for a server started with
    /// [`TestServer::start_on`]).
    #[must_use]
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// Stops the server.
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }

    /// The `Origin` header value the server trusts.
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.url
    }

    /// Creates a user directly through the service.
    ///
    /// # Errors
    /// When the user cannot be created.
    pub async fn create_user(
        &self,
        email: &str,
        password: &str,
    ) -> anyhow::Result<authx_core::user::User> {
        Ok(self
            .running()?
            .state
            .auth
            .create_user(email, password, false)
            .await?)
    }

    /// Enrols an authenticator app for the account `email` directly in the server's core (the
    /// pages and the API that do it are tested on their own) and confirms it with a first
    /// code; returns its secret. The clock then moves on one step, so the confirming code is
    /// not the one the next sign-in uses.
    ///
    /// # Errors
    /// When the account does not exist or the enrolment fails.
    pub async fn enrol_totp(&self, email: &str) -> anyhow::Result<TotpSecret> {
        let state = &self.running()?.state;
        let factors = state
            .auth
            .factors()
            .context("second factors are not configured")?;
        let user = state
            .auth
            .stores()
            .accounts
            .user_by_email(email)
            .await?
            .with_context(|| format!("no account {email}"))?;
        let e = factors.begin_totp(&user, "phone").await?;
        let secret = TotpSecret::from_bytes(e.secret().expose_bytes().to_vec());
        let code = Totp::new(&secret).code_at(authx_core::Clock::now(&self.clock));
        factors.confirm_totp(&user.id, e.factor_id(), &code).await?;
        self.clock.advance(30);
        Ok(secret)
    }

    /// Signs in over the JSON API and returns the `Cookie` header value for the new session.
    ///
    /// # Errors
    /// When sign-in does not answer 200 with a session cookie.
    pub async fn sign_in(&self, email: &str, password: &str) -> anyhow::Result<String> {
        let res = self
            .client
            .post(format!("{}/api/v1/auth/sign-in", self.url))
            .header("origin", &self.url)
            .json(&serde_json::json!({"email": email, "password": password}))
            .send()
            .await?;
        if res.status() != 200 {
            bail!(
                "sign-in answered {}: {}",
                res.status(),
                res.text().await.unwrap_or_default()
            );
        }
        session_cookie(&res).context("sign-in set no session cookie")
    }

    /// `GET path` with an optional `Cookie` header.
    ///
    /// # Errors
    /// Transport failures.
    pub async fn get(&self, path: &str, cookie: Option<&str>) -> anyhow::Result<reqwest::Response> {
        let mut req = self.client.get(format!("{}{path}", self.url));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        Ok(req.send().await?)
    }

    /// The Prometheus text of `GET /metrics`.
    ///
    /// # Errors
    /// Transport failures.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self.get("/metrics", None).await?.text().await?)
    }

    /// The CSRF token of a session.
    ///
    /// # Errors
    /// When the server does not hand one out.
    pub async fn csrf_token(&self, cookie: &str) -> anyhow::Result<String> {
        let v: serde_json::Value = self
            .get("/api/v1/auth/csrf", Some(cookie))
            .await?
            .json()
            .await?;
        v["csrf_token"]
            .as_str()
            .map(str::to_owned)
            .context("no csrf_token")
    }

    /// A state-changing JSON call as a same-origin page would make it: trusted `Origin`, the
    /// session cookie and its CSRF token.
    ///
    /// # Errors
    /// Transport failures.
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        cookie: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<reqwest::Response> {
        let token = self.csrf_token(cookie).await?;
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.url))
            .header("origin", &self.url)
            .header("cookie", cookie)
            .header("x-csrf-token", token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        Ok(req.send().await?)
    }
}

/// The `name=value` of the session cookie a response sets (either cookie name).
#[must_use]
pub fn session_cookie(res: &reqwest::Response) -> Option<String> {
    set_cookies(res)
        .into_iter()
        .filter_map(|c| c.split(';').next().map(str::to_owned))
        .find(|nv| {
            let (name, value) = nv.split_once('=').unwrap_or_default();
            (name == "authx_session" || name == "__Host-authx_session") && !value.is_empty()
        })
}

/// Every `Set-Cookie` header of a response.
#[must_use]
pub fn set_cookies(res: &reqwest::Response) -> Vec<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect()
}
