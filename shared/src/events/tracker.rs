//! status-tracker's own facts, published on `media.tracker.<event>` like the media services'
//! facts, so that replaying `MEDIA` rebuilds them too: what a person asked for (retry,
//! cancel) and what the correlator's watchdog found (a stall, media already in the library,
//! a request old enough to archive).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::arr::EpisodeRef;
use crate::ids::RequestId;
use crate::model::State;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TrackerEvent {
    /// Someone asked Radarr/Sonarr to search again, perhaps at a lower quality.
    Retry {
        request_id: RequestId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// What was sent, in words ("Radarr MoviesSearch for movie 7").
        #[serde(default)]
        commands: Vec<String>,
        /// Why nothing could be sent, when nothing was (or why the search failed after the
        /// quality profile was changed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// "Lower quality": the quality profile the film or series was switched to before the
        /// search (`RADARR_FALLBACK_PROFILE`, `SONARR_FALLBACK_PROFILE`); absent for a retry.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quality_profile: Option<String>,
    },
    /// Someone cancelled the request (its media is not deleted).
    Cancel {
        request_id: RequestId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// The request has been in `state` longer than it should.
    Stalled {
        request_id: RequestId,
        state: State,
        reason: String,
        #[serde(with = "time::serde::rfc3339")]
        #[schemars(with = "crate::schema::Timestamp")]
        since: OffsetDateTime,
    },
    /// The media is in the library after all: found through Jellyfin's API, or Radarr/Sonarr
    /// already had it. `episodes` empty means the film, or the whole request.
    Verified {
        request_id: RequestId,
        /// `jellyfin`, `radarr` or `sonarr`.
        by: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        episodes: Vec<EpisodeRef>,
        /// Jellyfin item to link "Watch now" to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server_id: Option<String>,
    },
    /// Available long enough: moved to the history.
    Archived { request_id: RequestId },
}

impl TrackerEvent {
    pub fn request_id(&self) -> RequestId {
        match self {
            Self::Retry { request_id, .. }
            | Self::Cancel { request_id, .. }
            | Self::Stalled { request_id, .. }
            | Self::Verified { request_id, .. }
            | Self::Archived { request_id } => *request_id,
        }
    }

    pub fn event_name(&self) -> &'static str {
        match self {
            Self::Retry { .. } => "retry",
            Self::Cancel { .. } => "cancel",
            Self::Stalled { .. } => "stalled",
            Self::Verified { .. } => "verified",
            Self::Archived { .. } => "archived",
        }
    }
}
