//! `GrantStore`: codes, refresh-token families and their tokens, consents, revoked token ids.

use authx_core::Timestamp;
use authx_core::oauth::grant::{
    AuthCode, CodeRedemption, Consent, RefreshFamily, RefreshToken, Rotation,
};
use authx_core::secret::{TokenHash, random_id};
use authx_core::session::SessionId;
use authx_core::store::StoreError;
use authx_core::user::UserId;

use crate::clients::client;
use crate::harness::{Stores, redemption};

/// Far enough ahead that nothing in these tests expires by accident.
pub(crate) const FAR: i64 = 4_000_000_000;

fn new_hash() -> TokenHash {
    TokenHash::of(random_id().as_bytes())
}

/// An unredeemed code of `user` for `client_id`, with every optional field set.
pub(crate) fn code(client_id: &str, user: &UserId, expires_at: i64) -> AuthCode {
    AuthCode {
        code_hash: new_hash(),
        client_id: client_id.to_owned(),
        user_id: user.clone(),
        session_id: SessionId::generate(),
        redirect_uri: "https://a.example.com/cb?x=1&y=2".into(),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        nonce: Some("n-0S6_WzA2Mj".into()),
        scope: "openid profile email".into(),
        resource: Some("https://api.example.com/orders".into()),
        auth_time: Timestamp(990),
        auth_methods: "password+totp".into(),
        family_id: None,
        dpop_jkt: Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs".into()),
        expires_at: Timestamp(expires_at),
    }
}

/// A live family of `user` for `client_id`, from a browser session.
pub(crate) fn family(
    id: &str,
    client_id: &str,
    user: &UserId,
    created: i64,
    expires: i64,
) -> RefreshFamily {
    RefreshFamily {
        id: id.to_owned(),
        client_id: client_id.to_owned(),
        user_id: user.clone(),
        session_id: Some(SessionId::generate()),
        scope: "openid offline_access".into(),
        resource: Some("https://api.example.com/orders".into()),
        auth_time: Timestamp(created - 10),
        auth_methods: "federated:corp+totp".into(),
        created_at: Timestamp(created),
        expires_at: Timestamp(expires),
        revoked_at: None,
        dpop_jkt: Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs".into()),
    }
}

/// An unconsumed refresh token of `family_id`.
pub(crate) fn token(family_id: &str, issued: i64, idle_expires: i64) -> RefreshToken {
    RefreshToken {
        hash: new_hash(),
        family_id: family_id.to_owned(),
        issued_at: Timestamp(issued),
        idle_expires_at: Timestamp(idle_expires),
        consumed_at: None,
    }
}

pub(crate) fn consent(user: &UserId, client_id: &str, at: i64) -> Consent {
    Consent {
        user_id: user.clone(),
        client_id: client_id.to_owned(),
        resource: None,
        scope: "openid profile".into(),
        granted_at: Timestamp(at),
    }
}

/// Registers the client `app` and returns a fresh user.
async fn setup(s: &Stores) -> UserId {
    s.clients().put_client(&client("app")).await.unwrap();
    s.user().await
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// Issue 14 item 1: the unredeemed codes of an ended session, or of a user whose sessions all
/// ended, are deleted; redeemed ones stay so a replay is still recognised.
pub(crate) async fn codes_of_ended_sessions_and_users_are_deleted(s: Stores) {
    let user = setup(&s).await;
    let other = s.user().await;
    let g = s.grants();
    let (a, b) = (SessionId::generate(), SessionId::generate());
    let of = |session: &SessionId, user: &UserId| AuthCode {
        session_id: session.clone(),
        ..code("app", user, FAR)
    };
    let (a1, a2, b1) = (of(&a, &user), of(&a, &user), of(&b, &user));
    let theirs = of(&SessionId::generate(), &other);
    for c in [&a1, &a2, &b1, &theirs] {
        g.put_code(c).await.unwrap();
    }
    // a1 was redeemed before the session ended.
    assert!(matches!(
        g.redeem_code(redemption(&a1.code_hash, "fam-a1", Timestamp(1_000)))
            .await
            .unwrap(),
        CodeRedemption::Redeemed(_)
    ));
    assert_eq!(g.delete_session_codes(&a).await.unwrap(), 1);
    assert_eq!(
        g.redeem_code(redemption(&a2.code_hash, "f", Timestamp(1_000)))
            .await
            .unwrap(),
        CodeRedemption::Unknown
    );
    assert_eq!(
        g.redeem_code(redemption(&a1.code_hash, "f", Timestamp(1_000)))
            .await
            .unwrap(),
        CodeRedemption::AlreadyRedeemed {
            family_id: Some("fam-a1".into())
        }
    );

    // Every code of the user except the kept session's, and nobody else's.
    let (b2, c1) = (of(&b, &user), of(&SessionId::generate(), &user));
    g.put_code(&b2).await.unwrap();
    g.put_code(&c1).await.unwrap();
    assert_eq!(g.delete_user_codes(&user, Some(&b)).await.unwrap(), 1);
    assert_eq!(
        g.redeem_code(redemption(&c1.code_hash, "f", Timestamp(1_000)))
            .await
            .unwrap(),
        CodeRedemption::Unknown
    );
    assert_eq!(g.delete_user_codes(&user, None).await.unwrap(), 2);
    for gone in [&b1, &b2] {
        assert_eq!(
            g.redeem_code(redemption(&gone.code_hash, "f", Timestamp(1_000)))
                .await
                .unwrap(),
            CodeRedemption::Unknown
        );
    }
    assert!(matches!(
        g.redeem_code(redemption(&theirs.code_hash, "f", Timestamp(1_000)))
            .await
            .unwrap(),
        CodeRedemption::Redeemed(_)
    ));
}

pub(crate) async fn codes_round_trip_and_redeem_once(s: Stores) {
    let user = setup(&s).await;
    let g = s.grants();
    let cd = code("app", &user, 1_060);
    g.put_code(&cd).await.unwrap();

    assert_eq!(
        g.redeem_code(redemption(&cd.code_hash, "fam-1", Timestamp(1_000)))
            .await
            .unwrap(),
        CodeRedemption::Redeemed(Box::new(AuthCode {
            family_id: Some("fam-1".into()),
            ..cd.clone()
        }))
    );
    // Every later presentation names the family of the first one, even after expiry.
    for (fid, at) in [("fam-2", 1_000), ("fam-3", 1_059), ("fam-4", 5_000)] {
        assert_eq!(
            g.redeem_code(redemption(&cd.code_hash, fid, Timestamp(at)))
                .await
                .unwrap(),
            CodeRedemption::AlreadyRedeemed {
                family_id: Some("fam-1".into())
            }
        );
    }

    // Optional fields stay empty.
    let bare = AuthCode {
        nonce: None,
        resource: None,
        dpop_jkt: None,
        ..code("app", &user, 1_060)
    };
    g.put_code(&bare).await.unwrap();
    assert_eq!(
        g.redeem_code(redemption(&bare.code_hash, "fam-5", Timestamp(1_000)))
            .await
            .unwrap(),
        CodeRedemption::Redeemed(Box::new(AuthCode {
            family_id: Some("fam-5".into()),
            ..bare.clone()
        }))
    );

    // A code hash is stored once.
    let same = AuthCode {
        scope: "openid admin".into(),
        ..bare.clone()
    };
    assert!(matches!(g.put_code(&same).await, Err(StoreError::Conflict)));
}

pub(crate) async fn expired_or_unknown_codes_are_unknown(s: Stores) {
    let user = setup(&s).await;
    let g = s.grants();
    assert_eq!(
        g.redeem_code(redemption(&new_hash(), "fam-1", Timestamp(1_000)))
            .await
            .unwrap(),
        CodeRedemption::Unknown
    );

    let cd = code("app", &user, 1_060);
    g.put_code(&cd).await.unwrap();
    for at in [1_060, 1_061, 9_999] {
        assert_eq!(
            g.redeem_code(redemption(&cd.code_hash, "fam-1", Timestamp(at)))
                .await
                .unwrap(),
            CodeRedemption::Unknown,
            "at {at}"
        );
    }
    // Refusing an expired code changed nothing: it was not marked redeemed.
    assert_eq!(
        g.redeem_code(redemption(&cd.code_hash, "fam-2", Timestamp(1_059)))
            .await
            .unwrap(),
        CodeRedemption::Redeemed(Box::new(AuthCode {
            family_id: Some("fam-2".into()),
            ..cd
        }))
    );
}

pub(crate) async fn concurrent_redemptions_one_wins(s: Stores) {
    let user = setup(&s).await;
    let g = s.grants();
    let cd = code("app", &user, FAR);
    g.put_code(&cd).await.unwrap();
    let hash = cd.code_hash;

    let attempts: Vec<_> = (0..20)
        .map(|i| {
            let g = g.clone();
            tokio::spawn(async move {
                let fid = format!("fam-{i}");
                let outcome = g
                    .redeem_code(redemption(&hash, &fid, Timestamp(1_000)))
                    .await
                    .unwrap();
                (fid, outcome)
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for a in attempts {
        outcomes.push(a.await.unwrap());
    }

    let winners: Vec<&String> = outcomes
        .iter()
        .filter_map(|(fid, o)| match o {
            CodeRedemption::Redeemed(c) => {
                assert_eq!(c.family_id.as_ref(), Some(fid));
                Some(fid)
            }
            _ => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let winner = winners[0].clone();
    for (_, o) in &outcomes {
        if !matches!(o, CodeRedemption::Redeemed(_)) {
            assert_eq!(
                o,
                &CodeRedemption::AlreadyRedeemed {
                    family_id: Some(winner.clone())
                }
            );
        }
    }
}

pub(crate) async fn families_and_tokens_round_trip(s: Stores) {
    let user = setup(&s).await;
    let g = s.grants();
    let fam = family("fam-a", "app", &user, 1_000, FAR);
    let first = token("fam-a", 1_000, 5_000);
    g.create_family(&fam, Some(&first)).await.unwrap();
    assert_eq!(g.family("fam-a").await.unwrap(), Some(fam.clone()));
    assert_eq!(
        g.refresh_token(&first.hash).await.unwrap(),
        Some((first.clone(), fam.clone()))
    );

    // Without a first token, a session or a resource.
    let bare = RefreshFamily {
        session_id: None,
        resource: None,
        dpop_jkt: None,
        ..family("fam-b", "app", &user, 2_000, FAR)
    };
    g.create_family(&bare, None).await.unwrap();
    assert_eq!(g.family("fam-b").await.unwrap(), Some(bare));

    assert_eq!(g.family("missing").await.unwrap(), None);
    assert_eq!(g.refresh_token(&new_hash()).await.unwrap(), None);
}

pub(crate) async fn duplicate_family_or_token_conflicts_atomically(s: Stores) {
    let user = setup(&s).await;
    let g = s.grants();
    let fam = family("fam-a", "app", &user, 1_000, FAR);
    let first = token("fam-a", 1_000, 5_000);
    g.create_family(&fam, Some(&first)).await.unwrap();

    // A taken family id: neither the family nor its token is written.
    let again = RefreshFamily {
        scope: "openid admin".into(),
        ..family("fam-a", "app", &user, 1_500, FAR)
    };
    let second = token("fam-a", 1_500, 5_500);
    assert!(matches!(
        g.create_family(&again, Some(&second)).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(g.family("fam-a").await.unwrap(), Some(fam.clone()));
    assert_eq!(g.refresh_token(&second.hash).await.unwrap(), None);

    // A taken token hash: the new family is not written either.
    let other = family("fam-b", "app", &user, 1_500, FAR);
    let reused = RefreshToken {
        family_id: "fam-b".into(),
        ..first.clone()
    };
    assert!(matches!(
        g.create_family(&other, Some(&reused)).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(g.family("fam-b").await.unwrap(), None);
    assert_eq!(
        g.refresh_token(&first.hash).await.unwrap(),
        Some((first, fam))
    );
}

pub(crate) async fn rotation_consumes_a_token_once(s: Stores) {
    let user = setup(&s).await;
    let g = s.grants();
    let fam = family("fam-a", "app", &user, 1_000, FAR);
    let t0 = token("fam-a", 1_000, 5_000);
    g.create_family(&fam, Some(&t0)).await.unwrap();

    let t1 = token("fam-a", 2_000, 6_000);
    assert!(
        g.rotate_refresh(Rotation {
            old: &t0.hash,
            new: &t1,
            now: Timestamp(2_000)
        })
        .await
        .unwrap()
    );
    let consumed = RefreshToken {
        consumed_at: Some(Timestamp(2_000)),
        ..t0.clone()
    };
    assert_eq!(
        g.refresh_token(&t0.hash).await.unwrap(),
        Some((consumed.clone(), fam.clone()))
    );
    assert_eq!(
        g.refresh_token(&t1.hash).await.unwrap(),
        Some((t1.clone(), fam.clone()))
    );

    // A consumed token cannot be rotated again, and nothing is written.
    let t2 = token("fam-a", 3_000, 7_000);
    assert!(
        !g.rotate_refresh(Rotation {
            old: &t0.hash,
            new: &t2,
            now: Timestamp(3_000)
        })
        .await
        .unwrap()
    );
    assert_eq!(g.refresh_token(&t2.hash).await.unwrap(), None);
    assert_eq!(
        g.refresh_token(&t0.hash).await.unwrap(),
        Some((consumed, fam.clone()))
    );

    // Neither can an unknown token.
    assert!(
        !g.rotate_refresh(Rotation {
            old: &new_hash(),
            new: &t2,
            now: Timestamp(3_000)
        })
        .await
        .unwrap()
    );
    assert_eq!(g.refresh_token(&t2.hash).await.unwrap(), None);

    // Nor can a successor be grafted onto another family.
    let other = family("fam-b", "app", &user, 1_000, FAR);
    g.create_family(&other, None).await.unwrap();
    let graft = token("fam-b", 3_000, 7_000);
    assert!(
        !g.rotate_refresh(Rotation {
            old: &t1.hash,
            new: &graft,
            now: Timestamp(3_000)
        })
        .await
        .unwrap()
    );
    assert_eq!(g.refresh_token(&graft.hash).await.unwrap(), None);
    assert_eq!(
        g.refresh_token(&t1.hash).await.unwrap(),
        Some((t1.clone(), fam.clone()))
    );

    // A successor whose hash is taken fails and leaves the old token usable.
    let clash = RefreshToken {
        hash: t0.hash,
        ..token("fam-a", 3_000, 7_000)
    };
    assert!(matches!(
        g.rotate_refresh(Rotation {
            old: &t1.hash,
            new: &clash,
            now: Timestamp(3_000)
        })
        .await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        g.refresh_token(&t1.hash).await.unwrap(),
        Some((t1.clone(), fam.clone()))
    );

    assert!(
        g.rotate_refresh(Rotation {
            old: &t1.hash,
            new: &t2,
            now: Timestamp(3_000)
        })
        .await
        .unwrap()
    );
    assert_eq!(g.refresh_token(&t2.hash).await.unwrap(), Some((t2, fam)));
}

pub(crate) async fn concurrent_rotations_one_wins(s: Stores) {
    let user = setup(&s).await;
    let g = s.grants();
    let fam = family("fam-a", "app", &user, 1_000, FAR);
    let t0 = token("fam-a", 1_000, FAR);
    g.create_family(&fam, Some(&t0)).await.unwrap();
    let old = t0.hash;

    let children: Vec<RefreshToken> = (0..50).map(|_| token("fam-a", 2_000, FAR)).collect();
    let attempts: Vec<_> = children
        .iter()
        .cloned()
        .map(|child| {
            let g = g.clone();
            tokio::spawn(async move {
                g.rotate_refresh(Rotation {
                    old: &old,
                    new: &child,
                    now: Timestamp(2_000),
                })
                .await
            })
        })
        .collect();
    let mut won = Vec::new();
    for (i, a) in attempts.into_iter().enumerate() {
        // A busy database must not surface as an error.
        if a.await.unwrap().unwrap() {
            won.push(i);
        }
    }
    assert_eq!(won.len(), 1, "winners: {won:?}");

    let mut stored = Vec::new();
    for (i, child) in children.iter().enumerate() {
        if g.refresh_token(&child.hash).await.unwrap().is_some() {
            stored.push(i);
        }
    }
    assert_eq!(stored, won);
    let (t, _) = g.refresh_token(&old).await.unwrap().unwrap();
    assert_eq!(t.consumed_at, Some(Timestamp(2_000)));
}

pub(crate) async fn concurrent_rotations_of_distinct_tokens_all_land(s: Stores) {
    let user = setup(&s).await;
    let g = s.grants();
    // More rotations than a SQLite group commit takes at once.
    let mut first = Vec::new();
    for i in 0..300 {
        let fam = family(&format!("fam-{i}"), "app", &user, 1_000, FAR);
        let t0 = token(&fam.id, 1_000, FAR);
        g.create_family(&fam, Some(&t0)).await.unwrap();
        first.push(t0);
    }
    let second: Vec<_> = first
        .iter()
        .map(|t| token(&t.family_id, 2_000, FAR))
        .collect();
    let third: Vec<_> = first
        .iter()
        .map(|t| token(&t.family_id, 3_000, FAR))
        .collect();

    let rotate_all = |pairs: Vec<(TokenHash, RefreshToken)>, at: i64| {
        let tasks: Vec<_> = pairs
            .into_iter()
            .map(|(old, new)| {
                let g = g.clone();
                tokio::spawn(async move {
                    g.rotate_refresh(Rotation {
                        old: &old,
                        new: &new,
                        now: Timestamp(at),
                    })
                    .await
                })
            })
            .collect();
        async move {
            let mut won = Vec::new();
            for t in tasks {
                won.push(t.await.unwrap().unwrap());
            }
            won
        }
    };

    let won = rotate_all(
        first.iter().map(|t| t.hash).zip(second.clone()).collect(),
        2_000,
    )
    .await;
    assert!(won.iter().all(|w| *w), "{won:?}");
    for (old, new) in first.iter().zip(&second) {
        let (t, _) = g.refresh_token(&old.hash).await.unwrap().unwrap();
        assert_eq!(t.consumed_at, Some(Timestamp(2_000)));
        let (t, f) = g.refresh_token(&new.hash).await.unwrap().unwrap();
        assert_eq!((t, f.id), (new.clone(), old.family_id.clone()));
    }

    // The successors rotate in turn, while every first token is presented again, interleaved:
    // each successor wins, each replay loses, and the replays write nothing.
    let replays: Vec<_> = first
        .iter()
        .map(|t| token(&t.family_id, 3_000, FAR))
        .collect();
    let mut pairs = Vec::new();
    for i in 0..first.len() {
        pairs.push((second[i].hash, third[i].clone()));
        pairs.push((first[i].hash, replays[i].clone()));
    }
    let won = rotate_all(pairs, 3_000).await;
    for (i, w) in won.iter().enumerate() {
        assert_eq!(*w, i % 2 == 0, "rotation {i}");
    }
    for i in 0..first.len() {
        let (t, _) = g.refresh_token(&second[i].hash).await.unwrap().unwrap();
        assert_eq!(t.consumed_at, Some(Timestamp(3_000)));
        assert_eq!(
            g.refresh_token(&third[i].hash)
                .await
                .unwrap()
                .map(|(t, _)| t),
            Some(third[i].clone())
        );
        assert_eq!(g.refresh_token(&replays[i].hash).await.unwrap(), None);
        let (t, _) = g.refresh_token(&first[i].hash).await.unwrap().unwrap();
        assert_eq!(t.consumed_at, Some(Timestamp(2_000)));
    }
}

pub(crate) async fn a_taken_successor_fails_only_its_own_rotation(s: Stores) {
    let user = setup(&s).await;
    let g = s.grants();
    let mut olds = Vec::new();
    for i in 0..40 {
        let fam = family(&format!("fam-{i}"), "app", &user, 1_000, FAR);
        let t0 = token(&fam.id, 1_000, FAR);
        g.create_family(&fam, Some(&t0)).await.unwrap();
        olds.push(t0);
    }
    let mut news: Vec<_> = olds
        .iter()
        .map(|t| token(&t.family_id, 2_000, FAR))
        .collect();
    // The successor of token 20 would take the hash of token 7, which stays a live token.
    news[20].hash = olds[7].hash;

    let tasks: Vec<_> = olds
        .iter()
        .zip(news.clone())
        .map(|(old, new)| {
            let (g, old) = (g.clone(), old.hash);
            tokio::spawn(async move {
                g.rotate_refresh(Rotation {
                    old: &old,
                    new: &new,
                    now: Timestamp(2_000),
                })
                .await
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let outcome = t.await.unwrap();
        if i == 20 {
            assert!(matches!(outcome, Err(StoreError::Conflict)), "{outcome:?}");
        } else {
            assert!(outcome.unwrap(), "rotation {i}");
        }
    }
    for (i, (old, new)) in olds.iter().zip(&news).enumerate() {
        let (t, f) = g.refresh_token(&old.hash).await.unwrap().unwrap();
        // Token 7 keeps its own row (consumed by its own rotation); token 20 is untouched.
        assert_eq!(f.id, old.family_id);
        let expected = if i == 20 {
            None
        } else {
            Some(Timestamp(2_000))
        };
        assert_eq!(t.consumed_at, expected, "token {i}");
        if i != 20 {
            let (t, _) = g.refresh_token(&new.hash).await.unwrap().unwrap();
            assert_eq!(t, new.clone());
        }
    }

    // Token 20 is still good for a proper successor.
    let next = token(&olds[20].family_id, 3_000, FAR);
    assert!(
        g.rotate_refresh(Rotation {
            old: &olds[20].hash,
            new: &next,
            now: Timestamp(3_000)
        })
        .await
        .unwrap()
    );
}

pub(crate) async fn revoke_family_keeps_the_first_revocation(s: Stores) {
    let user = setup(&s).await;
    let g = s.grants();
    let fam = family("fam-a", "app", &user, 1_000, FAR);
    let t0 = token("fam-a", 1_000, FAR);
    g.create_family(&fam, Some(&t0)).await.unwrap();

    assert!(g.revoke_family("fam-a", Timestamp(2_000)).await.unwrap());
    assert!(!g.revoke_family("fam-a", Timestamp(3_000)).await.unwrap());
    let revoked = RefreshFamily {
        revoked_at: Some(Timestamp(2_000)),
        ..fam
    };
    assert_eq!(g.family("fam-a").await.unwrap(), Some(revoked.clone()));
    // Its tokens are still found, with the family saying it is revoked.
    assert_eq!(
        g.refresh_token(&t0.hash).await.unwrap(),
        Some((t0, revoked))
    );

    assert!(!g.revoke_family("missing", Timestamp(2_000)).await.unwrap());

    // A family past its end was not live.
    let ended = family("fam-b", "app", &user, 1_000, 2_000);
    g.create_family(&ended, None).await.unwrap();
    assert!(!g.revoke_family("fam-b", Timestamp(2_000)).await.unwrap());
    assert!(
        g.family("fam-b")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none_or(|t| t == Timestamp(2_000))
    );
}

pub(crate) async fn revoke_user_and_session_families(s: Stores) {
    let user = setup(&s).await;
    let other_user = s.user().await;
    let g = s.grants();
    let s1 = SessionId::generate();
    let s2 = SessionId::generate();
    let with_session =
        |id: &str, user: &UserId, session: Option<&SessionId>, expires: i64| RefreshFamily {
            session_id: session.cloned(),
            ..family(id, "app", user, 1_000, expires)
        };
    let families = [
        with_session("f1", &user, Some(&s1), FAR),
        with_session("f2", &user, Some(&s2), FAR),
        with_session("f3", &user, None, FAR),
        with_session("f4", &user, Some(&s1), FAR),
        with_session("f5", &user, Some(&s1), 1_800),
        with_session("f6", &other_user, Some(&SessionId::generate()), FAR),
    ];
    for f in &families {
        g.create_family(f, Some(&token(&f.id, 1_000, FAR)))
            .await
            .unwrap();
    }
    assert!(g.revoke_family("f4", Timestamp(1_500)).await.unwrap());

    // Only the live families of the session: not the revoked one, not the ended one.
    assert_eq!(
        g.revoke_session_families(&s1, Timestamp(2_000))
            .await
            .unwrap(),
        vec!["f1".to_owned()]
    );
    assert_eq!(
        g.revoke_session_families(&s1, Timestamp(2_100))
            .await
            .unwrap(),
        Vec::<String>::new()
    );
    let revoked_at = |id: &'static str| {
        let g = g.clone();
        async move { g.family(id).await.unwrap().unwrap().revoked_at }
    };
    assert_eq!(revoked_at("f1").await, Some(Timestamp(2_000)));
    assert_eq!(revoked_at("f4").await, Some(Timestamp(1_500)));
    assert_eq!(revoked_at("f2").await, None);

    assert_eq!(
        sorted(
            g.revoke_user_families(&user, Timestamp(3_000))
                .await
                .unwrap()
        ),
        vec!["f2".to_owned(), "f3".to_owned()]
    );
    assert_eq!(
        g.revoke_user_families(&user, Timestamp(3_100))
            .await
            .unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(revoked_at("f1").await, Some(Timestamp(2_000)));
    assert_eq!(revoked_at("f2").await, Some(Timestamp(3_000)));
    assert_eq!(revoked_at("f3").await, Some(Timestamp(3_000)));
    assert_eq!(revoked_at("f4").await, Some(Timestamp(1_500)));
    assert_eq!(
        g.list_user_families(&user, Timestamp(1_000)).await.unwrap(),
        vec![]
    );

    // Another user's family is untouched.
    assert_eq!(revoked_at("f6").await, None);
    assert_eq!(
        g.list_user_families(&other_user, Timestamp(3_000))
            .await
            .unwrap(),
        vec![families[5].clone()]
    );
    assert_eq!(
        g.revoke_user_families(&UserId::generate(), Timestamp(3_000))
            .await
            .unwrap(),
        Vec::<String>::new()
    );
}

pub(crate) async fn list_user_families_live_newest_first(s: Stores) {
    let user = setup(&s).await;
    let other_user = s.user().await;
    let g = s.grants();
    let a = family("fa", "app", &user, 1_000, FAR);
    let b = family("fb", "app", &user, 3_000, FAR);
    let c = family("fc", "app", &user, 2_000, FAR);
    let revoked = family("fr", "app", &user, 4_000, FAR);
    let ended = family("fe", "app", &user, 500, 2_500);
    let others = family("fo", "app", &other_user, 5_000, FAR);
    for f in [&a, &b, &c, &revoked, &ended, &others] {
        g.create_family(f, None).await.unwrap();
    }
    assert!(g.revoke_family("fr", Timestamp(2_400)).await.unwrap());

    assert_eq!(
        g.list_user_families(&user, Timestamp(2_499)).await.unwrap(),
        vec![b.clone(), c.clone(), a.clone(), ended]
    );
    // A family stops being live at its end.
    assert_eq!(
        g.list_user_families(&user, Timestamp(2_500)).await.unwrap(),
        vec![b, c, a]
    );
    assert_eq!(
        g.list_user_families(&user, Timestamp(FAR)).await.unwrap(),
        vec![]
    );
    assert_eq!(
        g.list_user_families(&UserId::generate(), Timestamp(0))
            .await
            .unwrap(),
        vec![]
    );
    // Counted for every user alike: the revoked one never, the ended one until its end.
    assert_eq!(g.count_live_families(Timestamp(2_499)).await.unwrap(), 5);
    assert_eq!(g.count_live_families(Timestamp(2_500)).await.unwrap(), 4);
    assert_eq!(g.count_live_families(Timestamp(FAR)).await.unwrap(), 0);
}

pub(crate) async fn consents_upsert_list_and_delete(s: Stores) {
    let user = setup(&s).await;
    let other_user = s.user().await;
    s.clients().put_client(&client("beta")).await.unwrap();
    let g = s.grants();

    assert_eq!(g.consent(&user, "app", None).await.unwrap(), None);
    let first = consent(&user, "app", 1_000);
    g.put_consent(&first).await.unwrap();
    assert_eq!(g.consent(&user, "app", None).await.unwrap(), Some(first));

    // Recording again replaces.
    let wider = Consent {
        scope: "openid profile email offline_access".into(),
        ..consent(&user, "app", 2_000)
    };
    g.put_consent(&wider).await.unwrap();
    assert_eq!(
        g.consent(&user, "app", None).await.unwrap(),
        Some(wider.clone())
    );

    let beta = consent(&user, "beta", 1_500);
    g.put_consent(&beta).await.unwrap();
    let theirs = consent(&other_user, "app", 1_700);
    g.put_consent(&theirs).await.unwrap();
    assert_eq!(
        g.list_consents(&user).await.unwrap(),
        vec![wider.clone(), beta.clone()]
    );
    assert_eq!(
        g.list_consents(&other_user).await.unwrap(),
        vec![theirs.clone()]
    );
    assert_eq!(g.consent(&user, "missing", None).await.unwrap(), None);

    // A consent for an API is kept apart from the one without, and from another API's.
    let api = Consent {
        resource: Some("https://api.example.com".into()),
        scope: "read".into(),
        ..consent(&user, "app", 2_100)
    };
    g.put_consent(&api).await.unwrap();
    assert_eq!(
        g.consent(&user, "app", Some("https://api.example.com"))
            .await
            .unwrap(),
        Some(api.clone())
    );
    assert_eq!(
        g.consent(&user, "app", Some("https://other.example.com"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        g.consent(&user, "app", None).await.unwrap(),
        Some(wider.clone())
    );
    assert_eq!(
        g.list_consents(&user).await.unwrap(),
        vec![wider.clone(), api, beta.clone()]
    );

    // Withdrawing a client's consent withdraws it for every API.
    assert!(g.delete_consent(&user, "app").await.unwrap());
    assert!(!g.delete_consent(&user, "app").await.unwrap());
    assert_eq!(
        g.consent(&user, "app", Some("https://api.example.com"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(g.consent(&user, "app", None).await.unwrap(), None);
    assert_eq!(g.list_consents(&user).await.unwrap(), vec![beta]);
    assert_eq!(
        g.consent(&other_user, "app", None).await.unwrap(),
        Some(theirs)
    );
}

pub(crate) async fn revoked_jtis_are_remembered_until_expiry(s: Stores) {
    let g = s.grants();
    assert!(!g.is_jti_revoked("jti-1").await.unwrap());
    g.revoke_jti("jti-1", Timestamp(2_000)).await.unwrap();
    assert!(g.is_jti_revoked("jti-1").await.unwrap());
    assert!(!g.is_jti_revoked("JTI-1").await.unwrap());
    // Revoking again with an earlier expiry does not shorten the memory.
    g.revoke_jti("jti-1", Timestamp(1_500)).await.unwrap();
    // ... and a later one extends it.
    g.revoke_jti("jti-2", Timestamp(1_000)).await.unwrap();
    g.revoke_jti("jti-2", Timestamp(3_000)).await.unwrap();

    assert_eq!(g.purge_grants(Timestamp(1_999)).await.unwrap(), 0);
    assert!(g.is_jti_revoked("jti-1").await.unwrap());
    assert!(g.is_jti_revoked("jti-2").await.unwrap());
    assert_eq!(g.purge_grants(Timestamp(2_000)).await.unwrap(), 1);
    assert!(!g.is_jti_revoked("jti-1").await.unwrap());
    assert!(g.is_jti_revoked("jti-2").await.unwrap());
    assert_eq!(g.purge_grants(Timestamp(3_000)).await.unwrap(), 1);
    assert!(!g.is_jti_revoked("jti-2").await.unwrap());
}

pub(crate) async fn purge_removes_only_dead_grants(s: Stores) {
    let user = setup(&s).await;
    let g = s.grants();
    let now = Timestamp(2_000);
    assert_eq!(g.purge_grants(now).await.unwrap(), 0);

    // Codes: expired unredeemed and expired redeemed go; a redeemed one stays until it
    // expires, so that a replay is still recognised.
    let expired = code("app", &user, 1_500);
    let expired_redeemed = code("app", &user, 2_000);
    let redeemed = code("app", &user, 2_060);
    let live = code("app", &user, 2_100);
    for c in [&expired, &expired_redeemed, &redeemed, &live] {
        g.put_code(c).await.unwrap();
    }
    for (c, fid) in [(&expired_redeemed, "x1"), (&redeemed, "x2")] {
        assert!(matches!(
            g.redeem_code(redemption(&c.code_hash, fid, Timestamp(1_000)))
                .await
                .unwrap(),
            CodeRedemption::Redeemed(_)
        ));
    }

    // A family at its end goes with both of its tokens.
    let ended = family("ended", "app", &user, 1_000, 2_000);
    let e0 = token("ended", 1_000, FAR);
    let e1 = token("ended", 1_100, FAR);
    g.create_family(&ended, Some(&e0)).await.unwrap();
    assert!(
        g.rotate_refresh(Rotation {
            old: &e0.hash,
            new: &e1,
            now: Timestamp(1_100)
        })
        .await
        .unwrap()
    );

    // In a live family, only consumed tokens past their idle expiry go.
    let fam = family("live", "app", &user, 1_000, FAR);
    let consumed_idle = token("live", 1_000, 1_900);
    let consumed_fresh = token("live", 1_100, 2_500);
    let unconsumed_idle = token("live", 1_200, 1_900);
    g.create_family(&fam, Some(&consumed_idle)).await.unwrap();
    assert!(
        g.rotate_refresh(Rotation {
            old: &consumed_idle.hash,
            new: &consumed_fresh,
            now: Timestamp(1_100)
        })
        .await
        .unwrap()
    );
    assert!(
        g.rotate_refresh(Rotation {
            old: &consumed_fresh.hash,
            new: &unconsumed_idle,
            now: Timestamp(1_200)
        })
        .await
        .unwrap()
    );

    // A revoked family stays until its end.
    let revoked = family("revoked", "app", &user, 1_000, 2_001);
    let r0 = token("revoked", 1_000, 1_500);
    g.create_family(&revoked, Some(&r0)).await.unwrap();
    assert!(g.revoke_family("revoked", Timestamp(1_200)).await.unwrap());

    g.revoke_jti("old", Timestamp(1_999)).await.unwrap();
    g.revoke_jti("fresh", Timestamp(2_001)).await.unwrap();

    // 2 codes + 1 family with 2 tokens + 1 consumed token + 1 jti.
    assert_eq!(g.purge_grants(now).await.unwrap(), 7);
    assert_eq!(g.purge_grants(now).await.unwrap(), 0);

    for c in [&expired, &expired_redeemed] {
        assert_eq!(
            g.redeem_code(redemption(&c.code_hash, "y", Timestamp(1_000)))
                .await
                .unwrap(),
            CodeRedemption::Unknown
        );
    }
    assert_eq!(
        g.redeem_code(redemption(&redeemed.code_hash, "y", now))
            .await
            .unwrap(),
        CodeRedemption::AlreadyRedeemed {
            family_id: Some("x2".into())
        }
    );
    assert!(matches!(
        g.redeem_code(redemption(&live.code_hash, "y", now))
            .await
            .unwrap(),
        CodeRedemption::Redeemed(_)
    ));

    assert_eq!(g.family("ended").await.unwrap(), None);
    assert_eq!(g.refresh_token(&e0.hash).await.unwrap(), None);
    assert_eq!(g.refresh_token(&e1.hash).await.unwrap(), None);

    assert_eq!(g.refresh_token(&consumed_idle.hash).await.unwrap(), None);
    assert!(
        g.refresh_token(&consumed_fresh.hash)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        g.refresh_token(&unconsumed_idle.hash)
            .await
            .unwrap()
            .is_some()
    );

    assert!(g.family("revoked").await.unwrap().is_some());
    assert!(g.refresh_token(&r0.hash).await.unwrap().is_some());

    assert!(!g.is_jti_revoked("old").await.unwrap());
    assert!(g.is_jti_revoked("fresh").await.unwrap());

    // Everything left is dead a while later: 2 codes, 2 families with 3 tokens, 1 jti.
    assert_eq!(g.purge_grants(Timestamp(FAR)).await.unwrap(), 8);
}

pub(crate) async fn concurrent_revocations_report_each_family_once(s: Stores) {
    let user = setup(&s).await;
    let g = s.grants();
    let session = SessionId::generate();
    let mut ids = Vec::new();
    for i in 0..6 {
        let f = RefreshFamily {
            session_id: (i % 2 == 0).then(|| session.clone()),
            ..family(&format!("f{i}"), "app", &user, 1_000 + i, FAR)
        };
        g.create_family(&f, Some(&token(&f.id, 1_000, FAR)))
            .await
            .unwrap();
        ids.push(f.id);
    }

    // Several instances revoking at once, by family, by session and by user: every family is
    // reported revoked exactly once, so its revocation is announced once.
    let attempts: Vec<_> = (0..24_i64)
        .map(|i| {
            let g = g.clone();
            let user = user.clone();
            let session = session.clone();
            tokio::spawn(async move {
                let at = Timestamp(2_000 + i);
                match i % 3 {
                    0 => {
                        let id = format!("f{}", (i / 3) % 6);
                        if g.revoke_family(&id, at).await.unwrap() {
                            vec![id]
                        } else {
                            vec![]
                        }
                    }
                    1 => g.revoke_session_families(&session, at).await.unwrap(),
                    _ => g.revoke_user_families(&user, at).await.unwrap(),
                }
            })
        })
        .collect();
    let mut reported = Vec::new();
    for a in attempts {
        reported.extend(a.await.unwrap());
    }
    assert_eq!(sorted(reported), ids);
    assert_eq!(
        g.list_user_families(&user, Timestamp(1_000)).await.unwrap(),
        vec![]
    );
}

/// Deletes a user with a connection of its own: the stores have no such call.
pub(crate) async fn delete_user_row(url: &str, user: &UserId) {
    const SQL: &str = "DELETE FROM users WHERE id = $1";
    match authx_store::BackendKind::from_url(url).unwrap() {
        authx_store::BackendKind::Sqlite => {
            let pool = sqlx::SqlitePool::connect(url).await.unwrap();
            sqlx::query(SQL).bind(&user.0).execute(&pool).await.unwrap();
            pool.close().await;
        }
        authx_store::BackendKind::Postgres => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query(SQL).bind(&user.0).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
}

pub(crate) async fn deleting_a_user_removes_their_grants(s: Stores) {
    let doomed = setup(&s).await;
    let kept = s.user().await;
    let g = s.grants();
    let mut issued = Vec::new();
    for user in [&doomed, &kept] {
        let cd = code("app", user, FAR);
        g.put_code(&cd).await.unwrap();
        let fam = family(&format!("fam-{}", user.0), "app", user, 1_000, FAR);
        let tok = token(&fam.id, 1_000, FAR);
        g.create_family(&fam, Some(&tok)).await.unwrap();
        g.put_consent(&consent(user, "app", 1_000)).await.unwrap();
        issued.push((cd, fam, tok));
    }

    delete_user_row(s.url(), &doomed).await;

    let (cd, fam, tok) = &issued[0];
    assert_eq!(
        g.redeem_code(redemption(&cd.code_hash, "f", Timestamp(1_000)))
            .await
            .unwrap(),
        CodeRedemption::Unknown
    );
    assert_eq!(g.family(&fam.id).await.unwrap(), None);
    assert_eq!(g.refresh_token(&tok.hash).await.unwrap(), None);
    assert_eq!(g.list_consents(&doomed).await.unwrap(), vec![]);

    let (cd, fam, tok) = &issued[1];
    assert!(matches!(
        g.redeem_code(redemption(&cd.code_hash, "f", Timestamp(1_000)))
            .await
            .unwrap(),
        CodeRedemption::Redeemed(_)
    ));
    assert_eq!(
        g.refresh_token(&tok.hash).await.unwrap(),
        Some((tok.clone(), fam.clone()))
    );
    assert_eq!(
        g.list_consents(&kept).await.unwrap(),
        vec![consent(&kept, "app", 1_000)]
    );
}
