//! The deterministic demo clinic, "Glow Aesthetics & Wellness" (slug `glow`):
//! three pathways whose journey maps tell a story (see [`clinic`]), at any
//! size. The same seed gives the same clinic; times are laid out backwards from
//! the hour the seeding runs, so stalls and overdue follow-ups are current.
//!
//! Seeding is a bulk import of history: it writes rows in batches (one
//! transaction per batch) and no events, since nothing happened "live".

mod clinic;

use std::fmt;

use chrono::{DateTime, Duration, DurationRound, NaiveDate, Utc};
use entity::{
    clinics, consents, feedback, follow_up_rules, follow_ups, journeys, pathways, patients, staff,
    stage_transitions, stages, touchpoints,
};
use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, IntoActiveModel, QueryFilter, sea_query::Expr,
};
use serde_json::json;
use uuid::Uuid;

use self::clinic::{PATHWAYS, PathwaySpec, StageSpec};
use crate::{
    db::Db,
    domain::{
        Direction, DomainResult, FeedbackKind, FollowUpKind, FollowUpStatus, JourneyStatus,
        StageCategory, TransitionKind, outreach, outreach::consent,
    },
};

/// The demo clinic's slug.
pub const DEMO_SLUG: &str = "glow";
/// The demo clinic's name.
pub const DEMO_NAME: &str = "Glow Aesthetics & Wellness";
/// Patients in the demo clinic unless told otherwise.
/// The demo clinic's owner: the staff sign-in `serve --demo` prints.
pub const DEMO_LOGIN_EMAIL: &str = "maya@glow.example";

pub const DEFAULT_PATIENTS: u32 = 600;
/// Patients written per transaction.
const BATCH: usize = 1000;
/// Days over which patients arrive.
const HISTORY_DAYS: i64 = 300;

/// What to seed.
#[derive(Debug, Clone)]
pub struct SeedOptions {
    pub patients: u32,
    pub seed: u64,
}

impl Default for SeedOptions {
    fn default() -> Self {
        Self {
            patients: DEFAULT_PATIENTS,
            seed: 42,
        }
    }
}

/// How many rows were written.
#[derive(Debug, Default, Clone)]
pub struct SeedReport {
    pub patients: usize,
    pub journeys: usize,
    pub transitions: usize,
    pub touchpoints: usize,
    pub feedback: usize,
    pub follow_ups: usize,
    /// Open follow-ups planned (channel, send time, explanation, draft).
    pub planned: usize,
}

impl fmt::Display for SeedReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seeded {DEMO_NAME}: {} patients, {} journeys, {} stage transitions, {} touchpoints, {} feedback, {} follow-ups ({} open, planned)",
            self.patients,
            self.journeys,
            self.transitions,
            self.touchpoints,
            self.feedback,
            self.follow_ups,
            self.planned
        )
    }
}

/// A deterministic id: UUIDv7 with the record's own time and seeded randomness.
fn id_at(rng: &mut StdRng, at: DateTime<Utc>) -> Uuid {
    let mut random = [0u8; 10];
    rng.fill_bytes(&mut random);
    uuid::Builder::from_unix_timestamp_millis(at.timestamp_millis().max(0) as u64, &random)
        .into_uuid()
}

/// A seeded stage: its row, its rules and its behaviour.
struct SeededStage {
    row: stages::Model,
    rules: Vec<follow_up_rules::Model>,
    spec: &'static StageSpec,
}

struct SeededPathway {
    row: pathways::Model,
    stages: Vec<SeededStage>,
    spec: &'static PathwaySpec,
}

/// Rows of one batch of patients.
#[derive(Default)]
struct Batch {
    patients: Vec<patients::Model>,
    journeys: Vec<journeys::Model>,
    transitions: Vec<stage_transitions::Model>,
    touchpoints: Vec<touchpoints::Model>,
    feedback: Vec<feedback::Model>,
    follow_ups: Vec<follow_ups::Model>,
    consents: Vec<consents::Model>,
}

/// Seeds the demo clinic into `db`.
pub async fn demo(db: &Db, options: &SeedOptions) -> DomainResult<SeedReport> {
    let mut rng = StdRng::seed_from_u64(options.seed);
    let now = crate::domain::now()
        .duration_trunc(Duration::hours(1))
        .unwrap_or_else(|_| crate::domain::now());
    let founded = now - Duration::days(HISTORY_DAYS + 30);

    let clinic = clinics::Model {
        id: id_at(&mut rng, founded),
        name: DEMO_NAME.into(),
        slug: DEMO_SLUG.into(),
        timezone: "America/Los_Angeles".into(),
        quiet_start: "21:00".into(),
        quiet_end: "08:00".into(),
        max_marketing_per_week: 1,
        min_hours_between_contacts: 24,
        created_at: founded,
    };
    let staff_rows: Vec<staff::Model> = clinic::STAFF
        .iter()
        .map(|(name, email, role)| staff::Model {
            id: id_at(&mut rng, founded),
            clinic_id: clinic.id,
            email: (*email).into(),
            name: (*name).into(),
            role: (*role).into(),
            password_hash: None,
            disabled_at: None,
            created_at: founded,
        })
        .collect();
    let pathways = build_pathways(&mut rng, clinic.id, founded);

    let txn = db.begin_write().await?;
    crate::domain::clinics::insert(&*txn, &clinic).await?;
    crate::db::insert_all(&*txn, staff_rows.clone()).await?;
    for pathway in &pathways {
        pathway
            .row
            .clone()
            .into_active_model()
            .insert(&*txn)
            .await?;
        crate::db::insert_all(
            &*txn,
            pathway.stages.iter().map(|s| s.row.clone()).collect(),
        )
        .await?;
        crate::db::insert_all(
            &*txn,
            pathway
                .stages
                .iter()
                .flat_map(|s| s.rules.clone())
                .collect(),
        )
        .await?;
    }
    txn.commit().await?;

    let coordinators: Vec<Uuid> = staff_rows
        .iter()
        .filter(|s| s.role == "COORDINATOR")
        .map(|s| s.id)
        .collect();
    let practitioners: Vec<Uuid> = staff_rows
        .iter()
        .filter(|s| s.role == "PRACTITIONER")
        .map(|s| s.id)
        .collect();
    let people = People {
        coordinators,
        practitioners,
    };

    let mut report = SeedReport::default();
    let total = options.patients as usize;
    let mut made = 0;
    while made < total {
        let size = BATCH.min(total - made);
        let mut batch = Batch::default();
        for index in made..made + size {
            seed_patient(
                &mut rng, &mut batch, clinic.id, &pathways, &people, index, now,
            );
        }
        report.patients += batch.patients.len();
        report.journeys += batch.journeys.len();
        report.transitions += batch.transitions.len();
        report.touchpoints += batch.touchpoints.len();
        report.feedback += batch.feedback.len();
        report.follow_ups += batch.follow_ups.len();
        let txn = db.begin_write().await?;
        crate::db::insert_all(&*txn, batch.patients).await?;
        crate::db::insert_all(&*txn, batch.consents).await?;
        crate::db::insert_all(&*txn, batch.journeys).await?;
        crate::db::insert_all(&*txn, batch.transitions).await?;
        crate::db::insert_all(&*txn, batch.touchpoints).await?;
        crate::db::insert_all(&*txn, batch.feedback).await?;
        crate::db::insert_all(&*txn, batch.follow_ups).await?;
        txn.commit().await?;
        made += size;
        if total >= 20_000 && made % 20_000 == 0 {
            tracing::info!(patients = made, of = total, "seeding");
        }
    }
    // The open follow-ups get their channel, send time, explanation and
    // draft the way the domain plans them, from what was seeded.
    let store = crate::domain::Store::new(db.clone());
    report.planned = crate::domain::outreach::plan_seeded(&store, clinic.id).await?;
    // The sweeper ran before today too: stalls, rebookings and win-backs that
    // came due by ten and by three days ago were planned then.
    for days_ago in [10, 3] {
        report.planned += outreach::sweep::plan_time_based_as_of(
            &store,
            Some(now - Duration::days(days_ago)),
            Some(clinic.id),
            u64::from(u32::MAX),
        )
        .await?;
    }
    // History is imported, not lived: what came due before today counts as
    // announced, so a first start announces one day's worth, not months.
    let yesterday = now - Duration::days(1);
    for (notified, due) in [
        (
            follow_ups::Column::DueNotifiedAt,
            follow_ups::Column::SendAt,
        ),
        (
            follow_ups::Column::OverdueNotifiedAt,
            follow_ups::Column::DueAt,
        ),
    ] {
        crate::auth::Principal::system(clinic.id)
            .update_rows::<follow_ups::Entity>()
            .col_expr(notified, Expr::col(due))
            .filter(follow_ups::Column::Status.eq(FollowUpStatus::Open.as_str()))
            .filter(due.lte(yesterday))
            .filter(notified.is_null())
            .exec(db.conn())
            .await?;
    }
    // Fresh statistics, so the query planner knows the tables' new sizes.
    db.conn().execute_unprepared("ANALYZE").await?;
    Ok(report)
}

fn build_pathways(rng: &mut StdRng, clinic_id: Uuid, founded: DateTime<Utc>) -> Vec<SeededPathway> {
    PATHWAYS
        .iter()
        .map(|spec| {
            let pathway_id = id_at(rng, founded);
            let stages = spec
                .stages
                .iter()
                .enumerate()
                .map(|(position, stage)| {
                    let stage_id = id_at(rng, founded);
                    let rules = stage
                        .rules
                        .iter()
                        .map(|rule| follow_up_rules::Model {
                            id: id_at(rng, founded),
                            clinic_id,
                            stage_id,
                            delay_hours: rule.delay_hours,
                            channel: rule.channel.as_str().into(),
                            note: Some(rule.note.into()),
                            cancel_on_stage_exit: rule.cancel_on_stage_exit,
                            created_at: founded,
                        })
                        .collect();
                    SeededStage {
                        row: stages::Model {
                            id: stage_id,
                            clinic_id,
                            pathway_id,
                            key: stage.key.into(),
                            name: stage.name.into(),
                            category: stage.category.as_str().into(),
                            position: position as i32,
                            target_hours: stage.target_hours,
                            terminal: stage.terminal,
                            rebook_after_days: stage.rebook_after_days,
                            win_back_after_days: stage.win_back_after_days,
                            created_at: founded,
                        },
                        rules,
                        spec: stage,
                    }
                })
                .collect();
            SeededPathway {
                row: pathways::Model {
                    id: pathway_id,
                    clinic_id,
                    name: spec.name.into(),
                    description: Some(spec.description.into()),
                    archived_at: None,
                    created_at: founded,
                    updated_at: founded,
                },
                stages,
                spec,
            }
        })
        .collect()
}

struct People {
    coordinators: Vec<Uuid>,
    practitioners: Vec<Uuid>,
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn hours(h: f64) -> Duration {
    Duration::seconds((h * 3600.0) as i64)
}

fn between(rng: &mut StdRng, from: DateTime<Utc>, to: DateTime<Utc>) -> DateTime<Utc> {
    let span = (to - from).num_seconds().max(1);
    from + Duration::seconds(rng.random_range(0..span))
}

fn seed_patient(
    rng: &mut StdRng,
    batch: &mut Batch,
    clinic_id: Uuid,
    pathways: &[SeededPathway],
    people: &People,
    index: usize,
    now: DateTime<Utc>,
) {
    let created_at = now - Duration::seconds(rng.random_range(3600..HISTORY_DAYS * 86_400));
    let given = *pick(rng, clinic::GIVEN_NAMES);
    let family = *pick(rng, clinic::FAMILY_NAMES);
    let email = format!(
        "{}.{}{}@{}",
        given.to_lowercase(),
        family.to_lowercase(),
        index,
        pick(rng, &["example.com", "example.net", "example.org"])
    );
    let phone = format!(
        "+1{}55501{:02}",
        pick(rng, clinic::AREA_CODES),
        rng.random_range(0..100)
    );
    let tags: Vec<&str> = [
        "vip",
        "membership",
        "first-time",
        "referral-program",
        "sensitive-skin",
    ]
    .into_iter()
    .filter(|_| rng.random_bool(0.12))
    .collect();
    let birth_date = NaiveDate::from_ymd_opt(
        rng.random_range(1962..2004),
        rng.random_range(1..13),
        rng.random_range(1..29),
    );
    let search_text = format!(
        "{} {} {} {}",
        given.to_lowercase(),
        family.to_lowercase(),
        email,
        phone.trim_start_matches('+')
    );
    let patient = patients::Model {
        id: id_at(rng, created_at),
        clinic_id,
        external_id: rng
            .random_bool(0.6)
            .then(|| format!("crm-{}", 100_000 + index)),
        given_name: given.into(),
        family_name: family.into(),
        email: Some(email),
        phone: Some(phone),
        birth_date,
        preferred_channel: Some(pick(rng, &["SMS", "EMAIL", "PHONE"]).to_string()),
        source: Some(pick(rng, clinic::SOURCES).to_string()),
        tags: json!(tags),
        consent_sms: rng.random_bool(0.8),
        consent_email: rng.random_bool(0.9),
        consent_marketing: rng.random_bool(0.4),
        // Most patients live near the clinic; some travel in from the east.
        timezone: rng.random_bool(0.15).then(|| {
            pick(
                rng,
                &["America/Denver", "America/Chicago", "America/New_York"],
            )
            .to_string()
        }),
        quiet_start: None,
        quiet_end: None,
        search_text,
        archived_at: None,
        erased_at: None,
        created_at,
        updated_at: created_at,
    };

    let first = weighted_pathway(rng, pathways, None);
    let start = created_at + Duration::minutes(rng.random_range(0..120));
    let end = simulate(rng, batch, &patient, &pathways[first], people, start, now);
    if rng.random_bool(0.15) {
        let second = weighted_pathway(rng, pathways, Some(first));
        let start = end.unwrap_or(start) + Duration::days(rng.random_range(3..60));
        if start < now {
            simulate(rng, batch, &patient, &pathways[second], people, start, now);
        }
    }
    // The intake form's answers, as the consent history records them.
    for entry in consent::from_legacy(
        patient.consent_sms,
        patient.consent_email,
        patient.consent_marketing,
        "intake form",
        patient.created_at,
    )
    .into_iter()
    .filter(|entry| entry.granted)
    {
        batch.consents.push(consents::Model {
            id: id_at(rng, patient.created_at),
            clinic_id,
            patient_id: patient.id,
            channel: entry.channel.as_str().into(),
            purpose: entry.purpose.as_str().into(),
            granted: true,
            source: entry.source,
            touchpoint_id: None,
            occurred_at: entry.occurred_at,
            recorded_at: entry.occurred_at,
            actor_kind: "SYSTEM".into(),
            actor_id: None,
        });
    }
    batch.patients.push(patient);
}

fn weighted_pathway(rng: &mut StdRng, pathways: &[SeededPathway], except: Option<usize>) -> usize {
    let total: f64 = pathways
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != except)
        .map(|(_, p)| p.spec.weight)
        .sum();
    let mut draw = rng.random_range(0.0..total);
    for (i, pathway) in pathways.iter().enumerate() {
        if Some(i) == except {
            continue;
        }
        if draw < pathway.spec.weight {
            return i;
        }
        draw -= pathway.spec.weight;
    }
    pathways.len() - 1
}

fn is_unhappy(kind: FeedbackKind, score: i16) -> bool {
    match kind {
        FeedbackKind::Nps => score <= 6,
        FeedbackKind::Csat => score <= 2,
        FeedbackKind::Ces => score >= 5,
        FeedbackKind::Comment => false,
    }
}

/// What a coordinator plans by hand.
const MANUAL_NOTES: &[&str] = &[
    "Send the price list she asked for",
    "Check how the bruising settled",
    "Confirm the deposit was received",
    "Ask whether the numbing cream helped",
    "Offer the cancelled Thursday slot",
];

/// A follow-up the seeder writes, before its id and times are fixed; what is
/// not set here the domain plans later (`outreach::plan_seeded`).
struct FollowUpDraft {
    kind: FollowUpKind,
    stage_id: Uuid,
    rule_id: Option<Uuid>,
    channel: String,
    note: Option<String>,
    assignee: Uuid,
    due_at: DateTime<Utc>,
    plan_key: Option<String>,
}

impl FollowUpDraft {
    fn new(kind: FollowUpKind, stage_id: Uuid, assignee: Uuid, due_at: DateTime<Utc>) -> Self {
        Self {
            kind,
            stage_id,
            rule_id: None,
            channel: crate::domain::Channel::Phone.as_str().into(),
            note: None,
            assignee,
            due_at,
            plan_key: None,
        }
    }

    /// The open follow-up, planned at `created_at`.
    fn at(
        self,
        rng: &mut StdRng,
        clinic_id: Uuid,
        journey_id: Uuid,
        patient_id: Uuid,
        created_at: DateTime<Utc>,
    ) -> follow_ups::Model {
        follow_ups::Model {
            id: id_at(rng, created_at),
            clinic_id,
            journey_id,
            patient_id,
            stage_id: Some(self.stage_id),
            rule_id: self.rule_id,
            kind: self.kind.as_str().into(),
            purpose: self.kind.purpose().as_str().into(),
            due_at: self.due_at,
            channel: self.channel,
            note: self.note,
            assignee_staff_id: Some(self.assignee),
            status: FollowUpStatus::Open.as_str().into(),
            send_at: Some(self.due_at),
            explanation: None,
            message: None,
            priority: self.kind.priority(),
            blocked_reason: None,
            due_notified_at: None,
            skipped_at: None,
            skip_reason: None,
            plan_key: self.plan_key,
            completed_at: None,
            completed_by_touchpoint_id: None,
            cancelled_at: None,
            cancel_reason: None,
            overdue_notified_at: None,
            created_at,
        }
    }
}

const DROP_REASONS: &[&str] = &[
    "price",
    "no reply",
    "went elsewhere",
    "no-show",
    "downtime",
    "moved away",
];

/// Plays one journey from `start` to now (or its end); returns when it ended.
fn simulate(
    rng: &mut StdRng,
    batch: &mut Batch,
    patient: &patients::Model,
    pathway: &SeededPathway,
    people: &People,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let clinic_id = patient.clinic_id;
    let journey_id = id_at(rng, start);
    let owner = *pick(rng, &people.coordinators);
    let mut transitions = Vec::new();
    let mut follow_ups: Vec<follow_ups::Model> = Vec::new();
    let transition = |rng: &mut StdRng,
                      kind: TransitionKind,
                      from: Option<(Uuid, DateTime<Utc>)>,
                      to: Uuid,
                      at: DateTime<Utc>,
                      note: Option<String>| stage_transitions::Model {
        id: id_at(rng, at),
        clinic_id,
        journey_id,
        pathway_id: pathway.row.id,
        kind: kind.as_str().into(),
        from_stage_id: from.map(|(s, _)| s),
        to_stage_id: to,
        seconds_in_from_stage: from.map(|(_, entered)| (at - entered).num_seconds().max(0)),
        occurred_at: at,
        actor_kind: "STAFF".into(),
        actor_id: Some(owner),
        note,
    };

    let mut index = 0usize;
    let mut entered = start;
    let mut by_hand = None;
    let mut status = JourneyStatus::Active;
    let mut ended_at = None;
    let mut end_reason = None;
    transitions.push(transition(
        rng,
        TransitionKind::Started,
        None,
        pathway.stages[0].row.id,
        start,
        None,
    ));
    for _visit in 0..24 {
        let stage = &pathway.stages[index];
        let spec = stage.spec;
        for rule in &stage.rules {
            let due = entered + Duration::hours(rule.delay_hours.into());
            follow_ups.push(
                FollowUpDraft {
                    rule_id: Some(rule.id),
                    channel: rule.channel.clone(),
                    note: rule.note.clone(),
                    ..FollowUpDraft::new(FollowUpKind::StageRule, stage.row.id, owner, due)
                }
                .at(rng, clinic_id, journey_id, patient.id, entered),
            );
        }
        if spec.terminal {
            status = JourneyStatus::Completed;
            ended_at = Some(entered);
            break;
        }
        let dwell = spec.dwell_hours * (spec.spread * normal(rng)).exp();
        let exit = entered + hours(dwell.max(0.25));
        let current = exit > now;
        let stalled_now = current
            && spec
                .target_hours
                .is_some_and(|t| now > entered + Duration::hours(t.into()));

        // Touchpoints while in the stage; a stalled journey is sometimes forgotten.
        let silent = stalled_now && rng.random_bool(spec.silent_when_stalled);
        let count = if silent {
            0
        } else {
            rng.random_range(spec.touchpoints.0..=spec.touchpoints.1)
        };
        let until = exit.min(now);
        let mut stage_touchpoints = Vec::new();
        for n in 0..count {
            let at = if silent {
                entered
            } else {
                between(rng, entered, until)
            };
            let staff = match spec.category {
                StageCategory::Consultation | StageCategory::Treatment => {
                    *pick(rng, &people.practitioners)
                }
                _ => *pick(rng, &people.coordinators),
            };
            let emotion = rng
                .random_bool(0.85)
                .then(|| (spec.emotion + 0.8 * normal(rng)).round().clamp(-2.0, 2.0) as i16);
            // A journey begins with the patient reaching out.
            let direction = if (index == 0 && n == 0) || rng.random_bool(0.5) {
                Direction::Inbound
            } else {
                Direction::Outbound
            };
            stage_touchpoints.push(touchpoints::Model {
                id: id_at(rng, at),
                clinic_id,
                patient_id: patient.id,
                journey_id: Some(journey_id),
                stage_id: Some(stage.row.id),
                channel: pick(rng, spec.channels).as_str().into(),
                direction: direction.as_str().into(),
                kind: pick(rng, spec.kinds).to_string(),
                summary: (!spec.summaries.is_empty() && rng.random_bool(0.7))
                    .then(|| pick(rng, spec.summaries).to_string()),
                occurred_at: at,
                staff_id: Some(staff),
                emotion,
                moment_of_truth: rng.random_bool(spec.moment_of_truth_rate),
                external_ref: None,
                created_at: at,
            });
        }

        if current {
            // Now and then a coordinator plans one by hand (still to do).
            if rng.random_bool(0.04) {
                let by = *pick(rng, &people.coordinators);
                let planned = (now - Duration::minutes(rng.random_range(60..7 * 24 * 60)))
                    .max(entered)
                    .min(now);
                let due = now + Duration::hours(rng.random_range(-48..72));
                by_hand = Some(
                    FollowUpDraft {
                        channel: pick(rng, spec.channels).as_str().into(),
                        note: Some(pick(rng, MANUAL_NOTES).to_string()),
                        ..FollowUpDraft::new(FollowUpKind::Manual, stage.row.id, by, due)
                    }
                    .at(rng, clinic_id, journey_id, patient.id, planned),
                );
            }
            batch.touchpoints.extend(stage_touchpoints);
            break;
        }

        // Feedback on the way out of the stage.
        if let Some(feedback_spec) = &spec.feedback
            && rng.random_bool(feedback_spec.rate)
        {
            let score = *pick(rng, feedback_spec.scores);
            let pool = if is_unhappy(feedback_spec.kind, score) {
                feedback_spec.negative_comments
            } else {
                feedback_spec.positive_comments
            };
            let at = exit - Duration::minutes(rng.random_range(5..600)).min(exit - entered);
            let touchpoint = stage_touchpoints.last().map(|t| t.id);
            // As the domain does: one open service-recovery call per journey.
            let recovery_open = follow_ups.iter().any(|f| {
                f.kind == FollowUpKind::ServiceRecovery.as_str()
                    && f.status == FollowUpStatus::Open.as_str()
            });
            if feedback_spec.kind.is_detractor(score) && !recovery_open {
                follow_ups.push(
                    FollowUpDraft {
                        channel: outreach::default_channel(FollowUpKind::ServiceRecovery)
                            .as_str()
                            .into(),
                        note: Some(format!("Service recovery: {} {score}", feedback_spec.kind)),
                        ..FollowUpDraft::new(
                            FollowUpKind::ServiceRecovery,
                            stage.row.id,
                            owner,
                            at + Duration::hours(24),
                        )
                    }
                    .at(rng, clinic_id, journey_id, patient.id, at),
                );
            }
            // As the domain does: a promoter is asked for a review once per journey.
            let asked = follow_ups
                .iter()
                .any(|f| f.kind == FollowUpKind::ReviewRequest.as_str());
            if feedback_spec.kind.is_promoter(score) && !asked {
                follow_ups.push(
                    FollowUpDraft {
                        channel: outreach::default_channel(FollowUpKind::ReviewRequest)
                            .as_str()
                            .into(),
                        plan_key: Some(crate::domain::follow_ups::review_request_key(journey_id)),
                        ..FollowUpDraft::new(
                            FollowUpKind::ReviewRequest,
                            stage.row.id,
                            owner,
                            at + Duration::hours(24),
                        )
                    }
                    .at(rng, clinic_id, journey_id, patient.id, at),
                );
            }
            batch.feedback.push(feedback::Model {
                id: id_at(rng, at),
                clinic_id,
                patient_id: patient.id,
                journey_id: Some(journey_id),
                stage_id: Some(stage.row.id),
                touchpoint_id: touchpoint.filter(|_| rng.random_bool(0.5)),
                staff_id: stage_touchpoints.last().and_then(|t| t.staff_id),
                kind: feedback_spec.kind.as_str().into(),
                score: Some(score),
                comment: (!pool.is_empty() && rng.random_bool(0.6))
                    .then(|| pick(rng, pool).to_string()),
                submitted_at: at,
            });
        }
        batch.touchpoints.extend(stage_touchpoints);

        // Leaving the stage settles its follow-ups: those due while the
        // patient was here were mostly done; the rest are cancelled when their
        // rule says so, as the domain does.
        for follow_up in follow_ups
            .iter_mut()
            .filter(|f| f.stage_id == Some(stage.row.id))
        {
            let cancels = stage
                .rules
                .iter()
                .any(|r| Some(r.id) == follow_up.rule_id && r.cancel_on_stage_exit);
            if follow_up.status != FollowUpStatus::Open.as_str() || !cancels {
                continue;
            }
            if follow_up.due_at <= exit && !rng.random_bool(spec.follow_up_neglect) {
                let done =
                    (follow_up.due_at + Duration::minutes(rng.random_range(0..12 * 60))).min(exit);
                follow_up.status = FollowUpStatus::Done.as_str().into();
                follow_up.completed_at = Some(done);
            } else {
                follow_up.status = FollowUpStatus::Cancelled.as_str().into();
                follow_up.cancelled_at = Some(exit);
                follow_up.cancel_reason = Some("journey left the stage".into());
            }
        }

        if rng.random_bool(spec.drop_rate) {
            transitions.push(transition(
                rng,
                TransitionKind::Dropped,
                Some((stage.row.id, entered)),
                stage.row.id,
                exit,
                None,
            ));
            status = JourneyStatus::Dropped;
            ended_at = Some(exit);
            end_reason = Some(pick(rng, DROP_REASONS).to_string());
            break;
        }
        let back = index > 0 && rng.random_bool(spec.back_rate);
        let next = if back { index - 1 } else { index + 1 };
        let kind = if back {
            TransitionKind::Backward
        } else {
            TransitionKind::Forward
        };
        transitions.push(transition(
            rng,
            kind,
            Some((stage.row.id, entered)),
            pathway.stages[next].row.id,
            exit,
            None,
        ));
        index = next;
        entered = exit;
    }

    // Follow-ups: done (mostly, on time or a little late), still open (some
    // overdue), or cancelled when the journey ended.
    for follow_up in follow_ups
        .iter_mut()
        .filter(|f| f.status == FollowUpStatus::Open.as_str())
    {
        let stage_spec = pathway
            .stages
            .iter()
            .find(|s| Some(s.row.id) == follow_up.stage_id)
            .map(|s| s.spec);
        let neglect = stage_spec.map_or(0.1, |s| s.follow_up_neglect);
        let horizon = ended_at.unwrap_or(now);
        if follow_up.due_at <= horizon && !rng.random_bool(neglect) {
            let done =
                (follow_up.due_at + Duration::minutes(rng.random_range(0..24 * 60))).min(horizon);
            follow_up.status = FollowUpStatus::Done.as_str().into();
            follow_up.completed_at = Some(done);
        } else if let Some(end) = ended_at {
            follow_up.status = FollowUpStatus::Cancelled.as_str().into();
            follow_up.cancelled_at = Some(end);
            follow_up.cancel_reason = Some(
                if status == JourneyStatus::Dropped {
                    "journey dropped"
                } else {
                    "journey completed"
                }
                .into(),
            );
        }
    }

    follow_ups.extend(by_hand);

    let current_stage = &pathway.stages[index];
    let active = status == JourneyStatus::Active;
    let version = transitions.len() as i32;
    batch.journeys.push(journeys::Model {
        id: journey_id,
        clinic_id,
        patient_id: patient.id,
        pathway_id: pathway.row.id,
        current_stage_id: current_stage.row.id,
        status: status.as_str().into(),
        stage_entered_at: entered,
        stalls_at: if active {
            current_stage
                .row
                .target_hours
                .map(|h| entered + Duration::hours(h.into()))
        } else {
            None
        },
        owner_staff_id: Some(owner),
        version,
        started_at: start,
        ended_at,
        end_reason,
        updated_at: ended_at.unwrap_or(entered),
    });
    batch.transitions.extend(transitions);
    batch.follow_ups.extend(follow_ups);
    ended_at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_clinic() {
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            let pathways = build_pathways(&mut rng, Uuid::nil(), Utc::now());
            let people = People {
                coordinators: vec![Uuid::nil()],
                practitioners: vec![Uuid::nil()],
            };
            let now = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
            let mut batch = Batch::default();
            for i in 0..50 {
                seed_patient(
                    &mut rng,
                    &mut batch,
                    Uuid::nil(),
                    &pathways,
                    &people,
                    i,
                    now,
                );
            }
            (
                batch
                    .patients
                    .iter()
                    .map(|p| (p.id, p.given_name.clone()))
                    .collect::<Vec<_>>(),
                batch.transitions.len(),
                batch.touchpoints.len(),
            )
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7).0, run(8).0);
    }
}
