//! The factor service over the in-memory store and a manual clock.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::recovery::COUNT;
use super::service::PENDING_SECS;
use super::totp::{PERIOD, Totp, TotpSecret, time_step};
use super::*;
use crate::audit::{Audit, AuditQuery, AuditRecord, AuditStore};
use crate::clock::{ManualClock, Timestamp};
use crate::memory::MemoryStore;
use crate::store::StoreResult;
use crate::user::{User, UserId, UserStatus};

/// A whole step boundary, so ±1 step is exactly ±30 s.
const NOW: i64 = 1_700_000_010 - 1_700_000_010 % PERIOD;
const KEK: [u8; 32] = [42; 32];

/// Audit events kept for inspection.
#[derive(Default)]
struct Recorded(Mutex<Vec<AuditRecord>>);

#[async_trait]
impl AuditStore for Recorded {
    async fn append_audit(&self, events: &[AuditRecord]) -> StoreResult<()> {
        let mut all = self.0.lock().unwrap();
        all.extend_from_slice(events);
        Ok(())
    }
    async fn list_audit(&self, _: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        Ok(self.0.lock().unwrap().clone())
    }
    async fn count_audit(&self, _: &AuditQuery) -> StoreResult<u64> {
        Ok(self.0.lock().unwrap().len() as u64)
    }
    async fn purge_audit(&self, _: Timestamp) -> StoreResult<u64> {
        Ok(0)
    }
}

struct Rig {
    factors: Factors,
    store: MemoryStore,
    clock: ManualClock,
    audit: Audit,
    recorded: Arc<Recorded>,
}

impl Rig {
    fn new() -> Self {
        let store = MemoryStore::default();
        let clock = ManualClock::new(Timestamp(NOW));
        let recorded = Arc::new(Recorded::default());
        let audit = Audit::new(Arc::clone(&recorded) as _, Arc::new(clock.clone()));
        let factors = Factors::new(
            Arc::new(store.clone()),
            &KEK,
            "authx",
            Arc::new(clock.clone()),
            audit.clone(),
        )
        .unwrap();
        Self {
            factors,
            store,
            clock,
            audit,
            recorded,
        }
    }

    /// The kinds and outcomes of the events recorded so far.
    async fn events(&self) -> Vec<(String, String)> {
        self.audit.flush().await;
        let all = self.recorded.0.lock().unwrap();
        all.iter()
            .map(|e| (e.kind.clone(), e.outcome.clone()))
            .collect()
    }

    /// A user with a confirmed TOTP factor; returns the user, the factor and its secret bytes
    /// and the recovery codes made at confirmation.
    async fn enrolled(&self) -> (User, FactorId, TotpSecret, Vec<String>) {
        let user = user();
        let e = self.factors.begin_totp(&user, "phone").await.unwrap();
        let code = Totp::new(e.secret()).code_at(self.clock_now());
        let done = self
            .factors
            .confirm_totp(&user.id, e.factor_id(), &code)
            .await
            .unwrap();
        let codes = done.recovery_codes.unwrap();
        let shown = codes.codes.iter().map(|c| c.expose().to_owned()).collect();
        let secret = TotpSecret::from_bytes(e.secret().expose_bytes().to_vec());
        (user, done.factor_id, secret, shown)
    }

    fn clock_now(&self) -> Timestamp {
        crate::Clock::now(&self.clock)
    }
}

fn user() -> User {
    User {
        id: UserId::generate(),
        email: "ada@example.com".into(),
        password_hash: String::new(),
        status: UserStatus::Active,
        is_admin: false,
        email_verified: false,
        created_at: Timestamp(NOW),
        password_changed_at: Timestamp(NOW),
    }
}

fn code_at_step(secret: &TotpSecret, step: i64) -> String {
    Totp::new(secret).code_at_step(step)
}

#[tokio::test]
async fn enrolment_shows_the_secret_once_and_stores_it_sealed() {
    let rig = Rig::new();
    let user = user();
    let e = rig.factors.begin_totp(&user, "").await.unwrap();
    let b32 = e.secret().to_base32();
    assert_eq!(e.secret_text().replace(' ', ""), b32);
    assert!(
        e.otpauth_uri()
            .starts_with("otpauth://totp/authx:ada%40example.com?secret=")
    );
    assert!(e.otpauth_uri().contains(&b32));
    assert!(e.qr_svg().contains("<svg"));
    assert!(!format!("{e:?}").contains(&b32));

    let stored = rig.store.list_factors(&user.id).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].name, service::DEFAULT_TOTP_NAME);
    assert_eq!(stored[0].pending_until, Some(Timestamp(NOW + PENDING_SECS)));
    let raw = e.secret().expose_bytes();
    assert!(
        !stored[0].sealed_secret.windows(raw.len()).any(|w| w == raw),
        "the secret is stored in the clear"
    );
}

#[tokio::test]
async fn an_unconfirmed_enrolment_cannot_be_used() {
    let rig = Rig::new();
    let user = user();
    let e = rig.factors.begin_totp(&user, "phone").await.unwrap();
    let code = Totp::new(e.secret()).code_at(Timestamp(NOW));
    assert!(matches!(
        rig.factors.verify_totp(&user.id, &code).await,
        Err(MfaError::NoSecondFactor)
    ));
    assert!(rig.factors.list(&user.id).await.unwrap().is_empty());
    assert!(!rig.factors.has_second_factor(&user.id).await.unwrap());
    assert!(matches!(
        rig.factors.regenerate_recovery_codes(&user.id).await,
        Err(MfaError::NoSecondFactor)
    ));
}

#[tokio::test]
async fn a_first_valid_code_confirms_once_and_brings_recovery_codes() {
    let rig = Rig::new();
    let user = user();
    let e = rig.factors.begin_totp(&user, "phone").await.unwrap();
    let wrong = code_at_step(e.secret(), time_step(Timestamp(NOW), PERIOD) + 5);
    assert!(matches!(
        rig.factors
            .confirm_totp(&user.id, e.factor_id(), &wrong)
            .await,
        Err(MfaError::InvalidCode)
    ));
    let code = Totp::new(e.secret()).code_at(Timestamp(NOW));
    let done = rig
        .factors
        .confirm_totp(&user.id, e.factor_id(), &code)
        .await
        .unwrap();
    assert_eq!(
        done.recovery_codes.as_ref().map(|c| c.codes.len()),
        Some(COUNT)
    );
    assert!(matches!(
        rig.factors
            .confirm_totp(&user.id, e.factor_id(), &code)
            .await,
        Err(MfaError::NoPendingEnrolment)
    ));
    // The confirming code was the first use of its step: it cannot sign in as well.
    assert!(matches!(
        rig.factors.verify_totp(&user.id, &code).await,
        Err(MfaError::InvalidCode)
    ));
    let listed = rig.factors.list(&user.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "phone");
    assert_eq!(listed[0].last_used_at, Some(Timestamp(NOW)));
}

#[tokio::test]
async fn an_enrolment_lapses_after_ten_minutes_and_is_purged() {
    let rig = Rig::new();
    let user = user();
    let e = rig.factors.begin_totp(&user, "phone").await.unwrap();
    rig.clock.advance(PENDING_SECS);
    let code = Totp::new(e.secret()).code_at(rig.clock_now());
    assert!(matches!(
        rig.factors
            .confirm_totp(&user.id, e.factor_id(), &code)
            .await,
        Err(MfaError::NoPendingEnrolment)
    ));
    assert_eq!(rig.factors.purge().await.unwrap(), 1);
    assert!(rig.store.list_factors(&user.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_new_enrolment_replaces_the_pending_one() {
    let rig = Rig::new();
    let user = user();
    let first = rig.factors.begin_totp(&user, "a").await.unwrap();
    let second = rig.factors.begin_totp(&user, "b").await.unwrap();
    let code = Totp::new(first.secret()).code_at(Timestamp(NOW));
    assert!(matches!(
        rig.factors
            .confirm_totp(&user.id, first.factor_id(), &code)
            .await,
        Err(MfaError::NoPendingEnrolment)
    ));
    let stored = rig.store.list_factors(&user.id).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(&stored[0].id, second.factor_id());
}

#[tokio::test]
async fn a_code_is_accepted_once_and_a_replay_is_refused() {
    let rig = Rig::new();
    let (user, id, secret, _) = rig.enrolled().await;
    rig.clock.advance(PERIOD);
    let code = Totp::new(&secret).code_at(rig.clock_now());
    assert_eq!(rig.factors.verify_totp(&user.id, &code).await.unwrap(), id);
    assert!(matches!(
        rig.factors.verify_totp(&user.id, &code).await,
        Err(MfaError::InvalidCode)
    ));
    // Still inside its window a step later, and still refused.
    rig.clock.advance(PERIOD);
    assert!(matches!(
        rig.factors.verify_totp(&user.id, &code).await,
        Err(MfaError::InvalidCode)
    ));
    let events = rig.events().await;
    assert!(events.contains(&("mfa_code_refused".into(), "failure".into())));
}

#[tokio::test]
async fn an_older_code_after_a_newer_one_is_refused() {
    let rig = Rig::new();
    let (user, _, secret, _) = rig.enrolled().await;
    rig.clock.advance(10 * PERIOD);
    let step = time_step(rig.clock_now(), PERIOD);
    let newer = code_at_step(&secret, step + 1);
    let older = code_at_step(&secret, step);
    rig.factors.verify_totp(&user.id, &newer).await.unwrap();
    assert!(matches!(
        rig.factors.verify_totp(&user.id, &older).await,
        Err(MfaError::InvalidCode)
    ));
}

#[tokio::test]
async fn one_step_of_clock_skew_is_accepted_and_two_are_refused() {
    for (delta, accepted) in [(-2, false), (-1, true), (0, true), (1, true), (2, false)] {
        let rig = Rig::new();
        let (user, _, secret, _) = rig.enrolled().await;
        rig.clock.advance(10 * PERIOD);
        let step = time_step(rig.clock_now(), PERIOD);
        let code = code_at_step(&secret, step + delta);
        let outcome = rig.factors.verify_totp(&user.id, &code).await;
        assert_eq!(outcome.is_ok(), accepted, "{delta} steps: {outcome:?}");
    }
}

#[tokio::test]
async fn a_wrong_or_malformed_code_is_refused() {
    let rig = Rig::new();
    let (user, _, secret, _) = rig.enrolled().await;
    rig.clock.advance(PERIOD);
    let good = Totp::new(&secret).code_at(rig.clock_now());
    let wrong = format!("{:06}", (good.parse::<u32>().unwrap() + 1) % 1_000_000);
    for bad in [wrong.as_str(), "", "12345", "1234567", "abcdef", &good[..5]] {
        assert!(
            matches!(
                rig.factors.verify_totp(&user.id, bad).await,
                Err(MfaError::InvalidCode)
            ),
            "{bad:?}"
        );
    }
    // The failures did not spend the step.
    rig.factors.verify_totp(&user.id, &good).await.unwrap();
}

#[tokio::test]
async fn concurrent_uses_of_one_code_let_one_through() {
    let rig = Arc::new(Rig::new());
    let (user, _, secret, _) = rig.enrolled().await;
    rig.clock.advance(PERIOD);
    let code = Totp::new(&secret).code_at(rig.clock_now());
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (rig, id, code) = (Arc::clone(&rig), user.id.clone(), code.clone());
        tasks.push(tokio::spawn(async move {
            rig.factors.verify_totp(&id, &code).await.is_ok()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
}

#[tokio::test]
async fn another_users_factor_cannot_be_confirmed_renamed_or_removed() {
    let rig = Rig::new();
    let (ada, ada_factor, _, _) = rig.enrolled().await;
    let eve = user();
    let pending = rig.factors.begin_totp(&ada, "second").await.unwrap();
    let code = Totp::new(pending.secret()).code_at(Timestamp(NOW));
    assert!(matches!(
        rig.factors
            .confirm_totp(&eve.id, pending.factor_id(), &code)
            .await,
        Err(MfaError::NoPendingEnrolment)
    ));
    assert!(matches!(
        rig.factors.rename(&eve.id, &ada_factor, "mine").await,
        Err(MfaError::UnknownFactor)
    ));
    assert!(matches!(
        rig.factors.remove(&eve.id, &ada_factor).await,
        Err(MfaError::UnknownFactor)
    ));
    assert_eq!(rig.factors.list(&ada.id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_sealed_secret_moved_to_another_row_does_not_open() {
    let rig = Rig::new();
    let (ada, ada_factor, secret, _) = rig.enrolled().await;
    let stolen = rig
        .store
        .factor(&ada.id, &ada_factor)
        .await
        .unwrap()
        .unwrap();
    let eve = user();
    let planted = Factor {
        id: FactorId::generate(),
        user_id: eve.id.clone(),
        ..stolen
    };
    rig.store.insert_factor(&planted).await.unwrap();
    rig.clock.advance(PERIOD);
    let code = Totp::new(&secret).code_at(rig.clock_now());
    assert!(matches!(
        rig.factors.verify_totp(&eve.id, &code).await,
        Err(MfaError::Sealing(_))
    ));
}

#[tokio::test]
async fn a_recovery_code_works_once_in_any_typed_form() {
    let rig = Rig::new();
    let (user, _, _, codes) = rig.enrolled().await;
    let typed = format!(" {} ", codes[0].to_uppercase().replace('-', " "));
    assert_eq!(
        rig.factors
            .use_recovery_code(&user.id, &typed)
            .await
            .unwrap(),
        (COUNT - 1) as u64
    );
    assert!(matches!(
        rig.factors.use_recovery_code(&user.id, &codes[0]).await,
        Err(MfaError::InvalidCode)
    ));
    assert!(matches!(
        rig.factors.use_recovery_code(&user.id, "not a code").await,
        Err(MfaError::InvalidCode)
    ));
    // Another user's codes are not this user's.
    let other = user_with_codes(&rig).await;
    assert!(matches!(
        rig.factors.use_recovery_code(&user.id, &other).await,
        Err(MfaError::InvalidCode)
    ));
    let events = rig.events().await;
    assert!(events.contains(&("mfa_recovery_code_used".into(), "success".into())));
    assert!(events.contains(&("mfa_recovery_code_refused".into(), "failure".into())));
}

/// A recovery code of a second enrolled user.
async fn user_with_codes(rig: &Rig) -> String {
    let (_, _, _, codes) = rig.enrolled().await;
    codes[0].clone()
}

#[tokio::test]
async fn concurrent_uses_of_one_recovery_code_let_one_through() {
    let rig = Arc::new(Rig::new());
    let (user, _, _, codes) = rig.enrolled().await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (rig, id, code) = (Arc::clone(&rig), user.id.clone(), codes[3].clone());
        tasks.push(tokio::spawn(async move {
            rig.factors.use_recovery_code(&id, &code).await.is_ok()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
    assert_eq!(
        rig.factors.recovery_codes_left(&user.id).await.unwrap(),
        (COUNT - 1) as u64
    );
}

#[tokio::test]
async fn regenerating_replaces_every_recovery_code() {
    let rig = Rig::new();
    let (user, _, _, old) = rig.enrolled().await;
    rig.factors
        .use_recovery_code(&user.id, &old[0])
        .await
        .unwrap();
    let new = rig
        .factors
        .regenerate_recovery_codes(&user.id)
        .await
        .unwrap();
    assert_eq!(
        rig.factors.recovery_codes_left(&user.id).await.unwrap(),
        COUNT as u64
    );
    for code in &old[1..] {
        assert!(rig.factors.use_recovery_code(&user.id, code).await.is_err());
    }
    rig.factors
        .use_recovery_code(&user.id, new.codes[0].expose())
        .await
        .unwrap();
    let events = rig.events().await;
    assert!(events.contains(&("mfa_recovery_codes_regenerated".into(), "success".into())));
}

#[tokio::test]
async fn removing_the_last_factor_removes_the_recovery_codes() {
    let rig = Rig::new();
    let (user, id, _, codes) = rig.enrolled().await;
    let second = rig.factors.begin_totp(&user, "tablet").await.unwrap();
    let step = time_step(Timestamp(NOW), PERIOD);
    let code = code_at_step(second.secret(), step);
    let done = rig
        .factors
        .confirm_totp(&user.id, second.factor_id(), &code)
        .await
        .unwrap();
    assert!(done.recovery_codes.is_none(), "the user already had codes");

    rig.factors.remove(&user.id, &id).await.unwrap();
    assert_eq!(
        rig.factors.recovery_codes_left(&user.id).await.unwrap(),
        COUNT as u64
    );
    rig.factors
        .remove(&user.id, second.factor_id())
        .await
        .unwrap();
    assert_eq!(rig.factors.recovery_codes_left(&user.id).await.unwrap(), 0);
    assert!(
        rig.factors
            .use_recovery_code(&user.id, &codes[1])
            .await
            .is_err()
    );
    assert!(!rig.factors.has_second_factor(&user.id).await.unwrap());
    let events = rig.events().await;
    assert!(events.contains(&("mfa_factor_removed".into(), "success".into())));
}

#[tokio::test]
async fn rename_checks_the_name_and_remove_all_clears_the_user() {
    let rig = Rig::new();
    let (user, id, _, _) = rig.enrolled().await;
    rig.factors
        .rename(&user.id, &id, "  work phone ")
        .await
        .unwrap();
    assert_eq!(
        rig.factors.list(&user.id).await.unwrap()[0].name,
        "work phone"
    );
    for bad in ["a\nb".to_owned(), "x".repeat(service::MAX_NAME_CHARS + 1)] {
        assert!(matches!(
            rig.factors.rename(&user.id, &id, &bad).await,
            Err(MfaError::InvalidName)
        ));
    }
    assert_eq!(rig.factors.remove_all(&user.id).await.unwrap(), 1);
    assert!(rig.factors.list(&user.id).await.unwrap().is_empty());
    assert_eq!(rig.factors.recovery_codes_left(&user.id).await.unwrap(), 0);
}

#[tokio::test]
async fn a_user_has_at_most_the_maximum_of_factors() {
    let rig = Rig::new();
    let user = user();
    for _ in 0..service::MAX_FACTORS {
        let e = rig.factors.begin_totp(&user, "app").await.unwrap();
        let code = Totp::new(e.secret()).code_at(Timestamp(NOW));
        rig.factors
            .confirm_totp(&user.id, e.factor_id(), &code)
            .await
            .unwrap();
    }
    assert!(matches!(
        rig.factors.begin_totp(&user, "one more").await,
        Err(MfaError::TooManyFactors)
    ));
}

#[tokio::test]
async fn every_change_is_audited_without_secrets() {
    let rig = Rig::new();
    let (user, id, secret, codes) = rig.enrolled().await;
    rig.factors.rename(&user.id, &id, "x").await.unwrap();
    rig.factors
        .use_recovery_code(&user.id, &codes[0])
        .await
        .unwrap();
    rig.factors
        .regenerate_recovery_codes(&user.id)
        .await
        .unwrap();
    rig.factors.remove(&user.id, &id).await.unwrap();
    let kinds: Vec<String> = rig.events().await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds,
        [
            "mfa_enrolment_started",
            "mfa_factor_confirmed",
            "mfa_factor_renamed",
            "mfa_recovery_code_used",
            "mfa_recovery_codes_regenerated",
            "mfa_factor_removed",
        ]
    );
    let all = format!("{:?}", rig.recorded.0.lock().unwrap());
    assert!(!all.contains(&secret.to_base32()));
    assert!(!all.contains(&codes[1]));
}
