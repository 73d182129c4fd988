//! Webhook endpoints and deliveries: the rules and the rows. Sending lives in
//! [`crate::webhooks`].

use chrono::{DateTime, Duration, Utc};
use entity::{events, webhook_attempts, webhook_deliveries, webhook_endpoints};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, ExprTrait,
    IntoActiveModel, QueryFilter, QueryOrder, Select, sea_query::Expr,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    DomainError, DomainResult, Store,
    audit::AuditEntry,
    page::{Keyset, Page, PageRequest, Sort, SortKey, finish},
    validate,
};
use crate::{
    auth::{Permission, Principal},
    db::statement,
    events::EventType,
    ids::{self, IdKind},
    webhooks::{signing, targets},
};

/// Where a delivery stands.
pub mod status {
    pub const PENDING: &str = "PENDING";
    pub const DELIVERED: &str = "DELIVERED";
    pub const FAILED: &str = "FAILED";
}

/// The event type of test messages.
pub const TEST_EVENT: &str = "webhook.test";

/// Exhausted deliveries in a row after which an endpoint is disabled.
pub const DISABLE_AFTER_EXHAUSTED: i32 = 5;

fn require(who: &Principal) -> DomainResult<()> {
    super::access::require(who, Permission::WebhooksManage, "managing webhooks")
}

/// The event types an endpoint wants; empty means all.
pub fn event_types_of(endpoint: &webhook_endpoints::Model) -> Vec<String> {
    serde_json::from_value(endpoint.event_types.clone()).unwrap_or_default()
}

fn wants(types: &[String], event_type: &str) -> bool {
    types.is_empty() || types.iter().any(|t| t == event_type)
}

/// An endpoint as a client describes it.
#[derive(Debug, Clone, Default)]
pub struct EndpointFields {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub description: Option<Option<String>>,
    pub include_phi: Option<bool>,
    pub enabled: Option<bool>,
}

async fn check_url(url: &str, allow_private: bool) -> DomainResult<String> {
    let url = validate::required_text("url", url, 2048)?;
    let parsed =
        targets::check_url(&url, allow_private).map_err(|why| DomainError::invalid("url", why))?;
    targets::check_resolves(&parsed, allow_private)
        .await
        .map_err(|why| DomainError::invalid("url", why))?;
    Ok(parsed.to_string())
}

fn check_types(types: &[String]) -> DomainResult<Vec<String>> {
    let parsed = EventType::parse_list("eventTypes", types)?;
    let mut names: Vec<String> = parsed.iter().map(|t| t.as_str().to_string()).collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Creates an endpoint; returns it and its signing secret (shown once).
pub async fn create_endpoint(
    store: &Store,
    who: &Principal,
    fields: EndpointFields,
    allow_private: bool,
) -> DomainResult<(webhook_endpoints::Model, String)> {
    require(who)?;
    let url = check_url(fields.url.as_deref().unwrap_or_default(), allow_private).await?;
    let types = check_types(&fields.event_types.unwrap_or_default())?;
    let description = validate::optional_text(
        "description",
        fields.description.flatten().as_deref(),
        500,
        false,
    )?;
    let mut write = store.write(who).await?;
    let secret = signing::new_secret();
    let endpoint = webhook_endpoints::Model {
        id: ids::new_id(),
        clinic_id: who.clinic_id,
        url,
        description,
        event_types: json!(types),
        secret: secret.clone(),
        previous_secret: None,
        previous_secret_expires_at: None,
        include_phi: fields.include_phi.unwrap_or(false),
        enabled: fields.enabled.unwrap_or(true),
        disabled_reason: None,
        exhausted_deliveries: 0,
        created_at: write.now,
        updated_at: write.now,
    };
    webhook_endpoints::Entity::insert(endpoint.clone().into_active_model())
        .exec_without_returning(&*write.txn)
        .await?;
    write.audit(AuditEntry::new(
        "webhook_endpoint.created",
        IdKind::WebhookEndpoint,
        endpoint.id,
        None,
    ));
    write.commit().await?;
    Ok((endpoint, secret))
}

/// Changes an endpoint. Re-enabling clears its failure count.
pub async fn update_endpoint(
    store: &Store,
    who: &Principal,
    id: Uuid,
    fields: EndpointFields,
    allow_private: bool,
) -> DomainResult<webhook_endpoints::Model> {
    require(who)?;
    let url = match &fields.url {
        Some(url) => Some(check_url(url, allow_private).await?),
        None => None,
    };
    let mut write = store.write(who).await?;
    let mut endpoint = who
        .get::<webhook_endpoints::Entity, _>(&*write.txn, id, "webhook endpoint")
        .await
        .map_err(|e| e.referenced_by("endpointId"))?;
    if let Some(url) = url {
        endpoint.url = url;
    }
    if let Some(types) = fields.event_types {
        endpoint.event_types = json!(check_types(&types)?);
    }
    if let Some(description) = fields.description {
        endpoint.description =
            validate::optional_text("description", description.as_deref(), 500, false)?;
    }
    if let Some(include_phi) = fields.include_phi {
        endpoint.include_phi = include_phi;
    }
    if let Some(enabled) = fields.enabled {
        if enabled && !endpoint.enabled {
            endpoint.exhausted_deliveries = 0;
            endpoint.disabled_reason = None;
        }
        if !enabled && endpoint.enabled {
            endpoint.disabled_reason = Some("disabled by a person".into());
        }
        endpoint.enabled = enabled;
    }
    endpoint.updated_at = write.now;
    endpoint
        .clone()
        .into_active_model()
        .reset_all()
        .update(&*write.txn)
        .await?;
    write.audit(AuditEntry::new(
        "webhook_endpoint.updated",
        IdKind::WebhookEndpoint,
        id,
        None,
    ));
    write.commit().await?;
    Ok(endpoint)
}

/// Deletes an endpoint and its delivery history.
pub async fn delete_endpoint(store: &Store, who: &Principal, id: Uuid) -> DomainResult<()> {
    require(who)?;
    let mut write = store.write(who).await?;
    who.get::<webhook_endpoints::Entity, _>(&*write.txn, id, "webhook endpoint")
        .await
        .map_err(|e| e.referenced_by("endpointId"))?;
    who.delete_rows::<webhook_endpoints::Entity>()
        .filter(webhook_endpoints::Column::Id.eq(id))
        .exec(&*write.txn)
        .await?;
    write.audit(AuditEntry::new(
        "webhook_endpoint.deleted",
        IdKind::WebhookEndpoint,
        id,
        None,
    ));
    write.commit().await?;
    Ok(())
}

/// Replaces the signing secret; the old one keeps signing (alongside) for
/// `grace`, so receivers can switch without losing messages.
pub async fn rotate_secret(
    store: &Store,
    who: &Principal,
    id: Uuid,
    grace: Duration,
) -> DomainResult<(webhook_endpoints::Model, String)> {
    require(who)?;
    if grace < Duration::zero() || grace > Duration::days(7) {
        return Err(DomainError::invalid(
            "gracePeriodHours",
            "must be between 0 and 168 hours",
        ));
    }
    let mut write = store.write(who).await?;
    let mut endpoint = who
        .get::<webhook_endpoints::Entity, _>(&*write.txn, id, "webhook endpoint")
        .await
        .map_err(|e| e.referenced_by("endpointId"))?;
    let secret = signing::new_secret();
    endpoint.previous_secret = Some(std::mem::replace(&mut endpoint.secret, secret.clone()));
    endpoint.previous_secret_expires_at = Some(write.now + grace);
    endpoint.updated_at = write.now;
    endpoint
        .clone()
        .into_active_model()
        .reset_all()
        .update(&*write.txn)
        .await?;
    write.audit(AuditEntry::new(
        "webhook_endpoint.secret_rotated",
        IdKind::WebhookEndpoint,
        id,
        None,
    ));
    write.commit().await?;
    Ok((endpoint, secret))
}

/// The clinic's endpoints, oldest first.
pub async fn endpoints(
    store: &Store,
    who: &Principal,
) -> DomainResult<Vec<webhook_endpoints::Model>> {
    require(who)?;
    Ok(who
        .select::<webhook_endpoints::Entity>()
        .order_by_asc(webhook_endpoints::Column::CreatedAt)
        .all(store.db.conn())
        .await?)
}

fn new_delivery(clinic: Uuid, endpoint: Uuid, now: DateTime<Utc>) -> webhook_deliveries::Model {
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

/// Queues a delivery of every event to every enabled endpoint of the clinic
/// that wants it, in the writing transaction. Returns how many were queued.
pub(crate) async fn fan_out<C: ConnectionTrait>(
    txn: &C,
    who: &Principal,
    written: &[events::Model],
    now: DateTime<Utc>,
) -> DomainResult<usize> {
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
        for event in written.iter().filter(|e| wants(&types, &e.event_type)) {
            deliveries.push(webhook_deliveries::Model {
                event_id: Some(event.id),
                message_id: IdKind::Event.encode(event.id),
                event_type: event.event_type.clone(),
                ..new_delivery(event.clinic_id, endpoint.id, now)
            });
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

/// Queues a test message to an endpoint.
pub async fn send_test(
    store: &Store,
    who: &Principal,
    endpoint_id: Uuid,
) -> DomainResult<webhook_deliveries::Model> {
    require(who)?;
    let mut write = store.write(who).await?;
    let endpoint = who
        .get::<webhook_endpoints::Entity, _>(&*write.txn, endpoint_id, "webhook endpoint")
        .await
        .map_err(|e| e.referenced_by("endpointId"))?;
    let message_id = format!("msg_{}", ids::new_id().simple());
    let delivery = webhook_deliveries::Model {
        message_id: message_id.clone(),
        event_type: TEST_EVENT.into(),
        payload: Some(json!({
            "id": message_id,
            "type": TEST_EVENT,
            "sequence": null,
            "occurredAt": crate::events::timestamp(write.now),
            "clinicId": IdKind::Clinic.encode(who.clinic_id),
            "data": { "endpointId": IdKind::WebhookEndpoint.encode(endpoint.id), "message": "Journeymap test webhook" },
        })),
        ..new_delivery(who.clinic_id, endpoint.id, write.now)
    };
    webhook_deliveries::Entity::insert(delivery.clone().into_active_model())
        .exec_without_returning(&*write.txn)
        .await?;
    write.audit(AuditEntry::new(
        "webhook.test_sent",
        IdKind::WebhookEndpoint,
        endpoint.id,
        None,
    ));
    write.commit().await?;
    store.bus.deliveries.notify_one();
    Ok(delivery)
}

/// Sends a delivery again from the start of the retry schedule, with the
/// same `webhook-id`.
pub async fn redeliver(
    store: &Store,
    who: &Principal,
    id: Uuid,
) -> DomainResult<webhook_deliveries::Model> {
    require(who)?;
    let mut write = store.write(who).await?;
    let mut delivery = who
        .get::<webhook_deliveries::Entity, _>(&*write.txn, id, "webhook delivery")
        .await
        .map_err(|e| e.referenced_by("deliveryId"))?;
    // A worker holding the lease is sending it now: releasing the lease
    // would let a second worker send it at the same time.
    if delivery.locked_until.is_some_and(|until| until > write.now) {
        return Err(DomainError::conflict_on(
            "deliveryId",
            "the delivery is being attempted right now; try again in a few seconds",
        ));
    }
    delivery.status = status::PENDING.into();
    delivery.retry_index = 0;
    delivery.next_attempt_at = write.now;
    delivery.locked_until = None;
    delivery
        .clone()
        .into_active_model()
        .reset_all()
        .update(&*write.txn)
        .await?;
    write.audit(AuditEntry::new(
        "webhook.redelivered",
        IdKind::WebhookDelivery,
        id,
        None,
    ));
    write.commit().await?;
    store.bus.deliveries.notify_one();
    Ok(delivery)
}

/// How to narrow the delivery history.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub endpoint_id: Option<Uuid>,
    pub status: Option<String>,
}

fn deliveries_filtered(
    who: &Principal,
    filter: &DeliveryFilter,
) -> Select<webhook_deliveries::Entity> {
    let mut select = who.select::<webhook_deliveries::Entity>();
    if let Some(endpoint) = filter.endpoint_id {
        select = select.filter(webhook_deliveries::Column::EndpointId.eq(endpoint));
    }
    if let Some(status) = &filter.status {
        select = select.filter(webhook_deliveries::Column::Status.eq(status.as_str()));
    }
    select
}

/// The cursor of a delivery.
pub fn delivery_keyset(delivery: &webhook_deliveries::Model) -> Keyset {
    Keyset::at(delivery.created_at, delivery.id)
}

/// One page of deliveries, newest first.
pub async fn deliveries(
    store: &Store,
    who: &Principal,
    filter: &DeliveryFilter,
    page: &PageRequest,
) -> DomainResult<Page<webhook_deliveries::Model>> {
    require(who)?;
    let key = SortKey {
        at: Some(webhook_deliveries::Column::CreatedAt),
        id: webhook_deliveries::Column::Id,
        sort: Sort::Descending,
    };
    let rows = key
        .apply(deliveries_filtered(who, filter), page)
        .all(store.db.conn())
        .await?;
    Ok(finish(rows, page))
}

/// How many deliveries match.
pub async fn count_deliveries(
    store: &Store,
    who: &Principal,
    filter: &DeliveryFilter,
) -> DomainResult<u64> {
    use sea_orm::PaginatorTrait;
    require(who)?;
    Ok(deliveries_filtered(who, filter)
        .count(store.db.conn())
        .await?)
}

/// Claims up to `limit` due deliveries (of every clinic) for `lease`: on
/// PostgreSQL with `FOR UPDATE SKIP LOCKED`, so replicas share the work
/// without sending anything twice at once.
pub async fn claim(
    store: &Store,
    limit: u64,
    lease: Duration,
) -> DomainResult<Vec<webhook_deliveries::Model>> {
    let now = super::now();
    let backend = store.db.backend();
    let lock = if backend == DbBackend::Postgres {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let sql = format!(
        "UPDATE webhook_deliveries SET locked_until = ?, attempts = attempts + 1 \
         WHERE id IN (SELECT id FROM webhook_deliveries \
                      WHERE status = ? AND next_attempt_at <= ? AND (locked_until IS NULL OR locked_until < ?) \
                      ORDER BY next_attempt_at LIMIT ?{lock}) \
         RETURNING *"
    );
    let txn = store.db.begin_write().await?;
    let rows = txn
        .query_all_raw(statement(
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
        .map(|row| {
            <webhook_deliveries::Model as sea_orm::FromQueryResult>::from_query_result(row, "")
        })
        .collect::<Result<Vec<_>, _>>()?;
    txn.commit().await?;
    Ok(claimed)
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
    store: &Store,
    delivery: &webhook_deliveries::Model,
    outcome: &Outcome,
    schedule: &[std::time::Duration],
) -> DomainResult<Settled> {
    let system = Principal::system(delivery.clinic_id);
    let mut write = store.write(&system).await?;
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
    .exec_without_returning(&*write.txn)
    .await?;
    let ok = outcome.status_code.is_some_and(|c| (200..300).contains(&c));
    let gone = outcome.status_code == Some(410);
    let next_index = delivery.retry_index + 1;
    let settled = if ok {
        Settled::Delivered
    } else if gone {
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
            write.now + wait.min(Duration::hours(24))
        }
        _ => delivery.next_attempt_at,
    };
    let new_status = match settled {
        Settled::Delivered => status::DELIVERED,
        Settled::Retrying => status::PENDING,
        Settled::Failed | Settled::Gone => status::FAILED,
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
        .col_expr(
            webhook_deliveries::Column::DeliveredAt,
            Expr::value(if ok {
                Some(write.now)
            } else {
                delivery.delivered_at
            }),
        )
        .filter(webhook_deliveries::Column::Id.eq(delivery.id))
        .exec(&*write.txn)
        .await?;
    match settled {
        Settled::Delivered => {
            system
                .update_rows::<webhook_endpoints::Entity>()
                .col_expr(
                    webhook_endpoints::Column::ExhaustedDeliveries,
                    Expr::value(0),
                )
                .filter(webhook_endpoints::Column::Id.eq(delivery.endpoint_id))
                .filter(webhook_endpoints::Column::ExhaustedDeliveries.ne(0))
                .exec(&*write.txn)
                .await?;
        }
        Settled::Gone => {
            disable(
                &mut write,
                delivery.endpoint_id,
                "the receiver answered 410 Gone",
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
                .exec(&*write.txn)
                .await?;
            let endpoint = system
                .get::<webhook_endpoints::Entity, _>(
                    &*write.txn,
                    delivery.endpoint_id,
                    "webhook endpoint",
                )
                .await?;
            let exhausted = endpoint.exhausted_deliveries;
            if exhausted >= DISABLE_AFTER_EXHAUSTED && endpoint.enabled {
                disable(
                    &mut write,
                    endpoint.id,
                    &format!("{exhausted} deliveries in a row exhausted their retries"),
                )
                .await?;
            }
        }
        Settled::Retrying => {}
    }
    write.commit().await?;
    Ok(settled)
}

async fn disable(write: &mut super::Write<'_>, endpoint: Uuid, reason: &str) -> DomainResult<()> {
    let updated = write
        .who
        .update_rows::<webhook_endpoints::Entity>()
        .col_expr(webhook_endpoints::Column::Enabled, Expr::value(false))
        .col_expr(
            webhook_endpoints::Column::DisabledReason,
            Expr::value(reason),
        )
        .col_expr(webhook_endpoints::Column::UpdatedAt, Expr::value(write.now))
        .filter(webhook_endpoints::Column::Id.eq(endpoint))
        .filter(webhook_endpoints::Column::Enabled.eq(true))
        .exec(&*write.txn)
        .await?;
    if updated.rows_affected > 0 {
        let id = IdKind::WebhookEndpoint.encode(endpoint);
        write.emit(
            EventType::WebhookEndpointDisabled,
            id.clone(),
            json!({ "endpointId": id, "reason": reason }),
        );
    }
    Ok(())
}

/// The attempts of deliveries, oldest first.
pub async fn attempts_of<C: ConnectionTrait>(
    conn: &C,
    who: &Principal,
    delivery: Uuid,
) -> DomainResult<Vec<webhook_attempts::Model>> {
    Ok(who
        .select::<webhook_attempts::Entity>()
        .filter(webhook_attempts::Column::DeliveryId.eq(delivery))
        .order_by_asc(webhook_attempts::Column::AttemptedAt)
        .all(conn)
        .await?)
}

/// The body of a delivery: the event's envelope (test messages carry their
/// own), with names, contact details and comments only for endpoints that
/// opted in.
pub async fn body_of(
    store: &Store,
    delivery: &webhook_deliveries::Model,
    endpoint: &webhook_endpoints::Model,
) -> DomainResult<Option<Value>> {
    if let Some(payload) = &delivery.payload {
        return Ok(Some(payload.clone()));
    }
    let Some(event_id) = delivery.event_id else {
        return Ok(None);
    };
    let system = Principal::system(delivery.clinic_id);
    let conn = store.db.conn();
    let Some(event) = system
        .select::<events::Entity>()
        .filter(events::Column::Id.eq(event_id))
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    let mut body = crate::events::envelope(&event);
    if endpoint.include_phi {
        enrich(&system, conn, &mut body).await?;
    }
    Ok(Some(body))
}

/// Adds the patient's identity and contact details, and the text of
/// summaries and comments, to an event's data.
async fn enrich<C: ConnectionTrait>(
    who: &Principal,
    conn: &C,
    body: &mut Value,
) -> DomainResult<()> {
    use entity::{feedback, patients, touchpoints};
    let data = &mut body["data"];
    if let Some(patient) = data["patientId"]
        .as_str()
        .and_then(|p| ids::decode_as(IdKind::Patient, p).ok())
        && let Some(patient) = who
            .select::<patients::Entity>()
            .filter(patients::Column::Id.eq(patient))
            .one(conn)
            .await?
    {
        data["patient"] = json!({
            "givenName": patient.given_name,
            "familyName": patient.family_name,
            "email": patient.email,
            "phone": patient.phone,
            "externalId": patient.external_id,
        });
    }
    if let Some(id) = data["touchpointId"]
        .as_str()
        .and_then(|t| ids::decode_as(IdKind::Touchpoint, t).ok())
        && let Some(touchpoint) = who
            .select::<touchpoints::Entity>()
            .filter(touchpoints::Column::Id.eq(id))
            .one(conn)
            .await?
    {
        data["summary"] = json!(touchpoint.summary);
    }
    if let Some(id) = data["feedbackId"]
        .as_str()
        .and_then(|f| ids::decode_as(IdKind::Feedback, f).ok())
        && let Some(feedback) = who
            .select::<feedback::Entity>()
            .filter(feedback::Column::Id.eq(id))
            .one(conn)
            .await?
    {
        data["comment"] = json!(feedback.comment);
    }
    Ok(())
}
