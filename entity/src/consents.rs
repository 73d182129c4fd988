//! Consent history: every grant and revocation, per channel and purpose,
//! append-only. The latest row of a (patient, channel, purpose) is the
//! current state.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "consents")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub clinic_id: Uuid,
    pub patient_id: Uuid,
    /// SMS, EMAIL or PHONE.
    pub channel: String,
    /// CARE or MARKETING.
    pub purpose: String,
    pub granted: bool,
    /// Where it came from: "intake form", "import", "STOP reply", ...
    pub source: String,
    /// The touchpoint that carried it (a STOP reply), if any.
    pub touchpoint_id: Option<Uuid>,
    /// When the patient gave or withdrew it.
    pub occurred_at: DateTimeUtc,
    /// When Journeymap recorded it.
    pub recorded_at: DateTimeUtc,
    /// STAFF, API_TOKEN or SYSTEM.
    pub actor_kind: String,
    pub actor_id: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
