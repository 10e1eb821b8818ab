//! Import folders (`GET /api/v3/ImportFolder`): Shoko's events name a folder id and a path
//! relative to it; the correlator needs the absolute path.
//!
//! The list is cached and fetched again when an event names a folder the cache does not
//! know (a folder added in Shoko after we started), at most once per `min_refresh`.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use shared::events::shoko::{FileEvent, FileEventKind};
use shared::paths;
use tokio::time::Instant;

use crate::rest::ShokoApi;
use crate::signalr::HubError;
use crate::status::Status;

/// The import folders Shoko knows, by id.
#[derive(Debug)]
pub struct ImportFolders {
    api: ShokoApi,
    min_refresh: Duration,
    by_id: HashMap<u64, String>,
    fetched_at: Option<Instant>,
    status: Status,
}

impl ImportFolders {
    pub fn new(api: ShokoApi, min_refresh: Duration, status: Status) -> Self {
        Self { api, min_refresh, by_id: HashMap::new(), fetched_at: None, status }
    }

    /// Fills in `path` (and `previous_path` for moves and renames) when the folders are known.
    pub async fn resolve(&mut self, event: &mut FileEvent) {
        if let Some(id) = event.import_folder_id
            && let Some(root) = self.path_of(id).await
        {
            event.path = Some(join(&root, &event.relative_path));
        }
        event.previous_path = match event.kind {
            FileEventKind::Moved => self.previous_location(event).await,
            FileEventKind::Renamed => renamed_from(event),
            _ => None,
        };
    }

    async fn previous_location(&mut self, event: &FileEvent) -> Option<String> {
        let relative = event.previous_relative_path.as_deref()?;
        let id = event.previous_import_folder_id.or(event.import_folder_id)?;
        Some(join(&self.path_of(id).await?, relative))
    }

    /// The folder's path, fetching the list on a miss.
    async fn path_of(&mut self, id: u64) -> Option<String> {
        if !self.by_id.contains_key(&id) && self.may_refresh() {
            let outcome = self.refresh().await;
            if let Err(error) = &outcome {
                tracing::warn!(%error, "cannot list Shoko's import folders");
            }
            self.status.import_folders(outcome.as_ref().map(|()| self.by_id.len()));
        }
        let found = self.by_id.get(&id).cloned();
        if found.is_none() {
            tracing::warn!(import_folder_id = id, "unknown Shoko import folder: event published without a path");
        }
        found
    }

    fn may_refresh(&self) -> bool {
        self.fetched_at.is_none_or(|at| at.elapsed() >= self.min_refresh)
    }

    /// Fetches the list; the cache is replaced only by a good answer.
    pub async fn refresh(&mut self) -> Result<(), HubError> {
        self.fetched_at = Some(Instant::now());
        let body = self.api.get("GET /api/v3/ImportFolder", "ImportFolder", &[]).await?;
        self.by_id = parse_folders(&body);
        tracing::debug!(folders = self.by_id.len(), "Shoko import folders fetched");
        Ok(())
    }
}

/// `[{"ID": 2, "Path": "/data/media/anime/", ...}]` (camelCase accepted too) → id → path.
fn parse_folders(body: &Value) -> HashMap<u64, String> {
    let key = |o: &serde_json::Map<String, Value>, name: &str| {
        o.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    };
    body.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .filter_map(|o| Some((key(o, "ID")?.as_u64()?, key(o, "Path")?.as_str()?.to_owned())))
        .collect()
}

/// Folder + relative path with `/` separators. Shoko's folder paths end with the host's
/// separator and relative paths have none in front, but normalizing makes either optional.
pub fn join(folder: &str, relative: &str) -> String {
    paths::normalize(&format!("{folder}/{relative}"))
}

/// A rename keeps the folder: the old path is the new one with the old file name.
fn renamed_from(event: &FileEvent) -> Option<String> {
    let path = event.path.as_deref()?;
    let old = event.previous_file_name.as_deref()?;
    let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
    Some(format!("{dir}/{old}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_and_windows_folders_join_with_forward_slashes() {
        assert_eq!(
            join("/data/media/anime/", "DAN DA DAN/Season 01/e1.mkv"),
            "/data/media/anime/DAN DA DAN/Season 01/e1.mkv"
        );
        assert_eq!(join(r"D:\Anime\", r"DAN DA DAN\Season 01\e1.mkv"), "D:/Anime/DAN DA DAN/Season 01/e1.mkv");
    }

    #[test]
    fn the_import_folder_fixture_parses() {
        let text = include_str!("../../../tests/fixtures/shoko/api_v3_importfolder.json");
        let folders = parse_folders(&serde_json::from_str(text).unwrap());
        assert_eq!(folders.get(&2).map(String::as_str), Some("/data/media/anime/"));
        assert_eq!(folders.len(), 2);
    }

    #[test]
    fn a_rename_keeps_the_directory() {
        let mut e = FileEvent::new(FileEventKind::Renamed, "S/new.mkv");
        e.path = Some("/a/S/new.mkv".into());
        e.previous_file_name = Some("old.mkv".into());
        assert_eq!(renamed_from(&e).as_deref(), Some("/a/S/old.mkv"));
    }
}
