//! The few things the shared store code asks of a SQL database, and the store type over it.
//!
//! The shared code is generic over the database (`SqlStore<DB>`), but sqlx's own generics
//! would make every function repeat a dozen bounds (that each value type encodes and decodes,
//! that a connection executes queries). Instead, two small traits say once what is needed and
//! are implemented for every database that has it: [`SqlDb`] runs a [`Stmt`] (a statement
//! with its parameters as [`Arg`]s) on a connection, and [`SqlRow`] reads the column types the
//! schema uses. [`Dialect`] is what differs between the backends; today only how a refresh
//! token is rotated.

use authx_core::Timestamp;
use authx_core::secret::TokenHash;
use authx_core::store::{StoreError, StoreResult};
use futures_util::future::BoxFuture;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

pub(crate) use super::pool::{Pool, Tx};

/// Every store over one SQL database: the pool, and what the backend adds to rotate refresh
/// tokens (SQLite's group-commit writer).
pub(crate) struct SqlStore<DB: Dialect> {
    pub(crate) pool: Pool<DB>,
    pub(crate) rotations: DB::Rotations,
}

pub(crate) use authx_core::oauth::grant::Rotation;

/// Whether a rotation happened (`false`: `old` was not current), once it is durable.
pub(crate) type Rotated<'a> = BoxFuture<'a, StoreResult<bool>>;

/// What differs between the SQL backends.
pub(crate) trait Dialect: SqlDb {
    /// What a store keeps besides its pool to rotate refresh tokens.
    type Rotations: Send + Sync;

    /// `GrantStore::rotate_refresh` on this backend: SQLite commits a batch of rotations at
    /// once (`crate::sqlite::rotation`), PostgreSQL runs each as one statement.
    fn rotate_refresh<'a>(store: &'a SqlStore<Self>, r: Rotation<'a>) -> Rotated<'a>;

    /// The clause a sub-select adds to lock the rows it reads until the transaction ends:
    /// none by default (SQLite runs one writer at a time).
    const ROW_LOCK: &'static str = "";

    /// Appends the placeholder of the `n`-th parameter (from 1) to a statement built at run
    /// time: `$n` by default (PostgreSQL; SQLite reads it too).
    fn push_placeholder(sql: &mut String, n: usize) {
        sql.push('$');
        sql.push_str(&n.to_string());
    }
}

/// A statement parameter: the shared statements bind text, integers, booleans and bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
    Bool(bool),
    Bytes(&'a [u8]),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Self::Text(Some(v))
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Self::Text(Some(v))
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Self::Text(v)
    }
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Self::Int(Some(v))
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Self::Int(v)
    }
}

impl From<Timestamp> for Arg<'_> {
    fn from(v: Timestamp) -> Self {
        Self::Int(Some(v.0))
    }
}

impl From<Option<Timestamp>> for Arg<'_> {
    fn from(v: Option<Timestamp>) -> Self {
        Self::Int(v.map(|t| t.0))
    }
}

impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

impl<'a> From<&'a Vec<u8>> for Arg<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
        Self::Bytes(v)
    }
}

/// A statement and its parameters, in order (`$1`, `$2`, ...).
#[derive(Debug)]
pub(crate) struct Stmt<'a> {
    sql: &'a str,
    args: Vec<Arg<'a>>,
}

/// The statement `sql`, with its parameters added by [`Stmt::bind`].
pub(crate) fn stmt(sql: &str) -> Stmt<'_> {
    Stmt {
        sql,
        args: Vec::new(),
    }
}

impl<'a> Stmt<'a> {
    /// Binds the next parameter.
    pub(crate) fn bind(mut self, arg: impl Into<Arg<'a>>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Runs the statement on a connection of `pool`, returning the rows it affected.
    pub(crate) async fn execute<DB: SqlDb>(&self, pool: &Pool<DB>) -> StoreResult<u64> {
        pool.run(async {
            let mut conn = pool.inner().acquire().await.map_err(store_error)?;
            DB::execute(&mut conn, self).await.map_err(store_error)
        })
        .await
    }

    /// Runs the statement in `tx`, returning the rows it affected.
    pub(crate) async fn execute_in<DB: SqlDb>(&self, tx: &mut Tx<DB>) -> StoreResult<u64> {
        tx.run(|conn| async { DB::execute(conn, self).await.map_err(store_error) })
            .await
    }

    /// The first row the statement returns, if any.
    pub(crate) async fn fetch_optional<DB: SqlDb>(
        &self,
        pool: &Pool<DB>,
    ) -> StoreResult<Option<DB::Row>> {
        pool.run(async {
            let mut conn = pool.inner().acquire().await.map_err(store_error)?;
            DB::fetch_optional(&mut conn, self)
                .await
                .map_err(store_error)
        })
        .await
    }

    /// The one row the statement returns.
    pub(crate) async fn fetch_one<DB: SqlDb>(&self, pool: &Pool<DB>) -> StoreResult<DB::Row> {
        pool.run(async {
            let mut conn = pool.inner().acquire().await.map_err(store_error)?;
            DB::fetch_one(&mut conn, self).await.map_err(store_error)
        })
        .await
    }

    /// Every row the statement returns.
    pub(crate) async fn fetch_all<DB: SqlDb>(&self, pool: &Pool<DB>) -> StoreResult<Vec<DB::Row>> {
        pool.run(async {
            let mut conn = pool.inner().acquire().await.map_err(store_error)?;
            DB::fetch_all(&mut conn, self).await.map_err(store_error)
        })
        .await
    }

    /// Every row the statement returns, in `tx`.
    pub(crate) async fn fetch_all_in<DB: SqlDb>(
        &self,
        tx: &mut Tx<DB>,
    ) -> StoreResult<Vec<DB::Row>> {
        tx.run(|conn| async { DB::fetch_all(conn, self).await.map_err(store_error) })
            .await
    }
}

/// A database the shared statements run on: implemented for every sqlx database whose
/// connections execute queries, whose parameters take [`Arg`]s and whose rows are [`SqlRow`]s
/// (SQLite and PostgreSQL).
pub(crate) trait SqlDb: Database<Row: SqlRow> {
    /// Runs `stmt` on `conn`, returning the rows it affected.
    fn execute<'c>(
        conn: &'c mut Self::Connection,
        stmt: &'c Stmt<'_>,
    ) -> BoxFuture<'c, Result<u64, sqlx::Error>>;

    /// The first row `stmt` returns, if any.
    fn fetch_optional<'c>(
        conn: &'c mut Self::Connection,
        stmt: &'c Stmt<'_>,
    ) -> BoxFuture<'c, Result<Option<Self::Row>, sqlx::Error>>;

    /// The one row `stmt` returns.
    fn fetch_one<'c>(
        conn: &'c mut Self::Connection,
        stmt: &'c Stmt<'_>,
    ) -> BoxFuture<'c, Result<Self::Row, sqlx::Error>>;

    /// Every row `stmt` returns.
    fn fetch_all<'c>(
        conn: &'c mut Self::Connection,
        stmt: &'c Stmt<'_>,
    ) -> BoxFuture<'c, Result<Vec<Self::Row>, sqlx::Error>>;
}

impl<DB> SqlDb for DB
where
    DB: Database<Row: SqlRow, QueryResult: Affected>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
{
    fn execute<'c>(
        conn: &'c mut Self::Connection,
        stmt: &'c Stmt<'_>,
    ) -> BoxFuture<'c, Result<u64, sqlx::Error>> {
        Box::pin(async move {
            let done = conn.execute(query(stmt)).await?;
            Ok(done.rows_affected())
        })
    }

    fn fetch_optional<'c>(
        conn: &'c mut Self::Connection,
        stmt: &'c Stmt<'_>,
    ) -> BoxFuture<'c, Result<Option<Self::Row>, sqlx::Error>> {
        conn.fetch_optional(query(stmt))
    }

    fn fetch_one<'c>(
        conn: &'c mut Self::Connection,
        stmt: &'c Stmt<'_>,
    ) -> BoxFuture<'c, Result<Self::Row, sqlx::Error>> {
        conn.fetch_one(query(stmt))
    }

    fn fetch_all<'c>(
        conn: &'c mut Self::Connection,
        stmt: &'c Stmt<'_>,
    ) -> BoxFuture<'c, Result<Vec<Self::Row>, sqlx::Error>> {
        conn.fetch_all(query(stmt))
    }
}

/// The outcome of a statement that returns no rows.
pub(crate) trait Affected {
    /// How many rows the statement changed.
    fn rows_affected(&self) -> u64;
}

impl Affected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

impl Affected for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

/// The sqlx query of `stmt`, its parameters bound.
fn query<'q, DB>(stmt: &'q Stmt<'_>) -> sqlx::query::Query<'q, DB, DB::Arguments<'q>>
where
    DB: Database,
    for<'a> Option<&'a str>: Encode<'a, DB> + Type<DB>,
    for<'a> Option<i64>: Encode<'a, DB> + Type<DB>,
    for<'a> bool: Encode<'a, DB> + Type<DB>,
    for<'a> &'a [u8]: Encode<'a, DB> + Type<DB>,
{
    let mut q = sqlx::query(stmt.sql);
    for arg in &stmt.args {
        q = match *arg {
            Arg::Text(v) => q.bind(v),
            Arg::Int(v) => q.bind(v),
            Arg::Bool(v) => q.bind(v),
            Arg::Bytes(v) => q.bind(v),
        };
    }
    q
}

/// A result row read by column name, in the types the schemas use. Implemented for the rows
/// of every database that decodes them.
pub(crate) trait SqlRow: Send + Sync + 'static {
    fn text(&self, name: &str) -> Result<String, sqlx::Error>;
    fn opt_text(&self, name: &str) -> Result<Option<String>, sqlx::Error>;
    fn int(&self, name: &str) -> Result<i64, sqlx::Error>;
    fn opt_int(&self, name: &str) -> Result<Option<i64>, sqlx::Error>;
    fn flag(&self, name: &str) -> Result<bool, sqlx::Error>;
    fn bytes(&self, name: &str) -> Result<Vec<u8>, sqlx::Error>;
}

impl<R> SqlRow for R
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, name: &str) -> Result<String, sqlx::Error> {
        self.try_get(name)
    }
    fn opt_text(&self, name: &str) -> Result<Option<String>, sqlx::Error> {
        self.try_get(name)
    }
    fn int(&self, name: &str) -> Result<i64, sqlx::Error> {
        self.try_get(name)
    }
    fn opt_int(&self, name: &str) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(name)
    }
    fn flag(&self, name: &str) -> Result<bool, sqlx::Error> {
        self.try_get(name)
    }
    fn bytes(&self, name: &str) -> Result<Vec<u8>, sqlx::Error> {
        self.try_get(name)
    }
}

/// A type a column is read as.
pub(crate) trait Column: Sized {
    fn read(row: &impl SqlRow, name: &str) -> Result<Self, sqlx::Error>;
}

impl Column for String {
    fn read(row: &impl SqlRow, name: &str) -> Result<Self, sqlx::Error> {
        row.text(name)
    }
}

impl Column for Option<String> {
    fn read(row: &impl SqlRow, name: &str) -> Result<Self, sqlx::Error> {
        row.opt_text(name)
    }
}

impl Column for i64 {
    fn read(row: &impl SqlRow, name: &str) -> Result<Self, sqlx::Error> {
        row.int(name)
    }
}

impl Column for Option<i64> {
    fn read(row: &impl SqlRow, name: &str) -> Result<Self, sqlx::Error> {
        row.opt_int(name)
    }
}

impl Column for bool {
    fn read(row: &impl SqlRow, name: &str) -> Result<Self, sqlx::Error> {
        row.flag(name)
    }
}

impl Column for Vec<u8> {
    fn read(row: &impl SqlRow, name: &str) -> Result<Self, sqlx::Error> {
        row.bytes(name)
    }
}

/// Reads one column, reporting a missing or mistyped column as corruption.
pub(crate) fn col<T: Column>(row: &impl SqlRow, name: &str) -> StoreResult<T> {
    T::read(row, name).map_err(store_error)
}

/// Maps a driver error to the domain: unique violations are conflicts, undecodable values are
/// corruption, everything else means the database did not answer as it should.
pub(crate) fn store_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(ref db) if db.is_unique_violation() => StoreError::Conflict,
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt(e.to_string()),
        other => StoreError::unavailable(other),
    }
}

/// A row count as the traits report it (drivers never return negative counts).
pub(crate) fn count(n: i64) -> StoreResult<u64> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative row count {n}")))
}

/// Reads a time stored as seconds.
pub(crate) fn timestamp(row: &impl SqlRow, name: &str) -> StoreResult<Timestamp> {
    col(row, name).map(Timestamp)
}

/// Reads a time stored as seconds, or NULL.
pub(crate) fn opt_timestamp(row: &impl SqlRow, name: &str) -> StoreResult<Option<Timestamp>> {
    Ok(col::<Option<i64>>(row, name)?.map(Timestamp))
}

/// Reads a token hash stored as lower-case hex.
pub(crate) fn hash(row: &impl SqlRow, name: &str) -> StoreResult<TokenHash> {
    let hex: String = col(row, name)?;
    parse_hash(name, &hex)
}

/// Parses the hex of the token hash in column `name`.
pub(crate) fn parse_hash(name: &str, hex: &str) -> StoreResult<TokenHash> {
    TokenHash::from_hex(hex)
        .ok_or_else(|| StoreError::Corrupt(format!("{name} is not 64 hex digits")))
}
