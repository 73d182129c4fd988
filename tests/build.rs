//! Decides whether the PostgreSQL half of the end-to-end suite runs.
//!
//! With `JOURNEYMAP_TEST_DATABASE_URL` or `CI` set, the cfg
//! `journeymap_postgres_tests` is on: every PostgreSQL test runs, and one
//! whose server is missing or unreachable fails. Without either, those tests
//! are reported as ignored (never as passed), so `cargo test --workspace` on
//! a machine with only Rust is green and honest about what it did not run.
//! The same holds for the dashboard's browser tests and Chromium
//! (`journeymap_browser_tests`).

fn main() {
    println!("cargo::rerun-if-env-changed=JOURNEYMAP_TEST_DATABASE_URL");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rerun-if-env-changed=CHROMIUM");
    println!("cargo::rustc-check-cfg=cfg(journeymap_postgres_tests)");
    println!("cargo::rustc-check-cfg=cfg(journeymap_browser_tests)");
    let set = |name: &str| {
        std::env::var(name)
            .ok()
            .is_some_and(|value| !value.trim().is_empty())
    };
    // CI=false (or 0) is how some runners say "not CI".
    let ci = std::env::var("CI")
        .ok()
        .is_some_and(|value| !matches!(value.trim(), "" | "0" | "false"));
    if set("JOURNEYMAP_TEST_DATABASE_URL") || ci {
        println!("cargo::rustc-cfg=journeymap_postgres_tests");
    }
    // The dashboard's browser tests need Chromium (`CHROMIUM` or
    // /usr/bin/chromium). In CI they always run, and fail without it.
    let chromium = std::env::var("CHROMIUM")
        .ok()
        .filter(|path| !path.trim().is_empty())
        .unwrap_or_else(|| "/usr/bin/chromium".into());
    if ci || std::path::Path::new(&chromium).is_file() {
        println!("cargo::rustc-cfg=journeymap_browser_tests");
    }
}
