//! A CRM's or partner's webhook endpoint.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_endpoints")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub clinic_id: Uuid,
    pub url: String,
    pub description: Option<String>,
    /// JSON array of event types; empty means every type.
    pub event_types: Json,
    /// `whsec_…`, the current signing secret.
    pub secret: String,
    /// The secret before the last rotation, still used until it expires.
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<DateTimeUtc>,
    /// Send names, contact details and comments with events.
    pub include_phi: bool,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Deliveries that exhausted their retries since the last success.
    pub exhausted_deliveries: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
