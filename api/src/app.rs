//! The running service: database, schema, metrics and HTTP server, wired
//! together. `main` and the end-to-end tests start it the same way.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{
    config::{DatabaseConfig, ServeConfig},
    db::{self, Db},
    domain::Store,
    graphql::{self, JourneymapSchema, Limits},
    http,
    metrics::Metrics,
};

/// Everything a request handler needs, shared by all requests.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub schema: JourneymapSchema,
    pub metrics: Arc<Metrics>,
    pub config: Arc<ServeConfig>,
}

/// A configured, migrated Journeymap, ready to start serving.
pub struct App {
    state: AppState,
}

impl App {
    /// Connects to the database and applies pending migrations.
    pub async fn build(database: &DatabaseConfig, config: ServeConfig) -> anyhow::Result<Self> {
        let db = Db::connect(database).await?;
        db.migrate().await?;
        tracing::info!(database = %db::redact(&database.database_url), "database ready");
        Ok(Self::from_db(db, config))
    }

    /// Wraps an already migrated database.
    pub fn from_db(db: Db, config: ServeConfig) -> Self {
        let store = Store::new(db);
        let schema = graphql::build_schema(
            store.clone(),
            Limits {
                max_depth: config.max_query_depth,
                max_complexity: config.max_query_complexity,
            },
        );
        Self {
            state: AppState {
                store,
                schema,
                metrics: Arc::new(Metrics::new()),
                config: Arc::new(config),
            },
        }
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Binds the listen address and serves until [`RunningServer::shutdown`].
    pub async fn start(self) -> anyhow::Result<RunningServer> {
        let listener = TcpListener::bind(self.state.config.listen).await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let router = http::router(self.state.clone());
        let signal = shutdown.clone();
        let task = tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { signal.cancelled().await })
            .await
            .map_err(anyhow::Error::from)
        });
        if self.state.config.sweep_interval_secs > 0 {
            tokio::spawn(sweep_overdue_follow_ups(
                self.state.store.clone(),
                Duration::from_secs(self.state.config.sweep_interval_secs),
                shutdown.clone(),
            ));
        }
        tracing::info!(%addr, "listening");
        Ok(RunningServer {
            addr,
            shutdown,
            task,
            state: self.state,
        })
    }
}

/// A server accepting requests.
pub struct RunningServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
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

    /// Stops accepting connections, lets in-flight requests finish for up to
    /// `grace`, then closes the database pool.
    pub async fn shutdown(self, grace: Duration) {
        self.shutdown.cancel();
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            tracing::warn!("requests still running after the grace period; closing anyway");
            task.abort();
        }
        self.state.store.db.close().await;
    }

    /// Serves until Ctrl-C or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signalled(self) -> anyhow::Result<()> {
        let grace = Duration::from_secs(self.state.config.shutdown_grace_secs);
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.shutdown(grace).await;
        Ok(())
    }
}

/// Announces overdue follow-ups every `interval` until shutdown.
async fn sweep_overdue_follow_ups(store: Store, interval: Duration, shutdown: CancellationToken) {
    const BATCH: u64 = 500;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        loop {
            match crate::domain::follow_ups::sweep_overdue(&store, BATCH).await {
                Ok(0) => break,
                Ok(n) => {
                    tracing::info!(announced = n, "overdue follow-ups announced");
                    if (n as u64) < BATCH {
                        break;
                    }
                }
                Err(error) => {
                    tracing::error!(?error, "overdue sweep failed; retrying at the next tick");
                    break;
                }
            }
        }
    }
}

async fn shutdown_signal() {
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
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
