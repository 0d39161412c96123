//! `KeyStore`: signing keys.

use authx_core::Timestamp;
use authx_core::oauth::keys::{KeyState, SigningAlg, StoredKey};
use authx_core::oauth::store::KeyStateChange;
use authx_core::store::StoreError;

use crate::harness::Stores;

fn key_state(
    kid: &str,
    state: KeyState,
    activated_at: Option<Timestamp>,
    remove_after: Option<Timestamp>,
) -> KeyStateChange<'_> {
    KeyStateChange {
        kid,
        state,
        activated_at,
        remove_after,
    }
}

fn key(kid: &str, alg: SigningAlg, created: i64) -> StoredKey {
    // Every byte value, so that a text column or an encoding step would show.
    let mut sealed: Vec<u8> = (0..=255u8).collect();
    sealed.extend_from_slice(kid.as_bytes());
    StoredKey {
        kid: kid.to_owned(),
        alg,
        state: KeyState::Next,
        private_key_encrypted: sealed,
        public_jwk: format!(
            r#"{{"kty":"OKP","crv":"Ed25519","kid":"{kid}","use":"sig","x":"AA"}}"#
        ),
        created_at: Timestamp(created),
        activated_at: None,
        remove_after: None,
    }
}

pub(crate) async fn keys_round_trip_oldest_first(s: Stores) {
    let k = s.keys();
    assert!(k.list_keys().await.unwrap().is_empty());
    let newest = key("k-newest", SigningAlg::EdDsa, 3_000);
    let oldest = StoredKey {
        state: KeyState::Retired,
        activated_at: Some(Timestamp(1_100)),
        remove_after: Some(Timestamp(9_000)),
        ..key("k-oldest", SigningAlg::Rs256, 1_000)
    };
    // Same creation time: by kid.
    let middle_b = StoredKey {
        state: KeyState::Active,
        activated_at: Some(Timestamp(2_500)),
        ..key("k-b", SigningAlg::Es256, 2_000)
    };
    let middle_a = key("k-a", SigningAlg::Rs256, 2_000);
    for stored in [&newest, &middle_b, &oldest, &middle_a] {
        k.insert_key(stored).await.unwrap();
    }
    assert_eq!(
        k.list_keys().await.unwrap(),
        vec![oldest, middle_a, middle_b, newest]
    );
}

pub(crate) async fn duplicate_kid_conflicts(s: Stores) {
    let k = s.keys();
    let first = key("k1", SigningAlg::Es256, 1_000);
    k.insert_key(&first).await.unwrap();
    let again = StoredKey {
        private_key_encrypted: vec![1, 2, 3],
        ..key("k1", SigningAlg::Rs256, 2_000)
    };
    assert!(matches!(
        k.insert_key(&again).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(k.list_keys().await.unwrap(), vec![first]);
}

pub(crate) async fn set_key_state_keeps_times_not_given(s: Stores) {
    let k = s.keys();
    let next = key("k1", SigningAlg::Es256, 1_000);
    let other = key("k2", SigningAlg::Es256, 1_500);
    k.insert_key(&next).await.unwrap();
    k.insert_key(&other).await.unwrap();

    assert!(
        k.set_key_state(key_state(
            "k1",
            KeyState::Active,
            Some(Timestamp(2_000)),
            None
        ))
        .await
        .unwrap()
    );
    let active = StoredKey {
        state: KeyState::Active,
        activated_at: Some(Timestamp(2_000)),
        ..next.clone()
    };
    assert_eq!(
        k.list_keys().await.unwrap(),
        vec![active.clone(), other.clone()]
    );

    assert!(
        k.set_key_state(key_state(
            "k1",
            KeyState::Retired,
            None,
            Some(Timestamp(9_000))
        ))
        .await
        .unwrap()
    );
    let retired = StoredKey {
        state: KeyState::Retired,
        remove_after: Some(Timestamp(9_000)),
        ..active
    };
    assert_eq!(
        k.list_keys().await.unwrap(),
        vec![retired.clone(), other.clone()]
    );

    // A state change alone keeps both times.
    assert!(
        k.set_key_state(key_state("k1", KeyState::Next, None, None))
            .await
            .unwrap()
    );
    assert_eq!(
        k.list_keys().await.unwrap(),
        vec![
            StoredKey {
                state: KeyState::Next,
                ..retired
            },
            other
        ]
    );

    assert!(
        !k.set_key_state(key_state(
            "missing",
            KeyState::Active,
            Some(Timestamp(1)),
            None
        ))
        .await
        .unwrap()
    );
}

pub(crate) async fn delete_key(s: Stores) {
    let k = s.keys();
    let a = key("k1", SigningAlg::Rs256, 1_000);
    let b = key("k2", SigningAlg::EdDsa, 2_000);
    k.insert_key(&a).await.unwrap();
    k.insert_key(&b).await.unwrap();
    assert!(k.delete_key("k1").await.unwrap());
    assert!(!k.delete_key("k1").await.unwrap());
    assert!(!k.delete_key("missing").await.unwrap());
    assert_eq!(k.list_keys().await.unwrap(), vec![b]);
}
