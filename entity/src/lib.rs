//! SeaORM entities for Journeymap: one module per table, no business logic.
//!
//! Every table that belongs to a clinic carries a `clinic_id` column; the
//! [`ClinicOwned`] trait names it so the data-access layer in `api` can add the
//! tenant filter generically. Enumerations are stored as upper-case strings so
//! the schema means the same on SQLite and PostgreSQL. The models read in bulk
//! on the hot paths also decode their rows by position ([`DecodeRow`]).

#[macro_use]
pub mod decode_row;

pub mod api_tokens;
pub mod audit_log;
pub mod audit_log_patients;
pub mod bulk_export_parts;
pub mod bulk_exports;
pub mod clinics;
pub mod consents;
pub mod event_sequences;
pub mod events;
pub mod feedback;
pub mod follow_up_rules;
pub mod follow_ups;
pub mod idempotency_keys;
pub mod journeys;
pub mod outreach_templates;
pub mod pathways;
pub mod patients;
pub mod refresh_tokens;
pub mod settings;
pub mod staff;
pub mod staff_sessions;
pub mod stage_transitions;
pub mod stages;
pub mod touchpoints;
pub mod webhook_attempts;
pub mod webhook_deliveries;
pub mod webhook_endpoints;

pub use decode_row::DecodeRow;
pub use sea_orm;

/// Models of the tables read in bulk elsewhere: decoded by name.
impl DecodeRow for audit_log_patients::Model {}

/// A table whose rows belong to exactly one clinic (tenant).
pub trait ClinicOwned: sea_orm::EntityTrait {
    /// The column holding the owning clinic's id.
    fn clinic_column() -> Self::Column;
    /// The primary-key column (a UUIDv7).
    fn id_column() -> Self::Column;
    /// The owning clinic of a row.
    fn clinic_of(model: &Self::Model) -> uuid::Uuid;
    /// The id of a row.
    fn id_of(model: &Self::Model) -> uuid::Uuid;
}

macro_rules! clinic_owned {
    ($($module:ident),* $(,)?) => {$(
        impl ClinicOwned for $module::Entity {
            fn clinic_column() -> Self::Column { $module::Column::ClinicId }
            fn id_column() -> Self::Column { $module::Column::Id }
            fn clinic_of(model: &Self::Model) -> uuid::Uuid { model.clinic_id }
            fn id_of(model: &Self::Model) -> uuid::Uuid { model.id }
        }
    )*};
}

/// The patient index of the audit log is keyed by its entry.
impl ClinicOwned for audit_log_patients::Entity {
    fn clinic_column() -> Self::Column {
        audit_log_patients::Column::ClinicId
    }
    fn id_column() -> Self::Column {
        audit_log_patients::Column::AuditId
    }
    fn clinic_of(model: &Self::Model) -> uuid::Uuid {
        model.clinic_id
    }
    fn id_of(model: &Self::Model) -> uuid::Uuid {
        model.audit_id
    }
}

clinic_owned!(
    api_tokens,
    audit_log,
    bulk_export_parts,
    bulk_exports,
    consents,
    events,
    feedback,
    follow_up_rules,
    follow_ups,
    journeys,
    outreach_templates,
    pathways,
    patients,
    refresh_tokens,
    staff,
    staff_sessions,
    stage_transitions,
    stages,
    touchpoints,
    idempotency_keys,
    webhook_attempts,
    webhook_deliveries,
    webhook_endpoints,
);
