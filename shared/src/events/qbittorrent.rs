//! qBittorrent facts: a torrent finished (run-on-finish hook or the poller) and the progress
//! of a tracked torrent (the poller).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::InfoHash;

/// qBittorrent's `eta` value for "unknown / infinite".
pub const ETA_INFINITE: u64 = 8_640_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TorrentEvent {
    Finished(Finished),
    Progress(Progress),
}

impl TorrentEvent {
    pub fn hash(&self) -> &InfoHash {
        match self {
            Self::Finished(f) => &f.hash,
            Self::Progress(p) => &p.hash,
        }
    }

    pub fn event_name(&self) -> &'static str {
        match self {
            Self::Finished(_) => "finished",
            Self::Progress(_) => "progress",
        }
    }
}

/// Who noticed the completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinishedVia {
    /// qBittorrent's "Run external program on torrent finished" posting to ingress.
    Hook,
    /// The poller saw the torrent complete.
    Poller,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Finished {
    pub hash: InfoHash,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `%F`: the file of a single-file torrent, else its root folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub save_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    pub via: FinishedVia,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Progress {
    pub hash: InfoHash,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// 0.0 ..= 1.0
    pub progress: f64,
    /// Bytes per second.
    pub dlspeed: u64,
    /// Seconds; `None` when qBittorrent says 8640000 (unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<u64>,
    /// qBittorrent state, as sent (`downloading`, `stalledDL`, `stoppedDL`…).
    pub state: String,
    /// Total bytes wanted; `None` while metadata is missing (qBittorrent says -1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_left: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_seeds: Option<u64>,
    /// Set when the torrent has made no progress for longer than the stall threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stalled: Option<String>,
    /// Set for `error` / `missingFiles`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Progress {
    /// Complete: every wanted byte is there. `metaDL` with unknown size is never complete,
    /// and neither is a torrent that says `amount_left: 0` while it fetches metadata or
    /// checks its files: only `progress` counts.
    pub fn is_complete(&self) -> bool {
        self.size.is_some() && self.progress >= 1.0
    }
}
