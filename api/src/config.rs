//! Configuration: every setting is a command-line flag with a `JOURNEYMAP_*`
//! environment variable and a default that works on a fresh machine.

use std::{net::SocketAddr, time::Duration};

use clap::{Args, ValueEnum};

/// The default database: an SQLite file in the working directory, created on
/// first use.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://journeymap.db?mode=rwc";

/// Where the data lives.
#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// Database URL: `sqlite://FILE?mode=rwc`, `sqlite::memory:` or `postgres://…`.
    #[arg(long, env = "JOURNEYMAP_DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true)]
    pub database_url: String,

    /// Maximum number of pooled database connections.
    #[arg(
        long,
        env = "JOURNEYMAP_DB_MAX_CONNECTIONS",
        default_value_t = 16,
        global = true
    )]
    pub db_max_connections: u32,

    /// PostgreSQL: a direct connection to the same database for LISTEN, when
    /// `--database-url` goes through a pooler in transaction mode
    /// (PgBouncer), where a LISTEN would not stay on one server connection.
    /// `backup` and `restore` run pg_dump and pg_restore against it too.
    /// Unset: LISTEN uses a connection like any other.
    #[arg(long, env = "JOURNEYMAP_LISTEN_DATABASE_URL", global = true)]
    pub listen_database_url: Option<String>,

    /// How an SQLite file commits: `full` (the default) makes every
    /// acknowledged write survive a power cut; `normal` is faster and can lose
    /// the last commits on power loss (never on a crash of the process alone).
    /// Ignored on PostgreSQL.
    #[arg(
        long,
        env = "JOURNEYMAP_SQLITE_SYNCHRONOUS",
        value_enum,
        default_value_t = SqliteSync::Full,
        global = true
    )]
    pub sqlite_synchronous: SqliteSync,
}

/// SQLite's `synchronous` setting in WAL mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum SqliteSync {
    /// `synchronous=FULL`: the WAL is synced at every commit; durable.
    #[default]
    Full,
    /// `synchronous=NORMAL`: synced only at checkpoints; commits acknowledged
    /// since the last one can be lost on power loss or an OS crash.
    Normal,
}

impl DatabaseConfig {
    /// A configuration for the given URL with default pool settings.
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            db_max_connections: 16,
            listen_database_url: None,
            sqlite_synchronous: SqliteSync::Full,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Settings of `journeymap serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "JOURNEYMAP_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Seed the demo clinic (slug `glow`) when it is absent and print a token for it.
    #[arg(long)]
    pub demo: bool,

    /// Origins allowed to call the API from a browser (comma-separated), or `*`.
    #[arg(long, env = "JOURNEYMAP_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "JOURNEYMAP_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,

    /// Seconds after which a request is abandoned with an error.
    #[arg(long, env = "JOURNEYMAP_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// Deepest accepted GraphQL selection.
    #[arg(long, env = "JOURNEYMAP_MAX_QUERY_DEPTH", default_value_t = 12)]
    pub max_query_depth: usize,

    /// Highest accepted GraphQL query complexity.
    #[arg(
        long,
        env = "JOURNEYMAP_MAX_QUERY_COMPLEXITY",
        default_value_t = 20_000
    )]
    pub max_query_complexity: usize,

    /// Most operations accepted in one batched POST.
    #[arg(long, env = "JOURNEYMAP_MAX_BATCH", default_value_t = 10)]
    pub max_batch: usize,

    /// Most aliases one GraphQL document may use.
    #[arg(long, env = "JOURNEYMAP_MAX_ALIASES", default_value_t = 30)]
    pub max_aliases: usize,

    /// Most GraphQL requests over HTTP running at once (a batch counts
    /// once); the next ones wait their turn. WebSocket operations are not
    /// counted.
    #[arg(
        long,
        env = "JOURNEYMAP_MAX_CONCURRENT_REQUESTS",
        default_value_t = 64,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_concurrent_requests: u32,

    /// Most GraphQL requests over HTTP waiting for their turn; one more is
    /// refused at once with `OVERLOADED` (HTTP 503, `Retry-After`).
    #[arg(long, env = "JOURNEYMAP_MAX_WAITING_REQUESTS", default_value_t = 2_000)]
    pub max_waiting_requests: u32,

    /// Cost units a credential's budget holds (a query's cost is its
    /// complexity, list fields counted by page size).
    #[arg(long, env = "JOURNEYMAP_RATE_LIMIT_CAPACITY", default_value_t = 50_000)]
    pub rate_limit_capacity: u32,

    /// Cost units a credential's budget regains per second (0 turns rate limiting off).
    #[arg(
        long,
        env = "JOURNEYMAP_RATE_LIMIT_REFILL_PER_SECOND",
        default_value_t = 5_000
    )]
    pub rate_limit_refill_per_second: u32,

    /// Secret for signing staff access tokens (at least 32 bytes); generated
    /// and stored in the database on first start when not given.
    #[arg(long, env = "JOURNEYMAP_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Lifetime of a staff access token, in seconds.
    #[arg(long, env = "JOURNEYMAP_ACCESS_TOKEN_TTL_SECS", default_value_t = 900)]
    pub access_token_ttl_secs: u64,

    /// Lifetime of a staff sign-in session and its refresh tokens, in seconds
    /// (30 days); refreshing does not extend it.
    #[arg(
        long,
        env = "JOURNEYMAP_REFRESH_TOKEN_TTL_SECS",
        default_value_t = 30 * 24 * 3600
    )]
    pub refresh_token_ttl_secs: u64,

    /// Seconds a webhook receiver has to answer.
    #[arg(long, env = "JOURNEYMAP_WEBHOOK_TIMEOUT_SECS", default_value_t = 15)]
    pub webhook_timeout_secs: u64,

    /// Webhook retry schedule: seconds before each attempt, comma-separated
    /// (Standard Webhooks: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h).
    #[arg(
        long,
        env = "JOURNEYMAP_WEBHOOK_RETRY_SCHEDULE",
        default_value = "0,5,300,1800,7200,18000,36000,36000"
    )]
    pub webhook_retry_schedule: String,

    /// Seconds a worker holds a claimed delivery before another may take it over.
    #[arg(long, env = "JOURNEYMAP_WEBHOOK_LEASE_SECS", default_value_t = 60)]
    pub webhook_lease_secs: u64,

    /// Webhook deliveries in flight at once, per process (0 turns delivery off).
    #[arg(long, env = "JOURNEYMAP_WEBHOOK_CONCURRENCY", default_value_t = 64)]
    pub webhook_concurrency: usize,

    /// Allow webhook URLs that resolve to loopback, private or link-local addresses.
    #[arg(long, env = "JOURNEYMAP_ALLOW_PRIVATE_WEBHOOK_TARGETS")]
    pub allow_private_webhook_targets: bool,

    /// Seconds a WebSocket client has to send `connection_init`.
    #[arg(long, env = "JOURNEYMAP_WS_INIT_TIMEOUT_SECS", default_value_t = 10)]
    pub ws_init_timeout_secs: u64,

    /// Seconds between checks of an open WebSocket's credential (a revoked or
    /// expired one closes the socket with 4403).
    #[arg(long, env = "JOURNEYMAP_WS_RECHECK_SECS", default_value_t = 60)]
    pub ws_recheck_secs: u64,

    /// Events a WebSocket may be behind a subscription it shares with others
    /// before it goes on alone, catching up from the event log.
    #[arg(long, env = "JOURNEYMAP_WS_SHARED_BACKLOG", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub ws_shared_backlog: u64,

    /// Seconds between sweeps for overdue follow-ups (0 turns the sweeper off).
    #[arg(long, env = "JOURNEYMAP_SWEEP_INTERVAL_SECS", default_value_t = 30)]
    pub sweep_interval_secs: u64,

    /// Seconds an `Idempotency-Key` is remembered (24 hours).
    #[arg(
        long,
        env = "JOURNEYMAP_IDEMPOTENCY_KEY_TTL_SECS",
        default_value_t = 24 * 3600
    )]
    pub idempotency_key_ttl_secs: u64,

    /// Seconds to let in-flight requests finish after Ctrl-C or SIGTERM.
    #[arg(long, env = "JOURNEYMAP_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,

    /// Seconds between SIGTERM and no longer accepting requests: `/readyz`
    /// answers 503 at once, so a load balancer stops sending new requests
    /// before the listener closes (Ctrl-C skips the wait).
    #[arg(long, env = "JOURNEYMAP_SHUTDOWN_DELAY_SECS", default_value_t = 2)]
    pub shutdown_delay_secs: u64,

    /// The address clients reach this server at (`https://api.clinic.example`),
    /// for the absolute URLs of FHIR bulk exports; unset, they are built from
    /// each request's `Host` header, as `http://HOST`.
    #[arg(long, env = "JOURNEYMAP_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Seconds a finished FHIR bulk export's files can be downloaded; then
    /// they are deleted.
    #[arg(long, env = "JOURNEYMAP_FHIR_EXPORT_TTL_SECS", default_value_t = 3600)]
    pub fhir_export_ttl_secs: u64,

    /// Resources a FHIR bulk export reads and stores at a time.
    #[arg(long, env = "JOURNEYMAP_FHIR_EXPORT_BATCH", default_value_t = 1000)]
    pub fhir_export_batch: u64,
}

impl ServeConfig {
    /// Settings for a server on `listen` with every other value at its default.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            demo: false,
            cors_origins: Vec::new(),
            max_body_bytes: 256 * 1024,
            request_timeout_secs: 30,
            max_query_depth: 12,
            max_query_complexity: 20_000,
            max_batch: 10,
            max_aliases: 30,
            max_concurrent_requests: 64,
            max_waiting_requests: 2_000,
            rate_limit_capacity: 50_000,
            rate_limit_refill_per_second: 5_000,
            jwt_secret: None,
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            webhook_timeout_secs: 15,
            webhook_retry_schedule: "0,5,300,1800,7200,18000,36000,36000".into(),
            webhook_lease_secs: 60,
            webhook_concurrency: 64,
            allow_private_webhook_targets: false,
            ws_init_timeout_secs: 10,
            ws_recheck_secs: 60,
            ws_shared_backlog: 1024,
            sweep_interval_secs: 30,
            idempotency_key_ttl_secs: 24 * 3600,
            shutdown_grace_secs: 10,
            shutdown_delay_secs: 2,
            public_url: None,
            fhir_export_ttl_secs: 3600,
            fhir_export_batch: 1000,
        }
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// How webhooks are delivered; `Err` says what is wrong with the retry
    /// schedule.
    pub fn delivery(&self) -> Result<DeliveryConfig, String> {
        Ok(DeliveryConfig {
            timeout: Duration::from_secs(self.webhook_timeout_secs.max(1)),
            schedule: parse_schedule(&self.webhook_retry_schedule)?,
            lease: Duration::from_secs(self.webhook_lease_secs.max(1)),
            concurrency: self.webhook_concurrency,
            // Sends still running this long after shutdown began give their
            // lease back, so another replica takes them at once; within the
            // grace period, leaving a second to write the releases.
            drain: Duration::from_secs(self.webhook_timeout_secs.max(1)).min(Duration::from_secs(
                self.shutdown_grace_secs.saturating_sub(1),
            )),
            poll: Duration::from_millis(500),
            allow_private: self.allow_private_webhook_targets,
        })
    }

    /// Which webhook targets endpoints may name.
    pub fn webhook_policy(&self) -> WebhookPolicy {
        WebhookPolicy {
            allow_private_targets: self.allow_private_webhook_targets,
        }
    }
}

/// Which webhook URLs endpoints may be saved with.
#[derive(Debug, Clone, Copy, Default)]
pub struct WebhookPolicy {
    /// Allow loopback, private and link-local targets (for tests and labs).
    pub allow_private_targets: bool,
}

/// How webhooks are delivered.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// How long a receiver has to answer.
    pub timeout: Duration,
    /// When each attempt is made, counted from the previous one (the first
    /// entry is the first attempt's delay).
    pub schedule: Vec<Duration>,
    /// How long a claimed delivery stays claimed before another worker may
    /// take it over.
    pub lease: Duration,
    /// Deliveries in flight at once, per process.
    pub concurrency: usize,
    /// How long sends in flight at shutdown may take before their deliveries
    /// are released.
    pub drain: Duration,
    /// How often workers look for due deliveries when nothing wakes them.
    pub poll: Duration,
    /// Allow loopback, private and link-local targets (for tests and labs).
    pub allow_private: bool,
}

/// Parses a retry schedule written as comma-separated seconds.
pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
    let schedule: Vec<Duration> = text
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<f64>()
                .ok()
                .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        })
        .collect::<Option<_>>()
        .ok_or_else(|| format!("{text:?} is not a list of seconds such as 0,5,300"))?;
    if schedule.is_empty() {
        return Err("the retry schedule needs at least one entry".into());
    }
    Ok(schedule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse() {
        assert_eq!(
            parse_schedule("0, 5,300").unwrap(),
            vec![
                Duration::ZERO,
                Duration::from_secs(5),
                Duration::from_secs(300)
            ]
        );
        assert!(parse_schedule("soon").is_err());
        assert!(parse_schedule("-1").is_err());
    }
}
