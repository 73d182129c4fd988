//! What clinics and patients set about outreach: the clinic's policy, a
//! patient's contact preferences and consents, a stage's cadence, the
//! clinic's templates. Each change is audited, and re-plans what it makes
//! wrong.

use chrono::{DateTime, Utc};
use entity::{clinics, consents, outreach_templates, patients, stages};
use sea_orm::{
    ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    sea_query::{Expr, OnConflict},
};
use uuid::Uuid;

use super::{
    Affected,
    consent::{self, ConsentEntry, ConsentSet, Standing},
    facts, replan_patient, templates,
};
use crate::{
    audit::AuditEntry,
    auth::{Permission, Principal},
    domain::{
        Channel, ConsentPurpose, DomainError, DomainResult, FollowUpKind, Store, access, records,
        validate,
        values::{QuietHours, TimeZone},
    },
    ids::{self, IdKind},
};

/// The clinic's outreach policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub quiet: QuietHours,
    pub max_marketing_per_week: i32,
    pub min_hours_between_contacts: i32,
}

/// A change to the clinic's policy; absent parts stay.
#[derive(Debug, Clone, Default)]
pub struct PolicyChange {
    pub quiet: Option<(String, String)>,
    pub max_marketing_per_week: Option<i32>,
    pub min_hours_between_contacts: Option<i32>,
}

/// The caller's clinic's policy.
pub async fn policy(store: &Store, who: &Principal) -> DomainResult<Policy> {
    let clinic = crate::domain::clinics::by_id(&store.db, who.clinic_id).await?;
    let (quiet, max_marketing_per_week, min_hours_between_contacts) = facts::policy_of(&clinic);
    Ok(Policy {
        quiet,
        max_marketing_per_week,
        min_hours_between_contacts,
    })
}

/// Changes the clinic's policy (`pathways:manage`). Plans made from now on
/// follow it.
pub async fn set_policy(
    store: &Store,
    who: &Principal,
    change: PolicyChange,
) -> DomainResult<Policy> {
    access::require(
        who,
        Permission::PathwaysManage,
        "setting the outreach policy",
    )?;
    let quiet = change
        .quiet
        .as_ref()
        .map(|(start, end)| QuietHours::parse("quietHours", start, end))
        .transpose()?;
    if let Some(max) = change.max_marketing_per_week {
        validate::in_range("maxMarketingPerWeek", max, 0..=14)?;
    }
    if let Some(hours) = change.min_hours_between_contacts {
        validate::in_range("minHoursBetweenContacts", hours, 0..=24 * 14)?;
    }
    let mut write = store.write(who).await?;
    #[allow(clippy::disallowed_methods)] // the principal's own clinic
    let mut update = clinics::Entity::update_many().filter(clinics::Column::Id.eq(who.clinic_id));
    if let Some(quiet) = quiet {
        update = update
            .col_expr(clinics::Column::QuietStart, Expr::value(quiet.start.text()))
            .col_expr(clinics::Column::QuietEnd, Expr::value(quiet.end.text()));
    }
    if let Some(max) = change.max_marketing_per_week {
        update = update.col_expr(clinics::Column::MaxMarketingPerWeek, Expr::value(max));
    }
    if let Some(hours) = change.min_hours_between_contacts {
        update = update.col_expr(clinics::Column::MinHoursBetweenContacts, Expr::value(hours));
    }
    write.configuration_changed();
    update.exec(&*write.txn).await?;
    write.audit(AuditEntry::new(
        "clinic.outreach_policy_set",
        IdKind::Clinic,
        who.clinic_id,
        None,
    ));
    write.commit().await?;
    policy(store, who).await
}

/// A patient's contact preferences, as set; `None` falls back to the clinic's.
#[derive(Debug, Clone, Default)]
pub struct PreferencesChange {
    /// `Some(None)` clears it.
    pub timezone: Option<Option<String>>,
    pub preferred_channel: Option<Option<Channel>>,
    pub quiet: Option<Option<(String, String)>>,
}

/// Sets a patient's contact preferences (`patients:write`) and re-plans
/// their open follow-ups.
pub async fn set_preferences(
    store: &Store,
    who: &Principal,
    patient_id: Uuid,
    change: PreferencesChange,
) -> DomainResult<patients::Model> {
    access::require(
        who,
        Permission::PatientsWrite,
        "setting contact preferences",
    )?;
    let timezone = match &change.timezone {
        Some(Some(zone)) => Some(Some(TimeZone::parse("timezone", zone)?.name().to_string())),
        Some(None) => Some(None),
        None => None,
    };
    let quiet = match &change.quiet {
        Some(Some((start, end))) => Some(Some(QuietHours::parse("quietHours", start, end)?)),
        Some(None) => Some(None),
        None => None,
    };
    let mut write = store.write(who).await?;
    let mut patient = records::living_patient(&*write.txn, who, patient_id, "patientId").await?;
    if let Some(zone) = timezone {
        patient.timezone = zone;
    }
    if let Some(channel) = change.preferred_channel {
        patient.preferred_channel = channel.map(|c| c.as_str().to_string());
    }
    if let Some(quiet) = quiet {
        patient.quiet_start = quiet.map(|q| q.start.text());
        patient.quiet_end = quiet.map(|q| q.end.text());
    }
    patient.updated_at = write.now;
    who.update_rows::<patients::Entity>()
        .col_expr(
            patients::Column::Timezone,
            Expr::value(patient.timezone.clone()),
        )
        .col_expr(
            patients::Column::PreferredChannel,
            Expr::value(patient.preferred_channel.clone()),
        )
        .col_expr(
            patients::Column::QuietStart,
            Expr::value(patient.quiet_start.clone()),
        )
        .col_expr(
            patients::Column::QuietEnd,
            Expr::value(patient.quiet_end.clone()),
        )
        .col_expr(patients::Column::UpdatedAt, Expr::value(write.now))
        .filter(patients::Column::Id.eq(patient.id))
        .exec(&*write.txn)
        .await?;
    write.audit(AuditEntry::new(
        "patient.contact_preferences_set",
        IdKind::Patient,
        patient.id,
        Some(patient.id),
    ));
    replan_patient(
        &mut write,
        patient.id,
        Affected::All,
        "contact preferences changed",
    )
    .await?;
    write.commit().await?;
    Ok(patient)
}

/// A consent as a client records it.
#[derive(Debug, Clone)]
pub struct RecordConsent {
    pub patient_id: Uuid,
    pub channel: Channel,
    pub purpose: ConsentPurpose,
    pub granted: bool,
    pub source: String,
    pub occurred_at: Option<DateTime<Utc>>,
}

/// Records a consent given or withdrawn (`patients:write`): appended to the
/// history, `patient.consent_changed` emitted, and what is planned follows
/// at once.
pub async fn record_consent(
    store: &Store,
    who: &Principal,
    input: RecordConsent,
) -> DomainResult<patients::Model> {
    access::require(who, Permission::PatientsWrite, "recording consent")?;
    if !input.channel.needs_consent() {
        return Err(DomainError::invalid(
            "channel",
            "consent is recorded for SMS, EMAIL or PHONE",
        ));
    }
    let source = validate::required_text("source", &input.source, 200)?;
    let mut write = store.write(who).await?;
    let occurred_at = match input.occurred_at {
        Some(at) => validate::past_time("occurredAt", at, write.now)?,
        None => write.now,
    };
    let patient = records::living_patient(&*write.txn, who, input.patient_id, "patientId").await?;
    if input.granted {
        let (address, missing) = match input.channel {
            Channel::Email => (patient.email.is_some(), "an email address"),
            _ => (patient.phone.is_some(), "a phone number"),
        };
        if !address {
            return Err(DomainError::invalid(
                "channel",
                format!(
                    "the patient has no {} for {} consent; add {missing} first",
                    if input.channel == Channel::Email {
                        "email address"
                    } else {
                        "phone number"
                    },
                    input.channel
                ),
            ));
        }
    }
    let written = consent::append(
        &mut write,
        &patient,
        vec![ConsentEntry {
            channel: input.channel,
            purpose: input.purpose,
            granted: input.granted,
            source,
            touchpoint_id: None,
            occurred_at,
        }],
    )
    .await?;
    for entry in &written {
        follow_consent(&mut write, patient.id, entry).await?;
    }
    write.commit().await?;
    records::living_patient(store.db.conn(), who, patient.id, "patientId").await
}

/// Re-plans what a recorded consent changes.
pub(crate) async fn follow_consent(
    write: &mut crate::domain::Write<'_>,
    patient: Uuid,
    entry: &ConsentEntry,
) -> DomainResult<()> {
    if entry.granted {
        replan_patient(write, patient, Affected::Blocked, "consent given").await?;
    } else {
        let why = format!(
            "{} consent for {} withdrawn",
            entry.channel,
            entry.purpose.as_str().to_lowercase()
        );
        replan_patient(
            write,
            patient,
            Affected::OnChannel(entry.channel, entry.purpose),
            &why,
        )
        .await?;
    }
    Ok(())
}

/// A patient's consent on one (channel, purpose) now.
#[derive(Debug, Clone)]
pub struct ConsentNow {
    pub channel: Channel,
    pub purpose: ConsentPurpose,
    pub granted: bool,
    /// When it was given or withdrawn; none for care consent that follows
    /// from an address the patient gave.
    pub at: Option<DateTime<Utc>>,
    pub source: String,
}

/// The current consents of a patient, every (channel, purpose).
pub fn consents_now(patient: &patients::Model, history: &[consents::Model]) -> Vec<ConsentNow> {
    let set = ConsentSet::of(history);
    let mut now = Vec::new();
    for channel in Channel::CONTACT {
        for purpose in ConsentPurpose::ALL {
            let address = match channel {
                Channel::Email => patient.email.is_some(),
                _ => patient.phone.is_some(),
            };
            let (granted, at, source) = match set.standing(channel, *purpose, address) {
                Standing::Granted { at, source } => (true, Some(at), source),
                Standing::Revoked { at, source } => (false, Some(at), source),
                Standing::Unknown if set.allows(channel, *purpose, address) => (
                    true,
                    None,
                    match channel {
                        Channel::Email => "email address given".to_string(),
                        _ => "phone number given".to_string(),
                    },
                ),
                Standing::Unknown => (false, None, "never given".to_string()),
            };
            now.push(ConsentNow {
                channel,
                purpose: *purpose,
                granted,
                at,
                source,
            });
        }
    }
    now
}

/// Sets a stage's cadence (`pathways:manage`): days after entering it when
/// rebooking is due, and days without contact after which a journey there
/// is won back. `None` turns either off.
pub async fn set_cadence(
    store: &Store,
    who: &Principal,
    stage_id: Uuid,
    rebook_after_days: Option<i32>,
    win_back_after_days: Option<i32>,
) -> DomainResult<stages::Model> {
    access::require(who, Permission::PathwaysManage, "setting a stage's cadence")?;
    for (field, days) in [
        ("rebookAfterDays", rebook_after_days),
        ("winBackAfterDays", win_back_after_days),
    ] {
        if let Some(days) = days {
            validate::in_range(field, days, 1..=3 * 365)?;
        }
    }
    let mut write = store.write(who).await?;
    let mut stage = who
        .get::<stages::Entity, _>(&*write.txn, stage_id, "stage")
        .await
        .map_err(|e| e.referenced_by("stageId"))?;
    stage.rebook_after_days = rebook_after_days;
    stage.win_back_after_days = win_back_after_days;
    who.update_rows::<stages::Entity>()
        .col_expr(
            stages::Column::RebookAfterDays,
            Expr::value(rebook_after_days),
        )
        .col_expr(
            stages::Column::WinBackAfterDays,
            Expr::value(win_back_after_days),
        )
        .filter(stages::Column::Id.eq(stage.id))
        .exec(&*write.txn)
        .await?;
    write.audit(AuditEntry::new(
        "stage.cadence_set",
        IdKind::Stage,
        stage.id,
        None,
    ));
    write.commit().await?;
    Ok(stage)
}

/// One of the clinic's templates, or a default.
#[derive(Debug, Clone)]
pub struct Template {
    pub kind: FollowUpKind,
    pub channel: Channel,
    pub body: String,
    /// False while the default is in use.
    pub custom: bool,
}

/// Every template of the clinic: its own where it set one, defaults elsewhere.
pub async fn templates_of(store: &Store, who: &Principal) -> DomainResult<Vec<Template>> {
    access::require_any(
        who,
        &[Permission::JourneysRead, Permission::PathwaysManage],
        "reading outreach templates",
    )?;
    let own = who
        .select::<outreach_templates::Entity>()
        .order_by_asc(outreach_templates::Column::Kind)
        .all(store.db.conn())
        .await?;
    let mut all = Vec::new();
    for kind in FollowUpKind::ALL {
        for channel in Channel::CONTACT {
            let custom = own
                .iter()
                .find(|t| t.kind == kind.as_str() && t.channel == channel.as_str());
            all.push(Template {
                kind: *kind,
                channel,
                body: custom
                    .map(|t| t.body.clone())
                    .unwrap_or_else(|| templates::default_body(*kind, channel).to_string()),
                custom: custom.is_some(),
            });
        }
    }
    Ok(all)
}

/// Sets the clinic's template for (kind, channel) (`pathways:manage`); plans
/// made from now on use it.
pub async fn set_template(
    store: &Store,
    who: &Principal,
    kind: FollowUpKind,
    channel: Channel,
    body: &str,
) -> DomainResult<Template> {
    access::require(
        who,
        Permission::PathwaysManage,
        "setting outreach templates",
    )?;
    if !channel.needs_consent() {
        return Err(DomainError::invalid(
            "channel",
            "templates are for SMS, EMAIL or PHONE",
        ));
    }
    let body = templates::validate("body", channel, body)?;
    let mut write = store.write(who).await?;
    let row = outreach_templates::Model {
        id: ids::new_id(),
        clinic_id: who.clinic_id,
        kind: kind.as_str().to_string(),
        channel: channel.as_str().to_string(),
        body: body.clone(),
        updated_at: write.now,
    };
    write.configuration_changed();
    outreach_templates::Entity::insert(row.clone().into_active_model())
        .on_conflict(
            OnConflict::columns([
                outreach_templates::Column::ClinicId,
                outreach_templates::Column::Kind,
                outreach_templates::Column::Channel,
            ])
            .update_columns([
                outreach_templates::Column::Body,
                outreach_templates::Column::UpdatedAt,
            ])
            .to_owned(),
        )
        .exec_without_returning(&*write.txn)
        .await?;
    write.audit(AuditEntry::new(
        "clinic.outreach_template_set",
        IdKind::Clinic,
        who.clinic_id,
        None,
    ));
    write.commit().await?;
    Ok(Template {
        kind,
        channel,
        body,
        custom: true,
    })
}
