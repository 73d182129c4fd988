//! Outreach mutations: consent, contact preferences, the clinic's policy,
//! stage cadences, templates, and the coordinator's own follow-ups.

use async_graphql::{Context, ID, InputObject, MaybeUndefined, Object, SimpleObject};

use crate::{
    domain::{
        self,
        outreach::settings::{PolicyChange, PreferencesChange, RecordConsent},
    },
    graphql::{
        context::{ContextExt, decode_id, decode_opt_id},
        scalars::DateTime,
        types::{
            Channel, ConsentPurpose, FollowUp, FollowUpKind, OutreachPolicy, OutreachTemplate,
            Patient, Stage,
        },
    },
    ids::IdKind,
};

/// Local hours in which nobody is contacted.
#[derive(InputObject)]
pub struct QuietHoursInput {
    /// `HH:MM`, local time, e.g. `21:00`.
    pub start: String,
    /// `HH:MM`, local time, e.g. `08:00` (earlier than `start` spans midnight).
    pub end: String,
}

/// A consent given or withdrawn.
#[derive(InputObject)]
pub struct RecordConsentInput {
    pub patient_id: ID,
    /// SMS, EMAIL or PHONE.
    pub channel: Channel,
    pub purpose: ConsentPurpose,
    /// True to give consent, false to withdraw it.
    pub granted: bool,
    /// Where it came from: "intake form", "phone call", "web form".
    pub source: String,
    /// When the patient gave or withdrew it; now when absent.
    pub occurred_at: Option<DateTime>,
}

/// A patient's contact preferences: absent fields stay, `null` clears (the
/// clinic's then apply).
#[derive(InputObject)]
pub struct SetContactPreferencesInput {
    pub patient_id: ID,
    /// IANA time zone, e.g. `America/New_York`.
    pub timezone: MaybeUndefined<String>,
    pub preferred_channel: MaybeUndefined<Channel>,
    pub quiet_hours: MaybeUndefined<QuietHoursInput>,
}

/// The clinic's outreach policy; absent fields stay.
#[derive(InputObject)]
pub struct SetOutreachPolicyInput {
    /// When nobody is contacted, in each patient's local time.
    pub quiet_hours: Option<QuietHoursInput>,
    /// Marketing messages one patient gets in 7 days at most (0 to 14).
    pub max_marketing_per_week: Option<i32>,
    /// Hours between two outreach contacts, unless the patient wrote in (0 to 336).
    pub min_hours_between_contacts: Option<i32>,
}

/// A stage's cadence; a `null` (or absent) value turns it off.
#[derive(InputObject)]
pub struct SetStageCadenceInput {
    pub stage_id: ID,
    /// Days after entering the stage when rebooking is due (1 to 1095).
    pub rebook_after_days: Option<i32>,
    /// Days without any touchpoint after which a journey here is won back (1 to 1095).
    pub win_back_after_days: Option<i32>,
}

/// The clinic's draft message for one (kind, channel).
#[derive(InputObject)]
pub struct SetOutreachTemplateInput {
    pub kind: FollowUpKind,
    /// SMS, EMAIL or PHONE (a call script).
    pub channel: Channel,
    /// With `{{givenName}}`, `{{clinicName}}`, `{{stageName}}`,
    /// `{{pathwayName}}`, `{{dueDate}}`; at most 320 characters for SMS,
    /// 2,000 otherwise.
    pub body: String,
}

/// A follow-up planned by hand (kind MANUAL, purpose CARE).
#[derive(InputObject)]
pub struct ScheduleFollowUpInput {
    pub patient_id: ID,
    /// The journey it belongs to; the patient's latest active journey when absent.
    pub journey_id: Option<ID>,
    /// When it should be done.
    pub due_at: DateTime,
    /// How to reach out; used when the patient consented to it, else the
    /// patient's best allowed channel.
    pub channel: Channel,
    /// What it is for.
    pub note: Option<String>,
    /// Who should do it; the journey's owner when absent.
    pub assignee_id: Option<ID>,
}

/// Decide not to make a follow-up.
#[derive(InputObject)]
pub struct SkipFollowUpInput {
    pub follow_up_id: ID,
    pub reason: Option<String>,
}

/// A patient, as they are now.
#[derive(SimpleObject)]
pub struct PatientPayload {
    pub patient: Patient,
}

/// The clinic's policy, as it is now.
#[derive(SimpleObject)]
pub struct OutreachPolicyPayload {
    pub policy: OutreachPolicy,
}

/// A stage, as it is now.
#[derive(SimpleObject)]
pub struct StageCadencePayload {
    pub stage: Stage,
}

/// A template, as it is now.
#[derive(SimpleObject)]
pub struct OutreachTemplatePayload {
    pub template: OutreachTemplate,
}

/// A follow-up, as it is now.
#[derive(SimpleObject)]
pub struct FollowUpPayload {
    pub follow_up: FollowUp,
}

/// `None` leaves a field as it is, `Some(None)` clears it.
fn optional<T>(value: MaybeUndefined<T>) -> Option<Option<T>> {
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v)),
    }
}

#[derive(Default)]
pub struct OutreachMutations;

#[Object]
impl OutreachMutations {
    /// Records a consent given or withdrawn (appended to the history).
    /// Emits `patient.consent_changed`; what is planned follows at once
    /// (withdrawn: re-planned or blocked, with `follow_up.cancelled`).
    async fn record_consent(
        &self,
        ctx: &Context<'_>,
        input: RecordConsentInput,
    ) -> async_graphql::Result<PatientPayload> {
        let patient_id = decode_id(IdKind::Patient, "patientId", &input.patient_id)
            .map_err(|e| e.under("input"))?;
        let patient = domain::outreach::settings::record_consent(
            ctx.store(),
            ctx.principal()?,
            RecordConsent {
                patient_id,
                channel: input.channel.into(),
                purpose: input.purpose.into(),
                granted: input.granted,
                source: input.source,
                occurred_at: input.occurred_at.map(|t| t.0),
            },
        )
        .await
        .map_err(|e| e.under("input"))?;
        Ok(PatientPayload {
            patient: Patient(patient),
        })
    }

    /// Sets a patient's time zone, preferred channel and quiet hours, and
    /// re-plans their open follow-ups.
    async fn set_contact_preferences(
        &self,
        ctx: &Context<'_>,
        input: SetContactPreferencesInput,
    ) -> async_graphql::Result<PatientPayload> {
        let patient_id = decode_id(IdKind::Patient, "patientId", &input.patient_id)
            .map_err(|e| e.under("input"))?;
        let change = PreferencesChange {
            timezone: optional(input.timezone),
            preferred_channel: optional(input.preferred_channel).map(|c| c.map(Into::into)),
            quiet: optional(input.quiet_hours).map(|q| q.map(|q| (q.start, q.end))),
        };
        let patient = domain::outreach::settings::set_preferences(
            ctx.store(),
            ctx.principal()?,
            patient_id,
            change,
        )
        .await
        .map_err(|e| e.under("input"))?;
        Ok(PatientPayload {
            patient: Patient(patient),
        })
    }

    /// Sets the clinic's quiet hours and frequency limits (`pathways:manage`).
    async fn set_outreach_policy(
        &self,
        ctx: &Context<'_>,
        input: SetOutreachPolicyInput,
    ) -> async_graphql::Result<OutreachPolicyPayload> {
        let policy = domain::outreach::settings::set_policy(
            ctx.store(),
            ctx.principal()?,
            PolicyChange {
                quiet: input.quiet_hours.map(|q| (q.start, q.end)),
                max_marketing_per_week: input.max_marketing_per_week,
                min_hours_between_contacts: input.min_hours_between_contacts,
            },
        )
        .await
        .map_err(|e| e.under("input"))?;
        Ok(OutreachPolicyPayload {
            policy: OutreachPolicy(policy),
        })
    }

    /// Sets a stage's cadence: when rebooking is due and when a quiet journey
    /// is won back (`pathways:manage`).
    async fn set_stage_cadence(
        &self,
        ctx: &Context<'_>,
        input: SetStageCadenceInput,
    ) -> async_graphql::Result<StageCadencePayload> {
        let stage_id =
            decode_id(IdKind::Stage, "stageId", &input.stage_id).map_err(|e| e.under("input"))?;
        let stage = domain::outreach::settings::set_cadence(
            ctx.store(),
            ctx.principal()?,
            stage_id,
            input.rebook_after_days,
            input.win_back_after_days,
        )
        .await
        .map_err(|e| e.under("input"))?;
        Ok(StageCadencePayload {
            stage: Stage(stage),
        })
    }

    /// Sets the clinic's draft message for one (kind, channel)
    /// (`pathways:manage`). An unknown variable is BAD_USER_INPUT.
    async fn set_outreach_template(
        &self,
        ctx: &Context<'_>,
        input: SetOutreachTemplateInput,
    ) -> async_graphql::Result<OutreachTemplatePayload> {
        let template = domain::outreach::settings::set_template(
            ctx.store(),
            ctx.principal()?,
            input.kind.into(),
            input.channel.into(),
            &input.body,
        )
        .await
        .map_err(|e| e.under("input"))?;
        Ok(OutreachTemplatePayload {
            template: OutreachTemplate(template),
        })
    }

    /// Plans a follow-up by hand (kind MANUAL): on the chosen channel when the
    /// patient consented to it, inside their contact hours. Emits
    /// `follow_up.scheduled`.
    async fn schedule_follow_up(
        &self,
        ctx: &Context<'_>,
        input: ScheduleFollowUpInput,
    ) -> async_graphql::Result<FollowUpPayload> {
        let decoded = (|| {
            Ok::<_, domain::DomainError>(domain::follow_ups::ScheduleFollowUp {
                patient_id: decode_id(IdKind::Patient, "patientId", &input.patient_id)?,
                journey_id: decode_opt_id(IdKind::Journey, "journeyId", input.journey_id.as_ref())?,
                due_at: input.due_at.0,
                channel: input.channel.into(),
                note: input.note.clone(),
                assignee_id: decode_opt_id(
                    IdKind::Staff,
                    "assigneeId",
                    input.assignee_id.as_ref(),
                )?,
            })
        })()
        .map_err(|e| e.under("input"))?;
        let follow_up = domain::follow_ups::schedule_manual(ctx.store(), ctx.principal()?, decoded)
            .await
            .map_err(|e| e.under("input"))?;
        Ok(FollowUpPayload {
            follow_up: FollowUp(follow_up),
        })
    }

    /// Skips a follow-up: a coordinator decided not to make it. Emits
    /// `follow_up.cancelled` (status SKIPPED).
    async fn skip_follow_up(
        &self,
        ctx: &Context<'_>,
        input: SkipFollowUpInput,
    ) -> async_graphql::Result<FollowUpPayload> {
        let id = decode_id(IdKind::FollowUp, "followUpId", &input.follow_up_id)
            .map_err(|e| e.under("input"))?;
        let follow_up = domain::follow_ups::skip(ctx.store(), ctx.principal()?, id, input.reason)
            .await
            .map_err(|e| e.under("input"))?;
        Ok(FollowUpPayload {
            follow_up: FollowUp(follow_up),
        })
    }
}
