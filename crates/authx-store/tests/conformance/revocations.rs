//! `RevocationLog`: the durable log behind the revocation feed.

use std::collections::HashSet;
use std::sync::Arc;

use authx_core::Timestamp;
use authx_core::events::{RevocationEvent, RevocationLog};
use authx_core::session::SessionId;
use authx_core::user::UserId;
use authx_store::{ConnectOptions, connect};

use crate::harness::Stores;

mod sqlite {
    instantiate!(crate::harness::sqlite;
        revocations::events_round_trip_in_order,
        revocations::expired_events_are_hidden_and_purged,
        revocations::concurrent_appends_get_distinct_numbers,
    );
}

mod postgres {
    instantiate!(crate::harness::postgres;
        revocations::events_round_trip_in_order,
        revocations::expired_events_are_hidden_and_purged,
        revocations::concurrent_appends_get_distinct_numbers,
    );
}

async fn log(s: &Stores) -> Arc<dyn RevocationLog> {
    connect(s.url(), &ConnectOptions::default())
        .await
        .unwrap()
        .revocations
}

fn ended(n: u32) -> RevocationEvent {
    RevocationEvent::SessionEnded {
        session_id: SessionId(format!("s{n}")),
        user_id: UserId("u".into()),
    }
}

pub(crate) async fn events_round_trip_in_order(s: Stores) {
    let l = log(&s).await;
    assert!(
        l.events_after(0, Timestamp(0), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let everywhere = RevocationEvent::UserSessionsEnded {
        user_id: UserId("u".into()),
        kept: Some(SessionId("keep".into())),
        ended: vec![SessionId("a".into()), SessionId("b".into())],
    };
    let a = l
        .append_event(&ended(1), Timestamp(100), Timestamp(1_000))
        .await
        .unwrap();
    let b = l
        .append_event(&everywhere, Timestamp(101), Timestamp(1_001))
        .await
        .unwrap();
    let c = l
        .append_event(&ended(3), Timestamp(102), Timestamp(1_002))
        .await
        .unwrap();
    assert!(a < b && b < c, "sequence numbers grow: {a} {b} {c}");

    let all = l.events_after(0, Timestamp(500), 10).await.unwrap();
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![a, b, c]);
    assert_eq!(all[1].event, everywhere);
    assert_eq!((all[1].at, all[1].expires_at), (101, 1_001));

    // Resuming after a number gives only what follows it; the limit is honoured.
    let rest = l.events_after(a, Timestamp(500), 10).await.unwrap();
    assert_eq!(rest.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![b, c]);
    let one = l.events_after(0, Timestamp(500), 1).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].seq, a);
}

pub(crate) async fn expired_events_are_hidden_and_purged(s: Stores) {
    let l = log(&s).await;
    let short = l
        .append_event(&ended(1), Timestamp(100), Timestamp(200))
        .await
        .unwrap();
    let long = l
        .append_event(&ended(2), Timestamp(100), Timestamp(900))
        .await
        .unwrap();
    let at = |now| {
        let l = Arc::clone(&l);
        async move {
            l.events_after(0, Timestamp(now), 10)
                .await
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(at(150).await, vec![short, long]);
    // At its expiry an event no longer matters.
    assert_eq!(at(200).await, vec![long]);
    assert_eq!(l.purge_events(Timestamp(200)).await.unwrap(), 1);
    assert_eq!(l.purge_events(Timestamp(200)).await.unwrap(), 0);
    assert_eq!(at(0).await, vec![long]);
    // A number is never handed out twice, even after a purge.
    let next = l
        .append_event(&ended(3), Timestamp(300), Timestamp(900))
        .await
        .unwrap();
    assert!(next > long);
}

pub(crate) async fn concurrent_appends_get_distinct_numbers(s: Stores) {
    let l = log(&s).await;
    let tasks: Vec<_> = (0..50)
        .map(|n| {
            let l = Arc::clone(&l);
            tokio::spawn(async move {
                l.append_event(&ended(n), Timestamp(100), Timestamp(900))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut seqs = HashSet::new();
    for t in tasks {
        assert!(seqs.insert(t.await.unwrap()));
    }
    let listed = l.events_after(0, Timestamp(100), 100).await.unwrap();
    assert_eq!(listed.len(), 50);
    assert!(listed.windows(2).all(|w| w[0].seq < w[1].seq));
}
