//! DataLoaders: every relation a resolver follows is batched, so the number of
//! SQL statements of a request does not grow with the number of rows it
//! returns. Loaders belong to one request and one caller; every query they
//! make carries the caller's clinic filter.

use std::{
    collections::HashMap,
    hash::Hash,
    marker::PhantomData,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_graphql::dataloader::{DataLoader, Loader};
use entity::{
    ClinicOwned, DecodeRow, audit_log, audit_log_patients, clinics, consents, events, feedback,
    follow_up_rules, follow_ups, journeys, pathways, patients, staff, stage_transitions, stages,
    touchpoints, webhook_attempts, webhook_deliveries, webhook_endpoints,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, IdenStatic, Iterable, JoinType,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, sea_query::Expr,
};
use uuid::Uuid;

use super::load_queue::LoadQueue;
use crate::{
    auth::Principal,
    domain::{
        DomainError, Store,
        page::{Page, PageRequest, SortKey, first_pages},
        timeline, touchpoints as touchpoint_rules,
    },
};

/// Rows of `E` by id.
pub struct ById<E> {
    store: Store,
    who: Principal,
    _entity: PhantomData<fn() -> E>,
}

impl<E: ClinicOwned> Loader<Uuid> for ById<E>
where
    E::Model: Clone + Send + Sync + 'static,
{
    type Value = E::Model;
    type Error = DomainError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, E::Model>, DomainError> {
        let rows = self.who.by_ids::<E, _>(self.store.db.conn(), keys).await?;
        Ok(rows.into_iter().map(|row| (E::id_of(&row), row)).collect())
    }
}

/// All rows of `E` belonging to each parent, in a fixed order.
pub struct ByParent<E: EntityTrait> {
    store: Store,
    who: Principal,
    parent: E::Column,
    parent_of: fn(&E::Model) -> Option<Uuid>,
    order: Vec<E::Column>,
}

impl<E: ClinicOwned> Loader<Uuid> for ByParent<E>
where
    E::Model: Clone + Send + Sync + 'static,
    E::Column: Send + Sync,
{
    type Value = Vec<E::Model>;
    type Error = DomainError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<E::Model>>, DomainError> {
        let mut select = self
            .who
            .select::<E>()
            .filter(self.parent.is_in(keys.iter().copied()));
        for column in &self.order {
            select = select.order_by_asc(*column);
        }
        let mut grouped: HashMap<Uuid, Vec<E::Model>> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        for row in select.all(self.store.db.conn()).await? {
            if let Some(parent) = (self.parent_of)(&row) {
                grouped.entry(parent).or_default().push(row);
            }
        }
        Ok(grouped)
    }
}

/// Stages a request has already read, by id (see [`JourneysOfPatient`]).
type KnownStages = Arc<Mutex<HashMap<Uuid, stages::Model>>>;

/// A patient's journeys, oldest first, read together with their current
/// stages in one statement; the stages are remembered for
/// [`Loaders::stage_by_id`], so the patient list front ends page through all
/// day (patients → journeys → current stage) costs a statement less.
pub struct JourneysOfPatient {
    store: Store,
    who: Principal,
    known_stages: KnownStages,
}

impl Loader<Uuid> for JourneysOfPatient {
    type Value = Vec<journeys::Model>;
    type Error = DomainError;

    async fn load(
        &self,
        keys: &[Uuid],
    ) -> Result<HashMap<Uuid, Vec<journeys::Model>>, DomainError> {
        let current_stage = journeys::Entity::belongs_to(stages::Entity)
            .from(journeys::Column::CurrentStageId)
            .to(stages::Column::Id)
            .into();
        let mut select = self
            .who
            .select::<journeys::Entity>()
            .filter(journeys::Column::PatientId.is_in(keys.iter().copied()))
            .join(JoinType::InnerJoin, current_stage)
            .filter(stages::Column::ClinicId.eq(self.who.clinic_id))
            .order_by_asc(journeys::Column::StartedAt)
            .order_by_asc(journeys::Column::Id);
        // The journey's columns under their own names, the stage's prefixed:
        // a clinic has a handful of stages, so most rows repeat one already
        // decoded and only its id is read (decoding every column under a
        // prefix formats each name, row after row).
        for column in stages::Column::iter() {
            select = select.column_as(
                Expr::col((stages::Entity, column)),
                format!("{STAGE_PREFIX}{}", column.as_str()),
            );
        }
        let conn = self.store.db.conn();
        let rows = conn
            .query_all_raw(conn.get_database_backend().build(&select.into_query()))
            .await?;
        let mut grouped: HashMap<Uuid, Vec<journeys::Model>> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        let mut known = self.known_stages.lock().expect("known stages lock");
        for row in rows {
            let journey = journeys::Model::decode_row(&row)?;
            let stage: Uuid = row.try_get(STAGE_PREFIX, stages::Column::Id.as_str())?;
            if let std::collections::hash_map::Entry::Vacant(unknown) = known.entry(stage) {
                unknown.insert(stages::Model::from_query_result(&row, STAGE_PREFIX)?);
            }
            grouped.entry(journey.patient_id).or_default().push(journey);
        }
        Ok(grouped)
    }
}

/// The prefix of the stage's columns in [`JourneysOfPatient`]'s statement.
const STAGE_PREFIX: &str = "jm_stage_";

/// A page of `E` rows per parent, for nested connections. Keys asking for the
/// same page shape are answered by one statement.
pub struct PagesByParent<E: EntityTrait> {
    store: Store,
    who: Principal,
    parent: E::Column,
    parent_of: fn(&E::Model) -> Option<Uuid>,
    key: SortKey<E>,
}

impl<E: ClinicOwned> Loader<(Uuid, PageRequest)> for PagesByParent<E>
where
    E::Model: Clone + Send + Sync + DecodeRow + 'static,
    E::Column: Send + Sync,
{
    type Value = Page<E::Model>;
    type Error = DomainError;

    async fn load(
        &self,
        keys: &[(Uuid, PageRequest)],
    ) -> Result<HashMap<(Uuid, PageRequest), Page<E::Model>>, DomainError> {
        let mut by_shape: HashMap<PageRequest, Vec<Uuid>> = HashMap::new();
        for (parent, page) in keys {
            by_shape.entry(*page).or_default().push(*parent);
        }
        let mut pages = HashMap::new();
        for (page, parents) in by_shape {
            let mut found = first_pages(
                self.store.db.conn(),
                self.who.select::<E>(),
                self.parent,
                &parents,
                self.parent_of,
                &self.key,
                &page,
            )
            .await?;
            for parent in parents {
                let rows = found.remove(&parent).unwrap_or(Page {
                    items: Vec::new(),
                    has_previous_page: page.after.is_some(),
                    has_next_page: false,
                });
                pages.insert((parent, page), rows);
            }
        }
        Ok(pages)
    }
}

/// Pages of each patient's access log: pages of the audit log's patient
/// index, then the entries they point at, each presented as about that
/// patient.
pub struct AccessLogPages {
    index: PagesByParent<audit_log_patients::Entity>,
}

impl Loader<(Uuid, PageRequest)> for AccessLogPages {
    type Value = Page<audit_log::Model>;
    type Error = DomainError;

    async fn load(
        &self,
        keys: &[(Uuid, PageRequest)],
    ) -> Result<HashMap<(Uuid, PageRequest), Page<audit_log::Model>>, DomainError> {
        let pages = self.index.load(keys).await?;
        let ids: Vec<Uuid> = pages
            .values()
            .flat_map(|page| page.items.iter().map(|row| row.audit_id))
            .collect();
        let entries: HashMap<Uuid, audit_log::Model> = if ids.is_empty() {
            HashMap::new()
        } else {
            self.index
                .who
                .select::<audit_log::Entity>()
                .filter(audit_log::Column::Id.is_in(ids))
                .all(self.index.store.db.conn())
                .await?
                .into_iter()
                .map(|entry| (entry.id, entry))
                .collect()
        };
        Ok(pages
            .into_iter()
            .map(|((patient, request), page)| {
                let items = page
                    .items
                    .iter()
                    .filter_map(|row| entries.get(&row.audit_id))
                    .map(|entry| crate::domain::audit_log::about(entry.clone(), patient))
                    .collect();
                let page = Page {
                    items,
                    has_previous_page: page.has_previous_page,
                    has_next_page: page.has_next_page,
                };
                ((patient, request), page)
            })
            .collect())
    }
}

/// How many rows of `E` each parent has.
pub struct CountByParent<E: EntityTrait> {
    store: Store,
    who: Principal,
    parent: E::Column,
}

impl<E: ClinicOwned> Loader<Uuid> for CountByParent<E>
where
    E::Column: Send + Sync,
{
    type Value = u64;
    type Error = DomainError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, u64>, DomainError> {
        let counts: Vec<(Uuid, i64)> = self
            .who
            .select::<E>()
            .select_only()
            .column(self.parent)
            .column_as(Expr::cust("COUNT(*)"), "n")
            .filter(self.parent.is_in(keys.iter().copied()))
            .group_by(self.parent)
            .into_tuple()
            .all(self.store.db.conn())
            .await?;
        let mut result: HashMap<Uuid, u64> = keys.iter().map(|k| (*k, 0)).collect();
        result.extend(counts.into_iter().map(|(k, n)| (k, n as u64)));
        Ok(result)
    }
}

/// How many timeline entries each patient has.
pub struct TimelineCounts {
    store: Store,
    who: Principal,
}

impl Loader<Uuid> for TimelineCounts {
    type Value = u64;
    type Error = DomainError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, u64>, DomainError> {
        timeline::counts(self.store.db.conn(), &self.who, keys).await
    }
}

/// A timeline page per patient.
pub struct TimelinePages {
    store: Store,
    who: Principal,
}

impl Loader<(Uuid, PageRequest)> for TimelinePages {
    type Value = Page<timeline::Entry>;
    type Error = DomainError;

    async fn load(
        &self,
        keys: &[(Uuid, PageRequest)],
    ) -> Result<HashMap<(Uuid, PageRequest), Page<timeline::Entry>>, DomainError> {
        let mut by_shape: HashMap<PageRequest, Vec<Uuid>> = HashMap::new();
        for (patient, page) in keys {
            by_shape.entry(*page).or_default().push(*patient);
        }
        let mut pages = HashMap::new();
        for (page, patients) in by_shape {
            for (patient, found) in
                timeline::pages(self.store.db.conn(), &self.who, &patients, &page).await?
            {
                pages.insert((patient, page), found);
            }
        }
        Ok(pages)
    }
}

type Loads<T> = DataLoader<T>;

/// Rows read ahead for every item of a list at once (see
/// [`crate::graphql::plain::Plain::read_ahead`]): a patient page's journeys,
/// touchpoints and feedback in one statement each, before the page is answered
/// in one pass. A resolver takes its rows from here when they are here and
/// loads them otherwise; the list forgets them once it is answered, so a later
/// field (a mutation's payload after a write) never sees rows read before it.
pub struct ReadAhead<K, V> {
    rows: Mutex<HashMap<K, V>>,
}

impl<K, V> Default for ReadAhead<K, V> {
    fn default() -> Self {
        Self {
            rows: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> ReadAhead<K, V> {
    /// The rows read ahead for `key`, if any.
    pub fn get(&self, key: &K) -> Option<V> {
        self.rows.lock().expect("read-ahead lock").get(key).cloned()
    }

    /// Reads ahead with `loader` the keys not read yet; a failed read leaves
    /// them to the resolvers, which load them and report the error.
    pub async fn read<T>(&self, loader: &DataLoader<T>, keys: impl IntoIterator<Item = K>)
    where
        T: Loader<K, Value = V>,
        K: Send + Sync + 'static,
        V: Send + Sync + 'static,
    {
        let keys: Vec<K> = {
            let rows = self.rows.lock().expect("read-ahead lock");
            keys.into_iter()
                .filter(|key| !rows.contains_key(key))
                .collect()
        };
        if keys.is_empty() {
            return;
        }
        if let Ok(found) = loader.loader().load(&keys).await {
            self.rows.lock().expect("read-ahead lock").extend(found);
        }
    }

    /// Forgets the rows read for the keys that are `gone`.
    pub fn forget(&self, gone: impl Fn(&K) -> bool) {
        self.rows
            .lock()
            .expect("read-ahead lock")
            .retain(|key, _| !gone(key));
    }
}

/// Pages of children read ahead, by parent and page asked for.
pub type PagesAhead<M> = ReadAhead<(Uuid, PageRequest), Page<M>>;

/// Every loader of one request.
pub struct Loaders {
    pub patient: Loads<ById<patients::Entity>>,
    pub pathway: Loads<ById<pathways::Entity>>,
    pub stage: Loads<ById<stages::Entity>>,
    pub journey: Loads<ById<journeys::Entity>>,
    pub touchpoint: Loads<ById<touchpoints::Entity>>,
    pub staff: Loads<ById<staff::Entity>>,
    pub feedback: Loads<ById<feedback::Entity>>,
    pub follow_up: Loads<ById<follow_ups::Entity>>,
    pub transition: Loads<ById<stage_transitions::Entity>>,
    pub rule: Loads<ById<follow_up_rules::Entity>>,
    pub event: Loads<ById<events::Entity>>,
    pub journeys_of_patient: Loads<JourneysOfPatient>,
    pub stages_of_pathway: Loads<ByParent<stages::Entity>>,
    pub rules_of_stage: Loads<ByParent<follow_up_rules::Entity>>,
    pub history_of_journey: Loads<ByParent<stage_transitions::Entity>>,
    pub follow_ups_of_patient: Loads<ByParent<follow_ups::Entity>>,
    pub follow_ups_of_journey: Loads<ByParent<follow_ups::Entity>>,
    pub touchpoints_of_patient: Loads<PagesByParent<touchpoints::Entity>>,
    pub touchpoints_of_journey: Loads<PagesByParent<touchpoints::Entity>>,
    pub feedback_of_patient: Loads<PagesByParent<feedback::Entity>>,
    pub touchpoint_count_of_patient: Loads<CountByParent<touchpoints::Entity>>,
    pub touchpoint_count_of_journey: Loads<CountByParent<touchpoints::Entity>>,
    pub feedback_count_of_patient: Loads<CountByParent<feedback::Entity>>,
    pub access_log_count_of_patient: Loads<CountByParent<audit_log_patients::Entity>>,
    pub timeline_count_of_patient: Loads<TimelineCounts>,
    pub timeline_of_patient: Loads<TimelinePages>,
    pub access_log_of_patient: Loads<AccessLogPages>,
    pub webhook_endpoint: Loads<ById<webhook_endpoints::Entity>>,
    pub webhook_delivery: Loads<ById<webhook_deliveries::Entity>>,
    pub attempts_of_delivery: Loads<ByParent<webhook_attempts::Entity>>,
    pub consents_of_patient: Loads<ByParent<consents::Entity>>,
    /// Patients' journeys read ahead for a patient page.
    pub journeys_ahead: ReadAhead<Uuid, Vec<journeys::Model>>,
    /// Patients' touchpoint pages read ahead for a patient page.
    pub touchpoints_ahead: PagesAhead<touchpoints::Model>,
    /// Patients' feedback pages read ahead for a patient page.
    pub feedback_ahead: PagesAhead<feedback::Model>,
    known_stages: KnownStages,
    clinic: tokio::sync::OnceCell<clinics::Model>,
    store: Store,
    who: Principal,
}

fn loader<T: Send + Sync + 'static>(inner: T, queue: &LoadQueue) -> DataLoader<T> {
    let queue = queue.clone();
    DataLoader::new(inner, move |load| queue.push(load)).delay(Duration::ZERO)
}

impl Loaders {
    /// Loaders for `who`'s requests, whose loads run on `queue`.
    pub fn new(store: Store, who: Principal, queue: &LoadQueue) -> Self {
        fn by_id<E: ClinicOwned>(
            store: &Store,
            who: &Principal,
            queue: &LoadQueue,
        ) -> DataLoader<ById<E>>
        where
            E::Model: Clone + Send + Sync + 'static,
        {
            loader(
                ById {
                    store: store.clone(),
                    who: who.clone(),
                    _entity: PhantomData,
                },
                queue,
            )
        }
        macro_rules! by_parent {
            ($entity:ident, $parent:ident, $of:expr, [$($order:ident),*]) => {
                loader(
                    ByParent::<$entity::Entity> {
                        store: store.clone(),
                        who: who.clone(),
                        parent: $entity::Column::$parent,
                        parent_of: $of,
                        order: vec![$($entity::Column::$order),*],
                    },
                    queue,
                )
            };
        }
        let known_stages = KnownStages::default();
        let (own_store, own_who) = (store.clone(), who.clone());
        let touchpoint_key = || SortKey {
            at: Some(touchpoints::Column::OccurredAt),
            id: touchpoints::Column::Id,
            sort: touchpoint_rules::SORT,
        };
        Self {
            patient: by_id(&store, &who, queue),
            pathway: by_id(&store, &who, queue),
            stage: by_id(&store, &who, queue),
            journey: by_id(&store, &who, queue),
            touchpoint: by_id(&store, &who, queue),
            staff: by_id(&store, &who, queue),
            feedback: by_id(&store, &who, queue),
            follow_up: by_id(&store, &who, queue),
            transition: by_id(&store, &who, queue),
            rule: by_id(&store, &who, queue),
            event: by_id(&store, &who, queue),
            journeys_of_patient: loader(
                JourneysOfPatient {
                    store: store.clone(),
                    who: who.clone(),
                    known_stages: known_stages.clone(),
                },
                queue,
            ),
            stages_of_pathway: by_parent!(
                stages,
                PathwayId,
                |s| Some(s.pathway_id),
                [Position, Id]
            ),
            rules_of_stage: by_parent!(
                follow_up_rules,
                StageId,
                |r| Some(r.stage_id),
                [DelayHours, Id]
            ),
            history_of_journey: by_parent!(
                stage_transitions,
                JourneyId,
                |t| Some(t.journey_id),
                [OccurredAt, Id]
            ),
            follow_ups_of_patient: by_parent!(
                follow_ups,
                PatientId,
                |f| Some(f.patient_id),
                [DueAt, Id]
            ),
            consents_of_patient: by_parent!(
                consents,
                PatientId,
                |c| Some(c.patient_id),
                [OccurredAt, RecordedAt, Id]
            ),
            follow_ups_of_journey: by_parent!(
                follow_ups,
                JourneyId,
                |f| Some(f.journey_id),
                [DueAt, Id]
            ),
            touchpoints_of_patient: loader(
                PagesByParent {
                    store: store.clone(),
                    who: who.clone(),
                    parent: touchpoints::Column::PatientId,
                    parent_of: |t| Some(t.patient_id),
                    key: touchpoint_key(),
                },
                queue,
            ),
            touchpoints_of_journey: loader(
                PagesByParent {
                    store: store.clone(),
                    who: who.clone(),
                    parent: touchpoints::Column::JourneyId,
                    parent_of: |t| t.journey_id,
                    key: touchpoint_key(),
                },
                queue,
            ),
            feedback_of_patient: loader(
                PagesByParent {
                    store: store.clone(),
                    who: who.clone(),
                    parent: feedback::Column::PatientId,
                    parent_of: |f| Some(f.patient_id),
                    key: SortKey {
                        at: Some(feedback::Column::SubmittedAt),
                        id: feedback::Column::Id,
                        sort: crate::domain::feedback::SORT,
                    },
                },
                queue,
            ),
            touchpoint_count_of_patient: loader(
                CountByParent {
                    store: store.clone(),
                    who: who.clone(),
                    parent: touchpoints::Column::PatientId,
                },
                queue,
            ),
            touchpoint_count_of_journey: loader(
                CountByParent {
                    store: store.clone(),
                    who: who.clone(),
                    parent: touchpoints::Column::JourneyId,
                },
                queue,
            ),
            webhook_endpoint: by_id(&store, &who, queue),
            webhook_delivery: by_id(&store, &who, queue),
            attempts_of_delivery: by_parent!(
                webhook_attempts,
                DeliveryId,
                |a| Some(a.delivery_id),
                [AttemptedAt, Id]
            ),
            access_log_of_patient: loader(
                AccessLogPages {
                    index: PagesByParent {
                        store: store.clone(),
                        who: who.clone(),
                        parent: audit_log_patients::Column::PatientId,
                        parent_of: |row| Some(row.patient_id),
                        key: SortKey {
                            at: Some(audit_log_patients::Column::OccurredAt),
                            id: audit_log_patients::Column::AuditId,
                            sort: crate::domain::page::Sort::Descending,
                        },
                    },
                },
                queue,
            ),
            timeline_of_patient: loader(
                TimelinePages {
                    store: store.clone(),
                    who: who.clone(),
                },
                queue,
            ),
            timeline_count_of_patient: loader(
                TimelineCounts {
                    store: store.clone(),
                    who: who.clone(),
                },
                queue,
            ),
            access_log_count_of_patient: loader(
                CountByParent {
                    store: store.clone(),
                    who: who.clone(),
                    parent: audit_log_patients::Column::PatientId,
                },
                queue,
            ),
            feedback_count_of_patient: loader(
                CountByParent {
                    store,
                    who,
                    parent: feedback::Column::PatientId,
                },
                queue,
            ),
            journeys_ahead: ReadAhead::default(),
            touchpoints_ahead: ReadAhead::default(),
            feedback_ahead: ReadAhead::default(),
            known_stages,
            clinic: tokio::sync::OnceCell::new(),
            store: own_store,
            who: own_who,
        }
    }

    /// A stage by id: from what this request has already read when it can,
    /// otherwise through the stage loader.
    /// The caller's clinic, read once per request.
    pub async fn clinic(&self) -> Result<&clinics::Model, DomainError> {
        self.clinic
            .get_or_try_init(|| crate::domain::clinics::by_id(&self.store.db, self.who.clinic_id))
            .await
    }

    pub async fn stage_by_id(&self, id: Uuid) -> Result<stages::Model, DomainError> {
        match self.known_stage(id) {
            Some(stage) => Ok(stage),
            None => required(&self.stage, id, "stage").await,
        }
    }

    /// The stage `id` if this request has already read it.
    pub fn known_stage(&self, id: Uuid) -> Option<stages::Model> {
        self.known_stages
            .lock()
            .expect("known stages lock")
            .get(&id)
            .cloned()
    }
}

/// Loads one row that must exist (a dangling reference is corruption).
pub async fn required<K, T>(
    loader: &DataLoader<T>,
    key: K,
    what: &str,
) -> Result<T::Value, DomainError>
where
    K: Send + Sync + Hash + Eq + Clone + 'static,
    T: Loader<K, Error = DomainError>,
{
    loader
        .load_one(key)
        .await?
        .ok_or_else(|| DomainError::internal(anyhow::anyhow!("dangling reference to a {what}")))
}
