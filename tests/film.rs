//! The walking skeleton, end to end: the all-in-one binary with its embedded NATS, the film
//! fixtures posted in lifecycle order, each state seen through `/api/requests` and SSE.

mod common;

use common::{App, SseClient};
use futures_util::StreamExt;
use serde_json::Value;

const PENDING: &str = "jellyseerr/webhook_media_pending_movie_the_batman_req42.json";
const APPROVED: &str = "jellyseerr/webhook_media_approved_movie_the_batman_req42.json";
const ADDED: &str = "radarr/webhook_movie_added_the_batman.json";
const GRAB: &str = "radarr/webhook_grab_the_batman.json";
const IMPORTED: &str = "radarr/webhook_download_the_batman.json";
const IN_JELLYFIN: &str = "jellyfin/item_added_movie_the_batman.json";
const FINISHED: &str = r#"{"hash":"5e3f9a1c7b2d4e6f8091a2b3c4d5e6f708192a3b","name":"The.Batman.2022.1080p.BluRay.x264-FICTION","path":"/data/torrents/movies/The.Batman.2022.1080p.BluRay.x264-FICTION","size":"15789453312"}"#;

async fn list_state(app: &App) -> Option<String> {
    let list = app.get("/api/requests").await;
    list["requests"][0]["state"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn a_film_request_is_tracked_from_request_to_available() {
    let app = App::start().await;
    let sse = SseClient::connect(&app, "").await;

    let json = "application/json";
    let steps = [
        ("jellyseerr", json, common::fixture(PENDING), "requested"),
        ("jellyseerr", json, common::fixture(APPROVED), "approved"),
        ("radarr", json, common::fixture(ADDED), "searching"),
        ("radarr", json, common::fixture(GRAB), "indexed"),
        ("qbittorrent", json, FINISHED.as_bytes().to_vec(), "downloaded"),
        ("radarr", json, common::fixture(IMPORTED), "importing"),
        ("jellyfin", "text/plain; charset=utf-8", common::fixture(IN_JELLYFIN), "available"),
    ];
    for (source, content_type, body, state) in steps {
        let (status, answer) = app.post(source, content_type, body).await;
        assert_eq!(status, 202, "{source} → {answer}");
        assert!(answer["id"].as_str().unwrap().starts_with(source));
        app.wait_state(1, state).await;
        assert_eq!(list_state(&app).await.as_deref(), Some(state), "/api/requests shows {state}");
        sse.wait_for(&format!("entering {state}"), |e| e.event == "request" && e.data["request"]["state"] == state)
            .await;
    }

    // SSE saw every state, in lifecycle order.
    let seen: Vec<String> = sse
        .snapshot()
        .iter()
        .filter(|e| e.event == "request")
        .filter_map(|e| e.data["request"]["state"].as_str().map(str::to_owned))
        .fold(Vec::new(), |mut v, s| {
            if v.last() != Some(&s) {
                v.push(s);
            }
            v
        });
    assert_eq!(seen, ["requested", "approved", "searching", "indexed", "downloaded", "importing", "available"]);

    let detail = app.get("/api/requests/1").await;
    assert_eq!(detail["title"], "The Batman");
    assert_eq!(detail["year"], 2022);
    assert_eq!(detail["requested_by"], "alice");
    assert_eq!(detail["tmdb_id"], 414906);
    assert_eq!(detail["jellyseerr_id"], 42);
    assert_eq!(detail["quality"], "Bluray-1080p");
    assert_eq!(detail["progress"], 1.0);
    assert_eq!(
        detail["watch_url"],
        "https://jellyfin.example.org/web/#/details?id=a1b2c3d4e5f6478899aabbccddeeff00&serverId=4a6b7c8d9e0f41a2b3c4d5e6f7a8b9c0"
    );
    let timeline = app.get("/api/requests/1/timeline").await;
    let states: Vec<&str> =
        timeline["timeline"].as_array().unwrap().iter().map(|e| e["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["requested", "approved", "searching", "indexed", "downloaded", "importing", "available"]);
    let found = &timeline["timeline"][3];
    assert_eq!(found["message"], "Found Bluray-1080p (15.8 GB) on ExampleTracker (Prowlarr)");
    assert_eq!(found["details"]["indexer"], "ExampleTracker (Prowlarr)");
    assert_eq!(found["details"]["size"], 15789453312u64);
    assert_eq!(
        timeline["timeline"][5]["details"]["path"],
        "/data/media/movies/The Batman (2022)/The Batman (2022) [Bluray-1080p].mkv"
    );
}

#[tokio::test]
async fn the_same_webhook_twice_is_stored_once() {
    let app = App::start().await;
    let (s1, a1) = app.post_fixture("jellyseerr", PENDING).await;
    let (s2, a2) = app.post_fixture("jellyseerr", PENDING).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(a1["id"], a2["id"]);
    assert_eq!(a2["duplicate"], true);
    app.wait_state(1, "requested").await;
    app.post_fixture("radarr", GRAB).await;
    app.post_fixture("radarr", GRAB).await;
    app.wait_state(1, "indexed").await;

    let js = async_nats::jetstream::new(async_nats::connect(app.nats_url()).await.unwrap());
    let mut media = js.get_stream("MEDIA").await.unwrap();
    assert_eq!(media.info().await.unwrap().state.messages, 2, "JetStream dropped the duplicates");
    let timeline = app.get("/api/requests/1/timeline").await;
    assert_eq!(timeline["timeline"].as_array().unwrap().len(), 2, "{timeline:#}");
    assert_eq!(app.get("/api/requests").await["total"], 1);
}

#[tokio::test]
async fn a_malformed_body_is_answered_400_and_kept_on_media_rejected() {
    let app = App::start().await;
    let client = async_nats::connect(app.nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client);

    let (status, answer) = app.post("radarr", "application/json", r#"{"eventType": "Grab", "movie": "#).await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().starts_with("invalid JSON"), "{answer}");
    let (status, answer) = app.post("radarr", "application/json", r#"{"eventType": "Grab"}"#).await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"], "Radarr Grab: missing or empty field `movie`");

    let stream = js.get_stream("MEDIA").await.unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            filter_subject: "media.rejected.radarr".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = consumer.fetch().max_messages(10).messages().await.unwrap();
    let mut kept = Vec::new();
    while let Some(Ok(msg)) = batch.next().await {
        let v: Value = serde_json::from_slice(&msg.payload).unwrap();
        kept.push(v["data"]["event"].clone());
    }
    assert_eq!(kept.len(), 2, "{kept:#?}");
    assert_eq!(kept[0]["body"], r#"{"eventType": "Grab", "movie": "#);
    assert_eq!(kept[0]["status"], 400);
    assert_eq!(kept[1]["reason"], "Radarr Grab: missing or empty field `movie`");
    assert_eq!(app.get("/api/requests").await["total"], 0);
}

/// Jellyseerr can send 4K requests to a second Radarr. The same film requested in HD and in
/// 4K is two requests, and each Radarr's grab (the 4K one posts to `?instance=4k`) goes to
/// its own, whichever arrives first.
#[tokio::test]
async fn a_film_requested_in_hd_and_in_4k_is_two_requests_each_with_its_radarrs_grab() {
    let app = App::start().await;
    let json = "application/json";
    let fixture = |name| serde_json::from_slice::<Value>(&common::fixture(name)).unwrap();
    let mut grab_4k = fixture(GRAB);
    grab_4k["movie"]["id"] = 70.into();
    grab_4k["release"]["quality"] = "Bluray-2160p".into();
    grab_4k["downloadId"] = "C0DEC0DEC0DEC0DEC0DEC0DEC0DEC0DEC0DEC0DE".into();
    grab_4k["instanceName"] = "Radarr 4K".into();
    let mut pending_4k = fixture(PENDING);
    pending_4k["event"] = "New 4K Movie Request".into();
    pending_4k["request"]["request_id"] = "46".into();
    // The HD request, then the 4K grab (a request of its own, the newest), Jellyseerr's 4K
    // request (which takes that one over), and the HD grab last.
    assert_eq!(app.post_fixture("jellyseerr", PENDING).await.0, 202);
    assert_eq!(app.post("radarr?instance=4k", json, grab_4k.to_string()).await.0, 202);
    assert_eq!(app.post("jellyseerr", json, pending_4k.to_string()).await.0, 202);
    assert_eq!(app.post_fixture("radarr", GRAB).await.0, 202);

    let list = app
        .wait_for("/api/requests", "two requests, each found", |v| {
            v["requests"].as_array().is_some_and(|r| r.len() == 2 && r.iter().all(|r| r["state"] == "indexed"))
        })
        .await;
    let by_4k = |is_4k: bool| {
        let r = list["requests"].as_array().unwrap().iter().find(|r| r["is_4k"] == is_4k).unwrap();
        (r["jellyseerr_id"].clone(), r["quality"].clone(), r["arr_id"].clone())
    };
    assert_eq!(by_4k(true), (46.into(), "Bluray-2160p".into(), 70.into()), "{list:#}");
    assert_eq!(by_4k(false), (42.into(), "Bluray-1080p".into(), 7.into()), "{list:#}");
    assert_eq!(list["total"], 2, "Jellyseerr's 4K request took over the one the 4K grab made");

    // Only `instance=4k`, and only for Radarr and Sonarr.
    let (status, answer) = app.post("radarr?instance=8k", json, common::fixture(GRAB)).await;
    assert_eq!(status, 400);
    assert_eq!(
        answer["error"],
        "unknown instance `8k`: `/hooks/radarr?instance=4k` is for the one Jellyseerr sends 4K requests to; the \
         other posts without `instance`"
    );
    let (status, answer) = app.post("jellyseerr?instance=4k", json, common::fixture(PENDING)).await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"], "`?instance=` is for Radarr and Sonarr, not /hooks/jellyseerr");
}

#[tokio::test]
async fn test_notifications_answer_200_and_create_nothing() {
    let app = App::start().await;
    for (source, name) in [
        ("jellyseerr", "jellyseerr/webhook_test_notification.json"),
        ("radarr", "radarr/webhook_test.json"),
        ("sonarr", "sonarr/webhook_test.json"),
    ] {
        let (status, answer) = app.post_fixture(source, name).await;
        assert_eq!(status, 200, "{source}: {answer}");
        assert_eq!(answer["test"], true);
    }
    app.post_fixture("jellyseerr", PENDING).await;
    app.wait_state(1, "requested").await;
    assert_eq!(app.get("/api/requests").await["total"], 1);
}

#[tokio::test]
async fn killing_and_restarting_the_all_in_one_keeps_every_request() {
    let mut app = App::start().await;
    for name in [PENDING, APPROVED] {
        app.post_fixture("jellyseerr", name).await;
    }
    app.post_fixture("radarr", GRAB).await;
    app.wait_state(1, "indexed").await;
    app.post_fixture("jellyseerr", "jellyseerr/webhook_media_failed_movie_dune_part_two_req45.json").await;
    app.wait_state(2, "failed").await;

    app.restart().await; // SIGKILL, then start on the same data directory

    let list = app.get("/api/requests").await;
    assert_eq!(list["total"], 2);
    app.wait_state(1, "indexed").await;
    app.wait_state(2, "failed").await;
    // And it carries on where it stopped.
    app.post_fixture("radarr", IMPORTED).await;
    app.wait_state(1, "importing").await;
    let timeline = app.get("/api/requests/1/timeline").await;
    assert_eq!(timeline["timeline"].as_array().unwrap().len(), 4, "{timeline:#}");
}

#[tokio::test]
async fn sigterm_stops_cleanly_with_the_embedded_nats() {
    let mut app = App::start().await;
    let nats_port: u16 = app.nats_url().rsplit(':').next().unwrap().parse().unwrap();
    let status = app.terminate().await;
    assert!(status.success(), "exit status {status}\n{}", app.log());
    assert!(std::net::TcpStream::connect(("127.0.0.1", nats_port)).is_err(), "the embedded nats-server is still up");
}
