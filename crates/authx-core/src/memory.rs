//! An in-memory store for the core's unit tests: accounts, sessions, failure counters,
//! federation records and the provider's clients, keys, grants and device grants in one mutex, with the atomicity the store traits promise (a take or a
//! delete happens once). The SQLite store cannot serve here: as a dev-dependency of core it
//! would link a second copy of core.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use crate::Timestamp;
use crate::federation::{FederationStore, Link, PendingLink, Transaction};
use crate::links::{LinkPurpose, LinkRecord, LinkTokenStore};
use crate::mfa::{Ceremony, Factor, FactorId, FactorStore, StepUse};
use crate::secret::TokenHash;
use crate::session::{Session, SessionId};
use crate::store::{
    AccountChange, AccountStore, FailureCount, SessionStore, SessionTouch, StoreError, StoreResult,
    ThrottleStore, UserPage, UserSearch,
};
use crate::user::{User, UserId, UserStatus};

mod oauth;

#[derive(Default)]
struct Records {
    users: Vec<User>,
    sessions: Vec<Session>,
    counters: HashMap<String, FailureCount>,
    transactions: HashMap<TokenHash, Transaction>,
    links: Vec<Link>,
    pending: HashMap<TokenHash, PendingLink>,
    link_tokens: HashMap<TokenHash, LinkRecord>,
    factors: Vec<Factor>,
    recovery_codes: Vec<(UserId, TokenHash)>,
    ceremonies: HashMap<TokenHash, Ceremony>,
    oauth: oauth::OAuthRecords,
}

/// Every record in memory; clones share them.
#[derive(Clone, Default)]
pub(crate) struct MemoryStore(Arc<Mutex<Records>>);

impl MemoryStore {
    fn lock(&self) -> MutexGuard<'_, Records> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stores of [`crate::auth::AuthService`], all this one.
    pub(crate) fn auth_stores(&self) -> crate::auth::Stores {
        crate::auth::Stores {
            accounts: Arc::new(self.clone()),
            sessions: Arc::new(self.clone()),
            throttle: Arc::new(self.clone()),
        }
    }

    /// Every session, live or not.
    pub(crate) fn all_sessions(&self) -> Vec<Session> {
        self.lock().sessions.clone()
    }

    /// Every link.
    pub(crate) fn all_links(&self) -> Vec<Link> {
        self.lock().links.clone()
    }
}

/// Adds `item` to `list`, or [`StoreError::Conflict`] when one already there `clash`es with it
/// (a uniqueness rule of the SQL schema).
fn insert_unique<T: Clone>(
    list: &mut Vec<T>,
    item: &T,
    clash: impl Fn(&T) -> bool,
) -> StoreResult<()> {
    if list.iter().any(clash) {
        return Err(StoreError::Conflict);
    }
    list.push(item.clone());
    Ok(())
}

/// Whether `id` is an active administrator and no other one is.
fn last_active_admin(users: &[User], id: &UserId) -> bool {
    let active_admin = |u: &&User| u.is_admin && u.status == UserStatus::Active;
    users.iter().filter(active_admin).all(|u| &u.id == id)
        && users.iter().filter(active_admin).any(|u| &u.id == id)
}

#[async_trait]
impl AccountStore for MemoryStore {
    async fn create_user(&self, user: &User) -> StoreResult<()> {
        insert_unique(&mut self.lock().users, user, |u| {
            u.email == user.email || u.id == user.id
        })
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        Ok(self.lock().users.iter().find(|u| u.email == email).cloned())
    }

    async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<User>> {
        Ok(self.lock().users.iter().find(|u| &u.id == id).cloned())
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        Ok(self.lock().users.clone())
    }

    async fn set_password_hash(
        &self,
        id: &UserId,
        phc: &str,
        changed_at: Option<Timestamp>,
    ) -> StoreResult<bool> {
        let mut r = self.lock();
        let Some(u) = r.users.iter_mut().find(|u| &u.id == id) else {
            return Ok(false);
        };
        phc.clone_into(&mut u.password_hash);
        if let Some(at) = changed_at {
            u.password_changed_at = at;
        }
        Ok(true)
    }

    async fn search_users(&self, q: &UserSearch) -> StoreResult<UserPage> {
        let r = self.lock();
        let matching = r
            .users
            .iter()
            .filter(|u| u.email.contains(q.email_contains.as_str()));
        let total = matching.clone().count() as u64;
        let users = matching
            .skip(usize::try_from(q.offset).unwrap_or(usize::MAX))
            .take(q.limit as usize)
            .cloned()
            .collect();
        Ok(UserPage { users, total })
    }

    async fn set_status(&self, id: &UserId, status: UserStatus) -> StoreResult<AccountChange> {
        let mut r = self.lock();
        if status != UserStatus::Active && last_active_admin(&r.users, id) {
            return Ok(AccountChange::LastAdministrator);
        }
        let Some(u) = r.users.iter_mut().find(|u| &u.id == id) else {
            return Ok(AccountChange::NotFound);
        };
        u.status = status;
        Ok(AccountChange::Done)
    }

    async fn set_admin(&self, id: &UserId, admin: bool) -> StoreResult<AccountChange> {
        let mut r = self.lock();
        if !admin && last_active_admin(&r.users, id) {
            return Ok(AccountChange::LastAdministrator);
        }
        let Some(u) = r.users.iter_mut().find(|u| &u.id == id) else {
            return Ok(AccountChange::NotFound);
        };
        u.is_admin = admin;
        Ok(AccountChange::Done)
    }

    async fn set_email_verified(&self, id: &UserId, verified: bool) -> StoreResult<bool> {
        let mut r = self.lock();
        let Some(u) = r.users.iter_mut().find(|u| &u.id == id) else {
            return Ok(false);
        };
        u.email_verified = verified;
        Ok(true)
    }

    async fn set_email(&self, id: &UserId, email: &str) -> StoreResult<bool> {
        let mut r = self.lock();
        if r.users.iter().any(|u| u.email == email && &u.id != id) {
            return Err(StoreError::Conflict);
        }
        let Some(u) = r.users.iter_mut().find(|u| &u.id == id) else {
            return Ok(false);
        };
        email.clone_into(&mut u.email);
        u.email_verified = true;
        Ok(true)
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create_session(&self, session: &Session) -> StoreResult<()> {
        insert_unique(&mut self.lock().sessions, session, |s| {
            s.id == session.id || s.token_hash == session.token_hash
        })
    }

    async fn session_by_hash(&self, hash: &TokenHash) -> StoreResult<Option<Session>> {
        Ok(self
            .lock()
            .sessions
            .iter()
            .find(|s| &s.token_hash == hash)
            .cloned())
    }

    async fn touch_session(&self, touch: SessionTouch<'_>) -> StoreResult<bool> {
        let mut r = self.lock();
        let Some(s) = r.sessions.iter_mut().find(|s| &s.id == touch.id) else {
            return Ok(false);
        };
        s.last_seen_at = touch.last_seen_at;
        s.idle_expires_at = touch.idle_expires_at;
        if let Some(ip) = touch.ip {
            s.ip = Some(ip.to_owned());
        }
        Ok(true)
    }

    async fn delete_session(&self, user: &UserId, id: &SessionId) -> StoreResult<Option<Session>> {
        let mut r = self.lock();
        let i = r
            .sessions
            .iter()
            .position(|s| &s.user_id == user && &s.id == id);
        Ok(i.map(|i| r.sessions.remove(i)))
    }

    async fn delete_user_sessions(
        &self,
        user: &UserId,
        keep: Option<&SessionId>,
    ) -> StoreResult<Vec<SessionId>> {
        let mut r = self.lock();
        let (gone, kept) = std::mem::take(&mut r.sessions)
            .into_iter()
            .partition(|s| &s.user_id == user && Some(&s.id) != keep);
        r.sessions = kept;
        Ok(gone.into_iter().map(|s: Session| s.id).collect())
    }

    async fn list_user_sessions(&self, user: &UserId, now: Timestamp) -> StoreResult<Vec<Session>> {
        let mut live: Vec<Session> = self
            .lock()
            .sessions
            .iter()
            .filter(|s| &s.user_id == user && s.is_live(now))
            .cloned()
            .collect();
        live.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        Ok(live)
    }

    async fn count_live_sessions(&self, now: Timestamp) -> StoreResult<u64> {
        let r = self.lock();
        Ok(r.sessions.iter().filter(|s| s.is_live(now)).count() as u64)
    }

    async fn purge_expired_sessions(&self, now: Timestamp) -> StoreResult<u64> {
        let mut r = self.lock();
        let before = r.sessions.len();
        r.sessions.retain(|s| s.is_live(now));
        Ok((before - r.sessions.len()) as u64)
    }
}

#[async_trait]
impl ThrottleStore for MemoryStore {
    async fn record_failure(
        &self,
        key: &str,
        now: Timestamp,
        reset_after_secs: i64,
    ) -> StoreResult<FailureCount> {
        let mut r = self.lock();
        let c = r.counters.entry(key.to_owned()).or_insert(FailureCount {
            failures: 0,
            last_failure_at: now,
        });
        if now.since(c.last_failure_at) > reset_after_secs {
            c.failures = 0;
        }
        c.failures += 1;
        c.last_failure_at = now;
        Ok(*c)
    }

    async fn failures(&self, key: &str) -> StoreResult<Option<FailureCount>> {
        Ok(self.lock().counters.get(key).copied())
    }

    async fn clear_failures(&self, key: &str) -> StoreResult<()> {
        self.lock().counters.remove(key);
        Ok(())
    }

    async fn purge_failures(&self, before: Timestamp) -> StoreResult<u64> {
        let mut r = self.lock();
        let n = r.counters.len();
        r.counters.retain(|_, c| c.last_failure_at >= before);
        Ok((n - r.counters.len()) as u64)
    }

    async fn count_hit(
        &self,
        key: &str,
        window_start: Timestamp,
        now: Timestamp,
    ) -> StoreResult<u32> {
        let mut r = self.lock();
        let c = r.counters.entry(key.to_owned()).or_insert(FailureCount {
            failures: 0,
            last_failure_at: now,
        });
        if c.last_failure_at < window_start {
            c.failures = 0;
        }
        c.failures += 1;
        c.last_failure_at = now;
        Ok(c.failures)
    }
}

#[async_trait]
impl FederationStore for MemoryStore {
    async fn put_transaction(&self, t: &Transaction) -> StoreResult<()> {
        self.lock().transactions.insert(t.state_hash, t.clone());
        Ok(())
    }

    async fn take_transaction(&self, state_hash: &TokenHash) -> StoreResult<Option<Transaction>> {
        Ok(self.lock().transactions.remove(state_hash))
    }

    async fn link(&self, issuer: &str, subject: &str) -> StoreResult<Option<Link>> {
        Ok(self
            .lock()
            .links
            .iter()
            .find(|l| l.issuer == issuer && l.subject == subject)
            .cloned())
    }

    async fn create_link(&self, link: &Link) -> StoreResult<()> {
        insert_unique(&mut self.lock().links, link, |l| {
            l.issuer == link.issuer && l.subject == link.subject
        })
    }

    async fn user_links(&self, user: &UserId) -> StoreResult<Vec<Link>> {
        let r = self.lock();
        Ok(r.links
            .iter()
            .filter(|l| &l.user_id == user)
            .cloned()
            .collect())
    }

    async fn delete_link(&self, user: &UserId, id: &str) -> StoreResult<bool> {
        let mut r = self.lock();
        let before = r.links.len();
        r.links.retain(|l| !(&l.user_id == user && l.id == id));
        Ok(r.links.len() < before)
    }

    async fn put_pending_link(&self, p: &PendingLink) -> StoreResult<()> {
        self.lock().pending.insert(p.token_hash, p.clone());
        Ok(())
    }

    async fn pending_link(&self, token_hash: &TokenHash) -> StoreResult<Option<PendingLink>> {
        Ok(self.lock().pending.get(token_hash).cloned())
    }

    async fn delete_pending_link(&self, token_hash: &TokenHash) -> StoreResult<bool> {
        Ok(self.lock().pending.remove(token_hash).is_some())
    }

    async fn purge_federation(&self, now: Timestamp) -> StoreResult<u64> {
        let mut r = self.lock();
        let before = r.transactions.len() + r.pending.len();
        r.transactions.retain(|_, t| t.expires_at > now);
        r.pending.retain(|_, p| p.expires_at > now);
        Ok((before - r.transactions.len() - r.pending.len()) as u64)
    }
}

#[async_trait]
impl LinkTokenStore for MemoryStore {
    async fn insert_link_token(&self, record: &LinkRecord) -> StoreResult<()> {
        let mut r = self.lock();
        if r.link_tokens.contains_key(&record.hash) {
            return Err(StoreError::Conflict);
        }
        r.link_tokens.insert(record.hash, record.clone());
        Ok(())
    }

    async fn take_link_token(
        &self,
        hash: &TokenHash,
        purpose: LinkPurpose,
        now: Timestamp,
    ) -> StoreResult<Option<LinkRecord>> {
        let mut r = self.lock();
        match r.link_tokens.get(hash) {
            Some(t) if t.purpose == purpose && t.expires_at > now => Ok(r.link_tokens.remove(hash)),
            _ => Ok(None),
        }
    }

    async fn delete_user_link_tokens(
        &self,
        user: &UserId,
        purpose: LinkPurpose,
    ) -> StoreResult<u64> {
        let mut r = self.lock();
        let n = r.link_tokens.len();
        r.link_tokens
            .retain(|_, t| !(&t.user_id == user && t.purpose == purpose));
        Ok((n - r.link_tokens.len()) as u64)
    }

    async fn purge_link_tokens(&self, now: Timestamp) -> StoreResult<u64> {
        let mut r = self.lock();
        let n = r.link_tokens.len();
        r.link_tokens.retain(|_, t| t.expires_at > now);
        Ok((n - r.link_tokens.len()) as u64)
    }
}

#[async_trait]
impl FactorStore for MemoryStore {
    async fn insert_factor(&self, factor: &Factor) -> StoreResult<()> {
        insert_unique(&mut self.lock().factors, factor, |f| {
            f.id == factor.id
                || (f.credential_id.is_some() && f.credential_id == factor.credential_id)
        })
    }

    async fn factor(&self, user: &UserId, id: &FactorId) -> StoreResult<Option<Factor>> {
        let r = self.lock();
        Ok(r.factors
            .iter()
            .find(|f| &f.user_id == user && &f.id == id)
            .cloned())
    }

    async fn list_factors(&self, user: &UserId) -> StoreResult<Vec<Factor>> {
        let mut found: Vec<Factor> = (self.lock().factors.iter())
            .filter(|f| &f.user_id == user)
            .cloned()
            .collect();
        found.sort_by(|a, b| (a.created_at, &a.id.0).cmp(&(b.created_at, &b.id.0)));
        Ok(found)
    }

    async fn confirm_factor(&self, used: StepUse<'_>) -> StoreResult<bool> {
        let mut r = self.lock();
        let pending = r.factors.iter_mut().find(|f| {
            &f.id == used.id
                && &f.user_id == used.user_id
                && f.pending_until.is_some_and(|until| until > used.at)
        });
        Ok(pending.is_some_and(|f| {
            f.pending_until = None;
            f.last_step = Some(used.step);
            f.last_used_at = Some(used.at);
            true
        }))
    }

    async fn accept_step(&self, used: StepUse<'_>) -> StoreResult<bool> {
        let mut r = self.lock();
        let factor = r.factors.iter_mut().find(|f| {
            &f.id == used.id
                && &f.user_id == used.user_id
                && f.pending_until.is_none()
                && f.last_step.is_none_or(|last| last < used.step)
        });
        Ok(factor.is_some_and(|f| {
            f.last_step = Some(used.step);
            f.last_used_at = Some(used.at);
            true
        }))
    }

    async fn rename_factor(&self, user: &UserId, id: &FactorId, name: &str) -> StoreResult<bool> {
        let mut r = self.lock();
        let factor = r
            .factors
            .iter_mut()
            .find(|f| &f.user_id == user && &f.id == id);
        Ok(factor.is_some_and(|f| {
            name.clone_into(&mut f.name);
            true
        }))
    }

    async fn delete_factor(&self, user: &UserId, id: &FactorId) -> StoreResult<bool> {
        let mut r = self.lock();
        let n = r.factors.len();
        r.factors.retain(|f| !(&f.user_id == user && &f.id == id));
        Ok(r.factors.len() < n)
    }

    async fn delete_pending_factors(&self, user: &UserId) -> StoreResult<u64> {
        let mut r = self.lock();
        let n = r.factors.len();
        r.factors
            .retain(|f| !(&f.user_id == user && f.pending_until.is_some()));
        Ok((n - r.factors.len()) as u64)
    }

    async fn delete_user_factors(&self, user: &UserId) -> StoreResult<u64> {
        let mut r = self.lock();
        let n = r.factors.len();
        r.factors.retain(|f| &f.user_id != user);
        r.recovery_codes.retain(|(u, _)| u != user);
        Ok((n - r.factors.len()) as u64)
    }

    async fn replace_recovery_codes(
        &self,
        user: &UserId,
        hashes: &[TokenHash],
        _now: Timestamp,
    ) -> StoreResult<()> {
        let mut r = self.lock();
        r.recovery_codes.retain(|(u, _)| u != user);
        r.recovery_codes
            .extend(hashes.iter().map(|h| (user.clone(), *h)));
        Ok(())
    }

    async fn consume_recovery_code(&self, user: &UserId, hash: &TokenHash) -> StoreResult<bool> {
        let mut r = self.lock();
        let n = r.recovery_codes.len();
        r.recovery_codes.retain(|(u, h)| !(u == user && h == hash));
        Ok(r.recovery_codes.len() < n)
    }

    async fn count_recovery_codes(&self, user: &UserId) -> StoreResult<u64> {
        let r = self.lock();
        Ok(r.recovery_codes.iter().filter(|(u, _)| u == user).count() as u64)
    }

    async fn purge_pending_factors(&self, now: Timestamp) -> StoreResult<u64> {
        let mut r = self.lock();
        let n = r.factors.len();
        r.factors
            .retain(|f| f.pending_until.is_none_or(|until| until > now));
        let c = r.ceremonies.len();
        r.ceremonies.retain(|_, x| x.expires_at > now);
        Ok((n - r.factors.len() + c - r.ceremonies.len()) as u64)
    }

    async fn factor_by_credential(&self, credential_id: &str) -> StoreResult<Option<Factor>> {
        let r = self.lock();
        Ok(r.factors
            .iter()
            .find(|f| f.credential_id.as_deref() == Some(credential_id))
            .cloned())
    }

    async fn update_factor_secret(
        &self,
        user: &UserId,
        id: &FactorId,
        sealed_secret: &[u8],
        at: Timestamp,
    ) -> StoreResult<bool> {
        let mut r = self.lock();
        let factor = r
            .factors
            .iter_mut()
            .find(|f| &f.user_id == user && &f.id == id && f.pending_until.is_none());
        Ok(factor.is_some_and(|f| {
            sealed_secret.clone_into(&mut f.sealed_secret);
            f.last_used_at = Some(at);
            true
        }))
    }

    async fn insert_ceremony(&self, ceremony: &Ceremony) -> StoreResult<()> {
        let mut r = self.lock();
        if r.ceremonies.contains_key(&ceremony.hash) {
            return Err(StoreError::Conflict);
        }
        r.ceremonies.insert(ceremony.hash, ceremony.clone());
        Ok(())
    }

    async fn take_ceremony(
        &self,
        hash: &TokenHash,
        now: Timestamp,
    ) -> StoreResult<Option<Ceremony>> {
        let mut r = self.lock();
        Ok(r.ceremonies.remove(hash).filter(|c| c.expires_at > now))
    }
}
