//! The core domain: clinics, staff, API tokens, patients, pathways, stages,
//! follow-up rules, journeys, stage transitions, touchpoints, feedback,
//! follow-ups and the event log.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Clinics {
    Table,
    Id,
    Name,
    Slug,
    Timezone,
    EventSeq,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Staff {
    Table,
    Id,
    ClinicId,
    Email,
    Name,
    Role,
    PasswordHash,
    DisabledAt,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum ApiTokens {
    Table,
    Id,
    ClinicId,
    Name,
    Prefix,
    SecretHash,
    Scopes,
    CreatedByStaffId,
    ExpiresAt,
    LastUsedAt,
    RevokedAt,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Patients {
    Table,
    Id,
    ClinicId,
    ExternalId,
    GivenName,
    FamilyName,
    Email,
    Phone,
    BirthDate,
    PreferredChannel,
    Source,
    Tags,
    ConsentSms,
    ConsentEmail,
    ConsentMarketing,
    SearchText,
    ArchivedAt,
    ErasedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Pathways {
    Table,
    Id,
    ClinicId,
    Name,
    Description,
    ArchivedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Stages {
    Table,
    Id,
    ClinicId,
    PathwayId,
    Key,
    Name,
    Category,
    Position,
    TargetHours,
    Terminal,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum FollowUpRules {
    Table,
    Id,
    ClinicId,
    StageId,
    DelayHours,
    Channel,
    Note,
    CancelOnStageExit,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Journeys {
    Table,
    Id,
    ClinicId,
    PatientId,
    PathwayId,
    CurrentStageId,
    Status,
    StageEnteredAt,
    StallsAt,
    OwnerStaffId,
    Version,
    StartedAt,
    EndedAt,
    EndReason,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum StageTransitions {
    Table,
    Id,
    ClinicId,
    JourneyId,
    PathwayId,
    Kind,
    FromStageId,
    ToStageId,
    SecondsInFromStage,
    OccurredAt,
    ActorKind,
    ActorId,
    Note,
}

#[derive(DeriveIden, Clone, Copy)]
enum Touchpoints {
    Table,
    Id,
    ClinicId,
    PatientId,
    JourneyId,
    StageId,
    Channel,
    Direction,
    Kind,
    Summary,
    OccurredAt,
    StaffId,
    Emotion,
    MomentOfTruth,
    ExternalRef,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Feedback {
    Table,
    Id,
    ClinicId,
    PatientId,
    JourneyId,
    StageId,
    TouchpointId,
    StaffId,
    Kind,
    Score,
    Comment,
    SubmittedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum FollowUps {
    Table,
    Id,
    ClinicId,
    JourneyId,
    PatientId,
    StageId,
    RuleId,
    DueAt,
    Channel,
    Note,
    AssigneeStaffId,
    Status,
    CompletedAt,
    CompletedByTouchpointId,
    CancelledAt,
    CancelReason,
    OverdueNotifiedAt,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Events {
    Table,
    Id,
    ClinicId,
    Sequence,
    EventType,
    Subject,
    Data,
    OccurredAt,
}

/// A `clinic_id` column referencing `clinics`.
fn clinic_ref<T: IntoIden + Copy + 'static>(
    table: T,
    column: T,
) -> (ColumnDef, ForeignKeyCreateStatement) {
    (
        uuid(column),
        ForeignKey::create()
            .from(table, column)
            .to(Clinics::Table, Clinics::Id)
            .on_delete(ForeignKeyAction::Cascade)
            .take(),
    )
}

fn fk<T: IntoIden + 'static, U: IntoIden + 'static>(
    from_table: T,
    from_column: T,
    to_table: U,
    to_column: U,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(from_table, from_column)
        .to(to_table, to_column)
        .take()
}

fn index<T: IntoIden + Copy + 'static>(
    name: &str,
    table: T,
    columns: &[T],
) -> IndexCreateStatement {
    let mut statement = Index::create();
    statement.name(name).table(table).if_not_exists();
    for column in columns {
        statement.col(*column);
    }
    statement
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Clinics::Table)
                    .if_not_exists()
                    .col(pk_uuid(Clinics::Id))
                    .col(string_len(Clinics::Name, 200))
                    .col(string_len_uniq(Clinics::Slug, 64))
                    .col(string_len(Clinics::Timezone, 64))
                    .col(big_integer(Clinics::EventSeq).default(0))
                    .col(timestamp_with_time_zone(Clinics::CreatedAt))
                    .to_owned(),
            )
            .await?;

        let (clinic_col, clinic_fk) = clinic_ref(Staff::Table, Staff::ClinicId);
        manager
            .create_table(
                Table::create()
                    .table(Staff::Table)
                    .if_not_exists()
                    .col(pk_uuid(Staff::Id))
                    .col(clinic_col)
                    .col(string_len(Staff::Email, 254))
                    .col(string_len(Staff::Name, 200))
                    .col(string_len(Staff::Role, 16))
                    .col(text_null(Staff::PasswordHash))
                    .col(timestamp_with_time_zone_null(Staff::DisabledAt))
                    .col(timestamp_with_time_zone(Staff::CreatedAt))
                    .foreign_key(&mut clinic_fk.clone())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_staff_clinic_email",
                    Staff::Table,
                    &[Staff::ClinicId, Staff::Email],
                )
                .unique()
                .to_owned(),
            )
            .await?;

        let (clinic_col, clinic_fk) = clinic_ref(ApiTokens::Table, ApiTokens::ClinicId);
        manager
            .create_table(
                Table::create()
                    .table(ApiTokens::Table)
                    .if_not_exists()
                    .col(pk_uuid(ApiTokens::Id))
                    .col(clinic_col)
                    .col(string_len(ApiTokens::Name, 200))
                    .col(string_len(ApiTokens::Prefix, 32))
                    .col(string_len_uniq(ApiTokens::SecretHash, 64))
                    .col(json(ApiTokens::Scopes))
                    .col(uuid_null(ApiTokens::CreatedByStaffId))
                    .col(timestamp_with_time_zone_null(ApiTokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(ApiTokens::LastUsedAt))
                    .col(timestamp_with_time_zone_null(ApiTokens::RevokedAt))
                    .col(timestamp_with_time_zone(ApiTokens::CreatedAt))
                    .foreign_key(&mut clinic_fk.clone())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_api_tokens_clinic",
                ApiTokens::Table,
                &[ApiTokens::ClinicId],
            ))
            .await?;

        let (clinic_col, clinic_fk) = clinic_ref(Patients::Table, Patients::ClinicId);
        manager
            .create_table(
                Table::create()
                    .table(Patients::Table)
                    .if_not_exists()
                    .col(pk_uuid(Patients::Id))
                    .col(clinic_col)
                    .col(string_len_null(Patients::ExternalId, 128))
                    .col(string_len(Patients::GivenName, 100))
                    .col(string_len(Patients::FamilyName, 100))
                    .col(string_len_null(Patients::Email, 254))
                    .col(string_len_null(Patients::Phone, 16))
                    .col(date_null(Patients::BirthDate))
                    .col(string_len_null(Patients::PreferredChannel, 16))
                    .col(string_len_null(Patients::Source, 64))
                    .col(json(Patients::Tags))
                    .col(boolean(Patients::ConsentSms).default(false))
                    .col(boolean(Patients::ConsentEmail).default(false))
                    .col(boolean(Patients::ConsentMarketing).default(false))
                    .col(text(Patients::SearchText))
                    .col(timestamp_with_time_zone_null(Patients::ArchivedAt))
                    .col(timestamp_with_time_zone_null(Patients::ErasedAt))
                    .col(timestamp_with_time_zone(Patients::CreatedAt))
                    .col(timestamp_with_time_zone(Patients::UpdatedAt))
                    .foreign_key(&mut clinic_fk.clone())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_patients_clinic_external_id",
                    Patients::Table,
                    &[Patients::ClinicId, Patients::ExternalId],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_patients_clinic_id",
                Patients::Table,
                &[Patients::ClinicId, Patients::Id],
            ))
            .await?;

        let (clinic_col, clinic_fk) = clinic_ref(Pathways::Table, Pathways::ClinicId);
        manager
            .create_table(
                Table::create()
                    .table(Pathways::Table)
                    .if_not_exists()
                    .col(pk_uuid(Pathways::Id))
                    .col(clinic_col)
                    .col(string_len(Pathways::Name, 100))
                    .col(text_null(Pathways::Description))
                    .col(timestamp_with_time_zone_null(Pathways::ArchivedAt))
                    .col(timestamp_with_time_zone(Pathways::CreatedAt))
                    .col(timestamp_with_time_zone(Pathways::UpdatedAt))
                    .foreign_key(&mut clinic_fk.clone())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_pathways_clinic",
                Pathways::Table,
                &[Pathways::ClinicId],
            ))
            .await?;

        let (clinic_col, clinic_fk) = clinic_ref(Stages::Table, Stages::ClinicId);
        manager
            .create_table(
                Table::create()
                    .table(Stages::Table)
                    .if_not_exists()
                    .col(pk_uuid(Stages::Id))
                    .col(clinic_col)
                    .col(uuid(Stages::PathwayId))
                    .col(string_len(Stages::Key, 64))
                    .col(string_len(Stages::Name, 100))
                    .col(string_len(Stages::Category, 16))
                    .col(integer(Stages::Position))
                    .col(integer_null(Stages::TargetHours))
                    .col(boolean(Stages::Terminal).default(false))
                    .col(timestamp_with_time_zone(Stages::CreatedAt))
                    .foreign_key(&mut clinic_fk.clone())
                    .foreign_key(&mut fk(
                        Stages::Table,
                        Stages::PathwayId,
                        Pathways::Table,
                        Pathways::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_stages_pathway_key",
                    Stages::Table,
                    &[Stages::PathwayId, Stages::Key],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_stages_pathway_position",
                Stages::Table,
                &[Stages::PathwayId, Stages::Position],
            ))
            .await?;

        let (clinic_col, clinic_fk) = clinic_ref(FollowUpRules::Table, FollowUpRules::ClinicId);
        manager
            .create_table(
                Table::create()
                    .table(FollowUpRules::Table)
                    .if_not_exists()
                    .col(pk_uuid(FollowUpRules::Id))
                    .col(clinic_col)
                    .col(uuid(FollowUpRules::StageId))
                    .col(integer(FollowUpRules::DelayHours))
                    .col(string_len(FollowUpRules::Channel, 16))
                    .col(text_null(FollowUpRules::Note))
                    .col(boolean(FollowUpRules::CancelOnStageExit).default(true))
                    .col(timestamp_with_time_zone(FollowUpRules::CreatedAt))
                    .foreign_key(&mut clinic_fk.clone())
                    .foreign_key(&mut fk(
                        FollowUpRules::Table,
                        FollowUpRules::StageId,
                        Stages::Table,
                        Stages::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_follow_up_rules_stage",
                FollowUpRules::Table,
                &[FollowUpRules::StageId],
            ))
            .await?;

        let (clinic_col, clinic_fk) = clinic_ref(Journeys::Table, Journeys::ClinicId);
        manager
            .create_table(
                Table::create()
                    .table(Journeys::Table)
                    .if_not_exists()
                    .col(pk_uuid(Journeys::Id))
                    .col(clinic_col)
                    .col(uuid(Journeys::PatientId))
                    .col(uuid(Journeys::PathwayId))
                    .col(uuid(Journeys::CurrentStageId))
                    .col(string_len(Journeys::Status, 16))
                    .col(timestamp_with_time_zone(Journeys::StageEnteredAt))
                    .col(timestamp_with_time_zone_null(Journeys::StallsAt))
                    .col(uuid_null(Journeys::OwnerStaffId))
                    .col(integer(Journeys::Version))
                    .col(timestamp_with_time_zone(Journeys::StartedAt))
                    .col(timestamp_with_time_zone_null(Journeys::EndedAt))
                    .col(text_null(Journeys::EndReason))
                    .col(timestamp_with_time_zone(Journeys::UpdatedAt))
                    .foreign_key(&mut clinic_fk.clone())
                    .foreign_key(&mut fk(
                        Journeys::Table,
                        Journeys::PatientId,
                        Patients::Table,
                        Patients::Id,
                    ))
                    .foreign_key(&mut fk(
                        Journeys::Table,
                        Journeys::PathwayId,
                        Pathways::Table,
                        Pathways::Id,
                    ))
                    .foreign_key(&mut fk(
                        Journeys::Table,
                        Journeys::CurrentStageId,
                        Stages::Table,
                        Stages::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_journeys_patient",
                Journeys::Table,
                &[Journeys::PatientId],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_journeys_clinic_pathway_status",
                Journeys::Table,
                &[Journeys::ClinicId, Journeys::PathwayId, Journeys::Status],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_journeys_stage_status",
                Journeys::Table,
                &[Journeys::CurrentStageId, Journeys::Status],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_journeys_clinic_status_stalls",
                Journeys::Table,
                &[Journeys::ClinicId, Journeys::Status, Journeys::StallsAt],
            ))
            .await?;
        // At most one ACTIVE journey per patient and pathway, even under races.
        // Partial indexes are spelled the same on SQLite and PostgreSQL.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX IF NOT EXISTS ux_journeys_one_active \
                 ON journeys (patient_id, pathway_id) WHERE status = 'ACTIVE'",
            )
            .await?;

        let (clinic_col, clinic_fk) =
            clinic_ref(StageTransitions::Table, StageTransitions::ClinicId);
        manager
            .create_table(
                Table::create()
                    .table(StageTransitions::Table)
                    .if_not_exists()
                    .col(pk_uuid(StageTransitions::Id))
                    .col(clinic_col)
                    .col(uuid(StageTransitions::JourneyId))
                    .col(uuid(StageTransitions::PathwayId))
                    .col(string_len(StageTransitions::Kind, 16))
                    .col(uuid_null(StageTransitions::FromStageId))
                    .col(uuid(StageTransitions::ToStageId))
                    .col(big_integer_null(StageTransitions::SecondsInFromStage))
                    .col(timestamp_with_time_zone(StageTransitions::OccurredAt))
                    .col(string_len(StageTransitions::ActorKind, 16))
                    .col(uuid_null(StageTransitions::ActorId))
                    .col(text_null(StageTransitions::Note))
                    .foreign_key(&mut clinic_fk.clone())
                    .foreign_key(&mut fk(
                        StageTransitions::Table,
                        StageTransitions::JourneyId,
                        Journeys::Table,
                        Journeys::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_stage_transitions_journey",
                StageTransitions::Table,
                &[StageTransitions::JourneyId, StageTransitions::OccurredAt],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_stage_transitions_pathway_time",
                StageTransitions::Table,
                &[
                    StageTransitions::ClinicId,
                    StageTransitions::PathwayId,
                    StageTransitions::OccurredAt,
                ],
            ))
            .await?;

        let (clinic_col, clinic_fk) = clinic_ref(Touchpoints::Table, Touchpoints::ClinicId);
        manager
            .create_table(
                Table::create()
                    .table(Touchpoints::Table)
                    .if_not_exists()
                    .col(pk_uuid(Touchpoints::Id))
                    .col(clinic_col)
                    .col(uuid(Touchpoints::PatientId))
                    .col(uuid_null(Touchpoints::JourneyId))
                    .col(uuid_null(Touchpoints::StageId))
                    .col(string_len(Touchpoints::Channel, 16))
                    .col(string_len(Touchpoints::Direction, 16))
                    .col(string_len(Touchpoints::Kind, 64))
                    .col(text_null(Touchpoints::Summary))
                    .col(timestamp_with_time_zone(Touchpoints::OccurredAt))
                    .col(uuid_null(Touchpoints::StaffId))
                    .col(small_integer_null(Touchpoints::Emotion))
                    .col(boolean(Touchpoints::MomentOfTruth).default(false))
                    .col(string_len_null(Touchpoints::ExternalRef, 128))
                    .col(timestamp_with_time_zone(Touchpoints::CreatedAt))
                    .foreign_key(&mut clinic_fk.clone())
                    .foreign_key(&mut fk(
                        Touchpoints::Table,
                        Touchpoints::PatientId,
                        Patients::Table,
                        Patients::Id,
                    ))
                    .foreign_key(&mut fk(
                        Touchpoints::Table,
                        Touchpoints::JourneyId,
                        Journeys::Table,
                        Journeys::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_touchpoints_patient_time",
                Touchpoints::Table,
                &[
                    Touchpoints::PatientId,
                    Touchpoints::OccurredAt,
                    Touchpoints::Id,
                ],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_touchpoints_journey_time",
                Touchpoints::Table,
                &[
                    Touchpoints::JourneyId,
                    Touchpoints::OccurredAt,
                    Touchpoints::Id,
                ],
            ))
            .await?;
        manager
            .create_index(
                index(
                    "ux_touchpoints_clinic_external_ref",
                    Touchpoints::Table,
                    &[Touchpoints::ClinicId, Touchpoints::ExternalRef],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_touchpoints_clinic_stage",
                Touchpoints::Table,
                &[Touchpoints::ClinicId, Touchpoints::StageId],
            ))
            .await?;

        let (clinic_col, clinic_fk) = clinic_ref(Feedback::Table, Feedback::ClinicId);
        manager
            .create_table(
                Table::create()
                    .table(Feedback::Table)
                    .if_not_exists()
                    .col(pk_uuid(Feedback::Id))
                    .col(clinic_col)
                    .col(uuid(Feedback::PatientId))
                    .col(uuid_null(Feedback::JourneyId))
                    .col(uuid_null(Feedback::StageId))
                    .col(uuid_null(Feedback::TouchpointId))
                    .col(uuid_null(Feedback::StaffId))
                    .col(string_len(Feedback::Kind, 16))
                    .col(small_integer_null(Feedback::Score))
                    .col(text_null(Feedback::Comment))
                    .col(timestamp_with_time_zone(Feedback::SubmittedAt))
                    .foreign_key(&mut clinic_fk.clone())
                    .foreign_key(&mut fk(
                        Feedback::Table,
                        Feedback::PatientId,
                        Patients::Table,
                        Patients::Id,
                    ))
                    .foreign_key(&mut fk(
                        Feedback::Table,
                        Feedback::JourneyId,
                        Journeys::Table,
                        Journeys::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_feedback_patient_time",
                Feedback::Table,
                &[Feedback::PatientId, Feedback::SubmittedAt, Feedback::Id],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_feedback_journey",
                Feedback::Table,
                &[Feedback::JourneyId],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_feedback_clinic_stage",
                Feedback::Table,
                &[Feedback::ClinicId, Feedback::StageId],
            ))
            .await?;

        let (clinic_col, clinic_fk) = clinic_ref(FollowUps::Table, FollowUps::ClinicId);
        manager
            .create_table(
                Table::create()
                    .table(FollowUps::Table)
                    .if_not_exists()
                    .col(pk_uuid(FollowUps::Id))
                    .col(clinic_col)
                    .col(uuid(FollowUps::JourneyId))
                    .col(uuid(FollowUps::PatientId))
                    .col(uuid_null(FollowUps::StageId))
                    .col(uuid_null(FollowUps::RuleId))
                    .col(timestamp_with_time_zone(FollowUps::DueAt))
                    .col(string_len(FollowUps::Channel, 16))
                    .col(text_null(FollowUps::Note))
                    .col(uuid_null(FollowUps::AssigneeStaffId))
                    .col(string_len(FollowUps::Status, 16))
                    .col(timestamp_with_time_zone_null(FollowUps::CompletedAt))
                    .col(uuid_null(FollowUps::CompletedByTouchpointId))
                    .col(timestamp_with_time_zone_null(FollowUps::CancelledAt))
                    .col(text_null(FollowUps::CancelReason))
                    .col(timestamp_with_time_zone_null(FollowUps::OverdueNotifiedAt))
                    .col(timestamp_with_time_zone(FollowUps::CreatedAt))
                    .foreign_key(&mut clinic_fk.clone())
                    .foreign_key(&mut fk(
                        FollowUps::Table,
                        FollowUps::JourneyId,
                        Journeys::Table,
                        Journeys::Id,
                    ))
                    .foreign_key(&mut fk(
                        FollowUps::Table,
                        FollowUps::PatientId,
                        Patients::Table,
                        Patients::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_follow_ups_clinic_status_due",
                FollowUps::Table,
                &[FollowUps::ClinicId, FollowUps::Status, FollowUps::DueAt],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_follow_ups_journey",
                FollowUps::Table,
                &[FollowUps::JourneyId, FollowUps::Status],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_follow_ups_patient",
                FollowUps::Table,
                &[FollowUps::PatientId],
            ))
            .await?;

        let (clinic_col, clinic_fk) = clinic_ref(Events::Table, Events::ClinicId);
        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .if_not_exists()
                    .col(pk_uuid(Events::Id))
                    .col(clinic_col)
                    .col(big_integer(Events::Sequence))
                    .col(string_len(Events::EventType, 64))
                    .col(string_len(Events::Subject, 64))
                    .col(json(Events::Data))
                    .col(timestamp_with_time_zone(Events::OccurredAt))
                    .foreign_key(&mut clinic_fk.clone())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_events_clinic_sequence",
                    Events::Table,
                    &[Events::ClinicId, Events::Sequence],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Events::Table.into_iden(),
            FollowUps::Table.into_iden(),
            Feedback::Table.into_iden(),
            Touchpoints::Table.into_iden(),
            StageTransitions::Table.into_iden(),
            Journeys::Table.into_iden(),
            FollowUpRules::Table.into_iden(),
            Stages::Table.into_iden(),
            Pathways::Table.into_iden(),
            Patients::Table.into_iden(),
            ApiTokens::Table.into_iden(),
            Staff::Table.into_iden(),
            Clinics::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
