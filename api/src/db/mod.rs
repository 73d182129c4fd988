//! Database connections: pools tuned per backend, migrations, a counter of SQL
//! statements, write transactions, and tenant-scoped access ([`tenant`]).
//!
//! SQLite allows one writer at a time. Write transactions therefore start with
//! `BEGIN IMMEDIATE` and queue on an in-process gate, so two writers never
//! race to upgrade a read lock (which SQLite answers with `SQLITE_BUSY` at once,
//! whatever the busy timeout).

use std::{
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, SqlxPostgresConnector,
    SqlxSqliteConnector, TransactionOptions, TransactionTrait,
    sqlx::{
        self, ConnectOptions,
        postgres::{PgConnectOptions, PgPoolOptions},
        sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    },
};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::{
    auth::credentials::CredentialCache,
    cache::Invalidations,
    config::{DatabaseConfig, SqliteSync},
};

pub mod backup;
mod nodelay;
pub mod tenant;
pub mod upgrade;

/// The PostgreSQL notification channel that makes every replica's kept
/// outreach configuration stale: the name migration 000016's triggers notify
/// (a test keeps the two equal).
pub const CONFIGURATION_CHANNEL: &str = "journeymap_configuration";

/// A pooled PostgreSQL connection idle this long is pinged before it is used.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(30);

/// The current time at the precision both databases keep (microseconds).
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

tokio::task_local! {
    static UNCOUNTED: ();
    static AUDIT: ();
}

/// Runs `work` without counting its statements in [`Db::statement_count`]:
/// for background work (webhook delivery, sweeps) that belongs to no
/// request, so the counter measures what requests cost.
pub async fn uncounted<F: std::future::Future>(work: F) -> F::Output {
    UNCOUNTED.scope((), work).await
}

/// True inside [`uncounted`] work.
pub fn is_uncounted() -> bool {
    UNCOUNTED.try_with(|_| ()).is_ok()
}

/// Runs the read-audit writer's `work`: its statements are written after the
/// responses they belong to, so they are counted apart, in
/// [`Db::audit_statement_count`], rather than with requests or not at all.
pub async fn counted_as_audit<F: std::future::Future>(work: F) -> F::Output {
    AUDIT.scope((), work).await
}

/// A pooled connection to the Journeymap database.
#[derive(Clone)]
pub struct Db {
    conn: DatabaseConnection,
    write_gate: Option<Arc<Mutex<()>>>,
    sqlite_file: Option<std::path::PathBuf>,
    statements: Arc<AtomicU64>,
    audit_statements: Arc<AtomicU64>,
    /// Where LISTEN connects, when not through the pool's own URL.
    listen_url: Option<Arc<str>>,
    /// Principals of credentials already looked up (PostgreSQL, while the
    /// replica relay listens).
    credentials: Arc<CredentialCache>,
    /// When clinics' outreach configuration kept in memory goes stale
    /// (PostgreSQL, while the replica relay listens).
    configuration: Arc<Invalidations>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.backend())
            .finish()
    }
}

impl Db {
    /// Opens the pool for `config.database_url`.
    pub async fn connect(config: &DatabaseConfig) -> anyhow::Result<Self> {
        let url = config.database_url.as_str();
        let mut sqlite_file = None;
        let mut conn = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)?
                .log_statements(log::LevelFilter::Trace)
                .log_slow_statements(log::LevelFilter::Warn, Duration::from_secs(1));
            let port = options.get_port();
            // sqlx pings a connection (a round trip) when it goes back to the
            // pool and, by default, again when it is taken out: two extra
            // round trips per statement outside a transaction. The ping on
            // the way back stays; the one on the way out is kept only for a
            // connection idle long enough for a server or a pooler to have
            // dropped it.
            let pool = PgPoolOptions::new()
                .max_connections(config.db_max_connections.max(2))
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(10))
                .test_before_acquire(false)
                .after_connect(move |_, _| {
                    Box::pin(async move {
                        nodelay::set_on_sockets_to(port);
                        Ok(())
                    })
                })
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for >= PING_IF_IDLE_FOR {
                            sqlx::Connection::ping(conn).await?;
                        }
                        Ok(true)
                    })
                })
                .connect_with(options)
                .await?;
            SqlxPostgresConnector::from_sqlx_postgres_pool(pool)
        } else if url.starts_with("sqlite:") {
            let in_memory = sqlite_file_of(url).is_none();
            let mut options = SqliteConnectOptions::from_str(url)?
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
                .log_statements(log::LevelFilter::Trace)
                .log_slow_statements(log::LevelFilter::Warn, Duration::from_secs(1));
            if !in_memory {
                sqlite_file = Some(options.get_filename().to_path_buf());
                options = options
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(match config.sqlite_synchronous {
                        // In WAL mode FULL syncs the WAL at each commit: a
                        // power cut after the answer loses nothing.
                        SqliteSync::Full => SqliteSynchronous::Full,
                        SqliteSync::Normal => SqliteSynchronous::Normal,
                    });
            }
            // An in-memory database lives only as long as its one connection.
            let pool = if in_memory {
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
            } else {
                SqlitePoolOptions::new()
                    .max_connections(config.db_max_connections.max(2))
                    .min_connections(1)
            }
            .acquire_timeout(Duration::from_secs(10))
            // A file's connection cannot be dropped by a server: the ping
            // before each use (a round trip to its worker thread) buys nothing.
            .test_before_acquire(false);
            // Processes opening a new file at once race to switch it to WAL;
            // that switch answers "database is locked" at once instead of
            // waiting out the busy timeout, so the loser tries again.
            let mut attempt = 0;
            let pool = loop {
                match pool.clone().connect_with(options.clone()).await {
                    Err(sqlx::Error::Database(error))
                        if error.code().as_deref() == Some("5") && attempt < 50 =>
                    {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    connected => break connected?,
                }
            };
            SqlxSqliteConnector::from_sqlx_sqlite_pool(pool)
        } else {
            anyhow::bail!(
                "unsupported database URL (expected sqlite: or postgres://): {}",
                redact(url)
            );
        };

        let statements = Arc::new(AtomicU64::new(0));
        let audit_statements = Arc::new(AtomicU64::new(0));
        let (counter, audit_counter) = (statements.clone(), audit_statements.clone());
        conn.set_metric_callback(move |_info| {
            if AUDIT.try_with(|_| ()).is_ok() {
                audit_counter.fetch_add(1, Ordering::Relaxed);
            } else if UNCOUNTED.try_with(|_| ()).is_err() {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        let write_gate =
            (conn.get_database_backend() == DbBackend::Sqlite).then(|| Arc::new(Mutex::new(())));
        Ok(Self {
            listen_url: config
                .listen_database_url
                .as_deref()
                .filter(|u| !u.trim().is_empty())
                .map(Arc::from),
            conn,
            write_gate,
            sqlite_file,
            statements,
            audit_statements,
            credentials: Arc::default(),
            configuration: Arc::default(),
        })
    }

    /// The direct connection LISTEN should use, if one is configured
    /// (`--listen-database-url`).
    pub fn listen_url(&self) -> Option<&str> {
        self.listen_url.as_deref()
    }

    /// This process's principals of credentials already looked up.
    pub fn credentials(&self) -> &CredentialCache {
        &self.credentials
    }

    /// When the outreach configuration this process keeps goes stale
    /// (`domain::outreach::configuration`).
    pub fn configuration(&self) -> &Invalidations {
        &self.configuration
    }

    /// Whether this process hears every notification that makes what it
    /// keeps in memory stale (credentials, outreach configuration); set by
    /// the replica relay while its LISTEN connection is up. Either way, what
    /// was kept is stale.
    pub fn set_listening(&self, listening: bool) {
        self.credentials.set_listening(listening);
        self.configuration.set_listening(listening);
    }

    /// The underlying connection, for reads.
    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// SQL statements executed through this pool since it opened, except
    /// those run [`uncounted`].
    pub fn statement_count(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// SQL statements the read-audit writer has executed through this pool
    /// (see [`counted_as_audit`]).
    pub fn audit_statement_count(&self) -> u64 {
        self.audit_statements.load(Ordering::Relaxed)
    }

    /// The database file, on SQLite (not in memory).
    pub fn sqlite_file(&self) -> Option<&std::path::Path> {
        self.sqlite_file.as_deref()
    }

    /// Connections in the pool: (open, idle).
    pub fn pool_state(&self) -> (u32, u32) {
        match self.backend() {
            DbBackend::Sqlite => {
                let pool = self.conn.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle() as u32)
            }
            DbBackend::Postgres => {
                let pool = self.conn.get_postgres_connection_pool();
                (pool.size(), pool.num_idle() as u32)
            }
            _ => (0, 0),
        }
    }

    /// True when the database answers and every migration is applied.
    pub async fn is_ready(&self) -> bool {
        self.conn.ping().await.is_ok()
            && Migrator::get_pending_migrations(&self.conn)
                .await
                .map(|pending| pending.is_empty())
                .unwrap_or(false)
    }

    /// Starts a write transaction.
    pub async fn begin_write(&self) -> Result<WriteTxn, DbErr> {
        let gate = self.lock_writes().await;
        let options = TransactionOptions {
            sqlite_transaction_mode: gate
                .as_ref()
                .map(|_| sea_orm::SqliteTransactionMode::Immediate),
            ..Default::default()
        };
        let txn = self.conn.begin_with_options(options).await?;
        Ok(WriteTxn { txn, _gate: gate })
    }

    async fn lock_writes(&self) -> Option<OwnedMutexGuard<()>> {
        match &self.write_gate {
            Some(gate) => Some(gate.clone().lock_owned().await),
            None => None,
        }
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        let _ = self.conn.close_by_ref().await;
    }
}

/// A write transaction; on SQLite it also holds the process's write gate.
pub struct WriteTxn {
    txn: DatabaseTransaction,
    _gate: Option<OwnedMutexGuard<()>>,
}

impl WriteTxn {
    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await
    }
}

impl std::ops::Deref for WriteTxn {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

/// A raw SQL statement written with `?` placeholders, numbered `$1, $2, …`
/// for PostgreSQL. For the few queries (analytics, unions) the query builder
/// cannot express.
pub fn statement(backend: DbBackend, sql: &str, values: Vec<sea_orm::Value>) -> sea_orm::Statement {
    let sql = match backend {
        DbBackend::Postgres => {
            let mut numbered = String::with_capacity(sql.len() + 16);
            let mut n = 0;
            for c in sql.chars() {
                if c == '?' {
                    n += 1;
                    numbered.push('$');
                    numbered.push_str(&n.to_string());
                } else {
                    numbered.push(c);
                }
            }
            numbered
        }
        _ => sql.to_string(),
    };
    sea_orm::Statement::from_sql_and_values(backend, sql, values)
}

/// `?, ?, …` for an `IN` list of `n` values.
pub fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// The URL with any password replaced, for log lines and error messages.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((credentials, host)) => {
                let user = credentials.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}:***@{host}")
            }
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Creates the PostgreSQL database named in `url` when it does not exist.
pub async fn ensure_postgres_database(url: &str) -> anyhow::Result<()> {
    let options = PgConnectOptions::from_str(url)?;
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let mut admin = options.database("postgres").connect().await?;
    let exists: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&mut admin)
        .await?;
    if exists.is_none() {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE \"{}\"",
            name.replace('"', "\"\"")
        )))
        .execute(&mut admin)
        .await?;
    }
    Ok(())
}

/// Every row of `select`, decoded by position where the model allows (see
/// [`entity::DecodeRow`]): what `select.all(conn)` returns, for the hot reads.
pub async fn all_rows<E, C>(conn: &C, select: sea_orm::Select<E>) -> Result<Vec<E::Model>, DbErr>
where
    E: sea_orm::EntityTrait,
    E::Model: entity::DecodeRow,
    C: sea_orm::ConnectionTrait,
{
    use sea_orm::QueryTrait;
    let statement = conn.get_database_backend().build(&select.into_query());
    conn.query_all_raw(statement)
        .await?
        .iter()
        .map(<E::Model as entity::DecodeRow>::decode_row)
        .collect()
}

/// Ids bound in one `IN (…)` list at most: SQLite takes at most 32,766 values
/// a statement, and a clinic of 100,000 patients has more rows than that to
/// mark or look up at once.
pub const ID_CHUNK: usize = 10_000;

/// How PostgreSQL plans the prepared statements of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plans {
    /// One plan for any parameters, made once per connection: for
    /// statements that look rows up by key, whose planning would otherwise
    /// cost more than running them.
    Generic,
    /// A plan for each execution's parameters: for lookups whose best plan
    /// changes as the data grows under them.
    Custom,
}

/// Sets how PostgreSQL plans the rest of the transaction `txn`'s prepared
/// statements (`SET LOCAL plan_cache_mode`: it ends with the transaction, so
/// it is safe behind a transaction pooler). Nothing on SQLite.
pub async fn plan_statements<C: sea_orm::ConnectionTrait>(
    txn: &C,
    plans: Plans,
) -> Result<(), DbErr> {
    if txn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    txn.execute_unprepared(match plans {
        Plans::Generic => "SET LOCAL plan_cache_mode = force_generic_plan",
        Plans::Custom => "SET LOCAL plan_cache_mode = force_custom_plan",
    })
    .await?;
    Ok(())
}

/// Inserts `rows` in statements small enough for every backend's parameter
/// limit (SQLite takes at most 32,766 values a statement), sized by the
/// table's column count.
pub async fn insert_all<M, C>(conn: &C, rows: Vec<M>) -> Result<(), DbErr>
where
    M: sea_orm::IntoActiveModel<
            <<M as sea_orm::ModelTrait>::Entity as sea_orm::EntityTrait>::ActiveModel,
        > + sea_orm::ModelTrait,
    C: sea_orm::ConnectionTrait,
{
    use sea_orm::{EntityTrait, Iterable};
    let columns = <<M as sea_orm::ModelTrait>::Entity as EntityTrait>::Column::iter().count();
    let rows_per_statement = (30_000 / columns.max(1)).clamp(1, 1500);
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<_> = rows
            .by_ref()
            .take(rows_per_statement)
            .map(sea_orm::IntoActiveModel::into_active_model)
            .collect();
        <M as sea_orm::ModelTrait>::Entity::insert_many(chunk)
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// The file of an `sqlite:` URL (`sqlite://journeymap.db?mode=rwc` →
/// `journeymap.db`), as the driver reads it; `None` for other URLs and
/// in-memory databases.
pub fn sqlite_file_of(url: &str) -> Option<std::path::PathBuf> {
    if !url.starts_with("sqlite:") || url.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    let options = SqliteConnectOptions::from_str(url).ok()?;
    Some(options.get_filename().to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(
            redact("sqlite://journeymap.db?mode=rwc"),
            "sqlite://journeymap.db?mode=rwc"
        );
    }
}
