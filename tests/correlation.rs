//! Correlation scenarios (issue 3): the fixtures of `tests/fixtures` replayed in lifecycle order
//! and shuffled, into a real SQLite store, asserting final states, every episode and the
//! timeline; plus a property test that every permutation of a valid sequence ends the same.

mod scenario;

use proptest::prelude::*;
use scenario::*;
use serde_json::json;
use shared::model::State;
use shared::subjects::Source::{Jellyfin, Jellyseerr, Radarr, Sonarr};

const BATMAN: &str = "5e3f9a1c7b2d4e6f8091a2b3c4d5e6f708192a3b";
const BATMAN_SIZE: u64 = 15_789_453_312;
const DANDADAN: &str = "c0ffee4d2a9b8c7d6e5f40312a1b0c9d8e7f6a5b";
const SEV_E01: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567";
const SEV_E02: &str = "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432";

fn film() -> Vec<Step> {
    vec![
        fx(Jellyseerr, "jellyseerr/webhook_media_pending_movie_the_batman_req42.json", 0),
        fx(Jellyseerr, "jellyseerr/webhook_media_approved_movie_the_batman_req42.json", 1),
        fx(Radarr, "radarr/webhook_movie_added_the_batman.json", 2),
        fx(Radarr, "radarr/webhook_grab_the_batman.json", 3),
        progress(BATMAN, 0.4, BATMAN_SIZE, 5),
        finished(BATMAN, 10),
        fx(Radarr, "radarr/webhook_download_the_batman.json", 11),
        fx(Jellyfin, "jellyfin/item_added_movie_the_batman.json", 12),
        fx(Jellyseerr, "jellyseerr/webhook_media_available_movie_the_batman_req42.json", 13),
    ]
}

const ANIME_FOLDER: &str = "/data/media/anime/";

fn anime() -> Vec<Step> {
    vec![
        fx(Jellyseerr, "jellyseerr/webhook_media_auto_approved_tv_dan_da_dan_req43.json", 0),
        fx(Sonarr, "sonarr/webhook_series_add_dan_da_dan.json", 1),
        fx(Sonarr, "sonarr/webhook_grab_dan_da_dan_s01_season_pack.json", 2),
        progress(DANDADAN, 0.5, 16_492_674_416, 4),
        hook(
            shared::subjects::Source::Qbittorrent,
            "application/x-www-form-urlencoded",
            serde_json::from_slice::<serde_json::Value>(&fixture("qbittorrent/run_on_finished_dan_da_dan_pack.json"))
                .unwrap()["http_request"]["body"]
                .as_str()
                .unwrap()
                .as_bytes(),
            20,
        ),
        fx(Sonarr, "sonarr/webhook_download_dan_da_dan_s01e01.json", 21),
        fx(Sonarr, "sonarr/webhook_download_dan_da_dan_s01e02.json", 22),
        fx(Sonarr, "sonarr/webhook_download_import_complete_dan_da_dan_s01.json", 23),
        shoko("shoko/signalr_file_detected_s01e01.json", ANIME_FOLDER, 24),
        shoko("shoko/signalr_file_hashed_s01e01.json", ANIME_FOLDER, 25),
        shoko("shoko/signalr_file_matched_s01e01.json", ANIME_FOLDER, 26),
        shoko("shoko/signalr_file_detected_s01e02.json", ANIME_FOLDER, 27),
        shoko("shoko/signalr_file_hashed_s01e02.json", ANIME_FOLDER, 28),
        shoko("shoko/signalr_file_matched_s01e02.json", ANIME_FOLDER, 29),
        fx(Jellyfin, "jellyfin/item_added_episode_dan_da_dan_s01e01.json", 30),
    ]
}

/// The anime pack with two remarks: an issue reported while it downloads, and a rename once
/// the first episode reached Jellyfin.
fn anime_with_remarks() -> Vec<Step> {
    let mut steps = anime();
    steps.insert(4, fx(Jellyseerr, "jellyseerr/webhook_issue_created_tv_dan_da_dan.json", 19));
    steps.push(fx(Sonarr, "sonarr/webhook_rename_dan_da_dan.json", 35));
    steps
}

/// `order` as facts about one request can arrive: the request first (an issue or a rename
/// about media no request tracks is dropped, whatever its time), and a rename after the
/// imports it renames (Sonarr sends them in that order).
fn with_remarks_after_their_subject(steps: &[Step], mut order: Vec<usize>) -> Vec<usize> {
    order.retain(|&i| i != 0);
    order.insert(0, 0);
    if let Some(rename) = order.iter().position(|&i| steps[i].name.contains("rename")) {
        let last_import = order.iter().rposition(|&i| steps[i].name.contains("webhook_download")).unwrap();
        if rename < last_import {
            let i = order.remove(rename);
            order.insert(last_import, i);
        }
    }
    order
}

fn severance() -> Vec<Step> {
    vec![
        fx(Jellyseerr, "jellyseerr/webhook_media_pending_tv_severance_req44.json", 0),
        fx(Jellyseerr, "jellyseerr/webhook_media_approved_tv_severance_req44.json", 1),
        fx(Sonarr, "sonarr/webhook_grab_severance_s02e01.json", 2),
        fx(Sonarr, "sonarr/webhook_grab_severance_s02e02.json", 3),
        progress(SEV_E02, 0.38, 3_221_225_473, 4),
        finished(SEV_E01, 10),
        fx(Sonarr, "sonarr/webhook_download_severance_s02e01.json", 11),
        fx(Sonarr, "sonarr/webhook_manual_interaction_required_severance_s02e03.json", 12),
    ]
}

fn failure() -> Vec<Step> {
    vec![fx(Jellyseerr, "jellyseerr/webhook_media_failed_movie_dune_part_two_req45.json", 0)]
}

fn states(r: &shared::model::RequestDetail) -> Vec<State> {
    r.timeline.iter().map(|e| e.state).collect()
}

// ------------------------------------------------------------------ in order ---

#[tokio::test]
async fn film_in_order_reaches_available_with_a_timeline_of_every_step() {
    let world = World::new().await;
    world.replay(&film()).await;
    let r = world.only().await;
    assert_eq!(r.summary.state, State::Available);
    assert_eq!(r.summary.quality.as_deref(), Some("Bluray-1080p"));
    assert_eq!(r.summary.progress, 1.0);
    assert_eq!(r.summary.requested_by.as_deref(), Some("alice"));
    assert_eq!(r.summary.source, "jellyseerr");
    assert!(r.summary.watch_url.is_some());
    assert!(r.episodes.is_empty());
    assert_eq!(
        timeline(&r),
        [
            (State::Requested, "Requested by alice".into()),
            (State::Approved, "Approved".into()),
            (State::Searching, "Added to Radarr; searching for a release".into()),
            (State::Indexed, "Found Bluray-1080p (15.8 GB) on ExampleTracker (Prowlarr)".into()),
            (State::Downloading, "Downloading".into()),
            (State::Downloaded, "Download finished".into()),
            (State::Importing, "Imported The Batman (2022) [Bluray-1080p].mkv".into()),
            (State::Available, "Available in Jellyfin".into()),
            (State::Available, "Available (Jellyseerr)".into()),
        ]
    );
    assert!(r.timeline.iter().all(|e| !e.late), "nothing is late in order");
}

#[tokio::test]
async fn anime_season_pack_tracks_every_episode_through_matching() {
    let world = World::new().await;
    world.replay(&anime()).await;
    let r = world.only().await;
    assert!(r.summary.is_anime);
    assert_eq!(r.summary.requested_by.as_deref(), Some("bob"));
    assert_eq!(r.episodes.len(), 12, "the season pack lists twelve episodes");
    let eps = episode_states(&r);
    assert_eq!(eps[0], ((1, 1), State::Available), "E01 is in Jellyfin");
    assert_eq!(eps[1], ((1, 2), State::Matching), "E02 is matched by Shoko, not yet in Jellyfin");
    assert!(eps[2..].iter().all(|(_, s)| *s == State::Importing), "E03–E12 imported: {eps:?}");
    assert_eq!(r.summary.state, State::Importing, "a series is as far as its slowest episode");
    let counts = r.summary.episodes_summary.clone().unwrap();
    assert_eq!((counts.total, counts.downloaded, counts.available), (12, 12, 1));
    assert_eq!(r.downloads.len(), 1, "one torrent shared by the pack");
    assert_eq!(r.downloads[0].episodes, 12);
    let matching: Vec<_> = r.timeline.iter().filter(|e| e.state == State::Matching).collect();
    assert_eq!(matching.len(), 6, "detected, hashed, matched for two files");
    assert_eq!(matching[2].message, "Matched by Shoko (AniDB 18290)");
    assert_eq!(matching[2].episode.as_deref(), Some("S01E01"));
    let found = r.timeline.iter().find(|e| e.state == State::Indexed).unwrap();
    assert_eq!(found.episode.as_deref(), Some("S01 (12 episodes)"));
    assert_eq!(found.details["quality"], "WEBDL-1080p");
    assert_eq!(found.details["download_id"], DANDADAN);
}

/// Shoko's FileMatched and Jellyfin's ItemAdded for every episode of the DAN DA DAN pack,
/// each file as the "import complete" Download lists it.
fn anime_matched_and_in_jellyfin() -> Vec<Step> {
    let import: serde_json::Value =
        serde_json::from_slice(&fixture("sonarr/webhook_download_import_complete_dan_da_dan_s01.json")).unwrap();
    let files = import["episodeFiles"].as_array().unwrap();
    let episodes = import["episodes"].as_array().unwrap();
    let mut steps = Vec::new();
    for (n, (file, episode)) in files.iter().zip(episodes).enumerate() {
        let n = n as u64 + 1;
        let path = file["path"].as_str().unwrap();
        let mut matched = shoko("shoko/signalr_file_matched_s01e01.json", ANIME_FOLDER, 40 + n as i64);
        let shared::events::Fact::Shoko(event) = &mut matched.fact else { unreachable!() };
        event.relative_path = path.strip_prefix(ANIME_FOLDER).unwrap().to_owned();
        event.path = Some(path.to_owned());
        event.file_id = Some(3300 + n);
        event.cross_refs[0].anidb_episode_id = Some(290_100 + n);
        matched.raw[0]["RelativePath"] = json!(event.relative_path);
        matched.raw[0]["FileID"] = json!(3300 + n);
        matched.name = format!("matched E{n:02}");
        steps.push(matched);
        let item = [
            ("/item_id", json!(format!("e00000{n:02}-d4da-4c0a-9b1c-2d3e4f5a6b7c"))),
            ("/name", episode["title"].clone()),
            ("/episode_number", json!(format!("{n:02}"))),
            ("/tvdb_id", json!(episode["tvdbId"].to_string())),
        ];
        steps.push(fx_with(Jellyfin, "jellyfin/item_added_episode_dan_da_dan_s01e01.json", 60 + n as i64, &item));
    }
    steps
}

#[tokio::test]
async fn anime_pack_ends_available_when_shoko_matched_and_jellyfin_has_every_episode() {
    let world = World::new().await;
    let steps: Vec<Step> = anime().into_iter().chain(anime_matched_and_in_jellyfin()).collect();
    world.replay(&steps).await;
    let r = world.only().await;
    let eps = episode_states(&r);
    assert_eq!(eps.len(), 12);
    assert!(eps.iter().all(|(_, s)| *s == State::Available), "every episode available: {eps:?}");
    assert_eq!(r.summary.state, State::Available);
    let counts = r.summary.episodes_summary.clone().unwrap();
    assert_eq!(counts.available, 12);
    let states: Vec<State> = r.timeline.iter().map(|e| e.state).collect();
    let first = |s: State| states.iter().position(|x| *x == s).unwrap_or_else(|| panic!("no {s:?} step"));
    assert!(first(State::Importing) < first(State::Matching), "matching follows the import");
    assert!(first(State::Matching) < first(State::Available), "and precedes availability");
    let matched: std::collections::BTreeSet<_> = r
        .timeline
        .iter()
        .filter(|e| e.message.starts_with("Matched by Shoko"))
        .filter_map(|e| e.episode.clone())
        .collect();
    assert_eq!(matched.len(), 12, "a match on the timeline for every episode: {matched:?}");
    assert!(matched.contains("S01E12"));
    // Shuffled, it ends the same.
    let world = World::new().await;
    let reversed: Vec<Step> = steps.iter().rev().cloned().collect();
    world.replay(&reversed).await;
    let again = world.only().await;
    assert!(episode_states(&again).iter().all(|(_, s)| *s == State::Available));
    assert_eq!(again.summary.state, State::Available);
}

#[test]
fn the_correlator_reads_facts_without_their_raw_payload() {
    for step in film().iter().chain(&anime()) {
        let mut env = step.envelope();
        env.data.raw = Some(json!({"a": [1, 2, {"b": "c"}]}));
        let decoded = correlator::correlate::decode_fact(&serde_json::to_vec(&env).unwrap()).unwrap();
        env.data.raw = None;
        assert_eq!(decoded, env, "{}", step.name);
    }
}

/// Every story above, each one request (or two).
fn every_story() -> [Vec<Step>; 5] {
    [film(), anime_with_remarks(), anime_matched_and_in_jellyfin(), severance(), failure()]
}

/// Every story's steps, the first step of each story, then the second of each, and so on.
fn every_story_interleaved() -> Vec<Step> {
    let stories = every_story();
    let longest = stories.iter().map(Vec::len).max().unwrap();
    (0..longest).flat_map(|i| stories.iter().filter_map(move |story| story.get(i).cloned())).collect()
}

/// A store with every story replayed into it, one event at a time.
async fn world_with_every_story() -> World {
    let world = World::new().await;
    for steps in &every_story() {
        world.replay(steps).await;
    }
    world
}

/// The correlator keeps the requests it touched in memory; what it holds must be exactly what
/// the database holds, or a cache hit and a miss would correlate differently.
#[tokio::test]
async fn the_processors_cache_holds_exactly_what_the_database_holds() {
    let world = world_with_every_story().await;
    let cached = world.processor.cache.snapshot();
    assert!(cached.len() >= 3, "the scenarios' requests are cached");
    cache_matches_database(&world).await;
    let mut conn = world.store.pool().acquire().await.unwrap();
    let keys = world.processor.cache.key_snapshot();
    assert!(!keys.is_empty(), "keys are cached");
    for (key, ids) in keys {
        let stored = correlator::store::find_by_key(&mut conn, &key).await.unwrap();
        assert_eq!(stored, ids, "the requests of key {key} differ from the database");
    }
    // And a fresh processor, reading everything from the database, ends the same.
    let fresh = World::new().await;
    for step in every_story().iter().flatten() {
        fresh.apply(step).await;
        fresh.processor.cache.clear();
    }
    assert_eq!(fresh.outcome().await, world.outcome().await);
}

/// The consumer applies up to 256 events in one session, whose writes wait in memory until
/// the commit: any batch size, with events before their requests and duplicates inside a
/// batch, must end as one event at a time does.
#[tokio::test]
async fn batches_of_any_size_end_as_one_event_at_a_time() {
    let mut steps = every_story_interleaved();
    // Some events before their requests (orphans), and one event twice.
    steps.swap(0, 9);
    steps.swap(1, 14);
    steps.insert(20, steps[3].clone());
    let one_by_one = World::new().await;
    one_by_one.replay(&steps).await;
    // Everything: states, episodes, downloads, every timeline entry, and every change message
    // queued for `tracker.request.*` (each carries the request's whole timeline).
    let expected = (one_by_one.requests().await, changes(&one_by_one).await);
    assert!(expected.0.len() >= 4);
    for size in [2, 7, 64, steps.len()] {
        let world = World::new().await;
        world.replay_batched(&steps, size).await;
        assert_eq!((world.requests().await, changes(&world).await), expected, "batches of {size}");
        // A cache too small for a batch: requests and keys are evicted while their writes
        // still wait in the session.
        let ttl = std::time::Duration::from_secs(7 * 86400);
        let mut processor = correlator::Processor::new(Default::default(), ttl, None);
        processor.cache = correlator::cache::Cache::new(1, 2);
        let world = World::with(processor).await;
        world.replay_batched(&steps, size).await;
        assert_eq!((world.requests().await, changes(&world).await), expected, "batches of {size}, tiny cache");
    }
}

/// The consumer correlates a batch while the one before it commits: until then the database
/// does not show that batch's processed events nor its new keys. With an event repeated just
/// after a batch's end, and with a cache too small to hold what that batch wrote, every batch
/// size must still end as one event at a time does.
#[tokio::test]
async fn batches_correlated_before_the_previous_commits_end_as_one_event_at_a_time() {
    let mut steps = every_story_interleaved();
    steps.swap(0, 9);
    let one_by_one = World::new().await;
    one_by_one.replay(&steps).await;
    let expected = (one_by_one.requests().await, changes(&one_by_one).await);
    assert!(expected.0.len() >= 4);
    for size in [1, 2, 7, 16] {
        // The last event of the first batch again, first in the second.
        let mut steps = steps.clone();
        steps.insert(size, steps[size - 1].clone());
        let world = World::new().await;
        world.replay_pipelined(&steps, size).await;
        assert_eq!((world.requests().await, changes(&world).await), expected, "batches of {size}");
        for (requests, keys) in [(1, 2), (256, 1)] {
            let ttl = std::time::Duration::from_secs(7 * 86400);
            let mut processor = correlator::Processor::new(Default::default(), ttl, None);
            processor.cache = correlator::cache::Cache::new(requests, keys);
            let world = World::with(processor).await;
            world.replay_pipelined(&steps, size).await;
            let case = format!("batches of {size}, a cache of {requests} requests and {keys} keys");
            assert_eq!((world.requests().await, changes(&world).await), expected, "{case}");
        }
    }
}

/// The correlator writes state messages from its own borrowed types, with the timeline
/// serialized ahead: each must be exactly what the model types (`RequestChange`,
/// `ProgressUpdate`), which readers decode them into, would write.
#[tokio::test]
async fn every_state_message_is_what_the_model_types_write() {
    use shared::model::{ProgressUpdate, RequestChange};
    let world = world_with_every_story().await;
    // And a request whose timeline is read from the database, not the cache.
    world.processor.cache.clear();
    world.replay(&film()[6..]).await;
    let queued = correlator::store::outbox(world.store.pool(), 0, i64::MAX).await.unwrap();
    let mut changes = 0;
    for m in queued {
        let again = if m.subject.ends_with(".progress") {
            let read: shared::Envelope<ProgressUpdate> = serde_json::from_slice(&m.payload).unwrap();
            serde_json::to_vec(&read).unwrap()
        } else {
            let read: shared::Envelope<RequestChange> = serde_json::from_slice(&m.payload).unwrap();
            changes += usize::from(read.data.request.timeline.len() > 1);
            serde_json::to_vec(&read).unwrap()
        };
        assert_eq!(String::from_utf8_lossy(&again), String::from_utf8_lossy(&m.payload), "{}", m.subject);
    }
    assert!(changes > 20, "changes with a timeline checked: {changes}");
}

/// The queued change messages: subject and data (the envelope's time is when it was made).
async fn changes(world: &World) -> Vec<(String, serde_json::Value)> {
    let queued = correlator::store::outbox(world.store.pool(), 0, i64::MAX).await.unwrap();
    queued
        .into_iter()
        .map(|m| {
            let mut envelope: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            (m.subject, envelope["data"].take())
        })
        .collect()
}

#[tokio::test]
async fn jellyseerr_available_completes_every_episode_of_the_season() {
    let world = World::new().await;
    let mut steps = anime();
    steps.push(fx(Jellyseerr, "jellyseerr/webhook_media_available_tv_dan_da_dan_req43.json", 40));
    world.replay(&steps).await;
    let r = world.only().await;
    assert_eq!(r.summary.state, State::Available);
    assert!(episode_states(&r).iter().all(|(_, s)| *s == State::Available));
}

#[tokio::test]
async fn plain_series_with_two_grabs_keeps_each_episode_apart() {
    let world = World::new().await;
    world.replay(&severance()).await;
    let r = world.only().await;
    assert_eq!(r.summary.requested_seasons, vec![2]);
    assert_eq!(
        episode_states(&r),
        [((2, 1), State::Importing), ((2, 2), State::Downloading), ((2, 3), State::Downloaded)]
    );
    assert_eq!(r.summary.state, State::Downloading, "E02 is still downloading");
    assert_eq!(r.downloads.len(), 3, "two grabs plus the download that needs a manual import");
    let e02 = r.downloads.iter().find(|d| d.download_id == SEV_E02).unwrap();
    assert_eq!((e02.progress, e02.finished), (0.38, false));
    assert!(r.summary.stalled);
    assert_eq!(
        r.summary.reason.as_deref(),
        Some(
            "Sonarr needs a manual import: Not a Custom Format upgrade for existing episode file(s). New: [] (0) do not improve on Existing: [] (0)"
        )
    );
    assert!(r.summary.progress > 0.38 && r.summary.progress < 1.0, "{}", r.summary.progress);
    let e03 = r.episodes.iter().find(|e| e.episode == 3).unwrap();
    assert!(e03.reason.as_deref().unwrap().starts_with("Sonarr needs a manual import"));
}

#[tokio::test]
async fn a_failed_request_says_why() {
    let world = World::new().await;
    world.replay(&failure()).await;
    let r = world.only().await;
    assert_eq!(r.summary.title, "Dune: Part Two");
    assert_eq!(r.summary.state, State::Failed);
    assert!(r.summary.reason.as_deref().unwrap().contains("could not send the request to Radarr/Sonarr"));
    assert_eq!(states(&r), [State::Failed]);
}

// ------------------------------------------------------------------ shuffled ---

/// Applies `steps` in the given order and in lifecycle order, and compares.
async fn same_as_in_order(steps: &[Step], order: &[usize]) {
    let expected = {
        let world = World::new().await;
        world.replay(steps).await;
        world.outcome().await
    };
    let world = World::new().await;
    for &i in order {
        world.apply(&steps[i]).await;
    }
    let got = world.outcome().await;
    if got != expected {
        let names: Vec<&str> = order.iter().map(|&i| steps[i].name.as_str()).collect();
        panic!("order {names:#?}\ngave {got:#?}\nexpected {expected:#?}");
    }
}

#[tokio::test]
async fn film_replayed_backwards_ends_the_same() {
    let steps = film();
    let order: Vec<usize> = (0..steps.len()).rev().collect();
    same_as_in_order(&steps, &order).await;
}

#[tokio::test]
async fn anime_replayed_backwards_ends_the_same() {
    let steps = anime();
    let order: Vec<usize> = (0..steps.len()).rev().collect();
    same_as_in_order(&steps, &order).await;
}

#[tokio::test]
async fn severance_replayed_backwards_ends_the_same() {
    let steps = severance();
    let order: Vec<usize> = (0..steps.len()).rev().collect();
    same_as_in_order(&steps, &order).await;
}

#[tokio::test]
async fn everything_interleaved_ends_the_same_as_each_story_alone() {
    let stories = [film(), anime(), severance(), failure()];
    let all: Vec<Step> = stories.concat();
    // Round-robin interleaving, newest first within each round.
    let mut order = Vec::new();
    let mut offsets = vec![0usize];
    for s in &stories {
        offsets.push(offsets.last().unwrap() + s.len());
    }
    for round in (0..15).rev() {
        for (k, s) in stories.iter().enumerate() {
            if round < s.len() {
                order.push(offsets[k] + round);
            }
        }
    }
    same_as_in_order(&all, &order).await;
    let world = World::new().await;
    world.replay(&all).await;
    let titles: Vec<String> = world.requests().await.iter().map(|r| r.summary.title.clone()).collect();
    assert_eq!(titles, ["DAN DA DAN", "Dune: Part Two", "Severance", "The Batman"]);
}

fn permutation_of(n: usize) -> impl Strategy<Value = Vec<usize>> {
    Just((0..n).collect::<Vec<_>>()).prop_shuffle()
}

fn check_permutation(steps: Vec<Step>, order: Vec<usize>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(same_as_in_order(&steps, &order));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_permutation_of_the_film_ends_the_same(order in permutation_of(film().len())) {
        check_permutation(film(), order);
    }

    #[test]
    fn every_permutation_of_the_anime_season_pack_ends_the_same(order in permutation_of(anime().len())) {
        check_permutation(anime(), order);
    }

    #[test]
    fn every_permutation_of_the_anime_pack_with_remarks_ends_the_same(order in permutation_of(anime_with_remarks().len())) {
        let steps = anime_with_remarks();
        let order = with_remarks_after_their_subject(&steps, order);
        check_permutation(steps, order);
    }

    #[test]
    fn every_permutation_of_the_film_and_its_upgrade_ends_the_same(order in permutation_of(film_then_upgrade().len())) {
        check_permutation(film_then_upgrade(), order);
    }

    #[test]
    fn every_permutation_of_the_two_grab_series_ends_the_same(order in permutation_of(severance().len())) {
        check_permutation(severance(), order);
    }
}

// ------------------------------------------------------------- out of order ---

#[tokio::test]
async fn a_grab_before_the_jellyseerr_webhook_ends_in_one_request() {
    let world = World::new().await;
    world.apply(&fx(Radarr, "radarr/webhook_grab_the_batman.json", 3)).await;
    let r = world.only().await;
    assert_eq!((r.summary.source.as_str(), r.summary.state), ("radarr", State::Indexed));
    world.apply(&fx(Jellyseerr, "jellyseerr/webhook_media_pending_movie_the_batman_req42.json", 0)).await;
    let r = world.only().await;
    assert_eq!(r.summary.source, "jellyseerr");
    assert_eq!(r.summary.requested_by.as_deref(), Some("alice"));
    assert_eq!(r.summary.jellyseerr_id.map(|i| i.0), Some(42));
    assert_eq!(r.summary.state, State::Indexed, "the late request notice does not move it back");
    assert!(r.timeline.iter().find(|e| e.state == State::Requested).unwrap().late);
    assert_eq!(r.summary.created_at, BASE, "requested at the Jellyseerr time, the earliest fact");
}

#[tokio::test]
async fn a_qbittorrent_completion_before_the_grab_waits_for_it() {
    let world = World::new().await;
    let outcome = world.apply(&finished(BATMAN, 10)).await;
    assert!(matches!(outcome, correlator::correlate::Outcome::Orphaned(_)), "{outcome:?}");
    assert!(world.requests().await.is_empty());
    world.apply(&fx(Radarr, "radarr/webhook_grab_the_batman.json", 3)).await;
    let r = world.only().await;
    assert_eq!(r.summary.state, State::Downloaded);
    assert!(r.downloads[0].finished);
}

#[tokio::test]
async fn an_import_a_second_before_the_download_complete_poll_does_not_get_stuck() {
    let world = World::new().await;
    world.replay(&film()[..4]).await;
    world.apply(&fx(Radarr, "radarr/webhook_download_the_batman.json", 11)).await;
    world.apply(&finished(BATMAN, 10)).await;
    let r = world.only().await;
    assert_eq!(r.summary.state, State::Importing, "the import proves the download finished");
    let done = r.timeline.iter().find(|e| e.state == State::Downloaded).unwrap();
    assert!(done.late, "the completion is on the timeline, marked late");
}

#[tokio::test]
async fn a_jellyfin_episode_before_the_import_makes_it_available_and_stays() {
    let world = World::new().await;
    world.replay(&anime()[..3]).await;
    world.apply(&fx(Jellyfin, "jellyfin/item_added_episode_dan_da_dan_s01e01.json", 30)).await;
    world.apply(&fx(Sonarr, "sonarr/webhook_download_dan_da_dan_s01e01.json", 21)).await;
    let r = world.only().await;
    assert_eq!(episode_states(&r)[0], ((1, 1), State::Available));
    // The import came from the season pack: the pack is downloaded, E02 waits for its import.
    assert_eq!(episode_states(&r)[1], ((1, 2), State::Downloaded));
    assert!(r.timeline.iter().any(|e| e.state == State::Importing && e.late));
}

#[tokio::test]
async fn a_shoko_event_before_the_import_waits_for_the_file() {
    let world = World::new().await;
    world.replay(&anime()[..3]).await;
    let outcome = world.apply(&shoko("shoko/signalr_file_matched_s01e01.json", ANIME_FOLDER, 26)).await;
    assert!(matches!(outcome, correlator::correlate::Outcome::Orphaned(_)), "{outcome:?}");
    world.apply(&fx(Sonarr, "sonarr/webhook_download_dan_da_dan_s01e01.json", 21)).await;
    let r = world.only().await;
    assert_eq!(episode_states(&r)[0], ((1, 1), State::Matching));
}

#[tokio::test]
async fn a_re_request_of_available_media_is_a_new_request() {
    let world = World::new().await;
    world.replay(&film()).await;
    let again = fx_with(
        Jellyseerr,
        "jellyseerr/webhook_media_pending_movie_the_batman_req42.json",
        60 * 24 * 30,
        &[("/request/request_id", json!("99")), ("/request/requestedBy_username", json!("carol"))],
    );
    world.apply(&again).await;
    let all = world.requests().await;
    assert_eq!(all.len(), 2);
    let new = all.iter().find(|r| r.summary.jellyseerr_id.map(|i| i.0) == Some(99)).unwrap();
    assert_eq!((new.summary.state, new.summary.requested_by.as_deref()), (State::Requested, Some("carol")));
    // A new grab goes to the open request, not the available one.
    let grab = fx_with(
        Radarr,
        "radarr/webhook_grab_the_batman.json",
        60 * 24 * 30 + 5,
        &[("/downloadId", json!("ABCDEF0123456789ABCDEF0123456789ABCDEF01"))],
    );
    world.apply(&grab).await;
    let new = world.requests().await.into_iter().find(|r| r.summary.jellyseerr_id.map(|i| i.0) == Some(99)).unwrap();
    assert_eq!(new.summary.state, State::Indexed);
}

#[tokio::test]
async fn movie_and_series_tmdb_ids_are_different_namespaces() {
    let world = World::new().await;
    world.replay(&severance()[..2]).await; // Severance: TV tmdb 95396
    let film_with_same_number = fx_with(
        Jellyseerr,
        "jellyseerr/webhook_media_pending_movie_the_batman_req42.json",
        5,
        &[("/media/tmdbId", json!("95396")), ("/subject", json!("Some Film (2001)"))],
    );
    world.apply(&film_with_same_number).await;
    assert_eq!(world.requests().await.len(), 2);
}

#[tokio::test]
async fn usenet_downloads_are_tracked_without_progress() {
    let world = World::new().await;
    world.replay(&film()[..2]).await;
    let nzo = "SABnzbd_nzo_kq2f7x";
    world.apply(&fx_with(Radarr, "radarr/webhook_grab_the_batman.json", 3, &[("/downloadId", json!(nzo))])).await;
    let r = world.only().await;
    assert_eq!((r.downloads[0].download_id.as_str(), r.downloads[0].kind.as_str()), (nzo, "usenet"));
    world.apply(&fx_with(Radarr, "radarr/webhook_download_the_batman.json", 11, &[("/downloadId", json!(nzo))])).await;
    let r = world.only().await;
    assert_eq!(r.summary.state, State::Importing);
    assert!(r.downloads[0].finished);
}

#[tokio::test]
async fn download_ids_match_qbittorrent_hashes_whatever_the_case() {
    let world = World::new().await;
    world.replay(&film()[..4]).await; // Radarr sends the hash in upper case
    world.apply(&progress(BATMAN, 0.25, BATMAN_SIZE, 5)).await; // qBittorrent in lower case
    let r = world.only().await;
    assert_eq!(r.summary.state, State::Downloading);
    assert_eq!(r.summary.progress, 0.25);
}

#[tokio::test]
async fn files_are_matched_across_container_mounts_with_the_path_map() {
    let map = shared::paths::PathMap::parse("/anime=/data/media/anime").unwrap();
    let world = World::with(correlator::Processor::new(map, std::time::Duration::from_secs(3600), None)).await;
    world.replay(&anime()[..3]).await;
    world.apply(&fx(Sonarr, "sonarr/webhook_download_dan_da_dan_s01e01.json", 21)).await;
    // Shoko runs in a container that mounts the library at /anime.
    world.apply(&shoko("shoko/signalr_file_matched_s01e01.json", "/anime", 26)).await;
    let r = world.only().await;
    assert_eq!(episode_states(&r)[0], ((1, 1), State::Matching));
}

#[tokio::test]
async fn two_requests_for_different_seasons_of_one_series_get_their_own_grabs() {
    let world = World::new().await;
    // bob asks for season 1, alice (request 44) for season 2 of Severance.
    let season1 = fx_with(
        Jellyseerr,
        "jellyseerr/webhook_media_approved_tv_severance_req44.json",
        0,
        &[
            ("/request/request_id", json!("50")),
            ("/request/requestedBy_username", json!("bob")),
            ("/extra/0/value", json!("1")),
        ],
    );
    world.apply(&season1).await;
    world.replay(&severance()[..4]).await;
    let all = world.requests().await;
    assert_eq!(all.len(), 2);
    let bob = all.iter().find(|r| r.summary.requested_by.as_deref() == Some("bob")).unwrap();
    let alice = all.iter().find(|r| r.summary.requested_by.as_deref() == Some("alice")).unwrap();
    assert!(bob.episodes.is_empty(), "season 2 grabs are not bob's");
    assert_eq!(alice.episodes.len(), 2);
}

#[tokio::test]
async fn an_upgrade_of_an_available_film_keeps_it_available_and_says_so() {
    let world = World::new().await;
    world.replay(&film()).await;
    let new_hash = json!("FEEDFACE0123456789ABCDEF0123456789ABCDEF");
    world
        .apply(&fx_with(
            Radarr,
            "radarr/webhook_grab_the_batman.json",
            100,
            &[("/downloadId", new_hash.clone()), ("/release/quality", json!("Bluray-2160p"))],
        ))
        .await;
    world
        .apply(&fx_with(
            Radarr,
            "radarr/webhook_download_the_batman.json",
            120,
            &[("/downloadId", new_hash), ("/isUpgrade", json!(true)), ("/movieFile/quality", json!("Bluray-2160p"))],
        ))
        .await;
    world.apply(&fx(Radarr, "radarr/webhook_movie_file_delete_the_batman.json", 121)).await;
    let r = world.only().await;
    assert_eq!(r.summary.state, State::Available);
    assert_eq!(r.summary.quality.as_deref(), Some("Bluray-2160p"));
    let msgs: Vec<&str> = r.timeline.iter().map(|e| e.message.as_str()).collect();
    assert!(msgs.contains(&"Upgrade: Found Bluray-2160p (15.8 GB) on ExampleTracker (Prowlarr)"), "{msgs:#?}");
    assert!(msgs.contains(&"Upgraded to Bluray-2160p"), "{msgs:#?}");
    assert!(msgs.iter().any(|m| m.starts_with("File deleted (manual)")), "{msgs:#?}");
}

/// Every request and timeline the processor's cache holds is what the database holds.
async fn cache_matches_database(world: &World) {
    let mut conn = world.store.pool().acquire().await.unwrap();
    for (req, timeline) in world.processor.cache.snapshot() {
        let stored = correlator::store::load(&mut conn, req.id).await.unwrap();
        assert_eq!(stored.as_ref(), Some(&req), "request {} differs from the database", req.id);
        if let Some(timeline) = timeline {
            let stored = correlator::store::timeline(&mut conn, req.id).await.unwrap();
            assert_eq!(stored, timeline, "timeline of request {} differs from the database", req.id);
        }
    }
}

/// The film, then an upgrade: a 2160p grab and its import long after the film was available.
fn film_then_upgrade() -> Vec<Step> {
    let hash = json!("FEEDFACE0123456789ABCDEF0123456789ABCDEF");
    let mut steps = film();
    let grab = [("/downloadId", hash.clone()), ("/release/quality", json!("Bluray-2160p"))];
    steps.push(fx_with(Radarr, "radarr/webhook_grab_the_batman.json", 100, &grab));
    let import = [("/downloadId", hash), ("/isUpgrade", json!(true)), ("/movieFile/quality", json!("Bluray-2160p"))];
    steps.push(fx_with(Radarr, "radarr/webhook_download_the_batman.json", 120, &import));
    steps
}

/// The upgrade's grab applied before the facts that made the film available (a Jellyfin
/// webhook held back, Jellyseerr's late): it is still an upgrade, under "Available", and the
/// film keeps its first download.
#[tokio::test]
async fn an_upgrade_grab_applied_before_the_availability_it_follows_reads_the_same() {
    let steps = film_then_upgrade();
    let (jellyfin, jellyseerr, grab) = (7, 8, 9);
    let order: Vec<usize> = (0..7).chain([grab, jellyfin, jellyseerr, 10]).collect();
    same_as_in_order(&steps, &order).await;

    let world = World::new().await;
    for &i in &order {
        world.apply(&steps[i]).await;
    }
    let r = world.only().await;
    let upgrade = r.timeline.iter().find(|e| e.message.starts_with("Upgrade: Found Bluray-2160p")).unwrap();
    assert_eq!((upgrade.state, upgrade.late), (State::Available, false), "{upgrade:?}");
    let mut conn = world.store.pool().acquire().await.unwrap();
    let req = correlator::store::load(&mut conn, r.summary.id).await.unwrap().unwrap();
    assert_eq!(req.items[&correlator::lifecycle::FILM].download_id.as_deref(), Some(BATMAN), "its first download");
    assert!(req.downloads["feedface0123456789abcdef0123456789abcdef"].upgrade);
    cache_matches_database(&world).await;
}

#[tokio::test]
async fn deletes_renames_and_application_events_are_visible_or_counted() {
    let world = World::new().await;
    world.replay(&anime()).await;
    world.apply(&fx(Sonarr, "sonarr/webhook_rename_dan_da_dan.json", 50)).await;
    world.apply(&fx(Sonarr, "sonarr/webhook_episode_file_delete_dan_da_dan_s01e02.json", 51)).await;
    let r = world.only().await;
    let msgs: Vec<&str> = r.timeline.iter().map(|e| e.message.as_str()).collect();
    assert!(msgs.contains(&"Sonarr renamed 1 file"), "{msgs:#?}");
    let e02 = r.episodes.iter().find(|e| e.episode == 2).unwrap();
    assert_eq!(e02.reason.as_deref(), Some("File deleted in Sonarr (manual)"));

    for (source, name) in [
        (Sonarr, "sonarr/webhook_health.json"),
        (Sonarr, "sonarr/webhook_test.json"),
        (Radarr, "radarr/webhook_health.json"),
        (Sonarr, "sonarr/webhook_application_update.json"),
    ] {
        let outcome = world.apply(&fx(source, name, 60)).await;
        assert!(matches!(outcome, correlator::correlate::Outcome::Ignored(_)), "{name}: {outcome:?}");
    }
    assert_eq!(world.processor.counters.snapshot()[3], ("ignored", 4));

    let sev = World::new().await;
    sev.replay(&severance()[..4]).await;
    sev.apply(&fx(Sonarr, "sonarr/webhook_series_delete_severance.json", 20)).await;
    let r = sev.only().await;
    assert_eq!(r.summary.state, State::Failed);
    assert_eq!(r.summary.reason.as_deref(), Some("Removed from Sonarr before it was available"));
}

/// Remarks (an issue reported, a rename) move nothing; each is filed under the state of the
/// entries before it in time, whatever order the facts arrive in, and every change message
/// says the same in `timeline_added` as in its timeline.
#[tokio::test]
async fn a_remark_is_filed_under_the_state_of_its_time_whatever_the_order() {
    let steps = anime_with_remarks();
    let filed = |r: &shared::model::RequestDetail| -> Vec<(String, State, bool)> {
        let remarks = r.timeline.iter().filter(|e| e.message.starts_with("Issue") || e.message.contains("renamed"));
        remarks.map(|e| (e.message.clone(), e.state, e.remark)).collect()
    };
    let expected = vec![
        // At minute 19 the pack was downloading; at 35 E01 had reached Jellyfin (minute 30).
        ("Issue reported: subtitles (S01E02) by bob".to_owned(), State::Downloading, true),
        ("Sonarr renamed 1 file".to_owned(), State::Available, true),
    ];
    let is_remark = |i: &usize| steps[*i].name.contains("issue") || steps[*i].name.contains("rename");
    let orders = [
        (0..steps.len()).collect(),
        (0..steps.len()).rev().collect(),
        // The remarks last, when the request has moved on.
        (0..steps.len()).filter(|i| !is_remark(i)).chain((0..steps.len()).filter(is_remark)).collect(),
    ];
    for order in orders {
        let order = with_remarks_after_their_subject(&steps, order);
        let world = World::new().await;
        for &i in &order {
            world.apply(&steps[i]).await;
        }
        let r = world.only().await;
        assert_eq!(filed(&r), expected, "order {order:?}");
        for (subject, data) in changes(&world).await.into_iter().filter(|(s, _)| !s.ends_with(".progress")) {
            let timeline = data["request"]["timeline"].as_array().unwrap();
            for added in data["timeline_added"].as_array().unwrap() {
                assert!(timeline.contains(added), "{subject}: {added} is in its timeline as added");
            }
        }
    }
}

/// A fact of Jellyseerr's 4K Radarr (`?instance=4k`), from a fixture of the other one.
fn from_the_4k_radarr(mut step: Step) -> Step {
    let shared::events::Fact::Radarr(e) = &mut step.fact else { panic!("a Radarr fact") };
    e.mark_4k();
    step
}

/// The same film in HD and in 4K: a 4K request never takes over the HD one, each Radarr's
/// facts and health problems reach its own requests.
#[tokio::test]
async fn a_films_hd_and_4k_requests_stay_apart() {
    const GRAB: &str = "radarr/webhook_grab_the_batman.json";
    let world = World::new().await;
    // Radarr grabbed the film in HD without a Jellyseerr request: a request of its own.
    world.apply(&fx(Radarr, GRAB, 0)).await;
    let request_4k = [("/event", json!("New 4K Movie Request")), ("/request/request_id", json!("46"))];
    world
        .apply(&fx_with(Jellyseerr, "jellyseerr/webhook_media_pending_movie_the_batman_req42.json", 1, &request_4k))
        .await;
    let grab_4k = [
        ("/movie/id", json!(70)),
        ("/release/quality", json!("Bluray-2160p")),
        ("/downloadId", json!("C0DEC0DEC0DEC0DEC0DEC0DEC0DEC0DEC0DEC0DE")),
    ];
    world.apply(&from_the_4k_radarr(fx_with(Radarr, GRAB, 2, &grab_4k))).await;
    let health = [("/type", json!("DownloadClientCheck")), ("/message", json!("qBittorrent 4K is unavailable"))];
    world.apply(&from_the_4k_radarr(fx_with(Radarr, "radarr/webhook_health.json", 3, &health))).await;

    let requests = world.requests().await;
    let seen: Vec<_> = requests
        .iter()
        .map(|r| {
            let s = &r.summary;
            (s.is_4k, s.source.clone(), s.jellyseerr_id.map(|i| i.0), s.quality.clone(), s.reason.clone())
        })
        .collect();
    assert_eq!(
        seen,
        [
            (false, "radarr".to_owned(), None, Some("Bluray-1080p".to_owned()), None),
            (
                true,
                "jellyseerr".to_owned(),
                Some(46),
                Some("Bluray-2160p".to_owned()),
                Some("Radarr reports: qBittorrent 4K is unavailable".to_owned())
            ),
        ]
    );

    // The HD file imported, then Jellyfin names that file: the HD request is available, not
    // the 4K one, although that is the newest in progress with the same ids.
    world.apply(&fx(Radarr, "radarr/webhook_download_the_batman.json", 4)).await;
    let mut item: serde_json::Value =
        serde_json::from_slice(&fixture("jellyfin/item_added_movie_the_batman.json")).unwrap();
    item["path"] = json!("/data/media/movies/The Batman (2022)/The Batman (2022) [Bluray-1080p].mkv");
    world.apply(&hook(Jellyfin, "application/json", item.to_string().as_bytes(), 5)).await;

    let states: Vec<State> = world.requests().await.iter().map(|r| r.summary.state).collect();
    assert_eq!(states, [State::Available, State::Indexed]);
}

/// The stock Jellyfin template names no file: the film's file is read from Jellyfin's API
/// (through the path map) and tells the HD copy from the 4K one, whose request is newer.
#[tokio::test]
async fn a_jellyfin_film_is_matched_by_the_file_jellyfin_has_for_it() {
    let (url, _) = jellyfin_stub().await;
    let client = correlator::jellyfin::JellyfinClient::new(&url, Some(shared::settings::Secret::new("jf-key")));
    let path_map = shared::paths::PathMap::parse("/movies=/data/media/movies").unwrap();
    let processor = correlator::Processor::new(path_map, std::time::Duration::from_secs(3600), None)
        .with_jellyfin(Some(std::sync::Arc::new(client)));
    let world = World::with(processor).await;
    world.apply(&fx(Radarr, "radarr/webhook_grab_the_batman.json", 0)).await;
    world.apply(&fx(Radarr, "radarr/webhook_download_the_batman.json", 1)).await;
    let request_4k = [("/event", json!("New 4K Movie Request")), ("/request/request_id", json!("46"))];
    world
        .apply(&fx_with(Jellyseerr, "jellyseerr/webhook_media_pending_movie_the_batman_req42.json", 2, &request_4k))
        .await;
    world.apply(&fx(Jellyfin, "jellyfin/item_added_movie_the_batman.json", 3)).await;
    let seen: Vec<(bool, State)> = world.requests().await.iter().map(|r| (r.summary.is_4k, r.summary.state)).collect();
    assert_eq!(seen, [(false, State::Available), (true, State::Requested)]);
}

#[tokio::test]
async fn the_same_event_twice_changes_nothing() {
    let world = World::new().await;
    world.replay(&film()[..4]).await;
    let before = world.outcome().await;
    let outcome = world.apply(&film()[3]).await;
    assert_eq!(outcome, correlator::correlate::Outcome::Duplicate);
    assert_eq!(world.outcome().await, before);
}

#[tokio::test]
async fn sonarr_v3_grab_without_tmdb_is_matched_by_tvdb() {
    let world = World::new().await;
    world.replay(&severance()[..2]).await;
    let v3 = br#"{"eventType":"Grab","series":{"id":5,"title":"Severance","path":"/data/media/tv/Severance","tvdbId":371980,"type":"standard"},
        "episodes":[{"id":2301,"episodeNumber":1,"seasonNumber":2,"title":"Hello, Ms. Cobel"}],
        "release":{"quality":"WEBDL-1080p","qualityVersion":1,"size":3221225473},"downloadClient":"qBittorrent","downloadId":"0A1B2C3D4E5F60718293A4B5C6D7E8F901234567"}"#;
    world.apply(&hook(Sonarr, "application/json", v3, 2)).await;
    let r = world.only().await;
    assert_eq!(episode_states(&r), [((2, 1), State::Indexed)]);
}

/// A Jellyfin stand-in answering `GET /Items/{id}` like Jellyfin 10.11 (PascalCase,
/// `ProviderIds` with capitalised keys), and counting the calls.
async fn jellyfin_stub() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use axum::extract::Path;
    use axum::http::HeaderMap;
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    let app = axum::Router::new().route(
        "/Items/{id}",
        axum::routing::get(move |Path(id): Path<String>, headers: HeaderMap| {
            let counter = counter.clone();
            async move {
                let authorized = headers.get("authorization").is_some_and(|v| v == "MediaBrowser Token=\"jf-key\"");
                if !authorized {
                    return (axum::http::StatusCode::UNAUTHORIZED, axum::Json(json!({}))).into_response();
                }
                match id.as_str() {
                    "d4da0d40517e4c0a9b1c2d3e4f5a6b7c" => {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        axum::Json(json!({
                            "Name": "DAN DA DAN", "Id": id, "Type": "Series",
                            "ProviderIds": { "Tvdb": "432832", "Tmdb": "240411", "AniDb": "18290" }
                        }))
                        .into_response()
                    }
                    // The Batman, the HD copy, as Jellyfin's own mount names it.
                    "a1b2c3d4e5f6478899aabbccddeeff00" => axum::Json(json!({
                        "Name": "The Batman", "Id": id, "Type": "Movie",
                        "Path": "/movies/The Batman (2022)/The Batman (2022) [Bluray-1080p].mkv",
                        "ProviderIds": { "Tmdb": "414906", "Imdb": "tt1877830" }
                    }))
                    .into_response(),
                    _ => (axum::http::StatusCode::NOT_FOUND, axum::Json(json!({}))).into_response(),
                }
            }
        }),
    );
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, calls)
}

#[tokio::test]
async fn jellyfin_episodes_are_tied_to_their_series_through_the_jellyfin_api() {
    let (url, calls) = jellyfin_stub().await;
    let client = correlator::jellyfin::JellyfinClient::new(&url, Some(shared::settings::Secret::new("jf-key")));
    let processor = correlator::Processor::new(Default::default(), std::time::Duration::from_secs(3600), None)
        .with_jellyfin(Some(std::sync::Arc::new(client)));
    let world = World::with(processor).await;
    world.replay(&anime()[..3]).await;
    // Jellyfin names the series differently from Jellyseerr: the name cannot match.
    let e01 = fx_with(
        Jellyfin,
        "jellyfin/item_added_episode_dan_da_dan_s01e01.json",
        30,
        &[("/series_name", json!("Dandadan (Japanese)"))],
    );
    world.apply(&e01).await;
    let e02 = fx_with(
        Jellyfin,
        "jellyfin/item_added_episode_dan_da_dan_s01e01.json",
        31,
        &[
            ("/series_name", json!("Dandadan (Japanese)")),
            ("/episode_number", json!("02")),
            ("/item_id", json!("e0000002-d4da-4c0a-9b1c-2d3e4f5a6b7c")),
        ],
    );
    world.apply(&e02).await;
    let r = world.only().await;
    assert_eq!(
        &episode_states(&r)[..3],
        [((1, 1), State::Available), ((1, 2), State::Available), ((1, 3), State::Indexed)]
    );
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1, "the series lookup is cached");
}

#[tokio::test]
async fn without_the_jellyfin_api_episodes_match_by_series_name() {
    let world = World::new().await;
    world.replay(&anime()[..3]).await;
    world.apply(&fx(Jellyfin, "jellyfin/item_added_episode_dan_da_dan_s01e01.json", 30)).await;
    assert_eq!(episode_states(&world.only().await)[0], ((1, 1), State::Available));
    // A name that matches nothing waits, and is counted, rather than going astray.
    let other = fx_with(
        Jellyfin,
        "jellyfin/item_added_episode_dan_da_dan_s01e01.json",
        31,
        &[("/series_name", json!("Some Other Show"))],
    );
    assert!(matches!(world.apply(&other).await, correlator::correlate::Outcome::Orphaned(_)));
}
