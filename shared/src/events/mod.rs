//! Normalized facts: what ingress, the poller and the shoko-bridge publish on `media.>` and
//! what the correlator consumes. One type per source; the subject's `<event>` token comes from
//! [`Fact::event_name`].
//!
//! Each message's `data` is an [`EventData`]: the normalized fact plus the original payload, so
//! that a better parser can rebuild state by replaying `MEDIA` from the start.

pub mod arr;
mod decode;
pub mod jellyfin;
pub mod jellyseerr;
pub mod qbittorrent;
pub mod shoko;
pub mod tracker;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::Envelope;
use crate::subjects::{self, Source};

pub use arr::ArrEvent;
pub use jellyfin::JellyfinEvent;
pub use jellyseerr::RequestEvent;
pub use qbittorrent::TorrentEvent;
pub use shoko::FileEvent;
pub use tracker::TrackerEvent;

/// Movie or series, in Jellyseerr's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MediaType {
    Movie,
    Tv,
}

impl MediaType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Movie => "movie",
            Self::Tv => "tv",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "movie" => Some(Self::Movie),
            "tv" | "series" | "show" => Some(Self::Tv),
            _ => None,
        }
    }
}

// Read by `decode.rs`, which takes the tag from the first field.
/// A normalized fact, tagged by its source (its first field).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum Fact {
    Jellyseerr(RequestEvent),
    Sonarr(ArrEvent),
    Radarr(ArrEvent),
    Qbittorrent(TorrentEvent),
    Shoko(FileEvent),
    Jellyfin(JellyfinEvent),
    /// status-tracker's own facts: retries, cancels, stalls, verifications, archiving.
    Tracker(TrackerEvent),
    /// Input that could not be parsed; published on `media.rejected.<source>`.
    Rejected(Rejected),
}

impl Fact {
    /// Where the fact came from; `None` for input posted to a source status-tracker does not
    /// know.
    pub fn source(&self) -> Option<Source> {
        Some(match self {
            Self::Jellyseerr(_) => Source::Jellyseerr,
            Self::Sonarr(_) => Source::Sonarr,
            Self::Radarr(_) => Source::Radarr,
            Self::Qbittorrent(_) => Source::Qbittorrent,
            Self::Shoko(_) => Source::Shoko,
            Self::Jellyfin(_) => Source::Jellyfin,
            Self::Tracker(_) => Source::Tracker,
            Self::Rejected(r) => return r.from,
        })
    }

    /// The source's name (`radarr`…), `unknown` for input posted to a source status-tracker
    /// does not know.
    pub fn source_name(&self) -> &'static str {
        self.source().map_or("unknown", Source::as_str)
    }

    /// The subject token of this fact (`grab`, `media_pending`, `finished`, `file_matched`…).
    pub fn event_name(&self) -> String {
        match self {
            Self::Jellyseerr(e) => subjects::event_token(&e.notification_type),
            Self::Sonarr(e) => e.event_name(Source::Sonarr),
            Self::Radarr(e) => e.event_name(Source::Radarr),
            Self::Qbittorrent(e) => e.event_name().to_owned(),
            Self::Shoko(e) => e.kind.event_name().to_owned(),
            Self::Jellyfin(e) => subjects::event_token(&e.notification_type),
            Self::Tracker(e) => e.event_name().to_owned(),
            Self::Rejected(_) => "rejected".to_owned(),
        }
    }

    /// The subject this fact is published on.
    pub fn subject(&self) -> String {
        match self {
            Self::Rejected(r) => subjects::rejected(r.from),
            Self::Qbittorrent(TorrentEvent::Progress(p)) => subjects::qbit_progress(&p.hash),
            other => match other.source() {
                Some(source) => subjects::media(source, &other.event_name()),
                None => subjects::rejected(None),
            },
        }
    }

    /// The media key for the envelope's `subject` attribute, when the fact names one.
    pub fn media_key(&self) -> Option<String> {
        match self {
            Self::Jellyseerr(e) => match (e.media_type, e.tmdb_id, e.tvdb_id) {
                (Some(MediaType::Tv), _, Some(tvdb)) => Some(format!("tvdb:{tvdb}")),
                (_, Some(tmdb), _) => Some(format!("tmdb:{tmdb}")),
                _ => None,
            },
            Self::Sonarr(e) | Self::Radarr(e) => e.media().and_then(|m| m.key()),
            Self::Qbittorrent(e) => Some(format!("btih:{}", e.hash())),
            Self::Shoko(e) => e.path.clone().map(|p| format!("path:{p}")),
            Self::Jellyfin(e) => e.item_id.clone().map(|i| format!("jellyfin:{i}")),
            Self::Tracker(e) => Some(format!("request:{}", e.request_id())),
            Self::Rejected(_) => None,
        }
    }

    /// True for a source's "test connection" event: answered 200, creates nothing.
    pub fn is_test(&self) -> bool {
        match self {
            Self::Jellyseerr(e) => e.notification == jellyseerr::Notification::TestNotification,
            Self::Sonarr(e) | Self::Radarr(e) => matches!(e, ArrEvent::Test),
            _ => false,
        }
    }
}

/// The `data` of a `media.>` envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventData {
    pub event: Fact,
    /// The payload as received (JSON as JSON, a form as an object, other text as a string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<Value>,
}

pub type MediaEnvelope = Envelope<EventData>;

/// What ingress keeps of input it could not parse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Rejected {
    /// The source it came from; absent when it was posted to a source status-tracker does not
    /// know (see `path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Source>,
    /// Where it was posted, when that names no known source (`/hooks/sonar`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub reason: String,
    /// The HTTP status the sender was answered with.
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The body: UTF-8 text when it is valid UTF-8, else base64 (see `body_encoding`).
    pub body: String,
    pub body_encoding: BodyEncoding,
    /// Headers that help to diagnose (user agent, content type, length); never credentials.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BodyEncoding {
    Utf8,
    Base64,
}
