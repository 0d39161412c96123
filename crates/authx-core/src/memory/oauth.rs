//! The provider's stores in memory: clients and resources, signing keys, codes, refresh
//! families, consents, revoked token ids and device grants, with the same compare-and-set
//! rules as the SQL backends (a code is redeemed once, a token rotated once, a device grant
//! approved only while pending and redeemed only while approved).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::{MemoryStore, insert_unique};
use crate::Timestamp;
use crate::oauth::client::{Client, Resource};
use crate::oauth::device::{
    DeviceApproval, DeviceDenial, DeviceGrant, DevicePoll, DeviceStatus, DeviceStore,
};
use crate::oauth::grant::{
    AuthCode, CodeRedemption, Consent, Redemption, RefreshFamily, RefreshToken, Rotation,
};
use crate::oauth::keys::StoredKey;
use crate::oauth::store::{
    ClientStore, GrantStore, KeyStateChange, KeyStore, PushedRequest, PushedRequestStore,
};
use crate::oauth::types::OAuthStores;
use crate::secret::TokenHash;
use crate::session::SessionId;
use crate::store::{StoreError, StoreResult};
use crate::user::UserId;

/// A code and when it was redeemed.
struct StoredCode {
    code: AuthCode,
    redeemed_at: Option<Timestamp>,
}

#[derive(Default)]
pub(super) struct OAuthRecords {
    clients: Vec<Client>,
    resources: Vec<Resource>,
    keys: Vec<StoredKey>,
    codes: HashMap<TokenHash, StoredCode>,
    families: Vec<RefreshFamily>,
    tokens: HashMap<TokenHash, RefreshToken>,
    consents: Vec<Consent>,
    revoked_jtis: HashMap<String, Timestamp>,
    devices: HashMap<TokenHash, DeviceGrant>,
    pushed: HashMap<TokenHash, PushedRequest>,
}

impl OAuthRecords {
    /// Revokes the families `pick` chooses; returns the ids of those that were live.
    fn revoke_where(
        &mut self,
        now: Timestamp,
        pick: impl Fn(&RefreshFamily) -> bool,
    ) -> Vec<String> {
        let mut live = Vec::new();
        for f in self
            .families
            .iter_mut()
            .filter(|f| f.revoked_at.is_none() && pick(f))
        {
            if now < f.expires_at {
                live.push(f.id.clone());
            }
            f.revoked_at = Some(now);
        }
        live
    }
}

impl MemoryStore {
    /// The stores of [`crate::oauth::service::OAuthService`], all this one.
    pub(crate) fn oauth_stores(&self) -> OAuthStores {
        OAuthStores {
            clients: Arc::new(self.clone()),
            keys: Arc::new(self.clone()),
            grants: Arc::new(self.clone()),
            accounts: Arc::new(self.clone()),
            sessions: Arc::new(self.clone()),
            throttle: Arc::new(self.clone()),
            devices: Arc::new(self.clone()),
            pushed: Arc::new(self.clone()),
        }
    }

    /// A family by id, as stored.
    pub(crate) fn stored_family(&self, id: &str) -> Option<RefreshFamily> {
        let r = self.lock();
        r.oauth.families.iter().find(|f| f.id == id).cloned()
    }

    /// Every family, live or not.
    pub(crate) fn all_families(&self) -> Vec<RefreshFamily> {
        self.lock().oauth.families.clone()
    }
}

#[async_trait]
impl ClientStore for MemoryStore {
    async fn put_client(&self, client: &Client) -> StoreResult<()> {
        insert_unique(&mut self.lock().oauth.clients, client, |c| {
            c.id == client.id
        })
    }

    async fn client(&self, id: &str) -> StoreResult<Option<Client>> {
        Ok(self
            .lock()
            .oauth
            .clients
            .iter()
            .find(|c| c.id == id)
            .cloned())
    }

    async fn list_clients(&self) -> StoreResult<Vec<Client>> {
        let mut all = self.lock().oauth.clients.clone();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }

    async fn page_clients(&self, offset: u64, limit: u32) -> StoreResult<(Vec<Client>, u64)> {
        let all = self.list_clients().await?;
        let total = all.len() as u64;
        let page = all
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(limit as usize)
            .collect();
        Ok((page, total))
    }

    async fn update_client(&self, client: &Client) -> StoreResult<bool> {
        let mut r = self.lock();
        match r.oauth.clients.iter_mut().find(|c| c.id == client.id) {
            Some(stored) => {
                *stored = client.clone();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn delete_client(&self, id: &str) -> StoreResult<bool> {
        let mut r = self.lock();
        let o = &mut r.oauth;
        let before = o.clients.len();
        o.clients.retain(|c| c.id != id);
        if o.clients.len() == before {
            return Ok(false);
        }
        o.codes.retain(|_, c| c.code.client_id != id);
        let gone: Vec<String> = o
            .families
            .iter()
            .filter(|f| f.client_id == id)
            .map(|f| f.id.clone())
            .collect();
        o.families.retain(|f| f.client_id != id);
        o.tokens.retain(|_, t| !gone.contains(&t.family_id));
        o.consents.retain(|c| c.client_id != id);
        o.devices.retain(|_, d| d.client_id != id);
        Ok(true)
    }

    async fn put_resource(&self, resource: &Resource) -> StoreResult<()> {
        insert_unique(&mut self.lock().oauth.resources, resource, |x| {
            x.id == resource.id
        })
    }

    async fn resource(&self, id: &str) -> StoreResult<Option<Resource>> {
        let r = self.lock();
        Ok(r.oauth.resources.iter().find(|x| x.id == id).cloned())
    }

    async fn list_resources(&self) -> StoreResult<Vec<Resource>> {
        let mut all = self.lock().oauth.resources.clone();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }

    async fn delete_resource(&self, id: &str) -> StoreResult<bool> {
        let mut r = self.lock();
        let before = r.oauth.resources.len();
        r.oauth.resources.retain(|x| x.id != id);
        Ok(r.oauth.resources.len() < before)
    }
}

#[async_trait]
impl KeyStore for MemoryStore {
    async fn list_keys(&self) -> StoreResult<Vec<StoredKey>> {
        Ok(self.lock().oauth.keys.clone())
    }

    async fn insert_key(&self, key: &StoredKey) -> StoreResult<()> {
        insert_unique(&mut self.lock().oauth.keys, key, |k| k.kid == key.kid)
    }

    async fn set_key_state(&self, change: KeyStateChange<'_>) -> StoreResult<bool> {
        let mut r = self.lock();
        let Some(k) = r.oauth.keys.iter_mut().find(|k| k.kid == change.kid) else {
            return Ok(false);
        };
        k.state = change.state;
        k.activated_at = change.activated_at.or(k.activated_at);
        k.remove_after = change.remove_after.or(k.remove_after);
        Ok(true)
    }

    async fn delete_key(&self, kid: &str) -> StoreResult<bool> {
        let mut r = self.lock();
        let before = r.oauth.keys.len();
        r.oauth.keys.retain(|k| k.kid != kid);
        Ok(r.oauth.keys.len() < before)
    }
}

#[async_trait]
impl GrantStore for MemoryStore {
    async fn put_code(&self, code: &AuthCode) -> StoreResult<()> {
        let stored = StoredCode {
            code: code.clone(),
            redeemed_at: None,
        };
        self.lock().oauth.codes.insert(code.code_hash, stored);
        Ok(())
    }

    async fn redeem_code(&self, redemption: Redemption<'_>) -> StoreResult<CodeRedemption> {
        let Redemption {
            hash,
            family_id,
            now,
        } = redemption;
        let mut r = self.lock();
        let Some(c) = r.oauth.codes.get_mut(hash) else {
            return Ok(CodeRedemption::Unknown);
        };
        if c.redeemed_at.is_some() {
            return Ok(CodeRedemption::AlreadyRedeemed {
                family_id: c.code.family_id.clone(),
            });
        }
        if c.code.expires_at <= now {
            return Ok(CodeRedemption::Unknown);
        }
        c.redeemed_at = Some(now);
        c.code.family_id = Some(family_id.to_owned());
        Ok(CodeRedemption::Redeemed(Box::new(c.code.clone())))
    }

    async fn delete_session_codes(&self, session: &SessionId) -> StoreResult<u64> {
        let mut r = self.lock();
        let before = r.oauth.codes.len();
        r.oauth
            .codes
            .retain(|_, c| c.redeemed_at.is_some() || &c.code.session_id != session);
        Ok((before - r.oauth.codes.len()) as u64)
    }

    async fn delete_user_codes(&self, user: &UserId, keep: Option<&SessionId>) -> StoreResult<u64> {
        let mut r = self.lock();
        let before = r.oauth.codes.len();
        r.oauth.codes.retain(|_, c| {
            c.redeemed_at.is_some() || &c.code.user_id != user || Some(&c.code.session_id) == keep
        });
        Ok((before - r.oauth.codes.len()) as u64)
    }

    async fn create_family(
        &self,
        family: &RefreshFamily,
        first: Option<&RefreshToken>,
    ) -> StoreResult<()> {
        let mut r = self.lock();
        insert_unique(&mut r.oauth.families, family, |f| f.id == family.id)?;
        if let Some(t) = first {
            r.oauth.tokens.insert(t.hash, t.clone());
        }
        Ok(())
    }

    async fn family(&self, id: &str) -> StoreResult<Option<RefreshFamily>> {
        Ok(self.stored_family(id))
    }

    async fn refresh_token(
        &self,
        hash: &TokenHash,
    ) -> StoreResult<Option<(RefreshToken, RefreshFamily)>> {
        let r = self.lock();
        Ok(r.oauth.tokens.get(hash).and_then(|t| {
            let f = r.oauth.families.iter().find(|f| f.id == t.family_id)?;
            Some((t.clone(), f.clone()))
        }))
    }

    async fn rotate_refresh(&self, rotation: Rotation<'_>) -> StoreResult<bool> {
        let Rotation { old, new, now } = rotation;
        let mut r = self.lock();
        match r.oauth.tokens.get_mut(old) {
            Some(t) if t.family_id == new.family_id && t.consumed_at.is_none() => {
                t.consumed_at = Some(now);
            }
            _ => return Ok(false),
        }
        r.oauth.tokens.insert(new.hash, new.clone());
        Ok(true)
    }

    async fn revoke_family(&self, id: &str, now: Timestamp) -> StoreResult<bool> {
        Ok(!self
            .lock()
            .oauth
            .revoke_where(now, |f| f.id == id)
            .is_empty())
    }

    async fn revoke_user_families(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> StoreResult<Vec<String>> {
        Ok(self.lock().oauth.revoke_where(now, |f| &f.user_id == user))
    }

    async fn revoke_session_families(
        &self,
        session: &SessionId,
        now: Timestamp,
    ) -> StoreResult<Vec<String>> {
        let mut r = self.lock();
        Ok(r.oauth
            .revoke_where(now, |f| f.session_id.as_ref() == Some(session)))
    }

    async fn count_live_families(&self, now: Timestamp) -> StoreResult<u64> {
        Ok(self
            .lock()
            .oauth
            .families
            .iter()
            .filter(|f| f.is_live(now))
            .count() as u64)
    }

    async fn list_user_families(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> StoreResult<Vec<RefreshFamily>> {
        let mut live: Vec<RefreshFamily> = self
            .lock()
            .oauth
            .families
            .iter()
            .filter(|f| &f.user_id == user && f.is_live(now))
            .cloned()
            .collect();
        live.sort_by_key(|f| std::cmp::Reverse(f.created_at));
        Ok(live)
    }

    async fn consent(
        &self,
        user: &UserId,
        client_id: &str,
        resource: Option<&str>,
    ) -> StoreResult<Option<Consent>> {
        let r = self.lock();
        Ok(r.oauth
            .consents
            .iter()
            .find(|c| {
                &c.user_id == user && c.client_id == client_id && c.resource.as_deref() == resource
            })
            .cloned())
    }

    async fn put_consent(&self, consent: &Consent) -> StoreResult<()> {
        let mut r = self.lock();
        r.oauth.consents.retain(|c| {
            !(c.user_id == consent.user_id
                && c.client_id == consent.client_id
                && c.resource == consent.resource)
        });
        r.oauth.consents.push(consent.clone());
        Ok(())
    }

    async fn delete_consent(&self, user: &UserId, client_id: &str) -> StoreResult<bool> {
        let mut r = self.lock();
        let before = r.oauth.consents.len();
        r.oauth
            .consents
            .retain(|c| !(&c.user_id == user && c.client_id == client_id));
        Ok(r.oauth.consents.len() < before)
    }

    async fn list_consents(&self, user: &UserId) -> StoreResult<Vec<Consent>> {
        let r = self.lock();
        Ok(r.oauth
            .consents
            .iter()
            .filter(|c| &c.user_id == user)
            .cloned()
            .collect())
    }

    async fn revoke_jti(&self, jti: &str, expires_at: Timestamp) -> StoreResult<()> {
        self.lock()
            .oauth
            .revoked_jtis
            .insert(jti.to_owned(), expires_at);
        Ok(())
    }

    async fn is_jti_revoked(&self, jti: &str) -> StoreResult<bool> {
        Ok(self.lock().oauth.revoked_jtis.contains_key(jti))
    }

    async fn purge_grants(&self, now: Timestamp) -> StoreResult<u64> {
        let mut r = self.lock();
        let o = &mut r.oauth;
        let before = o.codes.len() + o.families.len() + o.tokens.len() + o.revoked_jtis.len();
        o.codes.retain(|_, c| c.code.expires_at > now);
        o.families.retain(|f| f.expires_at > now);
        let families: Vec<String> = o.families.iter().map(|f| f.id.clone()).collect();
        o.tokens.retain(|_, t| {
            families.contains(&t.family_id) && (t.consumed_at.is_none() || t.idle_expires_at > now)
        });
        o.revoked_jtis.retain(|_, exp| *exp > now);
        let after = o.codes.len() + o.families.len() + o.tokens.len() + o.revoked_jtis.len();
        Ok((before - after) as u64)
    }
}

#[async_trait]
impl DeviceStore for MemoryStore {
    async fn put_device_grant(&self, grant: &DeviceGrant) -> StoreResult<()> {
        let mut r = self.lock();
        let taken = r.oauth.devices.contains_key(&grant.device_code_hash)
            || r.oauth
                .devices
                .values()
                .any(|d| d.user_code == grant.user_code);
        if taken {
            return Err(StoreError::Conflict);
        }
        r.oauth
            .devices
            .insert(grant.device_code_hash, grant.clone());
        Ok(())
    }

    async fn device_grant(&self, hash: &TokenHash) -> StoreResult<Option<DeviceGrant>> {
        Ok(self.lock().oauth.devices.get(hash).cloned())
    }

    async fn device_grant_by_user_code(&self, user_code: &str) -> StoreResult<Option<DeviceGrant>> {
        let r = self.lock();
        Ok(r.oauth
            .devices
            .values()
            .find(|d| d.user_code == user_code)
            .cloned())
    }

    async fn approve_device_grant(&self, a: DeviceApproval<'_>) -> StoreResult<bool> {
        let mut r = self.lock();
        match r.oauth.devices.get_mut(a.hash) {
            Some(d) if d.status == DeviceStatus::Pending && d.expires_at > a.now => {
                d.status = DeviceStatus::Approved;
                d.user_id = Some(a.user.clone());
                d.session_id = Some(a.session.clone());
                d.auth_time = Some(a.auth_time);
                d.auth_methods = a.auth_methods.to_owned();
                d.decided_at = Some(a.now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn deny_device_grant(&self, denial: DeviceDenial<'_>) -> StoreResult<bool> {
        let DeviceDenial { hash, user, now } = denial;
        let mut r = self.lock();
        match r.oauth.devices.get_mut(hash) {
            Some(d) if matches!(d.status, DeviceStatus::Pending | DeviceStatus::Approved) => {
                d.status = DeviceStatus::Denied;
                d.user_id = d.user_id.clone().or_else(|| user.cloned());
                d.decided_at = d.decided_at.or(Some(now));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn deny_user_device_grants(&self, user: &UserId) -> StoreResult<u64> {
        let mut r = self.lock();
        let mut n = 0;
        for d in r.oauth.devices.values_mut() {
            if d.user_id.as_ref() == Some(user) && d.status == DeviceStatus::Approved {
                d.status = DeviceStatus::Denied;
                n += 1;
            }
        }
        Ok(n)
    }

    async fn redeem_device_grant(&self, redemption: Redemption<'_>) -> StoreResult<bool> {
        let mut r = self.lock();
        match r.oauth.devices.get_mut(redemption.hash) {
            Some(d) if d.status == DeviceStatus::Approved && d.expires_at > redemption.now => {
                d.status = DeviceStatus::Redeemed;
                d.family_id = Some(redemption.family_id.to_owned());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn record_device_poll(&self, hash: &TokenHash, poll: &DevicePoll) -> StoreResult<bool> {
        let mut r = self.lock();
        match r.oauth.devices.get_mut(hash) {
            Some(d) if d.polls == poll.seen_polls => {
                d.polls += 1;
                d.interval_secs = poll.interval_secs;
                d.last_poll_at = Some(poll.at());
                d.last_poll_ms = Some(poll.at_ms);
                d.slow_down_gap_ms = poll.slow_down_gap_ms;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn purge_device_grants(&self, now: Timestamp) -> StoreResult<u64> {
        let mut r = self.lock();
        let before = r.oauth.devices.len();
        r.oauth.devices.retain(|_, d| d.expires_at > now);
        Ok((before - r.oauth.devices.len()) as u64)
    }
}

#[async_trait]
impl PushedRequestStore for MemoryStore {
    async fn insert_pushed_request(&self, request: &PushedRequest) -> StoreResult<()> {
        let mut r = self.lock();
        if r.oauth.pushed.contains_key(&request.hash) {
            return Err(StoreError::Conflict);
        }
        r.oauth.pushed.insert(request.hash, request.clone());
        Ok(())
    }

    async fn open_pushed_request(
        &self,
        hash: &TokenHash,
        now: Timestamp,
        interaction_secs: i64,
    ) -> StoreResult<Option<PushedRequest>> {
        let mut r = self.lock();
        Ok(r.oauth
            .pushed
            .get_mut(hash)
            .filter(|p| p.expires_at > now)
            .map(|p| {
                p.expires_at = p.expires_at.max(p.created_at.plus(interaction_secs));
                p.clone()
            }))
    }

    async fn take_pushed_request(
        &self,
        hash: &TokenHash,
        now: Timestamp,
    ) -> StoreResult<Option<PushedRequest>> {
        let mut r = self.lock();
        match r.oauth.pushed.remove(hash) {
            Some(p) if p.expires_at > now => Ok(Some(p)),
            _ => Ok(None),
        }
    }

    async fn purge_pushed_requests(&self, now: Timestamp) -> StoreResult<u64> {
        let mut r = self.lock();
        let before = r.oauth.pushed.len();
        r.oauth.pushed.retain(|_, p| p.expires_at > now);
        Ok((before - r.oauth.pushed.len()) as u64)
    }
}
