//! The export worker: claims queued exports (of every clinic) and writes
//! them, a batch of rows at a time, so a clinic is never held in memory
//! whole.
//!
//! - A claim is a lease with a token ([`bulk_exports::Model::claim`]): every
//!   write of the worker checks it, so a worker that lost its export (it was
//!   cancelled, or its lease ran out and another worker took it over) stops
//!   at its next batch, and its batch is rolled back.
//! - A claimed export starts from nothing: parts left by an earlier attempt
//!   are deleted. An export claimed [`MAX_ATTEMPTS`] times without
//!   finishing fails.
//! - Each batch is one transaction: the progress, the part, and the audit
//!   entry naming the batch's patients (`fhir.export.read`, by the export's
//!   requester, in the kick-off's request).
//! - On shutdown the running export is handed back (queued again) for the
//!   next worker.
//! - Every `min(ttl, 60 s)` it purges: exports past their expiry become
//!   EXPIRED and the files of expired and cancelled exports are deleted.
//!
//! The FHIR mapping is the door's ([`Render`]): this module hands it rows.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{
    ClinicOwned, bulk_export_parts, bulk_exports, consents, feedback, follow_ups, journeys,
    pathways, patients, stage_transitions, stages, touchpoints,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, IntoActiveModel,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, Query},
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{ResourceType, state, types_of};
use crate::{
    audit,
    auth::{Actor, Principal},
    db::{self, Db},
    domain::{DomainResult, Store},
    ids,
};

/// Claims after which an export that never finished is failed.
pub const MAX_ATTEMPTS: i32 = 3;

/// One batch of rows of one resource type, with what their mapping needs.
#[derive(Debug, Clone, Copy)]
pub enum Batch<'a> {
    /// `Patient`s.
    Patients(&'a [patients::Model]),
    /// `EpisodeOfCare`s.
    Journeys {
        journeys: &'a [journeys::Model],
        /// The stage history of these journeys, oldest first.
        transitions: &'a [stage_transitions::Model],
        /// The clinic's pathways and stages.
        pathways: &'a [pathways::Model],
        stages: &'a [stages::Model],
    },
    /// `Communication`s.
    Touchpoints(&'a [touchpoints::Model]),
    /// `QuestionnaireResponse`s.
    Feedback(&'a [feedback::Model]),
    /// `Task`s.
    FollowUps(&'a [follow_ups::Model]),
    /// `Consent`s.
    Consents(&'a [consents::Model]),
}

/// Turns a batch into FHIR resources, one per row, in the batch's order.
pub type Render = fn(Batch<'_>) -> Vec<Value>;

/// How the worker works.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// How long a finished export's files stay.
    pub ttl: chrono::Duration,
    /// Rows read, and resources stored, per part.
    pub batch: u64,
    /// How long a claim holds without a batch written.
    pub lease: chrono::Duration,
    /// How often it looks for exports queued on other replicas.
    pub poll: Duration,
}

impl WorkerConfig {
    /// Files kept for `ttl`, 1,000 resources a part, a minute's lease, a
    /// look every second.
    pub fn new(ttl: chrono::Duration) -> Self {
        Self {
            ttl,
            batch: 1_000,
            lease: chrono::Duration::seconds(60),
            poll: Duration::from_secs(1),
        }
    }
}

/// Runs the worker until `shutdown`.
pub async fn run(store: Store, render: Render, config: WorkerConfig, shutdown: CancellationToken) {
    let purge_every = config
        .ttl
        .to_std()
        .unwrap_or(Duration::from_secs(60))
        .clamp(Duration::from_millis(200), Duration::from_secs(60));
    let mut next_purge = tokio::time::Instant::now();
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        if tokio::time::Instant::now() >= next_purge {
            if let Err(error) = purge(&store.db).await {
                tracing::warn!(?error, "purging expired bulk exports failed");
            }
            next_purge = tokio::time::Instant::now() + purge_every;
        }
        match claim(&store.db, &config).await {
            Ok(Some(export)) => {
                write(&store, render, &config, export, &shutdown).await;
                continue;
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(?error, "claiming a bulk export failed; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = store.bus.exports.notified() => {}
            _ = tokio::time::sleep(config.poll.min(purge_every)) => {}
        }
    }
}

/// The oldest export waiting for a worker (queued, or running with its lease
/// run out), claimed; `None` when there is none or another worker was
/// quicker.
async fn claim(db: &Db, config: &WorkerConfig) -> DomainResult<Option<bulk_exports::Model>> {
    let Some(candidate) = waiting(db, db::now()).await? else {
        return Ok(None);
    };
    let system = Principal::system(candidate.clinic_id);
    let txn = db.begin_write().await?;
    // Taken now, not before the look, so it is after the export was asked
    // for (and after every change its requester saw answered).
    let now = db::now();
    if candidate.attempts >= MAX_ATTEMPTS {
        tracing::error!(export = %candidate.id, attempts = candidate.attempts,
            "a bulk export was claimed too often without finishing; failing it");
        settle_failed(
            &*txn,
            &system,
            candidate.id,
            None,
            now,
            config,
            "the export could not be finished; ask again, with fewer types or a later _since",
        )
        .await?;
        txn.commit().await?;
        return Ok(None);
    }
    let claim = Uuid::new_v4();
    let claimed = system
        .update_rows::<bulk_exports::Entity>()
        .col_expr(bulk_exports::Column::Status, Expr::value(state::RUNNING))
        .col_expr(bulk_exports::Column::Claim, Expr::value(claim))
        .col_expr(
            bulk_exports::Column::LockedUntil,
            Expr::value(now + config.lease),
        )
        .col_expr(
            bulk_exports::Column::Attempts,
            Expr::col(bulk_exports::Column::Attempts).add(1),
        )
        .col_expr(bulk_exports::Column::StartedAt, Expr::value(now))
        .col_expr(bulk_exports::Column::TransactionTime, Expr::value(now))
        .col_expr(bulk_exports::Column::ResourcesTotal, Expr::value(0i64))
        .col_expr(bulk_exports::Column::ResourcesDone, Expr::value(0i64))
        .col_expr(bulk_exports::Column::TypesDone, Expr::value(0i32))
        .filter(bulk_exports::Column::Id.eq(candidate.id))
        .filter(waiting_condition(now))
        .exec(&*txn)
        .await?;
    if claimed.rows_affected != 1 {
        return Ok(None);
    }
    // What an earlier attempt left.
    system
        .delete_rows::<bulk_export_parts::Entity>()
        .filter(bulk_export_parts::Column::ExportId.eq(candidate.id))
        .exec(&*txn)
        .await?;
    let export = system
        .get::<bulk_exports::Entity, _>(&*txn, candidate.id, "export")
        .await?;
    txn.commit().await?;
    Ok(Some(export))
}

fn waiting_condition(now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(bulk_exports::Column::Status.eq(state::QUEUED))
        .add(
            Condition::all()
                .add(bulk_exports::Column::Status.eq(state::RUNNING))
                .add(bulk_exports::Column::LockedUntil.lt(now)),
        )
}

#[allow(clippy::disallowed_methods)] // the worker serves every clinic
async fn waiting(db: &Db, now: DateTime<Utc>) -> DomainResult<Option<bulk_exports::Model>> {
    Ok(bulk_exports::Entity::find()
        .filter(waiting_condition(now))
        .order_by_asc(bulk_exports::Column::CreatedAt)
        .one(db.conn())
        .await?)
}

/// Expires finished exports past their time and deletes the files of
/// expired and cancelled ones (a worker that lost a race with a cancel may
/// have left a part). Returns how many exports expired.
#[allow(clippy::disallowed_methods)] // housekeeping across clinics
pub async fn purge(db: &Db) -> DomainResult<u64> {
    let now = db::now();
    let expired = bulk_exports::Entity::update_many()
        .col_expr(bulk_exports::Column::Status, Expr::value(state::EXPIRED))
        .filter(bulk_exports::Column::Status.is_in([state::DONE, state::FAILED]))
        .filter(bulk_exports::Column::ExpiresAt.lt(now))
        .exec(db.conn())
        .await?;
    bulk_export_parts::Entity::delete_many()
        .filter(
            bulk_export_parts::Column::ExportId.in_subquery(
                Query::select()
                    .column(bulk_exports::Column::Id)
                    .from(bulk_exports::Entity)
                    .and_where(
                        bulk_exports::Column::Status.is_in([state::EXPIRED, state::CANCELLED]),
                    )
                    .to_owned(),
            ),
        )
        .exec(db.conn())
        .await?;
    Ok(expired.rows_affected)
}

/// How a claimed export's writing ended.
enum Ended {
    Done,
    /// Cancelled, or taken over by another worker.
    Lost,
    /// Shutting down: handed back.
    Stopped,
}

/// Writes claimed `export`, then settles it: done, failed, or handed back.
async fn write(
    store: &Store,
    render: Render,
    config: &WorkerConfig,
    export: bulk_exports::Model,
    shutdown: &CancellationToken,
) {
    let claim = export.claim.unwrap_or_default();
    let system = Principal::system(export.clinic_id);
    let started = std::time::Instant::now();
    match write_all(store, render, config, &export, claim, shutdown).await {
        Ok(Ended::Done) => tracing::info!(export = %export.id, clinic = %export.clinic_id,
            ms = started.elapsed().as_millis() as u64, "bulk export written"),
        Ok(Ended::Lost) => {
            tracing::info!(export = %export.id, "bulk export cancelled or taken over; stopped")
        }
        Ok(Ended::Stopped) => {
            if let Err(error) = hand_back(&store.db, &system, export.id, claim).await {
                tracing::warn!(?error, export = %export.id, "handing a bulk export back failed; it is taken over when its lease runs out");
            }
        }
        Err(error) => {
            tracing::error!(?error, export = %export.id, "writing a bulk export failed");
            let failed = async {
                let txn = store.db.begin_write().await?;
                settle_failed(
                    &*txn,
                    &system,
                    export.id,
                    Some(claim),
                    db::now(),
                    config,
                    "the export could not be written; the server logged why",
                )
                .await?;
                txn.commit().await?;
                DomainResult::Ok(())
            };
            if let Err(error) = failed.await {
                tracing::warn!(?error, export = %export.id, "recording a failed bulk export failed; it is retried when its lease runs out");
            }
        }
    }
}

/// Marks export `id` failed (when `claim` is given, only while the claim
/// holds) and deletes what it wrote.
async fn settle_failed<C: ConnectionTrait>(
    conn: &C,
    system: &Principal,
    id: Uuid,
    claim: Option<Uuid>,
    now: DateTime<Utc>,
    config: &WorkerConfig,
    message: &str,
) -> DomainResult<()> {
    let mut update = system
        .update_rows::<bulk_exports::Entity>()
        .col_expr(bulk_exports::Column::Status, Expr::value(state::FAILED))
        .col_expr(bulk_exports::Column::Error, Expr::value(message))
        .col_expr(
            bulk_exports::Column::Claim,
            Expr::value(Option::<Uuid>::None),
        )
        .col_expr(
            bulk_exports::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(bulk_exports::Column::CompletedAt, Expr::value(now))
        .col_expr(
            bulk_exports::Column::ExpiresAt,
            Expr::value(now + config.ttl),
        )
        .filter(bulk_exports::Column::Id.eq(id));
    if let Some(claim) = claim {
        update = update.filter(bulk_exports::Column::Claim.eq(claim));
    }
    if update.exec(conn).await?.rows_affected == 1 {
        system
            .delete_rows::<bulk_export_parts::Entity>()
            .filter(bulk_export_parts::Column::ExportId.eq(id))
            .exec(conn)
            .await?;
    }
    Ok(())
}

/// Queues export `id` again for the next worker, if `claim` still holds it.
async fn hand_back(db: &Db, system: &Principal, id: Uuid, claim: Uuid) -> DomainResult<()> {
    let txn = db.begin_write().await?;
    system
        .update_rows::<bulk_exports::Entity>()
        .col_expr(bulk_exports::Column::Status, Expr::value(state::QUEUED))
        .col_expr(
            bulk_exports::Column::Claim,
            Expr::value(Option::<Uuid>::None),
        )
        .col_expr(
            bulk_exports::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            bulk_exports::Column::Attempts,
            Expr::col(bulk_exports::Column::Attempts).sub(1),
        )
        .filter(bulk_exports::Column::Id.eq(id))
        .filter(bulk_exports::Column::Claim.eq(claim))
        .exec(&*txn)
        .await?;
    txn.commit().await?;
    Ok(())
}

/// Who the export's reads are audited as: its requester, in the kick-off's
/// request.
fn requester(export: &bulk_exports::Model) -> Principal {
    let mut who = Principal::system(export.clinic_id);
    who.permissions.clear();
    who.actor = match (export.requested_by_kind.as_str(), export.requested_by_id) {
        ("STAFF", Some(id)) => Actor::Staff(id),
        ("API_TOKEN", Some(id)) => Actor::ApiToken(id),
        _ => Actor::System,
    };
    who.request_id = export.request_id.clone();
    who
}

/// What one type's rows are filtered by.
struct Window {
    /// Only rows changed after it (`_since`).
    since: Option<DateTime<Utc>>,
    /// Only rows created up to it (when the export started reading).
    until: DateTime<Utc>,
    clinic_id: Uuid,
}

/// The filter of `kind`'s rows in `window`.
fn condition(kind: ResourceType, window: &Window) -> Condition {
    let until = window.until;
    let mut all = Condition::all();
    let erased = |column: Expr, since: DateTime<Utc>| -> Expr {
        column.in_subquery(
            Query::select()
                .column(patients::Column::Id)
                .from(patients::Entity)
                .and_where(patients::Column::ClinicId.eq(window.clinic_id))
                .and_where(patients::Column::ErasedAt.gt(since))
                .to_owned(),
        )
    };
    match kind {
        ResourceType::Patient => {
            all = all.add(patients::Column::CreatedAt.lte(until));
            if let Some(since) = window.since {
                all = all.add(patients::Column::UpdatedAt.gt(since));
            }
        }
        ResourceType::EpisodeOfCare => {
            all = all.add(journeys::Column::StartedAt.lte(until));
            if let Some(since) = window.since {
                all = all.add(journeys::Column::UpdatedAt.gt(since));
            }
        }
        ResourceType::Communication => {
            all = all.add(touchpoints::Column::CreatedAt.lte(until));
            if let Some(since) = window.since {
                all = all.add(
                    Condition::any()
                        .add(touchpoints::Column::CreatedAt.gt(since))
                        .add(erased(Expr::col(touchpoints::Column::PatientId), since)),
                );
            }
        }
        ResourceType::QuestionnaireResponse => {
            all = all.add(feedback::Column::SubmittedAt.lte(until));
            if let Some(since) = window.since {
                all = all.add(
                    Condition::any()
                        .add(feedback::Column::SubmittedAt.gt(since))
                        .add(erased(Expr::col(feedback::Column::PatientId), since)),
                );
            }
        }
        ResourceType::Task => {
            all = all.add(follow_ups::Column::CreatedAt.lte(until));
            if let Some(since) = window.since {
                all = all.add(
                    Condition::any()
                        .add(follow_ups::Column::CreatedAt.gt(since))
                        .add(follow_ups::Column::CompletedAt.gt(since))
                        .add(follow_ups::Column::CancelledAt.gt(since))
                        .add(follow_ups::Column::SkippedAt.gt(since))
                        .add(erased(Expr::col(follow_ups::Column::PatientId), since)),
                );
            }
        }
        ResourceType::Consent => {
            all = all.add(consents::Column::RecordedAt.lte(until));
            if let Some(since) = window.since {
                all = all.add(consents::Column::RecordedAt.gt(since));
            }
        }
    }
    all
}

/// How many rows of `E` match `filter`.
async fn count<E: ClinicOwned>(db: &Db, system: &Principal, filter: Condition) -> DomainResult<u64>
where
    E::Model: Sync,
{
    Ok(system.select::<E>().filter(filter).count(db.conn()).await?)
}

/// The next `limit` rows of `E` matching `filter` after id `after`, by id.
async fn rows<E: ClinicOwned>(
    db: &Db,
    system: &Principal,
    filter: Condition,
    after: Option<Uuid>,
    limit: u64,
) -> DomainResult<Vec<E::Model>> {
    let mut select = system.select::<E>().filter(filter);
    if let Some(after) = after {
        select = select.filter(E::id_column().gt(after));
    }
    Ok(select
        .order_by_asc(E::id_column())
        .limit(limit)
        .all(db.conn())
        .await?)
}

/// One batch, read and rendered.
struct Written {
    lines: Vec<Value>,
    patients: Vec<Uuid>,
    last: Option<Uuid>,
}

fn written<M>(
    rows: &[M],
    id: impl Fn(&M) -> Uuid,
    patient: impl Fn(&M) -> Uuid,
    lines: Vec<Value>,
) -> Written {
    Written {
        lines,
        patients: rows.iter().map(patient).collect(),
        last: rows.last().map(id),
    }
}

/// What reading an export's batches needs.
struct Reader<'a> {
    db: &'a Db,
    /// The export's clinic.
    system: &'a Principal,
    render: Render,
    /// Rows per batch.
    limit: u64,
    /// The clinic's pathways and stages, when journeys are exported.
    pathways: Vec<pathways::Model>,
    stages: Vec<stages::Model>,
}

/// Reads and renders the batch of `kind` after `after`.
async fn batch(
    reader: &Reader<'_>,
    kind: ResourceType,
    filter: Condition,
    after: Option<Uuid>,
) -> DomainResult<Written> {
    let Reader {
        db,
        system,
        render,
        limit,
        ..
    } = *reader;
    Ok(match kind {
        ResourceType::Patient => {
            let rows = rows::<patients::Entity>(db, system, filter, after, limit).await?;
            let lines = render(Batch::Patients(&rows));
            written(&rows, |r| r.id, |r| r.id, lines)
        }
        ResourceType::EpisodeOfCare => {
            let rows = rows::<journeys::Entity>(db, system, filter, after, limit).await?;
            let transitions = if rows.is_empty() {
                Vec::new()
            } else {
                system
                    .select::<stage_transitions::Entity>()
                    .filter(stage_transitions::Column::JourneyId.is_in(rows.iter().map(|j| j.id)))
                    .order_by_asc(stage_transitions::Column::OccurredAt)
                    .order_by_asc(stage_transitions::Column::Id)
                    .all(db.conn())
                    .await?
            };
            let lines = render(Batch::Journeys {
                journeys: &rows,
                transitions: &transitions,
                pathways: &reader.pathways,
                stages: &reader.stages,
            });
            written(&rows, |r| r.id, |r| r.patient_id, lines)
        }
        ResourceType::Communication => {
            let rows = rows::<touchpoints::Entity>(db, system, filter, after, limit).await?;
            let lines = render(Batch::Touchpoints(&rows));
            written(&rows, |r| r.id, |r| r.patient_id, lines)
        }
        ResourceType::QuestionnaireResponse => {
            let rows = rows::<feedback::Entity>(db, system, filter, after, limit).await?;
            let lines = render(Batch::Feedback(&rows));
            written(&rows, |r| r.id, |r| r.patient_id, lines)
        }
        ResourceType::Task => {
            let rows = rows::<follow_ups::Entity>(db, system, filter, after, limit).await?;
            let lines = render(Batch::FollowUps(&rows));
            written(&rows, |r| r.id, |r| r.patient_id, lines)
        }
        ResourceType::Consent => {
            let rows = rows::<consents::Entity>(db, system, filter, after, limit).await?;
            let lines = render(Batch::Consents(&rows));
            written(&rows, |r| r.id, |r| r.patient_id, lines)
        }
    })
}

async fn count_of(
    db: &Db,
    system: &Principal,
    kind: ResourceType,
    filter: Condition,
) -> DomainResult<u64> {
    match kind {
        ResourceType::Patient => count::<patients::Entity>(db, system, filter).await,
        ResourceType::EpisodeOfCare => count::<journeys::Entity>(db, system, filter).await,
        ResourceType::Communication => count::<touchpoints::Entity>(db, system, filter).await,
        ResourceType::QuestionnaireResponse => count::<feedback::Entity>(db, system, filter).await,
        ResourceType::Task => count::<follow_ups::Entity>(db, system, filter).await,
        ResourceType::Consent => count::<consents::Entity>(db, system, filter).await,
    }
}

/// Updates claimed export `id`'s progress and lease; false when the claim
/// no longer holds.
async fn advance<C: ConnectionTrait>(
    conn: &C,
    system: &Principal,
    id: Uuid,
    claim: Uuid,
    lease: chrono::Duration,
    change: impl FnOnce(
        sea_orm::UpdateMany<bulk_exports::Entity>,
    ) -> sea_orm::UpdateMany<bulk_exports::Entity>,
) -> DomainResult<bool> {
    let update = system
        .update_rows::<bulk_exports::Entity>()
        .col_expr(
            bulk_exports::Column::LockedUntil,
            Expr::value(db::now() + lease),
        )
        .filter(bulk_exports::Column::Id.eq(id))
        .filter(bulk_exports::Column::Claim.eq(claim))
        .filter(bulk_exports::Column::Status.eq(state::RUNNING));
    Ok(change(update).exec(conn).await?.rows_affected == 1)
}

async fn write_all(
    store: &Store,
    render: Render,
    config: &WorkerConfig,
    export: &bulk_exports::Model,
    claim: Uuid,
    shutdown: &CancellationToken,
) -> DomainResult<Ended> {
    let db = &store.db;
    let system = Principal::system(export.clinic_id);
    let requested_by = requester(export);
    let types = types_of(export);
    let window = Window {
        since: export.since,
        until: export.transaction_time.unwrap_or(export.created_at),
        clinic_id: export.clinic_id,
    };
    let mut total = 0;
    for kind in &types {
        total += count_of(db, &system, *kind, condition(*kind, &window)).await?;
    }
    let lease = config.lease;
    let txn = db.begin_write().await?;
    if !advance(&*txn, &system, export.id, claim, lease, |u| {
        u.col_expr(
            bulk_exports::Column::ResourcesTotal,
            Expr::value(total as i64),
        )
    })
    .await?
    {
        return Ok(Ended::Lost);
    }
    txn.commit().await?;
    let mut reader = Reader {
        db,
        system: &system,
        render,
        limit: Ord::max(config.batch, 1),
        pathways: Vec::new(),
        stages: Vec::new(),
    };
    if types.contains(&ResourceType::EpisodeOfCare) {
        reader.pathways = system.select::<pathways::Entity>().all(db.conn()).await?;
        reader.stages = system.select::<stages::Entity>().all(db.conn()).await?;
    }
    let limit = reader.limit;
    for (done, kind) in types.iter().enumerate() {
        let mut after = None;
        let mut part = 0i32;
        loop {
            if shutdown.is_cancelled() {
                return Ok(Ended::Stopped);
            }
            let filter = condition(*kind, &window);
            let Written {
                lines,
                patients,
                last,
            } = batch(&reader, *kind, filter, after).await?;
            let n = lines.len();
            if n == 0 {
                break;
            }
            let mut ndjson = String::new();
            for line in &lines {
                ndjson.push_str(&line.to_string());
                ndjson.push('\n');
            }
            drop(lines);
            let txn = db.begin_write().await?;
            let now = db::now();
            if !advance(&*txn, &system, export.id, claim, lease, |u| {
                u.col_expr(
                    bulk_exports::Column::ResourcesDone,
                    Expr::col(bulk_exports::Column::ResourcesDone).add(n as i64),
                )
            })
            .await?
            {
                return Ok(Ended::Lost);
            }
            bulk_export_parts::Model {
                id: ids::new_id(),
                clinic_id: export.clinic_id,
                export_id: export.id,
                resource_type: kind.name().into(),
                part,
                resources: n as i32,
                ndjson,
                created_at: now,
            }
            .into_active_model()
            .reset_all()
            .insert(&*txn)
            .await?;
            if let Some(row) = audit::reads_row(&requested_by, "fhir.export.read", patients, now) {
                audit::insert(&*txn, vec![row]).await?;
            }
            txn.commit().await?;
            part += 1;
            after = last;
            if (n as u64) < limit {
                break;
            }
        }
        let txn = db.begin_write().await?;
        if !advance(&*txn, &system, export.id, claim, lease, |u| {
            u.col_expr(
                bulk_exports::Column::TypesDone,
                Expr::value(done as i32 + 1),
            )
        })
        .await?
        {
            return Ok(Ended::Lost);
        }
        txn.commit().await?;
    }
    let now = db::now();
    let txn = db.begin_write().await?;
    let finished = system
        .update_rows::<bulk_exports::Entity>()
        .col_expr(bulk_exports::Column::Status, Expr::value(state::DONE))
        .col_expr(
            bulk_exports::Column::Claim,
            Expr::value(Option::<Uuid>::None),
        )
        .col_expr(
            bulk_exports::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(bulk_exports::Column::CompletedAt, Expr::value(now))
        .col_expr(
            bulk_exports::Column::ExpiresAt,
            Expr::value(now + config.ttl),
        )
        .filter(bulk_exports::Column::Id.eq(export.id))
        .filter(bulk_exports::Column::Claim.eq(claim))
        .filter(bulk_exports::Column::Status.eq(state::RUNNING))
        .exec(&*txn)
        .await?
        .rows_affected
        == 1;
    txn.commit().await?;
    Ok(if finished { Ended::Done } else { Ended::Lost })
}
