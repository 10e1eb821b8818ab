//! [`apply`]: one fact into one request. Pure: no I/O, no clock (the event time is passed in).

mod arr;
mod jellyfin;
mod jellyseerr;
mod shoko;
mod torrent;
mod tracker;

use serde_json::Value;
use shared::events::arr::EpisodeRef;
use shared::events::qbittorrent::TorrentEvent;
use shared::events::{Fact, MediaType};
use shared::model::{State, TimelineEntry};
use shared::paths::PathMap;
use time::OffsetDateTime;

use super::{FILM, Item, ItemKey, Outcome, Request, available_before};

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
    let mut step = Step { req, at, source: fact.source_name(), before, before_items, ctx, out: Applied::default() };
    match fact {
        Fact::Jellyseerr(e) => step.jellyseerr(e),
        Fact::Radarr(e) | Fact::Sonarr(e) => step.arr(e),
        Fact::Qbittorrent(TorrentEvent::Finished(f)) => step.finished(f),
        Fact::Qbittorrent(TorrentEvent::Progress(p)) => step.progress(p),
        Fact::Shoko(e) => step.shoko(e),
        Fact::Jellyfin(e) => step.jellyfin(e),
        Fact::Tracker(e) => step.tracker(e),
        Fact::Rejected(_) => step.ignore("rejected input is kept, not applied"),
    }
    step.floor_available();
    step.settle_upgrades();
    step.floor_downloaded();
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

    fn push(
        &mut self,
        state: State,
        message: String,
        details: Value,
        episode: Option<String>,
        late: bool,
    ) -> &mut TimelineEntry {
        let details = without_nulls(details);
        let at = self.at;
        let source = self.source.to_owned();
        let entry = TimelineEntry { state, at, source, message, details, episode, late, remark: false };
        self.out.timeline.push(entry);
        self.out.timeline.last_mut().expect("just pushed")
    }

    /// A note that does not move the request (health, renames, issues). It is filed under
    /// the state the request was in at its time, which the timeline tells when it is read
    /// (`shared::model::remark_state`); the state written here is the one it is in now.
    fn remark(&mut self, message: String, details: Value) {
        let state = self.req.state();
        self.push(state, message, details, None, false).remark = true;
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

    /// A grab is an upgrade when every item it was grabbed for was available before it, also
    /// when that availability is applied after the grab: then it stops counting for progress,
    /// and its items go back to the download they had.
    fn settle_upgrades(&mut self) {
        let items = &self.req.items;
        let upgrades: Vec<String> = self
            .req
            .downloads
            .iter()
            .filter(|(_, d)| !d.upgrade && available_before(items, &d.items, d.grabbed_at))
            .map(|(id, _)| id.clone())
            .collect();
        for id in upgrades {
            let d = self.req.downloads.get_mut(&id).expect("listed above");
            d.upgrade = true;
            let keys: Vec<ItemKey> = d.items.iter().copied().collect();
            for key in keys {
                let downloads = &self.req.downloads;
                let Some(item) = self.req.items.get_mut(&key).filter(|i| i.download_id.as_deref() == Some(id.as_str()))
                else {
                    continue;
                };
                item.download_id = downloads
                    .iter()
                    .filter(|(_, d)| d.items.contains(&key) && !d.upgrade && !d.dropped)
                    .max_by_key(|(other, d)| (d.grabbed_at, *other))
                    .map(|(other, _)| other.clone());
            }
        }
    }

    /// An item whose download has finished is downloaded, also when the finish was applied
    /// before the grab that gave it that download. Sonarr imports from finished downloads
    /// only, so its import of one episode of a season pack finishes the pack: the other
    /// episodes wait for their import, not for the download.
    fn floor_downloaded(&mut self) {
        let at = self.at;
        let downloads = &self.req.downloads;
        for item in self.req.items.values_mut() {
            let download = item.download_id.as_ref().and_then(|d| downloads.get(d));
            if download.is_some_and(|d| d.finished && !d.upgrade && !d.dropped) && item.stage < State::Downloaded {
                item.stage = State::Downloaded;
                item.updated_at = item.updated_at.max(at);
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
}

/// Drops `null` members, so details show only what is known.
fn without_nulls(mut v: Value) -> Value {
    if let Value::Object(map) = &mut v {
        map.retain(|_, v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()));
    }
    v
}
