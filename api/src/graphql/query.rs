//! The query root.

use async_graphql::{Context, ID, Object};

use super::{
    connection::{Conn, ConnectionTotals, Cursor, connection},
    context::{ContextExt, decode_id},
    filters::{AuditLogFilter, FollowUpFilter, JourneyFilter, PatientFilter, TimeWindowInput},
    plain::PlainConn,
    scalars::DateTime,
    types::{
        ApiToken, AuditEntry, FollowUp, Journey, JourneyEvent, JourneyMap, Node, Pathway, Patient,
        StaffMember, Viewer, WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint,
    },
};
use crate::{
    analytics,
    auth::Permission,
    domain::{self, DomainError, page::PageRequest},
    ids::{self, IdKind},
};

/// Everything a client can read.
#[derive(Default)]
pub struct Query;

#[Object]
impl Query {
    /// Fetches any record by its global id. Another clinic's id is NOT_FOUND.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Node>> {
        let who = ctx.principal()?;
        let loaders = ctx.loaders()?;
        let (kind, uuid) = ids::decode(id.as_str())
            .map_err(|e| DomainError::invalid("id", format!("{:?} {e}", id.as_str())))?;
        match domain::access::read_record(who, kind) {
            Some(allowed) => allowed?,
            None => return Err(DomainError::not_found("node").into()),
        }
        let not_found = || DomainError::not_found("node");
        let node = match kind {
            IdKind::Patient => loaders
                .patient
                .load_one(uuid)
                .await?
                .map(|m| Node::Patient(Patient(m))),
            IdKind::Pathway => loaders
                .pathway
                .load_one(uuid)
                .await?
                .map(|m| Node::Pathway(Pathway(m))),
            IdKind::Stage => loaders
                .stage
                .load_one(uuid)
                .await?
                .map(|m| Node::Stage(super::types::Stage(m))),
            IdKind::FollowUpRule => loaders
                .rule
                .load_one(uuid)
                .await?
                .map(|m| Node::FollowUpRule(super::types::FollowUpRule(m))),
            IdKind::Journey => loaders
                .journey
                .load_one(uuid)
                .await?
                .map(|m| Node::Journey(Journey(m))),
            IdKind::StageTransition => loaders
                .transition
                .load_one(uuid)
                .await?
                .map(|m| Node::StageTransition(super::types::StageTransition(m))),
            IdKind::Touchpoint => loaders
                .touchpoint
                .load_one(uuid)
                .await?
                .map(|m| Node::Touchpoint(super::types::Touchpoint(m))),
            IdKind::Feedback => loaders
                .feedback
                .load_one(uuid)
                .await?
                .map(|m| Node::Feedback(super::types::Feedback(m))),
            IdKind::FollowUp => loaders
                .follow_up
                .load_one(uuid)
                .await?
                .map(|m| Node::FollowUp(FollowUp(m))),
            IdKind::Staff => loaders
                .staff
                .load_one(uuid)
                .await?
                .map(|m| Node::StaffMember(super::types::StaffMember(m))),
            IdKind::Event => loaders
                .event
                .load_one(uuid)
                .await?
                // Not in the log until numbered (a few milliseconds).
                .filter(|m| m.sequence > 0)
                .map(|m| Node::JourneyEvent(JourneyEvent(m))),
            IdKind::WebhookEndpoint => loaders
                .webhook_endpoint
                .load_one(uuid)
                .await?
                .map(|m| Node::WebhookEndpoint(WebhookEndpoint(m))),
            IdKind::WebhookDelivery => loaders
                .webhook_delivery
                .load_one(uuid)
                .await?
                .map(|m| Node::WebhookDelivery(WebhookDelivery(m))),
            IdKind::Clinic | IdKind::ApiToken | IdKind::BulkExport => None,
        };
        node.map(Some).ok_or_else(|| not_found().into())
    }

    /// The caller: clinic, identity and scopes.
    async fn viewer(&self, ctx: &Context<'_>) -> async_graphql::Result<Viewer> {
        Ok(Viewer(ctx.principal()?.clone()))
    }

    /// The clinic's patients, newest first.
    #[graphql(
        complexity = "first.or(last).unwrap_or(20).clamp(1, 100) as usize * child_complexity + 1"
    )]
    async fn patients(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size from the start, 0 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor to continue after.")] after: Option<String>,
        #[graphql(desc = "Page size from the end, 0 to 100.")] last: Option<i32>,
        #[graphql(desc = "Cursor to continue before.")] before: Option<String>,
        filter: Option<PatientFilter>,
    ) -> async_graphql::Result<PlainConn<Patient>> {
        let who = ctx.principal()?.clone();
        let store = ctx.store().clone();
        let page = PageRequest::new(first, after.as_deref(), last, before.as_deref())?;
        let filter = filter.unwrap_or_default().into_domain()?;
        let found = domain::patients::list(&store, &who, &filter, &page).await?;
        Ok(PlainConn(connection(
            found,
            |p| domain::patients::keyset(p).into(),
            Patient,
            ConnectionTotals::new(move || {
                let (store, who, filter) = (store.clone(), who.clone(), filter.clone());
                async move { domain::patients::count(&store, &who, &filter).await }
            }),
        )))
    }

    /// One patient. Another clinic's patient is NOT_FOUND.
    async fn patient(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Patient>> {
        let id = decode_id(IdKind::Patient, "id", &id)?;
        Ok(Some(Patient(
            domain::patients::get(ctx.store(), ctx.principal()?, id).await?,
        )))
    }

    /// The clinic's pathways, by name.
    #[graphql(complexity = "10 * child_complexity + 1")]
    async fn pathways(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Include archived pathways.", default)] include_archived: bool,
    ) -> async_graphql::Result<Vec<Pathway>> {
        let pathways =
            domain::pathways::list(ctx.store(), ctx.principal()?, include_archived).await?;
        Ok(pathways.into_iter().map(Pathway).collect())
    }

    /// One pathway. Another clinic's pathway is NOT_FOUND.
    async fn pathway(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Pathway>> {
        let id = decode_id(IdKind::Pathway, "id", &id)?;
        Ok(Some(Pathway(
            domain::pathways::get(ctx.store(), ctx.principal()?, id).await?,
        )))
    }

    /// The clinic's journeys, newest first.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity + 1")]
    async fn journeys(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 0 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor to continue after.")] after: Option<String>,
        filter: Option<JourneyFilter>,
    ) -> async_graphql::Result<Conn<Journey>> {
        let who = ctx.principal()?.clone();
        let store = ctx.store().clone();
        let page = PageRequest::new(first, after.as_deref(), None, None)?;
        let filter = filter.unwrap_or_default().into_domain()?;
        let found = domain::journeys::list(&store, &who, &filter, &page).await?;
        Ok(connection(
            found,
            |j| domain::journeys::keyset(j).into(),
            Journey,
            ConnectionTotals::new(move || {
                let (store, who, filter) = (store.clone(), who.clone(), filter.clone());
                async move { domain::journeys::count(&store, &who, &filter).await }
            }),
        ))
    }

    /// One journey. Another clinic's journey is NOT_FOUND.
    async fn journey(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Journey>> {
        let id = decode_id(IdKind::Journey, "id", &id)?;
        domain::access::require(
            ctx.principal()?,
            Permission::JourneysRead,
            "reading journeys",
        )?;
        let journey = ctx
            .loaders()?
            .journey
            .load_one(id)
            .await?
            .ok_or_else(|| DomainError::not_found("journey"))?;
        Ok(Some(Journey(journey)))
    }

    /// Follow-ups, soonest due first; `filter: {overdue: true}` is the
    /// coordinator's work list.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity + 1")]
    async fn follow_ups(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 0 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor to continue after.")] after: Option<String>,
        filter: Option<FollowUpFilter>,
    ) -> async_graphql::Result<Conn<FollowUp>> {
        let who = ctx.principal()?.clone();
        let store = ctx.store().clone();
        let page = PageRequest::new(first, after.as_deref(), None, None)?;
        let filter = filter.unwrap_or_default().into_domain()?;
        let found = domain::follow_ups::list(&store, &who, &filter, &page).await?;
        let order = filter.clone();
        Ok(connection(
            found,
            move |f| domain::follow_ups::cursor_in(&order, f).into(),
            FollowUp,
            ConnectionTotals::new(move || {
                let (store, who, filter) = (store.clone(), who.clone(), filter.clone());
                async move { domain::follow_ups::count(&store, &who, &filter).await }
            }),
        ))
    }

    /// The journey map of a pathway over a time window: per stage, how many
    /// patients are there, how they move on, how long they take, how they
    /// feel, and where follow-up is late.
    async fn journey_map(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The pathway to map.")] pathway_id: ID,
        #[graphql(desc = "Start of the window (default: 90 days before `to`).")] from: Option<
            DateTime,
        >,
        #[graphql(desc = "End of the window (default: now).")] to: Option<DateTime>,
        #[graphql(
            desc = "An earlier window to compare with: every stage then gets `previous` and `change`."
        )]
        compare_to: Option<TimeWindowInput>,
    ) -> async_graphql::Result<JourneyMap> {
        let pathway_id = decode_id(IdKind::Pathway, "pathwayId", &pathway_id)?;
        let who = ctx.principal()?;
        let window = analytics::Window::new(from.map(|t| t.0), to.map(|t| t.0))?;
        let compare_to = compare_to
            .map(|w| {
                analytics::Window::new(Some(w.from.0), Some(w.to.0))
                    .map_err(|e| e.under("compareTo"))
            })
            .transpose()?;
        Ok(JourneyMap(
            analytics::journey_map(ctx.store(), who, pathway_id, window, compare_to).await?,
        ))
    }

    /// The clinic's staff, by name.
    #[graphql(complexity = "20 * child_complexity + 1")]
    async fn staff(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<StaffMember>> {
        let staff = domain::staff::list(ctx.store(), ctx.principal()?).await?;
        Ok(staff.into_iter().map(StaffMember).collect())
    }

    /// The clinic's API tokens, newest first; their secrets are never shown
    /// again (admins and owners, or `tokens:manage`).
    #[graphql(complexity = "20 * child_complexity + 1")]
    async fn api_tokens(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ApiToken>> {
        let tokens = domain::api_tokens::list(ctx.store(), ctx.principal()?).await?;
        Ok(tokens.into_iter().map(ApiToken).collect())
    }

    /// The audit log, newest first: every read of a patient's identifying
    /// data and every change, by whom, from which request (admins and owners).
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity + 1")]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 0 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor to continue after.")] after: Option<String>,
        filter: Option<AuditLogFilter>,
    ) -> async_graphql::Result<Conn<AuditEntry>> {
        let who = ctx.principal()?.clone();
        let store = ctx.store().clone();
        let page = PageRequest::new(first, after.as_deref(), None, None)?;
        let filter = filter.unwrap_or_default().into_domain()?;
        let found = domain::audit_log::list(&store.db, &who, &filter, &page).await?;
        Ok(connection(
            found,
            |e| domain::audit_log::keyset(e).into(),
            AuditEntry,
            ConnectionTotals::new(move || {
                let (store, who, filter) = (store.clone(), who.clone(), filter.clone());
                async move { domain::audit_log::count(&store.db, &who, &filter).await }
            }),
        ))
    }

    /// The clinic's webhook endpoints, oldest first (`webhooks:manage`).
    #[graphql(complexity = "10 * child_complexity + 1")]
    async fn webhook_endpoints(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<WebhookEndpoint>> {
        let endpoints = domain::webhook_endpoints::endpoints(ctx.store(), ctx.principal()?).await?;
        Ok(endpoints.into_iter().map(WebhookEndpoint).collect())
    }

    /// Webhook deliveries, newest first, with every attempt (`webhooks:manage`).
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity + 1")]
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only this endpoint's deliveries.")] endpoint_id: Option<ID>,
        #[graphql(desc = "Only deliveries with this status.")] status: Option<
            WebhookDeliveryStatus,
        >,
        #[graphql(desc = "Page size, 0 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor to continue after.")] after: Option<String>,
    ) -> async_graphql::Result<Conn<WebhookDelivery>> {
        let who = ctx.principal()?.clone();
        let store = ctx.store().clone();
        let page = PageRequest::new(first, after.as_deref(), None, None)?;
        let filter = domain::webhook_endpoints::DeliveryFilter {
            endpoint_id: super::context::decode_opt_id(
                IdKind::WebhookEndpoint,
                "endpointId",
                endpoint_id.as_ref(),
            )?,
            status: status.map(|s| s.as_str().to_string()),
        };
        let found = domain::webhook_endpoints::deliveries(&store, &who, &filter, &page).await?;
        Ok(connection(
            found,
            |d| domain::webhook_endpoints::delivery_keyset(d).into(),
            WebhookDelivery,
            ConnectionTotals::new(move || {
                let (store, who, filter) = (store.clone(), who.clone(), filter.clone());
                async move { domain::webhook_endpoints::count_deliveries(&store, &who, &filter).await }
            }),
        ))
    }

    /// The clinic's event log, oldest first: the same events webhooks and
    /// subscriptions deliver.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity + 1")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Cursor (or `JourneyEvent.cursor`) to continue after; from the start when absent."
        )]
        after: Option<String>,
        #[graphql(desc = "Page size, 0 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Only these event types, such as `journey.stage_changed`.")] types: Option<
            Vec<String>,
        >,
    ) -> async_graphql::Result<Conn<JourneyEvent>> {
        let who = ctx.principal()?.clone();
        let page = PageRequest::new(first, None, None, None)?;
        let after = after
            .as_deref()
            .map(|c| domain::event_log::parse_cursor("after", c))
            .transpose()?;
        let types = domain::event_log::parse_types("types", &types.unwrap_or_default())?;
        let store = ctx.store().clone();
        let found = domain::event_log::page(&store, &who, after, page.size, &types).await?;
        Ok(connection(
            found,
            |e| Cursor::sequence(e.sequence),
            JourneyEvent,
            ConnectionTotals::new(move || {
                let (store, who, types) = (store.clone(), who.clone(), types.clone());
                async move { domain::event_log::count(&store, &who, &types).await }
            }),
        ))
    }
}
