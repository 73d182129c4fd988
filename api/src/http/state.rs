//! What every request handler shares.

use std::sync::Arc;

use crate::{
    audit::AuditSink, auth::jwt::JwtKeys, config::ServeConfig, domain::Store, graphql::Schemas,
    metrics::Metrics,
};

/// Everything a request handler needs, shared by all requests.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub schemas: Schemas,
    /// Every credential's cost budget.
    pub budget: Arc<crate::graphql::limits::CostBudget>,
    pub keys: Arc<JwtKeys>,
    pub audit: AuditSink,
    pub metrics: Arc<Metrics>,
    pub config: Arc<ServeConfig>,
}
