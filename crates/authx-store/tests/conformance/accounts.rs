//! `AccountStore`.

use authx_core::Timestamp;
use authx_core::store::{AccountChange, StoreError, UserPage, UserSearch};
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

    assert_eq!(
        s.accounts()
            .set_status(&u.id, UserStatus::Disabled)
            .await
            .unwrap(),
        AccountChange::Done
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

    assert_eq!(
        s.accounts()
            .set_status(&u.id, UserStatus::Active)
            .await
            .unwrap(),
        AccountChange::Done
    );
    let got = s.accounts().user_by_id(&u.id).await.unwrap().unwrap();
    assert_eq!(got.status, UserStatus::Active);

    assert_eq!(
        s.accounts()
            .set_status(&UserId::generate(), UserStatus::Disabled)
            .await
            .unwrap(),
        AccountChange::NotFound
    );
}

pub(crate) async fn search_users_pages_and_escapes_wildcards(s: Stores) {
    for (i, email) in [
        "ann@corp.example",
        "bob@corp.example",
        "cat@home.example",
        "d_n@corp.example",
        "dxn@corp.example",
    ]
    .iter()
    .enumerate()
    {
        let u = user(email, Timestamp(100 + i as i64));
        s.accounts().create_user(&u).await.unwrap();
    }
    let search = |text: &str, offset: u64, limit: u32| UserSearch {
        email_contains: text.to_owned(),
        offset,
        limit,
    };
    let emails = |p: &UserPage| p.users.iter().map(|u| u.email.clone()).collect::<Vec<_>>();

    let all = s.accounts().search_users(&search("", 0, 2)).await.unwrap();
    assert_eq!(all.total, 5);
    assert_eq!(emails(&all), ["ann@corp.example", "bob@corp.example"]);
    let next = s.accounts().search_users(&search("", 2, 2)).await.unwrap();
    assert_eq!(emails(&next), ["cat@home.example", "d_n@corp.example"]);
    let past = s.accounts().search_users(&search("", 10, 2)).await.unwrap();
    assert!(past.users.is_empty());
    assert_eq!(past.total, 5);

    let corp = s
        .accounts()
        .search_users(&search("corp", 0, 10))
        .await
        .unwrap();
    assert_eq!(corp.total, 4);
    // `_` and `%` are text, not wildcards.
    let underscore = s
        .accounts()
        .search_users(&search("d_n", 0, 10))
        .await
        .unwrap();
    assert_eq!(emails(&underscore), ["d_n@corp.example"]);
    let percent = s
        .accounts()
        .search_users(&search("%", 0, 10))
        .await
        .unwrap();
    assert_eq!(percent.total, 0);
    let backslash = s
        .accounts()
        .search_users(&search("\\", 0, 10))
        .await
        .unwrap();
    assert_eq!(backslash.total, 0);
}

pub(crate) async fn the_last_active_administrator_stays_one(s: Stores) {
    let mut a = user("a@example.com", Timestamp(100));
    a.is_admin = true;
    let b = user("b@example.com", Timestamp(101));
    s.accounts().create_user(&a).await.unwrap();
    s.accounts().create_user(&b).await.unwrap();
    let acc = s.accounts();

    assert_eq!(
        acc.set_admin(&a.id, false).await.unwrap(),
        AccountChange::LastAdministrator
    );
    assert_eq!(
        acc.set_status(&a.id, UserStatus::Disabled).await.unwrap(),
        AccountChange::LastAdministrator
    );
    assert!(acc.user_by_id(&a.id).await.unwrap().unwrap().is_admin);

    // With a second administrator, the first may go; then the second is the last.
    assert_eq!(
        acc.set_admin(&b.id, true).await.unwrap(),
        AccountChange::Done
    );
    assert_eq!(
        acc.set_status(&a.id, UserStatus::Disabled).await.unwrap(),
        AccountChange::Done
    );
    // A disabled administrator does not count.
    assert_eq!(
        acc.set_admin(&b.id, false).await.unwrap(),
        AccountChange::LastAdministrator
    );
    assert_eq!(
        acc.set_admin(&a.id, false).await.unwrap(),
        AccountChange::Done
    );
    assert_eq!(
        acc.set_admin(&UserId::generate(), true).await.unwrap(),
        AccountChange::NotFound
    );
    // Ordinary users are never held back by the rule.
    let c = user("c@example.com", Timestamp(102));
    acc.create_user(&c).await.unwrap();
    assert_eq!(
        acc.set_status(&c.id, UserStatus::Disabled).await.unwrap(),
        AccountChange::Done
    );
}

pub(crate) async fn administrators_demoting_each_other_at_once_leave_one(s: Stores) {
    let mut previous: Vec<UserId> = Vec::new();
    for round in 0..20 {
        let mut a = user(&format!("a{round}@example.com"), Timestamp(100));
        let mut b = user(&format!("b{round}@example.com"), Timestamp(100));
        a.is_admin = true;
        b.is_admin = true;
        s.accounts().create_user(&a).await.unwrap();
        s.accounts().create_user(&b).await.unwrap();
        // The last round's pair steps down, so `a` and `b` are the only administrators.
        for id in previous.drain(..) {
            assert_eq!(
                s.accounts().set_admin(&id, false).await.unwrap(),
                AccountChange::Done
            );
        }
        let (sa, sb) = (s.clone(), s.clone());
        let (ida, idb) = (a.id.clone(), b.id.clone());
        let one = tokio::spawn(async move { sa.accounts().set_admin(&ida, false).await });
        let two =
            tokio::spawn(async move { sb.accounts().set_status(&idb, UserStatus::Disabled).await });
        let (r1, r2) = (one.await.unwrap(), two.await.unwrap());
        // A backend may fail one of the two (a detected deadlock); it never lets both through.
        let done = [&r1, &r2]
            .iter()
            .filter(|r| matches!(r, Ok(AccountChange::Done)))
            .count();
        assert!(done <= 1, "round {round}: {r1:?} {r2:?}");
        let mut left = 0;
        for id in [&a.id, &b.id] {
            let u = s.accounts().user_by_id(id).await.unwrap().unwrap();
            if u.is_admin && u.status == UserStatus::Active {
                left += 1;
            }
        }
        assert!(left >= 1, "round {round}: no active administrator left");
        previous = vec![a.id, b.id];
    }
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
