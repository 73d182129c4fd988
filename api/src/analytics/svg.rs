//! The journey map as a picture a clinic owner reads at a glance: stages
//! left to right, bands whose width follows how many patients moved on,
//! drop-offs falling away in red, backward moves in amber, each stage's
//! conversion and median time, the emotion curve, markers on pain points
//! and blind spots, the worst comments, and a legend.

use std::fmt::Write as _;

use super::{JourneyMap, StageStats};
use crate::domain::TransitionKind;

const CARD_WIDTH: f64 = 176.0;
const GAP: f64 = 64.0;
const MARGIN: f64 = 40.0;
const CARD_TOP: f64 = 118.0;
const CARD_HEIGHT: f64 = 250.0;
const MAX_BAND: f64 = 36.0;
const CURVE_TOP: f64 = 490.0;
const CURVE_HEIGHT: f64 = 130.0;

const INK: &str = "#111827";
const MUTED: &str = "#6b7280";
const FORWARD: &str = "#6366f1";
const BACKWARD: &str = "#d97706";
const DROPPED: &str = "#dc2626";
const DONE: &str = "#059669";
/// Where a card's outreach strip begins, below its figures.
const OUTREACH_TOP: f64 = 190.0;

/// Escapes text for SVG.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

fn card_x(index: usize) -> f64 {
    MARGIN + index as f64 * (CARD_WIDTH + GAP)
}

fn hours(value: Option<f64>) -> String {
    match value {
        None => "–".into(),
        Some(h) if h >= 240.0 => format!("{:.0} d", h / 24.0),
        Some(h) if h >= 48.0 => format!("{:.1} d", h / 24.0),
        Some(h) => format!("{h:.1} h"),
    }
}

fn percent(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{:.0}%", v * 100.0))
}

/// The colour of an emotion from -2 (red) through 0 (grey) to 2 (green).
fn emotion_colour(emotion: f64) -> &'static str {
    match emotion {
        e if e <= -1.0 => "#dc2626",
        e if e < -0.25 => "#f97316",
        e if e <= 0.25 => "#9ca3af",
        e if e < 1.0 => "#84cc16",
        _ => "#16a34a",
    }
}

/// A stage hurts when patients say so (negative NPS, detractor comments) or
/// leave in numbers (a fifth or more of its exits are drop-offs).
fn is_pain_point(stats: &StageStats) -> bool {
    stats.nps.is_some_and(|n| n < 0.0)
        || stats.csat.is_some_and(|c| c < 3.0)
        || (stats.exited >= 5 && stats.dropped * 5 >= stats.exited)
}

/// Renders the map as a standalone SVG document.
pub fn render(map: &JourneyMap) -> String {
    let figures = &map.current;
    let stages = &figures.stages;
    let n = stages.len().max(1);
    let width = (MARGIN * 2.0 + n as f64 * CARD_WIDTH + (n as f64 - 1.0) * GAP).max(860.0);
    let quotes: Vec<(&str, &super::PainPoint)> = stages
        .iter()
        .flat_map(|s| {
            let name = s.stage.as_ref().map_or("", |st| st.name.as_str());
            s.pain_points.iter().take(1).map(move |p| (name, p))
        })
        .take(4)
        .collect();
    let quotes_top = CURVE_TOP + CURVE_HEIGHT + 50.0;
    let legend_top = quotes_top
        + if quotes.is_empty() {
            0.0
        } else {
            30.0 + quotes.len() as f64 * 20.0
        };
    let height = legend_top + 50.0;
    let max_flow = figures
        .flows
        .iter()
        .map(|f| f.count)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let band = |count: u64| 3.0 + (MAX_BAND - 3.0) * (count as f64 / max_flow).sqrt();
    let index_of = |id: uuid::Uuid| {
        stages
            .iter()
            .position(|s| s.stage.as_ref().is_some_and(|st| st.id == id))
    };

    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="Helvetica, Arial, sans-serif" role="img" aria-label="Journey map of {name}">"##,
        name = esc(&map.pathway.name)
    );
    let _ = write!(
        svg,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
    );
    let active: u64 = stages.iter().map(|s| s.active).sum();
    let started: u64 = stages.first().map_or(0, |s| s.entered);
    let dropped: u64 = stages.iter().map(|s| s.dropped).sum();
    let stalled: u64 = stages.iter().map(|s| s.stalled).sum();
    let overdue: u64 = stages.iter().map(|s| s.overdue_follow_ups).sum();
    let _ = write!(
        svg,
        r##"<text x="{MARGIN}" y="38" font-size="22" font-weight="bold" fill="{INK}">{name}</text><text x="{MARGIN}" y="60" font-size="12" fill="{MUTED}">Journey map · {from} to {to} · generated {at}</text><text x="{MARGIN}" y="84" font-size="13" fill="{INK}">{active} patients on the way · {started} started in the window · <tspan fill="{DROPPED}">{dropped} dropped off</tspan> · {stalled} stalled · {overdue} follow-ups overdue</text>"##,
        name = esc(&map.pathway.name),
        from = figures.window.from.format("%b %-d, %Y"),
        to = figures.window.to.format("%b %-d, %Y"),
        at = map.generated_at.format("%Y-%m-%d %H:%M UTC"),
    );

    // Bands and arcs behind the cards.
    let mid = CARD_TOP + CARD_HEIGHT / 2.0;
    for flow in &figures.flows {
        let Some(from) = index_of(flow.from) else {
            continue;
        };
        let width = band(flow.count);
        match (flow.kind, flow.to.and_then(index_of)) {
            (TransitionKind::Forward, Some(to)) if to == from + 1 => {
                let (x1, x2) = (card_x(from) + CARD_WIDTH, card_x(to));
                let _ = write!(
                    svg,
                    r##"<g><title>{count} moved on from {a} to {b}</title><path d="M {x1:.1} {top:.1} L {tip:.1} {top:.1} L {x2:.1} {mid:.1} L {tip:.1} {bottom:.1} L {x1:.1} {bottom:.1} Z" fill="{FORWARD}" fill-opacity="0.35"/><text x="{cx:.1}" y="{ty:.1}" font-size="12" font-weight="bold" text-anchor="middle" fill="#3730a3">{count}</text></g>"##,
                    top = mid - width / 2.0,
                    bottom = mid + width / 2.0,
                    tip = x2 - 8.0,
                    cx = (x1 + x2) / 2.0 - 4.0,
                    ty = mid - width / 2.0 - 6.0,
                    count = flow.count,
                    a = esc(stage_name(&stages[from])),
                    b = esc(stage_name(&stages[to])),
                );
            }
            (TransitionKind::Forward, Some(to)) => {
                let (x1, x2) = (
                    card_x(from) + CARD_WIDTH * 0.7,
                    card_x(to) + CARD_WIDTH * 0.3,
                );
                let lift = CARD_TOP - 26.0;
                let _ = write!(
                    svg,
                    r##"<g><title>{count} skipped ahead</title><path d="M {x1:.1} {CARD_TOP} C {x1:.1} {lift:.1}, {x2:.1} {lift:.1}, {x2:.1} {CARD_TOP}" stroke="{FORWARD}" stroke-opacity="0.5" stroke-width="{w:.1}" fill="none"/></g>"##,
                    w = width.min(10.0),
                    count = flow.count,
                );
            }
            (TransitionKind::Backward, Some(to)) => {
                let (x1, x2) = (
                    card_x(from) + CARD_WIDTH * 0.4,
                    card_x(to) + CARD_WIDTH * 0.6,
                );
                let bottom = CARD_TOP + CARD_HEIGHT;
                let dip = bottom + 84.0;
                let _ = write!(
                    svg,
                    r##"<g><title>{count} went back</title><path d="M {x1:.1} {bottom:.1} C {x1:.1} {dip:.1}, {x2:.1} {dip:.1}, {x2:.1} {end:.1}" stroke="{BACKWARD}" stroke-width="{w:.1}" stroke-dasharray="6 4" fill="none"/><path d="M {x2:.1} {bottom:.1} l -6 10 l 12 0 z" fill="{BACKWARD}"/><text x="{cx:.1}" y="{ty:.1}" font-size="11" text-anchor="middle" fill="{BACKWARD}">↩ {count} back</text></g>"##,
                    end = bottom + 9.0,
                    w = (width / 3.0).clamp(1.5, 4.0),
                    cx = (x1 + x2) / 2.0,
                    ty = bottom + 80.0,
                    count = flow.count,
                );
            }
            _ => {}
        }
    }

    for (i, stats) in stages.iter().enumerate() {
        render_card(&mut svg, i, stats, band(stats.dropped.max(1)));
    }

    render_emotion_curve(&mut svg, map, width);

    if !quotes.is_empty() {
        let _ = write!(
            svg,
            r##"<text x="{MARGIN}" y="{y:.1}" font-size="14" font-weight="bold" fill="{INK}">What hurt, in patients' words</text>"##,
            y = quotes_top,
        );
        for (i, (stage, pain)) in quotes.iter().enumerate() {
            let _ = write!(
                svg,
                r##"<text x="{MARGIN}" y="{y:.1}" font-size="12" fill="{INK}"><tspan fill="{DROPPED}" font-weight="bold">{kind} {score}</tspan> · {stage} · <tspan font-style="italic">“{comment}”</tspan></text>"##,
                y = quotes_top + 22.0 + i as f64 * 20.0,
                kind = pain.kind,
                score = pain.score,
                stage = esc(stage),
                comment = esc(&truncate(&pain.comment, 110)),
            );
        }
    }

    render_legend(&mut svg, legend_top);
    svg.push_str("</svg>");
    svg
}

fn stage_name(stats: &StageStats) -> &str {
    stats.stage.as_ref().map_or("", |s| s.name.as_str())
}

fn render_card(svg: &mut String, i: usize, stats: &StageStats, drop_band: f64) {
    let Some(stage) = &stats.stage else { return };
    let x = card_x(i);
    let cx = x + CARD_WIDTH / 2.0;
    let pain = is_pain_point(stats);
    let border = if pain { DROPPED } else { "#c7d2fe" };
    let fill = if stage.terminal { "#ecfdf5" } else { "#eef2ff" };
    let bottom = CARD_TOP + CARD_HEIGHT;

    // Drop-offs fall away below the card.
    if stats.dropped > 0 {
        let _ = write!(
            svg,
            r##"<g><title>{n} dropped off in {name}</title><path d="M {l:.1} {bottom:.1} L {r:.1} {bottom:.1} L {r2:.1} {end:.1} L {l2:.1} {end:.1} Z" fill="{DROPPED}" fill-opacity="0.35"/></g>"##,
            n = stats.dropped,
            name = esc(&stage.name),
            l = x + 14.0,
            r = x + 14.0 + drop_band,
            r2 = x + 14.0 + drop_band * 0.6,
            l2 = x + 14.0 + drop_band * 0.4,
            end = bottom + 30.0,
        );
    }

    let _ = write!(
        svg,
        r##"<g><rect x="{x:.1}" y="{CARD_TOP}" width="{CARD_WIDTH}" height="{CARD_HEIGHT}" rx="12" fill="{fill}" stroke="{border}" stroke-width="2"/><text x="{cx:.1}" y="{ty:.1}" font-size="14" font-weight="bold" text-anchor="middle" fill="#1e1b4b">{name}</text><text x="{cx:.1}" y="{cy:.1}" font-size="10" text-anchor="middle" fill="{FORWARD}" letter-spacing="1">{category}</text>"##,
        ty = CARD_TOP + 28.0,
        cy = CARD_TOP + 43.0,
        name = esc(&truncate(&stage.name, 21)),
        category = esc(&stage.category.replace('_', " ")),
    );
    if stage.terminal {
        let _ = write!(
            svg,
            r##"<text x="{cx:.1}" y="{y1:.1}" font-size="30" font-weight="bold" text-anchor="middle" fill="{DONE}">{entered}</text><text x="{cx:.1}" y="{y2:.1}" font-size="11" text-anchor="middle" fill="{MUTED}">completed the pathway</text>"##,
            y1 = CARD_TOP + 92.0,
            y2 = CARD_TOP + 112.0,
            entered = stats.entered,
        );
    } else {
        let _ = write!(
            svg,
            r##"<text x="{cx:.1}" y="{y1:.1}" font-size="28" font-weight="bold" text-anchor="middle" fill="{INK}">{active}</text><text x="{cx:.1}" y="{y2:.1}" font-size="11" text-anchor="middle" fill="{MUTED}">here now{stalled}</text>"##,
            y1 = CARD_TOP + 76.0,
            y2 = CARD_TOP + 92.0,
            active = stats.active,
            stalled = if stats.stalled > 0 {
                format!(" · {} stalled", stats.stalled)
            } else {
                String::new()
            },
        );
        let lines = [
            format!("conversion {}", percent(stats.conversion_rate)),
            format!(
                "median {} · p90 {}",
                hours(stats.median_hours),
                hours(stats.p90_hours)
            ),
            match (stats.nps, stats.csat) {
                (Some(nps), _) => format!("NPS {nps:+.0} ({} answers)", stats.nps_responses),
                (None, Some(csat)) => {
                    format!("CSAT {csat:.1}/5 ({} answers)", stats.csat_responses)
                }
                _ => "no scores yet".into(),
            },
            format!("{} follow-ups overdue", stats.overdue_follow_ups),
            if stats.dropped == 0 {
                "no drop-offs".into()
            } else if stats.exited > 0 {
                format!(
                    "✕ {} dropped ({:.0}% of exits)",
                    stats.dropped,
                    stats.dropped as f64 * 100.0 / stats.exited as f64
                )
            } else {
                format!("✕ {} dropped", stats.dropped)
            },
        ];
        for (n, line) in lines.iter().enumerate() {
            let alarming =
                (n == 3 && stats.overdue_follow_ups > 0) || (n == 4 && stats.dropped > 0);
            let colour = if alarming { DROPPED } else { "#374151" };
            let _ = write!(
                svg,
                r##"<text x="{lx:.1}" y="{ly:.1}" font-size="11" fill="{colour}">{}</text>"##,
                esc(line),
                lx = x + 12.0,
                ly = CARD_TOP + 112.0 + n as f64 * 14.5,
            );
        }
    }
    if !stage.terminal {
        render_outreach(svg, x, stats);
    }
    // Markers sit on the card's top edge, right to left.
    let mut badge_right = x + CARD_WIDTH - 6.0;
    if pain {
        let w = 62.0;
        let _ = write!(
            svg,
            r##"<g><title>pain point: patients complain or leave here</title><rect x="{bx:.1}" y="{by:.1}" width="{w}" height="20" rx="10" fill="{DROPPED}"/><text x="{tx:.1}" y="{ty:.1}" font-size="11" fill="#ffffff" text-anchor="middle" font-weight="bold">! pain</text></g>"##,
            bx = badge_right - w,
            by = CARD_TOP - 10.0,
            tx = badge_right - w / 2.0,
            ty = CARD_TOP + 4.0,
        );
        badge_right -= w + 6.0;
    }
    if stats.blind_spots > 0 {
        let label = format!("? {} unseen", stats.blind_spots);
        let w = 16.0 + label.chars().count() as f64 * 6.2;
        let _ = write!(
            svg,
            r##"<g><title>{n} stalled with no contact since they entered the stage</title><rect x="{bx:.1}" y="{by:.1}" width="{w:.1}" height="20" rx="10" fill="{INK}"/><text x="{tx:.1}" y="{ty:.1}" font-size="11" fill="#ffffff" text-anchor="middle" font-weight="bold">{label}</text></g>"##,
            n = stats.blind_spots,
            bx = badge_right - w,
            by = CARD_TOP - 10.0,
            tx = badge_right - w / 2.0,
            ty = CARD_TOP + 4.0,
        );
    }
    svg.push_str("</g>");
}

/// Does outreach work here? A strip at the foot of the card: follow-ups
/// planned in the window, the share made (indigo) and answered (green),
/// those blocked, and how often the journey moved on after a contact.
fn render_outreach(svg: &mut String, x: f64, stats: &StageStats) {
    let planned: u64 = stats.outreach.iter().map(|o| o.planned).sum();
    let sent: u64 = stats.outreach.iter().map(|o| o.sent).sum();
    let blocked: u64 = stats.outreach.iter().map(|o| o.blocked).sum();
    let answered: u64 = stats.outreach.iter().map(|o| o.answered).sum();
    let advanced: u64 = stats.outreach.iter().map(|o| o.advanced).sum();
    let top = CARD_TOP + OUTREACH_TOP;
    let inner = CARD_WIDTH - 24.0;
    let _ = write!(
        svg,
        r##"<line x1="{x1:.1}" y1="{top:.1}" x2="{x2:.1}" y2="{top:.1}" stroke="#c7d2fe"/><text x="{lx:.1}" y="{ly:.1}" font-size="9" letter-spacing="1" fill="{MUTED}">OUTREACH</text>"##,
        x1 = x + 12.0,
        x2 = x + CARD_WIDTH - 12.0,
        lx = x + 12.0,
        ly = top + 13.0,
    );
    if planned == 0 {
        let _ = write!(
            svg,
            r##"<text x="{lx:.1}" y="{ly:.1}" font-size="11" fill="{MUTED}">none planned in the window</text>"##,
            lx = x + 12.0,
            ly = top + 32.0,
        );
        return;
    }
    // On a line of its own: beside "made" it runs into the strip's label.
    let blocked_note = if blocked > 0 {
        format!(
            r##"<text x="{bx:.1}" y="{y:.1}" font-size="10" fill="{DROPPED}">{blocked} blocked</text>"##,
            bx = x + 12.0,
            y = top + 53.0,
        )
    } else {
        String::new()
    };
    let share = |n: u64| inner * n as f64 / planned as f64;
    let _ = write!(
        svg,
        r##"<g><title>{planned} planned, {sent} made, {answered} answered within 72 h, {advanced} moved on within 14 days, {blocked} blocked</title><text x="{rx:.1}" y="{ly:.1}" font-size="10" text-anchor="end" fill="#374151">{sent}/{planned} made</text><rect x="{bx:.1}" y="{by:.1}" width="{inner:.1}" height="7" rx="3.5" fill="#e5e7eb"/><rect x="{bx:.1}" y="{by:.1}" width="{ws:.1}" height="7" rx="3.5" fill="{FORWARD}" fill-opacity="0.6"/><rect x="{bx:.1}" y="{by:.1}" width="{wa:.1}" height="7" rx="3.5" fill="{DONE}"/><text x="{bx:.1}" y="{ty:.1}" font-size="11" fill="#374151">{answer} answered · {advance} moved on</text>{blocked_note}</g>"##,
        rx = x + CARD_WIDTH - 12.0,
        ly = top + 13.0,
        bx = x + 12.0,
        by = top + 19.0,
        ws = share(sent),
        wa = share(answered),
        ty = top + 39.0,
        answer = percent((sent > 0).then(|| answered as f64 / sent as f64)),
        advance = percent((sent > 0).then(|| advanced as f64 / sent as f64)),
    );
}

fn render_emotion_curve(svg: &mut String, map: &JourneyMap, width: f64) {
    let stages = &map.current.stages;
    let y_of = |e: f64| CURVE_TOP + CURVE_HEIGHT / 2.0 - e / 2.0 * (CURVE_HEIGHT / 2.0);
    let _ = write!(
        svg,
        r##"<text x="{MARGIN}" y="{y:.1}" font-size="14" font-weight="bold" fill="{INK}">How patients feel at each stage</text>"##,
        y = CURVE_TOP - 16.0,
    );
    for (emotion, label, colour) in [
        (2.0, "delighted", "#16a34a"),
        (0.0, "neutral", MUTED),
        (-2.0, "upset", "#dc2626"),
    ] {
        let y = y_of(emotion);
        let _ = write!(
            svg,
            r##"<line x1="{MARGIN}" y1="{y:.1}" x2="{x2:.1}" y2="{y:.1}" stroke="#e5e7eb" stroke-dasharray="{dash}"/><text x="{x2:.1}" y="{ty:.1}" font-size="10" fill="{colour}" text-anchor="end">{label}</text>"##,
            x2 = width - MARGIN,
            ty = y - 4.0,
            dash = if emotion == 0.0 { "0" } else { "4 4" },
        );
    }
    let points: Vec<(f64, f64, f64, u64)> = stages
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            s.average_emotion
                .map(|e| (card_x(i) + CARD_WIDTH / 2.0, y_of(e), e, s.moments_of_truth))
        })
        .collect();
    if points.len() > 1 {
        let path: Vec<String> = points
            .iter()
            .map(|(x, y, _, _)| format!("{x:.1},{y:.1}"))
            .collect();
        let _ = write!(
            svg,
            r##"<polyline points="{}" fill="none" stroke="#8b5cf6" stroke-width="3" stroke-linejoin="round"/>"##,
            path.join(" ")
        );
    }
    for (x, y, e, moments) in &points {
        let _ = write!(
            svg,
            r##"<g><title>average emotion {e:+.2}; {moments} moments of truth</title><circle cx="{x:.1}" cy="{y:.1}" r="8" fill="{colour}" stroke="#ffffff" stroke-width="2"/><text x="{x:.1}" y="{ty:.1}" font-size="12" font-weight="bold" text-anchor="middle" fill="#374151">{e:+.1}</text></g>"##,
            colour = emotion_colour(*e),
            ty = y - 13.0,
        );
    }
}

/// Draws a legend swatch at (x, baseline y).
type Swatch = fn(f64, f64) -> String;

fn render_legend(svg: &mut String, top: f64) {
    let y = top + 14.0;
    let items: [(Swatch, &str); 6] = [
        (
            |x, y| {
                format!(
                    r##"<rect x="{x:.1}" y="{:.1}" width="28" height="10" fill="{FORWARD}" fill-opacity="0.35"/>"##,
                    y - 9.0
                )
            },
            "moved on (width = patients)",
        ),
        (
            |x, y| {
                format!(
                    r##"<rect x="{x:.1}" y="{:.1}" width="28" height="10" fill="{DROPPED}" fill-opacity="0.35"/>"##,
                    y - 9.0
                )
            },
            "dropped off",
        ),
        (
            |x, y| {
                format!(
                    r##"<line x1="{x:.1}" y1="{ly:.1}" x2="{x2:.1}" y2="{ly:.1}" stroke="{BACKWARD}" stroke-width="3" stroke-dasharray="6 4"/>"##,
                    ly = y - 4.0,
                    x2 = x + 28.0
                )
            },
            "went back",
        ),
        (
            |x, y| {
                format!(
                    r##"<rect x="{x:.1}" y="{:.1}" width="28" height="14" rx="7" fill="{DROPPED}"/>"##,
                    y - 11.0
                )
            },
            "pain point: negative NPS, low CSAT or many drop-offs",
        ),
        (
            |x, y| {
                format!(
                    r##"<rect x="{x:.1}" y="{:.1}" width="28" height="14" rx="7" fill="{INK}"/>"##,
                    y - 11.0
                )
            },
            "unseen: stalled, and nobody in touch",
        ),
        (
            |x, y| {
                format!(
                    r##"<rect x="{x:.1}" y="{:.1}" width="28" height="7" rx="3.5" fill="{FORWARD}" fill-opacity="0.6"/><rect x="{x:.1}" y="{:.1}" width="14" height="7" rx="3.5" fill="{DONE}"/>"##,
                    y - 7.0,
                    y - 7.0
                )
            },
            "outreach made / answered",
        ),
    ];
    let mut x = MARGIN;
    for (swatch, text) in items {
        svg.push_str(&swatch(x, y));
        let _ = write!(
            svg,
            r##"<text x="{tx:.1}" y="{y:.1}" font-size="11" fill="#374151">{}</text>"##,
            esc(text),
            tx = x + 36.0,
        );
        x += 36.0 + text.chars().count() as f64 * 6.0 + 22.0;
    }
}
