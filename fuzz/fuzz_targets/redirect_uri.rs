//! Redirect URI registration rules and matching (SECURITY.md #23, #25; §2 #7).
//!
//! Input: `registered \n presented` (UTF-8). Properties: never a panic; a confidential client
//! matches only a byte-equal URI; a native client may differ only in the port of a loopback IP
//! literal; nothing accepted at registration has a fragment, wildcard, backslash, user
//! information, white space or a scheme other than https (http for loopback IPs).

#![no_main]

use authx_core::Timestamp;
use authx_core::oauth::client::{Client, GrantType, TokenEndpointAuthMethod, validate_redirect_uri};
use authx_core::oauth::keys::SigningAlg;
use authx_core::secret::TokenHash;
use libfuzzer_sys::fuzz_target;

fn client(registered: &str, public: bool) -> Client {
    Client {
        id: "app".into(),
        name: "App".into(),
        secret_hash: (!public).then(|| TokenHash::of(b"secret")),
        token_endpoint_auth_method: if public {
            TokenEndpointAuthMethod::None
        } else {
            TokenEndpointAuthMethod::ClientSecretBasic
        },
        jwks: None,
        jwks_uri: None,
        dpop_bound_access_tokens: false,
        redirect_uris: vec![registered.to_owned()],
        post_logout_redirect_uris: vec![],
        backchannel_logout_uri: None,
        grant_types: vec![GrantType::AuthorizationCode],
        scopes: vec![],
        resources: vec![],
        first_party: false,
        require_pushed_authorization_requests: false,
        require_acr: None,
        id_token_alg: SigningAlg::Rs256,
        access_token_ttl_secs: 900,
        refresh_token_ttl_secs: 86_400,
        refresh_idle_secs: 86_400,
        created_at: Timestamp(0),
    }
}

/// `uri` without the port of its authority, for comparing loopback redirects.
fn without_port(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("http://")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = if authority.starts_with('[') {
        &authority[..=authority.find(']')?]
    } else {
        authority.split(':').next()?
    };
    Some(format!("http://{host}{tail}"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (registered, presented) = text.split_once('\n').unwrap_or((text, text));

    if validate_redirect_uri(registered).is_ok() {
        let (scheme, rest) = registered.split_once("://").expect("an absolute URI");
        assert!(scheme == "https" || scheme == "http", "{registered:?}");
        for bad in ['#', '*', '\\'] {
            assert!(!registered.contains(bad), "{registered:?}");
        }
        assert!(
            !registered
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        );
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        assert!(
            !authority.is_empty() && !authority.contains('@'),
            "{registered:?}"
        );
    }

    let confidential = client(registered, false);
    assert!(confidential.redirect_uri_matches(registered));
    assert_eq!(
        confidential.redirect_uri_matches(presented),
        registered == presented,
        "{registered:?} vs {presented:?}"
    );

    let native = client(registered, true);
    if native.redirect_uri_matches(presented) && registered != presented {
        // Only the port of a loopback IP literal may differ.
        let (r, p) = (without_port(registered), without_port(presented));
        assert!(r.is_some() && r == p, "{registered:?} vs {presented:?}");
        let host = r.as_deref().unwrap_or_default()["http://".len()..]
            .split(['/', '?'])
            .next()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>();
        assert!(host.is_ok_and(|ip| ip.is_loopback()), "{registered:?}");
    }
});
