//! `SessionStore`.

use std::collections::HashSet;

use authx_core::Timestamp;
use authx_core::secret::SessionToken;
use authx_core::session::SessionId;
use authx_core::store::{SessionTouch, StoreError};
use authx_core::user::UserId;

use crate::harness::{Stores, session};

/// Far enough ahead that nothing in these tests expires by accident (and, for Redis, that the
/// key's time to live stays positive whatever the wall clock says).
const FAR: i64 = 4_000_000_000;

fn touch<'a>(
    id: &'a SessionId,
    last_seen_at: Timestamp,
    idle_expires_at: Timestamp,
    ip: Option<&'a str>,
) -> SessionTouch<'a> {
    SessionTouch {
        id,
        last_seen_at,
        idle_expires_at,
        ip,
    }
}

pub(crate) async fn create_and_find_by_hash(s: Stores) {
    let user = s.user().await;
    let mut live = session(&user, 1_000, FAR, FAR);
    live.ip = None;
    live.user_agent = None;
    s.sessions().create_session(&live).await.unwrap();
    assert_eq!(
        s.sessions()
            .session_by_hash(&live.token_hash)
            .await
            .unwrap(),
        Some(live.clone())
    );

    // Expired sessions are still found: expiry is the caller's decision.
    let expired = session(&user, 1_000, 1_100, 1_200);
    s.sessions().create_session(&expired).await.unwrap();
    assert_eq!(
        s.sessions()
            .session_by_hash(&expired.token_hash)
            .await
            .unwrap(),
        Some(expired)
    );

    assert_eq!(
        s.sessions()
            .session_by_hash(&SessionToken::generate().hash())
            .await
            .unwrap(),
        None
    );
}

pub(crate) async fn duplicate_id_or_hash_conflicts(s: Stores) {
    let user = s.user().await;
    let first = session(&user, 1_000, FAR, FAR);
    s.sessions().create_session(&first).await.unwrap();

    let mut same_id = session(&user, 1_001, FAR, FAR);
    same_id.id = first.id.clone();
    assert!(matches!(
        s.sessions().create_session(&same_id).await,
        Err(StoreError::Conflict)
    ));

    let mut same_hash = session(&user, 1_002, FAR, FAR);
    same_hash.token_hash = first.token_hash;
    assert!(matches!(
        s.sessions().create_session(&same_hash).await,
        Err(StoreError::Conflict)
    ));

    // Neither attempt changed or added anything.
    assert_eq!(
        s.sessions()
            .session_by_hash(&first.token_hash)
            .await
            .unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        s.sessions()
            .session_by_hash(&same_id.token_hash)
            .await
            .unwrap(),
        None
    );
    let listed = s
        .sessions()
        .list_user_sessions(&user, Timestamp(1_500))
        .await
        .unwrap();
    assert_eq!(listed, vec![first]);
}

pub(crate) async fn touch_records_activity(s: Stores) {
    let user = s.user().await;
    let original = session(&user, 1_000, 4_600, FAR);
    s.sessions().create_session(&original).await.unwrap();

    assert!(
        s.sessions()
            .touch_session(touch(
                &original.id,
                Timestamp(2_000),
                Timestamp(5_600),
                Some("198.51.100.7")
            ))
            .await
            .unwrap()
    );
    let touched = s
        .sessions()
        .session_by_hash(&original.token_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(touched.last_seen_at, Timestamp(2_000));
    assert_eq!(touched.idle_expires_at, Timestamp(5_600));
    assert_eq!(touched.ip.as_deref(), Some("198.51.100.7"));
    // Everything else is as it was.
    assert_eq!(touched.created_at, original.created_at);
    assert_eq!(touched.absolute_expires_at, original.absolute_expires_at);
    assert_eq!(touched.user_agent, original.user_agent);
    assert_eq!(touched.auth_method, original.auth_method);
    assert_eq!(touched.user_id, original.user_id);

    // A touch without a known address keeps the one recorded before.
    assert!(
        s.sessions()
            .touch_session(touch(
                &original.id,
                Timestamp(3_000),
                Timestamp(6_600),
                None
            ))
            .await
            .unwrap()
    );
    let touched = s
        .sessions()
        .session_by_hash(&original.token_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(touched.last_seen_at, Timestamp(3_000));
    assert_eq!(touched.idle_expires_at, Timestamp(6_600));
    assert_eq!(touched.ip.as_deref(), Some("198.51.100.7"));
}

pub(crate) async fn touch_of_unknown_session_is_false(s: Stores) {
    let user = s.user().await;
    assert!(
        !s.sessions()
            .touch_session(touch(
                &SessionId::generate(),
                Timestamp(2),
                Timestamp(3),
                None
            ))
            .await
            .unwrap()
    );

    // Nor does touching a revoked session bring it back.
    let gone = session(&user, 1_000, FAR, FAR);
    s.sessions().create_session(&gone).await.unwrap();
    s.sessions()
        .delete_session(&user, &gone.id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        !s.sessions()
            .touch_session(touch(
                &gone.id,
                Timestamp(2_000),
                Timestamp(5_000),
                Some("192.0.2.9")
            ))
            .await
            .unwrap()
    );
    assert_eq!(
        s.sessions()
            .session_by_hash(&gone.token_hash)
            .await
            .unwrap(),
        None
    );
    assert!(
        s.sessions()
            .list_user_sessions(&user, Timestamp(2_000))
            .await
            .unwrap()
            .is_empty()
    );
}

pub(crate) async fn delete_returns_the_session_only_to_its_owner(s: Stores) {
    let owner = s.user().await;
    let stranger = s.user().await;
    let mine = session(&owner, 1_000, FAR, FAR);
    s.sessions().create_session(&mine).await.unwrap();

    // Another user cannot revoke it, and learns nothing.
    assert_eq!(
        s.sessions()
            .delete_session(&stranger, &mine.id)
            .await
            .unwrap(),
        None
    );
    assert!(
        s.sessions()
            .session_by_hash(&mine.token_hash)
            .await
            .unwrap()
            .is_some()
    );

    assert_eq!(
        s.sessions().delete_session(&owner, &mine.id).await.unwrap(),
        Some(mine.clone())
    );
    assert_eq!(
        s.sessions()
            .session_by_hash(&mine.token_hash)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.sessions().delete_session(&owner, &mine.id).await.unwrap(),
        None
    );
    assert_eq!(
        s.sessions()
            .delete_session(&owner, &SessionId::generate())
            .await
            .unwrap(),
        None
    );
}

pub(crate) async fn delete_user_sessions_keeps_one(s: Stores) {
    let user = s.user().await;
    let other = s.user().await;
    let current = session(&user, 1_000, FAR, FAR);
    let second = session(&user, 1_001, FAR, FAR);
    let expired = session(&user, 1_002, 1_100, 1_200);
    let theirs = session(&other, 1_003, FAR, FAR);
    for s_ in [&current, &second, &expired, &theirs] {
        s.sessions().create_session(s_).await.unwrap();
    }

    let deleted: HashSet<SessionId> = s
        .sessions()
        .delete_user_sessions(&user, Some(&current.id))
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        deleted,
        HashSet::from([second.id.clone(), expired.id.clone()])
    );
    assert!(
        s.sessions()
            .session_by_hash(&current.token_hash)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        s.sessions()
            .session_by_hash(&second.token_hash)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.sessions()
            .session_by_hash(&expired.token_hash)
            .await
            .unwrap(),
        None
    );
    assert!(
        s.sessions()
            .session_by_hash(&theirs.token_hash)
            .await
            .unwrap()
            .is_some()
    );

    // Without a session to keep, every one goes; a second call finds nothing.
    assert_eq!(
        s.sessions()
            .delete_user_sessions(&user, None)
            .await
            .unwrap(),
        vec![current.id.clone()]
    );
    assert!(
        s.sessions()
            .delete_user_sessions(&user, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.sessions()
            .delete_user_sessions(&UserId::generate(), None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.sessions()
            .session_by_hash(&theirs.token_hash)
            .await
            .unwrap()
            .is_some()
    );
}

pub(crate) async fn list_shows_live_sessions_newest_first(s: Stores) {
    let user = s.user().await;
    let other = s.user().await;
    let now = 10_000;
    let oldest = session(&user, 1_000, FAR, FAR);
    let newest = session(&user, 3_000, FAR, FAR);
    let middle = session(&user, 2_000, now + 1, FAR);
    let idle_expired = session(&user, 2_500, now, FAR);
    let absolute_expired = session(&user, 2_600, FAR, now - 1);
    let theirs = session(&other, 2_700, FAR, FAR);
    for s_ in [
        &oldest,
        &newest,
        &middle,
        &idle_expired,
        &absolute_expired,
        &theirs,
    ] {
        s.sessions().create_session(s_).await.unwrap();
    }

    let listed = s
        .sessions()
        .list_user_sessions(&user, Timestamp(now))
        .await
        .unwrap();
    assert_eq!(listed, vec![newest, middle.clone(), oldest.clone()]);
    for listed in &listed {
        assert!(listed.is_live(Timestamp(now)));
    }

    // A touch that extends the idle deadline keeps a session listed.
    assert!(
        s.sessions()
            .touch_session(touch(
                &middle.id,
                Timestamp(now),
                Timestamp(now + 100),
                None
            ))
            .await
            .unwrap()
    );
    let later = s
        .sessions()
        .list_user_sessions(&user, Timestamp(now + 50))
        .await
        .unwrap();
    assert_eq!(later.len(), 3);

    assert!(
        s.sessions()
            .list_user_sessions(&UserId::generate(), Timestamp(now))
            .await
            .unwrap()
            .is_empty()
    );
}

pub(crate) async fn count_excludes_expired_sessions(s: Stores) {
    let now = 10_000;
    assert_eq!(
        s.sessions()
            .count_live_sessions(Timestamp(now))
            .await
            .unwrap(),
        0
    );
    let a = s.user().await;
    let b = s.user().await;
    for sess in [
        session(&a, 1_000, FAR, FAR),
        session(&a, 1_000, now + 1, FAR),
        session(&b, 1_000, FAR, now + 1),
        session(&a, 1_000, now, FAR), // idle deadline reached
        session(&b, 1_000, FAR, now), // absolute deadline reached
        session(&b, 1_000, now - 5, now - 5),
    ] {
        s.sessions().create_session(&sess).await.unwrap();
    }
    assert_eq!(
        s.sessions()
            .count_live_sessions(Timestamp(now))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        s.sessions()
            .count_live_sessions(Timestamp(now + 1))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.sessions()
            .count_live_sessions(Timestamp(0))
            .await
            .unwrap(),
        6
    );
}

pub(crate) async fn purge_removes_only_expired_sessions(s: Stores) {
    let now = 10_000;
    let user = s.user().await;
    let live = session(&user, 1_000, now + 1, FAR);
    let idle_expired = session(&user, 1_000, now, FAR);
    let absolute_expired = session(&user, 1_000, FAR, now - 10);
    for sess in [&live, &idle_expired, &absolute_expired] {
        s.sessions().create_session(sess).await.unwrap();
    }

    assert_eq!(
        s.sessions()
            .purge_expired_sessions(Timestamp(now))
            .await
            .unwrap(),
        2
    );
    assert!(
        s.sessions()
            .session_by_hash(&live.token_hash)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        s.sessions()
            .session_by_hash(&idle_expired.token_hash)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.sessions()
            .session_by_hash(&absolute_expired.token_hash)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.sessions()
            .purge_expired_sessions(Timestamp(now))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        s.sessions()
            .list_user_sessions(&user, Timestamp(now))
            .await
            .unwrap(),
        vec![live]
    );
    assert_eq!(
        s.sessions()
            .purge_expired_sessions(Timestamp(now + 1))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.sessions()
            .count_live_sessions(Timestamp(0))
            .await
            .unwrap(),
        0
    );
}

/// A touch and a revoke of one session at the same moment: whichever runs first, the session
/// is gone afterwards.
pub(crate) async fn touch_racing_delete_never_resurrects(s: Stores) {
    let user = s.user().await;
    for round in 0..50 {
        let sess = session(&user, 1_000 + round, FAR, FAR);
        s.sessions().create_session(&sess).await.unwrap();

        let store = s.sessions();
        let id = sess.id.clone();
        let touch = tokio::spawn(async move {
            store
                .touch_session(touch(
                    &id,
                    Timestamp(2_000),
                    Timestamp(9_000),
                    Some("203.0.113.5"),
                ))
                .await
        });
        let store = s.sessions();
        let (owner, id) = (user.clone(), sess.id.clone());
        let delete = tokio::spawn(async move { store.delete_session(&owner, &id).await });

        let touched = touch.await.unwrap().unwrap();
        let deleted = delete.await.unwrap().unwrap();
        assert!(
            deleted.is_some(),
            "round {round}: the revoke must find the session"
        );
        assert_eq!(
            s.sessions()
                .session_by_hash(&sess.token_hash)
                .await
                .unwrap(),
            None,
            "round {round}: session came back (touch returned {touched})"
        );
    }
    assert!(
        s.sessions()
            .list_user_sessions(&user, Timestamp(0))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.sessions()
            .count_live_sessions(Timestamp(0))
            .await
            .unwrap(),
        0
    );
}

pub(crate) async fn concurrent_creates_all_land(s: Stores) {
    let user = s.user().await;
    let creates: Vec<_> = (0..50)
        .map(|i| {
            let store = s.sessions();
            let sess = session(&user, 1_000 + i, FAR, FAR);
            tokio::spawn(async move { store.create_session(&sess).await })
        })
        .collect();
    for create in creates {
        create.await.unwrap().unwrap();
    }
    let listed = s
        .sessions()
        .list_user_sessions(&user, Timestamp(2_000))
        .await
        .unwrap();
    assert_eq!(listed.len(), 50);
    assert!(listed.windows(2).all(|w| w[0].created_at > w[1].created_at));
    assert_eq!(
        s.sessions()
            .count_live_sessions(Timestamp(2_000))
            .await
            .unwrap(),
        50
    );
}

/// A store that keeps copies of users beside the sessions (Redis): the lookup says there is
/// none and under which generation to keep one; a kept copy comes back with the session,
/// without its password hash; forgetting the user drops the copy and refuses a copy read
/// before (kept under the old generation).
pub(crate) async fn copies_of_users_follow_every_change(s: Stores) {
    use authx_core::store::UserCopy;
    use authx_core::user::PASSWORD_NOT_KEPT;

    let mut user = crate::harness::user("copied@example.com", Timestamp(1_000));
    user.password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into();
    let mut live = session(&user.id, 1_000, FAR, FAR);
    live.ip = None;
    let store = s.sessions();
    store.create_session(&live).await.unwrap();
    let found = |copy: UserCopy| Some((live.clone(), copy));

    let Some((_, UserCopy::Missing(first))) =
        store.session_and_user(&live.token_hash).await.unwrap()
    else {
        panic!("no copy yet");
    };
    store.keep_user(&user, first).await.unwrap();
    let kept = authx_core::user::User {
        password_hash: PASSWORD_NOT_KEPT.into(),
        ..user.clone()
    };
    assert_eq!(
        store.session_and_user(&live.token_hash).await.unwrap(),
        found(UserCopy::Kept(kept.clone()))
    );

    // A change: the copy goes, and one read before the change cannot come back.
    store.forget_user(&user.id).await.unwrap();
    let Some((_, UserCopy::Missing(second))) =
        store.session_and_user(&live.token_hash).await.unwrap()
    else {
        panic!("the copy was forgotten");
    };
    assert_ne!(first, second);
    store.keep_user(&user, first).await.unwrap();
    assert_eq!(
        store.session_and_user(&live.token_hash).await.unwrap(),
        found(UserCopy::Missing(second))
    );
    user.is_admin = !user.is_admin;
    store.keep_user(&user, second).await.unwrap();
    let Some((_, UserCopy::Kept(now))) = store.session_and_user(&live.token_hash).await.unwrap()
    else {
        panic!("kept under the current generation");
    };
    assert_eq!(now.is_admin, user.is_admin);

    // No session, no copy.
    assert_eq!(
        store
            .session_and_user(&SessionToken::generate().hash())
            .await
            .unwrap(),
        None
    );
}
