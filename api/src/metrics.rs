//! Prometheus metrics, one registry per running server (so tests that run
//! several servers in one process do not mix their figures).

use std::{
    collections::HashSet,
    sync::{Mutex, atomic::AtomicU64},
    time::Duration,
};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::db::Db;

/// Labels of a GraphQL request: operation name and outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: String,
    pub outcome: String,
}

/// Labels of an HTTP response.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub status: String,
}

/// Most distinct operation names tracked; later ones count as `other`.
const MAX_OPERATION_NAMES: usize = 500;

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    pub graphql_requests: Family<OperationLabels, Counter>,
    pub graphql_duration: Family<OperationLabels, Histogram>,
    pub http_responses: Family<HttpLabels, Counter>,
    db_statements: Counter<u64, AtomicU64>,
    db_audit_statements: Counter<u64, AtomicU64>,
    db_connections_open: Gauge,
    db_connections_idle: Gauge,
    pub subscriptions_open: Gauge,
    pub shared_subscriptions: Gauge,
    pub subscribers_detached: Counter,
    requests_running: Gauge,
    requests_waiting: Gauge,
    webhook_deliveries: Family<OutcomeLabels, Counter>,
    plain_values: Family<AnsweredByLabels, Counter>,
    operation_names: Mutex<HashSet<String>>,
}

/// How a nested value with a plain selection was answered: `one_pass` or
/// `resolvers` (see `graphql::plain`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnsweredByLabels {
    pub answered_by: &'static str,
}

/// Labels of a webhook attempt's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("journeymap");
        let graphql_requests = Family::<OperationLabels, Counter>::default();
        registry.register(
            "graphql_requests",
            "GraphQL operations by operation name and outcome (ok or the first error code)",
            graphql_requests.clone(),
        );
        let graphql_duration = Family::<OperationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        });
        registry.register(
            "graphql_request_duration_seconds",
            "GraphQL operation latency by operation name and outcome",
            graphql_duration.clone(),
        );
        let http_responses = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_responses",
            "HTTP responses by route and status",
            http_responses.clone(),
        );
        let db_statements = Counter::<u64, AtomicU64>::default();
        registry.register(
            "db_statements",
            "SQL statements executed serving requests (background work is not counted)",
            db_statements.clone(),
        );
        let db_audit_statements = Counter::<u64, AtomicU64>::default();
        registry.register(
            "db_audit_statements",
            "SQL statements writing read-audit batches, after the responses they belong to",
            db_audit_statements.clone(),
        );
        let db_connections_open = Gauge::default();
        registry.register(
            "db_pool_connections",
            "Open database connections",
            db_connections_open.clone(),
        );
        let db_connections_idle = Gauge::default();
        registry.register(
            "db_pool_idle_connections",
            "Idle database connections",
            db_connections_idle.clone(),
        );
        let subscriptions_open = Gauge::default();
        registry.register(
            "subscriptions_open",
            "Open GraphQL subscriptions",
            subscriptions_open.clone(),
        );
        let shared_subscriptions = Gauge::default();
        registry.register(
            "shared_subscription_executions",
            "Subscription executions shared by subscribers with the same rights, document and variables",
            shared_subscriptions.clone(),
        );
        let requests_running = Gauge::default();
        registry.register(
            "graphql_requests_running",
            "GraphQL requests over HTTP running now (at most --max-concurrent-requests)",
            requests_running.clone(),
        );
        let requests_waiting = Gauge::default();
        registry.register(
            "graphql_requests_waiting",
            "GraphQL requests over HTTP waiting for their turn (beyond --max-waiting-requests they are refused with OVERLOADED)",
            requests_waiting.clone(),
        );
        let subscribers_detached = Counter::default();
        registry.register(
            "shared_subscription_detached",
            "Subscribers that fell behind a shared subscription and went on alone from the event log",
            subscribers_detached.clone(),
        );
        let webhook_deliveries = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "webhook_attempts",
            "Webhook delivery attempts by outcome (delivered, retrying, failed, gone, postponed)",
            webhook_deliveries.clone(),
        );
        let plain_values = Family::<AnsweredByLabels, Counter>::default();
        registry.register(
            "graphql_plain_values",
            "Nested values that can be answered in one pass (journeys, touchpoint and feedback pages), by how they were: one_pass, or resolvers when their selection was not plain",
            plain_values.clone(),
        );
        Self {
            registry,
            plain_values,
            graphql_requests,
            graphql_duration,
            http_responses,
            db_statements,
            db_audit_statements,
            db_connections_open,
            db_connections_idle,
            subscriptions_open,
            shared_subscriptions,
            subscribers_detached,
            requests_running,
            requests_waiting,
            webhook_deliveries,
            operation_names: Mutex::new(HashSet::new()),
        }
    }

    /// Records one GraphQL operation.
    pub fn record_operation(&self, operation: &str, outcome: &str, elapsed: Duration) {
        let labels = OperationLabels {
            operation: self.operation_label(operation),
            outcome: outcome.to_string(),
        };
        self.graphql_requests.get_or_create(&labels).inc();
        self.graphql_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Records how a request's plain values were answered.
    pub fn record_plain_values(&self, one_pass: u64, resolvers: u64) {
        for (answered_by, count) in [("one_pass", one_pass), ("resolvers", resolvers)] {
            if count > 0 {
                self.plain_values
                    .get_or_create(&AnsweredByLabels { answered_by })
                    .inc_by(count);
            }
        }
    }

    /// Records a webhook attempt's outcome.
    pub fn webhook_delivered(&self, outcome: &str) {
        self.webhook_deliveries
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Client-chosen operation names become labels only while there are few
    /// of them and they look like names, so a client cannot explode the series.
    fn operation_label(&self, operation: &str) -> String {
        let valid = !operation.is_empty()
            && operation.len() <= 64
            && operation
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return "other".into();
        }
        let mut names = self.operation_names.lock().expect("metrics lock");
        if names.contains(operation) || names.len() < MAX_OPERATION_NAMES {
            names.insert(operation.to_string());
            operation.to_string()
        } else {
            "other".into()
        }
    }

    /// How many GraphQL requests run and wait now, for the next [`Metrics::render`].
    pub fn record_requests_now(&self, running: usize, waiting: usize) {
        self.requests_running.set(running as i64);
        self.requests_waiting.set(waiting as i64);
    }

    /// The Prometheus text exposition, with the database figures read now.
    pub fn render(&self, db: &Db) -> String {
        let (open, idle) = db.pool_state();
        self.db_connections_open.set(open.into());
        self.db_connections_idle.set(idle.into());
        let counted = db.statement_count();
        let seen = self.db_statements.get();
        if counted > seen {
            self.db_statements.inc_by(counted - seen);
        }
        let counted = db.audit_statement_count();
        let seen = self.db_audit_statements.get();
        if counted > seen {
            self.db_audit_statements.inc_by(counted - seen);
        }
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}
