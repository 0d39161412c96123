//! SAML 2.0 Web Browser SSO for authx, the service-provider side.
//!
//! - [`verify_response`] verifies a `samlp:Response` received at the assertion consumer service
//!   (HTTP-POST binding; [`decode_post_binding`] undoes the form encoding) and returns the
//!   [`VerifiedAssertion`].
//! - [`AuthnRequest`] builds the HTTP-Redirect binding URL of an AuthnRequest, optionally
//!   signed.
//! - [`IdpMetadata::parse`] reads an IdP's metadata; [`SpMetadata::to_xml`] writes ours.
//! - [`SpKeyPair`] is our RSA key with its self-signed certificate: it signs AuthnRequests and
//!   decrypts encrypted assertions.
//!
//! # Security
//!
//! One parser (roxmltree) reads the document once. Signatures are verified over nodes of that
//! tree and the data is read from the node that was digested, never found again by ID or by
//! another search. Refused, each with its own [`SamlError`]:
//!
//! - documents over the [`Limits`] (bytes, nesting depth, node count), any DTD (so no entity
//!   expansion and no external entities), malformed or non-UTF-8 XML;
//! - duplicate `ID` values; anything but exactly one `saml:Assertion` or
//!   `saml:EncryptedAssertion` in the whole document, as a direct child of the response;
//! - encrypted assertions other than AES-GCM content with an RSA-OAEP key transport to one of
//!   [`Expectations::sp_decryption_keys`] (CBC and PKCS#1 v1.5 are refused); the decrypted
//!   assertion is parsed into a tree of its own and held to the same rules;
//! - a `ds:Signature` anywhere but directly in the response or the assertion; a reference other
//!   than `#` + the ID of the signature's parent; canonicalization other than exclusive C14N,
//!   transforms other than enveloped-signature + exclusive C14N; SHA-1 and every algorithm but
//!   RSA-SHA256/512 and ECDSA-P256-SHA256 (digests SHA-256/512); keys other than the pinned
//!   ones (`ds:KeyInfo` is ignored);
//! - an unsigned assertion (unless [`Expectations::allow_signed_response_only`] and the
//!   response is signed);
//! - `Destination`, `Issuer`, `StatusCode`, `Recipient`, `Audience`, `InResponseTo`,
//!   `NotBefore`/`NotOnOrAfter` (with skew) and a bearer confirmation that do not match
//!   [`Expectations`].
//!
//! The caller keeps a replay cache of [`VerifiedAssertion::assertion_id`] until
//! [`VerifiedAssertion::not_on_or_after`], and refuses [`NameIdFormat::Transient`] NameIDs for
//! account linking.
//!
//! # Example
//!
//! ```
//! use authx_saml::{Expectations, Limits, SamlError, decode_post_binding, verify_response};
//!
//! let form_value = "PCFET0NUWVBFIHg+PHg+PC94Pg=="; // "<!DOCTYPE x><x></x>"
//! let exp = Expectations {
//!     idp_entity_id: "https://idp.example.com/metadata",
//!     idp_keys: &[],
//!     sp_entity_id: "https://authx.example.com/federation/saml/corp/metadata",
//!     acs_url: "https://authx.example.com/federation/saml/corp/acs",
//!     in_response_to: Some("_a1b2c3"),
//!     now: 1_700_000_000,
//!     skew_seconds: 60,
//!     allow_signed_response_only: false,
//!     sp_decryption_keys: &[],
//!     limits: Limits::default(),
//! };
//! let xml = decode_post_binding(form_value, &exp.limits)?;
//! assert_eq!(verify_response(&xml, &exp), Err(SamlError::DtdRefused));
//! # Ok::<(), SamlError>(())
//! ```

mod authn_request;
mod c14n;
mod dsig;
mod encrypted;
mod error;
mod keys;
mod metadata;
mod response;
mod sp_key;
mod time;
mod xml;

pub use authn_request::{AuthnRequest, SpSigningKey};
pub use encrypted::DecryptionKey;
pub use error::SamlError;
pub use keys::PinnedKey;
pub use metadata::{IdpMetadata, SpMetadata};
pub use response::{
    Attribute, Expectations, NameIdFormat, SignedBy, VerifiedAssertion, decode_post_binding,
    verify_response,
};
pub use sp_key::{CERTIFICATE_LIFETIME_SECS, SpKeyPair};
pub use xml::Limits;

/// Canonicalization for tests and fuzzing outside this crate: exclusive C14N (without
/// comments) of the document element of `xml`.
///
/// # Errors
/// As parsing does.
#[doc(hidden)]
pub fn canonicalize_root(xml: &[u8], limits: &Limits) -> Result<Vec<u8>, SamlError> {
    let doc = xml::parse(xml, limits)?;
    c14n::canonicalize(doc.root_element(), &c14n::Options::default())
}
