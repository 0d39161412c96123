//! The device grant (RFC 8628 §3.5): a device that polls too fast is told `slow_down` and its
//! interval grows (once per step it did not take), a poll on time waits for the user, and an
//! approved grant is redeemed once, for a user who can still receive tokens.

use super::super::device::{DeviceAuthorization, DevicePollError, DeviceStore, POLL_TOLERANCE_MS};
use super::*;
use crate::store::ThrottleStore;
use crate::throttle::ThrottlePolicy;

async fn tv(rig: &Rig) -> (Client, DeviceAuthorization) {
    let client = rig
        .client(
            "tv",
            &[GrantType::DeviceCode, GrantType::RefreshToken],
            false,
        )
        .await;
    let auth = rig
        .oauth
        .device_authorization(&client, Some("openid offline_access"), None)
        .await
        .unwrap();
    (client, auth)
}

async fn poll(
    rig: &Rig,
    client: &Client,
    auth: &DeviceAuthorization,
) -> Result<TokenResponse, OAuthError> {
    rig.oauth
        .tokens()
        .device_token(
            client,
            auth.device_code.expose(),
            &ThrottlePolicy::default(),
        )
        .await
}

/// The RFC 8628 error of a poll, or a panic.
fn refused(r: Result<TokenResponse, OAuthError>) -> DevicePollError {
    match r {
        Err(OAuthError::Device(e)) => e,
        other => panic!("expected a device poll error, got {other:?}"),
    }
}

async fn interval(rig: &Rig, auth: &DeviceAuthorization) -> i64 {
    let hash = auth.device_code.hash();
    rig.store
        .device_grant(&hash)
        .await
        .unwrap()
        .unwrap()
        .interval_secs
}

async fn decide(rig: &Rig, auth: &DeviceAuthorization, approve: bool) -> bool {
    let pending = rig
        .oauth
        .pending_device(&auth.user_code.display())
        .await
        .unwrap()
        .expect("a pending request");
    rig.oauth
        .decide_device(&pending, rig.signed_in_at(rig.clock.now()), approve)
        .await
        .unwrap()
}

#[tokio::test]
async fn polling_too_fast_slows_the_device_down() {
    let rig = Rig::new().await;
    let (client, auth) = tv(&rig).await;
    assert_eq!(auth.interval, 5);
    assert_eq!(
        refused(poll(&rig, &client, &auth).await),
        DevicePollError::AuthorizationPending
    );

    // One second later: too fast, and the interval grows by a step.
    rig.clock.advance(1);
    assert_eq!(
        refused(poll(&rig, &client, &auth).await),
        DevicePollError::SlowDown
    );
    assert_eq!(interval(&rig, &auth).await, 10);

    // Slowed down by a step but still short of the new interval: slow_down, no further growth.
    rig.clock.advance(6);
    assert_eq!(
        refused(poll(&rig, &client, &auth).await),
        DevicePollError::SlowDown
    );
    assert_eq!(interval(&rig, &auth).await, 10);

    // Not slowed down at all: it grows again.
    rig.clock.advance(1);
    assert_eq!(
        refused(poll(&rig, &client, &auth).await),
        DevicePollError::SlowDown
    );
    assert_eq!(interval(&rig, &auth).await, 15);

    // On time, within the tolerance: waiting for the user.
    rig.clock.advance_millis(15_000 - POLL_TOLERANCE_MS);
    assert_eq!(
        refused(poll(&rig, &client, &auth).await),
        DevicePollError::AuthorizationPending
    );
    assert_eq!(interval(&rig, &auth).await, 15);
}

#[tokio::test]
async fn an_approved_grant_is_redeemed_once() {
    let rig = Rig::new().await;
    let (client, auth) = tv(&rig).await;
    assert_eq!(
        refused(poll(&rig, &client, &auth).await),
        DevicePollError::AuthorizationPending
    );
    assert!(decide(&rig, &auth, true).await);
    rig.clock.advance(5);
    let tokens = poll(&rig, &client, &auth).await.unwrap();
    assert!(tokens.refresh_token.is_some() && tokens.id_token.is_some());
    // Not tied to the approving browser session.
    assert!(rig.family_of(&tokens).await.session_id.is_none());
    rig.clock.advance(5);
    assert_eq!(
        invalid_grant(poll(&rig, &client, &auth).await),
        "the device code was already used"
    );
    // Another client cannot poll it at all.
    let other = rig.client("other", &[GrantType::DeviceCode], false).await;
    assert_eq!(
        invalid_grant(poll(&rig, &other, &auth).await),
        "the device code was issued to another client"
    );
}

#[tokio::test]
async fn a_denied_or_expired_grant_yields_nothing() {
    let rig = Rig::new().await;
    let (client, auth) = tv(&rig).await;
    assert!(decide(&rig, &auth, false).await);
    assert_eq!(
        refused(poll(&rig, &client, &auth).await),
        DevicePollError::AccessDenied
    );
    // A decided request is no longer pending.
    assert!(
        rig.oauth
            .pending_device(&auth.user_code.display())
            .await
            .unwrap()
            .is_none()
    );

    let auth = rig
        .oauth
        .device_authorization(&client, Some("openid"), None)
        .await
        .unwrap();
    rig.clock
        .advance(super::super::device::DEVICE_CODE_TTL_SECS);
    assert_eq!(
        refused(poll(&rig, &client, &auth).await),
        DevicePollError::ExpiredToken
    );
}

#[tokio::test]
async fn a_locked_or_changed_account_spends_the_grant_without_tokens() {
    let rig = Rig::new().await;
    let (client, auth) = tv(&rig).await;
    assert!(decide(&rig, &auth, true).await);
    let policy = ThrottlePolicy::default();
    for _ in 0..policy.lock_after {
        rig.store
            .record_failure(
                &format!("account:{}", rig.user.email),
                rig.clock.now(),
                3_600,
            )
            .await
            .unwrap();
    }
    assert_eq!(
        invalid_grant(poll(&rig, &client, &auth).await),
        "the user cannot receive tokens"
    );
    rig.clock.advance(5);
    assert_eq!(
        refused(poll(&rig, &client, &auth).await),
        DevicePollError::AccessDenied
    );

    // A password change after the approval.
    let rig = Rig::new().await;
    let (client, auth) = tv(&rig).await;
    assert!(decide(&rig, &auth, true).await);
    rig.clock.advance(1);
    rig.store
        .set_password_hash(&rig.user.id, "new", Some(rig.clock.now()))
        .await
        .unwrap();
    assert_eq!(
        invalid_grant(poll(&rig, &client, &auth).await),
        "the user cannot receive tokens"
    );
}

#[tokio::test]
async fn an_approval_from_an_ended_session_does_not_count() {
    let rig = Rig::new().await;
    let (client, auth) = tv(&rig).await;
    let pending = rig
        .oauth
        .pending_device(&auth.user_code.display())
        .await
        .unwrap()
        .unwrap();
    rig.store
        .delete_session(&rig.user.id, &rig.session)
        .await
        .unwrap();
    let counted = rig
        .oauth
        .decide_device(&pending, rig.signed_in_at(rig.clock.now()), true)
        .await
        .unwrap();
    assert!(!counted);
    assert_eq!(
        refused(poll(&rig, &client, &auth).await),
        DevicePollError::AccessDenied
    );
}
