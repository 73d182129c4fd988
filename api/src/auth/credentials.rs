//! Credentials already resolved: every request presents one, and looking it up
//! in PostgreSQL was one statement and round trip of a nested read's five
//! (about a twentieth of W1 and W2, measured 2026-12-03).
//!
//! A [`CredentialCache`] keeps the principal a live API token or staff session
//! resolved to, for [`TIME_TO_LIVE`] at most. What could change the answer (a
//! revoked token, an ended session, a disabled staff member) empties every
//! cache: the writer's own right after its commit, and every replica's
//! through the notification ([`CREDENTIALS_CHANNEL`]) that PostgreSQL's
//! triggers on `api_tokens`, `staff_sessions` and `staff` send with the
//! commit, whoever made the change (migration 000015; an operator's `UPDATE`
//! by hand too). So a cache may answer only while its replica is listening
//! for those notifications ([`CredentialCache::set_listening`]); before that,
//! after a lost connection, and on SQLite (which another process, such as
//! `journeymap staff reset-password`, may write without notifying), every
//! request is looked up.
//!
//! A lookup that read the database before an emptying must not answer
//! afterwards: each emptying starts a new generation
//! ([`crate::cache::Invalidations`]), and an answer is good only under the
//! generation it was read under.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Principal;
pub use crate::cache::Generation;
use crate::cache::{Invalidations, Kept};

/// The PostgreSQL notification channel that empties every replica's cache:
/// the name migration 000015's triggers notify (a test keeps the two equal).
pub const CREDENTIALS_CHANNEL: &str = "journeymap_credentials";

/// How long an answer is kept even when no notification arrives: the bound
/// on a revocation's delay should a notification connection die silently.
pub const TIME_TO_LIVE: Duration = Duration::from_secs(30);

/// Answers kept at most; beyond it the cache starts over.
const CAPACITY: usize = 10_000;

/// What a request presented.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Credential {
    /// An API token, by the hash of its secret.
    ApiToken { secret_hash: String },
    /// A staff access token's session, staff member and clinic (its signature
    /// and lifetime are checked on every request).
    Session {
        session: Uuid,
        staff: Uuid,
        clinic: Uuid,
    },
}

/// A credential's resolved principal and what bounds its life.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub principal: Principal,
    /// When the token or session expires, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// An API token's last recorded use.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Principals of live credentials, shared by every request of one process.
#[derive(Debug, Default)]
pub struct CredentialCache {
    kept: Mutex<HashMap<Credential, Kept<Resolved>>>,
    invalidations: Invalidations,
}

impl CredentialCache {
    /// The current generation, to take before reading the database (`None`:
    /// the answer will not be kept).
    pub fn generation(&self) -> Option<Generation> {
        self.invalidations.current()
    }

    /// The kept answer for `credential`, unless it has expired (as a token or
    /// session at `now`, or as an answer kept too long).
    pub fn get(&self, credential: &Credential, now: DateTime<Utc>) -> Option<Resolved> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.get(credential)?
            .fresh(&self.invalidations, TIME_TO_LIVE)
            .filter(|resolved| resolved.expires_at.is_none_or(|at| now < at))
            .cloned()
    }

    /// Keeps `resolved` for `credential`, read under `generation`.
    pub fn keep(&self, credential: Credential, resolved: Resolved, generation: Option<Generation>) {
        let Some(generation) = generation else {
            return;
        };
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= CAPACITY {
            kept.retain(|_, k| k.is_young(TIME_TO_LIVE));
            if kept.len() >= CAPACITY {
                kept.clear();
            }
        }
        kept.insert(credential, Kept::new(resolved, generation));
    }

    /// Records that an API token's use at `now` was written, so the next
    /// write waits for the granularity again.
    pub fn used(&self, credential: &Credential, now: DateTime<Utc>) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = kept.get_mut(credential) {
            found.value_mut().last_used_at = Some(now);
        }
    }

    /// Empties the cache: some credential may have stopped working.
    pub fn forget_all(&self) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        self.invalidations.invalidate();
        kept.clear();
    }

    /// Whether this process hears every emptying; set by the replica relay
    /// while its LISTEN connection is up. Either way the cache starts empty.
    pub fn set_listening(&self, listening: bool) {
        self.forget_all();
        self.invalidations.set_listening(listening);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str) -> Credential {
        Credential::ApiToken {
            secret_hash: name.into(),
        }
    }

    fn resolved(expires_at: Option<DateTime<Utc>>) -> Resolved {
        Resolved {
            principal: Principal::system(Uuid::nil()),
            expires_at,
            last_used_at: None,
        }
    }

    fn listening() -> CredentialCache {
        let cache = CredentialCache::default();
        cache.set_listening(true);
        cache
    }

    #[test]
    fn answers_only_while_listening() {
        let cache = CredentialCache::default();
        cache.keep(token("a"), resolved(None), cache.generation());
        assert!(cache.get(&token("a"), Utc::now()).is_none());
        cache.set_listening(true);
        cache.keep(token("a"), resolved(None), cache.generation());
        assert!(cache.get(&token("a"), Utc::now()).is_some());
        cache.set_listening(false);
        assert!(cache.get(&token("a"), Utc::now()).is_none());
    }

    #[test]
    fn a_lookup_from_before_an_emptying_is_not_kept() {
        let cache = listening();
        let before = cache.generation();
        cache.forget_all();
        cache.keep(token("a"), resolved(None), before);
        assert!(cache.get(&token("a"), Utc::now()).is_none());
        cache.keep(token("a"), resolved(None), cache.generation());
        assert!(cache.get(&token("a"), Utc::now()).is_some());
    }

    #[test]
    fn an_expired_credential_is_not_answered() {
        let cache = listening();
        let now = Utc::now();
        let at = now + chrono::Duration::seconds(5);
        cache.keep(token("a"), resolved(Some(at)), cache.generation());
        assert!(cache.get(&token("a"), now).is_some());
        assert!(cache.get(&token("a"), at).is_none());
    }

    #[test]
    fn emptying_forgets_every_answer() {
        let cache = listening();
        for name in ["a", "b"] {
            cache.keep(token(name), resolved(None), cache.generation());
        }
        cache.forget_all();
        assert!(cache.get(&token("a"), Utc::now()).is_none());
        assert!(cache.get(&token("b"), Utc::now()).is_none());
    }

    #[test]
    fn the_triggers_notify_the_channel_replicas_listen_on() {
        let migration =
            include_str!("../../../migration/src/m20261203_000015_credential_notifications.rs");
        assert!(
            migration.contains(&format!("pg_notify('{CREDENTIALS_CHANNEL}'")),
            "migration 000015 notifies another channel than {CREDENTIALS_CHANNEL}"
        );
    }

    #[test]
    fn a_full_cache_starts_over_rather_than_growing() {
        let cache = listening();
        for n in 0..=CAPACITY {
            cache.keep(token(&n.to_string()), resolved(None), cache.generation());
        }
        assert!(cache.kept.lock().unwrap().len() <= CAPACITY);
    }
}
