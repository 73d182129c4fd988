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
    values::{E164Phone, Email},
};
use crate::{
    auth::{Permission, Principal},
    events::{Event, PatientCreated, PatientUpdated},
    ids::{self, PatientId},
};

/// A change to one optional field: leave it, clear it or set it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Change<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
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
    let rows = crate::db::all_rows(store.db.conn(), sort_key().apply(select, page)).await?;
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
    super::access::require(who, Permission::PatientsRead, "reading patients")
}

fn require_write(who: &Principal) -> DomainResult<()> {
    super::access::require(who, Permission::PatientsWrite, "changing patients")
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
        optional(fields.email, &patient.email, |v| Email::parse("email", &v)
            .map(String::from))?
    );
    set!(
        "phone",
        phone,
        optional(fields.phone, &patient.phone, |v| E164Phone::parse(
            "phone", &v
        )
        .map(String::from))?
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
    // Consent is recorded as history by the caller (see `record_legacy_consent`).
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
        timezone: None,
        quiet_start: None,
        quiet_end: None,
        search_text: String::new(),
        archived_at: None,
        erased_at: None,
        created_at: now,
        updated_at: now,
    }
}

/// A new patient of `who`'s clinic from `fields`, validated, not yet
/// stored (for bulk writers such as the CSV import, which insert many rows
/// at once). Consent is left to the caller.
pub(crate) fn prepare_new(
    who: &Principal,
    now: chrono::DateTime<chrono::Utc>,
    mut fields: PatientFields,
) -> DomainResult<patients::Model> {
    if fields.given_name.is_none() {
        return Err(DomainError::invalid("givenName", "is required"));
    }
    if fields.family_name.is_none() {
        return Err(DomainError::invalid("familyName", "is required"));
    }
    fields.consent = None;
    let mut patient = blank(who, now);
    apply(&mut patient, fields)?;
    Ok(patient)
}

/// The names of the fields that `fields` would change on `current`
/// (consent aside), after validation; nothing is written.
pub(crate) fn changes(
    current: &patients::Model,
    mut fields: PatientFields,
) -> DomainResult<Vec<&'static str>> {
    fields.consent = None;
    let mut patient = current.clone();
    apply(&mut patient, fields)
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
    let consent = fields.consent;
    apply(&mut patient, fields)?;
    ensure_external_id_free(&*write.txn, who, patient.external_id.as_deref(), None).await?;
    let patient = insert(&write, patient).await?;
    emit_created(&mut write, &patient);
    let patient = record_legacy_consent(&mut write, patient, consent).await?.0;
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

/// Emits `patient.created` for `patient`, marked with the import that
/// created it, if any.
pub(crate) fn emit_created_by(
    write: &mut super::Write<'_>,
    patient: &patients::Model,
    import_id: Option<&str>,
) {
    write.emit(Event::PatientCreated(PatientCreated {
        patient_id: PatientId(patient.id),
        external_id: patient.external_id.clone(),
        import_id: import_id.map(str::to_string),
    }));
}

fn emit_created(write: &mut super::Write<'_>, patient: &patients::Model) {
    emit_created_by(write, patient, None);
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
    let (patient, _) = update_in(&mut write, current, fields, None).await?;
    write.commit().await?;
    Ok(patient)
}

/// Applies `fields` to `current` in `write` and emits `patient.updated`
/// (marked with `import_id`, if any) when anything changed. Returns the
/// patient as stored and whether it changed.
pub(crate) async fn update_in(
    write: &mut super::Write<'_>,
    current: patients::Model,
    fields: PatientFields,
    import_id: Option<&str>,
) -> DomainResult<(patients::Model, bool)> {
    if current.erased_at.is_some() {
        return Err(DomainError::conflict(
            "the patient was erased and cannot be changed",
        ));
    }
    let mut patient = current.clone();
    let consent = fields.consent;
    let mut changed = apply(&mut patient, fields)?;
    if changed.is_empty() {
        let (patient, consent_changed) = record_legacy_consent(write, current, consent).await?;
        if consent_changed {
            emit_updated(write, &patient, vec!["consent"], import_id);
        }
        return Ok((patient, consent_changed));
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
    let (patient, consent_changed) = record_legacy_consent(write, patient, consent).await?;
    if consent_changed {
        changed.push("consent");
    }
    emit_updated(write, &patient, changed, import_id);
    Ok((patient, true))
}

fn emit_updated(
    write: &mut super::Write<'_>,
    patient: &patients::Model,
    changed: Vec<&str>,
    import_id: Option<&str>,
) {
    write.emit(Event::PatientUpdated(PatientUpdated {
        patient_id: PatientId(patient.id),
        external_id: patient.external_id.clone(),
        changed_fields: changed.iter().map(|f| f.to_string()).collect(),
        import_id: import_id.map(str::to_string),
    }));
}

/// Records what the three booleans of a patient input (`consent {sms email
/// marketing}`) say, as consent history: a `true` gives consent, a `false`
/// withdraws one that is on record. Returns the patient as stored and
/// whether anything changed.
async fn record_legacy_consent(
    write: &mut super::Write<'_>,
    patient: patients::Model,
    consent: Option<Consent>,
) -> DomainResult<(patients::Model, bool)> {
    use super::outreach::{consent as consents, settings};
    let Some(consent) = consent else {
        return Ok((patient, false));
    };
    let history = consents::history(&*write.txn, write.who, patient.id).await?;
    let current = consents::ConsentSet::of(&history);
    let entries: Vec<_> = consents::from_legacy(
        consent.sms,
        consent.email,
        consent.marketing,
        "patient record",
        write.now,
    )
    .into_iter()
    .filter(|entry| {
        entry.granted
            || matches!(
                current.standing(entry.channel, entry.purpose, true),
                consents::Standing::Granted { .. }
            )
    })
    .collect();
    let written = consents::append(write, &patient, entries).await?;
    for entry in &written {
        settings::follow_consent(write, patient.id, entry).await?;
    }
    if written.is_empty() {
        return Ok((patient, false));
    }
    let stored = write
        .who
        .get::<patients::Entity, _>(&*write.txn, patient.id, "patient")
        .await?;
    Ok((stored, true))
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
        Some(current) => (update_in(&mut write, current, fields, None).await?.0, false),
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
            let consent = fields.consent;
            apply(&mut patient, fields)?;
            let patient = insert(&write, patient).await?;
            emit_created(&mut write, &patient);
            (
                record_legacy_consent(&mut write, patient, consent).await?.0,
                true,
            )
        }
    };
    write.commit().await?;
    Ok((patient, created))
}

/// The tags of a stored patient.
pub fn tags_of(patient: &patients::Model) -> Vec<String> {
    serde_json::from_value(patient.tags.clone()).unwrap_or_default()
}
