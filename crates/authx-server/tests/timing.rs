//! Timing tests: a failed password sign-in must take as long whatever the reason (SECURITY.md
//! #19). They measure latency, so they are `#[ignore]`d in the ordinary test run (where other
//! test binaries and threads compete for the CPU) and run alone, one test at a time, in a CI
//! step of their own:
//!
//! ```sh
//! cargo test -p authx-server --test timing -- --include-ignored --test-threads=1
//! ```
//!
//! The server runs on a multi-thread runtime, as `authx serve` does, and the client on the test's
//! own thread. On the default single-thread test runtime, the work a handler spawns after its
//! answer (the sign-up's storage and mail, the reset request's lookup) runs on the one thread
//! before the client's read of the answer is polled, so the test would time work that the
//! server keeps out of its answers.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub
)]

use std::time::{Duration, Instant};

use authx_core::user::{User, UserId, UserStatus};
use authx_server::config::{RateLimitFile, ThrottleFile};
use authx_testkit::{PASSWORD, TestServer};
use serde_json::json;

/// Measured sign-ins per class.
const SAMPLES: usize = 150;
/// Rounds run first and not measured (connection set-up, the Argon2 arena, caches).
const WARM_UP_ROUNDS: usize = 5;
/// Largest two-sample Kolmogorov-Smirnov statistic accepted between a class and the reference.
/// Equal distributions stay far below it (the 0.1 % critical value for 150 + 150 samples is
/// 0.23); a class answered without the Argon2id work is entirely faster (a statistic near 1).
const MAX_KS: f64 = 0.35;
/// Largest gap between medians accepted: this absolute bound or this share of the reference
/// median, whichever is larger (a loaded machine stretches every sign-in alike).
const MAX_MEDIAN_GAP_MS: f64 = 5.0;
const MAX_MEDIAN_GAP_SHARE: f64 = 0.2;

/// Issue 14 item 7: unknown user, wrong password, disabled account and an account without a
/// password (federated-only, hash `!federated`) answer a password sign-in after the same
/// Argon2id work. The classes are interleaved round by round, in an order that changes every
/// round, so that whatever else loads the machine falls on all of them alike; the throttles and
/// the rate limit are off so that every attempt reaches the password check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing: runs alone in its own CI step (see the module documentation)"]
async fn failed_sign_ins_take_the_same_time_whatever_the_reason() {
    let server = TestServer::start_with(|f| {
        f.throttle = Some(ThrottleFile {
            account_free_failures: Some(u32::MAX),
            ip_free_failures: Some(u32::MAX),
            ..ThrottleFile::default()
        });
        f.rate_limit = Some(RateLimitFile {
            sign_in: Some(0),
            ..RateLimitFile::default()
        });
    })
    .await
    .unwrap();
    let state = &server.running().unwrap().state;
    server
        .create_user("real@example.com", PASSWORD)
        .await
        .unwrap();
    let off = server
        .create_user("off@example.com", PASSWORD)
        .await
        .unwrap();
    state.auth.disable_user(&off.id).await.unwrap();
    federated_user(&server).await;

    // The reference class first.
    let classes = [
        ("wrong password", "real@example.com", "wrong password here"),
        ("unknown user", "nobody@example.com", PASSWORD),
        ("disabled", "off@example.com", PASSWORD),
        ("federated-only", "federated@example.com", PASSWORD),
    ];
    let samples = measure(classes.len(), |c| {
        let (name, email, password) = classes[c];
        attempt(&server, email, password, name)
    })
    .await;
    let names: Vec<&str> = classes.iter().map(|c| c.0).collect();
    assert_alike(&names, &samples, "sign-in failures");
    server.stop().await;
}

/// Issue 16: a password reset request answers as fast for an unknown address, a disabled
/// account and an account without a password as for a real one (the lookup and the mail run
/// after the answer). The rate limits are off so that every request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing: runs alone in its own CI step (see the module documentation)"]
async fn reset_requests_take_the_same_time_whatever_the_address() {
    let server = TestServer::start_with(|f| {
        f.rate_limit = Some(RateLimitFile {
            password_reset: Some(0),
            password_reset_per_address: Some(0),
            ..RateLimitFile::default()
        });
    })
    .await
    .unwrap();
    server
        .create_user("real@example.com", PASSWORD)
        .await
        .unwrap();
    let off = server
        .create_user("off@example.com", PASSWORD)
        .await
        .unwrap();
    let state = &server.running().unwrap().state;
    state.auth.disable_user(&off.id).await.unwrap();
    federated_user(&server).await;
    let classes = [
        ("real account", "real@example.com"),
        ("unknown address", "nobody@example.com"),
        ("disabled", "off@example.com"),
        ("federated-only", "federated@example.com"),
    ];
    let srv = &server;
    let samples = measure(classes.len(), |c| async move {
        let start = Instant::now();
        let res = srv
            .client
            .post(format!("{}/api/v1/password/forgot", srv.url))
            .header("origin", srv.origin())
            .json(&json!({"email": classes[c].1}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202, "{}", classes[c].0);
        res.bytes().await.unwrap();
        start.elapsed()
    })
    .await;
    let names: Vec<&str> = classes.iter().map(|c| c.0).collect();
    assert_alike(&names, &samples, "reset requests");
    server.stop().await;
}

/// Issue 16: with email on, a sign-up for a taken address answers after the same work as one
/// for a new address (the password is hashed either way, and each mails someone), so the
/// answer's timing does not tell whether the address has an account. The rate limits are off
/// so that every request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing: runs alone in its own CI step (see the module documentation)"]
async fn sign_ups_take_the_same_time_for_new_and_taken_addresses() {
    let server = TestServer::start_with(|f| {
        f.rate_limit = Some(RateLimitFile {
            sign_up: Some(0),
            password_reset_per_address: Some(0),
            ..RateLimitFile::default()
        });
        f.email = Some(authx_server::mail::settings::EmailFile {
            transport: Some("log".into()),
            ..Default::default()
        });
    })
    .await
    .unwrap();
    server
        .create_user("taken@example.com", PASSWORD)
        .await
        .unwrap();
    let srv = &server;
    let fresh = std::sync::atomic::AtomicUsize::new(0);
    let fresh = &fresh;
    let samples = measure(2, |c| async move {
        let email = if c == 0 {
            let n = fresh.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("new{n}@example.com")
        } else {
            "taken@example.com".to_owned()
        };
        let start = Instant::now();
        let res = srv
            .client
            .post(format!("{}/api/v1/auth/sign-up", srv.url))
            .header("origin", srv.origin())
            .json(&json!({"email": email, "password": "a long and new passphrase"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202, "{email}");
        res.bytes().await.unwrap();
        start.elapsed()
    })
    .await;
    assert_alike(&["new address", "taken address"], &samples, "sign-ups");
    server.stop().await;
}

/// Stores `federated@example.com`, an account without a password (federated only).
async fn federated_user(server: &TestServer) {
    let now = authx_core::Clock::now(&server.clock);
    server
        .running()
        .unwrap()
        .state
        .auth
        .stores()
        .accounts
        .create_user(&User {
            id: UserId::generate(),
            email: "federated@example.com".into(),
            password_hash: authx_core::federation::NO_PASSWORD.into(),
            status: UserStatus::Active,
            is_admin: false,
            created_at: now,
            password_changed_at: now,
            email_verified: false,
        })
        .await
        .unwrap();
}

/// Runs `one(class)` for every class, round by round in an order that changes every round,
/// and returns the milliseconds each class took after the warm-up rounds.
async fn measure<F, Fut>(classes: usize, mut one: F) -> Vec<Vec<f64>>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Duration>,
{
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(SAMPLES); classes];
    let mut order: Vec<usize> = (0..classes).collect();
    for round in 0..WARM_UP_ROUNDS + SAMPLES {
        order.rotate_left(1);
        if round % 2 == 1 {
            order.reverse();
        }
        for &c in &order {
            let took = one(c).await;
            if round >= WARM_UP_ROUNDS {
                samples[c].push(took.as_secs_f64() * 1000.0);
            }
        }
    }
    samples
}

/// Fails unless every class's times match the first class's (its median and distribution).
fn assert_alike(names: &[&str], samples: &[Vec<f64>], what: &str) {
    let reference = &samples[0];
    let ref_median = median(reference);
    let allowed_gap = MAX_MEDIAN_GAP_MS.max(MAX_MEDIAN_GAP_SHARE * ref_median);
    let mut failures = Vec::new();
    for (c, name) in names.iter().enumerate() {
        let m = median(&samples[c]);
        let d = ks_statistic(reference, &samples[c]);
        eprintln!(
            "{name:>16}: median {m:6.2} ms, p10 {:6.2} ms, p90 {:6.2} ms, KS vs {} {d:.3}",
            quantile(&samples[c], 0.1),
            quantile(&samples[c], 0.9),
            names[0],
        );
        if d > MAX_KS || (m - ref_median).abs() > allowed_gap {
            failures.push(format!(
                "{name}: median {m:.2} ms against {ref_median:.2} ms (allowed gap {allowed_gap:.2} ms), KS {d:.3} (at most {MAX_KS})"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{what} can be told apart by their timing:\n{}",
        failures.join("\n")
    );
}

/// One failed JSON sign-in; returns how long the answer took.
async fn attempt(server: &TestServer, email: &str, password: &str, class: &str) -> Duration {
    let start = Instant::now();
    let res = server
        .client
        .post(format!("{}/api/v1/auth/sign-in", server.url))
        .header("origin", server.origin())
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body = res.bytes().await.unwrap();
    let took = start.elapsed();
    assert_eq!(status, 401, "{class}: {}", String::from_utf8_lossy(&body));
    took
}

fn sorted(xs: &[f64]) -> Vec<f64> {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

fn quantile(xs: &[f64], q: f64) -> f64 {
    let v = sorted(xs);
    // Nearest rank; the samples are never empty here.
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i.min(v.len() - 1)]
}

fn median(xs: &[f64]) -> f64 {
    quantile(xs, 0.5)
}

/// The two-sample Kolmogorov-Smirnov statistic: the largest distance between the two empirical
/// distribution functions.
fn ks_statistic(a: &[f64], b: &[f64]) -> f64 {
    let (a, b) = (sorted(a), sorted(b));
    let (mut i, mut j, mut d) = (0, 0, 0.0_f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        let fa = i as f64 / a.len() as f64;
        let fb = j as f64 / b.len() as f64;
        d = d.max((fa - fb).abs());
    }
    d
}

#[test]
fn the_ks_statistic_is_right_on_known_samples() {
    let a = [1.0, 2.0, 3.0, 4.0];
    assert!(ks_statistic(&a, &a).abs() < 1e-12);
    assert!((ks_statistic(&a, &[11.0, 12.0, 13.0, 14.0]) - 1.0).abs() < 1e-12);
    assert!((ks_statistic(&a, &[3.5, 4.5, 5.5, 6.5]) - 0.75).abs() < 1e-12);
    assert!((median(&[5.0, 1.0, 3.0]) - 3.0).abs() < 1e-12);
}
