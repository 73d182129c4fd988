//! Answers kept in memory that a PostgreSQL notification makes stale.
//!
//! Two things are read by nearly every request and change rarely: who a
//! credential is ([`crate::auth::credentials`]) and a clinic's outreach
//! configuration (`domain::outreach::configuration`). Each is kept per
//! process under an [`Invalidations`]: a generation that every change
//! advances (the writer's own right after its commit, every other replica's
//! when PostgreSQL's triggers notify with the commit), and whether this
//! process hears those notifications at all. A kept answer is good only while
//! the process listens, its generation is current and it is younger than the
//! cache's time to live, the bound should a notification connection die
//! without a word. Before the replica relay listens, after a lost connection,
//! and on SQLite (which another process may write without notifying),
//! nothing is answered from memory.
//!
//! A read of the database that began before a change must not be kept as
//! current after it: take the [`Generation`] before reading, keep the answer
//! under it, and the change's advance makes it stale.

use std::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

/// One kind of kept answer's generation and whether this process hears its
/// changes.
#[derive(Debug, Default)]
pub struct Invalidations {
    generation: AtomicU64,
    listening: AtomicBool,
}

/// A generation: taken before reading the database, kept with the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(u64);

impl Invalidations {
    /// The generation to read under, or `None` when nothing may be kept
    /// (this process does not hear every change).
    pub fn current(&self) -> Option<Generation> {
        self.listening
            .load(Ordering::Acquire)
            .then(|| Generation(self.generation.load(Ordering::Acquire)))
    }

    /// Makes every answer kept so far stale.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether this process hears every change; set by the replica relay
    /// while its LISTEN connection is up. Either way, what was kept is stale.
    pub fn set_listening(&self, listening: bool) {
        self.invalidate();
        self.listening.store(listening, Ordering::Release);
    }
}

/// An answer with the generation it was read under and when.
#[derive(Debug, Clone)]
pub struct Kept<V> {
    value: V,
    generation: Generation,
    kept_at: Instant,
}

impl<V> Kept<V> {
    /// `value`, read under `generation`.
    pub fn new(value: V, generation: Generation) -> Self {
        Self {
            value,
            generation,
            kept_at: Instant::now(),
        }
    }

    /// The value, if it is still good under `invalidations` and younger than
    /// `time_to_live`.
    pub fn fresh(&self, invalidations: &Invalidations, time_to_live: Duration) -> Option<&V> {
        (invalidations.current() == Some(self.generation) && self.is_young(time_to_live))
            .then_some(&self.value)
    }

    /// Whether it was kept less than `time_to_live` ago.
    pub fn is_young(&self, time_to_live: Duration) -> bool {
        self.kept_at.elapsed() < time_to_live
    }

    /// The value, for changing it in place.
    pub fn value_mut(&mut self) -> &mut V {
        &mut self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn nothing_is_kept_while_not_listening() {
        let invalidations = Invalidations::default();
        assert_eq!(invalidations.current(), None);
        invalidations.set_listening(true);
        let kept = Kept::new(1, invalidations.current().unwrap());
        assert_eq!(kept.fresh(&invalidations, MINUTE), Some(&1));
        invalidations.set_listening(false);
        assert_eq!(kept.fresh(&invalidations, MINUTE), None);
        invalidations.set_listening(true);
        assert_eq!(kept.fresh(&invalidations, MINUTE), None, "from before");
    }

    #[test]
    fn a_read_from_before_a_change_is_stale() {
        let invalidations = Invalidations::default();
        invalidations.set_listening(true);
        let before = invalidations.current().unwrap();
        invalidations.invalidate();
        assert_eq!(Kept::new(1, before).fresh(&invalidations, MINUTE), None);
    }

    #[test]
    fn an_old_answer_is_stale() {
        let invalidations = Invalidations::default();
        invalidations.set_listening(true);
        let kept = Kept::new(1, invalidations.current().unwrap());
        assert_eq!(kept.fresh(&invalidations, Duration::ZERO), None);
    }
}
