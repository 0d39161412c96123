//! C2SP Wycheproof signature vectors through authx's own verification path (SECURITY.md §2 #3):
//! each vector's public key is turned into a JWK and imported with
//! [`authx_core::oauth::keys::verifier_from_jwk`], exactly as a key of the ring or of a JWK Set
//! is, and its signature is checked with [`authx_core::oauth::jwt::signature_valid`], the
//! primitive JWT verification uses under the key's one algorithm. A signature must verify
//! exactly when the vector says it is valid.
//!
//! Covered: ES256 (P-256, SHA-256, IEEE P1363 encoding as JWS uses), EdDSA (Ed25519) and RS256
//! (PKCS #1 v1.5, SHA-256, 2048 to 4096 bits). DER-encoded ECDSA signatures, which JWS never
//! uses, must all be refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use authx_core::oauth::jwt::signature_valid;
use authx_core::oauth::keys::{Verifier, verifier_from_jwk};
use authx_core::secret::b64url;
use serde_json::{Value, json};
use wycheproof::TestResult;

/// What a run over one vector file saw.
#[derive(Debug, Default)]
struct Tally {
    valid: usize,
    invalid: usize,
    acceptable: usize,
}

/// Checks one vector: `verifier` is `None` when the key itself was refused at import.
fn check(
    file: &str,
    tc_id: usize,
    result: TestResult,
    verifier: Option<&Verifier>,
    msg: &[u8],
    sig: &[u8],
    tally: &mut Tally,
) {
    let verified = verifier.is_some_and(|v| signature_valid(v, msg, &b64url(sig)));
    match result {
        TestResult::Valid => {
            tally.valid += 1;
            assert!(
                verified,
                "{file} tcId {tc_id}: a valid signature was refused"
            );
        }
        TestResult::Invalid => {
            tally.invalid += 1;
            assert!(
                !verified,
                "{file} tcId {tc_id}: an invalid signature verified"
            );
        }
        // Allowed either way (for example a weak but legal parameter); counted, not judged.
        TestResult::Acceptable => tally.acceptable += 1,
    }
}

/// The affine coordinates of an uncompressed SEC1 point (0x04 ‖ X ‖ Y) as a P-256 JWK.
fn p256_jwk(uncompressed: &[u8]) -> Value {
    assert_eq!(uncompressed.len(), 65, "P-256 uncompressed point");
    json!({
        "kty": "EC", "crv": "P-256", "alg": "ES256",
        "x": b64url(&uncompressed[1..33]), "y": b64url(&uncompressed[33..]),
    })
}

fn strip_zeros(n: &[u8]) -> &[u8] {
    let start = n.iter().position(|b| *b != 0).unwrap_or(n.len());
    &n[start..]
}

#[test]
fn es256_p1363_vectors() {
    use wycheproof::ecdsa::{TestName, TestSet};
    let file = "ecdsa_secp256r1_sha256_p1363";
    let set = TestSet::load(TestName::EcdsaSecp256r1Sha256P1363).unwrap();
    let mut tally = Tally::default();
    for group in &set.test_groups {
        let verifier = verifier_from_jwk(&p256_jwk(&group.key.key));
        for t in &group.tests {
            check(
                file,
                t.tc_id,
                t.result,
                verifier.as_ref(),
                &t.msg,
                &t.sig,
                &mut tally,
            );
        }
    }
    assert!(tally.valid > 100 && tally.invalid > 50, "{file}: {tally:?}");
    println!("{file}: {tally:?}");
}

#[test]
fn der_encoded_ecdsa_signatures_are_never_a_jws_signature() {
    use wycheproof::ecdsa::{TestName, TestSet};
    let set = TestSet::load(TestName::EcdsaSecp256r1Sha256).unwrap();
    let mut valid_der = 0;
    for group in &set.test_groups {
        let verifier = verifier_from_jwk(&p256_jwk(&group.key.key)).unwrap();
        for t in &group.tests {
            if t.result == TestResult::Valid {
                valid_der += 1;
            }
            assert!(
                !signature_valid(&verifier, &t.msg, &b64url(&t.sig)),
                "tcId {}: a DER signature verified as JWS",
                t.tc_id
            );
        }
    }
    assert!(valid_der > 10, "the DER file holds valid signatures");
}

#[test]
fn ed25519_vectors() {
    use wycheproof::eddsa::{TestName, TestSet};
    let file = "ed25519";
    let set = TestSet::load(TestName::Ed25519).unwrap();
    let mut tally = Tally::default();
    for group in &set.test_groups {
        let jwk = json!({
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "x": b64url(&group.key.pk),
        });
        let verifier = verifier_from_jwk(&jwk);
        for t in &group.tests {
            check(
                file,
                t.tc_id,
                t.result,
                verifier.as_ref(),
                &t.msg,
                &t.sig,
                &mut tally,
            );
        }
    }
    assert!(tally.valid > 10 && tally.invalid > 50, "{file}: {tally:?}");
    println!("{file}: {tally:?}");
}

#[test]
fn rs256_vectors() {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    for (file, name) in [
        ("rsa_signature_2048_sha256", TestName::Rsa2048Sha256),
        ("rsa_signature_3072_sha256", TestName::Rsa3072Sha256),
        ("rsa_signature_4096_sha256", TestName::Rsa4096Sha256),
    ] {
        let set = TestSet::load(name).unwrap();
        let mut tally = Tally::default();
        for group in &set.test_groups {
            let jwk = json!({
                "kty": "RSA", "alg": "RS256",
                "n": b64url(strip_zeros(&group.key.n)), "e": b64url(strip_zeros(&group.key.e)),
            });
            let verifier = verifier_from_jwk(&jwk);
            assert!(verifier.is_some(), "{file}: key refused");
            for t in &group.tests {
                check(
                    file,
                    t.tc_id,
                    t.result,
                    verifier.as_ref(),
                    &t.msg,
                    &t.sig,
                    &mut tally,
                );
            }
        }
        assert!(tally.valid > 5 && tally.invalid > 50, "{file}: {tally:?}");
        println!("{file}: {tally:?}");
    }
}

/// A key of one algorithm never verifies as another: the ES256 vectors' valid signatures under
/// the same key material declared with another `alg` are refused at import.
#[test]
fn a_key_declared_for_another_algorithm_is_not_imported() {
    use wycheproof::ecdsa::{TestName, TestSet};
    let set = TestSet::load(TestName::EcdsaSecp256r1Sha256P1363).unwrap();
    let group = &set.test_groups[0];
    let mut jwk = p256_jwk(&group.key.key);
    for alg in ["RS256", "EdDSA", "HS256", "none", "es256", "ES384"] {
        jwk["alg"] = alg.into();
        assert!(verifier_from_jwk(&jwk).is_none(), "{alg}");
    }
}
