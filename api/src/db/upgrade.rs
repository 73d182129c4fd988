//! Migrating safely: refuse a database a newer Journeymap migrated, let one
//! replica at a time migrate, and record which version applied what.
//!
//! - Before anything is applied, the migrations recorded in
//!   `seaql_migrations` are compared with the ones this binary knows. One it
//!   does not know means a newer Journeymap migrated this database; starting
//!   anyway would write rows its schema does not expect, so
//!   [`MigrateError::NewerDatabase`] names both versions instead.
//! - On PostgreSQL the check and the migrations run under a transaction
//!   advisory lock ([`MIGRATION_LOCK`], held by a transaction left open): replicas starting at once queue on it and
//!   each migration is applied exactly once (sea-orm-migration has no guard
//!   of its own: two replicas would both try the same DDL). On SQLite, whose
//!   migrations run outside transactions, processes take turns on a lock
//!   file beside the database (`FILE.migrate-lock`).
//! - After migrating, `journeymap_versions` gets a row naming this binary's
//!   version for every migration that has none yet.

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, sqlx};

use super::Db;

/// The version of this binary, as recorded in `journeymap_versions`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The key of the PostgreSQL advisory lock held while migrating (an
/// arbitrary constant: "jm" "migr" in ASCII).
pub const MIGRATION_LOCK: i64 = 0x6a6d_6d69_6772;

/// Why migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The database carries migrations this binary does not know.
    #[error(
        "this database was migrated by Journeymap {database_version} (migration {migration}), \
         newer than this binary, Journeymap {binary_version}; run Journeymap \
         {database_version} or newer, or restore a backup taken before the upgrade"
    )]
    NewerDatabase {
        /// The version that applied the unknown migration ("a newer version"
        /// when it left no record).
        database_version: String,
        /// The first migration this binary does not know.
        migration: String,
        /// This binary's version.
        binary_version: &'static str,
    },
    /// The database failed.
    #[error("database error while migrating: {0}")]
    Database(#[from] DbErr),
}

impl Db {
    /// Applies pending migrations after checking that no newer Journeymap
    /// migrated this database; on PostgreSQL under [`MIGRATION_LOCK`].
    pub async fn migrate(&self) -> Result<(), MigrateError> {
        let _gate = self.lock_writes().await;
        if self.backend() == DbBackend::Postgres {
            // A transaction-scoped lock held by an open transaction: a
            // transaction stays on one server connection even behind a
            // transaction-mode pooler (PgBouncer), where a session lock
            // would not. Ending the transaction, or losing its connection,
            // releases it.
            let pool = self.conn().get_postgres_connection_pool();
            let mut lock = pool.begin().await.map_err(sqlx_error)?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *lock)
                .await
                .map_err(sqlx_error)?;
            let result = self.migrate_locked().await;
            let _ = lock.commit().await;
            result
        } else if let Some(file) = self.sqlite_file() {
            // SQLite runs migrations outside transactions: two processes
            // starting on one file take turns on a lock file beside it.
            let lock_path = file.with_extension("migrate-lock");
            let lock = tokio::task::spawn_blocking(move || {
                let lock = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&lock_path)?;
                lock.lock()?;
                std::io::Result::Ok(lock)
            })
            .await
            .map_err(|e| DbErr::Custom(format!("the migration lock task failed: {e}")))?
            .map_err(|e| DbErr::Custom(format!("cannot take the migration lock file: {e}")))?;
            let result = self.migrate_locked().await;
            drop(lock);
            result
        } else {
            self.migrate_locked().await
        }
    }

    async fn migrate_locked(&self) -> Result<(), MigrateError> {
        self.refuse_newer().await?;
        Migrator::up(self.conn(), None).await?;
        self.record_versions().await?;
        Ok(())
    }

    /// [`MigrateError::NewerDatabase`] when `seaql_migrations` names a
    /// migration this binary does not know.
    async fn refuse_newer(&self) -> Result<(), MigrateError> {
        let backend = self.backend();
        let conn = self.conn();
        if !table_exists(self, "seaql_migrations").await? {
            return Ok(());
        }
        let known: Vec<String> = Migrator::migrations()
            .iter()
            .map(|m| m.name().to_string())
            .collect();
        let applied = conn
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT version FROM seaql_migrations ORDER BY version",
            ))
            .await?;
        for row in applied {
            let name: String = row.try_get("", "version")?;
            if known.contains(&name) {
                continue;
            }
            let mut database_version = "a newer version".to_string();
            if table_exists(self, "journeymap_versions").await?
                && let Some(row) = conn
                    .query_one_raw(super::statement(
                        backend,
                        "SELECT version FROM journeymap_versions WHERE migration = ?",
                        vec![name.clone().into()],
                    ))
                    .await?
            {
                database_version = row.try_get("", "version")?;
            }
            return Err(MigrateError::NewerDatabase {
                database_version,
                migration: name,
                binary_version: VERSION,
            });
        }
        Ok(())
    }

    /// Records this binary's version for every applied migration without a
    /// record (those it just applied, and on the first run those applied
    /// before the table existed).
    async fn record_versions(&self) -> Result<(), DbErr> {
        self.conn()
            .execute_raw(super::statement(
                self.backend(),
                "INSERT INTO journeymap_versions (migration, version, applied_at) \
                 SELECT version, ?, ? FROM seaql_migrations m \
                 WHERE NOT EXISTS (SELECT 1 FROM journeymap_versions v WHERE v.migration = m.version)",
                vec![VERSION.into(), super::now().into()],
            ))
            .await?;
        Ok(())
    }

    /// The Journeymap version that applied the newest migration, if any.
    pub async fn schema_version(&self) -> Result<Option<(String, String)>, DbErr> {
        if !table_exists(self, "journeymap_versions").await? {
            return Ok(None);
        }
        let row = self
            .conn()
            .query_one_raw(Statement::from_string(
                self.backend(),
                "SELECT migration, version FROM journeymap_versions ORDER BY migration DESC LIMIT 1",
            ))
            .await?;
        row.map(|row| Ok((row.try_get("", "migration")?, row.try_get("", "version")?)))
            .transpose()
    }
}

/// True when `table` exists in the database (the current schema on PostgreSQL).
pub(crate) async fn table_exists(db: &Db, table: &str) -> Result<bool, DbErr> {
    let sql = match db.backend() {
        DbBackend::Postgres => {
            "SELECT 1 AS one FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = ?"
        }
        _ => "SELECT 1 AS one FROM sqlite_master WHERE type = 'table' AND name = ?",
    };
    Ok(db
        .conn()
        .query_one_raw(super::statement(db.backend(), sql, vec![table.into()]))
        .await?
        .is_some())
}

fn sqlx_error(error: sqlx::Error) -> DbErr {
    DbErr::Conn(sea_orm::RuntimeErr::SqlxError(error.into()))
}

/// The names of the migrations this binary knows, oldest first.
pub fn known_migrations() -> Vec<String> {
    Migrator::migrations()
        .iter()
        .map(|m| m.name().to_string())
        .collect()
}
