//! Issue 9: stalls with reasons, library checks, retries and cancels that reach Radarr and
//! Sonarr, archiving, statistics. Radarr, Sonarr and Jellyfin are stood in for by local
//! servers that speak their API (shapes from tests/fixtures) and record what they are asked.
//! Time-based logic runs at explicit times (and the watchdog's clock under paused time).

mod common;
mod scenario;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{OriginalUri, Request};
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use correlator::peers::Peers;
use correlator::watchdog::{Thresholds, Watchdog};
use scenario::{BASE, Step, fx, fx_with};
use serde_json::{Value, json};
use shared::events::tracker::TrackerEvent;
use shared::model::State;
use shared::subjects::Source::{Jellyseerr, Radarr, Sonarr};
use time::OffsetDateTime;

/// What a stand-in server was asked: method, path with query, body.
type Calls = Arc<Mutex<Vec<(Method, String, Value)>>>;

/// A local server answering `routes` (method, path prefix → status and JSON), recording calls.
async fn stand_in(routes: Vec<(Method, &'static str, StatusCode, Value)>, key: &'static str) -> (String, Calls) {
    let calls: Calls = Arc::default();
    let log = calls.clone();
    let routes = Arc::new(routes);
    let app = axum::Router::new().fallback(move |OriginalUri(uri): OriginalUri, req: Request| {
        let (log, routes) = (log.clone(), routes.clone());
        async move {
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let path = uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
            log.lock().unwrap().push((parts.method.clone(), path.clone(), body));
            let authorized = parts.headers.get("x-api-key").is_some_and(|v| v == key)
                || parts.headers.get("authorization").is_some_and(|v| v.to_str().unwrap_or("").contains(key));
            if !authorized {
                return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "Unauthorized"}))).into_response();
            }
            match routes.iter().find(|(m, p, _, _)| *m == parts.method && path.starts_with(p)) {
                Some((_, _, status, v)) => (*status, axum::Json(v.clone())).into_response(),
                None => (StatusCode::NOT_FOUND, axum::Json(json!({"error": "not here"}))).into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, calls)
}

fn fixture(name: &str) -> Value {
    serde_json::from_slice(&scenario::fixture(name)).unwrap()
}

/// NATS, the correlator running in this process, and its database to read.
struct Stack {
    bus: shared::Bus,
    db: std::path::PathBuf,
    cancel: tokio_util::sync::CancellationToken,
    _nats: shared::nats_server::EmbeddedNats,
    _dir: tempfile::TempDir,
}

impl Stack {
    async fn start(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let nats = shared::nats_server::EmbeddedNats::start(&dir.path().join("nats"), "nats-server").await.unwrap();
        let bus = shared::Bus::connect(&nats.url(), "test").await.unwrap();
        let mut pairs = vec![("TRACKER_DATA_DIR", dir.path().to_str().unwrap()), ("TRACKER_WATCH_INTERVAL", "1h")];
        pairs.extend_from_slice(env);
        let env = shared::Env::from_pairs(pairs);
        let correlator =
            correlator::Correlator::build(correlator::CorrelatorSettings::from_env(&env).unwrap(), bus.clone())
                .await
                .unwrap();
        let cancel = tokio_util::sync::CancellationToken::new();
        tokio::spawn(correlator.run(cancel.clone()));
        Self { bus, db: dir.path().join("tracker.db"), cancel, _nats: nats, _dir: dir }
    }

    /// A watchdog over the correlator's database (through its own pool), not running: the
    /// tests call `tick` with the time they want.
    async fn watchdog(&self, env: &[(&str, &str)]) -> Watchdog {
        let env = shared::Env::from_pairs(env.iter().copied());
        let store = correlator::Store::open(&self.db).await.unwrap();
        let path_map = shared::paths::PathMap::parse(&env.get("TRACKER_PATH_MAP").unwrap_or_default()).unwrap();
        Watchdog::new(store, self.bus.clone(), Thresholds::from_env(&env).unwrap(), Peers::from_env(&env))
            .with_path_map(path_map)
    }

    async fn publish(&self, steps: &[Step]) {
        scenario::publish_all(&self.bus, steps).await;
    }

    /// Waits until the only request satisfies `pred`.
    async fn wait(
        &self,
        what: &str,
        pred: impl Fn(&shared::model::RequestDetail) -> bool,
    ) -> shared::model::RequestDetail {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let store = correlator::Store::open(&self.db).await.unwrap();
            let list = correlator::store::list(store.pool(), &Default::default()).await.unwrap();
            let mut found = None;
            for r in list.requests {
                let d = correlator::store::detail(store.pool(), r.id, None).await.unwrap().unwrap();
                if pred(&d) {
                    found = Some(d);
                }
            }
            store.close().await;
            if let Some(d) = found {
                return d;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn at(minutes: i64) -> OffsetDateTime {
    BASE + time::Duration::minutes(minutes)
}

const HOURS: i64 = 60;

#[tokio::test(flavor = "multi_thread")]
async fn a_request_with_no_grab_after_6_hours_says_no_release_found_and_recovers_with_the_grab() {
    let stack = Stack::start(&[]).await;
    stack.publish(&[fx(Jellyseerr, "jellyseerr/webhook_media_approved_movie_the_batman_req42.json", 1)]).await;
    stack.wait("approved", |r| r.summary.state == State::Approved).await;
    let watchdog = stack.watchdog(&[]).await;
    assert!(watchdog.tick(at(5 * HOURS)).await.unwrap().is_empty(), "5 h is not yet stalled");
    let found = watchdog.tick(at(6 * HOURS + 2)).await.unwrap();
    assert!(matches!(&found[..], [TrackerEvent::Stalled { state: State::Approved, .. }]), "{found:?}");
    let r = stack.wait("stalled", |r| r.summary.stalled).await;
    assert_eq!(
        r.summary.reason.as_deref(),
        Some("No release found yet after 6 h: releases may be rejected by the quality profile")
    );
    assert!(watchdog.tick(at(6 * HOURS + 3)).await.unwrap().is_empty(), "said once");
    stack.publish(&[fx(Radarr, "radarr/webhook_grab_the_batman.json", 7 * HOURS)]).await;
    let r = stack.wait("found", |r| r.summary.state == State::Indexed).await;
    assert!(!r.summary.stalled && r.summary.reason.is_none(), "recovers by itself: {:?}", r.summary.reason);
    assert!(r.timeline.iter().any(|e| e.message.starts_with("Stalled: No release found yet")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_download_radarr_does_not_import_shows_the_queue_status_messages() {
    let mut queue = fixture("radarr/api_v3_queue.json");
    queue["records"][0]["trackedDownloadState"] = json!("importBlocked");
    queue["records"][0]["trackedDownloadStatus"] = json!("warning");
    queue["records"][0]["statusMessages"] =
        json!([{"title": "The.Batman.2022.1080p.BluRay.x264-FICTION", "messages": ["Unable to parse file"]}]);
    let (radarr, calls) = stand_in(vec![(Method::GET, "/api/v3/queue", StatusCode::OK, queue)], "rk").await;
    let env = [("RADARR_URL", radarr.as_str()), ("RADARR_API_KEY", "rk")];
    let stack = Stack::start(&env).await;
    stack
        .publish(&[
            fx(Radarr, "radarr/webhook_grab_the_batman.json", 3),
            scenario::finished("5e3f9a1c7b2d4e6f8091a2b3c4d5e6f708192a3b", 10),
        ])
        .await;
    stack.wait("downloaded", |r| r.summary.state == State::Downloaded).await;
    let watchdog = stack.watchdog(&env).await;
    assert!(watchdog.tick(at(10 + 14)).await.unwrap().is_empty(), "14 min is still fine");
    watchdog.tick(at(10 + 16)).await.unwrap();
    let r = stack.wait("stalled", |r| r.summary.stalled).await;
    assert_eq!(r.summary.reason.as_deref(), Some("Radarr: import blocked: Unable to parse file"));
    let asked: Vec<String> = calls.lock().unwrap().iter().map(|c| c.1.clone()).collect();
    assert_eq!(asked, ["/api/v3/queue?page=1&pageSize=500"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_import_whose_jellyfin_webhook_never_came_is_found_through_jellyfins_api() {
    let items = fixture("jellyfin/api_items_query_movies_with_tmdb.json");
    let (jellyfin, calls) = stand_in(vec![(Method::GET, "/Items", StatusCode::OK, items)], "jk").await;
    let env = [("JELLYFIN_URL", jellyfin.as_str()), ("JELLYFIN_API_KEY", "jk")];
    let stack = Stack::start(&env).await;
    stack
        .publish(&[
            fx(Jellyseerr, "jellyseerr/webhook_media_approved_movie_the_batman_req42.json", 1),
            fx(Radarr, "radarr/webhook_grab_the_batman.json", 3),
            fx(Radarr, "radarr/webhook_download_the_batman.json", 11),
        ])
        .await;
    stack.wait("importing", |r| r.summary.state == State::Importing).await;
    let watchdog = stack.watchdog(&env).await;
    assert!(watchdog.tick(at(11 + 2)).await.unwrap().is_empty(), "too early to ask");
    watchdog.tick(at(11 + 6)).await.unwrap();
    let r = stack.wait("available", |r| r.summary.state == State::Available).await;
    assert!(
        r.summary.watch_url.is_none()
            || r.summary.watch_url.as_deref().unwrap().contains("a1b2c3d4e5f6478899aabbccddeeff00")
    );
    assert_eq!(r.timeline.last().unwrap().message, "Available: found in Jellyfin's library");
    let (_, path, _) = calls.lock().unwrap()[0].clone();
    assert!(path.starts_with("/Items?Recursive=true&IncludeItemTypes=Movie&HasTmdbId=true"), "{path}");
    assert!(path.contains("SearchTerm=The+Batman"), "{path}");
}

/// A fact as Jellyseerr's 4K Radarr or Sonarr sends it (`?instance=4k`).
fn from_the_4k_instance(mut step: Step) -> Step {
    match &mut step.fact {
        shared::events::Fact::Radarr(e) | shared::events::Fact::Sonarr(e) => e.mark_4k(),
        other => panic!("not a Radarr or Sonarr fact: {other:?}"),
    }
    step
}

/// Jellyfin's settings for the watchdog, with its media mounted at `/media`.
fn jellyfin_at(url: &str) -> [(&str, &str); 3] {
    [("JELLYFIN_URL", url), ("JELLYFIN_API_KEY", "jk"), ("TRACKER_PATH_MAP", "/media=/data/media")]
}

/// The Watch-now link of request `id`, Jellyfin being public at `https://jf.example`.
async fn watch_link(stack: &Stack, id: shared::ids::RequestId) -> String {
    let store = correlator::Store::open(&stack.db).await.unwrap();
    let r = correlator::store::detail(store.pool(), id, Some("https://jf.example")).await.unwrap().unwrap();
    r.summary.watch_url.unwrap_or_default()
}

/// A 4K film whose Jellyfin webhook never came: Jellyfin's HD copy of the film is not it; its
/// own copy, found by the file the 4K Radarr imported (through the path map), is.
#[tokio::test(flavor = "multi_thread")]
async fn a_4k_film_is_found_in_jellyfin_by_its_own_file_not_the_hd_copy() {
    let hd = fixture("jellyfin/api_items_query_movies_with_tmdb.json");
    let mut both = hd.clone();
    let mut copy_4k = hd["Items"][0].clone();
    copy_4k["Id"] = json!("b2c3d4e5f6a7489900aabbccddeeff11");
    copy_4k["Path"] = json!("/media/movies-4k/The Batman (2022)/The Batman (2022) [Bluray-2160p].mkv");
    both["Items"].as_array_mut().unwrap().push(copy_4k);
    let (only_hd, _) = stand_in(vec![(Method::GET, "/Items", StatusCode::OK, hd)], "jk").await;
    let (with_4k, _) = stand_in(vec![(Method::GET, "/Items", StatusCode::OK, both)], "jk").await;
    let stack = Stack::start(&[]).await;
    let approved = [("/event", json!("4K Movie Request Approved"))];
    let import = [
        ("/movieFile/path", json!("/data/media/movies-4k/The Batman (2022)/The Batman (2022) [Bluray-2160p].mkv")),
        ("/downloadId", json!("C0DEC0DEC0DEC0DEC0DEC0DEC0DEC0DEC0DEC0DE")),
    ];
    stack
        .publish(&[
            fx_with(Jellyseerr, "jellyseerr/webhook_media_approved_movie_the_batman_req42.json", 1, &approved),
            from_the_4k_instance(fx_with(Radarr, "radarr/webhook_grab_the_batman.json", 3, &import[1..])),
            from_the_4k_instance(fx_with(Radarr, "radarr/webhook_download_the_batman.json", 11, &import)),
        ])
        .await;
    let r = stack.wait("importing", |r| r.summary.state == State::Importing).await;
    assert!(r.summary.is_4k);
    let found = stack.watchdog(&jellyfin_at(&only_hd)).await.tick(at(11 + 6)).await.unwrap();
    assert!(found.is_empty(), "the HD copy is not it: {found:?}");
    stack.watchdog(&jellyfin_at(&with_4k)).await.tick(at(11 + 7)).await.unwrap();
    let r = stack.wait("available", |r| r.summary.state == State::Available).await;
    let watch = watch_link(&stack, r.summary.id).await;
    assert!(watch.starts_with("https://jf.example/web/#/details?id=b2c3d4e5f6a7489900aabbccddeeff11"), "{watch}");
}

/// The same for a 4K series: Jellyfin's HD copy has the episode too, but only the 4K copy's
/// file is the one the 4K Sonarr imported.
#[tokio::test(flavor = "multi_thread")]
async fn a_4k_series_episode_is_found_in_jellyfin_by_its_own_file() {
    const FILE: &str = "Severance/Season 02/Severance - S02E01 - Hello, Ms. Cobel [WEBDL-2160p].mkv";
    let series = |id: &str| json!({"Id": id, "Name": "Severance", "ProviderIds": {"Tvdb": "371980"}, "Type": "Series"});
    let episode = |id: &str, path: String| {
        json!({"Items": [{"Id": id, "Name": "Hello, Ms. Cobel", "ParentIndexNumber": 2, "IndexNumber": 1,
            "Path": path, "LocationType": "FileSystem", "Type": "Episode"}]})
    };
    let routes = vec![
        (Method::GET, "/Items", StatusCode::OK, json!({"Items": [series("5e1a"), series("5e4c")]})),
        (
            Method::GET,
            "/Shows/5e1a/",
            StatusCode::OK,
            episode("e1a1", format!("/media/tv/{}", FILE.replace("2160p", "1080p"))),
        ),
        (Method::GET, "/Shows/5e4c/", StatusCode::OK, episode("e4c1", format!("/media/tv-4k/{FILE}"))),
    ];
    let (jellyfin, _) = stand_in(routes, "jk").await;
    let stack = Stack::start(&[]).await;
    let approved = [("/event", json!("4K Series Request Approved"))];
    let import = [("/episodeFile/path", json!(format!("/data/media/tv-4k/{FILE}")))];
    stack
        .publish(&[
            fx_with(Jellyseerr, "jellyseerr/webhook_media_approved_tv_severance_req44.json", 1, &approved),
            from_the_4k_instance(fx(Sonarr, "sonarr/webhook_grab_severance_s02e01.json", 3)),
            from_the_4k_instance(fx_with(Sonarr, "sonarr/webhook_download_severance_s02e01.json", 11, &import)),
        ])
        .await;
    let r = stack.wait("E01 imported", |r| r.episodes.first().is_some_and(|e| e.state == State::Importing)).await;
    assert!(r.summary.is_4k);
    stack.watchdog(&jellyfin_at(&jellyfin)).await.tick(at(11 + 6)).await.unwrap();
    let r = stack.wait("E01 available", |r| r.episodes.first().is_some_and(|e| e.state == State::Available)).await;
    let watch = watch_link(&stack, r.summary.id).await;
    assert!(watch.starts_with("https://jf.example/web/#/details?id=5e4c"), "the 4K copy of the series: {watch}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_metadata_only_jellyfin_item_does_not_count_as_available() {
    let mut items = fixture("jellyfin/api_items_query_movies_with_tmdb.json");
    items["Items"][0]["LocationType"] = json!("Virtual");
    items["Items"][0]["Path"] = Value::Null;
    let (jellyfin, _) = stand_in(vec![(Method::GET, "/Items", StatusCode::OK, items)], "jk").await;
    let env = [("JELLYFIN_URL", jellyfin.as_str()), ("JELLYFIN_API_KEY", "jk")];
    let stack = Stack::start(&env).await;
    stack.publish(&[fx(Radarr, "radarr/webhook_download_the_batman.json", 11)]).await;
    stack.wait("importing", |r| r.summary.state == State::Importing).await;
    let found = stack.watchdog(&env).await.tick(at(11 + 6)).await.unwrap();
    assert!(found.is_empty(), "{found:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_re_request_of_a_film_radarr_already_has_goes_straight_to_available() {
    let (radarr, calls) = stand_in(
        vec![(Method::GET, "/api/v3/movie", StatusCode::OK, json!([{"id": 7, "tmdbId": 414906, "hasFile": true}]))],
        "rk",
    )
    .await;
    let env = [("RADARR_URL", radarr.as_str()), ("RADARR_API_KEY", "rk")];
    let stack = Stack::start(&env).await;
    stack.publish(&[fx(Jellyseerr, "jellyseerr/webhook_media_pending_movie_the_batman_req42.json", 0)]).await;
    stack.wait("requested", |r| r.summary.state == State::Requested).await;
    stack.watchdog(&env).await.tick(at(1)).await.unwrap();
    let r = stack.wait("available", |r| r.summary.state == State::Available).await;
    assert_eq!(r.timeline.last().unwrap().message, "Already in Radarr's library");
    assert_eq!(calls.lock().unwrap()[0].1, "/api/v3/movie?tmdbId=414906");
}

/// Radarr at RADARR_URL having the film says nothing of its 4K copy, which Jellyseerr asks of
/// its 4K Radarr: a 4K request is not taken as already there, until the 4K Radarr says so.
#[tokio::test(flavor = "multi_thread")]
async fn a_4k_request_is_looked_up_in_the_4k_radarr_never_the_other() {
    let (radarr, calls) = stand_in(
        vec![(Method::GET, "/api/v3/movie", StatusCode::OK, json!([{"id": 7, "tmdbId": 414906, "hasFile": true}]))],
        "rk",
    )
    .await;
    let env = [("RADARR_URL", radarr.as_str()), ("RADARR_API_KEY", "rk")];
    let stack = Stack::start(&env).await;
    let request = [("/event", json!("New 4K Movie Request"))];
    stack
        .publish(&[fx_with(Jellyseerr, "jellyseerr/webhook_media_pending_movie_the_batman_req42.json", 0, &request)])
        .await;
    let r = stack.wait("requested", |r| r.summary.state == State::Requested).await;
    assert!(r.summary.is_4k);
    stack.watchdog(&env).await.tick(at(1)).await.unwrap();
    assert!(calls.lock().unwrap().is_empty(), "the other Radarr is not asked");
    stack.publish(&[fx(Jellyseerr, "jellyseerr/webhook_media_approved_movie_the_batman_req42.json", 2)]).await;
    let r = stack.wait("approved", |r| r.summary.state == State::Approved).await;
    assert!(r.timeline.iter().all(|e| e.message != "Already in Radarr's library"), "{:?}", r.timeline);

    // The 4K Radarr, once configured, is the one asked; it has the film in 4K.
    let (radarr_4k, calls_4k) = stand_in(
        vec![(Method::GET, "/api/v3/movie", StatusCode::OK, json!([{"id": 70, "tmdbId": 414906, "hasFile": true}]))],
        "rk4",
    )
    .await;
    let with_4k = [env[0], env[1], ("RADARR_4K_URL", radarr_4k.as_str()), ("RADARR_4K_API_KEY", "rk4")];
    stack.watchdog(&with_4k).await.tick(at(3)).await.unwrap();
    let r = stack.wait("available", |r| r.summary.state == State::Available).await;
    assert_eq!(r.timeline.last().unwrap().message, "Already in Radarr's library");
    assert_eq!(calls_4k.lock().unwrap()[0].1, "/api/v3/movie?tmdbId=414906");
    assert!(calls.lock().unwrap().is_empty(), "still nothing asked of the other Radarr");
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_whose_webhook_never_came_are_caught_up_from_jellyseerrs_request_list() {
    let title = |t: &str, date: &str| json!({"title": t, "releaseDate": date, "posterPath": "/p.jpg"});
    let (jellyseerr, calls) = stand_in(
        vec![
            (Method::GET, "/api/v1/request?", StatusCode::OK, fixture("jellyseerr/api_v1_request_list.json")),
            (Method::GET, "/api/v1/movie/414906", StatusCode::OK, title("The Batman", "2022-03-01")),
            (Method::GET, "/api/v1/movie/693134", StatusCode::OK, title("Dune: Part Two", "2024-02-27")),
            (
                Method::GET,
                "/api/v1/tv/240411",
                StatusCode::OK,
                json!({"name": "Dan Da Dan", "firstAirDate": "2024-10-03"}),
            ),
        ],
        "jk",
    )
    .await;
    let env = [("JELLYSEERR_URL", jellyseerr.as_str()), ("JELLYSEERR_API_KEY", "jk")];
    let stack = Stack::start(&env).await;
    // Severance (request 44) was seen as requested; its approval webhook was lost.
    stack.publish(&[fx(Jellyseerr, "jellyseerr/webhook_media_pending_tv_severance_req44.json", 0)]).await;
    stack.wait("requested", |r| r.summary.state == State::Requested).await;

    let now = OffsetDateTime::parse("2025-01-17T00:00:00Z", &time::format_description::well_known::Rfc3339).unwrap();
    let watchdog = stack.watchdog(&env).await;
    assert_eq!(watchdog.catch_up(now).await.unwrap(), 4, "three unknown requests and one behind");
    let by_id = |id: u64| move |r: &shared::model::RequestDetail| r.summary.jellyseerr_id.map(|j| j.0) == Some(id);
    let batman = stack.wait("The Batman available", |r| by_id(42)(r) && r.summary.state == State::Available).await;
    assert_eq!((batman.summary.title.as_str(), batman.summary.year), ("The Batman", Some(2022)));
    assert_eq!(batman.summary.requested_by.as_deref(), Some("alice"));
    let dune = stack.wait("Dune failed", |r| by_id(45)(r) && r.summary.state == State::Failed).await;
    assert_eq!(dune.summary.title, "Dune: Part Two");
    let ddd = stack.wait("Dan Da Dan approved", |r| by_id(43)(r) && r.summary.state == State::Approved).await;
    assert_eq!(ddd.summary.title, "Dan Da Dan");
    let severance = stack.wait("Severance approved", |r| by_id(44)(r) && r.summary.state == State::Approved).await;
    let last = &severance.timeline.last().unwrap().message;
    assert_eq!(last, "Approved (caught up from Jellyseerr's request list)");
    let titles_asked = calls.lock().unwrap().iter().filter(|c| !c.1.starts_with("/api/v1/request")).count();
    assert_eq!(titles_asked, 3, "titles are asked only for requests the tracker did not know");

    assert_eq!(watchdog.catch_up(now).await.unwrap(), 0, "a second round finds nothing new");
    let later = now + time::Duration::days(30);
    assert_eq!(stack.watchdog(&env).await.catch_up(later).await.unwrap(), 0, "requests older than the window");
    assert!(calls.lock().unwrap()[0].1.starts_with("/api/v1/request?take=50&skip=0&sort=added"));
}

#[tokio::test(flavor = "multi_thread")]
async fn unmatched_anime_files_say_they_need_a_manual_link_and_available_requests_are_archived() {
    let stack = Stack::start(&[]).await;
    let anime_folder = "/data/media/anime/";
    stack
        .publish(&[
            fx(Sonarr, "sonarr/webhook_grab_dan_da_dan_s01_season_pack.json", 2),
            fx(Sonarr, "sonarr/webhook_download_import_complete_dan_da_dan_s01.json", 20),
            scenario::shoko("shoko/signalr_file_detected_s01e01.json", anime_folder, 21),
        ])
        .await;
    stack.wait("importing", |r| r.summary.state == State::Importing).await;
    let watchdog = stack.watchdog(&[("TRACKER_STALL_LIBRARY", "10h")]).await;
    // The rest of the season: Shoko saw them all, matched none.
    let mut more = Vec::new();
    for e in 2..=12 {
        let mut s = scenario::shoko("shoko/signalr_file_detected_s01e01.json", anime_folder, 21);
        if let shared::events::Fact::Shoko(f) = &mut s.fact {
            let p = f.path.clone().unwrap().replace("S01E01", &format!("S01E{e:02}"));
            f.relative_path = f.relative_path.replace("S01E01", &format!("S01E{e:02}"));
            f.path = Some(p);
        }
        s.raw = json!([e]);
        more.push(s);
    }
    stack.publish(&more).await;
    stack.wait("matching", |r| r.summary.state == State::Matching).await;
    watchdog.tick(at(21 + 61)).await.unwrap();
    let r = stack.wait("stalled", |r| r.summary.stalled).await;
    assert_eq!(
        r.summary.reason.as_deref(),
        Some("Shoko has not matched the file yet: it may need a manual link in Shoko")
    );

    stack.publish(&[fx(Jellyseerr, "jellyseerr/webhook_media_available_tv_dan_da_dan_req43.json", 3 * HOURS)]).await;
    stack.wait("available", |r| r.summary.state == State::Available).await;
    assert!(watchdog.tick(at(3 * HOURS + 6 * 24 * HOURS)).await.unwrap().is_empty());
    watchdog.tick(at(3 * HOURS + 7 * 24 * HOURS + 1)).await.unwrap();
    let r = stack.wait("archived", |r| r.summary.state == State::Completed).await;
    assert_eq!(r.timeline.last().unwrap().message, "Archived");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_download_client_problem_shows_on_requests_in_flight_until_health_is_restored() {
    let stack = Stack::start(&[]).await;
    let health = |event: &str, minute| {
        fx_with(
            Radarr,
            "radarr/webhook_health.json",
            minute,
            &[
                ("/eventType", json!(event)),
                ("/type", json!("DownloadClientCheck")),
                ("/message", json!("Unable to communicate with qBittorrent")),
            ],
        )
    };
    stack.publish(&[fx(Radarr, "radarr/webhook_grab_the_batman.json", 3), health("Health", 4)]).await;
    let r = stack.wait("alert", |r| r.summary.stalled).await;
    assert_eq!(r.summary.reason.as_deref(), Some("Radarr reports: Unable to communicate with qBittorrent"));
    stack.publish(&[health("HealthRestored", 9)]).await;
    let r = stack.wait("restored", |r| !r.summary.stalled).await;
    assert!(r.timeline.iter().any(|e| e.message.starts_with("Radarr is fine again")));
}

#[tokio::test(start_paused = true)]
async fn the_watchdog_clock_follows_tokio_time_so_intervals_can_be_tested_paused() {
    // The loop's notion of "now" is wall time at start plus tokio's elapsed time: with paused
    // time, six hours pass in no time and the thresholds see them.
    let start = OffsetDateTime::now_utc();
    let instant = tokio::time::Instant::now();
    tokio::time::advance(Duration::from_secs(6 * 3600)).await;
    let now = start + instant.elapsed();
    assert!((now - start - time::Duration::hours(6)).abs() < time::Duration::seconds(1));
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    let before = tokio::time::Instant::now();
    tick.tick().await;
    assert_eq!(before.elapsed(), Duration::from_secs(60));
}

// ------------------------------------------------------------- retry, cancel ---

/// The app with `env`, and Dune: Part Two requested and failed (request 1).
async fn failed_dune(env: &[(&str, &str)]) -> common::App {
    failed_dune_as(env, "Movie Request Failed").await
}

/// The same, the failure being Jellyseerr's `event` (e.g. "4K Movie Request Failed").
async fn failed_dune_as(env: &[(&str, &str)], event: &str) -> common::App {
    let app = common::App::start_with(env).await;
    let mut failed = fixture("jellyseerr/webhook_media_failed_movie_dune_part_two_req45.json");
    failed["event"] = json!(event);
    let (status, _) = app.post("jellyseerr", "application/json", failed.to_string()).await;
    assert_eq!(status, 202);
    app.wait_state(1, "failed").await;
    app
}

fn radarr_routes() -> Vec<(Method, &'static str, StatusCode, Value)> {
    vec![
        (Method::GET, "/api/v3/movie", StatusCode::OK, json!([{"id": 11, "tmdbId": 693134, "hasFile": false}])),
        (Method::POST, "/api/v3/command", StatusCode::CREATED, fixture("sonarr/api_v3_command_response.json")),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_asks_radarr_to_search_again_and_moves_the_request_back_to_searching() {
    let (radarr, calls) = stand_in(radarr_routes(), "rk").await;
    let app = failed_dune(&[("RADARR_URL", radarr.as_str()), ("RADARR_API_KEY", "rk")]).await;
    let r = app.http.post(app.url("/api/requests/1/retry")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["message"], "Searching again: Radarr MoviesSearch for movie 11 (command 5521)");
    let detail = app.wait_state(1, "searching").await;
    assert!(detail["reason"].is_null());
    let last = detail["timeline"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["message"], "Retry by someone: Radarr MoviesSearch for movie 11 (command 5521)");
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls[0].1, "/api/v3/movie?tmdbId=693134");
    assert_eq!((calls[1].0.clone(), calls[1].1.as_str()), (Method::POST, "/api/v3/command"));
    let mut expected = fixture("radarr/api_v3_command_movies_search_request.json");
    expected["movieIds"] = json!([11]);
    assert_eq!(calls[1].2, expected, "the body Radarr's API takes");
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_without_radarr_configured_says_what_to_set_and_changes_nothing() {
    let app = failed_dune(&[]).await;
    let r = app.http.post(app.url("/api/requests/1/retry")).send().await.unwrap();
    assert_eq!(r.status(), 502, "nothing could be sent");
    let answer: Value = r.json().await.unwrap();
    assert_eq!(
        answer["error"],
        "Could not search again: RADARR_URL and RADARR_API_KEY are not set, so status-tracker cannot ask for a search"
    );
    let detail = app
        .wait_for("/api/requests/1", "the failed retry on the timeline", |v| {
            v["timeline"].as_array().is_some_and(|t| t.len() == 2)
        })
        .await;
    assert_eq!(detail["state"], "failed");
}

/// Dune: Part Two requested in 4K and failed (request 1), with `env`.
async fn failed_dune_in_4k(env: &[(&str, &str)]) -> common::App {
    let app = failed_dune_as(env, "4K Movie Request Failed").await;
    assert_eq!(app.get("/api/requests/1").await["is_4k"], true);
    app
}

/// Jellyseerr sends a 4K request to its 4K Radarr, whose movie ids are not those of the one
/// at RADARR_URL: without RADARR_4K_URL neither Retry nor Lower quality may call anyone.
#[tokio::test(flavor = "multi_thread")]
async fn retry_of_a_4k_request_without_the_4k_radarr_names_its_settings_and_calls_nobody() {
    let (radarr, calls) = stand_in(radarr_with_profiles(), "rk").await;
    let env = [("RADARR_URL", radarr.as_str()), ("RADARR_API_KEY", "rk"), ("RADARR_FALLBACK_PROFILE", "SD")];
    let app = failed_dune_in_4k(&env).await;
    for (action, answer, to) in [
        ("retry", "Could not search again", "ask for a search"),
        ("lower-quality", "Could not lower the quality", "change the quality profile"),
    ] {
        let r = app.http.post(app.url(&format!("/api/requests/1/{action}"))).send().await.unwrap();
        assert_eq!(r.status(), 502, "{action}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["error"],
            format!(
                "{answer}: RADARR_4K_URL and RADARR_4K_API_KEY are not set, so status-tracker cannot {to} for a 4K \
                 request (Jellyseerr sends those to its 4K server)"
            )
        );
    }
    assert!(calls.lock().unwrap().is_empty(), "nothing sent to the other Radarr");
    assert_eq!(app.get("/api/requests/1").await["state"], "failed");
}

/// With the 4K Radarr configured, a 4K request's Retry and Lower quality go there, with its
/// own fallback profile, and the other Radarr hears nothing.
#[tokio::test(flavor = "multi_thread")]
async fn retry_and_lower_quality_of_a_4k_request_go_to_the_4k_radarr() {
    let (radarr, calls) = stand_in(radarr_with_profiles(), "rk").await;
    let (radarr_4k, calls_4k) = stand_in(radarr_with_profiles(), "rk4").await;
    let env = [
        ("RADARR_URL", radarr.as_str()),
        ("RADARR_API_KEY", "rk"),
        ("RADARR_FALLBACK_PROFILE", "Potato"),
        ("RADARR_4K_URL", radarr_4k.as_str()),
        ("RADARR_4K_API_KEY", "rk4"),
        ("RADARR_4K_FALLBACK_PROFILE", "SD"),
    ];
    let app = failed_dune_in_4k(&env).await;
    let r = app.http.post(app.url("/api/requests/1/retry")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    app.wait_state(1, "searching").await;
    let r = app.http.post(app.url("/api/requests/1/lower-quality")).send().await.unwrap();
    assert_eq!(r.status(), 200, "the 4K fallback profile, which the 4K Radarr has");
    let answer: Value = r.json().await.unwrap();
    assert!(answer["message"].as_str().unwrap().contains("→ SD"), "{answer}");
    assert!(calls.lock().unwrap().is_empty(), "nothing sent to the other Radarr");
    let sent: Vec<String> = calls_4k.lock().unwrap().iter().map(|c| format!("{} {}", c.0, c.1)).collect();
    assert_eq!(sent.iter().filter(|c| c.starts_with("POST /api/v3/command")).count(), 2, "{sent:?}");
    assert!(sent.iter().any(|c| c == "PUT /api/v3/movie/editor"), "{sent:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_of_a_series_searches_only_the_missing_episodes() {
    let episodes = json!([
        {"id": 2301, "seasonNumber": 2, "episodeNumber": 1, "hasFile": true},
        {"id": 2302, "seasonNumber": 2, "episodeNumber": 2, "hasFile": false},
        {"id": 2303, "seasonNumber": 2, "episodeNumber": 3, "hasFile": false}
    ]);
    let routes = vec![
        (Method::GET, "/api/v3/episode", StatusCode::OK, episodes),
        (Method::POST, "/api/v3/command", StatusCode::CREATED, fixture("sonarr/api_v3_command_response.json")),
    ];
    let (sonarr, calls) = stand_in(routes, "sk").await;
    let app = common::App::start_with(&[("SONARR_URL", sonarr.as_str()), ("SONARR_API_KEY", "sk")]).await;
    for name in [
        "jellyseerr/webhook_media_approved_tv_severance_req44.json",
        "sonarr/webhook_grab_severance_s02e01.json",
        "sonarr/webhook_grab_severance_s02e02.json",
    ] {
        let source = name.split('/').next().unwrap();
        app.post_fixture(source, name).await;
    }
    app.post(
        "jellyfin",
        "application/json",
        json!({"NotificationType": "ItemAdded", "ItemId": "e0000001d4da4c0a9b1c2d3e4f5a6b7c",
        "ItemType": "Episode", "SeriesName": "Severance", "SeasonNumber": 2, "EpisodeNumber": 1})
        .to_string(),
    )
    .await;
    app.wait_for("/api/requests/1", "E01 available", |v| v["episodes"][0]["state"] == "available").await;
    let answer: Value = app.http.post(app.url("/api/requests/1/retry")).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["message"], "Searching again: Sonarr EpisodeSearch for 1 episode (command 5521)");
    let command = calls.lock().unwrap().iter().find(|c| c.0 == Method::POST).unwrap().2.clone();
    assert_eq!(command, json!({"name": "EpisodeSearch", "episodeIds": [2302]}));
    let detail =
        app.wait_for("/api/requests/1", "E02 searching again", |v| v["episodes"][1]["state"] == "searching").await;
    assert_eq!(detail["episodes"][0]["state"], "available", "what is there stays");
}

/// Radarr for "Lower quality": Dune (id 11) on HD-1080p (4); the profiles of the fixture.
fn radarr_with_profiles() -> Vec<(Method, &'static str, StatusCode, Value)> {
    let mut routes = vec![
        (Method::GET, "/api/v3/qualityprofile", StatusCode::OK, fixture("radarr/api_v3_qualityprofile.json")),
        (Method::GET, "/api/v3/movie/11", StatusCode::OK, json!({"id": 11, "tmdbId": 693134, "qualityProfileId": 4})),
        (Method::PUT, "/api/v3/movie/editor", StatusCode::ACCEPTED, json!([{"id": 11, "qualityProfileId": 2}])),
    ];
    routes.extend(radarr_routes());
    routes
}

#[tokio::test(flavor = "multi_thread")]
async fn lower_quality_switches_the_film_to_the_fallback_profile_then_searches() {
    let (radarr, calls) = stand_in(radarr_with_profiles(), "rk").await;
    let env = [("RADARR_URL", radarr.as_str()), ("RADARR_API_KEY", "rk"), ("RADARR_FALLBACK_PROFILE", "sd")];
    let app = failed_dune(&env).await;
    let page = app.http.get(app.url("/requests/1")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(r#"hx-post="/api/requests/1/lower-quality""#), "offered beside Retry: {page}");
    let r = app.http.post(app.url("/api/requests/1/lower-quality")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    let done = "Radarr quality profile HD-1080p → SD for movie 11; Radarr MoviesSearch for movie 11 (command 5521)";
    assert_eq!(answer["message"], format!("Lower quality: {done}"));
    let detail = app.wait_state(1, "searching").await;
    let last = detail["timeline"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["message"], format!("Lower quality by someone: {done}"));
    let calls = calls.lock().unwrap().clone();
    let asked: Vec<(Method, &str)> = calls.iter().map(|(m, p, _)| (m.clone(), p.as_str())).collect();
    assert_eq!(
        asked,
        [
            (Method::GET, "/api/v3/movie?tmdbId=693134"),
            (Method::GET, "/api/v3/qualityprofile"),
            (Method::GET, "/api/v3/movie/11"),
            (Method::PUT, "/api/v3/movie/editor"),
            (Method::POST, "/api/v3/command"),
        ],
        "the profile is switched before the search"
    );
    let mut expected = fixture("radarr/api_v3_movie_editor_request.json");
    expected["movieIds"] = json!([11]);
    assert_eq!(calls[3].2, expected, "only the profile changes: the film is not sent back whole");
}

#[tokio::test(flavor = "multi_thread")]
async fn lower_quality_of_a_series_switches_sonarr_by_profile_id_and_searches_the_missing_episodes() {
    let episodes = json!([
        {"id": 2301, "seasonNumber": 2, "episodeNumber": 1, "hasFile": false},
        {"id": 2302, "seasonNumber": 2, "episodeNumber": 2, "hasFile": false}
    ]);
    let routes = vec![
        (Method::GET, "/api/v3/qualityprofile", StatusCode::OK, fixture("sonarr/api_v3_qualityprofile.json")),
        (Method::GET, "/api/v3/series/5", StatusCode::OK, json!({"id": 5, "tvdbId": 371980, "qualityProfileId": 4})),
        (Method::PUT, "/api/v3/series/editor", StatusCode::ACCEPTED, json!([{"id": 5, "qualityProfileId": 3}])),
        (Method::GET, "/api/v3/episode", StatusCode::OK, episodes),
        (Method::POST, "/api/v3/command", StatusCode::CREATED, fixture("sonarr/api_v3_command_response.json")),
    ];
    let (sonarr, calls) = stand_in(routes, "sk").await;
    let env = [("SONARR_URL", sonarr.as_str()), ("SONARR_API_KEY", "sk"), ("SONARR_FALLBACK_PROFILE", "3")];
    let app = common::App::start_with(&env).await;
    for name in
        ["jellyseerr/webhook_media_approved_tv_severance_req44.json", "sonarr/webhook_grab_severance_s02e01.json"]
    {
        app.post_fixture(name.split('/').next().unwrap(), name).await;
    }
    app.wait_for("/api/requests/1", "S02E01 found", |v| v["episodes"][0]["state"] == "indexed").await;
    let answer: Value =
        app.http.post(app.url("/api/requests/1/lower-quality")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        answer["message"],
        "Lower quality: Sonarr quality profile HD-1080p → HD-720p for series 5; \
         Sonarr EpisodeSearch for 1 episode (command 5521)"
    );
    let put = calls.lock().unwrap().iter().find(|c| c.0 == Method::PUT).unwrap().clone();
    assert_eq!(put.1, "/api/v3/series/editor");
    assert_eq!(put.2, fixture("sonarr/api_v3_series_editor_request.json"));
    let detail = app
        .wait_for("/api/requests/1", "the lower-quality retry", |v| {
            v["timeline"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["message"].as_str().unwrap().starts_with("Lower quality"))
        })
        .await;
    assert_eq!(detail["episodes"][0]["state"], "searching", "the grab at the old profile is dropped");
}

#[tokio::test(flavor = "multi_thread")]
async fn lower_quality_to_a_profile_radarr_lacks_names_those_it_has_and_changes_nothing() {
    let (radarr, calls) = stand_in(radarr_with_profiles(), "rk").await;
    let env = [("RADARR_URL", radarr.as_str()), ("RADARR_API_KEY", "rk"), ("RADARR_FALLBACK_PROFILE", "Potato")];
    let app = failed_dune(&env).await;
    let r = app.http.post(app.url("/api/requests/1/lower-quality")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let answer: Value = r.json().await.unwrap();
    let why = r#"Radarr has no quality profile "Potato" (it has Any, SD, HD-1080p)"#;
    assert_eq!(answer["error"], format!("Could not lower the quality: {why}"));
    let detail = app
        .wait_for("/api/requests/1", "the failure on the timeline", |v| {
            v["timeline"].as_array().is_some_and(|t| t.len() == 2)
        })
        .await;
    assert_eq!(detail["state"], "failed", "nothing was searched");
    assert_eq!(
        detail["timeline"][1]["message"],
        format!("Retry by someone failed: could not lower the quality: {why}")
    );
    assert!(calls.lock().unwrap().iter().all(|c| c.0 == Method::GET), "nothing was changed in Radarr");

    let bare = failed_dune(&[]).await;
    let page = bare.http.get(bare.url("/requests/1")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("/api/requests/1/retry") && !page.contains("lower-quality"), "not offered without a profile");
}

#[tokio::test(flavor = "multi_thread")]
async fn lower_quality_without_a_fallback_profile_names_the_setting_and_calls_nobody() {
    let (radarr, calls) = stand_in(radarr_with_profiles(), "rk").await;
    let app = failed_dune(&[("RADARR_URL", radarr.as_str()), ("RADARR_API_KEY", "rk")]).await;
    // The correlator's own library check of a new request may have asked Radarr already.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = calls.lock().unwrap().len();
    let r = app.http.post(app.url("/api/requests/1/lower-quality")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(
        answer["error"],
        "Could not lower the quality: RADARR_FALLBACK_PROFILE is not set (the quality profile to switch to)"
    );
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), before, "Radarr was not asked anything: {calls:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn lower_quality_when_the_film_has_the_fallback_profile_already_says_to_retry() {
    let mut routes = radarr_with_profiles();
    routes[1].3 = json!({"id": 11, "tmdbId": 693134, "qualityProfileId": 2});
    let (radarr, calls) = stand_in(routes, "rk").await;
    let env = [("RADARR_URL", radarr.as_str()), ("RADARR_API_KEY", "rk"), ("RADARR_FALLBACK_PROFILE", "SD")];
    let app = failed_dune(&env).await;
    let answer: Value =
        app.http.post(app.url("/api/requests/1/lower-quality")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        answer["error"],
        "Could not lower the quality: the film already has the quality profile SD: Retry searches again"
    );
    assert!(calls.lock().unwrap().iter().all(|c| c.0 == Method::GET));
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_a_reverse_proxy_only_the_requester_or_an_admin_may_act() {
    let (radarr, _) = stand_in(radarr_routes(), "rk").await;
    let env = [
        ("TRACKER_AUTH", "proxy"),
        ("TRACKER_TRUSTED_PROXIES", "127.0.0.1/32"),
        ("TRACKER_ADMINS", "admin"),
        ("RADARR_URL", radarr.as_str()),
        ("RADARR_API_KEY", "rk"),
    ];
    let app = common::App::start_with(&env).await;
    app.post_fixture("jellyseerr", "jellyseerr/webhook_media_failed_movie_dune_part_two_req45.json").await;
    let as_user = |user: Option<&'static str>, path: &'static str, post: bool| {
        let mut req = if post { app.http.post(app.url(path)) } else { app.http.get(app.url(path)) };
        if let Some(u) = user {
            req = req.header("Remote-User", u);
        }
        req.send()
    };
    assert_eq!(as_user(None, "/api/requests", false).await.unwrap().status(), 401, "no user, no list");
    assert_eq!(as_user(None, "/", false).await.unwrap().status(), 401, "no user, no page");
    assert_eq!(as_user(None, "/api/health", false).await.unwrap().status(), 200, "health stays open");
    assert_eq!(as_user(None, "/api/summary", false).await.unwrap().status(), 200, "counts stay open");
    let list = as_user(Some("bob"), "/api/requests", false).await.unwrap();
    assert_eq!(list.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while as_user(Some("bob"), "/api/requests/1", false).await.unwrap().status() != 200 {
        assert!(Instant::now() < deadline, "request 1 never appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = as_user(Some("bob"), "/api/requests/1/retry", true).await.unwrap();
    assert_eq!(refused.status(), 403, "bob did not request Dune");
    let answer: Value = refused.json().await.unwrap();
    assert_eq!(answer["error"], "bob may not retry this request: ask its requester or an admin");
    assert_eq!(as_user(Some("alice"), "/api/requests/1/retry", true).await.unwrap().status(), 200);
    let refused = as_user(Some("alice"), "/api/requests/1/lower-quality", true).await.unwrap();
    assert_eq!(refused.status(), 403, "the requester may retry, not change Radarr's profile");
    let answer: Value = refused.json().await.unwrap();
    assert_eq!(
        answer["error"],
        "alice may not lower the quality: it changes the quality profile in Radarr, ask an admin"
    );
    let r = app.http.get(app.url("/api/requests/1")).header("Remote-User", "alice").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(as_user(Some("admin"), "/api/requests/1/cancel", true).await.unwrap().status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v: Value = as_user(Some("admin"), "/api/requests/1", false).await.unwrap().json().await.unwrap();
        if v["state"] == "cancelled" {
            assert_eq!(v["reason"], "Cancelled by admin");
            let messages: Vec<&str> =
                v["timeline"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
            assert!(messages.iter().any(|m| m.starts_with("Retry by alice")), "{messages:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{v:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn statistics_and_the_summary_count_what_happened() {
    let app = common::App::start().await;
    for (source, name) in [
        ("jellyseerr", "jellyseerr/webhook_media_pending_movie_the_batman_req42.json"),
        ("jellyseerr", "jellyseerr/webhook_media_approved_movie_the_batman_req42.json"),
        ("radarr", "radarr/webhook_grab_the_batman.json"),
        ("radarr", "radarr/webhook_download_the_batman.json"),
        ("jellyfin", "jellyfin/item_added_movie_the_batman.json"),
        ("jellyseerr", "jellyseerr/webhook_media_failed_movie_dune_part_two_req45.json"),
        ("jellyseerr", "jellyseerr/webhook_media_auto_approved_tv_dan_da_dan_req43.json"),
    ] {
        app.post_fixture(source, name).await;
    }
    app.wait_state(1, "available").await;
    app.wait_state(3, "approved").await;
    let summary = app.get("/api/summary").await;
    assert_eq!(summary["total"], 3);
    assert_eq!(
        (summary["available"].as_u64(), summary["failed"].as_u64(), summary["active"].as_u64()),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(summary["by_state"]["approved"], 1);
    let stats = app.get("/api/stats").await;
    assert_eq!(stats["requests"], 3);
    assert_eq!(stats["success_rate"], 0.5);
    assert_eq!(stats["to_available"]["count"], 1);
    let stages: Vec<&str> = stats["stages"].as_array().unwrap().iter().map(|s| s["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["requested", "approved", "indexed", "importing"]);
    assert_eq!(stats["by_source"]["jellyseerr"]["requests"], 3);
    let page = app.http.get(app.url("/stats")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Time in each stage") && page.contains("50 %"), "{page}");
}
