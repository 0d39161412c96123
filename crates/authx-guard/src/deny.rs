//! The deny-set: what the revocation feed said is dead, kept until the tokens it concerns have
//! expired.

use std::collections::HashMap;

use authx_core::events::{LoggedEvent, RevocationEvent};

use crate::Claims;

/// Revoked token ids, sessions, refresh families and subjects, each with the time after which
/// the entry no longer matters.
#[derive(Debug, Default)]
pub(crate) struct DenySet {
    jtis: HashMap<String, i64>,
    sessions: HashMap<String, i64>,
    families: HashMap<String, i64>,
    /// Per subject: tokens issued at or before `.0` are dead; the entry lasts until `.1`.
    subjects: HashMap<String, (i64, i64)>,
    /// Per deleted client: tokens issued to it at or before `.0` are dead; until `.1`.
    clients: HashMap<String, (i64, i64)>,
}

impl DenySet {
    /// How many entries are held.
    pub(crate) fn len(&self) -> usize {
        self.jtis.len()
            + self.sessions.len()
            + self.families.len()
            + self.subjects.len()
            + self.clients.len()
    }

    /// Records an event.
    pub(crate) fn apply(&mut self, e: &LoggedEvent) {
        let until = e.expires_at;
        let keep = |map: &mut HashMap<String, i64>, key: &str| {
            let slot = map.entry(key.to_owned()).or_insert(until);
            *slot = (*slot).max(until);
        };
        match &e.event {
            RevocationEvent::SessionEnded { session_id, .. } => {
                keep(&mut self.sessions, &session_id.0);
            }
            RevocationEvent::UserSessionsEnded {
                user_id,
                kept,
                ended,
            } => {
                for s in ended {
                    keep(&mut self.sessions, &s.0);
                }
                if kept.is_none() {
                    // A password change: what was issued before it is dead (the issuer accepts
                    // tokens issued in the same second, and so does the guard).
                    self.deny_subject(&user_id.0, e.at - 1, until);
                }
            }
            RevocationEvent::UserDisabled { user_id } => {
                self.deny_subject(&user_id.0, e.at, until);
            }
            RevocationEvent::FamilyRevoked { family_id, .. } => {
                keep(&mut self.families, family_id);
            }
            RevocationEvent::AccessTokenRevoked { jti, .. } => keep(&mut self.jtis, jti),
            // Revokes nothing: tokens carry no role.
            RevocationEvent::UserChanged { .. } => {}
            RevocationEvent::ClientRevoked { client_id } => {
                // Everything issued to the deleted client up to the event; a client registered
                // later under the same id issues new tokens.
                not_before(&mut self.clients, client_id, e.at, until);
            }
        }
    }

    fn deny_subject(&mut self, sub: &str, issued_up_to: i64, until: i64) {
        not_before(&mut self.subjects, sub, issued_up_to, until);
    }

    /// Whether the token is dead.
    pub(crate) fn denies(&self, c: &Claims) -> bool {
        self.jtis.contains_key(&c.jti)
            || c.sid
                .as_ref()
                .is_some_and(|s| self.sessions.contains_key(s))
            || c.fid
                .as_ref()
                .is_some_and(|f| self.families.contains_key(f))
            || self
                .subjects
                .get(&c.sub)
                .is_some_and(|(upto, _)| c.iat <= *upto)
            || self
                .clients
                .get(&c.client_id)
                .is_some_and(|(upto, _)| c.iat <= *upto)
    }

    /// Whether a browser session is dead.
    pub(crate) fn denies_session(&self, session_id: &str) -> bool {
        self.sessions.contains_key(session_id)
    }

    /// Forgets entries that no longer matter at `now`.
    pub(crate) fn prune(&mut self, now: i64) {
        self.jtis.retain(|_, until| *until > now);
        self.sessions.retain(|_, until| *until > now);
        self.families.retain(|_, until| *until > now);
        self.subjects.retain(|_, (_, until)| *until > now);
        self.clients.retain(|_, (_, until)| *until > now);
    }
}

/// Records in `map` that what `key` names and was issued at or before `issued_up_to` is dead,
/// until `until`; a later event for the same key only widens the entry.
fn not_before(map: &mut HashMap<String, (i64, i64)>, key: &str, issued_up_to: i64, until: i64) {
    let slot = map.entry(key.to_owned()).or_insert((issued_up_to, until));
    slot.0 = slot.0.max(issued_up_to);
    slot.1 = slot.1.max(until);
}

#[cfg(test)]
mod tests {
    use super::*;
    use authx_core::session::SessionId;
    use authx_core::user::UserId;

    fn claims() -> Claims {
        Claims {
            iss: "https://id".into(),
            sub: "u1".into(),
            aud: vec!["api".into()],
            exp: 2_000,
            iat: 1_000,
            nbf: None,
            jti: "j1".into(),
            client_id: "app".into(),
            scope: "read".into(),
            sid: Some("s1".into()),
            fid: Some("f1".into()),
            auth_time: None,
            acr: None,
            cnf: None,
        }
    }

    fn logged(at: i64, event: RevocationEvent) -> LoggedEvent {
        LoggedEvent {
            seq: 1,
            at,
            expires_at: at + 900,
            event,
        }
    }

    #[test]
    fn each_event_kills_what_it_names() {
        let c = claims();
        let u = UserId("u1".into());
        let cases = [
            RevocationEvent::AccessTokenRevoked {
                jti: "j1".into(),
                user_id: u.clone(),
                expires_at: 2_000,
            },
            RevocationEvent::SessionEnded {
                session_id: SessionId("s1".into()),
                user_id: u.clone(),
            },
            RevocationEvent::FamilyRevoked {
                family_id: "f1".into(),
                user_id: u.clone(),
            },
            RevocationEvent::UserSessionsEnded {
                user_id: u.clone(),
                kept: Some(SessionId("s0".into())),
                ended: vec![SessionId("s1".into())],
            },
            RevocationEvent::UserSessionsEnded {
                user_id: u.clone(),
                kept: None,
                ended: vec![],
            },
            RevocationEvent::UserDisabled { user_id: u.clone() },
            RevocationEvent::ClientRevoked {
                client_id: "app".into(),
            },
        ];
        for e in cases {
            let mut d = DenySet::default();
            assert!(!d.denies(&c));
            d.apply(&logged(1_001, e.clone()));
            assert!(d.denies(&c), "{e:?}");
        }
    }

    #[test]
    fn others_survive() {
        let mut d = DenySet::default();
        let u = UserId("u2".into());
        d.apply(&logged(
            1_001,
            RevocationEvent::UserSessionsEnded {
                user_id: u.clone(),
                kept: None,
                ended: vec![SessionId("s9".into())],
            },
        ));
        d.apply(&logged(
            1_001,
            RevocationEvent::FamilyRevoked {
                family_id: "f9".into(),
                user_id: u,
            },
        ));
        assert!(!d.denies(&claims()));
        // A password change kills tokens issued before it, not those issued in the same second
        // or later (the new session's).
        let mut later = claims();
        later.sub = "u2".into();
        later.sid = None;
        later.fid = None;
        later.iat = 1_001;
        assert!(!d.denies(&later));
        later.iat = 1_000;
        assert!(d.denies(&later));
    }

    #[test]
    fn a_deleted_client_kills_what_it_was_issued_before_the_event_only() {
        let mut d = DenySet::default();
        d.apply(&logged(
            1_000,
            RevocationEvent::ClientRevoked {
                client_id: "app".into(),
            },
        ));
        let mut c = claims();
        c.sid = None;
        c.fid = None;
        assert!(d.denies(&c), "issued before the deletion");
        c.iat = 1_001;
        assert!(!d.denies(&c), "a client registered again under the id");
        c.iat = 900;
        c.client_id = "other".into();
        assert!(!d.denies(&c), "another client");
        assert_eq!(d.len(), 1);
        d.prune(1_900);
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn entries_expire() {
        let mut d = DenySet::default();
        d.apply(&logged(
            1_000,
            RevocationEvent::SessionEnded {
                session_id: SessionId("s1".into()),
                user_id: UserId("u1".into()),
            },
        ));
        assert_eq!(d.len(), 1);
        d.prune(1_899);
        assert_eq!(d.len(), 1);
        d.prune(1_900);
        assert_eq!(d.len(), 0);
    }
}
