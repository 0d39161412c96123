//! Why a SAML message was refused.

use thiserror::Error;

/// Why a response, a signature, a key or metadata was refused.
///
/// Every check has its own variant, so tests (and audit events) can tell which rule stopped a
/// message. None of them carries secret material; some carry the offending value (an algorithm
/// URI, a status code) because those are public protocol values.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SamlError {
    /// The document is larger than [`Limits::max_bytes`](crate::Limits::max_bytes).
    #[error("the document is larger than {limit} bytes")]
    TooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// The document nests elements deeper than [`Limits::max_depth`](crate::Limits::max_depth).
    #[error("the document nests elements deeper than {limit}")]
    TooDeep {
        /// The limit in force.
        limit: usize,
    },
    /// The document has more nodes than [`Limits::max_nodes`](crate::Limits::max_nodes).
    #[error("the document has more than {limit} nodes")]
    TooManyNodes {
        /// The limit in force.
        limit: u32,
    },
    /// The document has a document type declaration (DTD); DTDs, and with them entity
    /// declarations and external entities, are never processed.
    #[error("document type declarations are refused")]
    DtdRefused,
    /// The bytes are not well-formed, namespace-well-formed UTF-8 XML.
    #[error("malformed XML: {0}")]
    Malformed(String),
    /// The base64 of the HTTP-POST binding (or a value inside the document) does not decode.
    #[error("invalid base64 in {0}")]
    Base64(&'static str),
    /// The document element is not what the message must be (e.g. not `samlp:Response`).
    #[error("unexpected document element: expected {expected}")]
    UnexpectedRoot {
        /// What was expected.
        expected: &'static str,
    },
    /// A required element or attribute is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// An element appears where the schema allows it only once, or not at all.
    #[error("unexpected or repeated {0}")]
    Unexpected(&'static str),
    /// Two elements carry the same `ID` (or `Id`/`id`) value.
    #[error("duplicate ID attribute value in the document")]
    DuplicateId,
    /// The response does not contain exactly one `Assertion` (anywhere in the document).
    #[error("expected exactly one assertion, found {found}")]
    AssertionCount {
        /// How many `saml:Assertion` elements the document has.
        found: usize,
    },
    /// The response carries an `EncryptedAssertion` but no decryption key is configured.
    #[error("encrypted assertion but no decryption key configured")]
    EncryptedAssertionUnsupported,
    /// An encrypted assertion could not be decrypted: no configured key unwraps the content
    /// key, or the content does not authenticate (AES-GCM tag).
    #[error("decryption failed: {0}")]
    Decryption(&'static str),
    /// A `ds:Signature` sits somewhere other than as a direct child of the Response or of the
    /// Assertion.
    #[error("a signature is in an unexpected place")]
    MisplacedSignature,
    /// The assertion is not signed (and a signed response is not allowed to stand in for it).
    #[error("the assertion is not signed")]
    AssertionNotSigned,
    /// Neither the assertion nor the response is signed.
    #[error("the response is not signed at all")]
    NotSigned,
    /// The signature's `Reference URI` is not `#` + the `ID` of the element that carries the
    /// signature.
    #[error("the signature's reference does not point at its parent element")]
    ReferenceMismatch,
    /// A canonicalization method or transform other than exclusive C14N (and, as a transform,
    /// enveloped-signature) was named.
    #[error("canonicalization or transform not allowed: {0}")]
    TransformRefused(String),
    /// SHA-1 (as digest or inside the signature algorithm) was named.
    #[error("SHA-1 is refused: {0}")]
    Sha1Refused(String),
    /// A signature or digest algorithm outside the allowed set was named.
    #[error("algorithm not allowed: {0}")]
    AlgorithmRefused(String),
    /// The digest of the referenced element does not match `DigestValue`.
    #[error("the digest of the signed element does not match")]
    DigestMismatch,
    /// No pinned key verifies `SignatureValue` over the canonical `SignedInfo`.
    #[error("the signature does not verify with any pinned key")]
    BadSignature,
    /// A pinned certificate or key could not be read or has an unsupported key type.
    #[error("unusable key or certificate: {0}")]
    Key(&'static str),
    /// `Issuer` is not the expected IdP entity id.
    #[error("unexpected issuer")]
    WrongIssuer,
    /// The top-level `StatusCode` is not `Success`.
    #[error("the IdP answered with status {0}")]
    Status(String),
    /// `Destination` on the response is missing or not our ACS URL.
    #[error("wrong destination")]
    WrongDestination,
    /// No `SubjectConfirmation` with method bearer and matching `Recipient`, time and
    /// `InResponseTo`.
    #[error("no usable bearer subject confirmation: {0}")]
    SubjectConfirmation(&'static str),
    /// `Recipient` is not our ACS URL.
    #[error("wrong recipient")]
    WrongRecipient,
    /// Our SP entity id is not among the `Audience` values.
    #[error("wrong audience")]
    WrongAudience,
    /// `InResponseTo` does not match the pending request (or is present for an unsolicited
    /// response, or missing for a solicited one).
    #[error("InResponseTo does not match the pending request")]
    WrongInResponseTo,
    /// The message is not yet valid (`NotBefore` in the future beyond the skew).
    #[error("not yet valid")]
    NotYetValid,
    /// The message has expired (`NotOnOrAfter` passed beyond the skew).
    #[error("expired")]
    Expired,
    /// A date-time value is not a valid `xs:dateTime` in UTC.
    #[error("invalid date-time in {0}")]
    BadTime(&'static str),
    /// A SAML version other than 2.0.
    #[error("unsupported SAML version")]
    Version,
    /// Signing or encoding failed while building a message.
    #[error("could not build the message: {0}")]
    Build(&'static str),
}
