//! DPoP proof verification (RFC 9449 §4.3; SECURITY.md 20.23): any bytes presented as a proof
//! are answered without a panic by the one verifier the provider and the guard share, whatever
//! the header, key, claims or size; and so is any string read as an `htu`.

#![no_main]

use authx_core::Timestamp;
use authx_core::oauth::dpop::{ProofPolicy, ProofRequest, normalize_htu, verify_proof};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let request = ProofRequest {
        method: "POST",
        url: "https://id.example.com/oauth2/token",
        access_token: None,
    };
    let _ = verify_proof(
        text,
        &request,
        Timestamp(1_700_000_000),
        &ProofPolicy::default(),
    );
    let _ = normalize_htu(text);
});
