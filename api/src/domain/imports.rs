//! CSV import of patients: the one implementation behind `journeymap import
//! patients` and `POST /imports/patients`.
//!
//! The file is read as a stream (the `csv` crate, on a blocking thread) and
//! written in batches of [`BATCH_ROWS`] rows, one transaction each, with
//! their `patient.created` / `patient.updated` events (marked with the
//! import's id) and audit entries. Every row is validated with the same
//! value types as the API; a bad row is reported with its line, column and
//! reason and nothing of it is written, while good rows go on. Rows are
//! matched to patients by `external_id` (or, without one, by email), so the
//! same file imported twice changes nothing the second time.
//!
//! A file that is not CSV text, is not UTF-8, has no header naming
//! `given_name` and `family_name`, or is over [`MAX_IMPORT_BYTES`] is
//! refused whole (`BAD_USER_INPUT` on field `file`) before anything is
//! written.

use std::{
    collections::{HashMap, HashSet},
    io::Read,
};

use chrono::NaiveDate;
use entity::{consents, journeys, pathways, patients, stages};
use sea_orm::{ColumnTrait, QueryFilter, TransactionTrait};
use serde::Serialize;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{
    Channel, DomainError, DomainResult, JourneyStatus, Store, access, journeys as journey_rules,
    outreach::consent::{self as consent_rules, ConsentSet},
    patients::{self as patient_rules, Change, Consent, PatientFields},
    validate,
    values::{E164Phone, Email},
};
use crate::{
    auth::{Permission, Principal},
    ids::{self, IdKind},
};

/// The largest file an import accepts.
pub const MAX_IMPORT_BYTES: u64 = 64 * 1024 * 1024;
/// Rows written per transaction (and per burst of events).
pub const BATCH_ROWS: usize = 500;
/// Row errors listed in a report; the counts stay exact beyond it.
pub const MAX_LISTED_ERRORS: usize = 10_000;
/// Where consent given in an import is recorded as coming from.
pub const CONSENT_SOURCE: &str = "csv import";

/// The columns an import understands (matched case-insensitively).
pub const COLUMNS: [&str; 14] = [
    "given_name",
    "family_name",
    "email",
    "phone",
    "birth_date",
    "external_id",
    "tags",
    "preferred_channel",
    "sms_consent",
    "email_consent",
    "marketing_consent",
    "source",
    "pathway",
    "stage",
];

/// How to run an import.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// Validate everything, write nothing.
    pub dry_run: bool,
}

/// How far an import got, for progress bars.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Bytes of the file read so far.
    pub bytes: u64,
    /// Data rows handled so far.
    pub rows: u64,
}

/// One row that was not imported.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RowError {
    /// The line of the file the row starts on (the header is line 1).
    pub line: u64,
    /// The column at fault, when one is.
    pub column: Option<String>,
    /// Why the row was refused.
    pub reason: String,
}

/// What an import did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ImportReport {
    /// The id carried by this import's events (`data.importId`).
    pub import_id: String,
    /// True when nothing was written.
    pub dry_run: bool,
    /// Data rows read.
    pub rows: u64,
    /// Patients created.
    pub created: u64,
    /// Patients changed.
    pub updated: u64,
    /// Rows that matched a patient and changed nothing.
    pub skipped: u64,
    /// Rows refused (see `errors`).
    pub failed: u64,
    /// Journeys started (rows with `pathway`).
    pub journeys_started: u64,
    /// Header columns that are not understood, ignored.
    pub unrecognized_columns: Vec<String>,
    /// The refused rows, in file order (at most [`MAX_LISTED_ERRORS`]).
    pub errors: Vec<RowError>,
    /// True when more rows failed than `errors` lists.
    pub errors_truncated: bool,
}

impl ImportReport {
    fn fail(&mut self, error: RowError) {
        self.failed += 1;
        if self.errors.len() < MAX_LISTED_ERRORS {
            self.errors.push(error);
        } else {
            self.errors_truncated = true;
        }
    }
}

impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{} rows: {} created, {} updated, {} skipped, {} failed",
            if self.dry_run { "dry run, " } else { "" },
            self.rows,
            self.created,
            self.updated,
            self.skipped,
            self.failed
        )
    }
}

/// A whole-file refusal.
fn refuse(message: impl Into<String>) -> DomainError {
    DomainError::invalid("file", message)
}

/// The header, resolved: where each known column is.
#[derive(Debug, Clone, Default)]
struct Header {
    index: HashMap<&'static str, usize>,
    width: usize,
}

impl Header {
    fn parse(record: &csv::ByteRecord) -> DomainResult<(Self, Vec<String>)> {
        let mut header = Header {
            width: record.len(),
            ..Header::default()
        };
        let mut unknown = Vec::new();
        for (i, raw) in record.iter().enumerate() {
            let name = std::str::from_utf8(raw)
                .map_err(|_| refuse("is not UTF-8 text; save it as CSV UTF-8"))?
                .trim()
                .to_ascii_lowercase();
            match COLUMNS.iter().find(|c| **c == name) {
                Some(column) => {
                    if header.index.insert(column, i).is_some() {
                        return Err(refuse(format!("the header names {column} twice")));
                    }
                }
                None => unknown.push(name),
            }
        }
        for required in ["given_name", "family_name"] {
            if !header.index.contains_key(required) {
                return Err(refuse(format!(
                    "has no header naming the columns given_name and family_name (missing {required}); \
                     the first line must name the columns: {}",
                    COLUMNS.join(", ")
                )));
            }
        }
        Ok((header, unknown))
    }

    /// The trimmed, non-empty value of `column` in `record`.
    fn get<'r>(&self, record: &'r [String], column: &str) -> Option<&'r str> {
        let i = *self.index.get(column)?;
        record
            .get(i)
            .map(|v| v.trim())
            .filter(|value| !value.is_empty())
    }
}

/// A data row as read: its first line and its fields (or why they could not
/// be read).
struct RawRow {
    line: u64,
    fields: Result<Vec<String>, RowError>,
}

/// What the reading thread sends.
enum Chunk {
    Header(Header, Vec<String>),
    Rows(Vec<RawRow>, Progress),
    Refused(DomainError),
}

/// Counts bytes and refuses past the limit.
struct Limited<R> {
    inner: R,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let total = self
            .read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed)
            + n as u64;
        if total > MAX_IMPORT_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                "too large",
            ));
        }
        Ok(n)
    }
}

fn too_large() -> DomainError {
    refuse(format!(
        "is over the import limit of {} MiB; split it into smaller files",
        MAX_IMPORT_BYTES / (1024 * 1024)
    ))
}

/// Reads `source` on the current (blocking) thread, sending batches.
fn read_file(source: Box<dyn Read + Send>, out: mpsc::Sender<Chunk>) {
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let limited = Limited {
        inner: source,
        read: counter.clone(),
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(limited);
    let io_refusal = |error: csv::Error| -> DomainError {
        match error.kind() {
            csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::FileTooLarge => too_large(),
            csv::ErrorKind::Io(_) => refuse("could not be read to the end"),
            _ => refuse(format!("is not CSV: {error}")),
        }
    };
    let mut record = csv::ByteRecord::new();
    // The header.
    let header = match reader.read_byte_record(&mut record) {
        Ok(true) => {
            let first = record.iter().next().unwrap_or_default();
            if first.starts_with(&[0xFF, 0xFE]) || first.starts_with(&[0xFE, 0xFF]) {
                let _ = out.blocking_send(Chunk::Refused(refuse(
                    "is UTF-16 text; save it as CSV UTF-8",
                )));
                return;
            }
            if record.iter().any(|f| f.contains(&0)) {
                let _ = out.blocking_send(Chunk::Refused(refuse(
                    "is not CSV text (it holds binary data)",
                )));
                return;
            }
            match Header::parse(&record) {
                Ok(parsed) => parsed,
                Err(error) => {
                    let _ = out.blocking_send(Chunk::Refused(error));
                    return;
                }
            }
        }
        Ok(false) => {
            let _ = out.blocking_send(Chunk::Refused(refuse(
                "is empty; the first line must name the columns",
            )));
            return;
        }
        Err(error) => {
            let _ = out.blocking_send(Chunk::Refused(io_refusal(error)));
            return;
        }
    };
    let width = header.0.width;
    if out
        .blocking_send(Chunk::Header(header.0, header.1))
        .is_err()
    {
        return;
    }
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    let mut rows = 0u64;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line());
                rows += 1;
                batch.push(RawRow {
                    line,
                    fields: decode(&record, width, line),
                });
                if batch.len() == BATCH_ROWS {
                    let progress = Progress {
                        bytes: counter.load(std::sync::atomic::Ordering::Relaxed),
                        rows,
                    };
                    if out
                        .blocking_send(Chunk::Rows(std::mem::take(&mut batch), progress))
                        .is_err()
                    {
                        return;
                    }
                }
            }
            Ok(false) => break,
            Err(error) => {
                let _ = out.blocking_send(Chunk::Refused(io_refusal(error)));
                return;
            }
        }
    }
    let progress = Progress {
        bytes: counter.load(std::sync::atomic::Ordering::Relaxed),
        rows,
    };
    let _ = out.blocking_send(Chunk::Rows(batch, progress));
}

/// The fields of a record as text, or why the row cannot be read.
fn decode(record: &csv::ByteRecord, width: usize, line: u64) -> Result<Vec<String>, RowError> {
    if record.len() != width {
        return Err(RowError {
            line,
            column: None,
            reason: format!("has {} fields where the header has {width}", record.len()),
        });
    }
    record
        .iter()
        .map(|raw| {
            std::str::from_utf8(raw)
                .map(str::to_string)
                .map_err(|_| RowError {
                    line,
                    column: None,
                    reason: "is not UTF-8 text".into(),
                })
        })
        .collect()
}

/// A row that passed validation.
#[derive(Debug, Clone)]
struct Row {
    line: u64,
    external_id: Option<String>,
    email: Option<String>,
    fields: PatientFields,
    consent: Option<Consent>,
    journey: Option<(Uuid, Uuid)>,
}

/// The clinic's pathways and stages, to resolve `pathway` and `stage`.
struct Pathways {
    pathways: Vec<pathways::Model>,
    stages: Vec<stages::Model>,
}

impl Pathways {
    async fn load(store: &Store, who: &Principal) -> DomainResult<Self> {
        let conn = store.db.conn();
        Ok(Self {
            pathways: who.select::<pathways::Entity>().all(conn).await?,
            stages: who.select::<stages::Entity>().all(conn).await?,
        })
    }

    /// The pathway and stage a row names: by key, name or API id.
    fn resolve(&self, pathway: &str, stage: Option<&str>) -> Result<(Uuid, Uuid), RowError> {
        let error = |column: &str, reason: String| RowError {
            line: 0,
            column: Some(column.into()),
            reason,
        };
        let by_id = ids::decode_as(IdKind::Pathway, pathway).ok();
        let found = self.pathways.iter().find(|p| {
            Some(p.id) == by_id || p.name.eq_ignore_ascii_case(pathway) && p.archived_at.is_none()
        });
        let Some(found) = found else {
            return Err(error("pathway", format!("no pathway named {pathway:?}")));
        };
        if found.archived_at.is_some() {
            return Err(error("pathway", "the pathway is archived".into()));
        }
        let mut on_pathway: Vec<&stages::Model> = self
            .stages
            .iter()
            .filter(|s| s.pathway_id == found.id)
            .collect();
        on_pathway.sort_by_key(|s| s.position);
        let stage = match stage {
            None => on_pathway
                .first()
                .copied()
                .ok_or_else(|| error("pathway", "the pathway has no stages".into()))?,
            Some(wanted) => {
                let by_id = ids::decode_as(IdKind::Stage, wanted).ok();
                on_pathway
                    .iter()
                    .copied()
                    .find(|s| {
                        Some(s.id) == by_id
                            || s.key.eq_ignore_ascii_case(wanted)
                            || s.name.eq_ignore_ascii_case(wanted)
                    })
                    .ok_or_else(|| {
                        error(
                            "stage",
                            format!("no stage {wanted:?} on pathway {:?}", found.name),
                        )
                    })?
            }
        };
        if stage.terminal {
            return Err(error(
                "stage",
                "a journey cannot start in a terminal stage".into(),
            ));
        }
        Ok((found.id, stage.id))
    }
}

/// Parses a yes/no column.
fn yes_no(column: &str, value: &str) -> Result<bool, RowError> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "y" | "true" | "1" => Ok(true),
        "no" | "n" | "false" | "0" => Ok(false),
        _ => Err(RowError {
            line: 0,
            column: Some(column.into()),
            reason: format!("{value:?} is not yes/no, true/false or 1/0"),
        }),
    }
}

/// The CSV column of a GraphQL field name in a domain error.
fn column_of(field: &str) -> String {
    match field {
        "givenName" => "given_name",
        "familyName" => "family_name",
        "birthDate" => "birth_date",
        "externalId" => "external_id",
        "preferredChannel" => "preferred_channel",
        other => other,
    }
    .to_string()
}

fn row_error(error: DomainError) -> RowError {
    match error {
        DomainError::Invalid { field, message } => RowError {
            line: 0,
            column: Some(column_of(&field)),
            reason: message,
        },
        other => RowError {
            line: 0,
            column: None,
            reason: other.public_message(),
        },
    }
}

/// Validates one row into the fields of a patient.
fn parse_row(header: &Header, pathways: &Pathways, values: &[String]) -> Result<Row, RowError> {
    let get = |column: &str| header.get(values, column);
    let text = |column: &str, max: usize| -> Result<Option<String>, RowError> {
        get(column)
            .map(|v| validate::required_text(column, v, max))
            .transpose()
            .map_err(row_error)
    };
    let given = text("given_name", validate::SHORT_TEXT)?.ok_or_else(|| RowError {
        line: 0,
        column: Some("given_name".into()),
        reason: "is required".into(),
    })?;
    let family = text("family_name", validate::SHORT_TEXT)?.ok_or_else(|| RowError {
        line: 0,
        column: Some("family_name".into()),
        reason: "is required".into(),
    })?;
    let external_id = text("external_id", 128)?;
    let email = get("email")
        .map(|v| Email::parse("email", v).map(String::from))
        .transpose()
        .map_err(row_error)?;
    let phone = get("phone")
        .map(|v| E164Phone::parse("phone", v).map(String::from))
        .transpose()
        .map_err(row_error)?;
    let birth_date = get("birth_date")
        .map(|v| {
            let error = |reason: String| RowError {
                line: 0,
                column: Some("birth_date".into()),
                reason,
            };
            let date = NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .map_err(|_| error(format!("{v:?} is not a date such as 1990-04-21")))?;
            let earliest = NaiveDate::from_ymd_opt(1900, 1, 1).expect("valid date");
            if date < earliest || date > crate::db::now().date_naive() {
                return Err(error("must be between 1900-01-01 and today".into()));
            }
            Ok(date)
        })
        .transpose()?;
    let channel = get("preferred_channel")
        .map(|v| {
            Channel::parse(&v.to_ascii_uppercase()).ok_or_else(|| RowError {
                line: 0,
                column: Some("preferred_channel".into()),
                reason: format!(
                    "{v:?} is not a channel ({})",
                    Channel::ALL
                        .iter()
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
        })
        .transpose()?;
    let source = text("source", 64)?;
    let tags = get("tags")
        .map(|v| {
            let tags: Vec<String> = v
                .split(';')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect();
            validate::tags("tags", &tags).map_err(row_error)
        })
        .transpose()?;
    let consent = if ["sms_consent", "email_consent", "marketing_consent"]
        .iter()
        .any(|c| get(c).is_some())
    {
        let flag = |column: &str| get(column).map_or(Ok(false), |v| yes_no(column, v));
        Some(Consent {
            sms: flag("sms_consent")?,
            email: flag("email_consent")?,
            marketing: flag("marketing_consent")?,
        })
    } else {
        None
    };
    let journey = match (get("pathway"), get("stage")) {
        (Some(pathway), stage) => Some(pathways.resolve(pathway, stage)?),
        (None, Some(_)) => {
            return Err(RowError {
                line: 0,
                column: Some("stage".into()),
                reason: "needs a pathway column".into(),
            });
        }
        (None, None) => None,
    };
    // An empty cell leaves the patient's value as it is.
    let set = |value: Option<String>| value.map_or(Change::Keep, Change::Set);
    let fields = PatientFields {
        external_id: set(external_id.clone()),
        given_name: Some(given),
        family_name: Some(family),
        email: set(email.clone()),
        phone: set(phone),
        birth_date: birth_date.map_or(Change::Keep, Change::Set),
        preferred_channel: channel.map_or(Change::Keep, Change::Set),
        source: set(source),
        tags,
        consent,
    };
    Ok(Row {
        line: 0,
        external_id,
        email,
        fields,
        consent,
        journey,
    })
}

/// What to do with a row that passed validation.
enum Plan {
    Create(Box<patients::Model>, Option<Consent>),
    Update(Box<patients::Model>, PatientFields),
    Skip,
}

/// Imports the patients of the CSV in `source` into `who`'s clinic.
/// `progress` is called after each batch.
pub async fn patients(
    store: &Store,
    who: &Principal,
    source: Box<dyn Read + Send>,
    options: ImportOptions,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> DomainResult<ImportReport> {
    access::require(who, Permission::PatientsWrite, "importing patients")?;
    let (sender, mut receiver) = mpsc::channel::<Chunk>(4);
    let reader = tokio::task::spawn_blocking(move || read_file(source, sender));
    let pathways = Pathways::load(store, who).await?;
    let mut report = ImportReport {
        import_id: format!("imp_{}", ids::new_id().simple()),
        dry_run: options.dry_run,
        ..ImportReport::default()
    };
    let header = match receiver.recv().await {
        Some(Chunk::Header(header, unknown)) => {
            report.unrecognized_columns = unknown;
            header
        }
        Some(Chunk::Refused(error)) => return Err(error),
        _ => return Err(refuse("could not be read")),
    };
    let starts_journeys = header.index.contains_key("pathway");
    if starts_journeys {
        access::require(who, Permission::JourneysWrite, "starting journeys")?;
    }
    // external_id → line of its first row, across the whole file.
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut seen_emails: HashMap<String, u64> = HashMap::new();
    let mut first = true;
    while let Some(message) = receiver.recv().await {
        let (raw, at) = match message {
            Chunk::Rows(raw, at) => (raw, at),
            Chunk::Refused(error) => {
                if first {
                    return Err(error);
                }
                // Batches before it were written: say so with the refusal.
                return Err(refuse(format!(
                    "{}; the rows up to line {} were imported ({report})",
                    error.public_message().trim_start_matches("file: "),
                    report.rows + 1
                )));
            }
            Chunk::Header(..) => continue,
        };
        let mut rows = Vec::with_capacity(raw.len());
        for raw_row in raw {
            report.rows += 1;
            let line = raw_row.line;
            let parsed = raw_row
                .fields
                .and_then(|values| parse_row(&header, &pathways, &values));
            match parsed {
                Err(mut error) => {
                    error.line = line;
                    report.fail(error);
                }
                Ok(mut row) => {
                    row.line = line;
                    if let Some(id) = &row.external_id {
                        if let Some(earlier) = seen.get(id) {
                            report.fail(RowError {
                                line,
                                column: Some("external_id".into()),
                                reason: format!("{id:?} is already on line {earlier}"),
                            });
                            continue;
                        }
                        seen.insert(id.clone(), line);
                    } else if let Some(email) = &row.email {
                        if let Some(earlier) = seen_emails.get(email) {
                            report.fail(RowError {
                                line,
                                column: Some("email".into()),
                                reason: format!(
                                    "{email:?} is already on line {earlier} (rows without external_id are matched by email)"
                                ),
                            });
                            continue;
                        }
                        seen_emails.insert(email.clone(), line);
                    }
                    rows.push(row);
                }
            }
        }
        write_batch(store, who, &mut report, rows, options).await?;
        first = false;
        progress(at);
    }
    reader.await.map_err(DomainError::internal)?;
    report.errors.sort_by_key(|e| e.line);
    Ok(report)
}

/// Plans and (unless a dry run) writes one batch of valid rows.
async fn write_batch(
    store: &Store,
    who: &Principal,
    report: &mut ImportReport,
    rows: Vec<Row>,
    options: ImportOptions,
) -> DomainResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    // The lookups below are prepared statements. On PostgreSQL a generic
    // plan made while the clinic had few patients (a sequential scan) would
    // otherwise stay for the whole import, each batch scanning every row the
    // ones before it wrote: 88 of 117 s of a 100,000-row import.
    let lookup = store.db.conn().begin().await?;
    crate::db::plan_statements(&lookup, crate::db::Plans::Custom).await?;
    let conn = &lookup;
    let external_ids: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.external_id.as_deref())
        .collect();
    let emails: Vec<&str> = rows
        .iter()
        .filter(|r| r.external_id.is_none())
        .filter_map(|r| r.email.as_deref())
        .collect();
    let mut by_external: HashMap<String, patients::Model> = HashMap::new();
    if !external_ids.is_empty() {
        for patient in who
            .select::<patients::Entity>()
            .filter(patients::Column::ExternalId.is_in(external_ids))
            .all(conn)
            .await?
        {
            if let Some(id) = patient.external_id.clone() {
                by_external.insert(id, patient);
            }
        }
    }
    let mut by_email: HashMap<String, Vec<patients::Model>> = HashMap::new();
    if !emails.is_empty() {
        for patient in who
            .select::<patients::Entity>()
            .filter(patients::Column::Email.is_in(emails))
            .filter(patients::Column::ErasedAt.is_null())
            .all(conn)
            .await?
        {
            if let Some(email) = patient.email.clone() {
                by_email.entry(email).or_default().push(patient);
            }
        }
    }
    let matched: Vec<Uuid> = by_external
        .values()
        .chain(by_email.values().flatten())
        .map(|p| p.id)
        .collect();
    // Journeys already active, so a second import starts none again.
    let mut active: HashSet<(Uuid, Uuid)> = HashSet::new();
    if !matched.is_empty() && rows.iter().any(|r| r.journey.is_some()) {
        for journey in who
            .select::<journeys::Entity>()
            .filter(journeys::Column::PatientId.is_in(matched))
            .filter(journeys::Column::Status.eq(JourneyStatus::Active.as_str()))
            .all(conn)
            .await?
        {
            active.insert((journey.patient_id, journey.pathway_id));
        }
    }
    lookup.commit().await?;

    let now = crate::db::now();
    let mut planned: Vec<(Row, Plan)> = Vec::with_capacity(rows.len());
    for row in rows {
        let existing = match &row.external_id {
            Some(id) => by_external.get(id).cloned(),
            None => match row.email.as_ref().and_then(|e| by_email.get(e)) {
                Some(found) if found.len() == 1 => Some(found[0].clone()),
                Some(found) => {
                    report.fail(RowError {
                        line: row.line,
                        column: Some("email".into()),
                        reason: format!(
                            "{} patients have this email; give the row an external_id",
                            found.len()
                        ),
                    });
                    continue;
                }
                None => None,
            },
        };
        let plan = match existing {
            Some(current) => {
                if current.erased_at.is_some() {
                    report.fail(RowError {
                        line: row.line,
                        column: Some("external_id".into()),
                        reason: "the patient was erased and cannot be changed".into(),
                    });
                    continue;
                }
                let changed = match patient_rules::changes(&current, row.fields.clone()) {
                    Ok(changed) => changed,
                    Err(error) => {
                        let mut error = row_error(error);
                        error.line = row.line;
                        report.fail(error);
                        continue;
                    }
                };
                let consent_changed = row.consent.is_some_and(|c| {
                    let legacy = (c.sms, c.email, c.marketing && (c.sms || c.email));
                    legacy
                        != (
                            current.consent_sms,
                            current.consent_email,
                            current.consent_marketing,
                        )
                });
                if changed.is_empty() && !consent_changed {
                    Plan::Skip
                } else {
                    let mut fields = row.fields.clone();
                    if !consent_changed {
                        fields.consent = None;
                    }
                    Plan::Update(Box::new(current), fields)
                }
            }
            None => match patient_rules::prepare_new(who, now, row.fields.clone()) {
                Ok(patient) => Plan::Create(Box::new(patient), row.consent),
                Err(error) => {
                    let mut error = row_error(error);
                    error.line = row.line;
                    report.fail(error);
                    continue;
                }
            },
        };
        planned.push((row, plan));
    }

    if options.dry_run {
        for (row, plan) in &planned {
            match plan {
                Plan::Create(..) => report.created += 1,
                Plan::Update(..) => report.updated += 1,
                Plan::Skip => report.skipped += 1,
            }
            let patient_id = match plan {
                Plan::Create(p, _) | Plan::Update(p, _) => Some(p.id),
                Plan::Skip => None,
            };
            if let Some((pathway, _)) = row.journey
                && !patient_id.is_some_and(|id| active.contains(&(id, pathway)))
                && !matches!(plan, Plan::Skip)
            {
                report.journeys_started += 1;
            }
        }
        return Ok(());
    }

    let mut write = store.write(who).await?;
    let import_id = report.import_id.clone();
    // New patients: one statement for the rows, one for their consent.
    let mut new_rows = Vec::new();
    let mut consent_rows = Vec::new();
    for (_, plan) in planned.iter_mut() {
        if let Plan::Create(patient, consent) = plan {
            if let Some(consent) = consent {
                let entries: Vec<_> = consent_rules::from_legacy(
                    consent.sms,
                    consent.email,
                    consent.marketing,
                    CONSENT_SOURCE,
                    write.now,
                )
                .into_iter()
                .filter(|e| e.granted)
                .collect();
                let rows: Vec<consents::Model> = entries
                    .iter()
                    .map(|entry| consents::Model {
                        id: ids::new_id(),
                        clinic_id: patient.clinic_id,
                        patient_id: patient.id,
                        channel: entry.channel.as_str().to_string(),
                        purpose: entry.purpose.as_str().to_string(),
                        granted: true,
                        source: entry.source.clone(),
                        touchpoint_id: None,
                        occurred_at: entry.occurred_at,
                        recorded_at: write.now,
                        actor_kind: who.actor.kind().to_string(),
                        actor_id: who.actor.id(),
                    })
                    .collect();
                let (sms, email, marketing) = ConsentSet::of(&rows).legacy();
                patient.consent_sms = sms;
                patient.consent_email = email;
                patient.consent_marketing = marketing;
                consent_rows.extend(rows);
            }
            new_rows.push(patient.as_ref().clone());
        }
    }
    crate::db::insert_all(&*write.txn, new_rows).await?;
    crate::db::insert_all(&*write.txn, consent_rows).await?;
    for (row, plan) in planned {
        let patient_id = match plan {
            Plan::Create(patient, _) => {
                patient_rules::emit_created_by(&mut write, &patient, Some(&import_id));
                report.created += 1;
                patient.id
            }
            Plan::Update(current, fields) => {
                let id = current.id;
                patient_rules::update_in(&mut write, *current, fields, Some(&import_id)).await?;
                report.updated += 1;
                id
            }
            Plan::Skip => {
                // A journey to start still counts as a change below.
                match &row.external_id {
                    Some(id) => by_external.get(id).map(|p| p.id),
                    None => row
                        .email
                        .as_ref()
                        .and_then(|e| by_email.get(e))
                        .map(|p| p[0].id),
                }
                .unwrap_or_default()
            }
        };
        if let Some((pathway_id, stage_id)) = row.journey
            && !active.contains(&(patient_id, pathway_id))
        {
            journey_rules::start_in(
                &mut write,
                journey_rules::StartJourney {
                    patient_id,
                    pathway_id,
                    stage_id: Some(stage_id),
                    owner_id: None,
                    occurred_at: None,
                    note: Some(format!("started by CSV import {import_id}")),
                },
            )
            .await?;
            report.journeys_started += 1;
        }
    }
    // A skipped row with a new journey is still a skip of the patient.
    report.skipped = report.rows - report.created - report.updated - report.failed;
    write.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(columns: &[&str]) -> csv::ByteRecord {
        csv::ByteRecord::from(columns.to_vec())
    }

    #[test]
    fn headers_match_case_insensitively_and_report_unknown_columns() {
        let (parsed, unknown) = Header::parse(&header(&[
            "Given_Name",
            " FAMILY_NAME ",
            "Email",
            "shoe_size",
        ]))
        .unwrap();
        assert_eq!(parsed.index["given_name"], 0);
        assert_eq!(parsed.index["family_name"], 1);
        assert_eq!(parsed.index["email"], 2);
        assert_eq!(unknown, vec!["shoe_size".to_string()]);
        let missing = Header::parse(&header(&["name", "email"])).unwrap_err();
        assert_eq!(missing.field(), Some("file"));
    }

    #[test]
    fn yes_no_spellings() {
        for yes in ["yes", "TRUE", "1", "Y"] {
            assert!(yes_no("sms_consent", yes).unwrap());
        }
        for no in ["no", "false", "0"] {
            assert!(!yes_no("sms_consent", no).unwrap());
        }
        let error = yes_no("sms_consent", "maybe").unwrap_err();
        assert_eq!(error.column.as_deref(), Some("sms_consent"));
    }
}
