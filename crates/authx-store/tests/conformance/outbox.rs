//! `OutboxStore`: the mail outbox, each mail claimed by one sender at a time.

use std::collections::HashSet;
use std::sync::Arc;

use authx_core::Timestamp;
use authx_core::mail::{MailState, OutboxStore, OutgoingMail, Rendered};
use authx_store::{ConnectOptions, connect};

use crate::harness::Stores;

mod sqlite {
    instantiate!(crate::harness::sqlite;
        outbox::enqueue_claim_and_send,
        outbox::concurrent_claimers_never_share_a_mail,
        outbox::an_expired_lease_is_claimable_again,
        outbox::retry_waits_until_due,
        outbox::failure_is_final_and_wipes_the_body,
        outbox::purge_removes_only_old_finished_mail,
    );
}

mod postgres {
    instantiate!(crate::harness::postgres;
        outbox::enqueue_claim_and_send,
        outbox::concurrent_claimers_never_share_a_mail,
        outbox::an_expired_lease_is_claimable_again,
        outbox::retry_waits_until_due,
        outbox::failure_is_final_and_wipes_the_body,
        outbox::purge_removes_only_old_finished_mail,
    );
}

/// The outbox of the backend under test, on the same database.
async fn outbox(s: &Stores) -> Arc<dyn OutboxStore> {
    connect(s.url(), &ConnectOptions::default())
        .await
        .unwrap()
        .outbox
}

fn mail(to: &str) -> OutgoingMail {
    OutgoingMail::new(
        "test",
        to,
        "auth.example.com",
        Rendered {
            subject: "Subject".into(),
            text_body: "https://auth.example.com/reset?token=secret".into(),
            html_body: "<a href=\"https://auth.example.com/reset?token=secret\">reset</a>".into(),
        },
    )
}

const T: Timestamp = Timestamp(1_000_000);

pub(crate) async fn enqueue_claim_and_send(s: Stores) {
    let o = outbox(&s).await;
    let m = mail("kate@example.com");
    o.enqueue_mail(&m, T).await.unwrap();
    assert!(matches!(
        o.enqueue_mail(&m, T).await,
        Err(authx_core::StoreError::Conflict)
    ));
    // Not due before it was enqueued.
    assert!(o.claim_mail(T.plus(-1), T, 10).await.unwrap().is_empty());
    let claimed = o.claim_mail(T, T.plus(60), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].mail, m);
    assert_eq!(claimed[0].attempts, 1);
    assert_eq!(
        o.mail_state(&m.id).await.unwrap(),
        Some((MailState::Pending, 1))
    );
    assert!(!o.mark_mail_sent(&m.id, "another", T).await.unwrap());
    assert!(o.mark_mail_sent(&m.id, &claimed[0].claim, T).await.unwrap());
    assert!(!o.mark_mail_sent(&m.id, &claimed[0].claim, T).await.unwrap());
    assert_eq!(
        o.mail_state(&m.id).await.unwrap(),
        Some((MailState::Sent, 1))
    );
    assert!(
        o.claim_mail(T.plus(3600), T.plus(3660), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(o.mail_state("missing").await.unwrap(), None);
}

pub(crate) async fn concurrent_claimers_never_share_a_mail(s: Stores) {
    let o = outbox(&s).await;
    let mut ids = HashSet::new();
    for i in 0..40 {
        let m = mail(&format!("u{i}@example.com"));
        o.enqueue_mail(&m, T).await.unwrap();
        ids.insert(m.id);
    }
    // Eight senders, each on its own pool, claim in small batches until nothing is left.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let o = outbox(&s).await;
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = o.claim_mail(T, T.plus(60), 3).await.unwrap();
                if batch.is_empty() {
                    return got;
                }
                got.extend(batch.into_iter().map(|c| c.mail.id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<String> = all.iter().cloned().collect();
    assert_eq!(all.len(), unique.len(), "a mail was claimed twice");
    assert_eq!(unique, ids);
}

pub(crate) async fn an_expired_lease_is_claimable_again(s: Stores) {
    let o = outbox(&s).await;
    let m = mail("kate@example.com");
    o.enqueue_mail(&m, T).await.unwrap();
    let first = o.claim_mail(T, T.plus(60), 10).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(
        o.claim_mail(T.plus(59), T.plus(119), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let second = o.claim_mail(T.plus(60), T.plus(120), 10).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].attempts, 2);
    assert_eq!(second[0].mail.message_id, m.message_id);
    assert_ne!(second[0].claim, first[0].claim);
    // The first sender's claim is gone: it cannot record an outcome.
    assert!(
        !o.mark_mail_sent(&m.id, &first[0].claim, T.plus(61))
            .await
            .unwrap()
    );
    assert!(!o.retry_mail(&m.id, &first[0].claim, T, "x").await.unwrap());
    assert!(!o.fail_mail(&m.id, &first[0].claim, T, "x").await.unwrap());
    assert!(
        o.mark_mail_sent(&m.id, &second[0].claim, T.plus(61))
            .await
            .unwrap()
    );
}

pub(crate) async fn retry_waits_until_due(s: Stores) {
    let o = outbox(&s).await;
    let m = mail("kate@example.com");
    o.enqueue_mail(&m, T).await.unwrap();
    let c = o.claim_mail(T, T.plus(60), 10).await.unwrap().remove(0);
    assert!(
        o.retry_mail(&m.id, &c.claim, T.plus(30), "421 try later")
            .await
            .unwrap()
    );
    // Released at once, but not due before its time.
    assert!(
        o.claim_mail(T.plus(29), T.plus(89), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = o.claim_mail(T.plus(30), T.plus(90), 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    assert_eq!(again[0].mail.text_body, m.text_body);
}

pub(crate) async fn failure_is_final_and_wipes_the_body(s: Stores) {
    let o = outbox(&s).await;
    let m = mail("kate@example.com");
    o.enqueue_mail(&m, T).await.unwrap();
    let c = o.claim_mail(T, T.plus(60), 10).await.unwrap().remove(0);
    let long = "x".repeat(10_000);
    assert!(o.fail_mail(&m.id, &c.claim, T, &long).await.unwrap());
    assert_eq!(
        o.mail_state(&m.id).await.unwrap(),
        Some((MailState::Failed, 1))
    );
    assert!(
        o.claim_mail(T.plus(86_400), T.plus(90_000), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // No body is left in the database, sent or failed.
    let sent = mail("other@example.com");
    o.enqueue_mail(&sent, T).await.unwrap();
    let c = o.claim_mail(T, T.plus(60), 10).await.unwrap().remove(0);
    assert!(o.mark_mail_sent(&sent.id, &c.claim, T).await.unwrap());
    assert_eq!(bodies_left(s.url()).await, 0);
}

/// Rows that still hold a body, read straight from the database.
async fn bodies_left(url: &str) -> i64 {
    const SQL: &str =
        "SELECT COUNT(*) FROM mail_outbox WHERE text_body IS NOT NULL OR html_body IS NOT NULL";
    if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query_scalar(SQL).fetch_one(&pool).await.unwrap()
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query_scalar(SQL).fetch_one(&pool).await.unwrap()
    }
}

pub(crate) async fn purge_removes_only_old_finished_mail(s: Stores) {
    let o = outbox(&s).await;
    let old = mail("a@example.com");
    let recent = mail("b@example.com");
    let pending = mail("c@example.com");
    for m in [&old, &recent, &pending] {
        o.enqueue_mail(m, T).await.unwrap();
    }
    let claimed = o.claim_mail(T, T.plus(60), 10).await.unwrap();
    for c in &claimed {
        if c.mail.id == old.id {
            assert!(o.mark_mail_sent(&old.id, &c.claim, T).await.unwrap());
        } else if c.mail.id == recent.id {
            assert!(
                o.fail_mail(&recent.id, &c.claim, T.plus(100), "550")
                    .await
                    .unwrap()
            );
        }
    }
    assert_eq!(o.purge_mail(T).await.unwrap(), 0);
    assert_eq!(o.purge_mail(T.plus(50)).await.unwrap(), 1);
    assert_eq!(o.mail_state(&old.id).await.unwrap(), None);
    assert_eq!(o.purge_mail(T.plus(10_000)).await.unwrap(), 1);
    assert_eq!(
        o.mail_state(&pending.id).await.unwrap(),
        Some((MailState::Pending, 1))
    );
}
