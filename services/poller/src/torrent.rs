//! Reading one merged torrent object: its phase (qBittorrent 4.x and 5.x state names mapped to
//! the same meaning) and the `Progress`/`Finished` facts the correlator understands.

use serde_json::Value;
use shared::events::qbittorrent::{ETA_INFINITE, Finished, FinishedVia, Progress};
use shared::ids::InfoHash;

use crate::maindata::TorrentJson;

/// What a qBittorrent state means for a download, whatever the version calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `downloading`, `forcedDL`: data is arriving.
    Downloading,
    /// `stalledDL`: wants data, no peer sends any.
    Stalled,
    /// `metaDL`, `forcedMetaDL`: a magnet waiting for the torrent's metadata.
    Metadata,
    /// `pausedDL` (4.x) / `stoppedDL` (5.x): stopped by someone.
    Paused,
    /// `queuedDL`: waiting for a download slot.
    Queued,
    /// `checkingDL`, `checkingUP`, `checkingResumeData`: hashing what is on disk.
    Checking,
    /// `moving`: files being moved to another folder.
    Moving,
    /// Every `*UP` state: all wanted data is there (seeding, stalled, queued, paused/stopped).
    Seeding,
    /// `error`: qBittorrent stopped the torrent on an I/O error.
    Error,
    /// `missingFiles`: the files are gone from disk.
    MissingFiles,
    /// `unknown` or a name this version does not know.
    Unknown,
}

impl Phase {
    pub fn of(state: &str) -> Self {
        match state {
            "downloading" | "forcedDL" => Self::Downloading,
            "stalledDL" => Self::Stalled,
            "metaDL" | "forcedMetaDL" => Self::Metadata,
            "pausedDL" | "stoppedDL" => Self::Paused,
            "queuedDL" => Self::Queued,
            "checkingDL" | "checkingUP" | "checkingResumeData" => Self::Checking,
            "moving" => Self::Moving,
            "uploading" | "stalledUP" | "queuedUP" | "forcedUP" | "pausedUP" | "stoppedUP" => Self::Seeding,
            "error" => Self::Error,
            "missingFiles" => Self::MissingFiles,
            _ => Self::Unknown,
        }
    }

    /// Worth polling fast: something may change within seconds. A paused, failed or finished
    /// torrent changes only when a person acts, which the idle interval catches.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Self::Downloading | Self::Stalled | Self::Metadata | Self::Queued | Self::Checking | Self::Moving
        )
    }

    /// The stall reason shown on the request once the threshold has passed.
    pub fn stall_reason(self) -> Option<&'static str> {
        match self {
            Self::Stalled => Some("no peers"),
            Self::Metadata => Some("waiting for metadata, no peers"),
            _ => None,
        }
    }

    fn error_reason(self) -> Option<&'static str> {
        match self {
            Self::Error => Some("qBittorrent stopped the torrent on an error (disk full or I/O error?); see its log"),
            Self::MissingFiles => Some("the torrent's files are missing from disk"),
            _ => None,
        }
    }
}

/// Typed access to a merged torrent object.
pub struct Torrent<'a> {
    pub hash: &'a InfoHash,
    pub json: &'a TorrentJson,
}

impl<'a> Torrent<'a> {
    pub fn new(hash: &'a InfoHash, json: &'a TorrentJson) -> Self {
        Self { hash, json }
    }

    fn int(&self, key: &str) -> Option<i64> {
        let v = self.json.get(key)?;
        v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
    }

    fn text(&self, key: &str) -> Option<String> {
        self.json.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
    }

    pub fn state(&self) -> String {
        self.text("state").unwrap_or_else(|| "unknown".into())
    }

    pub fn phase(&self) -> Phase {
        Phase::of(&self.state())
    }

    /// Unix seconds of the last byte moved, when qBittorrent knows it.
    pub fn last_activity(&self) -> Option<i64> {
        self.int("last_activity").filter(|t| *t > 0)
    }

    /// Bytes wanted; `None` while the metadata is missing. A magnet in `metaDL` reports
    /// `size` 0 and `total_size` -1, so 0 must not be taken for "nothing left to get".
    pub fn size(&self) -> Option<u64> {
        let no_metadata = self.json.get("has_metadata").and_then(Value::as_bool) == Some(false)
            || self.phase() == Phase::Metadata
            || self.int("total_size").is_some_and(|t| t < 0);
        if no_metadata {
            return None;
        }
        self.int("size").and_then(|s| u64::try_from(s).ok())
    }

    /// The progress fact, without the stall verdict (the observer adds it).
    pub fn progress(&self, stalled: Option<String>) -> Progress {
        let phase = self.phase();
        let size = self.size();
        // While hashing, libtorrent may report nothing left before it knows; the correlator
        // reads `amount_left == 0` as done, so it is only sent when it means something.
        let amount_left = match phase {
            Phase::Checking | Phase::Metadata => None,
            _ => size.and(self.int("amount_left")).and_then(|a| u64::try_from(a).ok()),
        };
        Progress {
            hash: self.hash.clone(),
            name: self.text("name"),
            progress: self.json.get("progress").and_then(Value::as_f64).unwrap_or(0.0).clamp(0.0, 1.0),
            dlspeed: self.int("dlspeed").and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
            eta: self.int("eta").and_then(|e| u64::try_from(e).ok()).filter(|e| *e < ETA_INFINITE),
            state: self.state(),
            size,
            amount_left,
            num_seeds: self.int("num_seeds").and_then(|n| u64::try_from(n).ok()),
            stalled,
            error: phase.error_reason().map(str::to_owned),
        }
    }

    /// When the torrent completed (Unix seconds), if qBittorrent says (0 or -1 until then).
    pub fn completion_on(&self) -> Option<i64> {
        self.int("completion_on").filter(|t| *t > 0)
    }

    pub fn finished(&self) -> Finished {
        let tags = self.text("tags").map(|t| t.split(',').map(|s| s.trim().to_owned()).collect()).unwrap_or_default();
        Finished {
            hash: self.hash.clone(),
            name: self.text("name"),
            // Normalized as ingress does with the hook's paths, so both name a file alike.
            content_path: self.text("content_path").map(|p| shared::paths::normalize(&p)),
            save_path: self.text("save_path").map(|p| shared::paths::normalize(&p)),
            size: self.size(),
            category: self.text("category"),
            tags,
            via: FinishedVia::Poller,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn torrent(v: Value) -> (InfoHash, TorrentJson) {
        let hash = InfoHash::parse("c0ffee4d2a9b8c7d6e5f40312a1b0c9d8e7f6a5b").unwrap();
        (hash, v.as_object().unwrap().clone())
    }

    #[test]
    fn qbittorrent_5_state_names_mean_the_same_as_4_x_ones() {
        assert_eq!(Phase::of("stoppedDL"), Phase::of("pausedDL"));
        assert_eq!(Phase::of("stoppedUP"), Phase::of("pausedUP"));
        assert_eq!(Phase::of("stoppedUP"), Phase::Seeding);
        assert_eq!(Phase::of("forcedMetaDL"), Phase::Metadata);
        assert_eq!(Phase::of("someFutureState"), Phase::Unknown);
        assert!(!Phase::of("stoppedDL").is_active());
        assert!(Phase::of("stalledDL").is_active());
    }

    #[test]
    fn a_magnet_waiting_for_metadata_is_never_complete() {
        // As qBittorrent 4.5.2 reports a magnet in metaDL: size 0, total_size -1, amount_left 0.
        let (h, t) = torrent(json!({"state": "metaDL", "size": 0, "total_size": -1, "amount_left": 0,
            "progress": 0, "has_metadata": false, "eta": 8640000, "dlspeed": 0}));
        let p = Torrent::new(&h, &t).progress(None);
        assert_eq!((p.size, p.amount_left, p.eta), (None, None, None));
        assert!(!p.is_complete());
    }

    #[test]
    fn an_infinite_eta_becomes_none_and_a_real_one_is_kept() {
        let (h, t) = torrent(json!({"state": "downloading", "size": 100, "total_size": 100, "amount_left": 40,
            "progress": 0.6, "eta": 12, "dlspeed": 5, "num_seeds": 3, "name": "x"}));
        let p = Torrent::new(&h, &t).progress(None);
        assert_eq!((p.eta, p.size, p.amount_left, p.num_seeds), (Some(12), Some(100), Some(40), Some(3)));
        assert_eq!((p.progress, p.dlspeed, p.state.as_str()), (0.6, 5, "downloading"));
        assert!(!p.is_complete());
    }

    #[test]
    fn errors_and_missing_files_carry_a_readable_reason() {
        let (h, t) = torrent(json!({"state": "missingFiles", "size": 100, "amount_left": 40, "progress": 0.6}));
        let p = Torrent::new(&h, &t).progress(None);
        assert_eq!(p.error.as_deref(), Some("the torrent's files are missing from disk"));
        let (h, t) = torrent(json!({"state": "error", "size": 100, "amount_left": 40, "progress": 0.6}));
        assert!(Torrent::new(&h, &t).progress(None).error.unwrap().contains("error"));
    }

    #[test]
    fn checking_never_claims_nothing_is_left() {
        let (h, t) = torrent(json!({"state": "checkingResumeData", "size": 100, "amount_left": 0, "progress": 0}));
        assert!(!Torrent::new(&h, &t).progress(None).is_complete());
    }

    #[test]
    fn finished_carries_paths_category_and_split_tags() {
        let (h, t) = torrent(json!({"state": "stalledUP", "size": 100, "total_size": 100, "progress": 1,
            "content_path": "/d/x", "save_path": "/d", "category": "tv", "tags": "ci, loopback", "name": "x"}));
        let f = Torrent::new(&h, &t).finished();
        assert_eq!(f.tags, ["ci", "loopback"]);
        assert_eq!((f.content_path.as_deref(), f.category.as_deref(), f.size), (Some("/d/x"), Some("tv"), Some(100)));
        assert_eq!(f.via, FinishedVia::Poller);
    }
}
