//! Accounts whose every change reaches the copies of users a session store keeps beside its
//! sessions ([`SessionStore::session_and_user`]).
//!
//! With sessions in Redis, an authenticated request reads the session and a copy of its user
//! in one round trip instead of reading the user from PostgreSQL too. A copy is only as good
//! as its invalidation: every change to an account goes through [`CopyingAccounts`], which
//! calls [`SessionStore::forget_user`] once the change is stored and before it is reported
//! done. So the very next request, on any instance, reads the changed account. A copy being
//! filled at that moment from an older read is refused by the generation it was read under.

use std::sync::Arc;

use async_trait::async_trait;
use authx_core::Timestamp;
use authx_core::store::{
    AccountChange, AccountStore, SessionStore, StoreResult, UserPage, UserSearch,
};
use authx_core::user::{User, UserId, UserStatus};

/// `accounts`, each change followed by [`SessionStore::forget_user`] on `sessions`.
#[must_use]
pub fn copying_accounts(
    accounts: Arc<dyn AccountStore>,
    sessions: Arc<dyn SessionStore>,
) -> Arc<dyn AccountStore> {
    Arc::new(CopyingAccounts { accounts, sessions })
}

struct CopyingAccounts {
    accounts: Arc<dyn AccountStore>,
    sessions: Arc<dyn SessionStore>,
}

impl CopyingAccounts {
    /// `changed`, once the copies of `id` are forgotten. A change that failed may still have
    /// been stored, so the copies go either way; failing to forget them fails the call.
    async fn forget<T>(&self, id: &UserId, changed: StoreResult<T>) -> StoreResult<T> {
        self.sessions.forget_user(id).await?;
        changed
    }
}

#[async_trait]
impl AccountStore for CopyingAccounts {
    async fn create_user(&self, user: &User) -> StoreResult<()> {
        self.accounts.create_user(user).await
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        self.accounts.user_by_email(email).await
    }

    async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<User>> {
        self.accounts.user_by_id(id).await
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        self.accounts.list_users().await
    }

    async fn set_password_hash(
        &self,
        id: &UserId,
        phc: &str,
        changed_at: Option<Timestamp>,
    ) -> StoreResult<bool> {
        let changed = self.accounts.set_password_hash(id, phc, changed_at).await;
        self.forget(id, changed).await
    }

    async fn search_users(&self, q: &UserSearch) -> StoreResult<UserPage> {
        self.accounts.search_users(q).await
    }

    async fn set_status(&self, id: &UserId, status: UserStatus) -> StoreResult<AccountChange> {
        let changed = self.accounts.set_status(id, status).await;
        self.forget(id, changed).await
    }

    async fn set_admin(&self, id: &UserId, admin: bool) -> StoreResult<AccountChange> {
        let changed = self.accounts.set_admin(id, admin).await;
        self.forget(id, changed).await
    }

    async fn set_email_verified(&self, id: &UserId, verified: bool) -> StoreResult<bool> {
        let changed = self.accounts.set_email_verified(id, verified).await;
        self.forget(id, changed).await
    }

    async fn set_email(&self, id: &UserId, email: &str) -> StoreResult<bool> {
        let changed = self.accounts.set_email(id, email).await;
        self.forget(id, changed).await
    }
}
