//! A webhook receiver for process tests: records every request, answers as
//! the test's script says, and can hold chosen requests open (unanswered)
//! until the test releases them, noting when the sender hangs up meanwhile.
//!
//! It speaks just enough HTTP/1.1 over raw TCP to see what an axum handler
//! cannot: that the process which sent a held request died holding it (its
//! socket closes under the receiver).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::http::StatusCode;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub webhook_id: String,
    pub timestamp: i64,
    pub signature: String,
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
    /// The sender's address (one connection per request).
    pub peer: SocketAddr,
    /// Which attempt of its `webhook-id` this is (0 for the first).
    pub attempt: usize,
    /// True when the receiver held it open.
    pub held: bool,
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

/// Which requests to hold open: given the webhook id and attempt (0-based).
pub type Hold = dyn Fn(&str, usize) -> bool + Send + Sync;

/// A held request whose sender hung up before it was answered.
#[derive(Debug, Clone)]
pub struct HungUp {
    pub webhook_id: String,
    pub peer: SocketAddr,
    pub at: Instant,
}

#[derive(Default)]
struct Log {
    received: Vec<Received>,
    seen: HashMap<String, usize>,
    /// Held requests not answered yet.
    holding: usize,
    hung_up: Vec<HungUp>,
}

/// A running receiver.
pub struct Receiver {
    pub url: String,
    log: Arc<Mutex<Log>>,
    release: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Starts a receiver answering per `script`, `delay` after each request.
    pub async fn start(script: Arc<Script>, delay: Duration) -> Self {
        Self::holding(script, delay, Arc::new(|_: &str, _: usize| false)).await
    }

    /// Starts a receiver that holds the requests `hold` picks open, without
    /// answering, until [`Receiver::release`]; then answers them per `script`.
    pub async fn holding(script: Arc<Script>, delay: Duration, hold: Arc<Hold>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let log = Arc::new(Mutex::new(Log::default()));
        let (release, released) = watch::channel(false);
        let task = tokio::spawn({
            let log = log.clone();
            async move {
                loop {
                    let Ok((stream, peer)) = listener.accept().await else {
                        continue;
                    };
                    let (log, script, hold, released) =
                        (log.clone(), script.clone(), hold.clone(), released.clone());
                    tokio::spawn(async move {
                        let _ = serve(stream, peer, log, script, hold, released, delay).await;
                    });
                }
            }
        });
        Self {
            url: format!("http://{addr}/hooks"),
            log,
            release,
            task,
        }
    }

    /// A receiver that accepts everything.
    pub async fn accepting() -> Self {
        Self::start(Arc::new(|_, _| (StatusCode::OK, None)), Duration::ZERO).await
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.log.lock().expect("lock").received.clone()
    }

    /// Held requests whose sender hung up before they were answered.
    pub fn hung_up(&self) -> Vec<HungUp> {
        self.log.lock().expect("lock").hung_up.clone()
    }

    /// Held requests still open (unanswered, sender still there).
    pub fn holding_now(&self) -> usize {
        self.log.lock().expect("lock").holding
    }

    /// Answers every held request (and holds no more).
    pub fn release(&self) {
        let _ = self.release.send(true);
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
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `done` holds for the receiver as a whole (or `wait` passes);
    /// returns whether it did.
    pub async fn wait_until(&self, wait: Duration, done: impl Fn(&Receiver) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if done(self) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Serves one request on a connection, then closes it.
async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    log: Arc<Mutex<Log>>,
    script: Arc<Script>,
    hold: Arc<Hold>,
    mut released: watch::Receiver<bool>,
    delay: Duration,
) -> std::io::Result<()> {
    let Some((headers, body)) = read_request(&mut stream).await? else {
        return Ok(());
    };
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let webhook_id = header("webhook-id");
    let held = {
        let mut log = log.lock().expect("lock");
        let attempt = {
            let n = log.seen.entry(webhook_id.clone()).or_insert(0);
            *n += 1;
            *n - 1
        };
        let held = !*released.borrow() && hold(&webhook_id, attempt);
        if held {
            log.holding += 1;
        }
        log.received.push(Received {
            webhook_id: webhook_id.clone(),
            timestamp: header("webhook-timestamp").parse().unwrap_or_default(),
            signature: header("webhook-signature"),
            body,
            at: Instant::now(),
            peer,
            attempt,
            held,
        });
        held.then_some(attempt)
    };
    let attempt = match held {
        Some(attempt) => {
            // Hold: answer nothing until released, and notice the sender
            // going away (its socket reads EOF or fails) meanwhile.
            let mut probe = [0u8; 1];
            let hung_up = tokio::select! {
                _ = released.wait_for(|r| *r) => false,
                _ = stream.read(&mut probe) => true,
            };
            let mut log = log.lock().expect("lock");
            log.holding -= 1;
            if hung_up {
                log.hung_up.push(HungUp {
                    webhook_id,
                    peer,
                    at: Instant::now(),
                });
                return Ok(());
            }
            drop(log);
            attempt
        }
        None => log.lock().expect("lock").seen[&webhook_id] - 1,
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (status, retry_after) = script(&header("webhook-id"), attempt);
    let mut head = format!(
        "HTTP/1.1 {} Scripted\r\ncontent-length: 2\r\nconnection: close\r\n",
        status.as_u16()
    );
    if let Some(value) = retry_after {
        head.push_str(&format!("retry-after: {value}\r\n"));
    }
    head.push_str("\r\nok");
    stream.write_all(head.as_bytes()).await?;
    stream.flush().await?;
    stream.shutdown().await
}

type Headers = Vec<(String, String)>;

/// Reads one request: lower-cased header names and the body.
async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<(Headers, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let headers: Headers = head
        .split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(Some((headers, body)))
}
