//! Following a clinic's events live, from any point in the log, with no gap
//! and no duplicate.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use sea_orm::DbErr;
use tokio::sync::broadcast;

use super::{BusMessage, EventBus, FollowedEvent, log};
use crate::{auth::Principal, db::Db};

/// Events a follower reads from the log per query when catching up.
const CATCH_UP_PAGE: u64 = 32;
/// How long a follower waits for a missing event on the bus before reading
/// it from the log.
const GAP_WAIT: Duration = Duration::from_millis(500);
/// Events held back behind a gap before the follower reads the log instead.
const MAX_EARLY_EVENTS: usize = 256;

/// Follows `who`'s clinic's events after sequence `after` (or from now):
/// first the log, then live, with no gap and no duplicate — also when events
/// commit while it switches over, arrive out of order from concurrent
/// writers, or are missed by a lagging or reconnecting bus. Only events for
/// which `wanted` holds are yielded.
pub fn follow<F>(
    db: Db,
    bus: EventBus,
    who: Principal,
    after: Option<i64>,
    wanted: F,
) -> impl futures::Stream<Item = Result<Arc<FollowedEvent>, DbErr>> + Send
where
    F: Fn(&FollowedEvent) -> bool + Send + 'static,
{
    async_stream::try_stream! {
        // Listen before reading, so nothing committed meanwhile slips by.
        let mut receiver = bus.subscribe(who.clinic_id);
        let conn = db.conn().clone();
        let mut last = match after {
            Some(after) => after,
            None => log::current_sequence(&conn, &who).await?,
        };
        // From now on, the bus has everything after the counter just read:
        // the receiver was listening before it was read.
        let mut from_log = after.is_some();
        let mut target: Option<i64> = None;
        loop {
            // Catch up from the log: everything after `last` (up to `target`
            // when filling a known gap, which is committed by then). Small
            // pages: thousands of followers may catch up at once.
            while from_log {
                let page = log::read(&conn, &who, last, CATCH_UP_PAGE, &[]).await?;
                let done = page.len() < CATCH_UP_PAGE as usize;
                for row in page {
                    last = row.sequence;
                    let event = FollowedEvent::new(row);
                    if wanted(&event) {
                        yield Arc::new(event);
                    }
                }
                if done || target.is_some_and(|t| last >= t) {
                    from_log = false;
                }
            }
            // Live. Concurrent writers commit in sequence order but may
            // publish out of it, so a gap is first waited out here: going to
            // the log for every reordered pair would cost one query per
            // follower, thousands for one event.
            let mut early: BTreeMap<i64, Arc<FollowedEvent>> = BTreeMap::new();
            let mut gap_deadline: Option<tokio::time::Instant> = None;
            // Back to the log: up to the last event held back when a gap did
            // not fill (those are committed), or all of it after a resync.
            target = loop {
                let message = match gap_deadline {
                    None => receiver.recv().await,
                    Some(deadline) => match tokio::time::timeout_at(deadline, receiver.recv()).await {
                        Ok(message) => message,
                        // Not published here in time (another replica's, or
                        // lost): the log has it.
                        Err(_) => break early.last_key_value().map(|(sequence, _)| *sequence),
                    },
                };
                match message {
                    Ok(BusMessage::Event(event)) => {
                        if event.sequence <= last {
                            continue;
                        }
                        early.insert(event.sequence, event);
                        while let Some(entry) = early.first_entry() {
                            if *entry.key() != last + 1 {
                                break;
                            }
                            let event = entry.remove();
                            last = event.sequence;
                            if wanted(&event) {
                                yield event;
                            }
                        }
                        if early.is_empty() {
                            gap_deadline = None;
                        } else if early.len() > MAX_EARLY_EVENTS {
                            break early.last_key_value().map(|(sequence, _)| *sequence);
                        } else if gap_deadline.is_none() {
                            gap_deadline = Some(tokio::time::Instant::now() + GAP_WAIT);
                        }
                    }
                    Ok(BusMessage::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => break None,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            };
            from_log = true;
        }
    }
}
