//! Signing keys: generation with aws-lc-rs, private keys encrypted at rest with AES-256-GCM,
//! publication as a JWK Set (RFC 7517) and rotation without downtime.
//!
//! # Security
//! Only asymmetric algorithms exist here (RFC 8725 §3.1); each key has one algorithm and a `kid`.
//! A key is published (`next`) before it signs (`active`) and stays published (`retired`) until
//! every token it signed has expired (OIDC Core §10.1.1).

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Timestamp;
use crate::secret::{b64url, random_bytes};

/// A JWS algorithm authx signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys (required by OIDC for ID tokens).
    #[serde(rename = "RS256")]
    Rs256,
    /// ECDSA P-256 with SHA-256.
    #[serde(rename = "ES256")]
    Es256,
    /// Ed25519.
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl SigningAlg {
    /// The JOSE name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }

    /// Parses the JOSE name (exact case).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RS256" => Some(Self::Rs256),
            "ES256" => Some(Self::Es256),
            "EdDSA" => Some(Self::EdDsa),
            _ => None,
        }
    }

    /// The algorithm as `jsonwebtoken` names it, for verification.
    #[must_use]
    pub fn jwt_algorithm(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::Rs256 => jsonwebtoken::Algorithm::RS256,
            Self::Es256 => jsonwebtoken::Algorithm::ES256,
            Self::EdDsa => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Published, not yet signing.
    Next,
    /// Published and signing.
    Active,
    /// Published for verification only, until `retire_at`.
    Retired,
}

impl KeyState {
    /// Storage form.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Active => "active",
            Self::Retired => "retired",
        }
    }

    /// Parses the storage form.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "next" => Some(Self::Next),
            "active" => Some(Self::Active),
            "retired" => Some(Self::Retired),
            _ => None,
        }
    }
}

/// A signing key as stored: the private key only encrypted.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Key id.
    pub kid: String,
    /// Its one algorithm.
    pub alg: SigningAlg,
    /// Life-cycle state.
    pub state: KeyState,
    /// AES-256-GCM(nonce ‖ ciphertext ‖ tag) of the PKCS#8 private key.
    pub private_key_encrypted: Vec<u8>,
    /// The public JWK (JSON text).
    pub public_jwk: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// When it became active.
    pub activated_at: Option<Timestamp>,
    /// When it may be unpublished (set on retirement).
    pub remove_after: Option<Timestamp>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Key generation or parsing failed.
    #[error("key material is unusable: {0}")]
    Crypto(&'static str),
    /// The key-encryption key does not open this key (wrong `key_encryption_key`?).
    #[error("a stored signing key cannot be decrypted with the configured key-encryption key")]
    Decrypt,
}

/// Encrypts private keys at rest with a 256-bit key-encryption key.
pub struct KeyEncryptor {
    key: LessSafeKey,
}

impl std::fmt::Debug for KeyEncryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptor([redacted])")
    }
}

impl KeyEncryptor {
    /// An encryptor for a 32-byte key-encryption key.
    ///
    /// # Errors
    /// When the key is not 32 bytes.
    pub fn new(kek: &[u8]) -> Result<Self, KeyError> {
        let unbound = UnboundKey::new(&AES_256_GCM, kek)
            .map_err(|_| KeyError::Crypto("key-encryption key must be 32 bytes"))?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
        })
    }

    /// Seals `plain` with a random nonce, binding it to `kid`.
    ///
    /// # Errors
    /// On an internal crypto failure.
    pub fn seal(&self, kid: &str, plain: &[u8]) -> Result<Vec<u8>, KeyError> {
        let nonce_bytes = random_bytes::<NONCE_LEN>();
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(kid.as_bytes()),
                &mut buf,
            )
            .map_err(|_| KeyError::Crypto("seal"))?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Opens what [`KeyEncryptor::seal`] produced for `kid`.
    ///
    /// # Errors
    /// [`KeyError::Decrypt`] for a wrong key or tampered data.
    pub fn open(&self, kid: &str, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        if sealed.len() < NONCE_LEN {
            return Err(KeyError::Decrypt);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyError::Decrypt)?;
        let mut buf = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buf)
            .map_err(|_| KeyError::Decrypt)?;
        Ok(plain.to_vec())
    }
}

/// Generates a key of `alg`, returning the stored form (state `next`).
///
/// # Errors
/// On a crypto failure.
pub fn generate(
    alg: SigningAlg,
    enc: &KeyEncryptor,
    now: Timestamp,
) -> Result<StoredKey, KeyError> {
    let kid = crate::secret::random_id();
    let pkcs8: Vec<u8> = match alg {
        SigningAlg::Rs256 => {
            let kp = RsaKeyPair::generate(KeySize::Rsa2048)
                .map_err(|_| KeyError::Crypto("rsa generate"))?;
            kp.as_der()
                .map_err(|_| KeyError::Crypto("rsa pkcs8"))?
                .as_ref()
                .to_vec()
        }
        SigningAlg::Es256 => {
            let doc = EcdsaKeyPair::generate_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &SystemRandom::new(),
            )
            .map_err(|_| KeyError::Crypto("ec generate"))?;
            doc.as_ref().to_vec()
        }
        SigningAlg::EdDsa => {
            let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .map_err(|_| KeyError::Crypto("ed generate"))?;
            doc.as_ref().to_vec()
        }
    };
    let signer = Signer::from_pkcs8(alg, &kid, &pkcs8)?;
    Ok(StoredKey {
        private_key_encrypted: enc.seal(&kid, &pkcs8)?,
        public_jwk: signer.public_jwk().to_string(),
        kid,
        alg,
        state: KeyState::Next,
        created_at: now,
        activated_at: None,
        remove_after: None,
    })
}

enum SignerKind {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A parsed private key ready to sign.
pub struct Signer {
    kid: String,
    alg: SigningAlg,
    kind: SignerKind,
    rng: SystemRandom,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Parses a PKCS#8 private key.
    ///
    /// # Errors
    /// When the key does not parse as `alg`.
    pub fn from_pkcs8(alg: SigningAlg, kid: &str, pkcs8: &[u8]) -> Result<Self, KeyError> {
        let kind = match alg {
            SigningAlg::Rs256 => SignerKind::Rsa(
                RsaKeyPair::from_pkcs8(pkcs8).map_err(|_| KeyError::Crypto("rsa parse"))?,
            ),
            SigningAlg::Es256 => SignerKind::Ec(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                    .map_err(|_| KeyError::Crypto("ec parse"))?,
            ),
            SigningAlg::EdDsa => SignerKind::Ed(
                Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| KeyError::Crypto("ed parse"))?,
            ),
        };
        Ok(Self {
            kid: kid.to_owned(),
            alg,
            kind,
            rng: SystemRandom::new(),
        })
    }

    /// The key id.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm.
    #[must_use]
    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// Signs `message` (the JWS signing input).
    ///
    /// # Errors
    /// On a crypto failure.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.kind {
            SignerKind::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(&signature::RSA_PKCS1_SHA256, &self.rng, message, &mut sig)
                    .map_err(|_| KeyError::Crypto("rsa sign"))?;
                Ok(sig)
            }
            SignerKind::Ec(kp) => Ok(kp
                .sign(&self.rng, message)
                .map_err(|_| KeyError::Crypto("ec sign"))?
                .as_ref()
                .to_vec()),
            SignerKind::Ed(kp) => Ok(kp.sign(message).as_ref().to_vec()),
        }
    }

    /// The public JWK: only public members, with `kid`, `use` and `alg`.
    #[must_use]
    pub fn public_jwk(&self) -> Value {
        match &self.kind {
            SignerKind::Rsa(kp) => {
                let pk = kp.public_key();
                json!({
                    "kty": "RSA",
                    "kid": self.kid,
                    "use": "sig",
                    "alg": "RS256",
                    "n": b64url(pk.modulus().big_endian_without_leading_zero()),
                    "e": b64url(pk.exponent().big_endian_without_leading_zero()),
                })
            }
            SignerKind::Ec(kp) => {
                // Uncompressed SEC1 point: 0x04 ‖ X ‖ Y.
                let point = kp.public_key().as_ref();
                let (x, y) = point
                    .get(1..)
                    .unwrap_or_default()
                    .split_at(point.len().saturating_sub(1) / 2);
                json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig", "alg": "ES256", "x": b64url(x), "y": b64url(y)})
            }
            SignerKind::Ed(kp) => json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "kid": self.kid,
                "use": "sig",
                "alg": "EdDSA",
                "x": b64url(kp.public_key().as_ref()),
            }),
        }
    }
}

/// A verification key built from a public JWK, parsed once: checking a signature does not
/// parse the key again.
#[derive(Clone)]
pub struct Verifier {
    /// Its one algorithm.
    pub alg: SigningAlg,
    key: VerifyingKey,
}

#[derive(Clone)]
enum VerifyingKey {
    /// A P-256 point or an Ed25519 key, validated at import.
    Parsed(signature::ParsedPublicKey),
    /// An RSA modulus and exponent (big-endian).
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

impl Verifier {
    /// Whether `signature` (raw bytes: R ‖ S for ES256, as JWS encodes it) is a valid signature
    /// of `message` under this key and its one algorithm.
    #[must_use]
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.key {
            VerifyingKey::Parsed(k) => k.verify_sig(message, signature).is_ok(),
            VerifyingKey::Rsa { n, e } => signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
        }
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Builds a verifier from a public JWK, requiring the JWK's own `alg` to be one authx allows
/// and a key of that algorithm's type and curve: a P-256 point (each coordinate its full 32
/// bytes, RFC 7518 §6.2.1.2) must lie on the curve, an Ed25519 key must be 32 bytes, an RSA
/// key is checked (2,048 to 8,192 bits) when it verifies.
#[must_use]
pub fn verifier_from_jwk(jwk: &Value) -> Option<Verifier> {
    let alg = SigningAlg::parse(jwk.get("alg")?.as_str()?)?;
    let s = |k: &str| jwk.get(k).and_then(Value::as_str);
    let bytes = |k: &str| s(k).and_then(|v| URL_SAFE_NO_PAD.decode(v).ok());
    let key = match (alg, s("kty")?) {
        (SigningAlg::Rs256, "RSA") => VerifyingKey::Rsa {
            n: bytes("n")?,
            e: bytes("e")?,
        },
        (SigningAlg::Es256, "EC") if s("crv")? == "P-256" => {
            let (x, y) = (bytes("x")?, bytes("y")?);
            if x.len() != 32 || y.len() != 32 {
                return None;
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            VerifyingKey::Parsed(
                signature::ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).ok()?,
            )
        }
        (SigningAlg::EdDsa, "OKP") if s("crv")? == "Ed25519" => VerifyingKey::Parsed(
            signature::ParsedPublicKey::new(&signature::ED25519, bytes("x")?).ok()?,
        ),
        _ => return None,
    };
    Some(Verifier { alg, key })
}

/// The keys in force: signers for the active keys, verifiers for every published key.
#[derive(Debug, Default)]
pub struct KeyRing {
    signers: HashMap<SigningAlg, Arc<Signer>>,
    verifiers: HashMap<String, Verifier>,
    jwks: Vec<Value>,
}

impl KeyRing {
    /// Builds the ring from stored keys, decrypting the active ones.
    ///
    /// # Errors
    /// [`KeyError::Decrypt`] when a key cannot be opened.
    pub fn load(keys: &[StoredKey], enc: &KeyEncryptor) -> Result<Self, KeyError> {
        let mut ring = Self::default();
        for k in keys {
            let jwk: Value =
                serde_json::from_str(&k.public_jwk).map_err(|_| KeyError::Crypto("stored jwk"))?;
            if let Some(v) = verifier_from_jwk(&jwk) {
                ring.verifiers.insert(k.kid.clone(), v);
            }
            ring.jwks.push(jwk);
            // The most recently activated key of each algorithm signs.
            let newest = keys
                .iter()
                .filter(|o| o.state == KeyState::Active && o.alg == k.alg)
                .max_by_key(|o| (o.activated_at, o.created_at));
            if newest.is_some_and(|n| n.kid == k.kid) {
                let pkcs8 = enc.open(&k.kid, &k.private_key_encrypted)?;
                ring.signers
                    .insert(k.alg, Arc::new(Signer::from_pkcs8(k.alg, &k.kid, &pkcs8)?));
            }
        }
        Ok(ring)
    }

    /// The active signer for `alg`.
    #[must_use]
    pub fn signer(&self, alg: SigningAlg) -> Option<Arc<Signer>> {
        self.signers.get(&alg).cloned()
    }

    /// The verifier for `kid`.
    #[must_use]
    pub fn verifier(&self, kid: &str) -> Option<&Verifier> {
        self.verifiers.get(kid)
    }

    /// The JWK Set document.
    #[must_use]
    pub fn jwks(&self) -> Value {
        json!({ "keys": self.jwks })
    }
}

/// Key-rotation settings.
#[derive(Debug, Clone)]
pub struct RotationPolicy {
    /// A new key is published this long before it starts signing (≥ the JWKS cache lifetime).
    pub publish_ahead_secs: i64,
    /// Rotate automatically when the active key is older than this (`None`: only by command).
    pub rotate_every_secs: Option<i64>,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        Self {
            publish_ahead_secs: 3600,
            rotate_every_secs: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sign_and_publish_only_public_members() {
        let enc = KeyEncryptor::new(&[7u8; 32]).unwrap();
        for alg in [SigningAlg::Rs256, SigningAlg::Es256, SigningAlg::EdDsa] {
            let k = generate(alg, &enc, Timestamp(0)).unwrap();
            let jwk: Value = serde_json::from_str(&k.public_jwk).unwrap();
            for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
                assert!(jwk.get(private).is_none(), "{alg:?} publishes {private}");
            }
            assert_eq!(jwk["use"], "sig");
            assert_eq!(jwk["alg"], alg.as_str());
            assert_eq!(jwk["kid"], k.kid);
            assert!(verifier_from_jwk(&jwk).is_some());
            let pkcs8 = enc.open(&k.kid, &k.private_key_encrypted).unwrap();
            let signer = Signer::from_pkcs8(alg, &k.kid, &pkcs8).unwrap();
            assert!(!signer.sign(b"msg").unwrap().is_empty());
        }
    }

    #[test]
    fn encryption_binds_kid_and_key() {
        let enc = KeyEncryptor::new(&[1u8; 32]).unwrap();
        let sealed = enc.seal("kid-a", b"secret").unwrap();
        assert_eq!(enc.open("kid-a", &sealed).unwrap(), b"secret");
        assert!(enc.open("kid-b", &sealed).is_err());
        assert!(
            KeyEncryptor::new(&[2u8; 32])
                .unwrap()
                .open("kid-a", &sealed)
                .is_err()
        );
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
    }
}
