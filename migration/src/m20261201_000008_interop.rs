//! FHIR Bulk Data export: the exports a clinic asked for and the NDJSON
//! files they wrote.
//!
//! - `bulk_exports`: one row per `$export` kick-off: who asked, for which
//!   resource types and since when, the request URL, its state (QUEUED,
//!   RUNNING, DONE, FAILED, CANCELLED, EXPIRED), its progress, the worker's
//!   lease, and when its files expire. The row stays when its files are
//!   deleted (cancelled or expired): it is what the audit log's entries about
//!   the export point at.
//! - `bulk_export_parts`: the files, in parts of at most a batch of
//!   resources each; an export's file of one resource type is its parts of
//!   that type in `part` order, streamed one part at a time.
//!
//! A partial unique index lets a clinic have one export queued or running at
//! a time, whichever replica was asked.
//!
//! Numbered 000008 but written after 000009 and 000011: sea-orm-migration
//! applies every migration a database lacks, whatever its place in the list,
//! so databases already at 000011 get it too.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Clinics {
    Table,
    Id,
}

#[derive(DeriveIden, Clone, Copy)]
enum BulkExports {
    Table,
    Id,
    ClinicId,
    RequestedByKind,
    RequestedById,
    RequestId,
    RequestUrl,
    Types,
    Since,
    Status,
    TransactionTime,
    ResourcesTotal,
    ResourcesDone,
    TypesDone,
    Attempts,
    Claim,
    LockedUntil,
    Error,
    CreatedAt,
    StartedAt,
    CompletedAt,
    ExpiresAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum BulkExportParts {
    Table,
    Id,
    ClinicId,
    ExportId,
    ResourceType,
    Part,
    Resources,
    Ndjson,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(BulkExports::Table)
                    .if_not_exists()
                    .col(pk_uuid(BulkExports::Id))
                    .col(uuid(BulkExports::ClinicId))
                    .col(string_len(BulkExports::RequestedByKind, 16))
                    .col(uuid_null(BulkExports::RequestedById))
                    .col(text_null(BulkExports::RequestId))
                    .col(text(BulkExports::RequestUrl))
                    .col(text(BulkExports::Types))
                    .col(timestamp_with_time_zone_null(BulkExports::Since))
                    .col(string_len(BulkExports::Status, 16))
                    .col(timestamp_with_time_zone_null(BulkExports::TransactionTime))
                    .col(big_integer(BulkExports::ResourcesTotal).default(0))
                    .col(big_integer(BulkExports::ResourcesDone).default(0))
                    .col(integer(BulkExports::TypesDone).default(0))
                    .col(integer(BulkExports::Attempts).default(0))
                    .col(uuid_null(BulkExports::Claim))
                    .col(timestamp_with_time_zone_null(BulkExports::LockedUntil))
                    .col(text_null(BulkExports::Error))
                    .col(timestamp_with_time_zone(BulkExports::CreatedAt))
                    .col(timestamp_with_time_zone_null(BulkExports::StartedAt))
                    .col(timestamp_with_time_zone_null(BulkExports::CompletedAt))
                    .col(timestamp_with_time_zone_null(BulkExports::ExpiresAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(BulkExports::Table, BulkExports::ClinicId)
                            .to(Clinics::Table, Clinics::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_bulk_exports_clinic")
                    .table(BulkExports::Table)
                    .col(BulkExports::ClinicId)
                    .col(BulkExports::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_bulk_exports_status")
                    .table(BulkExports::Table)
                    .col(BulkExports::Status)
                    .col(BulkExports::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX IF NOT EXISTS ux_bulk_exports_one_at_a_time \
                 ON bulk_exports (clinic_id) WHERE status IN ('QUEUED', 'RUNNING')",
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(BulkExportParts::Table)
                    .if_not_exists()
                    .col(pk_uuid(BulkExportParts::Id))
                    .col(uuid(BulkExportParts::ClinicId))
                    .col(uuid(BulkExportParts::ExportId))
                    .col(string_len(BulkExportParts::ResourceType, 64))
                    .col(integer(BulkExportParts::Part))
                    .col(integer(BulkExportParts::Resources))
                    .col(text(BulkExportParts::Ndjson))
                    .col(timestamp_with_time_zone(BulkExportParts::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(BulkExportParts::Table, BulkExportParts::ClinicId)
                            .to(Clinics::Table, Clinics::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(BulkExportParts::Table, BulkExportParts::ExportId)
                            .to(BulkExports::Table, BulkExports::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_bulk_export_parts_file")
                    .table(BulkExportParts::Table)
                    .col(BulkExportParts::ExportId)
                    .col(BulkExportParts::ResourceType)
                    .col(BulkExportParts::Part)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(BulkExportParts::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(BulkExports::Table).to_owned())
            .await
    }
}
