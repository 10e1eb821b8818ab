//! Correlation: which request a fact belongs to, applying it, and what to publish.
//!
//! Runs inside the caller's transaction, so the event id, the new state, the timeline entries
//! and the messages to publish (outbox) commit together or not at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use shared::envelope::Envelope;
use shared::events::arr::{ArrEvent, ArrMedia};
use shared::events::jellyfin::JellyfinEvent;
use shared::events::jellyseerr::Notification;
use shared::events::qbittorrent::TorrentEvent;
use shared::events::{Fact, MediaEnvelope, MediaType};
use shared::ids::{DownloadId, RequestId};
use shared::model::{DownloadView, EpisodeView, ProgressUpdate, RequestSummary, State, TimelineEntry};
use shared::paths::{self, PathMap};
use shared::subjects;
use shared::telemetry;
use sqlx::SqliteConnection;
use time::OffsetDateTime;

use crate::cache::{Cache, Timeline};
use crate::jellyfin::JellyfinClient;
use crate::lifecycle::{self, Context, Request};
use crate::session::Session;
use crate::store::{self, Result};

/// How long a request keeps absorbing a Jellyseerr request for the same media that it did
/// not come from (a request auto-created from a grab, then Jellyseerr's webhook arriving).
const ADOPT_WINDOW: time::Duration = time::Duration::days(1);

/// What happened to one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied to these requests.
    Applied(Vec<RequestId>),
    /// Kept until a request with one of these keys appears.
    Orphaned(Vec<String>),
    /// Changed nothing, and why.
    Ignored(String),
    /// Seen before (redelivery or duplicate): nothing done.
    Duplicate,
}

impl Outcome {
    pub fn label(&self) -> String {
        match self {
            Self::Applied(_) => "applied".into(),
            Self::Orphaned(_) => "orphaned".into(),
            Self::Ignored(why) => format!("ignored: {why}"),
            Self::Duplicate => "duplicate".into(),
        }
    }
}

/// Where a fact goes.
enum Target {
    Existing(Vec<RequestId>),
    New(Box<Request>),
    Orphan(Vec<String>),
    Ignore(String),
}

/// How many events ended which way, since start (health and metrics).
#[derive(Debug, Default)]
pub struct Counters {
    pub applied: AtomicU64,
    pub orphaned: AtomicU64,
    pub orphans_applied: AtomicU64,
    pub ignored: AtomicU64,
    pub duplicates: AtomicU64,
    /// Timeline entries of events that arrived after their request had passed their stage.
    pub late: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> [(&'static str, u64); 6] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("applied", get(&self.applied)),
            ("orphaned", get(&self.orphaned)),
            ("orphans_applied", get(&self.orphans_applied)),
            ("ignored", get(&self.ignored)),
            ("duplicates", get(&self.duplicates)),
            ("late", get(&self.late)),
        ]
    }
}

/// Reads a `media.>` message without its `raw` payload: the correlator never uses it (the
/// stream keeps it for a better parser), and parsing it into a JSON tree cost more time and
/// memory than the fact itself.
pub fn decode_fact(payload: &[u8]) -> serde_json::Result<MediaEnvelope> {
    #[derive(serde::Deserialize)]
    struct FactOnly {
        event: Fact,
    }
    let e: shared::Envelope<FactOnly> = serde_json::from_slice(payload)?;
    Ok(shared::Envelope {
        specversion: e.specversion,
        id: e.id,
        source: e.source,
        kind: e.kind,
        time: e.time,
        subject: e.subject,
        datacontenttype: e.datacontenttype,
        traceparent: e.traceparent,
        tracestate: e.tracestate,
        data: shared::events::EventData { event: e.data.event, raw: None },
    })
}

/// Applies facts to requests; holds the settings correlation needs.
#[derive(Debug)]
pub struct Processor {
    pub ctx: Context,
    pub orphan_ttl: Duration,
    pub public_jellyfin: Option<String>,
    pub jellyfin: Option<std::sync::Arc<JellyfinClient>>,
    pub counters: Counters,
    /// The requests touched last, as saved. The consumer clears it when a batch rolls back.
    pub cache: Cache,
}

impl Processor {
    pub fn new(path_map: PathMap, orphan_ttl: Duration, public_jellyfin: Option<String>) -> Self {
        Self {
            ctx: Context { path_map },
            orphan_ttl,
            public_jellyfin,
            jellyfin: None,
            counters: Counters::default(),
            cache: Cache::default(),
        }
    }

    pub fn with_jellyfin(mut self, client: Option<std::sync::Arc<JellyfinClient>>) -> Self {
        self.jellyfin = client;
        self
    }

    /// Adds what the event does not say but the correlation needs, from the services' APIs
    /// (outside any transaction): the file of a Jellyfin film or episode, the series of an
    /// episode. Failures only log: the event is then matched by its ids, or by series name.
    pub async fn enrich(&self, env: &mut MediaEnvelope) {
        let (Some(client), Fact::Jellyfin(e)) = (&self.jellyfin, &mut env.data.event) else { return };
        let added = e.notification_type == "ItemAdded" && matches!(e.item_type.as_deref(), Some("Movie" | "Episode"));
        if let Some(item_id) = e.item_id.clone().filter(|_| added && e.path.is_none()) {
            match client.item_path(&item_id).await {
                Ok(path) => e.path = path.map(|p| shared::paths::normalize(&p)),
                Err(error) => tracing::warn!(%item_id, %error, "file not read from Jellyfin; matching by ids"),
            }
        }
        let Some(series_id) = e.series_id.clone().filter(|_| e.series_tvdb_id.is_none() && e.series_tmdb_id.is_none())
        else {
            return;
        };
        match client.series_ids(&series_id).await {
            Ok(ids) => {
                e.series_tvdb_id = ids.tvdb;
                e.series_tmdb_id = ids.tmdb;
            }
            Err(error) => tracing::warn!(%series_id, %error, "series not resolved through Jellyfin; matching by name"),
        }
    }

    /// Processes one event exactly once, in its own session (the consumer shares one session
    /// over a batch with [`Self::process_in`]).
    pub async fn process(&self, conn: &mut SqliteConnection, env: &MediaEnvelope, subject: &str) -> Result<Outcome> {
        let mut session = Session::new(conn, &self.cache);
        let outcome = self.process_in(&mut session, env, subject).await?;
        session.flush().await?;
        Ok(outcome)
    }

    /// Processes one event exactly once. Progress updates are not recorded: they arrive every
    /// few seconds, a stale one is recognized by its time, and applying one twice is harmless.
    pub async fn process_in(&self, s: &mut Session<'_>, env: &MediaEnvelope, subject: &str) -> Result<Outcome> {
        let progress = matches!(env.data.event, Fact::Qbittorrent(TorrentEvent::Progress(_)));
        if !progress && s.is_processed(&env.id).await? {
            self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
            return Ok(Outcome::Duplicate);
        }
        let outcome = self.process_unchecked(s, env).await?;
        if !progress {
            s.mark_processed(&env.id, subject, &outcome.label());
        }
        let counter = match &outcome {
            Outcome::Applied(_) => &self.counters.applied,
            Outcome::Orphaned(_) => &self.counters.orphaned,
            Outcome::Ignored(why) => {
                tracing::info!(event = %env.id, %subject, %why, "event ignored");
                &self.counters.ignored
            }
            Outcome::Duplicate => &self.counters.duplicates,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(outcome)
    }

    async fn process_unchecked(&self, s: &mut Session<'_>, env: &MediaEnvelope) -> Result<Outcome> {
        let fact = &env.data.event;
        let at = env.time;
        let ids = match resolve(s, fact, at, &self.ctx.path_map).await? {
            Target::Ignore(why) => return Ok(Outcome::Ignored(why)),
            Target::Orphan(keys) => {
                let text = serde_json::to_string(env)?;
                let expires = OffsetDateTime::now_utc() + self.orphan_ttl;
                let slot = match fact {
                    Fact::Qbittorrent(TorrentEvent::Progress(p)) => format!("progress:{}", p.hash),
                    _ => env.id.clone(),
                };
                for key in &keys {
                    s.add_orphan(&slot, key, &text, at, expires).await?;
                }
                tracing::debug!(event = %env.id, ?keys, "event waits for its request");
                return Ok(Outcome::Orphaned(keys));
            }
            Target::Existing(ids) => {
                let mut loaded = Vec::with_capacity(ids.len());
                for id in ids {
                    if let Some(req) = s.load(id).await? {
                        let changed = Request::clone(&req);
                        loaded.push((Some(req), changed));
                    }
                }
                loaded
            }
            Target::New(mut req) => {
                req.id = s.next_id().await?;
                // The journey of the request starts with this trace.
                req.trace_parent = telemetry::current_traceparent().map(|(p, _)| p).or_else(|| env.traceparent.clone());
                vec![(None, *req)]
            }
        };
        let mut applied = Vec::new();
        let mut new_keys = Vec::new();
        let mut ignored = None;
        for (before, mut req) in ids {
            let result = lifecycle::apply(&mut req, fact, at, &self.ctx);
            if before.as_ref().is_some_and(|b| b.state() != req.state()) {
                req.state_since = at;
            }
            if result.timeline.is_empty() && before.as_deref() == Some(&req) {
                ignored = result.ignored.or(ignored);
                continue;
            }
            let span = tracing::Span::current();
            span.record("request.id", req.id.0);
            if let Some(id) = req.tmdb_id {
                span.record("tmdb.id", id.0);
            }
            if let Some(id) = req.tvdb_id {
                span.record("tvdb.id", id.0);
            }
            // Later traces point at the one that created the request: one search finds the journey.
            if let Some(first) = &req.trace_parent {
                telemetry::link(&span, first);
            }
            let summary = self.summary(&req);
            let req = Arc::new(req);
            new_keys.extend(s.save(before.as_deref(), &req, summary.clone(), &result.timeline, &env.id));
            let late = result.timeline.iter().filter(|e| e.late).count() as u64;
            self.counters.late.fetch_add(late, Ordering::Relaxed);
            self.publish_changes(s, before.as_deref(), &req, summary, &result.timeline, &env.id).await?;
            applied.push(req.id);
        }
        // Keys that just appeared may be what earlier events were waiting for.
        for key in new_keys {
            for (slot, text) in s.take_orphans(&key).await? {
                let Ok(orphan) = serde_json::from_str::<MediaEnvelope>(&text) else {
                    tracing::warn!(%slot, "stored orphan is unreadable; dropped");
                    continue;
                };
                let event_id = orphan.id.clone();
                tracing::debug!(%event_id, %key, "applying an event that waited for its request");
                let outcome = Box::pin(self.process_unchecked(s, &orphan)).await?;
                self.counters.orphans_applied.fetch_add(1, Ordering::Relaxed);
                s.mark_processed(&event_id, &orphan.kind, &format!("{} (late)", outcome.label()));
            }
        }
        Ok(match (applied.is_empty(), ignored) {
            (false, _) => Outcome::Applied(applied),
            (true, Some(why)) => Outcome::Ignored(why),
            (true, None) => Outcome::Ignored("no change".into()),
        })
    }

    fn summary(&self, req: &Request) -> RequestSummary {
        let mut s = req.summary();
        s.watch_url = req.watch.as_ref().and_then(|w| lifecycle::watch_url(w, self.public_jellyfin.as_deref()));
        s
    }

    /// Queues `tracker.request.<id>.<state>` (or `.updated`) and `.progress` as needed.
    async fn publish_changes(
        &self,
        s: &mut Session<'_>,
        before: Option<&Request>,
        req: &Request,
        summary: RequestSummary,
        added: &[TimelineEntry],
        event_id: &str,
    ) -> Result<()> {
        let previous = before.map(|b| self.summary(b));
        let state_changed = previous.as_ref().is_none_or(|p| p.state != summary.state);
        let progress_changed = previous.as_ref().is_none_or(|p| progress_key(p) != progress_key(&summary));
        let other_changed = !added.is_empty() || previous.as_ref().is_none_or(|p| stable(p) != stable(&summary));
        if state_changed || other_changed {
            let verb = if state_changed { summary.state.as_str() } else { "updated" };
            let subject = subjects::request_state(req.id, verb);
            let msg_id = format!("{event_id}:{}:{verb}", req.id);
            // The timeline is lent by the cache, serialized, for the time it takes to copy it.
            let payload = s
                .with_timeline(req, |timeline| {
                    let change = ChangeMessage {
                        request: DetailMessage {
                            summary: &summary,
                            downloads: req.downloads_view(),
                            episodes: req.episodes_view(),
                            timeline,
                        },
                        previous_state: previous.as_ref().map(|p| p.state),
                        event_id: Some(event_id),
                        timeline_added: &timeline.filed(added, req),
                    };
                    envelope(&subject, &msg_id, req.id, &change)
                })
                .await?;
            let (payload, traceparent) = payload?;
            s.queue_outbox(&subject, &msg_id, payload, traceparent);
        }
        if progress_changed {
            let update = ProgressUpdate {
                id: req.id,
                state: summary.state,
                progress: summary.progress,
                dlspeed: summary.dlspeed,
                eta: summary.eta,
                stalled: summary.stalled,
                reason: summary.reason.clone(),
                downloads: req.downloads_view(),
            };
            let subject = subjects::request_progress(req.id);
            let msg_id = format!("{event_id}:{}:progress", req.id);
            let (payload, traceparent) = envelope(&subject, &msg_id, req.id, &update)?;
            s.queue_outbox(&subject, &msg_id, payload, traceparent);
        }
        Ok(())
    }
}

/// [`RequestChange`] as the correlator writes it, borrowing what it can and with the timeline
/// already serialized: the same JSON, field for field (a test reads every message the
/// scenarios queue back as a `RequestChange` and writes it again, byte for byte).
#[derive(Serialize)]
struct ChangeMessage<'a> {
    request: DetailMessage<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_state: Option<State>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<&'a str>,
    timeline_added: &'a [TimelineEntry],
}

/// [`shared::model::RequestDetail`], as [`ChangeMessage`] carries it.
#[derive(Serialize)]
struct DetailMessage<'a> {
    #[serde(flatten)]
    summary: &'a RequestSummary,
    downloads: Vec<DownloadView>,
    episodes: Vec<EpisodeView>,
    timeline: &'a Timeline,
}

/// A state message's envelope, serialized, and the trace it continues.
fn envelope<T: Serialize>(subject: &str, msg_id: &str, id: RequestId, data: &T) -> Result<(Vec<u8>, Option<String>)> {
    let mut envelope = Envelope::new(msg_id.to_owned(), "/status-tracker/correlator", subject, data)
        .with_subject(Some(format!("request:{id}")));
    // The change's trace, in the body too (the CloudEvents distributed-tracing extension).
    let context = shared::telemetry::current_traceparent();
    if let Some((parent, state)) = &context {
        envelope.traceparent = Some(parent.clone());
        envelope.tracestate = state.clone();
    }
    let payload = serde_json::to_vec(&envelope)?;
    Ok((payload, context.map(|(p, _)| p)))
}

fn progress_key(s: &RequestSummary) -> (u64, u64, Option<u64>, bool, Option<String>) {
    ((s.progress * 10_000.0) as u64, s.dlspeed, s.eta, s.stalled, s.reason.clone())
}

/// The summary without what changes every progress tick.
fn stable(s: &RequestSummary) -> RequestSummary {
    RequestSummary { progress: 0.0, dlspeed: 0, eta: None, updated_at: OffsetDateTime::UNIX_EPOCH, ..s.clone() }
}

// ---------------------------------------------------------------- resolution ---

/// The keys [`resolve`] will look up first for `fact`, so that a batch reads them from the
/// database in one query instead of one round trip each. Resolution looks up anything else
/// it needs itself; this only saves time.
pub fn lookup_keys(fact: &Fact) -> Vec<String> {
    match fact {
        Fact::Jellyseerr(e) => {
            let Some(media_type) = e.media_type else { return Vec::new() };
            let mut keys = media_keys(media_type, e.tmdb_id.map(|i| i.0), e.tvdb_id.map(|i| i.0), None);
            keys.extend(e.request_id.map(|id| format!("jellyseerr:{id}")));
            keys
        }
        Fact::Radarr(e) | Fact::Sonarr(e) => {
            let Some(media) = e.media() else { return Vec::new() };
            let mut keys = arr_media_keys(media);
            keys.extend(arr_download_key(e));
            keys
        }
        Fact::Qbittorrent(e) => vec![format!("dl:{}", e.hash())],
        Fact::Jellyfin(e) => match e.item_type.as_deref() {
            Some("Movie") => media_keys(MediaType::Movie, e.tmdb_id, None, e.imdb_id.as_deref()),
            Some(kind @ ("Episode" | "Season" | "Series")) => jellyfin_series_keys(e, kind),
            _ => Vec::new(),
        },
        Fact::Shoko(_) | Fact::Tracker(_) | Fact::Rejected(_) => Vec::new(),
    }
}

async fn resolve(s: &mut Session<'_>, fact: &Fact, at: OffsetDateTime, path_map: &PathMap) -> Result<Target> {
    Ok(match fact {
        Fact::Jellyseerr(e) => {
            let Some(media_type) = e.media_type else {
                return Ok(Target::Ignore("Jellyseerr notification without media".into()));
            };
            let keys = media_keys(media_type, e.tmdb_id.map(|i| i.0), e.tvdb_id.map(|i| i.0), None);
            let is_issue = matches!(
                e.notification,
                Notification::IssueCreated
                    | Notification::IssueComment
                    | Notification::IssueResolved
                    | Notification::IssueReopened
            );
            if is_issue {
                return Ok(match candidates(s, &keys).await?.first() {
                    Some(req) => Target::Existing(vec![req.id]),
                    None => Target::Ignore("issue about media that no request tracks".into()),
                });
            }
            if matches!(
                e.notification,
                Notification::TestNotification | Notification::Unknown | Notification::MediaAutoRequested
            ) {
                return Ok(Target::Ignore("Jellyseerr notification that does not concern a request".into()));
            }
            if let Some(id) = e.request_id
                && let Some(found) = s.find_by_key(&format!("jellyseerr:{id}")).await?.first()
            {
                return Ok(Target::Existing(vec![*found]));
            }
            let adoptable = candidates(s, &keys).await?.into_iter().find(|r| {
                r.jellyseerr_id.is_none()
                    && r.is_4k == e.is_4k
                    && r.archived_at.is_none()
                    && (!r.state().is_finished() || (r.created_at - at).abs() < ADOPT_WINDOW)
                    && seasons_overlap(&r.requested_seasons, &e.requested_seasons)
            });
            match adoptable {
                Some(r) => Target::Existing(vec![r.id]),
                None => {
                    let title = e.title.clone().unwrap_or_else(|| "Unknown title".into());
                    Target::New(Box::new(Request::new(media_type, title, "jellyseerr", at)))
                }
            }
        }
        Fact::Radarr(e) | Fact::Sonarr(e) => resolve_arr(s, fact.source_name(), e, at).await?,
        Fact::Qbittorrent(e) => {
            let key = format!("dl:{}", e.hash());
            let found = s.find_by_key(&key).await?;
            match (found.is_empty(), e) {
                (false, _) => Target::Existing(found),
                (true, TorrentEvent::Finished(_)) => Target::Orphan(vec![key]),
                // Progress too: the poller may see a torrent before its grab is processed.
                (true, TorrentEvent::Progress(_)) => Target::Orphan(vec![key]),
            }
        }
        Fact::Shoko(e) => {
            let mut keys = path_keys(e.path.iter().chain(e.previous_path.iter()), path_map);
            keys.dedup();
            if let Some(found) = first_found(s, &keys).await? {
                return Ok(Target::Existing(found));
            }
            let name_key = format!("file:{}", paths::file_name(&e.relative_path));
            if let Some(found) = first_found(s, std::slice::from_ref(&name_key)).await? {
                return Ok(Target::Existing(found));
            }
            // An episode imported under one of the file's folders, by its season and episode
            // numbers: the name may differ from what Sonarr imported.
            let episodes = paths::episode_numbers(&e.relative_path);
            let by_episode: Vec<String> = e
                .path
                .iter()
                .flat_map(|p| path_map.aliases(p))
                .flat_map(|p| ancestors(&p))
                .flat_map(|dir| episodes.iter().map(move |n| lifecycle::episode_key(&dir, n.season, n.episode)))
                .collect();
            if let Some(found) = first_found(s, &by_episode).await? {
                return Ok(Target::Existing(found));
            }
            keys.push(name_key);
            keys.extend(by_episode);
            Target::Orphan(keys)
        }
        Fact::Jellyfin(e) => {
            if e.notification_type != "ItemAdded" {
                return Ok(Target::Ignore("Jellyfin notification other than ItemAdded".into()));
            }
            // The file, when the webhook names it (or Jellyfin's API did, `enrich`), is the
            // imported one: that tells a film's HD and 4K requests apart, which its ids cannot.
            if let Some(found) = first_found(s, &path_keys(e.path.iter(), path_map)).await? {
                return Ok(Target::Existing(found));
            }
            match e.item_type.as_deref() {
                Some("Movie") => {
                    let keys = media_keys(MediaType::Movie, e.tmdb_id, None, e.imdb_id.as_deref());
                    match best(candidates(s, &keys).await?) {
                        Some(id) => Target::Existing(vec![id]),
                        None => Target::Orphan(keys),
                    }
                }
                Some(kind @ ("Episode" | "Season" | "Series")) => {
                    let keys = jellyfin_series_keys(e, kind);
                    let season = e.season;
                    let found: Vec<Arc<Request>> = candidates(s, &keys)
                        .await?
                        .into_iter()
                        .filter(|r| match season {
                            Some(s) => r.requested_seasons.is_empty() || r.requested_seasons.contains(&s),
                            None => true,
                        })
                        .collect();
                    match best(found) {
                        Some(id) => Target::Existing(vec![id]),
                        None => Target::Orphan(keys),
                    }
                }
                _ => Target::Ignore("Jellyfin item of a kind no request tracks".into()),
            }
        }
        Fact::Tracker(e) => {
            let id = e.request_id();
            match s.load(id).await? {
                Some(_) => Target::Existing(vec![id]),
                None => Target::Ignore(format!("no request {id}")),
            }
        }
        Fact::Rejected(r) => {
            let from = r.from.map_or_else(|| r.path.clone().unwrap_or_default(), |s| s.to_string());
            Target::Ignore(format!("rejected {from} input: {}", r.reason))
        }
    })
}

async fn resolve_arr(s: &mut Session<'_>, source: &str, e: &ArrEvent, at: OffsetDateTime) -> Result<Target> {
    let media_type = if source == "radarr" { MediaType::Movie } else { MediaType::Tv };
    let Some(media) = e.media() else {
        return Ok(match e {
            ArrEvent::Health(h) if concerns_requests(h.check.as_deref()) => {
                let ids = store::requests_in_flight(s.conn().await?, media_type, h.is_4k).await?;
                if ids.is_empty() {
                    Target::Ignore("health problem, but no request in flight".into())
                } else {
                    Target::Existing(ids)
                }
            }
            ArrEvent::HealthRestored(h) => {
                let check = h.check.as_deref().unwrap_or_default();
                let ids = store::requests_with_alert(s.conn().await?, check, media_type, h.is_4k).await?;
                if ids.is_empty() {
                    Target::Ignore("health restored, no request had the problem".into())
                } else {
                    Target::Existing(ids)
                }
            }
            ArrEvent::Test => Target::Ignore("test event".into()),
            _ => Target::Ignore("event about the application, not a request".into()),
        });
    };
    if let Some(key) = arr_download_key(e) {
        let found = s.find_by_key(&key).await?;
        if !found.is_empty() {
            return Ok(Target::Existing(found));
        }
    }
    let keys = arr_media_keys(media);
    let seasons: Vec<u32> = match e {
        ArrEvent::Grab { episodes, .. }
        | ArrEvent::Download { episodes, .. }
        | ArrEvent::ImportComplete { episodes, .. }
        | ArrEvent::ManualInteractionRequired { episodes, .. }
        | ArrEvent::FileDelete { episodes, .. } => episodes.iter().map(|e| e.season).collect(),
        _ => Vec::new(),
    };
    let (same, other): (Vec<Arc<Request>>, Vec<Arc<Request>>) = candidates(s, &keys)
        .await?
        .into_iter()
        .filter(|r| {
            r.requested_seasons.is_empty()
                || seasons.is_empty()
                || seasons.iter().any(|s| r.requested_seasons.contains(s))
        })
        .partition(|r| r.is_4k == media.is_4k);
    // The 4K instance's events are about 4K requests only. The other's go to a 4K request
    // when the media has no other: a 4K Radarr whose webhook lacks `?instance=4k` still
    // reaches the 4K request it serves.
    if let Some(id) = best(same).or_else(|| if media.is_4k { None } else { best(other) }) {
        return Ok(Target::Existing(vec![id]));
    }
    Ok(match e {
        ArrEvent::Grab { .. } | ArrEvent::Download { .. } | ArrEvent::ImportComplete { .. } => {
            Target::New(Box::new(Request::new(media.media_type, media.title.clone(), source, at)))
        }
        ArrEvent::MediaAdded { .. } | ArrEvent::ManualInteractionRequired { .. } => Target::Orphan(keys),
        _ => Target::Ignore(format!("no request tracks {}", media.title)),
    })
}

/// Health checks that concern the requests in flight: their download client, where files
/// land, how they are imported. (Indexer or update checks do not.)
fn concerns_requests(check: Option<&str>) -> bool {
    const CHECKS: [&str; 9] = [
        "DownloadClientCheck",
        "DownloadClientStatusCheck",
        "DownloadClientRootFolderCheck",
        "DownloadClientRemovesCompletedDownloadsCheck",
        "DownloadClientSortingCheck",
        "ImportMechanismCheck",
        "RemotePathMappingCheck",
        "RootFolderCheck",
        "MountCheck",
    ];
    check.is_some_and(|c| CHECKS.contains(&c))
}

/// The keys of the series a Jellyfin episode, season or series item belongs to.
fn jellyfin_series_keys(e: &JellyfinEvent, kind: &str) -> Vec<String> {
    let (tmdb, tvdb) = if kind == "Series" { (e.tmdb_id, e.tvdb_id) } else { (e.series_tmdb_id, e.series_tvdb_id) };
    let mut keys = media_keys(MediaType::Tv, tmdb, tvdb, None);
    if let Some(name) = e.series_name.as_deref().or(e.name.as_deref().filter(|_| kind == "Series")) {
        keys.push(format!("series:{}", lifecycle::fold_title(name)));
    }
    keys
}

/// The `dl:` key of the download a Radarr/Sonarr event is about, if it names one.
fn arr_download_key(e: &ArrEvent) -> Option<String> {
    let id: &DownloadId = match e {
        ArrEvent::Grab { download_id, .. }
        | ArrEvent::Download { download_id, .. }
        | ArrEvent::ImportComplete { download_id, .. }
        | ArrEvent::ManualInteractionRequired { download_id, .. } => download_id.as_ref()?,
        _ => return None,
    };
    Some(format!("dl:{}", id.key()))
}

/// The keys of the film or series a Radarr/Sonarr event is about.
fn arr_media_keys(media: &ArrMedia) -> Vec<String> {
    media_keys(media.media_type, media.tmdb_id.map(|i| i.0), media.tvdb_id.map(|i| i.0), media.imdb_id.as_deref())
}

/// Keys of a film or series: `movie:tmdb:…`, `tv:tvdb:…` (TMDB's film and TV ids are
/// different namespaces, so the media type is part of the key).
fn media_keys(kind: MediaType, tmdb: Option<u64>, tvdb: Option<u64>, imdb: Option<&str>) -> Vec<String> {
    let kind = kind.as_str();
    let mut keys = Vec::new();
    if let Some(id) = tvdb {
        keys.push(format!("{kind}:tvdb:{id}"));
    }
    if let Some(id) = tmdb {
        keys.push(format!("{kind}:tmdb:{id}"));
    }
    if let Some(id) = imdb.filter(|i| !i.is_empty()) {
        keys.push(format!("{kind}:imdb:{}", id.to_ascii_lowercase()));
    }
    keys
}

/// The `path:` keys of files, as named and through the path map.
fn path_keys<'a>(files: impl Iterator<Item = &'a String>, path_map: &PathMap) -> Vec<String> {
    files.flat_map(|p| path_map.aliases(p)).map(|p| format!("path:{p}")).collect()
}

/// The requests the first of `keys` that names any names.
async fn first_found(s: &mut Session<'_>, keys: &[String]) -> Result<Option<Vec<RequestId>>> {
    for key in keys {
        let found = s.find_by_key(key).await?;
        if !found.is_empty() {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// `/a/b/c.mkv` → `/a/b`, `/a`.
fn ancestors(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut p = path;
    while let Some(i) = p.rfind('/') {
        p = &p[..i];
        if p.is_empty() {
            break;
        }
        out.push(p.to_owned());
    }
    out
}

/// Requests found by any of `keys`, newest first, each once.
async fn candidates(s: &mut Session<'_>, keys: &[String]) -> Result<Vec<Arc<Request>>> {
    let mut ids = Vec::new();
    for key in keys {
        for id in s.find_by_key(key).await? {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(req) = s.load(id).await? {
            out.push(req);
        }
    }
    out.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id)));
    Ok(out)
}

/// The request a fact about media most likely concerns: the newest one still in progress,
/// else the newest one.
fn best(found: Vec<Arc<Request>>) -> Option<RequestId> {
    let open = found.iter().find(|r| r.archived_at.is_none() && !r.state().is_finished() || r.state() == State::Failed);
    open.or(found.first()).map(|r| r.id)
}

fn seasons_overlap(a: &[u32], b: &[u32]) -> bool {
    a.is_empty() || b.is_empty() || a.iter().any(|s| b.contains(s))
}
