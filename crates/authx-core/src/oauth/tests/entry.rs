//! The user-code entry of the device page: a miss counts against the session, the account and
//! the network; the sixth miss of a session in the window is refused before any lookup, and the
//! window's end lifts it.

use super::super::device::{
    DeviceAuthorization, ENTRY_MISSES_PER_ACCOUNT, ENTRY_MISSES_PER_IP, ENTRY_MISSES_PER_SESSION,
    ENTRY_WINDOW_SECS, UserCodeEntry,
};
use super::*;

async fn device(rig: &Rig) -> DeviceAuthorization {
    let client = match rig.store.client("tv").await.unwrap() {
        Some(c) => c,
        None => rig.client("tv", &[GrantType::DeviceCode], false).await,
    };
    rig.oauth
        .device_authorization(&client, Some("openid"), None)
        .await
        .unwrap()
}

impl Rig {
    async fn enter(&self, session: &SessionId, ip: Option<&str>, input: &str) -> UserCodeEntry {
        self.oauth
            .enter_user_code(&self.user.id, session, ip, input)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn misses_are_limited_per_session_and_the_window_lifts_it() {
    let rig = Rig::new().await;
    let auth = device(&rig).await;
    let code = auth.user_code.display();
    let found = rig.enter(&rig.session, None, &code).await;
    assert!(matches!(found, UserCodeEntry::Found(_)), "{found:?}");
    for _ in 0..ENTRY_MISSES_PER_SESSION {
        let miss = rig.enter(&rig.session, None, "BCDF-GHJK").await;
        assert!(matches!(miss, UserCodeEntry::Miss), "{miss:?}");
    }
    // Refused before the lookup: even the right code.
    rig.clock.advance(60);
    let refused = rig.enter(&rig.session, None, &code).await;
    let UserCodeEntry::Throttled { retry_after_secs } = refused else {
        panic!("expected a throttled entry, got {refused:?}");
    };
    assert_eq!(retry_after_secs, ENTRY_WINDOW_SECS - 60);
    // The window's end lifts it (for a new request: the first one has expired by then).
    rig.clock.advance(retry_after_secs);
    let code = device(&rig).await.user_code.display();
    let found = rig.enter(&rig.session, None, &code).await;
    assert!(matches!(found, UserCodeEntry::Found(_)), "{found:?}");
}

#[tokio::test]
async fn misses_count_against_the_account_and_the_network() {
    let rig = Rig::new().await;
    let auth = device(&rig).await;
    let code = auth.user_code.display();
    // The account's limit spans its sessions.
    let sessions = [rig.sign_in("s0").await, rig.sign_in("s1").await];
    for i in 0..ENTRY_MISSES_PER_ACCOUNT {
        let session = &sessions[usize::from(i >= ENTRY_MISSES_PER_SESSION)];
        let miss = rig.enter(session, None, "nonsense").await;
        assert!(matches!(miss, UserCodeEntry::Miss), "{miss:?}");
    }
    let other = rig.sign_in("another").await;
    let refused = rig.enter(&other, None, &code).await;
    assert!(
        matches!(refused, UserCodeEntry::Throttled { .. }),
        "{refused:?}"
    );

    // A network's limit spans accounts and sessions: an IPv6 /64 counts as one network.
    let rig = Rig::new().await;
    let auth = device(&rig).await;
    let code = auth.user_code.display();
    for i in 0..ENTRY_MISSES_PER_IP {
        let session = rig.sign_in(&format!("n{i}")).await;
        let ip = format!("2001:db8:1:2::{i}");
        let miss = rig.enter(&session, Some(&ip), "nonsense").await;
        assert!(matches!(miss, UserCodeEntry::Miss), "{miss:?}");
    }
    let fresh = rig.sign_in("fresh").await;
    let refused = rig.enter(&fresh, Some("2001:db8:1:2::ffff"), &code).await;
    assert!(
        matches!(refused, UserCodeEntry::Throttled { .. }),
        "{refused:?}"
    );
    // Another network is not held back.
    let found = rig.enter(&fresh, Some("198.51.100.7"), &code).await;
    assert!(matches!(found, UserCodeEntry::Found(_)), "{found:?}");
}
