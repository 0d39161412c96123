//! The relying-party flow against a fake upstream and the in-memory store: no network, no
//! server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::super::account::NO_PASSWORD;
use super::super::id_token::UpstreamKeys;
use super::super::id_token::tests::{keys_of, signer};
use super::super::upstream::Provider;
use super::*;
use crate::auth::{AuthPolicy, AuthService};
use crate::clock::ManualClock;
use crate::events::InProcessBus;
use crate::memory::MemoryStore;
use crate::oauth::jwt::sign;
use crate::oauth::keys::{Signer, SigningAlg};
use crate::password::{HashParams, PasswordHasher};
use crate::user::UserStatus;

const ISS: &str = "https://idp.example.com";
const CLIENT: &str = "authx";
const NOW: i64 = 1_700_000_000;
const PASSWORD: &str = "correct horse battery staple";

/// An upstream that answers from memory, signs with its own key and counts what it is asked.
struct FakeUpstream {
    signer: Signer,
    /// The key set served until a refetch for an unknown `kid` (`None`: the current one).
    stale_keys: Option<UpstreamKeys>,
    iss_supported: bool,
    allow_sign_up: bool,
    claims: Mutex<Value>,
    verifiers: Mutex<Vec<String>>,
    key_fetches: AtomicUsize,
}

impl FakeUpstream {
    fn new() -> Self {
        Self {
            signer: signer(SigningAlg::Es256),
            stale_keys: None,
            iss_supported: true,
            allow_sign_up: true,
            claims: Mutex::new(Value::Null),
            verifiers: Mutex::new(Vec::new()),
            key_fetches: AtomicUsize::new(0),
        }
    }

    /// The claims the next ID token carries.
    fn will_send(&self, claims: Value) {
        *self.claims.lock().unwrap() = claims;
    }

    fn exchanges(&self) -> usize {
        self.verifiers.lock().unwrap().len()
    }
}

#[async_trait]
impl UpstreamClient for FakeUpstream {
    fn provider(&self) -> Provider<'_> {
        Provider {
            name: "acme",
            issuer: ISS,
            client_id: CLIENT,
            scope: "openid email",
            redirect_uri: "https://authx.example/federation/acme/callback",
            allow_sign_up: self.allow_sign_up,
            email_claim: "email",
            email_verified_claim: "email_verified",
            trust_mfa: false,
        }
    }

    async fn metadata(&self, _now: Timestamp) -> Result<Arc<Metadata>, UpstreamError> {
        Ok(Arc::new(Metadata {
            issuer: ISS.into(),
            authorization_endpoint: format!("{ISS}/authorize"),
            token_endpoint: format!("{ISS}/token"),
            jwks_uri: format!("{ISS}/jwks"),
            iss_parameter_supported: self.iss_supported,
        }))
    }

    async fn keys(
        &self,
        _m: &Metadata,
        _now: Timestamp,
        unknown_kid: bool,
    ) -> Result<Arc<UpstreamKeys>, UpstreamError> {
        self.key_fetches.fetch_add(1, Ordering::SeqCst);
        Ok(Arc::new(match (&self.stale_keys, unknown_kid) {
            (Some(stale), false) => stale.clone(),
            _ => keys_of(&[&self.signer]),
        }))
    }

    async fn exchange_code(
        &self,
        _m: &Metadata,
        code: &str,
        verifier: &str,
    ) -> Result<UpstreamTokens, UpstreamError> {
        if code != "the-code" {
            return Err(UpstreamError::TokenRefused("invalid_grant".into()));
        }
        self.verifiers.lock().unwrap().push(verifier.to_owned());
        let claims = self.claims.lock().unwrap().clone();
        Ok(UpstreamTokens {
            id_token: sign(&self.signer, "JWT", &claims).unwrap(),
            access_token: None,
        })
    }
}

/// The account service over the in-memory store, at a fixed time.
struct Rig {
    store: MemoryStore,
    auth: AuthService,
    counted: Counted,
}

/// The sign-in attempts, as the metrics would count them.
#[derive(Default)]
struct Counted(Mutex<Vec<SignInOutcome>>);

impl SignInCounter for Counted {
    fn count(&self, outcome: SignInOutcome) {
        self.0.lock().unwrap().push(outcome);
    }
}

impl Rig {
    fn new() -> Self {
        let store = MemoryStore::default();
        let hasher = PasswordHasher::new(HashParams::default(), 2, Duration::from_secs(5)).unwrap();
        let auth = AuthService::new(
            store.auth_stores(),
            Arc::new(InProcessBus::default()),
            Arc::new(ManualClock::new(Timestamp(NOW))),
            hasher,
            AuthPolicy::default(),
        );
        Self {
            store,
            auth,
            counted: Counted::default(),
        }
    }

    fn rp(&self) -> RelyingParty<'_> {
        RelyingParty {
            auth: &self.auth,
            store: &self.store,
            sign_ins: &self.counted,
        }
    }

    async fn user(&self, email: &str, password_hash: &str) -> User {
        let user = User {
            id: crate::user::UserId::generate(),
            email: email.into(),
            password_hash: password_hash.into(),
            status: UserStatus::Active,
            is_admin: false,
            created_at: Timestamp(NOW),
            password_changed_at: Timestamp(NOW),
            email_verified: false,
        };
        crate::store::AccountStore::create_user(&self.store, &user)
            .await
            .unwrap();
        user
    }

    async fn users(&self) -> usize {
        crate::store::AccountStore::list_users(&self.store)
            .await
            .unwrap()
            .len()
    }
}

fn query_param(url: &str, name: &str) -> String {
    let query = url.split_once('?').unwrap().1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

fn claims(nonce: &str, sub: &str, email: &str, verified: bool) -> Value {
    json!({
        "iss": ISS, "sub": sub, "aud": CLIENT, "exp": NOW + 300, "iat": NOW,
        "nonce": nonce, "email": email, "email_verified": verified,
    })
}

fn ctx() -> ClientContext {
    ClientContext::default()
}

/// The upstream's redirect back with `state`, the code and the issuer.
fn callback_query(state: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("code", "the-code")
        .append_pair("state", state)
        .append_pair("iss", ISS)
        .finish()
}

/// Starts a sign-in from a new browser; the upstream will answer with the claims that
/// `claims` makes of the nonce. Returns the callback's query and the browser's binding.
async fn begin(
    rp: &RelyingParty<'_>,
    upstream: &FakeUpstream,
    claims: impl FnOnce(&str) -> Value,
) -> (String, BrowserBinding) {
    let started = rp
        .start(upstream, None, "/account?tab=1".into())
        .await
        .unwrap();
    upstream.will_send(claims(&query_param(&started.location, "nonce")));
    let query = callback_query(&query_param(&started.location, "state"));
    (query, started.binding)
}

/// A whole sign-in from a new browser, the upstream answering with `claims` of the nonce.
async fn attempt(
    rp: &RelyingParty<'_>,
    upstream: &FakeUpstream,
    claims: impl FnOnce(&str) -> Value,
) -> Result<Completed, FederationError> {
    let (query, binding) = begin(rp, upstream, claims).await;
    rp.complete(upstream, browser(&ctx(), &binding), Some(&query))
        .await
}

fn browser<'a>(ctx: &'a ClientContext, binding: &'a BrowserBinding) -> Browser<'a> {
    Browser {
        ctx,
        session: None,
        binding: Some(binding),
    }
}

#[tokio::test]
async fn start_sends_pkce_s256_state_and_nonce_and_the_callback_checks_the_verifier() {
    let rig = Rig::new();
    let rp = rig.rp();
    let upstream = FakeUpstream::new();
    let started = rp
        .start(&upstream, None, "/account?tab=1".into())
        .await
        .unwrap();
    assert!(started.location.starts_with(&format!("{ISS}/authorize?")));
    for (k, v) in [
        ("response_type", "code"),
        ("client_id", CLIENT),
        (
            "redirect_uri",
            "https://authx.example/federation/acme/callback",
        ),
        ("scope", "openid email"),
        ("code_challenge_method", "S256"),
    ] {
        assert_eq!(query_param(&started.location, k), v, "{k}");
    }
    upstream.will_send(claims(
        &query_param(&started.location, "nonce"),
        "sub-1",
        "kate@example.com",
        true,
    ));
    let query = callback_query(&query_param(&started.location, "state"));
    let done = rp
        .complete(&upstream, browser(&ctx(), &started.binding), Some(&query))
        .await
        .unwrap();
    let verifier = upstream.verifiers.lock().unwrap()[0].clone();
    assert_eq!(verifier.len(), 43, "256 random bits, base64url");
    assert_eq!(
        crate::oauth::pkce::s256(&verifier),
        query_param(&started.location, "code_challenge")
    );
    let Completed::SignedIn { signed, return_to } = done else {
        panic!("expected a sign-in");
    };
    assert_eq!(return_to, "/account?tab=1");
    assert_eq!(signed.session.auth_method, "federated:acme");
    assert_eq!(
        rig.counted.0.lock().unwrap().as_slice(),
        [SignInOutcome::Success]
    );
}

#[tokio::test]
async fn a_replayed_state_finds_nothing_and_reaches_no_upstream() {
    let rig = Rig::new();
    let rp = rig.rp();
    let upstream = FakeUpstream::new();
    let (query, binding) = begin(&rp, &upstream, |n| {
        claims(n, "sub-1", "kate@example.com", true)
    })
    .await;
    let first = rp
        .complete(&upstream, browser(&ctx(), &binding), Some(&query))
        .await;
    assert!(matches!(first, Ok(Completed::SignedIn { .. })));
    let replay = rp
        .complete(&upstream, browser(&ctx(), &binding), Some(&query))
        .await;
    assert!(matches!(replay, Err(FederationError::UnknownState)));
    assert_eq!(upstream.exchanges(), 1, "the replay exchanged no code");
    assert_eq!(rig.store.all_sessions().len(), 1);
}

#[tokio::test]
async fn a_state_started_in_another_browser_is_refused_and_spent() {
    let rig = Rig::new();
    let rp = rig.rp();
    let upstream = FakeUpstream::new();
    let (query, binding) = begin(&rp, &upstream, |n| {
        claims(n, "sub-1", "kate@example.com", true)
    })
    .await;
    let foreign = BrowserBinding::generate();
    let r = rp
        .complete(&upstream, browser(&ctx(), &foreign), Some(&query))
        .await;
    assert!(matches!(r, Err(FederationError::OtherBrowser)), "{r:?}");
    // The victim's own browser cannot use the state either: it was taken.
    let r = rp
        .complete(&upstream, browser(&ctx(), &binding), Some(&query))
        .await;
    assert!(matches!(r, Err(FederationError::UnknownState)), "{r:?}");
    // No binding cookie at all is another browser too.
    let (query, _) = begin(&rp, &upstream, |n| {
        claims(n, "sub-1", "kate@example.com", true)
    })
    .await;
    let no_cookie = Browser {
        ctx: &ctx(),
        session: None,
        binding: None,
    };
    let r = rp.complete(&upstream, no_cookie, Some(&query)).await;
    assert!(matches!(r, Err(FederationError::OtherBrowser)), "{r:?}");
    assert_eq!(upstream.exchanges(), 0);
    assert!(rig.store.all_sessions().is_empty());
    assert!(rig.counted.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn iss_must_name_the_expected_issuer_and_is_required_when_advertised() {
    let rig = Rig::new();
    let rp = rig.rp();
    let mut upstream = FakeUpstream::new();
    let with_iss = |query: &str, iss: Option<&str>| {
        let mut q: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .filter(|(k, _)| k != "iss")
            .collect();
        if let Some(iss) = iss {
            q.push(("iss".into(), iss.into()));
        }
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(q)
            .finish()
    };
    let mk = |n: &str| claims(n, "sub-1", "kate@example.com", true);
    let (query, binding) = begin(&rp, &upstream, mk).await;
    let foreign = with_iss(&query, Some("https://evil.example.com"));
    let r = rp
        .complete(&upstream, browser(&ctx(), &binding), Some(&foreign))
        .await;
    assert!(matches!(r, Err(FederationError::IssuerMismatch)), "{r:?}");
    let (query, binding) = begin(&rp, &upstream, mk).await;
    let missing = with_iss(&query, None);
    let r = rp
        .complete(&upstream, browser(&ctx(), &binding), Some(&missing))
        .await;
    assert!(matches!(r, Err(FederationError::IssuerMissing)), "{r:?}");
    assert_eq!(upstream.exchanges(), 0);
    // An upstream that does not advertise RFC 9207 may leave `iss` out.
    upstream.iss_supported = false;
    let (query, binding) = begin(&rp, &upstream, mk).await;
    let missing = with_iss(&query, None);
    let r = rp
        .complete(&upstream, browser(&ctx(), &binding), Some(&missing))
        .await;
    assert!(matches!(r, Ok(Completed::SignedIn { .. })), "{r:?}");
}

#[tokio::test]
async fn malformed_callbacks_and_upstream_errors_are_refused_before_any_exchange() {
    let rig = Rig::new();
    let rp = rig.rp();
    let upstream = FakeUpstream::new();
    let r = rp
        .complete(
            &upstream,
            browser(&ctx(), &BrowserBinding::generate()),
            Some("state=a&state=b"),
        )
        .await;
    assert!(matches!(r, Err(FederationError::Malformed)), "{r:?}");
    let r = rp
        .complete(
            &upstream,
            browser(&ctx(), &BrowserBinding::generate()),
            None,
        )
        .await;
    assert!(matches!(r, Err(FederationError::MissingState)), "{r:?}");
    let (query, binding) = begin(&rp, &upstream, |n| {
        claims(n, "sub-1", "kate@example.com", true)
    })
    .await;
    let denied = format!(
        "{}&error=access_denied%3Cscript%3E",
        query.replace("code=the-code&", "")
    );
    let r = rp
        .complete(&upstream, browser(&ctx(), &binding), Some(&denied))
        .await;
    match r {
        Err(FederationError::Denied(code)) => assert_eq!(code, "access_deniedscript"),
        other => panic!("{other:?}"),
    }
    assert_eq!(upstream.exchanges(), 0);
}

#[tokio::test]
async fn an_unverified_email_signs_nobody_up() {
    let rig = Rig::new();
    let rp = rig.rp();
    let upstream = FakeUpstream::new();
    let r = attempt(&rp, &upstream, |n| {
        claims(n, "sub-1", "kate@example.com", false)
    })
    .await;
    assert!(
        matches!(
            r,
            Err(FederationError::Refused(Refusal::UnverifiedEmailSignUp))
        ),
        "{r:?}"
    );
    assert_eq!(rig.users().await, 0);
    assert!(rig.store.all_links().is_empty());
    // The same identity with a verified address gets an account, linked by (issuer, subject).
    let r = attempt(&rp, &upstream, |n| {
        claims(n, "sub-1", "kate@example.com", true)
    })
    .await;
    assert!(matches!(r, Ok(Completed::SignedIn { .. })), "{r:?}");
    assert_eq!(rig.users().await, 1);
    let links = rig.store.all_links();
    assert_eq!(
        (links[0].issuer.as_str(), links[0].subject.as_str()),
        (ISS, "sub-1")
    );
}

#[tokio::test]
async fn a_link_is_found_by_issuer_and_subject_never_by_email() {
    let rig = Rig::new();
    let rp = rig.rp();
    let upstream = FakeUpstream::new();
    let linked = rig.user("linked@example.com", NO_PASSWORD).await;
    let other = rig.user("other@example.com", NO_PASSWORD).await;
    let identity = UpstreamIdentity {
        provider: "acme".into(),
        issuer: ISS.into(),
        subject: "sub-linked".into(),
        email: Some(linked.email.clone()),
        email_verified: true,
        upstream_mfa: false,
    };
    rig.store
        .create_link(&new_link(&identity, &linked.id, Timestamp(NOW)))
        .await
        .unwrap();
    // The token names the other account's address: the link, not the email, decides.
    let r = attempt(&rp, &upstream, |n| {
        claims(n, "sub-linked", &other.email, true)
    })
    .await;
    let Ok(Completed::SignedIn { signed, .. }) = r else {
        panic!("{r:?}");
    };
    assert_eq!(signed.user.id, linked.id);
    // The same subject at another issuer is another identity: no link, and the address of an
    // existing account without a password cannot be taken over.
    let r = attempt(&rp, &upstream, |n| {
        let mut c = claims(n, "sub-linked", &other.email, true);
        c["iss"] = json!("https://other-idp.example.com");
        c
    })
    .await;
    assert!(
        matches!(r, Err(FederationError::IdToken(IdTokenError::Issuer))),
        "{r:?}"
    );
    let r = attempt(&rp, &upstream, |n| {
        claims(n, "sub-unknown", &other.email, true)
    })
    .await;
    assert!(
        matches!(
            r,
            Err(FederationError::Refused(Refusal::CannotProveControl))
        ),
        "{r:?}"
    );
    assert_eq!(rig.store.all_links().len(), 1);
}

#[tokio::test]
async fn an_existing_account_is_linked_only_after_its_own_password() {
    let rig = Rig::new();
    let rp = rig.rp();
    let upstream = FakeUpstream::new();
    let hash = rig.auth_hash().await;
    let kate = rig.user("kate@example.com", &hash).await;
    let r = attempt(&rp, &upstream, |n| {
        claims(n, "sub-1", "kate@example.com", true)
    })
    .await;
    let Ok(Completed::ProveControl { token }) = r else {
        panic!("{r:?}");
    };
    assert!(
        rig.store.all_sessions().is_empty(),
        "no session before the password"
    );
    let pending = rp.pending_link(Some(&token)).await.unwrap().unwrap();
    assert_eq!(pending.user_id, kate.id);
    let r = rp
        .link(
            &pending,
            "wrong password",
            browser(&ctx(), &BrowserBinding::generate()),
        )
        .await;
    assert!(
        matches!(
            r,
            Err(FederationError::SignIn(AuthError::InvalidCredentials))
        ),
        "{r:?}"
    );
    assert!(rig.store.all_links().is_empty());
    let signed = rp
        .link(
            &pending,
            PASSWORD,
            browser(&ctx(), &BrowserBinding::generate()),
        )
        .await
        .unwrap();
    assert_eq!(signed.user.id, kate.id);
    let links = rig.store.all_links();
    assert_eq!(links.len(), 1);
    assert_eq!(
        (links[0].issuer.as_str(), links[0].subject.as_str()),
        (ISS, "sub-1")
    );
    // The pending link is spent.
    assert!(rp.pending_link(Some(&token)).await.unwrap().is_none());
    assert_eq!(
        rig.counted.0.lock().unwrap().as_slice(),
        [SignInOutcome::Failure, SignInOutcome::Success]
    );
}

#[tokio::test]
async fn a_rotated_upstream_key_is_fetched_again_once() {
    let rig = Rig::new();
    let rp = rig.rp();
    let mut upstream = FakeUpstream::new();
    upstream.stale_keys = Some(keys_of(&[&signer(SigningAlg::Es256)]));
    let r = attempt(&rp, &upstream, |n| {
        claims(n, "sub-1", "kate@example.com", true)
    })
    .await;
    assert!(matches!(r, Ok(Completed::SignedIn { .. })), "{r:?}");
    assert_eq!(upstream.key_fetches.load(Ordering::SeqCst), 2);
}

impl Rig {
    async fn auth_hash(&self) -> String {
        PasswordHasher::new(HashParams::default(), 1, Duration::from_secs(5))
            .unwrap()
            .hash(PASSWORD)
            .await
            .unwrap()
    }
}
