//! A webhook receiver for tests: records every request and answers as the
//! test says.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub webhook_id: String,
    pub timestamp: i64,
    pub signature: String,
    pub body: Vec<u8>,
}

impl Received {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    /// True when the signature verifies with `secret`.
    pub fn verifies(&self, secret: &str) -> bool {
        journeymap::webhooks::signing::verify(
            secret,
            &self.webhook_id,
            self.timestamp,
            &self.body,
            &self.signature,
        )
    }
}

/// How the receiver answers the n-th request (0-based) for a webhook id.
pub type Script = dyn Fn(&str, usize) -> (StatusCode, Option<&'static str>) + Send + Sync;

#[derive(Clone)]
struct Shared {
    received: Arc<Mutex<Vec<Received>>>,
    seen: Arc<Mutex<HashMap<String, usize>>>,
    script: Arc<Script>,
    delay: Duration,
}

/// A running receiver.
pub struct Receiver {
    pub url: String,
    shared: Shared,
}

impl Receiver {
    /// Starts a receiver answering per `script`; `delay` before each answer.
    pub async fn start(script: Arc<Script>, delay: Duration) -> Self {
        let shared = Shared {
            received: Arc::default(),
            seen: Arc::default(),
            script,
            delay,
        };
        let app = Router::new()
            .route("/hooks", post(receive))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}/hooks"),
            shared,
        }
    }

    /// A receiver that accepts everything.
    pub async fn accepting() -> Self {
        Self::start(Arc::new(|_, _| (StatusCode::OK, None)), Duration::ZERO).await
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().expect("lock").clone()
    }

    /// Waits until `done` holds for what was received (or `wait` passes).
    pub async fn wait_for(
        &self,
        wait: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let received = self.received();
            if done(&received) || tokio::time::Instant::now() >= deadline {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn receive(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let webhook_id = header("webhook-id");
    let received = Received {
        webhook_id: webhook_id.clone(),
        timestamp: header("webhook-timestamp").parse().unwrap_or_default(),
        signature: header("webhook-signature"),
        body: body.to_vec(),
    };
    let attempt = {
        let mut seen = shared.seen.lock().expect("lock");
        let n = seen.entry(webhook_id.clone()).or_insert(0);
        *n += 1;
        *n - 1
    };
    shared.received.lock().expect("lock").push(received);
    if !shared.delay.is_zero() {
        tokio::time::sleep(shared.delay).await;
    }
    let (status, retry_after) = (shared.script)(&webhook_id, attempt);
    let mut response_headers = HeaderMap::new();
    if let Some(value) = retry_after {
        response_headers.insert("retry-after", value.parse().expect("header"));
    }
    (status, response_headers)
}
