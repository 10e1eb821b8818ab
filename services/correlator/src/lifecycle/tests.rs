//! Table-driven tests of [`apply`]: given some facts, when one more arrives, then the request
//! is in this state, its items in these, and the last timeline entry reads so. Scenario tests
//! over the real fixtures, shuffled, live in the workspace's `tests/correlation.rs`.

use shared::events::arr::{ArrEvent, ArrMedia, EpisodeRef, ImportedFile, Release};
use shared::events::jellyseerr::{Notification, RequestEvent};
use shared::events::qbittorrent::{Finished, FinishedVia, Progress, TorrentEvent};
use shared::events::shoko::{FileEvent, FileEventKind};
use shared::events::{Fact, JellyfinEvent, MediaType};
use shared::ids::{DownloadId, InfoHash, JellyseerrRequestId, TmdbId, TvdbId};
use shared::model::State;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::*;

const T0: OffsetDateTime = datetime!(2025-01-10 18:00 UTC);
const HASH: &str = "5e3f9a1c7b2d4e6f8091a2b3c4d5e6f708192a3b";
const HASH2: &str = "feedfacefeedfacefeedfacefeedfacefeedface";

fn at(minute: i64) -> OffsetDateTime {
    T0 + Duration::minutes(minute)
}

fn jellyseerr(n: Notification, tv: bool) -> Fact {
    Fact::Jellyseerr(RequestEvent {
        notification: n,
        notification_type: format!("{n:?}"),
        event: None,
        media_type: Some(if tv { MediaType::Tv } else { MediaType::Movie }),
        tmdb_id: Some(TmdbId(1)),
        tvdb_id: tv.then_some(TvdbId(2)),
        request_id: Some(JellyseerrRequestId(42)),
        requested_by: Some("alice".into()),
        requested_by_email: None,
        title: Some("Title".into()),
        year: Some(2022),
        poster_url: None,
        is_4k: false,
        requested_seasons: if tv { vec![1] } else { vec![] },
        media_status: None,
        message: None,
        issue: None,
    })
}

fn media(tv: bool) -> ArrMedia {
    ArrMedia {
        media_type: if tv { MediaType::Tv } else { MediaType::Movie },
        arr_id: None,
        title: "Title".into(),
        year: Some(2022),
        tmdb_id: Some(TmdbId(1)),
        tvdb_id: tv.then_some(TvdbId(2)),
        imdb_id: None,
        anime: false,
        path: None,
        tags: vec![],
        poster_url: None,
        is_4k: false,
    }
}

fn eps(n: &[u32]) -> Vec<EpisodeRef> {
    n.iter().map(|&episode| EpisodeRef { season: 1, episode }).collect()
}

fn grab(episodes: &[u32], hash: &str) -> Fact {
    let arr = ArrEvent::Grab {
        media: media(!episodes.is_empty()),
        episodes: eps(episodes),
        release: Release { quality: Some("Bluray-1080p".into()), size: Some(1_000), ..Default::default() },
        download_id: DownloadId::parse(hash),
        download_client: None,
    };
    if episodes.is_empty() { Fact::Radarr(arr) } else { Fact::Sonarr(arr) }
}

fn import(episodes: &[u32], path: &str) -> Fact {
    let arr = ArrEvent::Download {
        media: media(!episodes.is_empty()),
        episodes: eps(episodes),
        file: ImportedFile { path: path.into(), ..Default::default() },
        is_upgrade: false,
        download_id: DownloadId::parse(HASH),
        deleted_files: vec![],
        release: None,
    };
    if episodes.is_empty() { Fact::Radarr(arr) } else { Fact::Sonarr(arr) }
}

fn manual_import(episodes: &[u32]) -> Fact {
    Fact::Sonarr(ArrEvent::ManualInteractionRequired {
        media: media(true),
        episodes: eps(episodes),
        download_id: DownloadId::parse(HASH),
        title: None,
        status: Some("Warning".into()),
        messages: vec!["No files found".into()],
    })
}

fn finished(hash: &str) -> Fact {
    Fact::Qbittorrent(TorrentEvent::Finished(Finished {
        hash: InfoHash::parse(hash).unwrap(),
        name: None,
        content_path: None,
        save_path: None,
        size: None,
        category: None,
        tags: vec![],
        via: FinishedVia::Hook,
    }))
}

fn progress(p: f64) -> Fact {
    Fact::Qbittorrent(TorrentEvent::Progress(Progress {
        hash: InfoHash::parse(HASH).unwrap(),
        name: None,
        progress: p,
        dlspeed: 1000,
        eta: Some(60),
        state: "downloading".into(),
        size: Some(1_000),
        amount_left: None,
        num_seeds: None,
        stalled: None,
        error: None,
    }))
}

fn jellyfin(item_type: &str, episode: Option<u32>) -> Fact {
    Fact::Jellyfin(JellyfinEvent {
        notification_type: "ItemAdded".into(),
        item_id: Some("a1b2c3d4e5f6478899aabbccddeeff00".into()),
        item_type: Some(item_type.into()),
        name: None,
        year: None,
        series_name: None,
        series_id: None,
        season: episode.map(|_| 1),
        episode,
        episode_end: None,
        tmdb_id: None,
        tvdb_id: None,
        imdb_id: None,
        series_tmdb_id: None,
        series_tvdb_id: None,
        server_id: None,
        server_url: Some("http://jf".into()),
        path: None,
    })
}

fn shoko(kind: FileEventKind, path: &str) -> Fact {
    let mut e = FileEvent::new(kind, paths_name(path));
    e.path = Some(path.into());
    Fact::Shoko(e)
}

fn paths_name(p: &str) -> String {
    shared::paths::file_name(p).to_owned()
}

const FILE1: &str = "/tv/Title/Season 01/Title - S01E01.mkv";
const FILE2: &str = "/tv/Title/Season 01/Title - S01E02.mkv";

struct Case {
    name: &'static str,
    tv: bool,
    given: Vec<(Fact, i64)>,
    when: (Fact, i64),
    state: State,
    items: Vec<(ItemKey, State)>,
    /// The message of the entry `when` added, and whether it is late; `None`: no entry.
    entry: Option<(&'static str, bool)>,
}

fn run(case: &Case) -> (Request, Applied) {
    let media_type = if case.tv { MediaType::Tv } else { MediaType::Movie };
    let mut req = Request::new(media_type, "Title".into(), "jellyseerr", at(0));
    let ctx = Context::default();
    for (fact, minute) in &case.given {
        apply(&mut req, fact, at(*minute), &ctx);
    }
    let applied = apply(&mut req, &case.when.0, at(case.when.1), &ctx);
    (req, applied)
}

#[test]
fn apply_moves_requests_forward_only_on_evidence() {
    use Notification::*;
    let film = |given: Vec<(Fact, i64)>, when: (Fact, i64), state, entry| Case {
        name: "",
        tv: false,
        given,
        when,
        state,
        items: vec![],
        entry,
    };
    let mut cases = vec![
        Case {
            name: "a pending request is requested",
            ..film(vec![], (jellyseerr(MediaPending, false), 0), State::Requested, Some(("Requested by alice", false)))
        },
        Case {
            name: "approval follows the request",
            ..film(
                vec![(jellyseerr(MediaPending, false), 0)],
                (jellyseerr(MediaApproved, false), 1),
                State::Approved,
                Some(("Approved", false)),
            )
        },
        Case {
            name: "a late pending notice is noted, not applied",
            ..film(
                vec![(jellyseerr(MediaApproved, false), 1)],
                (jellyseerr(MediaPending, false), 0),
                State::Approved,
                Some(("Requested by alice", true)),
            )
        },
        Case {
            name: "a grab means found",
            ..film(
                vec![(jellyseerr(MediaApproved, false), 1)],
                (grab(&[], HASH), 2),
                State::Indexed,
                Some(("Found Bluray-1080p (1.0 kB)", false)),
            )
        },
        Case {
            name: "progress means downloading",
            ..film(vec![(grab(&[], HASH), 2)], (progress(0.3), 3), State::Downloading, Some(("Downloading", false)))
        },
        Case {
            name: "more progress adds no entry",
            ..film(vec![(grab(&[], HASH), 2), (progress(0.3), 3)], (progress(0.6), 4), State::Downloading, None)
        },
        Case {
            name: "completion means downloaded",
            ..film(
                vec![(grab(&[], HASH), 2), (progress(0.3), 3)],
                (finished(HASH), 5),
                State::Downloaded,
                Some(("Download finished", false)),
            )
        },
        Case {
            name: "an import proves the download finished",
            ..film(
                vec![(grab(&[], HASH), 2)],
                (import(&[], "/m/Title.mkv"), 6),
                State::Importing,
                Some(("Imported Title.mkv", false)),
            )
        },
        Case {
            name: "a completion after the import is late",
            ..film(
                vec![(grab(&[], HASH), 2), (import(&[], "/m/Title.mkv"), 6)],
                (finished(HASH), 5),
                State::Importing,
                Some(("Download finished", true)),
            )
        },
        Case {
            name: "Jellyfin proves the film available from any stage",
            ..film(
                vec![(grab(&[], HASH), 2)],
                (jellyfin("Movie", None), 7),
                State::Available,
                Some(("Available in Jellyfin", false)),
            )
        },
        Case {
            name: "a failure after the grab fails the request",
            ..film(
                vec![(grab(&[], HASH), 3)],
                (jellyseerr(MediaFailed, false), 5),
                State::Failed,
                Some(("Jellyseerr could not send the request to Radarr/Sonarr (see Jellyseerr's log)", false)),
            )
        },
        Case {
            name: "a grab after a failure clears it",
            ..film(
                vec![(jellyseerr(MediaFailed, false), 5)],
                (grab(&[], HASH), 7),
                State::Indexed,
                Some(("Found Bluray-1080p (1.0 kB)", false)),
            )
        },
        Case {
            name: "an older grab applied after a failure does not clear it",
            ..film(
                vec![(jellyseerr(MediaFailed, false), 5)],
                (grab(&[], HASH), 3),
                State::Failed,
                Some(("Found Bluray-1080p (1.0 kB)", false)),
            )
        },
        Case {
            name: "declined sticks",
            ..film(
                vec![(jellyseerr(MediaDeclined, false), 1)],
                (grab(&[], HASH), 7),
                State::Declined,
                Some(("Found Bluray-1080p (1.0 kB)", false)),
            )
        },
        Case {
            name: "an upgrade grab keeps the film available",
            ..film(
                vec![(grab(&[], HASH), 2), (jellyfin("Movie", None), 7)],
                (grab(&[], HASH2), 90),
                State::Available,
                Some(("Upgrade: Found Bluray-1080p (1.0 kB)", false)),
            )
        },
        Case {
            name: "a test event changes nothing",
            ..film(vec![], (Fact::Radarr(ArrEvent::Test), 0), State::Requested, None)
        },
    ];
    let series = |given: Vec<(Fact, i64)>, when: (Fact, i64), state, items: Vec<(ItemKey, State)>, entry| Case {
        name: "",
        tv: true,
        given,
        when,
        state,
        items,
        entry,
    };
    cases.extend([
        Case {
            name: "a season pack tracks every episode",
            ..series(
                vec![(jellyseerr(MediaAutoApproved, true), 0)],
                (grab(&[1, 2, 3], HASH), 2),
                State::Indexed,
                vec![((1, 1), State::Indexed), ((1, 2), State::Indexed), ((1, 3), State::Indexed)],
                Some(("Found Bluray-1080p (1.0 kB)", false)),
            )
        },
        Case {
            name: "a series is as far as its slowest episode",
            ..series(
                vec![(grab(&[1, 2], HASH), 2)],
                (jellyfin("Episode", Some(1)), 9),
                State::Indexed,
                vec![((1, 1), State::Available), ((1, 2), State::Indexed)],
                Some(("Available in Jellyfin", false)),
            )
        },
        Case {
            name: "Jellyseerr available covers episodes grabbed before it, even applied after",
            ..series(
                vec![(jellyseerr(MediaAvailable, true), 20)],
                (grab(&[1, 2], HASH), 2),
                State::Available,
                vec![((1, 1), State::Available), ((1, 2), State::Available)],
                Some(("Found Bluray-1080p (1.0 kB)", false)),
            )
        },
        Case {
            name: "an import of one episode of a pack finishes the pack's download, not the others' imports",
            ..series(
                vec![(grab(&[1, 2], HASH), 2)],
                (import(&[2], FILE2), 6),
                State::Downloaded,
                vec![((1, 1), State::Downloaded), ((1, 2), State::Importing)],
                Some(("Imported Title - S01E02.mkv", false)),
            )
        },
        Case {
            name: "the pack's grab applied after an import from it: its other episodes are downloaded",
            ..series(
                vec![(import(&[2], FILE2), 6)],
                (grab(&[1, 2], HASH), 2),
                State::Downloaded,
                vec![((1, 1), State::Downloaded), ((1, 2), State::Importing)],
                Some(("Found Bluray-1080p (1.0 kB)", false)),
            )
        },
        Case {
            name: "an import of an episode grabbed alone moves only that episode",
            ..series(
                vec![(grab(&[1], HASH2), 2), (grab(&[2], HASH), 3)],
                (import(&[2], FILE2), 6),
                State::Indexed,
                vec![((1, 1), State::Indexed), ((1, 2), State::Importing)],
                Some(("Imported Title - S01E02.mkv", false)),
            )
        },
        Case {
            name: "Shoko seeing an imported file means matching",
            ..series(
                vec![(grab(&[1], HASH), 2), (import(&[1], FILE1), 6)],
                (shoko(FileEventKind::Hashed, FILE1), 7),
                State::Matching,
                vec![((1, 1), State::Matching)],
                Some(("Shoko hashed Title - S01E01.mkv", false)),
            )
        },
        Case {
            name: "Jellyfin ends matching",
            ..series(
                vec![(grab(&[1], HASH), 2), (import(&[1], FILE1), 6), (shoko(FileEventKind::Matched, FILE1), 7)],
                (jellyfin("Episode", Some(1)), 9),
                State::Available,
                vec![((1, 1), State::Available)],
                Some(("Available in Jellyfin", false)),
            )
        },
        Case {
            name: "a manual import notice means downloaded",
            ..series(
                vec![(grab(&[1], HASH), 2)],
                (manual_import(&[1]), 5),
                State::Downloaded,
                vec![((1, 1), State::Downloaded)],
                Some(("Sonarr needs a manual import: No files found", false)),
            )
        },
        Case {
            name: "a stale manual import notice after the import is late",
            ..series(
                vec![(grab(&[1], HASH), 2), (import(&[1], FILE1), 6)],
                (manual_import(&[1]), 5),
                State::Importing,
                vec![((1, 1), State::Importing)],
                Some(("Sonarr needs a manual import: No files found", true)),
            )
        },
    ]);
    for case in &cases {
        let (req, applied) = run(case);
        assert_eq!(req.state(), case.state, "{}: state", case.name);
        for (key, state) in &case.items {
            assert_eq!(req.items[key].stage, *state, "{}: item {key:?}", case.name);
        }
        match (case.entry, applied.timeline.last()) {
            (None, None) => {}
            (Some((message, late)), Some(e)) => {
                assert_eq!((e.message.as_str(), e.late), (message, late), "{}: entry", case.name);
            }
            (want, got) => panic!("{}: expected entry {want:?}, got {got:?}", case.name),
        }
    }
}

fn retry(commands: &[&str], error: Option<&str>, quality_profile: Option<&str>) -> Fact {
    Fact::Tracker(shared::events::tracker::TrackerEvent::Retry {
        request_id: shared::ids::RequestId(1),
        by: Some("admin".into()),
        commands: commands.iter().map(|c| c.to_string()).collect(),
        error: error.map(str::to_owned),
        quality_profile: quality_profile.map(str::to_owned),
    })
}

#[test]
fn lower_quality_moves_back_only_when_its_search_was_sent() {
    let failed = || vec![(jellyseerr(Notification::MediaApproved, false), 1), (grab(&[], HASH), 2)];
    let switch = "Radarr quality profile HD-1080p → SD for movie 7";
    let search = "Radarr MoviesSearch for movie 7 (command 9)";
    let cases = [
        (
            retry(&[switch, search], None, Some("SD")),
            State::Searching,
            format!("Lower quality by admin: {switch}; {search}"),
        ),
        (
            retry(&[switch], Some("Radarr answered 500 Internal Server Error"), Some("SD")),
            State::Indexed,
            format!(
                "Lower quality by admin: {switch}, but the search failed: Radarr answered 500 Internal Server Error"
            ),
        ),
        (
            retry(&[], Some("could not lower the quality: Radarr has no quality profile \"Potato\""), None),
            State::Indexed,
            "Retry by admin failed: could not lower the quality: Radarr has no quality profile \"Potato\"".to_owned(),
        ),
    ];
    for (fact, state, message) in cases {
        let case = Case { name: "", tv: false, given: failed(), when: (fact, 3), state, items: vec![], entry: None };
        let (req, applied) = run(&case);
        assert_eq!(req.state(), state, "{message}");
        let entry = applied.timeline.last().unwrap();
        assert_eq!(entry.message, message);
        let profile = entry.details.get("quality_profile").and_then(|p| p.as_str());
        assert_eq!(profile, message.starts_with("Lower").then_some("SD"), "{message}");
    }
}

#[test]
fn reasons_follow_the_latest_fact_whatever_the_order() {
    let mut req = Request::new(MediaType::Tv, "Title".into(), "sonarr", at(0));
    let ctx = Context::default();
    apply(&mut req, &grab(&[1], HASH), at(2), &ctx);
    apply(&mut req, &import(&[1], FILE1), at(6), &ctx);
    apply(&mut req, &shoko(FileEventKind::Matched, FILE1), at(8), &ctx);
    apply(&mut req, &shoko(FileEventKind::NotMatched, FILE1), at(7), &ctx);
    assert_eq!(req.items[&(1, 1)].reason, None, "the older 'not matched' does not override the match");
    apply(&mut req, &shoko(FileEventKind::NotMatched, FILE1), at(9), &ctx);
    assert!(req.items[&(1, 1)].reason.as_deref().unwrap().starts_with("Shoko could not match"));
    assert!(req.stall_reason().is_some());
}

#[test]
fn progress_is_weighted_by_size_and_upgrades_do_not_count() {
    let mut req = Request::new(MediaType::Movie, "Title".into(), "radarr", at(0));
    let ctx = Context::default();
    apply(&mut req, &grab(&[], HASH), at(2), &ctx);
    apply(&mut req, &progress(0.25), at(3), &ctx);
    assert_eq!(req.progress(), 0.25);
    assert_eq!((req.dlspeed(), req.eta()), (1000, Some(60)));
    apply(&mut req, &jellyfin("Movie", None), at(10), &ctx);
    apply(&mut req, &grab(&[], HASH2), at(90), &ctx);
    assert_eq!(req.progress(), 1.0, "an upgrade of available media does not reset progress");
    assert!(req.downloads[HASH2].upgrade);
}

#[test]
fn same_keys_is_only_said_of_requests_whose_keys_are_equal() {
    let ctx = Context::default();
    let steps = [
        jellyseerr(Notification::MediaPending, true),
        jellyseerr(Notification::MediaApproved, true),
        grab(&[1, 2], HASH),
        progress(0.5),
        finished(&HASH.to_ascii_lowercase()),
        import(&[1], FILE1),
        import(&[2], FILE2),
        jellyfin("Episode", Some(1)),
    ];
    let mut req = Request::new(MediaType::Tv, "Title".into(), "jellyseerr", at(0));
    let (mut same, mut changed) = (0, 0);
    for (minute, fact) in steps.iter().enumerate() {
        let before = req.clone();
        apply(&mut req, fact, at(minute as i64 + 1), &ctx);
        if before.same_keys(&req) {
            assert_eq!(before.keys(), req.keys(), "after {fact:?}");
            same += 1;
        } else if before.keys() != req.keys() {
            changed += 1;
        }
    }
    assert!(same > 0 && changed > 0, "the walk both keeps and changes keys ({same} kept, {changed} changed)");
}

#[test]
fn keys_are_spelled_as_the_lifecycle_documents_them() {
    let ctx = Context::default();
    let mut req = Request::new(MediaType::Tv, "Title".into(), "jellyseerr", at(0));
    for (minute, fact) in
        [jellyseerr(Notification::MediaPending, true), grab(&[1, 2], HASH), import(&[1], FILE1)].iter().enumerate()
    {
        apply(&mut req, fact, at(minute as i64 + 1), &ctx);
    }
    req.imdb_id = Some("TT0123".into());
    let keys = req.keys();
    let spelled = |k: &str| keys.contains(k);
    let tmdb = req.tmdb_id.map(|id| format!("tv:tmdb:{id}")).expect("a tmdb id");
    assert!(
        spelled(&tmdb) && spelled("tv:imdb:tt0123") && spelled(&format!("dl:{}", req.downloads.keys().next().unwrap()))
    );
    assert!(req.tvdb_id.is_none_or(|id| spelled(&format!("tv:tvdb:{id}"))));
    assert!(req.jellyseerr_id.is_none_or(|id| spelled(&format!("jellyseerr:{id}"))));
    assert!(spelled(&format!("path:{FILE1}")) && spelled(&format!("file:{}", shared::paths::file_name(FILE1))));
    assert!(keys.iter().any(|k| k.starts_with("series:")), "{keys:?}");
    if let Some(dir) = &req.media_path {
        assert!(spelled(&format!("ep:{dir}:S01E01")), "{keys:?}");
    }
    assert_eq!(super::episode_key("/tv/X", 3, 7), "ep:/tv/X:S03E07");
    assert_eq!(super::episode_key("/tv/X", 12, 105), "ep:/tv/X:S12E105");
    assert_eq!(super::episode_key("", 0, 10), "ep::S00E10");
}
