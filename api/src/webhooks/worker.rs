//! The delivery worker: claims due deliveries from the [`super::queue`],
//! signs them per Standard Webhooks ([`super::signing`]), sends them to
//! targets that pass [`super::targets`], and settles each attempt.

use std::{collections::HashMap, sync::Arc};

use chrono::Utc;
use entity::{webhook_deliveries, webhook_endpoints};
use reqwest::{StatusCode, header::HeaderMap};
use sea_orm::DbErr;
use tokio::{
    sync::{Semaphore, mpsc, oneshot},
    task::{self, JoinSet},
};
use tokio_util::sync::CancellationToken;

use super::{
    queue::{self, Outcome, Settled},
    signing, targets,
};
use crate::{
    config::DeliveryConfig,
    db::{self, Db},
    events::EventBus,
    metrics::Metrics,
};

/// Runs the delivery workers until `shutdown`, then lets in-flight sends
/// finish for up to `config.drain` and releases the leases of those that did
/// not, so another replica sends them at once.
pub async fn run(
    db: Db,
    bus: EventBus,
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
    let (accepted, settling) = mpsc::channel(SETTLE_BATCH);
    let settler = tokio::spawn(settle_accepted_in_batches(db.clone(), settling));
    let claim_batch = (config.concurrency / 4).clamp(1, 50);
    let mut sending = JoinSet::new();
    // The delivery each send in flight is settling, by its task.
    let mut in_flight: HashMap<task::Id, webhook_deliveries::Model> = HashMap::new();
    loop {
        while let Some(done) = sending.try_join_next_with_id() {
            in_flight.remove(&task_of(&done));
        }
        if shutdown.is_cancelled() {
            break;
        }
        // A busy worker claims once a quarter of its slots are free, not as
        // each send ends: a claim is a transaction of its own, and claiming
        // one or two at a time made claims, not sends, the limit.
        let free = slots.available_permits();
        if free < claim_batch {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = slots.clone().acquire_owned() => drop(permit),
            }
            continue;
        }
        let claimed = match queue::claim(&db, free.min(200) as u64, lease).await {
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
                _ = bus.deliveries.notified() => {}
                _ = tokio::time::sleep(config.poll) => {}
            }
            continue;
        }
        let rows = match queue::rows_of(&db, &claimed).await {
            Ok(rows) => Arc::new(rows),
            Err(error) => {
                // The leases run out and the deliveries are claimed again.
                tracing::warn!(
                    ?error,
                    "reading claimed webhook deliveries failed; retrying"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(config.poll) => {}
                }
                continue;
            }
        };
        for delivery in claimed {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let (db, bus, client, config, metrics, claimed, rows, accepted) = (
                db.clone(),
                bus.clone(),
                client.clone(),
                config.clone(),
                metrics.clone(),
                delivery.clone(),
                rows.clone(),
                accepted.clone(),
            );
            let send = sending.spawn(db::uncounted(async move {
                let sent = Sent {
                    db: &db,
                    bus: &bus,
                    accepted: &accepted,
                };
                match deliver(sent, &client, &config, &delivery, &rows).await {
                    Ok(settled) => metrics.webhook_delivered(settled_label(settled)),
                    Err(error) => {
                        tracing::warn!(?error, delivery = %delivery.id, "a webhook delivery could not be settled; it will be retried")
                    }
                }
                drop(permit);
            }));
            in_flight.insert(send.id(), claimed);
        }
    }
    let drained = tokio::time::timeout(config.drain, async {
        while let Some(done) = sending.join_next_with_id().await {
            in_flight.remove(&task_of(&done));
        }
    })
    .await;
    if drained.is_err() {
        // A send cut off here settles nothing (its transaction rolls back).
        sending.abort_all();
        while let Some(done) = sending.join_next_with_id().await {
            if !matches!(&done, Err(error) if error.is_cancelled()) {
                in_flight.remove(&task_of(&done));
            }
        }
    }
    // Every send has ended: the settler settles what is left and stops.
    drop(accepted);
    let _ = settler.await;
    let cut_short: Vec<_> = in_flight.into_values().collect();
    if !cut_short.is_empty() {
        match queue::release(&db, &cut_short).await {
            Ok(()) => tracing::info!(
                deliveries = cut_short.len(),
                "released the leases of webhook sends cut short by shutdown"
            ),
            Err(error) => tracing::warn!(
                ?error,
                "could not release webhook leases; they are taken over when they run out"
            ),
        }
    }
}

/// The task a joined send ran in, whether it finished or not.
fn task_of(done: &Result<(task::Id, ()), task::JoinError>) -> task::Id {
    match done {
        Ok((id, ())) => *id,
        Err(error) => error.id(),
    }
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

/// Accepted sends settled in one transaction, at most.
const SETTLE_BATCH: usize = 64;

/// A send the receiver accepted, on its way to the settler, which answers
/// once it is settled.
struct ToSettle {
    delivery: webhook_deliveries::Model,
    endpoint_exhausted: i32,
    outcome: Outcome,
    settled: oneshot::Sender<bool>,
}

/// Settles accepted sends in batches: every send accepted while the last
/// batch was being written goes into the next one (a transaction and a
/// commit for many deliveries rather than each). Sends the receiver did not
/// accept are rarer and settle one by one ([`queue::settle`]), since they may
/// disable their endpoint.
async fn settle_accepted_in_batches(db: Db, mut settling: mpsc::Receiver<ToSettle>) {
    let mut batch = Vec::with_capacity(SETTLE_BATCH);
    while settling.recv_many(&mut batch, SETTLE_BATCH).await > 0 {
        let accepted: Vec<_> = batch
            .iter()
            .map(|s| queue::Accepted {
                delivery: &s.delivery,
                outcome: &s.outcome,
                endpoint_exhausted: s.endpoint_exhausted,
            })
            .collect();
        let settled = db::uncounted(queue::settle_accepted(&db, &accepted)).await;
        if let Err(error) = &settled {
            tracing::warn!(
                ?error,
                deliveries = batch.len(),
                "settling delivered webhooks failed; they will be sent again"
            );
        }
        for sent in batch.drain(..) {
            let _ = sent.settled.send(settled.is_ok());
        }
    }
}

/// What a send settles through.
#[derive(Clone, Copy)]
struct Sent<'a> {
    db: &'a Db,
    bus: &'a EventBus,
    accepted: &'a mpsc::Sender<ToSettle>,
}

/// Sends one claimed delivery and settles it; `None` when it was put off
/// (its endpoint is disabled) or its endpoint is gone.
async fn deliver(
    Sent { db, bus, accepted }: Sent<'_>,
    client: &reqwest::Client,
    config: &DeliveryConfig,
    delivery: &webhook_deliveries::Model,
    rows: &queue::ClaimedRows,
) -> Result<Option<Settled>, DbErr> {
    let Some(endpoint) = rows.endpoint_of(delivery) else {
        return Ok(None);
    };
    if !endpoint.enabled {
        // Kept for when the endpoint is enabled again.
        queue::postpone(db, delivery, chrono::Duration::minutes(5)).await?;
        return Ok(None);
    }
    let Some(body) = queue::body(db, delivery, endpoint, rows).await? else {
        let outcome = Outcome {
            attempted_at: db::now(),
            status_code: None,
            latency_ms: 0,
            error: Some("the event no longer exists".into()),
            retry_after: None,
        };
        return queue::settle(db, bus, delivery, endpoint, &outcome, &[])
            .await
            .map(Some);
    };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let outcome = send(client, config, endpoint, delivery, &body).await;
    if outcome.accepted() {
        let (settled, answer) = oneshot::channel();
        let to_settle = ToSettle {
            delivery: delivery.clone(),
            endpoint_exhausted: endpoint.exhausted_deliveries,
            outcome,
            settled,
        };
        if accepted.send(to_settle).await.is_ok() && answer.await == Ok(true) {
            return Ok(Some(Settled::Delivered));
        }
        return Err(DbErr::Custom(
            "the delivered webhook was not settled".into(),
        ));
    }
    queue::settle(db, bus, delivery, endpoint, &outcome, &config.schedule)
        .await
        .map(Some)
}

/// Makes one signed POST.
async fn send(
    client: &reqwest::Client,
    config: &DeliveryConfig,
    endpoint: &webhook_endpoints::Model,
    delivery: &webhook_deliveries::Model,
    body: &[u8],
) -> Outcome {
    let attempted_at = db::now();
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
    fn retry_after_reads_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, "120".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(chrono::Duration::seconds(120)));
    }
}
