//! Sonarr and Radarr webhook events, normalized into one shape: both speak the same
//! serializer and the correlator treats a film as a request with one item and a series as a
//! request with one item per episode.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::MediaType;
use crate::ids::{ArrId, DownloadId, TmdbId, TvdbId};
use crate::subjects::Source;

/// The film or series an event is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ArrMedia {
    pub media_type: MediaType,
    /// Radarr `movie.id` or Sonarr `series.id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arr_id: Option<ArrId>,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub year: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmdb_id: Option<TmdbId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tvdb_id: Option<TvdbId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imdb_id: Option<String>,
    /// Sonarr `series.type == anime`, or a Radarr movie tagged `anime`.
    #[serde(default)]
    pub anime: bool,
    /// Series path or movie folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poster_url: Option<String>,
    /// Sent by the Radarr/Sonarr that Jellyseerr uses for 4K requests (its webhook posts to
    /// `/hooks/radarr?instance=4k`): the film or series of a 4K request, with that
    /// instance's ids.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_4k: bool,
}

impl ArrMedia {
    /// `tmdb:<id>` for films, `tvdb:<id>` for series (their primary keys in Jellyseerr).
    pub fn key(&self) -> Option<String> {
        match self.media_type {
            MediaType::Movie => self.tmdb_id.map(|id| format!("tmdb:{id}")),
            MediaType::Tv => {
                self.tvdb_id.map(|id| format!("tvdb:{id}")).or_else(|| self.tmdb_id.map(|id| format!("tmdb:{id}")))
            }
        }
    }
}

/// One episode named by an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct EpisodeRef {
    pub season: u32,
    pub episode: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Release {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indexer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Sonarr: `singleEpisode`, `multiEpisode`, `seasonPack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_type: Option<String>,
}

/// A file Sonarr/Radarr imported into the library.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImportedFile {
    /// Library path (for Sonarr v3 / Radarr v4 this is the source path: see WIRE-FORMATS).
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scene_name: Option<String>,
    /// Episodes in this file, when the event says (import-complete lists files apart from
    /// episodes, so this may be empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub episodes: Vec<EpisodeRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RenamedFile {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ArrEvent {
    /// A release was found and sent to the download client.
    Grab {
        media: ArrMedia,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        episodes: Vec<EpisodeRef>,
        release: Release,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        download_id: Option<DownloadId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        download_client: Option<String>,
    },
    /// One file imported ("On File Import"); also upgrades (`is_upgrade`).
    Download {
        media: ArrMedia,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        episodes: Vec<EpisodeRef>,
        file: ImportedFile,
        #[serde(default)]
        is_upgrade: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        download_id: Option<DownloadId>,
        /// Paths of files this import replaced.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        deleted_files: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        release: Option<Release>,
    },
    /// Sonarr v4.0.6+ "On Import Complete": also `eventType: Download`, told apart by
    /// `episodeFiles`/`fileCount`.
    ImportComplete {
        media: ArrMedia,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        episodes: Vec<EpisodeRef>,
        files: Vec<ImportedFile>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        download_id: Option<DownloadId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source_path: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        destination_path: Option<String>,
    },
    /// MovieFileDelete / EpisodeFileDelete.
    FileDelete {
        media: ArrMedia,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        episodes: Vec<EpisodeRef>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<ImportedFile>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// MovieDelete / SeriesDelete.
    MediaDelete {
        media: ArrMedia,
        #[serde(default)]
        deleted_files: bool,
    },
    Rename {
        media: ArrMedia,
        files: Vec<RenamedFile>,
    },
    /// MovieAdded / SeriesAdd: the *arr now knows the media and starts searching.
    MediaAdded {
        media: ArrMedia,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        add_method: Option<String>,
    },
    /// A completed download needs a manual import.
    ManualInteractionRequired {
        media: ArrMedia,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        episodes: Vec<EpisodeRef>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        download_id: Option<DownloadId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        messages: Vec<String>,
    },
    Health(Health),
    HealthRestored(Health),
    ApplicationUpdate {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous_version: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new_version: Option<String>,
    },
    /// The "Test" button of the connection.
    Test,
    /// An event type status-tracker does not use (yet); stored so a replay can use it later.
    Other {
        event_type: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    pub message: String,
    /// The health check's type, e.g. `IndexerStatusCheck`, `DownloadClientCheck`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wiki_url: Option<String>,
    /// Reported by the 4K instance (see [`ArrMedia::is_4k`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_4k: bool,
}

impl ArrEvent {
    pub fn media(&self) -> Option<&ArrMedia> {
        match self {
            Self::Grab { media, .. }
            | Self::Download { media, .. }
            | Self::ImportComplete { media, .. }
            | Self::FileDelete { media, .. }
            | Self::MediaDelete { media, .. }
            | Self::Rename { media, .. }
            | Self::MediaAdded { media, .. }
            | Self::ManualInteractionRequired { media, .. } => Some(media),
            _ => None,
        }
    }

    /// Whether the 4K instance sent it ([`ArrMedia::is_4k`]).
    pub fn is_4k(&self) -> bool {
        match self {
            Self::Health(h) | Self::HealthRestored(h) => h.is_4k,
            other => other.media().is_some_and(|m| m.is_4k),
        }
    }

    /// Marks the event as sent by the 4K instance.
    pub fn mark_4k(&mut self) {
        match self {
            Self::Grab { media, .. }
            | Self::Download { media, .. }
            | Self::ImportComplete { media, .. }
            | Self::FileDelete { media, .. }
            | Self::MediaDelete { media, .. }
            | Self::Rename { media, .. }
            | Self::MediaAdded { media, .. }
            | Self::ManualInteractionRequired { media, .. } => media.is_4k = true,
            Self::Health(h) | Self::HealthRestored(h) => h.is_4k = true,
            Self::ApplicationUpdate { .. } | Self::Test | Self::Other { .. } => {}
        }
    }

    /// The subject token, in the source's own vocabulary (`movie_added` vs `series_add`).
    pub fn event_name(&self, source: Source) -> String {
        let radarr = source == Source::Radarr;
        match self {
            Self::Grab { .. } => "grab".into(),
            Self::Download { .. } => "download".into(),
            Self::ImportComplete { .. } => "import_complete".into(),
            Self::FileDelete { .. } if radarr => "movie_file_delete".into(),
            Self::FileDelete { .. } => "episode_file_delete".into(),
            Self::MediaDelete { .. } if radarr => "movie_delete".into(),
            Self::MediaDelete { .. } => "series_delete".into(),
            Self::Rename { .. } => "rename".into(),
            Self::MediaAdded { .. } if radarr => "movie_added".into(),
            Self::MediaAdded { .. } => "series_add".into(),
            Self::ManualInteractionRequired { .. } => "manual_interaction_required".into(),
            Self::Health(_) => "health".into(),
            Self::HealthRestored(_) => "health_restored".into(),
            Self::ApplicationUpdate { .. } => "application_update".into(),
            Self::Test => "test".into(),
            Self::Other { event_type } => crate::subjects::event_token(event_type),
        }
    }
}
