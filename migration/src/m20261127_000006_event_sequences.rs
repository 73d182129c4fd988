//! The per-clinic event sequence counter moves off the clinic row into a table
//! of its own.
//!
//! Every table of the domain has a foreign key to `clinics`, so every insert
//! reads the clinic row to check it. While the counter lived there, each event
//! left a dead version of that row behind, and on PostgreSQL each of those
//! checks walked the growing chain of dead versions: 500 audit rows took 37 ms
//! of checks on a busy clinic instead of 2.6 ms. Nothing refers to
//! `event_sequences`, so its churn costs nobody else.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum EventSequences {
    Table,
    ClinicId,
    LastSequence,
}

#[derive(DeriveIden)]
enum Clinics {
    Table,
    Id,
    EventSeq,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(EventSequences::Table)
                    .if_not_exists()
                    .col(pk_uuid(EventSequences::ClinicId))
                    .col(big_integer(EventSequences::LastSequence).default(0))
                    .foreign_key(
                        ForeignKey::create()
                            .from(EventSequences::Table, EventSequences::ClinicId)
                            .to(Clinics::Table, Clinics::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO event_sequences (clinic_id, last_sequence) \
                 SELECT id, event_seq FROM clinics",
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Clinics::Table)
                    .drop_column(Clinics::EventSeq)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Clinics::Table)
                    .add_column(big_integer(Clinics::EventSeq).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE clinics SET event_seq = COALESCE((SELECT last_sequence FROM event_sequences \
                 WHERE event_sequences.clinic_id = clinics.id), 0)",
            )
            .await?;
        manager
            .drop_table(Table::drop().table(EventSequences::Table).to_owned())
            .await
    }
}
