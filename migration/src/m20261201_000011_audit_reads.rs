//! The read audit becomes one row per request, and the audit log gets a
//! patient index of its own.
//!
//! - `audit_log.patient_ids`: the patients one entry is about when there are
//!   several (a request that read fifty patients' names is one `patient.read`
//!   entry), as a JSON array of their ids in hex.
//! - `audit_log_patients`: (clinic, patient, time, entry) for every entry
//!   about a patient, one or many, kept by a trigger on `audit_log`, so
//!   `Patient.accessLog` and `auditLog(filter: {patientId})` read an index
//!   whichever way an entry names its patients. Existing entries are carried
//!   over. The old index on `audit_log (clinic_id, patient_id, occurred_at)`
//!   is replaced by it.

use sea_orm_migration::{prelude::*, schema::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum AuditLog {
    Table,
    PatientIds,
}

#[derive(DeriveIden, Clone, Copy)]
enum AuditLogPatients {
    Table,
    ClinicId,
    PatientId,
    OccurredAt,
    AuditId,
}

/// Expands new audit entries into the patient index. PostgreSQL runs it once
/// per statement over all the rows the statement inserted.
const POSTGRES_TRIGGER: &str = r#"
CREATE OR REPLACE FUNCTION audit_log_index_patients() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO audit_log_patients (clinic_id, patient_id, occurred_at, audit_id)
  SELECT clinic_id, patient_id, occurred_at, id FROM inserted WHERE patient_id IS NOT NULL
  UNION
  SELECT i.clinic_id, p.value::uuid, i.occurred_at, i.id
  FROM inserted i, jsonb_array_elements_text(i.patient_ids::jsonb) AS p(value)
  WHERE i.patient_ids IS NOT NULL;
  RETURN NULL;
END $$;
CREATE TRIGGER audit_log_patients_index AFTER INSERT ON audit_log
  REFERENCING NEW TABLE AS inserted
  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_index_patients();
"#;

/// SQLite keeps ids as 16-byte blobs: the hex in `patient_ids` is unhexed.
const SQLITE_TRIGGER: &str = r#"
CREATE TRIGGER IF NOT EXISTS audit_log_patients_index AFTER INSERT ON audit_log
BEGIN
  INSERT OR IGNORE INTO audit_log_patients (clinic_id, patient_id, occurred_at, audit_id)
  SELECT NEW.clinic_id, NEW.patient_id, NEW.occurred_at, NEW.id WHERE NEW.patient_id IS NOT NULL;
  INSERT OR IGNORE INTO audit_log_patients (clinic_id, patient_id, occurred_at, audit_id)
  SELECT NEW.clinic_id, unhex(value), NEW.occurred_at, NEW.id
  FROM json_each(NEW.patient_ids) WHERE NEW.patient_ids IS NOT NULL;
END;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(AuditLog::Table)
                    .add_column(text_null(AuditLog::PatientIds))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditLogPatients::Table)
                    .if_not_exists()
                    .col(uuid(AuditLogPatients::ClinicId))
                    .col(uuid(AuditLogPatients::PatientId))
                    .col(timestamp_with_time_zone(AuditLogPatients::OccurredAt))
                    .col(uuid(AuditLogPatients::AuditId))
                    .primary_key(
                        Index::create()
                            .col(AuditLogPatients::ClinicId)
                            .col(AuditLogPatients::PatientId)
                            .col(AuditLogPatients::OccurredAt)
                            .col(AuditLogPatients::AuditId),
                    )
                    .to_owned(),
            )
            .await?;
        let conn = manager.get_connection();
        conn.execute_unprepared(
            "INSERT INTO audit_log_patients (clinic_id, patient_id, occurred_at, audit_id) \
             SELECT clinic_id, patient_id, occurred_at, id FROM audit_log WHERE patient_id IS NOT NULL",
        )
        .await?;
        conn.execute_unprepared("DROP INDEX IF EXISTS ix_audit_log_patient")
            .await?;
        match manager.get_database_backend() {
            DbBackend::Postgres => conn.execute_unprepared(POSTGRES_TRIGGER).await?,
            _ => conn.execute_unprepared(SQLITE_TRIGGER).await?,
        };
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                conn.execute_unprepared(
                    "DROP TRIGGER IF EXISTS audit_log_patients_index ON audit_log; \
                     DROP FUNCTION IF EXISTS audit_log_index_patients()",
                )
                .await?
            }
            _ => {
                conn.execute_unprepared("DROP TRIGGER IF EXISTS audit_log_patients_index")
                    .await?
            }
        };
        manager
            .drop_table(Table::drop().table(AuditLogPatients::Table).to_owned())
            .await?;
        conn.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS ix_audit_log_patient ON audit_log (clinic_id, patient_id, occurred_at)",
        )
        .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AuditLog::Table)
                    .drop_column(AuditLog::PatientIds)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
