//! PostgreSQL tells every replica when a clinic's outreach configuration
//! changed.
//!
//! Replicas keep what planning a follow-up reads of a clinic's configuration
//! (its policy and templates, its pathways' names, its stages' follow-up
//! rules) for up to 30 s (`api/src/domain/outreach/configuration.rs`). Any
//! change to those, whether Journeymap makes it or an operator runs the SQL by
//! hand, notifies `journeymap_configuration` with its commit, and every
//! listening replica stops answering from what it kept. The trigger on
//! `clinics` fires on the columns planning reads only. Nothing on SQLite,
//! where replicas keep no configuration.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE OR REPLACE FUNCTION journeymap_configuration_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  -- One notification per transaction: PostgreSQL folds identical ones.
  PERFORM pg_notify('journeymap_configuration', '');
  RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS clinics_configuration_changed ON clinics;
CREATE TRIGGER clinics_configuration_changed
  AFTER UPDATE OF name, timezone, quiet_start, quiet_end, max_marketing_per_week,
    min_hours_between_contacts OR DELETE
  ON clinics FOR EACH ROW EXECUTE FUNCTION journeymap_configuration_changed();
DROP TRIGGER IF EXISTS outreach_templates_configuration_changed ON outreach_templates;
CREATE TRIGGER outreach_templates_configuration_changed
  AFTER INSERT OR UPDATE OR DELETE
  ON outreach_templates FOR EACH ROW EXECUTE FUNCTION journeymap_configuration_changed();
DROP TRIGGER IF EXISTS follow_up_rules_configuration_changed ON follow_up_rules;
CREATE TRIGGER follow_up_rules_configuration_changed
  AFTER INSERT OR UPDATE OR DELETE
  ON follow_up_rules FOR EACH ROW EXECUTE FUNCTION journeymap_configuration_changed();
DROP TRIGGER IF EXISTS pathways_configuration_changed ON pathways;
CREATE TRIGGER pathways_configuration_changed
  AFTER INSERT OR UPDATE OF name, clinic_id OR DELETE
  ON pathways FOR EACH ROW EXECUTE FUNCTION journeymap_configuration_changed();
"#;

const DOWN: &str = r#"
DROP TRIGGER IF EXISTS clinics_configuration_changed ON clinics;
DROP TRIGGER IF EXISTS outreach_templates_configuration_changed ON outreach_templates;
DROP TRIGGER IF EXISTS follow_up_rules_configuration_changed ON follow_up_rules;
DROP TRIGGER IF EXISTS pathways_configuration_changed ON pathways;
DROP FUNCTION IF EXISTS journeymap_configuration_changed();
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::on_postgres(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::on_postgres(manager, DOWN).await
    }
}
