//! Outgoing mail through the real server: the outbox, the sender task and the transports,
//! against a real SMTP server (the test kit's sink) over TCP.

use std::time::{Duration, Instant};

use authx_core::mail::MailState;
use authx_server::config::FileConfig;
use authx_server::mail::settings::EmailFile;
use authx_testkit::services::SharedServices;
use authx_testkit::smtp::SmtpSink;
use authx_testkit::{PASSWORD, TestServer};
use reqwest::Method;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// `[email]` sending through the sink at `port`, retrying after one second.
fn smtp_to(port: u16) -> EmailFile {
    EmailFile {
        transport: Some("smtp".into()),
        smtp_host: Some("127.0.0.1".into()),
        smtp_port: Some(port),
        tls: Some("none".into()),
        from: Some("Example ID <id@example.com>".into()),
        product_name: Some("Example ID".into()),
        timeout_secs: Some(5),
        max_attempts: Some(5),
        retry_base_secs: Some(1),
        retry_max_secs: Some(2),
        poll_interval_ms: Some(50),
        ..EmailFile::default()
    }
}

fn with_email(email: impl Fn() -> EmailFile + Send + Sync + 'static) -> impl Fn(&mut FileConfig) {
    move |f: &mut FileConfig| f.email = Some(email())
}

/// A signed-in administrator's cookie.
async fn admin(server: &TestServer) -> String {
    server
        .running()
        .unwrap()
        .state
        .auth
        .create_user("admin@example.com", PASSWORD, true)
        .await
        .unwrap();
    server.sign_in("admin@example.com", PASSWORD).await.unwrap()
}

/// Queues a test mail to `to` through the admin API; returns the outbox id, checking that the
/// answer came at once.
async fn queue_test_mail(server: &TestServer, cookie: &str, to: &str) -> String {
    let started = Instant::now();
    let res = server
        .send_json(
            Method::POST,
            "/api/v1/admin/email/test",
            cookie,
            Some(json!({"to": to})),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    let body: Value = res.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

async fn state_of(server: &TestServer, id: &str) -> Option<(MailState, u32)> {
    let running = server.running().unwrap();
    running
        .state
        .mail
        .outbox()
        .store()
        .mail_state(id)
        .await
        .unwrap()
}

/// Polls until the mail `id` has been tried `attempts` times and is still pending.
async fn wait_for_attempts(server: &TestServer, id: &str, attempts: u32) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some((MailState::Pending, n)) = state_of(server, id).await {
            if n >= attempts {
                return;
            }
        }
        assert!(Instant::now() < deadline, "mail {id} was not tried");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Moves the server's clock on a second at a time until the sink has `n` messages: whatever
/// the sender was doing (a retry waiting for its backoff, a lease held by a crashed server),
/// the mail becomes due again.
async fn delivered_as_time_passes(
    server: &TestServer,
    sink: &SmtpSink,
    n: usize,
) -> Vec<authx_testkit::smtp::Received> {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = sink.received();
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "the sink received {} of {n}",
            got.len()
        );
        server.clock.advance(1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_mail_reaches_the_smtp_server() {
    let sink = SmtpSink::start().await.unwrap();
    let port = sink.port();
    let server = TestServer::start_with(with_email(move || smtp_to(port)))
        .await
        .unwrap();
    let cookie = admin(&server).await;
    let id = queue_test_mail(&server, &cookie, "kate@example.com").await;

    let got = sink.wait_for(1, WAIT).await.unwrap();
    let m = &got[0];
    assert_eq!(m.mail_from, "id@example.com");
    assert_eq!(m.rcpt_to, ["kate@example.com"]);
    assert!(m.header("From").unwrap().contains("<id@example.com>"));
    assert_eq!(m.header("To").unwrap(), "kate@example.com");
    assert_eq!(m.header("Subject").unwrap(), "Example ID: test mail");
    assert_eq!(m.header("Message-ID").unwrap(), format!("<{id}@127.0.0.1>"));
    let body = m.decoded();
    assert!(
        body.contains("This is a test mail from Example ID."),
        "{body}"
    );
    assert!(body.contains(&server.url), "links are absolute: {body}");
    assert!(body.contains("text/html"), "{body}");

    // Recorded as sent (the sink answered before the row was updated: poll).
    let deadline = Instant::now() + WAIT;
    while state_of(&server, &id).await != Some((MailState::Sent, 1)) {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            state_of(&server, &id).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = server.metrics().await.unwrap();
    assert!(
        metrics.contains("authx_mail_deliveries_total{outcome=\"sent\"} 1"),
        "{metrics}"
    );

    // A malformed address is refused before anything is queued.
    let res = server
        .send_json(
            Method::POST,
            "/api/v1/admin/email/test",
            &cookie,
            Some(json!({"to": "kate@example.com\r\nBcc: eve@example.com"})),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_administrators_send_test_mail() {
    let server = TestServer::start().await.unwrap();
    server
        .create_user("kate@example.com", PASSWORD)
        .await
        .unwrap();
    let cookie = server.sign_in("kate@example.com", PASSWORD).await.unwrap();
    let res = server
        .send_json(
            Method::POST,
            "/api/v1/admin/email/test",
            &cookie,
            Some(json!({"to": "kate@example.com"})),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_waits_for_a_smtp_server_that_is_down() {
    let mut sink = SmtpSink::start().await.unwrap();
    sink.stop();
    let port = sink.port();
    let server = TestServer::start_with(with_email(move || smtp_to(port)))
        .await
        .unwrap();
    let cookie = admin(&server).await;
    // The request answers at once although the mail server refuses connections.
    let id = queue_test_mail(&server, &cookie, "kate@example.com").await;
    wait_for_attempts(&server, &id, 1).await;
    assert!(sink.received().is_empty());

    sink.start_again().await.unwrap();
    let got = delivered_as_time_passes(&server, &sink, 1).await;
    assert_eq!(
        got[0].header("Message-ID").unwrap(),
        format!("<{id}@127.0.0.1>")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_server_sends_its_queued_mail_after_restart() {
    let mut sink = SmtpSink::start().await.unwrap();
    sink.stop();
    let port = sink.port();
    let server = TestServer::start_with(with_email(move || smtp_to(port)))
        .await
        .unwrap();
    let cookie = admin(&server).await;
    let id = queue_test_mail(&server, &cookie, "kate@example.com").await;
    wait_for_attempts(&server, &id, 1).await;

    let server = server.crash_and_restart().await.unwrap();
    sink.start_again().await.unwrap();
    let got = delivered_as_time_passes(&server, &sink, 1).await;
    assert_eq!(got[0].rcpt_to, ["kate@example.com"]);
    assert_eq!(
        got[0].header("Message-ID").unwrap(),
        format!("<{id}@127.0.0.1>")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_transport_writes_one_eml_per_mail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_string_lossy().into_owned();
    let server = TestServer::start_with(with_email(move || EmailFile {
        transport: Some("file".into()),
        directory: Some(path.clone()),
        poll_interval_ms: Some(50),
        ..EmailFile::default()
    }))
    .await
    .unwrap();
    let cookie = admin(&server).await;
    let id = queue_test_mail(&server, &cookie, "kate@example.com").await;
    let file = dir.path().join(format!("{id}.eml"));
    let deadline = Instant::now() + WAIT;
    while !file.exists() {
        assert!(Instant::now() < deadline, "no {}", file.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let eml = std::fs::read_to_string(&file).unwrap();
    assert!(
        eml.contains(&format!("Message-ID: <{id}@127.0.0.1>")),
        "{eml}"
    );
    assert!(eml.contains("To: kate@example.com"), "{eml}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_on_one_postgres_database_send_each_mail_once() {
    let Some(services) =
        SharedServices::acquire("mail::two_servers_on_one_postgres_database_send_each_mail_once")
            .await
    else {
        return;
    };
    let sink = SmtpSink::start().await.unwrap();
    let port = sink.port();
    let configure = |shared: Box<dyn Fn(&mut FileConfig) + Send + Sync>| {
        move |f: &mut FileConfig| {
            shared(f);
            f.email = Some(smtp_to(port));
        }
    };
    let a = TestServer::start_on(
        &services.database_url,
        configure(Box::new(services.configure())),
    )
    .await
    .unwrap();
    let b = TestServer::start_on(
        &services.database_url,
        configure(Box::new(services.configure())),
    )
    .await
    .unwrap();
    let cookie = admin(&a).await;
    let mut ids = Vec::new();
    for i in 0..12 {
        let server = if i % 2 == 0 { &a } else { &b };
        ids.push(queue_test_mail(server, &cookie, &format!("u{i}@example.com")).await);
    }
    sink.wait_for(ids.len(), WAIT).await.unwrap();
    // Once every row is recorded as sent, no sender can send any of them again.
    for id in &ids {
        let deadline = Instant::now() + WAIT;
        while state_of(&a, id).await.map(|s| s.0) != Some(MailState::Sent) {
            assert!(
                Instant::now() < deadline,
                "{id}: {:?}",
                state_of(&a, id).await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let got = sink.received();
    assert_eq!(got.len(), ids.len(), "a mail was sent twice");
    let mut message_ids: Vec<String> = got.iter().filter_map(|m| m.header("Message-ID")).collect();
    message_ids.sort();
    message_ids.dedup();
    assert_eq!(message_ids.len(), ids.len());
    a.stop().await;
    b.stop().await;
    services.cleanup().await;
}

/// Runs `authx email test --to TO` with `config` as its configuration file.
async fn email_test_cli(config: &str, to: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authx.toml");
    std::fs::write(&path, config).unwrap();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_authx"))
        .args([
            "--config",
            &path.to_string_lossy(),
            "email",
            "test",
            "--to",
            to,
        ])
        .current_dir(dir.path())
        .env_remove("AUTHX_DATABASE_URL")
        .env_remove("AUTHX_CONFIG")
        .env("AUTHX_LOG", "info")
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sends_a_test_mail_and_reports_the_transports_answer() {
    let mut sink = SmtpSink::start().await.unwrap();
    let config = format!(
        "issuer = \"https://id.example.com\"\n[email]\ntransport = \"smtp\"\nsmtp_host = \
         \"127.0.0.1\"\nsmtp_port = {}\ntls = \"none\"\ntimeout_secs = 5\n",
        sink.port()
    );
    let out = email_test_cli(&config, "kate@example.com").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("accepted"), "{stdout}");
    let got = sink.wait_for(1, WAIT).await.unwrap();
    assert_eq!(got[0].rcpt_to, ["kate@example.com"]);
    assert_eq!(got[0].mail_from, "no-reply@id.example.com");
    assert!(
        got[0]
            .header("Message-ID")
            .unwrap()
            .ends_with("@id.example.com>")
    );

    // The mail server is down: the operator reads why, and the command fails.
    sink.stop();
    let out = email_test_cli(&config, "kate@example.com").await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("the mail transport refused"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_transport_prints_the_mail_with_its_links() {
    let out = email_test_cli("issuer = \"https://id.example.com\"\n", "kate@example.com").await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("MAIL (log transport, not sent)"),
        "{stderr}"
    );
    assert!(stderr.contains("kate@example.com"), "{stderr}");
    assert!(stderr.contains("https://id.example.com"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_email_settings_are_refused_at_start_up() {
    let out = email_test_cli(
        "[email]\ntransport = \"smtp\"\nsmtp_host = \"mail.example.com\"\ntls = \"none\"\n",
        "kate@example.com",
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("email.tls = \"none\""), "{stderr}");
}
