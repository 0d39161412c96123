//! The SAML service provider's key pair, kept in the store every instance shares.
//!
//! One RSA key pair per deployment (row [`DEPLOYMENT_SP_KEY`]) signs AuthnRequests and
//! receives encrypted assertions for every SAML provider. Its private key is sealed under the
//! key-encryption key exactly as the JWT signing keys are ([`KeyEncryptor`]), with a label of
//! its own as associated data, so a sealed signing key cannot be passed off as this one.
//!
//! # Security
//! The key is made once per deployment: the first instance that finds no row generates one and
//! inserts it only if the row is still absent; every instance then reads the row back and uses
//! what is stored, so all instances behind a load balancer sign and decrypt with the same key
//! (a concurrent loser's key is dropped unused).

use std::future::Future;

use async_trait::async_trait;

use crate::Timestamp;
use crate::oauth::keys::{KeyEncryptor, KeyError};
use crate::store::{StoreError, StoreResult};

/// The id of the deployment's one SP key pair.
pub const DEPLOYMENT_SP_KEY: &str = "deployment";

/// An SP key pair as stored: the private key only sealed.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSpKey {
    /// Which key pair ([`DEPLOYMENT_SP_KEY`]).
    pub id: String,
    /// AES-256-GCM(nonce ‖ ciphertext ‖ tag) of the PKCS#8 private key, sealed for
    /// [`sealing_label`] of `id`.
    pub private_key_encrypted: Vec<u8>,
    /// The self-signed X.509 certificate of its public key (DER).
    pub certificate: Vec<u8>,
    /// When it was made.
    pub created_at: Timestamp,
}

impl std::fmt::Debug for StoredSpKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSpKey")
            .field("id", &self.id)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// Where the SP key pair lives.
#[async_trait]
pub trait SpKeyStore: Send + Sync + 'static {
    /// The key pair `id`, if one was stored.
    async fn sp_key(&self, id: &str) -> StoreResult<Option<StoredSpKey>>;
    /// Stores `key` unless a key pair with its id exists, in one atomic statement. Returns
    /// whether this call stored it.
    async fn insert_sp_key_if_absent(&self, key: &StoredSpKey) -> StoreResult<bool>;
}

/// A freshly generated key pair, before sealing.
pub struct GeneratedSpKey {
    /// The PKCS#8 private key.
    pub pkcs8: Vec<u8>,
    /// Its self-signed certificate (DER).
    pub certificate: Vec<u8>,
}

impl std::fmt::Debug for GeneratedSpKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GeneratedSpKey([redacted])")
    }
}

/// The key pair in use, opened.
pub struct OpenedSpKey {
    /// The PKCS#8 private key.
    pub pkcs8: Vec<u8>,
    /// Its certificate (DER).
    pub certificate: Vec<u8>,
    /// Whether this call generated and stored it (false: it was already there, possibly
    /// stored a moment ago by another instance).
    pub created: bool,
}

impl std::fmt::Debug for OpenedSpKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedSpKey")
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// Why the SP key pair is not available.
#[derive(Debug, thiserror::Error)]
pub enum SpKeyError {
    /// The store failed.
    #[error("storage failed")]
    Store(#[from] StoreError),
    /// The stored key does not open with the configured key-encryption key.
    #[error("the stored SAML SP key cannot be decrypted with the configured key-encryption key")]
    Sealing(#[from] KeyError),
    /// Generating a key pair failed.
    #[error("cannot generate the SAML SP key: {0}")]
    Generate(String),
    /// The row vanished between insert and read (deleted meanwhile).
    #[error("the SAML SP key disappeared while it was being created")]
    Vanished,
}

/// The associated data the private key of key pair `id` is sealed for.
#[must_use]
pub fn sealing_label(id: &str) -> String {
    format!("saml-sp-key:{id}")
}

/// The key pair `id`: the stored one, or, when there is none, one made by `generate`, stored if
/// still absent and read back, so that concurrent callers (on any instance) end with the same.
///
/// # Errors
/// [`SpKeyError`]: the store, the key-encryption key (a wrong one cannot open a stored key),
/// or `generate`.
pub async fn ensure_sp_key<F, Fut>(
    store: &dyn SpKeyStore,
    encryptor: &KeyEncryptor,
    id: &str,
    now: Timestamp,
    generate: F,
) -> Result<OpenedSpKey, SpKeyError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<GeneratedSpKey, String>>,
{
    if let Some(stored) = store.sp_key(id).await? {
        return open(encryptor, &stored, false);
    }
    let fresh = generate().await.map_err(SpKeyError::Generate)?;
    let sealed = StoredSpKey {
        id: id.to_owned(),
        private_key_encrypted: encryptor.seal(&sealing_label(id), &fresh.pkcs8)?,
        certificate: fresh.certificate,
        created_at: now,
    };
    let created = store.insert_sp_key_if_absent(&sealed).await?;
    let stored = store.sp_key(id).await?.ok_or(SpKeyError::Vanished)?;
    open(encryptor, &stored, created)
}

fn open(
    encryptor: &KeyEncryptor,
    stored: &StoredSpKey,
    created: bool,
) -> Result<OpenedSpKey, SpKeyError> {
    Ok(OpenedSpKey {
        pkcs8: encryptor.open(&sealing_label(&stored.id), &stored.private_key_encrypted)?,
        certificate: stored.certificate.clone(),
        created,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Default)]
    struct Memory(Mutex<HashMap<String, StoredSpKey>>);

    #[async_trait]
    impl SpKeyStore for Memory {
        async fn sp_key(&self, id: &str) -> StoreResult<Option<StoredSpKey>> {
            Ok(self.0.lock().unwrap().get(id).cloned())
        }
        async fn insert_sp_key_if_absent(&self, key: &StoredSpKey) -> StoreResult<bool> {
            let mut map = self.0.lock().unwrap();
            if map.contains_key(&key.id) {
                return Ok(false);
            }
            map.insert(key.id.clone(), key.clone());
            Ok(true)
        }
    }

    fn generated(tag: u8) -> GeneratedSpKey {
        GeneratedSpKey {
            pkcs8: vec![tag; 40],
            certificate: vec![tag, tag],
        }
    }

    #[tokio::test]
    async fn the_first_key_is_kept_sealed_and_every_caller_gets_it() {
        let store = Arc::new(Memory::default());
        let enc = KeyEncryptor::new(&[7; 32]).unwrap();
        let first = ensure_sp_key(
            store.as_ref(),
            &enc,
            DEPLOYMENT_SP_KEY,
            Timestamp(10),
            || async { Ok(generated(1)) },
        )
        .await
        .unwrap();
        assert!(first.created);
        assert_eq!(first.pkcs8, vec![1; 40]);
        let stored = store.sp_key(DEPLOYMENT_SP_KEY).await.unwrap().unwrap();
        // Sealed: the private key is not in the row.
        assert!(
            !stored
                .private_key_encrypted
                .windows(40)
                .any(|w| w == [1; 40])
        );
        // A later call reads it and generates nothing.
        let again = ensure_sp_key(
            store.as_ref(),
            &enc,
            DEPLOYMENT_SP_KEY,
            Timestamp(20),
            || async { Err::<GeneratedSpKey, _>("must not be called".to_owned()) },
        )
        .await
        .unwrap();
        assert!(!again.created);
        assert_eq!(again.pkcs8, first.pkcs8);
        assert_eq!(again.certificate, vec![1, 1]);
    }

    /// Another instance stored its key between our read and our insert: ours is dropped and
    /// theirs is used.
    #[tokio::test]
    async fn a_key_stored_meanwhile_wins() {
        let store = Arc::new(Memory::default());
        let enc = KeyEncryptor::new(&[7; 32]).unwrap();
        let other = Arc::clone(&store);
        let enc_other = KeyEncryptor::new(&[7; 32]).unwrap();
        let opened = ensure_sp_key(
            store.as_ref(),
            &enc,
            DEPLOYMENT_SP_KEY,
            Timestamp(10),
            || async move {
                ensure_sp_key(
                    other.as_ref(),
                    &enc_other,
                    DEPLOYMENT_SP_KEY,
                    Timestamp(10),
                    || async { Ok(generated(2)) },
                )
                .await
                .unwrap();
                Ok(generated(3))
            },
        )
        .await
        .unwrap();
        assert!(!opened.created);
        assert_eq!(opened.pkcs8, vec![2; 40]);
    }

    #[tokio::test]
    async fn a_wrong_key_encryption_key_or_a_signing_key_label_does_not_open_it() {
        let store = Memory::default();
        let enc = KeyEncryptor::new(&[7; 32]).unwrap();
        ensure_sp_key(&store, &enc, DEPLOYMENT_SP_KEY, Timestamp(10), || async {
            Ok(generated(4))
        })
        .await
        .unwrap();
        let wrong = KeyEncryptor::new(&[8; 32]).unwrap();
        let err = ensure_sp_key(&store, &wrong, DEPLOYMENT_SP_KEY, Timestamp(10), || async {
            Ok(generated(5))
        })
        .await
        .unwrap_err();
        assert!(
            matches!(err, SpKeyError::Sealing(KeyError::Decrypt)),
            "{err}"
        );
        let stored = store.sp_key(DEPLOYMENT_SP_KEY).await.unwrap().unwrap();
        assert!(
            enc.open(DEPLOYMENT_SP_KEY, &stored.private_key_encrypted)
                .is_err()
        );
    }
}
