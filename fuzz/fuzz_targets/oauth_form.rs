//! OAuth form and query decoding (SECURITY.md #36, #37, #68; §2 #8, #17, #19): repeated,
//! empty and oversized parameters, credentials in the query string, Basic and body credentials
//! together, and the value parsers that the endpoints apply next.
//!
//! Input: `body 0xFF query 0xFF authorization 0xFF content-type`; missing parts are absent
//! (the content type defaults to the form type).

#![no_main]

use authx_core::oauth::client::validate_redirect_uri;
use authx_core::oauth::device::UserCode;
use authx_core::oauth::pkce;
use authx_core::oauth::scope::Scopes;
use authx_core::oauth::types::ClientAuth;
use authx_server::web::form::{Params, read_form};
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |b| *b == 0xff);
    let body = parts.next().unwrap_or_default();
    let query = parts
        .next()
        .map(|q| String::from_utf8_lossy(q).into_owned());
    let authorization = parts.next();
    let content_type = parts.next();

    let mut headers = HeaderMap::new();
    let ct = content_type.unwrap_or(b"application/x-www-form-urlencoded");
    if let Ok(v) = HeaderValue::from_bytes(ct) {
        headers.insert(CONTENT_TYPE, v);
    }
    if let Some(a) = authorization {
        if let Ok(v) = HeaderValue::from_bytes(a) {
            headers.insert(AUTHORIZATION, v);
        }
    }

    // The decoder: empty values are absent, and every repeat of a non-empty value is reported.
    let p = Params::parse(body);
    let mut seen = std::collections::HashSet::new();
    let mut repeats = 0;
    for (k, v) in form_urlencoded::parse(body) {
        if v.is_empty() {
            continue;
        }
        assert!(p.get(&k).is_some_and(|got| !got.is_empty()));
        if !seen.insert(k.into_owned()) {
            repeats += 1;
        }
    }
    assert_eq!(p.repeated().len(), repeats);

    match read_form(&headers, query.as_deref(), body) {
        Ok((p, auth, basic)) => {
            assert!(p.repeated().is_empty(), "a repeated parameter was accepted");
            for (k, v) in form_urlencoded::parse(body) {
                assert!(
                    v.is_empty() || (k.len() <= 64 && v.len() <= 4096),
                    "an oversized parameter"
                );
            }
            let q = Params::parse(query.as_deref().unwrap_or_default().as_bytes());
            assert!(q.get("client_secret").is_none() && q.get("client_assertion").is_none());
            assert_eq!(basic, headers.contains_key(AUTHORIZATION));
            match auth {
                ClientAuth::Secret { id, .. } => {
                    if !basic {
                        assert_eq!(p.get("client_id"), Some(id.as_str()));
                    }
                }
                ClientAuth::Public { id } => {
                    assert!(!basic && p.get("client_secret").is_none());
                    assert_eq!(p.get("client_id"), Some(id.as_str()));
                }
                ClientAuth::Assertion { id, assertion, .. } => {
                    assert!(!basic && p.get("client_secret").is_none());
                    assert_eq!(p.get("client_id"), id.as_deref());
                    assert_eq!(p.get("client_assertion"), Some(assertion.as_str()));
                }
            }
            if basic {
                assert!(
                    p.get("client_secret").is_none(),
                    "two authentication methods"
                );
            }
            // What the endpoints decode next.
            if let Some(s) = p.get("scope") {
                let _ = Scopes::parse(s).map(|set| set.to_param());
            }
            if let Some(r) = p.get("redirect_uri") {
                let _ = validate_redirect_uri(r);
            }
            if let Some(v) = p.get("code_verifier") {
                let _ = pkce::is_valid_verifier(v);
            }
            if let Some(c) = p.get("user_code") {
                let _ = UserCode::normalize(c);
            }
        }
        Err(res) => {
            let status = res.status().as_u16();
            assert!(
                matches!(status, 400 | 401),
                "refused with {status}, not a client error"
            );
        }
    }
});
