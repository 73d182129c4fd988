//! `follow_ups` by patient and status, instead of by patient alone.
//!
//! Every stage move plans outreach, and planning reads the patient's open and
//! recently done contacts (`domain::outreach::facts`). A patient keeps every
//! follow-up ever planned for them, most of them cancelled by the moves that
//! came after, and `ix_follow_ups_patient (patient_id)` made that read visit
//! them all: 130 rows and 106 buffers for 2 answers on the benchmark clinic
//! after a few thousand moves, the costliest read of a move. With the status
//! in the key it visits only the open and done ones. It replaces the old
//! index rather than joining it: it serves every lookup by patient the same,
//! and a move writes no more index entries than before (a status change
//! already rewrites the row's entries, the update touching indexed columns).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS ix_follow_ups_patient_status ON follow_ups (patient_id, status)",
        )
        .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS ix_follow_ups_patient")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS ix_follow_ups_patient ON follow_ups (patient_id)",
        )
        .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS ix_follow_ups_patient_status")
            .await?;
        Ok(())
    }
}
