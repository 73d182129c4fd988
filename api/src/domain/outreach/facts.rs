//! Loading what the planner needs to know, for many patients at once: their
//! contact details and preferences, their consents, their recent contacts
//! and replies, and the clinic's policy and templates. A handful of
//! statements however many patients are planned.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use entity::{clinics, consents, follow_ups, outreach_templates, patients, touchpoints};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, QueryTrait,
    sea_query::{Expr, SelectStatement, SimpleExpr, UnionType},
};
use uuid::Uuid;

use super::{
    consent::{ConsentSet, Recorded},
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

/// Which of the planner's reads of a patient a row of [`patients_read`]
/// answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The patient's contact details and preferences.
    Patient = 0,
    /// One entry of the patient's consent history.
    Consent = 1,
    /// One recent touchpoint (direction, channel, when).
    Contact = 2,
    /// One open or done follow-up of the last eight days.
    Planned = 3,
}

impl Part {
    fn of(code: i32) -> Option<Self> {
        [Self::Patient, Self::Consent, Self::Contact, Self::Planned]
            .into_iter()
            .find(|part| *part as i32 == code)
    }

    /// The row's `part` column: a literal, so that PostgreSQL types it.
    fn column(self) -> SimpleExpr {
        Expr::cust((self as i32).to_string())
    }
}

/// An empty column of a branch of [`patients_read`].
fn none() -> SimpleExpr {
    Expr::cust("NULL")
}

/// One statement for everything the planner reads of the patients of
/// `chunk` (a stage move plans for one): their rows, consent histories,
/// contacts since `since` and follow-ups around `now`, as one `UNION ALL`
/// whose branches share the columns `part`, `patient_id`, `s1`–`s5` (text),
/// `b1`, `b2`, `at1`, `at2` and `u1`. Four round trips were four statements
/// of every move's transaction. The consent branch comes second so that
/// PostgreSQL finds every column's type in the first two branches.
fn patients_read(
    who: &Principal,
    chunk: &[Uuid],
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> SelectStatement {
    let ids = || chunk.iter().copied();
    let mut read = who
        .select::<patients::Entity>()
        .select_only()
        .expr_as(Part::Patient.column(), "part")
        .column_as(patients::Column::Id, "patient_id")
        .column_as(patients::Column::GivenName, "s1")
        .column_as(patients::Column::Timezone, "s2")
        .column_as(patients::Column::QuietStart, "s3")
        .column_as(patients::Column::QuietEnd, "s4")
        .column_as(patients::Column::PreferredChannel, "s5")
        .expr_as(patients::Column::Phone.is_not_null(), "b1")
        .expr_as(patients::Column::Email.is_not_null(), "b2")
        .expr_as(none(), "at1")
        .expr_as(none(), "at2")
        .expr_as(none(), "u1")
        .filter(patients::Column::Id.is_in(ids()))
        .into_query();
    let consents = who
        .select::<consents::Entity>()
        .select_only()
        .expr(Part::Consent.column())
        .column(consents::Column::PatientId)
        .column(consents::Column::Channel)
        .column(consents::Column::Purpose)
        .column(consents::Column::Source)
        .expr(none())
        .expr(none())
        .column(consents::Column::Granted)
        .expr(none())
        .column(consents::Column::OccurredAt)
        .column(consents::Column::RecordedAt)
        .column(consents::Column::Id)
        .filter(consents::Column::PatientId.is_in(ids()))
        .into_query();
    let contacts = who
        .select::<touchpoints::Entity>()
        .select_only()
        .expr(Part::Contact.column())
        .column(touchpoints::Column::PatientId)
        .column(touchpoints::Column::Direction)
        .column(touchpoints::Column::Channel)
        .exprs([none(), none(), none(), none(), none()])
        .column(touchpoints::Column::OccurredAt)
        .exprs([none(), none()])
        .filter(touchpoints::Column::PatientId.is_in(ids()))
        .filter(touchpoints::Column::OccurredAt.gt(since))
        .into_query();
    let planned = who
        .select::<follow_ups::Entity>()
        .select_only()
        .expr(Part::Planned.column())
        .column(follow_ups::Column::PatientId)
        .column(follow_ups::Column::Status)
        .column(follow_ups::Column::Purpose)
        .exprs([none(), none(), none(), none(), none()])
        .column(follow_ups::Column::SendAt)
        .column(follow_ups::Column::CompletedAt)
        .expr(none())
        .filter(follow_ups::Column::PatientId.is_in(ids()))
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
        .into_query();
    read.union(UnionType::All, consents)
        .union(UnionType::All, contacts)
        .union(UnionType::All, planned);
    read
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
    let since = now - Duration::days(HISTORY);
    for chunk in patients.chunks(500) {
        let read = conn
            .get_database_backend()
            .build(&patients_read(who, chunk, since, now));
        let rows = conn.query_all_raw(read).await?;
        let mut consents: HashMap<Uuid, Vec<ConsentRow>> = HashMap::new();
        let mut contacts: HashMap<Uuid, Vec<(Direction, Channel, DateTime<Utc>)>> = HashMap::new();
        let mut planned: Vec<PlannedRow> = Vec::new();
        let mut people = Vec::new();
        for row in &rows {
            let part: i32 = row.try_get("", "part")?;
            let patient: Uuid = row.try_get("", "patient_id")?;
            let text = |column: &str| row.try_get::<Option<String>>("", column);
            match Part::of(part) {
                Some(Part::Patient) => people.push((
                    patient,
                    PatientFacts {
                        given_name: text("s1")?.unwrap_or_default(),
                        timezone: text("s2")?.as_deref().map(TimeZone::stored),
                        quiet: match (text("s3")?, text("s4")?) {
                            (Some(start), Some(end)) => Some(QuietHours {
                                start: LocalTime::stored(&start),
                                end: LocalTime::stored(&end),
                            }),
                            _ => None,
                        },
                        preferred_channel: text("s5")?.as_deref().and_then(Channel::parse),
                        has_phone: row.try_get("", "b1")?,
                        has_email: row.try_get("", "b2")?,
                        ..Default::default()
                    },
                )),
                Some(Part::Consent) => consents.entry(patient).or_default().push(ConsentRow {
                    id: row.try_get("", "u1")?,
                    channel: text("s1")?.unwrap_or_default(),
                    purpose: text("s2")?.unwrap_or_default(),
                    source: text("s3")?.unwrap_or_default(),
                    granted: row.try_get("", "b1")?,
                    occurred_at: row.try_get("", "at1")?,
                    recorded_at: row.try_get("", "at2")?,
                }),
                Some(Part::Contact) => {
                    let (Some(direction), Some(channel)) = (
                        text("s1")?.as_deref().and_then(Direction::parse),
                        text("s2")?.as_deref().and_then(Channel::parse),
                    ) else {
                        continue;
                    };
                    contacts.entry(patient).or_default().push((
                        direction,
                        channel,
                        row.try_get("", "at1")?,
                    ));
                }
                Some(Part::Planned) => planned.push((
                    patient,
                    text("s1")?.unwrap_or_default(),
                    text("s2")?.unwrap_or_default(),
                    row.try_get("", "at1")?,
                    row.try_get("", "at2")?,
                )),
                None => {}
            }
        }
        for (patient, mut known) in people {
            known.consents = ConsentSet::fold(
                consents
                    .get(&patient)
                    .into_iter()
                    .flatten()
                    .map(ConsentRow::recorded),
            );
            facts.insert(patient, known);
        }
        for (patient, mut contacts) in contacts {
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

/// One consent entry of [`patients_read`].
struct ConsentRow {
    id: Uuid,
    channel: String,
    purpose: String,
    source: String,
    granted: bool,
    occurred_at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
}

impl ConsentRow {
    fn recorded(&self) -> Recorded<'_> {
        Recorded {
            id: self.id,
            channel: &self.channel,
            purpose: &self.purpose,
            granted: self.granted,
            source: &self.source,
            occurred_at: self.occurred_at,
            recorded_at: self.recorded_at,
        }
    }
}
