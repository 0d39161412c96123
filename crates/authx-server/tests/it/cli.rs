//! The `authx` binary: administration commands, start-up errors, crash safety, and logs free of
//! secrets.

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use authx_testkit::PASSWORD;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_authx");

fn authx(dir: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("AUTHX_DATABASE_URL")
        .env_remove("AUTHX_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn serve(dir: &Path, port: u16) -> Child {
    Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir)
        .env_remove("AUTHX_DATABASE_URL")
        .env("AUTHX_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("server.log"))
                .unwrap(),
        ))
        .spawn()
        .unwrap()
}

async fn wait_ready(url: &str) {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{url}/readyz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server at {url} never became ready");
}

#[test]
fn user_commands_manage_accounts_in_the_default_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = authx(
        dir.path(),
        &["user", "add", "--email", "Admin@Example.com", "--admin"],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dir.path().join("authx.db").exists(),
        "the embedded default is authx.db in the working directory"
    );

    let weak = authx(
        dir.path(),
        &["user", "add", "--email", "weak@example.com"],
        Some("password\n"),
    );
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("at least 15 characters"));

    let dup = authx(
        dir.path(),
        &["user", "add", "--email", "admin@example.com"],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));

    let list = authx(dir.path(), &["user", "list", "--json"], None);
    let users: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(users.as_array().unwrap().len(), 1);
    assert_eq!(users[0]["email"], "admin@example.com");
    assert_eq!(users[0]["is_admin"], true);
    assert_eq!(users[0]["status"], "active");

    // The last administrator stays one.
    for args in [
        ["user", "disable", "--email", "admin@example.com"],
        ["user", "remove-admin", "--email", "admin@example.com"],
    ] {
        let refused = authx(dir.path(), &args, None);
        assert!(!refused.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("last active administrator"),
            "{}",
            String::from_utf8_lossy(&refused.stderr)
        );
    }
    let kate = authx(
        dir.path(),
        &["user", "add", "--email", "kate@example.com"],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(kate.status.success());
    assert!(
        authx(
            dir.path(),
            &["user", "disable", "--email", "kate@example.com"],
            None
        )
        .status
        .success()
    );
    let list = authx(dir.path(), &["user", "list", "--json"], None);
    let users: Value = serde_json::from_slice(&list.stdout).unwrap();
    // Both were added within a second or two: look each up by address, not by position.
    let status = |email: &str| {
        users
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["email"] == email)
            .map(|u| u["status"].clone())
    };
    assert_eq!(users.as_array().unwrap().len(), 2);
    assert_eq!(status("kate@example.com"), Some("disabled".into()));
    assert_eq!(status("admin@example.com"), Some("active".into()));

    // Roles, revocation and the user's page, as the console and the API have them.
    for (args, said) in [
        (["user", "enable", "--email", "kate@example.com"], "enabled"),
        (
            ["user", "make-admin", "--email", "kate@example.com"],
            "is an administrator",
        ),
        (
            ["user", "remove-admin", "--email", "admin@example.com"],
            "no longer an administrator",
        ),
        (
            ["user", "revoke-all", "--email", "kate@example.com"],
            "ended 0 session(s)",
        ),
    ] {
        let out = authx(dir.path(), &args, None);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(said),
            "{args:?}"
        );
    }
    let show = authx(
        dir.path(),
        &["user", "show", "--email", "kate@example.com", "--json"],
        None,
    );
    let kate: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(kate["user"]["is_admin"], true);
    assert_eq!(kate["sessions"], json!([]));
    assert_eq!(kate["grants"], json!([]));
    // The reset link is queued in the outbox, which the server's sender delivers.
    let reset = authx(
        dir.path(),
        &["user", "reset-link", "--email", "kate@example.com"],
        None,
    );
    assert!(
        reset.status.success(),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    assert!(String::from_utf8_lossy(&reset.stdout).contains("mailed a password-reset link"));
    let missing = authx(
        dir.path(),
        &["user", "disable", "--email", "nobody@example.com"],
        None,
    );
    assert!(!missing.status.success());

    let migrate = authx(dir.path(), &["migrate"], None);
    assert!(migrate.status.success());
    assert!(String::from_utf8_lossy(&migrate.stdout).contains("applied 0 migration"));
}

#[test]
fn bad_configuration_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("authx.toml"),
        "version = 1\nlisten = \"127.0.0.1:8080\"\nsesion = 3\n",
    )
    .unwrap();
    let out = authx(dir.path(), &["--config", "authx.toml", "serve"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sesion"), "{err}");

    let out = authx(dir.path(), &["serve", "--listen", "nonsense"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen"));

    let out = authx(dir.path(), &["--database-url", "mysql://x", "serve"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("database_url"));
}

/// kill -9 in the middle of a burst of sign-ins: every session whose response arrived is still
/// valid after a restart; and nothing secret ever reached the log.
#[tokio::test]
async fn kill_9_during_sign_ins_loses_no_answered_session() {
    let dir = tempfile::tempdir().unwrap();
    let out = authx(
        dir.path(),
        &["user", "add", "--email", "crash@example.com"],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(out.status.success());
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut child = serve(dir.path(), port);
    wait_ready(&url).await;

    let client = reqwest::Client::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut workers = Vec::new();
    for _ in 0..4 {
        let client = client.clone();
        let url = url.clone();
        let tx = tx.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let res = client
                    .post(format!("{url}/api/v1/auth/sign-in"))
                    .header("origin", &url)
                    .json(&json!({"email": "crash@example.com", "password": PASSWORD}))
                    .send()
                    .await;
                let Ok(res) = res else { break };
                if res.status() != 200 {
                    break;
                }
                if let Some(c) = authx_testkit::session_cookie(&res) {
                    if tx.send(c).is_err() {
                        break;
                    }
                }
            }
        }));
    }
    drop(tx);
    let mut cookies = Vec::new();
    while cookies.len() < 40 {
        cookies.push(rx.recv().await.unwrap());
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for w in workers {
        let _ = w.await;
    }
    while let Ok(c) = rx.try_recv() {
        cookies.push(c);
    }

    let mut child = serve(dir.path(), port);
    wait_ready(&url).await;
    for c in &cookies {
        let res = client
            .get(format!("{url}/api/v1/me"))
            .header("cookie", c)
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            200,
            "an answered sign-in was lost in the crash"
        );
    }

    // SIGTERM: a graceful stop that exits cleanly.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exit: {exit:?}");

    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(
        log.contains("sign_in"),
        "audit events are logged: {log:.3000}"
    );
    assert!(log.contains("stopped"));
    assert!(!log.contains(PASSWORD), "a password reached the log");
    for c in &cookies {
        let token = c.split_once('=').unwrap().1;
        assert!(!log.contains(token), "a session token reached the log");
    }
}

#[test]
fn audit_lists_filters_and_follows() {
    let dir = tempfile::tempdir().unwrap();
    for email in ["a@example.com", "b@example.com"] {
        let out = authx(
            dir.path(),
            &["user", "add", "--email", email],
            Some(&format!("{PASSWORD}\n")),
        );
        assert!(out.status.success(), "{out:?}");
    }
    assert!(
        authx(
            dir.path(),
            &["user", "disable", "--email", "b@example.com"],
            None
        )
        .status
        .success()
    );
    let json_lines = |args: &[&str]| -> Vec<Value> {
        let out = authx(dir.path(), args, None);
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let kinds = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    // Every command's events were stored before it exited.
    let all = json_lines(&["audit", "--json"]);
    let all_kinds = kinds(&all);
    assert!(
        all_kinds.contains(&"key_created".to_owned()),
        "{all_kinds:?}"
    );
    assert_eq!(all_kinds.iter().filter(|k| *k == "user_created").count(), 2);
    assert_eq!(
        kinds(&json_lines(&["audit", "--json", "--user", "b@example.com"])),
        ["user_created", "user_disabled"]
    );
    assert_eq!(
        json_lines(&["audit", "--json", "--kind", "user_created"]).len(),
        2
    );
    assert_eq!(
        kinds(&json_lines(&["audit", "--json", "--limit", "1"])),
        ["user_disabled"]
    );
    assert_eq!(
        json_lines(&["audit", "--json", "--since", "1h"]).len(),
        all.len()
    );
    assert!(json_lines(&["audit", "--json", "--since", "9999999999"]).is_empty());
    let text = authx(dir.path(), &["audit", "--kind", "user_disabled"], None);
    let text = String::from_utf8(text.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("event=user_disabled outcome=success"),
        "{text}"
    );
    assert!(
        authx(
            dir.path(),
            &[
                "resource",
                "add",
                "--id",
                "https://api.example.com",
                "--scope",
                "read"
            ],
            None
        )
        .status
        .success()
    );
    let registered = json_lines(&["audit", "--json", "--kind", "resource_registered"]);
    assert_eq!(registered.len(), 1);
    assert_eq!(
        registered[0]["detail"]["resource"],
        "https://api.example.com"
    );
    let bad = authx(dir.path(), &["audit", "--since", "yesterday"], None);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--since"));

    // --follow prints events stored after it started.
    let mut follower = Command::new(BIN)
        .args(["audit", "--follow", "--json", "--kind", "user_enabled"])
        .current_dir(dir.path())
        .env_remove("AUTHX_DATABASE_URL")
        .env_remove("AUTHX_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Give the follower time to read what exists, then add an event.
    std::thread::sleep(Duration::from_secs(2));
    assert!(rx.try_recv().is_err(), "nothing matched before");
    assert!(
        authx(
            dir.path(),
            &["user", "enable", "--email", "b@example.com"],
            None
        )
        .status
        .success()
    );
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the follower printed nothing")
        .unwrap();
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["kind"], "user_enabled");
    follower.kill().unwrap();
    follower.wait().unwrap();
}

/// Issue 14 item 4: `authx client remove` publishes the client-level revocation through the
/// durable log, which the revocation feed replays to guards (even from another process).
#[tokio::test]
async fn client_remove_publishes_a_client_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let add = authx(
        dir.path(),
        &[
            "client",
            "add",
            "--id",
            "worker",
            "--name",
            "Worker",
            "--grant",
            "client_credentials",
            "--scope",
            "read",
        ],
        None,
    );
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let remove = authx(dir.path(), &["client", "remove", "--id", "worker"], None);
    assert!(
        remove.status.success(),
        "{}",
        String::from_utf8_lossy(&remove.stderr)
    );
    let backend = authx_store::connect(
        &format!("sqlite://{}", dir.path().join("authx.db").display()),
        &authx_store::ConnectOptions::default(),
    )
    .await
    .unwrap();
    let events = backend
        .revocations
        .events_after(0, authx_core::Timestamp(0), 10)
        .await
        .unwrap();
    assert_eq!(
        events.iter().map(|e| &e.event).collect::<Vec<_>>(),
        [&authx_core::events::RevocationEvent::ClientRevoked {
            client_id: "worker".into()
        }]
    );
}

/// A stand-in provider for `authx login`, as strict as node-oidc-provider about form bodies:
/// it answers metadata, device authorization and token requests, and records every request.
struct FakeProvider {
    url: String,
    /// Each request's head (lower-cased) and body.
    requests: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

impl FakeProvider {
    /// Starts on a free port; `on_device` runs when a device authorization request arrives.
    fn start(on_device: impl Fn() + Send + 'static) -> Self {
        use std::io::{BufRead as _, BufReader, Read as _};

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (log, issuer) = (std::sync::Arc::clone(&requests), url.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line.to_ascii_lowercase());
                }
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                let mut body = vec![0; length.unwrap_or(0)];
                reader.read_exact(&mut body).unwrap();
                let body = String::from_utf8(body).unwrap();
                let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                log.lock().unwrap().push((head.clone(), body));
                let form = head.contains("content-type: application/x-www-form-urlencoded");
                let (status, reply) = match path.as_str() {
                    "/.well-known/oauth-authorization-server" => (
                        200,
                        json!({
                            "issuer": issuer,
                            "device_authorization_endpoint": format!("{issuer}/device"),
                            "token_endpoint": format!("{issuer}/token"),
                        }),
                    ),
                    // node-oidc-provider's rule: a form content type needs a form body.
                    "/device" | "/token" if !form || length.is_none() => (
                        400,
                        json!({
                            "error": "invalid_request",
                            "error_description": "only application/x-www-form-urlencoded \
                                content-type bodies are supported",
                        }),
                    ),
                    "/device" => {
                        on_device();
                        (
                            200,
                            json!({
                                "device_code": "device-code-1",
                                "user_code": "BCDF-GHJK",
                                "verification_uri": format!("{issuer}/activate"),
                                "expires_in": 60,
                                "interval": 1,
                            }),
                        )
                    }
                    "/token" => (
                        200,
                        json!({"access_token": "access-token-1", "token_type": "Bearer"}),
                    ),
                    _ => (404, json!({"error": "not_found"})),
                };
                let reply = reply.to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{reply}",
                    reply.len()
                );
            }
        });
        Self { url, requests }
    }

    /// The requests to `path`.
    fn requests_to(&self, path: &str) -> Vec<(String, String)> {
        let prefix = format!("post {path} ");
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(head, _)| head.starts_with(&prefix))
            .cloned()
            .collect()
    }
}

/// Issue 14 item 18: a confidential client without `--scope` sends an empty form, and sends
/// it well-formed (`Content-Length: 0`), which strict providers require.
#[test]
fn login_sends_an_empty_form_with_a_content_length() {
    let dir = tempfile::tempdir().unwrap();
    let provider = FakeProvider::start(|| {});
    let out = authx(
        dir.path(),
        &[
            "login",
            "--issuer",
            &provider.url,
            "--client-id",
            "box",
            "--client-secret",
            "s3cret",
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Issue 14 item 20: one minute is not "1 minutes".
    assert!(stderr.contains("The code expires in 1 minute."), "{stderr}");
    let device = provider.requests_to("/device");
    assert_eq!(device.len(), 1);
    let (head, body) = &device[0];
    assert!(
        head.contains("content-type: application/x-www-form-urlencoded"),
        "{head}"
    );
    assert!(head.contains("content-length: 0\r\n"), "{head}");
    assert!(head.contains("authorization: basic "), "{head}");
    assert_eq!(body, "");
    let tokens: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(tokens["access_token"], "access-token-1");
}

/// Issue 14 item 19: `--save` to a path that cannot be written is refused before anything is
/// asked of the provider, so no device code is spent for nothing.
#[test]
fn login_refuses_an_unwritable_save_path_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    let provider = FakeProvider::start(|| {});
    let missing = dir.path().join("no-such-dir").join("tokens.json");
    for target in [missing.as_path(), dir.path()] {
        let out = authx(
            dir.path(),
            &[
                "login",
                "--issuer",
                &provider.url,
                "--client-id",
                "tv",
                "--save",
                target.to_str().unwrap(),
            ],
            None,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains("cannot write"), "{stderr}");
        assert!(stderr.contains(target.to_str().unwrap()), "{stderr}");
    }
    assert!(
        provider.requests.lock().unwrap().is_empty(),
        "the provider was asked before the path was checked"
    );
    // The check leaves nothing behind.
    let ok = dir.path().join("tokens.json");
    let out = authx(
        dir.path(),
        &[
            "login",
            "--issuer",
            &provider.url,
            "--client-id",
            "tv",
            "--save",
            ok.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&ok).unwrap()).unwrap();
    assert_eq!(saved["access_token"], "access-token-1");
}

/// Issue 14 item 19: when saving fails after the approval (here the directory disappears
/// meanwhile), the tokens are printed rather than lost.
#[test]
fn login_prints_the_tokens_when_saving_fails_late() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let doomed = sub.clone();
    let provider = FakeProvider::start(move || {
        let _ = std::fs::remove_dir_all(&doomed);
    });
    let path = sub.join("tokens.json");
    let out = authx(
        dir.path(),
        &[
            "login",
            "--issuer",
            &provider.url,
            "--client-id",
            "tv",
            "--save",
            path.to_str().unwrap(),
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("could not be saved"), "{stderr}");
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["access_token"], "access-token-1");
}

/// Issue 14 item 3: `client add --resource` (repeatable) grants registered APIs; an unknown
/// one is refused before anything is stored.
#[test]
fn client_add_grants_the_apis_named_with_resource() {
    let dir = tempfile::tempdir().unwrap();
    for id in ["https://api.example.com", "urn:example:billing"] {
        let out = authx(
            dir.path(),
            &["resource", "add", "--id", id, "--scope", "read"],
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = authx(
        dir.path(),
        &[
            "client",
            "add",
            "--id",
            "worker",
            "--name",
            "Worker",
            "--grant",
            "client_credentials",
            "--scope",
            "read",
            "--resource",
            "https://api.example.com",
            "--resource",
            "urn:example:billing",
            "--json",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["resources"],
        json!(["https://api.example.com", "urn:example:billing"])
    );
    let out = authx(
        dir.path(),
        &[
            "client",
            "add",
            "--id",
            "typo",
            "--name",
            "Typo",
            "--resource",
            "urn:nope",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown resource"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = authx(dir.path(), &["client", "list", "--json"], None);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("typo"));
}

#[test]
fn client_add_registers_a_private_key_jwt_client_with_public_keys_only() {
    use authx_core::oauth::keys::{KeyEncryptor, Signer, SigningAlg, generate};
    let dir = tempfile::tempdir().unwrap();
    let enc = KeyEncryptor::new(&[1u8; 32]).unwrap();
    let k = generate(SigningAlg::Es256, &enc, authx_core::Timestamp(0)).unwrap();
    let pkcs8 = enc.open(&k.kid, &k.private_key_encrypted).unwrap();
    let public = Signer::from_pkcs8(SigningAlg::Es256, &k.kid, &pkcs8)
        .unwrap()
        .public_jwk();
    let jwks = json!({"keys": [public]}).to_string();
    let add = |id: &str, extra: &[&str]| {
        let mut args = vec![
            "client",
            "add",
            "--id",
            id,
            "--name",
            "Signer",
            "--grant",
            "client_credentials",
            "--auth-method",
            "private_key_jwt",
            "--json",
        ];
        args.extend_from_slice(extra);
        authx(dir.path(), &args, None)
    };
    let out = add("signer", &["--jwks", &jwks]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["token_endpoint_auth_method"], "private_key_jwt");
    assert_eq!(v["jwks"]["keys"][0]["kid"], k.kid.as_str());
    assert!(v.get("client_secret").is_none_or(Value::is_null), "{v}");

    // A private key is refused, and so is JSON that is not JSON.
    let mut private = json!({"keys": [v["jwks"]["keys"][0].clone()]});
    private["keys"][0]["d"] = json!("c2VjcmV0");
    let out = add("leaky", &["--jwks", &private.to_string()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("private"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = add("broken", &["--jwks", "{not json"]);
    assert!(!out.status.success());
    let listed = authx(dir.path(), &["client", "list", "--json"], None);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains("signer") && !text.contains("leaky") && !text.contains("broken"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_token_commands_issue_list_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let ok = |out: &std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let out = authx(
        dir.path(),
        &[
            "registration-token",
            "create",
            "--ttl",
            "2h",
            "--uses",
            "2",
            "--json",
        ],
        None,
    );
    ok(&out);
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = created["initial_access_token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 43);
    assert_eq!(created["uses_left"], 2);
    assert_eq!(
        created["scopes"],
        json!(["openid", "profile", "email", "offline_access"])
    );
    for bad in [
        &["registration-token", "create", "--ttl", "soon"][..],
        &["registration-token", "create", "--uses", "0"],
        &["registration-token", "create", "--resource", "urn:nope"],
    ] {
        assert!(!authx(dir.path(), bad, None).status.success(), "{bad:?}");
    }

    // Listed without the token; stored as its SHA-256 only.
    let out = authx(dir.path(), &["registration-token", "list", "--json"], None);
    ok(&out);
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(listed.contains(&id));
    assert!(!listed.contains(&token));
    let db = std::fs::read(dir.path().join("authx.db")).unwrap();
    let hex = authx_core::secret::TokenHash::of(token.as_bytes()).to_hex();
    let text = String::from_utf8_lossy(&db);
    assert!(!text.contains(&token));

    // The token registers a client on a server over the same database.
    let url = format!("sqlite://{}", dir.path().join("authx.db").display());
    let server = authx_testkit::TestServer::start_on(&url, |f| {
        f.registration = Some(authx_server::config::RegistrationFile {
            enabled: Some(true),
        });
    })
    .await
    .unwrap();
    let state = &server.running().unwrap().state;
    let stored = state.registration().initial_tokens().await.unwrap();
    assert_eq!(stored[0].hash.to_hex(), hex);
    let register = || {
        server
            .client
            .post(format!("{}/oauth2/register", server.url))
            .bearer_auth(&token)
            .json(&json!({"redirect_uris": ["https://app.example.com/cb"]}))
            .send()
    };
    assert_eq!(register().await.unwrap().status(), 201);

    // The server keeps running while the command does (they share the file).
    let revoke = |id: String| {
        let dir = dir.path().to_owned();
        tokio::task::spawn_blocking(move || {
            authx(&dir, &["registration-token", "revoke", "--id", &id], None)
        })
    };
    let out = revoke(id.clone()).await.unwrap();
    ok(&out);
    assert_eq!(register().await.unwrap().status(), 401);
    let out = revoke(id.clone()).await.unwrap();
    assert!(!out.status.success());
    server.stop().await;
}

#[tokio::test]
async fn client_rotate_secret_prints_a_new_secret_and_the_old_one_stops_working() {
    let dir = tempfile::tempdir().unwrap();
    let out = authx(
        dir.path(),
        &[
            "client",
            "add",
            "--id",
            "nightly",
            "--name",
            "Nightly job",
            "--grant",
            "client_credentials",
            "--json",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let added: Value = serde_json::from_slice(&out.stdout).unwrap();
    let old = added["client_secret"].as_str().unwrap().to_owned();
    let out = authx(
        dir.path(),
        &["client", "rotate-secret", "--id", "nightly"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let new = stdout
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .unwrap()
        .to_owned();
    assert_ne!(old, new);
    let missing = authx(
        dir.path(),
        &["client", "rotate-secret", "--id", "nobody"],
        None,
    );
    assert!(!missing.status.success());

    let port = free_port();
    let mut server = serve(dir.path(), port);
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&url).await;
    let client = reqwest::Client::new();
    let token = |secret: String| {
        let (client, url) = (&client, &url);
        async move {
            client
                .post(format!("{url}/oauth2/token"))
                .basic_auth("nightly", Some(secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(token(old).await, 401);
    assert_eq!(token(new).await, 200);
    server.kill().unwrap();
    server.wait().unwrap();
}

#[tokio::test]
async fn user_revoke_session_ends_the_session_user_show_lists() {
    let dir = tempfile::tempdir().unwrap();
    let add = authx(
        dir.path(),
        &["user", "add", "--email", "sam@example.com"],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(add.status.success());
    let port = free_port();
    let mut server = serve(dir.path(), port);
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&url).await;
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{url}/api/v1/auth/sign-in"))
        .header("origin", &url)
        .json(&json!({"email": "sam@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cookie = authx_testkit::session_cookie(&res).unwrap();
    let me = |cookie: String| {
        let (client, url) = (&client, &url);
        async move {
            client
                .get(format!("{url}/api/v1/me"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(me(cookie.clone()).await, 200);

    let show = authx(
        dir.path(),
        &["user", "show", "--email", "sam@example.com", "--json"],
        None,
    );
    let shown: Value = serde_json::from_slice(&show.stdout).unwrap();
    let sessions = shown["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    let id = sessions[0]["id"].as_str().unwrap().to_owned();
    let wrong = authx(
        dir.path(),
        &[
            "user",
            "revoke-session",
            "--email",
            "sam@example.com",
            "--session",
            "nope",
        ],
        None,
    );
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("no such session"));
    let out = authx(
        dir.path(),
        &[
            "user",
            "revoke-session",
            "--email",
            "sam@example.com",
            "--session",
            &id,
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The CLI wrote to the database from another process, whose events this server does not
    // hear: its session cache serves no entry older than five seconds, so within that the
    // session is read again and found gone.
    let mut status = 0;
    for _ in 0..100 {
        status = me(cookie.clone()).await;
        if status == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 401);
    server.kill().unwrap();
    server.wait().unwrap();
}
