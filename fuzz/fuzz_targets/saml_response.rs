//! SAML response verification and exclusive C14N (issue 21; `authx_saml`).
//!
//! Input: the XML of a `samlp:Response` as the ACS receives it after base64 decoding.
//! Properties: never a panic (the parser, the depth pre-scan, C14N, signature checks and the
//! readers see hostile bytes first); a response verifies only if the pinned test IdP key
//! (crates/authx-saml/tests/data/idp-rsa.*) signed it (encrypted assertions are decrypted with
//! the committed SP key, tests/data/sp-rsa.key.pem), and what verifies names that IdP, a
//! non-empty NameID and an expiry still in the future; allowing response-only signatures never
//! turns an accepted response into a refused one; and exclusive C14N output is a fixed point
//! (canonicalizing it again gives the same bytes).

#![no_main]

use std::sync::OnceLock;

use authx_saml::{
    DecryptionKey, Expectations, Limits, PinnedKey, canonicalize_root, verify_response,
};
use libfuzzer_sys::fuzz_target;

const IDP: &str = "https://idp.example.org/metadata";
const NOW: i64 = 1_764_928_800;

fn keys() -> &'static [PinnedKey] {
    static KEYS: OnceLock<Vec<PinnedKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let pem = include_str!("../../crates/authx-saml/tests/data/idp-rsa.cert.pem");
        vec![PinnedKey::from_certificate_pem(pem).expect("the committed test certificate parses")]
    })
}

/// The SP's decryption key (crates/authx-saml/tests/data/sp-rsa.key.pem), so encrypted
/// assertions reach the decryption code.
fn decryption_keys() -> &'static [DecryptionKey] {
    static KEYS: OnceLock<Vec<DecryptionKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let pem = include_str!("../../crates/authx-saml/tests/data/sp-rsa.key.pem");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body)
            .expect("the committed test key is base64");
        vec![DecryptionKey::from_pkcs8(&der).expect("the committed test key parses")]
    })
}

fn expectations(allow_signed_response_only: bool) -> Expectations<'static> {
    Expectations {
        idp_entity_id: IDP,
        idp_keys: keys(),
        sp_entity_id: "https://authx.example.com/federation/saml/corp/metadata",
        acs_url: "https://authx.example.com/federation/saml/corp/acs",
        in_response_to: Some("_req-7c1e"),
        now: NOW,
        skew_seconds: 60,
        allow_signed_response_only,
        sp_decryption_keys: decryption_keys(),
        limits: Limits::default(),
    }
}

fuzz_target!(|data: &[u8]| {
    let strict = verify_response(data, &expectations(false));
    let lenient = verify_response(data, &expectations(true));
    if let Ok(v) = &strict {
        assert_eq!(v.issuer, IDP);
        assert!(!v.name_id.trim().is_empty());
        assert!(!v.assertion_id.is_empty());
        assert!(v.not_on_or_after > NOW - 60);
        assert_eq!(
            lenient.as_ref(),
            Ok(v),
            "allowing response-only signatures changed an accepted result"
        );
    }
    if let Ok(v) = &lenient {
        assert_eq!(v.issuer, IDP);
    }

    if let Ok(canonical) = canonicalize_root(data, &Limits::default()) {
        // Escaping can make the canonical form up to four times longer.
        let roomy = Limits {
            max_bytes: data.len() * 4 + 64,
            ..Limits::default()
        };
        let again = canonicalize_root(&canonical, &roomy);
        assert_eq!(
            again.as_deref(),
            Ok(&canonical[..]),
            "exclusive C14N is not a fixed point"
        );
    }
});
