//! One batch's unit of work. Every statement to SQLite goes through sqlx's worker thread and
//! costs two thread hand-offs, more than the statement itself; a batch of 256 events written
//! one statement at a time spent most of its time there. So a session answers reads from what
//! the batch already wrote and from the correlator's cache, and keeps the batch's writes in
//! memory until [`Session::flush`] writes them with one statement per table (before the
//! commit, or before a query that must see them).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use shared::ids::RequestId;
use shared::model::{RequestSummary, TimelineEntry};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use time::OffsetDateTime;

use crate::cache::{Cache, insert_in_order};
use crate::lifecycle::{Download, Item, Request};
use crate::store::{self, Result, StoreError, ts};

/// Rows per multi-row statement (SQLite allows 32,766 parameters; requests have 40 columns).
/// These statements differ by their number of rows, so only small ones are kept prepared
/// (see [`keep`]): sqlx's statement cache held up to 100 of them per connection, tens of
/// megabytes of compiled SQLite programs.
const ROWS: usize = 500;

/// Whether a statement of `rows` rows is worth keeping prepared: the small ones an idle
/// correlator runs for every event (a few kilobytes each, at most eight sizes per table).
fn keep(rows: usize) -> bool {
    rows <= 8
}

pub struct Session<'a> {
    conn: &'a mut SqliteConnection,
    cache: &'a Cache,
    pending: Pending,
    /// Event ids known to be processed: the batch's, and those found by [`Self::prefetch_processed`].
    processed: HashSet<String>,
    /// Event ids known not to be processed before this batch.
    unprocessed: HashSet<String>,
    /// Outbox rows written so far, with their ids, for the publisher once committed.
    written_outbox: Vec<store::OutboxMessage>,
}

#[derive(Default)]
struct Pending {
    /// The latest version of every request the batch changed (shared with the cache).
    requests: BTreeMap<RequestId, (Arc<Request>, RequestSummary)>,
    items: BTreeMap<(RequestId, u32, u32), Item>,
    downloads: BTreeMap<(RequestId, String), Download>,
    keys: Vec<(String, RequestId)>,
    key_set: HashSet<String>,
    timeline: Vec<(RequestId, TimelineEntry, Option<String>)>,
    outbox: Vec<OutboxRow>,
    processed: BTreeMap<String, (String, String)>,
}

struct OutboxRow {
    subject: String,
    msg_id: String,
    payload: Vec<u8>,
    traceparent: Option<String>,
}

impl<'a> Session<'a> {
    pub fn new(conn: &'a mut SqliteConnection, cache: &'a Cache) -> Self {
        Self {
            conn,
            cache,
            pending: Pending::default(),
            processed: HashSet::new(),
            unprocessed: HashSet::new(),
            written_outbox: Vec::new(),
        }
    }

    /// The connection, with the batch's writes flushed: for queries the session does not know.
    pub async fn conn(&mut self) -> Result<&mut SqliteConnection> {
        self.flush().await?;
        Ok(self.conn)
    }

    // ------------------------------------------------------------ processed events ---

    /// Looks up which of `ids` were processed before, in one query.
    pub async fn prefetch_processed(&mut self, ids: &[&str]) -> Result<()> {
        let wanted: Vec<&str> = ids.iter().copied().filter(|id| !self.processed.contains(*id)).collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let list = serde_json::to_string(&wanted).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let found: Vec<String> = sqlx::query_scalar(
            "SELECT event_id FROM processed_events WHERE event_id IN (SELECT value FROM json_each(?))",
        )
        .bind(list)
        .fetch_all(&mut *self.conn)
        .await?;
        let found: HashSet<String> = found.into_iter().collect();
        for id in wanted {
            if !found.contains(id) {
                self.unprocessed.insert(id.to_owned());
            }
        }
        self.processed.extend(found);
        Ok(())
    }

    /// Reads which requests `keys` name, in one query, for those the cache does not know.
    /// Call it before the batch writes anything (keys it adds are then kept up to date).
    pub async fn prefetch_keys(&mut self, keys: &[String]) -> Result<()> {
        let mut wanted: Vec<&str> = keys.iter().map(String::as_str).filter(|k| !self.cache.has_key(k)).collect();
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() {
            return Ok(());
        }
        let found = store::find_by_keys(self.conn, &wanted).await?;
        for key in wanted {
            self.cache.key_loaded(key, found.get(key).map_or(&[], Vec::as_slice));
        }
        Ok(())
    }

    pub async fn is_processed(&mut self, id: &str) -> Result<bool> {
        if self.processed.contains(id) {
            return Ok(true);
        }
        if self.unprocessed.contains(id) {
            return Ok(false);
        }
        store::is_processed(self.conn, id).await
    }

    pub fn mark_processed(&mut self, id: &str, subject: &str, outcome: &str) {
        self.processed.insert(id.to_owned());
        self.pending.processed.insert(id.to_owned(), (subject.to_owned(), outcome.to_owned()));
    }

    // ------------------------------------------------------------------ requests ---

    /// The request as the batch left it; shared, so a caller that changes it clones it once.
    pub async fn load(&mut self, id: RequestId) -> Result<Option<Arc<Request>>> {
        if let Some((req, _)) = self.pending.requests.get(&id) {
            return Ok(Some(req.clone()));
        }
        if let Some(req) = self.cache.request(id) {
            return Ok(Some(req));
        }
        let loaded = store::load(self.conn, id).await?.map(Arc::new);
        if let Some(req) = &loaded {
            self.cache.loaded(req);
        }
        Ok(loaded)
    }

    /// Requests named by `key`, newest first.
    pub async fn find_by_key(&mut self, key: &str) -> Result<Vec<RequestId>> {
        if let Some(ids) = self.cache.key(key) {
            return Ok(ids);
        }
        if self.pending.key_set.contains(key) {
            self.flush().await?;
        }
        let ids = store::find_by_key(self.conn, key).await?;
        self.cache.key_loaded(key, &ids);
        Ok(ids)
    }

    pub async fn next_id(&mut self) -> Result<RequestId> {
        if let Some(id) = self.cache.take_next_id() {
            return Ok(id);
        }
        self.flush().await?;
        let next = store::next_id(self.conn).await?;
        self.cache.set_next_id(next.0 + 1);
        Ok(next)
    }

    /// Records the request as it now is, with the timeline entries the event added; returns
    /// the keys that are new for it (orphans may be waiting on them).
    pub fn save(
        &mut self,
        before: Option<&Request>,
        req: &Arc<Request>,
        summary: RequestSummary,
        added: &[TimelineEntry],
        event_id: &str,
    ) -> Vec<String> {
        assert!(req.id.0 > 0, "assign an id with next_id before saving a new request");
        let id = req.id;
        for (&(season, episode), item) in &req.items {
            if before.is_none_or(|b| b.items.get(&(season, episode)) != Some(item)) {
                self.pending.items.insert((id, season, episode), item.clone());
            }
        }
        for (download_id, d) in &req.downloads {
            if before.is_none_or(|b| b.downloads.get(download_id) != Some(d)) {
                self.pending.downloads.insert((id, download_id.clone()), d.clone());
            }
        }
        // Every key of a saved request is recorded, so only those `before` did not have are new.
        let fresh: Vec<String> = match before {
            Some(before) if before.same_keys(req) => Vec::new(),
            _ => {
                let known = before.map(Request::keys).unwrap_or_default();
                req.keys().into_iter().filter(|k| !known.contains(k)).collect()
            }
        };
        for key in &fresh {
            self.pending.keys.push((key.clone(), id));
            self.pending.key_set.insert(key.clone());
            self.cache.key_added(key, id);
        }
        for e in added {
            self.pending.timeline.push((id, e.clone(), Some(event_id.to_owned())));
        }
        self.cache.saved(req, added, before.is_none());
        self.pending.requests.insert(id, (req.clone(), summary));
        fresh
    }

    /// Calls `f` with the request's timeline in the database's order, with what the batch
    /// added. The timeline is lent by the cache, not copied.
    pub async fn with_timeline<T>(&mut self, id: RequestId, f: impl FnOnce(&mut Vec<TimelineEntry>) -> T) -> Result<T> {
        let mut timeline = match self.cache.take_timeline(id) {
            Some(timeline) => timeline,
            None => {
                let mut timeline = store::timeline(self.conn, id).await?;
                let added: Vec<TimelineEntry> =
                    self.pending.timeline.iter().filter(|(r, _, _)| *r == id).map(|(_, e, _)| e.clone()).collect();
                insert_in_order(&mut timeline, &added);
                timeline
            }
        };
        let out = f(&mut timeline);
        self.cache.timeline_loaded(id, timeline);
        Ok(out)
    }

    pub fn queue_outbox(&mut self, subject: &str, msg_id: &str, payload: Vec<u8>, traceparent: Option<String>) {
        self.pending.outbox.push(OutboxRow {
            subject: subject.to_owned(),
            msg_id: msg_id.to_owned(),
            payload,
            traceparent,
        });
    }

    // ------------------------------------------------------------------- orphans ---

    pub async fn add_orphan(
        &mut self,
        slot: &str,
        key: &str,
        envelope: &str,
        at: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        store::add_orphan(self.conn, slot, key, envelope, at, expires_at).await?;
        self.cache.orphan_added(key);
        Ok(())
    }

    /// Removes and returns the events waiting on `key`; no query when none can be.
    pub async fn take_orphans(&mut self, key: &str) -> Result<Vec<(String, String)>> {
        match self.cache.may_have_orphans(key) {
            Some(false) => return Ok(Vec::new()),
            Some(true) => {}
            None => {
                let keys: Vec<String> =
                    sqlx::query_scalar("SELECT DISTINCT key FROM orphans").fetch_all(&mut *self.conn).await?;
                let found = keys.iter().any(|k| k == key);
                self.cache.orphan_keys_loaded(keys.into_iter().collect());
                if !found {
                    return Ok(Vec::new());
                }
            }
        }
        let taken = store::take_orphans(self.conn, key).await?;
        self.cache.orphans_taken(key);
        Ok(taken)
    }

    // --------------------------------------------------------------------- flush ---

    /// Writes everything the batch changed: one statement per table (per 500 rows), all sent
    /// to SQLite's thread at once.
    pub async fn flush(&mut self) -> Result<()> {
        let p = std::mem::take(&mut self.pending);
        let mut q = QueryBuilder::<Sqlite>::new("");
        let mut rows = 0;
        let requests: Vec<_> = p.requests.values().collect();
        for chunk in requests.chunks(ROWS) {
            push_requests(&mut q, chunk)?;
            rows += chunk.len();
        }
        let items: Vec<_> = p.items.iter().collect();
        for chunk in items.chunks(ROWS) {
            push_items(&mut q, chunk);
            rows += chunk.len();
        }
        let downloads: Vec<_> = p.downloads.iter().collect();
        for chunk in downloads.chunks(ROWS) {
            push_downloads(&mut q, chunk);
            rows += chunk.len();
        }
        for chunk in p.keys.chunks(ROWS) {
            q.push("INSERT OR IGNORE INTO request_keys (key, request_id) ");
            q.push_values(chunk, |mut row, (key, id)| {
                row.push_bind(key.clone()).push_bind(id.0);
            });
            q.push(";\n");
            rows += chunk.len();
        }
        for chunk in p.timeline.chunks(ROWS) {
            q.push("INSERT INTO timeline (request_id, state, at, source, message, details, episode, late, event_id) ");
            q.push_values(chunk, |mut row, (id, e, event_id)| {
                row.push_bind(id.0)
                    .push_bind(e.state.as_str())
                    .push_bind(ts(e.at))
                    .push_bind(e.source.clone())
                    .push_bind(e.message.clone())
                    .push_bind(e.details.to_string())
                    .push_bind(e.episode.clone())
                    .push_bind(e.late)
                    .push_bind(event_id.clone());
            });
            q.push(";\n");
            rows += chunk.len();
        }
        for chunk in p.outbox.chunks(ROWS) {
            q.push("INSERT INTO outbox (subject, msg_id, payload, traceparent) ");
            q.push_values(chunk, |mut row, m| {
                row.push_bind(m.subject.clone())
                    .push_bind(m.msg_id.clone())
                    .push_bind(m.payload.clone())
                    .push_bind(m.traceparent.clone());
            });
            // The only statement that returns rows: the ids, in the order of the values.
            q.push(" RETURNING id;\n");
            rows += chunk.len();
        }
        let processed: Vec<_> = p.processed.iter().collect();
        let now = ts(OffsetDateTime::now_utc());
        for chunk in processed.chunks(ROWS) {
            q.push("INSERT INTO processed_events (event_id, subject, processed_at, outcome) ");
            q.push_values(chunk, |mut row, (id, (subject, outcome))| {
                row.push_bind((*id).clone()).push_bind(subject.clone()).push_bind(now).push_bind(outcome.clone());
            });
            q.push(" ON CONFLICT (event_id) DO UPDATE SET outcome = excluded.outcome;\n");
            rows += chunk.len();
        }
        if rows > 0 {
            let ids: Vec<i64> =
                q.build().persistent(keep(rows)).fetch_all(&mut *self.conn).await?.iter().map(|r| r.get(0)).collect();
            if ids.len() != p.outbox.len() {
                return Err(StoreError::Corrupt(format!("{} outbox ids for {} rows", ids.len(), p.outbox.len())));
            }
            self.written_outbox.extend(p.outbox.into_iter().zip(ids).map(|(m, id)| store::OutboxMessage {
                id,
                subject: m.subject,
                msg_id: m.msg_id,
                payload: m.payload,
                traceparent: m.traceparent,
            }));
        }
        Ok(())
    }

    /// The outbox rows this session wrote, with their ids: once the transaction committed,
    /// the publisher can send them without reading them back.
    pub fn take_written_outbox(&mut self) -> Vec<store::OutboxMessage> {
        std::mem::take(&mut self.written_outbox)
    }
}

fn push_requests(q: &mut QueryBuilder<Sqlite>, rows: &[&(Arc<Request>, RequestSummary)]) -> Result<()> {
    let mut encoded = Vec::with_capacity(rows.len());
    for (req, summary) in rows {
        let summary_json = serde_json::to_string(summary).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let seasons = serde_json::to_string(&req.requested_seasons).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        encoded.push((req, summary.state.as_str(), summary_json, seasons));
    }
    q.push(
        "INSERT INTO requests (media_type, title, year, poster_url, tmdb_id, tvdb_id, imdb_id, arr_id,
            jellyseerr_id, requested_by, requested_by_email, is_anime, is_4k, source, requested_seasons, stage,
            outcome_state, outcome_reason, outcome_at, evidence_at, available_at, quality, media_path, watch_item_id,
            watch_server_id, watch_server_url, trace_parent, created_at, updated_at, archived_at, state_since,
            stall_state, stall_reason, stall_at, alert_check, alert_message, alert_at, state, summary, id) ",
    );
    q.push_values(encoded, |mut row, (req, state, summary_json, seasons)| {
        row.push_bind(req.media_type.as_str())
            .push_bind(req.title.clone())
            .push_bind(req.year)
            .push_bind(req.poster_url.clone())
            .push_bind(req.tmdb_id.map(|v| v.0 as i64))
            .push_bind(req.tvdb_id.map(|v| v.0 as i64))
            .push_bind(req.imdb_id.clone())
            .push_bind(req.arr_id.map(|v| v.0 as i64))
            .push_bind(req.jellyseerr_id.map(|v| v.0 as i64))
            .push_bind(req.requested_by.clone())
            .push_bind(req.requested_by_email.clone())
            .push_bind(req.is_anime)
            .push_bind(req.is_4k)
            .push_bind(req.source.clone())
            .push_bind(seasons)
            .push_bind(req.stage.as_str())
            .push_bind(req.outcome.as_ref().map(|o| o.state.as_str()))
            .push_bind(req.outcome.as_ref().and_then(|o| o.reason.clone()))
            .push_bind(req.outcome.as_ref().map(|o| ts(o.at)))
            .push_bind(req.evidence_at.map(ts))
            .push_bind(req.available_at.map(ts))
            .push_bind(req.quality.clone())
            .push_bind(req.media_path.clone())
            .push_bind(req.watch.as_ref().map(|w| w.item_id.clone()))
            .push_bind(req.watch.as_ref().and_then(|w| w.server_id.clone()))
            .push_bind(req.watch.as_ref().and_then(|w| w.server_url.clone()))
            .push_bind(req.trace_parent.clone())
            .push_bind(ts(req.created_at))
            .push_bind(ts(req.updated_at))
            .push_bind(req.archived_at.map(ts))
            .push_bind(ts(req.state_since))
            .push_bind(req.stall.as_ref().map(|s| s.state.as_str()))
            .push_bind(req.stall.as_ref().map(|s| s.reason.clone()))
            .push_bind(req.stall.as_ref().map(|s| ts(s.at)))
            .push_bind(req.alert.as_ref().map(|a| a.check.clone()))
            .push_bind(req.alert.as_ref().map(|a| a.message.clone()))
            .push_bind(req.alert.as_ref().map(|a| ts(a.at)))
            .push_bind(state)
            .push_bind(summary_json)
            .push_bind(req.id.0);
    });
    q.push(
        " ON CONFLICT (id) DO UPDATE SET media_type = excluded.media_type, title = excluded.title,
            year = excluded.year, poster_url = excluded.poster_url, tmdb_id = excluded.tmdb_id,
            tvdb_id = excluded.tvdb_id, imdb_id = excluded.imdb_id, arr_id = excluded.arr_id,
            jellyseerr_id = excluded.jellyseerr_id, requested_by = excluded.requested_by,
            requested_by_email = excluded.requested_by_email, is_anime = excluded.is_anime, is_4k = excluded.is_4k,
            source = excluded.source, requested_seasons = excluded.requested_seasons, stage = excluded.stage,
            outcome_state = excluded.outcome_state, outcome_reason = excluded.outcome_reason,
            outcome_at = excluded.outcome_at, evidence_at = excluded.evidence_at,
            available_at = excluded.available_at, quality = excluded.quality, media_path = excluded.media_path,
            watch_item_id = excluded.watch_item_id, watch_server_id = excluded.watch_server_id,
            watch_server_url = excluded.watch_server_url, trace_parent = excluded.trace_parent,
            created_at = excluded.created_at, updated_at = excluded.updated_at, archived_at = excluded.archived_at,
            state_since = excluded.state_since, stall_state = excluded.stall_state,
            stall_reason = excluded.stall_reason, stall_at = excluded.stall_at, alert_check = excluded.alert_check,
            alert_message = excluded.alert_message, alert_at = excluded.alert_at,
            state = excluded.state, summary = excluded.summary;\n",
    );
    Ok(())
}

fn push_items(q: &mut QueryBuilder<Sqlite>, rows: &[(&(RequestId, u32, u32), &Item)]) {
    q.push(
        "INSERT INTO items (request_id, season, episode, stage, download_id, file_path, reason, reason_at,
           available_at, jellyfin_item_id, updated_at) ",
    );
    q.push_values(rows, |mut row, ((id, season, episode), item)| {
        row.push_bind(id.0)
            .push_bind(*season)
            .push_bind(*episode)
            .push_bind(item.stage.as_str())
            .push_bind(item.download_id.clone())
            .push_bind(item.file_path.clone())
            .push_bind(item.reason.clone())
            .push_bind(item.reason_at.map(ts))
            .push_bind(item.available_at.map(ts))
            .push_bind(item.jellyfin_item_id.clone())
            .push_bind(ts(item.updated_at));
    });
    q.push(
        " ON CONFLICT (request_id, season, episode) DO UPDATE SET stage = excluded.stage,
           download_id = excluded.download_id, file_path = excluded.file_path, reason = excluded.reason,
           reason_at = excluded.reason_at, available_at = excluded.available_at,
           jellyfin_item_id = excluded.jellyfin_item_id, updated_at = excluded.updated_at;\n",
    );
}

fn push_downloads(q: &mut QueryBuilder<Sqlite>, rows: &[(&(RequestId, String), &Download)]) {
    q.push(
        "INSERT INTO downloads (request_id, download_id, kind, release_title, quality, indexer, size, progress, dlspeed,
           eta, client_state, stalled, error, finished, upgrade, content_path, grabbed_at, progress_at, finish_noted,
           dropped, updated_at) ",
    );
    q.push_values(rows, |mut row, ((id, download_id), d)| {
        row.push_bind(id.0)
            .push_bind(download_id.clone())
            .push_bind(d.kind.clone())
            .push_bind(d.release_title.clone())
            .push_bind(d.quality.clone())
            .push_bind(d.indexer.clone())
            .push_bind(d.size.map(|s| s as i64))
            .push_bind(d.progress)
            .push_bind(d.dlspeed as i64)
            .push_bind(d.eta.map(|e| e as i64))
            .push_bind(d.client_state.clone())
            .push_bind(d.stalled.clone())
            .push_bind(d.error.clone())
            .push_bind(d.finished)
            .push_bind(d.upgrade)
            .push_bind(d.content_path.clone())
            .push_bind(ts(d.grabbed_at))
            .push_bind(d.progress_at.map(ts))
            .push_bind(d.finish_noted)
            .push_bind(d.dropped)
            .push_bind(ts(d.updated_at));
    });
    q.push(
        " ON CONFLICT (request_id, download_id) DO UPDATE SET kind = excluded.kind,
           release_title = excluded.release_title, quality = excluded.quality, indexer = excluded.indexer,
           size = excluded.size, progress = excluded.progress, dlspeed = excluded.dlspeed, eta = excluded.eta,
           client_state = excluded.client_state, stalled = excluded.stalled, error = excluded.error,
           finished = excluded.finished, upgrade = excluded.upgrade, content_path = excluded.content_path,
           grabbed_at = excluded.grabbed_at, progress_at = excluded.progress_at, finish_noted = excluded.finish_noted,
           dropped = excluded.dropped, updated_at = excluded.updated_at;\n",
    );
}
