//! Accounts over SQL.

use authx_core::Timestamp;
use authx_core::store::{
    AccountChange, AccountStore, StoreError, StoreResult, UserPage, UserSearch,
};
use authx_core::user::{User, UserId, UserStatus};

use super::{Dialect, SqlRow, SqlStore, col, count, stmt};

/// Columns of `users` that make up a [`User`].
macro_rules! user_columns {
    () => {
        "id, email, password_hash, status, is_admin, created_at, password_changed_at, \
         email_verified"
    };
}

const INSERT_USER: &str = "INSERT INTO users \
     (id, email, password_hash, status, is_admin, created_at, password_changed_at, \
     email_verified) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
const USER_BY_EMAIL: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE email = $1");
const USER_BY_ID: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
const LIST_USERS: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users ORDER BY created_at, id"
);
// `changed_at` is NULL for a rehash, which keeps the previous password_changed_at.
const SET_PASSWORD_HASH: &str = "UPDATE users SET password_hash = $1, \
     password_changed_at = COALESCE($2, password_changed_at) WHERE id = $3";
const SEARCH_USERS: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users WHERE email LIKE $1 ESCAPE '\\' ORDER BY created_at, id LIMIT $2 OFFSET $3"
);
const COUNT_USERS: &str = "SELECT COUNT(*) AS n FROM users WHERE email LIKE $1 ESCAPE '\\'";

/// The condition under which a change may take administration away from user `$2`: it is not
/// an active administrator, or another active administrator remains (rows locked where the
/// dialect locks, `{lock}`).
macro_rules! keeps_an_admin {
    () => {
        "(NOT is_admin OR status <> 'active' OR EXISTS (SELECT 1 FROM users o \
         WHERE o.is_admin AND o.status = 'active' AND o.id <> $2{lock}))"
    };
}

/// `%text%` for `LIKE`, its wildcards and the escape character escaped.
fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}
const SET_EMAIL_VERIFIED: &str = "UPDATE users SET email_verified = $1 WHERE id = $2";
// The unique index on `email` refuses an address another account holds (a conflict). The owner
// has just proved control of the new address, so it counts as verified.
const SET_EMAIL: &str = "UPDATE users SET email = $1, email_verified = $2 WHERE id = $3";

/// Decodes a row of `users` selected with `user_columns!()`.
fn user_from_row<R: SqlRow>(row: &R) -> StoreResult<User> {
    let status: String = col(row, "status")?;
    let status = UserStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown user status {status:?}")))?;
    Ok(User {
        id: UserId(col(row, "id")?),
        email: col(row, "email")?,
        password_hash: col(row, "password_hash")?,
        status,
        is_admin: col(row, "is_admin")?,
        created_at: Timestamp(col(row, "created_at")?),
        password_changed_at: Timestamp(col(row, "password_changed_at")?),
        email_verified: col(row, "email_verified")?,
    })
}

impl<DB: Dialect> SqlStore<DB> {
    /// What a guarded update that changed `changed` rows of user `id` did.
    async fn guarded_outcome(&self, changed: u64, id: &UserId) -> StoreResult<AccountChange> {
        if changed > 0 {
            return Ok(AccountChange::Done);
        }
        Ok(match self.user_by_id(id).await? {
            Some(_) => AccountChange::LastAdministrator,
            None => AccountChange::NotFound,
        })
    }
}

#[async_trait::async_trait]
impl<DB: Dialect> AccountStore for SqlStore<DB> {
    async fn create_user(&self, user: &User) -> StoreResult<()> {
        stmt(INSERT_USER)
            .bind(&user.id.0)
            .bind(&user.email)
            .bind(&user.password_hash)
            .bind(user.status.as_str())
            .bind(user.is_admin)
            .bind(user.created_at)
            .bind(user.password_changed_at)
            .bind(user.email_verified)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let row = stmt(USER_BY_EMAIL)
            .bind(email)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<User>> {
        let row = stmt(USER_BY_ID)
            .bind(&id.0)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let rows = stmt(LIST_USERS).fetch_all(&self.pool).await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn set_password_hash(
        &self,
        id: &UserId,
        phc: &str,
        changed_at: Option<Timestamp>,
    ) -> StoreResult<bool> {
        let changed = stmt(SET_PASSWORD_HASH)
            .bind(phc)
            .bind(changed_at)
            .bind(&id.0)
            .execute(&self.pool)
            .await?;
        Ok(changed > 0)
    }

    async fn search_users(&self, q: &UserSearch) -> StoreResult<UserPage> {
        let pattern = contains_pattern(&q.email_contains);
        let rows = stmt(SEARCH_USERS)
            .bind(pattern.as_str())
            .bind(i64::from(q.limit))
            .bind(i64::try_from(q.offset).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        let users = rows.iter().map(user_from_row).collect::<StoreResult<_>>()?;
        let total = stmt(COUNT_USERS)
            .bind(pattern.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(UserPage {
            users,
            total: count(col(&total, "n")?)?,
        })
    }

    async fn set_status(&self, id: &UserId, status: UserStatus) -> StoreResult<AccountChange> {
        let sql = if status == UserStatus::Active {
            "UPDATE users SET status = $1 WHERE id = $2".to_owned()
        } else {
            format!(
                concat!(
                    "UPDATE users SET status = $1 WHERE id = $2 AND ",
                    keeps_an_admin!()
                ),
                lock = DB::ROW_LOCK
            )
        };
        let changed = stmt(&sql)
            .bind(status.as_str())
            .bind(&id.0)
            .execute(&self.pool)
            .await?;
        self.guarded_outcome(changed, id).await
    }

    async fn set_admin(&self, id: &UserId, admin: bool) -> StoreResult<AccountChange> {
        let sql = if admin {
            "UPDATE users SET is_admin = $1 WHERE id = $2".to_owned()
        } else {
            format!(
                concat!(
                    "UPDATE users SET is_admin = $1 WHERE id = $2 AND ",
                    keeps_an_admin!()
                ),
                lock = DB::ROW_LOCK
            )
        };
        let changed = stmt(&sql)
            .bind(admin)
            .bind(&id.0)
            .execute(&self.pool)
            .await?;
        self.guarded_outcome(changed, id).await
    }

    async fn set_email_verified(&self, id: &UserId, verified: bool) -> StoreResult<bool> {
        let changed = stmt(SET_EMAIL_VERIFIED)
            .bind(verified)
            .bind(&id.0)
            .execute(&self.pool)
            .await?;
        Ok(changed > 0)
    }

    async fn set_email(&self, id: &UserId, email: &str) -> StoreResult<bool> {
        let changed = stmt(SET_EMAIL)
            .bind(email)
            .bind(true)
            .bind(&id.0)
            .execute(&self.pool)
            .await?;
        Ok(changed > 0)
    }
}
