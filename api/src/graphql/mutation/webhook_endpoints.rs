use async_graphql::{Context, ID, InputObject, MaybeUndefined, Object, SimpleObject};

use crate::{
    config::WebhookPolicy,
    domain::{self, webhook_endpoints::EndpointFields},
    graphql::{
        context::{ContextExt, decode_id},
        types::{WebhookDelivery, WebhookEndpoint},
    },
    ids::IdKind,
};

fn allow_private(ctx: &Context<'_>) -> bool {
    ctx.data_opt::<WebhookPolicy>()
        .is_some_and(|p| p.allow_private_targets)
}

/// A new webhook endpoint.
#[derive(InputObject)]
pub struct CreateWebhookEndpointInput {
    /// The receiver's http(s) URL; private and loopback addresses are refused.
    pub url: String,
    /// Event types to send (`journey.stage_changed`, …); every type when empty.
    #[graphql(default)]
    pub event_types: Vec<String>,
    /// What the endpoint is for.
    pub description: Option<String>,
    /// Send names, contact details and comments with events (default false:
    /// ids and journey facts only).
    #[graphql(default)]
    pub include_phi: bool,
}

/// The result of `createWebhookEndpoint`.
#[derive(SimpleObject)]
pub struct CreateWebhookEndpointPayload {
    /// The endpoint.
    pub endpoint: WebhookEndpoint,
    /// The signing secret (`whsec_…`): shown only now.
    pub secret: String,
}

/// Changes to an endpoint.
#[derive(InputObject)]
pub struct UpdateWebhookEndpointInput {
    /// The endpoint.
    pub endpoint_id: ID,
    /// A new URL.
    pub url: Option<String>,
    /// New event types (every type when empty).
    pub event_types: Option<Vec<String>>,
    /// A new description; `null` removes it.
    pub description: MaybeUndefined<String>,
    /// Send PHI or not.
    pub include_phi: Option<bool>,
    /// Enable (resets the failure count) or disable.
    pub enabled: Option<bool>,
}

/// The result of a change to an endpoint.
#[derive(SimpleObject)]
pub struct WebhookEndpointPayload {
    /// The endpoint as it is now.
    pub endpoint: WebhookEndpoint,
}

/// An endpoint to delete, rotate or test.
#[derive(InputObject)]
pub struct WebhookEndpointInput {
    /// The endpoint.
    pub endpoint_id: ID,
}

/// The result of `deleteWebhookEndpoint`.
#[derive(SimpleObject)]
pub struct DeleteWebhookEndpointPayload {
    /// The id of the deleted endpoint.
    pub deleted_endpoint_id: ID,
}

/// Rotate an endpoint's signing secret.
#[derive(InputObject)]
pub struct RotateWebhookSecretInput {
    /// The endpoint.
    pub endpoint_id: ID,
    /// Hours the old secret keeps signing alongside the new one (default 24, at most 168).
    #[graphql(default = 24)]
    pub grace_period_hours: i32,
}

/// The result of `rotateWebhookSecret`.
#[derive(SimpleObject)]
pub struct RotateWebhookSecretPayload {
    /// The endpoint.
    pub endpoint: WebhookEndpoint,
    /// The new secret: shown only now.
    pub secret: String,
}

/// A delivery to send again.
#[derive(InputObject)]
pub struct RedeliverWebhookInput {
    /// The delivery.
    pub delivery_id: ID,
}

/// The result of `sendTestWebhook` and `redeliverWebhook`.
#[derive(SimpleObject)]
pub struct WebhookDeliveryPayload {
    /// The delivery, queued.
    pub delivery: WebhookDelivery,
}

#[derive(Default)]
pub struct WebhookMutations;

#[Object]
impl WebhookMutations {
    /// Registers a webhook endpoint; the signing secret is returned once.
    async fn create_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: CreateWebhookEndpointInput,
    ) -> async_graphql::Result<CreateWebhookEndpointPayload> {
        let fields = EndpointFields {
            url: Some(input.url),
            event_types: Some(input.event_types),
            description: Some(input.description),
            include_phi: Some(input.include_phi),
            enabled: Some(true),
        };
        let (endpoint, secret) = domain::webhook_endpoints::create_endpoint(
            ctx.store(),
            ctx.principal()?,
            fields,
            allow_private(ctx),
        )
        .await
        .map_err(|e| e.under("input"))?;
        Ok(CreateWebhookEndpointPayload {
            endpoint: WebhookEndpoint(endpoint),
            secret,
        })
    }

    /// Changes an endpoint: URL, event types, description, PHI, enabled.
    async fn update_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: UpdateWebhookEndpointInput,
    ) -> async_graphql::Result<WebhookEndpointPayload> {
        let id = decode_id(
            IdKind::WebhookEndpoint,
            "input.endpointId",
            &input.endpoint_id,
        )?;
        let fields = EndpointFields {
            url: input.url,
            event_types: input.event_types,
            description: input.description.into(),
            include_phi: input.include_phi,
            enabled: input.enabled,
        };
        let endpoint = domain::webhook_endpoints::update_endpoint(
            ctx.store(),
            ctx.principal()?,
            id,
            fields,
            allow_private(ctx),
        )
        .await
        .map_err(|e| e.under("input"))?;
        Ok(WebhookEndpointPayload {
            endpoint: WebhookEndpoint(endpoint),
        })
    }

    /// Deletes an endpoint and its delivery history.
    async fn delete_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: WebhookEndpointInput,
    ) -> async_graphql::Result<DeleteWebhookEndpointPayload> {
        let id = decode_id(
            IdKind::WebhookEndpoint,
            "input.endpointId",
            &input.endpoint_id,
        )?;
        domain::webhook_endpoints::delete_endpoint(ctx.store(), ctx.principal()?, id)
            .await
            .map_err(|e| e.under("input"))?;
        Ok(DeleteWebhookEndpointPayload {
            deleted_endpoint_id: input.endpoint_id,
        })
    }

    /// Replaces the signing secret; the old one keeps signing alongside for
    /// the grace period.
    async fn rotate_webhook_secret(
        &self,
        ctx: &Context<'_>,
        input: RotateWebhookSecretInput,
    ) -> async_graphql::Result<RotateWebhookSecretPayload> {
        let id = decode_id(
            IdKind::WebhookEndpoint,
            "input.endpointId",
            &input.endpoint_id,
        )?;
        let grace = chrono::Duration::hours(input.grace_period_hours.into());
        let (endpoint, secret) =
            domain::webhook_endpoints::rotate_secret(ctx.store(), ctx.principal()?, id, grace)
                .await
                .map_err(|e| e.under("input"))?;
        Ok(RotateWebhookSecretPayload {
            endpoint: WebhookEndpoint(endpoint),
            secret,
        })
    }

    /// Sends a `webhook.test` message to an endpoint.
    async fn send_test_webhook(
        &self,
        ctx: &Context<'_>,
        input: WebhookEndpointInput,
    ) -> async_graphql::Result<WebhookDeliveryPayload> {
        let id = decode_id(
            IdKind::WebhookEndpoint,
            "input.endpointId",
            &input.endpoint_id,
        )?;
        let delivery = domain::webhook_endpoints::send_test(ctx.store(), ctx.principal()?, id)
            .await
            .map_err(|e| e.under("input"))?;
        Ok(WebhookDeliveryPayload {
            delivery: WebhookDelivery(delivery),
        })
    }

    /// Sends a delivery again (same `webhook-id`), from the start of the
    /// retry schedule.
    async fn redeliver_webhook(
        &self,
        ctx: &Context<'_>,
        input: RedeliverWebhookInput,
    ) -> async_graphql::Result<WebhookDeliveryPayload> {
        let id = decode_id(
            IdKind::WebhookDelivery,
            "input.deliveryId",
            &input.delivery_id,
        )?;
        let delivery = domain::webhook_endpoints::redeliver(ctx.store(), ctx.principal()?, id)
            .await
            .map_err(|e| e.under("input"))?;
        Ok(WebhookDeliveryPayload {
            delivery: WebhookDelivery(delivery),
        })
    }
}
