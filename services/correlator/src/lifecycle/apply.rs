//! [`apply`]: one fact into one request. Pure: no I/O, no clock (the event time is passed in).

use serde_json::{Value, json};
use shared::events::arr::{ArrEvent, ArrMedia, EpisodeRef, ImportedFile};
use shared::events::jellyseerr::{Notification, RequestEvent};
use shared::events::qbittorrent::{Finished, Progress, TorrentEvent};
use shared::events::shoko::{FileEvent, FileEventKind};
use shared::events::{Fact, JellyfinEvent, MediaType};
use shared::ids::DownloadId;
use shared::model::{State, TimelineEntry};
use shared::paths::{self, PathMap};
use time::OffsetDateTime;

use super::text::{episode_label, human_bytes};
use super::{Download, FILM, Item, ItemKey, Outcome, Request, Watch};

/// What `apply` needs to know beyond the request and the fact.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Container mount differences (`TRACKER_PATH_MAP`), for matching files by path.
    pub path_map: PathMap,
}

/// What applying a fact did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    /// Entries to add to the request's timeline.
    pub timeline: Vec<TimelineEntry>,
    /// Set when the fact changed nothing, with why (logged and counted).
    pub ignored: Option<String>,
}

/// Folds `fact`, which happened at `at`, into `req`.
pub fn apply(req: &mut Request, fact: &Fact, at: OffsetDateTime, ctx: &Context) -> Applied {
    let before = req.path_state();
    let before_items = req.items.iter().map(|(k, i)| (*k, i.stage)).collect();
    // A request exists since the earliest fact about it, whichever arrived first.
    req.created_at = req.created_at.min(at);
    let mut step = Step { req, at, source: fact.source().as_str(), before, before_items, ctx, out: Applied::default() };
    match fact {
        Fact::Jellyseerr(e) => step.jellyseerr(e),
        Fact::Radarr(e) | Fact::Sonarr(e) => step.arr(e),
        Fact::Qbittorrent(TorrentEvent::Finished(f)) => step.finished(f),
        Fact::Qbittorrent(TorrentEvent::Progress(p)) => step.progress(p),
        Fact::Shoko(e) => step.shoko(e),
        Fact::Jellyfin(e) => step.jellyfin(e),
        Fact::Rejected(_) => step.ignore("rejected input is kept, not applied"),
    }
    step.floor_available();
    if step.out.ignored.is_none() || !step.out.timeline.is_empty() {
        step.req.updated_at = step.req.updated_at.max(at);
    }
    step.out
}

struct Step<'a> {
    req: &'a mut Request,
    at: OffsetDateTime,
    source: &'static str,
    before: State,
    /// Each item's stage before this fact, to tell late facts.
    before_items: std::collections::BTreeMap<ItemKey, State>,
    ctx: &'a Context,
    out: Applied,
}

impl Step<'_> {
    fn ignore(&mut self, why: &str) {
        self.out.ignored = Some(why.to_owned());
    }

    fn note(&mut self, state: State, message: String, details: Value, episode: Option<String>) {
        let late = matches!((state.rank(), self.before.rank()), (Some(s), Some(b)) if s < b);
        self.push(state, message, details, episode, late);
    }

    /// A note about some items: late when every one of them had passed `state` already.
    fn note_items(&mut self, keys: &[ItemKey], state: State, message: String, details: Value, episode: Option<String>) {
        let late =
            !keys.is_empty() && keys.iter().all(|k| self.before_items.get(k).is_some_and(|s| s.rank() > state.rank()));
        self.push(state, message, details, episode, late);
    }

    fn push(&mut self, state: State, message: String, details: Value, episode: Option<String>, late: bool) {
        let details = without_nulls(details);
        self.out.timeline.push(TimelineEntry {
            state,
            at: self.at,
            source: self.source.to_owned(),
            message,
            details,
            episode,
            late,
        });
    }

    /// A note about the request as it stands (health, renames, issues).
    fn remark(&mut self, message: String, details: Value) {
        let details = without_nulls(details);
        let state = self.req.state();
        self.out.timeline.push(TimelineEntry {
            state,
            at: self.at,
            source: self.source.to_owned(),
            message,
            details,
            episode: None,
            late: false,
        });
    }

    /// The pipeline is moving: a failure recorded before this no longer holds.
    fn evidence(&mut self) {
        self.req.evidence_at = Some(self.req.evidence_at.map_or(self.at, |e| e.max(self.at)));
    }

    /// Jellyseerr's "available" covers every item grabbed before it said so, also items
    /// whose grab is applied after it.
    fn floor_available(&mut self) {
        let Some(available_at) = self.req.available_at else { return };
        let at = self.at;
        let downloads = &self.req.downloads;
        for item in self.req.items.values_mut() {
            let grabbed = item.download_id.as_ref().and_then(|d| downloads.get(d)).map(|d| d.grabbed_at);
            if grabbed.is_none_or(|g| g <= available_at) {
                if item.stage < State::Available {
                    item.stage = State::Available;
                    item.updated_at = item.updated_at.max(at);
                }
                item.available_at = Some(item.available_at.map_or(available_at, |t| t.min(available_at)));
            }
        }
    }

    fn raise_stage(&mut self, stage: State) {
        self.req.stage = self.req.stage.max(stage);
    }

    fn set_outcome(&mut self, state: State, reason: Option<String>) {
        let newer = self.req.outcome.as_ref().is_none_or(|o| (self.at, state) >= (o.at, o.state));
        if newer {
            self.req.outcome = Some(Outcome { state, reason, at: self.at });
        }
    }

    /// Item keys an event names: the film, or its episodes.
    fn keys_for(&self, episodes: &[EpisodeRef]) -> Vec<ItemKey> {
        match self.req.media_type {
            MediaType::Movie => vec![FILM],
            MediaType::Tv => episodes.iter().map(|e| (e.season, e.episode)).collect(),
        }
    }

    /// Raises the given items (creating them) to at least `stage`; returns how many moved.
    fn raise_items(&mut self, keys: &[ItemKey], stage: State) -> usize {
        let at = self.at;
        let mut moved = 0;
        for key in keys {
            let item = self.req.items.entry(*key).or_insert_with(|| Item::new(at));
            if stage > item.stage {
                item.stage = stage;
                item.updated_at = at;
                moved += 1;
            }
            if stage >= State::Available {
                item.available_at = Some(item.available_at.map_or(at, |t| t.min(at)));
            }
        }
        moved
    }

    fn keys_with_download(&self, id: &str) -> Vec<ItemKey> {
        self.req.items.iter().filter(|(_, i)| i.download_id.as_deref() == Some(id)).map(|(k, _)| *k).collect()
    }

    // ----------------------------------------------------------------- Jellyseerr ---

    fn jellyseerr(&mut self, e: &RequestEvent) {
        self.merge_jellyseerr(e);
        let user = e.requested_by.clone().unwrap_or_else(|| "someone".into());
        let details =
            json!({ "requested_by": e.requested_by, "jellyseerr_id": e.request_id, "seasons": e.requested_seasons });
        match e.notification {
            Notification::MediaPending => {
                self.evidence();
                self.raise_stage(State::Requested);
                self.note(State::Requested, format!("Requested by {user}"), details, None);
            }
            Notification::MediaApproved => {
                self.evidence();
                self.raise_stage(State::Approved);
                self.note(State::Approved, "Approved".into(), details, None);
            }
            Notification::MediaAutoApproved => {
                self.evidence();
                self.raise_stage(State::Approved);
                self.note(State::Approved, format!("Requested by {user}, approved automatically"), details, None);
            }
            Notification::MediaAvailable => {
                self.evidence();
                self.raise_stage(State::Available);
                self.req.available_at = Some(self.req.available_at.map_or(self.at, |t| t.max(self.at)));
                self.note(State::Available, "Available (Jellyseerr)".into(), details, None);
            }
            Notification::MediaFailed => {
                let reason = "Jellyseerr could not send the request to Radarr/Sonarr (see Jellyseerr's log)";
                self.set_outcome(State::Failed, Some(reason.into()));
                self.note(State::Failed, reason.into(), details, None);
            }
            Notification::MediaDeclined => {
                self.set_outcome(State::Declined, Some("Declined in Jellyseerr".into()));
                self.note(State::Declined, "Declined".into(), details, None);
            }
            Notification::IssueCreated
            | Notification::IssueComment
            | Notification::IssueResolved
            | Notification::IssueReopened => {
                let issue = e.issue.as_ref();
                let what = issue.and_then(|i| i.issue_type.clone()).unwrap_or_else(|| "An".into()).to_lowercase();
                let by = issue.and_then(|i| i.reported_by.clone()).unwrap_or_else(|| "someone".into());
                let verb = match e.notification {
                    Notification::IssueCreated => "reported",
                    Notification::IssueComment => "commented",
                    Notification::IssueResolved => "resolved",
                    _ => "reopened",
                };
                let ep = issue.and_then(|i| match (i.affected_season, i.affected_episode) {
                    (Some(s), Some(ep)) => episode_label(&[EpisodeRef { season: s, episode: ep }]),
                    (Some(s), None) => Some(format!("S{s:02}")),
                    _ => None,
                });
                let where_ = ep.map(|e| format!(" ({e})")).unwrap_or_default();
                self.remark(
                    format!("Issue {verb}: {what}{where_} by {by}"),
                    json!({ "issue": issue.and_then(|i| i.id) }),
                );
            }
            _ => self.ignore("Jellyseerr notification that does not concern a request's progress"),
        }
    }

    fn merge_jellyseerr(&mut self, e: &RequestEvent) {
        let r = &mut *self.req;
        if r.jellyseerr_id.is_none() {
            r.jellyseerr_id = e.request_id;
        }
        if r.requested_by.is_none() {
            r.requested_by = e.requested_by.clone();
            r.requested_by_email = e.requested_by_email.clone();
        }
        if e.request_id.is_some() {
            // Jellyseerr's title and poster are what the requester saw; they win.
            if let Some(t) = &e.title {
                r.title = t.clone();
            }
            r.year = e.year.or(r.year);
            r.poster_url = e.poster_url.clone().or(r.poster_url.take());
            r.source = "jellyseerr".into();
        }
        r.tmdb_id = r.tmdb_id.or(e.tmdb_id);
        r.tvdb_id = r.tvdb_id.or(e.tvdb_id);
        r.is_4k |= e.is_4k;
        for s in &e.requested_seasons {
            if !r.requested_seasons.contains(s) {
                r.requested_seasons.push(*s);
            }
        }
        r.requested_seasons.sort_unstable();
    }

    // ---------------------------------------------------------------- Sonarr/Radarr ---

    fn arr(&mut self, e: &ArrEvent) {
        if let Some(m) = e.media() {
            self.merge_media(m);
        }
        let app = if self.source == "radarr" { "Radarr" } else { "Sonarr" };
        match e {
            ArrEvent::MediaAdded { .. } => {
                self.evidence();
                self.raise_stage(State::Searching);
                self.note(State::Searching, format!("Added to {app}; searching for a release"), json!({}), None);
            }
            ArrEvent::Grab { episodes, release, download_id, download_client, .. } => {
                self.evidence();
                let keys = self.keys_for(episodes);
                // An upgrade: every item was available before this grab (by event time).
                let at = self.at;
                let upgrade = !keys.is_empty()
                    && keys.iter().all(|k| self.req.items.get(k).and_then(|i| i.available_at).is_some_and(|t| t < at));
                if let Some(id) = download_id {
                    let d = self.download(id);
                    d.release_title = release.release_title.clone().or(d.release_title.take());
                    d.quality = release.quality.clone().or(d.quality.take());
                    d.indexer = release.indexer.clone().or(d.indexer.take());
                    d.size = release.size.or(d.size);
                    d.upgrade = upgrade;
                }
                if !upgrade {
                    self.raise_items(&keys, State::Indexed);
                    for key in &keys {
                        self.assign_download(*key, download_id.as_ref());
                    }
                }
                let mut found = format!("Found {}", release.quality.as_deref().unwrap_or("a release"));
                if let Some(size) = release.size {
                    found.push_str(&format!(" ({})", human_bytes(size)));
                }
                if let Some(indexer) = &release.indexer {
                    found.push_str(&format!(" on {indexer}"));
                }
                let message = if upgrade { format!("Upgrade: {found}") } else { found };
                let details = json!({
                    "quality": release.quality, "indexer": release.indexer, "size": release.size,
                    "release_title": release.release_title, "release_type": release.release_type,
                    "download_client": download_client, "download_id": download_id.as_ref().map(DownloadId::key),
                });
                let state = if upgrade { State::Available } else { State::Indexed };
                self.note_items(&keys, state, message, details, episode_label(episodes));
            }
            ArrEvent::Download { episodes, file, is_upgrade, download_id, deleted_files, .. } => {
                self.evidence();
                let eps = if episodes.is_empty() { &file.episodes } else { episodes };
                let keys = self.keys_for(eps);
                self.import_file(&keys, file);
                self.finish_download(download_id.as_ref());
                if self.req.quality.is_none() {
                    self.req.quality = file.quality.clone();
                }
                let name = paths::file_name(&file.path).to_owned();
                let message = if *is_upgrade {
                    format!("Upgraded to {}", file.quality.as_deref().unwrap_or("a better release"))
                } else {
                    format!("Imported {name}")
                };
                let details = json!({ "path": file.path, "quality": file.quality, "size": file.size,
                    "source_path": file.source_path, "replaced": deleted_files });
                self.note_items(&keys, State::Importing, message, details, episode_label(eps));
            }
            ArrEvent::ImportComplete { episodes, files, download_id, destination_path, .. } => {
                self.evidence();
                for file in files {
                    let keys = self.keys_for(&file.episodes);
                    if self.req.media_type == MediaType::Tv && keys.is_empty() {
                        continue;
                    }
                    self.import_file(&keys, file);
                }
                let keys = self.keys_for(episodes);
                self.raise_items(&keys, State::Importing);
                self.finish_download(download_id.as_ref());
                let message =
                    format!("Import complete: {} file{}", files.len(), if files.len() == 1 { "" } else { "s" });
                let details = json!({ "destination": destination_path });
                self.note_items(&keys, State::Importing, message, details, episode_label(episodes));
            }
            ArrEvent::ManualInteractionRequired { episodes, download_id, messages, title, .. } => {
                self.evidence();
                let mut keys = self.keys_for(episodes);
                if let Some(id) = download_id {
                    keys.extend(self.keys_with_download(id.key()));
                    self.finish_download(Some(id));
                }
                keys.sort_unstable();
                keys.dedup();
                self.raise_items(&keys, State::Downloaded);
                let why = if messages.is_empty() { "no reason given".to_owned() } else { messages.join("; ") };
                let reason = format!("{app} needs a manual import: {why}");
                for key in &keys {
                    if let Some(item) = self.req.items.get_mut(key) {
                        item.set_reason(Some(reason.clone()), self.at);
                    }
                }
                let details = json!({ "title": title, "messages": messages });
                self.note_items(&keys, State::Downloaded, reason, details, episode_label(episodes));
            }
            ArrEvent::FileDelete { episodes, file, reason, .. } => {
                let why = reason.clone().unwrap_or_else(|| "unknown reason".into());
                if why != "upgrade" {
                    let path = file.as_ref().map(|f| f.path.clone());
                    let keys: Vec<ItemKey> = self
                        .req
                        .items
                        .iter()
                        .filter(|(k, i)| {
                            i.file_path.is_some() && i.file_path == path || self.keys_for(episodes).contains(k)
                        })
                        .map(|(k, _)| *k)
                        .collect();
                    for key in keys {
                        let item = self.req.items.get_mut(&key).expect("listed above");
                        item.set_reason(Some(format!("File deleted in {app} ({why})")), self.at);
                    }
                }
                let name = file.as_ref().map(|f| paths::file_name(&f.path).to_owned()).unwrap_or_default();
                self.remark(
                    format!("File deleted ({why}): {name}"),
                    json!({ "reason": why, "path": file.as_ref().map(|f| &f.path) }),
                );
            }
            ArrEvent::MediaDelete { deleted_files, .. } => {
                if !self.req.state().is_finished() {
                    self.set_outcome(State::Failed, Some(format!("Removed from {app} before it was available")));
                }
                let files = if *deleted_files { ", files deleted" } else { "" };
                self.remark(format!("Removed from {app}{files}"), json!({ "deleted_files": deleted_files }));
            }
            ArrEvent::Rename { files, .. } => {
                // Files of this request: those whose old name an item has (now renamed) or
                // whose new name it has already.
                let mut renamed = 0;
                for f in files {
                    let mut ours = false;
                    for item in self.req.items.values_mut() {
                        if item.file_path.is_some() && item.file_path == f.previous_path {
                            item.file_path = Some(f.path.clone());
                        }
                        ours |= item.file_path.as_deref() == Some(f.path.as_str());
                    }
                    renamed += usize::from(ours);
                }
                let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
                self.remark(
                    format!("{app} renamed {renamed} file{}", if renamed == 1 { "" } else { "s" }),
                    json!({ "paths": paths }),
                );
            }
            ArrEvent::Test => self.ignore("test event"),
            _ => self.ignore("event about the application, not a request"),
        }
    }

    fn merge_media(&mut self, m: &ArrMedia) {
        let r = &mut *self.req;
        r.arr_id = m.arr_id.or(r.arr_id);
        r.tmdb_id = r.tmdb_id.or(m.tmdb_id);
        r.tvdb_id = r.tvdb_id.or(m.tvdb_id);
        r.imdb_id = r.imdb_id.take().or_else(|| m.imdb_id.clone());
        r.is_anime |= m.anime;
        if r.jellyseerr_id.is_none() {
            r.title = m.title.clone();
            r.year = m.year.or(r.year);
        }
        r.poster_url = r.poster_url.take().or_else(|| m.poster_url.clone());
    }

    fn download(&mut self, id: &DownloadId) -> &mut Download {
        let kind = if id.hash().is_some() { "torrent" } else { "usenet" };
        let at = self.at;
        let d = self.req.downloads.entry(id.key().to_owned()).or_insert_with(|| Download::new(kind, at));
        d.updated_at = d.updated_at.max(at);
        d.grabbed_at = d.grabbed_at.min(at);
        d
    }

    /// Points an item at the download of its most recent grab (by event time).
    fn assign_download(&mut self, key: ItemKey, id: Option<&DownloadId>) {
        let at = self.at;
        let Some(id) = id else { return };
        let current = self.req.items[&key].download_id.clone();
        let current_at = current.as_ref().and_then(|c| self.req.downloads.get(c)).map(|d| d.grabbed_at);
        let item = self.req.items.get_mut(&key).expect("created by raise_items");
        if current_at.is_none_or(|t| at >= t) {
            item.download_id = Some(id.key().to_owned());
            item.set_reason(None, at);
        }
        item.updated_at = item.updated_at.max(at);
    }

    fn finish_download(&mut self, id: Option<&DownloadId>) {
        if let Some(id) = id {
            let d = self.download(id);
            d.finished = true;
            d.progress = 1.0;
            d.dlspeed = 0;
            d.eta = None;
            d.stalled = None;
        }
    }

    fn import_file(&mut self, keys: &[ItemKey], file: &ImportedFile) {
        self.raise_items(keys, State::Importing);
        for key in keys {
            let item = self.req.items.get_mut(key).expect("raised above");
            item.file_path = Some(file.path.clone());
            item.set_reason(None, self.at);
        }
    }

    // ----------------------------------------------------------------- qBittorrent ---

    fn finished(&mut self, f: &Finished) {
        self.evidence();
        let id = DownloadId::Torrent(f.hash.clone());
        let d = self.download(&id);
        let noted = std::mem::replace(&mut d.finish_noted, true);
        if d.content_path.is_none() {
            d.content_path = f.content_path.clone();
        }
        self.finish_download(Some(&id));
        let keys = self.keys_with_download(id.key());
        self.raise_items(&keys, State::Downloaded);
        if noted {
            return self.ignore("download already reported finished");
        }
        let details = json!({ "name": f.name, "size": f.size, "path": f.content_path, "via": f.via });
        self.note_items(&keys, State::Downloaded, "Download finished".into(), details, None);
    }

    fn progress(&mut self, p: &Progress) {
        let id = DownloadId::Torrent(p.hash.clone());
        if p.is_complete() {
            let f = Finished {
                hash: p.hash.clone(),
                name: p.name.clone(),
                content_path: None,
                save_path: None,
                size: p.size,
                category: None,
                tags: vec![],
                via: shared::events::qbittorrent::FinishedVia::Poller,
            };
            return self.finished(&f);
        }
        self.evidence();
        let at = self.at;
        let d = self.download(&id);
        let first = d.client_state.is_none();
        // Progress times come from the poller's clock only, so comparing them among
        // themselves is safe even when hosts disagree about the time.
        let stale = d.progress_at.is_some_and(|t| at < t);
        if d.finished || stale {
            // Stale: the download finished or a newer update was applied already. The first
            // progress still counts as "downloading started", whenever it arrives.
            d.client_state.get_or_insert_with(|| p.state.clone());
            if first {
                let keys = self.keys_with_download(id.key());
                self.note_items(&keys, State::Downloading, "Downloading".into(), json!({ "state": p.state }), None);
                return;
            }
            return self.ignore("progress older than what is known");
        }
        let (was_stalled, was_error) = (d.stalled.clone(), d.error.clone());
        d.progress_at = Some(at);
        d.progress = p.progress.clamp(0.0, 1.0);
        d.dlspeed = p.dlspeed;
        d.eta = p.eta;
        d.client_state = Some(p.state.clone());
        d.size = p.size.or(d.size);
        d.stalled = p.stalled.clone();
        d.error = p.error.clone();
        let keys = self.keys_with_download(id.key());
        self.raise_items(&keys, State::Downloading);
        let state = json!({ "state": p.state });
        if first {
            self.note_items(&keys, State::Downloading, "Downloading".into(), state.clone(), None);
        }
        match (&was_stalled, &p.stalled) {
            (None, Some(why)) => {
                self.note_items(&keys, State::Downloading, format!("Stalled: {why}"), state.clone(), None)
            }
            (Some(_), None) if !first => {
                self.note_items(&keys, State::Downloading, "Download resumed".into(), state.clone(), None)
            }
            _ => {}
        }
        if let (None, Some(err)) = (&was_error, &p.error) {
            let message = format!("qBittorrent reports an error: {err}");
            self.note_items(&keys, State::Downloading, message, state, None);
        }
    }

    // ------------------------------------------------------------------------ Shoko ---

    fn shoko(&mut self, e: &FileEvent) {
        let keys = self.items_for_file(e);
        if keys.is_empty() {
            return self.ignore("Shoko file event matches no imported file of this request");
        }
        self.evidence();
        self.req.is_anime = true;
        let name = paths::file_name(&e.relative_path).to_owned();
        let episodes: Vec<EpisodeRef> = keys.iter().map(|&(season, episode)| EpisodeRef { season, episode }).collect();
        let label = if self.req.media_type == MediaType::Tv { episode_label(&episodes) } else { None };
        let details = json!({ "path": e.path, "file_id": e.file_id, "cross_refs": e.cross_refs });
        let message = match e.kind {
            FileEventKind::Detected => format!("Shoko found {name}"),
            FileEventKind::Hashed => format!("Shoko hashed {name}"),
            FileEventKind::Matched => {
                let anidb = e.cross_refs.iter().find_map(|c| c.anidb_anime_id);
                anidb.map_or_else(|| "Matched by Shoko".to_owned(), |id| format!("Matched by Shoko (AniDB {id})"))
            }
            FileEventKind::NotMatched => "Shoko could not match this file: link it manually in Shoko".to_owned(),
            FileEventKind::Renamed | FileEventKind::Moved => {
                format!("Shoko moved or renamed {name}")
            }
            FileEventKind::Deleted => format!("Shoko saw {name} deleted"),
        };
        if e.kind != FileEventKind::Deleted {
            self.raise_items(&keys, State::Matching);
        }
        let at = self.at;
        for key in &keys {
            let item = self.req.items.get_mut(key).expect("found above");
            match e.kind {
                FileEventKind::NotMatched => item.set_reason(Some(message.clone()), at),
                FileEventKind::Matched => item.set_reason(None, at),
                FileEventKind::Renamed | FileEventKind::Moved => {
                    item.file_path = e.path.clone().or(item.file_path.take())
                }
                _ => {}
            }
        }
        self.note_items(&keys, State::Matching, message, details, label);
    }

    /// Items whose imported file is the one Shoko names: exact path, then the path map, then
    /// the file name, then the episode numbers in the name.
    fn items_for_file(&self, e: &FileEvent) -> Vec<ItemKey> {
        let candidates: Vec<String> = [e.path.as_deref(), e.previous_path.as_deref()]
            .into_iter()
            .flatten()
            .flat_map(|p| self.ctx.path_map.aliases(p))
            .collect();
        let by = |pred: &dyn Fn(&str) -> bool| -> Vec<ItemKey> {
            self.req.items.iter().filter(|(_, i)| i.file_path.as_deref().is_some_and(pred)).map(|(k, _)| *k).collect()
        };
        let exact = by(&|p| candidates.iter().any(|c| c == p));
        if !exact.is_empty() {
            return exact;
        }
        let name = paths::file_name(&e.relative_path);
        let by_name = by(&|p| paths::file_name(p) == name);
        if !by_name.is_empty() {
            return by_name;
        }
        let eps = paths::episode_numbers(&e.relative_path);
        match self.req.media_type {
            MediaType::Tv => eps
                .iter()
                .map(|e| (e.season, e.episode))
                .filter(|k| self.req.items.get(k).is_some_and(|i| i.stage >= State::Downloaded))
                .collect(),
            MediaType::Movie => Vec::new(),
        }
    }

    // --------------------------------------------------------------------- Jellyfin ---

    fn jellyfin(&mut self, e: &JellyfinEvent) {
        if e.notification_type != "ItemAdded" {
            return self.ignore("Jellyfin notification other than ItemAdded");
        }
        let item_type = e.item_type.as_deref().unwrap_or_default();
        let watch = |id: &Option<String>| {
            id.clone().map(|item_id| Watch {
                item_id,
                server_id: e.server_id.clone(),
                server_url: e.server_url.clone(),
            })
        };
        match (item_type, self.req.media_type) {
            ("Movie", MediaType::Movie) => {
                self.evidence();
                self.raise_items(&[FILM], State::Available);
                if let Some(item) = self.req.items.get_mut(&FILM) {
                    item.jellyfin_item_id = e.item_id.clone();
                    item.set_reason(None, self.at);
                }
                self.req.watch = watch(&e.item_id).or(self.req.watch.take());
                let details = json!({ "item_id": e.item_id, "name": e.name });
                self.note_items(&[FILM], State::Available, "Available in Jellyfin".into(), details, None);
            }
            ("Episode", MediaType::Tv) => {
                let (Some(season), Some(first)) = (e.season, e.episode) else {
                    return self.ignore("Jellyfin episode without season and episode numbers");
                };
                self.evidence();
                let last = e.episode_end.unwrap_or(first).max(first);
                let keys: Vec<ItemKey> = (first..=last).map(|ep| (season, ep)).collect();
                self.raise_items(&keys, State::Available);
                for key in &keys {
                    let item = self.req.items.get_mut(key).expect("raised above");
                    item.jellyfin_item_id = e.item_id.clone();
                    item.set_reason(None, self.at);
                }
                self.req.watch = watch(&e.series_id).or_else(|| self.req.watch.take()).or_else(|| watch(&e.item_id));
                let eps: Vec<EpisodeRef> =
                    keys.iter().map(|&(season, episode)| EpisodeRef { season, episode }).collect();
                let details = json!({ "item_id": e.item_id, "name": e.name });
                self.note_items(&keys, State::Available, "Available in Jellyfin".into(), details, episode_label(&eps));
            }
            ("Season" | "Series", MediaType::Tv) => {
                let id = if item_type == "Series" { &e.item_id } else { &e.series_id };
                self.req.watch = self.req.watch.take().or_else(|| watch(id));
                let what = match (item_type, e.season) {
                    ("Season", Some(n)) => format!("Season {n}"),
                    ("Season", None) => "A season".to_owned(),
                    _ => "The series".to_owned(),
                };
                self.remark(format!("{what} added to Jellyfin"), json!({ "item_id": e.item_id }));
            }
            _ => self.ignore("Jellyfin item of another kind"),
        }
    }
}

/// Drops `null` members, so details show only what is known.
fn without_nulls(mut v: Value) -> Value {
    if let Value::Object(map) = &mut v {
        map.retain(|_, v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()));
    }
    v
}
