//! `FederationStore`: one-time transactions, links keyed by (issuer, subject), pending links.

use std::sync::Arc;

use authx_core::Timestamp;
use authx_core::federation::{FederationStore, Link, PendingLink, Transaction};
use authx_core::secret::{TokenHash, random_id};
use authx_core::store::StoreError;
use authx_core::user::UserId;
use authx_store::{ConnectOptions, connect};

use crate::harness::Stores;

mod sqlite {
    instantiate!(crate::harness::sqlite;
        federation::transactions_are_taken_once,
        federation::concurrent_takes_one_wins,
        federation::links_are_keyed_by_issuer_and_subject,
        federation::pending_links_are_deleted_once,
        federation::purge_removes_only_expired_records,
        federation::deleting_a_user_removes_their_links,
    );
}

mod postgres {
    instantiate!(crate::harness::postgres;
        federation::transactions_are_taken_once,
        federation::concurrent_takes_one_wins,
        federation::links_are_keyed_by_issuer_and_subject,
        federation::pending_links_are_deleted_once,
        federation::purge_removes_only_expired_records,
        federation::deleting_a_user_removes_their_links,
    );
}

/// The federation store of the backend under test, on the same database.
async fn store(s: &Stores) -> Arc<dyn FederationStore> {
    connect(s.url(), &ConnectOptions::default())
        .await
        .unwrap()
        .federation
}

fn transaction(expires_at: i64) -> Transaction {
    Transaction {
        state_hash: TokenHash::of(random_id().as_bytes()),
        provider: "corp".into(),
        issuer: "https://idp.example.com".into(),
        browser_hash: TokenHash::of(random_id().as_bytes()),
        nonce: random_id(),
        pkce_verifier: format!("{}{}", random_id(), random_id()),
        return_to: "/account?x=1".into(),
        created_at: Timestamp(1_000),
        expires_at: Timestamp(expires_at),
    }
}

fn link(user: &UserId, subject: &str, at: i64) -> Link {
    Link {
        id: random_id(),
        provider: "corp".into(),
        issuer: "https://idp.example.com".into(),
        subject: subject.into(),
        user_id: user.clone(),
        email: Some("kate@example.com".into()),
        created_at: Timestamp(at),
    }
}

fn pending(user: &UserId, expires_at: i64) -> PendingLink {
    PendingLink {
        token_hash: TokenHash::of(random_id().as_bytes()),
        provider: "corp".into(),
        issuer: "https://idp.example.com".into(),
        subject: "sub-1".into(),
        user_id: user.clone(),
        email: "kate@example.com".into(),
        return_to: "/account".into(),
        created_at: Timestamp(1_000),
        expires_at: Timestamp(expires_at),
    }
}

pub(crate) async fn transactions_are_taken_once(s: Stores) {
    let f = store(&s).await;
    let t = transaction(1_600);
    f.put_transaction(&t).await.unwrap();
    assert!(matches!(
        f.put_transaction(&t).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        f.take_transaction(&t.state_hash).await.unwrap(),
        Some(t.clone())
    );
    assert_eq!(f.take_transaction(&t.state_hash).await.unwrap(), None);
    assert_eq!(
        f.take_transaction(&TokenHash::of(b"unknown"))
            .await
            .unwrap(),
        None
    );
}

pub(crate) async fn concurrent_takes_one_wins(s: Stores) {
    let f = store(&s).await;
    let t = transaction(1_600);
    f.put_transaction(&t).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let f = Arc::clone(&f);
        let h = t.state_hash;
        tasks.push(tokio::spawn(async move {
            f.take_transaction(&h).await.unwrap()
        }));
    }
    let mut wins = 0;
    for task in tasks {
        if task.await.unwrap().is_some() {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
}

pub(crate) async fn links_are_keyed_by_issuer_and_subject(s: Stores) {
    let f = store(&s).await;
    let kate = s.user().await;
    let other = s.user().await;
    let a = link(&kate, "sub-a", 1_000);
    let b = link(&kate, "sub-b", 2_000);
    f.create_link(&a).await.unwrap();
    f.create_link(&b).await.unwrap();
    // The same upstream identity cannot be linked twice, to anyone.
    let mut again = link(&other, "sub-a", 3_000);
    assert!(matches!(
        f.create_link(&again).await,
        Err(StoreError::Conflict)
    ));
    // The same subject at another issuer is another identity.
    again.issuer = "https://other.example.com".into();
    f.create_link(&again).await.unwrap();

    assert_eq!(
        f.link("https://idp.example.com", "sub-a").await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        f.link("https://idp.example.com", "sub-c").await.unwrap(),
        None
    );
    assert_eq!(
        f.user_links(&kate).await.unwrap(),
        vec![a.clone(), b.clone()]
    );
    // Only the owner removes a link.
    assert!(!f.delete_link(&other, &a.id).await.unwrap());
    assert!(f.delete_link(&kate, &a.id).await.unwrap());
    assert!(!f.delete_link(&kate, &a.id).await.unwrap());
    assert_eq!(f.user_links(&kate).await.unwrap(), vec![b]);
}

pub(crate) async fn pending_links_are_deleted_once(s: Stores) {
    let f = store(&s).await;
    let kate = s.user().await;
    let p = pending(&kate, 1_600);
    f.put_pending_link(&p).await.unwrap();
    assert_eq!(
        f.pending_link(&p.token_hash).await.unwrap(),
        Some(p.clone())
    );
    assert!(f.delete_pending_link(&p.token_hash).await.unwrap());
    assert!(!f.delete_pending_link(&p.token_hash).await.unwrap());
    assert_eq!(f.pending_link(&p.token_hash).await.unwrap(), None);
}

pub(crate) async fn purge_removes_only_expired_records(s: Stores) {
    let f = store(&s).await;
    let kate = s.user().await;
    let old = transaction(1_500);
    let live = transaction(2_500);
    let old_p = pending(&kate, 1_500);
    let live_p = pending(&kate, 2_500);
    f.put_transaction(&old).await.unwrap();
    f.put_transaction(&live).await.unwrap();
    f.put_pending_link(&old_p).await.unwrap();
    f.put_pending_link(&live_p).await.unwrap();
    assert_eq!(f.purge_federation(Timestamp(2_000)).await.unwrap(), 2);
    assert_eq!(f.take_transaction(&old.state_hash).await.unwrap(), None);
    assert!(
        f.take_transaction(&live.state_hash)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(f.pending_link(&old_p.token_hash).await.unwrap(), None);
    assert!(f.pending_link(&live_p.token_hash).await.unwrap().is_some());
}

pub(crate) async fn deleting_a_user_removes_their_links(s: Stores) {
    let f = store(&s).await;
    let kate = s.user().await;
    f.create_link(&link(&kate, "sub-a", 1_000)).await.unwrap();
    f.put_pending_link(&pending(&kate, 9_000)).await.unwrap();
    crate::grants::delete_user_row(s.url(), &kate).await;
    assert_eq!(
        f.link("https://idp.example.com", "sub-a").await.unwrap(),
        None
    );
    assert!(f.user_links(&kate).await.unwrap().is_empty());
}
