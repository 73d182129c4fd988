//! The `journeymap` command line: serve the API and administer clinics. It
//! lives in the library so that test harnesses can run the very same command
//! as a separate process.

use std::process::ExitCode;

use crate::{
    App,
    auth::{Permission, Role},
    config::{DatabaseConfig, LogFormat, ServeConfig},
    db::{self, Db},
    domain::{DomainError, clinics},
    seed::{self, SeedOptions},
    telemetry,
};
use anyhow::Context as _;
use chrono::{Duration, Utc};
use clap::{Parser, Subcommand};

/// Journeymap: the patient-journey backend for aesthetics and wellness clinics.
#[derive(Debug, Parser)]
#[command(name = "journeymap", version, about)]
struct Cli {
    #[command(flatten)]
    database: DatabaseConfig,

    /// Log format on stderr.
    #[arg(long, env = "JOURNEYMAP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the GraphQL API (migrates the database first).
    Serve(ServeConfig),
    /// Apply pending database migrations.
    Migrate,
    /// Seed the deterministic demo clinic "Glow Aesthetics & Wellness" (slug `glow`).
    Seed {
        /// Seed the demo clinic (the only kind of seed there is; required for clarity).
        #[arg(long, required = true)]
        demo: bool,
        /// How many patients to create.
        #[arg(long, default_value_t = seed::DEFAULT_PATIENTS)]
        patients: u32,
        /// Random seed: the same seed gives the same clinic.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Print the GraphQL schema (SDL), as committed in schema.graphql.
    Schema,
    /// Benchmark: seed a clinic, start this server, drive load, print
    /// figures. Runs `journeymap-bench` from this binary's folder (build it
    /// with `cargo build --release -p journeymap-bench`); `journeymap bench
    /// --help` lists its settings.
    #[command(disable_help_flag = true)]
    Bench {
        /// The benchmark's own arguments (`--workloads w1,w2`, `--repeat 3`, …).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Write a consistent backup of the database to FILE while servers keep
    /// running (SQLite: `VACUUM INTO`; PostgreSQL: `pg_dump --format=custom`).
    Backup {
        /// The backup file to create (never overwritten).
        #[arg(long, value_name = "FILE")]
        to: std::path::PathBuf,
    },
    /// Restore a backup made by `journeymap backup` into the database. Checks
    /// the backup first; refuses a database holding data unless --force.
    /// Stop every server using the database first.
    Restore {
        /// The backup file.
        #[arg(long, value_name = "FILE")]
        from: std::path::PathBuf,
        /// Replace a database that is not empty.
        #[arg(long)]
        force: bool,
    },
    /// Manage clinics.
    Clinic {
        #[command(subcommand)]
        command: ClinicCommand,
    },
    /// Manage partner API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage staff accounts.
    Staff {
        #[command(subcommand)]
        command: StaffCommand,
    },
    /// Import records from files.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ImportCommand {
    /// Import patients from a CSV file (UTF-8, header line first): the
    /// report on stdout, a progress bar on stderr. See the README's
    /// "Interoperability" section for the columns.
    Patients {
        /// The clinic's slug.
        #[arg(long)]
        clinic: String,
        /// Validate every row and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// The CSV file.
        file: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum StaffCommand {
    /// Create a staff member who can sign in with `login`. Without
    /// --password, a temporary password is generated and printed (alone, on
    /// stdout).
    Create {
        /// The clinic's slug.
        #[arg(long)]
        clinic: String,
        /// Sign-in email.
        #[arg(long)]
        email: String,
        /// Full name.
        #[arg(long)]
        name: String,
        /// owner, admin, coordinator, practitioner or viewer.
        #[arg(long)]
        role: String,
        /// Password (at least 12 characters); prefer JOURNEYMAP_STAFF_PASSWORD
        /// so it stays out of shell history.
        #[arg(long, env = "JOURNEYMAP_STAFF_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ClinicCommand {
    /// Create a clinic.
    Create {
        /// Display name, e.g. "Glow Aesthetics & Wellness".
        #[arg(long)]
        name: String,
        /// Short unique name: a-z, 0-9, '_' and '-'.
        #[arg(long)]
        slug: String,
        /// IANA time zone.
        #[arg(long, default_value = "America/Los_Angeles")]
        timezone: String,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create an API token and print it (alone, on stdout). It is shown once.
    Create {
        /// The clinic's slug.
        #[arg(long)]
        clinic: String,
        /// What the token is for, e.g. "HubSpot sync".
        #[arg(long)]
        name: String,
        /// A scope to grant (repeatable); all scopes when none is given.
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// Days until the token expires; never when absent.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
}

/// Runs the command line with the process's arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn connect(database: &DatabaseConfig) -> anyhow::Result<Db> {
    let url = &database.database_url;
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // A fresh server needs no `createdb`: the database is created on first use.
        db::ensure_postgres_database(url)
            .await
            .with_context(|| format!("cannot reach PostgreSQL at {}", db::redact(url)))?;
    }
    let db = Db::connect(database).await.with_context(|| {
        format!(
            "cannot open the database at {}",
            db::redact(&database.database_url)
        )
    })?;
    db.migrate().await.context("cannot apply migrations")?;
    Ok(db)
}

/// Opens a database that must already exist, for commands that act on a
/// clinic in it (`token create`, `staff create`): run in the wrong directory
/// or with a mistyped URL, they say so instead of creating an empty database
/// and then finding no clinic in it.
async fn connect_existing(database: &DatabaseConfig) -> anyhow::Result<Db> {
    let url = &database.database_url;
    if let Some(path) = db::sqlite_file_of(url)
        && !path.exists()
    {
        let path = path.display();
        anyhow::bail!(
            "no database at {path} (from {}); create one with `journeymap serve --demo`, \
             `journeymap migrate` or `journeymap clinic create`, or pass --database-url",
            db::redact(url)
        );
    }
    let db = Db::connect(database)
        .await
        .with_context(|| format!("cannot open the database at {}", db::redact(url)))?;
    db.migrate().await.context("cannot apply migrations")?;
    Ok(db)
}

/// How a refused command reads: bad input names the flag at fault; other
/// errors keep their causes for the operator.
fn user_error(error: DomainError) -> anyhow::Error {
    match error {
        DomainError::Invalid { field, message } => anyhow::anyhow!("--{field}: {message}"),
        other => anyhow::Error::new(other),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Schema => {
            print!("{}", crate::graphql::sdl());
            Ok(())
        }
        Command::Migrate => {
            connect(&cli.database).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Seed {
            demo: _,
            patients,
            seed,
        } => {
            let db = connect(&cli.database).await?;
            if clinics::by_slug(&db, seed::DEMO_SLUG).await?.is_some() {
                anyhow::bail!(
                    "the demo clinic ({}) already exists in this database; seed a fresh database instead",
                    seed::DEMO_SLUG
                );
            }
            let started = std::time::Instant::now();
            let report = seed::demo(&db, &SeedOptions { patients, seed })
                .await
                .map_err(user_error)?;
            eprintln!("{report} in {:.1} s", started.elapsed().as_secs_f64());
            Ok(())
        }
        Command::Clinic {
            command:
                ClinicCommand::Create {
                    name,
                    slug,
                    timezone,
                },
        } => {
            let db = connect(&cli.database).await?;
            let clinic = clinics::create(&db, &name, &slug, &timezone)
                .await
                .map_err(user_error)?;
            eprintln!("created clinic {} ({})", clinic.name, clinic.slug);
            Ok(())
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    clinic,
                    name,
                    scopes,
                    expires_in_days,
                },
        } => {
            // Input first: a bad scope touches no database at all.
            let permissions = if scopes.is_empty() {
                Permission::ALL.to_vec()
            } else {
                Permission::parse_scopes(&scopes)
                    .map_err(|(_, message)| anyhow::anyhow!(message))?
            };
            let db = connect_existing(&cli.database).await?;
            let clinic = clinics::by_slug(&db, &clinic)
                .await
                .map_err(user_error)?
                .with_context(|| format!("no clinic with slug {clinic:?}"))?;
            let expires_at = expires_in_days.map(|days| Utc::now() + Duration::days(days.into()));
            let (_, secret) =
                clinics::create_token(&db, clinic.id, &name, &permissions, expires_at)
                    .await
                    .map_err(user_error)?;
            println!("{secret}");
            Ok(())
        }
        Command::Staff {
            command:
                StaffCommand::Create {
                    clinic,
                    email,
                    name,
                    role,
                    password,
                },
        } => {
            // Input first: a bad role touches no database at all.
            let role = Role::parse(&role).with_context(|| {
                format!(
                    "unknown role {role:?}; roles: owner, admin, coordinator, practitioner, viewer"
                )
            })?;
            let db = connect_existing(&cli.database).await?;
            let clinic = clinics::by_slug(&db, &clinic)
                .await
                .map_err(user_error)?
                .with_context(|| format!("no clinic with slug {clinic:?}"))?;
            let store = crate::domain::Store::new(db);
            let (member, temporary) = crate::domain::staff::create_from_cli(
                &store,
                clinic.id,
                crate::domain::staff::NewStaff {
                    email,
                    name,
                    role,
                    password,
                },
            )
            .await
            .map_err(user_error)?;
            eprintln!(
                "created {} ({}) as {} of {}",
                member.name, member.email, role, clinic.slug
            );
            if let Some(password) = temporary {
                println!("{password}");
            }
            Ok(())
        }
        Command::Backup { to } => {
            let url = &cli.database.database_url;
            if let Some(path) = db::sqlite_file_of(url)
                && !path.exists()
            {
                let path = path.display();
                anyhow::bail!("no database at {path} (from {})", db::redact(url));
            }
            let db = Db::connect(&cli.database)
                .await
                .with_context(|| format!("cannot open the database at {}", db::redact(url)))?;
            // pg_dump sets session state (search_path) that a
            // transaction-mode pooler would leak: it talks to the server directly.
            let report = db.backup(direct_url(&cli.database), &to).await;
            db.close().await;
            let report = report?;
            eprintln!(
                "backup written to {} ({} bytes, schema {})",
                to.display(),
                report.bytes,
                report.migration.as_deref().unwrap_or("-")
            );
            Ok(())
        }
        Command::Restore { from, force } => restore(&cli.database, &from, force).await,
        Command::Import {
            command:
                ImportCommand::Patients {
                    clinic,
                    dry_run,
                    json,
                    file,
                },
        } => import_patients(&cli.database, &clinic, dry_run, json, &file).await,
        Command::Serve(config) => serve(cli.database, config).await,
        Command::Bench { args } => bench(&cli.database, &args),
    }
}

/// The server itself, for tools that need a session of their own (pg_dump,
/// pg_restore): `--listen-database-url` when set, else `--database-url`.
fn direct_url(database: &DatabaseConfig) -> &str {
    database
        .listen_database_url
        .as_deref()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or(&database.database_url)
}

/// `journeymap restore`: checks the backup, then the target (empty unless
/// `force`), then restores.
async fn restore(
    database: &DatabaseConfig,
    from: &std::path::Path,
    force: bool,
) -> anyhow::Result<()> {
    use crate::db::backup;
    let url = &database.database_url;
    let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let backend = if postgres {
        sea_orm::DbBackend::Postgres
    } else {
        sea_orm::DbBackend::Sqlite
    };
    let migration = backup::check_backup(backend, from).await?;
    let target = db::sqlite_file_of(url);
    if postgres {
        db::ensure_postgres_database(url)
            .await
            .with_context(|| format!("cannot reach PostgreSQL at {}", db::redact(url)))?;
    } else if target.is_none() {
        anyhow::bail!(
            "restore needs a database file or PostgreSQL, not {}",
            db::redact(url)
        );
    }
    if postgres || target.as_deref().is_some_and(|t| t.exists()) {
        let db = Db::connect(database)
            .await
            .with_context(|| format!("cannot open the database at {}", db::redact(url)))?;
        let clinics = db.clinic_count().await;
        db.close().await;
        let clinics = clinics?;
        if clinics > 0 && !force {
            return Err(backup::BackupError::NotEmpty { clinics }.into());
        }
    }
    match target {
        Some(target) if !postgres => backup::sqlite_restore(from, &target).await?,
        _ => backup::pg_restore(direct_url(database), from)?,
    }
    eprintln!(
        "restored {} (schema {}) into {}; `journeymap serve` applies any newer migrations",
        from.display(),
        migration.as_deref().unwrap_or("-"),
        db::redact(url)
    );
    Ok(())
}

/// `journeymap import patients`: the import of `file` into `clinic`.
async fn import_patients(
    database: &DatabaseConfig,
    clinic: &str,
    dry_run: bool,
    json: bool,
    file: &std::path::Path,
) -> anyhow::Result<()> {
    use crate::domain::imports;
    let opened =
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let size = opened.metadata().map(|m| m.len()).unwrap_or(0);
    if size > imports::MAX_IMPORT_BYTES {
        anyhow::bail!(
            "{}: is over the import limit of {} MiB; split it into smaller files",
            file.display(),
            imports::MAX_IMPORT_BYTES / (1024 * 1024)
        );
    }
    let db = connect_existing(database).await?;
    let clinic = clinics::by_slug(&db, clinic)
        .await
        .map_err(user_error)?
        .with_context(|| format!("no clinic with slug {clinic:?}"))?;
    let store = crate::domain::Store::new(db);
    let who = crate::auth::Principal::system(clinic.id);
    let bar = indicatif::ProgressBar::new(size);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
        )
        .expect("progress template"),
    );
    let progress = {
        let bar = bar.clone();
        move |at: imports::Progress| {
            bar.set_position(at.bytes);
            bar.set_message(format!("{} rows", at.rows));
        }
    };
    let report = imports::patients(
        &store,
        &who,
        Box::new(std::io::BufReader::new(opened)),
        imports::ImportOptions { dry_run },
        &progress,
    )
    .await;
    bar.finish_and_clear();
    let report = report.map_err(|error| match error {
        DomainError::Invalid { message, .. } => {
            anyhow::anyhow!("{} refused: {message}", file.display())
        }
        other => anyhow::Error::new(other),
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
        if !report.unrecognized_columns.is_empty() {
            println!(
                "ignored columns: {}",
                report.unrecognized_columns.join(", ")
            );
        }
        for error in &report.errors {
            match &error.column {
                Some(column) => println!("line {}: {column}: {}", error.line, error.reason),
                None => println!("line {}: {}", error.line, error.reason),
            }
        }
        if report.errors_truncated {
            println!("(more rows failed than listed)");
        }
    }
    Ok(())
}

/// Runs the benchmark program that sits next to this binary, measuring this
/// binary; exits with its exit code.
fn bench(database: &DatabaseConfig, args: &[String]) -> anyhow::Result<()> {
    let me = std::env::current_exe().context("cannot find this program")?;
    let bench = me.with_file_name(format!("journeymap-bench{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        bench.is_file(),
        "the benchmark is a program of its own: build it with `cargo build --release -p journeymap-bench` (it is looked for at {})",
        bench.display()
    );
    let status = std::process::Command::new(&bench)
        .arg("--server")
        .arg(&me)
        .arg("--database-url")
        .arg(&database.database_url)
        .arg("--db-max-connections")
        .arg(database.db_max_connections.to_string())
        .args(args)
        .status()
        .with_context(|| format!("cannot run {}", bench.display()))?;
    if status.success() {
        Ok(())
    } else {
        std::process::exit(status.code().unwrap_or(1))
    }
}

async fn serve(database: DatabaseConfig, config: ServeConfig) -> anyhow::Result<()> {
    let demo = config.demo;
    // Bound first: while this replica waits for another's migrations or
    // applies its own, /healthz answers and /readyz says 503.
    let listener = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    listener.set_nonblocking(true)?;
    let starting = tokio_util::sync::CancellationToken::new();
    let early = {
        let listener = tokio::net::TcpListener::from_std(listener.try_clone()?)?;
        let stop = starting.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, crate::http::starting::router())
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        })
    };
    tracing::info!(addr = %listener.local_addr()?, "listening (starting)");
    let prepared = prepare(&database, demo).await;
    starting.cancel();
    let _ = early.await;
    let (db, demo_token) = prepared?;
    tracing::info!(database = %db::redact(&database.database_url), "database ready");
    let server = App::from_db(db, config)
        .await?
        .start_on(Some(listener))
        .await?;
    let url = format!("http://{}", server.addr());
    if let Some((token, password)) = demo_token {
        println!();
        println!(
            "Journeymap is serving the demo clinic \"{}\" ({}).",
            seed::DEMO_NAME,
            seed::DEMO_SLUG
        );
        println!();
        println!("  Dashboard {url}/dashboard");
        println!(
            "  Sign in   clinic {}, email {}, password {password}",
            seed::DEMO_SLUG,
            seed::DEMO_LOGIN_EMAIL
        );
        println!("  GraphiQL  {url}/graphql   (add the header  Authorization: Bearer {token})");
        println!("  Token     {token}");
        println!();
        println!("  Try it:");
        println!(
            "  curl -s {url}/graphql -H 'Content-Type: application/json' -H 'Authorization: Bearer {token}' \\\n    -d '{{\"query\":\"{{ viewer {{ clinic {{ name }} }} pathways {{ id name }} }}\"}}'"
        );
        println!();
    } else {
        println!("Journeymap is serving at {url}/graphql");
    }
    server.run_until_signalled().await
}

/// Connects, migrates and (with `--demo`) seeds the demo clinic and makes a
/// token for it and a fresh password for its owner's sign-in.
async fn prepare(
    database: &DatabaseConfig,
    demo: bool,
) -> anyhow::Result<(Db, Option<(String, String)>)> {
    let db = connect(database).await?;
    let demo_token = if demo {
        let clinic = match clinics::by_slug(&db, seed::DEMO_SLUG).await? {
            Some(clinic) => clinic,
            None => {
                eprintln!("seeding the demo clinic (first start only)…");
                seed::demo(&db, &SeedOptions::default()).await?;
                clinics::by_slug(&db, seed::DEMO_SLUG)
                    .await?
                    .context("the demo clinic was not created")?
            }
        };
        let name = format!("demo token ({})", Utc::now().format("%Y-%m-%d %H:%M UTC"));
        let (_, secret) =
            clinics::create_token(&db, clinic.id, &name, &Permission::ALL, None).await?;
        let password = crate::domain::staff::reset_password_from_cli(
            &crate::domain::Store::new(db.clone()),
            clinic.id,
            seed::DEMO_LOGIN_EMAIL,
        )
        .await?;
        Some((secret, password))
    } else {
        None
    };
    Ok((db, demo_token))
}
