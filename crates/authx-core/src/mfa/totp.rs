//! Time-based one-time passwords (RFC 6238) over HMAC-based ones (RFC 4226), with SHA-1.
//!
//! # Security
//! - The shared secret is 20 bytes (160 bits, the HMAC-SHA-1 block's natural key length,
//!   RFC 4226 §4 R6) from the OS CSPRNG; [`TotpSecret`] is redacted in `Debug`, has no
//!   `Display` and is not `Clone`.
//! - A presented code is compared with each candidate in constant time, and every candidate
//!   of the window is computed and compared whatever the outcome of the others, so the time
//!   taken says nothing about which step (or how many digits) matched.
//! - [`Totp::matching_step`] only finds the step a code belongs to; whether that step may still
//!   be accepted (RFC 6238 §5.2: a code is accepted at most once) is decided by the store's
//!   conditional update of the factor's last accepted step.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::clock::Timestamp;
use crate::secret::random_bytes;

/// Bytes of a generated secret (RFC 4226 §4 R6 asks for at least 128 bits; 160 recommended).
pub const SECRET_LEN: usize = 20;
/// Digits of the codes authx issues and accepts.
pub const DIGITS: u32 = 6;
/// Seconds per time step (RFC 6238 §5.2 recommends 30).
pub const PERIOD: i64 = 30;
/// Steps before and after the current one that are also accepted (clock drift, typing time).
pub const WINDOW: i64 = 1;

/// The shared secret of one authenticator: 20 random bytes.
pub struct TotpSecret(Vec<u8>);

impl TotpSecret {
    /// A fresh secret of [`SECRET_LEN`] bytes from the OS CSPRNG.
    #[must_use]
    pub fn generate() -> Self {
        Self(random_bytes::<SECRET_LEN>().to_vec())
    }

    /// A secret from stored (decrypted) bytes or a test vector.
    #[must_use]
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The raw bytes, to seal for storage.
    #[must_use]
    pub fn expose_bytes(&self) -> &[u8] {
        &self.0
    }

    /// RFC 4648 base32 without padding, upper case: what authenticator apps take as text and in
    /// the `secret` parameter of an `otpauth://` URI.
    #[must_use]
    pub fn to_base32(&self) -> String {
        base32(&self.0)
    }

    /// The secret from its base32 text as an authenticator app takes it (any case, spaces
    /// ignored); `None` for a character outside the alphabet.
    #[must_use]
    pub fn from_base32(text: &str) -> Option<Self> {
        let (mut buffer, mut bits, mut out) = (0u32, 0u32, Vec::new());
        for c in text.chars().filter(|c| !c.is_whitespace()) {
            let v = match c.to_ascii_uppercase() {
                u @ 'A'..='Z' => u32::from(u) - u32::from('A'),
                d @ '2'..='7' => u32::from(d) - u32::from('2') + 26,
                _ => return None,
            };
            buffer = (buffer << 5) | v;
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                out.push(u8::try_from((buffer >> bits) & 0xff).ok()?);
            }
        }
        Some(Self(out))
    }
}

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret([redacted])")
    }
}

#[cfg(test)]
mod base32_tests {
    use super::TotpSecret;

    #[test]
    fn base32_text_round_trips_in_any_case_and_grouping() {
        let s = TotpSecret::generate();
        let text = s.to_base32().to_lowercase();
        let grouped: Vec<String> = text
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        let back = TotpSecret::from_base32(&grouped.join(" ")).unwrap();
        assert_eq!(back.expose_bytes(), s.expose_bytes());
        assert!(TotpSecret::from_base32("ABC1").is_none());
    }
}

/// RFC 4648 §6 base32 of `bytes`, upper case, without padding.
#[must_use]
pub(crate) fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The time step (RFC 6238 §4.2: `T = floor((now - T0) / X)`, `T0 = 0`) of `now`.
#[must_use]
pub fn time_step(now: Timestamp, period: i64) -> i64 {
    now.0.div_euclid(period)
}

/// The RFC 4226 §5.3 value of `counter` under `key`, truncated to `digits` decimal digits.
#[must_use]
pub fn hotp(key: &[u8], counter: u64, digits: u32) -> u32 {
    // HMAC accepts a key of any length; the error type exists only for the trait's sake.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key) else {
        return u32::MAX;
    };
    mac.update(&counter.to_be_bytes());
    let hs = mac.finalize().into_bytes();
    // Dynamic truncation: the low nibble of the last byte picks four bytes.
    let offset = usize::from(hs[19] & 0x0f);
    let bin = u32::from_be_bytes([hs[offset], hs[offset + 1], hs[offset + 2], hs[offset + 3]])
        & 0x7fff_ffff;
    bin % 10u32.pow(digits)
}

/// A TOTP generator and checker: a secret with its parameters (SHA-1 always).
#[derive(Debug)]
pub struct Totp<'a> {
    secret: &'a TotpSecret,
    digits: u32,
    period: i64,
}

impl<'a> Totp<'a> {
    /// The parameters authx uses: [`DIGITS`] digits, [`PERIOD`]-second steps.
    #[must_use]
    pub fn new(secret: &'a TotpSecret) -> Self {
        Self::with_params(secret, DIGITS, PERIOD)
    }

    /// Other parameters (the RFC 6238 test vectors use 8 digits). `digits` is clamped to 6..=9
    /// and `period` to at least one second.
    #[must_use]
    pub fn with_params(secret: &'a TotpSecret, digits: u32, period: i64) -> Self {
        Self {
            secret,
            digits: digits.clamp(6, 9),
            period: period.max(1),
        }
    }

    /// The code of time step `step`, zero-padded to the digit count.
    #[must_use]
    pub fn code_at_step(&self, step: i64) -> String {
        let value = hotp(self.secret.expose_bytes(), step.max(0) as u64, self.digits);
        format!("{value:0width$}", width = self.digits as usize)
    }

    /// The code at time `now`.
    #[must_use]
    pub fn code_at(&self, now: Timestamp) -> String {
        self.code_at_step(time_step(now, self.period))
    }

    /// The time step in `now`'s window (±[`WINDOW`]) whose code is `code`, if any. Input that
    /// is not exactly the digit count of ASCII digits (spaces ignored) matches nothing.
    #[must_use]
    pub fn matching_step(&self, code: &str, now: Timestamp) -> Option<i64> {
        let typed = parse_code(code, self.digits)?;
        let current = time_step(now, self.period);
        let mut found = 0i64;
        let mut any = subtle::Choice::from(0);
        // Every candidate is computed and compared; none ends the loop early.
        for step in current - WINDOW..=current + WINDOW {
            let expected = hotp(self.secret.expose_bytes(), step.max(0) as u64, self.digits);
            let hit = expected.ct_eq(&typed);
            found = i64::conditional_select(&found, &step, hit);
            any |= hit;
        }
        bool::from(any).then_some(found)
    }
}

/// The value of a typed code of `digits` digits (spaces between them allowed), or `None`.
fn parse_code(code: &str, digits: u32) -> Option<u32> {
    let mut value = 0u32;
    let mut count = 0u32;
    for c in code.chars().filter(|c| *c != ' ') {
        // `to_digit` knows only ASCII digits: other scripts' digits match nothing.
        let d = c.to_digit(10)?;
        count += 1;
        if count > digits {
            return None;
        }
        value = value * 10 + d;
    }
    (count == digits).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC 6238 Appendix B seed for SHA-1: ASCII "12345678901234567890".
    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(b"12345678901234567890".to_vec())
    }

    #[test]
    fn rfc4226_appendix_d_hotp_vectors() {
        let expected = [
            755_224, 287_082, 359_152, 969_429, 338_314, 254_676, 287_922, 162_583, 399_871,
            520_489,
        ];
        for (counter, want) in expected.into_iter().enumerate() {
            assert_eq!(hotp(b"12345678901234567890", counter as u64, 6), want);
        }
    }

    #[test]
    fn rfc6238_appendix_b_sha1_vectors() {
        let secret = rfc_secret();
        let totp = Totp::with_params(&secret, 8, 30);
        for (t, want) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(totp.code_at(Timestamp(t)), want, "T = {t}");
            assert_eq!(
                totp.matching_step(want, Timestamp(t)),
                Some(time_step(Timestamp(t), 30))
            );
        }
    }

    #[test]
    fn six_digit_codes_are_the_low_digits_of_the_rfc_values() {
        let secret = rfc_secret();
        let totp = Totp::new(&secret);
        assert_eq!(totp.code_at(Timestamp(59)), "287082");
        assert_eq!(totp.code_at(Timestamp(1_111_111_109)), "081804");
    }

    #[test]
    fn one_step_either_side_matches_and_two_do_not() {
        let secret = rfc_secret();
        let totp = Totp::new(&secret);
        let now = Timestamp(1_234_567_890);
        let step = time_step(now, PERIOD);
        for delta in [-1, 0, 1] {
            let code = totp.code_at_step(step + delta);
            assert_eq!(totp.matching_step(&code, now), Some(step + delta));
        }
        for delta in [-2, 2] {
            let code = totp.code_at_step(step + delta);
            assert_eq!(totp.matching_step(&code, now), None, "{delta} steps away");
        }
    }

    #[test]
    fn malformed_codes_match_nothing() {
        let secret = rfc_secret();
        let totp = Totp::new(&secret);
        let now = Timestamp(59);
        let good = totp.code_at(now);
        assert_eq!(totp.matching_step("287 082", now), Some(1));
        for bad in [
            "",
            "28708",
            "2870822",
            "28708a",
            "+87082",
            "-87082",
            "２８７０８２",
            "٢٨٧٠٨٢",
            &format!("{good}0"),
        ] {
            assert_eq!(totp.matching_step(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn base32_follows_rfc4648_test_vectors() {
        for (plain, want) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(plain.as_bytes()), want);
        }
        let secret = TotpSecret::generate();
        assert_eq!(secret.expose_bytes().len(), SECRET_LEN);
        assert_eq!(secret.to_base32().len(), 32);
        assert_eq!(format!("{secret:?}"), "TotpSecret([redacted])");
    }
}
