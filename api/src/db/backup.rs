//! Online backups and restores.
//!
//! - SQLite: `VACUUM INTO` writes a consistent copy of the database as of one
//!   read transaction while the server keeps reading and writing (never a
//!   file copy, which can catch a half-written page or miss the WAL). The
//!   copy is then checked with `PRAGMA integrity_check`.
//! - PostgreSQL: `pg_dump --format=custom` (one consistent snapshot) and
//!   `pg_restore`, driven when they are on the `PATH`; otherwise the
//!   commands to run are given in the error.
//!
//! A restore checks the backup before touching anything: its integrity, and
//! that no migration in it is newer than this binary (the same check as at
//! start, see [`super::upgrade`]). It restores into an empty database only,
//! unless forced.

use std::{
    path::{Path, PathBuf},
    process::Command,
    str::FromStr,
};

use sea_orm::{
    DbBackend,
    sqlx::{self, ConnectOptions, Connection, sqlite::SqliteConnectOptions},
};

use super::{
    Db,
    upgrade::{self, known_migrations},
};

/// Why a backup or a restore was refused or failed. Messages are for the
/// operator at the command line.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The backup file is already there; a backup never overwrites.
    #[error("{0} already exists; a backup never overwrites a file, choose another name")]
    Exists(PathBuf),
    /// The file is not a usable backup.
    #[error("{path} is not a usable Journeymap backup: {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// The backup was made by a newer Journeymap.
    #[error(
        "{path} holds migration {migration}, which this binary (Journeymap {binary}) does not know: \
         it was taken from a newer Journeymap; restore it with that version"
    )]
    Newer {
        path: PathBuf,
        migration: String,
        binary: &'static str,
    },
    /// The target database holds data and `--force` was not given.
    #[error(
        "the target database is not empty ({clinics} clinic(s)); restoring would replace it. \
         Stop every server using it and pass --force to replace it"
    )]
    NotEmpty { clinics: i64 },
    /// pg_dump / pg_restore are not installed.
    #[error(
        "{tool} is not installed. Install the PostgreSQL client tools, or run:\n  \
         pg_dump --format=custom --file=FILE \"$JOURNEYMAP_DATABASE_URL\"\n  \
         pg_restore --clean --if-exists --no-owner --exit-on-error --dbname=\"$JOURNEYMAP_DATABASE_URL\" FILE"
    )]
    ToolMissing { tool: &'static str },
    /// pg_dump / pg_restore failed.
    #[error("{tool} failed: {stderr}")]
    ToolFailed { tool: &'static str, stderr: String },
    /// The database or the file system failed.
    #[error("{0}")]
    Io(String),
}

fn io(error: impl std::fmt::Display) -> BackupError {
    BackupError::Io(error.to_string())
}

/// What a finished backup holds.
#[derive(Debug)]
pub struct BackupReport {
    /// The newest migration in it.
    pub migration: Option<String>,
    /// Bytes written.
    pub bytes: u64,
}

impl Db {
    /// Writes a consistent backup of the whole database to `to` while the
    /// server keeps serving. `url` is this database's URL (for pg_dump).
    pub async fn backup(&self, url: &str, to: &Path) -> Result<BackupReport, BackupError> {
        if to.exists() {
            return Err(BackupError::Exists(to.to_path_buf()));
        }
        match self.backend() {
            DbBackend::Postgres => {
                run_tool(
                    "pg_dump",
                    Command::new("pg_dump")
                        .arg("--format=custom")
                        .arg("--no-owner")
                        .arg(format!("--file={}", to.display()))
                        .arg(format!("--dbname={url}")),
                )?;
            }
            _ => {
                let target = to
                    .to_str()
                    .ok_or_else(|| io("the file name is not UTF-8"))?;
                self.conn()
                    .execute_unprepared(&format!("VACUUM INTO '{}'", target.replace('\'', "''")))
                    .await
                    .map_err(io)?;
            }
        }
        let migration = check_backup(self.backend(), to).await?;
        let bytes = std::fs::metadata(to).map_err(io)?.len();
        Ok(BackupReport { migration, bytes })
    }

    /// Clinics in this database (0 when it has no schema yet).
    pub async fn clinic_count(&self) -> Result<i64, BackupError> {
        if !upgrade::table_exists(self, "clinics").await.map_err(io)? {
            return Ok(0);
        }
        let row = self
            .conn()
            .query_one_raw(sea_orm::Statement::from_string(
                self.backend(),
                "SELECT COUNT(*) AS n FROM clinics",
            ))
            .await
            .map_err(io)?
            .ok_or_else(|| io("no count"))?;
        row.try_get_by_index::<i64>(0).map_err(io)
    }
}

use sea_orm::ConnectionTrait as _;

/// Checks a backup file of `backend`: intact, and no migration newer than
/// this binary. Returns its newest migration.
pub async fn check_backup(backend: DbBackend, path: &Path) -> Result<Option<String>, BackupError> {
    let invalid = |reason: String| BackupError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    if !path.is_file() {
        return Err(invalid("no such file".into()));
    }
    let applied = match backend {
        DbBackend::Postgres => {
            // `--list` reads the archive's table of contents; the data of
            // seaql_migrations, printed as SQL, names what it holds.
            run_tool(
                "pg_restore",
                Command::new("pg_restore").arg("--list").arg(path),
            )
            .map_err(|e| invalid(e.to_string()))?;
            let sql = run_tool(
                "pg_restore",
                Command::new("pg_restore")
                    .args(["--data-only", "--table=seaql_migrations", "--file=-"])
                    .arg(path),
            )
            .map_err(|e| invalid(e.to_string()))?;
            let mut rows = Vec::new();
            let mut copying = false;
            for line in sql.lines() {
                if line.starts_with("COPY ") && line.contains("seaql_migrations") {
                    copying = true;
                } else if copying && line == "\\." {
                    copying = false;
                } else if copying && let Some(version) = line.split('\t').next() {
                    rows.push(version.to_string());
                }
            }
            rows
        }
        _ => {
            let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
                .map_err(|e| invalid(e.to_string()))?
                .read_only(true)
                .disable_statement_logging();
            let mut conn = options
                .connect()
                .await
                .map_err(|e| invalid(e.to_string()))?;
            let checks: Vec<(String,)> = sqlx::query_as("PRAGMA integrity_check")
                .fetch_all(&mut conn)
                .await
                .map_err(|e| invalid(e.to_string()))?;
            if checks.len() != 1 || checks[0].0 != "ok" {
                let found: Vec<String> = checks.into_iter().map(|(c,)| c).take(5).collect();
                return Err(invalid(format!("integrity_check: {}", found.join("; "))));
            }
            let rows: Vec<(String,)> =
                sqlx::query_as("SELECT version FROM seaql_migrations ORDER BY version")
                    .fetch_all(&mut conn)
                    .await
                    .map_err(|e| invalid(format!("no Journeymap schema in it ({e})")))?;
            let _ = conn.close().await;
            rows.into_iter().map(|(v,)| v).collect()
        }
    };
    if applied.is_empty() {
        return Err(invalid("no Journeymap migration in it".into()));
    }
    let known = known_migrations();
    if let Some(migration) = applied.iter().find(|m| !known.contains(m)) {
        return Err(BackupError::Newer {
            path: path.to_path_buf(),
            migration: migration.clone(),
            binary: upgrade::VERSION,
        });
    }
    Ok(applied.into_iter().max())
}

/// Restores the PostgreSQL backup `from` into the database at `url`
/// (checked and, unless `force`, found empty by the caller).
pub fn pg_restore(url: &str, from: &Path) -> Result<(), BackupError> {
    run_tool(
        "pg_restore",
        Command::new("pg_restore")
            .args(["--clean", "--if-exists", "--no-owner", "--exit-on-error"])
            .arg(format!("--dbname={url}"))
            .arg(from),
    )
    .map(|_| ())
}

/// Restores the SQLite backup `from` as the database file `target`: a
/// checked copy is written beside it, then renamed over it (after the old
/// file's WAL and shared-memory files are removed, so none of them is
/// applied to the restored file). No server may have `target` open.
pub async fn sqlite_restore(from: &Path, target: &Path) -> Result<(), BackupError> {
    let staging = target.with_extension("restoring");
    let _ = std::fs::remove_file(&staging);
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", from.display()))
        .map_err(io)?
        .read_only(true)
        .disable_statement_logging();
    let mut conn = options.connect().await.map_err(io)?;
    let staging_name = staging
        .to_str()
        .ok_or_else(|| io("the file name is not UTF-8"))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "VACUUM INTO '{}'",
        staging_name.replace('\'', "''")
    )))
    .execute(&mut conn)
    .await
    .map_err(io)?;
    let _ = conn.close().await;
    check_backup(DbBackend::Sqlite, &staging).await?;
    for suffix in ["-wal", "-shm"] {
        let mut side = target.as_os_str().to_owned();
        side.push(suffix);
        match std::fs::remove_file(PathBuf::from(side)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
    }
    std::fs::rename(&staging, target).map_err(io)?;
    Ok(())
}

/// Runs a PostgreSQL client tool; its stdout on success.
fn run_tool(tool: &'static str, command: &mut Command) -> Result<String, BackupError> {
    let output = command.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => BackupError::ToolMissing { tool },
        _ => io(e),
    })?;
    if !output.status.success() {
        return Err(BackupError::ToolFailed {
            tool,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
