//! Latency statistics and the printed report.

use std::{fmt, time::Duration};

/// The figures of one workload.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub name: String,
    pub requests: usize,
    pub errors: usize,
    pub seconds: f64,
    pub latencies: Vec<Duration>,
    /// NaN when the work is not counted (background work such as webhook
    /// delivery is left out of the server's statement counter).
    pub statements_per_request: f64,
    pub server_cpu_seconds: f64,
    pub server_peak_mib: f64,
    /// What `requests` counts, in the singular ("message", "delivery");
    /// requests when empty.
    pub unit: &'static str,
    /// Extra lines specific to the workload.
    pub notes: Vec<String>,
    /// CPU seconds of the load generator (this process) over `loadgen_seconds`.
    pub loadgen_cpu_seconds: f64,
    pub loadgen_seconds: f64,
}

impl Figures {
    /// The `p`th percentile of the latencies, in milliseconds.
    pub fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        percentile_ms(&sorted, p)
    }

    /// Requests per second.
    pub fn throughput(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }

    fn units(&self) -> (&str, String) {
        let singular = if self.unit.is_empty() {
            "request"
        } else {
            self.unit
        };
        let plural = match singular.strip_suffix('y') {
            Some(stem) => format!("{stem}ies"),
            None => format!("{singular}s"),
        };
        (singular, plural)
    }
}

/// The `p`th percentile of `sorted`, in milliseconds (0 when empty).
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize - 1;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// "p50 … · p90 … · p99 … · max …" of `samples`.
pub fn percentiles(samples: &[Duration]) -> String {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    format!(
        "p50 {:.1} ms · p90 {:.1} ms · p99 {:.1} ms · max {:.1} ms",
        percentile_ms(&sorted, 50.0),
        percentile_ms(&sorted, 90.0),
        percentile_ms(&sorted, 99.0),
        percentile_ms(&sorted, 100.0)
    )
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (singular, plural) = self.units();
        writeln!(f, "{}", self.name)?;
        writeln!(
            f,
            "  {} {plural} in {:.1} s: {:.0} {plural}/s, {} errors",
            self.requests,
            self.seconds,
            self.throughput(),
            self.errors
        )?;
        // Workloads without a latency per request (a backlog drained) say so in their notes.
        if !self.latencies.is_empty() {
            writeln!(f, "  latency  {}", percentiles(&self.latencies))?;
        }
        let statements = if self.statements_per_request.is_nan() {
            "n/a".to_string()
        } else {
            format!("{:.2}", self.statements_per_request)
        };
        writeln!(
            f,
            "  SQL statements per {singular} {statements} · server CPU {:.1} s ({:.0}% of one core) · server peak memory {:.1} MiB",
            self.server_cpu_seconds,
            if self.seconds > 0.0 {
                self.server_cpu_seconds / self.seconds * 100.0
            } else {
                0.0
            },
            self.server_peak_mib
        )?;
        if self.loadgen_seconds > 0.0 {
            writeln!(
                f,
                "  load generator CPU {:.1} s ({:.0}% of one core)",
                self.loadgen_cpu_seconds,
                self.loadgen_cpu_seconds / self.loadgen_seconds * 100.0
            )?;
        }
        for note in &self.notes {
            writeln!(f, "  {note}")?;
        }
        Ok(())
    }
}

/// The median and the spread of one workload's runs (`--repeat`).
pub fn summary(runs: &[Figures]) -> String {
    let median = |mut values: Vec<f64>| -> (f64, f64, f64) {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        if n == 0 {
            return (0.0, 0.0, 0.0);
        }
        let mid = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        (mid, values[0], values[n - 1])
    };
    let plural = runs.first().map(|r| r.units().1).unwrap_or_default();
    let (rate, rate_min, rate_max) = median(runs.iter().map(Figures::throughput).collect());
    let head = format!(
        "{} × {}: median {rate:.0} {plural}/s ({rate_min:.0}–{rate_max:.0})",
        runs.first().map(|r| r.name.as_str()).unwrap_or_default(),
        runs.len(),
    );
    // A drain (W4) times the whole backlog, not each request: no latencies.
    if runs.iter().all(|r| r.latencies.is_empty()) {
        return head;
    }
    let (p99, p99_min, p99_max) = median(runs.iter().map(|r| r.percentile(99.0)).collect());
    let (p50, p50_min, p50_max) = median(runs.iter().map(|r| r.percentile(50.0)).collect());
    format!(
        "{head} · p50 {p50:.1} ms ({p50_min:.1}–{p50_max:.1}) · p99 {p99:.1} ms ({p99_min:.1}–{p99_max:.1})"
    )
}

/// A one-line description of this machine.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kib| format!("{:.0} GiB", kib / 1024.0 / 1024.0))
        .unwrap_or_default();
    format!("{cpus} cores ({model}), {memory}")
}
