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
