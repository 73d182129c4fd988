//! W6, outreach: the coordinator's queue (`followUps(filter: {sendable:
//! true}, first: 50)`) at the clinic's size, and one sweep of the
//! time-based planner over thousands of journeys whose rebooking came due.

use std::time::Instant;

use anyhow::Context as _;
use chrono::Utc;
use entity::{follow_ups, stages};
use sea_orm::{ColumnTrait, QueryFilter, sea_query::Expr};
use serde_json::json;
use uuid::Uuid;

use crate::{
    Figures,
    server::Server,
    workloads::{Client, failed},
};
use journeymap::{
    auth::Principal,
    config::DatabaseConfig,
    db::Db,
    domain::{Store, outreach::sweep},
};

const QUEUE: &str = "{ followUps(first: 50, filter: { sendable: true }) { totalCount \
    nodes { id kind priority channel sendAt explanation message blockedReason \
    patient { id givenName } journey { id currentStage { name } } } } }";

/// The queue `rounds` times one after another, then the sweep: every stage
/// of the clinic gets a one-day rebooking cadence, the planner plans up to
/// `sweep_limit` follow-ups per reason, and the benchmark puts the cadences
/// and the follow-ups back as they were so the next run measures the same.
pub async fn outreach(
    client: &Client,
    server: &Server,
    database: &DatabaseConfig,
    clinic: Uuid,
    rounds: usize,
    sweep_limit: u64,
) -> anyhow::Result<Figures> {
    let warm = client.gql(QUEUE, json!({})).await?;
    anyhow::ensure!(!failed(&warm), "the queue answered with errors: {warm}");
    let sendable = warm["data"]["followUps"]["totalCount"]
        .as_i64()
        .unwrap_or_default();
    let mut figures = Figures {
        name: format!(
            "W6 outreach: the coordinator's queue (first 50 of {sendable} sendable) × {rounds}, then a sweep"
        ),
        ..Default::default()
    };
    let statements_before = server.statements().await?;
    let cpu_before = server.cpu_seconds();
    let started = Instant::now();
    for _ in 0..rounds {
        let t = Instant::now();
        let body = client.gql(QUEUE, json!({})).await?;
        let elapsed = t.elapsed();
        if failed(&body) {
            figures.errors += 1;
        } else {
            figures.requests += 1;
            figures.latencies.push(elapsed);
        }
    }
    figures.seconds = started.elapsed().as_secs_f64();
    figures.server_cpu_seconds = server.cpu_seconds() - cpu_before;
    figures.statements_per_request = (server.statements().await? - statements_before) as f64
        / (figures.requests + figures.errors).max(1) as f64;
    figures.server_peak_mib = server.peak_rss_mib();

    let (planned, seconds) = sweep_once(database, clinic, sweep_limit).await?;
    figures.notes.push(format!(
        "sweep: planned {planned} follow-ups in {seconds:.2} s ({:.0}/s; target: 10,000 in under 10 s), in this process",
        planned as f64 / seconds.max(1e-9)
    ));
    Ok(figures)
}

/// One sweep after giving every open stage a one-day rebooking cadence;
/// returns how many follow-ups it planned and how long it took.
async fn sweep_once(
    database: &DatabaseConfig,
    clinic: Uuid,
    limit: u64,
) -> anyhow::Result<(usize, f64)> {
    let db = Db::connect(database)
        .await
        .context("cannot open the database")?;
    let system = Principal::system(clinic);
    let cadences: Vec<(Uuid, Option<i32>)> = system
        .select::<stages::Entity>()
        .all(db.conn())
        .await?
        .into_iter()
        .map(|s| (s.id, s.rebook_after_days))
        .collect();
    system
        .update_rows::<stages::Entity>()
        .col_expr(stages::Column::RebookAfterDays, Expr::value(1))
        .filter(stages::Column::Terminal.eq(false))
        .exec(db.conn())
        .await?;
    let since = Utc::now();
    let store = Store::new(db.clone());
    let started = Instant::now();
    let planned = sweep::plan_time_based_as_of(&store, None, Some(clinic), limit).await;
    let seconds = started.elapsed().as_secs_f64();
    // Back as it was, planned or not: the cadences, and no trace of the
    // planned follow-ups but their events.
    for (stage, days) in cadences {
        system
            .update_rows::<stages::Entity>()
            .col_expr(stages::Column::RebookAfterDays, Expr::value(days))
            .filter(stages::Column::Id.eq(stage))
            .exec(db.conn())
            .await?;
    }
    system
        .delete_rows::<follow_ups::Entity>()
        .filter(follow_ups::Column::PlanKey.is_not_null())
        .filter(follow_ups::Column::CreatedAt.gte(since))
        .exec(db.conn())
        .await?;
    db.close().await;
    Ok((planned?, seconds))
}
