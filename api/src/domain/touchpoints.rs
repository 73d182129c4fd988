//! Touchpoints: every interaction with a patient, the stage it happened in and
//! how the patient felt.

use chrono::{DateTime, Utc};
use entity::{follow_ups, journeys, staff, touchpoints};
use sea_orm::{ColumnTrait, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter};
use uuid::Uuid;

use super::{
    Channel, ConsentPurpose, Direction, DomainError, DomainResult, Store, access,
    follow_ups as follow_up_rules,
    journeys::stage_at,
    page::{Keyset, Sort},
    records, validate,
};
use crate::{
    auth::{Permission, Principal},
    events::{Event, TouchpointLogged},
    ids::{self, JourneyId, PatientId, StageId, TouchpointId},
};

/// Touchpoints list newest first.
pub const SORT: Sort = Sort::Descending;

/// A touchpoint as a client logs it.
#[derive(Debug, Clone)]
pub struct LogTouchpoint {
    pub patient_id: Uuid,
    pub journey_id: Option<Uuid>,
    pub channel: Channel,
    pub direction: Direction,
    pub kind: String,
    pub summary: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub emotion: Option<i32>,
    pub moment_of_truth: bool,
    pub staff_id: Option<Uuid>,
    pub external_ref: Option<String>,
    /// An open follow-up of the same patient that this touchpoint fulfils.
    pub completes_follow_up_id: Option<Uuid>,
}

/// The cursor of a touchpoint in touchpoint lists.
pub fn keyset(touchpoint: &touchpoints::Model) -> Keyset {
    Keyset::at(touchpoint.occurred_at, touchpoint.id)
}

/// Records a touchpoint; with a journey, it is filed under the stage the
/// journey was in when it happened.
pub async fn log(
    store: &Store,
    who: &Principal,
    input: LogTouchpoint,
) -> DomainResult<touchpoints::Model> {
    access::require(who, Permission::JourneysWrite, "logging touchpoints")?;
    let kind = validate::required_text("kind", &input.kind, 64)?;
    let summary = validate::long_text("summary", input.summary.as_deref())?;
    let emotion = input
        .emotion
        .map(|e| validate::in_range("emotion", e, -2..=2).map(|e| e as i16))
        .transpose()?;
    let external_ref =
        validate::optional_text("externalRef", input.external_ref.as_deref(), 128, false)?;

    let mut write = store.write(who).await?;
    let occurred_at = match input.occurred_at {
        Some(at) => validate::past_time("occurredAt", at, write.now)?,
        None => write.now,
    };
    let patient = records::living_patient(&*write.txn, who, input.patient_id, "patientId").await?;
    let stage_id = match input.journey_id {
        None => None,
        Some(journey_id) => {
            let journey = records::of_patient::<journeys::Entity, _>(
                &*write.txn,
                who,
                journey_id,
                "journeyId",
                patient.id,
            )
            .await?;
            if occurred_at < journey.started_at {
                return Err(DomainError::invalid(
                    "occurredAt",
                    "must not be before the journey started",
                ));
            }
            stage_at(&*write.txn, who, &journey, occurred_at).await?
        }
    };
    if let Some(staff_id) = input.staff_id {
        who.get::<staff::Entity, _>(&*write.txn, staff_id, "staff member")
            .await
            .map_err(|e| e.referenced_by("staffId"))?;
    }
    if let Some(external_ref) = external_ref.as_deref() {
        let taken = who
            .select::<touchpoints::Entity>()
            .filter(touchpoints::Column::ExternalRef.eq(external_ref))
            .count(&*write.txn)
            .await?;
        if taken > 0 {
            return Err(DomainError::conflict_on(
                "externalRef",
                format!("a touchpoint with externalRef {external_ref:?} was already logged"),
            ));
        }
    }
    let follow_up = match input.completes_follow_up_id {
        None => None,
        Some(id) => Some(
            records::of_patient::<follow_ups::Entity, _>(
                &*write.txn,
                who,
                id,
                "completesFollowUpId",
                patient.id,
            )
            .await?,
        ),
    };

    let touchpoint = touchpoints::Model {
        id: ids::new_id(),
        clinic_id: who.clinic_id,
        patient_id: patient.id,
        journey_id: input.journey_id,
        stage_id,
        channel: input.channel.as_str().to_string(),
        direction: input.direction.as_str().to_string(),
        kind,
        summary,
        occurred_at,
        staff_id: input.staff_id.or(who.actor.staff_id()),
        emotion,
        moment_of_truth: input.moment_of_truth,
        external_ref,
        created_at: write.now,
    };
    touchpoints::Entity::insert(touchpoint.clone().into_active_model())
        .exec_without_returning(&*write.txn)
        .await?;
    write.emit(Event::TouchpointLogged(TouchpointLogged {
        touchpoint_id: TouchpointId(touchpoint.id),
        patient_id: PatientId(touchpoint.patient_id),
        journey_id: touchpoint.journey_id.map(JourneyId),
        stage_id: touchpoint.stage_id.map(StageId),
        channel: touchpoint.channel.clone(),
        direction: touchpoint.direction.clone(),
        kind: touchpoint.kind.clone(),
        emotion: touchpoint.emotion,
        moment_of_truth: touchpoint.moment_of_truth,
        occurred_at: touchpoint.occurred_at,
    }));
    if let Some(follow_up) = follow_up {
        follow_up_rules::complete_in(&mut write, follow_up, Some(touchpoint.id))
            .await
            .map_err(|e| e.referenced_by("completesFollowUpId"))?;
    }
    if input.direction == Direction::Inbound && input.channel == Channel::Sms {
        opt_out_by_reply(&mut write, &patient, &touchpoint).await?;
    }
    write.commit().await?;
    Ok(touchpoint)
}

/// An inbound text that is only STOP (or UNSUBSCRIBE, …) withdraws SMS
/// consent for every purpose, with the touchpoint as its source; START or
/// UNSTOP gives back what the last STOP took. Either re-plans at once.
async fn opt_out_by_reply(
    write: &mut super::Write<'_>,
    patient: &entity::patients::Model,
    touchpoint: &touchpoints::Model,
) -> DomainResult<()> {
    use super::outreach::consent::{self, ConsentEntry};
    let Some(granted) = touchpoint.summary.as_deref().and_then(consent::keyword) else {
        return Ok(());
    };
    let purposes: Vec<ConsentPurpose> = if granted {
        // What the last STOP withdrew, or care texts when nothing is known.
        let history = consent::history(&*write.txn, write.who, patient.id).await?;
        let last_stop = history
            .iter()
            .filter(|r| {
                r.channel == Channel::Sms.as_str() && !r.granted && r.touchpoint_id.is_some()
            })
            .map(|r| r.occurred_at)
            .max();
        let withdrawn: Vec<ConsentPurpose> = history
            .iter()
            .filter(|r| Some(r.occurred_at) == last_stop && r.channel == Channel::Sms.as_str())
            .filter_map(|r| ConsentPurpose::parse(&r.purpose))
            .collect();
        let restorable: Vec<ConsentPurpose> = withdrawn
            .into_iter()
            .filter(|purpose| {
                // Given before the STOP: it comes back.
                history.iter().any(|r| {
                    r.channel == Channel::Sms.as_str()
                        && r.purpose == purpose.as_str()
                        && r.granted
                        && last_stop.is_some_and(|stop| r.occurred_at <= stop)
                })
            })
            .collect();
        if restorable.is_empty() {
            vec![ConsentPurpose::Care]
        } else {
            restorable
        }
    } else {
        ConsentPurpose::ALL.to_vec()
    };
    let source = if granted { "START reply" } else { "STOP reply" };
    let entries = purposes
        .into_iter()
        .map(|purpose| ConsentEntry {
            channel: Channel::Sms,
            purpose,
            granted,
            source: source.to_string(),
            touchpoint_id: Some(touchpoint.id),
            occurred_at: touchpoint.occurred_at,
        })
        .collect();
    let written = consent::append(write, patient, entries).await?;
    for entry in &written {
        super::outreach::settings::follow_consent(write, patient.id, entry).await?;
    }
    Ok(())
}
