//! Between replicas (PostgreSQL only): the writer's commit NOTIFYs, every
//! other replica LISTENs and relays the events to its own bus. NOTIFY only
//! wakes; the events are read from the log. The same connection hears that
//! some credential stopped working ([`CREDENTIALS_CHANNEL`]) or some clinic's
//! outreach configuration changed ([`CONFIGURATION_CHANNEL`]), and while it
//! is up, and only then, this replica may answer either from memory
//! ([`crate::cache`]).

use std::time::Duration;

use sea_orm::sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{EventBus, log};
use crate::{
    auth::{Principal, credentials::CREDENTIALS_CHANNEL},
    db::{CONFIGURATION_CHANNEL, Db},
};

/// The notification channel replicas share on PostgreSQL.
pub const NOTIFY_CHANNEL: &str = "journeymap_events";

/// Relays other replicas' events to this process's bus: LISTEN wakes it, the
/// events table supplies the events. After a lost connection it reconnects
/// and tells followers to catch up; while it is lost, credentials and clinics'
/// outreach configuration are read from the database every time.
pub async fn relay_notifications(db: Db, bus: EventBus, shutdown: CancellationToken) {
    let pool = db.conn().get_postgres_connection_pool().clone();
    let mut backoff = Duration::from_millis(100);
    loop {
        // Not listening (yet, or any more): nothing answers from memory.
        db.set_listening(false);
        let listening = async {
            let mut listener = match db.listen_url() {
                Some(url) => PgListener::connect(url).await?,
                None => PgListener::connect_with(&pool).await?,
            };
            listener
                .listen_all([NOTIFY_CHANNEL, CREDENTIALS_CHANNEL, CONFIGURATION_CHANNEL])
                .await?;
            Ok::<_, sea_orm::sqlx::Error>(listener)
        };
        let mut listener = match listening.await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(?error, "cannot listen for other replicas' events; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        // Anything committed while we were not listening is in the log, and
        // any credential or configuration may have changed meanwhile.
        bus.resync();
        db.set_listening(true);
        loop {
            // `try_recv`, not `recv`: `recv` reconnects by itself and would
            // hide the notifications lost meanwhile.
            let notification = tokio::select! {
                _ = shutdown.cancelled() => return,
                notification = listener.try_recv() => notification,
            };
            let notification = match notification {
                Ok(Some(notification)) => notification,
                lost => {
                    let error = lost.err();
                    tracing::warn!(?error, "lost the notification connection; reconnecting");
                    break;
                }
            };
            match notification.channel() {
                CREDENTIALS_CHANNEL => {
                    db.credentials().forget_all();
                    continue;
                }
                CONFIGURATION_CHANNEL => {
                    db.configuration().invalidate();
                    continue;
                }
                _ => {}
            }
            let Some((replica, clinic, first, last)) = parse(notification.payload()) else {
                continue;
            };
            // Our own, or nobody here follows that clinic: nothing to read.
            if replica == bus.replica || !bus.has_followers(clinic) {
                continue;
            }
            match log::range(db.conn(), &Principal::system(clinic), first, last).await {
                Ok(found) => bus.publish(found),
                Err(error) => {
                    tracing::warn!(
                        ?error,
                        "cannot read relayed events; followers will catch up"
                    );
                    bus.resync();
                }
            }
        }
    }
}

/// `replica:clinic:first:last`, as [`super::outbox::append`] notifies.
fn parse(payload: &str) -> Option<(Uuid, Uuid, i64, i64)> {
    let mut parts = payload.split(':');
    Some((
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_parse() {
        let (r, c) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(parse(&format!("{r}:{c}:3:5")), Some((r, c, 3, 5)));
        assert_eq!(parse("nonsense"), None);
    }
}
