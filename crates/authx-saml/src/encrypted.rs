//! `saml:EncryptedAssertion` (SAML core §2.3.4; XML Encryption 1.1): RSA-OAEP key transport
//! and AES-GCM content encryption only.
//!
//! CBC content encryption is refused: XML Encryption's CBC modes are open to padding-oracle
//! style attacks (Jager and Somorovsky, "How to Break XML Encryption", 2011) and GCM is what
//! XML Encryption 1.1 recommends. RSA PKCS#1 v1.5 key transport is refused for the same reason.
//! OAEP with SHA-1 (`rsa-oaep-mgf1p`, what most IdPs send) is accepted: OAEP does not rely on
//! the collision resistance that SHA-1 lacks.

use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::rsa::{
    OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepAlgorithm, OaepPrivateDecryptingKey,
    PrivateDecryptingKey,
};
use base64::Engine as _;
use roxmltree::Node;

use crate::SamlError;
use crate::xml::{NS_DSIG, attr, elements, is, is_xml_space, text_content};

/// XML Encryption namespace (`xenc:`).
const NS_XENC: &str = "http://www.w3.org/2001/04/xmlenc#";
/// XML Encryption 1.1 namespace (`xenc11:`).
const NS_XENC11: &str = "http://www.w3.org/2009/xmlenc11#";
const AES128_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes128-gcm";
const AES256_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes256-gcm";
const RSA_OAEP_MGF1P: &str = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p";
const RSA_OAEP: &str = "http://www.w3.org/2009/xmlenc11#rsa-oaep";
const MGF1_SHA1: &str = "http://www.w3.org/2009/xmlenc11#mgf1sha1";
const MGF1_SHA256: &str = "http://www.w3.org/2009/xmlenc11#mgf1sha256";
const SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";
const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
const TYPE_ELEMENT: &str = "http://www.w3.org/2001/04/xmlenc#Element";

/// Our SP decryption key (RSA, 2048 bits or more) for encrypted assertions.
pub struct DecryptionKey(OaepPrivateDecryptingKey);

impl std::fmt::Debug for DecryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DecryptionKey([redacted])")
    }
}

impl DecryptionKey {
    /// Reads an RSA private key in PKCS#8.
    ///
    /// # Errors
    /// [`SamlError::Key`] if it is not an RSA key aws-lc-rs accepts for OAEP.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, SamlError> {
        let key = PrivateDecryptingKey::from_pkcs8(der)
            .map_err(|_| SamlError::Key("not an RSA PKCS#8 private key"))?;
        Self::new(key)
    }

    /// Wraps an aws-lc-rs RSA decryption key.
    ///
    /// # Errors
    /// [`SamlError::Key`] if the key cannot be used for OAEP.
    pub fn new(key: PrivateDecryptingKey) -> Result<Self, SamlError> {
        OaepPrivateDecryptingKey::new(key)
            .map(Self)
            .map_err(|_| SamlError::Key("RSA key unusable for OAEP"))
    }
}

/// Decrypts an `EncryptedAssertion` and returns the plaintext (the serialized assertion).
///
/// # Errors
/// [`SamlError::AlgorithmRefused`] for CBC, PKCS#1 v1.5 and anything else unlisted,
/// [`SamlError::Decryption`] when no key unwraps the content key or the content does not
/// authenticate, structural errors for anything unexpected.
pub(crate) fn decrypt(
    encrypted_assertion: Node<'_, '_>,
    keys: &[DecryptionKey],
    max_bytes: usize,
) -> Result<String, SamlError> {
    let mut data = None;
    let mut outer_keys = Vec::new();
    for child in elements(encrypted_assertion) {
        if is(child, NS_XENC, "EncryptedData") && data.is_none() {
            data = Some(child);
        } else if is(child, NS_XENC, "EncryptedKey") {
            outer_keys.push(child);
        } else {
            return Err(SamlError::Unexpected("element in saml:EncryptedAssertion"));
        }
    }
    let data = data.ok_or(SamlError::Missing("xenc:EncryptedData"))?;
    if attr(data, "Type").is_some_and(|t| t != TYPE_ELEMENT) {
        return Err(SamlError::Unexpected(
            "EncryptedData Type other than Element",
        ));
    }

    let mut method = None;
    let mut cipher = None;
    let mut encrypted_keys = outer_keys;
    for child in elements(data) {
        if is(child, NS_XENC, "EncryptionMethod") && method.is_none() {
            method = Some(child);
        } else if is(child, NS_DSIG, "KeyInfo") {
            for k in elements(child) {
                if is(k, NS_XENC, "EncryptedKey") {
                    encrypted_keys.push(k);
                } else if !is(k, NS_DSIG, "RetrievalMethod") && !is(k, NS_DSIG, "KeyName") {
                    // RetrievalMethod points at a sibling EncryptedKey, which is already
                    // collected; KeyName is informational.
                    return Err(SamlError::Unexpected(
                        "element in EncryptedData's ds:KeyInfo",
                    ));
                }
            }
        } else if is(child, NS_XENC, "CipherData") && cipher.is_none() {
            cipher = Some(child);
        } else {
            return Err(SamlError::Unexpected("element in xenc:EncryptedData"));
        }
    }
    let method = method.ok_or(SamlError::Missing("EncryptedData EncryptionMethod"))?;
    let content_alg = match attr(method, "Algorithm").unwrap_or("") {
        AES128_GCM => &AES_128_GCM,
        AES256_GCM => &AES_256_GCM,
        other => return Err(SamlError::AlgorithmRefused(other.into())),
    };
    let ciphertext = cipher_value(cipher.ok_or(SamlError::Missing("xenc:CipherData"))?)?;

    if encrypted_keys.is_empty() {
        return Err(SamlError::Missing("xenc:EncryptedKey"));
    }
    for encrypted_key in encrypted_keys {
        let (oaep, wrapped) = key_transport(encrypted_key)?;
        for key in keys {
            let mut out = vec![0u8; key.0.min_output_size()];
            let Ok(cek) = key.0.decrypt(oaep, &wrapped, &mut out, None) else {
                continue;
            };
            if cek.len() != content_alg.key_len() {
                continue;
            }
            return open_gcm(content_alg, cek, ciphertext, max_bytes);
        }
    }
    Err(SamlError::Decryption(
        "no decryption key unwraps the content key",
    ))
}

/// `EncryptedKey`: the OAEP variant and the wrapped content key.
fn key_transport(node: Node<'_, '_>) -> Result<(&'static OaepAlgorithm, Vec<u8>), SamlError> {
    let mut method = None;
    let mut cipher = None;
    for child in elements(node) {
        if is(child, NS_XENC, "EncryptionMethod") && method.is_none() {
            method = Some(child);
        } else if is(child, NS_XENC, "CipherData") && cipher.is_none() {
            cipher = Some(child);
        } else if is(child, NS_DSIG, "KeyInfo") || is(child, NS_XENC, "ReferenceList") {
            // Which certificate was used, and which data the key is for: informational.
        } else {
            return Err(SamlError::Unexpected("element in xenc:EncryptedKey"));
        }
    }
    let method = method.ok_or(SamlError::Missing("EncryptedKey EncryptionMethod"))?;
    let mut digest = SHA1;
    let mut mgf = MGF1_SHA1;
    for param in elements(method) {
        if is(param, NS_DSIG, "DigestMethod") {
            digest = attr(param, "Algorithm").unwrap_or("");
        } else if is(param, NS_XENC11, "MGF") {
            mgf = attr(param, "Algorithm").unwrap_or("");
        } else {
            // OAEPparams (a label) and anything else.
            return Err(SamlError::Unexpected("key transport parameter"));
        }
    }
    let alg = attr(method, "Algorithm").unwrap_or("");
    let oaep = match (alg, digest, mgf) {
        (RSA_OAEP_MGF1P | RSA_OAEP, SHA1, MGF1_SHA1) => &OAEP_SHA1_MGF1SHA1,
        (RSA_OAEP, SHA256, MGF1_SHA256) => &OAEP_SHA256_MGF1SHA256,
        (RSA_OAEP_MGF1P | RSA_OAEP, _, _) => {
            return Err(SamlError::AlgorithmRefused(format!(
                "{alg} with {digest} and {mgf}"
            )));
        }
        _ => return Err(SamlError::AlgorithmRefused(alg.into())),
    };
    let wrapped = cipher_value(cipher.ok_or(SamlError::Missing("EncryptedKey CipherData"))?)?;
    Ok((oaep, wrapped))
}

/// `CipherData/CipherValue`, base64-decoded (`CipherReference` is refused).
fn cipher_value(cipher_data: Node<'_, '_>) -> Result<Vec<u8>, SamlError> {
    let mut kids = elements(cipher_data);
    let value = kids.next().filter(|n| is(*n, NS_XENC, "CipherValue"));
    let value = value.ok_or(SamlError::Missing("xenc:CipherValue"))?;
    if kids.next().is_some() {
        return Err(SamlError::Unexpected("element in xenc:CipherData"));
    }
    let text: String = text_content(value, "xenc:CipherValue")?
        .chars()
        .filter(|c| !is_xml_space(*c))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| SamlError::Base64("xenc:CipherValue"))
}

/// XML Encryption 1.1 §5.2.4: the cipher value is IV (96 bits) || ciphertext || tag (128 bits).
fn open_gcm(
    alg: &'static aws_lc_rs::aead::Algorithm,
    key: &[u8],
    mut value: Vec<u8>,
    max_bytes: usize,
) -> Result<String, SamlError> {
    if value.len() < 12 + 16 {
        return Err(SamlError::Decryption("cipher value too short"));
    }
    let mut body = value.split_off(12);
    let nonce =
        Nonce::try_assume_unique_for_key(&value).map_err(|_| SamlError::Decryption("bad IV"))?;
    let key = UnboundKey::new(alg, key).map_err(|_| SamlError::Decryption("bad content key"))?;
    let plain = LessSafeKey::new(key)
        .open_in_place(nonce, Aad::empty(), &mut body)
        .map_err(|_| SamlError::Decryption("content does not authenticate"))?;
    if plain.len() > max_bytes {
        return Err(SamlError::TooLarge { limit: max_bytes });
    }
    String::from_utf8(plain.to_vec())
        .map_err(|_| SamlError::Malformed("decrypted assertion is not UTF-8".into()))
}
