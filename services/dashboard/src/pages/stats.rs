//! The statistics page (`/stats`): how long each stage takes, how often requests succeed.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use shared::model::{Durations, GroupStats, Stats};

use super::Layout;
use crate::Dashboard;

#[derive(Template, WebTemplate)]
#[template(path = "stats.html")]
pub(crate) struct StatsPage {
    layout: Layout,
    error: Option<String>,
    rows: Vec<StageRow>,
    groups: Vec<GroupRow>,
}

/// One line of the stage table.
pub(crate) struct StageRow {
    label: String,
    count: u64,
    median: String,
    p90: String,
}

/// One line of the groups table (all, per source, per media type).
pub(crate) struct GroupRow {
    name: String,
    requests: u64,
    available: u64,
    failed: u64,
    success: String,
    median: String,
    p90: String,
}

/// "3 h 12 min", "4 min", "40 s", "—".
fn human(seconds: Option<f64>) -> String {
    let Some(s) = seconds else { return "—".into() };
    let s = s.round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

fn row(name: &str, g: &GroupStats) -> GroupRow {
    let Durations { median_seconds, p90_seconds, .. } = &g.to_available;
    GroupRow {
        name: name.to_owned(),
        requests: g.requests,
        available: g.available,
        failed: g.failed,
        success: g.success_rate.map_or("—".into(), |r| format!("{:.0} %", r * 100.0)),
        median: human(*median_seconds),
        p90: human(*p90_seconds),
    }
}

impl StatsPage {
    fn new(stats: &Stats) -> Self {
        let rows = stats
            .stages
            .iter()
            .map(|s| StageRow {
                label: s.label.clone(),
                count: s.durations.count,
                median: human(s.durations.median_seconds),
                p90: human(s.durations.p90_seconds),
            })
            .collect();
        let mut groups = vec![row("All requests", &stats.all)];
        groups.extend(stats.by_media_type.iter().map(|(t, g)| row(if t == "tv" { "Series" } else { "Films" }, g)));
        groups.extend(stats.by_source.iter().map(|(s, g)| row(&format!("Created by {s}"), g)));
        Self { layout: Layout::new("Statistics", "stats", "stats"), error: None, rows, groups }
    }
}

/// `GET /stats`.
pub(crate) async fn stats_page(State(d): State<Dashboard>) -> Response {
    match d.stats().await {
        Ok(stats) => StatsPage::new(&stats).into_response(),
        Err(e) => StatsPage {
            layout: Layout::new("Statistics", "stats", "stats"),
            error: Some(e.to_string()),
            rows: vec![],
            groups: vec![],
        }
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_say_them() {
        assert_eq!(human(Some(42.0)), "42 s");
        assert_eq!(human(Some(240.0)), "4 min");
        assert_eq!(human(Some(3.0 * 3600.0 + 720.0)), "3 h 12 min");
        assert_eq!(human(Some(2.0 * 86400.0 + 3600.0)), "2 d 1 h");
        assert_eq!(human(None), "—");
    }
}
