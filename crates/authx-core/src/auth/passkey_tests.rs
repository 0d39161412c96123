//! Passkey ceremonies in core, with the in-memory store and a manual clock: ceremony state is
//! single use, lapses after five minutes and is bound to the browser or session that began
//! it; a registration needs a recent sign-in; an assertion made with another user's
//! credential, an unknown one or one naming another user is refused. (The signatures
//! themselves are checked end to end with Chromium's virtual authenticator in the server's
//! `it::passkey` tests.)

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::{
    AuthError, AuthPolicy, AuthService, Authenticated, MfaRequirement, SecondFactors, SignedIn,
};
use crate::Timestamp;
use crate::audit::Audit;
use crate::clock::ManualClock;
use crate::events::InProcessBus;
use crate::memory::MemoryStore;
use crate::mfa::passkey::{CEREMONY_SECS, RelyingParty};
use crate::mfa::{Factors, MfaError};
use crate::password::{HashParams, PasswordHasher};
use crate::session::ClientContext;
use crate::user::User;

const NOW: i64 = 1_700_000_000;
const PASSWORD: &str = "correct horse battery staple";
/// A WebAuthn credential as webauthn-rs serializes it (from webauthn-rs-core's own tests).
const CREDENTIAL: &str = include_str!("passkey_credential_fixture.json");

fn ctx() -> ClientContext {
    ClientContext {
        ip: Some("192.0.2.7".into()),
        user_agent: Some("test".into()),
    }
}

struct Rig {
    clock: ManualClock,
    auth: AuthService,
    factors: Arc<Factors>,
}

impl Rig {
    async fn new() -> Self {
        Self::with_policy(MfaRequirement::None).await
    }

    async fn with_policy(required_for: MfaRequirement) -> Self {
        let store = MemoryStore::default();
        let clock = ManualClock::new(Timestamp(NOW));
        let hasher =
            PasswordHasher::new(HashParams::default(), 2, Duration::from_secs(5)).expect("hasher");
        let factors = Arc::new(
            Factors::new(
                Arc::new(store.clone()),
                &[7; 32],
                "authx",
                Arc::new(clock.clone()),
                Audit::log_only(Arc::new(clock.clone())),
            )
            .expect("factors")
            .with_relying_party(
                RelyingParty::new("https://id.example.com", None, "authx").expect("rp"),
            ),
        );
        let auth = AuthService::new(
            store.auth_stores(),
            Arc::new(InProcessBus::default()),
            Arc::new(clock.clone()),
            hasher,
            AuthPolicy::default(),
        )
        .with_second_factors(SecondFactors {
            factors: Arc::clone(&factors),
            links: Arc::new(store.clone()),
            required_for,
        });
        Self {
            clock,
            auth,
            factors,
        }
    }

    async fn user(&self, email: &str) -> User {
        self.auth
            .create_user(email, PASSWORD, false)
            .await
            .expect("user")
    }

    async fn password(&self, email: &str) -> Result<SignedIn, AuthError> {
        self.auth.sign_in(email, PASSWORD, &ctx(), None).await
    }

    async fn authenticated(&self, signed: &SignedIn) -> Authenticated {
        self.auth
            .authenticate(&signed.token, &ctx())
            .await
            .expect("authenticate")
            .map(|a| (*a).clone())
            .expect("live")
    }

    /// A passkey stored for `user` with credential id `raw_id`.
    async fn plant(&self, user: &User, raw_id: &[u8]) {
        let mut cred: Value = serde_json::from_str(CREDENTIAL).unwrap();
        cred["cred_id"] = json!(URL_SAFE_NO_PAD.encode(raw_id));
        self.factors
            .plant_passkey(&user.id, &cred.to_string())
            .await;
    }
}

/// An assertion as a browser would post it, for credential `raw_id` naming `user_handle`,
/// with a signature that verifies nothing.
fn assertion(raw_id: &[u8], user_handle: Option<&[u8]>) -> String {
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    json!({
        "id": b64(raw_id),
        "rawId": b64(raw_id),
        "type": "public-key",
        "response": {
            "authenticatorData": b64(&[0; 37]),
            "clientDataJSON": b64(b"{}"),
            "signature": b64(&[1; 64]),
            "userHandle": user_handle.map(b64),
        },
    })
    .to_string()
}

fn is_expired<T: std::fmt::Debug>(r: &Result<T, AuthError>) -> bool {
    matches!(r, Err(AuthError::Factor(MfaError::CeremonyExpired)))
}

fn is_refused<T: std::fmt::Debug>(r: &Result<T, AuthError>) -> bool {
    matches!(r, Err(AuthError::Factor(MfaError::InvalidPasskey)))
}

#[tokio::test]
async fn a_passwordless_ceremony_is_used_once() {
    let rig = Rig::new().await;
    let ada = rig.user("ada@example.com").await;
    rig.plant(&ada, b"ada-key").await;
    let c = rig.auth.begin_passkey_sign_in("pre-1").await.unwrap();
    assert_eq!(c.options["publicKey"]["rpId"], "id.example.com");
    assert_eq!(c.options["publicKey"]["userVerification"], "preferred");
    let token = c.token().unwrap().expose().to_owned();
    let answer = assertion(b"ada-key", Some(ada.id.0.as_bytes()));
    let first = rig
        .auth
        .finish_passkey_sign_in(&token, "pre-1", &answer, &ctx(), None, None)
        .await;
    // The signature is not valid, but the ceremony is spent either way.
    assert!(is_refused(&first), "{first:?}");
    let replay = rig
        .auth
        .finish_passkey_sign_in(&token, "pre-1", &answer, &ctx(), None, None)
        .await;
    assert!(is_expired(&replay), "{replay:?}");
}

#[tokio::test]
async fn a_ceremony_lapses_after_five_minutes() {
    let rig = Rig::new().await;
    let c = rig.auth.begin_passkey_sign_in("pre-2").await.unwrap();
    rig.clock.advance(CEREMONY_SECS);
    let late = rig
        .auth
        .finish_passkey_sign_in(
            c.token().unwrap().expose(),
            "pre-2",
            &assertion(b"k", None),
            &ctx(),
            None,
            None,
        )
        .await;
    assert!(is_expired(&late), "{late:?}");
}

#[tokio::test]
async fn a_ceremony_begun_in_another_browser_is_refused_and_spent() {
    let rig = Rig::new().await;
    let c = rig.auth.begin_passkey_sign_in("browser-a").await.unwrap();
    let token = c.token().unwrap().expose().to_owned();
    let elsewhere = rig
        .auth
        .finish_passkey_sign_in(
            &token,
            "browser-b",
            &assertion(b"k", None),
            &ctx(),
            None,
            None,
        )
        .await;
    assert!(is_expired(&elsewhere), "{elsewhere:?}");
    let then_here = rig
        .auth
        .finish_passkey_sign_in(
            &token,
            "browser-a",
            &assertion(b"k", None),
            &ctx(),
            None,
            None,
        )
        .await;
    assert!(is_expired(&then_here), "{then_here:?}");
}

#[tokio::test]
async fn passwordless_refuses_unknown_credentials_and_a_handle_naming_someone_else() {
    let rig = Rig::new().await;
    let ada = rig.user("ada@example.com").await;
    let eve = rig.user("eve@example.com").await;
    rig.plant(&ada, b"ada-key").await;
    for answer in [
        assertion(b"nobody's key", Some(ada.id.0.as_bytes())),
        assertion(b"ada-key", Some(eve.id.0.as_bytes())),
        assertion(b"ada-key", None),
        "not json".to_owned(),
    ] {
        let c = rig.auth.begin_passkey_sign_in("pre").await.unwrap();
        let r = rig
            .auth
            .finish_passkey_sign_in(
                c.token().unwrap().expose(),
                "pre",
                &answer,
                &ctx(),
                None,
                None,
            )
            .await;
        assert!(is_refused(&r), "{answer}: {r:?}");
    }
}

#[tokio::test]
async fn registration_needs_a_recent_sign_in_and_its_own_session() {
    let rig = Rig::new().await;
    rig.user("ada@example.com").await;
    let one = rig.password("ada@example.com").await.unwrap();
    let two = rig.password("ada@example.com").await.unwrap();
    let (one, two) = (rig.authenticated(&one).await, rig.authenticated(&two).await);

    let c = rig
        .auth
        .begin_passkey_registration(&one, None, &ctx())
        .await
        .expect("fresh sign-in");
    let pk = &c.options["publicKey"];
    assert_eq!(pk["rp"]["id"], "id.example.com");
    assert_eq!(pk["authenticatorSelection"]["residentKey"], "preferred");
    assert_eq!(
        pk["authenticatorSelection"]["userVerification"],
        "preferred"
    );
    // Another session of the same user cannot finish it, and the attempt spends it.
    let token = c.token().unwrap().expose().to_owned();
    let other = rig
        .auth
        .finish_passkey_registration(&two, &token, "laptop", "{}")
        .await;
    assert!(is_expired(&other), "{other:?}");
    let mine = rig
        .auth
        .finish_passkey_registration(&one, &token, "laptop", "{}")
        .await;
    assert!(is_expired(&mine), "{mine:?}");

    rig.clock.advance(super::REAUTH_WINDOW_SECS + 1);
    let stale = rig
        .auth
        .begin_passkey_registration(&one, None, &ctx())
        .await;
    assert!(
        matches!(stale, Err(AuthError::RecentSignInRequired)),
        "{stale:?}"
    );
    let wrong = rig
        .auth
        .begin_passkey_registration(&one, Some("nope"), &ctx())
        .await;
    assert!(matches!(wrong, Err(AuthError::WrongPassword)), "{wrong:?}");
    rig.auth
        .begin_passkey_registration(&one, Some(PASSWORD), &ctx())
        .await
        .expect("with the password");
}

#[tokio::test]
async fn the_second_factor_step_refuses_another_users_passkey() {
    let rig = Rig::new().await;
    let ada = rig.user("ada@example.com").await;
    let eve = rig.user("eve@example.com").await;
    rig.plant(&ada, b"ada-key").await;
    rig.plant(&eve, b"eve-key").await;

    // Eve's password, then the step: it offers a passkey.
    let waiting = match rig.password("eve@example.com").await {
        Err(AuthError::SecondFactorRequired(c)) => c,
        other => panic!("expected the second-factor step, got {other:?}"),
    };
    assert!(waiting.passkey);
    let (challenge, c) = rig
        .auth
        .begin_second_factor_passkey(waiting.token().expose(), &ctx())
        .await
        .unwrap();
    let allowed = c.options["publicKey"]["allowCredentials"]
        .as_array()
        .unwrap();
    assert_eq!(allowed.len(), 1);
    assert_eq!(allowed[0]["id"], URL_SAFE_NO_PAD.encode(b"eve-key"));
    // The old token was spent by the begin.
    let old = rig
        .auth
        .answer_second_factor(waiting.token().expose(), "123456", &ctx(), None)
        .await;
    assert!(matches!(old, Err(AuthError::SignInExpired)), "{old:?}");

    // Ada's credential (Eve has it on her authenticator, say) is a wrong answer.
    let answer = assertion(b"ada-key", Some(ada.id.0.as_bytes()));
    let refused = rig
        .auth
        .answer_second_factor_passkey(challenge.token().expose(), &answer, &ctx(), None)
        .await;
    let again = match refused {
        Err(AuthError::SecondFactorRequired(c)) => c,
        other => panic!("expected a wrong answer, got {other:?}"),
    };
    assert!(again.failed);
    assert_eq!(again.tries_left, super::MAX_TRIES - 1);
    // The refused answer spent its assertion: the new challenge holds none.
    let replay = rig
        .auth
        .answer_second_factor_passkey(again.token().expose(), &answer, &ctx(), None)
        .await;
    assert!(
        matches!(replay, Err(AuthError::SignInExpired)),
        "{replay:?}"
    );
}

#[tokio::test]
async fn a_passkey_is_a_factor_listed_and_removed_like_the_others() {
    let rig = Rig::new().await;
    let ada = rig.user("ada@example.com").await;
    rig.plant(&ada, b"ada-key").await;
    assert!(rig.factors.has_second_factor(&ada.id).await.unwrap());
    let listed = rig.factors.list(&ada.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].kind, crate::mfa::FactorKind::Passkey);
    rig.factors.remove(&ada.id, &listed[0].id).await.unwrap();
    assert!(!rig.factors.has_passkey(&ada.id).await.unwrap());
}

#[tokio::test]
async fn the_last_passkey_stays_when_policy_requires_a_second_factor() {
    let rig = Rig::with_policy(MfaRequirement::Everyone).await;
    let ada = rig.user("ada@example.com").await;
    rig.plant(&ada, b"ada-key").await;
    // The password alone now owes the passkey.
    let waiting = match rig.password("ada@example.com").await {
        Err(AuthError::SecondFactorRequired(c)) => c,
        other => panic!("expected the second-factor step, got {other:?}"),
    };
    assert!(waiting.passkey, "the step offers the passkey");
    // A session as the passkey's answer starts it (the answer itself is checked end to end
    // in the server's browser tests), fresh enough to change factors.
    let user = rig
        .auth
        .stores
        .accounts
        .user_by_id(&ada.id)
        .await
        .unwrap()
        .unwrap();
    let signed = rig
        .auth
        .start_session(user, &ctx(), "password+passkey_uv")
        .await
        .unwrap();
    let auth = rig.authenticated(&signed).await;
    let id = rig.auth.list_factors(&auth).await.unwrap()[0].id.clone();
    let refused = rig.auth.remove_factor(&auth, &id, None, &ctx()).await;
    assert!(
        matches!(refused, Err(AuthError::LastFactorRequired)),
        "{refused:?}"
    );
    assert!(rig.factors.has_passkey(&ada.id).await.unwrap());
}

#[tokio::test]
async fn asking_for_a_passkey_does_not_extend_the_waiting_sign_in() {
    let rig = Rig::new().await;
    let ada = rig.user("ada@example.com").await;
    rig.plant(&ada, b"ada-key").await;
    let mut token = match rig.password("ada@example.com").await {
        Err(AuthError::SecondFactorRequired(c)) => c.token().expose().to_owned(),
        other => panic!("expected the second-factor step, got {other:?}"),
    };
    // Asking again and again within the five minutes...
    for _ in 0..4 {
        rig.clock.advance(60);
        let (c, _) = rig
            .auth
            .begin_second_factor_passkey(&token, &ctx())
            .await
            .unwrap();
        token = c.token().expose().to_owned();
    }
    // ...does not outlive the first deadline.
    rig.clock.advance(61);
    let late = rig.auth.begin_second_factor_passkey(&token, &ctx()).await;
    assert!(matches!(late, Err(AuthError::SignInExpired)), "{late:?}");
}
