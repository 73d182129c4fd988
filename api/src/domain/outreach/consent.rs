//! Consent per channel (SMS, email, phone) and purpose (care, marketing): an
//! append-only history whose latest entry per pair is the current state.
//!
//! Care by email or by phone needs no record when the patient gave the
//! address (a reply to their own care, as CAN-SPAM and the TCPA allow); an
//! explicit withdrawal still stops it. Every SMS, and all marketing, needs
//! consent on record.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::{consents, patients};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    sea_query::Expr,
};
use uuid::Uuid;

use crate::{
    auth::Principal,
    domain::{Channel, ConsentPurpose, DomainError, DomainResult, Write},
    events::{ConsentChanged, Event},
    ids::{self, PatientId, TouchpointId},
};

/// Where one (channel, purpose) stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Given, on record.
    Granted { at: DateTime<Utc>, source: String },
    /// Withdrawn, on record.
    Revoked { at: DateTime<Utc>, source: String },
    /// Nothing on record.
    Unknown,
}

/// The current consents of one patient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsentSet {
    latest: HashMap<(Channel, ConsentPurpose), Standing>,
}

/// What folding a history needs of one of its entries (a stored consent
/// row, or the columns of one that the planner's read selects).
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    pub id: Uuid,
    pub channel: &'a str,
    pub purpose: &'a str,
    pub granted: bool,
    pub source: &'a str,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
}

impl ConsentSet {
    /// Folds a patient's history (any order) into its current state.
    pub fn of(history: &[consents::Model]) -> Self {
        Self::fold(history.iter().map(|row| Recorded {
            id: row.id,
            channel: &row.channel,
            purpose: &row.purpose,
            granted: row.granted,
            source: &row.source,
            occurred_at: row.occurred_at,
            recorded_at: row.recorded_at,
        }))
    }

    /// Folds the entries of a patient's history (any order) into its
    /// current state: the latest entry of each pair by when it happened,
    /// then by when it was recorded.
    pub fn fold<'a>(history: impl IntoIterator<Item = Recorded<'a>>) -> Self {
        let mut rows: Vec<Recorded<'a>> = history.into_iter().collect();
        rows.sort_by_key(|r| (r.occurred_at, r.recorded_at, r.id));
        let mut set = ConsentSet::default();
        for row in rows {
            let (Some(channel), Some(purpose)) = (
                Channel::parse(row.channel),
                ConsentPurpose::parse(row.purpose),
            ) else {
                continue;
            };
            let source = row.source.to_string();
            let standing = if row.granted {
                Standing::Granted {
                    at: row.occurred_at,
                    source,
                }
            } else {
                Standing::Revoked {
                    at: row.occurred_at,
                    source,
                }
            };
            set.latest.insert((channel, purpose), standing);
        }
        set
    }

    /// Marks a pair granted (for plans made before anything is stored).
    pub fn grant(&mut self, channel: Channel, purpose: ConsentPurpose) {
        self.latest.insert(
            (channel, purpose),
            Standing::Granted {
                at: DateTime::<Utc>::MIN_UTC,
                source: "test".into(),
            },
        );
    }

    /// The record for a pair.
    pub fn standing(&self, channel: Channel, purpose: ConsentPurpose, _address: bool) -> Standing {
        self.latest
            .get(&(channel, purpose))
            .cloned()
            .unwrap_or(Standing::Unknown)
    }

    /// May the patient be contacted on `channel` for `purpose`? `address`:
    /// they gave the address that channel needs.
    pub fn allows(&self, channel: Channel, purpose: ConsentPurpose, address: bool) -> bool {
        match self.standing(channel, purpose, address) {
            Standing::Granted { .. } => true,
            Standing::Revoked { .. } => false,
            Standing::Unknown => {
                address
                    && purpose == ConsentPurpose::Care
                    && matches!(channel, Channel::Email | Channel::Phone)
            }
        }
    }

    /// The three booleans clients read as `Patient.consent`: SMS and email
    /// for care on record, and marketing on record on any channel.
    pub fn legacy(&self) -> (bool, bool, bool) {
        let granted = |channel, purpose| {
            matches!(
                self.standing(channel, purpose, false),
                Standing::Granted { .. }
            )
        };
        (
            granted(Channel::Sms, ConsentPurpose::Care),
            granted(Channel::Email, ConsentPurpose::Care),
            Channel::CONTACT
                .into_iter()
                .any(|c| granted(c, ConsentPurpose::Marketing)),
        )
    }
}

/// The replies that withdraw SMS consent (CTIA keywords, any case).
pub const OPT_OUT_KEYWORDS: [&str; 6] = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"];
/// The replies that give it back.
pub const OPT_IN_KEYWORDS: [&str; 2] = ["START", "UNSTOP"];

/// What an inbound text says about consent, if it is a keyword.
pub fn keyword(text: &str) -> Option<bool> {
    let word = text.trim().to_uppercase();
    if OPT_OUT_KEYWORDS.contains(&word.as_str()) {
        Some(false)
    } else if OPT_IN_KEYWORDS.contains(&word.as_str()) {
        Some(true)
    } else {
        None
    }
}

/// The consent history of `patient`, oldest first.
pub async fn history<C: ConnectionTrait>(
    conn: &C,
    who: &Principal,
    patient: Uuid,
) -> DomainResult<Vec<consents::Model>> {
    Ok(who
        .select::<consents::Entity>()
        .filter(consents::Column::PatientId.eq(patient))
        .order_by_asc(consents::Column::OccurredAt)
        .order_by_asc(consents::Column::RecordedAt)
        .all(conn)
        .await?)
}

/// One consent to record.
#[derive(Debug, Clone)]
pub struct ConsentEntry {
    pub channel: Channel,
    pub purpose: ConsentPurpose,
    pub granted: bool,
    pub source: String,
    pub touchpoint_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
}

/// Appends `entries` to `patient`'s history in this change, keeps the three
/// legacy booleans in step, and emits `patient.consent_changed` for each.
/// Entries that change nothing (the same state already on record) are left
/// out. Returns those written.
pub async fn append(
    write: &mut Write<'_>,
    patient: &patients::Model,
    entries: Vec<ConsentEntry>,
) -> DomainResult<Vec<ConsentEntry>> {
    let rows = history(&*write.txn, write.who, patient.id).await?;
    let mut current = ConsentSet::of(&rows);
    let mut written = Vec::new();
    for entry in entries {
        if !entry.channel.needs_consent() {
            return Err(DomainError::invalid(
                "channel",
                "consent is given for SMS, EMAIL or PHONE",
            ));
        }
        let same = match current.standing(entry.channel, entry.purpose, true) {
            Standing::Granted { .. } => entry.granted,
            Standing::Revoked { .. } => !entry.granted,
            Standing::Unknown => false,
        };
        if same {
            continue;
        }
        let row = consents::Model {
            id: ids::new_id(),
            clinic_id: patient.clinic_id,
            patient_id: patient.id,
            channel: entry.channel.as_str().to_string(),
            purpose: entry.purpose.as_str().to_string(),
            granted: entry.granted,
            source: entry.source.clone(),
            touchpoint_id: entry.touchpoint_id,
            occurred_at: entry.occurred_at,
            recorded_at: write.now,
            actor_kind: write.who.actor.kind().to_string(),
            actor_id: write.who.actor.id(),
        };
        consents::Entity::insert(row.clone().into_active_model())
            .exec_without_returning(&*write.txn)
            .await?;
        let standing = if entry.granted {
            Standing::Granted {
                at: entry.occurred_at,
                source: entry.source.clone(),
            }
        } else {
            Standing::Revoked {
                at: entry.occurred_at,
                source: entry.source.clone(),
            }
        };
        current
            .latest
            .insert((entry.channel, entry.purpose), standing);
        write.emit(Event::PatientConsentChanged(ConsentChanged {
            patient_id: PatientId(patient.id),
            channel: entry.channel.as_str().to_string(),
            purpose: entry.purpose.as_str().to_string(),
            granted: entry.granted,
            source: entry.source.clone(),
            touchpoint_id: entry.touchpoint_id.map(TouchpointId),
            occurred_at: entry.occurred_at,
        }));
        written.push(entry);
    }
    if !written.is_empty() {
        let (sms, email, marketing) = current.legacy();
        write
            .who
            .update_rows::<patients::Entity>()
            .col_expr(patients::Column::ConsentSms, Expr::value(sms))
            .col_expr(patients::Column::ConsentEmail, Expr::value(email))
            .col_expr(patients::Column::ConsentMarketing, Expr::value(marketing))
            .filter(patients::Column::Id.eq(patient.id))
            .exec(&*write.txn)
            .await?;
    }
    Ok(written)
}

/// The entries that the three legacy booleans (`consent {sms email
/// marketing}` of the patient inputs) stand for, against what is on record:
/// SMS and email for care, and marketing on each of those the patient also
/// agreed to.
pub fn from_legacy(
    sms: bool,
    email: bool,
    marketing: bool,
    source: &str,
    at: DateTime<Utc>,
) -> Vec<ConsentEntry> {
    let entry = |channel, purpose, granted| ConsentEntry {
        channel,
        purpose,
        granted,
        source: source.to_string(),
        touchpoint_id: None,
        occurred_at: at,
    };
    vec![
        entry(Channel::Sms, ConsentPurpose::Care, sms),
        entry(Channel::Email, ConsentPurpose::Care, email),
        entry(Channel::Sms, ConsentPurpose::Marketing, sms && marketing),
        entry(
            Channel::Email,
            ConsentPurpose::Marketing,
            email && marketing,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(channel: &str, purpose: &str, granted: bool, minutes: i64) -> consents::Model {
        let at = DateTime::<Utc>::from_timestamp(1_800_000_000 + minutes * 60, 0).unwrap();
        consents::Model {
            id: ids::new_id(),
            clinic_id: Uuid::nil(),
            patient_id: Uuid::nil(),
            channel: channel.into(),
            purpose: purpose.into(),
            granted,
            source: "form".into(),
            touchpoint_id: None,
            occurred_at: at,
            recorded_at: at,
            actor_kind: "SYSTEM".into(),
            actor_id: None,
        }
    }

    #[test]
    fn the_latest_entry_wins_and_care_email_needs_no_record() {
        let set = ConsentSet::of(&[
            row("SMS", "CARE", false, 2),
            row("SMS", "CARE", true, 1),
            row("EMAIL", "MARKETING", true, 1),
        ]);
        assert!(!set.allows(Channel::Sms, ConsentPurpose::Care, true));
        assert!(set.allows(Channel::Email, ConsentPurpose::Marketing, true));
        assert!(set.allows(Channel::Email, ConsentPurpose::Care, true));
        assert!(!set.allows(Channel::Email, ConsentPurpose::Care, false));
        assert!(!set.allows(Channel::Sms, ConsentPurpose::Marketing, true));
        assert_eq!(set.legacy(), (false, false, true));
    }

    #[test]
    fn opt_out_keywords_in_any_case() {
        assert_eq!(keyword("  stop "), Some(false));
        assert_eq!(keyword("Unsubscribe"), Some(false));
        assert_eq!(keyword("unstop"), Some(true));
        assert_eq!(keyword("please stop texting"), None);
    }
}
