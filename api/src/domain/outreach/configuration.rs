//! What planning a follow-up reads of a clinic's configuration, kept in
//! memory between changes.
//!
//! Every stage move plans the entered stage's follow-ups, and planning read
//! the stage's rules, the pathway's name, the clinic's policy and its
//! templates: four statements of a move's seventeen, for rows that change a
//! few times a year. [`Configurations`] keeps them per clinic under
//! [`crate::cache::Invalidations`] (held by the `Db`): a change to them
//! makes what was kept stale, at once on the replica that commits it
//! ([`Write::configuration_changed`]) and on every other replica when
//! PostgreSQL's triggers on those tables notify (migration 000016; an
//! operator's SQL by hand too). Without a listening replica relay (SQLite,
//! a lost connection) each change reads them once from its own transaction.
//!
//! A change that alters the configuration reads it from its own transaction
//! afterwards, never from memory: planning in the same change sees the new
//! rules.

use std::{
    collections::HashMap,
    num::NonZeroUsize,
    sync::{Arc, Mutex},
    time::Duration,
};

use entity::{follow_up_rules, pathways};
use lru::LruCache;
use sea_orm::{ConnectionTrait, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::{facts, planner::ClinicFacts};
use crate::{
    auth::Principal,
    cache::{Generation, Invalidations, Kept},
    domain::{DomainResult, Write},
};

/// How long a clinic's configuration is kept even when no notification
/// arrives: the bound on a change's delay should a notification connection
/// die silently.
const TIME_TO_LIVE: Duration = Duration::from_secs(30);

/// Clinics kept at most, the least recently planned for leaving first: a
/// replica serving more clinics than this reads the quietest ones' anew.
const CAPACITY: usize = 2_000;

/// A clinic's outreach configuration as planning reads it.
#[derive(Debug)]
pub struct Configuration {
    /// The clinic's name, zone, policy and templates.
    pub clinic: ClinicFacts,
    /// Every pathway's name, archived ones too.
    pathway_names: HashMap<Uuid, String>,
    /// Each stage's follow-up rules, oldest first.
    rules: HashMap<Uuid, Vec<follow_up_rules::Model>>,
}

impl Configuration {
    /// Reads the configuration of the caller's clinic.
    async fn read<C: ConnectionTrait>(conn: &C, who: &Principal) -> DomainResult<Self> {
        let clinic = facts::clinic(conn, who).await?;
        let pathway_names = who
            .select::<pathways::Entity>()
            .select_only()
            .column(pathways::Column::Id)
            .column(pathways::Column::Name)
            .into_tuple::<(Uuid, String)>()
            .all(conn)
            .await?
            .into_iter()
            .collect();
        let mut rules: HashMap<Uuid, Vec<follow_up_rules::Model>> = HashMap::new();
        for rule in who
            .select::<follow_up_rules::Entity>()
            .order_by_asc(follow_up_rules::Column::CreatedAt)
            .order_by_asc(follow_up_rules::Column::Id)
            .all(conn)
            .await?
        {
            rules.entry(rule.stage_id).or_default().push(rule);
        }
        Ok(Self {
            clinic,
            pathway_names,
            rules,
        })
    }

    /// The follow-up rules of `stage`, oldest first.
    pub fn rules_of(&self, stage: Uuid) -> &[follow_up_rules::Model] {
        self.rules
            .get(&stage)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The name of `pathway`, if it is the clinic's.
    pub fn pathway_name(&self, pathway: Uuid) -> Option<&str> {
        self.pathway_names.get(&pathway).map(String::as_str)
    }
}

/// Clinics' configurations kept by one process, shared by every change.
#[derive(Debug)]
pub struct Configurations {
    kept: Mutex<LruCache<Uuid, Kept<Arc<Configuration>>>>,
}

impl Default for Configurations {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl Configurations {
    fn with_capacity(clinics: usize) -> Self {
        Self {
            kept: Mutex::new(LruCache::new(
                NonZeroUsize::new(clinics).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    fn get(&self, clinic: Uuid, invalidations: &Invalidations) -> Option<Arc<Configuration>> {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.get(&clinic)?
            .fresh(invalidations, TIME_TO_LIVE)
            .cloned()
    }

    fn keep(&self, clinic: Uuid, configuration: Arc<Configuration>, generation: Generation) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.put(clinic, Kept::new(configuration, generation));
    }
}

/// The outreach configuration of `write`'s clinic: kept in memory while it
/// is current, read from the change's transaction otherwise (and always once
/// the change altered it).
pub async fn of(write: &Write<'_>) -> DomainResult<Arc<Configuration>> {
    if let Some(known) = write.configuration.get() {
        return Ok(known.clone());
    }
    let who = write.who;
    let invalidations = write.db().configuration();
    let generation = if write.alters_configuration() {
        None
    } else {
        invalidations.current()
    };
    if generation.is_some()
        && let Some(kept) = write.configurations.get(who.clinic_id, invalidations)
    {
        let _ = write.configuration.set(kept.clone());
        return Ok(kept);
    }
    let read = Arc::new(Configuration::read(&*write.txn, who).await?);
    if let Some(generation) = generation {
        write
            .configurations
            .keep(who.clinic_id, read.clone(), generation);
    }
    let _ = write.configuration.set(read.clone());
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        db::CONFIGURATION_CHANNEL,
        domain::values::{QuietHours, TimeZone},
    };

    fn configuration(name: &str) -> Arc<Configuration> {
        Arc::new(Configuration {
            clinic: ClinicFacts {
                name: name.into(),
                timezone: TimeZone::parse("tz", "America/Los_Angeles").unwrap(),
                quiet: QuietHours::standard(),
                max_marketing_per_week: 1,
                min_hours_between_contacts: 24,
                templates: HashMap::new(),
            },
            pathway_names: HashMap::new(),
            rules: HashMap::new(),
        })
    }

    #[test]
    fn a_clinic_is_answered_until_a_change() {
        let invalidations = Invalidations::default();
        invalidations.set_listening(true);
        let kept = Configurations::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let generation = invalidations.current().unwrap();
        kept.keep(a, configuration("A"), generation);
        assert_eq!(kept.get(a, &invalidations).unwrap().clinic.name, "A");
        assert!(kept.get(b, &invalidations).is_none(), "another clinic");
        invalidations.invalidate();
        assert!(kept.get(a, &invalidations).is_none());
    }

    #[test]
    fn the_least_recently_planned_clinic_leaves_first() {
        let invalidations = Invalidations::default();
        invalidations.set_listening(true);
        let generation = invalidations.current().unwrap();
        let kept = Configurations::with_capacity(2);
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        kept.keep(a, configuration("A"), generation);
        kept.keep(b, configuration("B"), generation);
        assert!(kept.get(a, &invalidations).is_some());
        kept.keep(c, configuration("C"), generation);
        assert!(
            kept.get(b, &invalidations).is_none(),
            "B was planned for last"
        );
        assert_eq!(kept.get(a, &invalidations).unwrap().clinic.name, "A");
        assert_eq!(kept.get(c, &invalidations).unwrap().clinic.name, "C");
    }

    #[test]
    fn the_triggers_notify_the_channel_replicas_listen_on() {
        let migration = include_str!(
            "../../../../migration/src/m20261203_000016_configuration_notifications.rs"
        );
        assert!(
            migration.contains(&format!("pg_notify('{CONFIGURATION_CHANNEL}'")),
            "migration 000016 notifies another channel than {CONFIGURATION_CHANNEL}"
        );
    }
}
