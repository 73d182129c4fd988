//! `Idempotency-Key`s of mutations: the first answer, replayed for 24 hours.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub clinic_id: Uuid,
    /// The staff member or token that sent the key.
    pub actor_id: Uuid,
    pub key: String,
    /// SHA-256 of the request body.
    pub request_hash: String,
    /// IN_PROGRESS or COMPLETED.
    pub status: String,
    pub response_status: Option<i32>,
    pub response_body: Option<Json>,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
