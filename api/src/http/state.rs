//! What every request handler shares.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tokio_util::{sync::CancellationToken, task::TaskTracker};

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
    /// How many GraphQL requests over HTTP run at once, and wait.
    pub admission: Arc<super::admission::Admission>,
    /// Subscription executions shared by subscribers alike.
    pub subscriptions: Arc<super::SharedSubscriptions>,
    pub config: Arc<ServeConfig>,
    /// Serving or shutting down.
    pub lifecycle: Lifecycle,
}

/// Where the server is in its life. Shutdown goes in three steps: readiness
/// turns 503 ([`Lifecycle::drain`]) while requests are still served; then the
/// listener closes and WebSocket connections close with 1001 "going away"
/// ([`Lifecycle::going_away`]), so `graphql-ws` clients reconnect (to another
/// replica) and resume from their cursor; shutdown waits for them
/// ([`Lifecycle::sockets`]) before the audit writer and the database stop.
#[derive(Clone)]
pub struct Lifecycle {
    draining: Arc<AtomicBool>,
    going_away: CancellationToken,
    sockets: TaskTracker,
}

impl Lifecycle {
    /// Serving until `going_away`, the token that also stops the listener.
    pub fn new(going_away: CancellationToken) -> Self {
        Self {
            draining: Arc::default(),
            going_away,
            sockets: TaskTracker::new(),
        }
    }

    /// Readiness answers 503 from now on.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Cancelled when open connections should close.
    pub fn going_away(&self) -> &CancellationToken {
        &self.going_away
    }

    /// Tracks the open WebSocket connections.
    pub fn sockets(&self) -> &TaskTracker {
        &self.sockets
    }
}
