//! A headless Chromium driven through chromedriver, for browser tests.
//!
//! Each [`Browser`] runs its own chromedriver on a free port of 127.0.0.1 and its own Chromium
//! with a fresh profile. Chromium resolves no host name except `localhost`, so a test can only
//! ever reach servers on this machine.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use authx_testkit::browser::Browser;
//!
//! let Some(browser) = Browser::start().await? else {
//!     return Ok(()); // Chromium is not installed; `SKIPPED: ...` was printed.
//! };
//! browser.client.goto("http://127.0.0.1:8080/login").await?;
//! let title = browser.client.title().await?;
//! browser.close().await?;
//! # let _ = title;
//! # Ok(())
//! # }
//! ```

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use tempfile::TempDir;
use tokio::time::{Instant, sleep, timeout};

/// The WebDriver client crate, so tests need not depend on it themselves.
pub use fantoccini;

/// Environment variable naming the Chromium binary.
pub const CHROMIUM_ENV: &str = "AUTHX_CHROMIUM";
/// Environment variable naming the chromedriver binary.
pub const CHROMEDRIVER_ENV: &str = "AUTHX_CHROMEDRIVER";
/// Chromium binary used when [`CHROMIUM_ENV`] is unset (Debian's `chromium` package).
pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";
/// chromedriver binary used when [`CHROMEDRIVER_ENV`] is unset (Debian's `chromium-driver`).
pub const DEFAULT_CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// When this variable is `1` (as in CI), a missing browser is an error rather than a skip.
pub const REQUIRE_SERVICES_ENV: &str = "AUTHX_TEST_REQUIRE_SERVICES";

/// How long chromedriver may take to answer `/status` with `ready: true`.
const DRIVER_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long Chromium may take to start and open a WebDriver session.
const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// How long closing the WebDriver session (and so Chromium) may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts at starting chromedriver: a free port found by binding can be taken before
/// chromedriver binds it.
const DRIVER_START_ATTEMPTS: usize = 3;
/// How long killed browser processes may take to exit.
#[cfg(target_os = "linux")]
const PROCESS_EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines of the chromedriver log quoted in start-up errors.
const LOG_TAIL_LINES: usize = 30;

/// Chromium's command line, apart from `--user-data-dir`.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    // Every host name but localhost fails to resolve, so nothing past this machine is reached.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.*",
];

/// A headless Chromium session, with the chromedriver that runs it.
///
/// Call [`Browser::close`] at the end of a test to end the session cleanly. When a `Browser` is
/// dropped instead (a failed assertion, say), chromedriver and every Chromium process it started
/// are killed, and the temporary profile is removed.
#[derive(Debug)]
pub struct Browser {
    /// The WebDriver client: navigation, elements, scripts, screenshots.
    pub client: Client,
    /// Killed on drop; declared after `client` so that the session is dropped first.
    driver: Driver,
    /// Chromium's profile and chromedriver's log; removed after the processes are gone.
    dir: TempDir,
}

impl Browser {
    /// Starts chromedriver on a free 127.0.0.1 port and a fresh headless Chromium session.
    ///
    /// The binaries come from `AUTHX_CHROMIUM` and `AUTHX_CHROMEDRIVER`, defaulting to
    /// `/usr/bin/chromium` and `/usr/bin/chromedriver`.
    ///
    /// Returns `Ok(None)` after printing `SKIPPED: <reason>` to stderr when either binary is
    /// missing, unless `AUTHX_TEST_REQUIRE_SERVICES=1`.
    ///
    /// # Errors
    ///
    /// A missing binary while `AUTHX_TEST_REQUIRE_SERVICES=1`; chromedriver that exits or does not
    /// become ready in time; Chromium that fails to start a session. Start-up errors quote the
    /// end of chromedriver's log.
    pub async fn start() -> anyhow::Result<Option<Browser>> {
        let chromium = binary_path(CHROMIUM_ENV, DEFAULT_CHROMIUM);
        let chromedriver = binary_path(CHROMEDRIVER_ENV, DEFAULT_CHROMEDRIVER);
        for (what, path, package) in [
            ("Chromium", &chromium, "chromium"),
            ("chromedriver", &chromedriver, "chromium-driver"),
        ] {
            if !path.is_file() {
                let reason = format!(
                    "browser test: {what} not found at {} (install Debian's {package} package)",
                    path.display()
                );
                if services_required() {
                    bail!("{reason}, and {REQUIRE_SERVICES_ENV}=1");
                }
                eprintln!("SKIPPED: {reason}");
                return Ok(None);
            }
        }

        let dir = tempfile::Builder::new()
            .prefix("authx-browser-")
            .tempdir()
            .context("creating the browser's temporary directory")?;
        let log_path = dir.path().join("chromedriver.log");
        let profile = dir.path().join("profile");

        let mut attempt = 0;
        let (driver, url) = loop {
            attempt += 1;
            match Driver::start(&chromedriver, dir.path(), &log_path).await {
                Ok(started) => break started,
                Err(err) if attempt < DRIVER_START_ATTEMPTS => {
                    eprintln!("chromedriver did not start (attempt {attempt}): {err:#}");
                }
                Err(err) => return Err(with_log(err, &log_path)),
            }
        };

        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|arg| (*arg).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": args,
            },
            // Kept for `console_log`: CSP violations and script errors are reported there.
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            bail!("capabilities are not a JSON object");
        };

        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(capabilities);
        // `driver` is dropped (and killed) on every early return below.
        let client = match timeout(SESSION_TIMEOUT, builder.connect(&url)).await {
            Ok(Ok(client)) => client,
            Ok(Err(err)) => {
                let err = anyhow!(err).context("starting a Chromium session");
                return Err(with_log(err, &log_path));
            }
            Err(_) => {
                let err = anyhow!("no Chromium session after {SESSION_TIMEOUT:?}");
                return Err(with_log(err, &log_path));
            }
        };

        Ok(Some(Browser {
            client,
            driver,
            dir,
        }))
    }

    /// Ends the WebDriver session (Chromium quits), then stops chromedriver and removes the
    /// temporary profile.
    ///
    /// # Errors
    ///
    /// The session could not be ended in time, chromedriver could not be reaped, or the
    /// temporary directory could not be removed. The processes are killed in every case.
    pub async fn close(self) -> anyhow::Result<()> {
        let Browser {
            client,
            mut driver,
            dir,
        } = self;
        let closed = timeout(CLOSE_TIMEOUT, client.close()).await;
        driver.kill().context("stopping chromedriver")?;
        dir.close()
            .context("removing the browser's temporary directory")?;
        match closed {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(anyhow!(err).context("closing the WebDriver session")),
            Err(_) => bail!("the WebDriver session did not close within {CLOSE_TIMEOUT:?}"),
        }
    }

    /// The temporary directory that holds Chromium's profile; it is removed with the browser.
    pub fn temp_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Saves a PNG screenshot of the current page to `path`.
    ///
    /// # Errors
    ///
    /// The screenshot could not be taken or the file could not be written.
    pub async fn save_screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let png = self
            .client
            .screenshot()
            .await
            .context("taking a screenshot")?;
        std::fs::write(path, png)
            .with_context(|| format!("writing the screenshot to {}", path.display()))
    }
}

impl Browser {
    /// Adds a WebAuthn virtual authenticator to the session (W3C WebAuthn §11.3, served by
    /// chromedriver): a CTAP2 platform authenticator that keeps discoverable credentials and
    /// verifies its user, so passkey ceremonies complete without a person. Returns its id.
    ///
    /// # Errors
    ///
    /// chromedriver refused the command.
    pub async fn add_virtual_authenticator(&self) -> anyhow::Result<String> {
        let body = json!({
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": true,
            "hasUserVerification": true,
            "isUserVerified": true,
            "automaticPresenceSimulation": true,
        });
        let answer = self
            .client
            .issue_cmd(SessionCommand {
                path: "webauthn/authenticator".to_owned(),
                method: http::Method::POST,
                body: Some(body),
            })
            .await
            .context("adding a virtual authenticator")?;
        answer
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no authenticator id in {answer}"))
    }

    /// The credentials the virtual authenticator `id` holds (as chromedriver describes them:
    /// `credentialId`, `isResidentCredential`, `rpId`, `userHandle`, `signCount`, …).
    ///
    /// # Errors
    ///
    /// chromedriver refused the command.
    pub async fn authenticator_credentials(
        &self,
        id: &str,
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        let answer = self
            .client
            .issue_cmd(SessionCommand {
                path: format!("webauthn/authenticator/{id}/credentials"),
                method: http::Method::GET,
                body: None,
            })
            .await
            .context("listing a virtual authenticator's credentials")?;
        Ok(answer.as_array().cloned().unwrap_or_default())
    }
}

impl Browser {
    /// The entries of the browser's console log since the last call (chromedriver hands each
    /// entry out once): objects with `level`, `message`, `source` and `timestamp`. Chromium
    /// reports Content-Security-Policy violations there, as `SEVERE` entries naming the policy.
    ///
    /// # Errors
    ///
    /// chromedriver refused the command.
    pub async fn console_log(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let answer = self
            .client
            .issue_cmd(SessionCommand {
                path: "se/log".to_owned(),
                method: http::Method::POST,
                body: Some(json!({ "type": "browser" })),
            })
            .await
            .context("reading the browser's console log")?;
        Ok(answer.as_array().cloned().unwrap_or_default())
    }
}

/// A command of chromedriver's extensions (WebAuthn, logs), under the session's URL.
#[derive(Debug)]
struct SessionCommand {
    path: String,
    method: http::Method,
    body: Option<serde_json::Value>,
}

impl fantoccini::wd::WebDriverCompatibleCommand for SessionCommand {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        let session = session_id.unwrap_or_default();
        base_url.join(&format!("session/{session}/{}", self.path))
    }

    fn method_and_body(&self, _url: &url::Url) -> (http::Method, Option<String>) {
        (
            self.method.clone(),
            self.body.as_ref().map(serde_json::Value::to_string),
        )
    }
}

/// A running chromedriver, leader of its own process group; the group is killed on drop.
#[derive(Debug)]
struct Driver {
    child: Child,
    /// The browser's temporary directory: every process started for this browser names it.
    dir: PathBuf,
    /// chromedriver has been waited for.
    reaped: bool,
    /// [`Driver::kill`] has run.
    killed: bool,
}

impl Driver {
    /// Starts chromedriver on a free port and waits until `/status` reports it ready.
    /// Returns the driver and its base URL.
    async fn start(
        chromedriver: &Path,
        dir: &Path,
        log_path: &Path,
    ) -> anyhow::Result<(Driver, String)> {
        let port = free_port()?;
        let mut command = Command::new(chromedriver);
        command
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log_path.display()))
            // Chromium keeps its crash database and caches under these rather than in the
            // profile; pointing them into `dir` leaves nothing behind in the home directory.
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env("XDG_CACHE_HOME", dir.join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        #[cfg(unix)]
        {
            // Chromium inherits the group, so one signal reaches every process on drop.
            use std::os::unix::process::CommandExt as _;
            command.process_group(0);
        }
        let child = command
            .spawn()
            .with_context(|| format!("spawning {}", chromedriver.display()))?;
        let mut driver = Driver {
            child,
            dir: dir.to_owned(),
            reaped: false,
            killed: false,
        };
        let url = format!("http://127.0.0.1:{port}");
        driver.wait_ready(&url).await?;
        Ok((driver, url))
    }

    /// Polls `GET /status` until chromedriver answers `"ready": true`.
    async fn wait_ready(&mut self, url: &str) -> anyhow::Result<()> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .context("building an HTTP client")?;
        let status_url = format!("{url}/status");
        let deadline = Instant::now() + DRIVER_READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().context("checking on chromedriver")? {
                self.reaped = true;
                bail!("chromedriver exited during start-up: {status}");
            }
            let last_error = match http.get(&status_url).send().await {
                Ok(response) => match response.json::<serde_json::Value>().await {
                    Ok(body) if body["value"]["ready"] == json!(true) => return Ok(()),
                    Ok(body) => format!("not ready: {body}"),
                    Err(err) => format!("unreadable /status: {err}"),
                },
                Err(err) => err.to_string(),
            };
            if Instant::now() >= deadline {
                bail!(
                    "chromedriver at {url} not ready after {DRIVER_READY_TIMEOUT:?}: {last_error}"
                );
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills chromedriver and everything in its process group, reaps chromedriver, then kills
    /// what left the group (Chromium's crash handler starts its own session).
    /// Does nothing the second time.
    fn kill(&mut self) -> std::io::Result<()> {
        if self.killed {
            return Ok(());
        }
        if !self.reaped {
            #[cfg(unix)]
            if let Some(pid) = i32::try_from(self.child.id())
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                // The leader is not reaped yet, so its id still names this group. An error
                // means the group is already empty.
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            // Already dead through the group signal, or not on unix.
            let _ = self.child.kill();
            self.child.wait()?;
            self.reaped = true;
        }
        #[cfg(target_os = "linux")]
        kill_processes_naming(&self.dir);
        self.killed = true;
        Ok(())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Err(err) = self.kill() {
            eprintln!("could not stop chromedriver: {err}");
        }
    }
}

/// Kills every process whose command line contains `dir`, a unique temporary directory, and
/// waits until none is left (a killed process drops its command line when it exits), so that
/// nothing writes into `dir` once this returns.
#[cfg(target_os = "linux")]
fn kill_processes_naming(dir: &Path) {
    let Some(needle) = dir.to_str().map(str::as_bytes) else {
        return;
    };
    let deadline = std::time::Instant::now() + PROCESS_EXIT_TIMEOUT;
    loop {
        let mut found = false;
        for pid in processes_naming(needle) {
            found = true;
            // Gone already, or not ours to kill: nothing more can be done.
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        if !found || std::time::Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Running processes whose command line contains `needle`.
#[cfg(target_os = "linux")]
fn processes_naming(needle: &[u8]) -> Vec<rustix::process::Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<i32>().ok())
                .and_then(rustix::process::Pid::from_raw)?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            cmdline
                .windows(needle.len())
                .any(|window| window == needle)
                .then_some(pid)
        })
        .collect()
}

fn binary_path(var: &str, default: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(default),
    }
}

fn services_required() -> bool {
    std::env::var(REQUIRE_SERVICES_ENV).is_ok_and(|value| value == "1")
}

/// A port of 127.0.0.1 that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// `err` followed by the last lines of chromedriver's log, for start-up errors.
fn with_log(err: anyhow::Error, log_path: &Path) -> anyhow::Error {
    let log = match std::fs::read_to_string(log_path) {
        Ok(log) => log,
        Err(read) => {
            return anyhow!(
                "{err:#}\n(chromedriver log {} unreadable: {read})",
                log_path.display()
            );
        }
    };
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
    anyhow!(
        "{err:#}\nchromedriver log {}, last lines:\n{tail}",
        log_path.display()
    )
}
