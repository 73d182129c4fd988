//! Feedback: what patients said, as NPS, CSAT or CES scores or comments,
//! filed under the stage of the journey it is about.

use chrono::{DateTime, Utc};
use entity::{feedback, journeys, staff, touchpoints};
use sea_orm::{ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::{
    DomainError, DomainResult, FeedbackKind, JourneyStatus, Store, access, follow_ups,
    journeys::stage_at,
    page::{Keyset, Sort},
    records, validate,
    values::Score,
};
use crate::{
    auth::{Permission, Principal},
    events::{Event, FeedbackSubmitted},
    ids::{self, FeedbackId, JourneyId, PatientId, StageId, TouchpointId},
};

/// Feedback lists newest first.
pub const SORT: Sort = Sort::Descending;

/// Feedback as a client submits it.
#[derive(Debug, Clone)]
pub struct SubmitFeedback {
    pub patient_id: Uuid,
    pub journey_id: Option<Uuid>,
    pub touchpoint_id: Option<Uuid>,
    pub kind: FeedbackKind,
    pub score: Option<i32>,
    pub comment: Option<String>,
    pub staff_id: Option<Uuid>,
    pub submitted_at: Option<DateTime<Utc>>,
}

/// The cursor of feedback in feedback lists.
pub fn keyset(feedback: &feedback::Model) -> Keyset {
    Keyset::at(feedback.submitted_at, feedback.id)
}

/// The score of feedback of `kind`: NPS, CSAT and CES need one; a COMMENT
/// carries text and no score.
fn score_of(
    kind: FeedbackKind,
    score: Option<i32>,
    comment: Option<&str>,
) -> DomainResult<Option<Score>> {
    match (kind, score) {
        (FeedbackKind::Comment, None) if comment.is_none() => {
            Err(DomainError::invalid("comment", "a COMMENT needs text"))
        }
        (FeedbackKind::Comment, None) => Ok(None),
        (_, None) => Err(DomainError::invalid(
            "score",
            format!("{kind} feedback needs a score"),
        )),
        (_, Some(score)) => Score::parse("score", kind, score).map(Some),
    }
}

/// Records feedback from a patient.
pub async fn submit(
    store: &Store,
    who: &Principal,
    input: SubmitFeedback,
) -> DomainResult<feedback::Model> {
    access::require(who, Permission::FeedbackWrite, "submitting feedback")?;
    let comment = validate::long_text("comment", input.comment.as_deref())?;
    let score = score_of(input.kind, input.score, comment.as_deref())?;

    let mut write = store.write(who).await?;
    let submitted_at = match input.submitted_at {
        Some(at) => validate::past_time("submittedAt", at, write.now)?,
        None => write.now,
    };
    let patient = records::living_patient(&*write.txn, who, input.patient_id, "patientId").await?;
    let touchpoint = match input.touchpoint_id {
        None => None,
        Some(id) => Some(
            records::of_patient::<touchpoints::Entity, _>(
                &*write.txn,
                who,
                id,
                "touchpointId",
                patient.id,
            )
            .await?,
        ),
    };
    let journey = match input
        .journey_id
        .or(touchpoint.as_ref().and_then(|t| t.journey_id))
    {
        None => None,
        Some(id) => {
            let journey = records::of_patient::<journeys::Entity, _>(
                &*write.txn,
                who,
                id,
                "journeyId",
                patient.id,
            )
            .await?;
            if let Some(touchpoint) = &touchpoint
                && touchpoint.journey_id.is_some_and(|j| j != journey.id)
            {
                return Err(DomainError::invalid(
                    "touchpointId",
                    "the touchpoint belongs to another journey",
                ));
            }
            Some(journey)
        }
    };
    let stage_id = match (&touchpoint, &journey) {
        (Some(touchpoint), _) if touchpoint.stage_id.is_some() => touchpoint.stage_id,
        (_, Some(journey)) => stage_at(&*write.txn, who, journey, submitted_at).await?,
        _ => None,
    };
    if let Some(staff_id) = input.staff_id {
        who.get::<staff::Entity, _>(&*write.txn, staff_id, "staff member")
            .await
            .map_err(|e| e.referenced_by("staffId"))?;
    }

    let feedback = feedback::Model {
        id: ids::new_id(),
        clinic_id: who.clinic_id,
        patient_id: patient.id,
        journey_id: journey.as_ref().map(|j| j.id),
        stage_id,
        touchpoint_id: touchpoint.as_ref().map(|t| t.id),
        staff_id: input
            .staff_id
            .or(touchpoint.as_ref().and_then(|t| t.staff_id)),
        kind: input.kind.as_str().to_string(),
        score: score.map(Score::value),
        comment,
        submitted_at,
    };
    feedback::Entity::insert(feedback.clone().into_active_model())
        .exec_without_returning(&*write.txn)
        .await?;
    let detractor = score.is_some_and(Score::is_detractor);
    write.emit(Event::FeedbackSubmitted(FeedbackSubmitted {
        feedback_id: FeedbackId(feedback.id),
        patient_id: PatientId(feedback.patient_id),
        journey_id: feedback.journey_id.map(JourneyId),
        stage_id: feedback.stage_id.map(StageId),
        touchpoint_id: feedback.touchpoint_id.map(TouchpointId),
        kind: feedback.kind.clone(),
        score: feedback.score,
        has_comment: feedback.comment.is_some(),
        detractor,
        submitted_at: feedback.submitted_at,
    }));
    // A detractor gets a call within 24 hours, a promoter is asked for a
    // review: on the journey the feedback is about, else on the patient's
    // latest active journey.
    if let Some(score) = score.filter(|s| s.is_detractor() || s.is_promoter()) {
        let journey = match journey {
            Some(journey) => Some(journey),
            None => {
                who.select::<journeys::Entity>()
                    .filter(journeys::Column::PatientId.eq(patient.id))
                    .filter(journeys::Column::Status.eq(JourneyStatus::Active.as_str()))
                    .order_by_desc(journeys::Column::StartedAt)
                    .one(&*write.txn)
                    .await?
            }
        };
        if let Some(journey) = journey {
            if score.is_detractor() {
                let note = format!(
                    "Service recovery: {} {} — call the patient within 24 hours",
                    feedback.kind,
                    score.value()
                );
                follow_ups::schedule_service_recovery(
                    &mut write,
                    &journey,
                    feedback.stage_id,
                    score,
                    feedback.submitted_at,
                    note,
                )
                .await?;
            } else {
                follow_ups::schedule_review_request(
                    &mut write,
                    &journey,
                    feedback.stage_id,
                    score,
                    feedback.submitted_at,
                )
                .await?;
            }
        }
    }
    write.commit().await?;
    Ok(feedback)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_follow_the_kind() {
        let value =
            |kind, score, comment| score_of(kind, score, comment).map(|s| s.map(Score::value));
        assert_eq!(value(FeedbackKind::Nps, Some(0), None).unwrap(), Some(0));
        assert_eq!(value(FeedbackKind::Nps, Some(10), None).unwrap(), Some(10));
        assert!(value(FeedbackKind::Nps, Some(11), None).is_err());
        assert!(value(FeedbackKind::Csat, Some(0), None).is_err());
        assert!(value(FeedbackKind::Csat, Some(6), None).is_err());
        assert!(value(FeedbackKind::Ces, Some(7), None).is_ok());
        assert!(value(FeedbackKind::Ces, Some(8), None).is_err());
        assert!(value(FeedbackKind::Nps, None, None).is_err());
        assert!(value(FeedbackKind::Comment, None, None).is_err());
        assert!(value(FeedbackKind::Comment, Some(3), Some("hi")).is_err());
        assert_eq!(
            value(FeedbackKind::Comment, None, Some("hi")).unwrap(),
            None
        );
    }
}
