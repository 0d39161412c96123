//! `FactorStore` for passkeys: a credential id belongs to one passkey of one user, an
//! assertion finds its passkey by credential id, a use updates the sealed credential, and a
//! WebAuthn ceremony's state is taken once, before it lapses.

use std::sync::Arc;

use authx_core::Timestamp;
use authx_core::mfa::{Ceremony, Factor, FactorId, FactorKind, FactorStore};
use authx_core::secret::TokenHash;
use authx_core::store::StoreError;
use authx_core::user::UserId;
use authx_store::{ConnectOptions, connect};

use crate::harness::Stores;

mod sqlite {
    instantiate!(crate::harness::sqlite;
        passkeys::a_passkey_is_found_by_its_credential_id,
        passkeys::a_credential_id_belongs_to_one_passkey,
        passkeys::a_use_updates_the_sealed_credential_of_its_owner_only,
        passkeys::a_ceremony_is_taken_once,
        passkeys::concurrent_takes_of_a_ceremony_one_wins,
        passkeys::a_lapsed_ceremony_is_not_taken_and_is_purged,
        passkeys::deleting_a_user_removes_their_ceremonies_and_passkeys,
    );
}

mod postgres {
    instantiate!(crate::harness::postgres;
        passkeys::a_passkey_is_found_by_its_credential_id,
        passkeys::a_credential_id_belongs_to_one_passkey,
        passkeys::a_use_updates_the_sealed_credential_of_its_owner_only,
        passkeys::a_ceremony_is_taken_once,
        passkeys::concurrent_takes_of_a_ceremony_one_wins,
        passkeys::a_lapsed_ceremony_is_not_taken_and_is_purged,
        passkeys::deleting_a_user_removes_their_ceremonies_and_passkeys,
    );
}

async fn store(s: &Stores) -> Arc<dyn FactorStore> {
    connect(s.url(), &ConnectOptions::default())
        .await
        .unwrap()
        .factors
}

const T: Timestamp = Timestamp(2_000_000);

fn passkey(user: &UserId, credential_id: &str) -> Factor {
    Factor {
        id: FactorId::generate(),
        user_id: user.clone(),
        kind: FactorKind::Passkey,
        name: "laptop".into(),
        sealed_secret: vec![7, 7, 7],
        created_at: T,
        pending_until: None,
        last_step: None,
        last_used_at: None,
        credential_id: Some(credential_id.to_owned()),
    }
}

fn ceremony(user: Option<&UserId>, seed: u8) -> Ceremony {
    Ceremony {
        hash: TokenHash::of(&[seed, 42]),
        user_id: user.cloned(),
        state: format!("{{\"kind\":\"sign_in\",\"seed\":{seed}}}"),
        created_at: T,
        expires_at: T.plus(300),
    }
}

pub(crate) async fn a_passkey_is_found_by_its_credential_id(s: Stores) {
    let l = store(&s).await;
    let user = s.user().await;
    let f = passkey(&user, "cred-ada-1");
    l.insert_factor(&f).await.unwrap();
    assert_eq!(
        l.factor_by_credential("cred-ada-1").await.unwrap(),
        Some(f.clone())
    );
    assert_eq!(l.factor_by_credential("cred-unknown").await.unwrap(), None);
    assert_eq!(l.list_factors(&user).await.unwrap(), vec![f]);
}

pub(crate) async fn a_credential_id_belongs_to_one_passkey(s: Stores) {
    let l = store(&s).await;
    let ada = s.user().await;
    let bob = s.user().await;
    l.insert_factor(&passkey(&ada, "cred-shared"))
        .await
        .unwrap();
    let again = l.insert_factor(&passkey(&bob, "cred-shared")).await;
    assert!(matches!(again, Err(StoreError::Conflict)), "{again:?}");
    let mine_again = l.insert_factor(&passkey(&ada, "cred-shared")).await;
    assert!(
        matches!(mine_again, Err(StoreError::Conflict)),
        "{mine_again:?}"
    );
    // TOTP factors have no credential id, and any number of them may be stored.
    for _ in 0..2 {
        let mut totp = passkey(&bob, "unused");
        totp.kind = FactorKind::Totp;
        totp.credential_id = None;
        l.insert_factor(&totp).await.unwrap();
    }
    assert_eq!(
        l.factor_by_credential("cred-shared")
            .await
            .unwrap()
            .unwrap()
            .user_id,
        ada
    );
}

pub(crate) async fn a_use_updates_the_sealed_credential_of_its_owner_only(s: Stores) {
    let l = store(&s).await;
    let ada = s.user().await;
    let eve = s.user().await;
    let f = passkey(&ada, "cred-ada-2");
    l.insert_factor(&f).await.unwrap();
    assert!(
        !l.update_factor_secret(&eve, &f.id, &[1, 2, 3], T.plus(5))
            .await
            .unwrap()
    );
    assert!(
        l.update_factor_secret(&ada, &f.id, &[9, 9], T.plus(10))
            .await
            .unwrap()
    );
    let now = l.factor(&ada, &f.id).await.unwrap().unwrap();
    assert_eq!(now.sealed_secret, vec![9, 9]);
    assert_eq!(now.last_used_at, Some(T.plus(10)));
    // A removed passkey is not updated (a use that raced its removal).
    assert!(l.delete_factor(&ada, &f.id).await.unwrap());
    assert!(
        !l.update_factor_secret(&ada, &f.id, &[1], T.plus(11))
            .await
            .unwrap()
    );
}

pub(crate) async fn a_ceremony_is_taken_once(s: Stores) {
    let l = store(&s).await;
    let user = s.user().await;
    let signed_in = ceremony(Some(&user), 1);
    let passwordless = ceremony(None, 2);
    l.insert_ceremony(&signed_in).await.unwrap();
    l.insert_ceremony(&passwordless).await.unwrap();
    assert!(matches!(
        l.insert_ceremony(&passwordless).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        l.take_ceremony(&signed_in.hash, T.plus(1)).await.unwrap(),
        Some(signed_in.clone())
    );
    assert_eq!(
        l.take_ceremony(&signed_in.hash, T.plus(2)).await.unwrap(),
        None
    );
    assert_eq!(
        l.take_ceremony(&passwordless.hash, T.plus(1))
            .await
            .unwrap(),
        Some(passwordless.clone())
    );
    assert_eq!(
        l.take_ceremony(&passwordless.hash, T.plus(1))
            .await
            .unwrap(),
        None
    );
}

pub(crate) async fn concurrent_takes_of_a_ceremony_one_wins(s: Stores) {
    let l = store(&s).await;
    let c = ceremony(None, 3);
    l.insert_ceremony(&c).await.unwrap();
    let takes = futures_util::future::join_all((0..8).map(|_| {
        let l = Arc::clone(&l);
        let hash = c.hash;
        async move { l.take_ceremony(&hash, T.plus(1)).await.unwrap() }
    }))
    .await;
    assert_eq!(takes.iter().filter(|t| t.is_some()).count(), 1);
}

pub(crate) async fn a_lapsed_ceremony_is_not_taken_and_is_purged(s: Stores) {
    let l = store(&s).await;
    let lapsed = ceremony(None, 4);
    let live = Ceremony {
        expires_at: T.plus(900),
        ..ceremony(None, 5)
    };
    l.insert_ceremony(&lapsed).await.unwrap();
    l.insert_ceremony(&live).await.unwrap();
    assert_eq!(
        l.take_ceremony(&lapsed.hash, T.plus(300)).await.unwrap(),
        None
    );
    assert_eq!(l.purge_pending_factors(T.plus(300)).await.unwrap(), 1);
    assert_eq!(
        l.take_ceremony(&live.hash, T.plus(301)).await.unwrap(),
        Some(live)
    );
}

pub(crate) async fn deleting_a_user_removes_their_ceremonies_and_passkeys(s: Stores) {
    let l = store(&s).await;
    let user = s.user().await;
    let c = ceremony(Some(&user), 6);
    l.insert_ceremony(&c).await.unwrap();
    l.insert_factor(&passkey(&user, "cred-gone")).await.unwrap();
    crate::grants::delete_user_row(s.url(), &user).await;
    assert_eq!(l.take_ceremony(&c.hash, T.plus(1)).await.unwrap(), None);
    assert_eq!(l.factor_by_credential("cred-gone").await.unwrap(), None);
}
