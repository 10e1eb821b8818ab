//! Jellyfin webhook plugin notifications (the documented template or "Send All Properties").

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JellyfinEvent {
    /// `ItemAdded`, `ItemDeleted`, `PlaybackStart`…
    pub notification_type: String,
    /// Item id in Jellyfin's "N" format (32 lower-case hex digits, no hyphens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
    /// `Movie`, `Episode`, `Season`, `Series`…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub year: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_name: Option<String>,
    /// N format, for episodes and seasons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub season: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub episode: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub episode_end: Option<u32>,
    /// Provider ids of *this item* (an episode's are the episode's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmdb_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tvdb_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imdb_id: Option<String>,
    /// Provider ids of the series, when known (resolved through the Jellyfin API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_tmdb_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_tvdb_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// Jellyfin GUIDs arrive hyphenated from templates and in "N" format from "Send All
/// Properties" and the REST API; this gives the N format, or `None` if it is not a GUID.
pub fn normalize_item_id(s: &str) -> Option<String> {
    let hex: String = s.trim().chars().filter(|c| *c != '-').collect();
    (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hex.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyphenated_and_n_format_guids_are_the_same_id() {
        let a = normalize_item_id("a1b2c3d4-e5f6-4788-99aa-bbccddeeff00").unwrap();
        assert_eq!(a, "a1b2c3d4e5f6478899aabbccddeeff00");
        assert_eq!(normalize_item_id("A1B2C3D4E5F6478899AABBCCDDEEFF00").unwrap(), a);
        assert!(normalize_item_id("not-a-guid").is_none());
    }
}
