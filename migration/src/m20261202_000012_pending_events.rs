//! Events committed before they are numbered (PostgreSQL): a writer commits
//! its events with a negative placeholder sequence and numbers them right
//! after, under the clinic's numbering lock (`events::outbox` in the API).
//!
//! - `ix_events_pending`: the clinics with events still waiting for their
//!   numbers, which a writer that died between its commit and its numbering
//!   leaves behind for the sweeper. Empty on SQLite, where events are
//!   numbered in their transaction.
//! - `journeymap_number_events` (PostgreSQL only): takes the clinic's
//!   numbering lock and numbers every waiting event, in one round trip, so
//!   the lock is held for the server's work and the commit alone, never for
//!   a trip back to the application.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `journeymap_number_events(clinic, lock_space, lock_key, ours, channel, prefix)`.
///
/// Called as a statement of its own (its own transaction): the advisory lock
/// is released when it commits. It is `VOLATILE`, so every statement in it
/// takes a fresh snapshot: the numbering, run once the lock is held, sees
/// every earlier holder's numbers. A caller whose events (`ours`, ids
/// separated by commas) an earlier holder numbered is answered without
/// writing anything. Otherwise every waiting event of the clinic is numbered
/// in one statement, in the order of their placeholders, the counter moves on
/// by as many, and the other replicas are told `prefix || first:last` on
/// `channel`. Returns the events it numbered (`numbered_now`) and those of
/// `ours` already numbered.
const POSTGRES_NUMBERING: &str = r#"
CREATE OR REPLACE FUNCTION journeymap_number_events(
  p_clinic uuid, p_lock_space integer, p_lock_key integer, p_ours text, p_channel text, p_prefix text
) RETURNS TABLE (
  numbered_now boolean, id uuid, clinic_id uuid, sequence bigint,
  event_type text, subject text, data json, occurred_at timestamptz
) LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
  ours uuid[] := COALESCE(string_to_array(NULLIF(p_ours, ''), ',')::uuid[], '{}');
BEGIN
  PERFORM pg_advisory_xact_lock(p_lock_space, p_lock_key);
  IF cardinality(ours) > 0
     AND NOT EXISTS (SELECT 1 FROM events e WHERE e.id = ANY(ours) AND e.sequence < 0) THEN
    RETURN QUERY
      SELECT false, e.id, e.clinic_id, e.sequence, e.event_type::text, e.subject::text, e.data, e.occurred_at
      FROM events e WHERE e.id = ANY(ours);
    RETURN;
  END IF;
  RETURN QUERY
    WITH pending AS (
      SELECT e.id, row_number() OVER (ORDER BY e.sequence DESC) AS position
      FROM events e WHERE e.clinic_id = p_clinic AND e.sequence < 0
    ), counter AS (
      UPDATE event_sequences c SET last_sequence = c.last_sequence + (SELECT count(*) FROM pending)
      WHERE c.clinic_id = p_clinic AND EXISTS (SELECT 1 FROM pending)
      RETURNING c.last_sequence - (SELECT count(*) FROM pending) AS before
    ), numbered AS (
      UPDATE events e SET sequence = counter.before + pending.position
      FROM pending, counter WHERE e.id = pending.id
      RETURNING e.id, e.clinic_id, e.sequence, e.event_type, e.subject, e.data, e.occurred_at
    ), notified AS (
      SELECT pg_notify(p_channel, p_prefix || min(n.sequence) || ':' || max(n.sequence))
      FROM numbered n HAVING count(*) > 0
    )
    SELECT true, n.id, n.clinic_id, n.sequence, n.event_type::text, n.subject::text, n.data, n.occurred_at
    FROM numbered n CROSS JOIN (SELECT count(*) FROM notified) AS told
    UNION ALL
    SELECT false, e.id, e.clinic_id, e.sequence, e.event_type::text, e.subject::text, e.data, e.occurred_at
    FROM events e WHERE e.id = ANY(ours) AND e.sequence > 0;
END $$;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS ix_events_pending ON events (clinic_id) WHERE sequence < 0",
        )
        .await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(POSTGRES_NUMBERING).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(
                "DROP FUNCTION IF EXISTS journeymap_number_events(uuid, integer, integer, text, text, text)",
            )
            .await?;
        }
        db.execute_unprepared("DROP INDEX IF EXISTS ix_events_pending")
            .await?;
        Ok(())
    }
}
