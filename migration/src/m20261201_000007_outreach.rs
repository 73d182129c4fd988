//! Outreach: follow-ups become the clinic's plan of whom to contact, when,
//! on which channel and with which words.
//!
//! - Patients get a time zone and contact hours of their own, clinics an
//!   outreach policy (contact hours, frequency limits), stages a cadence
//!   (rebooking and win-back days).
//! - Consent becomes an append-only history per channel and purpose
//!   (`consents`); the three booleans on `patients` stay, kept in step, so
//!   existing clients read what they always read. Each patient's booleans
//!   are carried over into the history (source `migration`).
//! - Follow-ups get a purpose, the time they may be sent, an explanation, a
//!   draft message, a priority, why they are blocked, when `follow_up.due`
//!   was announced, and a plan key that makes a time-based plan happen once.
//! - Clinics may replace the default message of any (kind, channel).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Clinics {
    Table,
    Id,
    QuietStart,
    QuietEnd,
    MaxMarketingPerWeek,
    MinHoursBetweenContacts,
}

#[derive(DeriveIden, Clone, Copy)]
enum Patients {
    Table,
    Id,
    Timezone,
    QuietStart,
    QuietEnd,
}

#[derive(DeriveIden, Clone, Copy)]
enum Stages {
    Table,
    RebookAfterDays,
    WinBackAfterDays,
}

#[derive(DeriveIden, Clone, Copy)]
enum FollowUps {
    Table,
    ClinicId,
    Status,
    Purpose,
    SendAt,
    Explanation,
    Message,
    Priority,
    BlockedReason,
    DueNotifiedAt,
    SkippedAt,
    SkipReason,
    PlanKey,
}

#[derive(DeriveIden, Clone, Copy)]
enum Consents {
    Table,
    Id,
    ClinicId,
    PatientId,
    Channel,
    Purpose,
    Granted,
    Source,
    TouchpointId,
    OccurredAt,
    RecordedAt,
    ActorKind,
    ActorId,
}

#[derive(DeriveIden, Clone, Copy)]
enum OutreachTemplates {
    Table,
    Id,
    ClinicId,
    Kind,
    Channel,
    Body,
    UpdatedAt,
}

/// Adds one column (SQLite alters one column per statement).
async fn add<T: IntoIden + Copy + 'static>(
    manager: &SchemaManager<'_>,
    table: T,
    column: ColumnDef,
) -> Result<(), DbErr> {
    let mut column = column;
    manager
        .alter_table(
            Table::alter()
                .table(table)
                .add_column(&mut column)
                .to_owned(),
        )
        .await
}

async fn drop<T: IntoIden + Copy + 'static, C: IntoIden + 'static>(
    manager: &SchemaManager<'_>,
    table: T,
    column: C,
) -> Result<(), DbErr> {
    manager
        .alter_table(Table::alter().table(table).drop_column(column).to_owned())
        .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add(
            manager,
            Clinics::Table,
            string_len(Clinics::QuietStart, 5).default("21:00").take(),
        )
        .await?;
        add(
            manager,
            Clinics::Table,
            string_len(Clinics::QuietEnd, 5).default("08:00").take(),
        )
        .await?;
        add(
            manager,
            Clinics::Table,
            integer(Clinics::MaxMarketingPerWeek).default(1).take(),
        )
        .await?;
        add(
            manager,
            Clinics::Table,
            integer(Clinics::MinHoursBetweenContacts).default(24).take(),
        )
        .await?;

        add(
            manager,
            Patients::Table,
            string_len_null(Patients::Timezone, 64).take(),
        )
        .await?;
        add(
            manager,
            Patients::Table,
            string_len_null(Patients::QuietStart, 5).take(),
        )
        .await?;
        add(
            manager,
            Patients::Table,
            string_len_null(Patients::QuietEnd, 5).take(),
        )
        .await?;

        add(
            manager,
            Stages::Table,
            integer_null(Stages::RebookAfterDays).take(),
        )
        .await?;
        add(
            manager,
            Stages::Table,
            integer_null(Stages::WinBackAfterDays).take(),
        )
        .await?;

        add(
            manager,
            FollowUps::Table,
            string_len(FollowUps::Purpose, 16).default("CARE").take(),
        )
        .await?;
        add(
            manager,
            FollowUps::Table,
            timestamp_with_time_zone_null(FollowUps::SendAt).take(),
        )
        .await?;
        add(
            manager,
            FollowUps::Table,
            text_null(FollowUps::Explanation).take(),
        )
        .await?;
        add(
            manager,
            FollowUps::Table,
            text_null(FollowUps::Message).take(),
        )
        .await?;
        add(
            manager,
            FollowUps::Table,
            small_integer(FollowUps::Priority).default(2).take(),
        )
        .await?;
        add(
            manager,
            FollowUps::Table,
            text_null(FollowUps::BlockedReason).take(),
        )
        .await?;
        add(
            manager,
            FollowUps::Table,
            timestamp_with_time_zone_null(FollowUps::DueNotifiedAt).take(),
        )
        .await?;
        add(
            manager,
            FollowUps::Table,
            timestamp_with_time_zone_null(FollowUps::SkippedAt).take(),
        )
        .await?;
        add(
            manager,
            FollowUps::Table,
            text_null(FollowUps::SkipReason).take(),
        )
        .await?;
        add(
            manager,
            FollowUps::Table,
            string_len_null(FollowUps::PlanKey, 160).take(),
        )
        .await?;
        let conn = manager.get_connection();
        // Follow-ups planned before outreach may be sent when they are due;
        // the recovery call is the most urgent kind.
        conn.execute_unprepared("UPDATE follow_ups SET send_at = due_at")
            .await?;
        conn.execute_unprepared(
            "UPDATE follow_ups SET priority = 1 WHERE kind = 'SERVICE_RECOVERY'",
        )
        .await?;
        // Already announced as overdue means already announced as due.
        conn.execute_unprepared(
            "UPDATE follow_ups SET due_notified_at = overdue_notified_at WHERE overdue_notified_at IS NOT NULL",
        )
        .await?;
        // A time-based plan (a stalled journey's nudge, a rebooking) is made
        // once: its key is unique in the clinic. NULLs never collide.
        manager
            .create_index(
                Index::create()
                    .name("ux_follow_ups_plan_key")
                    .table(FollowUps::Table)
                    .col(FollowUps::ClinicId)
                    .col(FollowUps::PlanKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // The coordinator's queue: what may be sent now, most urgent first.
        conn.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS ix_follow_ups_queue ON follow_ups (clinic_id, priority, send_at) \
             WHERE status = 'OPEN'",
        )
        .await?;
        // The sweeper's `follow_up.due` announcements still to make.
        conn.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS ix_follow_ups_due_sweep ON follow_ups (send_at) \
             WHERE status = 'OPEN' AND due_notified_at IS NULL",
        )
        .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_follow_ups_clinic_status")
                    .table(FollowUps::Table)
                    .col(FollowUps::ClinicId)
                    .col(FollowUps::Status)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Consents::Table)
                    .if_not_exists()
                    .col(pk_uuid(Consents::Id))
                    .col(uuid(Consents::ClinicId))
                    .col(uuid(Consents::PatientId))
                    .col(string_len(Consents::Channel, 16))
                    .col(string_len(Consents::Purpose, 16))
                    .col(boolean(Consents::Granted))
                    .col(string_len(Consents::Source, 200))
                    .col(uuid_null(Consents::TouchpointId))
                    .col(timestamp_with_time_zone(Consents::OccurredAt))
                    .col(timestamp_with_time_zone(Consents::RecordedAt))
                    .col(string_len(Consents::ActorKind, 16))
                    .col(uuid_null(Consents::ActorId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Consents::Table, Consents::ClinicId)
                            .to(Clinics::Table, Clinics::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Consents::Table, Consents::PatientId)
                            .to(Patients::Table, Patients::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_consents_patient")
                    .table(Consents::Table)
                    .col(Consents::ClinicId)
                    .col(Consents::PatientId)
                    .col(Consents::OccurredAt)
                    .to_owned(),
            )
            .await?;
        // Today's booleans, carried over: `sms` and `email` are care consent
        // on their channel, `marketing` is marketing consent on each channel
        // the patient also agreed to. (Care by email or phone with an
        // address given is allowed without a record: see `domain::outreach`.)
        for (channel, purpose, condition) in [
            ("SMS", "CARE", "consent_sms"),
            ("EMAIL", "CARE", "consent_email"),
            ("SMS", "MARKETING", "consent_sms AND consent_marketing"),
            ("EMAIL", "MARKETING", "consent_email AND consent_marketing"),
        ] {
            // Ids of carried-over rows are random (SQLite stores uuids as
            // 16 bytes).
            let id = match manager.get_database_backend() {
                sea_orm::DbBackend::Postgres => "gen_random_uuid()",
                _ => "randomblob(16)",
            };
            let from = "FROM patients";
            conn.execute_unprepared(&format!(
                "INSERT INTO consents (id, clinic_id, patient_id, channel, purpose, granted, source, \
                   touchpoint_id, occurred_at, recorded_at, actor_kind, actor_id) \
                 SELECT {id}, clinic_id, id, '{channel}', '{purpose}', {condition}, 'migration', \
                   NULL, updated_at, updated_at, 'SYSTEM', NULL {from} \
                 WHERE erased_at IS NULL AND ({condition})"
            ))
            .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(OutreachTemplates::Table)
                    .if_not_exists()
                    .col(pk_uuid(OutreachTemplates::Id))
                    .col(uuid(OutreachTemplates::ClinicId))
                    .col(string_len(OutreachTemplates::Kind, 24))
                    .col(string_len(OutreachTemplates::Channel, 16))
                    .col(text(OutreachTemplates::Body))
                    .col(timestamp_with_time_zone(OutreachTemplates::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(OutreachTemplates::Table, OutreachTemplates::ClinicId)
                            .to(Clinics::Table, Clinics::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_outreach_templates_kind_channel")
                    .table(OutreachTemplates::Table)
                    .col(OutreachTemplates::ClinicId)
                    .col(OutreachTemplates::Kind)
                    .col(OutreachTemplates::Channel)
                    .unique()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OutreachTemplates::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Consents::Table).to_owned())
            .await?;
        let conn = manager.get_connection();
        for index in [
            "ux_follow_ups_plan_key",
            "ix_follow_ups_queue",
            "ix_follow_ups_due_sweep",
            "ix_follow_ups_clinic_status",
        ] {
            conn.execute_unprepared(&format!("DROP INDEX IF EXISTS {index}"))
                .await?;
        }
        for column in [
            FollowUps::Purpose,
            FollowUps::SendAt,
            FollowUps::Explanation,
            FollowUps::Message,
            FollowUps::Priority,
            FollowUps::BlockedReason,
            FollowUps::DueNotifiedAt,
            FollowUps::SkippedAt,
            FollowUps::SkipReason,
            FollowUps::PlanKey,
        ] {
            drop(manager, FollowUps::Table, column).await?;
        }
        drop(manager, Stages::Table, Stages::RebookAfterDays).await?;
        drop(manager, Stages::Table, Stages::WinBackAfterDays).await?;
        drop(manager, Patients::Table, Patients::Timezone).await?;
        drop(manager, Patients::Table, Patients::QuietStart).await?;
        drop(manager, Patients::Table, Patients::QuietEnd).await?;
        for column in [
            Clinics::QuietStart,
            Clinics::QuietEnd,
            Clinics::MaxMarketingPerWeek,
            Clinics::MinHoursBetweenContacts,
        ] {
            drop(manager, Clinics::Table, column).await?;
        }
        Ok(())
    }
}
