//! Shoko Server file events from its SignalR hub (`ShokoEvent:File*`), normalized across the
//! v5 PascalCase and v4.2 camelCase shapes, with the absolute path resolved by the bridge.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileEventKind {
    Detected,
    Hashed,
    Matched,
    NotMatched,
    Renamed,
    Moved,
    Deleted,
}

impl FileEventKind {
    pub fn event_name(self) -> &'static str {
        match self {
            Self::Detected => "file_detected",
            Self::Hashed => "file_hashed",
            Self::Matched => "file_matched",
            Self::NotMatched => "file_not_matched",
            Self::Renamed => "file_renamed",
            Self::Moved => "file_moved",
            Self::Deleted => "file_deleted",
        }
    }

    /// From a SignalR target such as `ShokoEvent:FileMatched` (or the legacy `FileMatched`).
    pub fn from_target(target: &str) -> Option<Self> {
        let name = target.rsplit(':').next().unwrap_or(target);
        Some(match name.to_ascii_lowercase().as_str() {
            "filedetected" => Self::Detected,
            "filehashed" => Self::Hashed,
            "filematched" => Self::Matched,
            "filenotmatched" => Self::NotMatched,
            "filerenamed" => Self::Renamed,
            "filemoved" => Self::Moved,
            "filedeleted" => Self::Deleted,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anidb_anime_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anidb_episode_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shoko_series_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shoko_episode_id: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEvent {
    pub kind: FileEventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_folder_id: Option<u64>,
    pub relative_path: String,
    /// Import folder path + relative path, `/`-separated; `None` if the folder is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_path: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cross_refs: Vec<CrossRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_match_attempts: Option<u64>,
}
