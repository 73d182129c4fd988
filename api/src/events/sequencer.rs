//! Numbering on PostgreSQL, one round at a time per clinic in this process.
//!
//! Writers that committed hand their events' ids to the clinic's round
//! ([`Sequencer::number`]); one task per busy clinic calls
//! [`super::outbox::number_pending`] for everything handed in meanwhile and
//! answers each writer. So one process queues at most one caller on the
//! clinic's numbering lock instead of one per writer, each of which would
//! wait for the scheduler to wake it in turn on a busy machine. The task is
//! spawned, not run by a writer's request, so a client hanging up does not
//! stop a round others wait for.

use std::{
    collections::{HashMap, hash_map::Entry},
    sync::{Arc, Mutex},
};

use entity::events;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::EventBus;
use crate::db::Db;

/// The clinics with a numbering round running in this process and the
/// writers waiting for the next one.
#[derive(Clone, Default)]
pub struct Sequencer {
    clinics: Arc<Mutex<HashMap<Uuid, Vec<Waiting>>>>,
}

/// A writer's committed events waiting for their numbers.
struct Waiting {
    ours: Vec<Uuid>,
    answer: oneshot::Sender<Option<Vec<events::Model>>>,
}

impl Sequencer {
    /// Numbers `ours` (committed events of `clinic`) with every other event
    /// of the clinic waiting, publishes them, and returns `ours` numbered;
    /// `None` if numbering failed (logged; the sweeper numbers them later).
    pub async fn number(
        &self,
        db: &Db,
        bus: &EventBus,
        clinic: Uuid,
        ours: Vec<Uuid>,
    ) -> Option<Vec<events::Model>> {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut clinics = self.clinics.lock().expect("sequencer lock");
            match clinics.entry(clinic) {
                // A round is running: it takes this writer next.
                Entry::Occupied(mut waiting) => {
                    waiting.get_mut().push(Waiting { ours, answer });
                    false
                }
                Entry::Vacant(entry) => {
                    entry.insert(vec![Waiting { ours, answer }]);
                    true
                }
            }
        };
        if start {
            let rounds = self.clone().rounds(db.clone(), bus.clone(), clinic);
            // Counted with requests when a request started it, like the
            // statement it stands in for.
            if crate::db::is_uncounted() {
                tokio::spawn(crate::db::uncounted(rounds));
            } else {
                tokio::spawn(rounds);
            }
        }
        answered.await.ok().flatten()
    }

    /// Rounds for `clinic` until nobody waits; the clinic's entry is removed
    /// under the same lock writers join by, so none is left waiting.
    async fn rounds(self, db: Db, bus: EventBus, clinic: Uuid) {
        loop {
            let round = {
                let mut clinics = self.clinics.lock().expect("sequencer lock");
                let Some(waiting) = clinics.get_mut(&clinic) else {
                    return;
                };
                if waiting.is_empty() {
                    clinics.remove(&clinic);
                    return;
                }
                std::mem::take(waiting)
            };
            let ours: Vec<Uuid> = round.iter().flat_map(|w| w.ours.iter().copied()).collect();
            match super::outbox::number_pending(&db, &bus, clinic, &ours).await {
                Ok(numbered) => {
                    let by_id: HashMap<Uuid, events::Model> = numbered
                        .into_iter()
                        .map(|event| (event.id, event))
                        .collect();
                    for writer in round {
                        let mine = writer
                            .ours
                            .iter()
                            .filter_map(|id| by_id.get(id).cloned())
                            .collect();
                        let _ = writer.answer.send(Some(mine));
                    }
                }
                Err(error) => {
                    tracing::warn!(
                        ?error,
                        %clinic,
                        "cannot number committed events yet; the sweeper will"
                    );
                    for writer in round {
                        let _ = writer.answer.send(None);
                    }
                }
            }
        }
    }
}
