//! Every kind of event and its payload, as one serde type each: written by
//! the domain, read back by subscriptions, webhooks and the audit log through
//! the same types. The payload of an event is its `data` object on the wire;
//! the field order of each struct is the order clients see.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{
    FeedbackId, FollowUpId, JourneyId, PathwayId, PatientId, StaffId, StageId, TouchpointId,
    TransitionId, WebhookEndpointId,
};

/// The kinds of event, as published (`journey.stage_changed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    PatientCreated,
    PatientUpdated,
    PatientErased,
    JourneyStarted,
    JourneyStageChanged,
    JourneyCompleted,
    JourneyDropped,
    TouchpointLogged,
    FeedbackSubmitted,
    FollowUpScheduled,
    FollowUpOverdue,
    FollowUpCompleted,
    FollowUpDue,
    FollowUpCancelled,
    PatientConsentChanged,
    WebhookEndpointDisabled,
}

impl EventType {
    /// Every type, in the order the documentation lists them.
    pub const ALL: [EventType; 16] = [
        EventType::PatientCreated,
        EventType::PatientUpdated,
        EventType::PatientErased,
        EventType::JourneyStarted,
        EventType::JourneyStageChanged,
        EventType::JourneyCompleted,
        EventType::JourneyDropped,
        EventType::TouchpointLogged,
        EventType::FeedbackSubmitted,
        EventType::FollowUpScheduled,
        EventType::FollowUpOverdue,
        EventType::FollowUpCompleted,
        EventType::FollowUpDue,
        EventType::FollowUpCancelled,
        EventType::PatientConsentChanged,
        EventType::WebhookEndpointDisabled,
    ];

    /// The published name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::PatientCreated => "patient.created",
            EventType::PatientUpdated => "patient.updated",
            EventType::PatientErased => "patient.erased",
            EventType::JourneyStarted => "journey.started",
            EventType::JourneyStageChanged => "journey.stage_changed",
            EventType::JourneyCompleted => "journey.completed",
            EventType::JourneyDropped => "journey.dropped",
            EventType::TouchpointLogged => "touchpoint.logged",
            EventType::FeedbackSubmitted => "feedback.submitted",
            EventType::FollowUpScheduled => "follow_up.scheduled",
            EventType::FollowUpOverdue => "follow_up.overdue",
            EventType::FollowUpCompleted => "follow_up.completed",
            EventType::FollowUpDue => "follow_up.due",
            EventType::FollowUpCancelled => "follow_up.cancelled",
            EventType::PatientConsentChanged => "patient.consent_changed",
            EventType::WebhookEndpointDisabled => "webhook_endpoint.disabled",
        }
    }

    /// The type with the published name `text`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// Every published name, comma-separated, for error messages.
    pub fn known() -> String {
        Self::ALL.map(|t| t.as_str()).join(", ")
    }
}

/// Timestamps in payloads: RFC 3339, UTC, always with microseconds.
pub mod stamp {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// The wire form of a time.
    pub fn format(at: DateTime<Utc>) -> String {
        at.to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(*at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<DateTime<Utc>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|at| at.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }

    /// An optional time, the same way.
    pub mod optional {
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(
            at: &Option<DateTime<Utc>>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match at {
                Some(at) => serializer.serialize_str(&super::format(*at)),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            let text = <Option<std::borrow::Cow<'de, str>>>::deserialize(deserializer)?;
            text.map(|text| {
                DateTime::parse_from_rfc3339(&text)
                    .map(|at| at.with_timezone(&Utc))
                    .map_err(serde::de::Error::custom)
            })
            .transpose()
        }
    }
}

/// A stage as events describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageRef {
    pub stage_id: StageId,
    pub key: String,
    pub name: String,
    pub category: String,
    pub position: i32,
}

/// `patient.created`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PatientCreated {
    pub patient_id: PatientId,
    /// The CRM's id; cleared when the patient is erased.
    pub external_id: Option<String>,
    /// The CSV import that made the change, absent for live changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_id: Option<String>,
}

/// `patient.updated`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PatientUpdated {
    pub patient_id: PatientId,
    /// The CRM's id; cleared when the patient is erased.
    pub external_id: Option<String>,
    /// The GraphQL names of the fields that changed.
    pub changed_fields: Vec<String>,
    /// The CSV import that made the change, absent for live changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_id: Option<String>,
}

/// `patient.erased`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PatientErased {
    pub patient_id: PatientId,
    pub reason: Option<String>,
}

/// `journey.started`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JourneyStarted {
    pub journey_id: JourneyId,
    pub patient_id: PatientId,
    pub pathway_id: PathwayId,
    pub transition_id: TransitionId,
    pub stage: StageRef,
    pub version: i32,
    #[serde(with = "stamp")]
    pub started_at: DateTime<Utc>,
}

/// `journey.stage_changed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageChanged {
    pub journey_id: JourneyId,
    pub patient_id: PatientId,
    pub pathway_id: PathwayId,
    pub transition_id: TransitionId,
    /// FORWARD or BACKWARD.
    pub direction: String,
    pub previous: StageRef,
    pub current: StageRef,
    pub seconds_in_previous: i64,
    /// `secondsInPrevious` in hours, to two decimals.
    pub hours_in_previous: f64,
    pub version: i32,
    #[serde(with = "stamp")]
    pub occurred_at: DateTime<Utc>,
    /// Follow-ups of the stage left that the move cancelled.
    pub cancelled_follow_up_ids: Vec<FollowUpId>,
}

/// `journey.completed` and `journey.dropped`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JourneyEnded {
    pub journey_id: JourneyId,
    pub patient_id: PatientId,
    pub pathway_id: PathwayId,
    pub transition_id: TransitionId,
    /// The stage the journey ended in.
    pub stage: StageRef,
    /// COMPLETED or DROPPED.
    pub status: String,
    /// Why it ended; cleared when the patient is erased.
    pub reason: Option<String>,
    pub version: i32,
    #[serde(with = "stamp")]
    pub occurred_at: DateTime<Utc>,
    pub cancelled_follow_up_ids: Vec<FollowUpId>,
}

/// `touchpoint.logged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TouchpointLogged {
    pub touchpoint_id: TouchpointId,
    pub patient_id: PatientId,
    pub journey_id: Option<JourneyId>,
    pub stage_id: Option<StageId>,
    pub channel: String,
    pub direction: String,
    pub kind: String,
    pub emotion: Option<i16>,
    pub moment_of_truth: bool,
    #[serde(with = "stamp")]
    pub occurred_at: DateTime<Utc>,
}

/// `feedback.submitted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackSubmitted {
    pub feedback_id: FeedbackId,
    pub patient_id: PatientId,
    pub journey_id: Option<JourneyId>,
    pub stage_id: Option<StageId>,
    pub touchpoint_id: Option<TouchpointId>,
    pub kind: String,
    pub score: Option<i16>,
    pub has_comment: bool,
    pub detractor: bool,
    #[serde(with = "stamp")]
    pub submitted_at: DateTime<Utc>,
}

/// `follow_up.scheduled`, `follow_up.due` and `follow_up.overdue`: a
/// follow-up, its channel and when it is due and may be sent. Thin: the draft
/// message goes only to webhook endpoints that opted in to PHI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FollowUpNotice {
    pub follow_up_id: FollowUpId,
    pub kind: String,
    pub journey_id: JourneyId,
    pub patient_id: PatientId,
    pub stage_id: Option<StageId>,
    #[serde(with = "stamp")]
    pub due_at: DateTime<Utc>,
    pub channel: String,
    pub assignee_id: Option<StaffId>,
    /// CARE or MARKETING.
    #[serde(default)]
    pub purpose: Option<String>,
    /// The first moment it may be sent.
    #[serde(default, with = "stamp::optional")]
    pub send_at: Option<DateTime<Utc>>,
    /// OPEN, or BLOCKED when no channel is allowed.
    #[serde(default)]
    pub status: Option<String>,
}

/// `follow_up.cancelled`: a follow-up that is no longer right, or that a
/// coordinator skipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FollowUpCancelled {
    pub follow_up_id: FollowUpId,
    pub kind: String,
    pub journey_id: JourneyId,
    pub patient_id: PatientId,
    /// CANCELLED or SKIPPED.
    pub status: String,
    /// Why, in a few words ("journey left the stage", "SMS consent revoked").
    pub reason: String,
    /// The follow-up planned in its place, if any.
    pub replaced_by: Option<FollowUpId>,
}

/// `patient.consent_changed`: a consent given or withdrawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsentChanged {
    pub patient_id: PatientId,
    /// SMS, EMAIL or PHONE.
    pub channel: String,
    /// CARE or MARKETING.
    pub purpose: String,
    pub granted: bool,
    pub source: String,
    pub touchpoint_id: Option<TouchpointId>,
    #[serde(with = "stamp")]
    pub occurred_at: DateTime<Utc>,
}

/// `follow_up.completed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FollowUpCompleted {
    pub follow_up_id: FollowUpId,
    pub journey_id: JourneyId,
    pub patient_id: PatientId,
    /// The contact that did it; none when completed by hand.
    pub touchpoint_id: Option<TouchpointId>,
    #[serde(with = "stamp")]
    pub due_at: DateTime<Utc>,
    #[serde(with = "stamp")]
    pub completed_at: DateTime<Utc>,
    /// Completed after it was due.
    pub late: bool,
}

/// `webhook_endpoint.disabled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointDisabled {
    pub endpoint_id: WebhookEndpointId,
    pub reason: String,
}

/// A domain event: its type and its payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    PatientCreated(PatientCreated),
    PatientUpdated(PatientUpdated),
    PatientErased(PatientErased),
    JourneyStarted(JourneyStarted),
    JourneyStageChanged(StageChanged),
    JourneyCompleted(JourneyEnded),
    JourneyDropped(JourneyEnded),
    TouchpointLogged(TouchpointLogged),
    FeedbackSubmitted(FeedbackSubmitted),
    FollowUpScheduled(FollowUpNotice),
    FollowUpOverdue(FollowUpNotice),
    FollowUpCompleted(FollowUpCompleted),
    FollowUpDue(FollowUpNotice),
    FollowUpCancelled(FollowUpCancelled),
    PatientConsentChanged(ConsentChanged),
    WebhookEndpointDisabled(EndpointDisabled),
}

/// A stored event whose payload does not match its type.
#[derive(Debug, thiserror::Error)]
#[error("event of type {event_type:?} does not decode: {reason}")]
pub struct DecodeError {
    pub event_type: String,
    pub reason: String,
}

impl Event {
    /// The event's type.
    pub fn event_type(&self) -> EventType {
        match self {
            Event::PatientCreated(_) => EventType::PatientCreated,
            Event::PatientUpdated(_) => EventType::PatientUpdated,
            Event::PatientErased(_) => EventType::PatientErased,
            Event::JourneyStarted(_) => EventType::JourneyStarted,
            Event::JourneyStageChanged(_) => EventType::JourneyStageChanged,
            Event::JourneyCompleted(_) => EventType::JourneyCompleted,
            Event::JourneyDropped(_) => EventType::JourneyDropped,
            Event::TouchpointLogged(_) => EventType::TouchpointLogged,
            Event::FeedbackSubmitted(_) => EventType::FeedbackSubmitted,
            Event::FollowUpScheduled(_) => EventType::FollowUpScheduled,
            Event::FollowUpOverdue(_) => EventType::FollowUpOverdue,
            Event::FollowUpCompleted(_) => EventType::FollowUpCompleted,
            Event::FollowUpDue(_) => EventType::FollowUpDue,
            Event::FollowUpCancelled(_) => EventType::FollowUpCancelled,
            Event::PatientConsentChanged(_) => EventType::PatientConsentChanged,
            Event::WebhookEndpointDisabled(_) => EventType::WebhookEndpointDisabled,
        }
    }

    /// The global id of the record the event is about.
    pub fn subject(&self) -> String {
        match self {
            Event::PatientCreated(e) => e.patient_id.to_string(),
            Event::PatientUpdated(e) => e.patient_id.to_string(),
            Event::PatientErased(e) => e.patient_id.to_string(),
            Event::JourneyStarted(e) => e.journey_id.to_string(),
            Event::JourneyStageChanged(e) => e.journey_id.to_string(),
            Event::JourneyCompleted(e) | Event::JourneyDropped(e) => e.journey_id.to_string(),
            Event::TouchpointLogged(e) => e.touchpoint_id.to_string(),
            Event::FeedbackSubmitted(e) => e.feedback_id.to_string(),
            Event::FollowUpScheduled(e) | Event::FollowUpOverdue(e) | Event::FollowUpDue(e) => {
                e.follow_up_id.to_string()
            }
            Event::FollowUpCompleted(e) => e.follow_up_id.to_string(),
            Event::FollowUpCancelled(e) => e.follow_up_id.to_string(),
            Event::PatientConsentChanged(e) => e.patient_id.to_string(),
            Event::WebhookEndpointDisabled(e) => e.endpoint_id.to_string(),
        }
    }

    /// The patient the event concerns, if any.
    pub fn patient_id(&self) -> Option<PatientId> {
        Some(match self {
            Event::PatientCreated(e) => e.patient_id,
            Event::PatientUpdated(e) => e.patient_id,
            Event::PatientErased(e) => e.patient_id,
            Event::JourneyStarted(e) => e.patient_id,
            Event::JourneyStageChanged(e) => e.patient_id,
            Event::JourneyCompleted(e) | Event::JourneyDropped(e) => e.patient_id,
            Event::TouchpointLogged(e) => e.patient_id,
            Event::FeedbackSubmitted(e) => e.patient_id,
            Event::FollowUpScheduled(e) | Event::FollowUpOverdue(e) | Event::FollowUpDue(e) => {
                e.patient_id
            }
            Event::FollowUpCompleted(e) => e.patient_id,
            Event::FollowUpCancelled(e) => e.patient_id,
            Event::PatientConsentChanged(e) => e.patient_id,
            Event::WebhookEndpointDisabled(_) => return None,
        })
    }

    /// The touchpoint whose summary the event stands for, if any.
    pub fn touchpoint_id(&self) -> Option<TouchpointId> {
        match self {
            Event::TouchpointLogged(e) => Some(e.touchpoint_id),
            _ => None,
        }
    }

    /// The follow-up whose draft message the event stands for, if any.
    pub fn follow_up_id(&self) -> Option<FollowUpId> {
        match self {
            Event::FollowUpScheduled(e) | Event::FollowUpOverdue(e) | Event::FollowUpDue(e) => {
                Some(e.follow_up_id)
            }
            _ => None,
        }
    }

    /// The feedback whose comment the event stands for, if any.
    pub fn feedback_id(&self) -> Option<FeedbackId> {
        match self {
            Event::FeedbackSubmitted(e) => Some(e.feedback_id),
            _ => None,
        }
    }

    /// Forgets what identifies an erased patient (the CRM id, a journey's end
    /// reason); true when something was there to forget.
    pub fn forget_identity(&mut self) -> bool {
        let field = match self {
            Event::PatientCreated(e) => &mut e.external_id,
            Event::PatientUpdated(e) => &mut e.external_id,
            Event::JourneyCompleted(e) | Event::JourneyDropped(e) => &mut e.reason,
            _ => return false,
        };
        field.take().is_some()
    }

    /// The payload as the `data` object of the envelope.
    pub fn data(&self) -> Value {
        let data = match self {
            Event::PatientCreated(e) => serde_json::to_value(e),
            Event::PatientUpdated(e) => serde_json::to_value(e),
            Event::PatientErased(e) => serde_json::to_value(e),
            Event::JourneyStarted(e) => serde_json::to_value(e),
            Event::JourneyStageChanged(e) => serde_json::to_value(e),
            Event::JourneyCompleted(e) | Event::JourneyDropped(e) => serde_json::to_value(e),
            Event::TouchpointLogged(e) => serde_json::to_value(e),
            Event::FeedbackSubmitted(e) => serde_json::to_value(e),
            Event::FollowUpScheduled(e) | Event::FollowUpOverdue(e) | Event::FollowUpDue(e) => {
                serde_json::to_value(e)
            }
            Event::FollowUpCompleted(e) => serde_json::to_value(e),
            Event::FollowUpCancelled(e) => serde_json::to_value(e),
            Event::PatientConsentChanged(e) => serde_json::to_value(e),
            Event::WebhookEndpointDisabled(e) => serde_json::to_value(e),
        };
        // Plain structs of strings, numbers and ids always serialize.
        data.unwrap_or(Value::Null)
    }

    /// Reads a stored event back: its type name and its `data`.
    pub fn decode(event_type: &str, data: &Value) -> Result<Event, DecodeError> {
        fn payload<T: serde::de::DeserializeOwned>(
            event_type: &str,
            data: &Value,
        ) -> Result<T, DecodeError> {
            T::deserialize(data).map_err(|error| DecodeError {
                event_type: event_type.to_string(),
                reason: error.to_string(),
            })
        }
        let Some(known) = EventType::parse(event_type) else {
            return Err(DecodeError {
                event_type: event_type.to_string(),
                reason: "unknown event type".into(),
            });
        };
        Ok(match known {
            EventType::PatientCreated => Event::PatientCreated(payload(event_type, data)?),
            EventType::PatientUpdated => Event::PatientUpdated(payload(event_type, data)?),
            EventType::PatientErased => Event::PatientErased(payload(event_type, data)?),
            EventType::JourneyStarted => Event::JourneyStarted(payload(event_type, data)?),
            EventType::JourneyStageChanged => {
                Event::JourneyStageChanged(payload(event_type, data)?)
            }
            EventType::JourneyCompleted => Event::JourneyCompleted(payload(event_type, data)?),
            EventType::JourneyDropped => Event::JourneyDropped(payload(event_type, data)?),
            EventType::TouchpointLogged => Event::TouchpointLogged(payload(event_type, data)?),
            EventType::FeedbackSubmitted => Event::FeedbackSubmitted(payload(event_type, data)?),
            EventType::FollowUpScheduled => Event::FollowUpScheduled(payload(event_type, data)?),
            EventType::FollowUpOverdue => Event::FollowUpOverdue(payload(event_type, data)?),
            EventType::FollowUpCompleted => Event::FollowUpCompleted(payload(event_type, data)?),
            EventType::FollowUpDue => Event::FollowUpDue(payload(event_type, data)?),
            EventType::FollowUpCancelled => Event::FollowUpCancelled(payload(event_type, data)?),
            EventType::PatientConsentChanged => {
                Event::PatientConsentChanged(payload(event_type, data)?)
            }
            EventType::WebhookEndpointDisabled => {
                Event::WebhookEndpointDisabled(payload(event_type, data)?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::new_id;

    #[test]
    fn payloads_round_trip_in_wire_order() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-24T22:45:05.635526Z")
            .unwrap()
            .with_timezone(&Utc);
        let stage = |key: &str, position| StageRef {
            stage_id: StageId(new_id()),
            key: key.into(),
            name: key.into(),
            category: "INQUIRY".into(),
            position,
        };
        let event = Event::JourneyStageChanged(StageChanged {
            journey_id: JourneyId(new_id()),
            patient_id: PatientId(new_id()),
            pathway_id: PathwayId(new_id()),
            transition_id: TransitionId(new_id()),
            direction: "FORWARD".into(),
            previous: stage("inquiry", 0),
            current: stage("consultation", 1),
            seconds_in_previous: 32821,
            hours_in_previous: 9.12,
            version: 2,
            occurred_at: at,
            cancelled_follow_up_ids: vec![],
        });
        let data = event.data();
        let keys: Vec<&str> = data
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "journeyId",
                "patientId",
                "pathwayId",
                "transitionId",
                "direction",
                "previous",
                "current",
                "secondsInPrevious",
                "hoursInPrevious",
                "version",
                "occurredAt",
                "cancelledFollowUpIds"
            ]
        );
        assert_eq!(data["occurredAt"], "2026-11-24T22:45:05.635526Z");
        assert!(data["journeyId"].as_str().unwrap().starts_with("jny_"));
        assert_eq!(
            Event::decode("journey.stage_changed", &data).unwrap(),
            event
        );
        assert!(Event::decode("journey.started", &data).is_err());
        assert!(Event::decode("journey.nope", &data).is_err());
    }

    #[test]
    fn erasure_forgets_crm_ids_and_reasons_only() {
        let mut created = Event::PatientCreated(PatientCreated {
            patient_id: PatientId(new_id()),
            external_id: Some("crm-1".into()),
            import_id: None,
        });
        assert!(created.forget_identity());
        assert!(!created.forget_identity());
        assert_eq!(created.data()["externalId"], Value::Null);
    }
}
