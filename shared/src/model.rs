//! The tracker's own contract: request states, snapshots published on `tracker.request.>`,
//! and the request–reply queries the correlator answers for the dashboard and anyone else.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::events::MediaType;
use crate::ids::{ArrId, JellyseerrRequestId, RequestId, TmdbId, TvdbId};

/// Where a request (or one episode of it) is.
///
/// The path states are ordered; an event that proves a later one moves a request forward from
/// any earlier one, and nothing but a retry moves it back. `Failed`, `Declined` and `Cancelled`
/// are off the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Requested,
    Approved,
    Searching,
    /// Shown as "Found": a release was grabbed.
    Indexed,
    Downloading,
    Downloaded,
    /// Sonarr/Radarr imported the file; waiting for the library to show it.
    Importing,
    /// Anime only: Shoko is hashing/matching the file.
    Matching,
    Available,
    /// Archived after a while in `Available`.
    Completed,
    Failed,
    Declined,
    Cancelled,
}

impl State {
    /// The states on the happy path, in order.
    pub const PATH: [State; 10] = [
        Self::Requested,
        Self::Approved,
        Self::Searching,
        Self::Indexed,
        Self::Downloading,
        Self::Downloaded,
        Self::Importing,
        Self::Matching,
        Self::Available,
        Self::Completed,
    ];

    pub const ALL: [State; 13] = [
        Self::Requested,
        Self::Approved,
        Self::Searching,
        Self::Indexed,
        Self::Downloading,
        Self::Downloaded,
        Self::Importing,
        Self::Matching,
        Self::Available,
        Self::Completed,
        Self::Failed,
        Self::Declined,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Approved => "approved",
            Self::Searching => "searching",
            Self::Indexed => "indexed",
            Self::Downloading => "downloading",
            Self::Downloaded => "downloaded",
            Self::Importing => "importing",
            Self::Matching => "matching",
            Self::Available => "available",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Declined => "declined",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// What a requester sees.
    pub fn label(self) -> &'static str {
        match self {
            Self::Requested => "Requested",
            Self::Approved => "Approved",
            Self::Searching => "Searching",
            Self::Indexed => "Found",
            Self::Downloading => "Downloading",
            Self::Downloaded => "Downloaded",
            Self::Importing => "Importing",
            Self::Matching => "Matching",
            Self::Available => "Available",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
            Self::Declined => "Declined",
            Self::Cancelled => "Cancelled",
        }
    }

    /// Position on the happy path; `None` for failed/declined/cancelled.
    pub fn rank(self) -> Option<usize> {
        Self::PATH.iter().position(|s| *s == self)
    }

    pub fn is_off_path(self) -> bool {
        self.rank().is_none()
    }

    /// Nothing more will happen without a person (or a retry).
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Available | Self::Completed | Self::Failed | Self::Declined | Self::Cancelled)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of a request's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TimelineEntry {
    /// The stage this entry belongs to.
    pub state: State,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "crate::schema::Timestamp")]
    pub at: OffsetDateTime,
    /// `jellyseerr`, `radarr`, …, or `tracker` for the tracker's own notes.
    pub source: String,
    /// Human text, e.g. "Found Bluray-1080p on ExampleTracker".
    pub message: String,
    /// Structured facts: quality, indexer, size, path…
    #[serde(default)]
    pub details: Value,
    /// `S01E02`, `S01 (12 episodes)`… when the entry concerns part of a series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub episode: Option<String>,
    /// True when the event arrived after the request had passed this stage.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub late: bool,
    /// True for a note that does not move the request (a health alert, a rename, an issue
    /// reported): its `state` is that of the latest entry at or before its time that is not
    /// a remark, whatever order the facts arrived in.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remark: bool,
}

/// The state a remark made at `at` is filed under, in a timeline sorted by time: that of the
/// latest entry at or before `at` that is not a remark (the furthest state of several at
/// that same time), else `requested`. `entry` tells each element's time, state and whether
/// it is a remark.
pub fn remark_state<T>(
    timeline: &[T],
    at: OffsetDateTime,
    entry: impl Fn(&T) -> (OffsetDateTime, State, bool),
) -> State {
    let end = timeline.partition_point(|e| entry(e).0 <= at);
    let mut latest: Option<(OffsetDateTime, State)> = None;
    for (t, state, _) in timeline[..end].iter().rev().map(&entry).filter(|(_, _, remark)| !remark) {
        match latest {
            Some((lt, _)) if t < lt => break,
            Some((_, ls)) if ls >= state => {}
            _ => latest = Some((t, state)),
        }
    }
    latest.map_or(State::Requested, |(_, state)| state)
}

/// Files every remark of `timeline` (sorted by time) under [`remark_state`].
pub fn file_remarks(timeline: &mut [TimelineEntry]) {
    for i in 0..timeline.len() {
        if timeline[i].remark {
            timeline[i].state = remark_state(timeline, timeline[i].at, |e| (e.at, e.state, e.remark));
        }
    }
}

/// One torrent or usenet download of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DownloadView {
    pub download_id: String,
    /// `torrent` or `usenet`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indexer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    pub progress: f64,
    pub dlspeed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stalled: Option<String>,
    pub finished: bool,
    /// How many of the request's episodes this download carries (0 for films).
    #[serde(default)]
    pub episodes: u32,
}

/// One tracked episode of a series request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EpisodeView {
    pub season: u32,
    pub episode: u32,
    pub state: State,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "crate::schema::Timestamp")]
    pub updated_at: OffsetDateTime,
}

/// Counts of a series request's episodes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EpisodeCounts {
    pub total: u32,
    pub downloading: u32,
    pub downloaded: u32,
    pub available: u32,
}

/// A request as listed: everything a card shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequestSummary {
    pub id: RequestId,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub year: Option<i32>,
    pub media_type: MediaType,
    pub state: State,
    /// Set with a reason when a stage takes much longer than it should.
    #[serde(default)]
    pub stalled: bool,
    /// Why the request failed or is stalled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Download progress, 0–1, over all of the request's downloads.
    pub progress: f64,
    /// Bytes per second over all active downloads.
    #[serde(default)]
    pub dlspeed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmdb_id: Option<TmdbId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tvdb_id: Option<TvdbId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imdb_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jellyseerr_id: Option<JellyseerrRequestId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arr_id: Option<ArrId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poster_url: Option<String>,
    #[serde(default)]
    pub is_anime: bool,
    #[serde(default)]
    pub is_4k: bool,
    /// Who created the request: `jellyseerr`, or `radarr`/`sonarr` for media grabbed without one.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch_url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requested_seasons: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub episodes_summary: Option<EpisodeCounts>,
    /// The trace that created the request (W3C trace id): its journey in Jaeger/Tempo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "crate::schema::Timestamp")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "crate::schema::Timestamp")]
    pub updated_at: OffsetDateTime,
}

/// A request with everything: what `GET /api/requests/{id}` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequestDetail {
    #[serde(flatten)]
    pub summary: RequestSummary,
    #[serde(default)]
    pub downloads: Vec<DownloadView>,
    #[serde(default)]
    pub episodes: Vec<EpisodeView>,
    #[serde(default)]
    pub timeline: Vec<TimelineEntry>,
}

/// Payload of `tracker.request.<id>.<state>`: the full snapshot and what changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequestChange {
    pub request: RequestDetail,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_state: Option<State>,
    /// The `MEDIA` event that caused the change, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default)]
    pub timeline_added: Vec<TimelineEntry>,
}

/// Payload of `tracker.request.<id>.progress`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProgressUpdate {
    pub id: RequestId,
    pub state: State,
    pub progress: f64,
    pub dlspeed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<u64>,
    #[serde(default)]
    pub stalled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default)]
    pub downloads: Vec<DownloadView>,
}

/// `tracker.query.list`: filters for listing requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListQuery {
    /// Only these states (comma-separated in the HTTP API).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<State>,
    /// Requester user name, exact (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
    /// Title search, case-insensitive substring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// Page size: the correlator answers 50 when it is not given, and at most 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// How many matching requests to skip (0 when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u32>,
}

/// The answer of `tracker.query.list`: one page of requests, most recently updated first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListReply {
    pub requests: Vec<RequestSummary>,
    /// How many match the filters, before `limit`/`offset`.
    pub total: u64,
}

/// `tracker.query.get` and `tracker.query.timeline`: which request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GetQuery {
    pub id: RequestId,
}

/// `tracker.cmd.retry` / `tracker.cmd.cancel`: act on a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CommandRequest {
    pub id: RequestId,
    /// Who asked (the authenticated user, when there is one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// What a command did, in words for the person who asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CommandReply {
    pub message: String,
}

/// The answer of `tracker.query.timeline`: a request's timeline, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TimelineReply {
    pub timeline: Vec<TimelineEntry>,
}

/// `tracker.query.tracked`: what the poller should watch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TrackedReply {
    /// Lower-case info-hashes of unfinished torrent downloads of open requests.
    pub hashes: Vec<String>,
}

/// How long something took, over many requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Durations {
    pub count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90_seconds: Option<f64>,
}

/// Time spent in one stage, from entering it to entering the next one reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StageDurations {
    pub stage: State,
    pub label: String,
    #[serde(flatten)]
    pub durations: Durations,
}

/// Figures for one group of requests (all, one source, one media type).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GroupStats {
    pub requests: u64,
    pub available: u64,
    pub failed: u64,
    /// available / (available + failed); `None` before anything finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<f64>,
    /// From the request to available.
    pub to_available: Durations,
}

/// `GET /api/stats` and `tracker.query.stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Stats {
    #[serde(flatten)]
    pub all: GroupStats,
    pub stages: Vec<StageDurations>,
    /// By who created the request: `jellyseerr`, `radarr`, `sonarr`.
    pub by_source: std::collections::BTreeMap<String, GroupStats>,
    pub by_media_type: std::collections::BTreeMap<String, GroupStats>,
}

/// `GET /api/summary` and `tracker.query.summary`: counts for dashboard widgets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    pub total: u64,
    /// Not yet available and not failed, declined or cancelled.
    pub active: u64,
    pub stalled: u64,
    pub downloading: u64,
    pub available: u64,
    pub failed: u64,
    pub by_state: std::collections::BTreeMap<String, u64>,
}

/// Every request–reply answer: `{"ok": …}` or `{"error": "…"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Reply<T> {
    /// The answer.
    Ok(T),
    /// Why there is no answer, in words (`no request 7`, `bad query: …`).
    Error(String),
}

impl<T> From<Reply<T>> for Result<T, String> {
    fn from(r: Reply<T>) -> Self {
        match r {
            Reply::Ok(t) => Ok(t),
            Reply::Error(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_states_are_ordered_and_off_path_states_have_no_rank() {
        assert!(State::Requested < State::Available);
        assert_eq!(State::Indexed.rank(), Some(3));
        assert!(State::Failed.is_off_path());
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
        assert_eq!(State::Indexed.label(), "Found");
    }

    fn entry(minute: i64, state: State, remark: bool) -> TimelineEntry {
        TimelineEntry {
            state,
            at: OffsetDateTime::UNIX_EPOCH + time::Duration::minutes(minute),
            source: "test".into(),
            message: format!("{state} at {minute}"),
            details: Value::Null,
            episode: None,
            late: false,
            remark,
        }
    }

    #[test]
    fn a_remark_is_filed_under_the_state_of_the_entries_before_it() {
        // Filed under `available` when applied, whatever came before.
        let mut timeline = vec![
            entry(0, State::Requested, false),
            entry(1, State::Available, true),
            entry(2, State::Indexed, false),
            entry(2, State::Downloading, false),
            entry(2, State::Available, true),
            entry(3, State::Available, true),
            entry(4, State::Failed, false),
            entry(5, State::Requested, true),
        ];
        file_remarks(&mut timeline);
        let states: Vec<State> = timeline.iter().map(|e| e.state).collect();
        use State::*;
        assert_eq!(states, [Requested, Requested, Indexed, Downloading, Downloading, Downloading, Failed, Failed]);
    }

    #[test]
    fn a_remark_before_everything_else_is_filed_under_requested() {
        let mut timeline = vec![entry(0, State::Searching, true), entry(1, State::Indexed, false)];
        file_remarks(&mut timeline);
        assert_eq!(timeline[0].state, State::Requested);
        assert_eq!(remark_state(&timeline, timeline[1].at, |e| (e.at, e.state, e.remark)), State::Indexed);
    }
}
