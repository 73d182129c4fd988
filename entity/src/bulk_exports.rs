//! FHIR Bulk Data exports: one row per `$export` kick-off, kept after its
//! files are gone as the record the audit log points at.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "bulk_exports")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub clinic_id: Uuid,
    /// STAFF or API_TOKEN: who asked.
    pub requested_by_kind: String,
    pub requested_by_id: Option<Uuid>,
    /// The kick-off request's `x-request-id`.
    pub request_id: Option<String>,
    /// The kick-off request's URL, as the manifest's `request`.
    pub request_url: String,
    /// The FHIR resource types asked for, comma-separated, in export order.
    pub types: String,
    /// `_since`: only resources changed after it.
    pub since: Option<DateTimeUtc>,
    /// QUEUED, RUNNING, DONE, FAILED, CANCELLED or EXPIRED.
    pub status: String,
    /// When the worker started reading (the manifest's `transactionTime`).
    pub transaction_time: Option<DateTimeUtc>,
    /// Resources to write, counted when the worker starts.
    pub resources_total: i64,
    /// Resources written so far.
    pub resources_done: i64,
    /// How many of `types` are written.
    pub types_done: i32,
    /// How many times a worker claimed it.
    pub attempts: i32,
    /// The claim of the worker running it; its writes check it.
    pub claim: Option<Uuid>,
    /// Until when that worker holds it.
    pub locked_until: Option<DateTimeUtc>,
    /// Why it failed, as the client is told (details are logged).
    pub error: Option<String>,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub completed_at: Option<DateTimeUtc>,
    /// When its files go (set once it is done or failed).
    pub expires_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
