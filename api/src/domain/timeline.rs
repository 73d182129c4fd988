//! A patient's timeline: stage transitions, touchpoints, feedback and
//! follow-ups merged in time order, newest first. Follow-ups appear at their
//! due time, so upcoming ones head the timeline.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Value};
use uuid::Uuid;

use super::{
    DomainError, DomainResult,
    page::{Keyset, Page, PageRequest, finish},
};
use crate::{
    auth::{Permission, Principal},
    db::{placeholders, statement},
};

/// What a timeline entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    StageTransition,
    Touchpoint,
    Feedback,
    FollowUp,
}

impl EntryKind {
    fn parse(text: &str) -> DomainResult<Self> {
        match text {
            "TRANSITION" => Ok(EntryKind::StageTransition),
            "TOUCHPOINT" => Ok(EntryKind::Touchpoint),
            "FEEDBACK" => Ok(EntryKind::Feedback),
            "FOLLOW_UP" => Ok(EntryKind::FollowUp),
            other => Err(DomainError::internal(anyhow::anyhow!(
                "unknown timeline kind {other}"
            ))),
        }
    }
}

/// One entry: which record, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    pub id: Uuid,
    pub at: DateTime<Utc>,
}

impl Entry {
    /// The entry's cursor.
    pub fn keyset(&self) -> Keyset {
        Keyset::at(self.at, self.id)
    }
}

/// The first timeline page of each patient, in one statement.
pub async fn pages<C: ConnectionTrait>(
    conn: &C,
    who: &Principal,
    patients: &[Uuid],
    page: &PageRequest,
) -> DomainResult<HashMap<Uuid, Page<Entry>>> {
    super::access::require(who, Permission::JourneysRead, "timelines")?;
    if patients.is_empty() {
        return Ok(HashMap::new());
    }
    let list = placeholders(patients.len());
    let mut values: Vec<Value> = Vec::new();
    for _ in 0..4 {
        values.push(who.clinic_id.into());
        values.extend(patients.iter().map(|p| Value::from(*p)));
    }
    let mut cursor = String::new();
    if let Some(after) = &page.after {
        let at = after
            .at
            .ok_or_else(|| DomainError::invalid("after", "is not a timeline cursor"))?;
        cursor.push_str(" WHERE (u.at < ? OR (u.at = ? AND u.id < ?))");
        values.extend([Value::from(at), Value::from(at), Value::from(after.id)]);
    }
    values.push(Value::from(page.size as i64 + 1));
    let sql = format!(
        "SELECT kind, id, at, patient_id FROM ( \
            SELECT u.kind, u.id, u.at, u.patient_id, \
                   ROW_NUMBER() OVER (PARTITION BY u.patient_id ORDER BY u.at DESC, u.id DESC) AS rn \
            FROM ( \
                SELECT 'TRANSITION' AS kind, t.id AS id, t.occurred_at AS at, j.patient_id AS patient_id \
                FROM stage_transitions t JOIN journeys j ON j.id = t.journey_id \
                WHERE t.clinic_id = ? AND j.patient_id IN ({list}) \
                UNION ALL SELECT 'TOUCHPOINT', id, occurred_at, patient_id FROM touchpoints \
                WHERE clinic_id = ? AND patient_id IN ({list}) \
                UNION ALL SELECT 'FEEDBACK', id, submitted_at, patient_id FROM feedback \
                WHERE clinic_id = ? AND patient_id IN ({list}) \
                UNION ALL SELECT 'FOLLOW_UP', id, due_at, patient_id FROM follow_ups \
                WHERE clinic_id = ? AND patient_id IN ({list}) \
            ) u{cursor} \
         ) ranked WHERE rn <= ? ORDER BY patient_id, rn"
    );
    let rows = conn
        .query_all_raw(statement(conn.get_database_backend(), &sql, values))
        .await?;
    let mut grouped: HashMap<Uuid, Vec<Entry>> = HashMap::new();
    for row in rows {
        let kind: String = row.try_get("", "kind")?;
        let patient: Uuid = row.try_get("", "patient_id")?;
        grouped.entry(patient).or_default().push(Entry {
            kind: EntryKind::parse(&kind)?,
            id: row.try_get("", "id")?,
            at: row.try_get("", "at")?,
        });
    }
    Ok(patients
        .iter()
        .map(|p| (*p, finish(grouped.remove(p).unwrap_or_default(), page)))
        .collect())
}

/// How many entries each patient's timeline has, in one statement.
pub async fn counts<C: ConnectionTrait>(
    conn: &C,
    who: &Principal,
    patients: &[Uuid],
) -> DomainResult<HashMap<Uuid, u64>> {
    super::access::require(who, Permission::JourneysRead, "timelines")?;
    let mut counts: HashMap<Uuid, u64> = patients.iter().map(|p| (*p, 0)).collect();
    if patients.is_empty() {
        return Ok(counts);
    }
    let list = placeholders(patients.len());
    let sql = format!(
        "SELECT patient_id, CAST(SUM(n) AS BIGINT) AS n FROM ( \
           SELECT j.patient_id AS patient_id, COUNT(*) AS n \
           FROM stage_transitions t JOIN journeys j ON j.id = t.journey_id \
           WHERE t.clinic_id = ? AND j.patient_id IN ({list}) GROUP BY j.patient_id \
           UNION ALL SELECT patient_id, COUNT(*) FROM touchpoints \
           WHERE clinic_id = ? AND patient_id IN ({list}) GROUP BY patient_id \
           UNION ALL SELECT patient_id, COUNT(*) FROM feedback \
           WHERE clinic_id = ? AND patient_id IN ({list}) GROUP BY patient_id \
           UNION ALL SELECT patient_id, COUNT(*) FROM follow_ups \
           WHERE clinic_id = ? AND patient_id IN ({list}) GROUP BY patient_id \
         ) entries GROUP BY patient_id"
    );
    let values: Vec<Value> = (0..4)
        .flat_map(|_| {
            std::iter::once(Value::from(who.clinic_id))
                .chain(patients.iter().map(|p| Value::from(*p)))
        })
        .collect();
    for row in conn
        .query_all_raw(statement(conn.get_database_backend(), &sql, values))
        .await?
    {
        let patient: Uuid = row.try_get("", "patient_id")?;
        let n: i64 = row.try_get("", "n")?;
        counts.insert(patient, n.max(0) as u64);
    }
    Ok(counts)
}
