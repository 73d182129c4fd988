//! The planner: for one follow-up and what is known about its patient, the
//! channel, the moment it may be sent, its explanation, its draft message and
//! its priority. Pure: facts in, a plan out (loading the facts is
//! [`super::facts`]).

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveTime, TimeZone as _, Utc};

use super::{
    consent::{ConsentSet, Standing},
    templates::{self, Variables},
};
use crate::domain::{
    Channel, ConsentPurpose, FeedbackKind, FollowUpKind, FollowUpStatus,
    values::{QuietHours, TimeZone},
};

/// Why a follow-up is planned, with the facts its explanation is built from.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// A stage rule: `delay_hours` after entering `stage`.
    StageRule {
        entered_at: DateTime<Utc>,
        delay_hours: i32,
    },
    /// A detractor's feedback.
    ServiceRecovery {
        kind: FeedbackKind,
        score: i16,
        at: DateTime<Utc>,
    },
    /// Past the stage's target with no contact since entering it.
    StalledNudge {
        entered_at: DateTime<Utc>,
        target_hours: i32,
        stalled_since: DateTime<Utc>,
    },
    /// The stage's rebooking cadence came due.
    RebookingDue {
        entered_at: DateTime<Utc>,
        days: i32,
    },
    /// A promoter's feedback.
    ReviewRequest {
        kind: FeedbackKind,
        score: i16,
        at: DateTime<Utc>,
    },
    /// No touchpoint in either direction for `days`.
    WinBack {
        last_contact: DateTime<Utc>,
        days: i32,
    },
    /// Planned by a person.
    Manual {
        by: Option<String>,
        at: DateTime<Utc>,
    },
}

impl Reason {
    /// The follow-up kind this reason plans.
    pub fn kind(&self) -> FollowUpKind {
        match self {
            Reason::StageRule { .. } => FollowUpKind::StageRule,
            Reason::ServiceRecovery { .. } => FollowUpKind::ServiceRecovery,
            Reason::StalledNudge { .. } => FollowUpKind::StalledNudge,
            Reason::RebookingDue { .. } => FollowUpKind::RebookingDue,
            Reason::ReviewRequest { .. } => FollowUpKind::ReviewRequest,
            Reason::WinBack { .. } => FollowUpKind::WinBack,
            Reason::Manual { .. } => FollowUpKind::Manual,
        }
    }
}

/// What to plan.
#[derive(Debug, Clone)]
pub struct Draft {
    pub reason: Reason,
    /// When the clinic wants it done.
    pub due_at: DateTime<Utc>,
    /// When it is planned: what is due earlier is sent from then on, not in
    /// the past (when the patient's hours may have allowed it but not now).
    pub not_before: DateTime<Utc>,
    /// The rule's channel (or the one a person chose).
    pub channel: Channel,
    /// A person chose `channel`: it wins when allowed.
    pub channel_chosen: bool,
    /// The journey's stage and pathway, by name.
    pub stage_name: String,
    pub stage_position: i32,
    pub pathway_name: String,
}

/// What is known about the patient, for planning.
#[derive(Debug, Clone, Default)]
pub struct PatientFacts {
    pub given_name: String,
    /// The patient's own zone, else the clinic's.
    pub timezone: Option<TimeZone>,
    /// The patient's own quiet hours, else the clinic's.
    pub quiet: Option<QuietHours>,
    pub preferred_channel: Option<Channel>,
    pub has_phone: bool,
    pub has_email: bool,
    pub consents: ConsentSet,
    /// Inbound touchpoints within 72 h after an outbound one, by channel.
    pub answered: HashMap<Channel, u32>,
    /// Outreach contacts made or planned: outbound touchpoints, and the send
    /// times of open and done follow-ups.
    pub contacts: Vec<DateTime<Utc>>,
    /// The marketing contacts among them.
    pub marketing: Vec<DateTime<Utc>>,
    pub last_inbound: Option<DateTime<Utc>>,
    pub last_outbound: Option<DateTime<Utc>>,
}

impl PatientFacts {
    /// The patient wrote in and has not been answered yet: spacing between
    /// contacts does not hold them back.
    fn wrote_in(&self) -> bool {
        match (self.last_inbound, self.last_outbound) {
            (Some(inbound), Some(outbound)) => inbound > outbound,
            (Some(_), None) => true,
            _ => false,
        }
    }

    /// Remembers a planned contact, so the next plan keeps its distance.
    pub fn planned(&mut self, plan: &Plan) {
        if plan.status == FollowUpStatus::Open && plan.channel.needs_consent() {
            self.contacts.push(plan.send_at);
            if plan.purpose == ConsentPurpose::Marketing {
                self.marketing.push(plan.send_at);
            }
        }
    }
}

/// What is known about the clinic, for planning.
#[derive(Debug, Clone)]
pub struct ClinicFacts {
    pub name: String,
    pub timezone: TimeZone,
    pub quiet: QuietHours,
    pub max_marketing_per_week: i32,
    pub min_hours_between_contacts: i32,
    /// The clinic's own templates by (kind, channel); defaults fill the rest.
    pub templates: HashMap<(FollowUpKind, Channel), String>,
}

/// A planned follow-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub kind: FollowUpKind,
    pub purpose: ConsentPurpose,
    pub channel: Channel,
    /// OPEN, or BLOCKED when no channel is allowed.
    pub status: FollowUpStatus,
    pub blocked_reason: Option<String>,
    pub send_at: DateTime<Utc>,
    pub explanation: String,
    pub message: String,
    pub priority: i16,
}

/// Plans `draft` for the patient at `now`.
pub fn plan(draft: &Draft, patient: &PatientFacts, clinic: &ClinicFacts) -> Plan {
    let kind = draft.reason.kind();
    let purpose = kind.purpose();
    let zone = patient.timezone.unwrap_or(clinic.timezone);
    let (channel, blocked_reason) = choose_channel(draft, patient, purpose);
    let send_at = if blocked_reason.is_none() && channel.needs_consent() {
        send_time(
            draft.due_at.max(draft.not_before),
            patient,
            clinic,
            purpose,
            zone,
        )
    } else {
        draft.due_at
    };
    let message = templates::render(
        clinic
            .templates
            .get(&(kind, channel))
            .map(String::as_str)
            .unwrap_or_else(|| templates::default_body(kind, channel)),
        &Variables {
            given_name: &patient.given_name,
            clinic_name: &clinic.name,
            stage_name: &draft.stage_name,
            pathway_name: &draft.pathway_name,
            due_date: &local_day(send_at, zone, "%a %-d %b"),
        },
        channel,
        purpose,
    );
    Plan {
        kind,
        purpose,
        channel,
        status: if blocked_reason.is_some() {
            FollowUpStatus::Blocked
        } else {
            FollowUpStatus::Open
        },
        blocked_reason,
        send_at,
        explanation: explain(draft, zone),
        message,
        priority: kind.priority(),
    }
}

/// The channel for this patient and purpose, or why there is none: the one a
/// person chose, else the patient's preference, else the channel they answer
/// most, else the rule's, else any allowed one — always consented, always
/// with an address.
fn choose_channel(
    draft: &Draft,
    patient: &PatientFacts,
    purpose: ConsentPurpose,
) -> (Channel, Option<String>) {
    if !draft.channel.needs_consent() {
        // In person, portal, video: a task for the clinic, no consent asked.
        return (draft.channel, None);
    }
    let allowed = |channel: Channel| {
        let address = match channel {
            Channel::Email => patient.has_email,
            _ => patient.has_phone,
        };
        address && patient.consents.allows(channel, purpose, address)
    };
    if draft.channel_chosen && allowed(draft.channel) {
        return (draft.channel, None);
    }
    if let Some(preferred) = patient.preferred_channel
        && preferred.needs_consent()
        && allowed(preferred)
    {
        return (preferred, None);
    }
    let mut answered: Vec<(Channel, u32)> = patient
        .answered
        .iter()
        .filter(|(channel, count)| **count > 0 && allowed(**channel))
        .map(|(channel, count)| (*channel, *count))
        .collect();
    answered.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    if let Some((channel, _)) = answered.first() {
        return (*channel, None);
    }
    if allowed(draft.channel) {
        return (draft.channel, None);
    }
    if let Some(channel) = Channel::CONTACT.into_iter().find(|c| allowed(*c)) {
        return (channel, None);
    }
    (draft.channel, Some(why_blocked(patient, purpose)))
}

/// Why no channel is allowed, channel by channel, in plain words.
fn why_blocked(patient: &PatientFacts, purpose: ConsentPurpose) -> String {
    let purpose_name = match purpose {
        ConsentPurpose::Care => "care",
        ConsentPurpose::Marketing => "marketing",
    };
    let mut reasons = Vec::new();
    for channel in Channel::CONTACT {
        let (address, name) = match channel {
            Channel::Sms => (patient.has_phone, "SMS"),
            Channel::Email => (patient.has_email, "email"),
            _ => (patient.has_phone, "phone"),
        };
        let reason = match patient.consents.standing(channel, purpose, address) {
            Standing::Revoked { .. } => format!("{name} consent for {purpose_name} withdrawn"),
            _ if !address => match channel {
                Channel::Email => "no email address".to_string(),
                _ => format!("no phone number for {name}"),
            },
            _ => format!("no {name} consent for {purpose_name}"),
        };
        if !reasons.contains(&reason) {
            reasons.push(reason);
        }
    }
    reasons.join("; ")
}

/// The first moment at or after `due` that is outside the patient's quiet
/// hours and within the clinic's frequency limits.
fn send_time(
    due: DateTime<Utc>,
    patient: &PatientFacts,
    clinic: &ClinicFacts,
    purpose: ConsentPurpose,
    zone: TimeZone,
) -> DateTime<Utc> {
    let quiet = patient.quiet.unwrap_or(clinic.quiet);
    let spacing = Duration::hours(clinic.min_hours_between_contacts.max(0).into());
    let week = Duration::days(7);
    let max_marketing = clinic.max_marketing_per_week.max(0) as usize;
    let wrote_in = patient.wrote_in();
    let mut at = due;
    // Each rule can only push the time later; a few rounds settle it.
    for _ in 0..64 {
        let before = at;
        at = outside_quiet_hours(at, quiet, zone);
        if !wrote_in && spacing > Duration::zero() {
            let close = patient
                .contacts
                .iter()
                .filter(|c| (**c - at).abs() < spacing)
                .max();
            if let Some(contact) = close {
                at = (*contact + spacing).max(at);
            }
        }
        if purpose == ConsentPurpose::Marketing {
            let near: Vec<&DateTime<Utc>> = patient
                .marketing
                .iter()
                .filter(|m| (**m - at).abs() < week)
                .collect();
            if max_marketing == 0 {
                // No marketing at all: the plan still exists, far away.
                at += week * 52;
            } else if near.len() >= max_marketing
                && let Some(latest) = near.iter().max()
            {
                at = (**latest + week).max(at);
            }
        }
        if at == before {
            break;
        }
    }
    at
}

/// `at`, or the end of the quiet hours it falls in, in `zone`.
fn outside_quiet_hours(at: DateTime<Utc>, quiet: QuietHours, zone: TimeZone) -> DateTime<Utc> {
    let local = at.with_timezone(&zone.0);
    let time = local.time();
    if !quiet.contains(time) {
        return at;
    }
    // The quiet hours end at `quiet.end` today, or tomorrow when they span
    // midnight and it is still evening.
    let mut day = local.date_naive();
    if quiet.start > quiet.end && time >= quiet.start.0 {
        day = day.succ_opt().unwrap_or(day);
    }
    let end = day.and_time(quiet.end.0);
    // A wall time that a DST change skips comes an hour later.
    zone.0
        .from_local_datetime(&end)
        .earliest()
        .or_else(|| {
            zone.0
                .from_local_datetime(&(end + Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(at)
        .max(at)
}

/// A day in `zone`, formatted.
fn local_day(at: DateTime<Utc>, zone: TimeZone, format: &str) -> String {
    at.with_timezone(&zone.0).format(format).to_string()
}

/// A duration in whole days or hours, as a sentence says it ("3 days").
fn span(duration: Duration) -> String {
    let hours = duration.num_hours().max(0);
    if hours >= 48 {
        format!("{} days", hours / 24)
    } else if hours >= 24 {
        "1 day".to_string()
    } else if hours == 1 {
        "1 hour".to_string()
    } else {
        format!("{hours} hours")
    }
}

/// A target as an adjective ("5-day", "36-hour").
fn target(hours: i32) -> String {
    if hours % 24 == 0 {
        format!("{}-day", hours / 24)
    } else {
        format!("{hours}-hour")
    }
}

/// One plain sentence built from the facts; never free text from notes.
fn explain(draft: &Draft, zone: TimeZone) -> String {
    let day = |at: DateTime<Utc>| local_day(at, zone, "%-d %b");
    let stage = &draft.stage_name;
    match &draft.reason {
        Reason::StageRule {
            entered_at,
            delay_hours,
        } => format!(
            "{stage} follow-up, {} after the patient entered the stage on {}",
            span(Duration::hours((*delay_hours).into())),
            day(*entered_at)
        ),
        Reason::ServiceRecovery { kind, score, at } => format!(
            "Gave {kind} {score} on {}; make it right within 24 hours",
            day(*at)
        ),
        Reason::StalledNudge {
            entered_at,
            target_hours,
            stalled_since,
        } => format!(
            "Stalled {} past the {} {stage} target; no contact since {}",
            span(draft.due_at - *stalled_since),
            target(*target_hours),
            day(*entered_at)
        ),
        Reason::RebookingDue { entered_at, days } => format!(
            "{days} days since {stage} on {}: time to rebook {}",
            day(*entered_at),
            draft.pathway_name
        ),
        Reason::ReviewRequest { kind, score, at } => format!(
            "Gave {kind} {score} on {}: a promoter who may leave a review",
            day(*at)
        ),
        Reason::WinBack { last_contact, days } => format!(
            "No contact in either direction since {} (the {stage} win-back time is {days} days)",
            day(*last_contact)
        ),
        Reason::Manual { by, at } => match by {
            Some(name) => format!("Planned by {name} on {}", day(*at)),
            None => format!("Planned by hand on {}", day(*at)),
        },
    }
}

/// Noon, as a time of day (for tests and seeds).
pub fn noon() -> NaiveTime {
    NaiveTime::from_hms_opt(12, 0, 0).unwrap_or(NaiveTime::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::outreach::consent::ConsentSet;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn clinic() -> ClinicFacts {
        ClinicFacts {
            name: "Glow".into(),
            timezone: TimeZone::parse("tz", "America/Los_Angeles").unwrap(),
            quiet: QuietHours::standard(),
            max_marketing_per_week: 1,
            min_hours_between_contacts: 24,
            templates: HashMap::new(),
        }
    }

    fn patient(consents: &[(Channel, ConsentPurpose)]) -> PatientFacts {
        let mut set = ConsentSet::default();
        for (channel, purpose) in consents {
            set.grant(*channel, *purpose);
        }
        PatientFacts {
            given_name: "Ana".into(),
            timezone: Some(TimeZone::parse("tz", "America/New_York").unwrap()),
            has_phone: true,
            has_email: true,
            consents: set,
            ..Default::default()
        }
    }

    fn draft(reason: Reason, due: DateTime<Utc>, channel: Channel) -> Draft {
        Draft {
            reason,
            due_at: due,
            not_before: due - Duration::days(2),
            channel,
            channel_chosen: false,
            stage_name: "Consultation".into(),
            stage_position: 1,
            pathway_name: "Injectables".into(),
        }
    }

    #[test]
    fn a_follow_up_due_at_night_is_sent_at_eight_in_the_patients_zone() {
        // 23:00 in New York is 04:00 UTC the next day.
        let due = at("2026-11-25T04:00:00Z");
        let plan = plan(
            &draft(
                Reason::StageRule {
                    entered_at: due - Duration::hours(48),
                    delay_hours: 48,
                },
                due,
                Channel::Sms,
            ),
            &patient(&[(Channel::Sms, ConsentPurpose::Care)]),
            &clinic(),
        );
        assert_eq!(plan.status, FollowUpStatus::Open);
        assert_eq!(plan.channel, Channel::Sms);
        // 08:00 in New York on 25 Nov is 13:00 UTC.
        assert_eq!(plan.send_at, at("2026-11-25T13:00:00Z"));
        assert!(plan.message.contains("Ana"), "{}", plan.message);
    }

    #[test]
    fn what_was_due_earlier_is_sent_from_the_planning_moment_inside_the_patients_hours() {
        // Due yesterday afternoon, planned at 02:00 in New York (07:00 UTC):
        // sent at 08:00 there, not at a past moment that looks allowed.
        let planned = at("2026-11-25T07:00:00Z");
        let mut late = draft(
            Reason::StageRule {
                entered_at: planned - Duration::hours(40),
                delay_hours: 24,
            },
            planned - Duration::hours(16),
            Channel::Sms,
        );
        late.not_before = planned;
        let plan = plan(
            &late,
            &patient(&[(Channel::Sms, ConsentPurpose::Care)]),
            &clinic(),
        );
        assert_eq!(plan.send_at, at("2026-11-25T13:00:00Z"));
    }

    #[test]
    fn without_sms_consent_sms_is_never_chosen() {
        let due = at("2026-11-25T15:00:00Z");
        let plan = plan(
            &draft(
                Reason::StageRule {
                    entered_at: due,
                    delay_hours: 0,
                },
                due,
                Channel::Sms,
            ),
            &patient(&[]),
            &clinic(),
        );
        // Care email needs no record when an address was given.
        assert_eq!(plan.channel, Channel::Email);
        let mut only_phone = patient(&[]);
        only_phone.has_email = false;
        only_phone.has_phone = true;
        let marketing = plan_for(
            Reason::ReviewRequest {
                kind: FeedbackKind::Nps,
                score: 10,
                at: due,
            },
            &only_phone,
        );
        assert_eq!(marketing.status, FollowUpStatus::Blocked);
        assert!(
            marketing
                .blocked_reason
                .as_deref()
                .unwrap()
                .contains("no SMS consent for marketing"),
            "{:?}",
            marketing.blocked_reason
        );
    }

    fn plan_for(reason: Reason, patient: &PatientFacts) -> Plan {
        let due = at("2026-11-25T15:00:00Z");
        plan(&draft(reason, due, Channel::Sms), patient, &clinic())
    }

    #[test]
    fn the_patients_preference_then_their_answers_then_the_rule() {
        let mut ana = patient(&[
            (Channel::Sms, ConsentPurpose::Care),
            (Channel::Email, ConsentPurpose::Care),
        ]);
        let stage_rule = Reason::StageRule {
            entered_at: at("2026-11-24T15:00:00Z"),
            delay_hours: 24,
        };
        assert_eq!(plan_for(stage_rule.clone(), &ana).channel, Channel::Sms);
        ana.answered.insert(Channel::Email, 3);
        assert_eq!(plan_for(stage_rule.clone(), &ana).channel, Channel::Email);
        ana.preferred_channel = Some(Channel::Phone);
        assert_eq!(plan_for(stage_rule.clone(), &ana).channel, Channel::Phone);
    }

    #[test]
    fn frequency_limits_hold() {
        let mut ana = patient(&[
            (Channel::Sms, ConsentPurpose::Care),
            (Channel::Sms, ConsentPurpose::Marketing),
        ]);
        let due = at("2026-11-25T15:00:00Z");
        ana.contacts.push(due - Duration::hours(2));
        ana.last_outbound = Some(due - Duration::hours(2));
        let care = plan_for(
            Reason::StageRule {
                entered_at: due,
                delay_hours: 0,
            },
            &ana,
        );
        assert_eq!(care.send_at, due + Duration::hours(22));
        // Unless the patient wrote in since.
        ana.last_inbound = Some(due - Duration::hours(1));
        let reply = plan_for(
            Reason::StageRule {
                entered_at: due,
                delay_hours: 0,
            },
            &ana,
        );
        assert_eq!(reply.send_at, due);
        // One marketing message a week.
        ana.marketing.push(due - Duration::days(2));
        let review = plan_for(
            Reason::ReviewRequest {
                kind: FeedbackKind::Nps,
                score: 10,
                at: due,
            },
            &ana,
        );
        assert!(
            review.send_at >= due + Duration::days(5),
            "{}",
            review.send_at
        );
        assert!(
            review.message.ends_with("Reply STOP to opt out"),
            "{}",
            review.message
        );
        assert!(review.message.chars().count() <= 320);
    }

    #[test]
    fn explanations_are_plain_facts() {
        let entered = at("2026-11-20T17:00:00Z");
        let plan = plan(
            &draft(
                Reason::StalledNudge {
                    entered_at: entered,
                    target_hours: 120,
                    stalled_since: entered + Duration::hours(120),
                },
                entered + Duration::hours(120 + 72),
                Channel::Sms,
            ),
            &patient(&[(Channel::Sms, ConsentPurpose::Care)]),
            &clinic(),
        );
        assert_eq!(
            plan.explanation,
            "Stalled 3 days past the 5-day Consultation target; no contact since 20 Nov"
        );
    }
}
