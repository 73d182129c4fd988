//! Who did what to which record, when, from which request.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub clinic_id: Uuid,
    /// STAFF, API_TOKEN or SYSTEM.
    pub actor_kind: String,
    pub actor_id: Option<Uuid>,
    /// `patient.read`, `patient.updated`, `journey.stage_changed`, `api_token.created`, …
    pub action: String,
    /// The kind of record: `Patient`, `Journey`, …
    pub record_kind: String,
    pub record_id: Option<Uuid>,
    /// The patient the record belongs to, when there is one.
    pub patient_id: Option<Uuid>,
    /// The patients an entry is about when there are several (one request's
    /// reads): a JSON array of their ids in hex.
    pub patient_ids: Option<String>,
    pub request_id: Option<String>,
    pub occurred_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
