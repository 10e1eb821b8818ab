//! Which events the correlator may have processed and which keys may name a request, known
//! without a query.
//!
//! Before an event is applied the correlator looks its id up in `processed_events` (so that
//! one delivered again, after a lost ack or published twice by the ingress, is not applied
//! twice) and its keys (TMDB, TVDB, Jellyseerr ids, hashes…) in `request_keys`, unless its
//! cache knows them. Nearly every one of these look-ups finds nothing, and each is a round
//! trip to the SQLite connection's thread: at idle 120–130 µs of a webhook's 1.2 ms from its
//! POST to its SSE event (docs/performance.md, "Latency"). Two Bloom filters, of the processed
//! ids and of the keys, answer "certainly not" for nearly all of them; only what a filter
//! may hold (what is there, and about 1 % of the rest) is looked up.
//!
//! Sound because the correlator is the only writer of the database (docs/ARCHITECTURE.md):
//! every id it writes to `processed_events` and every key it writes to `request_keys` passes
//! through [`Seen::processed`] or [`Seen::key_added`] before its batch commits. What a batch
//! that then rolls back added stays in the filters, and what is deleted later (archived
//! requests) too, which costs only a look-up. Until what the database holds is loaded
//! ([`Seen::load`]), everything is looked up.

use std::sync::Mutex;

use fastbloom::BloomFilter;
use sqlx::{SqliteConnection, SqlitePool};

/// The share of what is not there that a filter may take for something that is.
const FALSE_POSITIVES: f64 = 0.01;
/// Entries the first filter is sized for, at least; each later one holds twice the one before.
const FIRST_CAPACITY: usize = 1 << 16;

/// The processed events and the keys that name requests.
#[derive(Debug, Default)]
pub struct Seen {
    events: Known,
    keys: Known,
}

impl Seen {
    /// False only when event `id` has certainly not been processed.
    pub fn may_have_processed(&self, id: &str) -> bool {
        self.events.may_contain(id)
    }

    /// Event `id` is being processed (call it before its batch commits).
    pub fn processed(&self, id: &str) {
        self.events.insert(id);
    }

    /// False only when certainly no request has `key`.
    pub fn may_name_a_request(&self, key: &str) -> bool {
        self.keys.may_contain(key)
    }

    /// A request got `key` (call it before its batch commits).
    pub fn key_added(&self, key: &str) {
        self.keys.insert(key);
    }

    /// Whether what the database holds is loaded.
    pub fn is_ready(&self) -> bool {
        self.events.is_ready() && self.keys.is_ready()
    }

    /// Starts loading: from now on what is processed and added is kept, to be added to what
    /// [`Self::load`] reads. Call it before any event of the database is processed, so that
    /// nothing commits behind the load's back; [`Self::load`] may then run at any time.
    pub fn start_loading(&self) {
        self.events.start_loading();
        self.keys.start_loading();
    }

    /// Reads the processed ids and the keys from the database behind `pool` (after
    /// [`Self::start_loading`]); until then everything is looked up. On failure what was not
    /// loaded stays unknown, and is always looked up.
    pub async fn load(&self, pool: &SqlitePool) -> sqlx::Result<()> {
        let mut conn = pool.acquire().await?;
        let events = self.events.load(&mut conn, EVENTS).await;
        let keys = self.keys.load(&mut conn, KEYS).await;
        // Reading every page of both tables filled the connection's page cache (2 MiB) with
        // pages its queries seldom need.
        sqlx::query("PRAGMA shrink_memory").execute(&mut *conn).await?;
        let (events, keys) = (events?, keys?);
        tracing::info!(
            events = events.count,
            keys = keys.count,
            kib = (events.bytes + keys.bytes) / 1024,
            "processed events and request keys loaded: only those these may include are looked up"
        );
        Ok(())
    }
}

/// How many there are, and a chunk of them in order: a JSON array of at most `?3` of them
/// from `?2` on (after it unless `?1`: the first chunk starts at `''`, which is a value too),
/// its last and its length.
type Queries = (&'static str, &'static str);
const EVENTS: Queries = (
    "SELECT count(*) FROM processed_events",
    "SELECT json_group_array(event_id), max(event_id), count(*) FROM (SELECT event_id FROM processed_events \
     WHERE event_id >= ?2 AND (?1 OR event_id > ?2) ORDER BY event_id LIMIT ?3)",
);
const KEYS: Queries = (
    "SELECT count(*) FROM request_keys",
    "SELECT json_group_array(key), max(key), count(*) FROM (SELECT key FROM request_keys \
     WHERE key >= ?2 AND (?1 OR key > ?2) ORDER BY key LIMIT ?3)",
);

/// Values read per query. Each chunk comes as one string (about 0.7 MB of event ids), read
/// without a copy of each value. Read row by row through sqlx, the 115,000 event ids and
/// 147,500 keys of 10,000 requests took 0.37 s of CPU at start; in chunks 0.09 s.
const CHUNK: i64 = 16_384;

/// What one filter holds once loaded.
struct Loaded {
    count: usize,
    bytes: usize,
}

/// A set the database holds, as far as a filter of it can tell.
#[derive(Debug, Default)]
struct Known {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
enum State {
    /// Not loaded: anything may be there.
    #[default]
    Unknown,
    /// Being loaded from the database; what was added meanwhile, added once it is.
    Loading(Vec<String>),
    Ready(Filters),
}

impl Known {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn may_contain(&self, value: &str) -> bool {
        match &*self.lock() {
            State::Ready(filters) => filters.may_contain(value),
            State::Unknown | State::Loading(_) => true,
        }
    }

    fn insert(&self, value: &str) {
        match &mut *self.lock() {
            State::Ready(filters) => filters.insert(value),
            State::Loading(added) => added.push(value.to_owned()),
            State::Unknown => {}
        }
    }

    fn is_ready(&self) -> bool {
        matches!(*self.lock(), State::Ready(_))
    }

    fn start_loading(&self) {
        *self.lock() = State::Loading(Vec::new());
    }

    /// Reads what `queries` find, and adds what was added since [`Self::start_loading`].
    async fn load(&self, conn: &mut SqliteConnection, queries: Queries) -> sqlx::Result<Loaded> {
        if !matches!(*self.lock(), State::Loading(_)) {
            self.start_loading();
        }
        let loaded = read(conn, queries).await;
        let mut state = self.lock();
        let added = match std::mem::take(&mut *state) {
            State::Loading(added) => added,
            // Another load, run at the same time, ended first: its filter is as good.
            other => {
                *state = other;
                return loaded.map(|f| Loaded { count: f.count, bytes: f.bytes() });
            }
        };
        let mut filters = loaded?;
        for value in &added {
            filters.insert(value);
        }
        let loaded = Loaded { count: filters.count, bytes: filters.bytes() };
        *state = State::Ready(filters);
        Ok(loaded)
    }
}

/// Filters of growing size: a full one is kept and a larger one takes the new ids, so that
/// the rate of false positives stays near [`FALSE_POSITIVES`] however many ids come.
#[derive(Debug)]
struct Filters {
    full: Vec<BloomFilter>,
    current: BloomFilter,
    capacity: usize,
    /// Ids inserted into `current`.
    held: usize,
    /// Ids inserted in all.
    count: usize,
}

impl Filters {
    fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(FIRST_CAPACITY);
        Self { full: Vec::new(), current: filter(capacity), capacity, held: 0, count: 0 }
    }

    fn insert(&mut self, value: &str) {
        if self.held >= self.capacity {
            self.capacity *= 2;
            let full = std::mem::replace(&mut self.current, filter(self.capacity));
            self.full.push(full);
            self.held = 0;
        }
        self.current.insert(value);
        self.held += 1;
        self.count += 1;
    }

    fn may_contain(&self, value: &str) -> bool {
        self.current.contains(value) || self.full.iter().any(|f| f.contains(value))
    }

    fn bytes(&self) -> usize {
        std::iter::once(&self.current).chain(&self.full).map(|f| f.num_bits() / 8).sum()
    }
}

fn filter(capacity: usize) -> BloomFilter {
    BloomFilter::with_false_pos(FALSE_POSITIVES).expected_items(capacity)
}

async fn read(conn: &mut SqliteConnection, (count, chunk): Queries) -> sqlx::Result<Filters> {
    let count: i64 = sqlx::query_scalar(count).fetch_one(&mut *conn).await?;
    // Twice what is there: room to grow before a second filter is needed.
    let mut filters = Filters::with_capacity(usize::try_from(count).unwrap_or(0).saturating_mul(2));
    let (mut first, mut from) = (true, String::new());
    loop {
        let (values, last, n): (String, Option<String>, i64) =
            sqlx::query_as(chunk).bind(first).bind(&from).bind(CHUNK).fetch_one(&mut *conn).await?;
        let mut json = serde_json::Deserializer::from_str(&values);
        serde::de::DeserializeSeed::deserialize(InsertEach(&mut filters), &mut json)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        match last {
            Some(last) if n == CHUNK => (first, from) = (false, last),
            _ => return Ok(filters),
        }
    }
}

/// Inserts each string of a JSON array into the filters, without keeping it.
struct InsertEach<'f>(&'f mut Filters);

impl<'de> serde::de::DeserializeSeed<'de> for InsertEach<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for InsertEach<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of strings")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(InsertOne(self.0))?.is_some() {}
        Ok(())
    }
}

/// Inserts one string into the filters.
struct InsertOne<'f>(&'f mut Filters);

impl<'de> serde::de::DeserializeSeed<'de> for InsertOne<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for InsertOne<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<(), E> {
        self.0.insert(value);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}-{i:08}")).collect()
    }

    #[test]
    fn before_loading_everything_is_looked_up() {
        let seen = Seen::default();
        seen.processed("a");
        seen.key_added("movie:tmdb:1");
        assert!(seen.may_have_processed("a"));
        assert!(seen.may_have_processed("never-seen"));
        assert!(seen.may_name_a_request("movie:tmdb:2"));
        assert!(!seen.is_ready());
    }

    /// What the database holds (more than one chunk of it, with characters JSON escapes,
    /// and a key of two requests) and what was added while it was read are all kept.
    #[tokio::test]
    async fn a_load_keeps_what_the_database_holds_and_what_was_added_meanwhile() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = crate::store::Store::open(&dir.path().join("tracker.db")).await.expect("database");
        let mut stored = values("stored", CHUNK as usize * 2 + 5);
        stored.extend(["with \"quotes\", \\ and\na newline".to_owned(), "ünïcödé 🎞".to_owned(), String::new()]);
        let mut tx = store.begin().await.expect("transaction");
        for id in [1, 2] {
            sqlx::query(
                "INSERT INTO requests (id, media_type, title, source, stage, created_at, updated_at, state_since, \
                 state, summary) VALUES (?, 'movie', 'Dune', 'jellyseerr', 'requested', 0, 0, 0, 'requested', '{}')",
            )
            .bind(id)
            .execute(&mut *tx)
            .await
            .expect("request");
        }
        let all = serde_json::to_string(&stored).expect("JSON");
        sqlx::query(
            "INSERT INTO processed_events (event_id, subject, processed_at, outcome) \
             SELECT value, 's', 0, 'applied' FROM json_each(?)",
        )
        .bind(&all)
        .execute(&mut *tx)
        .await
        .expect("processed events");
        sqlx::query("INSERT INTO request_keys (key, request_id) SELECT value, 1 FROM json_each(?)")
            .bind(&all)
            .execute(&mut *tx)
            .await
            .expect("keys");
        // The last key of the first chunk names a second request too.
        sqlx::query("INSERT INTO request_keys (key, request_id) VALUES (?, 2)")
            .bind(&stored[CHUNK as usize - 1])
            .execute(&mut *tx)
            .await
            .expect("key");
        tx.commit().await.expect("commit");
        let seen = Seen::default();
        seen.start_loading();
        seen.processed("processed-while-loading");
        seen.key_added("added-while-loading");
        assert!(seen.may_have_processed("anything"), "not loaded yet");
        seen.load(store.pool()).await.expect("loaded");
        assert!(seen.is_ready());
        assert!(stored.iter().all(|v| seen.may_have_processed(v) && seen.may_name_a_request(v)));
        assert!(seen.may_have_processed("processed-while-loading"));
        assert!(seen.may_name_a_request("added-while-loading"));
        seen.processed("processed-after");
        seen.key_added("added-after");
        assert!(seen.may_have_processed("processed-after"));
        assert!(seen.may_name_a_request("added-after"));
        let new = values("new", 1000);
        let taken = new.iter().filter(|v| seen.may_have_processed(v)).count();
        assert!(taken < 50, "{taken} of 1000 new ids taken for processed");
        let taken = new.iter().filter(|v| seen.may_name_a_request(v)).count();
        assert!(taken < 50, "{taken} of 1000 new keys taken for known");
        let count = match &*seen.events.lock() {
            State::Ready(filters) => filters.count,
            _ => panic!("loaded"),
        };
        assert_eq!(count, stored.len() + 2, "each processed event read once");
        store.close().await;
    }

    /// A load that fails leaves everything to be looked up.
    #[tokio::test]
    async fn a_failed_load_leaves_everything_to_be_looked_up() {
        let pool = SqlitePool::connect("sqlite::memory:").await.expect("database without the tables");
        let seen = Seen::default();
        seen.start_loading();
        seen.processed("a");
        assert!(seen.load(&pool).await.is_err());
        assert!(!seen.is_ready());
        assert!(seen.may_have_processed("b"));
        assert!(seen.may_name_a_request("movie:tmdb:1"));
        seen.processed("c");
        assert!(seen.may_have_processed("c"));
    }

    #[test]
    fn filters_that_grow_lose_nothing_and_keep_false_positives_rare() {
        let mut filters = Filters::with_capacity(0);
        let inserted = values("in", FIRST_CAPACITY * 3 + 17);
        for value in &inserted {
            filters.insert(value);
        }
        assert_eq!(filters.full.len(), 2, "a second and a third filter took what the first had no room for");
        assert!(inserted.iter().all(|v| filters.may_contain(v)), "nothing inserted is ever missed");
        let others = values("out", 20_000);
        let false_positives = others.iter().filter(|v| filters.may_contain(v)).count();
        // Three filters, each at most about 1 %.
        assert!(false_positives < 20_000 * 4 / 100, "{false_positives} of 20000 others taken for inserted");
    }
}
