//! `AccountStore`.

use authx_core::Timestamp;
use authx_core::store::StoreError;
use authx_core::user::{UserId, UserStatus};

use crate::harness::{Stores, user};

pub(crate) async fn create_and_find_user(s: Stores) {
    let mut kate = user("kate@example.com", Timestamp(1_700_000_000));
    kate.is_admin = true;
    kate.password_changed_at = Timestamp(1_700_000_500);
    s.accounts().create_user(&kate).await.unwrap();

    assert_eq!(
        s.accounts()
            .user_by_email("kate@example.com")
            .await
            .unwrap(),
        Some(kate.clone())
    );
    assert_eq!(
        s.accounts().user_by_id(&kate.id).await.unwrap(),
        Some(kate.clone())
    );

    assert_eq!(
        s.accounts()
            .user_by_email("nobody@example.com")
            .await
            .unwrap(),
        None
    );
    // Lookups are exact: callers canonicalise emails before they reach the store.
    assert_eq!(
        s.accounts()
            .user_by_email("Kate@example.com")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.accounts().user_by_id(&UserId::generate()).await.unwrap(),
        None
    );
}

pub(crate) async fn duplicate_email_or_id_conflicts(s: Stores) {
    let first = user("dup@example.com", Timestamp(1));
    s.accounts().create_user(&first).await.unwrap();

    let same_email = user("dup@example.com", Timestamp(2));
    assert!(matches!(
        s.accounts().create_user(&same_email).await,
        Err(StoreError::Conflict)
    ));

    let mut same_id = user("other@example.com", Timestamp(3));
    same_id.id = first.id.clone();
    assert!(matches!(
        s.accounts().create_user(&same_id).await,
        Err(StoreError::Conflict)
    ));

    // The original is untouched and nothing else was stored.
    assert_eq!(
        s.accounts().user_by_id(&first.id).await.unwrap(),
        Some(first)
    );
    assert_eq!(s.accounts().list_users().await.unwrap().len(), 1);
}

pub(crate) async fn list_users_oldest_first(s: Stores) {
    assert!(s.accounts().list_users().await.unwrap().is_empty());
    let c = user("c@example.com", Timestamp(300));
    let a = user("a@example.com", Timestamp(100));
    let b = user("b@example.com", Timestamp(200));
    for u in [&c, &a, &b] {
        s.accounts().create_user(u).await.unwrap();
    }
    let listed = s.accounts().list_users().await.unwrap();
    assert_eq!(listed, vec![a, b, c]);
}

pub(crate) async fn set_password_hash(s: Stores) {
    let u = user("pw@example.com", Timestamp(100));
    s.accounts().create_user(&u).await.unwrap();

    // A password change records when it happened.
    assert!(
        s.accounts()
            .set_password_hash(&u.id, "$argon2id$new", Some(Timestamp(500)))
            .await
            .unwrap()
    );
    let got = s.accounts().user_by_id(&u.id).await.unwrap().unwrap();
    assert_eq!(got.password_hash, "$argon2id$new");
    assert_eq!(got.password_changed_at, Timestamp(500));

    // A rehash with new parameters keeps the date of the last real change.
    assert!(
        s.accounts()
            .set_password_hash(&u.id, "$argon2id$rehashed", None)
            .await
            .unwrap()
    );
    let got = s.accounts().user_by_id(&u.id).await.unwrap().unwrap();
    assert_eq!(got.password_hash, "$argon2id$rehashed");
    assert_eq!(got.password_changed_at, Timestamp(500));
    assert_eq!(got.created_at, Timestamp(100));

    assert!(
        !s.accounts()
            .set_password_hash(&UserId::generate(), "$argon2id$x", Some(Timestamp(1)))
            .await
            .unwrap()
    );
}

pub(crate) async fn set_status(s: Stores) {
    let u = user("status@example.com", Timestamp(100));
    let other = user("other@example.com", Timestamp(100));
    s.accounts().create_user(&u).await.unwrap();
    s.accounts().create_user(&other).await.unwrap();

    assert!(
        s.accounts()
            .set_status(&u.id, UserStatus::Disabled)
            .await
            .unwrap()
    );
    let got = s
        .accounts()
        .user_by_email("status@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.status, UserStatus::Disabled);
    assert_eq!(
        s.accounts()
            .user_by_id(&other.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        UserStatus::Active
    );

    assert!(
        s.accounts()
            .set_status(&u.id, UserStatus::Active)
            .await
            .unwrap()
    );
    let got = s.accounts().user_by_id(&u.id).await.unwrap().unwrap();
    assert_eq!(got.status, UserStatus::Active);

    assert!(
        !s.accounts()
            .set_status(&UserId::generate(), UserStatus::Disabled)
            .await
            .unwrap()
    );
}

pub(crate) async fn set_email_verified(s: Stores) {
    let u = user("verify@example.com", Timestamp(100));
    let mut other = user("verified@example.com", Timestamp(100));
    other.email_verified = true;
    s.accounts().create_user(&u).await.unwrap();
    s.accounts().create_user(&other).await.unwrap();
    // Stored as created, both ways.
    let got = s.accounts().user_by_id(&other.id).await.unwrap().unwrap();
    assert!(got.email_verified);
    let got = s.accounts().user_by_id(&u.id).await.unwrap().unwrap();
    assert!(!got.email_verified);

    assert!(s.accounts().set_email_verified(&u.id, true).await.unwrap());
    let got = s
        .accounts()
        .user_by_email("verify@example.com")
        .await
        .unwrap()
        .unwrap();
    assert!(got.email_verified);
    assert_eq!(got.password_changed_at, u.password_changed_at);
    let listed = s.accounts().list_users().await.unwrap();
    assert!(listed.iter().all(|x| x.email_verified));

    assert!(s.accounts().set_email_verified(&u.id, false).await.unwrap());
    let got = s.accounts().user_by_id(&u.id).await.unwrap().unwrap();
    assert!(!got.email_verified);
    assert!(
        !s.accounts()
            .set_email_verified(&UserId::generate(), true)
            .await
            .unwrap()
    );
}

pub(crate) async fn concurrent_sign_ups_with_one_email_one_wins(s: Stores) {
    let attempts: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.accounts()
                    .create_user(&user("race@example.com", Timestamp(i)))
                    .await
            })
        })
        .collect();
    let mut created = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(()) => created += 1,
            Err(StoreError::Conflict) => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(s.accounts().list_users().await.unwrap().len(), 1);
}
