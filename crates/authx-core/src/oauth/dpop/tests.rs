use serde_json::{Value, json};

use super::*;
use crate::oauth::keys::{KeyEncryptor, Signer, SigningAlg, generate};

const URL: &str = "https://id.example.com/oauth2/token";
const NOW: i64 = 1_000_000;

/// A client's key pair: a signer and its public JWK.
fn key(alg: SigningAlg) -> Signer {
    let enc = KeyEncryptor::new(&[5u8; 32]).unwrap();
    let k = generate(alg, &enc, Timestamp(0)).unwrap();
    let pkcs8 = enc.open(&k.kid, &k.private_key_encrypted).unwrap();
    Signer::from_pkcs8(alg, &k.kid, &pkcs8).unwrap()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// `header` and `claims` signed by `signer`.
fn signed(signer: &Signer, header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let sig = signer.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn header(signer: &Signer) -> Value {
    json!({"typ": "dpop+jwt", "alg": signer.alg().as_str(), "jwk": signer.public_jwk()})
}

fn claims() -> Value {
    json!({"jti": "proof-1", "htm": "POST", "htu": URL, "iat": NOW})
}

fn request() -> ProofRequest<'static> {
    ProofRequest {
        method: "POST",
        url: URL,
        access_token: None,
    }
}

fn verify(proof: &str, req: &ProofRequest<'_>) -> Result<VerifiedProof, DpopError> {
    verify_proof(proof, req, Timestamp(NOW), &ProofPolicy::default())
}

fn refused(proof: &str, req: &ProofRequest<'_>) -> &'static str {
    match verify(proof, req) {
        Err(DpopError::InvalidProof(why)) => why,
        other => panic!("accepted or wrong error: {other:?}"),
    }
}

#[test]
fn a_proof_by_each_algorithm_verifies_and_names_its_key() {
    for alg in [SigningAlg::Es256, SigningAlg::EdDsa, SigningAlg::Rs256] {
        let k = key(alg);
        let p = verify(&signed(&k, &header(&k), &claims()), &request()).unwrap();
        assert_eq!(p.jti, "proof-1");
        assert_eq!(p.iat, NOW);
        assert_eq!(
            Some(&p.jkt),
            thumbprint(&k.public_jwk()).as_ref(),
            "{alg:?}"
        );
        assert!(Jkt::parse(p.jkt.as_str()).is_some());
    }
}

/// RFC 7638 §3.1's example key and thumbprint.
#[test]
fn the_thumbprint_is_rfc_7638s() {
    let jwk = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    });
    assert_eq!(
        thumbprint(&jwk).unwrap().as_str(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
    let mut private = jwk;
    private["d"] = json!("secret");
    assert!(thumbprint(&private).is_none());
}

#[test]
fn the_header_must_be_a_dpop_proof_by_an_asymmetric_public_key() {
    let k = key(SigningAlg::Es256);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut h = header(&k);
        f(&mut h);
        signed(&k, &h, &claims())
    };
    assert_eq!(
        refused(&with(&|h| h["typ"] = json!("JWT")), &request()),
        "typ must be dpop+jwt"
    );
    assert_eq!(
        refused(&with(&|h| h["alg"] = json!("ES384")), &request()),
        "the algorithm is not accepted"
    );
    assert_eq!(
        refused(&with(&|h| h["jwk"]["d"] = json!("c2VjcmV0")), &request()),
        "the header's jwk holds a private key"
    );
    assert_eq!(
        refused(&with(&|h| h["crit"] = json!(["b64"])), &request()),
        "no critical header is understood"
    );
    // The key must fit the algorithm: an EC key named EdDSA, an RSA key, no key at all.
    assert_eq!(
        refused(&with(&|h| h["alg"] = json!("EdDSA")), &request()),
        "the header's jwk does not fit the algorithm"
    );
    assert_eq!(
        refused(&with(&|h| h["jwk"]["crv"] = json!("P-384")), &request()),
        "the header's jwk does not fit the algorithm"
    );
    assert_eq!(
        refused(
            &with(&|h| {
                h.as_object_mut().unwrap().remove("jwk");
            }),
            &request()
        ),
        "the header does not decode"
    );
}

#[test]
fn none_and_hmac_proofs_are_refused() {
    let k = key(SigningAlg::Es256);
    let mut h = header(&k);
    h["alg"] = json!("none");
    let unsigned = format!("{}.{}.", b64(&h), b64(&claims()));
    assert_eq!(
        refused(&unsigned, &request()),
        "the algorithm is not accepted"
    );
    let unsigned = format!("{}.{}.AAAA", b64(&h), b64(&claims()));
    assert_eq!(
        refused(&unsigned, &request()),
        "the algorithm is not accepted"
    );
    // HS256 under a symmetric key the attacker chose, in the header.
    let secret = b"attacker chosen secret";
    let h = json!({"typ": "dpop+jwt", "alg": "HS256",
        "jwk": {"kty": "oct", "k": URL_SAFE_NO_PAD.encode(secret)}});
    let input = format!("{}.{}", b64(&h), b64(&claims()));
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
    let hs = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    assert_eq!(refused(&hs, &request()), "the algorithm is not accepted");
}

#[test]
fn a_signature_by_another_key_or_over_other_claims_is_refused() {
    let (k, other) = (key(SigningAlg::Es256), key(SigningAlg::Es256));
    // Signed by `other`, with `k`'s public key in the header.
    let forged = signed(&other, &header(&k), &claims());
    assert_eq!(
        refused(&forged, &request()),
        "the signature does not verify"
    );
    // Claims swapped after signing.
    let good = signed(&k, &header(&k), &claims());
    let mut parts: Vec<&str> = good.split('.').collect();
    let mut c = claims();
    c["jti"] = json!("proof-2");
    let swapped = b64(&c);
    parts[1] = &swapped;
    assert_eq!(
        refused(&parts.join("."), &request()),
        "the signature does not verify"
    );
}

#[test]
fn the_proof_must_be_for_this_request_and_recent() {
    let k = key(SigningAlg::EdDsa);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims();
        f(&mut c);
        signed(&k, &header(&k), &c)
    };
    assert_eq!(
        refused(&with(&|c| c["htm"] = json!("GET")), &request()),
        "htm is not the request's method"
    );
    assert_eq!(
        refused(&with(&|c| c["htm"] = json!("post")), &request()),
        "htm is not the request's method"
    );
    assert_eq!(
        refused(
            &with(&|c| c["htu"] = json!("https://id.example.com/oauth2/par")),
            &request()
        ),
        "htu is not the request's URL"
    );
    assert_eq!(
        refused(
            &with(&|c| c["htu"] = json!("https://evil.example/oauth2/token")),
            &request()
        ),
        "htu is not the request's URL"
    );
    assert_eq!(
        refused(&with(&|c| c["iat"] = json!(NOW - 66)), &request()),
        "the proof is too old"
    );
    assert_eq!(
        refused(&with(&|c| c["iat"] = json!(NOW + 6)), &request()),
        "iat is in the future"
    );
    assert_eq!(
        refused(&with(&|c| c["iat"] = json!("1000000")), &request()),
        "the claims do not decode"
    );
    assert_eq!(
        refused(
            &with(&|c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
            &request()
        ),
        "the claims do not decode"
    );
    assert_eq!(
        refused(&with(&|c| c["jti"] = json!("j".repeat(257))), &request()),
        "jti is missing or too long"
    );
    // Within the window, either way.
    assert!(verify(&with(&|c| c["iat"] = json!(NOW - 60)), &request()).is_ok());
    assert!(verify(&with(&|c| c["iat"] = json!(NOW + 5)), &request()).is_ok());
}

#[test]
fn htu_is_compared_after_normalisation() {
    let k = key(SigningAlg::Es256);
    for htu in [
        "HTTPS://ID.example.COM/oauth2/token",
        "https://id.example.com:443/oauth2/token",
        "https://id.example.com/oauth2/token?x=1#frag",
        "https://id.example.com/oauth2/./token",
    ] {
        let mut c = claims();
        c["htu"] = json!(htu);
        assert!(
            verify(&signed(&k, &header(&k), &c), &request()).is_ok(),
            "{htu}"
        );
    }
    for htu in [
        "http://id.example.com/oauth2/token",
        "https://id.example.com:8443/oauth2/token",
        "https://id.example.com/OAUTH2/token",
        "https://id.example.com/oauth2/token/",
        "/oauth2/token",
        "ftp://id.example.com/oauth2/token",
    ] {
        let mut c = claims();
        c["htu"] = json!(htu);
        assert_eq!(
            refused(&signed(&k, &header(&k), &c), &request()),
            "htu is not the request's URL",
            "{htu}"
        );
    }
    assert_eq!(
        normalize_htu("https://user:pw@Example.com:443/a/../b?q#f").as_deref(),
        Some("https://example.com/b")
    );
    assert_eq!(
        normalize_htu("http://example.com:80").as_deref(),
        Some("http://example.com/")
    );
}

#[test]
fn a_proof_with_a_token_must_carry_its_hash() {
    let k = key(SigningAlg::Es256);
    let token = "the.access.token";
    let req = ProofRequest {
        method: "GET",
        url: "https://api.example.com/orders",
        access_token: Some(token),
    };
    let mut c = json!({"jti": "p", "htm": "GET", "htu": req.url, "iat": NOW});
    assert_eq!(
        refused(&signed(&k, &header(&k), &c), &req),
        "ath is not the access token's hash"
    );
    c["ath"] = json!(access_token_hash("another.access.token"));
    assert_eq!(
        refused(&signed(&k, &header(&k), &c), &req),
        "ath is not the access token's hash"
    );
    c["ath"] = json!(access_token_hash(token));
    assert!(verify(&signed(&k, &header(&k), &c), &req).is_ok());
}

#[test]
fn oversized_or_malformed_proofs_are_refused_unread() {
    let k = key(SigningAlg::Es256);
    let good = signed(&k, &header(&k), &claims());
    for bad in [
        String::new(),
        "x".repeat(MAX_PROOF_LEN + 1),
        good.replace('.', ""),
        format!("{good}.x"),
        format!("é{good}"),
    ] {
        assert_eq!(refused(&bad, &request()), "not a compact JWS of sane size");
    }
}

#[test]
fn nonces_rotate_by_window_and_are_the_same_on_every_instance() {
    let (a, b) = (DpopNonces::new(&[1u8; 32]), DpopNonces::new(&[1u8; 32]));
    let other = DpopNonces::new(&[2u8; 32]);
    let t = Timestamp(NONCE_WINDOW_SECS * 1000);
    let n = a.current(t);
    assert_eq!(n, b.current(t));
    assert!(b.is_valid(&n, t));
    assert!(!other.is_valid(&n, t));
    // Accepted in its window and the next, not after, and not before it was issued.
    assert!(a.is_valid(&n, Timestamp(t.secs() + NONCE_WINDOW_SECS)));
    assert!(!a.is_valid(&n, Timestamp(t.secs() + 2 * NONCE_WINDOW_SECS)));
    assert!(!a.is_valid(&n, Timestamp(t.secs() - 1)));
    assert_ne!(n, a.current(Timestamp(t.secs() + NONCE_WINDOW_SECS)));
    assert!(!a.is_valid("", t));
}

#[test]
fn a_client_jkt_parameter_must_be_a_thumbprint() {
    assert!(Jkt::parse("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs").is_some());
    for bad in [
        "",
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9X",
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs=",
        "NzbLsXh8uDCcd+6MNwXF4W/7noWXFZAfHkxZsRGC9Xs",
    ] {
        assert!(Jkt::parse(bad).is_none(), "{bad}");
    }
}

/// PS256 (RSASSA-PSS), which authx does not sign with but accepts in proofs.
#[test]
fn a_ps256_proof_verifies_and_an_rs256_signature_under_ps256_does_not() {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{self, KeyPair as _, RsaKeyPair};
    let kp = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let pk = kp.public_key();
    let jwk = json!({
        "kty": "RSA",
        "n": crate::secret::b64url(pk.modulus().big_endian_without_leading_zero()),
        "e": crate::secret::b64url(pk.exponent().big_endian_without_leading_zero()),
    });
    let sign = |alg: &str, padding: &'static dyn signature::RsaEncoding| {
        let h = json!({"typ": "dpop+jwt", "alg": alg, "jwk": jwk});
        let input = format!("{}.{}", b64(&h), b64(&claims()));
        let mut sig = vec![0u8; kp.public_modulus_len()];
        kp.sign(padding, &SystemRandom::new(), input.as_bytes(), &mut sig)
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    };
    let p = verify(&sign("PS256", &signature::RSA_PSS_SHA256), &request()).unwrap();
    assert_eq!(Some(p.jkt), thumbprint(&jwk));
    assert!(verify(&sign("RS256", &signature::RSA_PKCS1_SHA256), &request()).is_ok());
    assert_eq!(
        refused(&sign("PS256", &signature::RSA_PKCS1_SHA256), &request()),
        "the signature does not verify"
    );
}
