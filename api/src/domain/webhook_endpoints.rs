//! Webhook endpoints, administered by the clinic (`webhooks:manage`): create,
//! change, rotate secrets, test, redeliver, and the delivery history. The
//! delivery queue itself is [`crate::webhooks::queue`].

use chrono::Duration;
use entity::{webhook_deliveries, webhook_endpoints};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Select,
};
use serde_json::json;
use uuid::Uuid;

use super::{
    DomainError, DomainResult, Store, access,
    page::{Keyset, Page, PageRequest, Sort, SortKey, finish},
    validate,
};
use crate::{
    audit::AuditEntry,
    auth::{Permission, Principal},
    events::stamp,
    ids::{self, IdKind},
    webhooks::{queue, signing, targets},
};

pub use crate::webhooks::queue::{event_types_of, status};

/// The event type of test messages.
pub const TEST_EVENT: &str = "webhook.test";

fn require(who: &Principal) -> DomainResult<()> {
    access::require(who, Permission::WebhooksManage, "managing webhooks")
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
    let parsed = super::event_log::parse_types("eventTypes", types)?;
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
            "occurredAt": stamp::format(write.now),
            "clinicId": IdKind::Clinic.encode(who.clinic_id),
            "data": { "endpointId": IdKind::WebhookEndpoint.encode(endpoint.id), "message": "Journeymap test webhook" },
        })),
        ..queue::new_delivery(who.clinic_id, endpoint.id, write.now)
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
    let delivery = who
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
    let delivery = queue::requeue(&*write.txn, delivery, write.now).await?;
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
