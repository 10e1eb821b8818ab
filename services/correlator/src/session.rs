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
use crate::store::{self, Result, Store, StoreError, Tx, ts};

pub struct Session<'a> {
    link: Link<'a>,
    cache: &'a Cache,
    pending: Pending,
    /// Event ids known to be processed: the batch's and those found by
    /// [`Self::prefetch_processed`] (the previous batch's are in its [`Prior`]).
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

/// A consumer's batch: its transaction begins when a statement first needs it, after the
/// previous batch's commit.
struct Batch {
    store: Store,
    prior: Option<Prior>,
    tx: Option<Tx<'static>>,
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

/// A batch's writes and its transaction, if it has begun.
pub struct Commit {
    store: Store,
    tx: Option<Tx<'static>>,
    pending: Pending,
    written_outbox: Vec<store::OutboxMessage>,
}

impl Commit {
    /// Writes what is left and commits, deleting the outbox's rows up to `delete_outbox_up_to`
    /// in the same transaction; returns the outbox rows the batch wrote, with their ids.
    pub async fn run(self, delete_outbox_up_to: Option<i64>) -> Result<Vec<store::OutboxMessage>> {
        let Self { store, tx, pending, mut written_outbox } = self;
        let mut tx = match tx {
            Some(tx) => tx,
            None => store.begin().await?,
        };
        written_outbox.extend(write(&mut tx, pending).await?);
        if let Some(up_to) = delete_outbox_up_to {
            store::delete_outbox(&mut tx, up_to).await?;
        }
        tx.commit().await?;
        Ok(written_outbox)
    }
}

/// A connection to read through: one of the reading connections while the previous batch
/// commits and this one has no transaction yet, else the session's.
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
        Self::with_link(Link::Batch(Box::new(Batch { store: store.clone(), prior, tx: None })), cache)
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
                tx: batch.tx,
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
        self.tx().await
    }

    /// The session's connection; a batch begins its transaction here, once the previous
    /// batch has committed.
    async fn tx(&mut self) -> Result<&mut SqliteConnection> {
        match &mut self.link {
            Link::Conn(conn) => Ok(conn),
            Link::Batch(batch) => {
                let Batch { store, prior, tx } = &mut **batch;
                let tx = match tx {
                    Some(tx) => tx,
                    None => {
                        if let Some(prior) = prior {
                            prior.committed().await?;
                        }
                        tx.insert(store.begin().await?)
                    }
                };
                Ok(tx)
            }
        }
    }

    /// A connection for a read the session knows what the previous batch changed of: a
    /// reading connection while that batch commits, else the session's (the writer's, whose
    /// page cache is warm: a reading connection drops its cache whenever the writer wrote).
    async fn reading(&mut self) -> Result<Reading<'_>> {
        if let Link::Batch(batch) = &self.link
            && batch.tx.is_none()
            && batch.prior.as_ref().is_some_and(|prior| prior.committed.borrow().is_none())
        {
            return Ok(Reading::Pooled(batch.store.pool().acquire().await?));
        }
        Ok(Reading::Conn(self.tx().await?))
    }

    /// The previous batch added `key`: reading connections may not show it yet.
    fn prior_added(&self, key: &str) -> bool {
        matches!(&self.link, Link::Batch(batch) if batch.prior.as_ref().is_some_and(|prior| prior.keys.contains(key)))
    }

    /// The previous batch processed event `id`.
    fn prior_processed(&self, id: &str) -> bool {
        matches!(&self.link, Link::Batch(batch) if batch.prior.as_ref().is_some_and(|prior| prior.processed.contains(id)))
    }

    // ------------------------------------------------------------ processed events ---

    /// Looks up which of `ids` were processed before, in one query.
    pub async fn prefetch_processed(&mut self, ids: &[&str]) -> Result<()> {
        let wanted: Vec<&str> =
            ids.iter().copied().filter(|id| !self.processed.contains(*id) && !self.prior_processed(id)).collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let list = serde_json::to_string(&wanted)?;
        let found: Vec<String> = sqlx::query_scalar(
            "SELECT event_id FROM processed_events WHERE event_id IN (SELECT value FROM json_each(?))",
        )
        .bind(list)
        .fetch_all(&mut *self.reading().await?)
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
    /// Call it before the batch writes anything (keys it adds are then kept up to date). Keys
    /// the previous batch added and the cache no longer knows are left to be read after its
    /// commit.
    pub async fn prefetch_keys(&mut self, keys: &[String]) -> Result<()> {
        let mut wanted: Vec<&str> =
            keys.iter().map(String::as_str).filter(|k| !self.cache.has_key(k) && !self.prior_added(k)).collect();
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() {
            return Ok(());
        }
        let found = store::find_by_keys(&mut *self.reading().await?, &wanted).await?;
        for key in wanted {
            self.cache.key_loaded(key, found.get(key).map_or(&[], Vec::as_slice));
        }
        Ok(())
    }

    pub async fn is_processed(&mut self, id: &str) -> Result<bool> {
        if self.processed.contains(id) || self.prior_processed(id) {
            return Ok(true);
        }
        if self.unprocessed.contains(id) {
            return Ok(false);
        }
        store::is_processed(self.tx().await?, id).await
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
        let loaded = store::load(self.tx().await?, id).await?.map(Arc::new);
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
        }
        let ids = store::find_by_key(self.tx().await?, key).await?;
        self.cache.key_loaded(key, &ids);
        Ok(ids)
    }

    pub async fn next_id(&mut self) -> Result<RequestId> {
        if let Some(id) = self.cache.take_next_id() {
            return Ok(id);
        }
        self.flush().await?;
        let next = store::next_id(self.tx().await?).await?;
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
    pub async fn with_timeline<T>(&mut self, id: RequestId, f: impl FnOnce(&Timeline) -> T) -> Result<T> {
        let timeline = match self.cache.take_timeline(id) {
            Some(timeline) => timeline,
            None => {
                let mut timeline = Timeline::new(&store::timeline(self.tx().await?, id).await?)?;
                let added: Vec<TimelineEntry> =
                    self.pending.timeline.iter().filter(|(r, _, _)| *r == id).map(|(_, e, _)| e.clone()).collect();
                timeline.insert_in_order(&added)?;
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
                    sqlx::query_scalar("SELECT DISTINCT key FROM orphans").fetch_all(self.tx().await?).await?;
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
        let written = write(self.tx().await?, pending).await?;
        self.written_outbox.extend(written);
        Ok(())
    }

    /// The outbox rows this session wrote, with their ids: once the transaction committed,
    /// the publisher can send them without reading them back.
    pub fn take_written_outbox(&mut self) -> Vec<store::OutboxMessage> {
        std::mem::take(&mut self.written_outbox)
    }
}

/// Writes `p` in one statement; returns the outbox rows written, with their ids.
async fn write(conn: &mut SqliteConnection, p: Pending) -> Result<Vec<store::OutboxMessage>> {
    if p.is_empty() {
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
    let mut ids: Vec<i64> = sqlx::query(flush::SQL.as_str())
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

    /// Summaries, timeline details and outbox payloads travel beside the rows, each row
    /// naming its slice of a blob: every one must come back whole, whatever its neighbours
    /// and characters (an empty one too).
    #[tokio::test]
    async fn summaries_details_and_payloads_are_stored_as_written() {
        use shared::events::MediaType;
        use shared::model::State;

        let at = OffsetDateTime::UNIX_EPOCH;
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(&dir.path().join("tracker.db")).await.expect("database");
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

    /// Under sustained load batches follow each other without a pause: what each hands to the
    /// next must not include what it was handed, or it grows with every batch.
    #[tokio::test]
    async fn a_batch_hands_the_next_only_its_own_processed_events() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(&dir.path().join("tracker.db")).await.expect("database");
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
