//! Consent is remembered per user, client and API: it covers the scopes consented to (merged
//! over time) for that client and that API only; first-party clients need none.

use super::*;

#[tokio::test]
async fn consent_covers_its_scopes_for_its_client_only() {
    let rig = Rig::new().await;
    let client = rig.web_client("web").await;
    let other = rig.web_client("other").await;
    let req = rig.request(&client, "openid email", None).await;
    assert!(!rig.oauth.has_consent(&rig.user.id, &req).await.unwrap());
    rig.oauth.record_consent(&rig.user.id, &req).await.unwrap();
    assert!(rig.oauth.has_consent(&rig.user.id, &req).await.unwrap());
    // A subset is covered, a wider request is not.
    let fewer = rig.request(&client, "openid", None).await;
    assert!(rig.oauth.has_consent(&rig.user.id, &fewer).await.unwrap());
    let wider = rig
        .request(&client, "openid email offline_access", None)
        .await;
    assert!(!rig.oauth.has_consent(&rig.user.id, &wider).await.unwrap());
    // Another client, or another user, has no consent from it.
    let elsewhere = rig.request(&other, "openid", None).await;
    assert!(
        !rig.oauth
            .has_consent(&rig.user.id, &elsewhere)
            .await
            .unwrap()
    );
    assert!(
        !rig.oauth
            .has_consent(&UserId::generate(), &fewer)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn consent_for_one_api_never_covers_another() {
    let rig = Rig::new().await;
    rig.store
        .put_resource(&Resource {
            id: "https://other-api.example".into(),
            scopes: vec!["read".into()],
            created_at: Timestamp(NOW),
        })
        .await
        .unwrap();
    let client = rig.web_client("web").await;
    let api = rig.request(&client, "openid read", Some(API)).await;
    assert_eq!(api.resource.as_deref(), Some(API));
    rig.oauth.record_consent(&rig.user.id, &api).await.unwrap();
    assert!(rig.oauth.has_consent(&rig.user.id, &api).await.unwrap());
    // The same scopes for the issuer alone (no API) are not covered.
    let oidc = rig.request(&client, "openid", None).await;
    assert!(!rig.oauth.has_consent(&rig.user.id, &oidc).await.unwrap());
    // Nor for another API with the same scope name.
    let other_api = AuthorizeRequest {
        resource: Some("https://other-api.example".into()),
        ..api.clone()
    };
    assert!(
        !rig.oauth
            .has_consent(&rig.user.id, &other_api)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn consents_merge_and_first_party_clients_need_none() {
    let rig = Rig::new().await;
    let client = rig.web_client("web").await;
    let email = rig.request(&client, "openid email", None).await;
    let offline = rig.request(&client, "openid offline_access", None).await;
    rig.oauth
        .record_consent(&rig.user.id, &email)
        .await
        .unwrap();
    rig.oauth
        .record_consent(&rig.user.id, &offline)
        .await
        .unwrap();
    let both = rig
        .request(&client, "openid email offline_access", None)
        .await;
    assert!(rig.oauth.has_consent(&rig.user.id, &both).await.unwrap());

    let first_party = rig
        .client("first", &[GrantType::AuthorizationCode], true)
        .await;
    let req = rig.request(&first_party, "openid email", None).await;
    assert!(rig.oauth.has_consent(&rig.user.id, &req).await.unwrap());
}
