//! Follow-ups get a kind (stage rule, service recovery, manual), and the
//! overdue sweeper gets an index of the follow-ups it still has to announce.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum FollowUps {
    Table,
    Kind,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(FollowUps::Table)
                    .add_column(string_len(FollowUps::Kind, 24).default("STAGE_RULE"))
                    .to_owned(),
            )
            .await?;
        // Open follow-ups whose overdue event is still to be sent, by due time.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS ix_follow_ups_overdue_sweep ON follow_ups (due_at) \
                 WHERE status = 'OPEN' AND overdue_notified_at IS NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS ix_follow_ups_overdue_sweep")
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(FollowUps::Table)
                    .drop_column(FollowUps::Kind)
                    .to_owned(),
            )
            .await
    }
}
