use crate::graphql::scalars::DateTime;
use async_graphql::{ID, Json, Object};
use entity::events;

use crate::{events::log::cursor, ids::IdKind};

/// An event of the clinic's log, in the same envelope webhooks receive.
pub struct JourneyEvent(pub events::Model);

#[Object]
impl JourneyEvent {
    /// The event's global id; webhooks send it as `webhook-id`.
    pub async fn id(&self) -> ID {
        IdKind::Event.encode(self.0.id).into()
    }

    /// The event type, such as `journey.stage_changed`.
    #[graphql(name = "type")]
    async fn event_type(&self) -> &str {
        &self.0.event_type
    }

    /// The clinic-wide sequence number: gap-free and in commit order.
    async fn sequence(&self) -> i64 {
        self.0.sequence
    }

    /// An opaque cursor to resume after this event.
    async fn cursor(&self) -> String {
        cursor(self.0.sequence)
    }

    /// When the change was committed.
    async fn occurred_at(&self) -> DateTime {
        DateTime(self.0.occurred_at)
    }

    /// The global id of the record the event is about.
    async fn subject(&self) -> &str {
        &self.0.subject
    }

    /// The event's facts: ids and journey facts, never names, contact details
    /// or comments.
    async fn data(&self) -> Json<&serde_json::Value> {
        Json(&self.0.data)
    }
}
