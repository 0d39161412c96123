//! The token endpoint's one entry point: the request read from its parameters, and each grant
//! type run by `grant`, the device code included.

use super::super::device::DevicePollError;
use super::super::token::TokenRequest;
use super::*;
use crate::throttle::ThrottlePolicy;

fn read(pairs: &[(&str, &str)], stored: Option<&str>) -> Result<TokenRequest, OAuthError> {
    TokenRequest::from_params(
        |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| *v),
        stored,
    )
}

fn invalid_request(r: Result<TokenRequest, OAuthError>) -> String {
    match r {
        Err(OAuthError::InvalidRequest(m)) => m,
        other => panic!("expected invalid_request, got {other:?}"),
    }
}

#[test]
fn the_request_is_read_by_grant_type() {
    assert_eq!(invalid_request(read(&[], None)), "grant_type is required");
    assert!(matches!(
        read(&[("grant_type", "password")], None),
        Err(OAuthError::UnsupportedGrantType)
    ));
    assert_eq!(
        invalid_request(read(&[("grant_type", "authorization_code")], None)),
        "code is required"
    );
    assert_eq!(
        invalid_request(read(&[("grant_type", "refresh_token")], None)),
        "refresh_token is required"
    );
    assert_eq!(
        invalid_request(read(
            &[("grant_type", "urn:ietf:params:oauth:grant-type:device_code")],
            None
        )),
        "device_code is required"
    );
    // The refresh token of the form wins over the stored one; the stored one fills in.
    let form = [("grant_type", "refresh_token"), ("refresh_token", "form")];
    assert_eq!(
        read(&form, Some("cookie")).unwrap(),
        TokenRequest::RefreshToken {
            refresh_token: "form".into(),
            scope: None
        }
    );
    assert_eq!(
        read(&form[..1], Some("cookie")).unwrap(),
        TokenRequest::RefreshToken {
            refresh_token: "cookie".into(),
            scope: None
        }
    );
    assert_eq!(
        read(
            &[
                ("grant_type", "client_credentials"),
                ("scope", "read"),
                ("resource", API)
            ],
            None
        )
        .unwrap(),
        TokenRequest::ClientCredentials {
            scope: Some("read".into()),
            resource: Some(API.into())
        }
    );
}

#[tokio::test]
async fn grant_runs_every_grant_type() {
    let rig = Rig::new().await;
    let policy = ThrottlePolicy::default();
    let grants = rig.oauth.tokens();
    let client = rig
        .client(
            "app",
            &[
                GrantType::AuthorizationCode,
                GrantType::RefreshToken,
                GrantType::DeviceCode,
            ],
            false,
        )
        .await;
    let code = rig.code(&client, "openid offline_access").await;
    let request = TokenRequest::AuthorizationCode {
        code,
        redirect_uri: Some(REDIRECT.into()),
        code_verifier: Some(VERIFIER.into()),
    };
    let tokens = grants
        .grant(&client, &request, &policy, None)
        .await
        .unwrap();
    let refresh_token = tokens.refresh_token.expect("a refresh token");
    let request = TokenRequest::RefreshToken {
        refresh_token,
        scope: Some("openid".into()),
    };
    let refreshed = grants
        .grant(&client, &request, &policy, None)
        .await
        .unwrap();
    assert_eq!(refreshed.scope, "openid");

    // A public client may not use client credentials.
    let request = TokenRequest::ClientCredentials {
        scope: None,
        resource: None,
    };
    assert!(matches!(
        grants.grant(&client, &request, &policy, None).await,
        Err(OAuthError::UnauthorizedClient)
    ));

    // The device code is a grant like the others.
    let auth = rig
        .oauth
        .device_authorization(&client, Some("openid"), None)
        .await
        .unwrap();
    let request = TokenRequest::DeviceCode {
        device_code: auth.device_code.expose().to_owned(),
    };
    assert!(matches!(
        grants.grant(&client, &request, &policy, None).await,
        Err(OAuthError::Device(DevicePollError::AuthorizationPending))
    ));
    let request = TokenRequest::DeviceCode {
        device_code: "not-a-device-code".into(),
    };
    assert_eq!(
        invalid_grant(grants.grant(&client, &request, &policy, None).await),
        "invalid device code"
    );
}

/// RFC 9449 §5: the key of a request's proof binds the access token of the device and code
/// grants, and a public client's refresh family, which then refreshes only with that key.
#[tokio::test]
async fn a_proofs_key_binds_the_tokens_and_a_public_clients_family() {
    use super::super::dpop::Jkt;
    let rig = Rig::new().await;
    let policy = ThrottlePolicy::default();
    let grants = rig.oauth.tokens();
    let client = rig
        .client(
            "tv",
            &[
                GrantType::AuthorizationCode,
                GrantType::RefreshToken,
                GrantType::DeviceCode,
            ],
            false,
        )
        .await;
    let key = Jkt::parse("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs").unwrap();
    let other = Jkt::parse("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I").unwrap();
    let bound_to = |t: &TokenResponse| {
        let t = t.access_token.clone();
        let oauth = &rig.oauth;
        async move {
            let c = oauth.active_access_token(&t).await.unwrap().unwrap();
            c.dpop_jkt().map(str::to_owned)
        }
    };

    // The device grant.
    let auth = rig
        .oauth
        .device_authorization(&client, Some("openid offline_access"), None)
        .await
        .unwrap();
    let pending = rig
        .oauth
        .pending_device(&auth.user_code.display())
        .await
        .unwrap()
        .unwrap();
    assert!(
        rig.oauth
            .decide_device(&pending, rig.signed_in_at(rig.clock.now()), true)
            .await
            .unwrap()
    );
    rig.clock.advance(5);
    let request = TokenRequest::DeviceCode {
        device_code: auth.device_code.expose().to_owned(),
    };
    let tokens = grants
        .grant(&client, &request, &policy, Some(&key))
        .await
        .unwrap();
    assert!(tokens.dpop_bound);
    assert_eq!(tokens.to_json()["token_type"], "DPoP");
    assert_eq!(bound_to(&tokens).await.as_deref(), Some(key.as_str()));
    assert_eq!(
        rig.family_of(&tokens).await.dpop_jkt.as_deref(),
        Some(key.as_str())
    );

    // Its refresh token: only with the same key, and refused before it is spent.
    let refresh = |proof: Option<Jkt>, rt: String| {
        let grants = rig.oauth.tokens();
        let policy = policy.clone();
        let client = client.clone();
        async move {
            let request = TokenRequest::RefreshToken {
                refresh_token: rt,
                scope: None,
            };
            grants
                .grant(&client, &request, &policy, proof.as_ref())
                .await
        }
    };
    let rt = tokens.refresh_token.clone().unwrap();
    for proof in [None, Some(other.clone())] {
        assert_eq!(
            invalid_grant(refresh(proof, rt.clone()).await),
            "the refresh token is bound to another DPoP key"
        );
    }
    let refreshed = refresh(Some(key.clone()), rt).await.unwrap();
    assert_eq!(bound_to(&refreshed).await.as_deref(), Some(key.as_str()));

    // The code grant, with another key: that one binds.
    let code = rig.code(&client, "openid offline_access").await;
    let request = TokenRequest::AuthorizationCode {
        code,
        redirect_uri: Some(REDIRECT.into()),
        code_verifier: Some(VERIFIER.into()),
    };
    let tokens = grants
        .grant(&client, &request, &policy, Some(&other))
        .await
        .unwrap();
    assert_eq!(bound_to(&tokens).await.as_deref(), Some(other.as_str()));
    assert_eq!(
        rig.family_of(&tokens).await.dpop_jkt.as_deref(),
        Some(other.as_str())
    );
    // Without a proof nothing is bound.
    let code = rig.code(&client, "openid offline_access").await;
    let request = TokenRequest::AuthorizationCode {
        code,
        redirect_uri: Some(REDIRECT.into()),
        code_verifier: Some(VERIFIER.into()),
    };
    let tokens = grants
        .grant(&client, &request, &policy, None)
        .await
        .unwrap();
    assert!(!tokens.dpop_bound);
    assert_eq!(bound_to(&tokens).await, None);
    assert_eq!(rig.family_of(&tokens).await.dpop_jkt, None);
}
