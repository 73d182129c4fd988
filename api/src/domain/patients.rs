//! Patients: identity, contact, consent and the CRM link.

use chrono::NaiveDate;
use entity::{journeys, patients};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, IntoActiveModel,
    PaginatorTrait, QueryFilter, QuerySelect, QueryTrait, Select,
    sea_query::{Expr, LikeExpr},
};
use serde_json::json;
use uuid::Uuid;

use super::{
    Channel, DomainError, DomainResult, JourneyStatus, Store,
    page::{Keyset, Page, PageRequest, Sort, SortKey, finish},
    validate,
};
use crate::{
    auth::{Permission, Principal},
    events::EventType,
    ids::{self, IdKind},
};

/// A change to one optional field: leave it, clear it or set it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Change<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<T> Change<T> {
    pub fn is_keep(&self) -> bool {
        matches!(self, Change::Keep)
    }
}

/// What the patient agreed to be contacted by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Consent {
    pub sms: bool,
    pub email: bool,
    pub marketing: bool,
}

/// The fields of a patient as a client sends them, before validation.
/// For a new patient every `Keep` counts as absent.
#[derive(Debug, Clone, Default)]
pub struct PatientFields {
    pub external_id: Change<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub email: Change<String>,
    pub phone: Change<String>,
    pub birth_date: Change<NaiveDate>,
    pub preferred_channel: Change<Channel>,
    pub source: Change<String>,
    pub tags: Option<Vec<String>>,
    pub consent: Option<Consent>,
}

/// How to narrow a list of patients.
#[derive(Debug, Clone, Default)]
pub struct PatientFilter {
    /// Words that must all appear in the name, email or phone.
    pub search: Option<String>,
    /// Patients with a journey on this pathway.
    pub pathway_id: Option<Uuid>,
    /// Patients with an active journey currently in this stage.
    pub stage_id: Option<Uuid>,
    /// Patients carrying this tag.
    pub tag: Option<String>,
    /// Include archived patients.
    pub include_archived: bool,
}

fn sort_key() -> SortKey<patients::Entity> {
    SortKey {
        at: None,
        id: patients::Column::Id,
        sort: Sort::Descending,
    }
}

/// The cursor of a patient in patient lists.
pub fn keyset(patient: &patients::Model) -> Keyset {
    Keyset::id(patient.id)
}

/// The text the search matches: lower-cased names and email, phone digits.
fn search_text(patient: &patients::Model) -> String {
    let phone_digits: String = patient
        .phone
        .as_deref()
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    format!(
        "{} {} {} {}",
        patient.given_name,
        patient.family_name,
        patient.email.as_deref().unwrap_or_default(),
        phone_digits
    )
    .to_lowercase()
}

fn like_pattern(term: &str) -> String {
    let escaped = term
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

fn filtered(
    who: &Principal,
    backend: DbBackend,
    filter: &PatientFilter,
) -> DomainResult<Select<patients::Entity>> {
    let mut select = who.select::<patients::Entity>();
    if !filter.include_archived {
        select = select.filter(patients::Column::ArchivedAt.is_null());
    }
    if let Some(search) = filter.search.as_deref() {
        let search =
            validate::optional_text("filter.search", Some(search), validate::SHORT_TEXT, false)?;
        for term in search.iter().flat_map(|s| s.split_whitespace()) {
            let phone_like = term
                .chars()
                .all(|c| c.is_ascii_digit() || "+-().".contains(c));
            let term = if phone_like {
                term.chars().filter(char::is_ascii_digit).collect()
            } else {
                term.to_lowercase()
            };
            if term.is_empty() {
                continue;
            }
            select = select.filter(
                patients::Column::SearchText.like(LikeExpr::new(like_pattern(&term)).escape('\\')),
            );
        }
    }
    if let Some(pathway_id) = filter.pathway_id {
        let on_pathway = who
            .select::<journeys::Entity>()
            .select_only()
            .column(journeys::Column::PatientId)
            .filter(journeys::Column::PathwayId.eq(pathway_id))
            .into_query();
        select = select.filter(patients::Column::Id.in_subquery(on_pathway));
    }
    if let Some(stage_id) = filter.stage_id {
        let in_stage = who
            .select::<journeys::Entity>()
            .select_only()
            .column(journeys::Column::PatientId)
            .filter(journeys::Column::CurrentStageId.eq(stage_id))
            .filter(journeys::Column::Status.eq(JourneyStatus::Active.as_str()))
            .into_query();
        select = select.filter(patients::Column::Id.in_subquery(in_stage));
    }
    if let Some(tag) = filter.tag.as_deref() {
        let tag = validate::tag("filter.tag", tag)?;
        let sql = match backend {
            DbBackend::Postgres => {
                "EXISTS (SELECT 1 FROM json_array_elements_text(patients.tags) AS t(tag) WHERE t.tag = $1)"
            }
            _ => "EXISTS (SELECT 1 FROM json_each(patients.tags) WHERE json_each.value = ?)",
        };
        select = select.filter(Expr::cust_with_values(sql, [tag]));
    }
    Ok(select)
}

/// One page of the caller's patients, newest first.
pub async fn list(
    store: &Store,
    who: &Principal,
    filter: &PatientFilter,
    page: &PageRequest,
) -> DomainResult<Page<patients::Model>> {
    require_read(who)?;
    let select = filtered(who, store.db.backend(), filter)?;
    let rows = sort_key().apply(select, page).all(store.db.conn()).await?;
    Ok(finish(rows, page))
}

/// How many patients match `filter`.
pub async fn count(store: &Store, who: &Principal, filter: &PatientFilter) -> DomainResult<u64> {
    require_read(who)?;
    Ok(filtered(who, store.db.backend(), filter)?
        .count(store.db.conn())
        .await?)
}

/// One patient of the caller's clinic.
pub async fn get(store: &Store, who: &Principal, id: Uuid) -> DomainResult<patients::Model> {
    require_read(who)?;
    who.get::<patients::Entity, _>(store.db.conn(), id, "patient")
        .await
}

fn require_read(who: &Principal) -> DomainResult<()> {
    if who.can(Permission::PatientsRead) {
        Ok(())
    } else {
        Err(DomainError::Forbidden(
            "reading patients needs the patients:read scope".into(),
        ))
    }
}

fn require_write(who: &Principal) -> DomainResult<()> {
    if who.can(Permission::PatientsWrite) {
        Ok(())
    } else {
        Err(DomainError::Forbidden(
            "changing patients needs the patients:write scope".into(),
        ))
    }
}

/// Applies validated `fields` to `patient`; returns the names of the fields
/// that changed.
fn apply(patient: &mut patients::Model, fields: PatientFields) -> DomainResult<Vec<&'static str>> {
    let mut changed = Vec::new();
    macro_rules! set {
        ($name:literal, $field:ident, $value:expr) => {{
            let value = $value;
            if patient.$field != value {
                patient.$field = value;
                changed.push($name);
            }
        }};
    }
    fn optional<T>(
        change: Change<T>,
        current: &Option<T>,
        check: impl FnOnce(T) -> DomainResult<T>,
    ) -> DomainResult<Option<T>>
    where
        T: Clone,
    {
        match change {
            Change::Keep => Ok(current.clone()),
            Change::Clear => Ok(None),
            Change::Set(value) => check(value).map(Some),
        }
    }

    if let Some(given) = fields.given_name {
        set!(
            "givenName",
            given_name,
            validate::required_text("givenName", &given, validate::SHORT_TEXT)?
        );
    }
    if let Some(family) = fields.family_name {
        set!(
            "familyName",
            family_name,
            validate::required_text("familyName", &family, validate::SHORT_TEXT)?
        );
    }
    set!(
        "externalId",
        external_id,
        optional(fields.external_id, &patient.external_id, |v| {
            validate::required_text("externalId", &v, 128)
        })?
    );
    set!(
        "email",
        email,
        optional(fields.email, &patient.email, |v| validate::email(
            "email", &v
        ))?
    );
    set!(
        "phone",
        phone,
        optional(fields.phone, &patient.phone, |v| validate::phone(
            "phone", &v
        ))?
    );
    let today = super::now().date_naive();
    set!(
        "birthDate",
        birth_date,
        optional(fields.birth_date, &patient.birth_date, |date| {
            let earliest = NaiveDate::from_ymd_opt(1900, 1, 1).expect("valid date");
            if date > today || date < earliest {
                Err(DomainError::invalid(
                    "birthDate",
                    "must be between 1900-01-01 and today",
                ))
            } else {
                Ok(date)
            }
        })?
    );
    let current_channel = patient
        .preferred_channel
        .as_deref()
        .and_then(Channel::parse);
    set!(
        "preferredChannel",
        preferred_channel,
        optional(fields.preferred_channel, &current_channel, Ok)?.map(|c| c.as_str().to_string())
    );
    set!(
        "source",
        source,
        optional(fields.source, &patient.source, |v| validate::required_text(
            "source", &v, 64
        ))?
    );
    if let Some(tags) = fields.tags {
        set!("tags", tags, json!(validate::tags("tags", &tags)?));
    }
    if let Some(consent) = fields.consent
        && (
            patient.consent_sms,
            patient.consent_email,
            patient.consent_marketing,
        ) != (consent.sms, consent.email, consent.marketing)
    {
        patient.consent_sms = consent.sms;
        patient.consent_email = consent.email;
        patient.consent_marketing = consent.marketing;
        changed.push("consent");
    }
    patient.search_text = search_text(patient);
    Ok(changed)
}

async fn ensure_external_id_free<C: ConnectionTrait>(
    conn: &C,
    who: &Principal,
    external_id: Option<&str>,
    except: Option<Uuid>,
) -> DomainResult<()> {
    let Some(external_id) = external_id else {
        return Ok(());
    };
    let mut select = who
        .select::<patients::Entity>()
        .filter(patients::Column::ExternalId.eq(external_id));
    if let Some(except) = except {
        select = select.filter(patients::Column::Id.ne(except));
    }
    if select.count(conn).await? > 0 {
        return Err(DomainError::conflict_on(
            "externalId",
            format!("another patient already has externalId {external_id:?}"),
        ));
    }
    Ok(())
}

fn blank(who: &Principal, now: chrono::DateTime<chrono::Utc>) -> patients::Model {
    patients::Model {
        id: ids::new_id(),
        clinic_id: who.clinic_id,
        external_id: None,
        given_name: String::new(),
        family_name: String::new(),
        email: None,
        phone: None,
        birth_date: None,
        preferred_channel: None,
        source: None,
        tags: json!([]),
        consent_sms: false,
        consent_email: false,
        consent_marketing: false,
        search_text: String::new(),
        archived_at: None,
        erased_at: None,
        created_at: now,
        updated_at: now,
    }
}

/// Registers a new patient.
pub async fn create(
    store: &Store,
    who: &Principal,
    fields: PatientFields,
) -> DomainResult<patients::Model> {
    require_write(who)?;
    if fields.given_name.is_none() {
        return Err(DomainError::invalid("givenName", "is required"));
    }
    if fields.family_name.is_none() {
        return Err(DomainError::invalid("familyName", "is required"));
    }
    let mut write = store.write(who).await?;
    let mut patient = blank(who, write.now);
    apply(&mut patient, fields)?;
    ensure_external_id_free(&*write.txn, who, patient.external_id.as_deref(), None).await?;
    let patient = insert(&write, patient).await?;
    emit_created(&mut write, &patient);
    write.commit().await?;
    Ok(patient)
}

async fn insert(
    write: &super::Write<'_>,
    patient: patients::Model,
) -> DomainResult<patients::Model> {
    patients::Entity::insert(patient.clone().into_active_model())
        .exec_without_returning(&*write.txn)
        .await?;
    Ok(patient)
}

fn emit_created(write: &mut super::Write<'_>, patient: &patients::Model) {
    let id = IdKind::Patient.encode(patient.id);
    write.emit(
        EventType::PatientCreated,
        id.clone(),
        json!({ "patientId": id, "externalId": patient.external_id }),
    );
}

/// Changes some of a patient's fields.
pub async fn update(
    store: &Store,
    who: &Principal,
    id: Uuid,
    fields: PatientFields,
) -> DomainResult<patients::Model> {
    require_write(who)?;
    let mut write = store.write(who).await?;
    let current = who
        .get::<patients::Entity, _>(&*write.txn, id, "patient")
        .await
        .map_err(|e| e.referenced_by("patientId"))?;
    let (patient, _) = update_in(&mut write, current, fields).await?;
    write.commit().await?;
    Ok(patient)
}

async fn update_in(
    write: &mut super::Write<'_>,
    current: patients::Model,
    fields: PatientFields,
) -> DomainResult<(patients::Model, bool)> {
    if current.erased_at.is_some() {
        return Err(DomainError::conflict(
            "the patient was erased and cannot be changed",
        ));
    }
    let mut patient = current.clone();
    let changed = apply(&mut patient, fields)?;
    if changed.is_empty() {
        return Ok((current, false));
    }
    if changed.contains(&"externalId") {
        ensure_external_id_free(
            &*write.txn,
            write.who,
            patient.external_id.as_deref(),
            Some(patient.id),
        )
        .await?;
    }
    patient.updated_at = write.now;
    // Every column is written: the row is the patient as validated above.
    let active = patient.clone().into_active_model().reset_all();
    active.update(&*write.txn).await?;
    let id = IdKind::Patient.encode(patient.id);
    write.emit(
        EventType::PatientUpdated,
        id.clone(),
        json!({ "patientId": id, "externalId": patient.external_id, "changedFields": changed }),
    );
    Ok((patient, true))
}

/// Creates or updates the patient with `external_id`, the CRM's own key.
/// Returns the patient and whether it was created.
pub async fn upsert_by_external_id(
    store: &Store,
    who: &Principal,
    external_id: String,
    mut fields: PatientFields,
) -> DomainResult<(patients::Model, bool)> {
    require_write(who)?;
    let external_id = validate::required_text("externalId", &external_id, 128)?;
    fields.external_id = Change::Set(external_id.clone());
    let mut write = store.write(who).await?;
    let existing = who
        .select::<patients::Entity>()
        .filter(patients::Column::ExternalId.eq(external_id.as_str()))
        .one(&*write.txn)
        .await?;
    let (patient, created) = match existing {
        Some(current) => (update_in(&mut write, current, fields).await?.0, false),
        None => {
            if fields.given_name.is_none() {
                return Err(DomainError::invalid(
                    "givenName",
                    "is required to create a patient",
                ));
            }
            if fields.family_name.is_none() {
                return Err(DomainError::invalid(
                    "familyName",
                    "is required to create a patient",
                ));
            }
            let mut patient = blank(who, write.now);
            apply(&mut patient, fields)?;
            let patient = insert(&write, patient).await?;
            emit_created(&mut write, &patient);
            (patient, true)
        }
    };
    write.commit().await?;
    Ok((patient, created))
}

/// The tags of a stored patient.
pub fn tags_of(patient: &patients::Model) -> Vec<String> {
    serde_json::from_value(patient.tags.clone()).unwrap_or_default()
}

/// Erases a patient's identity, contact details and everything written about
/// them (touchpoint summaries, feedback comments, notes), keeping the
/// anonymised journey facts — stages, times, channels, emotions, scores — so
/// journey maps stay true. Emits `patient.erased`. Cannot be undone.
pub async fn erase(
    store: &Store,
    who: &Principal,
    id: Uuid,
    reason: Option<String>,
) -> DomainResult<patients::Model> {
    use entity::{feedback, follow_ups, stage_transitions, touchpoints};
    super::access::require(who, Permission::PrivacyManage, "erasing a patient")?;
    let reason =
        validate::optional_text("reason", reason.as_deref(), validate::SHORT_TEXT * 2, false)?;
    let mut write = store.write(who).await?;
    let mut patient = who
        .get::<patients::Entity, _>(&*write.txn, id, "patient")
        .await
        .map_err(|e| e.referenced_by("patientId"))?;
    if patient.erased_at.is_some() {
        return Err(DomainError::conflict_on(
            "patientId",
            "the patient was already erased",
        ));
    }
    patient = patients::Model {
        external_id: None,
        given_name: "Erased".into(),
        family_name: "Patient".into(),
        email: None,
        phone: None,
        birth_date: None,
        preferred_channel: None,
        source: None,
        tags: json!([]),
        consent_sms: false,
        consent_email: false,
        consent_marketing: false,
        search_text: String::new(),
        archived_at: Some(write.now),
        erased_at: Some(write.now),
        updated_at: write.now,
        ..patient
    };
    patient
        .clone()
        .into_active_model()
        .reset_all()
        .update(&*write.txn)
        .await?;
    who.update_rows::<touchpoints::Entity>()
        .col_expr(
            touchpoints::Column::Summary,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            touchpoints::Column::ExternalRef,
            Expr::value(Option::<String>::None),
        )
        .filter(touchpoints::Column::PatientId.eq(id))
        .exec(&*write.txn)
        .await?;
    who.update_rows::<feedback::Entity>()
        .col_expr(
            feedback::Column::Comment,
            Expr::value(Option::<String>::None),
        )
        .filter(feedback::Column::PatientId.eq(id))
        .exec(&*write.txn)
        .await?;
    who.update_rows::<follow_ups::Entity>()
        .col_expr(
            follow_ups::Column::Note,
            Expr::value(Option::<String>::None),
        )
        .filter(follow_ups::Column::PatientId.eq(id))
        .exec(&*write.txn)
        .await?;
    let journeys_of_patient = who
        .select::<journeys::Entity>()
        .select_only()
        .column(journeys::Column::Id)
        .filter(journeys::Column::PatientId.eq(id))
        .into_query();
    who.update_rows::<stage_transitions::Entity>()
        .col_expr(
            stage_transitions::Column::Note,
            Expr::value(Option::<String>::None),
        )
        .filter(stage_transitions::Column::JourneyId.in_subquery(journeys_of_patient))
        .exec(&*write.txn)
        .await?;
    who.update_rows::<journeys::Entity>()
        .col_expr(
            journeys::Column::EndReason,
            Expr::value(Option::<String>::None),
        )
        .filter(journeys::Column::PatientId.eq(id))
        .exec(&*write.txn)
        .await?;
    scrub_events(&write, id).await?;
    let subject = IdKind::Patient.encode(id);
    write.emit(
        EventType::PatientErased,
        subject.clone(),
        json!({ "patientId": subject, "reason": reason }),
    );
    write.commit().await?;
    Ok(patient)
}

/// The event log keeps what happened to an erased patient, not who they are
/// or what was written about them: the CRM id on `patient.*` events and the
/// drop reason on `journey.*` events go.
async fn scrub_events(write: &super::Write<'_>, patient: Uuid) -> DomainResult<()> {
    use entity::events;
    const IDENTIFYING: [&str; 2] = ["externalId", "reason"];
    let who = write.who;
    let journeys: Vec<Uuid> = who
        .select::<journeys::Entity>()
        .select_only()
        .column(journeys::Column::Id)
        .filter(journeys::Column::PatientId.eq(patient))
        .into_tuple()
        .all(&*write.txn)
        .await?;
    let subjects = std::iter::once(IdKind::Patient.encode(patient))
        .chain(journeys.into_iter().map(|j| IdKind::Journey.encode(j)));
    let logged = who
        .select::<events::Entity>()
        .filter(events::Column::Subject.is_in(subjects))
        .all(&*write.txn)
        .await?;
    for mut event in logged {
        let mut scrubbed = false;
        for key in IDENTIFYING {
            if let Some(value) = event.data.get_mut(key).filter(|v| !v.is_null()) {
                *value = serde_json::Value::Null;
                scrubbed = true;
            }
        }
        if scrubbed {
            who.update_rows::<events::Entity>()
                .col_expr(events::Column::Data, Expr::value(event.data))
                .filter(events::Column::Id.eq(event.id))
                .exec(&*write.txn)
                .await?;
        }
    }
    Ok(())
}

/// Everything held about one patient, as JSON: a data-access request. The
/// export itself is recorded in the audit log.
pub async fn export(store: &Store, who: &Principal, id: Uuid) -> DomainResult<serde_json::Value> {
    use entity::{audit_log, feedback, follow_ups, stage_transitions, touchpoints};
    use sea_orm::QueryOrder;
    super::access::require(who, Permission::PrivacyManage, "exporting a patient's data")?;
    let conn = store.db.conn();
    let patient = who
        .get::<patients::Entity, _>(conn, id, "patient")
        .await
        .map_err(|e| e.referenced_by("patientId"))?;
    let journeys = who
        .select::<journeys::Entity>()
        .filter(journeys::Column::PatientId.eq(id))
        .order_by_asc(journeys::Column::StartedAt)
        .all(conn)
        .await?;
    let journey_ids: Vec<Uuid> = journeys.iter().map(|j| j.id).collect();
    let history = who
        .select::<stage_transitions::Entity>()
        .filter(stage_transitions::Column::JourneyId.is_in(journey_ids))
        .order_by_asc(stage_transitions::Column::OccurredAt)
        .all(conn)
        .await?;
    let touchpoints = who
        .select::<touchpoints::Entity>()
        .filter(touchpoints::Column::PatientId.eq(id))
        .order_by_asc(touchpoints::Column::OccurredAt)
        .all(conn)
        .await?;
    let feedback = who
        .select::<feedback::Entity>()
        .filter(feedback::Column::PatientId.eq(id))
        .order_by_asc(feedback::Column::SubmittedAt)
        .all(conn)
        .await?;
    let follow_ups = who
        .select::<follow_ups::Entity>()
        .filter(follow_ups::Column::PatientId.eq(id))
        .order_by_asc(follow_ups::Column::DueAt)
        .all(conn)
        .await?;
    let access = who
        .select::<audit_log::Entity>()
        .filter(audit_log::Column::PatientId.eq(id))
        .order_by_asc(audit_log::Column::OccurredAt)
        .all(conn)
        .await?;
    let mut write = store.write(who).await?;
    write.audit(super::audit::AuditEntry::new(
        "patient.exported",
        IdKind::Patient,
        id,
        Some(id),
    ));
    let exported_at = write.now;
    write.commit().await?;

    let t = crate::events::timestamp;
    let opt_t = |at: Option<chrono::DateTime<chrono::Utc>>| at.map(t);
    let stage = |id: Uuid| IdKind::Stage.encode(id);
    Ok(json!({
        "format": "journeymap.patient-export.v1",
        "exportedAt": t(exported_at),
        "patient": {
            "id": IdKind::Patient.encode(patient.id),
            "externalId": patient.external_id,
            "givenName": patient.given_name,
            "familyName": patient.family_name,
            "email": patient.email,
            "phone": patient.phone,
            "birthDate": patient.birth_date.map(|d| d.to_string()),
            "preferredChannel": patient.preferred_channel,
            "source": patient.source,
            "tags": patient.tags,
            "consent": { "sms": patient.consent_sms, "email": patient.consent_email, "marketing": patient.consent_marketing },
            "createdAt": t(patient.created_at),
            "updatedAt": t(patient.updated_at),
            "archivedAt": opt_t(patient.archived_at),
            "erasedAt": opt_t(patient.erased_at),
        },
        "journeys": journeys.iter().map(|j| json!({
            "id": IdKind::Journey.encode(j.id),
            "pathwayId": IdKind::Pathway.encode(j.pathway_id),
            "status": j.status,
            "currentStageId": stage(j.current_stage_id),
            "startedAt": t(j.started_at),
            "endedAt": opt_t(j.ended_at),
            "endReason": j.end_reason,
            "history": history.iter().filter(|h| h.journey_id == j.id).map(|h| json!({
                "id": IdKind::StageTransition.encode(h.id),
                "kind": h.kind,
                "fromStageId": h.from_stage_id.map(stage),
                "toStageId": stage(h.to_stage_id),
                "occurredAt": t(h.occurred_at),
                "note": h.note,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "touchpoints": touchpoints.iter().map(|tp| json!({
            "id": IdKind::Touchpoint.encode(tp.id),
            "journeyId": tp.journey_id.map(|j| IdKind::Journey.encode(j)),
            "stageId": tp.stage_id.map(stage),
            "channel": tp.channel,
            "direction": tp.direction,
            "kind": tp.kind,
            "summary": tp.summary,
            "occurredAt": t(tp.occurred_at),
            "emotion": tp.emotion,
            "momentOfTruth": tp.moment_of_truth,
        })).collect::<Vec<_>>(),
        "feedback": feedback.iter().map(|f| json!({
            "id": IdKind::Feedback.encode(f.id),
            "journeyId": f.journey_id.map(|j| IdKind::Journey.encode(j)),
            "stageId": f.stage_id.map(stage),
            "kind": f.kind,
            "score": f.score,
            "comment": f.comment,
            "submittedAt": t(f.submitted_at),
        })).collect::<Vec<_>>(),
        "followUps": follow_ups.iter().map(|f| json!({
            "id": IdKind::FollowUp.encode(f.id),
            "journeyId": IdKind::Journey.encode(f.journey_id),
            "kind": f.kind,
            "status": f.status,
            "dueAt": t(f.due_at),
            "channel": f.channel,
            "note": f.note,
            "completedAt": opt_t(f.completed_at),
            "cancelledAt": opt_t(f.cancelled_at),
        })).collect::<Vec<_>>(),
        "accessLog": access.iter().map(|a| json!({
            "action": a.action,
            "actorKind": a.actor_kind,
            "actorId": a.actor_id.map(|id| match a.actor_kind.as_str() {
                "STAFF" => IdKind::Staff.encode(id),
                _ => IdKind::ApiToken.encode(id),
            }),
            "occurredAt": t(a.occurred_at),
            "requestId": a.request_id,
        })).collect::<Vec<_>>(),
    }))
}
