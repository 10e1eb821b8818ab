//! Jellyseerr/Overseerr notifications (their webhook agent's default template).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::MediaType;
use crate::ids::{JellyseerrRequestId, TmdbId, TvdbId};

/// `notification_type` of the webhook. Unknown types are kept as `Unknown` with the raw
/// name in [`RequestEvent::notification_type`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Notification {
    MediaPending,
    MediaApproved,
    MediaAutoApproved,
    MediaAvailable,
    MediaFailed,
    MediaDeclined,
    MediaAutoRequested,
    TestNotification,
    IssueCreated,
    IssueComment,
    IssueResolved,
    IssueReopened,
    #[serde(other)]
    Unknown,
}

impl Notification {
    pub fn parse(s: &str) -> Self {
        serde_json::from_value(serde_json::Value::String(s.trim().to_ascii_uppercase())).unwrap_or(Self::Unknown)
    }
}

/// [`RequestEvent::event`] of a request the correlator caught up on from Jellyseerr's API
/// because its webhook never came.
pub const CAUGHT_UP: &str = "Caught up from Jellyseerr's request list";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequestEvent {
    pub notification: Notification,
    /// As sent, e.g. `MEDIA_PENDING`.
    pub notification_type: String,
    /// Human text, e.g. "New Movie Request".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmdb_id: Option<TmdbId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tvdb_id: Option<TvdbId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<JellyseerrRequestId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by_email: Option<String>,
    /// Title without the year, from `subject` ("The Batman (2022)").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub year: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poster_url: Option<String>,
    #[serde(default)]
    pub is_4k: bool,
    /// From the "Requested Seasons" extra ("1, 2, 3").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requested_seasons: Vec<u32>,
    /// Media status in Jellyseerr (`PENDING`, `PROCESSING`, `AVAILABLE`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue: Option<Issue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Issue {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affected_season: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affected_episode: Option<u32>,
}
