//! Our SP key pair: one RSA key that signs AuthnRequests and receives encrypted assertions, and
//! the self-signed X.509 certificate that carries its public key in our metadata.
//!
//! RSA because XML Encryption's key transport is RSA-OAEP and IdPs expect an RSA certificate in
//! the SP's `KeyDescriptor use="encryption"`. The certificate is only a container for the
//! public key (SAML metadata practice: the key is pinned by the IdP, the certificate's issuer
//! and dates are not evaluated), so it is self-signed, version 1 and without extensions
//! (RFC 5280 §4.1.2.1: basic fields only).

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, KeyPair as _, RsaKeyPair};
use der::asn1::{Any, BitString, ObjectIdentifier};
use der::{DateTime, Decode as _, Encode as _, Sequence};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use crate::{DecryptionKey, SamlError, SpSigningKey};

/// `sha256WithRSAEncryption` (RFC 4055 §5).
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");

/// The certificate's subject and issuer.
const SUBJECT: &str = "CN=authx SAML service provider";

/// How long the certificate is valid (some IdPs, ADFS among them, check an encryption
/// certificate's dates): ten years of 365 days.
pub const CERTIFICATE_LIFETIME_SECS: i64 = 10 * 365 * 86_400;

/// Our SP key pair: the RSA private key (PKCS#8) and its self-signed certificate (DER).
///
/// `Debug` never shows the private key.
pub struct SpKeyPair {
    pkcs8: Vec<u8>,
    certificate: Vec<u8>,
}

impl std::fmt::Debug for SpKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpKeyPair")
            .field("pkcs8", &"[redacted]")
            .field("certificate_len", &self.certificate.len())
            .finish()
    }
}

/// The to-be-signed part of a version 1 certificate (RFC 5280 §4.1; the version field is
/// absent, which means v1).
#[derive(Sequence)]
struct TbsV1 {
    serial_number: SerialNumber,
    signature: AlgorithmIdentifierOwned,
    issuer: Name,
    validity: Validity,
    subject: Name,
    subject_public_key_info: SubjectPublicKeyInfoOwned,
}

/// `Certificate` (RFC 5280 §4.1) around the encoded `TbsV1`.
#[derive(Sequence)]
struct CertificateV1 {
    tbs_certificate: TbsV1,
    signature_algorithm: AlgorithmIdentifierOwned,
    signature: BitString,
}

impl SpKeyPair {
    /// Generates an RSA-3072 key and a self-signed certificate valid from `now` (Unix seconds)
    /// for [`CERTIFICATE_LIFETIME_SECS`]. Slow (RSA key generation): call it off the async
    /// threads.
    ///
    /// # Errors
    /// [`SamlError::Build`] if key generation, randomness or encoding fails.
    pub fn generate(now: i64) -> Result<Self, SamlError> {
        let key = RsaKeyPair::generate(KeySize::Rsa3072)
            .map_err(|_| SamlError::Build("RSA key generation failed"))?;
        let pkcs8 = key
            .as_der()
            .map_err(|_| SamlError::Build("RSA key does not encode"))?
            .as_ref()
            .to_vec();
        let certificate = self_signed(&key, now)?;
        Ok(Self { pkcs8, certificate })
    }

    /// The key pair from its stored parts; the certificate must carry this private key's
    /// public key.
    ///
    /// # Errors
    /// [`SamlError::Key`] if the key is not an RSA PKCS#8 key, the certificate does not parse,
    /// or they do not belong together.
    pub fn from_parts(pkcs8: Vec<u8>, certificate: Vec<u8>) -> Result<Self, SamlError> {
        let key = RsaKeyPair::from_pkcs8(&pkcs8)
            .map_err(|_| SamlError::Key("not an RSA PKCS#8 private key"))?;
        let cert = x509_cert::Certificate::from_der(&certificate)
            .map_err(|_| SamlError::Key("certificate does not parse"))?;
        let in_cert = cert
            .tbs_certificate()
            .subject_public_key_info()
            .subject_public_key
            .raw_bytes();
        if in_cert != key.public_key().as_ref() {
            return Err(SamlError::Key(
                "the certificate does not carry the private key's public key",
            ));
        }
        Ok(Self { pkcs8, certificate })
    }

    /// The private key in PKCS#8 (to be stored encrypted).
    #[must_use]
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The self-signed certificate (DER), for our metadata.
    #[must_use]
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }

    /// The key as an AuthnRequest signing key (RSA-SHA256).
    ///
    /// # Errors
    /// [`SamlError::Key`] if the stored key does not read back.
    pub fn signing_key(&self) -> Result<SpSigningKey, SamlError> {
        RsaKeyPair::from_pkcs8(&self.pkcs8)
            .map(SpSigningKey::Rsa)
            .map_err(|_| SamlError::Key("not an RSA PKCS#8 private key"))
    }

    /// The key as a decryption key for encrypted assertions (RSA-OAEP).
    ///
    /// # Errors
    /// [`SamlError::Key`] if the stored key does not read back.
    pub fn decryption_key(&self) -> Result<DecryptionKey, SamlError> {
        DecryptionKey::from_pkcs8(&self.pkcs8)
    }
}

/// A self-signed v1 certificate for `key`, valid from `now` for the certificate lifetime.
fn self_signed(key: &RsaKeyPair, now: i64) -> Result<Vec<u8>, SamlError> {
    let encode = |_| SamlError::Build("certificate does not encode");
    let time = |unix: i64| -> Result<Time, SamlError> {
        let secs = u64::try_from(unix).map_err(|_| SamlError::Build("time before 1970"))?;
        DateTime::from_unix_duration(std::time::Duration::from_secs(secs))
            .map(Time::from)
            .map_err(encode)
    };
    let mut serial = [0u8; 16];
    SystemRandom::new()
        .fill(&mut serial)
        .map_err(|_| SamlError::Build("no randomness"))?;
    // Positive and without a leading zero octet, so it encodes in 16 octets.
    serial[0] = (serial[0] & 0x7f) | 0x40;
    let name: Name = SUBJECT.parse().map_err(encode)?;
    let algorithm = AlgorithmIdentifierOwned {
        oid: SHA256_WITH_RSA,
        parameters: Some(Any::null()),
    };
    let spki_der = key
        .public_key()
        .as_der()
        .map_err(|_| SamlError::Build("public key does not encode"))?;
    let tbs = TbsV1 {
        serial_number: SerialNumber::new(&serial).map_err(encode)?,
        signature: algorithm.clone(),
        issuer: name.clone(),
        validity: Validity::new(
            time(now)?,
            time(now.saturating_add(CERTIFICATE_LIFETIME_SECS))?,
        ),
        subject: name,
        subject_public_key_info: SubjectPublicKeyInfoOwned::from_der(spki_der.as_ref())
            .map_err(encode)?,
    };
    let tbs_der = tbs.to_der().map_err(encode)?;
    let mut sig = vec![0; key.public_modulus_len()];
    key.sign(
        &signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        &tbs_der,
        &mut sig,
    )
    .map_err(|_| SamlError::Build("RSA signing failed"))?;
    CertificateV1 {
        tbs_certificate: tbs,
        signature_algorithm: algorithm,
        signature: BitString::from_bytes(&sig).map_err(encode)?,
    }
    .to_der()
    .map_err(encode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PinnedKey;

    #[test]
    fn generated_certificate_parses_is_self_signed_and_pins_the_key() {
        let now = 1_764_928_800; // 2025-12-05T10:00:00Z
        let pair = SpKeyPair::generate(now).unwrap();
        let (rest, cert) =
            x509_parser::parse_x509_certificate(pair.certificate_der()).expect("parses");
        assert!(rest.is_empty());
        assert_eq!(cert.subject().to_string(), "CN=authx SAML service provider");
        assert_eq!(cert.issuer(), cert.subject());
        assert_eq!(cert.validity().not_before.timestamp(), now);
        assert_eq!(
            cert.validity().not_after.timestamp(),
            now + CERTIFICATE_LIFETIME_SECS
        );
        // The signature over the TBS part verifies with the certificate's own key.
        let public = signature::UnparsedPublicKey::new(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            cert.public_key().subject_public_key.data.to_vec(),
        );
        public
            .verify(
                cert.tbs_certificate.as_ref(),
                cert.signature_value.data.as_ref(),
            )
            .unwrap();
        PinnedKey::from_certificate_der(pair.certificate_der()).unwrap();
        pair.signing_key().unwrap();
        pair.decryption_key().unwrap();
        assert!(!format!("{pair:?}").contains(&format!("{:?}", &pair.pkcs8_der()[..8])));
    }

    #[test]
    fn parts_that_do_not_belong_together_are_refused() {
        let a = SpKeyPair::generate(1_764_928_800).unwrap();
        let b = SpKeyPair::generate(1_764_928_800).unwrap();
        let again =
            SpKeyPair::from_parts(a.pkcs8_der().to_vec(), a.certificate_der().to_vec()).unwrap();
        assert_eq!(again.certificate_der(), a.certificate_der());
        assert_eq!(
            SpKeyPair::from_parts(a.pkcs8_der().to_vec(), b.certificate_der().to_vec())
                .unwrap_err(),
            SamlError::Key("the certificate does not carry the private key's public key")
        );
        assert!(SpKeyPair::from_parts(vec![1, 2, 3], a.certificate_der().to_vec()).is_err());
    }
}
