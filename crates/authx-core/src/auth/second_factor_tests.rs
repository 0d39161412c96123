//! The second-factor step in core, with the in-memory store and a manual clock: every way in
//! ends at the step, a wrong or replayed code is no sign-in, recovery codes work once and are
//! mailed about, policy forces enrolment, step-up replaces the session, and factor changes
//! need a recent sign-in.

use std::sync::Arc;
use std::time::Duration;

use super::test_outbox::Outbox;
use super::{
    AuthError, AuthPolicy, AuthService, Authenticated, MAX_TRIES, MfaRequirement, Recovery,
    SecondFactorChallenge, SecondFactors, SignedIn,
};
use crate::Timestamp;
use crate::amr::{ACR_MFA, ACR_ONE_FACTOR};
use crate::audit::Audit;
use crate::clock::{Clock as _, ManualClock};
use crate::events::InProcessBus;
use crate::mail::Message;
use crate::memory::MemoryStore;
use crate::mfa::totp::{Totp, TotpSecret};
use crate::mfa::{Factors, MfaError};
use crate::password::{HashParams, PasswordHasher};
use crate::session::ClientContext;
use crate::user::User;

const NOW: i64 = 1_700_000_000;
const EMAIL: &str = "ada@example.com";
const PASSWORD: &str = "correct horse battery staple";

struct Rig {
    clock: ManualClock,
    auth: AuthService,
    user: User,
    mails: Arc<Outbox>,
}

fn ctx() -> ClientContext {
    ClientContext {
        ip: Some("192.0.2.1".into()),
        user_agent: Some("test".into()),
    }
}

impl Rig {
    async fn new(required_for: MfaRequirement) -> Self {
        let store = MemoryStore::default();
        let clock = ManualClock::new(Timestamp(NOW));
        let hasher =
            PasswordHasher::new(HashParams::default(), 2, Duration::from_secs(5)).expect("hasher");
        let factors = Factors::new(
            Arc::new(store.clone()),
            &[9; 32],
            "authx",
            Arc::new(clock.clone()),
            Audit::log_only(Arc::new(clock.clone())),
        )
        .expect("factors");
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
            per_address: None,
        })
        .with_second_factors(SecondFactors {
            factors: Arc::new(factors),
            links: Arc::new(store.clone()),
            required_for,
        });
        let user = auth
            .create_user(EMAIL, PASSWORD, false)
            .await
            .expect("user");
        Self {
            clock,
            auth,
            user,
            mails,
        }
    }

    async fn password(&self) -> Result<SignedIn, AuthError> {
        self.auth.sign_in(EMAIL, PASSWORD, &ctx(), None).await
    }

    /// A password sign-in that must stop at the second factor.
    async fn challenged(&self) -> SecondFactorChallenge {
        match self.password().await {
            Err(AuthError::SecondFactorRequired(c)) => *c,
            other => panic!("expected the second-factor step, got {other:?}"),
        }
    }

    /// Enrols an authenticator app from a fresh password session; returns its secret and
    /// the recovery codes shown at confirmation.
    async fn enrol(&self) -> (TotpSecret, Vec<String>) {
        let signed = self.password().await.expect("password session");
        let auth = self.authenticated(&signed).await;
        let e = self
            .auth
            .begin_totp_enrolment(&auth, "phone", None, &ctx())
            .await
            .expect("begin");
        let secret = TotpSecret::from_bytes(e.secret().expose_bytes().to_vec());
        let code = Totp::new(&secret).code_at(self.clock.now());
        let confirmed = self
            .auth
            .confirm_totp_enrolment(&auth, e.factor_id(), &code)
            .await
            .expect("confirm");
        let codes = confirmed
            .recovery_codes
            .expect("first codes")
            .codes
            .iter()
            .map(|c| c.expose().to_owned())
            .collect();
        // The enrolment's code is used; the next one is a step later.
        self.clock.advance(30);
        (secret, codes)
    }

    async fn authenticated(&self, signed: &SignedIn) -> Authenticated {
        self.auth
            .authenticate(&signed.token, &ctx())
            .await
            .expect("authenticate")
            .map(|a| (*a).clone())
            .expect("live")
    }

    fn code(&self, secret: &TotpSecret) -> String {
        Totp::new(secret).code_at(self.clock.now())
    }
}

#[tokio::test]
async fn without_a_factor_the_password_alone_signs_in() {
    let rig = Rig::new(MfaRequirement::None).await;
    let signed = rig.password().await.expect("signed in");
    assert_eq!(signed.session.auth_method, "password");
    let how = rig.authenticated(&signed).await.authentication();
    assert_eq!(how.acr(), ACR_ONE_FACTOR);
    assert_eq!(how.amr(), ["pwd"]);
}

#[tokio::test]
async fn a_user_with_a_factor_gets_no_session_until_the_code() {
    let rig = Rig::new(MfaRequirement::None).await;
    let (secret, _) = rig.enrol().await;
    let before = rig.auth.sessions(&rig.user.id).await.unwrap().len();
    let challenge = rig.challenged().await;
    assert!(!challenge.failed);
    assert_eq!(challenge.tries_left, MAX_TRIES);
    assert_eq!(
        rig.auth.sessions(&rig.user.id).await.unwrap().len(),
        before,
        "a correct password alone starts no session"
    );
    let done = rig
        .auth
        .answer_second_factor(challenge.token().expose(), &rig.code(&secret), &ctx(), None)
        .await
        .expect("code accepted");
    assert_eq!(done.signed.session.auth_method, "password+totp");
    let how = rig.authenticated(&done.signed).await.authentication();
    assert_eq!(how.amr(), ["pwd", "otp", "mfa"]);
    assert_eq!(how.acr(), ACR_MFA);
    // The challenge was spent.
    let again = rig
        .auth
        .answer_second_factor(challenge.token().expose(), &rig.code(&secret), &ctx(), None)
        .await;
    assert!(matches!(again, Err(AuthError::SignInExpired)), "{again:?}");
}

#[tokio::test]
async fn a_replayed_code_and_wrong_codes_are_refused_and_tries_run_out() {
    let rig = Rig::new(MfaRequirement::None).await;
    let (secret, _) = rig.enrol().await;
    let code = rig.code(&secret);
    let first = rig.challenged().await;
    rig.auth
        .answer_second_factor(first.token().expose(), &code, &ctx(), None)
        .await
        .expect("first use");
    // The same code in another sign-in, within its step: refused (RFC 6238 §5.2).
    let mut challenge = rig.challenged().await;
    for n in 1..MAX_TRIES {
        let wrong = if n == 1 {
            code.clone()
        } else {
            "000000".into()
        };
        match rig
            .auth
            .answer_second_factor(challenge.token().expose(), &wrong, &ctx(), None)
            .await
        {
            Err(AuthError::SecondFactorRequired(next)) => {
                assert!(next.failed);
                assert_eq!(next.tries_left, MAX_TRIES - n);
                assert_ne!(next.token().expose(), challenge.token().expose());
                challenge = *next;
            }
            other => panic!("try {n}: {other:?}"),
        }
    }
    let last = rig
        .auth
        .answer_second_factor(challenge.token().expose(), "000000", &ctx(), None)
        .await;
    assert!(matches!(last, Err(AuthError::SignInExpired)), "{last:?}");
}

/// Answers `challenge` with a wrong code, expecting another try.
async fn wrong(rig: &Rig, challenge: &SecondFactorChallenge) -> SecondFactorChallenge {
    match rig
        .auth
        .answer_second_factor(challenge.token().expose(), "000000", &ctx(), None)
        .await
    {
        Err(AuthError::SecondFactorRequired(next)) => *next,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn wrong_codes_count_toward_the_account_throttle_and_the_password_does_not_clear_them() {
    let rig = Rig::new(MfaRequirement::None).await;
    let (secret, _) = rig.enrol().await;
    let free = rig.auth.policy().throttle.account_free_failures;
    assert!(
        (2..=MAX_TRIES).contains(&free),
        "the test assumes the default policy"
    );
    // Wrong codes up to one short of the free failures...
    let mut challenge = rig.challenged().await;
    for _ in 0..free - 1 {
        challenge = wrong(&rig, &challenge).await;
    }
    // ...then the right password again: it starts a new challenge but does not wipe the
    // count, or the password's holder could guess codes for ever, a few per sign-in.
    let fresh = rig.challenged().await;
    let last = wrong(&rig, &fresh).await;
    assert!(matches!(
        rig.password().await,
        Err(AuthError::Throttled { .. })
    ));
    let right = rig
        .auth
        .answer_second_factor(last.token().expose(), &rig.code(&secret), &ctx(), None)
        .await;
    assert!(
        matches!(right, Err(AuthError::Throttled { .. })),
        "{right:?}"
    );
}

#[tokio::test]
async fn a_recovery_code_works_once_and_the_owner_is_told() {
    let rig = Rig::new(MfaRequirement::None).await;
    let (_, codes) = rig.enrol().await;
    let challenge = rig.challenged().await;
    let typed = codes[0].to_uppercase();
    let done = rig
        .auth
        .answer_second_factor(challenge.token().expose(), &typed, &ctx(), None)
        .await
        .expect("recovery code");
    assert_eq!(done.recovery_codes_left, Some(9));
    assert_eq!(done.signed.session.auth_method, "password+recovery_code");
    let mails = rig.mails.0.lock().unwrap().clone();
    assert!(
        mails
            .iter()
            .any(|(to, m)| to == EMAIL && matches!(m, Message::RecoveryCodeUsed { remaining: 9 })),
        "{mails:?}"
    );
    let challenge = rig.challenged().await;
    let reuse = rig
        .auth
        .answer_second_factor(challenge.token().expose(), &codes[0], &ctx(), None)
        .await;
    assert!(
        matches!(&reuse, Err(AuthError::SecondFactorRequired(c)) if c.failed),
        "{reuse:?}"
    );
}

#[tokio::test]
async fn policy_makes_a_user_without_a_factor_enrol_at_sign_in() {
    let rig = Rig::new(MfaRequirement::Everyone).await;
    let challenge = rig.challenged().await;
    let enrolment = challenge.enrolment.as_ref().expect("enrolment");
    assert!(enrolment.otpauth_uri().starts_with("otpauth://totp/"));
    let secret = TotpSecret::from_bytes(enrolment.secret().expose_bytes().to_vec());
    // A wrong first code shows the same enrolment again.
    let next = match rig
        .auth
        .answer_second_factor(challenge.token().expose(), "000000", &ctx(), None)
        .await
    {
        Err(AuthError::SecondFactorRequired(c)) => c,
        other => panic!("{other:?}"),
    };
    let again = next.enrolment.as_ref().expect("same enrolment");
    assert_eq!(again.factor_id(), enrolment.factor_id());
    let done = rig
        .auth
        .answer_second_factor(next.token().expose(), &rig.code(&secret), &ctx(), None)
        .await
        .expect("enrolled and signed in");
    assert_eq!(done.recovery_codes.expect("codes").codes.len(), 10);
    assert_eq!(done.signed.session.auth_method, "password+totp");
    // The last factor cannot go while policy requires one.
    let auth = rig.authenticated(&done.signed).await;
    let factors = rig.auth.list_factors(&auth).await.unwrap();
    let removed = rig
        .auth
        .remove_factor(&auth, &factors[0].id, None, &ctx())
        .await;
    assert!(
        matches!(removed, Err(AuthError::LastFactorRequired)),
        "{removed:?}"
    );
}

#[tokio::test]
async fn admins_only_policy_leaves_other_users_alone() {
    let rig = Rig::new(MfaRequirement::Admins).await;
    assert!(rig.password().await.is_ok());
}

#[tokio::test]
async fn federated_and_magic_link_sign_ins_end_at_the_same_step() {
    let rig = Rig::new(MfaRequirement::None).await;
    let _ = rig.enrol().await;
    let r = rig
        .auth
        .sign_in_verified(&rig.user.id, &ctx(), None, "federated:corp", None)
        .await;
    assert!(
        matches!(r, Err(AuthError::SecondFactorRequired(_))),
        "{r:?}"
    );

    // A magic link: the step remembers where the link was going.
    let binding = super::LinkBinding::generate();
    rig.auth
        .request_magic_link(EMAIL, &binding.hash(), "/oauth2/authorize?x=1")
        .await
        .unwrap();
    let token = rig
        .mails
        .0
        .lock()
        .unwrap()
        .iter()
        .find_map(|(_, m)| match m {
            Message::MagicLink { token, .. } => Some(token.clone()),
            _ => None,
        })
        .expect("a sign-in link");
    let r = rig
        .auth
        .sign_in_with_magic_link(&token, Some(&binding), &ctx(), None)
        .await;
    match r {
        Err(AuthError::SecondFactorRequired(c)) => {
            assert_eq!(c.return_to.as_deref(), Some("/oauth2/authorize?x=1"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn step_up_replaces_the_session_with_one_that_records_the_factor() {
    let rig = Rig::new(MfaRequirement::None).await;
    let (secret, _) = rig.enrol().await;
    // A session from before the factor existed (its sign-in was password only).
    let sessions = rig.auth.sessions(&rig.user.id).await.unwrap();
    let old = sessions.first().expect("the enrolling session").clone();
    assert_eq!(old.auth_method, "password");
    let auth = Authenticated {
        user: rig.user.clone(),
        session: old.clone(),
    };
    let challenge = rig.auth.step_up(&auth, "/account").await.expect("step-up");
    assert_eq!(challenge.return_to.as_deref(), Some("/account"));
    let done = rig
        .auth
        .answer_second_factor(challenge.token().expose(), &rig.code(&secret), &ctx(), None)
        .await
        .expect("stepped up");
    assert_eq!(done.signed.session.auth_method, "password+totp");
    assert_eq!(done.return_to.as_deref(), Some("/account"));
}

#[tokio::test]
async fn factor_changes_need_a_recent_sign_in_or_the_password() {
    let rig = Rig::new(MfaRequirement::None).await;
    let (secret, _) = rig.enrol().await;
    let challenge = rig.challenged().await;
    let done = rig
        .auth
        .answer_second_factor(challenge.token().expose(), &rig.code(&secret), &ctx(), None)
        .await
        .expect("signed in");
    let other = {
        rig.clock.advance(30);
        let c = rig.challenged().await;
        rig.auth
            .answer_second_factor(c.token().expose(), &rig.code(&secret), &ctx(), None)
            .await
            .expect("another session")
    };
    rig.clock.advance(super::REAUTH_WINDOW_SECS + 1);
    let auth = rig.authenticated(&done.signed).await;
    let id = rig.auth.list_factors(&auth).await.unwrap()[0].id.clone();
    let stale = rig.auth.remove_factor(&auth, &id, None, &ctx()).await;
    assert!(
        matches!(stale, Err(AuthError::RecentSignInRequired)),
        "{stale:?}"
    );
    let wrong = rig
        .auth
        .remove_factor(&auth, &id, Some("not the password"), &ctx())
        .await;
    assert!(matches!(wrong, Err(AuthError::WrongPassword)), "{wrong:?}");
    let begin = rig.auth.begin_totp_enrolment(&auth, "", None, &ctx()).await;
    assert!(matches!(begin, Err(AuthError::RecentSignInRequired)));
    rig.auth
        .remove_factor(&auth, &id, Some(PASSWORD), &ctx())
        .await
        .expect("removed with the password");
    // Removing a factor ended the other session; this one stays.
    assert!(
        rig.auth
            .authenticate(&other.signed.token, &ctx())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        rig.auth
            .authenticate(&done.signed.token, &ctx())
            .await
            .unwrap()
            .is_some()
    );
    // With no factor left, the password alone signs in again.
    assert!(rig.password().await.is_ok());
    let unknown = rig
        .auth
        .remove_factor(&auth, &id, Some(PASSWORD), &ctx())
        .await;
    assert!(
        matches!(unknown, Err(AuthError::Factor(MfaError::UnknownFactor))),
        "{unknown:?}"
    );
}
