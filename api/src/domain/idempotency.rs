//! `Idempotency-Key` for mutations, with Stripe's semantics: the same key and
//! body within 24 hours answers with the first response, without writing
//! again; the same key with another body, or while the first request still
//! runs, is a CONFLICT. Keys belong to one credential.

use chrono::Duration;
use entity::idempotency_keys;
use sea_orm::{
    ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter,
    sea_query::{Expr, OnConflict},
};
use serde_json::Value;
use uuid::Uuid;

use super::{DomainError, DomainResult, now, values::IdempotencyKey};
use crate::{auth::Principal, db::Db, ids};

/// How long a key is remembered.
pub const KEEP_FOR: Duration = Duration::hours(24);
/// After this long a request still marked running is taken as abandoned
/// (its server died), and the key may be used again.
pub const ABANDONED_AFTER: Duration = Duration::minutes(5);

/// What to do with a request carrying a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Run it; then [`complete`] (or [`release`]) the key.
    Proceed(Uuid),
    /// Answer with the stored response.
    Replay { status: u16, body: Value },
}

/// Claims `key` for a request whose body hashes to `hash`; a new key is
/// remembered for `keep_for` ([`KEEP_FOR`] unless configured otherwise).
pub async fn claim(
    db: &Db,
    who: &Principal,
    key: &IdempotencyKey,
    hash: &str,
    keep_for: Duration,
) -> DomainResult<Claim> {
    let key = key.as_str();
    let Some(actor) = who.actor.id() else {
        return Err(DomainError::invalid(
            "Idempotency-Key",
            "needs a credential",
        ));
    };
    for _ in 0..3 {
        let at = now();
        let row = idempotency_keys::Model {
            id: ids::new_id(),
            clinic_id: who.clinic_id,
            actor_id: actor,
            key: key.to_string(),
            request_hash: hash.to_string(),
            status: "IN_PROGRESS".into(),
            response_status: None,
            response_body: None,
            created_at: at,
            expires_at: at + keep_for,
        };
        let txn = db.begin_write().await?;
        let inserted = idempotency_keys::Entity::insert(row.clone().into_active_model())
            .on_conflict(
                OnConflict::columns([
                    idempotency_keys::Column::ClinicId,
                    idempotency_keys::Column::ActorId,
                    idempotency_keys::Column::Key,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&*txn)
            .await?;
        if inserted > 0 {
            txn.commit().await?;
            return Ok(Claim::Proceed(row.id));
        }
        let existing = who
            .select::<idempotency_keys::Entity>()
            .filter(idempotency_keys::Column::ActorId.eq(actor))
            .filter(idempotency_keys::Column::Key.eq(key))
            .one(&*txn)
            .await?;
        let Some(existing) = existing else {
            txn.commit().await?;
            continue;
        };
        if existing.expires_at <= at {
            who.delete_rows::<idempotency_keys::Entity>()
                .filter(idempotency_keys::Column::Id.eq(existing.id))
                .exec(&*txn)
                .await?;
            txn.commit().await?;
            continue;
        }
        if existing.request_hash != hash {
            return Err(DomainError::conflict_on(
                "Idempotency-Key",
                "this key was used with a different request; use a new key for a new request",
            ));
        }
        if existing.status == "COMPLETED" {
            return Ok(Claim::Replay {
                status: existing.response_status.unwrap_or(200) as u16,
                body: existing.response_body.unwrap_or(Value::Null),
            });
        }
        if existing.created_at + ABANDONED_AFTER > at {
            return Err(DomainError::conflict_on(
                "Idempotency-Key",
                "a request with this key is still running; retry when it has finished",
            ));
        }
        // Abandoned by a server that died: take it over.
        who.update_rows::<idempotency_keys::Entity>()
            .col_expr(idempotency_keys::Column::CreatedAt, Expr::value(at))
            .filter(idempotency_keys::Column::Id.eq(existing.id))
            .exec(&*txn)
            .await?;
        txn.commit().await?;
        return Ok(Claim::Proceed(existing.id));
    }
    Err(DomainError::conflict_on(
        "Idempotency-Key",
        "the key is contended; retry",
    ))
}

/// Stores the response of a claimed key.
pub async fn complete(
    db: &Db,
    who: &Principal,
    id: Uuid,
    status: u16,
    body: &Value,
) -> DomainResult<()> {
    let txn = db.begin_write().await?;
    who.update_rows::<idempotency_keys::Entity>()
        .col_expr(idempotency_keys::Column::Status, Expr::value("COMPLETED"))
        .col_expr(
            idempotency_keys::Column::ResponseStatus,
            Expr::value(i32::from(status)),
        )
        .col_expr(
            idempotency_keys::Column::ResponseBody,
            Expr::value(body.clone()),
        )
        .filter(idempotency_keys::Column::Id.eq(id))
        .exec(&*txn)
        .await?;
    txn.commit().await?;
    Ok(())
}

/// Forgets a claimed key whose request failed in a way worth retrying.
pub async fn release(db: &Db, who: &Principal, id: Uuid) -> DomainResult<()> {
    let txn = db.begin_write().await?;
    who.delete_rows::<idempotency_keys::Entity>()
        .filter(idempotency_keys::Column::Id.eq(id))
        .exec(&*txn)
        .await?;
    txn.commit().await?;
    Ok(())
}

/// Deletes expired keys (of every clinic).
#[allow(clippy::disallowed_methods)] // housekeeping across clinics
pub async fn forget_expired(db: &Db) -> DomainResult<u64> {
    let result = idempotency_keys::Entity::delete_many()
        .filter(idempotency_keys::Column::ExpiresAt.lt(now()))
        .exec(db.conn())
        .await?;
    Ok(result.rows_affected)
}
