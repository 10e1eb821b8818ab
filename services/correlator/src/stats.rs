//! Statistics over all requests: time per stage and from request to available (median and
//! 90th percentile), success rate, by source and media type; and the counts of `/api/summary`.

use std::collections::{BTreeMap, HashMap};

use shared::model::{Durations, GroupStats, StageDurations, State, Stats, Summary};
use sqlx::{Row, SqlitePool};

use crate::store::{Result, from_ts};

struct Row_ {
    source: String,
    media_type: String,
    state: State,
    /// Event time each path state was first reached.
    reached: BTreeMap<State, time::OffsetDateTime>,
}

pub async fn stats(pool: &SqlitePool) -> Result<Stats> {
    let rows = load(pool).await?;
    let mut stages: BTreeMap<State, Vec<f64>> = BTreeMap::new();
    for r in &rows {
        let reached: Vec<(&State, &time::OffsetDateTime)> = r.reached.iter().collect();
        for pair in reached.windows(2) {
            let ((s, a), (_, b)) = (pair[0], pair[1]);
            stages.entry(*s).or_default().push((*b - *a).as_seconds_f64().max(0.0));
        }
    }
    let stages = State::PATH
        .iter()
        .filter_map(|s| {
            let d = stages.remove(s)?;
            Some(StageDurations { stage: *s, label: s.label().to_owned(), durations: durations(d) })
        })
        .collect();
    let group = |filter: &dyn Fn(&Row_) -> bool| group(rows.iter().filter(|r| filter(r)));
    let mut by_source = BTreeMap::new();
    let mut by_media_type = BTreeMap::new();
    for r in &rows {
        by_source.entry(r.source.clone()).or_insert_with(|| group(&|x: &Row_| x.source == r.source));
        by_media_type.entry(r.media_type.clone()).or_insert_with(|| group(&|x: &Row_| x.media_type == r.media_type));
    }
    Ok(Stats { all: group(&|_| true), stages, by_source, by_media_type })
}

fn group<'a>(rows: impl Iterator<Item = &'a Row_>) -> GroupStats {
    let mut g = GroupStats::default();
    let mut totals = Vec::new();
    for r in rows {
        g.requests += 1;
        match r.state {
            State::Available | State::Completed => g.available += 1,
            State::Failed => g.failed += 1,
            _ => {}
        }
        if let (Some(start), Some(end)) = (r.reached.values().next(), r.reached.get(&State::Available)) {
            totals.push((*end - *start).as_seconds_f64().max(0.0));
        }
    }
    let finished = g.available + g.failed;
    g.success_rate = (finished > 0).then(|| g.available as f64 / finished as f64);
    g.to_available = durations(totals);
    g
}

fn durations(mut seconds: Vec<f64>) -> Durations {
    seconds.sort_by(f64::total_cmp);
    let pick = |q: f64| seconds.get(((seconds.len() as f64 - 1.0) * q).round() as usize).copied();
    Durations { count: seconds.len() as u64, median_seconds: pick(0.5), p90_seconds: pick(0.9) }
}

async fn load(pool: &SqlitePool) -> Result<Vec<Row_>> {
    let mut by_id: HashMap<i64, Row_> = HashMap::new();
    for r in sqlx::query("SELECT id, source, media_type, state, created_at FROM requests").fetch_all(pool).await? {
        let state = State::parse(r.get("state")).unwrap_or(State::Requested);
        let mut reached = BTreeMap::new();
        reached.insert(State::Requested, from_ts(r.get("created_at")));
        by_id.insert(r.get("id"), Row_ { source: r.get("source"), media_type: r.get("media_type"), state, reached });
    }
    let firsts =
        sqlx::query("SELECT request_id, state, MIN(at) FROM timeline WHERE NOT remark GROUP BY request_id, state")
            .fetch_all(pool)
            .await?;
    for r in firsts {
        let (Some(row), Some(state)) = (by_id.get_mut(&r.get::<i64, _>(0)), State::parse(r.get(1))) else { continue };
        if state.rank().is_some() && state != State::Requested {
            let at = from_ts(r.get(2));
            row.reached.entry(state).and_modify(|t| *t = (*t).min(at)).or_insert(at);
        }
    }
    Ok(by_id.into_values().collect())
}

pub async fn summary(pool: &SqlitePool) -> Result<Summary> {
    let mut s = Summary::default();
    let rows = sqlx::query(
        "SELECT state, COUNT(*), SUM(CASE WHEN json_extract(summary, '$.stalled') THEN 1 ELSE 0 END) FROM requests GROUP BY state",
    )
    .fetch_all(pool)
    .await?;
    for r in rows {
        let (state, n, stalled): (String, i64, i64) = (r.get(0), r.get(1), r.get(2));
        let n = n as u64;
        s.total += n;
        s.stalled += stalled as u64;
        match State::parse(&state) {
            Some(State::Available | State::Completed) => s.available += n,
            Some(State::Failed) => s.failed += n,
            Some(State::Declined | State::Cancelled) => {}
            Some(st) => {
                s.active += n;
                if st == State::Downloading {
                    s.downloading += n;
                }
            }
            None => {}
        }
        s.by_state.insert(state, n);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let d = durations(vec![5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!((d.count, d.median_seconds, d.p90_seconds), (5, Some(3.0), Some(5.0)));
        assert_eq!(durations(vec![]).median_seconds, None);
    }
}
