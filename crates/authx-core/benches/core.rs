//! Micro-benchmarks of the core operations behind every request: session token handling, JWT
//! signing and verification per algorithm, Argon2id at the default parameters, and the raw
//! aws-lc-rs signing rates that the token endpoint is compared against (see BENCHMARKS.md).
//!
//! `cargo bench -p authx-core --bench core`; each group runs for a few seconds only.

#![allow(clippy::expect_used)] // A benchmark that cannot set itself up has nothing to measure.

use std::hint::black_box;
use std::time::Duration;

use authx_core::Timestamp;
use authx_core::oauth::jwt::{ACCESS_TOKEN_TYP, AccessTokenClaims, sign, verify_access_token};
use authx_core::oauth::keys::{KeyEncryptor, KeyRing, KeyState, SigningAlg, generate};
use authx_core::password::{HashParams, PasswordHasher, Verified};
use authx_core::secret::{SessionToken, TokenHash};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use criterion::{Criterion, Throughput};

const ISSUER: &str = "http://127.0.0.1:8080";
const NOW: Timestamp = Timestamp(1_700_000_000);
const ALGS: [SigningAlg; 3] = [SigningAlg::Es256, SigningAlg::EdDsa, SigningAlg::Rs256];

/// A ring holding one active key of `alg`, built the way the server builds it.
fn ring(alg: SigningAlg) -> KeyRing {
    let enc = KeyEncryptor::new(&[9u8; 32]).expect("key-encryption key");
    let mut key = generate(alg, &enc, NOW).expect("generate key");
    key.state = KeyState::Active;
    key.activated_at = Some(NOW);
    KeyRing::load(&[key], &enc).expect("load ring")
}

/// Claims shaped like a client-credentials access token.
fn claims() -> AccessTokenClaims {
    AccessTokenClaims {
        iss: ISSUER.to_owned(),
        sub: "client:bench-worker".to_owned(),
        aud: "urn:authx:bench-api".to_owned(),
        exp: NOW.plus(900).secs(),
        iat: NOW.secs(),
        jti: "0123456789abcdefghijkl".to_owned(),
        client_id: "bench-worker".to_owned(),
        scope: "read".to_owned(),
        sid: None,
        fid: None,
        auth_time: None,
        acr: None,
        cnf: None,
    }
}

fn session_tokens(c: &mut Criterion) {
    let mut g = c.benchmark_group("session");
    g.throughput(Throughput::Elements(1));
    g.bench_function("token_generate_and_hash", |b| {
        b.iter(|| {
            let t = SessionToken::generate();
            black_box(t.hash())
        });
    });
    let cookie = SessionToken::generate().expose().to_owned();
    g.bench_function("sha256_of_cookie", |b| {
        b.iter(|| black_box(TokenHash::of(black_box(cookie.as_bytes()))));
    });
    // What a request with a cookie costs before any lookup: shape check, decode, hash.
    g.bench_function("parse_and_hash_cookie", |b| {
        b.iter(|| black_box(SessionToken::parse(black_box(&cookie)).map(|t| t.hash())));
    });
    g.finish();
}

fn jwt_sign(c: &mut Criterion) {
    let mut g = c.benchmark_group("jwt_sign");
    g.throughput(Throughput::Elements(1));
    let claims = claims();
    for alg in ALGS {
        let ring = ring(alg);
        let signer = ring.signer(alg).expect("active signer");
        g.bench_function(alg.as_str(), |b| {
            b.iter(|| black_box(sign(&signer, ACCESS_TOKEN_TYP, black_box(&claims))));
        });
    }
    g.finish();
}

fn jwt_verify(c: &mut Criterion) {
    let mut g = c.benchmark_group("jwt_verify");
    g.throughput(Throughput::Elements(1));
    for alg in ALGS {
        let ring = ring(alg);
        let signer = ring.signer(alg).expect("active signer");
        let token = sign(&signer, ACCESS_TOKEN_TYP, &claims()).expect("sign");
        assert!(verify_access_token(&token, &ring, ISSUER, NOW, 0).is_some());
        g.bench_function(alg.as_str(), |b| {
            b.iter(|| {
                black_box(verify_access_token(
                    black_box(&token),
                    &ring,
                    ISSUER,
                    NOW,
                    0,
                ))
            });
        });
    }
    g.finish();
}

/// The signature primitives alone, through aws-lc-rs as the key ring uses them: the ceiling
/// for token issuance on one core.
fn raw_signing(c: &mut Criterion) {
    let mut g = c.benchmark_group("raw_sign");
    g.throughput(Throughput::Elements(1));
    let rng = SystemRandom::new();
    // About the size of a JWS signing input of a client-credentials access token.
    let message = vec![b'a'; 300];

    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .expect("p-256 key");
    let ec = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .expect("p-256 parse");
    g.bench_function("ES256_aws_lc_rs", |b| {
        b.iter(|| black_box(ec.sign(&rng, black_box(&message)).map(|s| s.as_ref().len())));
    });
    // The verification of that signature alone: the floor of a resource server's check of a
    // JWT it has not seen (the guard's CPU budget is this plus 15 µs).
    let sig = ec.sign(&rng, &message).expect("p-256 sign");
    let public = signature::UnparsedPublicKey::new(
        &signature::ECDSA_P256_SHA256_FIXED,
        signature::KeyPair::public_key(&ec).as_ref().to_vec(),
    );
    g.bench_function("ES256_verify_aws_lc_rs", |b| {
        b.iter(|| black_box(public.verify(black_box(&message), sig.as_ref()).is_ok()));
    });

    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("ed25519 key");
    let ed = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("ed25519 parse");
    g.bench_function("EdDSA_aws_lc_rs", |b| {
        b.iter(|| black_box(ed.sign(black_box(&message)).as_ref().len()));
    });

    let rsa = RsaKeyPair::generate(KeySize::Rsa2048).expect("rsa key");
    let mut sig = vec![0u8; rsa.public_modulus_len()];
    g.bench_function("RS256_aws_lc_rs", |b| {
        b.iter(|| {
            rsa.sign(
                &signature::RSA_PKCS1_SHA256,
                &rng,
                black_box(&message),
                &mut sig,
            )
            .expect("rsa sign");
            black_box(sig[0])
        });
    });
    g.finish();
}

/// Argon2id through `PasswordHasher` at the default parameters (m=19 MiB, t=2, p=1), one at a
/// time: the single-core rate that sign-in is compared against.
fn argon2id(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let hasher =
        PasswordHasher::new(HashParams::default(), 1, Duration::from_secs(60)).expect("hasher");
    let password = "correct horse battery staple";
    let phc = rt.block_on(hasher.hash(password)).expect("hash");
    let mut g = c.benchmark_group("argon2id_default");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));
    g.bench_function("hash", |b| {
        b.iter(|| black_box(rt.block_on(hasher.hash(black_box(password)))));
    });
    g.bench_function("verify", |b| {
        b.iter(|| {
            let v = rt.block_on(hasher.verify(&phc, black_box(password)));
            assert!(matches!(v, Ok(Verified::Match { .. })));
        });
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

fn main() {
    let mut c = config().configure_from_args();
    session_tokens(&mut c);
    jwt_sign(&mut c);
    jwt_verify(&mut c);
    raw_signing(&mut c);
    argon2id(&mut c);
    c.final_summary();
}
