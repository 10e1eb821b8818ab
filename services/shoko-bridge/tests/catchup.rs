//! The catch-up: matches Shoko made while the bridge was not listening are read back from the
//! test hub's `GET /api/v3/File` and published like the hub's own events.

mod support;

use std::time::Duration;

use serde_json::Value;
use shared::events::shoko::{FileEvent, FileEventKind};
use shared::events::{Fact, MediaEnvelope};
use shoko_bridge::ShokoSettings;
use support::hub::fixture_files;
use support::{HubOptions, KEY, World, detail, fast_settings, record};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const ANIME: &str = "/data/media/anime/";

fn file_event(envelope: &MediaEnvelope) -> &FileEvent {
    match &envelope.data.event {
        Fact::Shoko(e) => e,
        other => panic!("not a Shoko file event: {other:?}"),
    }
}

fn imported(file: &mut Value, at: OffsetDateTime) {
    file["Imported"] = at.format(&Rfc3339).unwrap().into();
}

/// The fixture's E01 file (3301), matched at `at`.
fn e01_matched_at(at: OffsetDateTime) -> Value {
    let mut file = fixture_files().into_iter().find(|f| f["ID"] == 3301).unwrap();
    imported(&mut file, at);
    file
}

async fn stored_in_media(w: &World) -> u64 {
    w.bus.js.get_stream("MEDIA").await.unwrap().info().await.unwrap().state.messages
}

#[tokio::test]
async fn matches_made_before_the_bridge_started_are_read_back_page_by_page_oldest_first() {
    let now = OffsetDateTime::now_utc();
    let mut files = fixture_files();
    for f in &mut files {
        match f["ID"].as_u64() {
            Some(3301) => imported(f, now - Duration::from_secs(3600)),
            Some(3302) => imported(f, now - Duration::from_secs(1800)),
            _ => {}
        }
    }
    // More than a page of older matches, and one from before the window.
    let template = e01_matched_at(now);
    for i in 0..131u64 {
        let mut f = template.clone();
        f["ID"] = (5000 + i).into();
        f["Locations"][0]["RelativePath"] = format!("Bulk/File {i:03}.mkv").into();
        f["SeriesIDs"][0]["EpisodeIDs"][0]["AniDB"] = (600_000 + i).into();
        let at = if i == 130 { now - Duration::from_secs(3 * 86_400) } else { now - Duration::from_secs(7200 + i) };
        imported(&mut f, at);
        files.push(f);
    }
    let mut w = World::start(HubOptions { files: Some(files), ..HubOptions::default() }).await;

    let mut order = Vec::new();
    for _ in 0..132 {
        let (subject, envelope) = w.next_event().await;
        assert_eq!(subject, "media.shoko.file_matched");
        let e = file_event(&envelope);
        assert_eq!(e.kind, FileEventKind::Matched);
        assert_eq!(e.path.as_deref(), Some(format!("{ANIME}{}", e.relative_path).as_str()), "path resolved");
        assert_eq!(envelope.data.raw.as_ref().unwrap()["ID"].as_u64(), e.file_id, "the file's JSON is kept as raw");
        order.push(e.file_id.unwrap());
    }
    let mut expected: Vec<u64> = (5000..5130).rev().collect();
    expected.extend([3301, 3302]);
    assert_eq!(order, expected, "oldest match first; the one before the window left out");
    w.health_where(|h| detail(h, "catch_up") == "132 matches read back" && detail(h, "events_forwarded") == "132")
        .await;

    let queries = w.hub.file_queries();
    let pages: Vec<&str> = queries.iter().map(|q| q["page"].as_str()).collect();
    assert_eq!(pages, ["1", "2"], "stops at the first page that reaches older files");
    for q in &queries {
        assert_eq!((q["sortOrder"].as_str(), q["include"].as_str()), ("-ImportedAt", "XRefs"));
    }
    w.stop().await.unwrap();
}

#[tokio::test]
async fn a_match_made_while_the_bridge_was_disconnected_is_published_after_it_reconnects() {
    let mut w = World::start(HubOptions { files: Some(Vec::new()), ..HubOptions::default() }).await;
    w.hub.wait_for_handshakes(1).await;
    w.health_where(|h| detail(h, "catch_up") == "0 matches read back").await;

    // Shoko matches E01 and the connection drops: the hub never sends the event.
    w.hub.set_files(vec![e01_matched_at(OffsetDateTime::now_utc())]);
    w.hub.abort();
    w.hub.wait_for_handshakes(2).await;
    let (subject, recovered) = w.next_event().await;
    assert_eq!(subject, "media.shoko.file_matched");
    let e = file_event(&recovered);
    assert_eq!((e.file_id, e.file_location_id, e.import_folder_id), (Some(3301), Some(3401), Some(2)));
    let relative = "DAN DA DAN/Season 01/DAN DA DAN - S01E01 - That's How Love Starts, Ya Know! [WEBDL-1080p].mkv";
    assert_eq!(e.path.as_deref(), Some(format!("{ANIME}{relative}").as_str()));
    assert_eq!((e.cross_refs[0].anidb_anime_id, e.cross_refs[0].anidb_episode_id), (Some(18290), Some(290101)));
    assert_eq!(recovered.subject.as_deref(), Some(format!("path:{ANIME}{relative}").as_str()));
    assert_eq!(stored_in_media(&w).await, 1);

    // Shoko's own event for the same match is the same event: stored once.
    w.hub.send(record("signalr_file_matched_s01e01.json"));
    let (_, live) = w.next_event().await;
    assert_eq!(live.id, recovered.id, "the hub's event and the recovered one share their id");
    w.hub.send(record("signalr_file_detected_s01e02.json"));
    assert_eq!(w.next_event().await.0, "media.shoko.file_detected");
    assert_eq!(stored_in_media(&w).await, 2, "the second copy of the match was not stored");
    w.stop().await.unwrap();
}

#[tokio::test]
async fn a_shoko_without_a_file_list_is_asked_once_and_the_bridge_carries_on() {
    let mut w = World::start(HubOptions { files: None, ..HubOptions::default() }).await;
    w.hub.wait_for_handshakes(1).await;
    let health = w.health_where(|h| !detail(h, "catch_up").is_empty()).await;
    assert!(detail(&health, "catch_up").contains("not supported"), "{health:?}");
    w.hub.abort();
    w.hub.wait_for_handshakes(2).await;
    w.hub.send(record("signalr_file_detected_s01e01.json"));
    assert_eq!(w.next_event().await.0, "media.shoko.file_detected");
    assert_eq!(w.hub.file_queries().len(), 1, "not asked again after reconnecting");
    w.stop().await.unwrap();
}

#[tokio::test]
async fn a_zero_window_turns_the_catch_up_off() {
    let hub = HubOptions { files: Some(vec![e01_matched_at(OffsetDateTime::now_utc())]), ..HubOptions::default() };
    let mut w =
        World::start_with(hub, |hub| ShokoSettings { catchup_window: Duration::ZERO, ..fast_settings(hub, Some(KEY)) })
            .await;
    w.hub.wait_for_handshakes(1).await;
    w.hub.abort();
    w.hub.wait_for_handshakes(2).await;
    w.hub.send(record("signalr_file_detected_s01e02.json"));
    assert_eq!(w.next_event().await.0, "media.shoko.file_detected", "nothing recovered before it");
    assert!(w.hub.file_queries().is_empty());
    w.stop().await.unwrap();
}

/// NATS stores nothing (its stream is gone) while the hub keeps sending: once `queue_max`
/// events wait, the bridge leaves the hub instead of holding more, reconnects when NATS has
/// taken them, and reads back the match it could not hear meanwhile.
#[tokio::test]
async fn a_full_queue_makes_the_bridge_leave_the_hub_until_nats_takes_it_then_catch_up() {
    let hub = HubOptions { files: Some(Vec::new()), ..HubOptions::default() };
    let w = World::start_with(hub, |hub| ShokoSettings { queue_max: 3, ..fast_settings(hub, Some(KEY)) }).await;
    w.hub.wait_for_handshakes(1).await;
    w.health_where(|h| detail(h, "catch_up") == "0 matches read back").await;
    w.bus.js.delete_stream("MEDIA").await.unwrap();
    let connected = w.hub.handshakes();

    // The publisher retries one event; three wait; one more finds the queue full.
    for name in [
        "signalr_file_detected_s01e01.json",
        "signalr_file_hashed_s01e01.json",
        "signalr_file_detected_s01e02.json",
        "signalr_file_hashed_s01e02.json",
        "signalr_file_renamed_s01e01.json",
    ] {
        w.hub.send(record(name));
    }
    let health = w.health_where(|h| detail(h, "last_error").contains("wait for NATS")).await;
    assert_eq!(detail(&health, "shoko"), "disconnected", "{health:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.hub.handshakes(), connected, "no reconnection while NATS has not taken the queue");

    // Meanwhile Shoko matches E02; then NATS stores messages again.
    let mut e02 = fixture_files().into_iter().find(|f| f["ID"] == 3302).unwrap();
    imported(&mut e02, OffsetDateTime::now_utc());
    w.hub.set_files(vec![e02]);
    w.bus.ensure_streams().await.unwrap();
    w.hub.wait_for_handshakes(connected + 1).await;
    let stream = w.bus.js.get_stream("MEDIA").await.unwrap();
    let deadline = tokio::time::Instant::now() + support::WAIT;
    let matched = loop {
        if let Ok(last) = stream.get_last_raw_message_by_subject("media.shoko.file_matched").await {
            break last;
        }
        assert!(tokio::time::Instant::now() < deadline, "the match made while away was not read back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let envelope: MediaEnvelope = serde_json::from_slice(&matched.payload).unwrap();
    assert_eq!(file_event(&envelope).file_id, Some(3302));
    // What waited (three queued, and the one being retried if the publisher had taken it) is
    // stored too: nothing that was queued is lost.
    let stored = stored_in_media(&w).await;
    assert!((4..=5).contains(&stored), "{stored} messages: the queued events and the match");
    w.stop().await.unwrap();
}
