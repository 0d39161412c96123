//! Access-token verification (SECURITY.md #47, #50; §2 #1-#5).
//!
//! Two modes, chosen by the first byte:
//! - even: the rest is a token presented as is. Nobody but the key holder can sign, so it must
//!   never verify, whatever its header, claims or signature say.
//! - odd: the rest is `header JSON 0xFF claims JSON`; the target signs it with one of the ring's
//!   keys (the second byte picks which; `$kid` in the header becomes that key's id) and checks
//!   that whatever verifies has the right `typ`, `alg`, `kid`, issuer and times.

#![no_main]

use std::sync::OnceLock;

use authx_core::Timestamp;
use authx_core::oauth::jwt::{
    MAX_JWT_LEN, is_access_token_typ, signature_valid, verify_access_token,
};
use authx_core::oauth::keys::{KeyEncryptor, KeyRing, KeyState, SigningAlg, generate};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;

const ISSUER: &str = "https://id.example.com";
const NOW: Timestamp = Timestamp(1_700_000_000);
const LEEWAY: i64 = 60;
const ALGS: [SigningAlg; 3] = [SigningAlg::Es256, SigningAlg::EdDsa, SigningAlg::Rs256];

fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        let enc = KeyEncryptor::new(&[7u8; 32]).expect("a 32-byte key");
        let keys: Vec<_> = ALGS
            .iter()
            .map(|alg| {
                let mut k = generate(*alg, &enc, Timestamp(0)).expect("key generation");
                k.state = KeyState::Active;
                k
            })
            .collect();
        KeyRing::load(&keys, &enc).expect("the ring loads")
    })
}

fn presented(token: &str) {
    let ring = ring();
    assert!(
        verify_access_token(token, ring, ISSUER, NOW, LEEWAY).is_none(),
        "an unsigned token verified: {token:.200}"
    );
    if let Some((input, sig)) = token.rsplit_once('.') {
        for alg in ALGS {
            let signer = ring.signer(alg).expect("an active key per algorithm");
            let v = ring.verifier(signer.kid()).expect("its verifier");
            assert!(!signature_valid(v, input.as_bytes(), sig));
        }
    }
}

fn signed(alg_pick: u8, header: &[u8], claims: &[u8]) {
    let ring = ring();
    let alg = ALGS[usize::from(alg_pick) % ALGS.len()];
    let signer = ring.signer(alg).expect("an active key per algorithm");
    let header = String::from_utf8_lossy(header).replace("$kid", signer.kid());
    let mut token = URL_SAFE_NO_PAD.encode(header.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims));
    let sig = signer.sign(token.as_bytes()).expect("signing");
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(sig));

    let Some(c) = verify_access_token(&token, ring, ISSUER, NOW, LEEWAY) else {
        return;
    };
    assert!(token.len() <= MAX_JWT_LEN);
    // The header as plain JSON, read apart from the verifier's own parser.
    let h: serde_json::Value = serde_json::from_str(&header).expect("a verified header is JSON");
    assert!(
        h["typ"].as_str().is_some_and(is_access_token_typ),
        "typ {:?}",
        h["typ"]
    );
    assert_eq!(h["alg"].as_str(), Some(alg.as_str()));
    assert_eq!(h["kid"].as_str(), Some(signer.kid()));
    assert!(h.get("crit").is_none_or(serde_json::Value::is_null), "crit {:?}", h["crit"]);
    assert_eq!(c.iss, ISSUER);
    assert!(
        c.exp.saturating_add(LEEWAY) > NOW.secs() && c.iat.saturating_sub(LEEWAY) <= NOW.secs()
    );
    // The claims came from the signed payload and from nowhere else.
    let payload: serde_json::Value = serde_json::from_slice(claims).expect("verified JSON");
    assert_eq!(payload["sub"].as_str(), Some(c.sub.as_str()));
    assert_eq!(payload["aud"].as_str(), Some(c.aud.as_str()));
    assert_eq!(payload["exp"].as_i64(), Some(c.exp));
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(token) = std::str::from_utf8(rest) {
            presented(token);
        }
    } else {
        let Some((&alg_pick, rest)) = rest.split_first() else {
            return;
        };
        let mut parts = rest.splitn(2, |b| *b == 0xff);
        let header = parts.next().unwrap_or_default();
        let claims = parts.next().unwrap_or_default();
        signed(alg_pick, header, claims);
    }
});
