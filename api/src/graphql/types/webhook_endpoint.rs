use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use entity::{webhook_attempts, webhook_deliveries, webhook_endpoints};

use crate::{
    domain::{self, webhook_endpoints::status},
    graphql::{context::ContextExt, loaders::required, scalars::DateTime},
    ids::IdKind,
};

/// Where a webhook delivery stands.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum WebhookDeliveryStatus {
    /// Not delivered yet; retried on schedule.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Retries exhausted, or the receiver answered 410 Gone.
    Failed,
}

impl WebhookDeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookDeliveryStatus::Pending => status::PENDING,
            WebhookDeliveryStatus::Delivered => status::DELIVERED,
            WebhookDeliveryStatus::Failed => status::FAILED,
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            status::DELIVERED => WebhookDeliveryStatus::Delivered,
            status::FAILED => WebhookDeliveryStatus::Failed,
            _ => WebhookDeliveryStatus::Pending,
        }
    }
}

/// Where Journeymap sends a clinic's events.
pub struct WebhookEndpoint(pub webhook_endpoints::Model);

#[Object]
impl WebhookEndpoint {
    /// The endpoint's global id.
    pub async fn id(&self) -> ID {
        IdKind::WebhookEndpoint.encode(self.0.id).into()
    }

    /// The receiver's URL.
    async fn url(&self) -> &str {
        &self.0.url
    }

    /// What the endpoint is for.
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }

    /// The event types sent; every type when empty.
    async fn event_types(&self) -> Vec<String> {
        domain::webhook_endpoints::event_types_of(&self.0)
    }

    /// True when payloads carry names, contact details and comments (PHI);
    /// otherwise only ids and journey facts.
    async fn include_phi(&self) -> bool {
        self.0.include_phi
    }

    /// False while deliveries are held back.
    async fn enabled(&self) -> bool {
        self.0.enabled
    }

    /// Why the endpoint was disabled.
    async fn disabled_reason(&self) -> Option<&str> {
        self.0.disabled_reason.as_deref()
    }

    /// Until when the previous secret also signs (after `rotateWebhookSecret`).
    async fn previous_secret_expires_at(&self) -> Option<DateTime> {
        self.0.previous_secret_expires_at.map(DateTime)
    }

    /// When it was created.
    async fn created_at(&self) -> DateTime {
        DateTime(self.0.created_at)
    }
}

/// One event (or test message) on its way to one endpoint.
pub struct WebhookDelivery(pub webhook_deliveries::Model);

/// One attempt to deliver a webhook.
#[derive(SimpleObject)]
pub struct WebhookAttempt {
    /// When it was made.
    pub attempted_at: DateTime,
    /// The receiver's HTTP status; null when it did not answer.
    pub status_code: Option<i32>,
    /// How long the receiver took, in milliseconds.
    pub latency_ms: i32,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

impl From<webhook_attempts::Model> for WebhookAttempt {
    fn from(a: webhook_attempts::Model) -> Self {
        Self {
            attempted_at: DateTime(a.attempted_at),
            status_code: a.status_code,
            latency_ms: a.latency_ms,
            error: a.error,
        }
    }
}

#[Object]
impl WebhookDelivery {
    /// The delivery's global id (for `redeliverWebhook`).
    pub async fn id(&self) -> ID {
        IdKind::WebhookDelivery.encode(self.0.id).into()
    }

    /// The `webhook-id` header: the event's id, the same on every attempt.
    async fn webhook_id(&self) -> &str {
        &self.0.message_id
    }

    /// The event type (`webhook.test` for test messages).
    async fn event_type(&self) -> &str {
        &self.0.event_type
    }

    /// Pending, delivered or failed.
    async fn status(&self) -> WebhookDeliveryStatus {
        WebhookDeliveryStatus::parse(&self.0.status)
    }

    /// Attempts made so far.
    async fn attempt_count(&self) -> i32 {
        self.0.attempts
    }

    /// Every attempt, oldest first.
    #[graphql(complexity = "8 * child_complexity + 1")]
    async fn attempts(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<WebhookAttempt>> {
        let attempts = ctx
            .loaders()?
            .attempts_of_delivery
            .load_one(self.0.id)
            .await?
            .unwrap_or_default();
        Ok(attempts.into_iter().map(Into::into).collect())
    }

    /// When the next attempt is due (while pending).
    async fn next_attempt_at(&self) -> Option<DateTime> {
        (self.0.status == status::PENDING).then_some(DateTime(self.0.next_attempt_at))
    }

    /// When the receiver accepted it.
    async fn delivered_at(&self) -> Option<DateTime> {
        self.0.delivered_at.map(DateTime)
    }

    /// When it was queued.
    async fn created_at(&self) -> DateTime {
        DateTime(self.0.created_at)
    }

    /// The endpoint.
    async fn endpoint(&self, ctx: &Context<'_>) -> async_graphql::Result<WebhookEndpoint> {
        Ok(WebhookEndpoint(
            required(
                &ctx.loaders()?.webhook_endpoint,
                self.0.endpoint_id,
                "webhook endpoint",
            )
            .await?,
        ))
    }
}
