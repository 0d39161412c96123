//! Refresh tokens (RFC 6749 §6, RFC 9700 §4.14.2): each rotates once; an immediate retry of
//! the previous token inside the grace window gets the same successor; any other reuse ends
//! the family.

use super::*;

async fn refresh(rig: &Rig, client: &Client, token: &str) -> Result<TokenResponse, OAuthError> {
    rig.oauth.tokens().refresh(client, token, None).await
}

#[tokio::test]
async fn a_refresh_token_rotates_and_its_successor_works() {
    let rig = Rig::new().await;
    let client = rig.web_client("web").await;
    let t0 = rig.tokens(&client).await;
    let r0 = t0.refresh_token.clone().unwrap();
    let t1 = refresh(&rig, &client, &r0).await.unwrap();
    let r1 = t1.refresh_token.clone().unwrap();
    assert_ne!(r0, r1);
    // The same family throughout.
    assert_eq!(rig.family_of(&t0).await.id, rig.family_of(&t1).await.id);
    let t2 = refresh(&rig, &client, &r1).await.unwrap();
    assert_ne!(t2.refresh_token.unwrap(), r1);
}

#[tokio::test]
async fn a_retry_inside_the_grace_window_gets_the_same_successor() {
    let rig = Rig::new().await;
    let client = rig.web_client("web").await;
    let t0 = rig.tokens(&client).await;
    let r0 = t0.refresh_token.clone().unwrap();
    let first = refresh(&rig, &client, &r0).await.unwrap();
    rig.clock.advance(rig.oauth.config().refresh_grace_secs);
    let retry = refresh(&rig, &client, &r0).await.unwrap();
    // The chain does not fork: the retry names the same successor.
    assert_eq!(first.refresh_token, retry.refresh_token);
    assert!(rig.family_of(&retry).await.revoked_at.is_none());
}

#[tokio::test]
async fn reuse_after_the_grace_window_revokes_the_family() {
    let rig = Rig::new().await;
    let client = rig.web_client("web").await;
    let t0 = rig.tokens(&client).await;
    let family = rig.family_of(&t0).await;
    let r0 = t0.refresh_token.unwrap();
    let t1 = refresh(&rig, &client, &r0).await.unwrap();
    rig.clock.advance(rig.oauth.config().refresh_grace_secs + 1);
    assert_eq!(
        invalid_grant(refresh(&rig, &client, &r0).await),
        "refresh token already used; the grant was revoked"
    );
    assert!(
        rig.store
            .stored_family(&family.id)
            .unwrap()
            .revoked_at
            .is_some()
    );
    // The legitimate holder's successor and access token die with the family.
    assert!(
        refresh(&rig, &client, &t1.refresh_token.unwrap())
            .await
            .is_err()
    );
    let access = rig
        .oauth
        .active_access_token(&t1.access_token)
        .await
        .unwrap();
    assert!(access.is_none());
}

#[tokio::test]
async fn reuse_after_the_successor_was_used_revokes_the_family_even_in_the_window() {
    let rig = Rig::new().await;
    let client = rig.web_client("web").await;
    let t0 = rig.tokens(&client).await;
    let family = rig.family_of(&t0).await;
    let r0 = t0.refresh_token.unwrap();
    let t1 = refresh(&rig, &client, &r0).await.unwrap();
    refresh(&rig, &client, &t1.refresh_token.unwrap())
        .await
        .unwrap();
    assert_eq!(
        invalid_grant(refresh(&rig, &client, &r0).await),
        "refresh token already used; the grant was revoked"
    );
    assert!(
        rig.store
            .stored_family(&family.id)
            .unwrap()
            .revoked_at
            .is_some()
    );
}

#[tokio::test]
async fn without_a_grace_window_any_retry_is_reuse() {
    let rig = Rig::with(|c| c.refresh_grace_secs = 0).await;
    let client = rig.web_client("web").await;
    let t0 = rig.tokens(&client).await;
    let r0 = t0.refresh_token.unwrap();
    refresh(&rig, &client, &r0).await.unwrap();
    assert_eq!(
        invalid_grant(refresh(&rig, &client, &r0).await),
        "refresh token already used; the grant was revoked"
    );
}

#[tokio::test]
async fn a_refresh_token_idles_out_and_belongs_to_its_client() {
    let rig = Rig::new().await;
    let client = rig.web_client("web").await;
    let other = rig.web_client("other").await;
    let t0 = rig.tokens(&client).await;
    let family = rig.family_of(&t0).await;
    let r0 = t0.refresh_token.unwrap();
    assert_eq!(
        invalid_grant(refresh(&rig, &other, &r0).await),
        "the refresh token was issued to another client"
    );
    rig.clock.advance(client.refresh_idle_secs);
    assert_eq!(
        invalid_grant(refresh(&rig, &client, &r0).await),
        "the refresh token has expired"
    );
    // An idle expiry is not reuse: the family was not revoked.
    assert!(
        rig.store
            .stored_family(&family.id)
            .unwrap()
            .revoked_at
            .is_none()
    );
}

#[tokio::test]
async fn a_refresh_may_narrow_the_scope_but_never_widen_it() {
    let rig = Rig::new().await;
    let client = rig.web_client("web").await;
    let t0 = rig.tokens(&client).await;
    let r0 = t0.refresh_token.unwrap();
    let narrow = rig
        .oauth
        .tokens()
        .refresh(&client, &r0, Some("openid"))
        .await
        .unwrap();
    assert_eq!(narrow.scope, "openid");
    // The grant keeps its scope: the next refresh gets all of it again.
    let r1 = narrow.refresh_token.unwrap();
    let full = refresh(&rig, &client, &r1).await.unwrap();
    assert_eq!(full.scope, "offline_access openid");
    let wide = rig
        .oauth
        .tokens()
        .refresh(&client, &full.refresh_token.unwrap(), Some("openid email"))
        .await;
    assert!(matches!(wide, Err(OAuthError::InvalidScope(_))));
}

#[tokio::test]
async fn a_disabled_user_loses_the_family_at_the_next_refresh() {
    let rig = Rig::new().await;
    let client = rig.web_client("web").await;
    let t0 = rig.tokens(&client).await;
    let family = rig.family_of(&t0).await;
    assert_eq!(
        rig.store
            .set_status(&rig.user.id, UserStatus::Disabled)
            .await
            .unwrap(),
        crate::store::AccountChange::Done
    );
    assert_eq!(
        invalid_grant(refresh(&rig, &client, &t0.refresh_token.unwrap()).await),
        "the user cannot receive tokens"
    );
    assert!(
        rig.store
            .stored_family(&family.id)
            .unwrap()
            .revoked_at
            .is_some()
    );
}
