//! `DeviceStore`: device authorization grants (RFC 8628), each state change once.

use std::sync::Arc;

use authx_core::Timestamp;
use authx_core::oauth::device::{
    DeviceApproval, DeviceDenial, DeviceGrant, DevicePoll, DeviceStatus, DeviceStore, UserCode,
};
use authx_core::secret::{TokenHash, random_id};
use authx_core::session::SessionId;
use authx_core::store::StoreError;
use authx_core::user::UserId;
use authx_store::{ConnectOptions, connect};

use crate::clients::client;
use crate::harness::{Stores, redemption};

mod sqlite {
    instantiate!(crate::harness::sqlite;
        device::grants_round_trip_and_conflict,
        device::approve_deny_and_redeem_are_compare_and_set,
        device::expired_grants_cannot_be_approved_or_redeemed,
        device::concurrent_redemptions_one_wins,
        device::concurrent_polls_one_recorded,
        device::purge_removes_only_expired_grants,
        device::deleting_the_client_removes_its_grants,
        device::a_users_unredeemed_approvals_are_withdrawn,
    );
}

mod postgres {
    instantiate!(crate::harness::postgres;
        device::grants_round_trip_and_conflict,
        device::approve_deny_and_redeem_are_compare_and_set,
        device::expired_grants_cannot_be_approved_or_redeemed,
        device::concurrent_redemptions_one_wins,
        device::concurrent_polls_one_recorded,
        device::purge_removes_only_expired_grants,
        device::deleting_the_client_removes_its_grants,
        device::a_users_unredeemed_approvals_are_withdrawn,
    );
}

/// The device store of the backend under test, on the same database.
async fn devices(s: &Stores) -> Arc<dyn DeviceStore> {
    connect(s.url(), &ConnectOptions::default())
        .await
        .unwrap()
        .devices
}

async fn setup(s: &Stores) -> (Arc<dyn DeviceStore>, UserId) {
    s.clients().put_client(&client("tv")).await.unwrap();
    (devices(s).await, s.user().await)
}

fn approval<'a>(
    hash: &'a TokenHash,
    user: &'a UserId,
    session: &'a SessionId,
    auth_time: Timestamp,
    now: Timestamp,
) -> DeviceApproval<'a> {
    DeviceApproval {
        hash,
        user,
        session,
        auth_time,
        auth_methods: "password+totp",
        now,
    }
}

fn denial<'a>(hash: &'a TokenHash, user: Option<&'a UserId>, now: Timestamp) -> DeviceDenial<'a> {
    DeviceDenial { hash, user, now }
}

fn grant(expires_at: i64) -> DeviceGrant {
    DeviceGrant {
        scope: "openid profile".into(),
        resource: Some("https://api.example.com/orders".into()),
        ..DeviceGrant::pending(
            TokenHash::of(random_id().as_bytes()),
            UserCode::generate().as_str().to_owned(),
            "tv".into(),
            Timestamp(1_000),
            Timestamp(expires_at),
        )
    }
}

pub(crate) async fn grants_round_trip_and_conflict(s: Stores) {
    let (d, _) = setup(&s).await;
    let g = grant(1_600);
    d.put_device_grant(&g).await.unwrap();
    assert_eq!(
        d.device_grant(&g.device_code_hash).await.unwrap(),
        Some(g.clone())
    );
    assert_eq!(
        d.device_grant_by_user_code(&g.user_code).await.unwrap(),
        Some(g.clone())
    );
    assert_eq!(d.device_grant_by_user_code("BBBBBBBB").await.unwrap(), None);
    assert_eq!(d.device_grant(&TokenHash::of(b"nope")).await.unwrap(), None);
    // Same user code, or same device code: conflict.
    let mut same_user_code = grant(1_600);
    same_user_code.user_code = g.user_code.clone();
    assert!(matches!(
        d.put_device_grant(&same_user_code).await,
        Err(StoreError::Conflict)
    ));
    let mut same_hash = grant(1_600);
    same_hash.device_code_hash = g.device_code_hash;
    assert!(matches!(
        d.put_device_grant(&same_hash).await,
        Err(StoreError::Conflict)
    ));
    // A grant with every optional field empty round-trips too.
    let mut bare = grant(1_600);
    bare.resource = None;
    d.put_device_grant(&bare).await.unwrap();
    assert_eq!(
        d.device_grant(&bare.device_code_hash).await.unwrap(),
        Some(bare)
    );
}

pub(crate) async fn approve_deny_and_redeem_are_compare_and_set(s: Stores) {
    let (d, user) = setup(&s).await;
    let session = SessionId::generate();
    let g = grant(1_600);
    d.put_device_grant(&g).await.unwrap();
    let h = &g.device_code_hash;

    // Not approved yet: nothing to redeem.
    assert!(
        !d.redeem_device_grant(redemption(h, "f1", Timestamp(1_010)))
            .await
            .unwrap()
    );
    assert!(
        d.approve_device_grant(approval(
            h,
            &user,
            &session,
            Timestamp(900),
            Timestamp(1_010)
        ))
        .await
        .unwrap()
    );
    // Approved once only.
    assert!(
        !d.approve_device_grant(approval(
            h,
            &user,
            &session,
            Timestamp(900),
            Timestamp(1_011)
        ))
        .await
        .unwrap()
    );
    let got = d.device_grant(h).await.unwrap().unwrap();
    assert_eq!(got.status, DeviceStatus::Approved);
    assert_eq!(got.user_id.as_ref(), Some(&user));
    assert_eq!(got.session_id.as_ref(), Some(&session));
    assert_eq!(got.auth_time, Some(Timestamp(900)));
    assert_eq!(got.auth_methods, "password+totp");
    assert_eq!(got.decided_at, Some(Timestamp(1_010)));

    assert!(
        d.redeem_device_grant(redemption(h, "f1", Timestamp(1_020)))
            .await
            .unwrap()
    );
    assert!(
        !d.redeem_device_grant(redemption(h, "f2", Timestamp(1_021)))
            .await
            .unwrap()
    );
    let got = d.device_grant(h).await.unwrap().unwrap();
    assert_eq!(got.status, DeviceStatus::Redeemed);
    assert_eq!(got.family_id.as_deref(), Some("f1"));
    // A redeemed grant cannot be denied afterwards.
    assert!(
        !d.deny_device_grant(denial(h, None, Timestamp(1_030)))
            .await
            .unwrap()
    );

    // Denial of a pending grant records the user; it cannot then be approved or redeemed.
    let g2 = grant(1_600);
    d.put_device_grant(&g2).await.unwrap();
    let h2 = &g2.device_code_hash;
    assert!(
        d.deny_device_grant(denial(h2, Some(&user), Timestamp(1_040)))
            .await
            .unwrap()
    );
    assert!(
        !d.deny_device_grant(denial(h2, Some(&user), Timestamp(1_041)))
            .await
            .unwrap()
    );
    assert!(
        !d.approve_device_grant(approval(
            h2,
            &user,
            &session,
            Timestamp(900),
            Timestamp(1_042)
        ))
        .await
        .unwrap()
    );
    assert!(
        !d.redeem_device_grant(redemption(h2, "f3", Timestamp(1_043)))
            .await
            .unwrap()
    );
    let got = d.device_grant(h2).await.unwrap().unwrap();
    assert_eq!(got.status, DeviceStatus::Denied);
    assert_eq!(got.user_id.as_ref(), Some(&user));
    assert_eq!(got.decided_at, Some(Timestamp(1_040)));

    // An approved grant can be spent without tokens; the approval is kept.
    let g3 = grant(1_600);
    d.put_device_grant(&g3).await.unwrap();
    let h3 = &g3.device_code_hash;
    d.approve_device_grant(approval(
        h3,
        &user,
        &session,
        Timestamp(900),
        Timestamp(1_050),
    ))
    .await
    .unwrap();
    assert!(
        d.deny_device_grant(denial(h3, None, Timestamp(1_060)))
            .await
            .unwrap()
    );
    let got = d.device_grant(h3).await.unwrap().unwrap();
    assert_eq!(got.status, DeviceStatus::Denied);
    assert_eq!(got.user_id.as_ref(), Some(&user));
    assert_eq!(got.decided_at, Some(Timestamp(1_050)));
    assert!(
        !d.redeem_device_grant(redemption(h3, "f4", Timestamp(1_061)))
            .await
            .unwrap()
    );
}

pub(crate) async fn expired_grants_cannot_be_approved_or_redeemed(s: Stores) {
    let (d, user) = setup(&s).await;
    let session = SessionId::generate();
    let g = grant(1_600);
    d.put_device_grant(&g).await.unwrap();
    let h = &g.device_code_hash;
    assert!(
        !d.approve_device_grant(approval(
            h,
            &user,
            &session,
            Timestamp(900),
            Timestamp(1_600)
        ))
        .await
        .unwrap()
    );
    let g2 = grant(1_600);
    d.put_device_grant(&g2).await.unwrap();
    let h2 = &g2.device_code_hash;
    assert!(
        d.approve_device_grant(approval(
            h2,
            &user,
            &session,
            Timestamp(900),
            Timestamp(1_599)
        ))
        .await
        .unwrap()
    );
    assert!(
        !d.redeem_device_grant(redemption(h2, "f", Timestamp(1_600)))
            .await
            .unwrap()
    );
    assert_eq!(
        d.device_grant(h2).await.unwrap().unwrap().status,
        DeviceStatus::Approved
    );
}

pub(crate) async fn concurrent_redemptions_one_wins(s: Stores) {
    let (d, user) = setup(&s).await;
    let g = grant(1_600);
    d.put_device_grant(&g).await.unwrap();
    let h = g.device_code_hash;
    d.approve_device_grant(approval(
        &h,
        &user,
        &SessionId::generate(),
        Timestamp(900),
        Timestamp(1_010),
    ))
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let d = Arc::clone(&d);
        tasks.push(tokio::spawn(async move {
            d.redeem_device_grant(redemption(&h, &format!("f{i}"), Timestamp(1_020)))
                .await
                .unwrap()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        if t.await.unwrap() {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
}

fn poll(seen_polls: i64, interval_secs: i64, at_ms: i64, gap: Option<i64>) -> DevicePoll {
    DevicePoll {
        seen_polls,
        interval_secs,
        at_ms,
        slow_down_gap_ms: gap,
    }
}

pub(crate) async fn concurrent_polls_one_recorded(s: Stores) {
    let (d, _) = setup(&s).await;
    let g = grant(1_600);
    d.put_device_grant(&g).await.unwrap();
    let h = g.device_code_hash;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let d = Arc::clone(&d);
        tasks.push(tokio::spawn(async move {
            d.record_device_poll(&h, &poll(0, 10, 1_100_250, Some(750)))
                .await
                .unwrap()
        }));
    }
    let mut recorded = 0;
    for t in tasks {
        if t.await.unwrap() {
            recorded += 1;
        }
    }
    assert_eq!(recorded, 1);
    let got = d.device_grant(&h).await.unwrap().unwrap();
    assert_eq!(got.polls, 1);
    assert_eq!(got.interval_secs, 10);
    assert_eq!(got.last_poll_at, Some(Timestamp(1_100)));
    // The millisecond time and the slow_down gap round-trip.
    assert_eq!(got.last_poll_ms, Some(1_100_250));
    assert_eq!(got.slow_down_gap_ms, Some(750));
    assert!(
        d.record_device_poll(&h, &poll(1, 10, 1_110_000, None))
            .await
            .unwrap()
    );
    assert!(
        !d.record_device_poll(&h, &poll(1, 15, 1_111_000, Some(1_000)))
            .await
            .unwrap()
    );
    let got = d.device_grant(&h).await.unwrap().unwrap();
    assert_eq!(got.polls, 2);
    assert_eq!(
        (got.last_poll_ms, got.slow_down_gap_ms),
        (Some(1_110_000), None)
    );
}

pub(crate) async fn purge_removes_only_expired_grants(s: Stores) {
    let (d, _) = setup(&s).await;
    let old = grant(1_500);
    let live = grant(1_700);
    d.put_device_grant(&old).await.unwrap();
    d.put_device_grant(&live).await.unwrap();
    assert_eq!(d.purge_device_grants(Timestamp(1_600)).await.unwrap(), 1);
    assert_eq!(d.device_grant(&old.device_code_hash).await.unwrap(), None);
    assert!(
        d.device_grant(&live.device_code_hash)
            .await
            .unwrap()
            .is_some()
    );
    // Its user code is free again.
    let mut again = grant(1_800);
    again.user_code = old.user_code.clone();
    d.put_device_grant(&again).await.unwrap();
}

pub(crate) async fn deleting_the_client_removes_its_grants(s: Stores) {
    let (d, user) = setup(&s).await;
    let g = grant(1_600);
    d.put_device_grant(&g).await.unwrap();
    d.approve_device_grant(approval(
        &g.device_code_hash,
        &user,
        &SessionId::generate(),
        Timestamp(900),
        Timestamp(1_010),
    ))
    .await
    .unwrap();
    assert!(s.clients().delete_client("tv").await.unwrap());
    assert_eq!(d.device_grant(&g.device_code_hash).await.unwrap(), None);
}

/// Issue 14 item 1: a password change or a disable withdraws the approvals the user gave that
/// no device has redeemed; pending, redeemed and other users' grants are untouched.
pub(crate) async fn a_users_unredeemed_approvals_are_withdrawn(s: Stores) {
    let (d, user) = setup(&s).await;
    let other = s.user().await;
    let session = SessionId::generate();
    let (approved, redeemed, pending, theirs) =
        (grant(1_600), grant(1_600), grant(1_600), grant(1_600));
    for g in [&approved, &redeemed, &pending, &theirs] {
        d.put_device_grant(g).await.unwrap();
    }
    for (g, u) in [(&approved, &user), (&redeemed, &user), (&theirs, &other)] {
        assert!(
            d.approve_device_grant(approval(
                &g.device_code_hash,
                u,
                &session,
                Timestamp(1_000),
                Timestamp(1_010)
            ))
            .await
            .unwrap()
        );
    }
    assert!(
        d.redeem_device_grant(redemption(
            &redeemed.device_code_hash,
            "fam",
            Timestamp(1_020)
        ))
        .await
        .unwrap()
    );
    assert_eq!(d.deny_user_device_grants(&user).await.unwrap(), 1);
    let status = |g: &DeviceGrant| {
        let d = Arc::clone(&d);
        let hash = g.device_code_hash;
        async move { d.device_grant(&hash).await.unwrap().unwrap().status }
    };
    assert_eq!(status(&approved).await, DeviceStatus::Denied);
    assert_eq!(status(&redeemed).await, DeviceStatus::Redeemed);
    assert_eq!(status(&pending).await, DeviceStatus::Pending);
    assert_eq!(status(&theirs).await, DeviceStatus::Approved);
    assert!(
        !d.redeem_device_grant(redemption(
            &approved.device_code_hash,
            "f",
            Timestamp(1_030)
        ))
        .await
        .unwrap()
    );
}
