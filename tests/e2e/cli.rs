//! The command line as a person uses it: the built binary run as a child
//! process in a fresh directory, with nothing but its arguments (the default
//! database is `journeymap.db` in the working directory). Output that scripts
//! capture with `$(…)` is alone on stdout; bad input gets a clear message and
//! a non-zero exit code, and writes nothing.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Output,
    time::Duration,
};

use journeymap_tests::{Backend, fresh_database, gql_at, on_both_backends};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

const BINARY: &str = env!("CARGO_BIN_EXE_journeymap-under-test");

/// A fresh, empty working directory.
struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        Self(tempfile::tempdir().expect("temp dir"))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    /// The default database of a command run here.
    fn database(&self) -> PathBuf {
        self.path().join("journeymap.db")
    }

    /// Runs `journeymap args…` here, with no `JOURNEYMAP_*` settings from
    /// the environment of the test run.
    async fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[]).await
    }

    async fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        command(self.path(), args, env)
            .output()
            .await
            .expect("run the journeymap command")
    }
}

fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(BINARY);
    command.current_dir(dir).args(args).kill_on_drop(true);
    for (name, _) in std::env::vars() {
        if name.starts_with("JOURNEYMAP_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    command
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 stdout")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("UTF-8 stderr")
}

#[track_caller]
fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}: exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        stdout(output),
        stderr(output)
    );
}

/// Exit code 1, nothing on stdout, and `message` in the error on stderr.
#[track_caller]
fn assert_refused(output: &Output, message: &str, what: &str) {
    assert_eq!(
        output.status.code(),
        Some(1),
        "{what}: expected exit code 1\nstdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
    assert_eq!(stdout(output), "", "{what}: nothing on stdout");
    let error = stderr(output);
    assert!(
        error
            .lines()
            .any(|l| l.starts_with("error: ") && l.contains(message)),
        "{what}: expected an error line with {message:?} on stderr, got:\n{error}"
    );
}

/// The one line of stdout, after checking there is exactly one.
#[track_caller]
fn only_line(output: &Output, what: &str) -> String {
    let out = stdout(output);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: stdout must be the value alone, got {out:?}"
    );
    assert_eq!(
        out,
        format!("{}\n", lines[0]),
        "{what}: one line, newline-ended"
    );
    lines[0].to_string()
}

/// `journeymap serve` running in a directory: its URL and what it printed.
struct Serving {
    child: tokio::process::Child,
    url: String,
    printed: Vec<String>,
}

/// Starts `journeymap serve --listen 127.0.0.1:0 extra…` in `dir` and reads
/// stdout until it says where it serves.
async fn serve(dir: &Path, extra: &[&str]) -> Serving {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut child = command(dir, &args, &[("RUST_LOG", "warn")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start journeymap serve");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    // The demo is seeded on first start: give it time in a debug build.
    let url = tokio::time::timeout(Duration::from_secs(180), async {
        while let Ok(Some(line)) = lines.next_line().await {
            printed.push(line.clone());
            if let Some(rest) = line.strip_prefix("Journeymap is serving at ") {
                return rest.trim_end_matches("/graphql").to_string();
            }
            if let Some(rest) = line.trim().strip_prefix("GraphiQL") {
                let address = rest.split_whitespace().next().unwrap_or_default();
                // The demo banner: read on to its last line.
                while let Ok(Some(line)) = lines.next_line().await {
                    let done = line.trim().starts_with("-d ");
                    printed.push(line);
                    if done {
                        break;
                    }
                }
                return address.trim_end_matches("/graphql").to_string();
            }
        }
        panic!("journeymap serve exited before serving: {printed:#?}");
    })
    .await
    .expect("serving within 180 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Serving {
        child,
        url,
        printed,
    }
}

impl Serving {
    async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }
}

/// The token `serve --demo` printed on its `Token` line.
fn printed_token(printed: &[String]) -> String {
    printed
        .iter()
        .find_map(|l| l.trim().strip_prefix("Token"))
        .map(|t| t.trim().to_string())
        .unwrap_or_else(|| panic!("no Token line in {printed:#?}"))
}

// --- serve --demo ---------------------------------------------------------------

/// The clinic, email and password `serve --demo` printed on its `Sign in` line.
fn printed_sign_in(printed: &[String]) -> Value {
    let line = printed
        .iter()
        .find_map(|l| l.trim().strip_prefix("Sign in"))
        .unwrap_or_else(|| panic!("no Sign in line in {printed:#?}"));
    let parts: Vec<&str> = line
        .split(',')
        .map(|p| p.split_whitespace().nth(1).expect("a value"))
        .collect();
    json!({ "clinic": parts[0], "email": parts[1], "password": parts[2] })
}

/// Signs in at `url` with `input`: the staff member's role, or null.
async fn sign_in_role(url: &str, input: &Value) -> Value {
    let answer: Value = reqwest::Client::new()
        .post(format!("{url}/graphql"))
        .json(&json!({
            "query": "mutation($input: LoginInput!) { login(input: $input) { staff { role } } }",
            "variables": { "input": input },
        }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    answer["data"]["login"]["staff"]["role"].clone()
}

/// In an empty directory, `serve --demo` creates `journeymap.db`, seeds the
/// demo clinic, prints a token and GraphiQL's address, and the token answers
/// a query. Started again, it seeds nothing more and prints a new token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_demo_in_an_empty_directory_seeds_and_prints_a_working_token() {
    let dir = Dir::new();
    let server = serve(dir.path(), &["--demo"]).await;
    assert!(
        dir.database().exists(),
        "journeymap.db in the working directory"
    );
    let banner = server.printed.join("\n");
    assert!(
        banner.contains(
            "Journeymap is serving the demo clinic \"Glow Aesthetics & Wellness\" (glow)"
        ),
        "{banner}"
    );
    let token = printed_token(&server.printed);
    assert!(token.starts_with("jm_"), "{token}");
    assert!(
        banner.contains(&format!("{}/graphql", server.url))
            && banner.contains(&format!("Authorization: Bearer {token}")),
        "{banner}"
    );

    // The dashboard's address and the owner's sign-in, which works.
    assert!(
        banner.contains(&format!("Dashboard {}/dashboard", server.url)),
        "{banner}"
    );
    let first_sign_in = printed_sign_in(&server.printed);
    assert_eq!(
        sign_in_role(&server.url, &first_sign_in).await,
        json!("OWNER")
    );

    const OVERVIEW: &str = "{ viewer { clinic { name slug } } pathways { name stages { key } } patients { totalCount } }";
    let answer = gql_at(&server.url, &token, OVERVIEW, json!({})).await;
    assert!(answer.get("errors").is_none(), "{answer}");
    let data = &answer["data"];
    assert_eq!(
        data["viewer"]["clinic"],
        json!({ "name": "Glow Aesthetics & Wellness", "slug": "glow" })
    );
    assert_eq!(data["pathways"].as_array().unwrap().len(), 3, "{data}");
    assert_eq!(data["patients"]["totalCount"], 600);
    server.stop().await;

    // Again in the same directory: the same clinic, a new token, both work.
    let again = serve(dir.path(), &["--demo"]).await;
    let second = printed_token(&again.printed);
    assert_ne!(second, token);
    for token in [&token, &second] {
        let answer = gql_at(&again.url, token, OVERVIEW, json!({})).await;
        assert_eq!(answer["data"]["patients"]["totalCount"], 600, "{answer}");
    }
    // A new password at every start: the old one stops working.
    let second_sign_in = printed_sign_in(&again.printed);
    assert_ne!(second_sign_in, first_sign_in);
    assert_eq!(
        sign_in_role(&again.url, &second_sign_in).await,
        json!("OWNER")
    );
    assert_eq!(sign_in_role(&again.url, &first_sign_in).await, Value::Null);
    let clinics = gql_at(&again.url, &second, "{ pathways { id } }", json!({})).await;
    assert_eq!(clinics["data"]["pathways"].as_array().unwrap().len(), 3);
    again.stop().await;
}

// --- token create, staff create ---------------------------------------------------

/// `token create` prints the token alone on stdout (so `$(…)` captures it),
/// with every scope unless told otherwise; `staff create` prints a generated
/// password alone, and nothing when the password is given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_and_staff_create_print_only_what_scripts_capture() {
    let dir = Dir::new();
    let created = dir
        .run(&[
            "clinic",
            "create",
            "--name",
            "Glow Aesthetics",
            "--slug",
            "glow",
        ])
        .await;
    assert_success(&created, "clinic create");
    assert_eq!(
        stdout(&created),
        "",
        "clinic create prints nothing on stdout"
    );
    assert!(stderr(&created).contains("created clinic Glow Aesthetics (glow)"));

    let full = dir
        .run(&[
            "token",
            "create",
            "--clinic",
            "glow",
            "--name",
            "HubSpot sync",
        ])
        .await;
    assert_success(&full, "token create");
    let full = only_line(&full, "token create");
    let scoped = dir
        .run(&[
            "token",
            "create",
            "--clinic",
            "glow",
            "--name",
            "Reader",
            "--scope",
            "patients:read",
            "--scope",
            "journeys:read",
            "--expires-in-days",
            "1",
        ])
        .await;
    assert_success(&scoped, "token create --scope");
    let scoped = only_line(&scoped, "token create --scope");

    let generated = dir
        .run(&[
            "staff",
            "create",
            "--clinic",
            "glow",
            "--email",
            "you@glow.example",
            "--name",
            "Sam Rivera",
            "--role",
            "admin",
        ])
        .await;
    assert_success(&generated, "staff create");
    let password = only_line(&generated, "staff create");
    assert!(password.chars().count() >= 12, "{password:?}");
    assert!(stderr(&generated).contains("created Sam Rivera (you@glow.example) as"));
    let given = dir
        .run(&[
            "staff",
            "create",
            "--clinic",
            "glow",
            "--email",
            "lee@glow.example",
            "--name",
            "Lee",
            "--role",
            "viewer",
            "--password",
            "a long enough password",
        ])
        .await;
    assert_success(&given, "staff create --password");
    assert_eq!(stdout(&given), "", "a given password is not printed");
    let from_env = dir
        .run_with(
            &[
                "staff",
                "create",
                "--clinic",
                "glow",
                "--email",
                "kim@glow.example",
                "--name",
                "Kim",
                "--role",
                "coordinator",
            ],
            &[("JOURNEYMAP_STAFF_PASSWORD", "from the environment")],
        )
        .await;
    assert_success(&from_env, "staff create with JOURNEYMAP_STAFF_PASSWORD");
    assert_eq!(stdout(&from_env), "");

    // What they printed works against the server on the same database.
    let server = serve(dir.path(), &[]).await;
    let viewer = gql_at(&server.url, &full, "{ viewer { name scopes } }", json!({})).await;
    assert_eq!(viewer["data"]["viewer"]["name"], "HubSpot sync", "{viewer}");
    assert_eq!(
        viewer["data"]["viewer"]["scopes"].as_array().unwrap().len(),
        13,
        "every scope: {viewer}"
    );
    let viewer = gql_at(
        &server.url,
        &scoped,
        "{ viewer { name scopes } }",
        json!({}),
    )
    .await;
    assert_eq!(
        viewer["data"]["viewer"]["scopes"],
        json!(["patients:read", "journeys:read"]),
        "{viewer}"
    );
    let tokens = gql_at(
        &server.url,
        &full,
        "{ apiTokens { name expiresAt } }",
        json!({}),
    )
    .await;
    let reader = tokens["data"]["apiTokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "Reader")
        .cloned()
        .unwrap_or_else(|| panic!("{tokens}"));
    let expires = chrono::DateTime::parse_from_rfc3339(reader["expiresAt"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let in_hours = (expires - chrono::Utc::now()).num_minutes() as f64 / 60.0;
    assert!((23.9..=24.0).contains(&in_hours), "expires in {in_hours} h");
    for (email, password, role) in [
        ("you@glow.example", password.as_str(), "ADMIN"),
        ("lee@glow.example", "a long enough password", "VIEWER"),
        ("kim@glow.example", "from the environment", "COORDINATOR"),
    ] {
        let login = reqwest::Client::new()
            .post(format!("{}/graphql", server.url))
            .json(&json!({
                "query": "mutation($input: LoginInput!) { login(input: $input) { staff { role } } }",
                "variables": { "input": { "clinic": "glow", "email": email, "password": password } },
            }))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        assert_eq!(
            login["data"]["login"]["staff"]["role"], role,
            "{email}: {login}"
        );
    }
    server.stop().await;
}

// --- schema, migrate, seed ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_prints_schema_graphql() {
    let dir = Dir::new();
    let output = dir.run(&["schema"]).await;
    assert_success(&output, "schema");
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../schema.graphql"))
            .expect("schema.graphql");
    assert!(
        stdout(&output) == committed,
        "`journeymap schema` differs from schema.graphql"
    );
    assert!(!dir.database().exists(), "schema needs no database");
}

/// Rows per table of a database, read directly (what a dump would compare).
async fn row_counts(database_url: &str, tables: &[&str]) -> BTreeMap<String, i64> {
    use journeymap::sea_orm::{ConnectionTrait, Statement};
    let db = journeymap::db::Db::connect(&journeymap::config::DatabaseConfig::new(
        database_url.to_string(),
    ))
    .await
    .expect("open the database");
    let mut counts = BTreeMap::new();
    for table in tables {
        let row = db
            .conn()
            .query_one_raw(Statement::from_string(
                db.backend(),
                format!("SELECT COUNT(*) AS n FROM {table}"),
            ))
            .await
            .expect("count")
            .expect("a row");
        counts.insert(table.to_string(), row.try_get::<i64>("", "n").unwrap());
    }
    db.close().await;
    counts
}

/// `migrate` makes a new database ready: every migration applied, no rows;
/// again, it changes nothing.
async fn migrate_prepares_a_new_database(backend: Backend) {
    let dir = Dir::new();
    let (url, _guard) = match backend {
        Backend::Sqlite => (
            format!("sqlite://{}?mode=rwc", dir.database().display()),
            None,
        ),
        Backend::Postgres => {
            let (url, guard) = fresh_database(backend).await;
            (url, Some(guard))
        }
    };
    for run in ["first", "second"] {
        let output = dir.run(&["migrate", "--database-url", &url]).await;
        assert_success(&output, &format!("migrate ({run} run)"));
        assert_eq!(stdout(&output), "");
        assert!(
            stderr(&output).contains("migrations applied"),
            "{}",
            stderr(&output)
        );
    }
    let db = journeymap::db::Db::connect(&journeymap::config::DatabaseConfig::new(url.clone()))
        .await
        .unwrap();
    assert!(db.is_ready().await, "every migration applied");
    db.close().await;
    let counts = row_counts(&url, &["clinics", "patients", "events", "staff"]).await;
    assert!(counts.values().all(|n| *n == 0), "{counts:?}");
}

/// Everything that makes up the demo clinic, as a client reads it, without
/// ids or times (random and relative to the hour of seeding).
async fn clinic_contents(url: &str, token: &str) -> Value {
    let pathways = gql_at(
        url,
        token,
        "{ pathways { name stages { key name category position targetHours terminal followUpRules { delayHours channel note } } } }",
        json!({}),
    )
    .await;
    let patients = gql_at(
        url,
        token,
        r#"{ patients(first: 100) { totalCount edges { node {
            externalId givenName familyName email phone tags
            journeys { pathway { name } status currentStage { key } history { kind fromStage { key } toStage { key } note } }
            touchpoints(first: 100) { totalCount edges { node { channel direction kind summary emotion momentOfTruth stage { key } } } }
            feedback(first: 100) { totalCount edges { node { kind score comment stage { key } } } }
            followUps { kind status channel note }
        } } } }"#,
        json!({}),
    )
    .await;
    assert!(pathways.get("errors").is_none(), "{pathways}");
    assert!(patients.get("errors").is_none(), "{patients}");
    json!({ "pathways": pathways["data"], "patients": patients["data"] })
}

/// Seeds a fresh database with `seed --demo --patients 50 --seed <seed>` and
/// reads the clinic back through the API.
async fn seeded_clinic(backend: Backend, seed: &str) -> Value {
    let dir = Dir::new();
    let (url, _guard) = match backend {
        Backend::Sqlite => (
            format!("sqlite://{}?mode=rwc", dir.database().display()),
            None,
        ),
        Backend::Postgres => {
            let (url, guard) = fresh_database(backend).await;
            (url, Some(guard))
        }
    };
    let seeded = dir
        .run(&[
            "seed",
            "--demo",
            "--patients",
            "50",
            "--seed",
            seed,
            "--database-url",
            &url,
        ])
        .await;
    assert_success(&seeded, "seed");
    assert_eq!(stdout(&seeded), "", "seed reports on stderr");
    assert!(
        stderr(&seeded).contains("seeded Glow Aesthetics & Wellness: 50 patients"),
        "{}",
        stderr(&seeded)
    );

    // Seeding again is refused and changes nothing.
    let tables = [
        "clinics",
        "patients",
        "journeys",
        "stage_transitions",
        "touchpoints",
        "feedback",
        "follow_ups",
    ];
    let before = row_counts(&url, &tables).await;
    let again = dir
        .run(&[
            "seed",
            "--demo",
            "--patients",
            "50",
            "--seed",
            seed,
            "--database-url",
            &url,
        ])
        .await;
    assert_refused(
        &again,
        "the demo clinic (glow) already exists",
        "seed twice",
    );
    assert_eq!(row_counts(&url, &tables).await, before);

    let token = dir
        .run(&[
            "token",
            "create",
            "--clinic",
            "glow",
            "--name",
            "compare",
            "--database-url",
            &url,
        ])
        .await;
    assert_success(&token, "token create");
    let token = only_line(&token, "token create");
    // One query reads the whole clinic: lift the complexity and cost limits.
    let server = serve(
        dir.path(),
        &[
            "--database-url",
            &url,
            "--sweep-interval-secs",
            "0",
            "--max-query-complexity",
            "10000000",
            "--rate-limit-refill-per-second",
            "0",
        ],
    )
    .await;
    let contents = clinic_contents(&server.url, &token).await;
    server.stop().await;
    contents
}

/// The same `--seed` gives the same clinic on two databases; another seed
/// another one.
async fn the_same_seed_gives_the_same_clinic(backend: Backend) {
    let first = seeded_clinic(backend, "7").await;
    let second = seeded_clinic(backend, "7").await;
    assert_eq!(first["patients"]["patients"]["totalCount"], 50);
    let touchpoints: i64 = first["patients"]["patients"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["touchpoints"]["totalCount"].as_i64().unwrap())
        .sum();
    assert!(
        touchpoints > 50,
        "a clinic with a history: {touchpoints} touchpoints"
    );
    if first != second {
        let (a, b) = (first.to_string(), second.to_string());
        let at = a
            .bytes()
            .zip(b.bytes())
            .position(|(x, y)| x != y)
            .unwrap_or(0);
        panic!(
            "seed 7 gave two different clinics; first difference at byte {at}:\n{}\n{}",
            &a[at.saturating_sub(200)..(at + 200).min(a.len())],
            &b[at.saturating_sub(200)..(at + 200).min(b.len())]
        );
    }
    let other = seeded_clinic(backend, "8").await;
    assert_ne!(
        first["patients"], other["patients"],
        "seed 8 gives another clinic"
    );
}

on_both_backends!(backend: migrate_prepares_a_new_database, the_same_seed_gives_the_same_clinic);

// --- bad input -------------------------------------------------------------------

/// Rows of the tables the admin commands write.
async fn admin_rows(dir: &Dir) -> BTreeMap<String, i64> {
    row_counts(
        &format!("sqlite://{}?mode=rwc", dir.database().display()),
        &["clinics", "staff", "api_tokens", "audit_log", "events"],
    )
    .await
}

/// A duplicate slug, an unknown clinic, role or scope, a short password, a
/// bad email or slug: a clear message, exit code 1, nothing on stdout and
/// nothing written. In a directory without a database, `token create` and
/// `staff create` create none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly_and_writes_nothing() {
    let dir = Dir::new();
    assert_success(
        &dir.run(&["clinic", "create", "--name", "Glow", "--slug", "glow"])
            .await,
        "clinic create",
    );
    let before = admin_rows(&dir).await;
    let staff = |extra: &[&'static str]| {
        let mut args = vec![
            "staff",
            "create",
            "--clinic",
            "glow",
            "--email",
            "sam@glow.example",
            "--name",
            "Sam",
            "--role",
            "admin",
        ];
        args.extend_from_slice(extra);
        args
    };
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "a duplicate clinic slug",
            vec!["clinic", "create", "--name", "Glow again", "--slug", "glow"],
            "a clinic with slug \"glow\" exists",
        ),
        (
            "a slug that is not a key",
            vec!["clinic", "create", "--name", "Spaces", "--slug", "Glow Spa"],
            "--slug",
        ),
        (
            "an empty clinic name",
            vec!["clinic", "create", "--name", "", "--slug", "empty"],
            "--name: must not be empty",
        ),
        (
            "token create for an unknown clinic",
            vec!["token", "create", "--clinic", "nope", "--name", "x"],
            "no clinic with slug \"nope\"",
        ),
        (
            "an unknown scope",
            vec![
                "token", "create", "--clinic", "glow", "--name", "x", "--scope", "teleport",
            ],
            "unknown scope \"teleport\"",
        ),
        (
            "staff create for an unknown clinic",
            vec![
                "staff",
                "create",
                "--clinic",
                "nope",
                "--email",
                "sam@glow.example",
                "--name",
                "Sam",
                "--role",
                "admin",
            ],
            "no clinic with slug \"nope\"",
        ),
        (
            "an unknown role",
            vec![
                "staff",
                "create",
                "--clinic",
                "glow",
                "--email",
                "sam@glow.example",
                "--name",
                "Sam",
                "--role",
                "wizard",
            ],
            "unknown role \"wizard\"; roles: owner, admin, coordinator, practitioner, viewer",
        ),
        (
            "a short password",
            staff(&["--password", "short"]),
            "--password: must be at least 12 characters",
        ),
        (
            "a bad email",
            vec![
                "staff", "create", "--clinic", "glow", "--email", "sam", "--name", "Sam", "--role",
                "admin",
            ],
            "--email",
        ),
    ];
    for (what, args, message) in &cases {
        let output = dir.run(args).await;
        assert_refused(&output, message, what);
        assert_eq!(admin_rows(&dir).await, before, "{what}: wrote something");
    }
    // A short password from the environment is refused the same way.
    let output = dir
        .run_with(&staff(&[]), &[("JOURNEYMAP_STAFF_PASSWORD", "short")])
        .await;
    assert_refused(
        &output,
        "at least 12 characters",
        "a short JOURNEYMAP_STAFF_PASSWORD",
    );
    assert_eq!(admin_rows(&dir).await, before);
    // A duplicate email, once the first one exists.
    assert_success(
        &dir.run(&staff(&["--password", "a long enough password"]))
            .await,
        "staff create",
    );
    let before = admin_rows(&dir).await;
    let output = dir
        .run(&staff(&["--password", "another long password"]))
        .await;
    assert_refused(&output, "sam@glow.example", "a duplicate staff email");
    assert_eq!(admin_rows(&dir).await, before);

    // Missing or unknown arguments: clap's usage error (exit code 2), no database.
    let empty = Dir::new();
    for args in [
        vec!["token", "create", "--clinic", "glow"],
        vec![
            "staff",
            "create",
            "--clinic",
            "glow",
            "--email",
            "a@b.example",
            "--role",
            "admin",
        ],
        vec!["seed"],
        vec!["teleport"],
    ] {
        let output = empty.run(&args).await;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert_eq!(stdout(&output), "", "{args:?}");
        assert!(
            stderr(&output).contains("Usage:"),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    // Commands about a clinic, in a directory with no database: refused, and
    // no empty database is left behind.
    for (args, message) in [
        (
            vec!["token", "create", "--clinic", "glow", "--name", "x"],
            "no database at journeymap.db",
        ),
        (
            vec![
                "staff",
                "create",
                "--clinic",
                "glow",
                "--email",
                "a@b.example",
                "--name",
                "A",
                "--role",
                "admin",
            ],
            "no database at journeymap.db",
        ),
        (
            vec![
                "staff",
                "create",
                "--clinic",
                "glow",
                "--email",
                "a@b.example",
                "--name",
                "A",
                "--role",
                "wizard",
            ],
            "unknown role \"wizard\"",
        ),
    ] {
        let output = empty.run(&args).await;
        assert_refused(&output, message, &format!("{args:?} without a database"));
        assert!(
            std::fs::read_dir(empty.path()).unwrap().next().is_none(),
            "{args:?} left files behind"
        );
    }
}
