//! `ThrottleStore` and `Health`.

use authx_core::Timestamp;
use authx_core::store::FailureCount;

use crate::harness::Stores;

const RESET: i64 = 900;

pub(crate) async fn record_failure_counts_and_resets(s: Stores) {
    let t = s.throttle();
    assert_eq!(t.failures("acct:kate").await.unwrap(), None);

    for (n, at) in [(1, 1_000), (2, 1_010), (3, 1_500)] {
        assert_eq!(
            t.record_failure("acct:kate", Timestamp(at), RESET)
                .await
                .unwrap(),
            FailureCount {
                failures: n,
                last_failure_at: Timestamp(at)
            }
        );
    }
    assert_eq!(
        t.failures("acct:kate").await.unwrap(),
        Some(FailureCount {
            failures: 3,
            last_failure_at: Timestamp(1_500)
        })
    );

    // Just inside the window the count goes on; from `reset_after_secs` on it starts again.
    assert_eq!(
        t.record_failure("acct:kate", Timestamp(1_500 + RESET - 1), RESET)
            .await
            .unwrap()
            .failures,
        4
    );
    let last = 1_500 + RESET - 1;
    assert_eq!(
        t.record_failure("acct:kate", Timestamp(last + RESET), RESET)
            .await
            .unwrap(),
        FailureCount {
            failures: 1,
            last_failure_at: Timestamp(last + RESET)
        }
    );

    // Keys are independent.
    assert_eq!(
        t.record_failure("ip:192.0.2.1", Timestamp(5_000), RESET)
            .await
            .unwrap()
            .failures,
        1
    );
    assert_eq!(t.failures("acct:kate").await.unwrap().unwrap().failures, 1);
}

pub(crate) async fn clear_failures_forgets(s: Stores) {
    let t = s.throttle();
    t.record_failure("acct:a", Timestamp(10), RESET)
        .await
        .unwrap();
    t.record_failure("acct:a", Timestamp(11), RESET)
        .await
        .unwrap();
    t.record_failure("acct:b", Timestamp(11), RESET)
        .await
        .unwrap();

    t.clear_failures("acct:a").await.unwrap();
    assert_eq!(t.failures("acct:a").await.unwrap(), None);
    assert_eq!(t.failures("acct:b").await.unwrap().unwrap().failures, 1);
    // Clearing what is not there is not an error.
    t.clear_failures("acct:a").await.unwrap();
    t.clear_failures("never-seen").await.unwrap();

    assert_eq!(
        t.record_failure("acct:a", Timestamp(12), RESET)
            .await
            .unwrap()
            .failures,
        1
    );
}

pub(crate) async fn purge_failures_removes_old_counters(s: Stores) {
    let t = s.throttle();
    t.record_failure("old", Timestamp(100), RESET)
        .await
        .unwrap();
    t.record_failure("edge", Timestamp(200), RESET)
        .await
        .unwrap();
    t.record_failure("new", Timestamp(300), RESET)
        .await
        .unwrap();

    // Strictly before `before`.
    assert_eq!(t.purge_failures(Timestamp(200)).await.unwrap(), 1);
    assert_eq!(t.failures("old").await.unwrap(), None);
    assert!(t.failures("edge").await.unwrap().is_some());
    assert!(t.failures("new").await.unwrap().is_some());
    assert_eq!(t.purge_failures(Timestamp(200)).await.unwrap(), 0);
    assert_eq!(t.purge_failures(Timestamp(10_000)).await.unwrap(), 2);
    assert_eq!(t.failures("new").await.unwrap(), None);
    // Idle rate counters go with the failure counters.
    t.count_hit("rate:token:ip", Timestamp(600), Timestamp(630))
        .await
        .unwrap();
    assert_eq!(t.purge_failures(Timestamp(10_000)).await.unwrap(), 1);
}

pub(crate) async fn parallel_failures_all_count(s: Stores) {
    const N: u32 = 50;
    let calls: Vec<_> = (0..N)
        .map(|_| {
            let t = s.throttle();
            tokio::spawn(async move {
                t.record_failure("acct:target", Timestamp(1_000), RESET)
                    .await
            })
        })
        .collect();
    let mut seen = Vec::new();
    for call in calls {
        seen.push(call.await.unwrap().unwrap().failures);
    }
    // Every call counted once: the answers are exactly 1..=N in some order.
    seen.sort_unstable();
    assert_eq!(seen, (1..=N).collect::<Vec<_>>());
    assert_eq!(
        s.throttle()
            .failures("acct:target")
            .await
            .unwrap()
            .unwrap()
            .failures,
        N
    );
}

pub(crate) async fn health_ping_answers(s: Stores) {
    s.health().ping().await.unwrap();
}

pub(crate) async fn count_hit_counts_per_fixed_window(s: Stores) {
    let t = s.throttle();
    // Window [600, 660): three hits, at different moments inside it.
    for (n, at) in [(1, 600), (2, 630), (3, 659)] {
        assert_eq!(
            t.count_hit("rate:token:ip", Timestamp(600), Timestamp(at))
                .await
                .unwrap(),
            n
        );
    }
    // The next window starts over, however recent the last hit was.
    assert_eq!(
        t.count_hit("rate:token:ip", Timestamp(660), Timestamp(660))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        t.count_hit("rate:revoke:ip", Timestamp(660), Timestamp(661))
            .await
            .unwrap(),
        1
    );
}

pub(crate) async fn parallel_hits_all_count(s: Stores) {
    const N: u32 = 50;
    let calls: Vec<_> = (0..N)
        .map(|_| {
            let t = s.throttle();
            tokio::spawn(async move {
                t.count_hit("rate:token:1.2.3.4", Timestamp(60), Timestamp(61))
                    .await
            })
        })
        .collect();
    let mut seen = Vec::new();
    for call in calls {
        seen.push(call.await.unwrap().unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=N).collect::<Vec<_>>());
}

/// The generation several instances share (Redis): stable until raised, raised by one handle
/// and seen by another at once, and never back at an old value when its key is lost.
pub(crate) async fn the_shared_generation_is_seen_by_every_handle(s: Stores) {
    let (a, b) = (s.generation(), s.second_generation());
    let first = a.current().await.unwrap();
    assert_eq!(a.current().await.unwrap(), first);
    assert_eq!(
        b.current().await.unwrap(),
        first,
        "one count for every instance"
    );
    b.bump().await.unwrap();
    assert_eq!(a.current().await.unwrap(), first + 1);
    a.bump().await.unwrap();
    a.bump().await.unwrap();
    assert_eq!(b.current().await.unwrap(), first + 3);
    // Parallel raises each count.
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let g = s.generation();
            tokio::spawn(async move { g.bump().await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(a.current().await.unwrap(), first + 23);
    // A Redis that restarted empty: the count starts again somewhere else entirely.
    s.forget_generation().await;
    let restarted = b.current().await.unwrap();
    assert!(
        restarted.abs_diff(first) > 1_000_000,
        "{restarted} is far from {first}"
    );
    assert_eq!(a.current().await.unwrap(), restarted);
}
