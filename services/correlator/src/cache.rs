//! The correlator's memory of what it wrote last. The correlator is the only writer of the
//! database, so what it saved is what the database holds: a request, its timeline, the
//! requests a key names, the next request id and the keys orphans wait on can be answered
//! without a query. Bounded (least recently used go first) and emptied whenever a transaction
//! does not commit, so it never holds what was rolled back.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use hashlink::LruCache;
use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde_json::value::RawValue;
use shared::ids::RequestId;
use shared::model::{State, TimelineEntry};
use time::OffsetDateTime;

use crate::lifecycle::{self, Request};
use crate::seen::Seen;

/// Requests kept: the ones in flight, which are the ones events arrive for.
pub const REQUESTS: usize = 256;
/// Keys kept, with the requests they name (or none).
pub const KEYS: usize = 4096;

#[derive(Debug)]
pub struct Cache {
    inner: Mutex<Inner>,
    /// The events that may have been processed and the keys that may name a request. Not
    /// emptied with the rest: it only ever holds more than the database, which costs a
    /// look-up, never a wrong answer.
    pub seen: Seen,
}

#[derive(Debug)]
struct Inner {
    requests: LruCache<RequestId, Entry>,
    keys: LruCache<String, Vec<RequestId>>,
    next_id: Option<i64>,
    /// A superset of the keys orphans wait on (`None`: not read yet).
    orphan_keys: Option<HashSet<String>>,
}

#[derive(Debug)]
struct Entry {
    /// Shared with the batch that wrote it: saving a request does not copy it.
    req: Arc<Request>,
    /// Loaded the first time it is needed.
    timeline: Option<Timeline>,
}

/// A request's timeline as its state messages carry it: each entry serialized once, when it
/// is added or read from the database, in the database's order. Every state message carries
/// the whole timeline; serializing it entry by entry each time was the largest part of
/// building one (callgrind, docs/performance.md), and grew with the timeline. A remark is
/// serialized again when an entry added before its time files it under another state.
#[derive(Debug, Default)]
pub struct Timeline {
    entries: Vec<Slot>,
    remarks: usize,
}

#[derive(Debug)]
struct Slot {
    at: OffsetDateTime,
    state: State,
    remark: bool,
    /// The download a grab (an entry under `indexed`) is about.
    grab: Option<Box<str>>,
    json: Box<RawValue>,
}

impl Timeline {
    /// `entries` in the database's order, as `req` shows them.
    pub fn new(entries: &[TimelineEntry], req: &Request) -> serde_json::Result<Self> {
        let mut timeline = Self::default();
        timeline.insert_in_order(entries, req)?;
        Ok(timeline)
    }

    /// Each entry after every entry at the same time or earlier, as `ORDER BY at, id` reads
    /// them; then, as `req` (its downloads) shows them, the grabs of upgrades as such
    /// ([`lifecycle::present_upgrade`]) and every remark filed under the state of its time.
    pub fn insert_in_order(&mut self, added: &[TimelineEntry], req: &Request) -> serde_json::Result<()> {
        for e in added {
            let grab = (e.state == State::Indexed)
                .then(|| e.details.get("download_id").and_then(|d| d.as_str()).map(Box::from))
                .flatten();
            let json = serde_json::value::to_raw_value(e)?;
            let slot = Slot { at: e.at, state: e.state, remark: e.remark, grab, json };
            let at = self.entries.partition_point(|s| s.at <= e.at);
            self.entries.insert(at, slot);
            self.remarks += usize::from(e.remark);
        }
        if req.downloads.values().any(|d| d.upgrade) {
            self.present_upgrades(req)?;
        }
        if self.remarks > 0 {
            self.file_remarks()?;
        }
        Ok(())
    }

    fn present_upgrades(&mut self, req: &Request) -> serde_json::Result<()> {
        let is_upgrade = |id: &str| req.downloads.get(id).is_some_and(|d| d.upgrade);
        for slot in &mut self.entries {
            if slot.state == State::Indexed && slot.grab.as_deref().is_some_and(is_upgrade) {
                let mut entry: TimelineEntry = serde_json::from_str(slot.json.get())?;
                lifecycle::present_upgrade(&mut entry, is_upgrade);
                slot.json = serde_json::value::to_raw_value(&entry)?;
                slot.state = entry.state;
            }
        }
        Ok(())
    }

    fn file_remarks(&mut self) -> serde_json::Result<()> {
        for i in 0..self.entries.len() {
            if !self.entries[i].remark {
                continue;
            }
            let state = self.remark_state(self.entries[i].at);
            let slot = &mut self.entries[i];
            if slot.state != state {
                let mut entry: TimelineEntry = serde_json::from_str(slot.json.get())?;
                entry.state = state;
                slot.json = serde_json::value::to_raw_value(&entry)?;
                slot.state = state;
            }
        }
        Ok(())
    }

    /// The state a remark made at `at` is filed under in this timeline.
    fn remark_state(&self, at: OffsetDateTime) -> State {
        shared::model::remark_state(&self.entries, at, |s| (s.at, s.state, s.remark))
    }

    /// `added` (entries of this timeline) as it shows them: a grab of an upgrade of `req` as
    /// one, remarks under the state of their time. Borrowed when that changes nothing.
    pub fn filed<'a>(&self, added: &'a [TimelineEntry], req: &Request) -> Cow<'a, [TimelineEntry]> {
        let is_upgrade = |id: &str| req.downloads.get(id).is_some_and(|d| d.upgrade);
        let shown = |e: &TimelineEntry| {
            let mut e = e.clone();
            lifecycle::present_upgrade(&mut e, is_upgrade);
            if e.remark {
                e.state = self.remark_state(e.at);
            }
            e
        };
        match added.iter().any(|e| e.remark || shown(e) != *e) {
            true => Cow::Owned(added.iter().map(shown).collect()),
            false => Cow::Borrowed(added),
        }
    }

    /// The entries, read back from their JSON (for tests that compare them with the database).
    pub fn entries(&self) -> serde_json::Result<Vec<TimelineEntry>> {
        self.entries.iter().map(|s| serde_json::from_str(s.json.get())).collect()
    }
}

/// As the `Vec<TimelineEntry>` it holds: a JSON array of the entries.
impl Serialize for Timeline {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.entries.len()))?;
        for slot in &self.entries {
            seq.serialize_element(&slot.json)?;
        }
        seq.end()
    }
}

impl Default for Cache {
    fn default() -> Self {
        Self::new(REQUESTS, KEYS)
    }
}

impl Cache {
    pub fn new(requests: usize, keys: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                requests: LruCache::new(requests),
                keys: LruCache::new(keys),
                next_id: None,
                orphan_keys: None,
            }),
            seen: Seen::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn request(&self, id: RequestId) -> Option<Arc<Request>> {
        self.lock().requests.get(&id).map(|e| e.req.clone())
    }

    pub fn loaded(&self, req: &Arc<Request>) {
        self.lock().requests.insert(req.id, Entry { req: req.clone(), timeline: None });
    }

    /// Takes the request's timeline out of the cache (a state message is built from it
    /// without copying it); [`Self::timeline_loaded`] puts it back.
    pub fn take_timeline(&self, id: RequestId) -> Option<Timeline> {
        self.lock().requests.get_mut(&id).and_then(|e| e.timeline.take())
    }

    pub fn timeline_loaded(&self, id: RequestId, timeline: Timeline) {
        if let Some(entry) = self.lock().requests.get_mut(&id) {
            entry.timeline = Some(timeline);
        }
    }

    /// Records what was just written for `req` (new: it did not exist before).
    pub fn saved(&self, req: &Arc<Request>, added: &[TimelineEntry], new: bool) {
        let mut inner = self.lock();
        match inner.requests.get_mut(&req.id) {
            Some(entry) => {
                entry.req = req.clone();
                // An entry that does not serialize (it cannot: JSON values and text) leaves
                // the timeline to be read from the database, where the error is reported.
                if let Some(timeline) = &mut entry.timeline
                    && timeline.insert_in_order(added, req).is_err()
                {
                    entry.timeline = None;
                }
            }
            None => {
                // A new request's timeline is what was just added; an older one's is unknown.
                let timeline = new.then(|| Timeline::new(added, req).ok()).flatten();
                inner.requests.insert(req.id, Entry { req: req.clone(), timeline });
            }
        }
    }

    pub fn key(&self, key: &str) -> Option<Vec<RequestId>> {
        self.lock().keys.get(key).cloned()
    }

    /// Whether the requests `key` names are known (without touching its recency).
    pub fn has_key(&self, key: &str) -> bool {
        self.lock().keys.contains_key(key)
    }

    pub fn key_loaded(&self, key: &str, ids: &[RequestId]) {
        self.lock().keys.insert(key.to_owned(), ids.to_vec());
    }

    /// `id` gained `key`. A key naming nobody now names `id`; one naming others is forgotten
    /// (its order depends on the requests' creation times: the database knows it).
    pub fn key_added(&self, key: &str, id: RequestId) {
        let mut inner = self.lock();
        match inner.keys.get_mut(key) {
            Some(ids) if ids.is_empty() => ids.push(id),
            Some(ids) if ids.contains(&id) => {}
            Some(_) => {
                inner.keys.remove(key);
            }
            None => {}
        }
    }

    /// The next request id, if known; taking it moves the counter on.
    pub fn take_next_id(&self) -> Option<RequestId> {
        let mut inner = self.lock();
        let id = inner.next_id?;
        inner.next_id = Some(id + 1);
        Some(RequestId(id))
    }

    pub fn set_next_id(&self, next: i64) {
        self.lock().next_id = Some(next);
    }

    /// `Some(false)` when no orphan waits on `key`; `None` when that is not known yet.
    pub fn may_have_orphans(&self, key: &str) -> Option<bool> {
        self.lock().orphan_keys.as_ref().map(|keys| keys.contains(key))
    }

    pub fn orphan_keys_loaded(&self, keys: HashSet<String>) {
        self.lock().orphan_keys = Some(keys);
    }

    pub fn orphan_added(&self, key: &str) {
        if let Some(keys) = &mut self.lock().orphan_keys {
            keys.insert(key.to_owned());
        }
    }

    pub fn orphans_taken(&self, key: &str) {
        if let Some(keys) = &mut self.lock().orphan_keys {
            keys.remove(key);
        }
    }

    /// Forgets everything: a transaction was rolled back, or the database changed under us.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.requests.clear();
        inner.keys.clear();
        inner.next_id = None;
        inner.orphan_keys = None;
    }

    /// The requests held, with their timeline when it was loaded: for tests that compare them
    /// with the database.
    pub fn snapshot(&self) -> Vec<(Request, Option<Vec<TimelineEntry>>)> {
        let timeline = |e: &Entry| e.timeline.as_ref().map(|t| t.entries().expect("cached entries read back"));
        self.lock().requests.iter().map(|(_, e)| (Request::clone(&e.req), timeline(e))).collect()
    }

    /// The keys held and the requests they name, for the same tests.
    pub fn key_snapshot(&self) -> Vec<(String, Vec<RequestId>)> {
        self.lock().keys.iter().map(|(k, ids)| (k.clone(), ids.clone())).collect()
    }
}
