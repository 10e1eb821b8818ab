//! Shoko Server file events from its SignalR hub (`ShokoEvent:File*`), normalized across the
//! v5 PascalCase and v4.2 camelCase shapes, with the absolute path resolved by the bridge.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CrossRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anidb_anime_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anidb_episode_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shoko_series_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shoko_episode_id: Option<u64>,
    /// Shoko's group of the series (v5 `GroupID`, v4.2 `groupID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shoko_group_id: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FileEvent {
    pub kind: FileEventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_folder_id: Option<u64>,
    /// The path below the import folder, `/`-separated (Shoko on Windows sends `\`).
    pub relative_path: String,
    /// Import folder path + relative path, `/`-separated; `None` if the folder is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// FileMoved and FileRenamed: the absolute path before, resolved like `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_path: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cross_refs: Vec<CrossRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_match_attempts: Option<u64>,
    /// Shoko's id of this file location (one file may sit in several places).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_location_id: Option<u64>,
    /// FileMoved: the import folder the file was in before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_import_folder_id: Option<u64>,
    /// FileMoved: the relative path before the move, `/`-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_relative_path: Option<String>,
    /// FileRenamed: the file name before the rename (the folder did not change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_file_name: Option<String>,
    /// FileNotMatched: Shoko is banned from AniDB's UDP API, so the miss may be temporary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_udp_banned: Option<bool>,
}

impl FileEvent {
    /// An event with only its kind and relative path; the other fields empty.
    pub fn new(kind: FileEventKind, relative_path: impl Into<String>) -> Self {
        Self {
            kind,
            file_id: None,
            import_folder_id: None,
            relative_path: relative_path.into(),
            path: None,
            previous_path: None,
            cross_refs: Vec::new(),
            auto_match_attempts: None,
            file_location_id: None,
            previous_import_folder_id: None,
            previous_relative_path: None,
            previous_file_name: None,
            is_udp_banned: None,
        }
    }
}
