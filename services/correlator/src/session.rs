//! One batch's unit of work. Every statement to SQLite goes through sqlx's worker thread and
//! costs two thread hand-offs, more than the statement itself; a batch of 256 events written
//! one statement at a time spent most of its time there. So a session answers reads from what
//! the batch already wrote and from the correlator's cache, and keeps the batch's writes in
//! memory until [`Session::flush`] writes them in one statement (before the commit, or before
//! a query that must see them).
//!
//! The consumer's batches ([`Session::batch`]) are correlated while the previous batch is
//! still being written and committed: the correlator's thread and SQLite's took turns, each
//! idle half the time (docs/performance.md). Such a session opens its transaction only when a
//! statement needs it, after the previous batch's commit; until then it reads through the
//! reading connections, which may not show the previous batch yet, so it takes that batch's
//! processed events and new keys from the batch itself ([`Prior`]). Everything else the
//! previous batch wrote is in the cache; what is not (evicted) is read after its commit.

use std::collections::{BTreeMap, HashSet};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use shared::ids::RequestId;
use shared::model::{RequestSummary, TimelineEntry};
use sqlx::pool::PoolConnection;
use sqlx::{Row, Sqlite, SqliteConnection};
use time::OffsetDateTime;
use tokio::sync::{Notify, watch};

use crate::cache::{Cache, Timeline};
use crate::flush;
use crate::lifecycle::{Download, Item, Request};
use crate::store::{self, Result, Store, StoreError, ts};

pub struct Session<'a> {
    link: Link<'a>,
    cache: &'a Cache,
    pending: Pending,
    /// Event ids known to be processed: the batch's and those found by
    /// [`Self::prefetch`] (the previous batch's are in its [`Prior`]).
    processed: HashSet<String>,
    /// Keys the batch added, flushed or not: a query must see them (flush first), and the
    /// next batch's reads may not show them yet.
    keys_added: HashSet<String>,
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
    timeline: Vec<(RequestId, TimelineEntry, Option<String>)>,
    outbox: Vec<OutboxRow>,
    processed: BTreeMap<String, (String, String)>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.requests.is_empty()
            && self.items.is_empty()
            && self.downloads.is_empty()
            && self.keys.is_empty()
            && self.timeline.is_empty()
            && self.outbox.is_empty()
            && self.processed.is_empty()
    }
}

/// Where a session's statements go.
enum Link<'a> {
    /// A connection in a transaction its owner commits.
    Conn(&'a mut SqliteConnection),
    /// A consumer's batch ([`Session::batch`]).
    Batch(Box<Batch>),
}

/// A consumer's batch: it holds the writer's connection from its first statement that needs
/// it, after the previous batch's commit, to its own commit.
struct Batch {
    store: Store,
    prior: Option<Prior>,
    writer: Option<Writer>,
}

/// The writer's connection, held by a batch. Every write goes through this one connection
/// ([`Store::writer`]), so a batch holding it reads what no one else can change before it
/// commits, and needs no transaction until it writes.
///
/// The transaction is begun and committed by hand, not with sqlx's `Transaction`: a batch that
/// wrote nothing before its commit sends its `BEGIN`, its writes and its `COMMIT` as one
/// statement ([`flush::COMMITTING`]), one round trip to the connection's thread where sqlx's
/// `begin`, the writes and `commit` are three (docs/performance.md, "Latency"). A connection
/// dropped while a transaction may be open is closed, not handed back to the pool: SQLite
/// rolls the transaction back, and the next batch gets a fresh connection.
struct Writer {
    conn: PoolConnection<Sqlite>,
    /// A transaction may be open.
    open: bool,
}

impl Writer {
    async fn acquire(store: &Store) -> Result<Self> {
        Ok(Self { conn: store.writer().acquire().await?, open: false })
    }

    /// Begins the transaction, unless it is open.
    async fn begin(&mut self) -> Result<&mut SqliteConnection> {
        if !self.open {
            self.open = true;
            // IMMEDIATE: see [`Store::begin`].
            sqlx::query("BEGIN IMMEDIATE").execute(&mut *self.conn).await?;
        }
        Ok(&mut self.conn)
    }

    /// Writes `pending`, deletes the published outbox rows and commits; returns the outbox
    /// rows written, with their ids.
    async fn commit(mut self, pending: Pending, delete_outbox_up_to: Option<i64>) -> Result<Vec<store::OutboxMessage>> {
        let written = if self.open {
            let written = write(&mut self.conn, pending, delete_outbox_up_to, Wrapped::No).await?;
            sqlx::query("COMMIT").execute(&mut *self.conn).await?;
            written
        } else {
            self.open = true;
            write(&mut self.conn, pending, delete_outbox_up_to, Wrapped::BeginAndCommit).await?
        };
        self.open = false;
        Ok(written)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.open {
            self.conn.close_on_drop();
        }
    }
}

/// The previous batch, as the next one sees it while it commits.
pub struct Prior {
    committed: watch::Receiver<Option<bool>>,
    needed: Arc<Notify>,
    /// Its events and those it found processed: all of them are, once it commits. Only its
    /// own: a batch hands on what its predecessor handed it, so the set would grow for as long
    /// as batches follow each other.
    processed: HashSet<String>,
    /// The keys it added, which a reading connection may not show yet.
    keys: HashSet<String>,
}

impl Batch {
    /// The writer's connection, taken once the previous batch has committed.
    async fn writer(&mut self) -> Result<&mut Writer> {
        if self.writer.is_none() {
            if let Some(prior) = &mut self.prior {
                prior.committed().await?;
            }
            self.writer = Some(Writer::acquire(&self.store).await?);
        }
        Ok(self.writer.as_mut().expect("just taken"))
    }
}

impl Prior {
    /// Waits for the previous batch's commit; an error when it did not commit (what this
    /// batch correlated then rests on writes that were rolled back).
    async fn committed(&mut self) -> Result<()> {
        self.needed.notify_one();
        match self.committed.wait_for(Option::is_some).await.map(|c| *c) {
            Ok(Some(true)) => Ok(()),
            _ => Err(StoreError::PriorRolledBack),
        }
    }
}

/// The committing batch's side of [`Prior`].
pub struct Done {
    committed: watch::Sender<Option<bool>>,
    needed: Arc<Notify>,
}

impl Done {
    /// Tells the next batch whether this one committed. Send it only when nothing else of
    /// this batch needs the writer: the next batch takes it then.
    pub fn send(self, committed: bool) {
        self.committed.send_replace(Some(committed));
    }

    /// Returns once the next batch waits for this one's commit (tests hold a commit back
    /// until then, to give the next batch the longest time without it).
    pub async fn needed(&self) {
        self.needed.notified().await;
    }
}

/// A batch correlated: its writes, to commit ([`Commit::run`]), the view of it the next batch
/// starts from, and the signal that tells that batch how the commit went.
pub struct Finished {
    pub commit: Commit,
    pub next: Prior,
    pub done: Done,
}

/// A batch's writes and the writer's connection, if it holds it.
pub struct Commit {
    store: Store,
    writer: Option<Writer>,
    pending: Pending,
    written_outbox: Vec<store::OutboxMessage>,
}

impl Commit {
    /// Writes what is left and commits, deleting the outbox's rows up to `delete_outbox_up_to`
    /// in the same transaction; returns the outbox rows the batch wrote, with their ids.
    pub async fn run(self, delete_outbox_up_to: Option<i64>) -> Result<Vec<store::OutboxMessage>> {
        let Self { store, writer, pending, mut written_outbox } = self;
        let writer = match writer {
            Some(writer) => writer,
            None => Writer::acquire(&store).await?,
        };
        written_outbox.extend(writer.commit(pending, delete_outbox_up_to).await?);
        Ok(written_outbox)
    }
}

/// A connection to read through: one of the reading connections while the previous batch
/// commits and this one does not hold the writer's yet, else the session's.
enum Reading<'c> {
    Pooled(PoolConnection<Sqlite>),
    Conn(&'c mut SqliteConnection),
}

impl Deref for Reading<'_> {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        match self {
            Reading::Pooled(c) => c,
            Reading::Conn(c) => c,
        }
    }
}

impl DerefMut for Reading<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        match self {
            Reading::Pooled(c) => c,
            Reading::Conn(c) => c,
        }
    }
}

struct OutboxRow {
    subject: String,
    msg_id: String,
    payload: Vec<u8>,
    traceparent: Option<String>,
}

impl<'a> Session<'a> {
    /// A session in the transaction `conn` is in, which its owner commits.
    pub fn new(conn: &'a mut SqliteConnection, cache: &'a Cache) -> Self {
        Self::with_link(Link::Conn(conn), cache)
    }

    /// A consumer's batch, correlated while `prior` (the previous batch) may still commit; its
    /// writes are committed by [`Finished::commit`] ([`Self::finish`]).
    pub fn batch(store: &Store, cache: &'a Cache, prior: Option<Prior>) -> Self {
        Self::with_link(Link::Batch(Box::new(Batch { store: store.clone(), prior, writer: None })), cache)
    }

    fn with_link(link: Link<'a>, cache: &'a Cache) -> Self {
        Self {
            link,
            cache,
            pending: Pending::default(),
            processed: HashSet::new(),
            keys_added: HashSet::new(),
            unprocessed: HashSet::new(),
            written_outbox: Vec::new(),
        }
    }

    /// The batch correlated: its writes to commit, and what the next batch needs of it.
    ///
    /// # Panics
    /// When the session is not a batch's ([`Self::batch`]): the owner of a connection commits.
    pub fn finish(self) -> Finished {
        let Link::Batch(batch) = self.link else {
            panic!("Session::finish is for batches (Session::batch); commit the connection instead")
        };
        let (committed, receiver) = watch::channel(None);
        let needed = Arc::new(Notify::new());
        Finished {
            commit: Commit {
                store: batch.store,
                writer: batch.writer,
                pending: self.pending,
                written_outbox: self.written_outbox,
            },
            next: Prior {
                committed: receiver,
                needed: needed.clone(),
                processed: self.processed,
                keys: self.keys_added,
            },
            done: Done { committed, needed },
        }
    }

    /// The connection, with the batch's writes flushed: for queries the session does not know.
    pub async fn conn(&mut self) -> Result<&mut SqliteConnection> {
        self.flush().await?;
        self.held().await
    }

    /// The session's connection, to read; a batch takes the writer's here, once the previous
    /// batch has committed.
    async fn held(&mut self) -> Result<&mut SqliteConnection> {
        match &mut self.link {
            Link::Conn(conn) => Ok(conn),
            Link::Batch(batch) => Ok(&mut batch.writer().await?.conn),
        }
    }

    /// The session's connection in its transaction, to write; a batch begins it here.
    async fn tx(&mut self) -> Result<&mut SqliteConnection> {
        match &mut self.link {
            Link::Conn(conn) => Ok(conn),
            Link::Batch(batch) => batch.writer().await?.begin().await,
        }
    }

    /// A connection for a read the session knows what the previous batch changed of: a
    /// reading connection while that batch commits, else the session's (the writer's, whose
    /// page cache is warm: a reading connection drops its cache whenever the writer wrote).
    async fn reading(&mut self) -> Result<Reading<'_>> {
        if let Link::Batch(batch) = &self.link
            && batch.writer.is_none()
            && batch.prior.as_ref().is_some_and(|prior| prior.committed.borrow().is_none())
        {
            return Ok(Reading::Pooled(batch.store.pool().acquire().await?));
        }
        Ok(Reading::Conn(self.held().await?))
    }

    /// The previous batch added `key`: reading connections may not show it yet.
    fn prior_added(&self, key: &str) -> bool {
        matches!(&self.link, Link::Batch(batch) if batch.prior.as_ref().is_some_and(|prior| prior.keys.contains(key)))
    }

    /// The previous batch processed event `id`.
    fn prior_processed(&self, id: &str) -> bool {
        matches!(&self.link, Link::Batch(batch) if batch.prior.as_ref().is_some_and(|prior| prior.processed.contains(id)))
    }

    // ----------------------------------------------------- processed events and keys ---

    /// Looks up which of `ids` were processed before and which requests `keys` name, in one
    /// query, for those neither the cache (with its filters, [`crate::seen`]) nor the previous
    /// batch knows. Call it before the batch writes anything (keys it adds are then kept up to
    /// date). Keys the previous batch added and the cache no longer knows are left to be read
    /// after its commit.
    pub async fn prefetch(&mut self, ids: &[&str], keys: &[String]) -> Result<()> {
        let mut ids: Vec<&str> =
            ids.iter().copied().filter(|id| !self.processed.contains(*id) && !self.prior_processed(id)).collect();
        ids.retain(|id| {
            let may_have = self.cache.seen.may_have_processed(id);
            if !may_have {
                self.unprocessed.insert((*id).to_owned());
            }
            may_have
        });
        let mut keys: Vec<&str> =
            keys.iter().map(String::as_str).filter(|k| !self.cache.has_key(k) && !self.prior_added(k)).collect();
        keys.retain(|key| {
            let may_name = self.cache.seen.may_name_a_request(key);
            if !may_name {
                self.cache.key_loaded(key, &[]);
            }
            may_name
        });
        keys.sort_unstable();
        keys.dedup();
        if ids.is_empty() && keys.is_empty() {
            return Ok(());
        }
        let found = store::look_up(&mut *self.reading().await?, &ids, &keys).await?;
        for id in ids {
            if !found.processed.contains(id) {
                self.unprocessed.insert(id.to_owned());
            }
        }
        self.processed.extend(found.processed);
        for key in keys {
            self.cache.key_loaded(key, found.keys.get(key).map_or(&[], Vec::as_slice));
        }
        Ok(())
    }

    pub async fn is_processed(&mut self, id: &str) -> Result<bool> {
        if self.processed.contains(id) || self.prior_processed(id) {
            return Ok(true);
        }
        if self.unprocessed.contains(id) || !self.cache.seen.may_have_processed(id) {
            return Ok(false);
        }
        store::is_processed(self.held().await?, id).await
    }

    pub fn mark_processed(&mut self, id: &str, subject: &str, outcome: &str) {
        self.cache.seen.processed(id);
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
        let loaded = store::load(self.held().await?, id).await?.map(Arc::new);
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
        // A key added before an earlier flush is written already; flushing again then only
        // writes the rest earlier.
        if self.keys_added.contains(key) {
            self.flush().await?;
        } else if !self.cache.seen.may_name_a_request(key) {
            self.cache.key_loaded(key, &[]);
            return Ok(Vec::new());
        }
        let ids = store::find_by_key(self.held().await?, key).await?;
        self.cache.key_loaded(key, &ids);
        Ok(ids)
    }

    pub async fn next_id(&mut self) -> Result<RequestId> {
        if let Some(id) = self.cache.take_next_id() {
            return Ok(id);
        }
        self.flush().await?;
        let next = store::next_id(self.held().await?).await?;
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
            self.keys_added.insert(key.clone());
            self.cache.key_added(key, id);
            self.cache.seen.key_added(key);
        }
        for e in added {
            self.pending.timeline.push((id, e.clone(), Some(event_id.to_owned())));
        }
        self.cache.saved(req, added, before.is_none());
        self.pending.requests.insert(id, (req.clone(), summary));
        fresh
    }

    /// Calls `f` with the request's timeline in the database's order, with what the batch
    /// added, each entry serialized. The timeline is lent by the cache, not copied.
    pub async fn with_timeline<T>(&mut self, req: &Request, f: impl FnOnce(&Timeline) -> T) -> Result<T> {
        let id = req.id;
        let timeline = match self.cache.take_timeline(id) {
            Some(timeline) => timeline,
            None => {
                let mut timeline = Timeline::new(&store::timeline(self.held().await?, id).await?, req)?;
                let added: Vec<TimelineEntry> =
                    self.pending.timeline.iter().filter(|(r, _, _)| *r == id).map(|(_, e, _)| e.clone()).collect();
                timeline.insert_in_order(&added, req)?;
                timeline
            }
        };
        let out = f(&timeline);
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
        store::add_orphan(self.tx().await?, slot, key, envelope, at, expires_at).await?;
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
                    sqlx::query_scalar("SELECT DISTINCT key FROM orphans").fetch_all(self.held().await?).await?;
                let found = keys.iter().any(|k| k == key);
                self.cache.orphan_keys_loaded(keys.into_iter().collect());
                if !found {
                    return Ok(Vec::new());
                }
            }
        }
        let taken = store::take_orphans(self.tx().await?, key).await?;
        self.cache.orphans_taken(key);
        Ok(taken)
    }

    // --------------------------------------------------------------------- flush ---

    /// Writes everything the batch changed, in one statement whose text never changes
    /// ([`flush::SQL`]): each table's rows go as one JSON array.
    pub async fn flush(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return Ok(());
        }
        let written = write(self.tx().await?, pending, None, Wrapped::No).await?;
        self.written_outbox.extend(written);
        Ok(())
    }

    /// The outbox rows this session wrote, with their ids: once the transaction committed,
    /// the publisher can send them without reading them back.
    pub fn take_written_outbox(&mut self) -> Vec<store::OutboxMessage> {
        std::mem::take(&mut self.written_outbox)
    }
}

/// Whether a write is its own transaction.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wrapped {
    /// In a transaction begun before.
    No,
    /// Begins and commits one ([`flush::COMMITTING`]).
    BeginAndCommit,
}

/// Writes `p` in one statement, deleting the outbox's rows up to `delete_outbox_up_to` (the
/// published ones) in it; returns the outbox rows written, with their ids.
async fn write(
    conn: &mut SqliteConnection,
    p: Pending,
    delete_outbox_up_to: Option<i64>,
    wrapped: Wrapped,
) -> Result<Vec<store::OutboxMessage>> {
    // Nothing else to write: the delete is a transaction of its own when the write is.
    if p.is_empty() {
        if let Some(up_to) = delete_outbox_up_to {
            store::delete_outbox(conn, up_to).await?;
        }
        return Ok(Vec::new());
    }
    let mut summaries = flush::Blob::default();
    let requests = p
        .requests
        .values()
        .map(|(req, summary)| Ok(flush::RequestRow::new(req, summary.state.as_str(), summaries.push_json(summary)?)?))
        .collect::<Result<Vec<_>>>()?;
    let items: Vec<_> = p
        .items
        .iter()
        .map(|((id, season, episode), item)| flush::ItemRow::new(id.0, *season, *episode, item))
        .collect();
    let downloads: Vec<_> =
        p.downloads.iter().map(|((id, download_id), d)| flush::DownloadRow::new(id.0, download_id, d)).collect();
    let keys: Vec<_> = p.keys.iter().map(|(key, id)| flush::KeyRow { key, request_id: id.0 }).collect();
    let mut details = flush::Blob::default();
    let timeline = p
        .timeline
        .iter()
        .map(|(id, e, event_id)| {
            Ok(flush::TimelineRow::new(id.0, e, event_id.as_deref(), details.push_json(&e.details)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut payloads = flush::Blob::with_capacity(p.outbox.iter().map(|m| m.payload.len()).sum());
    let outbox: Vec<_> = p
        .outbox
        .iter()
        .map(|m| flush::OutboxRow {
            subject: &m.subject,
            msg_id: &m.msg_id,
            traceparent: m.traceparent.as_deref(),
            payload: payloads.push(&m.payload),
        })
        .collect();
    let now = ts(OffsetDateTime::now_utc());
    let processed: Vec<_> = p
        .processed
        .iter()
        .map(|(id, (subject, outcome))| flush::ProcessedRow { event_id: id, subject, processed_at: now, outcome })
        .collect();
    let sql = match wrapped {
        Wrapped::No => flush::SQL.as_str(),
        Wrapped::BeginAndCommit => flush::COMMITTING.as_str(),
    };
    let mut ids: Vec<i64> = sqlx::query(sql)
        .bind(summaries.into_bytes())
        .bind(json_array(&requests)?)
        .bind(json_array(&items)?)
        .bind(json_array(&downloads)?)
        .bind(json_array(&keys)?)
        .bind(details.into_bytes())
        .bind(json_array(&timeline)?)
        .bind(payloads.into_bytes())
        .bind(json_array(&outbox)?)
        .bind(json_array(&processed)?)
        .bind(delete_outbox_up_to)
        .fetch_all(conn)
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if ids.len() != p.outbox.len() {
        return Err(StoreError::Corrupt(format!("{} outbox ids for {} rows", ids.len(), p.outbox.len())));
    }
    // The ids increase in the order the rows were inserted, the array's order, whatever
    // order RETURNING gives them in.
    ids.sort_unstable();
    Ok(p.outbox
        .into_iter()
        .zip(ids)
        .map(|(m, id)| store::OutboxMessage {
            id,
            subject: m.subject,
            msg_id: m.msg_id,
            payload: m.payload,
            traceparent: m.traceparent,
        })
        .collect())
}

fn json_array<T: serde::Serialize>(rows: &[T]) -> Result<String> {
    Ok(serde_json::to_string(rows)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Request `id`, a film with TMDB id 438631 created `at`.
    fn dune(id: i64, at: OffsetDateTime) -> Arc<Request> {
        let mut req = Request::new(shared::events::MediaType::Movie, "Dune".into(), "jellyseerr", at);
        (req.id, req.tmdb_id) = (RequestId(id), Some(shared::ids::TmdbId(438631)));
        Arc::new(req)
    }

    async fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(&dir.path().join("tracker.db")).await.expect("database");
        (dir, store)
    }

    /// Summaries, timeline details and outbox payloads travel beside the rows, each row
    /// naming its slice of a blob: every one must come back whole, whatever its neighbours
    /// and characters (an empty one too).
    #[tokio::test]
    async fn summaries_details_and_payloads_are_stored_as_written() {
        use shared::events::MediaType;
        use shared::model::State;

        let at = OffsetDateTime::UNIX_EPOCH;
        let (_dir, store) = open().await;
        let cache = Cache::default();
        let mut tx = store.begin().await.expect("transaction");
        let mut session = Session::new(&mut tx, &cache);
        let titles = ["Amélie", r#"The "Quoted" \ One"#, "", "火垂るの墓 🎞"];
        let mut written = Vec::new();
        for (i, title) in titles.iter().enumerate() {
            let mut req = Request::new(MediaType::Movie, (*title).to_owned(), "jellyseerr", at);
            req.id = RequestId(i as i64 + 1);
            let req = Arc::new(req);
            let entry = TimelineEntry {
                state: State::Requested,
                at,
                source: "jellyseerr".into(),
                message: format!("Requested {title}"),
                details: serde_json::json!({ "title": title, "n": i }),
                episode: None,
                late: false,
                remark: false,
            };
            session.save(None, &req, req.summary(), std::slice::from_ref(&entry), &format!("event-{i}"));
            session.queue_outbox("tracker.request.1.requested", &format!("msg-{i}"), title.as_bytes().to_vec(), None);
            written.push((req.id, serde_json::to_value(req.summary()).unwrap(), entry.details));
        }
        session.flush().await.expect("batch written");
        let outbox = session.take_written_outbox();
        drop(session);
        assert_eq!(outbox.len(), titles.len());
        for (m, title) in outbox.iter().zip(titles) {
            let (payload, typ): (Vec<u8>, String) =
                sqlx::query_as("SELECT payload, typeof(payload) FROM outbox WHERE id = ?")
                    .bind(m.id)
                    .fetch_one(&mut *tx)
                    .await
                    .expect("outbox row");
            assert_eq!((payload.as_slice(), typ.as_str()), (title.as_bytes(), "blob"), "{}", m.msg_id);
        }
        for (id, summary, details) in written {
            let (text, typ): (String, String) =
                sqlx::query_as("SELECT summary, typeof(summary) FROM requests WHERE id = ?")
                    .bind(id.0)
                    .fetch_one(&mut *tx)
                    .await
                    .expect("request");
            assert_eq!(typ, "text");
            assert_eq!(serde_json::from_str::<serde_json::Value>(&text).expect("JSON"), summary);
            let stored: String = sqlx::query_scalar("SELECT details FROM timeline WHERE request_id = ?")
                .bind(id.0)
                .fetch_one(&mut *tx)
                .await
                .expect("timeline entry");
            assert_eq!(serde_json::from_str::<serde_json::Value>(&stored).expect("JSON"), details);
        }
        tx.commit().await.expect("commit");
        store.close().await;
    }

    /// Once the processed events and the keys are loaded, an event and a key they certainly
    /// do not include are known to be new without a query (the database is closed by then);
    /// those they include are still looked up.
    #[tokio::test]
    async fn what_the_filters_rule_out_is_not_looked_up() {
        let (_dir, store) = open().await;
        let cache = Cache::default();
        let mut tx = store.begin().await.expect("transaction");
        let mut session = Session::new(&mut tx, &cache);
        let req = dune(1, OffsetDateTime::UNIX_EPOCH);
        session.save(None, &req, req.summary(), &[], "event-old");
        session.mark_processed("event-old", "media.jellyseerr.pending", "applied");
        session.flush().await.expect("written");
        drop(session);
        tx.commit().await.expect("commit");
        cache.seen.load(store.pool()).await.expect("processed events and keys loaded");
        assert!(cache.seen.is_ready());
        cache.clear();
        store.close().await;

        let mut session = Session::batch(&store, &cache, None);
        let new_key = "movie:tmdb:1".to_owned();
        session.prefetch(&["event-new"], std::slice::from_ref(&new_key)).await.expect("nothing to look up");
        assert!(!session.is_processed("event-new").await.expect("known without a query"));
        assert!(!session.is_processed("event-other").await.expect("known without a query"));
        assert_eq!(session.find_by_key(&new_key).await.expect("known without a query"), []);
        assert_eq!(session.find_by_key("movie:tmdb:2").await.expect("known without a query"), []);
        let looked_up = session.is_processed("event-old").await;
        assert!(looked_up.is_err(), "an event the filter includes is looked up (in a closed database): {looked_up:?}");
        let looked_up = session.find_by_key("movie:tmdb:438631").await;
        assert!(looked_up.is_err(), "a key the filter includes is looked up (in a closed database): {looked_up:?}");
    }

    /// A batch's look-ups are one query: which of its events were processed, and which
    /// requests its keys name, newest first.
    #[tokio::test]
    async fn one_look_up_finds_processed_events_and_the_requests_of_keys_newest_first() {
        let (_dir, store) = open().await;
        let cache = Cache::default();
        let mut tx = store.begin().await.expect("transaction");
        let mut session = Session::new(&mut tx, &cache);
        for (id, created) in [(1, 100), (2, 300), (3, 200)] {
            let req = dune(id, OffsetDateTime::from_unix_timestamp(created).unwrap());
            session.save(None, &req, req.summary(), &[], &format!("event-{id}"));
        }
        session.mark_processed("event-1", "media.jellyseerr.pending", "applied");
        session.mark_processed("event-3", "media.jellyseerr.pending", "applied");
        session.flush().await.expect("written");
        drop(session);
        tx.commit().await.expect("commit");

        let mut conn = store.pool().acquire().await.expect("reader");
        let key = "movie:tmdb:438631";
        let found = store::look_up(&mut conn, &["event-1", "event-2", "event-3"], &[key, "movie:tmdb:1"])
            .await
            .expect("look-up");
        let mut processed: Vec<&str> = found.processed.iter().map(String::as_str).collect();
        processed.sort_unstable();
        assert_eq!(processed, ["event-1", "event-3"]);
        assert_eq!(found.keys.len(), 1, "a key naming nothing is left out: {:?}", found.keys);
        assert_eq!(found.keys[key], [RequestId(2), RequestId(3), RequestId(1)], "newest first");
        let only_keys = store::look_up(&mut conn, &[], &[key]).await.expect("look-up");
        assert!(only_keys.processed.is_empty());
        assert_eq!(only_keys.keys[key].len(), 3);
        drop(conn);
        store.close().await;
    }

    /// A batch's commit that fails half-way (here in its outbox insert, after its requests)
    /// leaves nothing of it behind, and no transaction open on the writer's connection: the
    /// next batch commits. A batch that flushed before its commit (its transaction begun
    /// then) commits both parts.
    #[tokio::test]
    async fn a_failed_commit_leaves_nothing_open_behind_it() {
        use shared::events::MediaType;

        let (_dir, store) = open().await;
        sqlx::query(
            "CREATE TRIGGER refuse BEFORE INSERT ON outbox WHEN NEW.msg_id = 'refused' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        )
        .execute(store.writer())
        .await
        .expect("trigger");
        let cache = Cache::default();
        let batch = async |id: i64, msg_id: &str, flush_first: bool| -> Result<()> {
            let mut session = Session::batch(&store, &cache, None);
            let mut req =
                Request::new(MediaType::Movie, format!("Film {id}"), "jellyseerr", OffsetDateTime::UNIX_EPOCH);
            req.id = RequestId(id);
            let req = Arc::new(req);
            session.save(None, &req, req.summary(), &[], &format!("event-{id}"));
            if flush_first {
                session.flush().await?;
            }
            session.queue_outbox("tracker.request.1.requested", msg_id, b"{}".to_vec(), None);
            let Finished { commit, done, .. } = session.finish();
            let result = commit.run(None).await.map(drop);
            done.send(result.is_ok());
            result
        };
        let error = batch(1, "refused", false).await.expect_err("the trigger refuses the batch");
        assert!(error.to_string().contains("refused by the test"), "{error}");
        batch(2, "fine", false).await.expect("the next batch commits");
        batch(3, "refused", true).await.expect_err("refused after a flush");
        batch(4, "fine too", true).await.expect("a batch that flushed first commits");
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM requests ORDER BY id").fetch_all(store.pool()).await.expect("requests");
        assert_eq!(ids, [2, 4], "the refused batches' requests were rolled back");
        let msgs: Vec<String> =
            sqlx::query_scalar("SELECT msg_id FROM outbox ORDER BY id").fetch_all(store.pool()).await.expect("outbox");
        assert_eq!(msgs, ["fine", "fine too"]);
        store.close().await;
    }

    /// A batch's commit deletes the outbox rows published before it (inside its own
    /// statement when it writes, on its own when it does not) and never its own.
    #[tokio::test]
    async fn a_commit_deletes_the_published_outbox_rows_only() {
        let (_dir, store) = open().await;
        let cache = Cache::default();
        let outbox = async || -> Vec<String> {
            sqlx::query_scalar("SELECT msg_id FROM outbox ORDER BY id").fetch_all(store.pool()).await.expect("outbox")
        };
        let commit = async |msgs: &[&str], delete_up_to: Option<i64>| -> Vec<i64> {
            let mut session = Session::batch(&store, &cache, None);
            for m in msgs {
                session.queue_outbox("tracker.request.1.requested", m, m.as_bytes().to_vec(), None);
            }
            let Finished { commit, done, .. } = session.finish();
            let written = commit.run(delete_up_to).await.expect("commit");
            done.send(true);
            written.iter().map(|m| m.id).collect()
        };
        let first = commit(&["a", "b", "c"], None).await;
        assert_eq!(outbox().await, ["a", "b", "c"]);
        let second = commit(&["d"], Some(first[1])).await;
        assert_eq!(outbox().await, ["c", "d"], "a and b were published");
        assert!(second[0] > first[2]);
        commit(&[], Some(first[2])).await;
        assert_eq!(outbox().await, ["d"], "a batch without writes still deletes");
        commit(&["e"], None).await;
        assert_eq!(outbox().await, ["d", "e"], "nothing published: nothing deleted");
        store.close().await;
    }

    /// Under sustained load batches follow each other without a pause: what each hands to the
    /// next must not include what it was handed, or it grows with every batch.
    #[tokio::test]
    async fn a_batch_hands_the_next_only_its_own_processed_events() {
        let (_dir, store) = open().await;
        let cache = Cache::default();
        let mut prior: Option<Prior> = None;
        for batch in 0..4 {
            let mut session = Session::batch(&store, &cache, prior.take());
            if batch > 0 {
                let before = format!("{}-1", batch - 1);
                assert!(session.is_processed(&before).await.expect("look-up"), "the previous batch's event");
            }
            for i in 0..2 {
                session.mark_processed(&format!("{batch}-{i}"), "media.radarr.grab", "applied");
            }
            let Finished { next, .. } = session.finish();
            let mut handed: Vec<&String> = next.processed.iter().collect();
            handed.sort();
            assert_eq!(handed, [&format!("{batch}-0"), &format!("{batch}-1")], "batch {batch}");
            prior = Some(next);
        }
        store.close().await;
    }
}
