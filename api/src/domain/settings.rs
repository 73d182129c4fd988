//! Server-wide settings kept in the database, shared by every replica.

use base64::{Engine, engine::general_purpose::STANDARD};
use entity::settings;
use rand::RngCore;
use sea_orm::{EntityTrait, IntoActiveModel, sea_query::OnConflict};

use super::{DomainResult, now};
use crate::db::Db;

const SIGNING_KEY: &str = "jwt_hs256_secret";

/// The JWT signing secret: generated and stored on first start, so the
/// embedded default needs no setup and every replica signs alike.
#[allow(clippy::disallowed_methods)] // settings belong to no clinic
pub async fn signing_key(db: &Db) -> DomainResult<Vec<u8>> {
    let mut secret = [0u8; 64];
    rand::rng().fill_bytes(&mut secret);
    let candidate = settings::Model {
        key: SIGNING_KEY.into(),
        value: STANDARD.encode(secret),
        created_at: now(),
    };
    // Two replicas starting at once: the first insert wins, both read it.
    settings::Entity::insert(candidate.into_active_model())
        .on_conflict(
            OnConflict::column(settings::Column::Key)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db.conn())
        .await?;
    let stored = settings::Entity::find_by_id(SIGNING_KEY.to_string())
        .one(db.conn())
        .await?
        .ok_or_else(|| {
            super::DomainError::internal(anyhow::anyhow!("the signing key was not stored"))
        })?;
    STANDARD.decode(stored.value).map_err(|e| {
        super::DomainError::internal(anyhow::anyhow!("the stored signing key is not base64: {e}"))
    })
}
