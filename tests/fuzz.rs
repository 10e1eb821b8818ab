//! Fuzzing of every payload parser, bounded so it runs in CI (`FUZZ_CASES`, default 5000 per
//! target): random JSON built from the keys the services really use, fixtures with random parts
//! replaced, and random bytes. Nothing may panic; every input must end as a fact or an error.
//! Facts that parse are also applied to requests, so the lifecycle is fuzzed with them.

mod scenario;

use std::sync::atomic::{AtomicU64, Ordering};

use correlator::lifecycle::{Context, Request, apply};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value};
use shared::events::MediaType;
use shared::subjects::Source;

const KEYS: &[&str] = &[
    "eventType",
    "movie",
    "series",
    "episodes",
    "release",
    "downloadId",
    "movieFile",
    "episodeFile",
    "episodeFiles",
    "fileCount",
    "isUpgrade",
    "deletedFiles",
    "tmdbId",
    "tvdbId",
    "imdbId",
    "id",
    "title",
    "year",
    "seasonNumber",
    "episodeNumber",
    "path",
    "relativePath",
    "quality",
    "size",
    "remoteMovie",
    "renamedEpisodeFiles",
    "downloadInfo",
    "downloadStatusMessages",
    "messages",
    "type",
    "tags",
    "images",
    "coverType",
    "remoteUrl",
    "notification_type",
    "media",
    "request",
    "extra",
    "subject",
    "media_type",
    "request_id",
    "requestedBy_username",
    "name",
    "value",
    "issue",
    "event",
    "image",
    "NotificationType",
    "ItemId",
    "ItemType",
    "SeriesId",
    "SeriesName",
    "SeasonNumber",
    "EpisodeNumber",
    "Provider_tmdb",
    "Provider_tvdb",
    "Year",
    "item_id",
    "item_type",
    "series_id",
    "season_number",
    "episode_number",
    "tmdb_id",
    "hash",
    "torrent_id",
    "infohash_v1",
    "content_path",
    "RelativePath",
    "ImportFolderID",
    "FileID",
    "CrossReferences",
    "AnidbAnimeID",
    "relativePath",
    "importFolderID",
    "crossRefs",
    "target",
    "arguments",
    "error",
    "allowReconnect",
];

const WORDS: &[&str] = &[
    "Grab",
    "Download",
    "Test",
    "Health",
    "HealthRestored",
    "MovieAdded",
    "SeriesAdd",
    "Rename",
    "MovieDelete",
    "SeriesDelete",
    "EpisodeFileDelete",
    "MovieFileDelete",
    "ManualInteractionRequired",
    "ApplicationUpdate",
    "MEDIA_PENDING",
    "MEDIA_APPROVED",
    "MEDIA_AUTO_APPROVED",
    "MEDIA_AVAILABLE",
    "MEDIA_FAILED",
    "MEDIA_DECLINED",
    "ISSUE_CREATED",
    "TEST_NOTIFICATION",
    "ItemAdded",
    "Movie",
    "Episode",
    "Season",
    "Series",
    "movie",
    "tv",
    "anime",
    "Requested Seasons",
    "1, 2, 3",
    "5E3F9A1C7B2D4E6F8091A2B3C4D5E6F708192A3B",
    "SABnzbd_nzo_x",
    "S01E02",
    "-",
    "",
    "ShokoEvent:FileMatched",
    "ShokoEvent:FileHashed",
    "a1b2c3d4-e5f6-4788-99aa-bbccddeeff00",
    "/data/x/S01E01.mkv",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "\\PC{0,24}".prop_map(Value::String),
        prop::sample::select(WORDS).prop_map(|w| Value::String(w.to_owned())),
        (0u32..400).prop_map(|n| Value::String(n.to_string())),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![3 => prop::sample::select(KEYS).prop_map(str::to_owned), 1 => "[a-zA-Z_]{1,10}"]
}

fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

const FIXTURES: &[(Source, &str)] = &[
    (Source::Jellyseerr, "jellyseerr/webhook_media_pending_movie_the_batman_req42.json"),
    (Source::Jellyseerr, "jellyseerr/webhook_media_auto_approved_tv_dan_da_dan_req43.json"),
    (Source::Jellyseerr, "jellyseerr/webhook_issue_created_tv_dan_da_dan.json"),
    (Source::Radarr, "radarr/webhook_grab_the_batman.json"),
    (Source::Radarr, "radarr/webhook_download_the_batman.json"),
    (Source::Radarr, "radarr/webhook_manual_interaction_required_oppenheimer.json"),
    (Source::Sonarr, "sonarr/webhook_grab_dan_da_dan_s01_season_pack.json"),
    (Source::Sonarr, "sonarr/webhook_download_import_complete_dan_da_dan_s01.json"),
    (Source::Sonarr, "sonarr/webhook_rename_dan_da_dan.json"),
    (Source::Sonarr, "sonarr/webhook_episode_file_delete_dan_da_dan_s01e02.json"),
    (Source::Jellyfin, "jellyfin/item_added_episode_dan_da_dan_s01e01.json"),
    (Source::Jellyfin, "jellyfin/item_added_movie_the_batman.json"),
];

/// Replaces the `n`-th node (depth first) of `v` with `with`, or removes it from its object.
fn mutate(v: &mut Value, n: &mut usize, with: &Value, remove: bool) -> bool {
    let children: Vec<String> = match v {
        Value::Object(m) => m.keys().cloned().collect(),
        Value::Array(a) => (0..a.len()).map(|i| i.to_string()).collect(),
        _ => Vec::new(),
    };
    for k in children {
        if *n == 0 {
            match v {
                Value::Object(m) if remove => drop(m.remove(&k)),
                Value::Object(m) => drop(m.insert(k, with.clone())),
                Value::Array(a) => a[k.parse::<usize>().unwrap()] = with.clone(),
                _ => {}
            }
            return true;
        }
        *n -= 1;
        let child = match v {
            Value::Object(m) => m.get_mut(&k).unwrap(),
            Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
            _ => unreachable!(),
        };
        if mutate(child, n, with, remove) {
            return true;
        }
    }
    false
}

/// Inputs tried and facts produced by one fuzz target, printed at its end.
#[derive(Default)]
struct Counts {
    inputs: AtomicU64,
    facts: AtomicU64,
}

impl Counts {
    fn report(&self, target: &str) {
        println!(
            "fuzz {target}: {} inputs, {} parsed into facts and applied, 0 panics",
            self.inputs.load(Ordering::Relaxed),
            self.facts.load(Ordering::Relaxed)
        );
    }
}

/// Every adapter on one body; the facts that come out are applied to requests.
fn parse_everywhere(counts: &Counts, content_type: &str, body: &[u8]) {
    counts.inputs.fetch_add(1, Ordering::Relaxed);
    let Ok(payload) = ingress::payload::decode(Some(content_type), body) else { return };
    for adapter in ingress::sources::ADAPTERS {
        let Ok(fact) = adapter.parse(&payload) else { continue };
        counts.facts.fetch_add(1, Ordering::Relaxed);
        let _ = fact.subject();
        let _ = fact.media_key();
        for media_type in [MediaType::Movie, MediaType::Tv] {
            let mut req = Request::new(media_type, "x".into(), "test", scenario::BASE);
            apply(&mut req, &fact, scenario::BASE, &Context::default());
            apply(&mut req, &fact, scenario::BASE - time::Duration::hours(1), &Context::default());
            let _ = req.detail(Vec::new(), None);
        }
    }
}

fn cases() -> u32 {
    std::env::var("FUZZ_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(5000)
}

fn runner() -> TestRunner {
    TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() })
}

#[test]
fn webhook_parsers_survive_random_json() {
    let counts = Counts::default();
    let types = prop::sample::select(&["application/json", "text/plain", "application/x-www-form-urlencoded"][..]);
    runner()
        .run(&(json(), types), |(v, content_type)| {
            parse_everywhere(&counts, content_type, v.to_string().as_bytes());
            Ok(())
        })
        .unwrap();
    counts.report("random JSON");
}

#[test]
fn webhook_parsers_survive_mutated_fixtures() {
    let fixtures: Vec<Value> =
        FIXTURES.iter().map(|(_, f)| serde_json::from_slice(&scenario::fixture(f)).unwrap()).collect();
    let counts = Counts::default();
    let strategy = (0..fixtures.len(), prop::collection::vec((any::<usize>(), json(), any::<bool>()), 1..5));
    runner()
        .run(&strategy, |(i, edits)| {
            let mut v = fixtures[i].clone();
            for (at, with, remove) in &edits {
                let nodes = count_nodes(&v).max(1);
                mutate(&mut v, &mut (at % nodes), with, *remove);
            }
            parse_everywhere(&counts, "application/json", v.to_string().as_bytes());
            Ok(())
        })
        .unwrap();
    counts.report("mutated fixtures");
}

fn count_nodes(v: &Value) -> usize {
    match v {
        Value::Object(m) => m.values().map(|c| 1 + count_nodes(c)).sum(),
        Value::Array(a) => a.iter().map(|c| 1 + count_nodes(c)).sum(),
        _ => 0,
    }
}

#[test]
fn webhook_parsers_survive_random_and_flipped_bytes() {
    let bodies: Vec<Vec<u8>> = FIXTURES.iter().map(|(_, f)| scenario::fixture(f)).collect();
    let counts = Counts::default();
    let flips = prop::collection::vec((any::<usize>(), any::<u8>()), 1..8);
    let strategy = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600).prop_map(|b| (None, b, Vec::new())),
        (0..bodies.len(), flips).prop_map(|(i, f)| (Some(i), Vec::new(), f)),
    ];
    runner()
        .run(&strategy, |(fixture, random, flips)| {
            let body = match fixture {
                None => random,
                Some(i) => {
                    let mut b = bodies[i].clone();
                    for (at, byte) in flips {
                        let len = b.len();
                        b[at % len] = byte;
                    }
                    b
                }
            };
            for content_type in ["application/json", "application/x-www-form-urlencoded", "text/plain"] {
                parse_everywhere(&counts, content_type, &body);
            }
            Ok(())
        })
        .unwrap();
    counts.report("random and flipped bytes");
}

#[test]
fn shoko_hub_messages_survive_random_input() {
    let counts = Counts::default();
    let targets = prop::sample::select(
        &[
            "ShokoEvent:FileDetected",
            "ShokoEvent:FileHashed",
            "ShokoEvent:FileMatched",
            "ShokoEvent:FileNotMatched",
            "ShokoEvent:FileRenamed",
            "ShokoEvent:FileMoved",
            "ShokoEvent:FileDeleted",
            "FileMatched",
            "ShokoEvent:Other",
        ][..],
    );
    let frames: Vec<Value> =
        ["file_detected_s01e01", "file_hashed_s01e02", "file_matched_s01e01", "file_renamed_s01e01"]
            .iter()
            .map(|n| serde_json::from_slice(&scenario::fixture(&format!("shoko/signalr_{n}.json"))).unwrap())
            .collect();
    let edits = prop::collection::vec((any::<usize>(), json(), any::<bool>()), 0..4);
    let args = prop_oneof![
        json(),
        (0..frames.len(), edits).prop_map(move |(i, edits)| {
            let mut v = frames[i]["arguments"][0].clone();
            for (at, with, remove) in &edits {
                let nodes = count_nodes(&v).max(1);
                mutate(&mut v, &mut (at % nodes), with, *remove);
            }
            v
        }),
    ];
    let strategy = (targets, args, prop::collection::vec(any::<u8>(), 0..300));
    runner()
        .run(&strategy, |(target, args, bytes)| {
            counts.inputs.fetch_add(2, Ordering::Relaxed);
            for parsed in [
                shoko_bridge::file_event(target, &args),
                shoko_bridge::file_event(target, &Value::Array(vec![args.clone()])),
            ] {
                if let Ok(Some(e)) = parsed {
                    counts.facts.fetch_add(1, Ordering::Relaxed);
                    let fact = shared::events::Fact::Shoko(e);
                    let mut req = Request::new(MediaType::Tv, "x".into(), "test", scenario::BASE);
                    apply(&mut req, &fact, scenario::BASE, &Context::default());
                }
            }
            let mut buffer = shoko_bridge::signalr::protocol::RecordBuffer::default();
            let mut framed = args.to_string().into_bytes();
            framed.push(0x1e);
            framed.extend_from_slice(&bytes);
            for record in buffer.push(&framed) {
                let _ = shoko_bridge::signalr::protocol::parse_message(&record);
                let _ = shoko_bridge::signalr::protocol::parse_handshake_response(&record);
            }
            Ok(())
        })
        .unwrap();
    counts.report("Shoko hub messages");
}
