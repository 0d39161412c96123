//! `ClientSpec` and resource rules.

use super::*;

fn spec() -> ClientSpec {
    ClientSpec {
        id: "app".into(),
        name: "App".into(),
        redirect_uris: vec!["https://app.example/cb".into()],
        grant_types: Vec::new(),
        scopes: Vec::new(),
        resources: Vec::new(),
        public: false,
        token_endpoint_auth_method: None,
        jwks: None,
        jwks_uri: None,
        dpop_bound_access_tokens: false,
        first_party: false,
        require_pushed_authorization_requests: false,
        require_acr: None,
        post_logout_redirect_uris: Vec::new(),
        backchannel_logout_uri: None,
        id_token_alg: None,
        access_token_ttl_secs: None,
        refresh_token_ttl_secs: None,
        refresh_idle_secs: None,
    }
}

#[test]
fn defaults_are_code_and_refresh_rs256_and_the_usual_lifetimes() {
    let (c, confidential) = spec().into_client().unwrap();
    assert!(confidential);
    assert_eq!(
        c.grant_types,
        vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
    );
    assert_eq!(c.id_token_alg, SigningAlg::Rs256);
    assert_eq!(c.access_token_ttl_secs, 900);
    assert_eq!(c.refresh_token_ttl_secs, 30 * 86_400);
    assert_eq!(c.refresh_idle_secs, 7 * 86_400);
}

#[test]
fn lifetimes_are_bounded_and_idle_never_exceeds_the_family() {
    for ttl in [59, 3601] {
        let s = ClientSpec {
            access_token_ttl_secs: Some(ttl),
            ..spec()
        };
        assert!(matches!(
            s.into_client(),
            Err(AdminError::InvalidRequest(_))
        ));
    }
    let s = ClientSpec {
        refresh_idle_secs: Some(59),
        ..spec()
    };
    assert!(matches!(
        s.into_client(),
        Err(AdminError::InvalidRequest(_))
    ));
    let s = ClientSpec {
        refresh_token_ttl_secs: Some(600),
        refresh_idle_secs: Some(3600),
        ..spec()
    };
    assert_eq!(s.into_client().unwrap().0.refresh_idle_secs, 600);
}

#[test]
fn unknown_grants_and_algorithms_are_named() {
    let s = ClientSpec {
        grant_types: vec!["password".into()],
        ..spec()
    };
    let e = s.into_client().unwrap_err().to_string();
    assert!(e.contains("\"password\""), "{e}");
    let s = ClientSpec {
        id_token_alg: Some("HS256".into()),
        public: true,
        ..spec()
    };
    assert!(s.into_client().unwrap_err().to_string().contains("HS256"));
    let s = ClientSpec {
        require_acr: Some("urn:example:loa:4".into()),
        ..spec()
    };
    assert!(
        s.into_client()
            .unwrap_err()
            .to_string()
            .contains("require_acr")
    );
    let s = ClientSpec {
        require_acr: Some("urn:authx:acr:mfa".into()),
        ..spec()
    };
    assert_eq!(
        s.into_client().unwrap().0.require_acr.as_deref(),
        Some("urn:authx:acr:mfa")
    );
}

#[test]
fn resource_ids_are_absolute_and_scopes_well_formed() {
    assert!(check_resource("https://api.example", &["read".into()]).is_ok());
    assert!(check_resource("urn:example:api", &[]).is_ok());
    for bad in ["api", "https://a b", &format!("urn:{}", "x".repeat(252))] {
        assert!(matches!(
            check_resource(bad, &[]),
            Err(AdminError::InvalidRequest(_))
        ));
    }
    assert!(matches!(
        check_resource("urn:api", &["bad\"scope".into()]),
        Err(AdminError::InvalidScope)
    ));
}
