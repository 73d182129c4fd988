//! FHIR Bulk Data export (`$export`, the Bulk Data Access specification):
//! a clinic's whole record, or the resource types it names, written in the
//! background as one NDJSON file per resource type.
//!
//! - [`kick_off`] checks the request and the caller's rights, queues the
//!   export and audits it (`fhir.export.requested`: who; the export's row
//!   says which types and since when). A clinic has one export queued or
//!   running at a time (a partial unique index, so replicas agree); a second
//!   is `RATE_LIMITED`.
//! - [`worker`] writes queued exports, in batches, on whichever replica
//!   claims them; every batch is audited as a read of its patients
//!   (`fhir.export.read`).
//! - [`status`], [`cancel`] and [`file`] are the status URL and the files.
//!   An export belongs to the credential that asked for it (the staff member,
//!   or the API token) in its clinic: anyone else is told it is not there.
//!   Downloads are audited (`fhir.export.downloaded`), cancelling too
//!   (`fhir.export.cancelled`).
//! - Files expire `ttl` after the export is done; then, or once cancelled,
//!   they are deleted and the status URL answers `NOT_FOUND`. The export's
//!   row stays, as what the audit log's entries about it point at.
//!
//! What `_since` counts as a change, per type: a patient's `updated_at`; a
//! journey's `updated_at` (every stage move and status change sets it); a
//! touchpoint's and a consent entry's recording; feedback's submission; a
//! follow-up's creation, completion, cancellation or skip. Touchpoints,
//! feedback and follow-ups of a patient erased since then count as changed
//! too (erasure blanked their text). Rows created after the export started
//! reading are left out; rows changed after it are written as they are when
//! read. The manifest's `transactionTime` is [`SETTLE`] earlier than that
//! start, so an export `_since` it misses nothing (and may repeat a little).

pub mod worker;

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{bulk_export_parts, bulk_exports};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, IntoActiveModel, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, SqlErr, sea_query::Expr,
};
use uuid::Uuid;

use super::{DomainError, DomainResult, Store, access};
use crate::{
    audit::AuditEntry,
    auth::{Actor, Permission, Principal},
    db::{self, Db},
    ids::{self, IdKind},
};

/// The FHIR resource types an export writes, in the order it writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    /// Patients.
    Patient,
    /// Journeys.
    EpisodeOfCare,
    /// Touchpoints.
    Communication,
    /// Feedback.
    QuestionnaireResponse,
    /// Follow-ups.
    Task,
    /// The consent history.
    Consent,
}

impl ResourceType {
    /// Every type, in export order.
    pub const ALL: [ResourceType; 6] = [
        ResourceType::Patient,
        ResourceType::EpisodeOfCare,
        ResourceType::Communication,
        ResourceType::QuestionnaireResponse,
        ResourceType::Task,
        ResourceType::Consent,
    ];

    /// The FHIR name.
    pub fn name(self) -> &'static str {
        match self {
            ResourceType::Patient => "Patient",
            ResourceType::EpisodeOfCare => "EpisodeOfCare",
            ResourceType::Communication => "Communication",
            ResourceType::QuestionnaireResponse => "QuestionnaireResponse",
            ResourceType::Task => "Task",
            ResourceType::Consent => "Consent",
        }
    }

    /// The type named `name` (exactly, as FHIR spells it).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// What reading it needs besides `patients:read`.
    fn also_needs(self) -> Option<Permission> {
        match self {
            ResourceType::Patient | ResourceType::Consent => None,
            _ => Some(Permission::JourneysRead),
        }
    }
}

/// The states of an export (`bulk_exports.status`).
pub mod state {
    /// Waiting for a worker.
    pub const QUEUED: &str = "QUEUED";
    /// A worker is writing it.
    pub const RUNNING: &str = "RUNNING";
    /// Written; its files can be downloaded until it expires.
    pub const DONE: &str = "DONE";
    /// It could not be written; the status URL says so until it expires.
    pub const FAILED: &str = "FAILED";
    /// Cancelled (or deleted once done) by its requester; files deleted.
    pub const CANCELLED: &str = "CANCELLED";
    /// Past its expiry; files deleted.
    pub const EXPIRED: &str = "EXPIRED";
}

/// How long a client is asked to wait before kicking off again while the
/// clinic's export runs.
pub const BUSY_RETRY_AFTER: Duration = Duration::from_secs(10);

/// How long before an export started reading its manifest's
/// `transactionTime` is. A change whose transaction was still open when the
/// export started reading carries an earlier time but may not be in the
/// export; with the margin it is in the next export `_since` that
/// `transactionTime` (which may repeat a few changes: a client applying
/// exports in order just writes them again).
pub const SETTLE: chrono::Duration = chrono::Duration::seconds(10);

/// The manifest's `transactionTime` of `export`: [`SETTLE`] before it
/// started reading.
pub fn transaction_time(export: &bulk_exports::Model) -> DateTime<Utc> {
    export.transaction_time.unwrap_or(export.created_at) - SETTLE
}

/// What an export is asked for.
#[derive(Debug, Clone, Default)]
pub struct ExportRequest {
    /// `_type`: resource type names; empty means every type.
    pub types: Vec<String>,
    /// `_since`: only resources changed after it.
    pub since: Option<DateTime<Utc>>,
    /// The kick-off URL, for the manifest's `request`.
    pub request_url: String,
}

/// The types of an export, in export order.
pub fn types_of(export: &bulk_exports::Model) -> Vec<ResourceType> {
    export
        .types
        .split(',')
        .filter_map(ResourceType::parse)
        .collect()
}

/// The caller needs `patients:read`, and `journeys:read` for every type but
/// `Patient` and `Consent`.
fn require_rights(who: &Principal, types: &[ResourceType]) -> DomainResult<()> {
    access::require(who, Permission::PatientsRead, "a FHIR bulk export")?;
    if let Some(other) = types.iter().find(|t| t.also_needs().is_some()) {
        access::require(
            who,
            Permission::JourneysRead,
            &format!("a FHIR bulk export of {}", other.name()),
        )?;
    }
    Ok(())
}

/// Queues an export of `request` for `who`, audited; `RATE_LIMITED` while
/// the clinic has one queued or running.
pub async fn kick_off(
    store: &Store,
    who: &Principal,
    request: ExportRequest,
) -> DomainResult<bulk_exports::Model> {
    let mut types = Vec::new();
    for name in request
        .types
        .iter()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
    {
        let kind = ResourceType::parse(name).ok_or_else(|| {
            DomainError::invalid(
                "_type",
                format!(
                    "{name:?} is not a resource type this server exports; it exports {}",
                    ResourceType::ALL.map(ResourceType::name).join(", ")
                ),
            )
        })?;
        types.push(kind);
    }
    if types.is_empty() {
        types = ResourceType::ALL.to_vec();
    }
    types.sort_unstable();
    types.dedup();
    require_rights(who, &types)?;
    let (kind, id) = match who.actor {
        Actor::Staff(id) => ("STAFF", id),
        Actor::ApiToken(id) => ("API_TOKEN", id),
        Actor::System => return Err(DomainError::Forbidden("exports need a credential".into())),
    };

    let mut write = store.write(who).await?;
    if busy(&*write.txn, who).await? {
        return Err(busy_error());
    }
    let export = bulk_exports::Model {
        id: ids::new_id(),
        clinic_id: who.clinic_id,
        requested_by_kind: kind.into(),
        requested_by_id: Some(id),
        request_id: who.request_id.clone(),
        request_url: request.request_url,
        types: types.iter().map(|t| t.name()).collect::<Vec<_>>().join(","),
        since: request.since,
        status: state::QUEUED.into(),
        transaction_time: None,
        resources_total: 0,
        resources_done: 0,
        types_done: 0,
        attempts: 0,
        claim: None,
        locked_until: None,
        error: None,
        created_at: write.now,
        started_at: None,
        completed_at: None,
        expires_at: None,
    };
    let inserted = export
        .clone()
        .into_active_model()
        .reset_all()
        .insert(&*write.txn)
        .await;
    match inserted {
        Ok(_) => {}
        // Another replica queued one meanwhile (the one-at-a-time index).
        Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            return Err(busy_error());
        }
        Err(error) => return Err(error.into()),
    }
    write.audit(AuditEntry::new(
        "fhir.export.requested",
        IdKind::BulkExport,
        export.id,
        None,
    ));
    write.commit().await?;
    store.bus.exports.notify_one();
    Ok(export)
}

async fn busy<C: ConnectionTrait>(conn: &C, who: &Principal) -> DomainResult<bool> {
    Ok(who
        .select::<bulk_exports::Entity>()
        .filter(bulk_exports::Column::Status.is_in([state::QUEUED, state::RUNNING]))
        .count(conn)
        .await?
        > 0)
}

fn busy_error() -> DomainError {
    DomainError::RateLimited {
        message: "this clinic's previous export is still running; one export runs at a time, \
                  try again when it is done (or cancel it)"
            .into(),
        retry_after: BUSY_RETRY_AFTER,
    }
}

/// The export `id` if `who` may see it: in their clinic, asked for by
/// them, neither cancelled nor expired; `NOT_FOUND` otherwise.
async fn visible(db: &Db, who: &Principal, id: Uuid) -> DomainResult<bulk_exports::Model> {
    access::require(who, Permission::PatientsRead, "a FHIR bulk export")?;
    let export = who
        .get::<bulk_exports::Entity, _>(db.conn(), id, "export")
        .await?;
    let theirs = export.requested_by_id.is_some() && export.requested_by_id == who.actor.id();
    let gone = matches!(export.status.as_str(), state::CANCELLED | state::EXPIRED)
        || export.expires_at.is_some_and(|at| at <= db::now());
    if !theirs || gone {
        return Err(DomainError::not_found("export"));
    }
    require_rights(who, &types_of(&export))?;
    Ok(export)
}

/// One NDJSON file of a finished export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFile {
    pub resource_type: ResourceType,
    /// How many resources (lines) it holds.
    pub resources: u64,
    /// How many parts it is stored in.
    pub parts: u32,
}

/// Where an export stands.
#[derive(Debug, Clone)]
pub enum Progress {
    /// Queued or being written.
    Running(bulk_exports::Model),
    /// Written: its files, one per resource type that has resources.
    Done(bulk_exports::Model, Vec<ExportFile>),
    /// It could not be written.
    Failed(bulk_exports::Model),
}

/// What the status URL of export `id` answers.
pub async fn status(store: &Store, who: &Principal, id: Uuid) -> DomainResult<Progress> {
    let export = visible(&store.db, who, id).await?;
    Ok(match export.status.as_str() {
        state::DONE => {
            let files = files(&store.db, &export).await?;
            Progress::Done(export, files)
        }
        state::FAILED => Progress::Failed(export),
        _ => Progress::Running(export),
    })
}

/// How far an export is, for `X-Progress`: "queued", "40% (writing
/// Communication; Patient, EpisodeOfCare done)".
pub fn progress_text(export: &bulk_exports::Model) -> String {
    if export.status == state::QUEUED {
        return "queued".into();
    }
    let types = types_of(export);
    let done = (export.types_done.max(0) as usize).min(types.len());
    let percent = if export.resources_total > 0 {
        (export.resources_done * 100 / export.resources_total).clamp(0, 99)
    } else {
        0
    };
    let finished: Vec<&str> = types[..done].iter().map(|t| t.name()).collect();
    match (types.get(done), finished.is_empty()) {
        (Some(now), true) => format!("{percent}% (writing {})", now.name()),
        (Some(now), false) => format!(
            "{percent}% (writing {}; {} done)",
            now.name(),
            finished.join(", ")
        ),
        (None, _) => format!("{percent}% ({} done)", finished.join(", ")),
    }
}

async fn files(db: &Db, export: &bulk_exports::Model) -> DomainResult<Vec<ExportFile>> {
    let system = Principal::system(export.clinic_id);
    let rows: Vec<(String, i32)> = system
        .select::<bulk_export_parts::Entity>()
        .select_only()
        .column(bulk_export_parts::Column::ResourceType)
        .column(bulk_export_parts::Column::Resources)
        .filter(bulk_export_parts::Column::ExportId.eq(export.id))
        .into_tuple()
        .all(db.conn())
        .await?;
    let mut files: Vec<ExportFile> = Vec::new();
    for kind in types_of(export) {
        let mut file = ExportFile {
            resource_type: kind,
            resources: 0,
            parts: 0,
        };
        for (_, count) in rows.iter().filter(|(t, _)| t == kind.name()) {
            file.resources += (*count).max(0) as u64;
            file.parts += 1;
        }
        if file.parts > 0 {
            files.push(file);
        }
    }
    Ok(files)
}

/// Cancels export `id` (or, once done, deletes it): its files are deleted at
/// once and its status URL answers `NOT_FOUND` from now on. Audited.
pub async fn cancel(store: &Store, who: &Principal, id: Uuid) -> DomainResult<()> {
    visible(&store.db, who, id).await?;
    let mut write = store.write(who).await?;
    // The row first: a worker writing a part waits for it, then finds its
    // claim gone.
    who.update_rows::<bulk_exports::Entity>()
        .col_expr(bulk_exports::Column::Status, Expr::value(state::CANCELLED))
        .col_expr(
            bulk_exports::Column::Claim,
            Expr::value(Option::<Uuid>::None),
        )
        .col_expr(
            bulk_exports::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(bulk_exports::Column::CompletedAt, Expr::value(write.now))
        .filter(bulk_exports::Column::Id.eq(id))
        .exec(&*write.txn)
        .await?;
    who.delete_rows::<bulk_export_parts::Entity>()
        .filter(bulk_export_parts::Column::ExportId.eq(id))
        .exec(&*write.txn)
        .await?;
    write.audit(AuditEntry::new(
        "fhir.export.cancelled",
        IdKind::BulkExport,
        id,
        None,
    ));
    write.commit().await?;
    Ok(())
}

/// The file of `resource_type` (its FHIR name) of finished export `id`, for
/// a download by `who`; audited as one. `NOT_FOUND` when the export is not
/// done or has no such file.
pub async fn file(
    store: &Store,
    who: &Principal,
    id: Uuid,
    resource_type: &str,
) -> DomainResult<(bulk_exports::Model, ExportFile)> {
    let export = visible(&store.db, who, id).await?;
    if export.status != state::DONE {
        return Err(DomainError::not_found("file"));
    }
    let file = files(&store.db, &export)
        .await?
        .into_iter()
        .find(|f| f.resource_type.name() == resource_type)
        .ok_or(DomainError::not_found("file"))?;
    let mut write = store.write(who).await?;
    write.audit(AuditEntry::new(
        "fhir.export.downloaded",
        IdKind::BulkExport,
        export.id,
        None,
    ));
    write.commit().await?;
    Ok((export, file))
}

/// Part `part` of `file` of `export` (from [`file`]): NDJSON lines, each
/// ending in a newline. `NOT_FOUND` once the export was deleted meanwhile.
pub async fn part(
    db: &Db,
    export: &bulk_exports::Model,
    file: &ExportFile,
    part: u32,
) -> DomainResult<String> {
    Principal::system(export.clinic_id)
        .select::<bulk_export_parts::Entity>()
        .select_only()
        .column(bulk_export_parts::Column::Ndjson)
        .filter(bulk_export_parts::Column::ExportId.eq(export.id))
        .filter(bulk_export_parts::Column::ResourceType.eq(file.resource_type.name()))
        .filter(bulk_export_parts::Column::Part.eq(part as i32))
        .order_by_asc(bulk_export_parts::Column::Part)
        .into_tuple::<String>()
        .one(db.conn())
        .await?
        .ok_or(DomainError::not_found("file"))
}
