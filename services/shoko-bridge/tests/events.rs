//! Shoko's file events through the real bridge: from the test hub's WebSocket to NATS, in
//! order, normalized, with absolute paths.

mod support;

use serde_json::{Value, json};
use shared::events::shoko::{FileEvent, FileEventKind};
use shared::events::{Fact, MediaEnvelope};
use support::hub::record_of;
use support::{HubOptions, KEY, World, detail, record};

const ANIME: &str = "/data/media/anime/";

fn file_event(envelope: &MediaEnvelope) -> &FileEvent {
    match &envelope.data.event {
        Fact::Shoko(e) => e,
        other => panic!("not a Shoko file event: {other:?}"),
    }
}

fn arguments(fixture: &str) -> Value {
    serde_json::from_str::<Value>(&support::hub::fixture_text(fixture)).unwrap()["arguments"].clone()
}

#[tokio::test]
async fn fixture_events_reach_nats_in_order_with_absolute_paths() {
    let mut w = World::start(HubOptions::default()).await;
    w.hub.wait_for_handshakes(1).await;
    w.hub.send(record("signalr_shokoevent_onconnected.json"));
    w.hub.send(record("signalr_file_detected_s01e01.json"));
    // Two records in one WebSocket message, as ASP.NET Core batches them.
    w.hub.send(record("signalr_file_detected_s01e02.json") + &record("signalr_file_hashed_s01e01.json"));
    for name in ["signalr_file_hashed_s01e02", "signalr_file_matched_s01e01", "signalr_series_updated_dan_da_dan"] {
        w.hub.send(record(&format!("{name}.json")));
    }
    w.hub.send(record("signalr_file_matched_s01e02.json"));
    w.hub.send(record("signalr_file_renamed_s01e01.json"));

    let expected = [
        ("file_detected", "signalr_file_detected_s01e01.json"),
        ("file_detected", "signalr_file_detected_s01e02.json"),
        ("file_hashed", "signalr_file_hashed_s01e01.json"),
        ("file_hashed", "signalr_file_hashed_s01e02.json"),
        ("file_matched", "signalr_file_matched_s01e01.json"),
        ("file_matched", "signalr_file_matched_s01e02.json"),
        ("file_renamed", "signalr_file_renamed_s01e01.json"),
    ];
    let mut envelopes = Vec::new();
    for (event, fixture) in expected {
        let (subject, envelope) = w.next_event().await;
        assert_eq!(subject, format!("media.shoko.{event}"), "order broken at {fixture}");
        assert_eq!(envelope.kind, subject);
        assert_eq!(envelope.source, shoko_bridge::SOURCE);
        assert!(envelope.id.starts_with("shoko-"), "{}", envelope.id);
        assert_eq!(envelope.data.raw.as_ref(), Some(&arguments(fixture)), "raw arguments kept");
        let e = file_event(&envelope);
        let relative = arguments(fixture)[0]["RelativePath"].as_str().unwrap().to_owned();
        assert_eq!(e.path.as_deref(), Some(format!("{ANIME}{relative}").as_str()));
        assert_eq!(envelope.subject.as_deref(), Some(format!("path:{ANIME}{relative}").as_str()));
        envelopes.push(envelope);
    }
    let matched = file_event(&envelopes[4]);
    assert_eq!(matched.cross_refs[0].anidb_anime_id, Some(18290));
    assert_eq!(matched.cross_refs[0].shoko_episode_id, Some(9101));
    let renamed = file_event(&envelopes[6]);
    let old = "DAN DA DAN/Season 01/DAN DA DAN - S01E01 - Thats How Love Starts Ya Know [WEBDL-1080p].mkv";
    assert_eq!(renamed.previous_path.as_deref(), Some(format!("{ANIME}{old}").as_str()));

    let stored = w.bus.js.get_stream("MEDIA").await.unwrap().info().await.unwrap().state.messages;
    assert_eq!(stored, 7, "every event stored in the MEDIA stream");
    let health = w.health_where(|h| detail(h, "events_forwarded") == "7").await;
    assert_eq!(detail(&health, "shoko"), "connected");
    assert!(!detail(&health, "last_event_at").is_empty());
    assert!(!serde_json::to_string(&health).unwrap().contains(KEY), "health must never show the key");
    assert_eq!(w.hub.folder_requests(), 1, "import folders are cached");
    assert_eq!(detail(&health, "import_folders"), "2 known");
    assert!(w.hub.key_in_header_and_query() >= 2, "negotiate and upgrade carry the key both ways");
    assert_eq!(w.hub.unnegotiated(), 0, "the WebSocket uses the negotiated token");
    w.stop().await.unwrap();
}

#[tokio::test]
async fn an_event_in_the_same_message_as_the_handshake_reply_is_kept() {
    let on_connect = vec![record("signalr_shokoevent_onconnected.json"), record("signalr_file_detected_s01e01.json")];
    let mut w = World::start(HubOptions { on_connect, ..HubOptions::default() }).await;
    let (subject, envelope) = w.next_event().await;
    assert_eq!(subject, "media.shoko.file_detected");
    assert!(file_event(&envelope).relative_path.contains("S01E01"));
    w.stop().await.unwrap();
}

#[tokio::test]
async fn an_unknown_target_in_the_same_message_does_not_lose_the_known_one() {
    let mut w = World::start(HubOptions::default()).await;
    w.hub.wait_for_handshakes(1).await;
    let unknown = record_of(&json!({"type": 1, "target": "ShokoEvent:SomethingNew", "arguments": [{"X": 1}]}));
    let completion = record_of(&json!({"type": 3, "invocationId": "7", "result": null}));
    let batch = [record("signalr_series_updated_dan_da_dan.json"), unknown, completion];
    w.hub.send(batch.concat() + &record("signalr_file_matched_s01e01.json"));
    w.hub.send(record("signalr_file_detected_s01e02.json"));
    let (subject, _) = w.next_event().await;
    assert_eq!(subject, "media.shoko.file_matched");
    // The next one is the next file event: nothing was published for the unknown targets.
    let (subject, _) = w.next_event().await;
    assert_eq!(subject, "media.shoko.file_detected");
    w.stop().await.unwrap();
}

#[tokio::test]
async fn v42_camel_case_payloads_are_normalized() {
    let mut w = World::start(HubOptions::default()).await;
    w.hub.wait_for_handshakes(1).await;
    let args = json!([{"fileID": 3303, "importFolderID": 2, "relativePath": "DAN DA DAN/Season 01/DAN DA DAN - S01E03.mkv",
        "crossRefs": [{"episodeID": 9103, "seriesID": 211, "groupID": 187}]}]);
    w.hub.send(record_of(&json!({"type": 1, "target": "ShokoEvent:FileMatched", "arguments": args})));
    let (subject, envelope) = w.next_event().await;
    assert_eq!(subject, "media.shoko.file_matched");
    let e = file_event(&envelope);
    assert_eq!((e.kind, e.file_id, e.import_folder_id), (FileEventKind::Matched, Some(3303), Some(2)));
    assert_eq!(e.path.as_deref(), Some("/data/media/anime/DAN DA DAN/Season 01/DAN DA DAN - S01E03.mkv"));
    assert_eq!((e.cross_refs[0].shoko_episode_id, e.cross_refs[0].shoko_series_id), (Some(9103), Some(211)));
    w.stop().await.unwrap();
}

#[tokio::test]
async fn a_windows_import_folder_gives_forward_slash_paths() {
    let folders = json!([{"ID": 1, "Path": "D:\\Anime\\", "Name": "Anime", "DropFolderType": "Destination"}]);
    let mut w = World::start(HubOptions { folders, ..HubOptions::default() }).await;
    w.hub.wait_for_handshakes(1).await;
    let args = json!([{"FileID": 1, "FileLocationID": 1, "ImportFolderID": 1, "CrossReferences": [],
        "RelativePath": "DAN DA DAN\\Season 01\\DAN DA DAN - S01E01.mkv"}]);
    w.hub.send(record_of(&json!({"type": 1, "target": "ShokoEvent:FileHashed", "arguments": args})));
    let (_, envelope) = w.next_event().await;
    let e = file_event(&envelope);
    assert_eq!(e.path.as_deref(), Some("D:/Anime/DAN DA DAN/Season 01/DAN DA DAN - S01E01.mkv"));
    assert_eq!(e.relative_path, "DAN DA DAN/Season 01/DAN DA DAN - S01E01.mkv");
    w.stop().await.unwrap();
}

#[tokio::test]
async fn a_new_import_folder_is_fetched_and_an_unknown_one_leaves_the_path_empty() {
    let mut w = World::start(HubOptions::default()).await;
    w.hub.wait_for_handshakes(1).await;
    let hashed = |folder: u64| {
        let args = json!([{"FileID": folder, "ImportFolderID": folder, "RelativePath": "Show/Show - S01E01.mkv"}]);
        record_of(&json!({"type": 1, "target": "ShokoEvent:FileHashed", "arguments": args}))
    };
    w.hub.send(hashed(2));
    assert_eq!(file_event(&w.next_event().await.1).path.as_deref(), Some("/data/media/anime/Show/Show - S01E01.mkv"));
    w.hub.set_folders(json!([{"ID": 2, "Path": "/data/media/anime/"}, {"ID": 3, "Path": "/mnt/new/"}]));
    w.hub.send(hashed(3));
    assert_eq!(file_event(&w.next_event().await.1).path.as_deref(), Some("/mnt/new/Show/Show - S01E01.mkv"));
    assert_eq!(w.hub.folder_requests(), 2, "refreshed once, on the miss");
    w.hub.send(hashed(99));
    let (subject, envelope) = w.next_event().await;
    assert_eq!(subject, "media.shoko.file_hashed", "published even without a path");
    assert_eq!(file_event(&envelope).path, None);
    assert_eq!(file_event(&envelope).relative_path, "Show/Show - S01E01.mkv");
    w.stop().await.unwrap();
}

#[tokio::test]
async fn refused_import_folders_still_publish_the_event_and_show_in_health() {
    let hub = HubOptions { open_hub: true, ..HubOptions::default() };
    let mut w = World::start_with(hub, |hub| support::fast_settings(hub, None)).await;
    w.hub.wait_for_handshakes(1).await;
    w.hub.send(record("signalr_file_hashed_s01e01.json"));
    let (subject, envelope) = w.next_event().await;
    assert_eq!(subject, "media.shoko.file_hashed");
    assert_eq!(file_event(&envelope).path, None);
    let health = w.health_where(|h| !detail(h, "import_folders").is_empty()).await;
    assert!(detail(&health, "import_folders").contains("401"), "{health:?}");
    w.stop().await.unwrap();
}

#[tokio::test]
async fn an_unreadable_file_event_is_kept_on_the_rejected_subject() {
    let mut w = World::start(HubOptions::default()).await;
    w.hub.wait_for_handshakes(1).await;
    let broken = json!({"type": 1, "target": "ShokoEvent:FileHashed", "arguments": [{"FileID": 5}]});
    w.hub.send(record_of(&broken));
    let (subject, envelope) = w.next_event().await;
    assert_eq!(subject, "media.rejected.shoko");
    let Fact::Rejected(rejected) = &envelope.data.event else { panic!("{envelope:?}") };
    assert!(rejected.reason.contains("RelativePath"), "{}", rejected.reason);
    assert_eq!(serde_json::from_str::<Value>(&rejected.body).unwrap(), broken);
    w.stop().await.unwrap();
}
