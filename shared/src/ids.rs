//! Newtype identifiers, so that a TMDB id can never be passed where a TVDB id belongs and a
//! torrent hash is always compared in one canonical (lower-case) form.
//!
//! The media services disagree on how they write ids: Jellyseerr sends every number as a string
//! (`"tmdbId":"414906"`, `""` when absent), Sonarr/Radarr send numbers, test events send `0`, and
//! Radarr/Sonarr send torrent hashes in upper case while qBittorrent uses lower case. The parsers
//! in this module (and ingress's readers of webhook bodies) accept all of those and normalize
//! them once, at the edge.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

macro_rules! numeric_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

numeric_id!(
    /// A themoviedb.org id. Movie ids and TV ids are different namespaces on TMDB.
    TmdbId
);
numeric_id!(
    /// A thetvdb.com id (series or episode).
    TvdbId
);
numeric_id!(
    /// A Radarr movie id or Sonarr series id (`movie.id` / `series.id`).
    ArrId
);
numeric_id!(
    /// Jellyseerr/Overseerr's request id (`request.request_id`).
    JellyseerrRequestId
);

/// status-tracker's own request id (SQLite rowid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct RequestId(pub i64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for RequestId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

/// A BitTorrent info-hash as qBittorrent names a torrent: 40 hex characters (v1, or the
/// truncated v2 hash of a hybrid torrent) or 64 (full v2). Stored in lower case, so
/// `5E3F…` from Radarr and `5e3f…` from qBittorrent are the same key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct InfoHash(String);

impl InfoHash {
    /// Accepts 40 or 64 hex digits in either case.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let ok = (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| Self(s.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for InfoHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("not an info-hash: {s:?}")))
    }
}

/// Written as the lower-case hex string; the schema says so, because the hand-written
/// `Deserialize` above accepts upper case too but nothing is ever published that way.
impl JsonSchema for InfoHash {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "InfoHash".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A BitTorrent info-hash in lower case: 40 hex digits (v1, or the truncated v2 hash of a hybrid torrent) or 64 (full v2).",
            "type": "string",
            "pattern": "^([0-9a-f]{40}|[0-9a-f]{64})$"
        })
    }
}

/// The `downloadId` Sonarr/Radarr give a grab: a torrent hash for torrent clients, an
/// `SABnzbd_nzo_…` id for SABnzbd, a number for NZBGet. Only torrents have progress from
/// qBittorrent; the others are still tracked through the *arr events.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum DownloadId {
    Torrent(InfoHash),
    Usenet(String),
}

impl DownloadId {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.is_empty() || s == "-" {
            return None;
        }
        Some(match InfoHash::parse(s) {
            Some(hash) => Self::Torrent(hash),
            None => Self::Usenet(s.to_owned()),
        })
    }

    /// The canonical text used as a correlation key.
    pub fn key(&self) -> &str {
        match self {
            Self::Torrent(h) => h.as_str(),
            Self::Usenet(s) => s,
        }
    }

    pub fn hash(&self) -> Option<&InfoHash> {
        match self {
            Self::Torrent(h) => Some(h),
            Self::Usenet(_) => None,
        }
    }
}

impl fmt::Display for DownloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_compare_case_insensitively() {
        let radarr = InfoHash::parse("5E3F9A1C7B2D4E6F8091A2B3C4D5E6F708192A3B").unwrap();
        let qbit = InfoHash::parse("5e3f9a1c7b2d4e6f8091a2b3c4d5e6f708192a3b").unwrap();
        assert_eq!(radarr, qbit);
        assert_eq!(radarr.as_str(), "5e3f9a1c7b2d4e6f8091a2b3c4d5e6f708192a3b");
    }

    #[test]
    fn info_hash_rejects_wrong_length_and_non_hex() {
        assert!(InfoHash::parse("abc").is_none());
        assert!(InfoHash::parse(&"g".repeat(40)).is_none());
        assert!(InfoHash::parse(&"a".repeat(64)).is_some());
    }

    #[test]
    fn usenet_download_ids_are_kept_verbatim() {
        let id = DownloadId::parse("SABnzbd_nzo_abc123").unwrap();
        assert_eq!(id, DownloadId::Usenet("SABnzbd_nzo_abc123".into()));
        assert!(id.hash().is_none());
        assert!(DownloadId::parse("").is_none());
        assert!(DownloadId::parse("-").is_none());
    }
}
