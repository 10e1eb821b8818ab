//! Recovering the matches Shoko made while the bridge was not listening.
//!
//! SignalR has no replay: a `FileMatched` sent while the bridge was reconnecting, or not
//! running, never arrives. Shoko stamps a file's `Imported` time when it raises that event
//! (`ProcessFileJob`, `ManualLinkJob`), and its REST API lists files newest import first
//! (`GET /api/v3/File?sortOrder=-ImportedAt&include=XRefs`, Shoko 5.x). After each connection
//! the bridge reads that list back to the moment it stopped hearing Shoko and publishes a
//! `FileMatched` for every file matched since. Both ways give the same event id (see
//! [`crate::publish::event_id`]), so a match that arrived live as well is stored once.
//!
//! What cannot be recovered this way: detections, hashes, renames, moves and deletions, and
//! "not matched" (the correlator's matching timeout reports those files). Shoko 4.2 has no
//! file list; the bridge says so once and carries on.

use serde_json::{Map, Value};
use shared::events::shoko::{CrossRef, FileEvent, FileEventKind};
use shared::paths;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::normalize::{field, number, text};
use crate::rest::ShokoApi;
use crate::signalr::HubError;

pub(crate) const STEP: &str = "GET /api/v3/File";

/// A file event rebuilt from the REST API, with the file's JSON as its raw payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered {
    pub event: FileEvent,
    pub file: Value,
}

/// Reads Shoko's recently matched files.
#[derive(Debug, Clone)]
pub struct Catchup {
    api: ShokoApi,
    page_size: u32,
    /// A bound on one catch-up, whatever Shoko answers.
    max_pages: u32,
}

impl Catchup {
    pub fn new(api: ShokoApi) -> Self {
        Self { api, page_size: 100, max_pages: 50 }
    }

    /// Every file Shoko matched at or after `since`, oldest first.
    pub async fn matched_since(&self, since: OffsetDateTime) -> Result<Vec<Recovered>, HubError> {
        let size = self.page_size.to_string();
        let mut found = Vec::new();
        for page in 1..=self.max_pages {
            let page_text = page.to_string();
            let query = [
                ("pageSize", size.as_str()),
                ("page", page_text.as_str()),
                ("include", "XRefs"),
                ("sortOrder", "-ImportedAt"),
            ];
            let body = self.api.get(STEP, "File", &query).await?;
            let list = body.as_object().and_then(|o| field(o, "List")).and_then(Value::as_array);
            let Some(list) = list else {
                return Err(unexpected(&body));
            };
            let (recent, done) = matched_page(list, since);
            found.extend(recent);
            if done || list.len() < self.page_size as usize {
                break;
            }
            if page == self.max_pages {
                tracing::warn!(
                    files = found.len(),
                    "Shoko catch-up stopped at its page limit; older matches not recovered"
                );
            }
        }
        found.reverse();
        Ok(found)
    }
}

fn unexpected(body: &Value) -> HubError {
    let mut shown = body.to_string();
    shown.truncate(120);
    HubError::Transport { step: STEP, message: format!("expected {{\"Total\", \"List\"}}, got {shown}") }
}

/// The files of one page (newest import first) imported at or after `since`, as events, and
/// whether the page reached older ones (the end of what is wanted). A file never imported
/// sorts after every imported one.
fn matched_page(list: &[Value], since: OffsetDateTime) -> (Vec<Recovered>, bool) {
    let mut found = Vec::new();
    for file in list {
        let Some(obj) = file.as_object() else { continue };
        match imported_at(obj) {
            Some(at) if at >= since => {}
            _ => return (found, true),
        }
        if let Some(event) = matched_event(obj) {
            found.push(Recovered { event, file: file.clone() });
        }
    }
    (found, false)
}

fn imported_at(file: &Map<String, Value>) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text(file, "Imported")?, &Rfc3339).ok()
}

/// The `FileMatched` event a listed file stands for: its first accessible location (the one
/// Shoko names in its own event) and its cross-references. `None` without either.
pub fn matched_event(file: &Map<String, Value>) -> Option<FileEvent> {
    let locations: Vec<&Map<String, Value>> =
        field(file, "Locations")?.as_array()?.iter().filter_map(Value::as_object).collect();
    let accessible = |l: &Map<String, Value>| field(l, "IsAccessible").and_then(Value::as_bool) == Some(true);
    let location = locations.iter().copied().find(|l| accessible(l)).or(locations.first().copied())?;
    let mut event = FileEvent::new(FileEventKind::Matched, paths::normalize(text(location, "RelativePath")?));
    event.file_id = number(file, "ID");
    event.file_location_id = number(location, "ID");
    event.import_folder_id = number(location, "ImportFolderID");
    event.cross_refs = cross_refs(file);
    (!event.cross_refs.is_empty()).then_some(event)
}

/// `SeriesIDs: [{SeriesID: {ID, AniDB}, EpisodeIDs: [{ID, AniDB}]}]` flattened to one
/// reference per episode, as Shoko's own event lists them.
fn cross_refs(file: &Map<String, Value>) -> Vec<CrossRef> {
    let Some(Value::Array(series)) = field(file, "SeriesIDs") else {
        return Vec::new();
    };
    let mut refs = Vec::new();
    for s in series.iter().filter_map(Value::as_object) {
        let ids = field(s, "SeriesID").and_then(Value::as_object);
        let Some(Value::Array(episodes)) = field(s, "EpisodeIDs") else { continue };
        for e in episodes.iter().filter_map(Value::as_object) {
            refs.push(CrossRef {
                anidb_anime_id: ids.and_then(|i| number(i, "AniDB")),
                anidb_episode_id: number(e, "AniDB"),
                shoko_series_id: ids.and_then(|i| number(i, "ID")),
                shoko_episode_id: number(e, "ID"),
                shoko_group_id: None,
            });
        }
    }
    refs
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    fn page() -> Vec<Value> {
        let text = include_str!("../../../tests/fixtures/shoko/api_v3_file_recently_imported.json");
        let body: Value = serde_json::from_str(text).unwrap();
        body["List"].as_array().unwrap().clone()
    }

    #[test]
    fn the_fixture_gives_the_events_shoko_sent_for_the_same_files() {
        let (found, done) = matched_page(&page(), datetime!(2025-01-01 0:00 UTC));
        assert!(done, "the unmatched file ends the list");
        let files: Vec<Option<u64>> = found.iter().map(|r| r.event.file_id).collect();
        assert_eq!(files, [Some(3302), Some(3301)], "newest import first");
        let e = &found[1].event;
        assert_eq!(e.kind, FileEventKind::Matched);
        assert_eq!((e.file_location_id, e.import_folder_id), (Some(3401), Some(2)));
        assert!(e.relative_path.ends_with("S01E01 - That's How Love Starts, Ya Know! [WEBDL-1080p].mkv"));
        let x = &e.cross_refs[0];
        assert_eq!((x.anidb_anime_id, x.anidb_episode_id), (Some(18290), Some(290101)));
        assert_eq!((x.shoko_series_id, x.shoko_episode_id, x.shoko_group_id), (Some(211), Some(9101), None));
    }

    #[test]
    fn files_imported_before_the_cut_end_the_list() {
        let (found, done) = matched_page(&page(), datetime!(2025-01-18 10:23 UTC));
        assert!(done);
        assert_eq!(found.iter().map(|r| r.event.file_id).collect::<Vec<_>>(), [Some(3302)]);
    }

    #[test]
    fn a_file_in_two_places_is_named_by_the_accessible_one_and_every_episode_is_kept() {
        let file = json!({"ID": 9, "Imported": "2025-01-18T10:00:00Z",
            "Locations": [{"ID": 1, "ImportFolderID": 1, "RelativePath": "gone.mkv", "IsAccessible": false},
                          {"ID": 2, "ImportFolderID": 2, "RelativePath": "Show\\E01-02.mkv", "IsAccessible": true}],
            "SeriesIDs": [{"SeriesID": {"ID": 5, "AniDB": 50}, "EpisodeIDs": [{"ID": 7, "AniDB": 70}, {"ID": null, "AniDB": 71}]}]});
        let e = matched_event(file.as_object().unwrap()).unwrap();
        assert_eq!((e.file_location_id, e.relative_path.as_str()), (Some(2), "Show/E01-02.mkv"));
        let episodes: Vec<_> = e.cross_refs.iter().map(|x| (x.shoko_episode_id, x.anidb_episode_id)).collect();
        assert_eq!(episodes, [(Some(7), Some(70)), (None, Some(71))]);
    }

    #[test]
    fn a_file_without_cross_references_or_location_is_not_a_match() {
        let unlinked = json!({"ID": 1, "Locations": [{"ID": 1, "RelativePath": "a.mkv"}], "SeriesIDs": []});
        assert_eq!(matched_event(unlinked.as_object().unwrap()), None);
        let nowhere =
            json!({"ID": 1, "Locations": [], "SeriesIDs": [{"SeriesID": {"AniDB": 1}, "EpisodeIDs": [{"AniDB": 2}]}]});
        assert_eq!(matched_event(nowhere.as_object().unwrap()), None);
    }
}
