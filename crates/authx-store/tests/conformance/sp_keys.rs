//! `SpKeyStore`: the SAML SP key pair is stored once per id, bytes intact; of instances racing
//! to create it, one row lands and every one of them reads that row back.

use std::sync::Arc;

use authx_core::Timestamp;
use authx_core::federation::{
    DEPLOYMENT_SP_KEY, GeneratedSpKey, SpKeyStore, StoredSpKey, ensure_sp_key,
};
use authx_core::oauth::keys::KeyEncryptor;
use authx_store::{ConnectOptions, connect};

use crate::harness::Stores;

mod sqlite {
    instantiate!(crate::harness::sqlite;
        sp_keys::an_sp_key_is_stored_once_with_its_bytes,
        sp_keys::concurrent_creators_all_get_the_one_stored_key,
    );
}

mod postgres {
    instantiate!(crate::harness::postgres;
        sp_keys::an_sp_key_is_stored_once_with_its_bytes,
        sp_keys::concurrent_creators_all_get_the_one_stored_key,
    );
}

async fn store(s: &Stores) -> Arc<dyn SpKeyStore> {
    connect(s.url(), &ConnectOptions::default())
        .await
        .unwrap()
        .sp_keys
}

fn key(id: &str, tag: u8) -> StoredSpKey {
    // Every byte value, so that a text column or an encoding step would show.
    let mut sealed: Vec<u8> = (0..=255u8).collect();
    sealed.push(tag);
    StoredSpKey {
        id: id.to_owned(),
        private_key_encrypted: sealed,
        certificate: vec![0x30, 0x82, 0, tag, 0xff],
        created_at: Timestamp(1_000 + i64::from(tag)),
    }
}

pub(crate) async fn an_sp_key_is_stored_once_with_its_bytes(s: Stores) {
    let k = store(&s).await;
    assert!(k.sp_key(DEPLOYMENT_SP_KEY).await.unwrap().is_none());
    let first = key(DEPLOYMENT_SP_KEY, 1);
    assert!(k.insert_sp_key_if_absent(&first).await.unwrap());
    // A second insert for the same id changes nothing and says so.
    assert!(
        !k.insert_sp_key_if_absent(&key(DEPLOYMENT_SP_KEY, 2))
            .await
            .unwrap()
    );
    assert_eq!(k.sp_key(DEPLOYMENT_SP_KEY).await.unwrap(), Some(first));
    // Another id is another key pair.
    let other = key("other", 3);
    assert!(k.insert_sp_key_if_absent(&other).await.unwrap());
    assert_eq!(k.sp_key("other").await.unwrap(), Some(other));
}

/// Eight instances (each with its own connection pool) start at once on an empty table: each
/// generates a key, exactly one is stored, and all eight open that one.
pub(crate) async fn concurrent_creators_all_get_the_one_stored_key(s: Stores) {
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let k = store(&s).await;
        tasks.push(tokio::spawn(async move {
            let enc = KeyEncryptor::new(&[9; 32]).unwrap();
            ensure_sp_key(
                k.as_ref(),
                &enc,
                DEPLOYMENT_SP_KEY,
                Timestamp(1_000),
                || async move {
                    Ok(GeneratedSpKey {
                        pkcs8: vec![i; 64],
                        certificate: vec![i; 8],
                    })
                },
            )
            .await
            .unwrap()
        }));
    }
    let mut opened = Vec::new();
    for t in tasks {
        opened.push(t.await.unwrap());
    }
    assert_eq!(opened.iter().filter(|o| o.created).count(), 1);
    let winner = opened.iter().find(|o| o.created).unwrap();
    for o in &opened {
        assert_eq!(o.pkcs8, winner.pkcs8);
        assert_eq!(o.certificate, winner.certificate);
        assert_eq!(o.pkcs8[..8], o.certificate[..]);
    }
}
