//! `RegistrationStore` and `ClientStore::update_client`: initial access tokens spent once per
//! use within their lifetime (of concurrent spends of the last use, one wins), registration
//! access tokens rotated by compare-and-set, registrations gone with their client, and a
//! client replaced in place with its grants kept.

use std::sync::Arc;

use authx_core::Timestamp;
use authx_core::oauth::client::{GrantType, TokenEndpointAuthMethod};
use authx_core::oauth::store::PushedRequest;
use authx_core::registration::{ClientRegistration, InitialToken, RegistrationStore};
use authx_core::secret::TokenHash;
use authx_core::store::StoreError;
use authx_store::{ConnectOptions, connect};

use crate::clients::client;
use crate::harness::Stores;

mod sqlite {
    instantiate!(crate::harness::sqlite;
        registration::initial_tokens_are_spent_once_per_use_within_their_lifetime,
        registration::concurrent_spends_of_the_last_use_one_wins,
        registration::registration_tokens_rotate_once_and_go_with_their_client,
        registration::a_client_is_replaced_in_place,
    );
}

mod postgres {
    instantiate!(crate::harness::postgres;
        registration::initial_tokens_are_spent_once_per_use_within_their_lifetime,
        registration::concurrent_spends_of_the_last_use_one_wins,
        registration::registration_tokens_rotate_once_and_go_with_their_client,
        registration::a_client_is_replaced_in_place,
    );
}

const T: Timestamp = Timestamp(1_000_000);

async fn store(s: &Stores) -> Arc<dyn RegistrationStore> {
    connect(s.url(), &ConnectOptions::default())
        .await
        .unwrap()
        .registrations
}

fn token(name: &str, uses: i64) -> InitialToken {
    InitialToken {
        id: format!("id-{name}"),
        hash: TokenHash::of(name.as_bytes()),
        created_at: T,
        expires_at: T.plus(60),
        uses_left: uses,
        scopes: vec!["openid".into(), "read".into()],
        resources: vec!["https://api.example.com".into()],
    }
}

pub(crate) async fn initial_tokens_are_spent_once_per_use_within_their_lifetime(s: Stores) {
    let r = store(&s).await;
    let t = token("a", 2);
    r.insert_initial_token(&t).await.unwrap();
    assert!(matches!(
        r.insert_initial_token(&t).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(r.initial_token(&t.hash, T).await.unwrap(), Some(t.clone()));
    assert!(r.spend_initial_token(&t.hash, T).await.unwrap());
    assert!(r.spend_initial_token(&t.hash, T).await.unwrap());
    assert!(!r.spend_initial_token(&t.hash, T).await.unwrap(), "used up");
    assert_eq!(r.initial_token(&t.hash, T).await.unwrap(), None);

    let e = token("expiring", 5);
    r.insert_initial_token(&e).await.unwrap();
    assert_eq!(r.initial_token(&e.hash, T.plus(60)).await.unwrap(), None);
    assert!(!r.spend_initial_token(&e.hash, T.plus(60)).await.unwrap());
    let unknown = TokenHash::of(b"unknown");
    assert!(!r.spend_initial_token(&unknown, T).await.unwrap());

    let kept = token("kept", 1);
    r.insert_initial_token(&kept).await.unwrap();
    let listed = r.list_initial_tokens().await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0].uses_left, 0);
    // Used up and expired ones go; the live one stays until revoked.
    assert_eq!(r.purge_initial_tokens(T.plus(60)).await.unwrap(), 3);
    r.insert_initial_token(&token("live", 1)).await.unwrap();
    assert_eq!(r.purge_initial_tokens(T).await.unwrap(), 0);
    assert!(r.delete_initial_token("id-live").await.unwrap());
    assert!(!r.delete_initial_token("id-live").await.unwrap());
    assert!(r.list_initial_tokens().await.unwrap().is_empty());
}

pub(crate) async fn concurrent_spends_of_the_last_use_one_wins(s: Stores) {
    let r = store(&s).await;
    let t = token("last", 1);
    r.insert_initial_token(&t).await.unwrap();
    let spends = (0..8).map(|_| {
        let r = Arc::clone(&r);
        tokio::spawn(async move { r.spend_initial_token(&t.hash, T).await.unwrap() })
    });
    let mut won = 0;
    for s in spends {
        won += usize::from(s.await.unwrap());
    }
    assert_eq!(won, 1);
}

pub(crate) async fn registration_tokens_rotate_once_and_go_with_their_client(s: Stores) {
    let r = store(&s).await;
    let orphan = ClientRegistration {
        client_id: "nobody".into(),
        token_hash: TokenHash::of(b"r0"),
        allowed_scopes: vec!["openid".into()],
        updated_at: T,
    };
    assert!(
        r.insert_client_registration(&orphan).await.is_err(),
        "a registration needs its client"
    );
    s.clients().put_client(&client("app")).await.unwrap();
    let first = ClientRegistration {
        client_id: "app".into(),
        ..orphan
    };
    r.insert_client_registration(&first).await.unwrap();
    assert_eq!(
        r.client_registration("app").await.unwrap(),
        Some(first.clone())
    );
    let next = ClientRegistration {
        token_hash: TokenHash::of(b"r1"),
        allowed_scopes: vec!["openid".into(), "email".into()],
        updated_at: T.plus(5),
        ..first.clone()
    };
    assert!(
        r.replace_client_registration(&next, &first.token_hash)
            .await
            .unwrap()
    );
    let stale = ClientRegistration {
        token_hash: TokenHash::of(b"r2"),
        ..first.clone()
    };
    assert!(
        !r.replace_client_registration(&stale, &first.token_hash)
            .await
            .unwrap(),
        "the old token rotates nothing"
    );
    assert_eq!(r.client_registration("app").await.unwrap(), Some(next));
    assert!(s.clients().delete_client("app").await.unwrap());
    assert_eq!(r.client_registration("app").await.unwrap(), None);
}

pub(crate) async fn a_client_is_replaced_in_place(s: Stores) {
    let clients = s.clients();
    let mut c = client("app");
    assert!(!clients.update_client(&c).await.unwrap(), "none yet");
    clients.put_client(&c).await.unwrap();
    // Something that goes with the client if it is deleted: it must survive an update.
    let pushed = connect(s.url(), &ConnectOptions::default())
        .await
        .unwrap()
        .pushed;
    let request = PushedRequest {
        hash: TokenHash::of(b"pushed"),
        client_id: "app".into(),
        params: "client_id=app".into(),
        created_at: T,
        expires_at: T.plus(60),
    };
    pushed.insert_pushed_request(&request).await.unwrap();
    c.name = "Renamed".into();
    c.secret_hash = None;
    c.token_endpoint_auth_method = TokenEndpointAuthMethod::None;
    c.jwks = None;
    c.jwks_uri = None;
    c.dpop_bound_access_tokens = !c.dpop_bound_access_tokens;
    c.redirect_uris = vec!["https://app.example.com/other".into()];
    c.backchannel_logout_uri = None;
    c.grant_types = vec![GrantType::ClientCredentials];
    c.scopes = vec!["read".into()];
    c.first_party = false;
    c.require_pushed_authorization_requests = false;
    c.require_acr = None;
    c.access_token_ttl_secs += 1;
    assert!(clients.update_client(&c).await.unwrap());
    assert_eq!(clients.client("app").await.unwrap(), Some(c.clone()));
    assert_eq!(clients.list_clients().await.unwrap(), vec![c]);
    assert!(
        pushed
            .take_pushed_request(&request.hash, T)
            .await
            .unwrap()
            .is_some()
    );
}
