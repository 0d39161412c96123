//! Authorization codes (RFC 6749 §4.1.3, RFC 7636 §4.6): single use, every check spends the
//! code, a replay revokes what the first redemption issued, and a code dies with its sign-in.

use super::*;

#[tokio::test]
async fn a_code_is_redeemed_once_and_a_replay_revokes_the_family() {
    let rig = Rig::new().await;
    let client = rig.web_client("web").await;
    let code = rig.code(&client, "openid offline_access").await;
    let first = rig.redeem(&client, &code).await.unwrap();
    assert!(first.refresh_token.is_some() && first.id_token.is_some());
    let family = rig.family_of(&first).await;
    assert!(family.revoked_at.is_none());

    assert_eq!(
        invalid_grant(rig.redeem(&client, &code).await),
        "authorization code already used"
    );
    // What the first redemption issued is revoked: the family, its access and refresh tokens.
    assert!(
        rig.store
            .stored_family(&family.id)
            .unwrap()
            .revoked_at
            .is_some()
    );
    let access = rig
        .oauth
        .active_access_token(&first.access_token)
        .await
        .unwrap();
    assert!(access.is_none());
    let refresh = first.refresh_token.unwrap();
    assert!(matches!(
        rig.oauth.tokens().refresh(&client, &refresh, None).await,
        Err(OAuthError::InvalidGrant(_))
    ));
}

#[tokio::test]
async fn a_failed_pkce_or_redirect_check_spends_the_code() {
    let rig = Rig::new().await;
    let client = rig.web_client("web").await;

    let code = rig.code(&client, "openid").await;
    let wrong = "x".repeat(43);
    let r = rig
        .oauth
        .tokens()
        .exchange_code(&client, &code, Some(REDIRECT), Some(&wrong))
        .await;
    assert_eq!(invalid_grant(r), "PKCE verification failed");
    assert_eq!(
        invalid_grant(rig.redeem(&client, &code).await),
        "authorization code already used"
    );

    // A missing verifier fails like a wrong one, after redemption.
    let code = rig.code(&client, "openid").await;
    let r = rig
        .oauth
        .tokens()
        .exchange_code(&client, &code, Some(REDIRECT), None)
        .await;
    assert_eq!(invalid_grant(r), "PKCE verification failed");
    assert!(rig.redeem(&client, &code).await.is_err());

    let code = rig.code(&client, "openid").await;
    let r = rig
        .oauth
        .tokens()
        .exchange_code(
            &client,
            &code,
            Some("https://app.example/other"),
            Some(VERIFIER),
        )
        .await;
    assert_eq!(
        invalid_grant(r),
        "redirect_uri differs from the authorization request"
    );
    assert_eq!(
        invalid_grant(rig.redeem(&client, &code).await),
        "authorization code already used"
    );

    // Presented by another client: refused, and spent for the one it was issued to.
    let other = rig.web_client("other").await;
    let code = rig.code(&client, "openid").await;
    assert_eq!(
        invalid_grant(rig.redeem(&other, &code).await),
        "the code was issued to another client"
    );
    assert!(rig.redeem(&client, &code).await.is_err());
    // No family was created by any failed redemption.
    assert!(rig.store.all_families().is_empty());
}

#[tokio::test]
async fn a_code_expires_after_its_lifetime() {
    let rig = Rig::new().await;
    let client = rig.web_client("web").await;
    let code = rig.code(&client, "openid").await;
    rig.clock.advance(rig.oauth.config().code_ttl_secs);
    assert_eq!(
        invalid_grant(rig.redeem(&client, &code).await),
        "invalid or expired authorization code"
    );
    assert_eq!(
        invalid_grant(rig.redeem(&client, "not-a-code").await),
        "invalid authorization code"
    );
}

#[tokio::test]
async fn the_code_of_an_ended_session_is_refused() {
    let rig = Rig::new().await;
    let client = rig.web_client("web").await;
    let code = rig.code(&client, "openid").await;
    rig.store
        .delete_session(&rig.user.id, &rig.session)
        .await
        .unwrap();
    assert_eq!(
        invalid_grant(rig.redeem(&client, &code).await),
        "the sign-in that authorized the code has ended"
    );
    assert!(rig.store.all_families().is_empty());
}

#[tokio::test]
async fn the_code_of_an_idled_out_session_is_refused() {
    // A code life longer than the session's idle timeout shows the session rule alone.
    let rig = Rig::with(|c| c.code_ttl_secs = 7_200).await;
    let client = rig.web_client("web").await;
    let code = rig.code(&client, "openid").await;
    rig.clock.advance(3_600);
    assert_eq!(
        invalid_grant(rig.redeem(&client, &code).await),
        "the sign-in that authorized the code has ended"
    );
}

#[tokio::test]
async fn a_password_change_after_the_sign_in_voids_the_code() {
    let rig = Rig::new().await;
    let client = rig.web_client("web").await;
    let code = rig.code(&client, "openid").await;
    rig.clock.advance(1);
    rig.store
        .set_password_hash(&rig.user.id, "new", Some(rig.clock.now()))
        .await
        .unwrap();
    assert_eq!(
        invalid_grant(rig.redeem(&client, &code).await),
        "the sign-in that authorized the code has ended"
    );
}

#[tokio::test]
async fn a_disabled_user_gets_nothing_for_a_code() {
    let rig = Rig::new().await;
    let client = rig.web_client("web").await;
    let code = rig.code(&client, "openid").await;
    assert_eq!(
        rig.store
            .set_status(&rig.user.id, UserStatus::Disabled)
            .await
            .unwrap(),
        crate::store::AccountChange::Done
    );
    assert_eq!(
        invalid_grant(rig.redeem(&client, &code).await),
        "the user cannot receive tokens"
    );
}
