//! The account and session rules against the in-memory store and a manual clock: sign-in and
//! its throttling, session lifetimes, revocation, password change, disabling, and the session
//! cache. No network, no server.

use std::sync::Arc;
use std::time::Duration;

use super::{
    AuthError, AuthMethod, AuthPolicy, AuthService, Authentication, PendingSignIn, Recovery,
    SignedIn,
};
use crate::Timestamp;
use crate::clock::{Clock as _, ManualClock};
use crate::events::{InProcessBus, RevocationEvent};
use crate::links::{LinkPurpose, LinkRecord, LinkTokenStore};
use crate::mail::{MailError, Mailer, Message};
use crate::memory::MemoryStore;
use crate::password::{HashParams, PasswordHasher};
use crate::session::ClientContext;
use crate::store::SessionStore;
use crate::user::User;

const NOW: i64 = 1_700_000_000;
const EMAIL: &str = "ada@example.com";
const PASSWORD: &str = "correct horse battery staple";

/// The service over one in-memory store and its clock, with one user.
struct Rig {
    store: MemoryStore,
    clock: ManualClock,
    auth: AuthService,
    user: User,
    mails: Arc<RecordingMailer>,
}

/// A mailer that keeps what it was asked to send.
#[derive(Default)]
struct RecordingMailer(std::sync::Mutex<Vec<(String, Message)>>);

#[async_trait::async_trait]
impl Mailer for RecordingMailer {
    async fn send(&self, to: &str, message: Message) -> Result<String, MailError> {
        self.0.lock().unwrap().push((to.to_owned(), message));
        Ok(crate::secret::random_id())
    }
}

impl RecordingMailer {
    fn take(&self) -> Vec<(String, Message)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Rig {
    async fn new() -> Self {
        Self::with(|_| {}).await
    }

    async fn with(configure: impl FnOnce(&mut AuthPolicy)) -> Self {
        let store = MemoryStore::default();
        let clock = ManualClock::new(Timestamp(NOW));
        let mut policy = AuthPolicy::default();
        configure(&mut policy);
        let hasher =
            PasswordHasher::new(HashParams::default(), 2, Duration::from_secs(5)).expect("hasher");
        let auth = AuthService::new(
            store.auth_stores(),
            Arc::new(InProcessBus::default()),
            Arc::new(clock.clone()),
            hasher,
            policy,
        );
        let mails = Arc::new(RecordingMailer::default());
        let limiter = crate::ratelimit::RateLimiter::new(
            Arc::new(crate::ratelimit::LocalCounter::default()),
            Arc::new(clock.clone()),
        );
        let auth = auth.with_recovery(Recovery {
            links: Arc::new(store.clone()),
            mailer: mails.clone(),
            per_address: Some(super::AddressLimit {
                key: [7; 32],
                limiter: Arc::new(limiter),
                limit: crate::ratelimit::RateLimit {
                    max: 3,
                    window_secs: 3600,
                },
            }),
        });
        let user = auth
            .create_user(EMAIL, PASSWORD, false)
            .await
            .expect("user");
        Self {
            store,
            clock,
            auth,
            user,
            mails,
        }
    }

    fn ctx() -> ClientContext {
        ClientContext {
            ip: Some("192.0.2.1".into()),
            user_agent: Some("test".into()),
        }
    }

    async fn sign_in(&self) -> SignedIn {
        self.auth
            .sign_in(EMAIL, PASSWORD, &Self::ctx(), None)
            .await
            .expect("sign-in")
    }

    async fn attempt(&self, password: &str) -> Result<SignedIn, AuthError> {
        self.auth.sign_in(EMAIL, password, &Self::ctx(), None).await
    }

    /// Whether the session of `signed` still authenticates a request.
    async fn live(&self, signed: &SignedIn) -> bool {
        self.auth
            .authenticate(&signed.token, &Self::ctx())
            .await
            .expect("authenticate")
            .is_some()
    }
}

#[tokio::test]
async fn sign_in_starts_a_password_session_that_authenticates() {
    let rig = Rig::new().await;
    let signed = rig.sign_in().await;
    assert_eq!(signed.user.id, rig.user.id);
    assert_eq!(signed.session.auth_method, "password");
    assert_eq!(signed.session.created_at, Timestamp(NOW));
    let auth = rig
        .auth
        .authenticate(&signed.token, &Rig::ctx())
        .await
        .unwrap()
        .expect("signed in");
    assert_eq!(auth.session.id, signed.session.id);
    let how = auth.authentication();
    assert_eq!(how.methods, vec![AuthMethod::Password]);
    assert_eq!(how.amr(), vec!["pwd"]);
    assert!(how.is_fresh(Timestamp(NOW + 300), 300));
    assert!(!how.is_fresh(Timestamp(NOW + 301), 300));
}

#[tokio::test]
async fn unknown_user_wrong_password_and_disabled_account_look_alike() {
    let rig = Rig::new().await;
    assert!(matches!(
        rig.attempt("wrong password entirely").await,
        Err(AuthError::InvalidCredentials)
    ));
    let unknown = rig
        .auth
        .sign_in("bob@example.com", PASSWORD, &Rig::ctx(), None)
        .await;
    assert!(matches!(unknown, Err(AuthError::InvalidCredentials)));
    let malformed = rig
        .auth
        .sign_in("not an address", PASSWORD, &Rig::ctx(), None)
        .await;
    assert!(matches!(malformed, Err(AuthError::InvalidCredentials)));
    rig.auth.disable_user(&rig.user.id).await.unwrap();
    assert!(matches!(
        rig.attempt(PASSWORD).await,
        Err(AuthError::InvalidCredentials)
    ));
    rig.auth.enable_user(&rig.user.id).await.unwrap();
    rig.sign_in().await;
}

#[tokio::test]
async fn repeated_failures_throttle_then_wait_out() {
    let rig = Rig::new().await;
    for _ in 0..5 {
        assert!(matches!(
            rig.attempt("wrong password entirely").await,
            Err(AuthError::InvalidCredentials)
        ));
    }
    // Five free failures; the next attempt waits one second, even with the right password.
    assert!(matches!(
        rig.attempt(PASSWORD).await,
        Err(AuthError::Throttled {
            retry_after_secs: 1
        })
    ));
    rig.clock.advance(1);
    let signed = rig.sign_in().await;
    // Success clears the account's counter.
    assert!(rig.live(&signed).await);
    assert!(matches!(
        rig.attempt("wrong password entirely").await,
        Err(AuthError::InvalidCredentials)
    ));
}

#[tokio::test]
async fn enough_failures_lock_the_account() {
    let rig = Rig::with(|p| {
        p.throttle.account_free_failures = 3;
        p.throttle.lock_after = 3;
        p.throttle.lock_secs = 600;
    })
    .await;
    for _ in 0..3 {
        let _ = rig.attempt("wrong password entirely").await;
    }
    assert!(matches!(
        rig.attempt(PASSWORD).await,
        Err(AuthError::Throttled {
            retry_after_secs: 600
        })
    ));
    rig.clock.advance(600);
    rig.sign_in().await;
}

#[tokio::test]
async fn an_idle_session_ends() {
    let rig = Rig::new().await;
    let signed = rig.sign_in().await;
    rig.clock.advance(3_599);
    assert!(rig.live(&signed).await, "activity moves the idle deadline");
    rig.clock.advance(3_599);
    assert!(rig.live(&signed).await);
    rig.clock.advance(3_600);
    assert!(!rig.live(&signed).await);
    // The ended session's row is gone, not only refused.
    assert!(rig.store.all_sessions().is_empty());
}

#[tokio::test]
async fn activity_never_outlives_the_absolute_lifetime() {
    let rig = Rig::new().await;
    let signed = rig.sign_in().await;
    for _ in 0..47 {
        rig.clock.advance(1_800);
        assert!(rig.live(&signed).await);
    }
    rig.clock.advance(1_800);
    assert!(!rig.live(&signed).await, "24 hours after sign-in");
}

#[tokio::test]
async fn sign_in_replaces_the_session_it_came_with() {
    let rig = Rig::new().await;
    let planted = rig.sign_in().await;
    let fresh = rig
        .auth
        .sign_in(EMAIL, PASSWORD, &Rig::ctx(), Some(&planted.token))
        .await
        .unwrap();
    assert_ne!(fresh.session.id, planted.session.id);
    assert_ne!(fresh.token.expose(), planted.token.expose());
    assert!(!rig.live(&planted).await);
    assert!(rig.live(&fresh).await);
}

#[tokio::test]
async fn revoking_one_session_or_all_others() {
    let rig = Rig::new().await;
    let a = rig.sign_in().await;
    let b = rig.sign_in().await;
    let c = rig.sign_in().await;
    assert_eq!(rig.auth.sessions(&rig.user.id).await.unwrap().len(), 3);
    rig.auth
        .revoke_session(&rig.user.id, &b.session.id)
        .await
        .unwrap();
    assert!(!rig.live(&b).await);
    assert!(matches!(
        rig.auth.revoke_session(&rig.user.id, &b.session.id).await,
        Err(AuthError::NotFound)
    ));
    let n = rig
        .auth
        .revoke_other_sessions(&rig.user.id, Some(&c.session.id))
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert!(!rig.live(&a).await);
    assert!(rig.live(&c).await);
}

#[tokio::test]
async fn another_users_session_cannot_be_revoked() {
    let rig = Rig::new().await;
    let mine = rig.sign_in().await;
    let other = rig
        .auth
        .create_user("eve@example.com", PASSWORD, false)
        .await
        .unwrap();
    assert!(matches!(
        rig.auth.revoke_session(&other.id, &mine.session.id).await,
        Err(AuthError::NotFound)
    ));
    assert!(rig.live(&mine).await);
}

#[tokio::test]
async fn a_password_change_ends_every_session_and_issues_one() {
    let rig = Rig::new().await;
    let elsewhere = rig.sign_in().await;
    let here = rig.sign_in().await;
    let auth = rig
        .auth
        .authenticate(&here.token, &Rig::ctx())
        .await
        .unwrap()
        .unwrap();
    let wrong = rig
        .auth
        .change_password(
            &auth,
            "not the password",
            "a new long passphrase",
            &Rig::ctx(),
        )
        .await;
    assert!(matches!(wrong, Err(AuthError::WrongPassword)));
    rig.clock.advance(10);
    let new = "an entirely new passphrase";
    let renewed = rig
        .auth
        .change_password(&auth, PASSWORD, new, &Rig::ctx())
        .await
        .unwrap();
    assert!(!rig.live(&elsewhere).await);
    assert!(!rig.live(&here).await);
    assert!(rig.live(&renewed).await);
    // The re-issued session counts as a fresh authentication with the same method.
    let how = Authentication::of(&renewed.session);
    assert_eq!(how.at, Timestamp(NOW + 10));
    assert_eq!(how.methods, vec![AuthMethod::Password]);
    assert!(matches!(
        rig.attempt(PASSWORD).await,
        Err(AuthError::InvalidCredentials)
    ));
    rig.auth
        .sign_in(EMAIL, new, &Rig::ctx(), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn disabling_ends_every_session() {
    let rig = Rig::new().await;
    let a = rig.sign_in().await;
    let b = rig.sign_in().await;
    assert!(rig.live(&a).await);
    rig.auth.disable_user(&rig.user.id).await.unwrap();
    assert!(!rig.live(&a).await);
    assert!(!rig.live(&b).await);
    assert!(rig.store.all_sessions().is_empty());
    rig.auth.enable_user(&rig.user.id).await.unwrap();
    assert!(!rig.live(&a).await, "enabling brings no session back");
    let missing = crate::user::UserId("nobody".into());
    assert!(matches!(
        rig.auth.disable_user(&missing).await,
        Err(AuthError::NotFound)
    ));
}

#[tokio::test]
async fn a_revocation_elsewhere_reaches_the_cache_through_its_event() {
    let rig = Rig::new().await;
    let signed = rig.sign_in().await;
    assert!(rig.live(&signed).await, "now cached");
    // Another instance ends the session: the shared store loses it, this cache does not know.
    rig.store
        .delete_session(&rig.user.id, &signed.session.id)
        .await
        .unwrap();
    assert!(rig.live(&signed).await, "served from the cache");
    rig.auth.apply_remote_event(&RevocationEvent::SessionEnded {
        session_id: signed.session.id.clone(),
        user_id: rig.user.id.clone(),
    });
    assert!(!rig.live(&signed).await);
}

#[tokio::test]
async fn a_remote_user_disable_drops_every_cached_session_of_the_user() {
    let rig = Rig::new().await;
    let a = rig.sign_in().await;
    let b = rig.sign_in().await;
    assert!(rig.live(&a).await && rig.live(&b).await);
    rig.store
        .delete_user_sessions(&rig.user.id, None)
        .await
        .unwrap();
    rig.auth.apply_remote_event(&RevocationEvent::UserDisabled {
        user_id: rig.user.id.clone(),
    });
    assert!(!rig.live(&a).await);
    assert!(!rig.live(&b).await);
}

#[tokio::test]
async fn federated_sign_in_goes_through_the_same_steps() {
    let rig = Rig::new().await;
    let planted = rig.sign_in().await;
    let signed = rig
        .auth
        .sign_in_verified(
            &rig.user.id,
            &Rig::ctx(),
            Some(&planted.token),
            "federated:acme",
            None,
        )
        .await
        .unwrap();
    assert_eq!(signed.session.auth_method, "federated:acme");
    assert!(!rig.live(&planted).await);
    let how = Authentication::of(&signed.session);
    assert_eq!(how.methods, vec![AuthMethod::Federated("acme".into())]);
    assert_eq!(how.amr(), vec!["fed"]);
}

#[tokio::test]
async fn a_pending_sign_in_owes_no_step_yet() {
    let rig = Rig::new().await;
    let pending = rig
        .auth
        .check_password(EMAIL, PASSWORD, &Rig::ctx())
        .await
        .unwrap();
    assert!(pending.next_step().is_none());
    assert_eq!(pending.user().id, rig.user.id);
    assert_eq!(pending.started_at(), Timestamp(NOW));
    // No session exists until the sign-in completes.
    assert!(rig.store.all_sessions().is_empty());
    let signed = rig
        .auth
        .complete_sign_in(pending, &Rig::ctx(), None)
        .await
        .unwrap();
    assert!(rig.live(&signed).await);
}

#[test]
fn methods_round_trip_and_join() {
    for stored in ["password", "federated:acme", "webauthn"] {
        assert_eq!(AuthMethod::parse(stored).stored(), stored);
    }
    let user = User {
        id: crate::user::UserId("u".into()),
        email: EMAIL.into(),
        password_hash: String::new(),
        status: crate::user::UserStatus::Active,
        is_admin: false,
        created_at: Timestamp(NOW),
        password_changed_at: Timestamp(NOW),
        email_verified: false,
    };
    let mut pending = PendingSignIn::new(user, AuthMethod::Password, Timestamp(NOW));
    pending.proved(AuthMethod::Other("otp".into()));
    assert_eq!(pending.stored_methods(), "password+otp");
    assert_eq!(pending.methods().len(), 2);
}

#[tokio::test]
async fn sign_up_signs_in_unless_turned_off_or_taken() {
    let rig = Rig::new().await;
    let taken = rig.auth.sign_up(EMAIL, PASSWORD, &Rig::ctx()).await;
    assert!(matches!(taken, Err(AuthError::EmailTaken)));
    let weak = rig
        .auth
        .sign_up("bob@example.com", "short", &Rig::ctx())
        .await;
    assert!(matches!(weak, Err(AuthError::WeakPassword(_))));
    let signed = rig
        .auth
        .sign_up("bob@example.com", PASSWORD, &Rig::ctx())
        .await
        .unwrap();
    let super::SignUpOutcome::SignedIn(signed) = signed else {
        panic!("without an email channel sign-up signs in");
    };
    assert!(rig.live(&signed).await);
    let closed = Rig::with(|p| p.sign_up_enabled = false).await;
    let refused = closed
        .auth
        .sign_up("bob@example.com", PASSWORD, &Rig::ctx())
        .await;
    assert!(matches!(refused, Err(AuthError::SignUpDisabled)));
}

#[tokio::test]
async fn the_session_cap_ends_the_oldest() {
    let rig = Rig::with(|p| p.session.max_per_user = Some(2)).await;
    let oldest = rig.sign_in().await;
    rig.clock.advance(1);
    let middle = rig.sign_in().await;
    rig.clock.advance(1);
    let newest = rig.sign_in().await;
    assert!(!rig.live(&oldest).await);
    assert!(rig.live(&middle).await);
    assert!(rig.live(&newest).await);
}

#[tokio::test]
async fn a_bound_session_refuses_another_user_agent() {
    let rig = Rig::with(|p| p.session.bind_user_agent = true).await;
    let signed = rig.sign_in().await;
    let elsewhere = ClientContext {
        user_agent: Some("another browser".into()),
        ..Rig::ctx()
    };
    let auth = rig
        .auth
        .authenticate(&signed.token, &elsewhere)
        .await
        .unwrap();
    assert!(auth.is_none());
    assert!(rig.live(&signed).await, "the session itself stays");
}

impl Rig {
    /// Asks for a reset of `email` and returns the token of the link mailed to the owner.
    async fn reset_token(&self, email: &str) -> String {
        self.auth.request_reset(email).await.unwrap();
        match self.mails.take().as_slice() {
            [
                (
                    to,
                    Message::PasswordReset {
                        token,
                        valid_minutes: 30,
                    },
                ),
            ] if to == email => token.clone(),
            other => panic!("expected one reset mail to {email}, got {other:?}"),
        }
    }
}

const NEW_PASSWORD: &str = "a brand new passphrase";

#[tokio::test]
async fn a_reset_link_sets_the_password_once_and_ends_everything() {
    let rig = Rig::new().await;
    let before = rig.sign_in().await;
    let token = rig.reset_token(EMAIL).await;
    let user = rig.auth.reset_password(&token, NEW_PASSWORD).await.unwrap();
    assert_eq!(user.id, rig.user.id);
    assert!(
        !rig.live(&before).await,
        "sessions end with the old password"
    );
    assert!(
        rig.store.all_sessions().is_empty(),
        "a reset signs nobody in"
    );
    assert!(matches!(
        rig.attempt(PASSWORD).await,
        Err(AuthError::InvalidCredentials)
    ));
    rig.attempt(NEW_PASSWORD)
        .await
        .expect("the new password works");
    let mails = rig.mails.take();
    assert_eq!(mails, [(EMAIL.to_owned(), Message::PasswordChanged)]);
    assert!(matches!(
        rig.auth
            .reset_password(&token, "another new passphrase")
            .await,
        Err(AuthError::InvalidLink)
    ));
}

#[tokio::test]
async fn every_address_gets_the_same_answer_and_only_owners_get_mail() {
    let rig = Rig::new().await;
    for nobody in ["bob@example.com", "not an address", ""] {
        rig.auth.request_reset(nobody).await.expect("same answer");
    }
    assert!(rig.mails.take().is_empty());
    let disabled = rig
        .auth
        .create_user("dis@example.com", PASSWORD, false)
        .await
        .unwrap();
    rig.auth.disable_user(&disabled.id).await.unwrap();
    rig.auth.request_reset("dis@example.com").await.unwrap();
    assert!(
        rig.mails.take().is_empty(),
        "a disabled account gets nothing"
    );
    let mut fed = User {
        id: crate::user::UserId::generate(),
        email: "fed@example.com".into(),
        password_hash: crate::federation::NO_PASSWORD.into(),
        ..rig.user.clone()
    };
    fed.is_admin = false;
    crate::store::AccountStore::create_user(&rig.store, &fed)
        .await
        .unwrap();
    rig.auth.request_reset("FED@example.com").await.unwrap();
    assert_eq!(
        rig.mails.take(),
        [(
            "fed@example.com".to_owned(),
            Message::PasswordResetUnavailable
        )]
    );
}

#[tokio::test]
async fn expired_foreign_and_malformed_links_change_nothing() {
    let rig = Rig::new().await;
    let token = rig.reset_token(EMAIL).await;
    rig.clock.advance(30 * 60);
    assert!(matches!(
        rig.auth.reset_password(&token, NEW_PASSWORD).await,
        Err(AuthError::InvalidLink)
    ));
    assert_eq!(rig.auth.purge_link_tokens().await.unwrap(), 1);
    for bad in ["", "short", &"A".repeat(43)] {
        assert!(matches!(
            rig.auth.reset_password(bad, NEW_PASSWORD).await,
            Err(AuthError::InvalidLink)
        ));
    }
    // A token of another purpose is refused, and stays for its own.
    let (other, record) =
        LinkRecord::issue(LinkPurpose::VerifyEmail, &rig.user.id, rig.clock.now());
    rig.store.insert_link_token(&record).await.unwrap();
    assert!(matches!(
        rig.auth.reset_password(other.expose(), NEW_PASSWORD).await,
        Err(AuthError::InvalidLink)
    ));
    assert!(
        rig.store
            .take_link_token(&other.hash(), LinkPurpose::VerifyEmail, rig.clock.now())
            .await
            .unwrap()
            .is_some()
    );
    rig.attempt(PASSWORD)
        .await
        .expect("the password is unchanged");
}

#[tokio::test]
async fn a_refused_password_keeps_the_link_and_a_token_acts_for_its_own_user_only() {
    let rig = Rig::new().await;
    let other = rig
        .auth
        .create_user("eve@example.com", PASSWORD, false)
        .await
        .unwrap();
    let token = rig.reset_token(EMAIL).await;
    let eves = rig.reset_token("eve@example.com").await;
    assert!(matches!(
        rig.auth.reset_password(&token, "short").await,
        Err(AuthError::WeakPassword(_))
    ));
    let user = rig.auth.reset_password(&token, NEW_PASSWORD).await.unwrap();
    assert_eq!(user.id, rig.user.id);
    rig.auth
        .sign_in("eve@example.com", PASSWORD, &Rig::ctx(), None)
        .await
        .expect("the other user's password is untouched");
    let eve = rig.auth.reset_password(&eves, NEW_PASSWORD).await.unwrap();
    assert_eq!(eve.id, other.id);
}

#[tokio::test]
async fn a_reset_removes_the_users_other_reset_links() {
    let rig = Rig::new().await;
    let first = rig.reset_token(EMAIL).await;
    let second = rig.reset_token(EMAIL).await;
    rig.auth
        .reset_password(&second, NEW_PASSWORD)
        .await
        .unwrap();
    assert!(matches!(
        rig.auth
            .reset_password(&first, "yet another passphrase")
            .await,
        Err(AuthError::InvalidLink)
    ));
}

#[tokio::test]
async fn concurrent_uses_of_one_link_reset_once() {
    let rig = Arc::new(Rig::new().await);
    let token = rig.reset_token(EMAIL).await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (rig, token) = (rig.clone(), token.clone());
            tokio::spawn(async move { rig.auth.reset_password(&token, NEW_PASSWORD).await.is_ok() })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
}

#[tokio::test]
async fn reset_mails_per_address_are_limited_without_a_different_answer() {
    let rig = Rig::new().await;
    rig.auth
        .create_user("eve@example.com", PASSWORD, false)
        .await
        .unwrap();
    for _ in 0..3 {
        rig.reset_token(EMAIL).await;
    }
    for _ in 0..5 {
        rig.auth
            .request_reset("ADA@example.com")
            .await
            .expect("same answer");
    }
    assert!(rig.mails.take().is_empty(), "nothing past the allowance");
    rig.reset_token("eve@example.com").await;
    rig.clock.advance(3600);
    rig.reset_token(EMAIL).await;
}

#[tokio::test]
async fn a_reset_lifts_the_lock_that_guesses_at_the_old_password_caused() {
    let rig = Rig::with(|p| {
        p.throttle.account_free_failures = 3;
        p.throttle.lock_after = 3;
        p.throttle.lock_secs = 600;
    })
    .await;
    for _ in 0..3 {
        let _ = rig.attempt("wrong password entirely").await;
    }
    assert!(matches!(
        rig.attempt(PASSWORD).await,
        Err(AuthError::Throttled { .. })
    ));
    let token = rig.reset_token(EMAIL).await;
    rig.auth.reset_password(&token, NEW_PASSWORD).await.unwrap();
    rig.auth
        .sign_in(EMAIL, NEW_PASSWORD, &Rig::ctx(), None)
        .await
        .expect("the owner signs in with the new password at once");
}
