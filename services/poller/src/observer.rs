//! Deciding what to publish after a poll: a progress fact when something a requester would
//! see has changed (not every byte count), a finished fact once per completion, and the stall
//! verdict for torrents that have waited for peers or metadata too long.
//!
//! Pure and clock-driven: the caller passes `now`, so tests step time instead of sleeping.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;
use shared::envelope::content_id;
use shared::events::qbittorrent::{Progress, TorrentEvent};
use shared::ids::InfoHash;
use tokio::time::Instant;

use crate::maindata::Maindata;
use crate::torrent::{Phase, Torrent};

/// A fact ready to publish, with its envelope id and the merged torrent JSON as `raw`.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: String,
    pub event: TorrentEvent,
    pub raw: Value,
    shown: Option<Shown>,
}

/// What a requester sees of a torrent: "Downloading 67% • 2.3 MB/s • ETA 4m", the state, the
/// stall or error text. Progress is published when this changes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shown {
    permille: u64,
    speed: u64,
    eta: Option<u64>,
    state: String,
    size: Option<u64>,
    no_seeds: bool,
    stalled: Option<String>,
    error: Option<String>,
}

impl Shown {
    fn of(p: &Progress) -> Self {
        Self {
            permille: (p.progress * 1000.0).round() as u64,
            speed: two_digits(p.dlspeed),
            eta: p.eta.map(eta_bucket),
            state: p.state.clone(),
            size: p.size,
            no_seeds: p.num_seeds == Some(0),
            stalled: p.stalled.clone(),
            error: p.error.clone(),
        }
    }
}

/// 2 345 678 → 2 300 000: the precision of "2.3 MB/s".
fn two_digits(n: u64) -> u64 {
    let mut scale = 1;
    while n / scale >= 100 {
        scale *= 10;
    }
    n / scale * scale
}

/// The precision an ETA is shown with: seconds near the end, then minutes, then quarter hours.
fn eta_bucket(secs: u64) -> u64 {
    match secs {
        0..60 => secs / 5 * 5,
        60..3600 => secs / 60 * 60,
        _ => secs / 900 * 900,
    }
}

#[derive(Debug, Default)]
struct Seen {
    shown: Option<Shown>,
    finished: bool,
    /// The phase and since when it has lasted, for the stall verdict.
    phase: Option<(Phase, Instant)>,
}

#[derive(Debug)]
pub struct Observer {
    stall_after: Duration,
    seen: HashMap<InfoHash, Seen>,
}

impl Observer {
    pub fn new(stall_after: Duration) -> Self {
        Self { stall_after, seen: HashMap::new() }
    }

    /// What to publish for the tracked torrents in `data`. `now_unix` dates qBittorrent's
    /// `last_activity`, which tells how long a torrent stalled before we first saw it.
    pub fn observe(
        &mut self,
        tracked: &HashSet<InfoHash>,
        data: &Maindata,
        now: Instant,
        now_unix: i64,
    ) -> Vec<Pending> {
        // Forget what is no longer tracked or gone: if it comes back, it is published afresh.
        self.seen.retain(|h, _| tracked.contains(h) && data.get(h.as_str()).is_some());
        let mut out = Vec::new();
        for hash in tracked {
            let Some(json) = data.get(hash.as_str()) else { continue };
            let torrent = Torrent::new(hash, json);
            let seen = self.seen.entry(hash.clone()).or_default();
            let phase = torrent.phase();
            let since = match seen.phase {
                Some((p, since)) if p == phase => since,
                // First sight of a torrent already waiting: qBittorrent knows since when.
                None => torrent
                    .last_activity()
                    .and_then(|t| now.checked_sub(Duration::from_secs(now_unix.saturating_sub(t).max(0) as u64)))
                    .unwrap_or(now),
                Some(_) => now,
            };
            seen.phase = Some((phase, since));
            let stalled = phase.stall_reason().filter(|_| now.duration_since(since) >= self.stall_after);
            let progress = torrent.progress(stalled.map(str::to_owned));
            let raw = Value::Object(json.clone());
            if progress.is_complete() {
                if !seen.finished {
                    // The same completion gets the same id, so JetStream stores it once.
                    let when = torrent.completion_on().map(|t| t.to_string()).unwrap_or_default();
                    let id = content_id("qbittorrent-finished", &[hash.as_str().as_bytes(), when.as_bytes()]);
                    out.push(Pending { id, event: TorrentEvent::Finished(torrent.finished()), raw, shown: None });
                }
                continue;
            }
            let shown = Shown::of(&progress);
            if seen.shown.as_ref() != Some(&shown) {
                // The observation time is part of the id: a torrent may go back to values it
                // had a minute ago (paused, resumed, paused), and that must not be a duplicate.
                let body = serde_json::to_vec(&progress).unwrap_or_default();
                let at = now_unix.to_string();
                let id = content_id("qbittorrent-progress", &[hash.as_str().as_bytes(), &body, at.as_bytes()]);
                out.push(Pending { id, event: TorrentEvent::Progress(progress), raw, shown: Some(shown) });
            }
        }
        out
    }

    /// Records that a pending fact was stored; one that failed is proposed again next poll.
    pub fn published(&mut self, p: &Pending) {
        let Some(seen) = self.seen.get_mut(p.event.hash()) else { return };
        match &p.event {
            TorrentEvent::Finished(_) => seen.finished = true,
            TorrentEvent::Progress(_) => seen.shown = p.shown.clone(),
        }
    }
}

#[cfg(test)]
#[path = "observer_tests.rs"]
mod tests;
