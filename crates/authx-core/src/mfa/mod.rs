//! Second factors: TOTP authenticator apps (RFC 6238), passkeys (WebAuthn) and recovery
//! codes, their store port ([`FactorStore`]) and the service that enrols, checks and manages
//! them ([`Factors`]).
//!
//! Policy is the caller's: the sign-in step that asks for a factor, who must enrol, recent
//! authentication before a change and the throttling of failed codes live in
//! [`crate::auth`] (`second_factor`, `passkey`).
//!
//! ```
//! use authx_core::Timestamp;
//! use authx_core::mfa::totp::{Totp, TotpSecret};
//!
//! // RFC 6238 Appendix B, SHA-1, T = 59 s.
//! let secret = TotpSecret::from_bytes(b"12345678901234567890".to_vec());
//! assert_eq!(Totp::with_params(&secret, 8, 30).code_at(Timestamp(59)), "94287082");
//! assert_eq!(Totp::new(&secret).matching_step("287082", Timestamp(59)), Some(1));
//! ```
//!
//! # Security
//! - **Secrets at rest.** A TOTP secret (20 bytes from the OS CSPRNG) is stored only sealed
//!   with AES-256-GCM under the key-encryption key (the signing keys' [`KeyEncryptor`]), with
//!   associated data naming the user and the factor: a sealed secret copied onto another
//!   user's or factor's row does not open. It is shown once, at enrolment, as text, as an
//!   `otpauth://` URI and as a QR code drawn on the server; it is never logged.
//! - **Codes.** 6 digits, 30-second steps, SHA-1 (what every authenticator app supports),
//!   accepted one step either side of now and no further. A presented code is compared with
//!   every candidate in constant time. A code is accepted at most once (RFC 6238 §5.2): the
//!   store records the last accepted step of each factor with a conditional `UPDATE … WHERE
//!   last_step < $step`, so a replay, an older code after a newer one, or the second of two
//!   concurrent uses of one code is refused.
//! - **Enrolment** is pending until a first valid code confirms it (one conditional update, so
//!   one of concurrent confirmations wins); a pending factor never passes
//!   [`Factors::verify_totp`], lapses after [`service::PENDING_SECS`] and is purged. A new
//!   enrolment replaces the user's pending one, and a user has at most
//!   [`service::MAX_FACTORS`] factors.
//! - **Recovery codes** (see [`recovery`] for why a keyed fast hash suffices) are single use
//!   (one `DELETE` each), replaced as a set, made only for a user with a confirmed factor,
//!   and removed with the last factor.
//! - **Audit.** Enrolment, confirmation, rename, removal, regeneration, recovery-code use and
//!   every refused code are recorded; events carry factor ids and reasons, never a secret or
//!   a code.
//!
//! [`KeyEncryptor`]: crate::oauth::keys::KeyEncryptor

pub mod enrol;
pub mod passkey;
pub mod recovery;
pub mod relying_party;
pub mod service;
pub mod store;
pub mod totp;

#[cfg(test)]
mod tests;

pub use service::{Confirmed, FactorInfo, Factors, MfaError, TotpEnrolment};
pub use store::{Ceremony, Factor, FactorId, FactorKind, FactorStore, StepUse};
