//! Registration against the in-memory provider and a small in-memory registration store.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::json;

use super::*;
use crate::Timestamp;
use crate::clock::ManualClock;
use crate::events::InProcessBus;
use crate::memory::MemoryStore;
use crate::oauth::client::{GrantType, Resource};
use crate::oauth::store::ClientStore as _;
use crate::oauth::types::OAuthConfig;
use crate::store::StoreResult;

const NOW: i64 = 1_700_000_000;

#[derive(Default)]
struct Memory {
    tokens: Mutex<Vec<InitialToken>>,
    registrations: Mutex<Vec<ClientRegistration>>,
}

fn usable(t: &InitialToken, hash: &TokenHash, now: Timestamp) -> bool {
    t.hash == *hash && t.expires_at > now && t.uses_left > 0
}

#[async_trait]
impl RegistrationStore for Memory {
    async fn insert_initial_token(&self, token: &InitialToken) -> StoreResult<()> {
        self.tokens.lock().unwrap().push(token.clone());
        Ok(())
    }
    async fn initial_token(
        &self,
        hash: &TokenHash,
        now: Timestamp,
    ) -> StoreResult<Option<InitialToken>> {
        let tokens = self.tokens.lock().unwrap();
        Ok(tokens.iter().find(|t| usable(t, hash, now)).cloned())
    }
    async fn spend_initial_token(&self, hash: &TokenHash, now: Timestamp) -> StoreResult<bool> {
        let mut tokens = self.tokens.lock().unwrap();
        match tokens.iter_mut().find(|t| usable(t, hash, now)) {
            Some(t) => {
                t.uses_left -= 1;
                Ok(true)
            }
            None => Ok(false),
        }
    }
    async fn list_initial_tokens(&self) -> StoreResult<Vec<InitialToken>> {
        Ok(self.tokens.lock().unwrap().clone())
    }
    async fn delete_initial_token(&self, id: &str) -> StoreResult<bool> {
        let mut tokens = self.tokens.lock().unwrap();
        let before = tokens.len();
        tokens.retain(|t| t.id != id);
        Ok(tokens.len() < before)
    }
    async fn purge_initial_tokens(&self, now: Timestamp) -> StoreResult<u64> {
        let mut tokens = self.tokens.lock().unwrap();
        let before = tokens.len();
        tokens.retain(|t| t.expires_at > now && t.uses_left > 0);
        Ok(u64::try_from(before - tokens.len()).unwrap())
    }
    async fn insert_client_registration(&self, r: &ClientRegistration) -> StoreResult<()> {
        self.registrations.lock().unwrap().push(r.clone());
        Ok(())
    }
    async fn client_registration(&self, id: &str) -> StoreResult<Option<ClientRegistration>> {
        let regs = self.registrations.lock().unwrap();
        Ok(regs.iter().find(|r| r.client_id == id).cloned())
    }
    async fn replace_client_registration(
        &self,
        r: &ClientRegistration,
        current: &TokenHash,
    ) -> StoreResult<bool> {
        let mut regs = self.registrations.lock().unwrap();
        match regs
            .iter_mut()
            .find(|x| x.client_id == r.client_id && x.token_hash == *current)
        {
            Some(x) => {
                *x = r.clone();
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

struct Rig {
    store: MemoryStore,
    clock: ManualClock,
    oauth: OAuthService,
    registrations: Memory,
}

impl Rig {
    async fn new() -> Self {
        let store = MemoryStore::default();
        let clock = ManualClock::new(Timestamp(NOW));
        let oauth = OAuthService::new(
            store.oauth_stores(),
            Arc::new(InProcessBus::default()),
            Arc::new(clock.clone()),
            OAuthConfig::new("https://authx.example"),
            &[7; 32],
        )
        .unwrap();
        store
            .put_resource(&Resource {
                id: "https://api.example".into(),
                scopes: vec!["read".into()],
                created_at: Timestamp(NOW),
            })
            .await
            .unwrap();
        Self {
            store,
            clock,
            oauth,
            registrations: Memory::default(),
        }
    }

    fn reg(&self) -> Registration<'_> {
        Registration::new(&self.oauth, &self.registrations)
    }

    async fn initial(&self, request: InitialTokenRequest) -> String {
        self.reg()
            .create_initial_token(request, &Actor::CommandLine)
            .await
            .unwrap()
            .1
    }
}

fn meta(v: serde_json::Value) -> ClientMetadata {
    ClientMetadata::from_json(v.to_string().as_bytes()).unwrap()
}

fn web() -> serde_json::Value {
    json!({"redirect_uris": ["https://app.example/cb"], "client_name": "App", "logo_uri": "ignored"})
}

#[tokio::test]
async fn a_token_registers_a_third_party_client_within_its_allowance_once() {
    let rig = Rig::new().await;
    let token = rig.initial(InitialTokenRequest::default()).await;
    let r = rig.reg().register(Some(&token), meta(web())).await.unwrap();
    let c = &r.client;
    assert!(!c.first_party);
    assert!(c.is_confidential());
    assert!(r.client_secret.is_some());
    assert!(r.registration_access_token.is_some());
    assert_eq!(c.grant_types, vec![GrantType::AuthorizationCode]);
    assert_eq!(c.scopes, ["email", "offline_access", "openid", "profile"]);
    assert!(c.resources.is_empty());
    assert_eq!(c.created_at, Timestamp(NOW));
    assert_eq!(rig.store.client(&c.id).await.unwrap().as_ref(), Some(c));
    let v = r.to_json("https://authx.example/oauth2/register/x");
    assert_eq!(v["client_secret_expires_at"], 0);
    assert_eq!(v["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(v["response_types"], json!(["code"]));
    assert!(v.get("logo_uri").is_none());
    // Its one use is spent.
    assert!(matches!(
        rig.reg().register(Some(&token), meta(web())).await,
        Err(RegistrationError::InvalidToken)
    ));
}

#[tokio::test]
async fn refused_metadata_spends_no_use_and_tokens_expire_or_are_revoked() {
    let rig = Rig::new().await;
    let token = rig.initial(InitialTokenRequest::default()).await;
    for (bad, code) in [
        (
            json!({"redirect_uris": ["http://app.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://app.example/cb#f"]}),
            "invalid_redirect_uri",
        ),
        (json!({}), "invalid_redirect_uri"),
        (
            json!({"redirect_uris": ["https://app.example/cb"], "response_types": ["token"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://app.example/cb"], "scope": "openid admin"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://app.example/cb"], "grant_types": ["password"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://app.example/cb"], "id_token_signed_response_alg": "none"}),
            "invalid_client_metadata",
        ),
    ] {
        let e = rig
            .reg()
            .register(Some(&token), meta(bad.clone()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{bad}: {e}");
    }
    let list = rig.reg().initial_tokens().await.unwrap();
    assert_eq!(list[0].uses_left, 1);

    let two = rig
        .initial(InitialTokenRequest {
            uses: Some(2),
            ttl_secs: Some(600),
            ..InitialTokenRequest::default()
        })
        .await;
    rig.clock.advance(601);
    assert!(matches!(
        rig.reg().register(Some(&two), meta(web())).await,
        Err(RegistrationError::InvalidToken)
    ));
    assert!(
        rig.reg()
            .revoke_initial_token(&list[0].id, &Actor::CommandLine)
            .await
            .unwrap()
    );
    assert!(matches!(
        rig.reg().register(Some(&token), meta(web())).await,
        Err(RegistrationError::InvalidToken)
    ));
    for garbage in [None, Some(""), Some("not-a-token")] {
        assert!(matches!(
            rig.reg().register(garbage, meta(web())).await,
            Err(RegistrationError::InvalidToken)
        ));
    }
}

#[tokio::test]
async fn the_registration_token_manages_its_own_client_and_rotates_on_update() {
    let rig = Rig::new().await;
    let token = rig
        .initial(InitialTokenRequest {
            uses: Some(2),
            scopes: vec!["openid".into(), "read".into()],
            resources: vec!["https://api.example".into()],
            ..InitialTokenRequest::default()
        })
        .await;
    let a = rig.reg().register(Some(&token), meta(web())).await.unwrap();
    let b = rig.reg().register(Some(&token), meta(web())).await.unwrap();
    assert_eq!(a.client.resources, ["https://api.example"]);
    assert_eq!(a.client.scopes, ["openid", "read"]);
    let (a_id, a_token) = (
        a.client.id.clone(),
        a.registration_access_token.clone().unwrap(),
    );
    let b_token = b.registration_access_token.unwrap();

    assert_eq!(
        rig.reg()
            .read(&a_id, Some(&a_token))
            .await
            .unwrap()
            .client
            .id,
        a_id
    );
    assert!(matches!(
        rig.reg().read(&a_id, Some(&b_token)).await,
        Err(RegistrationError::InvalidToken)
    ));
    assert!(matches!(
        rig.reg().read(&a_id, None).await,
        Err(RegistrationError::InvalidToken)
    ));

    let wrong_secret =
        json!({"redirect_uris": ["https://app.example/new"], "client_secret": "guess"});
    let e = rig
        .reg()
        .update(&a_id, Some(&a_token), meta(wrong_secret))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_client_metadata");
    let to_public =
        json!({"redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "none"});
    assert!(
        rig.reg()
            .update(&a_id, Some(&a_token), meta(to_public))
            .await
            .is_err()
    );
    let other_id = json!({"redirect_uris": ["https://app.example/cb"], "client_id": "other"});
    assert!(
        rig.reg()
            .update(&a_id, Some(&a_token), meta(other_id))
            .await
            .is_err()
    );

    let same_secret = json!({
        "redirect_uris": ["https://app.example/new"],
        "client_secret": a.client_secret.unwrap(),
        "client_name": "Renamed",
        "scope": "openid",
    });
    let updated = rig
        .reg()
        .update(&a_id, Some(&a_token), meta(same_secret))
        .await
        .unwrap();
    assert_eq!(updated.client.redirect_uris, ["https://app.example/new"]);
    assert_eq!(updated.client.name, "Renamed");
    assert_eq!(updated.client.secret_hash, a.client.secret_hash);
    assert_eq!(updated.client.created_at, a.client.created_at);
    let stored = rig.store.client(&a_id).await.unwrap().unwrap();
    assert_eq!(stored.scopes, ["openid"]);
    let rotated = updated.registration_access_token.unwrap();
    assert_ne!(rotated, a_token);
    assert!(matches!(
        rig.reg().read(&a_id, Some(&a_token)).await,
        Err(RegistrationError::InvalidToken)
    ));
    // An update stays within what the initial token allowed.
    let beyond = json!({"redirect_uris": ["https://app.example/cb"], "scope": "openid email"});
    assert!(
        rig.reg()
            .update(&a_id, Some(&rotated), meta(beyond))
            .await
            .is_err()
    );

    assert!(matches!(
        rig.reg().delete(&a_id, Some(&b_token)).await,
        Err(RegistrationError::InvalidToken)
    ));
    rig.reg().delete(&a_id, Some(&rotated)).await.unwrap();
    assert_eq!(rig.store.client(&a_id).await.unwrap(), None);
    assert!(rig.store.client(&b.client.id).await.unwrap().is_some());
}

#[tokio::test]
async fn initial_token_requests_are_bounded() {
    let rig = Rig::new().await;
    for bad in [
        InitialTokenRequest {
            ttl_secs: Some(59),
            ..InitialTokenRequest::default()
        },
        InitialTokenRequest {
            uses: Some(0),
            ..InitialTokenRequest::default()
        },
        InitialTokenRequest {
            resources: vec!["https://unknown.example".into()],
            ..InitialTokenRequest::default()
        },
        InitialTokenRequest {
            scopes: vec!["a\"b".into()],
            ..InitialTokenRequest::default()
        },
    ] {
        assert!(matches!(
            rig.reg()
                .create_initial_token(bad, &Actor::CommandLine)
                .await,
            Err(RegistrationError::InvalidRequest(_))
        ));
    }
    assert!(rig.reg().initial_tokens().await.unwrap().is_empty());
    let (stored, token) = rig
        .reg()
        .create_initial_token(InitialTokenRequest::default(), &Actor::CommandLine)
        .await
        .unwrap();
    assert_eq!(stored.hash, TokenHash::of(token.as_bytes()));
    assert_eq!(token.len(), 43);
    assert_eq!(stored.expires_at, Timestamp(NOW + 86_400));
}

#[test]
fn metadata_must_be_an_object_with_the_rfc_types() {
    let bad: [&[u8]; 3] = [
        b"[]",
        b"nope",
        br#"{"redirect_uris": "https://a.example/cb"}"#,
    ];
    for bad in bad {
        assert_eq!(
            ClientMetadata::from_json(bad).unwrap_err().code(),
            "invalid_client_metadata"
        );
    }
    let many: Vec<String> = (0..11).map(|i| format!("https://a.example/{i}")).collect();
    let e = meta(json!({"redirect_uris": many}))
        .to_spec("id", &[], &[])
        .unwrap_err();
    assert_eq!(e.code(), "invalid_redirect_uri");
    let e =
        meta(json!({"redirect_uris": ["https://a.example/cb"], "client_name": "x".repeat(201)}))
            .to_spec("id", &[], &[])
            .unwrap_err();
    assert_eq!(e.code(), "invalid_client_metadata");
    let spec =
        meta(json!({"redirect_uris": ["https://a.example/cb"], "dpop_bound_access_tokens": true}))
            .to_spec("id", &[], &[])
            .unwrap();
    assert!(spec.dpop_bound_access_tokens);
    assert!(!spec.first_party);
}

#[tokio::test]
async fn a_private_key_jwt_client_registers_its_public_keys_and_keeps_its_method() {
    use crate::oauth::client::TokenEndpointAuthMethod;
    use crate::oauth::keys::{KeyEncryptor, Signer, SigningAlg, generate};
    let rig = Rig::new().await;
    let token = rig
        .initial(InitialTokenRequest {
            uses: Some(3),
            ..InitialTokenRequest::default()
        })
        .await;
    let enc = KeyEncryptor::new(&[7u8; 32]).unwrap();
    let k = generate(SigningAlg::Es256, &enc, Timestamp(0)).unwrap();
    let pkcs8 = enc.open(&k.kid, &k.private_key_encrypted).unwrap();
    let signer = Signer::from_pkcs8(SigningAlg::Es256, &k.kid, &pkcs8).unwrap();
    let jwks = json!({"keys": [signer.public_jwk()]});
    let body = json!({
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": jwks,
        "dpop_bound_access_tokens": true,
    });
    let r = rig
        .reg()
        .register(Some(&token), meta(body.clone()))
        .await
        .unwrap();
    assert_eq!(
        r.client.token_endpoint_auth_method,
        TokenEndpointAuthMethod::PrivateKeyJwt
    );
    assert!(r.client_secret.is_none(), "no secret for private_key_jwt");
    assert!(r.client.dpop_bound_access_tokens);
    let v = r.to_json("uri");
    assert_eq!(v["jwks"], jwks);
    assert_eq!(v["token_endpoint_auth_method"], "private_key_jwt");
    // No keys, a key that is not a public signature key, or keys for another method are
    // refused as the admin API refuses them.
    for bad in [
        json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt"}),
        json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt",
               "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}),
        json!({"grant_types": ["client_credentials"], "jwks": jwks}),
    ] {
        let e = rig
            .reg()
            .register(Some(&token), meta(bad.clone()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "invalid_client_metadata", "{bad}: {e}");
    }
    // The method stays a key: moving to a secret would leave the client without one.
    let reg_token = r.registration_access_token.unwrap();
    let mut to_secret = body.clone();
    to_secret["token_endpoint_auth_method"] = json!("client_secret_basic");
    to_secret.as_object_mut().unwrap().remove("jwks");
    let e = rig
        .reg()
        .update(&r.client.id, Some(&reg_token), meta(to_secret))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_client_metadata");
    // Between the two ways of sending a secret, a client may move.
    let basic = rig.reg().register(Some(&token), meta(web())).await.unwrap();
    let mut post = web();
    post["token_endpoint_auth_method"] = json!("client_secret_post");
    let moved = rig
        .reg()
        .update(
            &basic.client.id,
            basic.registration_access_token.as_deref(),
            meta(post),
        )
        .await
        .unwrap();
    assert_eq!(
        moved.client.token_endpoint_auth_method,
        TokenEndpointAuthMethod::ClientSecretPost
    );
    assert_eq!(moved.client.secret_hash, basic.client.secret_hash);
}
