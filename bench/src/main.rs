//! `journeymap bench` (this program, `journeymap-bench`, which the
//! `journeymap` binary runs for it): seeds a clinic of a given size, starts
//! the real server as a child process on PostgreSQL or SQLite, drives load
//! over HTTP and WebSocket from this process, and prints figures —
//! throughput, latency percentiles, SQL statements per request, server CPU
//! and peak memory.
//!
//! These are measurements, not tests: nothing here fails on a slow machine.

mod fanout;
mod outreach;
mod report;
mod server;
mod webhooks;
mod workloads;

use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, ValueEnum};

use journeymap::{
    auth::Permission,
    config::DatabaseConfig,
    db::Db,
    domain::clinics,
    seed::{self, SeedOptions},
};

pub use report::Figures;

/// A workload of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Workload {
    /// Nested read: `patients(first: 50)` with journeys, stages, touchpoints, feedback.
    W1,
    /// Stage moves: `moveJourneyToStage`, events included.
    W2,
    /// Fan-out: graphql-ws subscribers of `journeyStageChanged` while stage moves commit at a fixed rate.
    W3,
    /// Webhooks: a backlog of signed deliveries drained to a local receiver.
    W4,
    /// The journey map of every pathway.
    W5,
    /// Outreach: the coordinator's queue, and a sweep planning thousands of follow-ups.
    W6,
}

/// Settings of `journeymap bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchConfig {
    /// Patients in the benchmark clinic (seeded when the database has none).
    #[arg(long, default_value_t = 10_000)]
    pub patients: u32,

    /// Workloads to run (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Workload::W1, Workload::W2, Workload::W3, Workload::W4, Workload::W5, Workload::W6])]
    pub workloads: Vec<Workload>,

    /// Seconds each load workload runs (after a short warm-up).
    #[arg(long, default_value_t = 20)]
    pub duration_secs: u64,

    /// Concurrent connections of W1.
    #[arg(long, default_value_t = 50)]
    pub read_concurrency: usize,

    /// Concurrent connections of W2.
    #[arg(long, default_value_t = 20)]
    pub write_concurrency: usize,

    /// Rounds of W5 (each maps every pathway).
    #[arg(long, default_value_t = 5)]
    pub map_rounds: usize,

    /// Runs of each workload; with more than one, the median and spread are printed too.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,

    /// Requests of the coordinator's queue in W6, one after another.
    #[arg(long, default_value_t = 200)]
    pub queue_rounds: usize,

    /// Follow-ups W6's sweep may plan per reason.
    #[arg(long, default_value_t = 10_000)]
    pub sweep_limit: u64,

    /// WebSocket subscribers of W3.
    #[arg(long, default_value_t = 5_000)]
    pub subscribers: usize,

    /// Stage moves per second of W3 (each an event to every subscriber).
    #[arg(long, default_value_t = 50)]
    pub fanout_moves_per_second: u32,

    /// Events in the W4 backlog (each one webhook delivery).
    #[arg(long, default_value_t = 10_000)]
    pub webhook_events: usize,

    /// Stage moves per second of W4's live phase, after the backlog (0 skips it).
    #[arg(long, default_value_t = 100)]
    pub webhook_live_moves_per_second: u32,
}

/// Brings the database to a steady state before measuring: statistics for
/// the planner, no dead rows, no checkpoint pending. Right after seeding,
/// autovacuum and the checkpoint of the seed's WAL otherwise run during W1
/// and W2 and halve their figures.
async fn settle(db: &Db) {
    use sea_orm::ConnectionTrait;
    let statements: &[&str] = match db.backend() {
        sea_orm::DbBackend::Postgres => &["VACUUM ANALYZE", "CHECKPOINT"],
        _ => &["ANALYZE", "PRAGMA wal_checkpoint(TRUNCATE)"],
    };
    for statement in statements {
        // CHECKPOINT needs a privileged role; the figures are only noisier without it.
        if let Err(error) = db.conn().execute_unprepared(statement).await {
            eprintln!("warning: {statement} failed ({error}); figures may be noisier");
        }
    }
}

/// `journeymap bench`: measures the Journeymap server.
#[derive(Debug, Parser)]
#[command(name = "journeymap bench", version, about)]
struct Cli {
    #[command(flatten)]
    database: DatabaseConfig,

    /// The `journeymap` binary to measure; by default the one next to this program.
    #[arg(long, env = "JOURNEYMAP_BENCH_SERVER")]
    server: Option<std::path::PathBuf>,

    #[command(flatten)]
    config: BenchConfig,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let binary = match cli.server.clone().map(Ok).unwrap_or_else(server::sibling) {
        Ok(binary) => binary,
        Err(error) => {
            eprintln!("error: {error:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    server::use_binary(binary);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&cli.database, &cli.config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the benchmark against `database` and prints the figures.
async fn run(database: &DatabaseConfig, config: &BenchConfig) -> anyhow::Result<()> {
    let url = &database.database_url;
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        journeymap::db::ensure_postgres_database(url).await?;
    }
    let db = Db::connect(database)
        .await
        .context("cannot open the database")?;
    db.migrate().await?;
    let clinic = match clinics::by_slug(&db, seed::DEMO_SLUG).await? {
        Some(clinic) => {
            eprintln!("using the existing benchmark clinic ({})", seed::DEMO_SLUG);
            clinic
        }
        None => {
            eprintln!("seeding {} patients…", config.patients);
            let started = std::time::Instant::now();
            let report = seed::demo(
                &db,
                &SeedOptions {
                    patients: config.patients,
                    seed: 42,
                },
            )
            .await?;
            eprintln!("{report} in {:.1} s", started.elapsed().as_secs_f64());
            clinics::by_slug(&db, seed::DEMO_SLUG)
                .await?
                .context("the benchmark clinic was not created")?
        }
    };
    settle(&db).await;
    let (_, token) = clinics::create_token(&db, clinic.id, "bench", &Permission::ALL, None).await?;
    let size = workloads::clinic_size(&db, clinic.id).await?;
    db.close().await;

    // W3 holds a socket per subscriber in this process and in the server,
    // which inherits the limit.
    let open_files =
        rlimit::increase_nofile_limit(u64::MAX).context("cannot raise the open-files limit")?;
    if config.workloads.contains(&Workload::W3) {
        anyhow::ensure!(
            config.subscribers as u64 + 256 <= open_files,
            "{} subscribers need more open files than the limit of {open_files} (raise the hard limit: ulimit -Hn)",
            config.subscribers
        );
    }
    // Loopback receivers are allowed for W4; this server never delivers, so
    // that W4 can queue a backlog for a second one to drain.
    let server = server::Server::start(
        database,
        &[
            "--allow-private-webhook-targets",
            "--webhook-concurrency",
            "0",
        ],
    )
    .await?;
    let machine = report::machine();
    println!("Journeymap benchmark");
    println!("  machine   {machine}");
    println!("  database  {}", server.backend());
    println!(
        "  clinic    {} patients, {} journeys, {} touchpoints",
        size.patients, size.journeys, size.touchpoints
    );
    println!(
        "  server    started and ready in {:.0} ms, idle memory {:.1} MiB",
        server.ready_ms,
        server.rss_mib()
    );
    println!("  limits    {open_files} open files");
    println!();

    let client = workloads::Client::new(&server.url, &token)?;
    let mut runs: Vec<Vec<Figures>> = Vec::new();
    for workload in &config.workloads {
        for round in 1..=config.repeat.max(1) {
            if config.repeat > 1 {
                println!("({workload:?} run {round} of {})", config.repeat);
            }
            let own_before = server::own_cpu_seconds();
            let started = std::time::Instant::now();
            let mut figures = run_workload(
                *workload, config, database, &server, &client, &token, clinic.id,
            )
            .await?;
            for f in &mut figures {
                // Workloads that do not measure their own window: the whole run.
                if f.loadgen_seconds == 0.0 {
                    f.loadgen_cpu_seconds = server::own_cpu_seconds() - own_before;
                    f.loadgen_seconds = started.elapsed().as_secs_f64();
                }
                println!("{f}");
            }
            for f in figures {
                match runs.iter().position(|r| r[0].name == f.name) {
                    Some(k) => runs[k].push(f),
                    None => runs.push(vec![f]),
                }
            }
        }
    }
    if config.repeat > 1 {
        println!("Median and spread of {} runs each", config.repeat);
        for figures in &runs {
            println!("  {}", report::summary(figures));
        }
    }
    server.stop().await;
    Ok(())
}

/// One run of `workload`: its figures (W1 and W2 closed loop, then open loop).
async fn run_workload(
    workload: Workload,
    config: &BenchConfig,
    database: &DatabaseConfig,
    server: &server::Server,
    client: &workloads::Client,
    token: &str,
    clinic: uuid::Uuid,
) -> anyhow::Result<Vec<Figures>> {
    let duration = Duration::from_secs(config.duration_secs);
    let figures = match workload {
        Workload::W1 => {
            return workloads::nested_read(client, server, config.read_concurrency, duration).await;
        }
        Workload::W2 => {
            return workloads::stage_moves(client, server, config.write_concurrency, duration)
                .await;
        }
        Workload::W3 => {
            fanout::fan_out(
                client,
                server,
                token,
                config.subscribers,
                config.fanout_moves_per_second,
                duration,
            )
            .await?
        }
        Workload::W4 => {
            webhooks::webhooks(
                client,
                &webhooks::WebhookRun {
                    database,
                    token,
                    events: config.webhook_events,
                    workers: config.write_concurrency,
                    live_rate: config.webhook_live_moves_per_second,
                    duration,
                },
            )
            .await?
        }
        Workload::W5 => workloads::journey_map(client, server, config.map_rounds).await?,
        Workload::W6 => {
            outreach::outreach(
                client,
                server,
                database,
                clinic,
                config.queue_rounds,
                config.sweep_limit,
            )
            .await?
        }
    };
    Ok(vec![figures])
}
