//! The journey map as a picture: stages left to right, flows whose width
//! follows their count, per-stage conversion and median time, the emotion
//! curve, and markers where patients stall unseen or leave unhappy.

use std::fmt::Write as _;

use super::{JourneyMap, StageStats};
use crate::domain::TransitionKind;

const STAGE_WIDTH: f64 = 150.0;
const GAP: f64 = 70.0;
const MARGIN: f64 = 40.0;
const TOP: f64 = 90.0;
const BOX_HEIGHT: f64 = 150.0;
const CURVE_TOP: f64 = 330.0;
const CURVE_HEIGHT: f64 = 120.0;
const HEIGHT: f64 = 600.0;

/// Escapes text for SVG.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn stage_x(index: usize) -> f64 {
    MARGIN + index as f64 * (STAGE_WIDTH + GAP)
}

fn hours(value: Option<f64>) -> String {
    match value {
        None => "–".into(),
        Some(h) if h >= 48.0 => format!("{:.1} d", h / 24.0),
        Some(h) => format!("{h:.1} h"),
    }
}

fn percent(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{:.0}%", v * 100.0))
}

/// The colour of an emotion from -2 (red) through 0 (grey) to 2 (green).
fn emotion_colour(emotion: Option<f64>) -> &'static str {
    match emotion {
        None => "#9ca3af",
        Some(e) if e <= -1.0 => "#dc2626",
        Some(e) if e < -0.25 => "#f97316",
        Some(e) if e <= 0.25 => "#9ca3af",
        Some(e) if e < 1.0 => "#84cc16",
        Some(_) => "#16a34a",
    }
}

/// Renders the map as a standalone SVG document.
pub fn render(map: &JourneyMap) -> String {
    let n = map.stages.len().max(1);
    let width = MARGIN * 2.0 + n as f64 * STAGE_WIDTH + (n as f64 - 1.0) * GAP;
    let max_flow = map.flows.iter().map(|f| f.count).max().unwrap_or(1).max(1) as f64;
    let index_of = |id: uuid::Uuid| {
        map.stages
            .iter()
            .position(|s| s.stage.as_ref().is_some_and(|st| st.id == id))
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{HEIGHT:.0}" viewBox="0 0 {width:.0} {HEIGHT:.0}" font-family="Helvetica, Arial, sans-serif" role="img" aria-label="Journey map of {name}">"##,
        name = esc(&map.pathway.name)
    );
    let _ = write!(
        svg,
        r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="8" refY="5" markerWidth="4" markerHeight="4" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#6366f1"/></marker><marker id="arrow-back" viewBox="0 0 10 10" refX="8" refY="5" markerWidth="4" markerHeight="4" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#f59e0b"/></marker></defs>"##
    );
    let _ = write!(
        svg,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
    );
    let _ = write!(
        svg,
        r##"<text x="{MARGIN}" y="34" font-size="20" font-weight="bold" fill="#111827">{}</text><text x="{MARGIN}" y="56" font-size="12" fill="#6b7280">{} – {} · generated {}</text>"##,
        esc(&map.pathway.name),
        map.window.from.format("%Y-%m-%d"),
        map.window.to.format("%Y-%m-%d"),
        map.generated_at.format("%Y-%m-%d %H:%M UTC"),
    );

    // Flows between stages: forward above the boxes' centre line, backward below.
    for flow in &map.flows {
        let Some(from) = index_of(flow.from) else {
            continue;
        };
        let stroke = 2.0 + 14.0 * flow.count as f64 / max_flow;
        match (flow.kind, flow.to.and_then(index_of)) {
            (TransitionKind::Forward, Some(to)) => {
                let (x1, x2) = (stage_x(from) + STAGE_WIDTH, stage_x(to));
                let y = TOP + BOX_HEIGHT * 0.35;
                let lift = if to > from + 1 { 60.0 } else { 0.0 };
                let _ = write!(
                    svg,
                    r##"<path d="M {x1:.1} {y:.1} C {c1:.1} {cy:.1}, {c2:.1} {cy:.1}, {x2e:.1} {y:.1}" stroke="#6366f1" stroke-opacity="0.55" stroke-width="{stroke:.1}" fill="none" marker-end="url(#arrow)"><title>{count} moved forward</title></path><text x="{mx:.1}" y="{ty:.1}" font-size="11" text-anchor="middle" fill="#4338ca">{count}</text>"##,
                    c1 = x1 + 30.0,
                    c2 = x2 - 30.0,
                    cy = y - lift,
                    x2e = x2 - 4.0,
                    mx = (x1 + x2) / 2.0,
                    ty = y - lift * 0.75 - stroke / 2.0 - 4.0,
                    count = flow.count,
                );
            }
            (TransitionKind::Backward, Some(to)) => {
                let (x1, x2) = (
                    stage_x(from) + STAGE_WIDTH / 2.0,
                    stage_x(to) + STAGE_WIDTH / 2.0,
                );
                let y = TOP + BOX_HEIGHT;
                let _ = write!(
                    svg,
                    r##"<path d="M {x1:.1} {y:.1} C {x1:.1} {cy:.1}, {x2:.1} {cy:.1}, {x2:.1} {ye:.1}" stroke="#f59e0b" stroke-opacity="0.6" stroke-width="{stroke:.1}" fill="none" stroke-dasharray="6 4" marker-end="url(#arrow-back)"><title>{count} moved back</title></path><text x="{mx:.1}" y="{ty:.1}" font-size="11" text-anchor="middle" fill="#b45309">↩ {count}</text>"##,
                    cy = y + 45.0,
                    ye = y + 4.0,
                    mx = (x1 + x2) / 2.0,
                    ty = y + 50.0,
                    count = flow.count,
                );
            }
            _ => {}
        }
    }

    for (i, stats) in map.stages.iter().enumerate() {
        render_stage(&mut svg, i, stats, max_flow);
    }

    // The emotion curve.
    let _ = write!(
        svg,
        r##"<text x="{MARGIN}" y="{y:.1}" font-size="13" font-weight="bold" fill="#111827">How patients feel</text>"##,
        y = CURVE_TOP - 12.0
    );
    let curve_y = |e: f64| CURVE_TOP + CURVE_HEIGHT / 2.0 - e / 2.0 * (CURVE_HEIGHT / 2.0);
    let _ = write!(
        svg,
        r##"<line x1="{MARGIN}" y1="{y0:.1}" x2="{x2:.1}" y2="{y0:.1}" stroke="#e5e7eb" stroke-dasharray="4 4"/><text x="{x2:.1}" y="{yt:.1}" font-size="10" fill="#16a34a" text-anchor="end">delighted</text><text x="{x2:.1}" y="{yb:.1}" font-size="10" fill="#dc2626" text-anchor="end">upset</text>"##,
        y0 = curve_y(0.0),
        x2 = width - MARGIN,
        yt = curve_y(2.0) + 10.0,
        yb = curve_y(-2.0),
    );
    let points: Vec<(f64, f64, f64)> = map
        .stages
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            s.average_emotion
                .map(|e| (stage_x(i) + STAGE_WIDTH / 2.0, curve_y(e), e))
        })
        .collect();
    if points.len() > 1 {
        let path: Vec<String> = points
            .iter()
            .map(|(x, y, _)| format!("{x:.1},{y:.1}"))
            .collect();
        let _ = write!(
            svg,
            r##"<polyline points="{}" fill="none" stroke="#8b5cf6" stroke-width="3"/>"##,
            path.join(" ")
        );
    }
    for (x, y, e) in &points {
        let _ = write!(
            svg,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="6" fill="{}" stroke="#ffffff" stroke-width="2"><title>average emotion {e:+.2}</title></circle><text x="{x:.1}" y="{ty:.1}" font-size="11" text-anchor="middle" fill="#374151">{e:+.1}</text>"##,
            emotion_colour(Some(*e)),
            ty = y - 10.0,
        );
    }

    // Legend.
    let ly = HEIGHT - 40.0;
    let _ = write!(
        svg,
        r##"<g font-size="11" fill="#374151"><line x1="{MARGIN}" y1="{ly}" x2="{l1}" y2="{ly}" stroke="#6366f1" stroke-width="6" stroke-opacity="0.55"/><text x="{t1}" y="{ty}">moved forward (width = count)</text><line x1="{l2s}" y1="{ly}" x2="{l2}" y2="{ly}" stroke="#f59e0b" stroke-width="4" stroke-dasharray="6 4"/><text x="{t2}" y="{ty}">moved back</text><circle cx="{c3}" cy="{ly}" r="7" fill="#dc2626"/><text x="{c3}" y="{ty}" font-size="9" fill="#ffffff" text-anchor="middle" font-weight="bold">!</text><text x="{t3}" y="{ty}">pain point (NPS below 0 or drop-offs)</text><circle cx="{c4}" cy="{ly}" r="7" fill="#111827"/><text x="{c4}" y="{ty}" font-size="9" fill="#ffffff" text-anchor="middle" font-weight="bold">?</text><text x="{t4}" y="{ty}">blind spot (stalled, no contact)</text></g>"##,
        l1 = MARGIN + 30.0,
        t1 = MARGIN + 36.0,
        l2s = MARGIN + 210.0,
        l2 = MARGIN + 240.0,
        t2 = MARGIN + 246.0,
        c3 = MARGIN + 335.0,
        t3 = MARGIN + 347.0,
        c4 = MARGIN + 575.0,
        t4 = MARGIN + 587.0,
        ty = ly + 4.0,
    );
    svg.push_str("</svg>");
    svg
}

fn render_stage(svg: &mut String, i: usize, stats: &StageStats, _max_flow: f64) {
    let Some(stage) = &stats.stage else { return };
    let x = stage_x(i);
    let pain = stats.nps.is_some_and(|n| n < 0.0)
        || (stats.dropped > 0 && stats.dropped * 5 >= stats.exited.max(1));
    let border = if pain { "#dc2626" } else { "#c7d2fe" };
    let _ = write!(
        svg,
        r##"<g><rect x="{x:.1}" y="{TOP}" width="{STAGE_WIDTH}" height="{BOX_HEIGHT}" rx="10" fill="#eef2ff" stroke="{border}" stroke-width="2"/><text x="{cx:.1}" y="{ty:.1}" font-size="13" font-weight="bold" text-anchor="middle" fill="#1e1b4b">{name}</text><text x="{cx:.1}" y="{cy:.1}" font-size="10" text-anchor="middle" fill="#6366f1">{category}</text>"##,
        cx = x + STAGE_WIDTH / 2.0,
        ty = TOP + 22.0,
        cy = TOP + 37.0,
        name = esc(&truncate(&stage.name, 20)),
        category = esc(&stage.category.replace('_', " ").to_lowercase()),
    );
    let lines = [
        format!("{} here now", stats.active),
        format!("{} entered", stats.entered),
        format!("conversion {}", percent(stats.conversion_rate)),
        format!("median {}", hours(stats.median_hours)),
        format!(
            "{} stalled · {} overdue",
            stats.stalled, stats.overdue_follow_ups
        ),
        match stats.nps {
            Some(nps) => format!("NPS {nps:+.0} ({})", stats.nps_responses),
            None => "NPS –".into(),
        },
    ];
    for (line_no, line) in lines.iter().enumerate() {
        let _ = write!(
            svg,
            r##"<text x="{lx:.1}" y="{ly:.1}" font-size="11" fill="#374151">{}</text>"##,
            esc(line),
            lx = x + 10.0,
            ly = TOP + 58.0 + line_no as f64 * 15.0,
        );
    }
    if stats.dropped > 0 {
        let _ = write!(
            svg,
            r##"<text x="{cx:.1}" y="{y:.1}" font-size="11" text-anchor="middle" fill="#dc2626">✕ {} dropped</text>"##,
            stats.dropped,
            cx = x + STAGE_WIDTH / 2.0,
            y = TOP - 8.0,
        );
    }
    let mut marker_x = x + STAGE_WIDTH - 12.0;
    if pain {
        let _ = write!(
            svg,
            r##"<circle cx="{marker_x:.1}" cy="{my:.1}" r="9" fill="#dc2626"><title>pain point</title></circle><text x="{marker_x:.1}" y="{ty:.1}" font-size="12" fill="#ffffff" text-anchor="middle" font-weight="bold">!</text>"##,
            my = TOP + 12.0,
            ty = TOP + 16.0,
        );
        marker_x -= 22.0;
    }
    if stats.blind_spots > 0 {
        let _ = write!(
            svg,
            r##"<circle cx="{marker_x:.1}" cy="{my:.1}" r="9" fill="#111827"><title>{n} stalled without contact</title></circle><text x="{marker_x:.1}" y="{ty:.1}" font-size="12" fill="#ffffff" text-anchor="middle" font-weight="bold">?</text>"##,
            my = TOP + 12.0,
            ty = TOP + 16.0,
            n = stats.blind_spots,
        );
    }
    svg.push_str("</g>");
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(max - 1).collect();
        cut.push('…');
        cut
    }
}
