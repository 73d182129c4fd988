//! Database migrations, run by `journeymap migrate` and at `journeymap serve` start.
//!
//! Every migration must mean the same on SQLite and PostgreSQL: portable column
//! types only, enumerations as strings, partial indexes written in the SQL both
//! accept.

pub use sea_orm_migration::prelude::*;

mod m20261124_000001_core;
mod m20261125_000002_follow_up_kinds;
mod m20261125_000003_journey_map_indexes;
mod m20261126_000004_access;
mod m20261126_000005_webhooks;
mod m20261127_000006_event_sequences;
mod m20261201_000007_outreach;
mod m20261201_000008_interop;
mod m20261201_000009_operations;
mod m20261201_000011_audit_reads;
mod m20261202_000012_pending_events;
mod m20261202_000013_follow_up_indexes;
mod m20261203_000014_follow_ups_by_patient_and_status;
mod m20261203_000015_credential_notifications;
mod m20261203_000016_configuration_notifications;

/// The ordered list of Journeymap migrations.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_core::Migration),
            Box::new(m20261125_000002_follow_up_kinds::Migration),
            Box::new(m20261125_000003_journey_map_indexes::Migration),
            Box::new(m20261126_000004_access::Migration),
            Box::new(m20261126_000005_webhooks::Migration),
            Box::new(m20261127_000006_event_sequences::Migration),
            Box::new(m20261201_000007_outreach::Migration),
            Box::new(m20261201_000008_interop::Migration),
            Box::new(m20261201_000009_operations::Migration),
            Box::new(m20261201_000011_audit_reads::Migration),
            Box::new(m20261202_000012_pending_events::Migration),
            Box::new(m20261202_000013_follow_up_indexes::Migration),
            Box::new(m20261203_000014_follow_ups_by_patient_and_status::Migration),
            Box::new(m20261203_000015_credential_notifications::Migration),
            Box::new(m20261203_000016_configuration_notifications::Migration),
        ]
    }
}

/// Runs `sql` (several statements) on PostgreSQL; nothing on SQLite. For
/// what only PostgreSQL has: functions, triggers, notifications.
pub(crate) async fn on_postgres(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() == sea_orm_migration::sea_orm::DbBackend::Postgres {
        manager.get_connection().execute_unprepared(sql).await?;
    }
    Ok(())
}
