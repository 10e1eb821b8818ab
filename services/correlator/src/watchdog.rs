//! The watchdog: every `TRACKER_WATCH_INTERVAL` it looks at requests that sit in one state and
//! says why, checks the library for media whose webhook never came, and archives what has
//! been available long enough. What it finds is published as `media.tracker.*` facts, applied
//! like any other (and replayed by a rebuild). It also catches up on Jellyseerr requests whose
//! webhook never came, publishing them on `media.jellyseerr.*` as the webhook would have.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use shared::Bus;
use shared::envelope::{Envelope, content_id};
use shared::events::arr::EpisodeRef;
use shared::events::jellyseerr::Notification;
use shared::events::tracker::TrackerEvent;
use shared::events::{EventData, Fact, MediaType};
use shared::ids::RequestId;
use shared::model::State;
use shared::paths::PathMap;
use shared::settings::{Env, SettingError};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::jellyfin::LibraryItem;
use crate::lifecycle::{FILM, Request};
use crate::peers::Peers;
use crate::store::{self, Store};

/// How long each state may last before it is called stalled.
#[derive(Debug, Clone)]
pub struct Thresholds {
    pub searching: Duration,
    pub import: Duration,
    pub library: Duration,
    pub matching: Duration,
    pub archive_after: Duration,
    /// Time between two library checks of one request.
    pub verify_every: Duration,
}

impl Thresholds {
    pub fn from_env(env: &Env) -> Result<Self, SettingError> {
        let get = |name, default| Ok::<_, SettingError>(env.duration(name)?.unwrap_or(default));
        Ok(Self {
            searching: get("TRACKER_STALL_SEARCHING", Duration::from_secs(6 * 3600))?,
            import: get("TRACKER_STALL_IMPORT", Duration::from_secs(15 * 60))?,
            library: get("TRACKER_STALL_LIBRARY", Duration::from_secs(3600))?,
            matching: get("TRACKER_STALL_MATCHING", Duration::from_secs(3600))?,
            archive_after: get("TRACKER_ARCHIVE_AFTER", Duration::from_secs(7 * 86400))?,
            verify_every: Duration::from_secs(5 * 60),
        })
    }
}

pub struct Watchdog {
    store: Store,
    bus: Bus,
    thresholds: Thresholds,
    peers: Peers,
    /// When each request was last looked up in a library (lookups cost a call each).
    looked_up: Mutex<HashMap<RequestId, OffsetDateTime>>,
    /// When Jellyseerr's request list was last read.
    caught_up: Mutex<Option<OffsetDateTime>>,
    /// `TRACKER_PATH_MAP`: Jellyfin's paths against the imported files.
    path_map: PathMap,
}

/// Wall-clock time derived from tokio's clock, so that tests can run the loop with paused time.
struct Clock {
    wall: OffsetDateTime,
    instant: tokio::time::Instant,
}

impl Clock {
    fn start() -> Self {
        Self { wall: OffsetDateTime::now_utc(), instant: tokio::time::Instant::now() }
    }

    fn now(&self) -> OffsetDateTime {
        self.wall + self.instant.elapsed()
    }
}

impl Watchdog {
    pub fn new(store: Store, bus: Bus, thresholds: Thresholds, peers: Peers) -> Self {
        Self {
            store,
            bus,
            thresholds,
            peers,
            looked_up: Mutex::new(HashMap::new()),
            caught_up: Mutex::new(None),
            path_map: PathMap::default(),
        }
    }

    /// Compares Jellyfin's paths with the imported files through `path_map`.
    pub fn with_path_map(mut self, path_map: PathMap) -> Self {
        self.path_map = path_map;
        self
    }

    /// Looks every `interval` until `cancel` fires.
    pub async fn run(self, interval: Duration, cancel: CancellationToken) -> anyhow::Result<()> {
        let clock = Clock::start();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tick.tick() => {}
            }
            let now = clock.now();
            if self.catch_up_due(now) {
                match self.catch_up(now).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(requests = n, "caught up on Jellyseerr requests whose webhook never came"),
                    Err(error) => tracing::warn!(%error, "Jellyseerr catch-up skipped"),
                }
            }
            match self.tick(now).await {
                Ok(found) if !found.is_empty() => tracing::info!(facts = found.len(), "watchdog findings published"),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "watchdog round failed"),
            }
        }
    }

    /// One round at time `now`: publishes and returns what it found.
    pub async fn tick(&self, now: OffsetDateTime) -> anyhow::Result<Vec<TrackerEvent>> {
        let mut conn = self.store.pool().acquire().await?;
        let t = &self.thresholds;
        let min_wait = [t.verify_every, t.library, t.import, t.matching].into_iter().min().unwrap_or_default();
        let requests = store::watched(&mut conn, now, min_wait, t.archive_after).await?;
        drop(conn);
        let mut found = Vec::new();
        for req in requests {
            if let Some(fact) = self.look_at(&req, now).await {
                let subject = Fact::Tracker(fact.clone()).subject();
                let id = content_id(
                    "tracker",
                    &[
                        fact.event_name().as_bytes(),
                        &req.id.0.to_be_bytes(),
                        &req.state_since.unix_timestamp_nanos().to_be_bytes(),
                        format!("{fact:?}").as_bytes(),
                    ],
                );
                let data = EventData { event: Fact::Tracker(fact.clone()), raw: None };
                let envelope = Envelope::new(id, "/status-tracker/correlator/watchdog", &subject, data)
                    .with_time(now)
                    .with_subject(Some(format!("request:{}", req.id)));
                self.bus.publish_event(&subject, &envelope).await?;
                found.push(fact);
            }
        }
        Ok(found)
    }

    /// True when Jellyseerr is configured and its list was not read in the last `verify_every`.
    fn catch_up_due(&self, now: OffsetDateTime) -> bool {
        let mut last = self.caught_up.lock().unwrap_or_else(|e| e.into_inner());
        let due = self.peers.jellyseerr.is_some() && last.is_none_or(|at| now - at >= self.thresholds.verify_every);
        if due {
            *last = Some(now);
        }
        due
    }

    /// Reads Jellyseerr's newest requests and publishes, for each one changed within the
    /// archive window, the fact its status implies when the tracker does not know it yet (or
    /// knows it as only requested while Jellyseerr has approved or declined it). Returns how
    /// many facts were published. Ids are derived from the request's status and change time, so
    /// a round repeated before the correlator applied the last one changes nothing.
    pub async fn catch_up(&self, now: OffsetDateTime) -> anyhow::Result<usize> {
        let Some(js) = &self.peers.jellyseerr else { return Ok(0) };
        let listed = js.recent_requests().await.map_err(anyhow::Error::msg)?;
        let window = self.thresholds.archive_after;
        let recent: Vec<_> = listed.into_iter().filter(|r| now - r.changed_at() < window).collect();
        let ids: Vec<u64> = recent.iter().map(|r| r.id).collect();
        let mut conn = self.store.pool().acquire().await?;
        let known = store::states_by_jellyseerr_id(&mut conn, &ids).await?;
        drop(conn);
        let mut published = 0;
        for listed in recent {
            let Some(notification) = listed.notification() else { continue };
            let behind = match known.get(&listed.id) {
                None => true,
                Some(State::Requested) => {
                    matches!(notification, Notification::MediaApproved | Notification::MediaDeclined)
                }
                Some(_) => false,
            };
            if !behind {
                continue;
            }
            let title = match known.contains_key(&listed.id) {
                true => None,
                false => js.title(&listed.media).await.unwrap_or_else(|error| {
                    tracing::debug!(request = listed.id, %error, "no title from Jellyseerr");
                    None
                }),
            };
            let Some(event) = listed.to_event(title.as_ref()) else { continue };
            let fact = Fact::Jellyseerr(event);
            let subject = fact.subject();
            let id = content_id(
                "jellyseerr-catch-up",
                &[&listed.id.to_be_bytes(), &[listed.status], &listed.changed_at().unix_timestamp().to_be_bytes()],
            );
            let key = fact.media_key();
            let envelope = Envelope::new(
                id,
                "/status-tracker/correlator/catch-up",
                &subject,
                EventData { event: fact, raw: None },
            )
            .with_time(listed.changed_at())
            .with_subject(key);
            self.bus.publish_event(&subject, &envelope).await?;
            published += 1;
        }
        Ok(published)
    }

    /// What to say about one request, if anything.
    async fn look_at(&self, req: &Request, now: OffsetDateTime) -> Option<TrackerEvent> {
        let state = req.state();
        let waited = now - req.state_since;
        let over = |limit: Duration| waited > limit;
        let stall = |reason: String| {
            let already = req.stall.as_ref().is_some_and(|s| s.state == state && s.reason == reason);
            (!already).then_some(TrackerEvent::Stalled { request_id: req.id, state, reason, since: req.state_since })
        };
        match state {
            State::Requested | State::Approved | State::Searching => {
                if req.source == "jellyseerr"
                    && self.due(req.id, now, true)
                    && let Some(fact) = self.already_in_arr(req).await
                {
                    return Some(fact);
                }
                let hours = self.thresholds.searching.as_secs_f64() / 3600.0;
                let searching = matches!(state, State::Approved | State::Searching);
                (searching && over(self.thresholds.searching))
                    .then(|| {
                        format!(
                            "No release found yet after {hours:.0} h: releases may be rejected by the quality profile"
                        )
                    })
                    .and_then(stall)
            }
            State::Downloaded | State::Importing | State::Matching => {
                if over(self.thresholds.verify_every.min(self.thresholds.library))
                    && self.due(req.id, now, false)
                    && let Some(fact) = self.in_jellyfin(req).await
                {
                    return Some(fact);
                }
                match state {
                    State::Downloaded if over(self.thresholds.import) => stall(self.import_reason(req).await),
                    State::Importing if over(self.thresholds.library) => stall(
                        "Imported, but Jellyfin does not show it yet: is the library scanned, and does its path match?"
                            .into(),
                    ),
                    State::Matching if over(self.thresholds.matching) => {
                        stall("Shoko has not matched the file yet: it may need a manual link in Shoko".into())
                    }
                    _ => None,
                }
            }
            State::Available if over(self.thresholds.archive_after) => {
                Some(TrackerEvent::Archived { request_id: req.id })
            }
            _ => None,
        }
    }

    /// True when this request was not looked up recently (`once`: never) and records it.
    fn due(&self, id: RequestId, now: OffsetDateTime, once: bool) -> bool {
        let mut seen = self.looked_up.lock().unwrap_or_else(|e| e.into_inner());
        let due = match seen.get(&id) {
            None => true,
            Some(_) if once => false,
            Some(at) => now - *at > self.thresholds.verify_every,
        };
        if due {
            seen.insert(id, now);
        }
        due
    }

    /// A re-request of media Radarr/Sonarr already has goes straight to available.
    async fn already_in_arr(&self, req: &Request) -> Option<TrackerEvent> {
        let arr = self.peers.arr_of(req)?;
        let by = arr.app.name().to_lowercase();
        let verified = |episodes| TrackerEvent::Verified {
            request_id: req.id,
            by: by.clone(),
            episodes,
            item_id: None,
            server_id: None,
        };
        let result = match req.media_type {
            MediaType::Movie => arr.movie(req.tmdb_id?).await.map(|m| m.is_some_and(|(_, has_file)| has_file)),
            MediaType::Tv => arr.series(req.tvdb_id?).await.map(|s| {
                s.is_some_and(|s| {
                    !req.requested_seasons.is_empty()
                        && req.requested_seasons.iter().all(|n| s.complete_seasons.contains(n))
                })
            }),
        };
        match result {
            Ok(true) => Some(verified(Vec::new())),
            Ok(false) => None,
            Err(error) => {
                tracing::warn!(request = %req.id, %error, "library check skipped");
                None
            }
        }
    }

    /// Of the library's copies of a film, the one this request brought: the one whose file it
    /// imported; else, for a request that is not 4K, the first (Jellyfin may mount the media
    /// elsewhere than Radarr when `TRACKER_PATH_MAP` is unset). A 4K request needs its own
    /// file: another copy is the HD one.
    fn this_copy(&self, req: &Request, copies: Vec<LibraryItem>) -> Option<LibraryItem> {
        let imported = req.items.get(&FILM).and_then(|i| i.file_path.as_deref());
        match copies.iter().position(|c| self.same_file(c, imported)) {
            Some(i) => copies.into_iter().nth(i),
            None if req.is_4k => None,
            None => copies.into_iter().next(),
        }
    }

    /// Of the library's copies of a series, the one with episodes this request is waiting for,
    /// and those episodes: for a 4K request only episodes whose file it imported, in the first
    /// copy that has any; otherwise those of the first copy, as for films.
    fn these_episodes(
        &self,
        req: &Request,
        copies: Vec<(LibraryItem, Vec<LibraryItem>)>,
    ) -> Option<(LibraryItem, Vec<EpisodeRef>)> {
        let waiting = |e: &LibraryItem| {
            let key = (e.season?, e.episode?);
            let item = req.items.get(&key).filter(|i| i.stage < State::Available)?;
            (!req.is_4k || self.same_file(e, item.file_path.as_deref()))
                .then_some(EpisodeRef { season: key.0, episode: key.1 })
        };
        let copies = copies.into_iter().take(if req.is_4k { usize::MAX } else { 1 });
        copies
            .map(|(series, episodes)| (series, episodes.iter().filter_map(waiting).collect::<Vec<_>>()))
            .find(|(_, present)| !present.is_empty())
    }

    /// Whether Jellyfin's `item` is the file `imported` (through `TRACKER_PATH_MAP`).
    fn same_file(&self, item: &LibraryItem, imported: Option<&str>) -> bool {
        let (Some(path), Some(imported)) = (item.path.as_deref(), imported) else { return false };
        self.path_map.aliases(path).iter().any(|p| p == imported)
    }

    /// Requests whose webhook never came still reach available: Jellyfin is asked directly
    /// (an exact provider-id match on an item with a file).
    async fn in_jellyfin(&self, req: &Request) -> Option<TrackerEvent> {
        let jf = self.peers.jellyfin.as_ref()?;
        let result = match req.media_type {
            MediaType::Movie => {
                jf.movies(req.tmdb_id?.0, &req.title).await.map(|m| self.this_copy(req, m).map(|i| (i, Vec::new())))
            }
            MediaType::Tv => {
                jf.series_episodes(req.tvdb_id?.0, &req.title).await.map(|copies| self.these_episodes(req, copies))
            }
        };
        match result {
            Ok(Some((item, episodes))) => Some(TrackerEvent::Verified {
                request_id: req.id,
                by: "jellyfin".into(),
                episodes,
                item_id: Some(item.id),
                server_id: item.server_id,
            }),
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(request = %req.id, %error, "Jellyfin check skipped");
                None
            }
        }
    }

    /// Why a finished download is not imported, from the *arr's queue when it can be asked.
    async fn import_reason(&self, req: &Request) -> String {
        let app = match req.media_type {
            MediaType::Movie => "Radarr",
            MediaType::Tv => "Sonarr",
        };
        let waiting = format!("Downloaded, waiting for {app} to import");
        let (Some(arr), Some(id)) = (self.peers.arr_of(req), newest_download(req)) else { return waiting };
        match arr.queue_state(&id).await {
            Ok(Some(q)) => {
                let what = match q.state.as_str() {
                    "importBlocked" => "import blocked",
                    "importPending" => "import pending",
                    "failedPending" => "import failed",
                    "importing" => return format!("{app} is importing it"),
                    _ => return waiting,
                };
                let why = if q.messages.is_empty() { String::new() } else { format!(": {}", q.messages.join("; ")) };
                format!("{app}: {what}{why}")
            }
            Ok(None) => format!("{waiting} (it is no longer in {app}'s queue)"),
            Err(error) => format!("{waiting} ({error})"),
        }
    }
}

/// The download of the most recent grab that finished and was not given up on.
fn newest_download(req: &Request) -> Option<String> {
    req.downloads
        .iter()
        .filter(|(_, d)| d.finished && !d.dropped && !d.upgrade)
        .max_by_key(|(id, d)| (d.grabbed_at, id.as_str()))
        .map(|(id, _)| id.clone())
}
