//! Email canonicalisation for registration and sign-in (SECURITY.md #17; §2 #15, #17).
//! Properties: never a panic; a result is at most 254 bytes with no white space, control or
//! invisible format character, has one `@` split into non-empty parts, and is a fixed point
//! (canonicalising it again changes nothing, so look-alikes reach one account).

#![no_main]

use authx_core::user::{MAX_EMAIL_LEN, canonical_email};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(canonical) = canonical_email(raw) else {
        return;
    };
    assert!(!canonical.is_empty() && canonical.len() <= MAX_EMAIL_LEN);
    assert!(
        !canonical.chars().any(|c| c.is_whitespace()
            || c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{FEFF}' | '\u{2060}'..='\u{2064}')),
        "{canonical:?}"
    );
    let (local, domain) = canonical.rsplit_once('@').expect("an @");
    assert!(!local.is_empty() && !domain.is_empty() && !domain.contains('@'));
    assert_eq!(
        canonical_email(&canonical).as_deref(),
        Ok(canonical.as_str()),
        "canonicalisation is not idempotent for {raw:?}"
    );
});
