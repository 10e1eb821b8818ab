//! Shoko's `ShokoEvent:File*` invocations turned into [`FileEvent`]s, before the import
//! folder is resolved.
//!
//! Shoko v5 writes PascalCase (`RelativePath`, `CrossReferences[{EpisodeID…}]`, Newtonsoft's
//! default), v4.2 writes camelCase (`relativePath`, `crossRefs[{episodeID…}]`,
//! System.Text.Json's default). Keys are therefore looked up ignoring case, with the two
//! spellings of the cross-reference list as aliases.

use serde_json::{Map, Value};
use shared::events::shoko::{CrossRef, FileEvent, FileEventKind};
use shared::paths;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NormalizeError {
    #[error("{target}: the first argument is not an object")]
    NotAnObject { target: String },
    #[error("{target}: no RelativePath")]
    NoRelativePath { target: String },
}

/// The file event an invocation carries, `Ok(None)` for targets that are not file events
/// (`OnConnected`, `SeriesUpdated`, other feeds, Shoko v6's `file:*` names).
pub fn file_event(target: &str, arguments: &Value) -> Result<Option<FileEvent>, NormalizeError> {
    let Some(kind) = FileEventKind::from_target(target) else {
        return Ok(None);
    };
    let Some(arg) = arguments.get(0).and_then(Value::as_object) else {
        return Err(NormalizeError::NotAnObject { target: target.to_owned() });
    };
    let relative = text(arg, "RelativePath").ok_or_else(|| NormalizeError::NoRelativePath { target: target.into() })?;
    let mut event = FileEvent::new(kind, paths::normalize(relative));
    event.file_id = number(arg, "FileID");
    event.file_location_id = number(arg, "FileLocationID");
    event.import_folder_id = number(arg, "ImportFolderID");
    event.cross_refs = cross_refs(arg);
    event.auto_match_attempts = number(arg, "AutoMatchAttempts");
    event.is_udp_banned = field(arg, "IsUDPBanned").and_then(Value::as_bool);
    event.previous_import_folder_id = number(arg, "PreviousImportFolderID");
    event.previous_relative_path = text(arg, "PreviousRelativePath").map(paths::normalize);
    event.previous_file_name = text(arg, "PreviousFileName").map(str::to_owned);
    Ok(Some(event))
}

/// A key of `obj`, ignoring ASCII case.
pub(crate) fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

pub(crate) fn text<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    field(obj, name).and_then(Value::as_str).filter(|s| !s.trim().is_empty())
}

/// Ids are JSON numbers; a number in a string is accepted too.
pub(crate) fn number(obj: &Map<String, Value>, name: &str) -> Option<u64> {
    match field(obj, name)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn cross_refs(obj: &Map<String, Value>) -> Vec<CrossRef> {
    let list = field(obj, "CrossReferences").or_else(|| field(obj, "CrossRefs"));
    let Some(Value::Array(items)) = list else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(Value::as_object)
        .map(|x| CrossRef {
            anidb_anime_id: number(x, "AnidbAnimeID"),
            anidb_episode_id: number(x, "AnidbEpisodeID"),
            shoko_series_id: number(x, "SeriesID"),
            shoko_episode_id: number(x, "EpisodeID"),
            shoko_group_id: number(x, "GroupID"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fixture(name: &str) -> (String, Value) {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/shoko/");
        let text = std::fs::read_to_string(format!("{dir}{name}")).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        (v["target"].as_str().unwrap().to_owned(), v["arguments"].clone())
    }

    fn from_fixture(name: &str) -> FileEvent {
        let (target, args) = fixture(name);
        file_event(&target, &args).unwrap().unwrap()
    }

    #[test]
    fn v5_file_matched_keeps_ids_and_every_cross_reference() {
        let e = from_fixture("signalr_file_matched_s01e01.json");
        assert_eq!(e.kind, FileEventKind::Matched);
        assert_eq!((e.file_id, e.file_location_id, e.import_folder_id), (Some(3301), Some(3401), Some(2)));
        assert!(e.relative_path.ends_with("S01E01 - That's How Love Starts, Ya Know! [WEBDL-1080p].mkv"));
        let x = &e.cross_refs[0];
        assert_eq!((x.anidb_anime_id, x.anidb_episode_id), (Some(18290), Some(290101)));
        assert_eq!((x.shoko_series_id, x.shoko_episode_id, x.shoko_group_id), (Some(211), Some(9101), Some(187)));
        assert_eq!(e.path, None, "resolving the folder is the bridge's job");
    }

    #[test]
    fn v5_file_detected_has_only_a_path_and_a_folder() {
        let e = from_fixture("signalr_file_detected_s01e02.json");
        assert_eq!(e.kind, FileEventKind::Detected);
        assert_eq!((e.file_id, e.import_folder_id), (None, Some(2)));
        assert!(e.cross_refs.is_empty());
    }

    #[test]
    fn v5_file_renamed_keeps_the_previous_file_name() {
        let e = from_fixture("signalr_file_renamed_s01e01.json");
        assert_eq!(e.kind, FileEventKind::Renamed);
        assert_eq!(
            e.previous_file_name.as_deref(),
            Some("DAN DA DAN - S01E01 - Thats How Love Starts Ya Know [WEBDL-1080p].mkv")
        );
    }

    #[test]
    fn v5_file_moved_and_not_matched_carry_their_extra_fields() {
        let moved = json!([{"FileID": 5, "ImportFolderID": 2, "RelativePath": "New/a.mkv",
            "PreviousRelativePath": "Old\\a.mkv", "PreviousImportFolderID": 1, "CrossReferences": []}]);
        let e = file_event("ShokoEvent:FileMoved", &moved).unwrap().unwrap();
        assert_eq!((e.previous_import_folder_id, e.previous_relative_path.as_deref()), (Some(1), Some("Old/a.mkv")));
        let missed = json!([{"FileID": 6, "ImportFolderID": 2, "RelativePath": "b.mkv", "CrossReferences": [],
            "AutoMatchAttempts": 3, "HasCrossReferences": false, "IsUDPBanned": true}]);
        let e = file_event("ShokoEvent:FileNotMatched", &missed).unwrap().unwrap();
        assert_eq!((e.kind, e.auto_match_attempts, e.is_udp_banned), (FileEventKind::NotMatched, Some(3), Some(true)));
    }

    #[test]
    fn v42_camel_case_payloads_give_the_same_event() {
        let args = json!([{"relativePath": "Show\\Season 1\\Show - S01E03.mkv", "fileID": "77", "importFolderID": 2,
            "crossRefs": [{"episodeID": 9103, "seriesID": 211, "groupID": 187}]}]);
        let e = file_event("ShokoEvent:FileMatched", &args).unwrap().unwrap();
        assert_eq!(e.relative_path, "Show/Season 1/Show - S01E03.mkv");
        assert_eq!((e.file_id, e.import_folder_id), (Some(77), Some(2)));
        let x = &e.cross_refs[0];
        assert_eq!((x.shoko_episode_id, x.shoko_series_id, x.shoko_group_id), (Some(9103), Some(211), Some(187)));
        assert_eq!(x.anidb_anime_id, None, "v4.2 sends no AniDB ids");
    }

    #[test]
    fn other_targets_are_not_file_events() {
        for name in ["signalr_shokoevent_onconnected.json", "signalr_series_updated_dan_da_dan.json"] {
            let (target, args) = fixture(name);
            assert_eq!(file_event(&target, &args), Ok(None), "{target}");
        }
        assert_eq!(file_event("file:hashed", &json!([{"RelativePath": "x"}])), Ok(None));
    }

    #[test]
    fn a_file_event_without_a_path_is_an_error_not_a_silent_skip() {
        let err = file_event("ShokoEvent:FileHashed", &json!([{"FileID": 1}])).unwrap_err();
        assert!(err.to_string().contains("RelativePath"), "{err}");
        assert!(file_event("ShokoEvent:FileHashed", &json!([null])).is_err());
    }
}
