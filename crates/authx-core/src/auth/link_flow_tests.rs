//! Email change and magic links in core, with the in-memory store and a manual clock: the
//! freshness window at its edge, the binding of a magic link, and what each flow ends.

use std::sync::Arc;
use std::time::Duration;

use super::test_outbox::Outbox;
use super::{AuthError, AuthPolicy, AuthService, Authenticated, LinkBinding, REAUTH_WINDOW_SECS};
use super::{Recovery, SignedIn};
use crate::Timestamp;
use crate::clock::ManualClock;
use crate::events::InProcessBus;
use crate::memory::MemoryStore;
use crate::password::{HashParams, PasswordHasher};
use crate::session::ClientContext;

const EMAIL: &str = "ada@example.com";
const NEW: &str = "ada@new.example.com";
const PASSWORD: &str = "correct horse battery staple";

struct Rig {
    clock: ManualClock,
    auth: AuthService,
    mails: Arc<Outbox>,
}

fn ctx() -> ClientContext {
    ClientContext {
        ip: Some("192.0.2.1".into()),
        user_agent: Some("test".into()),
    }
}

impl Rig {
    async fn new() -> Self {
        Self::limited(None).await
    }

    /// With at most `per_address` link mails per address and hour.
    async fn limited(per_address: Option<u32>) -> Self {
        let store = MemoryStore::default();
        let clock = ManualClock::new(Timestamp(1_700_000_000));
        let hasher =
            PasswordHasher::new(HashParams::default(), 2, Duration::from_secs(5)).expect("hasher");
        let mails = Arc::new(Outbox::default());
        let auth = AuthService::new(
            store.auth_stores(),
            Arc::new(InProcessBus::default()),
            Arc::new(clock.clone()),
            hasher,
            AuthPolicy::default(),
        )
        .with_recovery(Recovery {
            links: Arc::new(store.clone()),
            mailer: mails.clone(),
            per_address: per_address.map(|max| super::AddressLimit {
                key: [7; 32],
                limiter: Arc::new(crate::ratelimit::RateLimiter::new(
                    Arc::new(crate::ratelimit::LocalCounter::default()),
                    Arc::new(clock.clone()),
                )),
                limit: crate::ratelimit::RateLimit {
                    max,
                    window_secs: 3600,
                },
            }),
        });
        auth.create_user(EMAIL, PASSWORD, false)
            .await
            .expect("user");
        Self { clock, auth, mails }
    }

    async fn sign_in(&self, email: &str) -> SignedIn {
        self.auth
            .sign_in(email, PASSWORD, &ctx(), None)
            .await
            .expect("sign-in")
    }

    async fn current(&self, signed: &SignedIn) -> Option<Arc<Authenticated>> {
        self.auth
            .authenticate(&signed.token, &ctx())
            .await
            .expect("authenticate")
    }
}

#[tokio::test]
async fn a_sign_in_stands_in_for_the_password_for_exactly_five_minutes() {
    let rig = Rig::new().await;
    let signed = rig.sign_in(EMAIL).await;
    rig.clock.advance(REAUTH_WINDOW_SECS + 1);
    let stale = rig.current(&signed).await.unwrap();
    let refused = rig
        .auth
        .request_email_change(&stale, NEW, None, &ctx())
        .await;
    assert!(matches!(refused, Err(AuthError::RecentSignInRequired)));
    let empty = rig
        .auth
        .request_email_change(&stale, NEW, Some(""), &ctx())
        .await;
    assert!(matches!(empty, Err(AuthError::RecentSignInRequired)));
    assert!(rig.mails.take().is_empty());

    let fresh = rig.sign_in(EMAIL).await;
    rig.clock.advance(REAUTH_WINDOW_SECS);
    let fresh = rig.current(&fresh).await.unwrap();
    let wrong = rig
        .auth
        .request_email_change(&fresh, NEW, Some("not the password"), &ctx())
        .await;
    assert!(
        matches!(wrong, Err(AuthError::WrongPassword)),
        "a wrong password is refused even when fresh"
    );
    let same = rig
        .auth
        .request_email_change(&fresh, EMAIL, None, &ctx())
        .await;
    assert!(matches!(same, Err(AuthError::EmailUnchanged)));
    rig.auth
        .request_email_change(&fresh, NEW, None, &ctx())
        .await
        .unwrap();
    let kinds: Vec<_> = rig
        .mails
        .take()
        .into_iter()
        .map(|(to, m)| (to, m.kind()))
        .collect();
    assert_eq!(
        kinds,
        [
            (NEW.to_owned(), "email_change_confirm"),
            (EMAIL.to_owned(), "email_change_notice")
        ]
    );
}

#[tokio::test]
async fn a_new_request_replaces_the_pending_one_and_confirming_keeps_only_this_session() {
    let rig = Rig::new().await;
    let here = rig.sign_in(EMAIL).await;
    let other = rig.sign_in(EMAIL).await;
    let auth = rig.current(&here).await.unwrap();
    rig.auth
        .request_email_change(&auth, "first@example.com", Some(PASSWORD), &ctx())
        .await
        .unwrap();
    let first = rig.mails.token("first@example.com", "email_change_confirm");
    rig.auth
        .request_email_change(&auth, NEW, Some(PASSWORD), &ctx())
        .await
        .unwrap();
    let second = rig.mails.token(NEW, "email_change_confirm");
    assert!(matches!(
        rig.auth.confirm_email_change(&first, Some(&auth)).await,
        Err(AuthError::InvalidLink)
    ));
    let user = rig
        .auth
        .confirm_email_change(&second, Some(&auth))
        .await
        .unwrap();
    assert_eq!(user.email, NEW);
    assert_eq!(rig.current(&here).await.unwrap().user.email, NEW);
    assert!(rig.current(&other).await.is_none());
}

#[tokio::test]
async fn a_magic_link_needs_the_binding_and_survives_the_wrong_browser() {
    let rig = Rig::new().await;
    let binding = LinkBinding::generate();
    rig.auth
        .request_magic_link(EMAIL, &binding.hash(), "/account")
        .await
        .unwrap();
    rig.auth
        .request_magic_link("nobody@example.com", &binding.hash(), "/account")
        .await
        .unwrap();
    let token = rig.mails.token(EMAIL, "magic_link");
    assert_eq!(rig.mails.take().len(), 1, "nobody@ gets nothing");

    for other in [None, Some(LinkBinding::generate())] {
        let refused = rig
            .auth
            .sign_in_with_magic_link(&token, other.as_ref(), &ctx(), None)
            .await;
        assert!(matches!(refused, Err(AuthError::OtherBrowser)));
    }
    let planted = rig.sign_in(EMAIL).await;
    let signed = rig
        .auth
        .sign_in_with_magic_link(&token, Some(&binding), &ctx(), Some(&planted.token))
        .await
        .unwrap();
    assert_eq!(signed.return_to, "/account");
    assert_eq!(signed.signed.session.auth_method, "magic_link");
    let auth = rig.current(&signed.signed).await.unwrap();
    assert_eq!(auth.authentication().amr(), ["email"]);
    assert!(
        auth.user.email_verified,
        "a link through the mailbox proves the address"
    );
    assert!(rig.current(&planted).await.is_none(), "fixation");
    let again = rig
        .auth
        .sign_in_with_magic_link(&token, Some(&binding), &ctx(), None)
        .await;
    assert!(matches!(again, Err(AuthError::InvalidLink)));
}

#[tokio::test]
async fn magic_link_mails_per_address_are_limited_without_a_different_answer() {
    let rig = Rig::limited(Some(2)).await;
    let binding = LinkBinding::generate();
    for _ in 0..4 {
        rig.auth
            .request_magic_link(EMAIL, &binding.hash(), "/account")
            .await
            .expect("the same answer");
    }
    assert_eq!(rig.mails.take().len(), 2);
    rig.clock.advance(3600);
    rig.auth
        .request_magic_link(EMAIL, &binding.hash(), "/account")
        .await
        .unwrap();
    assert_eq!(rig.mails.take().len(), 1, "a new window, a new allowance");
}
