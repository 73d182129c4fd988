//! Loading what the planner needs to know, for many patients at once: their
//! contact details and preferences, their consents, their recent contacts
//! and replies, and the clinic's policy and templates. A handful of
//! statements however many patients are planned.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use entity::{clinics, follow_ups, outreach_templates, patients, touchpoints};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use super::{
    consent::{self, ConsentSet},
    planner::{ClinicFacts, PatientFacts},
};
use crate::{
    auth::Principal,
    domain::{
        Channel, ConsentPurpose, Direction, DomainError, DomainResult, FollowUpKind,
        FollowUpStatus,
        values::{LocalTime, QuietHours, TimeZone},
    },
};

/// A follow-up's patient, status, purpose, send and completion times.
type PlannedRow = (
    Uuid,
    String,
    String,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

/// How far back contacts and replies are read.
const HISTORY: i64 = 180;
/// Replies within this long after an outbound contact count as answers.
const ANSWER_WINDOW: i64 = 72;

/// The clinic's policy of a stored clinic row.
pub fn policy_of(clinic: &clinics::Model) -> (QuietHours, i32, i32) {
    (
        QuietHours {
            start: LocalTime::stored(&clinic.quiet_start),
            end: LocalTime::stored(&clinic.quiet_end),
        },
        clinic.max_marketing_per_week,
        clinic.min_hours_between_contacts,
    )
}

/// What the planner knows of the caller's clinic.
pub async fn clinic<C: ConnectionTrait>(conn: &C, who: &Principal) -> DomainResult<ClinicFacts> {
    #[allow(clippy::disallowed_methods)] // the principal's own clinic
    let row = clinics::Entity::find_by_id(who.clinic_id)
        .one(conn)
        .await?
        .ok_or(DomainError::not_found("clinic"))?;
    let templates = who
        .select::<outreach_templates::Entity>()
        .all(conn)
        .await?
        .into_iter()
        .filter_map(|t| {
            Some((
                (FollowUpKind::parse(&t.kind)?, Channel::parse(&t.channel)?),
                t.body,
            ))
        })
        .collect();
    let (quiet, max_marketing_per_week, min_hours_between_contacts) = policy_of(&row);
    Ok(ClinicFacts {
        timezone: TimeZone::stored(&row.timezone),
        name: row.name,
        quiet,
        max_marketing_per_week,
        min_hours_between_contacts,
        templates,
    })
}

/// What the planner knows of each of `patients` (patients of other clinics
/// are left out).
pub async fn patients<C: ConnectionTrait>(
    conn: &C,
    who: &Principal,
    patients: &[Uuid],
    now: DateTime<Utc>,
) -> DomainResult<HashMap<Uuid, PatientFacts>> {
    let mut facts: HashMap<Uuid, PatientFacts> = HashMap::new();
    if patients.is_empty() {
        return Ok(facts);
    }
    let mut consents = consent::histories(conn, who, patients).await?;
    let since = now - Duration::days(HISTORY);
    for chunk in patients.chunks(500) {
        for patient in who.by_ids::<patients::Entity, _>(conn, chunk).await? {
            facts.insert(
                patient.id,
                PatientFacts {
                    given_name: patient.given_name.clone(),
                    timezone: patient.timezone.as_deref().map(TimeZone::stored),
                    quiet: match (&patient.quiet_start, &patient.quiet_end) {
                        (Some(start), Some(end)) => Some(QuietHours {
                            start: LocalTime::stored(start),
                            end: LocalTime::stored(end),
                        }),
                        _ => None,
                    },
                    preferred_channel: patient
                        .preferred_channel
                        .as_deref()
                        .and_then(Channel::parse),
                    has_phone: patient.phone.is_some(),
                    has_email: patient.email.is_some(),
                    consents: ConsentSet::of(&consents.remove(&patient.id).unwrap_or_default()),
                    ..Default::default()
                },
            );
        }
        let contacts: Vec<(Uuid, String, String, DateTime<Utc>)> = who
            .select::<touchpoints::Entity>()
            .select_only()
            .column(touchpoints::Column::PatientId)
            .column(touchpoints::Column::Direction)
            .column(touchpoints::Column::Channel)
            .column(touchpoints::Column::OccurredAt)
            .filter(touchpoints::Column::PatientId.is_in(chunk.iter().copied()))
            .filter(touchpoints::Column::OccurredAt.gt(since))
            .into_tuple()
            .all(conn)
            .await?;
        let mut by_patient: HashMap<Uuid, Vec<(Direction, Channel, DateTime<Utc>)>> =
            HashMap::new();
        for (patient, direction, channel, at) in contacts {
            if let (Some(direction), Some(channel)) =
                (Direction::parse(&direction), Channel::parse(&channel))
            {
                by_patient
                    .entry(patient)
                    .or_default()
                    .push((direction, channel, at));
            }
        }
        for (patient, mut contacts) in by_patient {
            let Some(facts) = facts.get_mut(&patient) else {
                continue;
            };
            contacts.sort_by_key(|c| c.2);
            let mut last_outbound: Option<DateTime<Utc>> = None;
            for (direction, channel, at) in contacts {
                match direction {
                    Direction::Outbound => {
                        last_outbound = Some(at);
                        facts.last_outbound = Some(at);
                        if channel.needs_consent() {
                            facts.contacts.push(at);
                        }
                    }
                    Direction::Inbound => {
                        facts.last_inbound = Some(at);
                        if last_outbound.is_some_and(|o| at - o <= Duration::hours(ANSWER_WINDOW)) {
                            *facts.answered.entry(channel).or_default() += 1;
                        }
                    }
                }
            }
        }
        let planned: Vec<PlannedRow> = who
            .select::<follow_ups::Entity>()
            .select_only()
            .column(follow_ups::Column::PatientId)
            .column(follow_ups::Column::Status)
            .column(follow_ups::Column::Purpose)
            .column(follow_ups::Column::SendAt)
            .column(follow_ups::Column::CompletedAt)
            .filter(follow_ups::Column::PatientId.is_in(chunk.iter().copied()))
            .filter(
                follow_ups::Column::Status
                    .is_in([FollowUpStatus::Open.as_str(), FollowUpStatus::Done.as_str()]),
            )
            .filter(follow_ups::Column::Channel.is_in(Channel::CONTACT.map(|c| c.as_str())))
            .filter(
                sea_orm::Condition::any()
                    .add(follow_ups::Column::SendAt.gt(now - Duration::days(8)))
                    .add(follow_ups::Column::CompletedAt.gt(now - Duration::days(8))),
            )
            .into_tuple()
            .all(conn)
            .await?;
        for (patient, status, purpose, send_at, completed_at) in planned {
            let Some(facts) = facts.get_mut(&patient) else {
                continue;
            };
            let at = if status == FollowUpStatus::Done.as_str() {
                completed_at
            } else {
                send_at
            };
            let Some(at) = at else { continue };
            // A done contact is also an outbound touchpoint when it was
            // logged; counting it twice only keeps more distance.
            facts.contacts.push(at);
            if purpose == ConsentPurpose::Marketing.as_str() {
                facts.marketing.push(at);
            }
        }
    }
    Ok(facts)
}
