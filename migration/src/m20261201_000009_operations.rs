//! Which Journeymap applied each migration.
//!
//! `journeymap_versions` has a row per applied migration naming the version
//! of the binary that applied it, so that an older binary started against a
//! database a newer one migrated can say which version that was (and refuse
//! to start, rather than write rows the newer schema does not expect).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum JourneymapVersions {
    Table,
    Migration,
    Version,
    AppliedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(JourneymapVersions::Table)
                    .if_not_exists()
                    .col(string(JourneymapVersions::Migration).primary_key())
                    .col(string(JourneymapVersions::Version))
                    .col(timestamp_with_time_zone(JourneymapVersions::AppliedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(JourneymapVersions::Table).to_owned())
            .await
    }
}
