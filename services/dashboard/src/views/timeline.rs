//! The timeline of a request as the detail page draws it: one step per stage of the path,
//! marked ✓ done, ⟳ current, ⏳ pending or ✗ failed, each with the events that happened in it.
//!
//! Pending steps are the path states after the current one. Matching appears only for anime
//! (Shoko runs only there), and Completed (the archive) only once a request got there.

use serde_json::Value;
use shared::model::{RequestDetail, State, TimelineEntry};

use super::card::ProgressLine;
use super::format;

/// Entries shown per step before the rest folds into "N more".
const SHOWN_PER_STEP: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Done,
    Current,
    Pending,
    Failed,
}

impl Mark {
    pub fn glyph(self) -> &'static str {
        match self {
            Self::Done => "✓",
            Self::Current => "⟳",
            Self::Pending => "⏳",
            Self::Failed => "✗",
        }
    }

    /// CSS class, and what a screen reader says instead of the glyph.
    pub fn word(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Current => "current",
            Self::Pending => "pending",
            Self::Failed => "failed",
        }
    }
}

/// One stage of the timeline.
#[derive(Debug, Clone)]
pub struct Step {
    pub state: &'static str,
    pub label: &'static str,
    pub mark: Mark,
    /// When the stage was first reached.
    pub at: Option<Stamp>,
    /// Progress of the current Downloading step.
    pub progress: Option<ProgressLine>,
    /// The stall or failure reason, on the current or failed step.
    pub warning: Option<String>,
    /// For a series, a later stage some episodes already reached: "2 of 12 episodes".
    pub partial: Option<String>,
    pub entries: Vec<Entry>,
    /// Entries beyond [`SHOWN_PER_STEP`], folded.
    pub more: Vec<Entry>,
}

/// A point in time: ISO for `<time datetime>`, UTC text until the browser localizes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamp {
    pub iso: String,
    pub utc: String,
}

impl Stamp {
    pub fn new(t: time::OffsetDateTime) -> Self {
        Self { iso: format::iso(t), utc: format::utc(t) }
    }
}

/// One event on the timeline.
#[derive(Debug, Clone)]
pub struct Entry {
    pub at: Stamp,
    pub message: String,
    pub episode: Option<String>,
    pub source: String,
    pub late: bool,
    /// Quality, indexer, size, release, when the event carried them.
    pub facts: Vec<(&'static str, String)>,
}

impl Entry {
    fn new(e: &TimelineEntry) -> Self {
        Self {
            at: Stamp::new(e.at),
            message: e.message.clone(),
            episode: e.episode.clone(),
            source: e.source.clone(),
            late: e.late,
            facts: facts(&e.details),
        }
    }
}

fn facts(details: &Value) -> Vec<(&'static str, String)> {
    let text = |k: &str| details.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    let mut out = Vec::new();
    if let Some(q) = text("quality") {
        out.push(("Quality", q));
    }
    if let Some(i) = text("indexer") {
        out.push(("Indexer", i));
    }
    if let Some(size) = details.get("size").and_then(Value::as_u64) {
        out.push(("Size", format::bytes(size)));
    }
    if let Some(r) = text("release_title") {
        out.push(("Release", r));
    }
    out
}

/// The steps of a request's timeline, in order.
pub fn steps(d: &RequestDetail) -> Vec<Step> {
    let s = &d.summary;
    let anime = s.is_anime || d.timeline.iter().any(|e| e.state == State::Matching);
    let on_path =
        |st: State| (st != State::Matching || anime) && (st != State::Completed || s.state == State::Completed);
    let entries_of = |st: State| d.timeline.iter().filter(|e| e.state == st).collect::<Vec<_>>();
    let mut steps = Vec::new();
    match s.state.rank() {
        Some(current) => {
            for st in State::PATH.into_iter().filter(|st| on_path(*st)) {
                let rank = st.rank().unwrap_or_default();
                // A series' state is its least advanced episode; some may be further along.
                let ahead = d.episodes.iter().filter(|e| e.state.rank().is_some_and(|r| r >= rank)).count();
                let mark = match rank.cmp(&current) {
                    std::cmp::Ordering::Less => Mark::Done,
                    std::cmp::Ordering::Equal if s.state.is_finished() => Mark::Done,
                    std::cmp::Ordering::Equal => Mark::Current,
                    std::cmp::Ordering::Greater if ahead > 0 => Mark::Current,
                    std::cmp::Ordering::Greater => Mark::Pending,
                };
                let mut step = step(st, mark, &entries_of(st));
                if rank > current && ahead > 0 {
                    step.partial = Some(format!("{ahead} of {} episodes", d.episodes.len()));
                }
                if rank == current && mark == Mark::Current {
                    // Off-path events (a failure before a retry) belong to what happens now.
                    let off: Vec<_> = d.timeline.iter().filter(|e| e.state.is_off_path()).collect();
                    add_entries(&mut step, &off);
                    if st == State::Downloading {
                        step.progress = Some(ProgressLine::new(s.progress, s.dlspeed, s.eta));
                    }
                    step.warning = s.reason.clone().filter(|_| s.stalled);
                }
                steps.push(step);
            }
        }
        None => {
            let reached = d.timeline.iter().filter_map(|e| e.state.rank()).max().unwrap_or(0);
            for st in State::PATH.into_iter().filter(|st| on_path(*st) && st.rank().unwrap_or(0) <= reached) {
                steps.push(step(st, Mark::Done, &entries_of(st)));
            }
            let mut last = step(s.state, Mark::Failed, &entries_of(s.state));
            last.warning = s.reason.clone();
            steps.push(last);
        }
    }
    steps
}

fn step(st: State, mark: Mark, entries: &[&TimelineEntry]) -> Step {
    let mut step = Step {
        state: st.as_str(),
        label: st.label(),
        mark,
        at: entries.iter().find(|e| !e.remark).map(|e| Stamp::new(e.at)),
        progress: None,
        warning: None,
        partial: None,
        entries: Vec::new(),
        more: Vec::new(),
    };
    add_entries(&mut step, entries);
    step
}

fn add_entries(step: &mut Step, entries: &[&TimelineEntry]) {
    for e in entries {
        if step.entries.len() < SHOWN_PER_STEP {
            step.entries.push(Entry::new(e));
        } else {
            step.more.push(Entry::new(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::card::tests::summary;
    use serde_json::json;
    use time::OffsetDateTime;

    fn entry(state: State, message: &str, details: Value) -> TimelineEntry {
        TimelineEntry {
            state,
            at: OffsetDateTime::UNIX_EPOCH,
            source: "radarr".into(),
            message: message.into(),
            details,
            episode: None,
            late: false,
            remark: false,
        }
    }

    fn detail(state: State, timeline: Vec<TimelineEntry>) -> RequestDetail {
        RequestDetail { summary: summary(1, "The Batman", state), downloads: vec![], episodes: vec![], timeline }
    }

    fn marks(steps: &[Step]) -> Vec<(&str, &str)> {
        steps.iter().map(|s| (s.label, s.mark.glyph())).collect()
    }

    #[test]
    fn a_downloading_film_has_done_current_and_pending_steps_without_matching() {
        let found = entry(
            State::Indexed,
            "Found",
            json!({"quality": "Bluray-1080p", "indexer": "X", "size": 15_789_453_312u64}),
        );
        let d = detail(State::Downloading, vec![entry(State::Requested, "Requested", json!({})), found]);
        let steps = steps(&d);
        assert_eq!(
            marks(&steps),
            [
                ("Requested", "✓"),
                ("Approved", "✓"),
                ("Searching", "✓"),
                ("Found", "✓"),
                ("Downloading", "⟳"),
                ("Downloaded", "⏳"),
                ("Importing", "⏳"),
                ("Available", "⏳"),
            ]
        );
        assert_eq!(
            steps[3].entries[0].facts,
            [("Quality", "Bluray-1080p".into()), ("Indexer", "X".into()), ("Size", "15.8 GB".into())]
        );
        assert!(steps[4].progress.is_some());
        assert!(steps[1].at.is_none(), "a stage skipped over has no time");
    }

    #[test]
    fn anime_gets_the_matching_step_and_available_is_done() {
        let mut d = detail(State::Available, vec![]);
        d.summary.is_anime = true;
        let steps = steps(&d);
        assert!(steps.iter().any(|s| s.label == "Matching" && s.mark == Mark::Done));
        assert_eq!(steps.last().map(|s| (s.label, s.mark)), Some(("Available", Mark::Done)));
    }

    #[test]
    fn a_failed_request_ends_with_a_cross_and_its_reason_and_has_no_pending_steps() {
        let mut d = detail(
            State::Failed,
            vec![entry(State::Approved, "Approved", json!({})), entry(State::Failed, "Radarr add failed", json!({}))],
        );
        d.summary.reason = Some("Jellyseerr could not send the request".into());
        let steps = steps(&d);
        assert_eq!(marks(&steps), [("Requested", "✓"), ("Approved", "✓"), ("Failed", "✗")]);
        assert_eq!(steps[2].warning.as_deref(), Some("Jellyseerr could not send the request"));
        assert_eq!(steps[2].entries[0].message, "Radarr add failed");
    }

    #[test]
    fn later_stages_some_episodes_reached_are_in_progress_with_a_count() {
        let ep = |episode, state| shared::model::EpisodeView {
            season: 1,
            episode,
            state,
            download_id: None,
            file_path: None,
            reason: None,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        };
        let mut d = detail(State::Indexed, vec![]);
        d.episodes = vec![ep(1, State::Importing), ep(2, State::Indexed), ep(3, State::Indexed)];
        let steps = steps(&d);
        let importing = steps.iter().find(|s| s.label == "Importing").unwrap();
        assert_eq!((importing.mark, importing.partial.as_deref()), (Mark::Current, Some("1 of 3 episodes")));
        assert!(importing.progress.is_none(), "only the request's own stage shows its bar");
        assert_eq!(steps.iter().find(|s| s.label == "Available").unwrap().mark, Mark::Pending);
    }

    #[test]
    fn a_stalled_step_carries_its_reason_and_long_steps_fold() {
        let many = (0..6).map(|i| entry(State::Searching, &format!("try {i}"), json!({}))).collect();
        let mut d = detail(State::Searching, many);
        (d.summary.stalled, d.summary.reason) = (true, Some("No release found yet after 6 h".into()));
        let steps = steps(&d);
        let searching = steps.iter().find(|s| s.label == "Searching").unwrap();
        assert_eq!(searching.mark, Mark::Current);
        assert_eq!(searching.warning.as_deref(), Some("No release found yet after 6 h"));
        assert_eq!((searching.entries.len(), searching.more.len()), (4, 2));
    }
}
