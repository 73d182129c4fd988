//! Outreach as clients read it: a patient's contact preferences and
//! consents, the clinic's policy and templates.

use async_graphql::{Object, SimpleObject};
use entity::consents;

use super::{Channel, ConsentPurpose, FollowUpKind, stored};
use crate::{
    domain::{
        self,
        outreach::settings::{ConsentNow, Policy, Template},
        values::QuietHours,
    },
    graphql::scalars::DateTime,
    ids::IdKind,
};

/// Local hours in which nobody is contacted (`start` until `end`, spanning
/// midnight when `end` is earlier).
#[derive(SimpleObject, Clone)]
pub struct QuietHoursView {
    /// `HH:MM`, local time.
    pub start: String,
    /// `HH:MM`, local time.
    pub end: String,
}

impl From<QuietHours> for QuietHoursView {
    fn from(quiet: QuietHours) -> Self {
        Self {
            start: quiet.start.text(),
            end: quiet.end.text(),
        }
    }
}

/// How and when a patient may be contacted.
#[derive(SimpleObject)]
pub struct ContactPreferences {
    /// IANA time zone: the patient's own, else the clinic's.
    pub timezone: String,
    /// True when `timezone` is the patient's own.
    pub own_timezone: bool,
    /// The channel the patient prefers.
    pub preferred_channel: Option<Channel>,
    /// Quiet hours: the patient's own, else the clinic's.
    pub quiet_hours: QuietHoursView,
    /// True when `quietHours` are the patient's own.
    pub own_quiet_hours: bool,
    /// The current consent for each channel (SMS, EMAIL, PHONE) and purpose.
    pub consents: Vec<ConsentState>,
}

/// A consent as it stands now.
#[derive(SimpleObject)]
pub struct ConsentState {
    pub channel: Channel,
    pub purpose: ConsentPurpose,
    /// True when outreach on this channel for this purpose is allowed.
    pub granted: bool,
    /// When it was given or withdrawn; empty for care by email or phone that
    /// follows from an address the patient gave.
    pub at: Option<DateTime>,
    /// Where it came from ("intake form", "STOP reply", "email address given").
    pub source: String,
}

impl From<ConsentNow> for ConsentState {
    fn from(now: ConsentNow) -> Self {
        Self {
            channel: now.channel.into(),
            purpose: now.purpose.into(),
            granted: now.granted,
            at: now.at.map(DateTime),
            source: now.source,
        }
    }
}

/// One entry of a patient's consent history.
pub struct ConsentRecord(pub consents::Model);

#[Object]
impl ConsentRecord {
    /// SMS, EMAIL or PHONE.
    async fn channel(&self) -> async_graphql::Result<Channel> {
        stored(&self.0.channel, domain::Channel::parse)
    }

    /// CARE or MARKETING.
    async fn purpose(&self) -> async_graphql::Result<ConsentPurpose> {
        stored(&self.0.purpose, domain::ConsentPurpose::parse)
    }

    /// Given (true) or withdrawn (false).
    async fn granted(&self) -> bool {
        self.0.granted
    }

    /// Where it came from.
    async fn source(&self) -> &str {
        &self.0.source
    }

    /// The touchpoint that carried it (a STOP reply), as a global id.
    async fn touchpoint_id(&self) -> Option<String> {
        self.0.touchpoint_id.map(|t| IdKind::Touchpoint.encode(t))
    }

    /// When the patient gave or withdrew it.
    async fn occurred_at(&self) -> DateTime {
        DateTime(self.0.occurred_at)
    }

    /// When Journeymap recorded it.
    async fn recorded_at(&self) -> DateTime {
        DateTime(self.0.recorded_at)
    }
}

/// The clinic's outreach policy.
pub struct OutreachPolicy(pub Policy);

#[Object]
impl OutreachPolicy {
    /// When nobody is contacted, in each patient's local time (default 21:00–08:00).
    async fn quiet_hours(&self) -> QuietHoursView {
        self.0.quiet.into()
    }

    /// Marketing messages one patient gets in 7 days at most (default 1).
    async fn max_marketing_per_week(&self) -> i32 {
        self.0.max_marketing_per_week
    }

    /// Hours between two outreach contacts, unless the patient wrote in (default 24).
    async fn min_hours_between_contacts(&self) -> i32 {
        self.0.min_hours_between_contacts
    }
}

/// A draft message for one (follow-up kind, channel).
pub struct OutreachTemplate(pub Template);

#[Object]
impl OutreachTemplate {
    async fn kind(&self) -> FollowUpKind {
        self.0.kind.into()
    }

    async fn channel(&self) -> Channel {
        self.0.channel.into()
    }

    /// With `{{givenName}}`, `{{clinicName}}`, `{{stageName}}`,
    /// `{{pathwayName}}` and `{{dueDate}}`.
    async fn body(&self) -> &str {
        &self.0.body
    }

    /// False while the default is in use.
    async fn custom(&self) -> bool {
        self.0.custom
    }
}
