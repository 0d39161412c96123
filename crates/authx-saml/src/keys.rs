//! Pinned IdP signing keys and the signature algorithms XML Signature may name.

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use base64::Engine as _;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::SamlError;

/// An IdP signing key, pinned by configuration: signatures verify only against these keys,
/// never against a certificate that travels inside the message (`ds:KeyInfo` is ignored).
///
/// Built from the IdP's X.509 certificate (DER or PEM, as metadata and IdP admin pages give it)
/// or from a bare `SubjectPublicKeyInfo`. Only the public key is kept: a pinned key is trusted
/// as configured, so the certificate's validity dates, issuer and extensions are not evaluated
/// (SAML metadata practice; rotation is done by pinning the next key).
#[derive(Clone, PartialEq, Eq)]
pub struct PinnedKey {
    kind: KeyKind,
    /// RSA: the DER `RSAPublicKey`; EC: the uncompressed point.
    public: Vec<u8>,
}

impl std::fmt::Debug for PinnedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedKey")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    EcP256,
}

impl PinnedKey {
    /// Pins the public key of a DER-encoded X.509 certificate.
    ///
    /// # Errors
    /// [`SamlError::Key`] if the certificate does not parse or its key is neither RSA nor EC
    /// P-256.
    pub fn from_certificate_der(der: &[u8]) -> Result<Self, SamlError> {
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|_| SamlError::Key("certificate does not parse"))?;
        if !rest.is_empty() {
            return Err(SamlError::Key("trailing bytes after the certificate"));
        }
        Self::from_spki(cert.public_key())
    }

    /// Pins the public key of a PEM certificate (`-----BEGIN CERTIFICATE-----`), or of the bare
    /// base64 body that metadata's `ds:X509Certificate` holds.
    ///
    /// # Errors
    /// [`SamlError::Key`] as [`PinnedKey::from_certificate_der`], or if the text is not base64.
    pub fn from_certificate_pem(pem: &str) -> Result<Self, SamlError> {
        let body: String = pem
            .lines()
            .filter(|l| !l.trim_start().starts_with("-----"))
            .flat_map(str::chars)
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| SamlError::Key("certificate is not base64"))?;
        Self::from_certificate_der(&der)
    }

    /// Pins a DER-encoded `SubjectPublicKeyInfo` (a `BEGIN PUBLIC KEY` body).
    ///
    /// # Errors
    /// [`SamlError::Key`] if it does not parse or the key is neither RSA nor EC P-256.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, SamlError> {
        let (rest, spki) = SubjectPublicKeyInfo::from_der(der)
            .map_err(|_| SamlError::Key("public key does not parse"))?;
        if !rest.is_empty() {
            return Err(SamlError::Key("trailing bytes after the public key"));
        }
        Self::from_spki(&spki)
    }

    fn from_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<Self, SamlError> {
        match spki
            .parsed()
            .map_err(|_| SamlError::Key("public key does not parse"))?
        {
            PublicKey::RSA(_) => Ok(Self {
                kind: KeyKind::Rsa,
                public: spki.subject_public_key.data.to_vec(),
            }),
            PublicKey::EC(point) => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .ok_or(SamlError::Key("EC key without a named curve"))?;
                if curve != x509_parser::oid_registry::OID_EC_P256 {
                    return Err(SamlError::Key("only the P-256 curve is supported"));
                }
                Ok(Self {
                    kind: KeyKind::EcP256,
                    public: point.data().to_vec(),
                })
            }
            _ => Err(SamlError::Key("only RSA and EC P-256 keys are supported")),
        }
    }

    /// True if this key can check `alg`, and it does check `signature` over `message`.
    pub(crate) fn verifies(
        &self,
        alg: SignatureAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> bool {
        let algorithm: &'static dyn VerificationAlgorithm = match (self.kind, alg) {
            (KeyKind::Rsa, SignatureAlgorithm::RsaSha256) => &signature::RSA_PKCS1_2048_8192_SHA256,
            (KeyKind::Rsa, SignatureAlgorithm::RsaSha512) => &signature::RSA_PKCS1_2048_8192_SHA512,
            // XML Signature 1.1 §6.4.3: the ECDSA value is r || s, fixed width.
            (KeyKind::EcP256, SignatureAlgorithm::EcdsaSha256) => {
                &signature::ECDSA_P256_SHA256_FIXED
            }
            _ => return false,
        };
        UnparsedPublicKey::new(algorithm, &self.public)
            .verify(message, signature)
            .is_ok()
    }
}

/// The signature algorithms accepted in `ds:SignatureMethod`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignatureAlgorithm {
    RsaSha256,
    RsaSha512,
    EcdsaSha256,
}

impl SignatureAlgorithm {
    /// Maps a `SignatureMethod Algorithm` URI; SHA-1 and everything else is refused.
    pub(crate) fn from_uri(uri: &str) -> Result<Self, SamlError> {
        match uri {
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256" => Ok(Self::RsaSha256),
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512" => Ok(Self::RsaSha512),
            "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256" => Ok(Self::EcdsaSha256),
            _ if uri.to_ascii_lowercase().contains("sha1") => {
                Err(SamlError::Sha1Refused(uri.into()))
            }
            _ => Err(SamlError::AlgorithmRefused(uri.into())),
        }
    }
}

/// The digest algorithms accepted in `ds:DigestMethod`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DigestAlgorithm {
    Sha256,
    Sha512,
}

impl DigestAlgorithm {
    /// Maps a `DigestMethod Algorithm` URI; SHA-1 and everything else is refused.
    pub(crate) fn from_uri(uri: &str) -> Result<Self, SamlError> {
        match uri {
            "http://www.w3.org/2001/04/xmlenc#sha256" => Ok(Self::Sha256),
            "http://www.w3.org/2001/04/xmlenc#sha512" => Ok(Self::Sha512),
            _ if uri.to_ascii_lowercase().contains("sha1") => {
                Err(SamlError::Sha1Refused(uri.into()))
            }
            _ => Err(SamlError::AlgorithmRefused(uri.into())),
        }
    }

    pub(crate) fn digest(self, data: &[u8]) -> Vec<u8> {
        let alg = match self {
            Self::Sha256 => &aws_lc_rs::digest::SHA256,
            Self::Sha512 => &aws_lc_rs::digest::SHA512,
        };
        aws_lc_rs::digest::digest(alg, data).as_ref().to_vec()
    }
}
