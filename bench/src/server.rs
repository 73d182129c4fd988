//! The server under test: this binary's `serve`, as a child process, so that
//! its CPU time and memory are its own.

use std::{
    path::PathBuf,
    process::Stdio,
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::process::{Child, Command};

use journeymap::config::DatabaseConfig;

static BINARY: OnceLock<PathBuf> = OnceLock::new();

/// Measures the server binary at `path`.
pub fn use_binary(path: PathBuf) {
    let _ = BINARY.set(path);
}

/// The `journeymap` binary next to this program (both are built into the
/// same `target/release`).
pub fn sibling() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("cannot find this program")?;
    let server = me.with_file_name(format!("journeymap{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        server.is_file(),
        "no journeymap binary next to {}; build both with `cargo build --release -p journeymap -p journeymap-bench`, or name one with --server",
        me.display()
    );
    Ok(server)
}

/// A running server child process.
pub struct Server {
    child: Child,
    pid: u32,
    pub url: String,
    /// Milliseconds from spawning to a ready `/readyz`.
    pub ready_ms: f64,
    backend: &'static str,
}

impl Server {
    /// Starts `journeymap serve` on a free port with `extra` flags and waits
    /// until it is ready.
    pub async fn start(database: &DatabaseConfig, extra: &[&str]) -> anyhow::Result<Self> {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            listener.local_addr()?.port()
        };
        let exe = BINARY
            .get()
            .cloned()
            .context("no journeymap binary to measure")?;
        let started = Instant::now();
        let child = Command::new(exe)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--database-url")
            .arg(&database.database_url)
            .arg("--db-max-connections")
            .arg(database.db_max_connections.to_string())
            .arg("--sweep-interval-secs")
            .arg("0")
            // The benchmark measures the server, not the partner rate limit.
            .arg("--rate-limit-refill-per-second")
            .arg("0")
            .args(extra)
            // Failed requests are counted in the figures; a line for each
            // would bury them when an overloaded server times out hundreds.
            .env("RUST_LOG", "warn,tower_http=off")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the server")?;
        let pid = child.id().context("the server exited at once")?;
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        loop {
            if let Ok(response) = client.get(format!("{url}/readyz")).send().await
                && response.status().is_success()
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                anyhow::bail!("the server was not ready within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let backend = if database.database_url.starts_with("postgres") {
            "PostgreSQL"
        } else {
            "SQLite"
        };
        Ok(Self {
            child,
            pid,
            url,
            ready_ms: started.elapsed().as_secs_f64() * 1000.0,
            backend,
        })
    }

    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// CPU seconds (user + system) the server has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds_of(&self.pid.to_string())
    }

    fn status_kib(&self, key: &str) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find(|l| l.starts_with(key))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    }

    /// Resident memory now, in MiB.
    pub fn rss_mib(&self) -> f64 {
        self.status_kib("VmRSS:") / 1024.0
    }

    /// Peak resident memory so far, in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        self.status_kib("VmHWM:") / 1024.0
    }

    /// SQL statements the server has executed (from `/metrics`).
    pub async fn statements(&self) -> anyhow::Result<u64> {
        let text = reqwest::get(format!("{}/metrics", self.url))
            .await?
            .text()
            .await?;
        text.lines()
            .find_map(|line| line.strip_prefix("journeymap_db_statements_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
            .context("no statement counter in /metrics")
    }

    /// Stops the server.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// CPU seconds (user + system) this benchmark process has used so far: the
/// client's share of the machine.
pub fn bench_cpu_seconds() -> f64 {
    cpu_seconds_of("self")
}

/// CPU seconds (user + system) of the process `/proc/{pid}`.
/// CPU seconds (user + system) this process, the load generator, has used so far.
pub fn own_cpu_seconds() -> f64 {
    cpu_seconds_of("self")
}

fn cpu_seconds_of(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    // The kernel's USER_HZ; 100 on every Linux this runs on.
    100.0
}
