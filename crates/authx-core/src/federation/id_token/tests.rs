use serde_json::json;

use super::*;
use crate::federation::account::UpstreamIdentity;
use crate::oauth::jwt::{at_hash, sign};
use crate::oauth::keys::{KeyEncryptor, Signer, SigningAlg, generate};

const ISS: &str = "https://idp.example.com";
const CLIENT: &str = "authx";
const NONCE: &str = "n-0S6_WzA2Mj";
const NOW: i64 = 1_700_000_000;

pub(crate) fn signer(alg: SigningAlg) -> Signer {
    let enc = KeyEncryptor::new(&[9u8; 32]).unwrap();
    let k = generate(alg, &enc, Timestamp(0)).unwrap();
    let pkcs8 = enc.open(&k.kid, &k.private_key_encrypted).unwrap();
    Signer::from_pkcs8(alg, &k.kid, &pkcs8).unwrap()
}

pub(crate) fn keys_of(signers: &[&Signer]) -> UpstreamKeys {
    UpstreamKeys::from_jwks(
        &json!({"keys": signers.iter().map(|s| s.public_jwk()).collect::<Vec<_>>()}),
    )
}

fn claims() -> Value {
    json!({
        "iss": ISS, "sub": "upstream-user-1", "aud": CLIENT, "exp": NOW + 300, "iat": NOW,
        "nonce": NONCE, "email": "Kate@Example.com", "email_verified": true,
    })
}

fn expected(access_token: Option<&str>) -> Expected<'_> {
    Expected {
        issuer: ISS,
        client_id: CLIENT,
        nonce: NONCE,
        access_token,
        now: Timestamp(NOW),
        leeway_secs: 60,
        max_age_secs: 600,
    }
}

fn with(mut c: Value, k: &str, v: Value) -> Value {
    c[k] = v;
    c
}

#[test]
fn a_good_token_verifies_with_every_algorithm() {
    for alg in [SigningAlg::Rs256, SigningAlg::Es256, SigningAlg::EdDsa] {
        let s = signer(alg);
        let token = sign(
            &s,
            "JWT",
            &with(claims(), "at_hash", json!(at_hash("AT", alg))),
        )
        .unwrap();
        let v = verify_id_token(&token, &keys_of(&[&s]), &expected(Some("AT"))).unwrap();
        assert_eq!(v.subject, "upstream-user-1");
        let id = UpstreamIdentity::from_token("acme", ISS, &v, "email", "email_verified");
        assert_eq!(id.email.as_deref(), Some("kate@example.com"));
        assert!(id.email_verified);
    }
}

#[test]
fn each_defect_is_refused() {
    let s = signer(SigningAlg::Es256);
    let other = signer(SigningAlg::Es256);
    let keys = keys_of(&[&s]);
    let cases: Vec<(Value, IdTokenError)> = vec![
        (
            with(claims(), "iss", json!("https://evil.example.com")),
            IdTokenError::Issuer,
        ),
        (
            with(claims(), "aud", json!("someone-else")),
            IdTokenError::Audience,
        ),
        (with(claims(), "aud", json!([])), IdTokenError::Audience),
        (
            with(claims(), "aud", json!([CLIENT, "other"])),
            IdTokenError::AuthorizedParty,
        ),
        (
            with(
                with(claims(), "aud", json!([CLIENT, "other"])),
                "azp",
                json!("other"),
            ),
            IdTokenError::AuthorizedParty,
        ),
        (
            with(claims(), "exp", json!(NOW - 61)),
            IdTokenError::Expired,
        ),
        (
            with(claims(), "exp", json!((NOW + 300).to_string())),
            IdTokenError::Malformed,
        ),
        (
            with(claims(), "iat", json!(NOW + 3600)),
            IdTokenError::IssuedAt,
        ),
        (
            with(claims(), "iat", json!(NOW - 7200)),
            IdTokenError::IssuedAt,
        ),
        (
            with(claims(), "nbf", json!(NOW + 3600)),
            IdTokenError::IssuedAt,
        ),
        (
            with(claims(), "nonce", json!("another")),
            IdTokenError::Nonce,
        ),
        (with(claims(), "nonce", Value::Null), IdTokenError::Nonce),
        (
            with(claims(), "at_hash", json!("AAAAAAAAAAAAAAAAAAAAAA")),
            IdTokenError::AtHash,
        ),
        (with(claims(), "sub", json!("")), IdTokenError::Subject),
    ];
    for (c, want) in cases {
        let token = sign(&s, "JWT", &c).unwrap();
        assert_eq!(
            verify_id_token(&token, &keys, &expected(Some("AT"))).unwrap_err(),
            want,
            "{c}"
        );
    }
    let mut no_nonce = claims();
    no_nonce.as_object_mut().unwrap().remove("nonce");
    let token = sign(&s, "JWT", &no_nonce).unwrap();
    assert_eq!(
        verify_id_token(&token, &keys, &expected(None)).unwrap_err(),
        IdTokenError::Nonce
    );

    // Signed by a key that is not the upstream's, but claiming its kid.
    let forged = sign(&other, "JWT", &claims()).unwrap();
    let good = sign(&s, "JWT", &claims()).unwrap();
    let mut parts: Vec<&str> = good.split('.').collect();
    let forged_sig = forged.split('.').nth(2).unwrap();
    parts[2] = forged_sig;
    assert_eq!(
        verify_id_token(&parts.join("."), &keys, &expected(None)).unwrap_err(),
        IdTokenError::Signature
    );
    assert_eq!(
        verify_id_token(&forged, &keys, &expected(None)).unwrap_err(),
        IdTokenError::UnknownKey
    );
    // An access token is not an ID token.
    let at = sign(&s, "at+jwt", &claims()).unwrap();
    assert_eq!(
        verify_id_token(&at, &keys, &expected(None)).unwrap_err(),
        IdTokenError::Malformed
    );
}

#[test]
fn hostile_headers_are_refused() {
    let s = signer(SigningAlg::Rs256);
    let keys = keys_of(&[&s]);
    let good = sign(&s, "JWT", &claims()).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let enc = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    for header in [
        json!({"alg": "none", "kid": s.kid()}),
        json!({"alg": "HS256", "kid": s.kid()}),
        // The header's algorithm must be the key's: an ES256 header on an RSA key fails.
        json!({"alg": "ES256", "kid": s.kid()}),
        json!({"alg": "RS256", "kid": "../../dev/null"}),
        json!({"alg": "RS256", "jwk": s.public_jwk()}),
    ] {
        let t = format!("{}.{}.{}", enc(header.clone()), parts[1], parts[2]);
        assert!(
            verify_id_token(&t, &keys, &expected(None)).is_err(),
            "{header}"
        );
    }
    assert_eq!(
        verify_id_token(&"a.b.c".repeat(2000), &keys, &expected(None)).unwrap_err(),
        IdTokenError::Malformed
    );
    assert_eq!(
        verify_id_token("", &keys, &expected(None)).unwrap_err(),
        IdTokenError::Malformed
    );
}

#[test]
fn key_sets_keep_only_usable_signature_keys() {
    let s = signer(SigningAlg::Es256);
    let mut no_alg = s.public_jwk();
    no_alg.as_object_mut().unwrap().remove("alg");
    let doc = json!({"keys": [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        {"kty": "RSA", "kid": "small", "n": "AQAB", "e": "AQAB"},
        with(s.public_jwk(), "use", json!("enc")),
        no_alg,
    ]});
    let keys = UpstreamKeys::from_jwks(&doc);
    assert_eq!(keys.len(), 1, "only the EC key without alg is usable");
    let token = sign(&s, "JWT", &claims()).unwrap();
    assert!(verify_id_token(&token, &keys, &expected(None)).is_ok());
    assert!(UpstreamKeys::from_jwks(&json!({"keys": "nope"})).is_empty());
}

#[test]
fn email_verified_must_be_a_boolean_true() {
    let s = signer(SigningAlg::Es256);
    let keys = keys_of(&[&s]);
    for (value, verified) in [
        (json!(true), true),
        (json!("true"), false),
        (json!(1), false),
        (json!(false), false),
    ] {
        let token = sign(&s, "JWT", &with(claims(), "email_verified", value)).unwrap();
        let v = verify_id_token(&token, &keys, &expected(None)).unwrap();
        let id = UpstreamIdentity::from_token("acme", ISS, &v, "email", "email_verified");
        assert_eq!(id.email_verified, verified);
    }
}
