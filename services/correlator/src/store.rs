//! All SQL lives here. The correlator is the only writer; it works in one transaction per
//! batch of events, and readers (queries from the dashboard) use their own connections, which
//! WAL mode lets run beside the writer.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shared::events::MediaType;
use shared::ids::{ArrId, JellyseerrRequestId, RequestId, TmdbId, TvdbId};
use shared::model::{ListQuery, ListReply, RequestDetail, State, TimelineEntry};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool};
use time::OffsetDateTime;

use crate::lifecycle::{Alert, Download, Item, ItemKey, Outcome, Request, Stall, Watch};

pub type Tx<'c> = sqlx::Transaction<'c, Sqlite>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    /// The database's directory or lock file cannot be made or used.
    #[error("{0}")]
    File(String),
    /// A batch read what the previous batch wrote, and that batch did not commit.
    #[error("the previous batch was rolled back")]
    PriorRolledBack,
}

/// JSON written to or read from the database that does not encode or decode.
impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        Self::Corrupt(e.to_string())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An exclusive lock on `<database>.lock`, held while the database is opened and migrated,
/// released when the file is dropped (or the process ends). The file stays, empty.
async fn lock_setup(path: &Path) -> Result<std::fs::File> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock = std::path::PathBuf::from(name);
    let shown = lock.display().to_string();
    let locked = tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock)?;
        file.lock()?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(|e| StoreError::File(format!("{shown}: {e}")))?;
    locked.map_err(|e| StoreError::File(format!("cannot lock {shown}: {e}")))
}

/// A write-ahead log longer than this (16 MiB of 4 KiB pages) is restarted by the writer.
pub const LONG_LOG_FRAMES: i64 = 4096;

/// The SQLite database of the correlator.
///
/// Writes go through one connection that is never closed ([`Store::writer`]): in WAL mode a
/// connection drops its whole page cache whenever it finds that another connection wrote since
/// its last transaction, so batches handed round a pool's connections read every page they
/// touch from the file again (27 `pread` calls for one new request at idle; 3 with the
/// writer's cache kept, from the reading connections' queries). Reads and checkpoints use the other connections ([`Store::pool`]).
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    writer: SqlitePool,
    /// The write-ahead log grew long: the writer restarts it between two transactions.
    long_log: Arc<AtomicBool>,
}

impl Store {
    /// Opens (creating) the database at `path` in WAL mode and runs the migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::File(format!("{}: {e}", dir.display())))?;
        }
        // Two processes (or pools) creating the same new database at once would both find no
        // migration applied and both run the first one; one of them then fails. Opening and
        // migrating take turns instead.
        let setup = lock_setup(path).await?;
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL with WAL: a commit survives a process crash; only a power loss may take the
            // last transactions, which the unacked JetStream messages then redeliver.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .pragma("cache_size", "-2048")
            // A batch's multi-row upserts keep statement journals (to undo one statement
            // without the transaction); beyond 64 KiB SQLite spills them to a temporary file,
            // and writing that file took about 2 % of the process's CPU under load.
            .pragma("temp_store", "memory")
            // A commit that crosses the WAL threshold would checkpoint in the committing
            // connection (copying pages into the database and syncing it), stalling the
            // correlator's batch; `checkpoint` does it from the side instead.
            .pragma("wal_autocheckpoint", "0");
        // A local file: a connection does not go bad between two uses, and the ping costs a
        // round trip to the connection's thread on every transaction.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            // Kept open for the life of the store, and with it its page cache.
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("../../migrations").run(&writer).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(3)
            .min_connections(1)
            .test_before_acquire(false)
            // A write here would fail ("attempt to write a readonly database") instead of
            // passing the writer by; checkpoints are allowed. A reading connection's page cache
            // is dropped whenever the writer has committed since its last read, so it keeps
            // little worth having: 512 KiB instead of the writer's 2 MiB took 4–5 MiB off the
            // process after a burst, and neither the index page nor the rate was slower
            // (docs/performance.md, "Memory").
            .connect_with(options.pragma("query_only", "ON").pragma("cache_size", "-512"))
            .await?;
        drop(setup);
        Ok(Self { pool, writer, long_log: Arc::default() })
    }

    /// Connections for reading (queries, look-ups, the outbox) and for checkpoints.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The one connection that writes (see [`Store`]). Every write goes through it, so writes
    /// also wait for each other here rather than in SQLite's lock.
    pub fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// A write transaction. It takes SQLite's write lock at once, waiting for it as long as
    /// `busy_timeout`: a deferred one reads first and, when it then cannot upgrade its lock
    /// (another connection writing or restarting the log), fails at once with "database is
    /// locked" instead of waiting.
    pub async fn begin(&self) -> Result<Tx<'static>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Copies the write-ahead log into the database without blocking readers or the writer
    /// (`PASSIVE`), or, with `truncate`, completely and empties the log.
    ///
    /// A passive checkpoint never empties the log while commits keep coming (each leaves
    /// frames it has not copied yet), and SQLite writes the log from its start again only
    /// once it was emptied: under sustained load it grew without end (950 MB in the
    /// benchmark's minute at 4,500 events/s, docs/performance.md). When it holds more than
    /// [`LONG_LOG_FRAMES`], the writer is asked to restart it ([`Store::restart_long_log`]).
    pub async fn checkpoint(&self, truncate: bool) -> Result<()> {
        let sql = if truncate { "PRAGMA wal_checkpoint(TRUNCATE)" } else { "PRAGMA wal_checkpoint(PASSIVE)" };
        let row = sqlx::query(sql).fetch_one(&self.pool).await?;
        if row.get::<i64, _>(1) > LONG_LOG_FRAMES {
            self.long_log.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Between two of its transactions, the writer copies what the last checkpoint left and
    /// makes the next commit write the log from its start, when a checkpoint found the log
    /// long. Only the writer can: anyone else would have to catch the moment between two of
    /// its transactions (a checkpoint trying took up to 1.8 s under load, holding the next
    /// commit back all along). Readers still reading the log are waited for.
    pub async fn restart_long_log(&self) -> Result<()> {
        if self.long_log.swap(false, Ordering::Relaxed) {
            sqlx::query("PRAGMA wal_checkpoint(RESTART)").fetch_one(&self.writer).await?;
        }
        Ok(())
    }

    /// Checkpoints what it can (nobody else may, see `open`) and closes the connections.
    pub async fn close(&self) {
        if let Err(error) = self.checkpoint(false).await {
            tracing::debug!(%error, "checkpoint before closing skipped");
        }
        self.pool.close().await;
        self.writer.close().await;
    }
}

pub fn ts(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

pub fn from_ts(n: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(n)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn state_of(s: &str) -> Result<State> {
    State::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown state {s:?}")))
}

// ------------------------------------------------------------------ events ---

pub async fn is_processed(conn: &mut SqliteConnection, event_id: &str) -> Result<bool> {
    let row =
        sqlx::query("SELECT 1 FROM processed_events WHERE event_id = ?").bind(event_id).fetch_optional(conn).await?;
    Ok(row.is_some())
}

// ---------------------------------------------------------------- requests ---

/// Requests found by a key, newest first.
pub async fn find_by_key(conn: &mut SqliteConnection, key: &str) -> Result<Vec<RequestId>> {
    Ok(look_up(conn, &[], &[key]).await?.keys.remove(key).unwrap_or_default())
}

/// What a batch reads before it correlates ([`look_up`]).
#[derive(Debug, Default)]
pub struct LookedUp {
    /// The event ids asked for that were processed.
    pub processed: HashSet<String>,
    /// The requests each key names, newest first; keys naming none are left out.
    pub keys: HashMap<String, Vec<RequestId>>,
}

/// Which of `event_ids` were processed and which requests `keys` name, in one query: each
/// query sent is a round trip to the connection's thread.
pub async fn look_up(conn: &mut SqliteConnection, event_ids: &[&str], keys: &[&str]) -> Result<LookedUp> {
    let rows = sqlx::query(
        "SELECT 0, event_id, NULL, NULL FROM processed_events WHERE event_id IN (SELECT value FROM json_each(?)) \
         UNION ALL \
         SELECT 1, k.key, r.id, r.created_at FROM request_keys k JOIN requests r ON r.id = k.request_id \
         WHERE k.key IN (SELECT value FROM json_each(?)) \
         ORDER BY 1, 2, 4 DESC, 3 DESC",
    )
    .bind(serde_json::to_string(event_ids)?)
    .bind(serde_json::to_string(keys)?)
    .fetch_all(conn)
    .await?;
    let mut found = LookedUp::default();
    for row in &rows {
        match row.get::<i64, _>(0) {
            0 => _ = found.processed.insert(row.get(1)),
            _ => found.keys.entry(row.get(1)).or_default().push(RequestId(row.get(2))),
        }
    }
    Ok(found)
}

/// A request with its items and downloads: several statements, so outside the writer's batch
/// read it inside a transaction ([`read_snapshot`]), or a commit between them mixes two states.
pub async fn load(conn: &mut SqliteConnection, id: RequestId) -> Result<Option<Request>> {
    let Some(row) = sqlx::query("SELECT * FROM requests WHERE id = ?").bind(id.0).fetch_optional(&mut *conn).await?
    else {
        return Ok(None);
    };
    let mut req = request_from_row(&row)?;
    for row in sqlx::query("SELECT * FROM items WHERE request_id = ?").bind(id.0).fetch_all(&mut *conn).await? {
        let key: (u32, u32) = (row.get::<i64, _>("season") as u32, row.get::<i64, _>("episode") as u32);
        req.items.insert(
            key,
            Item {
                stage: state_of(row.get("stage"))?,
                download_id: row.get("download_id"),
                file_path: row.get("file_path"),
                reason: row.get("reason"),
                reason_at: row.get::<Option<i64>, _>("reason_at").map(from_ts),
                available_at: row.get::<Option<i64>, _>("available_at").map(from_ts),
                jellyfin_item_id: row.get("jellyfin_item_id"),
                updated_at: from_ts(row.get("updated_at")),
            },
        );
    }
    for row in sqlx::query("SELECT * FROM downloads WHERE request_id = ?").bind(id.0).fetch_all(&mut *conn).await? {
        req.downloads.insert(
            row.get("download_id"),
            Download {
                kind: row.get("kind"),
                release_title: row.get("release_title"),
                quality: row.get("quality"),
                indexer: row.get("indexer"),
                size: row.get::<Option<i64>, _>("size").map(|s| s as u64),
                progress: row.get("progress"),
                dlspeed: row.get::<i64, _>("dlspeed") as u64,
                eta: row.get::<Option<i64>, _>("eta").map(|s| s as u64),
                client_state: row.get("client_state"),
                stalled: row.get("stalled"),
                error: row.get("error"),
                finished: row.get("finished"),
                upgrade: row.get("upgrade"),
                content_path: row.get("content_path"),
                grabbed_at: from_ts(row.get("grabbed_at")),
                progress_at: row.get::<Option<i64>, _>("progress_at").map(from_ts),
                finish_noted: row.get("finish_noted"),
                dropped: row.get("dropped"),
                items: items_of(row.get("items")),
                updated_at: from_ts(row.get("updated_at")),
            },
        );
    }
    Ok(Some(req))
}

/// A download's items as the `items` column keeps them: `season:episode`, space separated
/// (`0:0` for the film).
pub fn items_text(items: &BTreeSet<ItemKey>) -> String {
    let mut text = String::with_capacity(items.len() * 6);
    for (season, episode) in items {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(itoa::Buffer::new().format(*season));
        text.push(':');
        text.push_str(itoa::Buffer::new().format(*episode));
    }
    text
}

fn items_of(text: &str) -> BTreeSet<ItemKey> {
    let item = |pair: &str| pair.split_once(':').and_then(|(s, e)| Some((s.parse().ok()?, e.parse().ok()?)));
    text.split_whitespace().filter_map(item).collect()
}

fn request_from_row(row: &SqliteRow) -> Result<Request> {
    let media_type =
        MediaType::parse(row.get("media_type")).ok_or_else(|| StoreError::Corrupt("unknown media type".into()))?;
    let outcome = match row.get::<Option<String>, _>("outcome_state") {
        Some(s) => Some(Outcome {
            state: state_of(&s)?,
            reason: row.get("outcome_reason"),
            at: from_ts(row.get::<Option<i64>, _>("outcome_at").unwrap_or(0)),
        }),
        None => None,
    };
    let watch = row.get::<Option<String>, _>("watch_item_id").map(|item_id| Watch {
        item_id,
        server_id: row.get("watch_server_id"),
        server_url: row.get("watch_server_url"),
    });
    let seasons: String = row.get("requested_seasons");
    Ok(Request {
        id: RequestId(row.get("id")),
        media_type,
        title: row.get("title"),
        year: row.get::<Option<i64>, _>("year").map(|y| y as i32),
        poster_url: row.get("poster_url"),
        tmdb_id: row.get::<Option<i64>, _>("tmdb_id").map(|v| TmdbId(v as u64)),
        tvdb_id: row.get::<Option<i64>, _>("tvdb_id").map(|v| TvdbId(v as u64)),
        imdb_id: row.get("imdb_id"),
        arr_id: row.get::<Option<i64>, _>("arr_id").map(|v| ArrId(v as u64)),
        jellyseerr_id: row.get::<Option<i64>, _>("jellyseerr_id").map(|v| JellyseerrRequestId(v as u64)),
        requested_by: row.get("requested_by"),
        requested_by_email: row.get("requested_by_email"),
        is_anime: row.get("is_anime"),
        is_4k: row.get("is_4k"),
        source: row.get("source"),
        requested_seasons: serde_json::from_str(&seasons)?,
        stage: state_of(row.get("stage"))?,
        outcome,
        evidence_at: row.get::<Option<i64>, _>("evidence_at").map(from_ts),
        available_at: row.get::<Option<i64>, _>("available_at").map(from_ts),
        quality: row.get("quality"),
        media_path: row.get("media_path"),
        watch,
        items: Default::default(),
        downloads: Default::default(),
        created_at: from_ts(row.get("created_at")),
        updated_at: from_ts(row.get("updated_at")),
        archived_at: row.get::<Option<i64>, _>("archived_at").map(from_ts),
        state_since: from_ts(row.get("state_since")),
        stall: match row.get::<Option<String>, _>("stall_state") {
            Some(s) => Some(Stall {
                state: state_of(&s)?,
                reason: row.get::<Option<String>, _>("stall_reason").unwrap_or_default(),
                at: from_ts(row.get::<Option<i64>, _>("stall_at").unwrap_or(0)),
            }),
            None => None,
        },
        alert: row.get::<Option<String>, _>("alert_check").map(|check| Alert {
            check,
            message: row.get::<Option<String>, _>("alert_message").unwrap_or_default(),
            at: from_ts(row.get::<Option<i64>, _>("alert_at").unwrap_or(0)),
        }),
        trace_parent: row.get("trace_parent"),
    })
}

/// The id a new request gets (the correlator is the only writer, inside its transaction).
pub async fn next_id(conn: &mut SqliteConnection) -> Result<RequestId> {
    let row = sqlx::query("SELECT COALESCE(MAX(id), 0) + 1 FROM requests").fetch_one(conn).await?;
    Ok(RequestId(row.get(0)))
}

// ---------------------------------------------------------------- timeline ---

/// A request's timeline, oldest first: the grab of a download found to be an upgrade shown as
/// one, each remark filed under the state of its time.
pub async fn timeline(conn: &mut SqliteConnection, id: RequestId) -> Result<Vec<TimelineEntry>> {
    let rows = sqlx::query(
        "SELECT t.*, COALESCE(d.upgrade, 0) AS of_upgrade FROM timeline t
           LEFT JOIN downloads d ON d.request_id = t.request_id AND d.download_id = t.details ->> 'download_id'
         WHERE t.request_id = ? ORDER BY t.at, t.id",
    )
    .bind(id.0)
    .fetch_all(conn)
    .await?;
    let mut timeline = rows
        .iter()
        .map(|row| {
            let mut entry = TimelineEntry {
                state: state_of(row.get("state"))?,
                at: from_ts(row.get("at")),
                source: row.get("source"),
                message: row.get("message"),
                details: serde_json::from_str(row.get("details")).unwrap_or_default(),
                episode: row.get("episode"),
                late: row.get("late"),
                remark: row.get("remark"),
            };
            let of_upgrade: bool = row.get("of_upgrade");
            crate::lifecycle::present_upgrade(&mut entry, |_| of_upgrade);
            Ok(entry)
        })
        .collect::<Result<Vec<_>>>()?;
    shared::model::file_remarks(&mut timeline);
    Ok(timeline)
}

// ----------------------------------------------------------------- orphans ---

/// Keeps an event until a request with `key` appears. `slot` is the event id, or a name
/// shared by events of which only the latest matters (a torrent's progress): a newer event
/// in the same slot replaces the older one.
pub async fn add_orphan(
    conn: &mut SqliteConnection,
    slot: &str,
    key: &str,
    envelope: &str,
    at: OffsetDateTime,
    expires_at: OffsetDateTime,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO orphans (event_id, key, envelope, received_at, expires_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (event_id, key) DO UPDATE SET envelope = excluded.envelope, received_at = excluded.received_at,
           expires_at = excluded.expires_at WHERE excluded.received_at >= orphans.received_at",
    )
    .bind(slot)
    .bind(key)
    .bind(envelope)
    .bind(ts(at))
    .bind(ts(expires_at))
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes and returns the envelopes waiting on `key` (each event once, by event time).
pub async fn take_orphans(conn: &mut SqliteConnection, key: &str) -> Result<Vec<(String, String)>> {
    let rows = sqlx::query("SELECT event_id, envelope FROM orphans WHERE key = ? ORDER BY received_at")
        .bind(key)
        .fetch_all(&mut *conn)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let event_id: String = row.get(0);
        sqlx::query("DELETE FROM orphans WHERE event_id = ?").bind(&event_id).execute(&mut *conn).await?;
        out.push((event_id, row.get(1)));
    }
    Ok(out)
}

pub async fn orphan_count(conn: &mut SqliteConnection) -> Result<i64> {
    Ok(sqlx::query("SELECT COUNT(DISTINCT event_id) FROM orphans").fetch_one(conn).await?.get(0))
}

/// Drops orphans whose time is up; returns how many events were dropped.
pub async fn expire_orphans(conn: &mut SqliteConnection, now: OffsetDateTime) -> Result<u64> {
    let done = sqlx::query("DELETE FROM orphans WHERE expires_at < ?").bind(ts(now)).execute(conn).await?;
    Ok(done.rows_affected())
}

// ------------------------------------------------------------------ outbox ---

pub async fn push_outbox(
    conn: &mut SqliteConnection,
    subject: &str,
    msg_id: &str,
    payload: &[u8],
    traceparent: Option<&str>,
) -> Result<()> {
    sqlx::query("INSERT INTO outbox (subject, msg_id, payload, traceparent) VALUES (?, ?, ?, ?)")
        .bind(subject)
        .bind(msg_id)
        .bind(payload)
        .bind(traceparent)
        .execute(conn)
        .await?;
    Ok(())
}

pub struct OutboxMessage {
    pub id: i64,
    pub subject: String,
    pub msg_id: String,
    pub payload: Vec<u8>,
    pub traceparent: Option<String>,
}

/// Queued state messages after row `after`, oldest first.
pub async fn outbox(pool: &SqlitePool, after: i64, limit: i64) -> Result<Vec<OutboxMessage>> {
    let rows =
        sqlx::query("SELECT id, subject, msg_id, payload, traceparent FROM outbox WHERE id > ? ORDER BY id LIMIT ?")
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?;
    Ok(rows
        .iter()
        .map(|r| OutboxMessage {
            id: r.get(0),
            subject: r.get(1),
            msg_id: r.get(2),
            payload: r.get(3),
            traceparent: r.get(4),
        })
        .collect())
}

pub async fn delete_outbox(conn: &mut SqliteConnection, up_to: i64) -> Result<()> {
    sqlx::query("DELETE FROM outbox WHERE id <= ?").bind(up_to).execute(conn).await?;
    Ok(())
}

// ----------------------------------------------------------------- queries ---

pub async fn list(pool: &SqlitePool, q: &ListQuery) -> Result<ListReply> {
    fn filters(b: &mut QueryBuilder<Sqlite>, q: &ListQuery) {
        b.push(" WHERE 1 = 1");
        if !q.states.is_empty() {
            b.push(" AND state IN (");
            let mut sep = b.separated(", ");
            for s in &q.states {
                sep.push_bind(s.as_str());
            }
            b.push(")");
        }
        if let Some(user) = &q.user {
            b.push(" AND requested_by = ").push_bind(user).push(" COLLATE NOCASE");
        }
        if let Some(t) = q.media_type {
            b.push(" AND media_type = ").push_bind(t.as_str());
        }
        if let Some(text) = q.q.as_deref().filter(|t| !t.trim().is_empty()) {
            let escaped = text.trim().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            b.push(" AND title LIKE ").push_bind(format!("%{escaped}%")).push(" ESCAPE '\\'");
        }
    }
    let mut count = QueryBuilder::new("SELECT COUNT(*) FROM requests");
    filters(&mut count, q);
    let total: i64 = count.build().fetch_one(pool).await?.get(0);
    let mut select = QueryBuilder::new("SELECT summary FROM requests");
    filters(&mut select, q);
    select.push(" ORDER BY updated_at DESC, id DESC LIMIT ").push_bind(i64::from(q.limit.unwrap_or(50).min(1000)));
    select.push(" OFFSET ").push_bind(i64::from(q.offset.unwrap_or(0)));
    let rows = select.build().fetch_all(pool).await?;
    let requests = rows.iter().map(|r| Ok(serde_json::from_str(r.get(0))?)).collect::<Result<_>>()?;
    Ok(ListReply { requests, total: total as u64 })
}

pub async fn detail(pool: &SqlitePool, id: RequestId, public_jellyfin: Option<&str>) -> Result<Option<RequestDetail>> {
    let mut tx = read_snapshot(pool).await?;
    let Some(req) = load(&mut tx, id).await? else {
        return Ok(None);
    };
    let timeline = timeline(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Some(req.detail(timeline, public_jellyfin)))
}

/// A read transaction: in WAL mode every statement in it sees the database as of its first
/// read, so a request, its items, downloads and timeline read one after the other agree even
/// while the writer commits (a detail once showed a new timeline entry beside the request's
/// older state). Dropped, it rolls back.
pub async fn read_snapshot(pool: &SqlitePool) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
    Ok(pool.begin().await?)
}

/// Requests whose download or import is under way (what a download-client or root-folder
/// problem of Radarr/Sonarr can hold up).
pub async fn requests_in_flight(
    conn: &mut SqliteConnection,
    media_type: MediaType,
    is_4k: bool,
) -> Result<Vec<RequestId>> {
    let rows = sqlx::query(
        "SELECT id FROM requests WHERE media_type = ? AND is_4k = ?
           AND state IN ('indexed', 'downloading', 'downloaded', 'importing')",
    )
    .bind(media_type.as_str())
    .bind(is_4k)
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(|r| RequestId(r.get(0))).collect())
}

/// Requests of this media type (4K or not) that carry a health problem of this check.
pub async fn requests_with_alert(
    conn: &mut SqliteConnection,
    check: &str,
    media_type: MediaType,
    is_4k: bool,
) -> Result<Vec<RequestId>> {
    let rows = sqlx::query("SELECT id FROM requests WHERE alert_check = ? AND media_type = ? AND is_4k = ?")
        .bind(check)
        .bind(media_type.as_str())
        .bind(is_4k)
        .fetch_all(conn)
        .await?;
    Ok(rows.iter().map(|r| RequestId(r.get(0))).collect())
}

/// The requests the watchdog may have something to say about at `now`: those waiting for a
/// release (any age), those past import for at least `min_wait`, and those available for at
/// least `archive_after`. Available requests are most of the database and are loaded only when
/// their archive is due.
pub async fn watched(
    conn: &mut SqliteConnection,
    now: OffsetDateTime,
    min_wait: std::time::Duration,
    archive_after: std::time::Duration,
) -> Result<Vec<Request>> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM requests WHERE state IN ('requested', 'approved', 'searching')
           OR (state IN ('downloaded', 'importing', 'matching') AND state_since <= ?)
           OR (state = 'available' AND state_since <= ?)",
    )
    .bind(ts(now - min_wait))
    .bind(ts(now - archive_after))
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(r) = load(conn, RequestId(id)).await? {
            out.push(r);
        }
    }
    Ok(out)
}

/// The state of each known request with one of these Jellyseerr request ids.
pub async fn states_by_jellyseerr_id(conn: &mut SqliteConnection, ids: &[u64]) -> Result<HashMap<u64, State>> {
    let ids = format!("[{}]", ids.iter().map(u64::to_string).collect::<Vec<_>>().join(","));
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT jellyseerr_id, state FROM requests WHERE jellyseerr_id IN (SELECT value FROM json_each(?))",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().filter_map(|(id, state)| Some((id as u64, State::parse(&state)?))).collect())
}

/// How many requests are in each state.
pub async fn count_by_state(conn: &mut SqliteConnection) -> Result<Vec<(String, i64)>> {
    let rows = sqlx::query("SELECT state, COUNT(*) FROM requests GROUP BY state").fetch_all(conn).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Lower-case hashes of unfinished torrents of requests still in progress.
pub async fn tracked_hashes(pool: &SqlitePool) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT DISTINCT d.download_id FROM downloads d JOIN requests r ON r.id = d.request_id
         WHERE d.kind = 'torrent' AND d.finished = 0 AND d.dropped = 0 AND r.state NOT IN ('available', 'completed', 'failed', 'declined', 'cancelled')",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection as _;

    async fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(&dir.path().join("tracker.db")).await.expect("database");
        (dir, store)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn several_stores_creating_the_same_new_database_at_once_all_open_it() {
        for _ in 0..8 {
            let dir = tempfile::tempdir().expect("temporary directory");
            let path = dir.path().join("tracker.db");
            let opens = (0..3).map(|_| {
                let path = path.clone();
                tokio::spawn(async move { Store::open(&path).await.map(|_| ()) })
            });
            for open in futures_util::future::join_all(opens).await {
                open.expect("task").expect("every concurrent open succeeds");
            }
        }
    }

    #[tokio::test]
    async fn every_write_goes_through_one_connection_that_keeps_its_cache() {
        let (_dir, store) = open().await;
        // A temporary table lives in one connection: the next transactions find it only if
        // they run on the same one (a pool hands its connections round).
        let mut tx = store.begin().await.expect("begin");
        sqlx::query("CREATE TEMP TABLE mine (x)").execute(&mut *tx).await.expect("temporary table");
        tx.commit().await.expect("commit");
        for _ in 0..4 {
            // Readers in between, as the dashboard's queries are.
            sqlx::query("SELECT COUNT(*) FROM requests").fetch_one(store.pool()).await.expect("read");
            let mut tx = store.begin().await.expect("begin");
            sqlx::query("SELECT COUNT(*) FROM temp.mine").fetch_one(&mut *tx).await.expect("the same connection");
            tx.commit().await.expect("commit");
        }
        let mut conn = store.writer().acquire().await.expect("writer");
        sqlx::query("SELECT COUNT(*) FROM temp.mine").fetch_one(&mut *conn).await.expect("the same connection");
    }

    #[tokio::test]
    async fn a_read_snapshot_sees_one_state_while_the_writer_commits() {
        let (_dir, store) = open().await;
        let count = |n: sqlx::sqlite::SqliteRow| n.get::<i64, _>(0);
        let mut snapshot = read_snapshot(store.pool()).await.expect("snapshot");
        let first = sqlx::query("SELECT COUNT(*) FROM outbox").fetch_one(&mut *snapshot).await.expect("read");
        write_pages(&store, 1).await;
        let second = sqlx::query("SELECT COUNT(*) FROM outbox").fetch_one(&mut *snapshot).await.expect("read");
        assert_eq!(count(second), count(first), "the snapshot's second statement saw the commit");
        snapshot.commit().await.expect("end");
        let after = sqlx::query("SELECT COUNT(*) FROM outbox").fetch_one(store.pool()).await.expect("read");
        assert_eq!(count(after), 1, "a read after the snapshot sees the commit");
    }

    #[tokio::test]
    async fn the_reading_connections_refuse_writes() {
        let (_dir, store) = open().await;
        let refused = sqlx::query("DELETE FROM outbox").execute(store.pool()).await.expect_err("refused");
        assert!(refused.to_string().contains("readonly"), "{refused}");
        store.checkpoint(false).await.expect("checkpoints are allowed");
    }

    /// Writes about `pages` pages to the log in one transaction.
    async fn write_pages(store: &Store, pages: usize) {
        let mut tx = store.begin().await.expect("begin");
        for i in 0..pages {
            sqlx::query("INSERT INTO outbox (subject, msg_id, payload) VALUES ('s', ?, zeroblob(4000))")
                .bind(i.to_string())
                .execute(&mut *tx)
                .await
                .expect("insert");
        }
        tx.commit().await.expect("commit");
    }

    #[tokio::test]
    async fn a_transaction_that_reads_first_waits_for_another_writer_instead_of_failing() {
        let (dir, store) = open().await;
        // Another writer: another process, or a tool such as the sqlite3 shell.
        let file = SqliteConnectOptions::new().filename(dir.path().join("tracker.db"));
        let mut other = SqliteConnection::connect_with(&file).await.expect("connection");
        sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.expect("the other writer's lock");
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            sqlx::query("INSERT INTO outbox (subject, msg_id, payload) VALUES ('s', 'other', x'00')")
                .execute(&mut other)
                .await
                .expect("the other writer's insert");
            sqlx::query("COMMIT").execute(&mut other).await.expect("the other writer's commit");
        });
        // As the correlator's batches do: read first, then write.
        let mut tx = store.begin().await.expect("begin waits for the lock");
        let before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox").fetch_one(&mut *tx).await.expect("read");
        sqlx::query("INSERT INTO outbox (subject, msg_id, payload) VALUES ('s', 'mine', x'00')")
            .execute(&mut *tx)
            .await
            .expect("the write after the read is not refused as 'database is locked'");
        tx.commit().await.expect("commit");
        release.await.expect("other writer");
        assert_eq!(before, 1, "the transaction began after the other one committed");
    }

    #[tokio::test]
    async fn the_log_stays_bounded_when_checkpoints_never_catch_up_with_the_writer() {
        let (dir, store) = open().await;
        let wal = dir.path().join("tracker.db-wal");
        let round_pages = 400;
        let rounds = 3 * LONG_LOG_FRAMES as usize / round_pages;
        let mut largest = 0;
        for _ in 0..rounds {
            // A reader holds a snapshot while the writer commits, so the checkpoint cannot copy
            // the newest frames, as when the writer commits during a checkpoint under load.
            let mut reader = store.pool().begin().await.expect("reader");
            sqlx::query("SELECT COUNT(*) FROM requests").fetch_one(&mut *reader).await.expect("read");
            write_pages(&store, round_pages).await;
            store.checkpoint(false).await.expect("checkpoint");
            reader.rollback().await.expect("reader done");
            store.restart_long_log().await.expect("restart");
            largest = largest.max(std::fs::metadata(&wal).expect("log").len());
        }
        let written = (rounds * round_pages * 4096) as u64;
        let bound = ((LONG_LOG_FRAMES as usize + 2 * round_pages) * (4096 + 24)) as u64;
        assert!(written > 2 * bound, "the test writes more than the bound: {written} bytes");
        assert!(largest <= bound, "the log grew to {largest} bytes (bound {bound}) after {written} bytes written");
    }
}
