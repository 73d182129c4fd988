//! Partner API tokens. Only the SHA-256 of the secret is stored.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub clinic_id: Uuid,
    pub name: String,
    /// The first characters of the token, safe to display (`jm_AbCd1234`).
    pub prefix: String,
    /// Lower-case hex SHA-256 of the whole token.
    #[sea_orm(unique)]
    pub secret_hash: String,
    /// JSON array of scope strings.
    pub scopes: Json,
    pub created_by_staff_id: Option<Uuid>,
    /// The token that minted this one, when a token did.
    pub created_by_token_id: Option<Uuid>,
    pub expires_at: Option<DateTimeUtc>,
    pub last_used_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
