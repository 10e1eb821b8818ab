//! The correlator's memory of the requests it touched last. The correlator is the only writer
//! of the database, so what it saved is what the database holds: a request loaded from here
//! needs no query, and neither does its timeline. Bounded (least recently used go first), and
//! emptied whenever a transaction does not commit, so it never holds what was rolled back.

use std::sync::Mutex;

use hashlink::LruCache;
use shared::ids::RequestId;
use shared::model::TimelineEntry;
use sqlx::SqliteConnection;

use crate::lifecycle::Request;
use crate::store::{self, Result};

/// Requests kept: the ones in flight, which are the ones events arrive for.
pub const CAPACITY: usize = 512;

#[derive(Debug)]
pub struct Cache {
    entries: Mutex<LruCache<RequestId, Entry>>,
}

#[derive(Debug)]
struct Entry {
    req: Request,
    /// Loaded the first time it is needed.
    timeline: Option<Vec<TimelineEntry>>,
}

impl Default for Cache {
    fn default() -> Self {
        Self::new(CAPACITY)
    }
}

impl Cache {
    pub fn new(capacity: usize) -> Self {
        Self { entries: Mutex::new(LruCache::new(capacity)) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<RequestId, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The request as last saved.
    pub async fn load(&self, conn: &mut SqliteConnection, id: RequestId) -> Result<Option<Request>> {
        if let Some(entry) = self.lock().get(&id) {
            return Ok(Some(entry.req.clone()));
        }
        let loaded = store::load(conn, id).await?;
        if let Some(req) = &loaded {
            self.lock().insert(id, Entry { req: req.clone(), timeline: None });
        }
        Ok(loaded)
    }

    /// The request's timeline, in the database's order (time, then insertion).
    pub async fn timeline(&self, conn: &mut SqliteConnection, id: RequestId) -> Result<Vec<TimelineEntry>> {
        if let Some(timeline) = self.lock().get(&id).and_then(|e| e.timeline.clone()) {
            return Ok(timeline);
        }
        let timeline = store::timeline(conn, id).await?;
        if let Some(entry) = self.lock().get_mut(&id) {
            entry.timeline = Some(timeline.clone());
        }
        Ok(timeline)
    }

    /// Records what was just written (in the open transaction) for `req`.
    pub fn saved(&self, req: &Request, added: &[TimelineEntry]) {
        let mut entries = self.lock();
        match entries.get_mut(&req.id) {
            Some(entry) => {
                entry.req = req.clone();
                if let Some(timeline) = &mut entry.timeline {
                    for e in added {
                        // After every entry at the same time or earlier, as `ORDER BY at, id`.
                        let at = timeline.partition_point(|t| t.at <= e.at);
                        timeline.insert(at, e.clone());
                    }
                }
            }
            None => {
                // A new request: its timeline is what was just added.
                let mut timeline = added.to_vec();
                timeline.sort_by_key(|e| e.at);
                entries.insert(req.id, Entry { req: req.clone(), timeline: Some(timeline) });
            }
        }
    }

    /// Forgets everything: a transaction was rolled back, or the database changed under us.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The requests held, with their timeline when it was loaded: for tests that compare them
    /// with the database.
    pub fn snapshot(&self) -> Vec<(Request, Option<Vec<TimelineEntry>>)> {
        self.lock().iter().map(|(_, e)| (e.req.clone(), e.timeline.clone())).collect()
    }
}
