//! The lifecycle of a request, as data and pure functions.
//!
//! A [`Request`] is the aggregate the correlator keeps per request: request-level facts
//! (who asked, ids, the stage Jellyseerr/Radarr/Sonarr told about), one [`Item`] per tracked
//! unit (the film, or each episode of a series), and its [`Download`]s. [`apply`] folds one
//! fact into it and returns the timeline entries it adds. Nothing here touches SQLite or NATS.
//!
//! Two rules make the result independent of arrival order:
//! - every fact is *evidence* of a stage, and stages only go up (`max`), so a late fact adds
//!   its timeline entry but never moves anything backward;
//! - a failure counts only while no later evidence (by event time) contradicts it, so a
//!   failure followed by a grab reads the same whichever arrives first.
//!
//! The request's visible state is derived ([`Request::state`]), never stored on its own, so
//! it cannot disagree with its episodes.

mod apply;
mod text;

use std::collections::{BTreeMap, BTreeSet};

use shared::events::MediaType;
use shared::ids::{ArrId, JellyseerrRequestId, RequestId, TmdbId, TvdbId};
use shared::model::{DownloadView, EpisodeCounts, EpisodeView, RequestDetail, RequestSummary, State, TimelineEntry};
use time::OffsetDateTime;

pub use apply::{Applied, Context, apply};
pub use text::{episode_label, fold_title, human_bytes};

/// The film (`FILM`) or one episode (season, episode).
pub type ItemKey = (u32, u32);
/// The item key of a film: a request for a film has exactly this one item.
pub const FILM: ItemKey = (0, 0);

/// A request as the correlator keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// 0 until the store inserts it.
    pub id: RequestId,
    pub media_type: MediaType,
    pub title: String,
    pub year: Option<i32>,
    pub poster_url: Option<String>,
    pub tmdb_id: Option<TmdbId>,
    pub tvdb_id: Option<TvdbId>,
    pub imdb_id: Option<String>,
    pub arr_id: Option<ArrId>,
    pub jellyseerr_id: Option<JellyseerrRequestId>,
    pub requested_by: Option<String>,
    pub requested_by_email: Option<String>,
    pub is_anime: bool,
    pub is_4k: bool,
    /// `jellyseerr`, or `radarr`/`sonarr` for media grabbed without a Jellyseerr request.
    pub source: String,
    pub requested_seasons: Vec<u32>,
    /// The furthest stage request-level evidence proves (Jellyseerr, *arr "added").
    pub stage: State,
    /// Failed, declined or cancelled, with why and when.
    pub outcome: Option<Outcome>,
    /// Time of the latest evidence that the pipeline is moving (clears a failure before it).
    pub evidence_at: Option<OffsetDateTime>,
    /// When Jellyseerr said the media is available: every item grabbed before is available.
    pub available_at: Option<OffsetDateTime>,
    /// Quality of the imported file, when no grab told it.
    pub quality: Option<String>,
    /// The series folder (Sonarr) or film folder (Radarr): Shoko's files are matched under it.
    pub media_path: Option<String>,
    pub watch: Option<Watch>,
    pub items: BTreeMap<ItemKey, Item>,
    pub downloads: BTreeMap<String, Download>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub archived_at: Option<OffsetDateTime>,
    /// When the request entered its current state (event time).
    pub state_since: OffsetDateTime,
    /// A stall the watchdog noticed; shown while the request is still in that state.
    pub stall: Option<Stall>,
    /// A Radarr/Sonarr health problem that concerns this request (download client, root
    /// folder…), until the matching "health restored".
    pub alert: Option<Alert>,
    /// Trace that created the request (W3C trace id), for the journey link.
    pub trace_parent: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// `Failed`, `Declined` or `Cancelled`.
    pub state: State,
    pub reason: Option<String>,
    pub at: OffsetDateTime,
}

/// The film, or one episode.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub stage: State,
    pub download_id: Option<String>,
    pub file_path: Option<String>,
    /// Why this item is stuck (manual import needed, Shoko could not match…).
    pub reason: Option<String>,
    /// Event time of the fact that last set or cleared `reason`: the latest fact wins,
    /// whatever order they arrive in.
    pub reason_at: Option<OffsetDateTime>,
    /// Event time of the earliest fact proving the item available (tells upgrades apart).
    pub available_at: Option<OffsetDateTime>,
    pub jellyfin_item_id: Option<String>,
    pub updated_at: OffsetDateTime,
}

impl Item {
    pub fn new(at: OffsetDateTime) -> Self {
        Self {
            stage: State::Requested,
            download_id: None,
            file_path: None,
            reason: None,
            reason_at: None,
            available_at: None,
            jellyfin_item_id: None,
            updated_at: at,
        }
    }

    /// Sets (or clears, with `None`) the reason, unless a later fact already did.
    pub fn set_reason(&mut self, reason: Option<String>, at: OffsetDateTime) {
        if self.reason_at.is_none_or(|t| at >= t) {
            self.reason = reason;
            self.reason_at = Some(at);
        }
    }
}

/// One torrent (or usenet download) of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Download {
    /// `torrent` or `usenet`.
    pub kind: String,
    pub release_title: Option<String>,
    pub quality: Option<String>,
    pub indexer: Option<String>,
    pub size: Option<u64>,
    pub progress: f64,
    pub dlspeed: u64,
    pub eta: Option<u64>,
    pub client_state: Option<String>,
    pub stalled: Option<String>,
    pub error: Option<String>,
    pub finished: bool,
    /// Grabbed to replace media that was already available.
    pub upgrade: bool,
    pub content_path: Option<String>,
    /// Event time of the grab (the earliest fact about this download).
    pub grabbed_at: OffsetDateTime,
    /// Event time (the poller's clock) of the progress applied last.
    pub progress_at: Option<OffsetDateTime>,
    /// A "Download finished" entry is on the timeline already.
    pub finish_noted: bool,
    /// Given up on by a retry: it no longer counts for progress or stalls.
    pub dropped: bool,
    /// The film or the episodes it was grabbed for.
    pub items: BTreeSet<ItemKey>,
    pub updated_at: OffsetDateTime,
}

impl Download {
    pub fn new(kind: &str, at: OffsetDateTime) -> Self {
        Self {
            kind: kind.to_owned(),
            release_title: None,
            quality: None,
            indexer: None,
            size: None,
            progress: 0.0,
            dlspeed: 0,
            eta: None,
            client_state: None,
            stalled: None,
            error: None,
            finished: false,
            upgrade: false,
            content_path: None,
            grabbed_at: at,
            progress_at: None,
            finish_noted: false,
            dropped: false,
            items: BTreeSet::new(),
            updated_at: at,
        }
    }
}

/// The text of a download's grab once it is known to be an upgrade.
pub fn upgrade_message(found: &str) -> String {
    format!("Upgrade: {found}")
}

/// Shows the grab of an upgrade as one, also when it was written before the availability it
/// follows was known (then under "Found", without "Upgrade: "): the grab of a download
/// `is_upgrade` says is one goes under `available`.
pub fn present_upgrade(entry: &mut TimelineEntry, is_upgrade: impl Fn(&str) -> bool) {
    let grab = entry.state == State::Indexed
        && entry.details.get("download_id").and_then(|d| d.as_str()).is_some_and(is_upgrade);
    if grab {
        entry.state = State::Available;
        entry.message = upgrade_message(&entry.message);
        entry.late = false;
    }
}

/// Whether there are `keys` and every one was available before `t` (a grab then is an upgrade).
pub(crate) fn available_before<'a>(
    items: &BTreeMap<ItemKey, Item>,
    keys: impl IntoIterator<Item = &'a ItemKey>,
    t: OffsetDateTime,
) -> bool {
    let mut any = false;
    for k in keys {
        any = true;
        if items.get(k).and_then(|i| i.available_at).is_none_or(|a| a >= t) {
            return false;
        }
    }
    any
}

/// The request sat in `state` too long.
#[derive(Debug, Clone, PartialEq)]
pub struct Stall {
    pub state: State,
    pub reason: String,
    pub at: OffsetDateTime,
}

/// A health problem Radarr or Sonarr reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The health check's type, e.g. `DownloadClientCheck`.
    pub check: String,
    pub message: String,
    pub at: OffsetDateTime,
}

/// Where "Watch now" points.
#[derive(Debug, Clone, PartialEq)]
pub struct Watch {
    pub item_id: String,
    pub server_id: Option<String>,
    pub server_url: Option<String>,
}

impl Request {
    pub fn new(media_type: MediaType, title: String, source: &str, at: OffsetDateTime) -> Self {
        Self {
            id: RequestId(0),
            media_type,
            title,
            year: None,
            poster_url: None,
            tmdb_id: None,
            tvdb_id: None,
            imdb_id: None,
            arr_id: None,
            jellyseerr_id: None,
            requested_by: None,
            requested_by_email: None,
            is_anime: false,
            is_4k: false,
            source: source.to_owned(),
            requested_seasons: Vec::new(),
            stage: State::Requested,
            outcome: None,
            evidence_at: None,
            available_at: None,
            quality: None,
            media_path: None,
            watch: None,
            items: BTreeMap::new(),
            downloads: BTreeMap::new(),
            created_at: at,
            updated_at: at,
            archived_at: None,
            state_since: at,
            stall: None,
            alert: None,
            trace_parent: None,
        }
    }

    /// The furthest stage on the happy path that the evidence proves: the request-level
    /// stage, or the least advanced of its items (a series is as far as its slowest episode).
    pub fn path_state(&self) -> State {
        match self.items.values().map(|i| i.stage).min() {
            Some(min_item) => min_item.max(self.stage),
            None => self.stage,
        }
    }

    /// What the request shows.
    pub fn state(&self) -> State {
        if let Some(o) = &self.outcome {
            let sticky = matches!(o.state, State::Declined | State::Cancelled);
            if sticky || self.evidence_at.is_none_or(|e| o.at >= e) {
                return o.state;
            }
        }
        if self.archived_at.is_some() {
            return State::Completed;
        }
        self.path_state()
    }

    /// Downloads that count for progress: not upgrades of media already there, not given up.
    fn active_downloads(&self) -> impl Iterator<Item = &Download> {
        self.downloads.values().filter(|d| !d.upgrade && !d.dropped)
    }

    /// Download progress over all downloads (weighted by size when known), 0–1.
    pub fn progress(&self) -> f64 {
        let state = self.path_state();
        let downloads: Vec<&Download> = self.active_downloads().collect();
        if downloads.is_empty() || state >= State::Downloaded {
            return if state >= State::Downloaded { 1.0 } else { 0.0 };
        }
        let progress = |d: &Download| {
            if d.finished { 1.0 } else { d.progress.clamp(0.0, 1.0) }
        };
        let sized: Vec<_> =
            downloads.iter().filter_map(|d| d.size.filter(|s| *s > 0).map(|s| (s, progress(d)))).collect();
        if sized.len() == downloads.len() {
            let total: f64 = sized.iter().map(|(s, _)| *s as f64).sum();
            sized.iter().map(|(s, p)| *s as f64 * p).sum::<f64>() / total
        } else {
            downloads.iter().map(|d| progress(d)).sum::<f64>() / downloads.len() as f64
        }
    }

    fn unfinished(&self) -> impl Iterator<Item = &Download> {
        self.active_downloads().filter(|d| !d.finished)
    }

    pub fn dlspeed(&self) -> u64 {
        self.unfinished().map(|d| d.dlspeed).sum()
    }

    pub fn eta(&self) -> Option<u64> {
        self.unfinished().filter_map(|d| d.eta).max()
    }

    /// A reason shown on the card: the failure, else what holds the request up.
    pub fn reason(&self) -> Option<String> {
        let state = self.state();
        if let Some(o) = self.outcome.as_ref().filter(|o| o.state == state) {
            return o.reason.clone();
        }
        self.stall_reason()
    }

    /// Why the request is held up, if it is: a stalled or failed download, or an item that
    /// needs a person.
    pub fn stall_reason(&self) -> Option<String> {
        let state = self.state();
        if state.is_finished() {
            return None;
        }
        let alert = self.alert.as_ref().filter(|_| state >= State::Indexed).map(|a| a.message.clone());
        let download = self.unfinished().find_map(|d| d.error.clone().or_else(|| d.stalled.clone()));
        let item = || self.items.values().filter(|i| i.stage < State::Available).find_map(|i| i.reason.clone());
        let stall = || self.stall.as_ref().filter(|s| s.state == state).map(|s| s.reason.clone());
        alert.or(download).or_else(item).or_else(stall)
    }

    /// The quality of the most recent grab, else of the imported file.
    pub fn quality(&self) -> Option<String> {
        let latest =
            self.downloads.iter().filter(|(_, d)| d.quality.is_some()).max_by_key(|(id, d)| (d.grabbed_at, *id));
        latest.and_then(|(_, d)| d.quality.clone()).or_else(|| self.quality.clone())
    }

    pub fn episode_counts(&self) -> Option<EpisodeCounts> {
        (self.media_type == MediaType::Tv && !self.items.is_empty()).then(|| {
            let count = |f: &dyn Fn(State) -> bool| self.items.values().filter(|i| f(i.stage)).count() as u32;
            EpisodeCounts {
                total: self.items.len() as u32,
                downloading: count(&|s| s == State::Downloading),
                downloaded: count(&|s| s >= State::Downloaded),
                available: count(&|s| s >= State::Available),
            }
        })
    }

    /// Every key this request can be found by (see `docs/lifecycle.md`). Built for every
    /// request saved with a new id, download or file, so without `format!` (several times
    /// the cost for these short strings).
    pub fn keys(&self) -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        let kind = self.media_type.as_str();
        let mut n = itoa::Buffer::new();
        if let Some(id) = self.tmdb_id {
            keys.insert(key(&[kind, "tmdb", n.format(id.0)]));
        }
        if let Some(id) = self.tvdb_id {
            keys.insert(key(&[kind, "tvdb", n.format(id.0)]));
        }
        if let Some(id) = &self.imdb_id {
            keys.insert(key(&[kind, "imdb", &id.to_ascii_lowercase()]));
        }
        if let Some(id) = self.jellyseerr_id {
            keys.insert(key(&["jellyseerr", n.format(id.0)]));
        }
        if self.media_type == MediaType::Tv {
            keys.insert(key(&["series", &text::fold_title(&self.title)]));
        }
        for id in self.downloads.keys() {
            keys.insert(key(&["dl", id]));
        }

        for (&(season, episode), item) in &self.items {
            if let Some(p) = &item.file_path {
                keys.insert(key(&["path", p]));
                keys.insert(key(&["file", shared::paths::file_name(p)]));
                if let Some(dir) = self.media_path.as_ref().filter(|_| self.media_type == MediaType::Tv) {
                    keys.insert(episode_key(dir, season, episode));
                }
            }
        }
        keys
    }

    /// Whether `other` has the same [`Self::keys`], told from the fields they are made of
    /// without building them (most events change none of those).
    pub fn same_keys(&self, other: &Request) -> bool {
        self.media_type == other.media_type
            && self.tmdb_id == other.tmdb_id
            && self.tvdb_id == other.tvdb_id
            && self.imdb_id == other.imdb_id
            && self.jellyseerr_id == other.jellyseerr_id
            && self.title == other.title
            && self.media_path == other.media_path
            && self.downloads.keys().eq(other.downloads.keys())
            && self.items.len() == other.items.len()
            && self.items.iter().zip(&other.items).all(|((a, x), (b, y))| a == b && x.file_path == y.file_path)
    }

    pub fn summary(&self) -> RequestSummary {
        RequestSummary {
            id: self.id,
            title: self.title.clone(),
            year: self.year,
            media_type: self.media_type,
            state: self.state(),
            stalled: self.stall_reason().is_some(),
            reason: self.reason(),
            progress: self.progress(),
            dlspeed: self.dlspeed(),
            eta: self.eta(),
            requested_by: self.requested_by.clone(),
            tmdb_id: self.tmdb_id,
            tvdb_id: self.tvdb_id,
            imdb_id: self.imdb_id.clone(),
            jellyseerr_id: self.jellyseerr_id,
            arr_id: self.arr_id,
            poster_url: self.poster_url.clone(),
            is_anime: self.is_anime,
            is_4k: self.is_4k,
            source: self.source.clone(),
            quality: self.quality(),
            watch_url: None,
            requested_seasons: self.requested_seasons.clone(),
            episodes_summary: self.episode_counts(),
            trace_id: self.trace_parent.as_deref().and_then(|tp| tp.split('-').nth(1)).map(str::to_owned),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    /// The full view; `timeline` comes from the store (it is append-only and not kept here).
    pub fn detail(&self, timeline: Vec<TimelineEntry>, public_jellyfin: Option<&str>) -> RequestDetail {
        let mut summary = self.summary();
        summary.watch_url = self.watch.as_ref().and_then(|w| watch_url(w, public_jellyfin));
        RequestDetail { summary, downloads: self.downloads_view(), episodes: self.episodes_view(), timeline }
    }

    /// A series' episodes as shown; none for a film.
    pub fn episodes_view(&self) -> Vec<EpisodeView> {
        if self.media_type != MediaType::Tv {
            return Vec::new();
        }
        self.items
            .iter()
            .map(|(&(season, episode), i)| EpisodeView {
                season,
                episode,
                state: i.stage,
                download_id: i.download_id.clone(),
                file_path: i.file_path.clone(),
                reason: i.reason.clone(),
                updated_at: i.updated_at,
            })
            .collect()
    }

    /// The request's downloads as shown (and sent with each progress update).
    pub fn downloads_view(&self) -> Vec<DownloadView> {
        self.downloads
            .iter()
            .map(|(id, d)| DownloadView {
                download_id: id.clone(),
                kind: d.kind.clone(),
                release_title: d.release_title.clone(),
                quality: d.quality.clone(),
                indexer: d.indexer.clone(),
                size: d.size,
                progress: if d.finished { 1.0 } else { d.progress },
                dlspeed: if d.finished { 0 } else { d.dlspeed },
                eta: if d.finished { None } else { d.eta },
                client_state: d.client_state.clone(),
                stalled: d.stalled.clone(),
                finished: d.finished,
                episodes: self.items.values().filter(|i| i.download_id.as_deref() == Some(id)).count() as u32
                    * u32::from(self.media_type == MediaType::Tv),
            })
            .collect()
    }
}

/// An imported episode under its series folder: how a Shoko file whose name differs from
/// what Sonarr imported is still matched, by its episode numbers.
pub fn episode_key(series_dir: &str, season: u32, episode: u32) -> String {
    let mut key = key(&["ep", series_dir, ""]);
    for (letter, n) in [('S', season), ('E', episode)] {
        key.push(letter);
        if n < 10 {
            key.push('0');
        }
        key.push_str(itoa::Buffer::new().format(n));
    }
    key
}

/// `a:b:c`, a key from its parts.
fn key(parts: &[&str]) -> String {
    let mut key = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push(':');
        }
        key.push_str(part);
    }
    key
}

/// Jellyfin 10.9+ deep link; the public URL wins over what Jellyfin says about itself.
pub fn watch_url(w: &Watch, public_jellyfin: Option<&str>) -> Option<String> {
    let base = public_jellyfin.or(w.server_url.as_deref())?.trim_end_matches('/');
    let mut url = format!("{base}/web/#/details?id={}", w.item_id);
    if let Some(server) = &w.server_id {
        url.push_str("&serverId=");
        url.push_str(server);
    }
    Some(url)
}

#[cfg(test)]
mod tests;
