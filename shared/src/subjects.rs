//! NATS subject and stream names. Services never write a subject as a string literal: they
//! call these builders, so the contract in `docs/subjects.md` lives in one place.
//!
//! Subjects put the entity before the verb (`media.radarr.grab`, `tracker.request.42.available`)
//! so that wildcards filter usefully.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The durable stream of facts from the outside world (`media.*.*`, `media.rejected.*`).
pub const STREAM_MEDIA: &str = "MEDIA";
/// Latest qBittorrent progress per torrent (`media.qbittorrent.progress.<hash>`).
pub const STREAM_MEDIA_PROGRESS: &str = "MEDIA_PROGRESS";
/// Request state changes and progress published by the correlator (`tracker.request.>`).
pub const STREAM_TRACKER: &str = "TRACKER";

/// The correlator's durable consumer on `MEDIA`.
pub const CONSUMER_CORRELATOR: &str = "correlator";
/// The correlator's durable consumer on `MEDIA_PROGRESS`.
pub const CONSUMER_CORRELATOR_PROGRESS: &str = "correlator-progress";

/// A service that sends facts to status-tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Jellyseerr,
    Sonarr,
    Radarr,
    Qbittorrent,
    Shoko,
    Jellyfin,
    /// status-tracker itself: retries, cancels, stalls it noticed, availability it verified.
    Tracker,
}

impl Source {
    pub const ALL: [Source; 7] =
        [Self::Jellyseerr, Self::Sonarr, Self::Radarr, Self::Qbittorrent, Self::Shoko, Self::Jellyfin, Self::Tracker];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jellyseerr => "jellyseerr",
            Self::Sonarr => "sonarr",
            Self::Radarr => "radarr",
            Self::Qbittorrent => "qbittorrent",
            Self::Shoko => "shoko",
            Self::Jellyfin => "jellyfin",
            Self::Tracker => "tracker",
        }
    }

    /// `overseerr` is an alias of `jellyseerr`: both send the same webhook.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "jellyseerr" | "overseerr" | "seerr" => Self::Jellyseerr,
            "sonarr" => Self::Sonarr,
            "radarr" => Self::Radarr,
            "qbittorrent" => Self::Qbittorrent,
            "shoko" => Self::Shoko,
            "jellyfin" => Self::Jellyfin,
            "tracker" => Self::Tracker,
            _ => return None,
        })
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Turns an event name into a safe subject token: lower snake case, ASCII letters, digits and
/// `_` only (`MovieAdded` → `movie_added`, `MEDIA_PENDING` → `media_pending`). Never empty.
pub fn event_token(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
            prev_lower = true;
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
            prev_lower = false;
        }
    }
    let trimmed = out.trim_matches('_');
    if trimmed.is_empty() { "unknown".to_owned() } else { trimmed.to_owned() }
}

/// `media.<source>.<event>`: a normalized fact, e.g. `media.radarr.grab`.
pub fn media(source: Source, event: &str) -> String {
    format!("media.{source}.{}", event_token(event))
}

/// `media.rejected.<source>`: input that could not be parsed, kept with the reason;
/// `media.rejected.unknown` for input posted to a source status-tracker does not know.
pub fn rejected(source: Option<Source>) -> String {
    match source {
        Some(source) => format!("media.rejected.{source}"),
        None => REJECTED_UNKNOWN.to_owned(),
    }
}

/// Where input posted to an unknown source is kept (the name it was posted to is not made a
/// subject: anyone could then create subjects).
pub const REJECTED_UNKNOWN: &str = "media.rejected.unknown";

/// `media.qbittorrent.progress.<hash>`: latest progress of one tracked torrent.
pub fn qbit_progress(hash: &crate::ids::InfoHash) -> String {
    format!("media.qbittorrent.progress.{hash}")
}

/// Everything the correlator consumes from `MEDIA`.
pub const MEDIA_ALL: &str = "media.>";
/// Everything in `MEDIA_PROGRESS`.
pub const QBIT_PROGRESS_ALL: &str = "media.qbittorrent.progress.*";

/// `tracker.request.<id>.<state>`: a request entered a state (or, with `updated`, changed
/// without changing state).
pub fn request_state(id: crate::ids::RequestId, state: &str) -> String {
    format!("tracker.request.{id}.{state}")
}

/// `tracker.request.<id>.progress`: aggregated download progress of a request.
pub fn request_progress(id: crate::ids::RequestId) -> String {
    format!("tracker.request.{id}.progress")
}

/// Every request subject, for subscribers such as the dashboard.
pub const REQUEST_ALL: &str = "tracker.request.>";

/// The CloudEvents `type` of a message published on `subject`: the subject without the ids in
/// it (a torrent's hash, a request's id), so that types are a fixed vocabulary to filter on;
/// the ids are in the subject and the data. `media.radarr.grab` stays itself,
/// `media.qbittorrent.progress.<hash>` is `media.qbittorrent.progress`,
/// `tracker.request.<id>.available` is `tracker.request.available`.
pub fn event_type(subject: &str) -> String {
    let mut tokens = subject.split('.');
    match (tokens.next(), tokens.next(), tokens.next(), tokens.next(), tokens.next()) {
        (Some("media"), Some("qbittorrent"), Some("progress"), Some(_hash), None) => {
            "media.qbittorrent.progress".to_owned()
        }
        (Some("tracker"), Some("request"), Some(_id), Some(event), None) => format!("tracker.request.{event}"),
        _ => subject.to_owned(),
    }
}

/// `tracker.query.<what>`: request–reply reads answered by the correlator.
pub fn query(what: &str) -> String {
    format!("tracker.query.{what}")
}

/// `tracker.cmd.<verb>`: request–reply commands answered by the correlator.
pub fn cmd(verb: &str) -> String {
    format!("tracker.cmd.{verb}")
}

/// `tracker.health.<service>`: each service answers its own health on this subject.
pub fn health(service: &str) -> String {
    format!("tracker.health.{service}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_subjects_without_their_ids() {
        let hash = crate::ids::InfoHash::parse("5e3f9a1c7b2d4e6f8091a2b3c4d5e6f708192a3b").unwrap();
        let request = crate::ids::RequestId(12);
        assert_eq!(event_type(&media(Source::Radarr, "grab")), "media.radarr.grab");
        assert_eq!(event_type(&qbit_progress(&hash)), "media.qbittorrent.progress");
        assert_eq!(event_type(&request_state(request, "available")), "tracker.request.available");
        assert_eq!(event_type(&request_progress(request)), "tracker.request.progress");
        assert_eq!(event_type(&rejected(Some(Source::Sonarr))), "media.rejected.sonarr");
        assert_eq!(event_type(REJECTED_UNKNOWN), REJECTED_UNKNOWN);
    }

    #[test]
    fn event_names_become_snake_case_tokens() {
        assert_eq!(event_token("MovieAdded"), "movie_added");
        assert_eq!(event_token("MEDIA_PENDING"), "media_pending");
        assert_eq!(event_token("ItemAdded"), "item_added");
        assert_eq!(event_token("Grab"), "grab");
        assert_eq!(event_token("file.hashed > *"), "file_hashed");
        assert_eq!(event_token(""), "unknown");
        assert_eq!(event_token("..."), "unknown");
    }

    #[test]
    fn subjects_put_entity_before_verb() {
        assert_eq!(media(Source::Radarr, "Grab"), "media.radarr.grab");
        assert_eq!(rejected(Some(Source::Jellyfin)), "media.rejected.jellyfin");
        assert_eq!(rejected(None), "media.rejected.unknown");
        let id = crate::ids::RequestId(42);
        assert_eq!(request_state(id, "available"), "tracker.request.42.available");
        assert_eq!(request_progress(id), "tracker.request.42.progress");
    }

    #[test]
    fn overseerr_is_jellyseerr() {
        assert_eq!(Source::parse("overseerr"), Some(Source::Jellyseerr));
        assert_eq!(Source::parse("plex"), None);
    }
}
