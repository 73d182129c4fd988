//! PostgreSQL tells every replica when a credential may have stopped working.
//!
//! Replicas keep the principals of credentials they resolved for up to 30 s
//! (`api/src/auth/credentials.rs`). Any change that could end or narrow a
//! credential (a revoked or expiring API token, an ended session, a disabled
//! or renamed staff member, a deleted row), whether Journeymap makes it or an
//! operator runs the `UPDATE` by hand, notifies `journeymap_credentials` with
//! its commit, and every listening replica forgets what it resolved. The
//! triggers fire on those columns only: recording a token's last use or a
//! session's refresh notifies nobody. Nothing on SQLite, where replicas do not
//! keep credentials.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE OR REPLACE FUNCTION journeymap_credentials_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  -- One notification per transaction: PostgreSQL folds identical ones.
  PERFORM pg_notify('journeymap_credentials', '');
  RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS api_tokens_credentials_changed ON api_tokens;
CREATE TRIGGER api_tokens_credentials_changed
  AFTER UPDATE OF revoked_at, expires_at, scopes, name, clinic_id, secret_hash OR DELETE
  ON api_tokens FOR EACH ROW EXECUTE FUNCTION journeymap_credentials_changed();
DROP TRIGGER IF EXISTS staff_sessions_credentials_changed ON staff_sessions;
CREATE TRIGGER staff_sessions_credentials_changed
  AFTER UPDATE OF revoked_at, expires_at, staff_id, clinic_id OR DELETE
  ON staff_sessions FOR EACH ROW EXECUTE FUNCTION journeymap_credentials_changed();
DROP TRIGGER IF EXISTS staff_credentials_changed ON staff;
CREATE TRIGGER staff_credentials_changed
  AFTER UPDATE OF disabled_at, role, name, email, clinic_id OR DELETE
  ON staff FOR EACH ROW EXECUTE FUNCTION journeymap_credentials_changed();
"#;

const DOWN: &str = r#"
DROP TRIGGER IF EXISTS api_tokens_credentials_changed ON api_tokens;
DROP TRIGGER IF EXISTS staff_sessions_credentials_changed ON staff_sessions;
DROP TRIGGER IF EXISTS staff_credentials_changed ON staff;
DROP FUNCTION IF EXISTS journeymap_credentials_changed();
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::on_postgres(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::on_postgres(manager, DOWN).await
    }
}
