//! qBittorrent's `sync/maindata`, merged: the first answer (`rid=0`) is a full snapshot, each
//! later one carries only the keys that changed since the `rid` we sent. Keeping the merged
//! map here is what lets one small request per interval follow any number of torrents.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Map, Value};

/// One torrent as qBittorrent describes it (`name`, `state`, `progress`…), all keys merged.
pub type TorrentJson = Map<String, Value>;

/// The parts of a `sync/maindata` answer the poller uses; categories, tags, trackers and
/// `server_state` are skipped without being kept.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MaindataUpdate {
    pub rid: u64,
    /// The whole state follows (first answer, or qBittorrent did not know our `rid`).
    #[serde(default)]
    pub full_update: bool,
    /// Hash → the keys that changed (or the whole object for a new torrent).
    #[serde(default)]
    pub torrents: HashMap<String, TorrentJson>,
    #[serde(default)]
    pub torrents_removed: Vec<String>,
}

/// What one update changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub full: bool,
    /// Hashes (lower case) added or changed.
    pub changed: Vec<String>,
    /// Hashes (lower case) no longer in qBittorrent.
    pub removed: Vec<String>,
}

/// The merged state of every torrent in qBittorrent.
#[derive(Debug, Default)]
pub struct Maindata {
    rid: u64,
    torrents: HashMap<String, TorrentJson>,
}

impl Maindata {
    /// The `rid` to send next: 0 asks for a full snapshot.
    pub fn rid(&self) -> u64 {
        self.rid
    }

    /// Forgets everything, so the next poll asks for a full snapshot. qBittorrent keeps `rid`
    /// per session: after a new login the old one means nothing.
    pub fn reset(&mut self) {
        self.rid = 0;
        self.torrents.clear();
    }

    pub fn get(&self, hash: &str) -> Option<&TorrentJson> {
        self.torrents.get(hash)
    }

    pub fn len(&self) -> usize {
        self.torrents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.torrents.is_empty()
    }

    /// Merges one answer. Hashes are keyed in lower case, as `InfoHash` stores them.
    pub fn apply(&mut self, update: MaindataUpdate) -> Applied {
        let mut applied = Applied { full: update.full_update, ..Applied::default() };
        if update.full_update {
            applied.removed = self.torrents.keys().filter(|h| !has_key(&update.torrents, h)).cloned().collect();
            self.torrents.clear();
        }
        for (hash, delta) in update.torrents {
            let hash = hash.to_ascii_lowercase();
            let torrent = self.torrents.entry(hash.clone()).or_default();
            // A delta carries only the keys that changed; a key absent from it kept its value.
            torrent.extend(delta);
            applied.changed.push(hash);
        }
        for hash in update.torrents_removed {
            let hash = hash.to_ascii_lowercase();
            if self.torrents.remove(&hash).is_some() {
                applied.removed.push(hash);
            }
        }
        self.rid = update.rid;
        applied
    }
}

fn has_key(torrents: &HashMap<String, TorrentJson>, lower: &str) -> bool {
    torrents.keys().any(|k| k.eq_ignore_ascii_case(lower))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BATMAN: &str = "5e3f9a1c7b2d4e6f8091a2b3c4d5e6f708192a3b";
    const DANDADAN: &str = "c0ffee4d2a9b8c7d6e5f40312a1b0c9d8e7f6a5b";
    const SEVERANCE: &str = "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432";

    fn fixture(name: &str) -> MaindataUpdate {
        let path = format!("{}/../../tests/fixtures/qbittorrent/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    fn full() -> MaindataUpdate {
        fixture("api_v2_sync_maindata_rid0_full.json")
    }

    fn field<'a>(m: &'a Maindata, hash: &str, key: &str) -> &'a Value {
        &m.get(hash).unwrap()[key]
    }

    #[test]
    fn a_full_update_holds_every_torrent_and_sets_the_next_rid() {
        let mut m = Maindata::default();
        assert_eq!(m.rid(), 0, "the first poll asks for everything");
        let applied = m.apply(full());
        assert!(applied.full);
        assert_eq!(applied.changed.len(), 3);
        assert_eq!((m.rid(), m.len()), (1, 3));
        assert_eq!(field(&m, DANDADAN, "state"), "downloading");
    }

    #[test]
    fn a_delta_changes_only_the_keys_it_carries() {
        let mut m = Maindata::default();
        m.apply(full());
        let applied = m.apply(fixture("api_v2_sync_maindata_rid1_incremental.json"));
        assert!(!applied.full);
        assert_eq!(m.rid(), 2);
        assert_eq!(field(&m, DANDADAN, "progress"), 0.50178);
        assert_eq!(field(&m, DANDADAN, "eta"), 1493);
        // Keys the delta did not mention keep their value.
        assert_eq!(field(&m, DANDADAN, "state"), "downloading");
        assert_eq!(field(&m, DANDADAN, "size"), 16492674416u64);
        assert_eq!(field(&m, SEVERANCE, "progress"), 0.3802);
        assert_eq!(field(&m, SEVERANCE, "dlspeed"), 4089446, "not in the delta: unchanged");
        let mut changed = applied.changed.clone();
        changed.sort();
        assert_eq!(changed, [SEVERANCE, DANDADAN]);
        assert_eq!(field(&m, BATMAN, "state"), "stalledUP", "untouched torrent kept");
    }

    #[test]
    fn torrents_removed_leave_the_map_and_completion_is_merged() {
        let mut m = Maindata::default();
        m.apply(full());
        m.apply(fixture("api_v2_sync_maindata_rid1_incremental.json"));
        let mut gone = full();
        gone.full_update = false;
        gone.rid = 3;
        gone.torrents.clear();
        gone.torrents_removed = vec![SEVERANCE.to_uppercase()];
        let applied = m.apply(gone);
        assert_eq!(applied.removed, [SEVERANCE]);
        assert!(m.get(SEVERANCE).is_none());

        let applied = m.apply(fixture("api_v2_sync_maindata_rid7_completed_and_removed.json"));
        assert_eq!(m.rid(), 8);
        assert!(applied.removed.is_empty(), "a hash we never had is not reported removed");
        assert_eq!(field(&m, DANDADAN, "state"), "uploading");
        assert_eq!(field(&m, DANDADAN, "progress"), 1);
        assert_eq!(field(&m, DANDADAN, "completion_on"), 1736588890);
        assert_eq!(field(&m, DANDADAN, "category"), "sonarr-anime");
    }

    #[test]
    fn an_unknown_rid_answer_replaces_everything_and_restarts_the_rid() {
        let mut m = Maindata::default();
        m.apply(full());
        m.apply(fixture("api_v2_sync_maindata_rid1_incremental.json"));
        // qBittorrent did not know rid 2 (a restart, another session): full update, rid 1,
        // and Severance is gone from it.
        let mut reset = full();
        reset.torrents.remove(SEVERANCE);
        let applied = m.apply(reset);
        assert!(applied.full);
        assert_eq!(applied.removed, [SEVERANCE]);
        assert_eq!((m.rid(), m.len()), (1, 2));
        assert_eq!(field(&m, DANDADAN, "progress"), 0.5, "the snapshot's values, not the merged delta's");
    }

    #[test]
    fn reset_asks_for_a_full_snapshot_again() {
        let mut m = Maindata::default();
        m.apply(full());
        m.reset();
        assert_eq!((m.rid(), m.len()), (0, 0));
    }

    #[test]
    fn an_answer_with_only_a_rid_changes_nothing() {
        let mut m = Maindata::default();
        m.apply(full());
        let applied = m.apply(serde_json::from_str(r#"{"rid": 2}"#).unwrap());
        assert_eq!(applied, Applied::default());
        assert_eq!((m.rid(), m.len()), (2, 3));
    }
}
