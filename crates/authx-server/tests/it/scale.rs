//! Several instances on one PostgreSQL and one Redis: revocation on one instance holds on every
//! other from the very next request, and a dependency that goes away makes authentication fail
//! closed and come back by itself.
//!
//! Needs `AUTHX_TEST_POSTGRES_URL` and `AUTHX_TEST_REDIS_URL`; without them each test prints
//! `SKIPPED: ...` (or fails when `AUTHX_TEST_REQUIRE_SERVICES=1`). Each test gets a fresh schema
//! and key prefix. Faults are injected with a TCP proxy owned by the test, never by stopping
//! the real services, which other tests share.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authx_core::events::RevocationEvent;
use authx_server::config::{DatabaseFile, FileConfig};
use authx_testkit::services::{SharedServices, addr_of, with_addr};
use authx_testkit::{PASSWORD, TestServer, session_cookie};
use reqwest::Method;
use serde_json::{Value, json};

use crate::proxy::Proxy;

/// Revocations measured by the propagation test (`AUTHX_SCALE_TRIALS` overrides it).
const TRIALS: usize = 1_000;

/// A signed-in session: its cookie and id.
pub(crate) struct Signed {
    pub(crate) cookie: String,
    pub(crate) id: String,
}

pub(crate) async fn sign_in(server: &TestServer, email: &str, password: &str) -> Signed {
    let res = server
        .client
        .post(format!("{}/api/v1/auth/sign-in", server.url))
        .header("origin", server.origin())
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "sign-in on {}", server.url);
    let cookie = session_cookie(&res).unwrap();
    let body: Value = res.json().await.unwrap();
    Signed {
        cookie,
        id: body["session"]["id"].as_str().unwrap().to_owned(),
    }
}

pub(crate) async fn me(server: &TestServer, cookie: &str) -> reqwest::Response {
    server.get("/api/v1/me", Some(cookie)).await.unwrap()
}

pub(crate) async fn me_status(server: &TestServer, cookie: &str) -> u16 {
    me(server, cookie).await.status().as_u16()
}

/// Three instances on the test's schema and prefix.
pub(crate) async fn three(services: &SharedServices) -> [TestServer; 3] {
    three_with(services, |_| {}).await
}

/// Three instances on the test's schema and prefix, each configured further by `extra`.
pub(crate) async fn three_with(
    services: &SharedServices,
    extra: fn(&mut FileConfig),
) -> [TestServer; 3] {
    let mut out = Vec::new();
    for _ in 0..3 {
        let configure = services.configure();
        out.push(
            TestServer::start_on(&services.database_url, move |f| {
                configure(f);
                extra(f);
                // A thousand sign-ins from one address in one (stopped-clock) window measure
                // revocation, not the sign-in rate limit.
                f.rate_limit = Some(authx_server::config::RateLimitFile {
                    sign_in: Some(0),
                    ..Default::default()
                });
            })
            .await
            .unwrap(),
        );
    }
    out.try_into().ok().unwrap()
}

/// The `q`-quantile of sorted durations, in milliseconds.
fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1_000.0
}

fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    eprintln!(
        "{label}: n={} p50={:.2}ms p99={:.2}ms max={:.2}ms",
        samples.len(),
        quantile_ms(&samples, 0.50),
        quantile_ms(&samples, 0.99),
        quantile_ms(&samples, 1.0),
    );
}

/// Sign in on A, use the cookie on B and C, revoke on C: the very next request on A and on B
/// is refused, every time; and how long after the revoke response the refusal and the event
/// arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocation_on_one_instance_holds_on_the_others_at_once() {
    let Some(services) =
        SharedServices::acquire("scale::revocation_on_one_instance_holds_on_the_others_at_once")
            .await
    else {
        return;
    };
    let [a, b, c] = three(&services).await;
    a.create_user("many@example.com", PASSWORD).await.unwrap();
    let trials = std::env::var("AUTHX_SCALE_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(TRIALS);

    // When each SessionEnded event reaches instance A's bus.
    let arrivals = Arc::new(Mutex::new(
        std::collections::HashMap::<String, Instant>::new(),
    ));
    let mut events = a.running().unwrap().state.bus.subscribe();
    let listener = {
        let arrivals = Arc::clone(&arrivals);
        tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                if let RevocationEvent::SessionEnded { session_id, .. } = event {
                    arrivals
                        .lock()
                        .unwrap()
                        .insert(session_id.0, Instant::now());
                }
            }
        })
    };

    let mut stale = 0usize;
    let mut to_refusal = Vec::with_capacity(trials * 2);
    let mut revoked_at = Vec::with_capacity(trials);
    for _ in 0..trials {
        let s = sign_in(&a, "many@example.com", PASSWORD).await;
        assert_eq!(me_status(&b, &s.cookie).await, 200);
        assert_eq!(me_status(&c, &s.cookie).await, 200);
        let sent = Instant::now();
        let res = c
            .send_json(
                Method::DELETE,
                &format!("/api/v1/sessions/{}", s.id),
                &s.cookie,
                None,
            )
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
        let t0 = Instant::now();
        let (on_a, on_b) = tokio::join!(
            async {
                let st = me_status(&a, &s.cookie).await;
                (st, t0.elapsed())
            },
            async {
                let st = me_status(&b, &s.cookie).await;
                (st, t0.elapsed())
            },
        );
        for (status, took) in [on_a, on_b] {
            if status == 200 {
                stale += 1;
            } else {
                assert_eq!(status, 401);
                to_refusal.push(took);
            }
        }
        revoked_at.push((s.id, sent, t0));
    }

    // Give the last events a moment, then compare arrival with the revoke response.
    tokio::time::sleep(Duration::from_millis(500)).await;
    listener.abort();
    let arrivals = arrivals.lock().unwrap().clone();
    let mut event_lag = Vec::new();
    let mut before_response = 0usize;
    let mut missing = 0usize;
    for (id, sent, t0) in &revoked_at {
        match arrivals.get(id) {
            Some(at) => {
                event_lag.push(at.saturating_duration_since(*sent));
                if at < t0 {
                    before_response += 1;
                }
            }
            None => missing += 1,
        }
    }
    eprintln!("scale: {trials} revocations on C, next request on A and B: {stale} stale accepts");
    report("scale: revoke response on C -> refusal on A/B", to_refusal);
    report(
        "scale: revoke request sent to C -> event on A's bus",
        event_lag,
    );
    eprintln!(
        "scale: events on A's bus before C's revoke response: {before_response}; never: {missing}"
    );
    assert_eq!(stale, 0, "a revoked session was accepted");
    assert_eq!(missing, 0, "every revocation reaches every instance's bus");
    for s in [a, b, c] {
        s.stop().await;
    }
    services.cleanup().await;
}

/// Revoke-others, password change and disabling a user on one instance hold on the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_kind_of_revocation_reaches_every_instance() {
    let Some(services) =
        SharedServices::acquire("scale::every_kind_of_revocation_reaches_every_instance").await
    else {
        return;
    };
    let [a, b, c] = three(&services).await;
    a.create_user("kinds@example.com", PASSWORD).await.unwrap();

    // Revoke-others on C keeps C's session only.
    let on_a = sign_in(&a, "kinds@example.com", PASSWORD).await;
    let on_b = sign_in(&b, "kinds@example.com", PASSWORD).await;
    let on_c = sign_in(&c, "kinds@example.com", PASSWORD).await;
    for s in [&a, &b, &c] {
        assert_eq!(me_status(s, &on_a.cookie).await, 200);
        assert_eq!(me_status(s, &on_b.cookie).await, 200);
    }
    let res = c
        .send_json(
            Method::POST,
            "/api/v1/sessions/revoke-others",
            &on_c.cookie,
            None,
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    for s in [&a, &b, &c] {
        assert_eq!(me_status(s, &on_a.cookie).await, 401);
        assert_eq!(me_status(s, &on_b.cookie).await, 401);
        assert_eq!(me_status(s, &on_c.cookie).await, 200);
    }

    // A password change on B ends every session, and the new one works everywhere.
    let on_a = sign_in(&a, "kinds@example.com", PASSWORD).await;
    assert_eq!(me_status(&c, &on_a.cookie).await, 200);
    let new_password = "an entirely new passphrase 42";
    let res = b
        .send_json(
            Method::POST,
            "/api/v1/password",
            &on_c.cookie,
            Some(json!({"current_password": PASSWORD, "new_password": new_password})),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let fresh = session_cookie(&res).unwrap();
    for s in [&a, &b, &c] {
        assert_eq!(me_status(s, &on_a.cookie).await, 401);
        assert_eq!(me_status(s, &on_c.cookie).await, 401);
        assert_eq!(me_status(s, &fresh).await, 200);
    }
    assert!(a.sign_in("kinds@example.com", PASSWORD).await.is_err());

    // An administrator on C disables the user: nothing of theirs works anywhere.
    let admin = c
        .running()
        .unwrap()
        .state
        .auth
        .create_user("admin@example.com", PASSWORD, true)
        .await
        .unwrap();
    assert!(admin.is_admin);
    let admin_cookie = c.sign_in("admin@example.com", PASSWORD).await.unwrap();
    let victim = sign_in(&a, "kinds@example.com", new_password).await;
    let user_id = me(&b, &victim.cookie).await.json::<Value>().await.unwrap()["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = c
        .send_json(
            Method::POST,
            &format!("/api/v1/admin/users/{user_id}/disable"),
            &admin_cookie,
            None,
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    for s in [&a, &b, &c] {
        assert_eq!(me_status(s, &victim.cookie).await, 401);
        assert_eq!(me_status(s, &fresh).await, 401);
    }
    assert!(b.sign_in("kinds@example.com", new_password).await.is_err());

    for s in [a, b, c] {
        s.stop().await;
    }
    services.cleanup().await;
}

/// Polls `check` until it holds or `within` passes.
pub(crate) async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} within {within:?}");
}

/// A 503 with the stable JSON error body, and nothing else.
pub(crate) async fn assert_unavailable(res: reqwest::Response) {
    assert_eq!(res.status(), 503);
    assert!(res.headers().get("retry-after").is_some());
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "unavailable", "{body}");
    assert_eq!(
        body["message"], "the service is temporarily unavailable",
        "{body}"
    );
}

/// Background traffic on `server` with `cookie` until stopped: every status seen.
pub(crate) fn traffic(
    server: &TestServer,
    cookie: &str,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<Vec<u16>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let client = server.client.clone();
    let url = format!("{}/api/v1/me", server.url);
    let cookie = cookie.to_owned();
    let flag = Arc::clone(&stop);
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        while !flag.load(Ordering::SeqCst) {
            if let Ok(res) = client.get(&url).header("cookie", &cookie).send().await {
                seen.push(res.status().as_u16());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seen
    });
    (stop, task)
}

/// Redis cut under traffic: instance A answers 503 (never 500, never a revoked session
/// accepted), `/readyz` says why, and A recovers by itself when Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cut_fails_closed_and_recovers() {
    let Some(services) =
        SharedServices::acquire("scale::redis_cut_fails_closed_and_recovers").await
    else {
        return;
    };
    let proxy = Proxy::start(addr_of(&services.redis_url, 6379).unwrap()).await;
    let a = TestServer::start_on(
        &services.database_url,
        services.configure_redis(&with_addr(&services.redis_url, proxy.addr)),
    )
    .await
    .unwrap();
    let b = TestServer::start_on(&services.database_url, services.configure())
        .await
        .unwrap();
    a.create_user("cut@example.com", PASSWORD).await.unwrap();
    let doomed = sign_in(&b, "cut@example.com", PASSWORD).await;
    let kept = sign_in(&b, "cut@example.com", PASSWORD).await;
    assert_eq!(me_status(&a, &doomed.cookie).await, 200);
    assert_eq!(a.get("/readyz", None).await.unwrap().status(), 200);

    let (stop_kept, kept_traffic) = traffic(&a, &kept.cookie);
    let (stop_doomed, doomed_traffic) = traffic(&a, &doomed.cookie);
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.cut();
    assert_unavailable(me(&a, &kept.cookie).await).await;
    eventually(
        Duration::from_secs(10),
        "readyz reports the lost event bus",
        || async {
            let res = a.get("/readyz", None).await.unwrap();
            if res.status() != 503 {
                return false;
            }
            let body: Value = res.json().await.unwrap();
            body["events"] != "connected" && body["store"] == "unreachable"
        },
    )
    .await;
    // Revoked elsewhere while A cannot hear of it.
    let res = b
        .send_json(
            Method::DELETE,
            &format!("/api/v1/sessions/{}", doomed.id),
            &doomed.cookie,
            None,
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let revoked = Instant::now();
    for _ in 0..5 {
        assert_unavailable(me(&a, &doomed.cookie).await).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    proxy.restore();
    let cut_over = Instant::now();
    eventually(
        Duration::from_secs(20),
        "A serves again after Redis returns",
        || async { me_status(&a, &kept.cookie).await == 200 },
    )
    .await;
    eprintln!(
        "scale: A served again {:?} after Redis came back",
        cut_over.elapsed()
    );
    eventually(Duration::from_secs(20), "readyz is ready again", || async {
        a.get("/readyz", None).await.unwrap().status() == 200
    })
    .await;
    assert_eq!(me_status(&a, &doomed.cookie).await, 401);
    tokio::time::sleep(Duration::from_millis(200)).await;

    stop_kept.store(true, Ordering::SeqCst);
    stop_doomed.store(true, Ordering::SeqCst);
    let kept_seen = kept_traffic.await.unwrap();
    let doomed_seen = doomed_traffic.await.unwrap();
    assert!(
        kept_seen.iter().all(|s| *s == 200 || *s == 503),
        "only 200 or 503 under a Redis cut: {kept_seen:?}"
    );
    assert!(kept_seen.contains(&503) && kept_seen.last() == Some(&200));
    // After the revoke, the doomed session was never accepted again.
    let first_401 = doomed_seen.iter().position(|s| *s == 401);
    assert!(
        doomed_seen.iter().all(|s| [200, 401, 503].contains(s)),
        "{doomed_seen:?}"
    );
    if let Some(i) = first_401 {
        assert!(
            doomed_seen[i..].iter().all(|s| *s != 200),
            "a revoked session was accepted after the cut: {doomed_seen:?}"
        );
    }
    assert_eq!(doomed_seen.last(), Some(&401));
    let _ = revoked;
    a.stop().await;
    b.stop().await;
    services.cleanup().await;
}

/// PostgreSQL cut under traffic: what needs it (a sign-in) gets 503 with a clear body, a
/// signed-in user is still served from what A keeps in Redis, a user disabled meanwhile is
/// refused at once, and A recovers by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_cut_fails_closed_and_recovers() {
    let Some(services) =
        SharedServices::acquire("scale::postgres_cut_fails_closed_and_recovers").await
    else {
        return;
    };
    let proxy = Proxy::start(addr_of(&services.database_url, 5432).unwrap()).await;
    let redis = services.configure();
    let a = TestServer::start_on(
        &with_addr(&services.database_url, proxy.addr),
        move |f: &mut FileConfig| {
            redis(f);
            // A cut database fails a request within about a second, not the default five.
            f.database = Some(DatabaseFile {
                acquire_timeout_secs: Some(1),
                ..DatabaseFile::default()
            });
        },
    )
    .await
    .unwrap();
    let b = TestServer::start_on(&services.database_url, services.configure())
        .await
        .unwrap();
    a.create_user("pgcut@example.com", PASSWORD).await.unwrap();
    b.running()
        .unwrap()
        .state
        .auth
        .create_user("pgadmin@example.com", PASSWORD, true)
        .await
        .unwrap();
    let admin = b.sign_in("pgadmin@example.com", PASSWORD).await.unwrap();
    let victim = sign_in(&b, "pgcut@example.com", PASSWORD).await;
    let user_id = me(&a, &victim.cookie).await.json::<Value>().await.unwrap()["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (stop, seen) = traffic(&a, &victim.cookie);
    tokio::time::sleep(Duration::from_millis(200)).await;

    proxy.cut();
    assert_unavailable(crate::sign_in_raw(&a, "pgcut@example.com", PASSWORD).await).await;
    // The account is kept beside the session in Redis: no PostgreSQL read to serve it.
    assert_eq!(me_status(&a, &victim.cookie).await, 200);
    eventually(
        Duration::from_secs(10),
        "readyz reports the lost database",
        || async { a.get("/readyz", None).await.unwrap().status() == 503 },
    )
    .await;
    let res = b
        .send_json(
            Method::POST,
            &format!("/api/v1/admin/users/{user_id}/disable"),
            &admin,
            None,
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    // The sessions went with the user (from Redis, which A still reaches): refused at once.
    assert_eq!(me_status(&a, &victim.cookie).await, 401);

    proxy.restore();
    let back = Instant::now();
    eventually(
        Duration::from_secs(20),
        "A answers again after PostgreSQL returns",
        || async { me_status(&a, &admin).await == 200 },
    )
    .await;
    eprintln!(
        "scale: A answered again {:?} after PostgreSQL came back",
        back.elapsed()
    );
    assert_eq!(me_status(&a, &victim.cookie).await, 401);
    eventually(Duration::from_secs(10), "readyz is ready again", || async {
        a.get("/readyz", None).await.unwrap().status() == 200
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let seen = seen.await.unwrap();
    assert!(
        seen.iter().all(|s| [200, 401, 503].contains(s)),
        "only 200, 401 or 503 under a database cut: {seen:?}"
    );
    if let Some(i) = seen.iter().position(|s| *s == 401) {
        assert!(seen[i..].iter().all(|s| *s != 200), "{seen:?}");
    }
    a.stop().await;
    b.stop().await;
    services.cleanup().await;
}

/// Without Redis, PostgreSQL alone carries sessions and events (`LISTEN`/`NOTIFY`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_alone_serves_several_instances() {
    let Some(services) =
        SharedServices::acquire("scale::postgres_alone_serves_several_instances").await
    else {
        return;
    };
    let a = TestServer::start_on(&services.database_url, services.configure_without_redis())
        .await
        .unwrap();
    let b = TestServer::start_on(&services.database_url, services.configure_without_redis())
        .await
        .unwrap();
    a.create_user("pg@example.com", PASSWORD).await.unwrap();
    let mut events = a.running().unwrap().state.bus.subscribe();
    assert!(a.running().unwrap().state.bus.is_connected());
    for _ in 0..20 {
        let s = sign_in(&a, "pg@example.com", PASSWORD).await;
        assert_eq!(me_status(&b, &s.cookie).await, 200);
        let res = b
            .send_json(
                Method::DELETE,
                &format!("/api/v1/sessions/{}", s.id),
                &s.cookie,
                None,
            )
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
        assert_eq!(me_status(&a, &s.cookie).await, 401);
        let event = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Ok(RevocationEvent::SessionEnded { session_id, .. }) = events.recv().await {
                    if session_id.0 == s.id {
                        return;
                    }
                }
            }
        })
        .await;
        assert!(event.is_ok(), "the NOTIFY reached instance A");
    }
    a.stop().await;
    b.stop().await;
    services.cleanup().await;
}

/// `authx serve` refuses to start, with a message that names the problem, on a bad Redis URL,
/// an unreachable database or Redis, and a schema newer than the binary.
#[tokio::test]
async fn serve_refuses_to_start_on_a_bad_shared_setup() {
    let Some(services) =
        SharedServices::acquire("scale::serve_refuses_to_start_on_a_bad_shared_setup").await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let serve = |database_url: &str, redis_url: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_authx"));
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .current_dir(dir.path())
            .env("AUTHX_DATABASE_URL", database_url)
            .env_remove("AUTHX_CONFIG")
            .env_remove("AUTHX_REDIS_URL");
        if let Some(r) = redis_url {
            cmd.env("AUTHX_REDIS_URL", r);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "serve started: {out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    let err = serve(&services.database_url, Some("http://127.0.0.1:6379"));
    assert!(err.contains("redis_url must start with redis://"), "{err}");

    let err = serve(
        "postgres://authx:hunter2@127.0.0.1:1/authx",
        Some(&services.redis_url),
    );
    assert!(err.contains("cannot open database"), "{err}");
    assert!(err.contains("cannot connect to the database"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");

    let err = serve(&services.database_url, Some("redis://:hunter2@127.0.0.1:1"));
    assert!(err.contains("cannot use Redis at redis://"), "{err}");
    assert!(err.contains("cannot connect to Redis"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");

    // A newer build migrated this database: this one must not touch it.
    let pool = sqlx::PgPool::connect(&services.database_url).await.unwrap();
    let migrate = std::process::Command::new(env!("CARGO_BIN_EXE_authx"))
        .arg("migrate")
        .env("AUTHX_DATABASE_URL", &services.database_url)
        .output()
        .unwrap();
    assert!(migrate.status.success(), "{migrate:?}");
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99999, 'from the future', TRUE, '\\x00'::bytea, 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let err = serve(&services.database_url, Some(&services.redis_url));
    assert!(err.contains("newer than this build"), "{err}");
    services.cleanup().await;
}
