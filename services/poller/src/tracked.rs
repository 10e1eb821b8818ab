//! Which torrents the poller publishes for: the correlator's answer to `tracker.query.tracked`
//! (asked at start and every half minute), corrected in between by the request snapshots it
//! publishes on `tracker.request.>`. The periodic answer repairs whatever a missed message or
//! a restart of either side got wrong.

use std::collections::{HashMap, HashSet};

use shared::Envelope;
use shared::ids::{InfoHash, RequestId};
use shared::model::{DownloadView, ProgressUpdate, RequestChange, State};

/// What a `tracker.request.<id>.*` message says about one request's torrents.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestTorrents {
    pub id: RequestId,
    pub state: State,
    /// `(hash, finished)` for each torrent download of the request.
    pub torrents: Vec<(InfoHash, bool)>,
}

impl RequestTorrents {
    fn new(id: RequestId, state: State, downloads: &[DownloadView]) -> Self {
        let torrents = downloads
            .iter()
            .filter(|d| d.kind == "torrent")
            .filter_map(|d| Some((InfoHash::parse(&d.download_id)?, d.finished)))
            .collect();
        Self { id, state, torrents }
    }

    /// Decodes a message of `tracker.request.<id>.<state|updated|progress>`. `None` for
    /// anything else, or a body that does not follow the contract (logged by the caller).
    pub fn decode(subject: &str, payload: &[u8]) -> Option<Self> {
        let verb = subject.rsplit('.').next()?;
        if verb == "progress" {
            let env: Envelope<ProgressUpdate> = serde_json::from_slice(payload).ok()?;
            Some(Self::new(env.data.id, env.data.state, &env.data.downloads))
        } else {
            let env: Envelope<RequestChange> = serde_json::from_slice(payload).ok()?;
            let r = &env.data.request;
            Some(Self::new(r.summary.id, r.summary.state, &r.downloads))
        }
    }
}

/// The tracked hashes.
#[derive(Debug, Default)]
pub struct Tracked {
    /// The correlator's last answer.
    base: HashSet<InfoHash>,
    /// Requests heard of since that answer: the hashes each still wants, and those it no
    /// longer does (finished download, or the request itself finished).
    wanted: HashMap<RequestId, HashSet<InfoHash>>,
    done: HashMap<RequestId, HashSet<InfoHash>>,
    /// The correlator has answered at least once.
    known: bool,
}

impl Tracked {
    /// Takes a fresh answer of `tracker.query.tracked`. It already reflects every change
    /// published before it, so what was learnt from messages is dropped.
    pub fn reset(&mut self, hashes: impl IntoIterator<Item = String>) {
        self.base = hashes.into_iter().filter_map(|h| InfoHash::parse(&h)).collect();
        self.wanted.clear();
        self.done.clear();
        self.known = true;
    }

    /// Applies one request's snapshot. Returns true when a hash became tracked, so the
    /// caller can poll at once instead of waiting out an idle interval.
    pub fn update(&mut self, r: &RequestTorrents) -> bool {
        let open = !r.state.is_finished();
        let (wanted, done): (Vec<_>, Vec<_>) = r.torrents.iter().partition(|(_, finished)| open && !finished);
        let fresh = wanted.iter().any(|(h, _)| !self.contains(h));
        self.wanted.insert(r.id, wanted.into_iter().map(|(h, _)| h.clone()).collect());
        self.done.insert(r.id, done.into_iter().map(|(h, _)| h.clone()).collect());
        fresh
    }

    pub fn contains(&self, hash: &InfoHash) -> bool {
        self.wanted.values().any(|s| s.contains(hash))
            || (self.base.contains(hash) && !self.done.values().any(|s| s.contains(hash)))
    }

    /// Every tracked hash.
    pub fn hashes(&self) -> HashSet<InfoHash> {
        let mut all: HashSet<InfoHash> = self.base.iter().filter(|h| self.contains(h)).cloned().collect();
        all.extend(self.wanted.values().flatten().cloned());
        all
    }

    /// Whether the correlator has answered since start.
    pub fn is_known(&self) -> bool {
        self.known
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "5e3f9a1c7b2d4e6f8091a2b3c4d5e6f708192a3b";
    const B: &str = "c0ffee4d2a9b8c7d6e5f40312a1b0c9d8e7f6a5b";

    fn hash(s: &str) -> InfoHash {
        InfoHash::parse(s).unwrap()
    }

    fn req(id: i64, state: State, torrents: &[(&str, bool)]) -> RequestTorrents {
        RequestTorrents { id: RequestId(id), state, torrents: torrents.iter().map(|(h, f)| (hash(h), *f)).collect() }
    }

    #[test]
    fn the_correlators_answer_is_the_starting_set() {
        let mut t = Tracked::default();
        assert!(!t.is_known());
        t.reset([A.to_uppercase(), "not a hash".into()]);
        assert!(t.is_known());
        assert!(t.contains(&hash(A)));
        assert_eq!(t.hashes().len(), 1);
    }

    #[test]
    fn a_grab_on_an_open_request_tracks_its_torrent_and_asks_for_a_poll() {
        let mut t = Tracked::default();
        t.reset([]);
        assert!(t.update(&req(1, State::Indexed, &[(A, false)])));
        assert!(t.contains(&hash(A)));
        assert!(!t.update(&req(1, State::Downloading, &[(A, false)])), "already tracked: no extra poll");
    }

    #[test]
    fn a_finished_download_or_a_finished_request_is_no_longer_tracked() {
        let mut t = Tracked::default();
        t.reset([A.into(), B.into()]);
        t.update(&req(1, State::Downloaded, &[(A, true)]));
        assert!(!t.contains(&hash(A)));
        t.update(&req(2, State::Cancelled, &[(B, false)]));
        assert!(!t.contains(&hash(B)));
        assert!(t.hashes().is_empty());
    }

    #[test]
    fn a_season_pack_stays_tracked_while_another_request_still_wants_it() {
        let mut t = Tracked::default();
        t.reset([]);
        t.update(&req(1, State::Downloading, &[(A, false)]));
        t.update(&req(2, State::Failed, &[(A, false)]));
        assert!(t.contains(&hash(A)));
    }

    #[test]
    fn progress_and_state_messages_decode_to_the_same_facts() {
        let download = serde_json::json!({"download_id": A, "kind": "torrent", "progress": 0.5, "dlspeed": 1,
            "finished": false});
        let usenet = serde_json::json!({"download_id": "SABnzbd_nzo_1", "kind": "usenet", "progress": 0.5,
            "dlspeed": 1, "finished": false});
        let progress = serde_json::json!({"specversion": "1.0", "id": "x", "source": "s", "type": "t",
            "time": "2025-01-10T18:40:12Z", "datacontenttype": "application/json",
            "data": {"id": 7, "state": "downloading", "progress": 0.5, "dlspeed": 1, "downloads": [download, usenet]}});
        let got = RequestTorrents::decode("tracker.request.7.progress", progress.to_string().as_bytes()).unwrap();
        assert_eq!(got, req(7, State::Downloading, &[(A, false)]));
        assert_eq!(RequestTorrents::decode("tracker.request.7.indexed", b"{}"), None);
    }

    #[test]
    fn a_request_snapshot_decodes_its_state_and_torrents() {
        let change = serde_json::json!({"specversion": "1.0", "id": "x", "source": "s", "type": "t",
            "time": "2025-01-10T18:40:12Z", "datacontenttype": "application/json",
            "data": {"request": {"id": 3, "title": "The Batman", "media_type": "movie", "state": "indexed",
                "progress": 0.0, "source": "radarr", "created_at": "2025-01-10T18:40:12Z",
                "updated_at": "2025-01-10T18:40:12Z",
                "downloads": [{"download_id": A, "kind": "torrent", "progress": 0.0, "dlspeed": 0, "finished": false}]}}});
        let got = RequestTorrents::decode("tracker.request.3.indexed", change.to_string().as_bytes()).unwrap();
        assert_eq!(got, req(3, State::Indexed, &[(A, false)]));
    }
}
