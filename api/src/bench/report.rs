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
    pub statements_per_request: f64,
    pub server_cpu_seconds: f64,
    pub server_peak_mib: f64,
    /// Extra lines specific to the workload.
    pub notes: Vec<String>,
}

impl Figures {
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize - 1;
        sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1000.0
    }

    /// Requests per second.
    pub fn throughput(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.name)?;
        writeln!(
            f,
            "  {} requests in {:.1} s: {:.0} requests/s, {} errors",
            self.requests,
            self.seconds,
            self.throughput(),
            self.errors
        )?;
        writeln!(
            f,
            "  latency  p50 {:.1} ms · p90 {:.1} ms · p99 {:.1} ms · max {:.1} ms",
            self.percentile(50.0),
            self.percentile(90.0),
            self.percentile(99.0),
            self.percentile(100.0)
        )?;
        writeln!(
            f,
            "  SQL statements per request {:.2} · server CPU {:.1} s ({:.0}% of one core) · server peak memory {:.1} MiB",
            self.statements_per_request,
            self.server_cpu_seconds,
            if self.seconds > 0.0 {
                self.server_cpu_seconds / self.seconds * 100.0
            } else {
                0.0
            },
            self.server_peak_mib
        )?;
        for note in &self.notes {
            writeln!(f, "  {note}")?;
        }
        Ok(())
    }
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
