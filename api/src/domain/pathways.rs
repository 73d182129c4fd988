//! Pathways: a clinic's journey templates, their ordered stages and the
//! follow-up rules of each stage.

use std::collections::HashSet;

use entity::{follow_up_rules, journeys, pathways, stages};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, IntoActiveModel, PaginatorTrait,
    QueryFilter, QueryOrder,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use super::{
    Channel, DomainError, DomainResult, JourneyStatus, StageCategory, Store, Write, validate,
    values::Slug,
};
use crate::{
    audit::AuditEntry,
    auth::{Permission, Principal},
    ids::{self, IdKind},
};

/// Most stages one pathway may have.
pub const MAX_STAGES: usize = 30;
/// Most follow-up rules one stage may have.
pub const MAX_RULES_PER_STAGE: usize = 10;
/// Longest target or delay: one year.
pub const MAX_HOURS: i32 = 24 * 366;

/// A follow-up rule as a client sends it.
#[derive(Debug, Clone)]
pub struct RuleDraft {
    pub delay_hours: i32,
    pub channel: Channel,
    pub note: Option<String>,
    pub cancel_on_stage_exit: bool,
}

/// A stage as a client sends it.
#[derive(Debug, Clone)]
pub struct StageDraft {
    pub key: String,
    pub name: String,
    pub category: StageCategory,
    pub target_hours: Option<i32>,
    pub terminal: bool,
    pub follow_up_rules: Vec<RuleDraft>,
}

/// A new pathway as a client sends it.
#[derive(Debug, Clone)]
pub struct PathwayDraft {
    pub name: String,
    pub description: Option<String>,
    pub stages: Vec<StageDraft>,
}

fn require_manage(who: &Principal) -> DomainResult<()> {
    super::access::require(who, Permission::PathwaysManage, "managing pathways")
}

fn require_read(who: &Principal) -> DomainResult<()> {
    super::access::require_any(
        who,
        &[Permission::JourneysRead, Permission::AnalyticsRead],
        "reading pathways",
    )
}

/// The caller's pathways, by name.
pub async fn list(
    store: &Store,
    who: &Principal,
    include_archived: bool,
) -> DomainResult<Vec<pathways::Model>> {
    require_read(who)?;
    let mut select = who.select::<pathways::Entity>();
    if !include_archived {
        select = select.filter(pathways::Column::ArchivedAt.is_null());
    }
    Ok(select
        .order_by_asc(pathways::Column::Name)
        .order_by_asc(pathways::Column::Id)
        .all(store.db.conn())
        .await?)
}

/// One pathway of the caller's clinic.
pub async fn get(store: &Store, who: &Principal, id: Uuid) -> DomainResult<pathways::Model> {
    require_read(who)?;
    who.get::<pathways::Entity, _>(store.db.conn(), id, "pathway")
        .await
}

/// The stages of a pathway, in order.
pub async fn stages_of<C: ConnectionTrait>(
    conn: &C,
    who: &Principal,
    pathway_id: Uuid,
) -> DomainResult<Vec<stages::Model>> {
    Ok(who
        .select::<stages::Entity>()
        .filter(stages::Column::PathwayId.eq(pathway_id))
        .order_by_asc(stages::Column::Position)
        .all(conn)
        .await?)
}

fn check_rule(field: &str, rule: &RuleDraft) -> DomainResult<RuleDraft> {
    Ok(RuleDraft {
        delay_hours: validate::in_range(
            &format!("{field}.delayHours"),
            rule.delay_hours,
            0..=MAX_HOURS,
        )?,
        channel: rule.channel,
        note: validate::optional_text(
            &format!("{field}.note"),
            rule.note.as_deref(),
            validate::SHORT_TEXT * 2,
            false,
        )?,
        cancel_on_stage_exit: rule.cancel_on_stage_exit,
    })
}

fn check_rules(field: &str, rules: &[RuleDraft]) -> DomainResult<Vec<RuleDraft>> {
    if rules.len() > MAX_RULES_PER_STAGE {
        return Err(DomainError::invalid(
            field,
            format!("at most {MAX_RULES_PER_STAGE} follow-up rules per stage"),
        ));
    }
    rules
        .iter()
        .enumerate()
        .map(|(i, rule)| check_rule(&format!("{field}[{i}]"), rule))
        .collect()
}

fn check_target(field: &str, hours: Option<i32>) -> DomainResult<Option<i32>> {
    hours
        .map(|h| validate::in_range(field, h, 1..=MAX_HOURS))
        .transpose()
}

fn check_stage(field: &str, stage: &StageDraft) -> DomainResult<StageDraft> {
    Ok(StageDraft {
        key: Slug::parse(&format!("{field}.key"), &stage.key)?.into(),
        name: validate::required_text(&format!("{field}.name"), &stage.name, validate::SHORT_TEXT)?,
        category: stage.category,
        target_hours: check_target(&format!("{field}.targetHours"), stage.target_hours)?,
        terminal: stage.terminal,
        follow_up_rules: check_rules(&format!("{field}.followUpRules"), &stage.follow_up_rules)?,
    })
}

async fn ensure_name_free<C: ConnectionTrait>(
    conn: &C,
    who: &Principal,
    name: &str,
    except: Option<Uuid>,
) -> DomainResult<()> {
    let mut select = who
        .select::<pathways::Entity>()
        .filter(pathways::Column::Name.eq(name))
        .filter(pathways::Column::ArchivedAt.is_null());
    if let Some(except) = except {
        select = select.filter(pathways::Column::Id.ne(except));
    }
    if select.count(conn).await? > 0 {
        return Err(DomainError::conflict_on(
            "name",
            format!("a pathway named {name:?} already exists"),
        ));
    }
    Ok(())
}

async fn insert_stage(
    write: &Write<'_>,
    pathway_id: Uuid,
    position: i32,
    stage: &StageDraft,
) -> DomainResult<stages::Model> {
    let model = stages::Model {
        id: ids::new_id(),
        clinic_id: write.who.clinic_id,
        pathway_id,
        key: stage.key.clone(),
        name: stage.name.clone(),
        category: stage.category.as_str().to_string(),
        position,
        target_hours: stage.target_hours,
        terminal: stage.terminal,
        rebook_after_days: None,
        win_back_after_days: None,
        created_at: write.now,
    };
    stages::Entity::insert(model.clone().into_active_model())
        .exec_without_returning(&*write.txn)
        .await?;
    insert_rules(write, model.id, &stage.follow_up_rules).await?;
    Ok(model)
}

async fn insert_rules(write: &Write<'_>, stage_id: Uuid, rules: &[RuleDraft]) -> DomainResult<()> {
    if rules.is_empty() {
        return Ok(());
    }
    follow_up_rules::Entity::insert_many(rules.iter().map(|rule| {
        follow_up_rules::Model {
            id: ids::new_id(),
            clinic_id: write.who.clinic_id,
            stage_id,
            delay_hours: rule.delay_hours,
            channel: rule.channel.as_str().to_string(),
            note: rule.note.clone(),
            cancel_on_stage_exit: rule.cancel_on_stage_exit,
            created_at: write.now,
        }
        .into_active_model()
    }))
    .exec_without_returning(&*write.txn)
    .await?;
    Ok(())
}

/// Creates a pathway with its ordered stages and their follow-up rules.
pub async fn create(
    store: &Store,
    who: &Principal,
    draft: PathwayDraft,
) -> DomainResult<pathways::Model> {
    require_manage(who)?;
    let name = validate::required_text("name", &draft.name, validate::SHORT_TEXT)?;
    let description = validate::long_text("description", draft.description.as_deref())?;
    if draft.stages.is_empty() || draft.stages.len() > MAX_STAGES {
        return Err(DomainError::invalid(
            "stages",
            format!("a pathway has 1 to {MAX_STAGES} stages"),
        ));
    }
    let stages = draft
        .stages
        .iter()
        .enumerate()
        .map(|(i, stage)| check_stage(&format!("stages[{i}]"), stage))
        .collect::<DomainResult<Vec<_>>>()?;
    let mut keys = HashSet::new();
    for (i, stage) in stages.iter().enumerate() {
        if !keys.insert(stage.key.as_str()) {
            return Err(DomainError::invalid(
                format!("stages[{i}].key"),
                format!("duplicate stage key {:?}", stage.key),
            ));
        }
    }
    if stages[0].terminal {
        return Err(DomainError::invalid(
            "stages[0].terminal",
            "the first stage cannot be terminal",
        ));
    }

    let mut write = store.write(who).await?;
    ensure_name_free(&*write.txn, who, &name, None).await?;
    let pathway = pathways::Model {
        id: ids::new_id(),
        clinic_id: who.clinic_id,
        name,
        description,
        archived_at: None,
        created_at: write.now,
        updated_at: write.now,
    };
    write.configuration_changed();
    pathways::Entity::insert(pathway.clone().into_active_model())
        .exec_without_returning(&*write.txn)
        .await?;
    for (position, stage) in stages.iter().enumerate() {
        insert_stage(&write, pathway.id, position as i32, stage).await?;
    }
    write.audit(AuditEntry::new(
        "pathway.created",
        IdKind::Pathway,
        pathway.id,
        None,
    ));
    write.commit().await?;
    Ok(pathway)
}

/// Renames a pathway or changes its description.
pub async fn update(
    store: &Store,
    who: &Principal,
    id: Uuid,
    name: Option<String>,
    description: Option<Option<String>>,
) -> DomainResult<pathways::Model> {
    require_manage(who)?;
    let mut write = store.write(who).await?;
    let mut pathway = who
        .get::<pathways::Entity, _>(&*write.txn, id, "pathway")
        .await
        .map_err(|e| e.referenced_by("pathwayId"))?;
    if let Some(name) = name {
        let name = validate::required_text("name", &name, validate::SHORT_TEXT)?;
        if name != pathway.name {
            ensure_name_free(&*write.txn, who, &name, Some(id)).await?;
            pathway.name = name;
            write.configuration_changed();
        }
    }
    if let Some(description) = description {
        pathway.description = validate::long_text("description", description.as_deref())?;
    }
    pathway.updated_at = write.now;
    who.update_rows::<pathways::Entity>()
        .col_expr(pathways::Column::Name, Expr::value(pathway.name.clone()))
        .col_expr(
            pathways::Column::Description,
            Expr::value(pathway.description.clone()),
        )
        .col_expr(pathways::Column::UpdatedAt, Expr::value(pathway.updated_at))
        .filter(pathways::Column::Id.eq(id))
        .exec(&*write.txn)
        .await?;
    write.audit(AuditEntry::new(
        "pathway.updated",
        IdKind::Pathway,
        id,
        None,
    ));
    write.commit().await?;
    Ok(pathway)
}

/// Archives a pathway: its journeys go on, but no new journey can start on it.
pub async fn archive(store: &Store, who: &Principal, id: Uuid) -> DomainResult<pathways::Model> {
    require_manage(who)?;
    let mut write = store.write(who).await?;
    let mut pathway = who
        .get::<pathways::Entity, _>(&*write.txn, id, "pathway")
        .await
        .map_err(|e| e.referenced_by("pathwayId"))?;
    if pathway.archived_at.is_none() {
        pathway.archived_at = Some(write.now);
        pathway.updated_at = write.now;
        who.update_rows::<pathways::Entity>()
            .col_expr(
                pathways::Column::ArchivedAt,
                Expr::value(pathway.archived_at),
            )
            .col_expr(pathways::Column::UpdatedAt, Expr::value(pathway.updated_at))
            .filter(pathways::Column::Id.eq(id))
            .exec(&*write.txn)
            .await?;
    }
    write.audit(AuditEntry::new(
        "pathway.archived",
        IdKind::Pathway,
        id,
        None,
    ));
    write.commit().await?;
    Ok(pathway)
}

/// Adds a stage at `position` (default: the end), shifting later stages.
pub async fn add_stage(
    store: &Store,
    who: &Principal,
    pathway_id: Uuid,
    position: Option<i32>,
    draft: StageDraft,
) -> DomainResult<stages::Model> {
    require_manage(who)?;
    let draft = check_stage("stage", &draft)?;
    let mut write = store.write(who).await?;
    who.get::<pathways::Entity, _>(&*write.txn, pathway_id, "pathway")
        .await
        .map_err(|e| e.referenced_by("pathwayId"))?;
    let existing = stages_of(&*write.txn, who, pathway_id).await?;
    if existing.len() >= MAX_STAGES {
        return Err(DomainError::invalid(
            "pathwayId",
            format!("a pathway has at most {MAX_STAGES} stages"),
        ));
    }
    if existing.iter().any(|s| s.key == draft.key) {
        return Err(DomainError::invalid(
            "stage.key",
            format!("duplicate stage key {:?}", draft.key),
        ));
    }
    let end = existing.len() as i32;
    let position = match position {
        None => end,
        Some(p) => validate::in_range("position", p, 0..=end)?,
    };
    if position == 0 && draft.terminal {
        return Err(DomainError::invalid(
            "stage.terminal",
            "the first stage cannot be terminal",
        ));
    }
    who.update_rows::<stages::Entity>()
        .col_expr(
            stages::Column::Position,
            Expr::col(stages::Column::Position).add(1),
        )
        .filter(stages::Column::PathwayId.eq(pathway_id))
        .filter(stages::Column::Position.gte(position))
        .exec(&*write.txn)
        .await?;
    write.configuration_changed();
    let stage = insert_stage(&write, pathway_id, position, &draft).await?;
    write.audit(AuditEntry::new(
        "stage.added",
        IdKind::Stage,
        stage.id,
        None,
    ));
    write.commit().await?;
    Ok(stage)
}

/// Changes a stage's name, target hours or terminal flag.
pub async fn update_stage(
    store: &Store,
    who: &Principal,
    stage_id: Uuid,
    name: Option<String>,
    target_hours: Option<Option<i32>>,
    terminal: Option<bool>,
) -> DomainResult<stages::Model> {
    require_manage(who)?;
    let mut write = store.write(who).await?;
    let mut stage = who
        .get::<stages::Entity, _>(&*write.txn, stage_id, "stage")
        .await
        .map_err(|e| e.referenced_by("stageId"))?;
    if let Some(name) = name {
        stage.name = validate::required_text("name", &name, validate::SHORT_TEXT)?;
    }
    if let Some(terminal) = terminal {
        if terminal && stage.position == 0 {
            return Err(DomainError::invalid(
                "terminal",
                "the first stage cannot be terminal",
            ));
        }
        stage.terminal = terminal;
    }
    let target_changed = match target_hours {
        Some(hours) => {
            let hours = check_target("targetHours", hours)?;
            let changed = hours != stage.target_hours;
            stage.target_hours = hours;
            changed
        }
        None => false,
    };
    who.update_rows::<stages::Entity>()
        .col_expr(stages::Column::Name, Expr::value(stage.name.clone()))
        .col_expr(stages::Column::TargetHours, Expr::value(stage.target_hours))
        .col_expr(stages::Column::Terminal, Expr::value(stage.terminal))
        .filter(stages::Column::Id.eq(stage_id))
        .exec(&*write.txn)
        .await?;
    if target_changed {
        // Journeys waiting in the stage now stall at a different time.
        let stalls_at = match stage.target_hours {
            None => Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
            Some(hours) => add_hours_sql(store.db.backend(), "stage_entered_at", hours),
        };
        who.update_rows::<journeys::Entity>()
            .col_expr(journeys::Column::StallsAt, stalls_at)
            .filter(journeys::Column::CurrentStageId.eq(stage_id))
            .filter(journeys::Column::Status.eq(JourneyStatus::Active.as_str()))
            .exec(&*write.txn)
            .await?;
    }
    write.audit(AuditEntry::new(
        "stage.updated",
        IdKind::Stage,
        stage_id,
        None,
    ));
    write.commit().await?;
    Ok(stage)
}

/// SQL for "`column` plus `hours` hours", a timestamp of the same kind.
fn add_hours_sql(backend: DbBackend, column: &str, hours: i32) -> Expr {
    match backend {
        DbBackend::Postgres => {
            Expr::cust_with_values(format!("{column} + make_interval(hours => $1)"), [hours])
        }
        _ => Expr::cust_with_values(
            format!("strftime('%Y-%m-%dT%H:%M:%f+00:00', {column}, ?)"),
            [format!("+{hours} hours")],
        ),
    }
}

/// Puts a pathway's stages in the given order; `stage_ids` must name each of
/// its stages exactly once.
pub async fn reorder_stages(
    store: &Store,
    who: &Principal,
    pathway_id: Uuid,
    stage_ids: &[Uuid],
) -> DomainResult<Vec<stages::Model>> {
    require_manage(who)?;
    let mut write = store.write(who).await?;
    who.get::<pathways::Entity, _>(&*write.txn, pathway_id, "pathway")
        .await
        .map_err(|e| e.referenced_by("pathwayId"))?;
    let mut stages = stages_of(&*write.txn, who, pathway_id).await?;
    let current: HashSet<Uuid> = stages.iter().map(|s| s.id).collect();
    let given: HashSet<Uuid> = stage_ids.iter().copied().collect();
    if given.len() != stage_ids.len() || given != current {
        return Err(DomainError::invalid(
            "stageIds",
            "must list every stage of the pathway exactly once",
        ));
    }
    for (position, id) in stage_ids.iter().enumerate() {
        who.update_rows::<stages::Entity>()
            .col_expr(stages::Column::Position, Expr::value(position as i32))
            .filter(stages::Column::Id.eq(*id))
            .exec(&*write.txn)
            .await?;
        if let Some(stage) = stages.iter_mut().find(|s| s.id == *id) {
            stage.position = position as i32;
        }
    }
    stages.sort_by_key(|s| s.position);
    if stages.first().is_some_and(|s| s.terminal) {
        return Err(DomainError::invalid(
            "stageIds",
            "the first stage cannot be terminal",
        ));
    }
    write.audit(AuditEntry::new(
        "stages.reordered",
        IdKind::Pathway,
        pathway_id,
        None,
    ));
    write.commit().await?;
    Ok(stages)
}

/// Replaces the follow-up rules of a stage.
pub async fn set_follow_up_rules(
    store: &Store,
    who: &Principal,
    stage_id: Uuid,
    rules: &[RuleDraft],
) -> DomainResult<stages::Model> {
    require_manage(who)?;
    let rules = check_rules("rules", rules)?;
    let mut write = store.write(who).await?;
    let stage = who
        .get::<stages::Entity, _>(&*write.txn, stage_id, "stage")
        .await
        .map_err(|e| e.referenced_by("stageId"))?;
    write.configuration_changed();
    who.delete_rows::<follow_up_rules::Entity>()
        .filter(follow_up_rules::Column::StageId.eq(stage_id))
        .exec(&*write.txn)
        .await?;
    insert_rules(&write, stage_id, &rules).await?;
    write.audit(AuditEntry::new(
        "stage.follow_up_rules_set",
        IdKind::Stage,
        stage_id,
        None,
    ));
    write.commit().await?;
    Ok(stage)
}

/// One stage of the caller's clinic, for the other aggregates' rules.
pub(crate) async fn stage<C: ConnectionTrait>(
    conn: &C,
    who: &Principal,
    id: Uuid,
) -> DomainResult<stages::Model> {
    who.get::<stages::Entity, _>(conn, id, "stage").await
}
