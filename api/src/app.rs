//! The running service: database, schema, metrics and HTTP server, wired
//! together. `main` and the end-to-end tests start it the same way.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{
    audit::AuditSink,
    auth::jwt::JwtKeys,
    config::{DatabaseConfig, ServeConfig},
    db::{self, Db},
    domain::{Store, sessions::LoginThrottle, settings},
    graphql::{self, Limits, Services, limits::CostBudget},
    http::{self, AppState},
    metrics::Metrics,
};

/// A configured, migrated Journeymap, ready to start serving.
pub struct App {
    state: AppState,
    /// Stops serving: the listener, the webhook worker, the sweeper.
    shutdown: CancellationToken,
    /// Stops, after the last request and socket: the audit writer, the relay.
    finish: CancellationToken,
    background: Vec<JoinHandle<()>>,
    last: Vec<JoinHandle<()>>,
}

impl App {
    /// Connects to the database and applies pending migrations.
    pub async fn build(database: &DatabaseConfig, config: ServeConfig) -> anyhow::Result<Self> {
        let db = Db::connect(database).await?;
        db.migrate().await?;
        tracing::info!(database = %db::redact(&database.database_url), "database ready");
        Self::from_db(db, config).await
    }

    /// Wraps an already migrated database.
    pub async fn from_db(db: Db, config: ServeConfig) -> anyhow::Result<Self> {
        let secret = match &config.jwt_secret {
            Some(secret) if secret.len() >= 32 => secret.as_bytes().to_vec(),
            Some(_) => anyhow::bail!("--jwt-secret must be at least 32 bytes"),
            None => settings::signing_key(&db)
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))
                .context("cannot load the token signing key")?,
        };
        let keys = Arc::new(
            JwtKeys::new(
                &secret,
                chrono::Duration::seconds(config.access_token_ttl_secs.clamp(60, 86_400) as i64),
            )
            .with_session_ttl(chrono::Duration::seconds(
                config.refresh_token_ttl_secs.clamp(1, 365 * 24 * 3600) as i64,
            )),
        );
        let store = Store::new(db.clone());
        let shutdown = CancellationToken::new();
        let finish = CancellationToken::new();
        let (audit, audit_task) = AuditSink::start(db, finish.clone());
        let budget = Arc::new(CostBudget::new(
            config.rate_limit_capacity,
            config.rate_limit_refill_per_second,
        ));
        let logins = Arc::new(LoginThrottle::default());
        let schemas = graphql::build_schemas(
            Services {
                store: store.clone(),
                keys: keys.clone(),
                logins: logins.clone(),
                webhooks: config.webhook_policy(),
            },
            Limits {
                max_depth: config.max_query_depth,
                max_complexity: config.max_query_complexity,
            },
        );
        let background = vec![tokio::spawn(housekeeping(
            store.clone(),
            budget.clone(),
            logins,
            shutdown.clone(),
        ))];
        let metrics = Arc::new(Metrics::new());
        Ok(Self {
            state: AppState {
                store,
                schemas,
                budget,
                keys,
                audit,
                admission: Arc::new(http::Admission::new(
                    config.max_concurrent_requests as usize,
                    config.max_waiting_requests as usize,
                )),
                subscriptions: Arc::new(http::SharedSubscriptions::new(&metrics)),
                metrics,
                config: Arc::new(config),
                lifecycle: http::Lifecycle::new(shutdown.clone()),
            },
            shutdown,
            finish,
            background,
            last: vec![audit_task],
        })
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Binds the listen address and serves until [`RunningServer::shutdown`].
    pub async fn start(self) -> anyhow::Result<RunningServer> {
        self.start_on(None).await
    }

    /// Serves on `listener` (already bound, e.g. while migrating, see
    /// [`crate::http::starting`]), or binds the listen address when `None`.
    pub async fn start_on(
        mut self,
        listener: Option<std::net::TcpListener>,
    ) -> anyhow::Result<RunningServer> {
        // Before anything is bound or spawned; on failure the tasks already
        // running (audit, housekeeping) stop too.
        let ready = async {
            let delivery = self
                .state
                .config
                .delivery()
                .map_err(|e| anyhow::anyhow!("--webhook-retry-schedule: {e}"))?;
            let listener = match listener {
                Some(listener) => TcpListener::from_std(listener)?,
                None => TcpListener::bind(self.state.config.listen).await?,
            };
            anyhow::Ok((delivery, listener))
        };
        let (delivery, listener) = match ready.await {
            Ok(ready) => ready,
            Err(error) => {
                self.shutdown.cancel();
                self.finish.cancel();
                return Err(error);
            }
        };
        let addr = listener.local_addr()?;
        let router = http::router(self.state.clone());
        let signal = self.shutdown.clone();
        let task = tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { signal.cancelled().await })
            .await
            .map_err(anyhow::Error::from)
        });
        let store = &self.state.store;
        if store.db.backend() == sea_orm::DbBackend::Postgres {
            self.last.push(tokio::spawn(db::uncounted(
                crate::events::relay::relay_notifications(
                    store.db.clone(),
                    store.bus.clone(),
                    self.finish.clone(),
                ),
            )));
        }
        if store.db.backend() == sea_orm::DbBackend::Postgres {
            self.background
                .push(tokio::spawn(db::uncounted(number_leftover_events(
                    store.clone(),
                    self.shutdown.clone(),
                ))));
        }
        if delivery.concurrency > 0 {
            self.background
                .push(tokio::spawn(db::uncounted(crate::webhooks::worker::run(
                    store.db.clone(),
                    store.bus.clone(),
                    delivery,
                    self.state.metrics.clone(),
                    self.shutdown.clone(),
                ))));
        }
        {
            let config = &self.state.config;
            let mut export =
                crate::domain::bulk_export::worker::WorkerConfig::new(chrono::Duration::seconds(
                    config.fhir_export_ttl_secs.clamp(1, 7 * 24 * 3600) as i64,
                ));
            export.batch = config.fhir_export_batch.clamp(1, 100_000);
            self.background.push(tokio::spawn(db::uncounted(
                crate::domain::bulk_export::worker::run(
                    store.clone(),
                    http::fhir_export_render(),
                    export,
                    self.shutdown.clone(),
                ),
            )));
        }
        if self.state.config.sweep_interval_secs > 0 {
            self.background
                .push(tokio::spawn(crate::db::uncounted(sweep_follow_ups(
                    self.state.store.clone(),
                    Duration::from_secs(self.state.config.sweep_interval_secs),
                    self.shutdown.clone(),
                ))));
        }
        tracing::info!(%addr, "listening");
        Ok(RunningServer {
            addr,
            shutdown: self.shutdown,
            finish: self.finish,
            task,
            background: self.background,
            last: self.last,
            state: self.state,
        })
    }
}

/// A server accepting requests.
pub struct RunningServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    finish: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    background: Vec<JoinHandle<()>>,
    last: Vec<JoinHandle<()>>,
    state: AppState,
}

impl RunningServer {
    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Shuts down at once: see [`RunningServer::shutdown_after`].
    pub async fn shutdown(self, grace: Duration) {
        self.shutdown_after(Duration::ZERO, grace).await
    }

    /// Turns readiness to 503 and keeps serving for `delay`; then stops
    /// accepting connections, closes WebSocket connections with 1001, lets
    /// in-flight requests and webhook sends finish within `grace` (sends
    /// that do not give their lease back), writes pending audit entries,
    /// and closes the database pool.
    pub async fn shutdown_after(self, delay: Duration, grace: Duration) {
        let lifecycle = self.state.lifecycle.clone();
        lifecycle.drain();
        if !delay.is_zero() {
            tracing::info!(
                delay_secs = delay.as_secs_f64(),
                "not ready; serving on until the listener closes"
            );
            tokio::time::sleep(delay).await;
        }
        let deadline = tokio::time::Instant::now() + grace;
        self.shutdown.cancel();
        lifecycle.sockets().close();
        let mut task = self.task;
        if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
            tracing::warn!("requests still running after the grace period; closing anyway");
            task.abort();
        }
        if tokio::time::timeout_at(deadline, lifecycle.sockets().wait())
            .await
            .is_err()
        {
            tracing::warn!("WebSocket connections still open after the grace period");
        }
        for job in self.background {
            let _ = tokio::time::timeout_at(deadline, job).await;
        }
        // The audit writer flushes what the last requests and sockets wrote.
        self.finish.cancel();
        for job in self.last {
            let _ = tokio::time::timeout(grace.max(Duration::from_secs(1)), job).await;
        }
        self.state.store.db.close().await;
    }

    /// Serves until Ctrl-C or SIGTERM, then shuts down gracefully; after
    /// SIGTERM (what an orchestrator sends) readiness is 503 for
    /// `--shutdown-delay-secs` first.
    pub async fn run_until_signalled(self) -> anyhow::Result<()> {
        let grace = Duration::from_secs(self.state.config.shutdown_grace_secs);
        let delay = match shutdown_signal().await {
            Signal::Terminate => Duration::from_secs(self.state.config.shutdown_delay_secs),
            Signal::Interrupt => Duration::ZERO,
        };
        tracing::info!("shutting down");
        self.shutdown_after(delay, grace).await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Housekeeping every minute: drops the cost budgets and sign-in counts of
/// callers that went quiet, and idempotency keys past their 24 hours.
async fn housekeeping(
    store: Store,
    budget: Arc<CostBudget>,
    logins: Arc<LoginThrottle>,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {
                budget.forget_idle();
                logins.forget_idle();
                if let Err(error) = crate::db::uncounted(crate::domain::idempotency::forget_expired(&store.db)).await {
                    tracing::warn!(?error, "forgetting expired idempotency keys failed");
                }
            }
        }
    }
}

/// Every two seconds until shutdown (PostgreSQL): numbers and publishes
/// events a writer committed but did not number, most likely because it
/// died in between ([`crate::events::outbox::number_leftovers`]).
async fn number_leftover_events(store: Store, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_secs(2));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match crate::events::outbox::number_leftovers(&store.db, &store.bus, 100).await {
            Ok(0) => {}
            Ok(clinics) => tracing::info!(
                clinics,
                "numbered events that had waited over two seconds for their numbers (a writer stopped, or took that long)"
            ),
            Err(error) => tracing::warn!(?error, "numbering leftover events failed; retrying"),
        }
    }
}

/// The sweeper, every `interval` until shutdown: plans what time alone
/// causes (stalled journeys, rebookings, win-backs), announces follow-ups
/// whose send time came (`follow_up.due`) and those past due
/// (`follow_up.overdue`). Each runs in batches until nothing is left.
async fn sweep_follow_ups(store: Store, interval: Duration, shutdown: CancellationToken) {
    use crate::domain::{follow_ups, outreach::sweep};
    const BATCH: u64 = 500;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        for (what, step) in [
            ("time-based follow-ups planned", 0),
            ("follow-ups due announced", 1),
            ("overdue follow-ups announced", 2),
        ] {
            loop {
                if shutdown.is_cancelled() {
                    return;
                }
                let done = match step {
                    0 => sweep::plan_time_based(&store, BATCH).await,
                    1 => sweep::announce_due(&store, BATCH).await,
                    _ => follow_ups::sweep_overdue(&store, BATCH).await,
                };
                match done {
                    Ok(0) => break,
                    Ok(n) => {
                        tracing::info!(count = n, "{what}");
                        if (n as u64) < BATCH {
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::error!(
                            ?error,
                            "the follow-up sweep failed; retrying at the next tick"
                        );
                        break;
                    }
                }
            }
        }
    }
}

/// The signal that stops the server.
enum Signal {
    /// Ctrl-C (SIGINT): a person at a terminal.
    Interrupt,
    /// SIGTERM: an orchestrator or service manager.
    Terminate,
}

async fn shutdown_signal() -> Signal {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => Signal::Interrupt,
        _ = terminate => Signal::Terminate,
    }
}
