//! Operating Journeymap: durable commits on SQLite, upgrades that cannot
//! corrupt (a newer database refused, replicas migrating once, readiness
//! only after migrations), as an operator meets them: the built binary run as
//! a child process.

use std::{process::Stdio, time::Duration};

use journeymap::{
    config::{DatabaseConfig, SqliteSync},
    db::{
        Db,
        upgrade::{self, MIGRATION_LOCK},
    },
    sea_orm::{ConnectionTrait, Statement},
};
use journeymap_tests::{
    Backend, ServerProcess, fresh_database, on_both_backends, open_database, prepare_database,
    scalar_i64,
};
use reqwest::StatusCode;

const BINARY: &str = env!("CARGO_BIN_EXE_journeymap-under-test");

async fn strings(db: &Db, sql: &str) -> Vec<String> {
    db.conn()
        .query_all_raw(Statement::from_string(db.backend(), sql))
        .await
        .expect("query")
        .into_iter()
        .map(|row| row.try_get_by_index::<String>(0).expect("a string"))
        .collect()
}

/// The SQLite file of a `sqlite://FILE?mode=rwc` URL.
fn sqlite_path(url: &str) -> std::path::PathBuf {
    let rest = url.trim_start_matches("sqlite://");
    rest.split('?').next().unwrap().into()
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// --- durability ------------------------------------------------------------

/// A file database commits with `synchronous=FULL` in WAL mode unless the
/// operator asks for NORMAL (`--sqlite-synchronous normal`).
#[tokio::test]
async fn sqlite_commits_are_durable_by_default() {
    let (url, _guard) = fresh_database(Backend::Sqlite).await;
    let db = open_database(&url).await;
    assert_eq!(
        strings(&db, "PRAGMA journal_mode").await,
        vec!["wal".to_string()]
    );
    // 2 = FULL, 1 = NORMAL.
    assert_eq!(scalar_i64(&db, "PRAGMA synchronous").await, 2);
    db.close().await;

    let mut config = DatabaseConfig::new(url.clone());
    config.sqlite_synchronous = SqliteSync::Normal;
    let db = Db::connect(&config).await.expect("connect");
    assert_eq!(scalar_i64(&db, "PRAGMA synchronous").await, 1);
    db.close().await;
}

// --- upgrades ----------------------------------------------------------------

/// A database that a newer Journeymap migrated (a migration this binary does
/// not know, recorded as applied by 99.0.0): `serve` and `migrate` refuse,
/// naming both versions, and change nothing.
async fn an_older_binary_refuses_a_newer_database(backend: Backend) {
    let (url, _guard) = fresh_database(backend).await;
    prepare_database(&url).await;
    let db = open_database(&url).await;
    let future = "m20991231_000001_from_the_future";
    db.conn()
        .execute_raw(journeymap::db::statement(
            db.backend(),
            "INSERT INTO seaql_migrations (version, applied_at) VALUES (?, ?)",
            vec![future.into(), 4_102_444_800_i64.into()],
        ))
        .await
        .unwrap();
    db.conn()
        .execute_raw(journeymap::db::statement(
            db.backend(),
            "INSERT INTO journeymap_versions (migration, version, applied_at) VALUES (?, ?, ?)",
            vec![future.into(), "99.0.0".into(), journeymap::db::now().into()],
        ))
        .await
        .unwrap();
    let before = scalar_i64(&db, "SELECT COUNT(*) FROM seaql_migrations").await;
    for args in [
        vec!["serve", "--listen", "127.0.0.1:0", "--database-url", &url],
        vec!["migrate", "--database-url", &url],
    ] {
        let output = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(BINARY)
                .args(&args)
                .env("RUST_LOG", "warn")
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("the binary exits at once")
        .expect("run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("migrated by Journeymap 99.0.0")
                && stderr.contains(&format!("this binary, Journeymap {}", upgrade::VERSION))
                && stderr.contains(future),
            "{args:?}: the refusal names both versions and the migration: {stderr}"
        );
        assert!(
            !String::from_utf8_lossy(&output.stdout).contains("serving"),
            "{args:?} did not serve"
        );
    }
    assert_eq!(
        scalar_i64(&db, "SELECT COUNT(*) FROM seaql_migrations").await,
        before
    );
    db.close().await;
}

/// Three replicas started at once on one empty database all come up, and
/// every migration is applied (and recorded with this version) exactly once.
async fn replicas_starting_at_once_migrate_once(backend: Backend) {
    let (url, _guard) = fresh_database(backend).await;
    let replicas = futures::future::join_all(
        (0..3).map(|_| ServerProcess::start(BINARY, &url, &["--sweep-interval-secs", "0"])),
    )
    .await;
    let client = reqwest::Client::new();
    for replica in &replicas {
        let ready = client
            .get(format!("{}/readyz", replica.url))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), StatusCode::OK);
    }
    let db = open_database(&url).await;
    let known = upgrade::known_migrations();
    assert_eq!(
        strings(&db, "SELECT version FROM seaql_migrations ORDER BY version").await,
        known
    );
    assert_eq!(
        strings(
            &db,
            "SELECT migration FROM journeymap_versions ORDER BY migration"
        )
        .await,
        known
    );
    assert_eq!(
        strings(&db, "SELECT DISTINCT version FROM journeymap_versions").await,
        vec![upgrade::VERSION.to_string()]
    );
    db.close().await;
    for replica in replicas {
        replica.kill().await;
    }
}

/// While another replica migrates (it holds the migration lock), a starting
/// replica already listens: `/healthz` 200, `/readyz` and the API 503. Once
/// the lock is free it migrates and `/readyz` turns 200.
async fn readyz_is_503_until_migrations_are_done(backend: Backend) {
    let (url, _guard) = fresh_database(backend).await;
    // Hold the migration lock the way a migrating replica does.
    let held: Box<dyn std::any::Any + Send> = match backend {
        Backend::Postgres => {
            use journeymap::sea_orm::sqlx::{Connection, PgConnection};
            // Held the way the server holds it: by an open transaction, which
            // stays on one server connection behind a pooler too.
            let mut conn = PgConnection::connect(&url).await.expect("connect");
            journeymap::sea_orm::sqlx::raw_sql("BEGIN")
                .execute(&mut conn)
                .await
                .unwrap();
            journeymap::sea_orm::sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut conn)
                .await
                .unwrap();
            Box::new(conn)
        }
        Backend::Sqlite => {
            let file = std::fs::File::create(sqlite_path(&url).with_extension("migrate-lock"))
                .expect("lock file");
            file.lock().expect("lock");
            Box::new(file)
        }
    };
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(BINARY)
        .args(["serve", "--listen", &listen, "--database-url", &url])
        .args(["--sweep-interval-secs", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start");
    let base = format!("http://{listen}");
    let client = reqwest::Client::new();
    let status = |path: &'static str| {
        let request = client.get(format!("{base}{path}"));
        async move { request.send().await.ok().map(|r| r.status()) }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while status("/healthz").await.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..10 {
        assert_eq!(status("/healthz").await, Some(StatusCode::OK));
        assert_eq!(
            status("/readyz").await,
            Some(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(
            status("/graphql").await,
            Some(StatusCode::SERVICE_UNAVAILABLE)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let db = open_database(&url).await;
    let migrated = match backend {
        Backend::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE name = 'seaql_migrations'",
        Backend::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'seaql_migrations'"
        }
    };
    assert_eq!(scalar_i64(&db, migrated).await, 0, "nothing migrated yet");
    drop(held);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while status("/readyz").await != Some(StatusCode::OK) {
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        strings(&db, "SELECT version FROM seaql_migrations ORDER BY version").await,
        upgrade::known_migrations()
    );
    db.close().await;
    let _ = child.kill().await;
}

/// A statement longer than one TCP segment is answered without waiting for
/// the server's delayed acknowledgement: a socket without `TCP_NODELAY` holds
/// its last part back for up to 40 ms a statement (`db::nodelay`; the CSV
/// import's 500-row inserts). The pool is the server's own, `Db::connect`.
async fn a_long_statement_is_not_held_back(backend: Backend) {
    let (url, _guard) = fresh_database(backend).await;
    let db = open_database(&url).await;
    let sql = match backend {
        Backend::Postgres => "SELECT CAST(length($1) AS BIGINT)",
        Backend::Sqlite => "SELECT CAST(length(?) AS BIGINT)",
    };
    let text = "x".repeat(200_000);
    // Without TCP_NODELAY about half of them wait 40 ms or more; with it one
    // may still be slow (a connection opened, a busy machine), not several.
    let mut took = Vec::new();
    for _ in 0..20 {
        let started = std::time::Instant::now();
        let row = db
            .conn()
            .query_one_raw(Statement::from_sql_and_values(
                db.backend(),
                sql,
                [text.clone().into()],
            ))
            .await
            .expect("query")
            .expect("a row");
        took.push(started.elapsed());
        let length: i64 = row.try_get_by_index(0).expect("length");
        assert_eq!(length, 200_000);
    }
    let slow = took
        .iter()
        .filter(|t| **t >= Duration::from_millis(35))
        .count();
    assert!(
        slow <= 3,
        "{slow} of 20 statements of 200 KB took 35 ms or more: {took:?}"
    );
}

/// Every index is written on each insert and on each change of its columns, so
/// one whose columns begin another's, or are the same (plain, whole-table
/// indexes both), costs the writes and serves no query the other does not.
async fn no_index_is_a_prefix_of_another(backend: Backend) {
    let (url, _guard) = fresh_database(backend).await;
    prepare_database(&url).await;
    let db = open_database(&url).await;
    let sql = match backend {
        Backend::Postgres => {
            "SELECT t.relname::text, i.relname::text, k.ord::bigint, a.attname::text \
             FROM pg_index x \
             JOIN pg_class i ON i.oid = x.indexrelid \
             JOIN pg_class t ON t.oid = x.indrelid \
             JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = current_schema() \
             CROSS JOIN LATERAL unnest(x.indkey::int2[]) WITH ORDINALITY AS k(att, ord) \
             LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.att \
             WHERE NOT x.indisunique AND x.indpred IS NULL"
        }
        Backend::Sqlite => {
            "SELECT m.name, il.name, ii.seqno, ii.name \
             FROM sqlite_master m \
             JOIN pragma_index_list(m.name) il \
             JOIN pragma_index_info(il.name) ii \
             WHERE m.type = 'table' AND il.\"unique\" = 0 AND il.partial = 0"
        }
    };
    let rows = db
        .conn()
        .query_all_raw(Statement::from_string(db.backend(), sql))
        .await
        .expect("index columns");
    // (table, index) → (position, column); None marks an expression column.
    type Named = (String, String);
    let mut indexes: std::collections::BTreeMap<Named, Vec<(i64, Option<String>)>> =
        Default::default();
    for row in rows {
        let table: String = row.try_get_by_index(0).expect("table");
        let index: String = row.try_get_by_index(1).expect("index");
        let position: i64 = row.try_get_by_index(2).expect("position");
        let column: Option<String> = row.try_get_by_index(3).expect("column");
        indexes
            .entry((table, index))
            .or_default()
            .push((position, column));
    }
    let columns: Vec<(Named, Vec<String>)> = indexes
        .into_iter()
        .filter_map(|(key, mut columns)| {
            columns.sort();
            let columns: Option<Vec<String>> = columns.into_iter().map(|(_, c)| c).collect();
            Some((key, columns?))
        })
        .collect();
    let known = (
        (
            "follow_ups".to_string(),
            "ix_follow_ups_clinic_status_due".to_string(),
        ),
        vec![
            "clinic_id".to_string(),
            "status".to_string(),
            "due_at".to_string(),
        ],
    );
    assert!(
        columns.contains(&known),
        "the query reads indexes and their columns in order: {columns:?}"
    );
    let mut redundant = Vec::new();
    for ((table, index), short) in &columns {
        for ((other_table, other), long) in &columns {
            // An index with the same columns as another is the same waste.
            if table == other_table && index != other && long.starts_with(short) {
                redundant.push(format!(
                    "{table}: {index} {short:?} begins {other} {long:?}"
                ));
            }
        }
    }
    assert!(redundant.is_empty(), "redundant indexes: {redundant:#?}");
}

on_both_backends!(
    backend: an_older_binary_refuses_a_newer_database,
    replicas_starting_at_once_migrate_once,
    readyz_is_503_until_migrations_are_done,
    no_index_is_a_prefix_of_another,
    a_long_statement_is_not_held_back,
);

// --- backup and restore ------------------------------------------------------

const MAP: &str = r#"query($p: ID!) {
  journeyMap(pathwayId: $p) {
    stages { stage { key } activeCount enteredCount exitedCount touchpointCount }
    flows { from { key } to { key } kind count }
  }
}"#;

async fn run(args: &[&str]) -> std::process::Output {
    let database = args
        .iter()
        .position(|a| *a == "--database-url")
        .and_then(|i| args.get(i + 1));
    tokio::process::Command::new(BINARY)
        .args(args)
        .env("RUST_LOG", "warn")
        .env(
            "JOURNEYMAP_LISTEN_DATABASE_URL",
            database
                .and_then(|url| journeymap_tests::listen_url_for(url))
                .unwrap_or_default(),
        )
        .kill_on_drop(true)
        .output()
        .await
        .expect("run")
}

/// Every patient id the server at `url` lists.
async fn patient_ids(url: &str, token: &str) -> std::collections::BTreeSet<String> {
    let mut ids = std::collections::BTreeSet::new();
    let mut after = serde_json::Value::Null;
    loop {
        let page = journeymap_tests::gql_at(
            url,
            token,
            "query($a: String) { patients(first: 100, after: $a) { edges { node { id } } pageInfo { hasNextPage endCursor } } }",
            serde_json::json!({ "a": after }),
        )
        .await;
        let patients = &page["data"]["patients"];
        for edge in patients["edges"].as_array().expect("edges") {
            ids.insert(edge["node"]["id"].as_str().unwrap().to_string());
        }
        if patients["pageInfo"]["hasNextPage"] != true {
            return ids;
        }
        after = patients["pageInfo"]["endCursor"].clone();
    }
}

/// A backup taken while two clients keep creating patients holds every
/// patient acknowledged before it began, is intact, restores into an empty
/// database, and the restored server serves the same journey map. A second
/// restore over it is refused without --force and done with it.
async fn a_backup_under_write_load_restores(backend: Backend) {
    use serde_json::json;
    use std::sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    };
    let (url, _guard) = fresh_database(backend).await;
    let token = prepare_database(&url).await;
    let server = ServerProcess::start(BINARY, &url, &["--sweep-interval-secs", "0"]).await;
    let created = journeymap_tests::gql_at(
        &server.url,
        &token,
        journeymap_tests::CREATE_PATHWAY,
        json!({ "name": "Injectables" }),
    )
    .await;
    let pathway = created["data"]["createPathway"]["pathway"]["id"]
        .as_str()
        .expect("pathway")
        .to_string();
    let (server_url, server_token) = (server.url.clone(), token.clone());
    let create_patient = move |name: String| {
        let (url, token) = (server_url.clone(), server_token.clone());
        async move {
            let created = journeymap_tests::gql_at(
                &url,
                &token,
                "mutation($input: CreatePatientInput!) { createPatient(input: $input) { patient { id } } }",
                json!({ "input": { "givenName": name, "familyName": "Load", "phone": "+14155550123" } }),
            )
            .await;
            created["data"]["createPatient"]["patient"]["id"]
                .as_str()
                .map(str::to_string)
        }
    };
    for n in 0..3 {
        let patient = create_patient(format!("Mapped{n}")).await.expect("patient");
        let started = journeymap_tests::gql_at(
            &server.url,
            &token,
            "mutation($input: StartJourneyInput!) { startJourney(input: $input) { journey { id } } }",
            json!({ "input": { "patientId": patient, "pathwayId": pathway } }),
        )
        .await;
        assert!(started["data"]["startJourney"]["journey"]["id"].is_string());
    }

    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
            let create_patient = create_patient.clone();
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    if let Some(id) = create_patient(format!("Writer{w}n{n}")).await {
                        acknowledged.lock().unwrap().push(id);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before: Vec<String> = acknowledged.lock().unwrap().clone();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("journeymap.backup");
    let file_arg = file.to_str().unwrap();
    let output = run(&["backup", "--to", file_arg, "--database-url", &url]).await;
    assert!(
        output.status.success(),
        "backup: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let after = acknowledged.lock().unwrap().len();
    assert!(
        !before.is_empty() && after > before.len(),
        "writes kept being acknowledged while the backup ran ({} then {after})",
        before.len()
    );
    let map = journeymap_tests::gql_at(&server.url, &token, MAP, json!({ "p": pathway })).await;
    assert!(map["data"]["journeyMap"]["stages"].is_array(), "{map}");

    // A backup never overwrites.
    let again = run(&["backup", "--to", file_arg, "--database-url", &url]).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let (restored_url, _restored_guard) = fresh_database(backend).await;
    let output = run(&[
        "restore",
        "--from",
        file_arg,
        "--database-url",
        &restored_url,
    ])
    .await;
    assert!(
        output.status.success(),
        "restore: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    if backend == Backend::Sqlite {
        let db = open_database(&restored_url).await;
        assert_eq!(
            strings(&db, "PRAGMA integrity_check").await,
            vec!["ok".to_string()]
        );
        db.close().await;
    }
    let restored =
        ServerProcess::start(BINARY, &restored_url, &["--sweep-interval-secs", "0"]).await;
    let ids = patient_ids(&restored.url, &token).await;
    let missing: Vec<&String> = before.iter().filter(|id| !ids.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged before the backup are missing from it",
        missing.len()
    );
    let restored_map =
        journeymap_tests::gql_at(&restored.url, &token, MAP, json!({ "p": pathway })).await;
    assert_eq!(
        restored_map["data"], map["data"],
        "the restored server serves the same journey map"
    );
    restored.kill().await;
    server.kill().await;

    // Over a database with data: refused unless --force.
    let refused = run(&[
        "restore",
        "--from",
        file_arg,
        "--database-url",
        &restored_url,
    ])
    .await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let forced = run(&[
        "restore",
        "--from",
        file_arg,
        "--database-url",
        &restored_url,
        "--force",
    ])
    .await;
    assert!(
        forced.status.success(),
        "restore --force: {}",
        String::from_utf8_lossy(&forced.stderr)
    );

    // Something that is not a backup is refused before anything is touched.
    let junk = dir.path().join("junk.backup");
    std::fs::write(&junk, b"not a backup at all").unwrap();
    let refused = run(&[
        "restore",
        "--from",
        junk.to_str().unwrap(),
        "--database-url",
        &restored_url,
        "--force",
    ])
    .await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is not a usable Journeymap backup"));
}

on_both_backends!(backend: a_backup_under_write_load_restores);
