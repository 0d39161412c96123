//! User-code normalisation (SECURITY.md #56; §2 #12, #17): what a person types on the device
//! page. Properties: never a panic; a result is 8 letters of the alphabet, equal to the input
//! with `-` and spaces removed and ASCII letters upper-cased, and a fixed point.

#![no_main]

use authx_core::oauth::device::{USER_CODE_ALPHABET, USER_CODE_LEN, UserCode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(typed) = std::str::from_utf8(data) else {
        return;
    };
    let Some(code) = UserCode::normalize(typed) else {
        return;
    };
    let canonical = code.as_str();
    assert_eq!(canonical.len(), USER_CODE_LEN);
    assert!(canonical.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)));
    let stripped: String = typed
        .chars()
        .filter(|c| *c != '-' && *c != ' ')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    assert_eq!(stripped, canonical);
    assert_eq!(UserCode::normalize(canonical).as_ref(), Some(&code));
    assert_eq!(UserCode::normalize(&code.display()).as_ref(), Some(&code));
    assert_eq!(
        UserCode::normalize(&canonical.to_ascii_lowercase()).as_ref(),
        Some(&code)
    );
});
