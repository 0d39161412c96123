//! `ClientStore`: clients and API resources.

use authx_core::Timestamp;
use authx_core::oauth::client::{Client, GrantType, Resource};
use authx_core::oauth::grant::CodeRedemption;
use authx_core::oauth::keys::SigningAlg;
use authx_core::secret::TokenHash;
use authx_core::store::StoreError;

use crate::grants::{FAR, code, consent, family, token};
use crate::harness::{Stores, redemption};

/// A confidential client with every optional field set and lists in no sorted order.
pub(crate) fn client(id: &str) -> Client {
    Client {
        id: id.to_owned(),
        name: format!("App {id} — «consent» page"),
        secret_hash: Some(TokenHash::of(id.as_bytes())),
        token_endpoint_auth_method:
            authx_core::oauth::client::TokenEndpointAuthMethod::ClientSecretBasic,
        jwks: None,
        jwks_uri: None,
        dpop_bound_access_tokens: false,
        redirect_uris: vec![
            "https://b.example.com/cb".into(),
            "https://a.example.com/cb?x=1&y=2".into(),
            "http://127.0.0.1/cb".into(),
        ],
        post_logout_redirect_uris: vec![
            "https://b.example.com/bye".into(),
            "https://a.example.com/bye".into(),
        ],
        backchannel_logout_uri: Some("https://a.example.com/bcl".into()),
        grant_types: vec![
            GrantType::RefreshToken,
            GrantType::AuthorizationCode,
            GrantType::DeviceCode,
            GrantType::ClientCredentials,
        ],
        scopes: vec![
            "openid".into(),
            "profile".into(),
            "api:write".into(),
            "email".into(),
            "quote\"and\\slash".into(),
        ],
        resources: vec!["urn:example:b".into(), "https://a.example.com/api".into()],
        first_party: true,
        require_pushed_authorization_requests: true,
        require_acr: Some("urn:authx:acr:mfa".into()),
        id_token_alg: SigningAlg::Es256,
        access_token_ttl_secs: 900,
        refresh_token_ttl_secs: 2_592_000,
        refresh_idle_secs: 1_209_600,
        created_at: Timestamp(1_700_000_000),
    }
}

/// A public client with every optional field empty.
pub(crate) fn public_client(id: &str) -> Client {
    Client {
        secret_hash: None,
        redirect_uris: vec!["http://127.0.0.1/cb".into()],
        post_logout_redirect_uris: vec![],
        backchannel_logout_uri: None,
        grant_types: vec![GrantType::AuthorizationCode],
        scopes: vec![],
        resources: vec![],
        first_party: false,
        id_token_alg: SigningAlg::Rs256,
        ..client(id)
    }
}

fn resource(id: &str, at: i64) -> Resource {
    Resource {
        id: id.to_owned(),
        scopes: vec!["orders:write".into(), "orders:read".into(), "admin".into()],
        created_at: Timestamp(at),
    }
}

pub(crate) async fn put_and_get_client_round_trip(s: Stores) {
    let c = s.clients();
    let full = client("confidential-app");
    let public = public_client("native-app");
    c.put_client(&full).await.unwrap();
    c.put_client(&public).await.unwrap();
    assert_eq!(c.client(&full.id).await.unwrap(), Some(full.clone()));
    assert_eq!(c.client(&public.id).await.unwrap(), Some(public.clone()));
    for alg in [SigningAlg::Rs256, SigningAlg::EdDsa] {
        let other = Client {
            id: format!("alg-{}", alg.as_str()),
            id_token_alg: alg,
            ..full.clone()
        };
        c.put_client(&other).await.unwrap();
        assert_eq!(c.client(&other.id).await.unwrap(), Some(other));
    }
    assert_eq!(c.client("missing").await.unwrap(), None);
    // Ids are compared exactly.
    assert_eq!(c.client("Confidential-App").await.unwrap(), None);
}

pub(crate) async fn duplicate_client_id_conflicts(s: Stores) {
    let c = s.clients();
    let first = client("app");
    c.put_client(&first).await.unwrap();
    let again = Client {
        name: "Impostor".into(),
        secret_hash: None,
        redirect_uris: vec!["https://evil.example.com/cb".into()],
        ..public_client("app")
    };
    assert!(matches!(
        c.put_client(&again).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(c.client("app").await.unwrap(), Some(first));
}

pub(crate) async fn list_clients_by_id(s: Stores) {
    let c = s.clients();
    assert_eq!(c.list_clients().await.unwrap(), vec![]);
    for id in ["charlie", "alpha", "bravo"] {
        c.put_client(&client(id)).await.unwrap();
    }
    let ids: Vec<String> = c
        .list_clients()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["alpha", "bravo", "charlie"]);
    assert_eq!(c.list_clients().await.unwrap()[0], client("alpha"));

    // Pages by id, with the count of all.
    let ids_of = |p: &[Client]| p.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
    let (first, total) = c.page_clients(0, 2).await.unwrap();
    assert_eq!(
        (ids_of(&first), total),
        (vec!["alpha".to_owned(), "bravo".to_owned()], 3)
    );
    assert_eq!(first[0], client("alpha"));
    let (second, total) = c.page_clients(2, 2).await.unwrap();
    assert_eq!((ids_of(&second), total), (vec!["charlie".to_owned()], 3));
    let (past, total) = c.page_clients(9, 2).await.unwrap();
    assert!(past.is_empty());
    assert_eq!(total, 3);
}

pub(crate) async fn delete_client_removes_everything_issued_to_it(s: Stores) {
    let user = s.user().await;
    let g = s.grants();
    let c = s.clients();
    c.put_client(&client("doomed")).await.unwrap();
    c.put_client(&client("kept")).await.unwrap();

    let mut issued = Vec::new();
    for client_id in ["doomed", "kept"] {
        let cd = code(client_id, &user, FAR);
        g.put_code(&cd).await.unwrap();
        let fam = family(&format!("fam-{client_id}"), client_id, &user, 1_000, FAR);
        let tok = token(&fam.id, 1_000, FAR);
        g.create_family(&fam, Some(&tok)).await.unwrap();
        g.put_consent(&consent(&user, client_id, 1_000))
            .await
            .unwrap();
        issued.push((cd, fam, tok));
    }

    assert!(c.delete_client("doomed").await.unwrap());
    assert!(!c.delete_client("doomed").await.unwrap());
    assert!(!c.delete_client("never-existed").await.unwrap());
    assert_eq!(c.client("doomed").await.unwrap(), None);

    let (cd, fam, tok) = &issued[0];
    assert_eq!(
        g.redeem_code(redemption(&cd.code_hash, "f", Timestamp(1_000)))
            .await
            .unwrap(),
        CodeRedemption::Unknown
    );
    assert_eq!(g.family(&fam.id).await.unwrap(), None);
    assert_eq!(g.refresh_token(&tok.hash).await.unwrap(), None);
    assert_eq!(g.consent(&user, "doomed", None).await.unwrap(), None);

    // The other client's grants are untouched.
    let (cd, fam, tok) = &issued[1];
    assert!(matches!(
        g.redeem_code(redemption(&cd.code_hash, "f", Timestamp(1_000)))
            .await
            .unwrap(),
        CodeRedemption::Redeemed(_)
    ));
    assert_eq!(g.family(&fam.id).await.unwrap(), Some(fam.clone()));
    assert_eq!(
        g.refresh_token(&tok.hash).await.unwrap(),
        Some((tok.clone(), fam.clone()))
    );
    assert_eq!(
        g.list_consents(&user).await.unwrap(),
        vec![consent(&user, "kept", 1_000)]
    );
    assert_eq!(c.list_clients().await.unwrap(), vec![client("kept")]);
}

pub(crate) async fn grants_need_an_existing_client_and_user(s: Stores) {
    let user = s.user().await;
    let g = s.grants();
    s.clients().put_client(&client("app")).await.unwrap();

    assert!(
        g.put_code(&code("no-such-client", &user, FAR))
            .await
            .is_err()
    );
    let ghost = authx_core::user::UserId::generate();
    assert!(g.put_code(&code("app", &ghost, FAR)).await.is_err());
    let orphan = family("orphan", "no-such-client", &user, 1_000, FAR);
    assert!(
        g.create_family(&orphan, Some(&token("orphan", 1_000, FAR)))
            .await
            .is_err()
    );
    assert_eq!(g.family("orphan").await.unwrap(), None);
    assert!(
        g.put_consent(&consent(&user, "no-such-client", 1_000))
            .await
            .is_err()
    );
    assert_eq!(g.list_consents(&user).await.unwrap(), vec![]);
}

pub(crate) async fn resources_round_trip_and_conflict(s: Stores) {
    let c = s.clients();
    assert_eq!(c.list_resources().await.unwrap(), vec![]);
    let orders = resource("https://api.example.com/orders", 1_000);
    let billing = resource("urn:example:billing", 2_000);
    let empty = Resource {
        id: "https://api.example.com/empty".into(),
        scopes: vec![],
        created_at: Timestamp(3_000),
    };
    for r in [&billing, &orders, &empty] {
        c.put_resource(r).await.unwrap();
    }
    assert_eq!(c.resource(&orders.id).await.unwrap(), Some(orders.clone()));
    assert_eq!(c.resource(&empty.id).await.unwrap(), Some(empty.clone()));
    assert_eq!(c.resource("urn:example:missing").await.unwrap(), None);

    let taken = Resource {
        scopes: vec!["other".into()],
        ..orders.clone()
    };
    assert!(matches!(
        c.put_resource(&taken).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(c.resource(&orders.id).await.unwrap(), Some(orders.clone()));

    assert_eq!(
        c.list_resources().await.unwrap(),
        vec![empty.clone(), orders.clone(), billing.clone()]
    );

    assert!(c.delete_resource(&orders.id).await.unwrap());
    assert!(!c.delete_resource(&orders.id).await.unwrap());
    assert_eq!(c.resource(&orders.id).await.unwrap(), None);
    assert_eq!(c.list_resources().await.unwrap(), vec![empty, billing]);
}

pub(crate) async fn deleting_a_resource_takes_it_from_every_client(s: Stores) {
    let c = s.clients();
    let orders = resource("https://api.example.com/orders", 1_000);
    // An id with characters that are wildcards to LIKE and escaped in JSON.
    let odd = resource("urn:x:100%_\"q\"", 1_000);
    let billing = resource("urn:example:billing", 1_000);
    for r in [&orders, &odd, &billing] {
        c.put_resource(r).await.unwrap();
    }
    let both = Client {
        resources: vec![orders.id.clone(), odd.id.clone(), billing.id.clone()],
        ..client("both")
    };
    let one = Client {
        resources: vec![billing.id.clone()],
        ..client("one")
    };
    c.put_client(&both).await.unwrap();
    c.put_client(&one).await.unwrap();
    assert_eq!(c.client("both").await.unwrap(), Some(both.clone()));

    assert!(c.delete_resource(&orders.id).await.unwrap());
    assert!(c.delete_resource(&odd.id).await.unwrap());
    assert_eq!(
        c.client("both").await.unwrap().unwrap().resources,
        vec![billing.id.clone()]
    );
    assert_eq!(c.client("one").await.unwrap(), Some(one));
    // Registered again under the same id, it is granted to nobody.
    c.put_resource(&orders).await.unwrap();
    assert!(
        !c.client("both")
            .await
            .unwrap()
            .unwrap()
            .may_target(&orders.id)
    );
}
