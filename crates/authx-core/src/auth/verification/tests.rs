//! Verification and the quiet sign-up against the in-memory store, a manual clock and a mailer
//! that records what it was asked to send.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{SignUpOutcome, Verification};
use crate::Timestamp;
use crate::auth::{AddressLimit, AuthError, AuthPolicy, AuthService};
use crate::clock::ManualClock;
use crate::events::InProcessBus;
use crate::links::{LinkPurpose, LinkRecord, LinkTokenStore as _};
use crate::mail::{MailError, Mailer, Message};
use crate::memory::MemoryStore;
use crate::password::{HashParams, PasswordHasher};
use crate::ratelimit::{LocalCounter, RateLimit, RateLimiter};
use crate::session::ClientContext;
use crate::store::AccountStore as _;

const NOW: i64 = 1_700_000_000;
const PASSWORD: &str = "correct horse battery staple";

#[derive(Default)]
struct Mails(Mutex<Vec<(String, Message)>>);

#[async_trait::async_trait]
impl Mailer for Mails {
    async fn send(&self, to: &str, message: Message) -> Result<String, MailError> {
        self.0.lock().unwrap().push((to.to_owned(), message));
        Ok(crate::secret::random_id())
    }
}

impl Mails {
    fn take(&self) -> Vec<(String, Message)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct Rig {
    store: MemoryStore,
    clock: ManualClock,
    auth: AuthService,
    mails: Arc<Mails>,
}

fn rig(require: bool, per_address: u32) -> Rig {
    let store = MemoryStore::default();
    let clock = ManualClock::new(Timestamp(NOW));
    let hasher = PasswordHasher::new(HashParams::default(), 2, Duration::from_secs(5)).unwrap();
    let mails = Arc::new(Mails::default());
    let limiter = RateLimiter::new(Arc::new(LocalCounter::default()), Arc::new(clock.clone()));
    let auth = AuthService::new(
        store.auth_stores(),
        Arc::new(InProcessBus::default()),
        Arc::new(clock.clone()),
        hasher,
        AuthPolicy::default(),
    )
    .with_verification(Verification {
        links: Arc::new(store.clone()),
        mailer: mails.clone(),
        per_address: Some(AddressLimit {
            key: [7; 32],
            limiter: Arc::new(limiter),
            limit: RateLimit {
                max: per_address,
                window_secs: 3600,
            },
        }),
        require_verified_email: require,
    });
    Rig {
        store,
        clock,
        auth,
        mails,
    }
}

fn ctx() -> ClientContext {
    ClientContext {
        ip: Some("192.0.2.1".into()),
        user_agent: Some("test".into()),
    }
}

/// The token of the one verification mail sent.
fn token_of(mails: &[(String, Message)]) -> String {
    match mails {
        [(_, Message::VerifyEmail { token, valid_hours })] => {
            assert_eq!(*valid_hours, 24);
            token.clone()
        }
        other => panic!("expected one verification mail, got {other:?}"),
    }
}

#[tokio::test]
async fn sign_up_mails_a_link_signs_nobody_in_and_a_taken_address_answers_alike() {
    let r = rig(false, 10);
    let new = r.auth.sign_up("ada@example.com", PASSWORD, &ctx()).await;
    assert!(matches!(new, Ok(SignUpOutcome::CheckMail)));
    let token = token_of(&r.mails.take());
    let user = r
        .store
        .user_by_email("ada@example.com")
        .await
        .unwrap()
        .unwrap();
    assert!(!user.email_verified);

    // The same address again (a look-alike spelling): the same answer, a notice to the owner.
    let taken = r.auth.sign_up("ADA@example.com", PASSWORD, &ctx()).await;
    assert!(matches!(taken, Ok(SignUpOutcome::CheckMail)));
    assert!(matches!(
        r.mails.take().as_slice(),
        [(to, Message::SignUpAttempt)] if to == "ada@example.com"
    ));

    let verified = r.auth.verify_email(&token).await.unwrap();
    assert!(verified.email_verified);
    let stored = r.store.user_by_id(&user.id).await.unwrap().unwrap();
    assert!(stored.email_verified);
    // Single use.
    assert!(matches!(
        r.auth.verify_email(&token).await,
        Err(AuthError::InvalidLink)
    ));
}

#[tokio::test]
async fn expired_and_foreign_purpose_tokens_are_refused() {
    let r = rig(false, 10);
    r.auth
        .sign_up("ada@example.com", PASSWORD, &ctx())
        .await
        .unwrap();
    let token = token_of(&r.mails.take());
    let user = r
        .store
        .user_by_email("ada@example.com")
        .await
        .unwrap()
        .unwrap();
    // A reset token of the same user is not a verification token.
    let (reset, record) = LinkRecord::issue(LinkPurpose::PasswordReset, &user.id, Timestamp(NOW));
    r.store.insert_link_token(&record).await.unwrap();
    assert!(matches!(
        r.auth.verify_email(reset.expose()).await,
        Err(AuthError::InvalidLink)
    ));
    r.clock.advance(24 * 3600);
    assert!(matches!(
        r.auth.verify_email(&token).await,
        Err(AuthError::InvalidLink)
    ));
    assert!(matches!(
        r.auth.verify_email("not a token").await,
        Err(AuthError::InvalidLink)
    ));
    let stored = r.store.user_by_id(&user.id).await.unwrap().unwrap();
    assert!(!stored.email_verified);
}

#[tokio::test]
async fn a_required_verification_blocks_sign_in_and_mails_within_the_allowance() {
    let r = rig(true, 2);
    // An account from before verification existed: unverified.
    let user = r
        .auth
        .create_user("old@example.com", PASSWORD, false)
        .await
        .unwrap();
    let refused = r
        .auth
        .sign_in("old@example.com", PASSWORD, &ctx(), None)
        .await;
    assert!(matches!(refused, Err(AuthError::EmailNotVerified)));
    let token = token_of(&r.mails.take());
    // A wrong password still answers as ever, and mails nothing.
    let wrong = r
        .auth
        .sign_in("old@example.com", "wrong password here", &ctx(), None)
        .await;
    assert!(matches!(wrong, Err(AuthError::InvalidCredentials)));
    assert!(r.mails.take().is_empty());
    // The resend form, then the allowance runs out: the answer stays Ok.
    r.auth
        .request_verification("old@example.com")
        .await
        .unwrap();
    assert_eq!(r.mails.take().len(), 1);
    r.auth
        .request_verification("old@example.com")
        .await
        .unwrap();
    assert!(r.mails.take().is_empty());
    // Unknown addresses get the same answer and nothing.
    r.auth
        .request_verification("nobody@example.com")
        .await
        .unwrap();
    assert!(r.mails.take().is_empty());

    r.auth.verify_email(&token).await.unwrap();
    let signed = r
        .auth
        .sign_in("old@example.com", PASSWORD, &ctx(), None)
        .await
        .unwrap();
    assert_eq!(signed.user.id, user.id);
    assert!(signed.user.email_verified);
}

#[tokio::test]
async fn a_federated_sign_in_owes_the_step_too_unless_the_upstream_verified_the_address() {
    let r = rig(true, 10);
    let user = r
        .auth
        .create_user("fed@example.com", PASSWORD, false)
        .await
        .unwrap();
    let refused = r
        .auth
        .sign_in_verified(&user.id, &ctx(), None, "federated:acme", None)
        .await;
    assert!(matches!(refused, Err(AuthError::EmailNotVerified)));
    assert_eq!(r.mails.take().len(), 1, "a link went out");

    // An upstream that did not verify, or vouched for another address, changes nothing.
    for (email, verified) in [
        (Some("fed@example.com"), false),
        (Some("other@example.com"), true),
        (None, true),
    ] {
        let same = r
            .auth
            .upstream_verified_email(user.clone(), email, verified)
            .await
            .unwrap();
        assert!(!same.email_verified, "{email:?} {verified}");
    }
    let stored = r.store.user_by_id(&user.id).await.unwrap().unwrap();
    assert!(!stored.email_verified);

    let verified = r
        .auth
        .upstream_verified_email(user.clone(), Some("fed@example.com"), true)
        .await
        .unwrap();
    assert!(verified.email_verified);
    let signed = r
        .auth
        .sign_in_verified(&user.id, &ctx(), None, "federated:acme", None)
        .await
        .unwrap();
    assert!(signed.user.email_verified);
}

#[tokio::test]
async fn without_the_requirement_an_unverified_account_signs_in() {
    let r = rig(false, 10);
    r.auth
        .create_user("plain@example.com", PASSWORD, false)
        .await
        .unwrap();
    let signed = r
        .auth
        .sign_in("plain@example.com", PASSWORD, &ctx(), None)
        .await
        .unwrap();
    assert!(!signed.user.email_verified);
    assert!(r.mails.take().is_empty());
}
