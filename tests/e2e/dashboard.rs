//! The dashboard in a real browser: Debian's headless Chromium, driven over
//! the DevTools protocol (chromiumoxide), against the real server with the
//! demo clinic seeded. Screenshots of the desktop and phone layouts are saved
//! under `target/dashboard-screenshots/`.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chromiumoxide::{
    Browser, BrowserConfig, Page,
    cdp::browser_protocol::{
        emulation::SetDeviceMetricsOverrideParams, network::EventRequestWillBeSent,
        page::CaptureScreenshotFormat,
    },
    page::ScreenshotParams,
};
use futures::StreamExt;
use journeymap::{
    auth::{Permission, Role},
    domain::{clinics, staff},
    seed::{self, SeedOptions},
};
use journeymap_tests::{TestApp, gql_at, on_both_backends};
use serde_json::{Value, json};

on_both_backends!(
    browser: the_owner_sees_the_live_map,
    a_viewer_sees_no_contact_details_or_comments,
    a_wrong_password_shows_a_clear_message,
    the_page_is_served_with_a_strict_policy,
);

/// How long the page may take for anything a person waits for.
const PATIENCE: Duration = Duration::from_secs(20);

/// The demo clinic in the test's database and its owner's fresh password,
/// as `serve --demo` makes them.
async fn demo(app: &TestApp) -> (uuid::Uuid, String) {
    seed::demo(
        app.db(),
        &SeedOptions {
            patients: 80,
            seed: 42,
        },
    )
    .await
    .expect("seed the demo clinic");
    let glow = clinics::by_slug(app.db(), seed::DEMO_SLUG)
        .await
        .unwrap()
        .expect("the demo clinic");
    let password = staff::reset_password_from_cli(&app.store, glow.id, seed::DEMO_LOGIN_EMAIL)
        .await
        .expect("the demo sign-in");
    (glow.id, password)
}

/// A headless Chromium with its own profile, and every request it makes.
struct Chrome {
    browser: Browser,
    handler: tokio::task::JoinHandle<()>,
    _profile: tempfile::TempDir,
}

impl Chrome {
    async fn launch() -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        let executable =
            std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string());
        assert!(
            std::path::Path::new(&executable).exists(),
            "{executable} is missing: apt-get install chromium (.ci/run does)"
        );
        let config = BrowserConfig::builder()
            .chrome_executable(executable)
            .no_sandbox()
            .new_headless_mode()
            .user_data_dir(profile.path())
            .viewport(None)
            .window_size(1366, 900)
            .arg("--disable-gpu")
            .arg("--disable-dev-shm-usage")
            .arg("--no-first-run")
            .arg("--disable-background-networking")
            .arg("--disable-component-update")
            .arg("--disable-sync")
            .arg("--lang=en-US")
            .launch_timeout(Duration::from_secs(60))
            .request_timeout(Duration::from_secs(60))
            .build()
            .expect("browser config");
        let (browser, mut events) = Browser::launch(config).await.expect("launch chromium");
        let handler = tokio::spawn(async move { while events.next().await.is_some() {} });
        Self {
            browser,
            handler,
            _profile: profile,
        }
    }

    /// A fresh tab, with the URL of every request it makes recorded.
    async fn page(&self) -> (Page, Arc<Mutex<Vec<String>>>) {
        let page = self.browser.new_page("about:blank").await.expect("tab");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let mut sent = page
            .event_listener::<EventRequestWillBeSent>()
            .await
            .expect("network events");
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Some(event) = sent.next().await {
                seen.lock().unwrap().push(event.request.url.clone());
            }
        });
        (page, requests)
    }

    async fn close(mut self) {
        let _ = self.browser.close().await;
        let _ = self.browser.wait().await;
        self.handler.abort();
    }
}

/// Evaluates `js` in the page and returns its JSON value.
async fn eval(page: &Page, js: &str) -> Value {
    page.evaluate(js)
        .await
        .unwrap_or_else(|e| panic!("evaluate {js}: {e}"))
        .into_value::<Value>()
        .unwrap_or(Value::Null)
}

/// Waits until `js` is truthy in the page; the time it took.
async fn wait_for(page: &Page, js: &str, what: &str) -> Duration {
    let start = Instant::now();
    loop {
        let value = page
            .evaluate(js)
            .await
            .ok()
            .and_then(|v| v.into_value::<Value>().ok());
        if matches!(value, Some(Value::Bool(true))) {
            return start.elapsed();
        }
        if start.elapsed() > PATIENCE {
            let text = eval(page, "document.body.innerText").await;
            panic!("waited {PATIENCE:?} for {what}; the page reads:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The visible text of the page.
async fn text(page: &Page) -> String {
    eval(page, "document.body.innerText")
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Opens the dashboard and signs in through the form, typing like a person.
async fn sign_in(page: &Page, app: &TestApp, clinic: &str, email: &str, password: &str) {
    page.goto(format!("{}/dashboard", app.url))
        .await
        .expect("open the dashboard");
    wait_for(
        page,
        "!!document.querySelector('label[for=clinic]') && document.querySelector('label[for=clinic]').textContent === 'Clinic'",
        "the sign-in form",
    )
    .await;
    for (label, value) in [("Clinic", clinic), ("Email", email), ("Password", password)] {
        // Found by its label, as a person (or a screen reader) finds it.
        let id = eval(
            page,
            &format!(
                "[...document.querySelectorAll('label')].find(l => l.textContent === '{label}').htmlFor"
            ),
        )
        .await;
        let id = id.as_str().expect("a labelled field");
        page.find_element(format!("#{id}"))
            .await
            .expect("field")
            .click()
            .await
            .expect("focus")
            .type_str(value)
            .await
            .expect("type");
    }
    let button = eval(
        page,
        "[...document.querySelectorAll('button')].find(b => b.textContent === 'Sign in').id",
    )
    .await;
    page.find_element(format!("#{}", button.as_str().expect("the Sign in button")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Where screenshots go: `target/dashboard-screenshots/` of the workspace.
fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

async fn screenshot(page: &Page, name: &str) {
    screenshot_with(page, name, true).await
}

/// A screenshot of the whole page, or of the screen only.
async fn screenshot_with(page: &Page, name: &str, full_page: bool) {
    let path = screenshot_dir().join(name);
    page.save_screenshot(
        ScreenshotParams::builder()
            .format(CaptureScreenshotFormat::Png)
            .full_page(full_page)
            .build(),
        &path,
    )
    .await
    .expect("screenshot");
}

/// The names of a pathway's stages, from the API.
fn stage_names(pathway: &Value) -> Vec<String> {
    pathway["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

async fn the_owner_sees_the_live_map(app: TestApp) {
    let (glow, password) = demo(&app).await;
    let (_, token) = clinics::create_token(app.db(), glow, "test", &Permission::ALL, None)
        .await
        .unwrap();
    let pathways = gql_at(
        &app.url,
        &token,
        "{ pathways { id name stages { id name position } } }",
        json!({}),
    )
    .await;
    let pathways = pathways["data"]["pathways"].as_array().unwrap().clone();
    assert!(pathways.len() >= 2, "the demo clinic has several pathways");

    let chrome = Chrome::launch().await;
    let (page, requests) = chrome.page().await;
    sign_in(&page, &app, "glow", seed::DEMO_LOGIN_EMAIL, &password).await;
    wait_for(
        &page,
        "!!document.querySelector('#map svg') && document.querySelectorAll('#stages tbody tr[data-stage]').length > 0",
        "the map",
    )
    .await;
    wait_for(
        &page,
        "document.getElementById('live-status').textContent === 'Live'",
        "the live socket",
    )
    .await;
    let body = text(&page).await;
    assert!(body.contains(seed::DEMO_NAME), "{body}");
    assert!(body.contains("Sign out"), "{body}");
    let label = eval(
        &page,
        "document.querySelector('label[for=pathway]').textContent",
    )
    .await;
    assert_eq!(label, "Pathway");

    // Every stage name of the shown pathway, in the table and in the picture.
    let shown = eval(&page, "document.getElementById('pathway').value").await;
    let first = pathways
        .iter()
        .find(|p| p["id"] == shown)
        .expect("shown pathway");
    let svg_text = |page: &Page| {
        let page = page.clone();
        async move {
            eval(&page, "document.querySelector('#map svg').textContent")
                .await
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let picture = svg_text(&page).await;
    let body = text(&page).await;
    for name in stage_names(first) {
        assert!(
            body.contains(&name),
            "stage {name:?} missing from the page:\n{body}"
        );
        assert!(
            picture.contains(&name),
            "stage {name:?} missing from the map picture"
        );
    }

    // Switching pathways shows the other pathway's stages.
    let other = pathways.iter().find(|p| p["id"] != shown).unwrap();
    eval(
        &page,
        &format!(
            "(() => {{ const s = document.getElementById('pathway'); s.value = {}; s.dispatchEvent(new Event('change')); return true; }})()",
            other["id"]
        ),
    )
    .await;
    let names = stage_names(other);
    wait_for(
        &page,
        &format!(
            "(() => {{ const rows = [...document.querySelectorAll('#stages tbody tr[data-stage] .stage-name')].map(e => e.textContent); const want = {}; return rows.length === want.length && want.every((n, i) => rows[i] === n); }})()",
            json!(names)
        ),
        "the other pathway's stages",
    )
    .await;
    let picture = svg_text(&page).await;
    for name in &names {
        assert!(
            picture.contains(name.as_str()),
            "stage {name:?} missing from the map picture"
        );
    }

    // A move made through the API shows up within 2 s: the feed and the counts.
    let journeys = gql_at(
        &app.url,
        &token,
        "query($p: ID!) { journeys(first: 50, filter: { pathwayId: $p, status: ACTIVE }) { nodes { id version patient { givenName familyName } currentStage { id position } } } }",
        json!({ "p": other["id"] }),
    )
    .await;
    let stages = other["stages"].as_array().unwrap();
    let (journey, target) = journeys["data"]["journeys"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|j| {
            let position = j["currentStage"]["position"].as_i64()?;
            let next = stages
                .iter()
                .find(|s| s["position"].as_i64() == Some(position + 1))?;
            Some((j.clone(), next.clone()))
        })
        .expect("an active journey with a next stage");
    let active_of = |stage: &Value| {
        format!(
            "Number(document.querySelector('#stages tr[data-stage=\"{}\"] td .big').textContent.replace(/\\D/g, ''))",
            stage["id"].as_str().unwrap()
        )
    };
    let before = eval(&page, &active_of(&target)).await.as_i64().unwrap();
    let name = format!(
        "{} {}",
        journey["patient"]["givenName"].as_str().unwrap(),
        journey["patient"]["familyName"].as_str().unwrap()
    );
    let moved = gql_at(
        &app.url,
        &token,
        "mutation($input: MoveJourneyToStageInput!) { moveJourneyToStage(input: $input) { journey { id } } }",
        json!({ "input": { "journeyId": journey["id"], "stageId": target["id"], "expectedVersion": journey["version"] } }),
    )
    .await;
    assert!(moved.get("errors").is_none(), "{moved}");
    let started = Instant::now();
    wait_for(
        &page,
        &format!(
            "(() => {{ const first = document.querySelector('#live li'); return !!first && first.textContent.includes({}) && first.textContent.includes({}); }})()",
            json!(name),
            target["name"]
        ),
        "the move in the Live feed",
    )
    .await;
    wait_for(
        &page,
        &format!("{} === {}", active_of(&target), before + 1),
        "the new count",
    )
    .await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "the move took {took:?} to show"
    );
    eprintln!("a stage move showed on the page after {took:?}");
    tokio::time::sleep(Duration::from_millis(1600)).await; // the highlight fades
    screenshot(
        &page,
        &format!("desktop-{:?}.png", app.backend).to_lowercase(),
    )
    .await;

    // The phone layout: one column, nothing wider than the screen but the map.
    page.execute(SetDeviceMetricsOverrideParams::new(390, 844, 2.0, true))
        .await
        .expect("phone size");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let overflow = eval(
        &page,
        "document.documentElement.scrollWidth <= window.innerWidth + 1",
    )
    .await;
    assert_eq!(
        overflow,
        Value::Bool(true),
        "the phone layout scrolls sideways"
    );
    screenshot_with(
        &page,
        &format!("phone-screen-{:?}.png", app.backend).to_lowercase(),
        false,
    )
    .await;
    screenshot(
        &page,
        &format!("phone-{:?}.png", app.backend).to_lowercase(),
    )
    .await;

    // "Done" on the most urgent follow-up completes it: it leaves the list.
    let first = eval(
        &page,
        "document.querySelector('#work li[data-follow-up]').dataset.followUp",
    )
    .await;
    let first = first
        .as_str()
        .expect("a follow-up in the work list")
        .to_string();
    page.find_element(format!("#work li[data-follow-up=\"{first}\"] button.done"))
        .await
        .expect("its Done button")
        .click()
        .await
        .unwrap();
    wait_for(
        &page,
        &format!(
            "!document.querySelector('#work li[data-follow-up=\"{first}\"]') && document.getElementById('banner').textContent.startsWith('Done: ')"
        ),
        "the completed follow-up to leave the list",
    )
    .await;
    let done = gql_at(
        &app.url,
        &token,
        "query($id: ID!) { node(id: $id) { ... on FollowUp { status } } }",
        json!({ "id": first }),
    )
    .await;
    assert_eq!(done["data"]["node"]["status"], json!("DONE"), "{done}");

    // The session is renewed before the access token expires: pretend it is
    // about to, and the page trades its refresh token for a new pair.
    let stored = |page: &Page| {
        let page = page.clone();
        async move {
            let raw = eval(&page, "sessionStorage.getItem('journeymap.session')").await;
            serde_json::from_str::<Value>(raw.as_str().expect("a stored session")).unwrap()
        }
    };
    let before = stored(&page).await;
    eval(
        &page,
        "(() => { const s = JSON.parse(sessionStorage.getItem('journeymap.session')); s.accessTokenExpiresAt = new Date(Date.now() + 30000).toISOString(); sessionStorage.setItem('journeymap.session', JSON.stringify(s)); return true; })()",
    )
    .await;
    page.reload().await.expect("reload");
    wait_for(
        &page,
        &format!(
            "(() => {{ const s = JSON.parse(sessionStorage.getItem('journeymap.session') || 'null'); return !!s && s.refreshToken !== {} && document.getElementById('live-status').textContent === 'Live'; }})()",
            before["refreshToken"]
        ),
        "the renewed session",
    )
    .await;

    // A session ended elsewhere (here through the API) sends the page back to
    // the sign-in form, with a message.
    let session = stored(&page).await;
    let ended = gql_at(
        &app.url,
        session["accessToken"].as_str().unwrap(),
        "mutation($input: LogoutInput) { logout(input: $input) { ended } }",
        json!({ "input": { "refreshToken": session["refreshToken"] } }),
    )
    .await;
    assert_eq!(ended["data"]["logout"]["ended"], json!(true), "{ended}");
    page.reload().await.expect("reload");
    wait_for(
        &page,
        "!document.getElementById('signin').hidden && document.getElementById('signin-message').textContent === 'Your session has ended. Please sign in again.'",
        "the sign-in form after the session ended",
    )
    .await;
    sign_in(&page, &app, "glow", seed::DEMO_LOGIN_EMAIL, &password).await;
    wait_for(
        &page,
        "!document.getElementById('app').hidden",
        "signed in again",
    )
    .await;

    // Sign out ends the session and goes back to the form.
    page.find_element("#signout")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        &page,
        "!document.getElementById('signin').hidden && sessionStorage.length === 0",
        "the sign-in form after signing out",
    )
    .await;

    // Nothing but this server was asked for anything, and no token in a URL.
    let requests = requests.lock().unwrap().clone();
    assert!(requests.len() > 5, "{requests:?}");
    let origin = app.url.clone();
    let ws_origin = app.url.replacen("http://", "ws://", 1);
    for url in &requests {
        assert!(
            url.starts_with(&format!("{origin}/"))
                || url.starts_with(&format!("{ws_origin}/"))
                || url == "about:blank"
                || url.starts_with("data:"),
            "a request to another host: {url}"
        );
        assert!(!url.contains("token"), "a token in a URL: {url}");
    }
    chrome.close().await;
}

async fn a_viewer_sees_no_contact_details_or_comments(app: TestApp) {
    let (glow, _) = demo(&app).await;
    let (email, password) = app.staff_in(seed::DEMO_SLUG, Role::Viewer).await;
    let chrome = Chrome::launch().await;
    let (page, _) = chrome.page().await;
    sign_in(&page, &app, "glow", &email, &password).await;
    wait_for(
        &page,
        "!!document.querySelector('#map svg') && !!document.querySelector('#work ul, #work .empty')",
        "the map and the work list",
    )
    .await;
    let body = text(&page).await;
    let picture = eval(&page, "document.querySelector('#map svg').textContent").await;
    let everything = format!("{body}\n{}", picture.as_str().unwrap());
    assert!(body.contains("viewer"), "the role is shown: {body}");
    assert!(
        !everything.contains('@'),
        "an email on a viewer's page:\n{everything}"
    );
    let phone = everything
        .split_whitespace()
        .find(|w| w.starts_with('+') && w[1..].chars().filter(char::is_ascii_digit).count() >= 8);
    assert_eq!(phone, None, "a phone number on a viewer's page");
    assert!(
        !everything.contains("in patients' words") && !everything.contains('“'),
        "a patient's comment on a viewer's page:\n{everything}"
    );
    let items = eval(&page, "document.querySelectorAll('#work li .name').length").await;
    assert!(
        items.as_u64().unwrap() > 0,
        "a viewer sees the work list, by name"
    );
    let actions = eval(
        &page,
        "[...document.querySelectorAll('#work button')].filter(b => ['Done', 'Skip'].includes(b.textContent)).length",
    )
    .await;
    assert_eq!(actions, json!(0), "a viewer cannot act on follow-ups");

    // The same pathway for the owner does show what the viewer may not see.
    let (_, token) = clinics::create_token(app.db(), glow, "test", &Permission::ALL, None)
        .await
        .unwrap();
    let shown = eval(&page, "document.getElementById('pathway').value").await;
    let owners = gql_at(
        &app.url,
        &token,
        "query($p: ID!) { followUps(first: 5, filter: { sendable: true }) { nodes { patient { email phone } } } journeyMap(pathwayId: $p) { svg } }",
        json!({ "p": shown }),
    )
    .await;
    assert!(owners.get("errors").is_none(), "{owners}");
    chrome.close().await;
}

async fn a_wrong_password_shows_a_clear_message(app: TestApp) {
    let (_, password) = demo(&app).await;
    let chrome = Chrome::launch().await;
    let (page, _) = chrome.page().await;
    sign_in(
        &page,
        &app,
        "glow",
        seed::DEMO_LOGIN_EMAIL,
        &format!("{password}-wrong"),
    )
    .await;
    wait_for(
        &page,
        "!document.getElementById('signin-message').hidden",
        "the message",
    )
    .await;
    let message = eval(
        &page,
        "document.getElementById('signin-message').textContent",
    )
    .await;
    assert_eq!(
        message,
        "Those details don't match an account. Check the clinic, email and password, and try again."
    );
    let signed_in = eval(&page, "document.getElementById('app').hidden").await;
    assert_eq!(signed_in, Value::Bool(true));
    assert_eq!(
        eval(&page, "sessionStorage.length").await,
        json!(0),
        "nothing kept"
    );
    assert!(
        !page
            .url()
            .await
            .unwrap()
            .unwrap_or_default()
            .contains(&password),
        "the password is not in the URL"
    );
    chrome.close().await;
}

async fn the_page_is_served_with_a_strict_policy(app: TestApp) {
    for path in [
        "/dashboard",
        "/dashboard/app.js",
        "/dashboard/app.css",
        "/dashboard/icon.svg",
    ] {
        let response = app
            .client
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(csp.contains("style-src 'self'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(
            csp.contains(&format!("connect-src 'self' ws://{}", app.addr)),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        // No CORS opening on the page (the API's rules are unchanged).
        assert!(headers.get("access-control-allow-origin").is_none());
    }
    let html = app
        .client
        .get(format!("{}/dashboard", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "nothing inline"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing from elsewhere"
    );

    // A browser at / goes to the dashboard; other clients get the plain answer.
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let root = no_redirect
        .get(format!("{}/", app.url))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), 303);
    assert_eq!(root.headers()["location"], "/dashboard");
    let root = no_redirect
        .get(format!("{}/", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), 404);

    // GraphiQL says it needs internet and points to the dashboard.
    let graphiql = app
        .client
        .get(format!("{}/graphql", app.url))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(graphiql.contains("GraphiQL needs internet"), "{graphiql}");
    assert!(graphiql.contains(r#"href="/dashboard""#));
    assert!(!graphiql.contains("development.js"));
}
