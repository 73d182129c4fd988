//! Webhook delivery: workers claim due deliveries, sign them per Standard
//! Webhooks, send them, and settle each attempt (see
//! [`crate::domain::webhooks::settle`] for the rules). A delivery is a row
//! until it is settled, so a crash at any point loses nothing: a claimed
//! delivery whose worker died is due again when its lease runs out, and is
//! sent again with the same `webhook-id`.

pub mod signing;
pub mod targets;

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use entity::{webhook_deliveries, webhook_endpoints};
use reqwest::{StatusCode, header::HeaderMap};
use sea_orm::{
    ColumnTrait, QueryFilter,
    sea_query::{Expr, ExprTrait},
};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::{
    auth::Principal,
    domain::{
        DomainResult, Store,
        webhooks::{self, Outcome, Settled},
    },
    metrics::Metrics,
};

/// How webhooks are delivered.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// How long a receiver has to answer.
    pub timeout: Duration,
    /// When each attempt is made, counted from the previous one (the first
    /// entry is the first attempt's delay).
    pub schedule: Vec<Duration>,
    /// How long a claimed delivery stays claimed before another worker may
    /// take it over.
    pub lease: Duration,
    /// Deliveries in flight at once, per process.
    pub concurrency: usize,
    /// How often workers look for due deliveries when nothing wakes them.
    pub poll: Duration,
    /// Allow loopback, private and link-local targets (for tests and labs).
    pub allow_private: bool,
}

/// The Standard Webhooks retry schedule: immediately, 5 s, 5 min, 30 min,
/// 2 h, 5 h, 10 h, 10 h.
pub const STANDARD_SCHEDULE: [u64; 8] = [0, 5, 300, 1800, 7200, 18000, 36000, 36000];

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(15),
            schedule: STANDARD_SCHEDULE
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
            lease: Duration::from_secs(60),
            concurrency: 64,
            poll: Duration::from_secs(1),
            allow_private: false,
        }
    }
}

/// Parses a schedule written as comma-separated seconds.
pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
    let schedule: Vec<Duration> = text
        .split(',')
        .map(|s| s.trim().parse::<f64>().map(Duration::from_secs_f64))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("{text:?} is not a list of seconds such as 0,5,300"))?;
    if schedule.is_empty() {
        return Err("the retry schedule needs at least one entry".into());
    }
    Ok(schedule)
}

/// Runs the delivery workers until `shutdown`, then lets in-flight sends finish.
pub async fn run(
    store: Store,
    config: DeliveryConfig,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let client = match reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Journeymap-Webhooks/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(targets::resolver(config.allow_private))
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(
                ?error,
                "cannot build the webhook client; webhooks are not delivered"
            );
            return;
        }
    };
    let config = Arc::new(config);
    let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let lease = chrono::Duration::from_std(config.lease).unwrap_or(chrono::Duration::seconds(60));
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let free = slots.available_permits();
        if free == 0 {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = slots.clone().acquire_owned() => drop(permit),
            }
            continue;
        }
        let claimed = match webhooks::claim(&store, free.min(200) as u64, lease).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(?error, "claiming webhook deliveries failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(config.poll) => {}
                }
                continue;
            }
        };
        if claimed.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = store.bus.deliveries.notified() => {}
                _ = tokio::time::sleep(config.poll) => {}
            }
            continue;
        }
        for delivery in claimed {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let (store, client, config, metrics) = (
                store.clone(),
                client.clone(),
                config.clone(),
                metrics.clone(),
            );
            tokio::spawn(crate::db::uncounted(async move {
                let outcome = deliver(&store, &client, &config, &delivery).await;
                match outcome {
                    Ok(settled) => metrics.webhook_delivered(settled_label(settled)),
                    Err(error) => {
                        tracing::warn!(?error, delivery = %delivery.id, "a webhook delivery could not be settled; it will be retried")
                    }
                }
                drop(permit);
            }));
        }
    }
    // Let in-flight deliveries settle (each is bounded by the timeout).
    let _ = tokio::time::timeout(
        config.timeout + Duration::from_secs(1),
        slots.acquire_many(config.concurrency.max(1) as u32),
    )
    .await;
}

fn settled_label(settled: Option<Settled>) -> &'static str {
    match settled {
        Some(Settled::Delivered) => "delivered",
        Some(Settled::Retrying) => "retrying",
        Some(Settled::Failed) => "failed",
        Some(Settled::Gone) => "gone",
        None => "postponed",
    }
}

/// Sends one claimed delivery and settles it; `None` when it was put off
/// (its endpoint is disabled).
async fn deliver(
    store: &Store,
    client: &reqwest::Client,
    config: &DeliveryConfig,
    delivery: &webhook_deliveries::Model,
) -> DomainResult<Option<Settled>> {
    let system = Principal::system(delivery.clinic_id);
    let endpoint = system
        .select::<webhook_endpoints::Entity>()
        .filter(webhook_endpoints::Column::Id.eq(delivery.endpoint_id))
        .one(store.db.conn())
        .await?;
    let Some(endpoint) = endpoint else {
        return Ok(None);
    };
    if !endpoint.enabled {
        // Kept for when the endpoint is enabled again.
        postpone(store, delivery, chrono::Duration::minutes(5)).await?;
        return Ok(None);
    }
    let attempted_at = crate::domain::now();
    let Some(body) = webhooks::body_of(store, delivery, &endpoint).await? else {
        let outcome = Outcome {
            attempted_at,
            status_code: None,
            latency_ms: 0,
            error: Some("the event no longer exists".into()),
            retry_after: None,
        };
        return webhooks::settle(store, delivery, &outcome, &[])
            .await
            .map(Some);
    };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let outcome = send(client, config, &endpoint, delivery, &body).await;
    webhooks::settle(store, delivery, &outcome, &config.schedule)
        .await
        .map(Some)
}

async fn postpone(
    store: &Store,
    delivery: &webhook_deliveries::Model,
    by: chrono::Duration,
) -> DomainResult<()> {
    let system = Principal::system(delivery.clinic_id);
    let write = store.write(&system).await?;
    system
        .update_rows::<webhook_deliveries::Entity>()
        .col_expr(
            webhook_deliveries::Column::NextAttemptAt,
            Expr::value(write.now + by),
        )
        .col_expr(
            webhook_deliveries::Column::LockedUntil,
            Expr::value(Option::<chrono::DateTime<Utc>>::None),
        )
        .col_expr(
            webhook_deliveries::Column::Attempts,
            Expr::col(webhook_deliveries::Column::Attempts).sub(1),
        )
        .filter(webhook_deliveries::Column::Id.eq(delivery.id))
        .exec(&*write.txn)
        .await?;
    write.commit().await?;
    Ok(())
}

/// Makes one signed POST.
async fn send(
    client: &reqwest::Client,
    config: &DeliveryConfig,
    endpoint: &webhook_endpoints::Model,
    delivery: &webhook_deliveries::Model,
    body: &[u8],
) -> Outcome {
    let attempted_at = crate::domain::now();
    let started = std::time::Instant::now();
    let finish = |status_code: Option<u16>,
                  error: Option<String>,
                  retry_after: Option<chrono::Duration>| Outcome {
        attempted_at,
        status_code,
        latency_ms: started.elapsed().as_millis().min(i32::MAX as u128) as i32,
        error,
        retry_after,
    };
    if let Err(why) = targets::check_url(&endpoint.url, config.allow_private) {
        return finish(None, Some(format!("refused target: the URL {why}")), None);
    }
    let timestamp = Utc::now().timestamp();
    let mut signature = signing::sign(&endpoint.secret, &delivery.message_id, timestamp, body);
    if let (Some(previous), Some(until)) = (
        &endpoint.previous_secret,
        endpoint.previous_secret_expires_at,
    ) && until > attempted_at
    {
        signature.push(' ');
        signature.push_str(&signing::sign(
            previous,
            &delivery.message_id,
            timestamp,
            body,
        ));
    }
    let response = client
        .post(&endpoint.url)
        .header("content-type", "application/json")
        .header("webhook-id", &delivery.message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.to_vec())
        .send()
        .await;
    match response {
        Ok(response) => {
            let status = response.status();
            let retry_after = if matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            ) {
                retry_after(response.headers())
            } else {
                None
            };
            let error = (!status.is_success()).then(|| format!("the receiver answered {status}"));
            finish(Some(status.as_u16()), error, retry_after)
        }
        Err(error) => {
            let why = if error.is_timeout() {
                format!("no answer within {} s", config.timeout.as_secs())
            } else if let Some(refused) = refused_by_resolver(&error) {
                format!("refused target: {refused}")
            } else if error.is_connect() {
                "cannot connect to the receiver".to_string()
            } else {
                format!("request failed: {error}")
            };
            finish(None, Some(why), None)
        }
    }
}

/// The delivery client's resolver refusing a name that resolves only to
/// private addresses ([`targets::PublicOnly`]): its reason, from the error's
/// sources, so the attempt says why rather than "cannot connect".
fn refused_by_resolver(error: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if text.ends_with(targets::NO_PUBLIC_ADDRESS) {
            return Some(text);
        }
        source = cause.source();
    }
    None
}

/// A `Retry-After` header: seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<chrono::Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<i64>() {
        return Some(chrono::Duration::seconds(seconds.clamp(0, 86_400)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&Utc) - Utc::now()).max(chrono::Duration::zero()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_and_retry_after_parse() {
        assert_eq!(
            parse_schedule("0, 5,300").unwrap(),
            vec![
                Duration::ZERO,
                Duration::from_secs(5),
                Duration::from_secs(300)
            ]
        );
        assert!(parse_schedule("soon").is_err());
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, "120".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(chrono::Duration::seconds(120)));
    }
}
