//! `LinkTokenStore`: single-use link tokens bound to a purpose, a user and an expiry.

use std::sync::Arc;

use authx_core::Timestamp;
use authx_core::links::{LinkPurpose, LinkRecord, LinkTokenStore};
use authx_core::store::StoreError;
use authx_core::user::UserId;
use authx_store::{ConnectOptions, connect};

use crate::harness::{Stores, user};

mod sqlite {
    instantiate!(crate::harness::sqlite;
        links::a_token_is_taken_once_by_its_purpose,
        links::concurrent_takes_one_wins,
        links::expired_tokens_are_refused_and_purged,
        links::a_users_tokens_of_one_purpose_are_deleted_together,
        links::deleting_a_user_removes_their_tokens,
        links::the_detail_is_taken_with_its_token,
        links::an_address_changes_only_to_a_free_one,
    );
}

mod postgres {
    instantiate!(crate::harness::postgres;
        links::a_token_is_taken_once_by_its_purpose,
        links::concurrent_takes_one_wins,
        links::expired_tokens_are_refused_and_purged,
        links::a_users_tokens_of_one_purpose_are_deleted_together,
        links::deleting_a_user_removes_their_tokens,
        links::the_detail_is_taken_with_its_token,
        links::an_address_changes_only_to_a_free_one,
    );
}

/// The link-token store of the backend under test, on the same database.
async fn store(s: &Stores) -> Arc<dyn LinkTokenStore> {
    connect(s.url(), &ConnectOptions::default())
        .await
        .unwrap()
        .links
}

const T: Timestamp = Timestamp(1_000_000);
const RESET: LinkPurpose = LinkPurpose::PasswordReset;

pub(crate) async fn a_token_is_taken_once_by_its_purpose(s: Stores) {
    let l = store(&s).await;
    let user = s.user().await;
    let (token, record) = LinkRecord::issue(RESET, &user, T);
    l.insert_link_token(&record).await.unwrap();
    assert!(matches!(
        l.insert_link_token(&record).await,
        Err(StoreError::Conflict)
    ));
    let h = token.hash();
    assert_eq!(
        l.take_link_token(&h, LinkPurpose::VerifyEmail, T)
            .await
            .unwrap(),
        None,
        "another purpose is refused"
    );
    assert_eq!(l.take_link_token(&h, RESET, T).await.unwrap(), Some(record));
    assert_eq!(l.take_link_token(&h, RESET, T).await.unwrap(), None);
}

pub(crate) async fn concurrent_takes_one_wins(s: Stores) {
    let l = store(&s).await;
    let user = s.user().await;
    let (token, record) = LinkRecord::issue(RESET, &user, T);
    l.insert_link_token(&record).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (l, h) = (Arc::clone(&l), token.hash());
        tasks.push(tokio::spawn(async move {
            l.take_link_token(&h, RESET, T).await.unwrap()
        }));
    }
    let mut wins = 0;
    for task in tasks {
        wins += usize::from(task.await.unwrap().is_some());
    }
    assert_eq!(wins, 1);
}

pub(crate) async fn expired_tokens_are_refused_and_purged(s: Stores) {
    let l = store(&s).await;
    let user = s.user().await;
    let (old, old_record) = LinkRecord::issue(RESET, &user, T);
    let (_, fresh) = LinkRecord::issue(RESET, &user, T.plus(600));
    l.insert_link_token(&old_record).await.unwrap();
    l.insert_link_token(&fresh).await.unwrap();
    let end = old_record.expires_at;
    assert_eq!(
        l.take_link_token(&old.hash(), RESET, end).await.unwrap(),
        None
    );
    assert_eq!(l.purge_link_tokens(end.plus(-1)).await.unwrap(), 0);
    assert_eq!(l.purge_link_tokens(end).await.unwrap(), 1);
    assert_eq!(
        l.take_link_token(&fresh.hash, RESET, end).await.unwrap(),
        Some(fresh)
    );
}

pub(crate) async fn a_users_tokens_of_one_purpose_are_deleted_together(s: Stores) {
    let l = store(&s).await;
    let (ada, bob) = (s.user().await, s.user().await);
    let (_, a1) = LinkRecord::issue(RESET, &ada, T);
    let (_, a2) = LinkRecord::issue(RESET, &ada, T);
    let (_, verify) = LinkRecord::issue(LinkPurpose::VerifyEmail, &ada, T);
    let (_, b) = LinkRecord::issue(RESET, &bob, T);
    for r in [&a1, &a2, &verify, &b] {
        l.insert_link_token(r).await.unwrap();
    }
    assert_eq!(l.delete_user_link_tokens(&ada, RESET).await.unwrap(), 2);
    assert_eq!(l.take_link_token(&a1.hash, RESET, T).await.unwrap(), None);
    let kept = l.take_link_token(&verify.hash, LinkPurpose::VerifyEmail, T);
    assert_eq!(kept.await.unwrap(), Some(verify));
    assert_eq!(l.take_link_token(&b.hash, RESET, T).await.unwrap(), Some(b));
}

pub(crate) async fn deleting_a_user_removes_their_tokens(s: Stores) {
    let l = store(&s).await;
    let user = s.user().await;
    let (_, r) = LinkRecord::issue(RESET, &user, T);
    l.insert_link_token(&r).await.unwrap();
    crate::grants::delete_user_row(s.url(), &user).await;
    assert_eq!(l.take_link_token(&r.hash, RESET, T).await.unwrap(), None);
}

pub(crate) async fn the_detail_is_taken_with_its_token(s: Stores) {
    let l = store(&s).await;
    let ada = s.user().await;
    let change = LinkPurpose::ChangeEmail;
    let (token, record) = LinkRecord::issue(change, &ada, T);
    let record = record.with_detail("new.address@example.com");
    let (_, plain) = LinkRecord::issue(RESET, &ada, T);
    l.insert_link_token(&record).await.unwrap();
    l.insert_link_token(&plain).await.unwrap();
    let taken = l.take_link_token(&token.hash(), change, T).await.unwrap();
    assert_eq!(
        taken.unwrap().detail.as_deref(),
        Some("new.address@example.com")
    );
    let taken = l.take_link_token(&plain.hash, RESET, T).await.unwrap();
    assert_eq!(taken.unwrap().detail, None);
}

/// `AccountStore::set_email`, which the email change's confirmation calls.
pub(crate) async fn an_address_changes_only_to_a_free_one(s: Stores) {
    let (ada, bob) = (user("ada@example.com", T), user("bob@example.com", T));
    s.accounts().create_user(&ada).await.unwrap();
    s.accounts().create_user(&bob).await.unwrap();
    let accounts = s.accounts();
    assert!(
        accounts
            .set_email(&ada.id, "ada@new.example")
            .await
            .unwrap()
    );
    let moved = accounts.user_by_email("ada@new.example").await.unwrap();
    assert_eq!(moved.map(|u| u.id), Some(ada.id.clone()));
    assert_eq!(
        accounts.user_by_email("ada@example.com").await.unwrap(),
        None
    );
    assert!(matches!(
        accounts.set_email(&bob.id, "ada@new.example").await,
        Err(StoreError::Conflict)
    ));
    let bob_now = accounts.user_by_id(&bob.id).await.unwrap().unwrap();
    assert_eq!(
        bob_now.email, "bob@example.com",
        "a refused change changes nothing"
    );
    assert!(
        !accounts
            .set_email(&UserId::generate(), "nobody@example.com")
            .await
            .unwrap()
    );
    // The freed address can be taken by someone else.
    assert!(
        accounts
            .set_email(&bob.id, "ada@example.com")
            .await
            .unwrap()
    );
}
