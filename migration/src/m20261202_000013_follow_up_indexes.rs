//! One index fewer on `follow_ups`, the table every stage move writes twice
//! (the cancel of the stage's open follow-ups and the insert of the next
//! ones).
//!
//! `ix_follow_ups_clinic_status (clinic_id, status)` is a prefix of
//! `ix_follow_ups_clinic_status_due (clinic_id, status, due_at)`, so every
//! query it served is served by the longer one; keeping both cost an index
//! entry per insert and per status change for nothing.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS ix_follow_ups_clinic_status")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS ix_follow_ups_clinic_status ON follow_ups (clinic_id, status)",
            )
            .await?;
        Ok(())
    }
}
