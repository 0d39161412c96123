//! A backing service that stops answering without closing its connections (frozen, or a
//! stalled network path): after the first requests wait out a timeout, a circuit breaker
//! answers `503` at once instead of making every request wait, a session revoked meanwhile is
//! never accepted, and the instance serves again by itself once the service answers.
//!
//! Faults come from a TCP proxy owned by the test (`crate::proxy`), in front of the real
//! PostgreSQL and Redis that other tests share.

use std::time::{Duration, Instant};

use authx_server::config::{DatabaseFile, FileConfig};
use authx_testkit::services::{SharedServices, addr_of, with_addr};
use authx_testkit::{PASSWORD, TestServer};
use reqwest::Method;

use crate::proxy::Proxy;
use crate::scale::{assert_unavailable, eventually, me, me_status, sign_in};
use crate::sign_in_raw;

/// A Redis that stops answering without closing its connections: after the first requests
/// wait out the response timeout, the circuit breaker answers `503` at once instead of making
/// every request wait, a session revoked meanwhile is never accepted, and A serves again by
/// itself once Redis answers.
#[tokio::test]
async fn a_frozen_redis_fails_fast_and_recovers_by_itself() {
    let Some(services) =
        SharedServices::acquire("frozen::a_frozen_redis_fails_fast_and_recovers_by_itself").await
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
    a.create_user("frozen@example.com", PASSWORD).await.unwrap();
    let kept = sign_in(&b, "frozen@example.com", PASSWORD).await;
    let doomed = sign_in(&b, "frozen@example.com", PASSWORD).await;
    assert_eq!(me_status(&a, &kept.cookie).await, 200);
    assert_eq!(me_status(&a, &doomed.cookie).await, 200);

    proxy.freeze();
    // The first requests find out the slow way: each waits for Redis's response timeout.
    let first = futures_util::future::join_all((0..4).map(|_| me(&a, &kept.cookie))).await;
    for res in first {
        assert_unavailable(res).await;
    }
    // From then on the breaker answers at once: twenty requests take less time than one
    // response timeout (5 s) would.
    let started = Instant::now();
    for _ in 0..20 {
        assert_unavailable(me(&a, &kept.cookie).await).await;
    }
    let twenty = started.elapsed();
    assert!(
        twenty < Duration::from_secs(4),
        "twenty answers took {twenty:?}"
    );
    eprintln!("scale: 20 answers with Redis frozen took {twenty:?}");

    // Revoked elsewhere meanwhile (B reaches Redis directly): never accepted at A.
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
    for _ in 0..5 {
        assert_unavailable(me(&a, &doomed.cookie).await).await;
    }

    proxy.thaw();
    eventually(
        Duration::from_secs(15),
        "A serves again after Redis answers",
        || async { me_status(&a, &kept.cookie).await == 200 },
    )
    .await;
    assert_eq!(me_status(&a, &doomed.cookie).await, 401);
    drop(proxy);
    a.stop().await;
    b.stop().await;
    services.cleanup().await;
}

/// A PostgreSQL that stops answering: a signed-in user whose account A keeps beside the
/// session in Redis is still served (an authenticated request reads no PostgreSQL), a
/// session revoked meanwhile (in Redis, which A still reaches) is refused, and what needs the
/// database (a sign-in) fails with `503` after the statement timeout, then at once; A signs
/// people in again by itself once PostgreSQL answers.
#[tokio::test]
async fn a_frozen_postgres_fails_fast_and_recovers_by_itself() {
    let Some(services) =
        SharedServices::acquire("frozen::a_frozen_postgres_fails_fast_and_recovers_by_itself")
            .await
    else {
        return;
    };
    let proxy = Proxy::start(addr_of(&services.database_url, 5432).unwrap()).await;
    let redis = services.configure();
    let a = TestServer::start_on(
        &with_addr(&services.database_url, proxy.addr),
        move |f: &mut FileConfig| {
            redis(f);
            f.database = Some(DatabaseFile {
                acquire_timeout_secs: Some(2),
                statement_timeout_secs: Some(2),
                ..DatabaseFile::default()
            });
            // Thirty sign-ins from one address measure the breaker, not the rate limit.
            f.rate_limit = Some(authx_server::config::RateLimitFile {
                sign_in: Some(0),
                ..Default::default()
            });
        },
    )
    .await
    .unwrap();
    let b = TestServer::start_on(&services.database_url, services.configure())
        .await
        .unwrap();
    const EMAIL: &str = "pgfrozen@example.com";
    a.create_user(EMAIL, PASSWORD).await.unwrap();
    let kept = sign_in(&b, EMAIL, PASSWORD).await;
    let doomed = sign_in(&b, EMAIL, PASSWORD).await;
    assert_eq!(me_status(&a, &kept.cookie).await, 200);
    assert_eq!(me_status(&a, &doomed.cookie).await, 200);

    proxy.freeze();
    // The account is kept beside the session: authenticated requests need no PostgreSQL.
    for _ in 0..5 {
        assert_eq!(me_status(&a, &kept.cookie).await, 200);
    }
    // A sign-in needs the database. The first ones find out the slow way: each waits for
    // the statement timeout.
    let started = Instant::now();
    let first =
        futures_util::future::join_all((0..4).map(|_| sign_in_raw(&a, EMAIL, PASSWORD))).await;
    for res in first {
        assert_unavailable(res).await;
    }
    eprintln!(
        "frozen: the first 4 sign-ins with PostgreSQL frozen took {:?}",
        started.elapsed()
    );
    // From then on the breaker answers at once: twenty take less time than one statement
    // timeout (2 s) would.
    let started = Instant::now();
    for _ in 0..20 {
        assert_unavailable(sign_in_raw(&a, EMAIL, PASSWORD).await).await;
    }
    let twenty = started.elapsed();
    assert!(
        twenty < Duration::from_secs(2),
        "twenty answers took {twenty:?}"
    );
    eprintln!("frozen: 20 sign-ins with PostgreSQL frozen took {twenty:?}");

    // Revoked on B meanwhile: the session is gone from Redis, so A refuses it.
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
    for _ in 0..5 {
        assert_eq!(me_status(&a, &doomed.cookie).await, 401);
    }

    proxy.thaw();
    eventually(
        Duration::from_secs(20),
        "A signs people in again after PostgreSQL answers",
        || async { sign_in_raw(&a, EMAIL, PASSWORD).await.status() == 200 },
    )
    .await;
    assert_eq!(me_status(&a, &kept.cookie).await, 200);
    assert_eq!(me_status(&a, &doomed.cookie).await, 401);
    drop(proxy);
    a.stop().await;
    b.stop().await;
    services.cleanup().await;
}
