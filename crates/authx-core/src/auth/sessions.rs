//! Sessions: the identity behind each request (through this instance's cache), the user's
//! inventory, sign-out and revocation, and what a revocation takes with it (the refresh-token
//! families and unredeemed codes that stood on the session, announced on the event bus).

use std::sync::Arc;

use crate::audit::AuditEvent;
use crate::clock::Timestamp;
use crate::events::RevocationEvent;
use crate::secret::{SessionToken, TokenHash};
use crate::session::{ClientContext, Session, SessionId};
use crate::store::{SessionTouch, UserCopy};
use crate::user::{UserId, UserStatus};

use super::{AuthError, AuthService, Authenticated};

impl AuthService {
    /// Resolves the session behind a cookie value. `Ok(None)` means anonymous: never issued,
    /// expired, revoked, or its user disabled.
    ///
    /// # Errors
    /// Storage failures (the caller fails closed).
    pub async fn authenticate(
        &self,
        token: &SessionToken,
        ctx: &ClientContext,
    ) -> Result<Option<Arc<Authenticated>>, AuthError> {
        let hash = token.hash();
        let now = self.clock.now();
        let use_cache = self.cache.enabled() && self.events.is_connected();
        // One lock: drop the cache if events may have been lost since it was filled, then
        // look the hash up and note the epoch a fresh entry must still match.
        let (mut cached, epoch) = if use_cache {
            self.cache.lookup(&hash, self.events.epoch())
        } else {
            (None, 0)
        };
        // A cached copy may be behind a touch made on another instance: re-read before refusing.
        if cached.as_ref().is_some_and(|a| !a.session.is_live(now)) {
            cached = None;
        }
        let mut changed = cached.is_none();
        let mut auth = match cached {
            Some(a) => a,
            None => match self.load(&hash).await? {
                Some(a) => a,
                None => return Ok(None),
            },
        };
        if !self.still_valid(&hash, &auth, now, ctx).await? {
            return Ok(None);
        }
        if now.since(auth.session.last_seen_at) >= self.policy.session.touch_interval_secs {
            if !self.touch(Arc::make_mut(&mut auth), now, ctx).await? {
                self.cache.remove(&hash);
                return Ok(None);
            }
            changed = true;
        }
        // A hit that changed nothing is already in the cache as it is.
        if use_cache && changed {
            self.cache.put_if_epoch(hash, Arc::clone(&auth), epoch);
        }
        Ok(Some(auth))
    }

    /// The session stored under `hash` and its user, whether live or not. Where the session
    /// store keeps users beside sessions, both come from one read, and a missing copy is
    /// read from the account store and kept.
    async fn load(&self, hash: &TokenHash) -> Result<Option<Arc<Authenticated>>, AuthError> {
        let sessions = &self.stores.sessions;
        let Some((session, copy)) = sessions.session_and_user(hash).await? else {
            return Ok(None);
        };
        // The hash was found by lookup; confirm it in constant time all the same.
        if !session.token_hash.ct_eq(hash) {
            return Ok(None);
        }
        let user = match copy {
            UserCopy::Kept(user) if user.id == session.user_id => Some(user),
            UserCopy::Missing(generation) => {
                let user = self.stores.accounts.user_by_id(&session.user_id).await?;
                if let Some(u) = &user {
                    // Only a cache fill: the request goes on without it.
                    if let Err(e) = sessions.keep_user(u, generation).await {
                        tracing::warn!(error = %e, "cannot keep a copy of the user beside the sessions");
                    }
                }
                user
            }
            UserCopy::Kept(_) | UserCopy::NotKept => {
                self.stores.accounts.user_by_id(&session.user_id).await?
            }
        };
        let Some(user) = user else {
            return Ok(None);
        };
        Ok(Some(Arc::new(Authenticated { user, session })))
    }

    /// Whether a found session may serve this request: live, its user active, and (when the
    /// policy binds it) from the same user agent. An expired session is deleted here; an
    /// address change is only audited.
    async fn still_valid(
        &self,
        hash: &TokenHash,
        auth: &Authenticated,
        now: Timestamp,
        ctx: &ClientContext,
    ) -> Result<bool, AuthError> {
        let s = &auth.session;
        if !s.is_live(now) || auth.user.status != UserStatus::Active {
            self.cache.remove(hash);
            // The session is over: its row goes now (so a cookie presented again costs no
            // write) and the codes it minted with it. Its refresh families stay, as they do
            // when the purge removes an expired session.
            if !s.is_live(now)
                && self
                    .stores
                    .sessions
                    .delete_session(&s.user_id, &s.id)
                    .await?
                    .is_some()
            {
                self.end_codes(CodeScope::Session(&s.id)).await?;
            }
            return Ok(false);
        }
        if self.policy.session.bind_user_agent && s.user_agent != ctx.user_agent {
            self.audit.record(
                AuditEvent::failure("session_user_agent_mismatch")
                    .user(&auth.user.id)
                    .with("session_id", &s.id),
            );
            return Ok(false);
        }
        if s.ip.is_some() && ctx.ip.is_some() && s.ip != ctx.ip {
            self.audit.record(
                AuditEvent::success("session_ip_changed")
                    .user(&auth.user.id)
                    .with("session_id", &s.id)
                    .with("previous_ip", s.ip.as_deref().unwrap_or("-")),
            );
        }
        Ok(true)
    }

    /// Records activity on the session (moving its idle deadline); `false` when the session
    /// was deleted meanwhile, so a touch racing a revoke never brings it back.
    async fn touch(
        &self,
        auth: &mut Authenticated,
        now: Timestamp,
        ctx: &ClientContext,
    ) -> Result<bool, AuthError> {
        let idle = self
            .policy
            .session
            .idle_deadline(now, auth.session.absolute_expires_at);
        let alive = self
            .stores
            .sessions
            .touch_session(SessionTouch {
                id: &auth.session.id,
                last_seen_at: now,
                idle_expires_at: idle,
                ip: ctx.ip.as_deref(),
            })
            .await?;
        if alive {
            auth.session.last_seen_at = now;
            auth.session.idle_expires_at = idle;
            if ctx.ip.is_some() {
                auth.session.ip.clone_from(&ctx.ip);
            }
        }
        Ok(alive)
    }

    /// Ends every session of `user` except `keep`, with what stood on them: the user's
    /// refresh-token families (devices and apps included: they sign in again through a live
    /// session if the user wants), unredeemed codes and device approvals. The caller announces
    /// the ending on the bus; returns the sessions ended.
    pub(super) async fn end_user_sessions(
        &self,
        user: &UserId,
        keep: Option<&SessionId>,
    ) -> Result<Vec<SessionId>, AuthError> {
        let ended = self
            .stores
            .sessions
            .delete_user_sessions(user, keep)
            .await?;
        self.revoke_families(FamilyScope::User(user)).await?;
        self.end_codes(CodeScope::UserExcept(user, keep)).await?;
        Ok(ended)
    }

    /// Ends the session behind a cookie value, if there is one.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn sign_out(&self, token: &SessionToken) -> Result<(), AuthError> {
        self.end_session_by_hash(&token.hash(), "sign_out").await
    }

    /// The user's live sessions, newest first.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn sessions(&self, user: &UserId) -> Result<Vec<Session>, AuthError> {
        Ok(self
            .stores
            .sessions
            .list_user_sessions(user, self.clock.now())
            .await?)
    }

    /// Ends one of the user's sessions.
    ///
    /// # Errors
    /// [`AuthError::NotFound`] when the user has no such session.
    pub async fn revoke_session(&self, user: &UserId, id: &SessionId) -> Result<(), AuthError> {
        if self.end_session(user, id, "session_revoked").await? {
            Ok(())
        } else {
            Err(AuthError::NotFound)
        }
    }

    /// Ends every session of the user except `keep`; returns how many ended.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn revoke_other_sessions(
        &self,
        user: &UserId,
        keep: Option<&SessionId>,
    ) -> Result<usize, AuthError> {
        // Signing out everywhere else ends every application grant of the user too.
        let ended = self.end_user_sessions(user, keep).await?;
        self.emit(RevocationEvent::UserSessionsEnded {
            user_id: user.clone(),
            kept: keep.cloned(),
            ended: ended.clone(),
        })
        .await?;
        self.audit.record(
            AuditEvent::success("sessions_revoked")
                .user(user)
                .with_count("count", ended.len() as u64),
        );
        Ok(ended.len())
    }

    /// Deletes expired sessions and stale failure counters; returns how many rows went.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn purge_expired(&self) -> Result<u64, AuthError> {
        let now = self.clock.now();
        let s = self.stores.sessions.purge_expired_sessions(now).await?;
        let t = self
            .stores
            .throttle
            .purge_failures(Timestamp(
                // Single-use marks live in the same table and must outlive what they mark.
                now.secs()
                    - self
                        .policy
                        .throttle
                        .reset_after_secs
                        .max(crate::replay::MARK_KEEP_SECS),
            ))
            .await?;
        Ok(s + t)
    }

    /// The number of live sessions, for metrics.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn live_session_count(&self) -> Result<u64, AuthError> {
        Ok(self
            .stores
            .sessions
            .count_live_sessions(self.clock.now())
            .await?)
    }

    pub(super) async fn end_session_by_hash(
        &self,
        hash: &TokenHash,
        kind: &'static str,
    ) -> Result<(), AuthError> {
        if let Some(s) = self.stores.sessions.session_by_hash(hash).await? {
            self.end_session(&s.user_id, &s.id, kind).await?;
        }
        Ok(())
    }

    /// Ends one session; `kind` names why in the audit trail (`sign_out`, `session_revoked`,
    /// `session_replaced`, `session_cap`).
    pub(super) async fn end_session(
        &self,
        user: &UserId,
        id: &SessionId,
        kind: &'static str,
    ) -> Result<bool, AuthError> {
        let ended = self
            .stores
            .sessions
            .delete_session(user, id)
            .await?
            .is_some();
        if ended {
            self.revoke_families(FamilyScope::Session(user, id)).await?;
            self.end_codes(CodeScope::Session(id)).await?;
            self.emit(RevocationEvent::SessionEnded {
                session_id: id.clone(),
                user_id: user.clone(),
            })
            .await?;
            self.audit
                .record(AuditEvent::success(kind).user(user).with("session_id", id));
        }
        Ok(ended)
    }

    /// Revokes the refresh-token families of a user or of one session, announcing each.
    pub(super) async fn revoke_families(&self, scope: FamilyScope<'_>) -> Result<(), AuthError> {
        let Some(grants) = &self.grants else {
            return Ok(());
        };
        let now = self.clock.now();
        let (user, ids) = match scope {
            FamilyScope::User(user) => (user, grants.revoke_user_families(user, now).await?),
            FamilyScope::Session(user, session) => {
                (user, grants.revoke_session_families(session, now).await?)
            }
        };
        for family_id in ids {
            if let Some(o) = &self.observer {
                o.grant_revoked(&family_id);
            }
            self.emit(RevocationEvent::FamilyRevoked {
                family_id,
                user_id: user.clone(),
            })
            .await?;
        }
        Ok(())
    }

    /// Deletes the unredeemed authorization codes of ended sessions, and for a whole user the
    /// device approvals no device has redeemed yet, so nothing minted by a sign-in that is over
    /// can be exchanged for tokens later. (Redemption checks the session as well; this removes
    /// what can no longer be used.)
    pub(super) async fn end_codes(&self, scope: CodeScope<'_>) -> Result<(), AuthError> {
        let Some(grants) = &self.grants else {
            return Ok(());
        };
        match scope {
            CodeScope::Session(session) => {
                grants.delete_session_codes(session).await?;
            }
            CodeScope::UserExcept(user, keep) => {
                grants.delete_user_codes(user, keep).await?;
                if let Some(devices) = &self.devices {
                    devices.deny_user_device_grants(user).await?;
                }
            }
        }
        Ok(())
    }

    pub(super) async fn emit(&self, event: RevocationEvent) -> Result<(), AuthError> {
        // Local cache first, synchronously: the response that follows must already hold here.
        self.cache.invalidate(&event);
        self.events.publish(&event).await?;
        Ok(())
    }
}

pub(super) enum CodeScope<'a> {
    /// The codes of one ended session.
    Session(&'a SessionId),
    /// Every code of the user except those of a kept session, and the user's device approvals.
    UserExcept(&'a UserId, Option<&'a SessionId>),
}

pub(super) enum FamilyScope<'a> {
    User(&'a UserId),
    Session(&'a UserId, &'a SessionId),
}
