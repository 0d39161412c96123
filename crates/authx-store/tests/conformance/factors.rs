//! `FactorStore`: second factors (pending, confirmed, one accepted TOTP step at a time) and
//! single-use recovery codes.

use std::sync::Arc;

use authx_core::Timestamp;
use authx_core::mfa::{Factor, FactorId, FactorKind, FactorStore, StepUse};
use authx_core::secret::TokenHash;
use authx_core::store::StoreError;
use authx_core::user::UserId;
use authx_store::{ConnectOptions, connect};

use crate::harness::Stores;

mod sqlite {
    instantiate!(crate::harness::sqlite;
        factors::factors_round_trip_and_list_oldest_first,
        factors::a_pending_factor_is_confirmed_once_before_it_lapses,
        factors::concurrent_confirmations_one_wins,
        factors::a_step_is_accepted_only_after_the_last_one,
        factors::concurrent_uses_of_one_step_one_wins,
        factors::a_pending_factor_accepts_no_step,
        factors::factors_of_another_user_are_out_of_reach,
        factors::rename_and_delete,
        factors::lapsed_enrolments_are_purged,
        factors::recovery_codes_are_replaced_as_a_set_and_used_once,
        factors::concurrent_uses_of_one_recovery_code_one_wins,
        factors::deleting_all_of_a_users_factors_keeps_others,
        factors::deleting_a_user_removes_their_factors_and_codes,
    );
}

mod postgres {
    instantiate!(crate::harness::postgres;
        factors::factors_round_trip_and_list_oldest_first,
        factors::a_pending_factor_is_confirmed_once_before_it_lapses,
        factors::concurrent_confirmations_one_wins,
        factors::a_step_is_accepted_only_after_the_last_one,
        factors::concurrent_uses_of_one_step_one_wins,
        factors::a_pending_factor_accepts_no_step,
        factors::factors_of_another_user_are_out_of_reach,
        factors::rename_and_delete,
        factors::lapsed_enrolments_are_purged,
        factors::recovery_codes_are_replaced_as_a_set_and_used_once,
        factors::concurrent_uses_of_one_recovery_code_one_wins,
        factors::deleting_all_of_a_users_factors_keeps_others,
        factors::deleting_a_user_removes_their_factors_and_codes,
    );
}

/// The factor store of the backend under test, on the same database.
async fn store(s: &Stores) -> Arc<dyn FactorStore> {
    connect(s.url(), &ConnectOptions::default())
        .await
        .unwrap()
        .factors
}

const T: Timestamp = Timestamp(1_000_000);
const LAPSE: i64 = 600;

/// A pending TOTP factor of `user` begun at `at`.
fn pending(user: &UserId, at: Timestamp) -> Factor {
    Factor {
        id: FactorId::generate(),
        user_id: user.clone(),
        kind: FactorKind::Totp,
        name: "phone".into(),
        sealed_secret: vec![0, 1, 2, 255, 254],
        created_at: at,
        pending_until: Some(at.plus(LAPSE)),
        last_step: None,
        last_used_at: None,
        credential_id: None,
    }
}

fn step_use<'a>(f: &'a Factor, step: i64, at: Timestamp) -> StepUse<'a> {
    StepUse {
        id: &f.id,
        user_id: &f.user_id,
        step,
        at,
    }
}

/// A confirmed factor of `user`, stored, with `step` accepted at `T`.
async fn confirmed(l: &dyn FactorStore, user: &UserId, step: i64) -> Factor {
    let f = pending(user, T);
    l.insert_factor(&f).await.unwrap();
    assert!(l.confirm_factor(step_use(&f, step, T)).await.unwrap());
    l.factor(user, &f.id).await.unwrap().unwrap()
}

fn hashes(n: u8) -> Vec<TokenHash> {
    (0..n).map(|i| TokenHash::of(&[i, n])).collect()
}

pub(crate) async fn factors_round_trip_and_list_oldest_first(s: Stores) {
    let l = store(&s).await;
    let user = s.user().await;
    let later = pending(&user, T.plus(5));
    let first = pending(&user, T);
    l.insert_factor(&later).await.unwrap();
    l.insert_factor(&first).await.unwrap();
    assert!(matches!(
        l.insert_factor(&first).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        l.factor(&user, &first.id).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(l.list_factors(&user).await.unwrap(), vec![first, later]);
}

pub(crate) async fn a_pending_factor_is_confirmed_once_before_it_lapses(s: Stores) {
    let l = store(&s).await;
    let user = s.user().await;
    let f = pending(&user, T);
    l.insert_factor(&f).await.unwrap();
    let at = T.plus(10);
    assert!(l.confirm_factor(step_use(&f, 7, at)).await.unwrap());
    assert!(!l.confirm_factor(step_use(&f, 8, at)).await.unwrap());
    let got = l.factor(&user, &f.id).await.unwrap().unwrap();
    assert!(got.is_confirmed());
    assert_eq!(got.last_step, Some(7));
    assert_eq!(got.last_used_at, Some(at));

    let lapsed = pending(&user, T);
    l.insert_factor(&lapsed).await.unwrap();
    let end = T.plus(LAPSE);
    assert!(!l.confirm_factor(step_use(&lapsed, 7, end)).await.unwrap());
    assert!(
        l.confirm_factor(step_use(&lapsed, 7, end.plus(-1)))
            .await
            .unwrap()
    );
}

pub(crate) async fn concurrent_confirmations_one_wins(s: Stores) {
    let l = store(&s).await;
    let user = s.user().await;
    let f = pending(&user, T);
    l.insert_factor(&f).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (l, f) = (Arc::clone(&l), f.clone());
        tasks.push(tokio::spawn(async move {
            l.confirm_factor(step_use(&f, 100 + i, T)).await.unwrap()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
}

pub(crate) async fn a_step_is_accepted_only_after_the_last_one(s: Stores) {
    let l = store(&s).await;
    let user = s.user().await;
    let f = confirmed(&*l, &user, 100).await;
    let at = T.plus(30);
    assert!(
        !l.accept_step(step_use(&f, 100, at)).await.unwrap(),
        "replay"
    );
    assert!(!l.accept_step(step_use(&f, 99, at)).await.unwrap(), "older");
    assert!(l.accept_step(step_use(&f, 101, at)).await.unwrap());
    assert!(
        !l.accept_step(step_use(&f, 101, at)).await.unwrap(),
        "replay"
    );
    assert!(l.accept_step(step_use(&f, 103, at.plus(60))).await.unwrap());
    let got = l.factor(&user, &f.id).await.unwrap().unwrap();
    assert_eq!(got.last_step, Some(103));
    assert_eq!(got.last_used_at, Some(at.plus(60)));
}

pub(crate) async fn concurrent_uses_of_one_step_one_wins(s: Stores) {
    let l = store(&s).await;
    let user = s.user().await;
    let f = confirmed(&*l, &user, 100).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (l, f) = (Arc::clone(&l), f.clone());
        tasks.push(tokio::spawn(async move {
            l.accept_step(step_use(&f, 101, T)).await.unwrap()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
}

pub(crate) async fn a_pending_factor_accepts_no_step(s: Stores) {
    let l = store(&s).await;
    let user = s.user().await;
    let f = pending(&user, T);
    l.insert_factor(&f).await.unwrap();
    assert!(!l.accept_step(step_use(&f, 1, T)).await.unwrap());
    let got = l.factor(&user, &f.id).await.unwrap().unwrap();
    assert_eq!(got.last_step, None);
    assert!(!got.is_confirmed());
}

pub(crate) async fn factors_of_another_user_are_out_of_reach(s: Stores) {
    let l = store(&s).await;
    let (ada, eve) = (s.user().await, s.user().await);
    let f = confirmed(&*l, &ada, 100).await;
    let p = pending(&ada, T);
    l.insert_factor(&p).await.unwrap();
    assert_eq!(l.factor(&eve, &f.id).await.unwrap(), None);
    assert!(l.list_factors(&eve).await.unwrap().is_empty());
    let steal = StepUse {
        id: &f.id,
        user_id: &eve,
        step: 200,
        at: T,
    };
    assert!(!l.accept_step(steal).await.unwrap());
    let steal_pending = StepUse {
        id: &p.id,
        user_id: &eve,
        step: 200,
        at: T,
    };
    assert!(!l.confirm_factor(steal_pending).await.unwrap());
    assert!(!l.rename_factor(&eve, &f.id, "mine").await.unwrap());
    assert!(!l.delete_factor(&eve, &f.id).await.unwrap());
    assert_eq!(l.delete_pending_factors(&eve).await.unwrap(), 0);
    assert_eq!(l.delete_user_factors(&eve).await.unwrap(), 0);
    assert_eq!(l.list_factors(&ada).await.unwrap().len(), 2);
}

pub(crate) async fn rename_and_delete(s: Stores) {
    let l = store(&s).await;
    let user = s.user().await;
    let f = confirmed(&*l, &user, 1).await;
    let p = pending(&user, T);
    l.insert_factor(&p).await.unwrap();
    assert!(l.rename_factor(&user, &f.id, "work phone").await.unwrap());
    assert_eq!(
        l.factor(&user, &f.id).await.unwrap().unwrap().name,
        "work phone"
    );
    assert_eq!(l.delete_pending_factors(&user).await.unwrap(), 1);
    assert_eq!(l.factor(&user, &p.id).await.unwrap(), None);
    assert!(l.delete_factor(&user, &f.id).await.unwrap());
    assert!(!l.delete_factor(&user, &f.id).await.unwrap());
    assert!(l.list_factors(&user).await.unwrap().is_empty());
}

pub(crate) async fn lapsed_enrolments_are_purged(s: Stores) {
    let l = store(&s).await;
    let user = s.user().await;
    let kept = confirmed(&*l, &user, 1).await;
    let old = pending(&user, T);
    let fresh = pending(&user, T.plus(100));
    l.insert_factor(&old).await.unwrap();
    l.insert_factor(&fresh).await.unwrap();
    let end = T.plus(LAPSE);
    assert_eq!(l.purge_pending_factors(end.plus(-1)).await.unwrap(), 0);
    assert_eq!(l.purge_pending_factors(end).await.unwrap(), 1);
    let left: Vec<FactorId> = (l.list_factors(&user).await.unwrap().into_iter())
        .map(|f| f.id)
        .collect();
    assert_eq!(left, vec![kept.id, fresh.id]);
}

pub(crate) async fn recovery_codes_are_replaced_as_a_set_and_used_once(s: Stores) {
    let l = store(&s).await;
    let (ada, bob) = (s.user().await, s.user().await);
    let old = hashes(10);
    l.replace_recovery_codes(&ada, &old, T).await.unwrap();
    l.replace_recovery_codes(&bob, &old[..3], T).await.unwrap();
    assert_eq!(l.count_recovery_codes(&ada).await.unwrap(), 10);
    assert!(l.consume_recovery_code(&ada, &old[0]).await.unwrap());
    assert!(!l.consume_recovery_code(&ada, &old[0]).await.unwrap());
    assert_eq!(l.count_recovery_codes(&ada).await.unwrap(), 9);
    assert_eq!(l.count_recovery_codes(&bob).await.unwrap(), 3);

    let new = hashes(11);
    l.replace_recovery_codes(&ada, &new[..10], T.plus(1))
        .await
        .unwrap();
    assert_eq!(l.count_recovery_codes(&ada).await.unwrap(), 10);
    assert!(!l.consume_recovery_code(&ada, &old[1]).await.unwrap());
    assert!(l.consume_recovery_code(&ada, &new[1]).await.unwrap());
    // Bob's codes are his alone.
    assert!(l.consume_recovery_code(&bob, &old[1]).await.unwrap());
    l.replace_recovery_codes(&ada, &[], T).await.unwrap();
    assert_eq!(l.count_recovery_codes(&ada).await.unwrap(), 0);
    assert_eq!(l.count_recovery_codes(&bob).await.unwrap(), 2);
}

pub(crate) async fn concurrent_uses_of_one_recovery_code_one_wins(s: Stores) {
    let l = store(&s).await;
    let user = s.user().await;
    let codes = hashes(10);
    l.replace_recovery_codes(&user, &codes, T).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (l, user, h) = (Arc::clone(&l), user.clone(), codes[4]);
        tasks.push(tokio::spawn(async move {
            l.consume_recovery_code(&user, &h).await.unwrap()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
    assert_eq!(l.count_recovery_codes(&user).await.unwrap(), 9);
}

pub(crate) async fn deleting_all_of_a_users_factors_keeps_others(s: Stores) {
    let l = store(&s).await;
    let (ada, bob) = (s.user().await, s.user().await);
    confirmed(&*l, &ada, 1).await;
    l.insert_factor(&pending(&ada, T)).await.unwrap();
    let bobs = confirmed(&*l, &bob, 1).await;
    l.replace_recovery_codes(&ada, &hashes(10), T)
        .await
        .unwrap();
    l.replace_recovery_codes(&bob, &hashes(10), T)
        .await
        .unwrap();
    assert_eq!(l.delete_user_factors(&ada).await.unwrap(), 2);
    assert!(l.list_factors(&ada).await.unwrap().is_empty());
    assert_eq!(l.count_recovery_codes(&ada).await.unwrap(), 0);
    assert_eq!(l.list_factors(&bob).await.unwrap(), vec![bobs]);
    assert_eq!(l.count_recovery_codes(&bob).await.unwrap(), 10);
}

pub(crate) async fn deleting_a_user_removes_their_factors_and_codes(s: Stores) {
    let l = store(&s).await;
    let user = s.user().await;
    confirmed(&*l, &user, 1).await;
    l.replace_recovery_codes(&user, &hashes(10), T)
        .await
        .unwrap();
    crate::grants::delete_user_row(s.url(), &user).await;
    assert!(l.list_factors(&user).await.unwrap().is_empty());
    assert_eq!(l.count_recovery_codes(&user).await.unwrap(), 0);
}
