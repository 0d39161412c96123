//! What the SQL backends share: the store implementations, generic over the database.
//!
//! SQLite and PostgreSQL run the same statements: both accept `$N` placeholders, `RETURNING`
//! and `INSERT ... ON CONFLICT ... DO UPDATE`, and both schemas derive `sessions.expires_at`
//! as the earlier of the two deadlines. Each backend keeps its own migrations and connection
//! setup (`crate::sqlite`, `crate::postgres`); every store trait is implemented once, here,
//! for [`SqlStore<DB>`](SqlStore), one module per trait family. [`db`] says what the shared
//! code needs of a database and what differs between the two ([`Dialect`]).

use authx_core::store::{Health, StoreResult};

mod audit;
pub(crate) mod clients;
mod db;
mod device;
mod factors;
mod federation;
pub(crate) mod grants;
mod keys;
mod links;
mod outbox;
mod pool;
mod pushed;
mod registration;
mod revocation;
mod sessions;
mod sp_keys;
mod throttle;
mod users;

pub(crate) use db::{
    Dialect, Pool, Rotated, Rotation, SqlRow, SqlStore, Stmt, col, count, hash, opt_timestamp,
    parse_hash, stmt, store_error, timestamp,
};
pub(crate) use pool::select_one;

#[async_trait::async_trait]
impl<DB: Dialect> Health for SqlStore<DB> {
    async fn ping(&self) -> StoreResult<()> {
        stmt("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
