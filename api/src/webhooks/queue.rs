//! The delivery queue: every webhook delivery is a row, from the moment its
//! event commits until it is settled.
//!
//! - [`fan_out`] queues an event for every endpoint that wants it, in the
//!   event's own transaction (called by `domain::Write::commit`).
//! - [`claim`] leases due deliveries to a worker (`FOR UPDATE SKIP LOCKED` on
//!   PostgreSQL, so replicas share the work without sending twice at once).
//! - [`body`] is what is sent: the event's envelope, with PHI only for
//!   endpoints that opted in.
//! - [`settle`] records an attempt and decides what comes next; [`postpone`]
//!   puts a delivery off.
//!
//! A crash at any point loses nothing: a claimed delivery whose worker died is
//! due again when its lease runs out, and is sent again with the same
//! `webhook-id`.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use entity::{events, webhook_attempts, webhook_deliveries, webhook_endpoints};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, ExprTrait, FromQueryResult,
    IntoActiveModel, QueryFilter, sea_query::Expr,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    auth::Principal,
    db::{self, Db},
    events::{EndpointDisabled, Event, EventBus, Outbox, Prepared, log, outbox},
    ids::{self, IdKind, WebhookEndpointId},
};

/// Where a delivery stands.
pub mod status {
    pub const PENDING: &str = "PENDING";
    pub const DELIVERED: &str = "DELIVERED";
    pub const FAILED: &str = "FAILED";
}

/// Exhausted deliveries in a row after which an endpoint is disabled.
pub const DISABLE_AFTER_EXHAUSTED: i32 = 5;

/// The event types an endpoint wants; empty means all.
pub fn event_types_of(endpoint: &webhook_endpoints::Model) -> Vec<String> {
    serde_json::from_value(endpoint.event_types.clone()).unwrap_or_default()
}

fn wants(types: &[String], event_type: &str) -> bool {
    types.is_empty() || types.iter().any(|t| t == event_type)
}

/// A delivery to `endpoint` due now, of nothing yet.
pub fn new_delivery(clinic: Uuid, endpoint: Uuid, now: DateTime<Utc>) -> webhook_deliveries::Model {
    webhook_deliveries::Model {
        id: ids::new_id(),
        clinic_id: clinic,
        endpoint_id: endpoint,
        event_id: None,
        message_id: String::new(),
        event_type: String::new(),
        payload: None,
        status: status::PENDING.into(),
        attempts: 0,
        retry_index: 0,
        next_attempt_at: now,
        locked_until: None,
        last_attempt_at: None,
        last_status_code: None,
        last_error: None,
        delivered_at: None,
        created_at: now,
    }
}

/// Queues a delivery of every event to every enabled endpoint of `who`'s
/// clinic that wants it, in the writing transaction. Returns how many were
/// queued.
pub async fn fan_out<C: ConnectionTrait>(
    txn: &C,
    who: &Principal,
    written: &[Prepared],
    now: DateTime<Utc>,
) -> Result<usize, DbErr> {
    if written.is_empty() {
        return Ok(0);
    }
    let endpoints = who
        .select::<webhook_endpoints::Entity>()
        .filter(webhook_endpoints::Column::Enabled.eq(true))
        .all(txn)
        .await?;
    if endpoints.is_empty() {
        return Ok(0);
    }
    let mut deliveries = Vec::new();
    for endpoint in &endpoints {
        let types = event_types_of(endpoint);
        for event in written.iter().map(|p| &p.row) {
            if wants(&types, &event.event_type) {
                deliveries.push(webhook_deliveries::Model {
                    event_id: Some(event.id),
                    message_id: IdKind::Event.encode(event.id),
                    event_type: event.event_type.clone(),
                    ..new_delivery(event.clinic_id, endpoint.id, now)
                });
            }
        }
    }
    let queued = deliveries.len();
    for chunk in deliveries.chunks(500) {
        webhook_deliveries::Entity::insert_many(
            chunk
                .iter()
                .cloned()
                .map(IntoActiveModel::into_active_model),
        )
        .exec_without_returning(txn)
        .await?;
    }
    Ok(queued)
}

/// Claims up to `limit` due deliveries (of every clinic) for `lease`; a
/// delivery of an event still waiting for its number waits with it.
pub async fn claim(
    db: &Db,
    limit: u64,
    lease: Duration,
) -> Result<Vec<webhook_deliveries::Model>, DbErr> {
    let now = db::now();
    let backend = db.backend();
    let lock = if backend == DbBackend::Postgres {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let sql = format!(
        "UPDATE webhook_deliveries SET locked_until = ?, attempts = attempts + 1 \
         WHERE id IN (SELECT id FROM webhook_deliveries \
                      WHERE status = ? AND next_attempt_at <= ? AND (locked_until IS NULL OR locked_until < ?) \
                        AND NOT EXISTS (SELECT 1 FROM events WHERE events.id = webhook_deliveries.event_id AND events.sequence < 0) \
                      ORDER BY next_attempt_at LIMIT ?{lock}) \
         RETURNING *"
    );
    let txn = db.begin_write().await?;
    let rows = txn
        .query_all_raw(db::statement(
            backend,
            &sql,
            vec![
                (now + lease).into(),
                status::PENDING.into(),
                now.into(),
                now.into(),
                (limit as i64).into(),
            ],
        ))
        .await?;
    let claimed = rows
        .iter()
        .map(|row| webhook_deliveries::Model::from_query_result(row, ""))
        .collect::<Result<Vec<_>, _>>()?;
    txn.commit().await?;
    Ok(claimed)
}

/// The endpoints and events a batch of claimed deliveries needs, read with
/// one statement each per clinic instead of two per delivery.
#[derive(Debug, Default)]
pub struct ClaimedRows {
    endpoints: HashMap<Uuid, webhook_endpoints::Model>,
    events: HashMap<Uuid, events::Model>,
}

impl ClaimedRows {
    /// The endpoint `delivery` goes to (`None` once it was deleted).
    pub fn endpoint_of(
        &self,
        delivery: &webhook_deliveries::Model,
    ) -> Option<&webhook_endpoints::Model> {
        self.endpoints
            .get(&delivery.endpoint_id)
            .filter(|endpoint| endpoint.clinic_id == delivery.clinic_id)
    }

    /// The event `delivery` carries (`None` for a test message, or once the
    /// event was deleted).
    fn event_of(&self, delivery: &webhook_deliveries::Model) -> Option<&events::Model> {
        delivery
            .event_id
            .and_then(|id| self.events.get(&id))
            .filter(|event| event.clinic_id == delivery.clinic_id)
    }
}

/// Reads the endpoints and events of `claimed`.
pub async fn rows_of(db: &Db, claimed: &[webhook_deliveries::Model]) -> Result<ClaimedRows, DbErr> {
    let mut by_clinic: HashMap<Uuid, (Vec<Uuid>, Vec<Uuid>)> = HashMap::new();
    for delivery in claimed {
        let (endpoints, events) = by_clinic.entry(delivery.clinic_id).or_default();
        endpoints.push(delivery.endpoint_id);
        events.extend(delivery.event_id.filter(|_| delivery.payload.is_none()));
    }
    let mut rows = ClaimedRows::default();
    for (clinic, (mut endpoint_ids, mut event_ids)) in by_clinic {
        let system = Principal::system(clinic);
        endpoint_ids.sort_unstable();
        endpoint_ids.dedup();
        for endpoint in system
            .select::<webhook_endpoints::Entity>()
            .filter(webhook_endpoints::Column::Id.is_in(endpoint_ids))
            .all(db.conn())
            .await?
        {
            rows.endpoints.insert(endpoint.id, endpoint);
        }
        event_ids.sort_unstable();
        event_ids.dedup();
        // A claim is at most 200 deliveries: well within one statement's binds.
        if !event_ids.is_empty() {
            for event in system
                .select::<events::Entity>()
                .filter(events::Column::Id.is_in(event_ids))
                .all(db.conn())
                .await?
            {
                rows.events.insert(event.id, event);
            }
        }
    }
    Ok(rows)
}

/// Puts a claimed delivery off by `by`, as if this attempt never happened.
pub async fn postpone(
    db: &Db,
    delivery: &webhook_deliveries::Model,
    by: Duration,
) -> Result<(), DbErr> {
    let system = Principal::system(delivery.clinic_id);
    let txn = db.begin_write().await?;
    system
        .update_rows::<webhook_deliveries::Entity>()
        .col_expr(
            webhook_deliveries::Column::NextAttemptAt,
            Expr::value(db::now() + by),
        )
        .col_expr(
            webhook_deliveries::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            webhook_deliveries::Column::Attempts,
            Expr::col(webhook_deliveries::Column::Attempts).sub(1),
        )
        .filter(webhook_deliveries::Column::Id.eq(delivery.id))
        .exec(&*txn)
        .await?;
    txn.commit().await
}

/// Gives back the leases of claimed deliveries whose send was cut short (at
/// shutdown), so another worker takes them at once rather than when the lease
/// runs out. The receiver may have seen the cut-short attempt: the next one
/// carries the same `webhook-id`, by which receivers deduplicate.
pub async fn release(db: &Db, deliveries: &[webhook_deliveries::Model]) -> Result<(), DbErr> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let txn = db.begin_write().await?;
    for delivery in deliveries {
        Principal::system(delivery.clinic_id)
            .update_rows::<webhook_deliveries::Entity>()
            .col_expr(
                webhook_deliveries::Column::LockedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(webhook_deliveries::Column::Id.eq(delivery.id))
            .filter(webhook_deliveries::Column::Status.eq(status::PENDING))
            .exec(&*txn)
            .await?;
    }
    txn.commit().await
}

/// The body of a delivery: the event's envelope (test messages carry their
/// own), with names, contact details and comments only for endpoints that
/// opted in. `None` when the event no longer exists.
pub async fn body(
    db: &Db,
    delivery: &webhook_deliveries::Model,
    endpoint: &webhook_endpoints::Model,
    rows: &ClaimedRows,
) -> Result<Option<Value>, DbErr> {
    if let Some(payload) = &delivery.payload {
        return Ok(Some(payload.clone()));
    }
    let Some(event) = rows.event_of(delivery) else {
        return Ok(None);
    };
    let mut body = log::envelope(event);
    if endpoint.include_phi {
        let system = Principal::system(delivery.clinic_id);
        match Event::decode(&event.event_type, &event.data) {
            Ok(typed) => add_phi(&system, db.conn(), &typed, &mut body["data"]).await?,
            Err(error) => tracing::warn!(%error, "sending an event without PHI"),
        }
    }
    Ok(Some(body))
}

/// Adds the patient's identity and contact details, and the text of
/// summaries and comments, to an event's data.
async fn add_phi<C: ConnectionTrait>(
    who: &Principal,
    conn: &C,
    event: &Event,
    data: &mut Value,
) -> Result<(), DbErr> {
    use entity::{feedback, patients, touchpoints};
    if let Some(patient) = event.patient_id()
        && let Some(patient) = who.find_row::<patients::Entity, _>(conn, patient.0).await?
    {
        data["patient"] = json!({
            "givenName": patient.given_name,
            "familyName": patient.family_name,
            "email": patient.email,
            "phone": patient.phone,
            "externalId": patient.external_id,
        });
    }
    if let Some(id) = event.touchpoint_id()
        && let Some(touchpoint) = who.find_row::<touchpoints::Entity, _>(conn, id.0).await?
    {
        data["summary"] = json!(touchpoint.summary);
    }
    if let Some(id) = event.feedback_id()
        && let Some(feedback) = who.find_row::<feedback::Entity, _>(conn, id.0).await?
    {
        data["comment"] = json!(feedback.comment);
    }
    if let Some(id) = event.follow_up_id()
        && let Some(follow_up) = who
            .find_row::<entity::follow_ups::Entity, _>(conn, id.0)
            .await?
    {
        data["message"] = json!(follow_up.message);
    }
    Ok(())
}

/// How one attempt went.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<u16>,
    pub latency_ms: i32,
    pub error: Option<String>,
    /// What the receiver asked for with `Retry-After` (429, 503).
    pub retry_after: Option<Duration>,
}

impl Outcome {
    /// The receiver accepted the delivery (2xx).
    pub fn accepted(&self) -> bool {
        self.status_code.is_some_and(|c| (200..300).contains(&c))
    }
}

/// What became of a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Delivered,
    Retrying,
    Failed,
    /// The receiver answered 410 Gone: the endpoint is disabled.
    Gone,
}

/// Records an attempt and settles the delivery: delivered on 2xx; endpoint
/// disabled on 410; retried per `schedule` (or the receiver's Retry-After)
/// otherwise, until the schedule is exhausted. Repeated exhaustion disables
/// the endpoint and emits `webhook_endpoint.disabled`.
pub async fn settle(
    db: &Db,
    bus: &EventBus,
    delivery: &webhook_deliveries::Model,
    endpoint: &webhook_endpoints::Model,
    outcome: &Outcome,
    schedule: &[std::time::Duration],
) -> Result<Settled, DbErr> {
    if outcome.accepted() {
        let accepted = Accepted {
            delivery,
            outcome,
            endpoint_exhausted: endpoint.exhausted_deliveries,
        };
        settle_accepted(db, &[accepted]).await?;
        return Ok(Settled::Delivered);
    }
    let system = Principal::system(delivery.clinic_id);
    let now = db::now();
    let txn = db.begin_write().await?;
    webhook_attempts::Entity::insert(
        webhook_attempts::Model {
            id: ids::new_id(),
            clinic_id: delivery.clinic_id,
            delivery_id: delivery.id,
            attempted_at: outcome.attempted_at,
            status_code: outcome.status_code.map(i32::from),
            latency_ms: outcome.latency_ms,
            error: outcome.error.clone(),
        }
        .into_active_model(),
    )
    .exec_without_returning(&*txn)
    .await?;
    let gone = outcome.status_code == Some(410);
    let next_index = delivery.retry_index + 1;
    let settled = if gone {
        Settled::Gone
    } else if (next_index as usize) < schedule.len() {
        Settled::Retrying
    } else {
        Settled::Failed
    };
    let next_attempt_at = match settled {
        Settled::Retrying => {
            let wait = outcome.retry_after.unwrap_or_else(|| {
                Duration::from_std(schedule[next_index as usize]).unwrap_or_default()
            });
            now + wait.min(Duration::hours(24))
        }
        _ => delivery.next_attempt_at,
    };
    let new_status = if settled == Settled::Retrying {
        status::PENDING
    } else {
        status::FAILED
    };
    system
        .update_rows::<webhook_deliveries::Entity>()
        .col_expr(webhook_deliveries::Column::Status, Expr::value(new_status))
        .col_expr(
            webhook_deliveries::Column::RetryIndex,
            Expr::value(if settled == Settled::Retrying {
                next_index
            } else {
                delivery.retry_index
            }),
        )
        .col_expr(
            webhook_deliveries::Column::NextAttemptAt,
            Expr::value(next_attempt_at),
        )
        .col_expr(
            webhook_deliveries::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            webhook_deliveries::Column::LastAttemptAt,
            Expr::value(outcome.attempted_at),
        )
        .col_expr(
            webhook_deliveries::Column::LastStatusCode,
            Expr::value(outcome.status_code.map(i32::from)),
        )
        .col_expr(
            webhook_deliveries::Column::LastError,
            Expr::value(outcome.error.clone()),
        )
        .filter(webhook_deliveries::Column::Id.eq(delivery.id))
        .exec(&*txn)
        .await?;
    let mut outbox = Outbox::default();
    match settled {
        Settled::Gone => {
            disable(
                &*txn,
                &system,
                &mut outbox,
                delivery.endpoint_id,
                "the receiver answered 410 Gone",
                now,
            )
            .await?;
        }
        Settled::Failed => {
            // Incremented in place: deliveries of one endpoint settle concurrently,
            // and the row lock taken here orders them on PostgreSQL.
            system
                .update_rows::<webhook_endpoints::Entity>()
                .col_expr(
                    webhook_endpoints::Column::ExhaustedDeliveries,
                    Expr::col(webhook_endpoints::Column::ExhaustedDeliveries).add(1),
                )
                .filter(webhook_endpoints::Column::Id.eq(delivery.endpoint_id))
                .exec(&*txn)
                .await?;
            let endpoint = system
                .find_row::<webhook_endpoints::Entity, _>(&*txn, delivery.endpoint_id)
                .await?;
            if let Some(endpoint) = endpoint
                && endpoint.exhausted_deliveries >= DISABLE_AFTER_EXHAUSTED
                && endpoint.enabled
            {
                let reason = format!(
                    "{} deliveries in a row exhausted their retries",
                    endpoint.exhausted_deliveries
                );
                disable(&*txn, &system, &mut outbox, endpoint.id, &reason, now).await?;
            }
        }
        Settled::Delivered | Settled::Retrying => {}
    }
    // The endpoint's disabling is an event like any other: audited, numbered
    // and fanned out to the clinic's other endpoints.
    let prepared = outbox.prepare(delivery.clinic_id, now);
    let queued = fan_out(&*txn, &system, &prepared, now).await?;
    let appended = outbox::append(&*txn, &system, prepared).await?;
    txn.commit().await?;
    appended.publish(db, bus).await;
    if queued > 0 {
        bus.deliveries.notify_one();
    }
    Ok(settled)
}

/// A send the receiver accepted (2xx), waiting to be settled with others.
#[derive(Debug)]
pub struct Accepted<'a> {
    pub delivery: &'a webhook_deliveries::Model,
    pub outcome: &'a Outcome,
    /// The endpoint's exhausted deliveries when the delivery was claimed.
    pub endpoint_exhausted: i32,
}

/// Settles accepted sends (an attempt row each, the deliveries delivered,
/// their endpoints' exhausted counts reset; [`settle`] settles a single one
/// through here), in one transaction of three statements for all of them (one more for each clinic
/// beyond the first, and for each endpoint with a count to reset).
pub async fn settle_accepted(db: &Db, accepted: &[Accepted<'_>]) -> Result<(), DbErr> {
    if accepted.is_empty() {
        return Ok(());
    }
    let now = db::now();
    let txn = db.begin_write().await?;
    webhook_attempts::Entity::insert_many(accepted.iter().map(|a| {
        webhook_attempts::Model {
            id: ids::new_id(),
            clinic_id: a.delivery.clinic_id,
            delivery_id: a.delivery.id,
            attempted_at: a.outcome.attempted_at,
            status_code: a.outcome.status_code.map(i32::from),
            latency_ms: a.outcome.latency_ms,
            error: None,
        }
        .into_active_model()
    }))
    .exec_without_returning(&*txn)
    .await?;
    // Each delivery keeps its own attempt time and status code.
    let per_delivery =
        |group: &[&Accepted<'_>], value: fn(&Accepted<'_>) -> sea_orm::Value, column| {
            let mut case = sea_orm::sea_query::CaseStatement::new();
            for a in group {
                case = case.case(
                    webhook_deliveries::Column::Id.eq(a.delivery.id),
                    Expr::value(value(a)),
                );
            }
            case.finally(Expr::col(column))
        };
    let mut by_clinic: HashMap<Uuid, Vec<&Accepted<'_>>> = HashMap::new();
    for a in accepted {
        by_clinic.entry(a.delivery.clinic_id).or_default().push(a);
    }
    for (clinic, group) in &by_clinic {
        Principal::system(*clinic)
            .update_rows::<webhook_deliveries::Entity>()
            .col_expr(
                webhook_deliveries::Column::Status,
                Expr::value(status::DELIVERED),
            )
            .col_expr(
                webhook_deliveries::Column::LockedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(
                webhook_deliveries::Column::LastAttemptAt,
                per_delivery(
                    group,
                    |a| a.outcome.attempted_at.into(),
                    webhook_deliveries::Column::LastAttemptAt,
                )
                .into(),
            )
            .col_expr(
                webhook_deliveries::Column::LastStatusCode,
                per_delivery(
                    group,
                    |a| a.outcome.status_code.map(i32::from).into(),
                    webhook_deliveries::Column::LastStatusCode,
                )
                .into(),
            )
            .col_expr(
                webhook_deliveries::Column::LastError,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                webhook_deliveries::Column::DeliveredAt,
                Expr::value(Some(now)),
            )
            .filter(webhook_deliveries::Column::Id.is_in(group.iter().map(|a| a.delivery.id)))
            .exec(&*txn)
            .await?;
    }
    // Only an endpoint that had exhausted deliveries when these were claimed
    // has a count to reset: one exhausted meanwhile is reset by the next
    // delivery delivered.
    let mut exhausted: Vec<(Uuid, Uuid)> = accepted
        .iter()
        .filter(|a| a.endpoint_exhausted != 0)
        .map(|a| (a.delivery.clinic_id, a.delivery.endpoint_id))
        .collect();
    exhausted.sort_unstable();
    exhausted.dedup();
    for (clinic, endpoint) in exhausted {
        Principal::system(clinic)
            .update_rows::<webhook_endpoints::Entity>()
            .col_expr(
                webhook_endpoints::Column::ExhaustedDeliveries,
                Expr::value(0),
            )
            .filter(webhook_endpoints::Column::Id.eq(endpoint))
            .filter(webhook_endpoints::Column::ExhaustedDeliveries.ne(0))
            .exec(&*txn)
            .await?;
    }
    txn.commit().await
}

async fn disable<C: ConnectionTrait>(
    txn: &C,
    system: &Principal,
    outbox: &mut Outbox,
    endpoint: Uuid,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let updated = system
        .update_rows::<webhook_endpoints::Entity>()
        .col_expr(webhook_endpoints::Column::Enabled, Expr::value(false))
        .col_expr(
            webhook_endpoints::Column::DisabledReason,
            Expr::value(reason),
        )
        .col_expr(webhook_endpoints::Column::UpdatedAt, Expr::value(now))
        .filter(webhook_endpoints::Column::Id.eq(endpoint))
        .filter(webhook_endpoints::Column::Enabled.eq(true))
        .exec(txn)
        .await?;
    if updated.rows_affected > 0 {
        outbox.emit(Event::WebhookEndpointDisabled(EndpointDisabled {
            endpoint_id: WebhookEndpointId(endpoint),
            reason: reason.to_string(),
        }));
    }
    Ok(())
}

/// Queues `delivery` to be sent again from the start of the retry schedule,
/// with the same `webhook-id`. Returns it as it is now.
pub async fn requeue<C: ConnectionTrait>(
    txn: &C,
    mut delivery: webhook_deliveries::Model,
    now: DateTime<Utc>,
) -> Result<webhook_deliveries::Model, DbErr> {
    use sea_orm::ActiveModelTrait;
    delivery.status = status::PENDING.into();
    delivery.retry_index = 0;
    delivery.next_attempt_at = now;
    delivery.locked_until = None;
    delivery
        .clone()
        .into_active_model()
        .reset_all()
        .update(txn)
        .await?;
    Ok(delivery)
}
