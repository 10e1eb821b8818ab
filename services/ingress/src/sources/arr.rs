//! What Sonarr and Radarr webhooks have in common (same serializer, same release, file and
//! health shapes); `radarr.rs` and `sonarr.rs` add the movie and series parts.

use crate::payload::{Map, Value};
use shared::events::arr::{ArrEvent, Health, ImportedFile, Release, RenamedFile};
use shared::ids::DownloadId;

use super::ObjExt;

pub fn release(obj: Option<&Map<'_>>) -> Release {
    let Some(r) = obj else {
        return Release::default();
    };
    Release {
        quality: r.str_of("quality"),
        release_title: r.str_of("releaseTitle").or_else(|| r.str_of("title")),
        release_group: r.str_of("releaseGroup"),
        indexer: r.str_of("indexer"),
        size: r.u64_of("size"),
        release_type: r.str_of("releaseType"),
    }
}

pub fn file(f: &Map<'_>) -> Option<ImportedFile> {
    let path = f.str_of("path")?;
    let relative_path = f.str_of("relativePath");
    let episodes = shared::paths::episode_numbers(relative_path.as_deref().unwrap_or(&path));
    Some(ImportedFile {
        path: shared::paths::normalize(&path),
        relative_path,
        quality: f.str_of("quality"),
        size: f.u64_of("size"),
        source_path: f.str_of("sourcePath").map(|p| shared::paths::normalize(&p)),
        scene_name: f.str_of("sceneName"),
        episodes,
    })
}

pub fn download_id(root: &Map<'_>) -> Option<DownloadId> {
    root.str_of("downloadId").and_then(|s| DownloadId::parse(&s))
}

pub fn deleted_files(root: &Map<'_>) -> Vec<String> {
    root.array_of("deletedFiles")
        .iter()
        .filter_map(Value::as_object)
        .filter_map(|f| f.str_of("path"))
        .map(|p| shared::paths::normalize(&p))
        .collect()
}

pub fn renamed(files: &[Value<'_>]) -> Vec<RenamedFile> {
    files
        .iter()
        .filter_map(Value::as_object)
        .filter_map(|f| {
            Some(RenamedFile {
                path: shared::paths::normalize(&f.str_of("path")?),
                previous_path: f.str_of("previousPath").map(|p| shared::paths::normalize(&p)),
            })
        })
        .collect()
}

pub fn status_messages(root: &Map<'_>) -> Vec<String> {
    root.array_of("downloadStatusMessages")
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|m| m.array_of("messages").iter().filter_map(Value::as_str).map(str::to_owned))
        .collect()
}

pub fn health(root: &Map<'_>) -> Health {
    Health {
        level: root.str_of("level"),
        message: root.str_of("message").unwrap_or_default(),
        check: root.str_of("type"),
        wiki_url: root.str_of("wikiUrl"),
        is_4k: false,
    }
}

/// Events that need no movie or series: health, updates, tests, unknown types.
pub fn media_free_event(event_type: &str, root: &Map<'_>) -> Option<ArrEvent> {
    Some(match event_type {
        "Test" => ArrEvent::Test,
        "Health" => ArrEvent::Health(health(root)),
        "HealthRestored" => ArrEvent::HealthRestored(health(root)),
        "ApplicationUpdate" => ArrEvent::ApplicationUpdate {
            message: root.str_of("message"),
            previous_version: root.str_of("previousVersion"),
            new_version: root.str_of("newVersion"),
        },
        _ => return None,
    })
}

/// The poster's remote URL from an *arr `images` array.
pub fn poster(media: &Map<'_>) -> Option<String> {
    media.array_of("images").iter().filter_map(Value::as_object).find_map(|i| {
        (i.str_of("coverType").as_deref() == Some("poster"))
            .then(|| i.str_of("remoteUrl").or_else(|| i.str_of("url")))
            .flatten()
    })
}

pub fn tags(media: &Map<'_>) -> Vec<String> {
    media.array_of("tags").iter().filter_map(super::lenient_string).collect()
}
