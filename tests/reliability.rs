//! Issue 7: nothing lost, nothing crashes, nobody gets in. Each test prints its figures
//! (`cargo test --test reliability -- --nocapture`); docs/reliability.md records them.

mod common;
mod scenario;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::App;
use futures_util::StreamExt;
use serde_json::{Value, json};
use shared::Bus;
use shared::nats_server::EmbeddedNats;
use tokio::process::{Child, Command};

/// `status-tracker <args>` as its own process, with its log in `dir`.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let log = dir.join(format!("{}-{}.log", args.join("_").replace('-', ""), std::process::id()));
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_status-tracker"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TRACKER_DATA_DIR", dir)
            .env("TRACKER_LISTEN", "127.0.0.1:0")
            // The synthetic events are from 2025: the watchdog would archive them at each start.
            .env("TRACKER_ARCHIVE_AFTER", "10000d")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self { child: cmd.spawn().unwrap(), log }
    }

    async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }

    async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().unwrap();
        std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
        tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await.expect("exit after SIGTERM").unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Events the correlator recorded so far. Read-only and without migrating: opening the store
/// here while the correlator creates the database made both run the first migration at once,
/// and the correlator failed on "table requests already exists".
async fn processed(db: &Path) -> i64 {
    use sqlx::ConnectOptions as _;
    if !db.exists() {
        return 0;
    }
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(db).read_only(true);
    let Ok(mut conn) = options.connect().await else { return 0 };
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM processed_events").fetch_one(&mut conn).await.unwrap_or(0);
    drop(sqlx::Connection::close(conn).await);
    n
}

async fn wait_processed(db: &Path, at_least: i64, proc: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while processed(db).await < at_least {
        assert!(
            Instant::now() < deadline,
            "correlator stuck at {} of {at_least}:\n{}",
            processed(db).await,
            proc.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the correlator over `events` from a fresh NATS into `dir`, optionally killing it
/// once `kill_after` events are processed. Returns how many were processed at the kill, and
/// the last run's log.
async fn correlate(dir: &Path, events: &[scenario::Step], kill_after: Option<i64>) -> (Option<i64>, String) {
    let nats = EmbeddedNats::start(&dir.join("nats"), "nats-server").await.unwrap();
    let bus = Bus::connect(&nats.url(), "test").await.unwrap();
    bus.ensure_streams().await.unwrap();
    scenario::publish_all(&bus, events).await;
    let env = [("NATS_URL", nats.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let db = dir.join("tracker.db");
    let mut killed_at = None;
    let mut proc = Proc::spawn(&["correlator"], dir, &env);
    if let Some(n) = kill_after {
        wait_processed(&db, n, &proc).await;
        proc.kill().await;
        killed_at = Some(processed(&db).await);
        proc = Proc::spawn(&["correlator"], dir, &env);
    }
    wait_processed(&db, events.len() as i64, &proc).await;
    assert!(proc.terminate().await.success(), "{}", proc.log());
    nats.stop().await;
    (killed_at, proc.log())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_correlator_killed_mid_stream_ends_like_an_undisturbed_one() {
    let films = 1000;
    let events: Vec<scenario::Step> = (0..films).flat_map(|i| scenario::synthetic_film(i, i as i64 * 6)).collect();
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let killed_at = correlate(&tmp.path().join("killed"), &events, Some(events.len() as i64 / 3)).await.0.unwrap();
    correlate(&tmp.path().join("calm"), &events, None).await;
    let killed = scenario::dump(&tmp.path().join("killed/tracker.db")).await;
    let calm = scenario::dump(&tmp.path().join("calm/tracker.db")).await;
    let entries: usize = killed.iter().map(|(_, _, n)| n).sum();
    let expected_entries: usize = calm.iter().map(|(_, _, n)| n).sum();
    println!(
        "crash test: {} events sent, correlator SIGKILLed after {killed_at} processed, {} requests, {entries} timeline entries \
         (undisturbed run: {expected_entries}), lost 0, duplicated {}, {:.1} s",
        events.len(),
        killed.len(),
        entries as i64 - expected_entries as i64,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(killed.len(), films);
    assert_eq!(entries, films * 6, "one timeline entry per event: none lost, none doubled");
    assert!(killed.iter().all(|(_, c, _)| c.state == shared::model::State::Available));
    assert_eq!(killed, calm);
}

/// The correlator commits a batch while it correlates the next one on top of it. When that
/// commit fails, both batches are applied again one message at a time, and what still fails
/// is redelivered until it applies: the end is the same as a run where nothing failed.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_that_does_not_commit_is_applied_again_and_ends_like_an_undisturbed_run() {
    let films = 300;
    let events: Vec<scenario::Step> = (0..films).flat_map(|i| scenario::synthetic_film(i, i as i64 * 6)).collect();
    let tmp = tempfile::tempdir().unwrap();
    let calm = tmp.path().join("calm");
    correlate(&calm, &events, None).await;
    // The database refuses to write "Film 1" for the first seconds: the first batch holds it,
    // and its commit fails while the second batch is correlated.
    let failing = tmp.path().join("failing");
    let store = correlator::Store::open(&failing.join("tracker.db")).await.unwrap();
    let until = time::OffsetDateTime::now_utc().unix_timestamp() + 3;
    for verb in ["INSERT", "UPDATE"] {
        // Made of constants and a number.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TRIGGER refuse_{verb} BEFORE {verb} ON requests \
             WHEN NEW.title = 'Film 1' AND unixepoch() < {until} \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )))
        .execute(store.writer())
        .await
        .unwrap();
    }
    store.close().await;
    let (_, log) = correlate(&failing, &events, None).await;
    assert!(log.contains("batch rolled back; applying its messages one by one"), "{log}");
    assert!(log.contains("refused by the test"), "{log}");
    let ended = scenario::dump(&failing.join("tracker.db")).await;
    let entries: usize = ended.iter().map(|(_, _, n)| n).sum();
    assert_eq!(ended.len(), films);
    assert_eq!(entries, films * 6, "one timeline entry per event: none lost, none doubled");
    assert_eq!(ended, scenario::dump(&calm.join("tracker.db")).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn rebuild_replays_media_into_the_same_state() {
    let tmp = tempfile::tempdir().unwrap();
    let nats = EmbeddedNats::start(&tmp.path().join("nats"), "nats-server").await.unwrap();
    let url = nats.url();
    let app = App::start_with(&[("NATS_URL", url.as_str())]).await;
    let bodies: Vec<(&str, &str)> = vec![
        ("jellyseerr", "jellyseerr/webhook_media_pending_movie_the_batman_req42.json"),
        ("radarr", "radarr/webhook_grab_the_batman.json"),
        ("radarr", "radarr/webhook_download_the_batman.json"),
        ("jellyseerr", "jellyseerr/webhook_media_auto_approved_tv_dan_da_dan_req43.json"),
        ("sonarr", "sonarr/webhook_grab_dan_da_dan_s01_season_pack.json"),
        ("sonarr", "sonarr/webhook_download_dan_da_dan_s01e01.json"),
        ("jellyfin", "jellyfin/item_added_episode_dan_da_dan_s01e01.json"),
        ("jellyseerr", "jellyseerr/webhook_media_failed_movie_dune_part_two_req45.json"),
        ("sonarr", "sonarr/webhook_grab_severance_s02e01.json"),
        ("radarr", "radarr/webhook_health.json"),
    ];
    for (source, name) in &bodies {
        assert_eq!(app.post_fixture(source, name).await.0, 202);
    }
    let db = app.data_dir.join("tracker.db");
    app.wait_for("/api/requests", "4 requests", |v| v["total"] == 4).await;
    let mut app = app;
    app.terminate().await;
    let before = scenario::dump(&db).await;

    let mut proc = Proc::spawn(&["correlator", "--rebuild"], &app.data_dir, &[("NATS_URL", url.as_str())]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !proc.log().contains("rebuild done") {
        assert!(Instant::now() < deadline, "no rebuild:\n{}", proc.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(proc.terminate().await.success());
    let after = scenario::dump(&db).await;
    println!("rebuild: {} events replayed into {} requests; identical: {}", bodies.len(), after.len(), before == after);
    assert_eq!(before, after);
    let backups = std::fs::read_dir(&app.data_dir).unwrap().filter_map(|e| e.ok()).filter(|e| {
        e.file_name().to_string_lossy().starts_with("tracker.db.bak-")
            && !e.file_name().to_string_lossy().ends_with("-wal")
    });
    assert_eq!(backups.count(), 1, "the old database is kept");
    nats.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_accepted_while_nats_is_down_are_spooled_and_forwarded_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let port = shared::nats_server::free_port().unwrap();
    let nats_dir = tmp.path().join("nats");
    let nats = EmbeddedNats::start_on(&nats_dir, "nats-server", port).await.unwrap();
    let url = nats.url();
    let app = App::start_with(&[("NATS_URL", url.as_str())]).await;
    nats.stop().await;

    // While NATS is down: 50 distinct requests, each answered 202 and spooled.
    let films = 50;
    let steps: Vec<scenario::Step> = (0..films).map(|i| scenario::synthetic_film(i, 0).remove(0)).collect();
    let mut spooled = 0;
    for s in &steps {
        let (status, answer) = app.post("jellyseerr", "application/json", s.raw.to_string()).await;
        assert_eq!(status, 202, "{answer}");
        spooled += usize::from(answer["spooled"] == true);
    }
    let spool = app.data_dir.join("spool/spool.log");
    assert!(std::fs::metadata(&spool).unwrap().len() > 0, "the spool holds them on disk");

    let nats = EmbeddedNats::start_on(&nats_dir, "nats-server", port).await.unwrap();
    let list = app.wait_for("/api/requests?limit=100", "every spooled request", |v| v["total"] == films).await;
    let got: Vec<u64> =
        list["requests"].as_array().unwrap().iter().map(|r| r["jellyseerr_id"].as_u64().unwrap()).collect();
    println!(
        "NATS outage: {films} webhooks sent, {spooled} spooled, {} arrived, lost {}",
        got.len(),
        films - got.len()
    );
    assert_eq!(spooled, films);
    // Forwarded in order: the stream holds them in the order they were accepted.
    let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
    let stream = js.get_stream("MEDIA").await.unwrap();
    let mut ids = Vec::new();
    for seq in 1..=films as u64 {
        let m = stream.get_raw_message(seq).await.unwrap();
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        ids.push(v["data"]["event"]["request_id"].as_u64().unwrap());
    }
    assert_eq!(ids, (10_000..10_000 + films as u64).collect::<Vec<_>>());
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&spool).unwrap().len() > 0 {
        assert!(Instant::now() < deadline, "the spool is emptied once forwarded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nats.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redelivered_event_changes_nothing() {
    let app = App::start().await;
    let bus = Bus::connect(&app.nats_url(), "test").await.unwrap();
    let step = scenario::fx(shared::subjects::Source::Radarr, "radarr/webhook_grab_the_batman.json", 3);
    let env = step.envelope();
    // The same event under three different Nats-Msg-Ids: JetStream stores all three, the
    // correlator must apply it once.
    for n in 0..3 {
        let payload = serde_json::to_vec(&env).unwrap();
        let headers = shared::bus::event_headers(&format!("{}-copy{n}", env.id), None);
        bus.js.publish_with_headers(env.kind.clone(), headers, payload.into()).await.unwrap().await.unwrap();
    }
    app.wait_state(1, "indexed").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let health = app.get("/api/health").await;
    assert_eq!(health["services"]["correlator"]["details"]["duplicates"], 2, "{health:#}");
    let timeline = app.get("/api/requests/1/timeline").await;
    assert_eq!(timeline["timeline"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_webhooks_finish_and_loses_none() {
    let mut app = App::start().await;
    let films = 3000;
    let bodies: Vec<String> = (0..films).map(|i| scenario::synthetic_film(i, 0).remove(0).raw.to_string()).collect();
    let url = app.url("/hooks/jellyseerr");
    let http = app.http.clone();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = answered.clone();
    let sender = tokio::spawn(async move {
        futures_util::stream::iter(bodies)
            .map(|body| {
                let (http, url, counter) = (http.clone(), url.clone(), counter.clone());
                async move {
                    let r = http.post(url).header("content-type", "application/json").body(body).send().await;
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    r.ok().map(|r| r.status().as_u16())
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await
    });
    // Stop in the middle of the stream.
    while answered.load(std::sync::atomic::Ordering::SeqCst) < 300 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let status = app.terminate().await;
    let results = sender.await.unwrap();
    let accepted = results.iter().filter(|r| **r == Some(202)).count();
    let refused = results.iter().filter(|r| r.is_none()).count();
    let other = results.len() - accepted - refused;
    assert!(status.success(), "{}", app.log());
    assert_eq!(other, 0, "every answer is a 202 or no connection: {results:?}");
    app.restart().await;
    let list = app
        .wait_for("/api/requests?limit=1", "the accepted requests", |v| v["total"].as_u64() == Some(accepted as u64))
        .await;
    println!(
        "SIGTERM under load: {films} sent, {accepted} accepted before the stop, {refused} refused, {} stored, lost 0",
        list["total"]
    );
}

/// The embedded nats-server's pid, from its pid file.
fn embedded_nats_pid(app: &App) -> Option<String> {
    let pid = std::fs::read_to_string(app.data_dir.join("nats/nats-server.pid")).ok()?;
    Some(pid.trim().to_owned()).filter(|p| Path::new(&format!("/proc/{p}/cmdline")).exists())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_embedded_nats_server_that_dies_is_started_again_and_nothing_is_lost() {
    let app = App::start().await;
    let (status, _) =
        app.post_fixture("jellyseerr", "jellyseerr/webhook_media_pending_movie_the_batman_req42.json").await;
    assert_eq!(status, 202);
    app.wait_for("/api/requests", "the first request", |v| v["requests"].as_array().is_some_and(|r| r.len() == 1))
        .await;
    let first = embedded_nats_pid(&app).unwrap();
    std::process::Command::new("kill").args(["-KILL", &first]).status().unwrap();
    let started = Instant::now();
    // Accepted while the server is down or coming back: spooled, or published once it is up.
    let (status, _) = app.post_fixture("jellyseerr", "jellyseerr/webhook_media_approved_tv_severance_req44.json").await;
    assert_eq!(status, 202, "{}", app.log());
    while embedded_nats_pid(&app).is_none_or(|p| p == first) {
        assert!(started.elapsed() < Duration::from_secs(20), "not started again:\n{}", app.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let back = started.elapsed();
    app.wait_for("/api/requests", "both requests", |v| v["requests"].as_array().is_some_and(|r| r.len() == 2)).await;
    println!(
        "embedded nats-server SIGKILLed: running again after {:.2} s, the webhook sent meanwhile applied after {:.2} s",
        back.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let log = app.log();
    assert!(log.contains("the embedded nats-server exited") && log.contains("runs again"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_all_in_one_even_when_nats_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let nats = EmbeddedNats::start(&tmp.path().join("nats"), "nats-server").await.unwrap();
    let mut app = App::start_with(&[("NATS_URL", &nats.url())]).await;
    nats.kill().await;
    // Until the client has noticed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let status = app.terminate().await;
    println!("SIGTERM without NATS: stopped in {:.2} s", started.elapsed().as_secs_f64());
    assert!(status.success(), "{}", app.log());
    assert!(started.elapsed() < Duration::from_secs(10), "{}", app.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_need_the_token_when_one_is_set() {
    let app =
        App::start_with(&[("TRACKER_WEBHOOK_TOKEN", "tok-7f3a9"), ("TRACKER_WEBHOOK_TOKEN_JELLYFIN", "jf-only")]).await;
    let body = common::fixture("radarr/webhook_grab_the_batman.json");
    let post = |auth: Option<(&'static str, String)>, query: &'static str| {
        let mut req =
            app.http.post(app.url(&format!("/hooks/radarr{query}"))).header("content-type", "application/json");
        if let Some((k, v)) = auth {
            req = req.header(k, v);
        }
        req.body(body.clone()).send()
    };
    let none = post(None, "").await.unwrap();
    assert_eq!(none.status(), 401);
    assert!(none.headers().contains_key("www-authenticate"));
    let wrong = post(Some(("authorization", "Bearer nope".into())), "").await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(wrong.json::<Value>().await.unwrap()["error"], "wrong webhook token");
    let basic = app
        .http
        .post(app.url("/hooks/radarr"))
        .header("content-type", "application/json")
        .basic_auth("radarr", Some("tok-7f3a9"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    for ok in [
        post(Some(("authorization", "Bearer tok-7f3a9".into())), "").await.unwrap(),
        basic,
        post(None, "?token=tok-7f3a9").await.unwrap(),
    ] {
        assert_eq!(ok.status(), 202);
    }
    let jf = |token: &'static str| {
        app.http
            .post(app.url("/hooks/jellyfin"))
            .header("authorization", format!("Bearer {token}"))
            .body(common::fixture("jellyfin/item_added_movie_the_batman.json"))
            .send()
    };
    assert_eq!(jf("tok-7f3a9").await.unwrap().status(), 401, "the per-source token wins");
    assert_eq!(jf("jf-only").await.unwrap().status(), 202);
    // Refusals are kept (without credentials) on media.rejected.radarr.
    let rejected = rejected_count(&app, "media.rejected.radarr").await;
    assert_eq!(rejected, 2);
}

async fn rejected_messages(app: &App, subject: &str) -> Vec<Value> {
    let stored = stored_messages(app, subject).await;
    stored.iter().map(|m| serde_json::from_slice::<Value>(m).unwrap()["data"]["event"].clone()).collect()
}

/// The bodies of the messages `MEDIA` holds on `subject`, in order.
async fn stored_messages(app: &App, subject: &str) -> Vec<Vec<u8>> {
    let js = async_nats::jetstream::new(async_nats::connect(app.nats_url()).await.unwrap());
    let stream = js.get_stream("MEDIA").await.unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            filter_subject: subject.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut batch = consumer.fetch().max_messages(1000).expires(Duration::from_millis(500)).messages().await.unwrap();
    while let Some(Ok(m)) = batch.next().await {
        out.push(m.payload.to_vec());
    }
    out
}

/// A webhook's `raw` is its body as it came: its own JSON text, byte for byte (layout and all),
/// when it is JSON; the tree read from it when it had to be repaired first; a form as an
/// object of strings.
#[tokio::test(flavor = "multi_thread")]
async fn an_accepted_webhook_keeps_its_body_as_it_came() {
    let app = App::start().await;
    let film =
        String::from_utf8(common::fixture("jellyseerr/webhook_media_pending_movie_the_batman_req42.json")).unwrap();
    let item = String::from_utf8(common::fixture("jellyfin/item_added_movie_the_batman.json")).unwrap();
    // A Jellyfin template that left a raw line break inside a string: repaired, then read.
    let broken = item.replace(r#""name": "The Batman""#, "\"name\": \"The\nBatman\"");
    assert_ne!(broken, item);
    let form = "name=The.Batman.2022&content_path=%2Fdata%2Ftorrents%2FThe.Batman&infohash_v1=5e3f9a1c7b2d4e6f8091a2b3c4d5e6f708192a3b";
    for (source, content_type, body) in [
        ("jellyseerr", "application/json", film.clone()),
        ("jellyfin", "text/plain; charset=utf-8", broken.clone()),
        ("qbittorrent", "application/x-www-form-urlencoded", form.to_owned()),
    ] {
        let (status, answer) = app.post(source, content_type, body).await;
        assert!(status == 202, "{source}: {status} {answer}");
    }
    let raw = |subject: &'static str| {
        let app = &app;
        async move {
            let stored = stored_messages(app, subject).await;
            assert_eq!(stored.len(), 1, "{subject}");
            let text = String::from_utf8(stored[0].clone()).unwrap();
            let v: Value = serde_json::from_str(&text).unwrap();
            (text, v["data"]["raw"].clone())
        }
    };
    let (text, tree) = raw("media.jellyseerr.>").await;
    assert!(text.contains(&format!(r#""raw":{}"#, film.trim())), "the body's own text:\n{text}");
    assert_eq!(tree, serde_json::from_str::<Value>(&film).unwrap());
    let (_, tree) = raw("media.jellyfin.>").await;
    let mut expected: Value = serde_json::from_str(&item).unwrap();
    expected["name"] = json!("The Batman");
    assert_eq!(tree, expected, "repaired (the line break became a space)");
    let (_, tree) = raw("media.qbittorrent.>").await;
    assert_eq!(
        tree,
        json!({"name": "The.Batman.2022", "content_path": "/data/torrents/The.Batman",
               "infohash_v1": "5e3f9a1c7b2d4e6f8091a2b3c4d5e6f708192a3b"})
    );
}

async fn rejected_count(app: &App, subject: &str) -> usize {
    rejected_messages(app, subject).await.len()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_4xx_and_is_kept() {
    let app = App::start_with(&[("TRACKER_MAX_BODY_BYTES", "65536")]).await;
    let deep = "[".repeat(5000) + &"]".repeat(5000);
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("radarr", "application/json", vec![b'x'; 70_000], 413, "body larger than 65536 bytes"),
        (
            "radarr",
            "application/xml",
            b"<grab/>".to_vec(),
            415,
            "content type \"application/xml\" is not accepted for radarr",
        ),
        ("sonarr", "application/json", vec![b'{', 0xff, 0xfe, b'}'], 400, "body is not valid UTF-8"),
        ("radarr", "application/json", deep.into_bytes(), 400, "invalid JSON: recursion limit exceeded"),
        (
            "radarr",
            "application/json",
            br#"{"eventType":"Grab","movie":{"id":1,"title":"x","tmdbId":1e999}}"#.to_vec(),
            400,
            "invalid JSON",
        ),
        (
            "radarr",
            "application/json",
            br#"{"eventType":"Grab","movie":{"id":1,"title":"x","tmdbId":99999999999999999999999}}"#.to_vec(),
            400,
            "Radarr Grab: missing or empty field `movie.tmdbId`",
        ),
        ("jellyseerr", "application/json", b"[1,2,3]".to_vec(), 400, "expected a JSON object, got an array"),
        ("jellyfin", "text/plain", b"{{NotificationType}}".to_vec(), 400, "invalid JSON"),
        ("qbittorrent", "application/x-www-form-urlencoded", b"name=x".to_vec(), 400, "no torrent hash"),
    ];
    for (source, content_type, body, status, reason) in &cases {
        let (got, answer) = app.post(source, content_type, body.clone()).await;
        assert_eq!(got, *status, "{source} {content_type}: {answer}");
        assert!(answer["error"].as_str().unwrap().starts_with(reason), "{answer} should start with {reason}");
    }
    let (got, answer) = app.post("radarr", "application/json", r#"{"eventType":"MovieTeleported"}"#).await;
    assert_eq!(got, 202, "unknown event types are stored and ignored: {answer}");
    let kept: usize = ["radarr", "sonarr", "jellyseerr", "jellyfin", "qbittorrent"]
        .iter()
        .map(|s| format!("media.rejected.{s}"))
        .len();
    let mut total = 0;
    for s in ["radarr", "sonarr", "jellyseerr", "jellyfin", "qbittorrent"] {
        total += rejected_count(&app, &format!("media.rejected.{s}")).await;
    }
    println!("bad input: {} inputs tried, {total} kept on media.rejected.*, 0 crashes", cases.len() + 1);
    assert_eq!(kept, 5);
    assert_eq!(total, cases.len());
    assert_eq!(app.get("/api/health").await["status"], "ok", "still up");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_posted_to_an_unknown_source_is_answered_404_and_kept() {
    let app = App::start().await;
    let body = common::fixture("sonarr/webhook_grab_dan_da_dan_s01_season_pack.json");
    let (status, answer) = app.post("sonar", "application/json", body.clone()).await;
    assert_eq!(status, 404);
    let error = answer["error"].as_str().unwrap();
    assert!(error.starts_with("unknown webhook source \"sonar\"; use one of: "), "{answer}");
    let (status, answer) = app.post("shoko", "application/json", "{}").await;
    assert_eq!(status, 404);
    assert!(answer["error"].as_str().unwrap().contains("run the shoko-bridge service"), "{answer}");
    let long = "x".repeat(300);
    assert_eq!(app.post(&long, "application/json", "{}").await.0, 404);

    let kept = rejected_messages(&app, "media.rejected.unknown").await;
    assert_eq!(kept.len(), 3, "{kept:?}");
    let sonar = kept.iter().find(|k| k["path"] == "/hooks/sonar").expect("the typo is kept");
    assert!(sonar.get("from").is_none(), "no source: {sonar}");
    assert_eq!(sonar["status"], 404);
    assert_eq!(sonar["reason"], error);
    let start = sonar["body"].as_str().unwrap();
    assert_eq!(start.len(), 1024, "only the start of a body anyone could have sent");
    assert!(body.starts_with(start.as_bytes()));
    assert!(kept.iter().any(|k| k["path"] == "/hooks/shoko"));
    let cut = format!("/hooks/{}", "x".repeat(100));
    assert!(kept.iter().any(|k| k["path"] == cut.as_str()), "a long name is cut");
    assert_eq!(rejected_count(&app, "media.rejected.sonarr").await, 0);
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"source="unknown""#), "counted under one label, not the name");
    assert!(!metrics.contains("sonar\""), "no label made of the name");
    assert_eq!(app.get("/api/health").await["status"], "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_reach_logs_errors_or_health() {
    let secrets = [
        ("TRACKER_WEBHOOK_TOKEN", "sekret-webhook-1a2b"),
        ("QBIT_PASSWORD", "sekret-qbit-3c4d"),
        ("QBIT_API_KEY", "sekret-qbkey-5e6f"),
        ("SHOKO_API_KEY", "sekret-shoko-7a8b"),
        ("JELLYFIN_API_KEY", "sekret-jf-9c0d"),
        ("RADARR_API_KEY", "sekret-radarr-1e2f"),
        ("SONARR_API_KEY", "sekret-sonarr-3a4b"),
        ("JELLYSEERR_API_KEY", "sekret-seerr-5c6d"),
    ];
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let mut env: Vec<(&str, &str)> = secrets.to_vec();
    for k in ["QBIT_URL", "SHOKO_URL", "JELLYFIN_URL", "RADARR_URL", "SONARR_URL", "JELLYSEERR_URL"] {
        env.push((k, dead.as_str()));
    }
    env.push(("RUST_LOG", "debug"));
    let app = App::start_with(&env).await;
    // Wrong tokens, a right one, garbage: every path that logs or answers an error.
    app.http.post(app.url("/hooks/radarr?token=wrong")).body("{}").send().await.unwrap();
    let ok = app
        .http
        .post(app.url("/hooks/radarr?token=sekret-webhook-1a2b"))
        .header("content-type", "application/json")
        .body("nonsense")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 400);
    let ok = app
        .http
        .post(app.url("/hooks/jellyfin"))
        .header("authorization", "Bearer sekret-webhook-1a2b")
        .body(common::fixture("jellyfin/item_added_episode_dan_da_dan_s01e01.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 202);
    tokio::time::sleep(Duration::from_secs(3)).await; // let the poller and the bridge fail a few times
    let health = app.get("/api/health").await.to_string();
    let log = app.log();
    let rejected = [
        rejected_messages(&app, "media.rejected.radarr").await,
        rejected_messages(&app, "media.rejected.jellyfin").await,
    ];
    let kept = serde_json::to_string(&rejected).unwrap();
    for (name, secret) in secrets {
        assert!(!health.contains(secret), "{name} in /api/health");
        assert!(!log.contains(secret), "{name} in the log");
        assert!(!kept.contains(secret), "{name} in media.rejected");
    }
    println!("secrets: {} secrets set, {} log bytes and the health answer searched, 0 found", secrets.len(), log.len());
    let _ = json!(null);
}

/// Browsers keep `/api/sse` open forever: a stop must end their streams rather than wait for
/// them (`docker stop` would SIGKILL after 10 s and leave the embedded nats-server behind).
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_browsers_following_sse_stops_at_once_and_stops_nats() {
    let mut app = App::start().await;
    let _browsers = [common::SseClient::connect(&app, "").await, common::SseClient::connect(&app, "?request=1").await];
    let pid_file = app.data_dir.join("nats/nats-server.pid");
    let nats_pid = std::fs::read_to_string(pid_file).unwrap().trim().to_owned();
    let started = Instant::now();
    let status = app.terminate().await;
    let took = started.elapsed();
    println!("SIGTERM with 2 SSE clients: exited in {took:?}");
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(5), "the stop waited {took:?} for SSE clients");
    assert!(!Path::new(&format!("/proc/{nats_pid}")).exists(), "the embedded nats-server was stopped");
}

/// Published state messages are deleted from the outbox once things are quiet; the ids of the
/// next ones must not start again below what was published (a table emptied by the delete
/// gives rowid 1 again unless ids are never reused).
#[tokio::test(flavor = "multi_thread")]
async fn state_changes_after_a_quiet_moment_are_still_published() {
    let app = App::start().await;
    let sse = common::SseClient::connect(&app, "").await;
    let steps = [
        ("jellyseerr/webhook_media_pending_movie_the_batman_req42.json", "requested"),
        ("jellyseerr/webhook_media_approved_movie_the_batman_req42.json", "approved"),
        ("radarr/webhook_grab_the_batman.json", "indexed"),
    ];
    for (fixture, state) in steps {
        let source = fixture.split('/').next().unwrap();
        assert_eq!(app.post_fixture(source, fixture).await.0, 202);
        sse.wait_for(&format!("the change to {state}"), |e| {
            e.event == "request" && e.data["request"]["state"] == state
        })
        .await;
        // Longer than the publisher waits before deleting what it published.
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
}

/// `TRACKER` unable to take state messages (here: deleted; in life, its storage full or a
/// server that lost it) while `MEDIA` still delivers: the correlator goes on applying, its
/// state messages wait in the database rather than in memory, and every one is published
/// once `TRACKER` is back.
#[tokio::test(flavor = "multi_thread")]
async fn state_changes_wait_in_the_database_while_tracker_cannot_take_them() {
    let app = App::start().await;
    let js = async_nats::jetstream::new(async_nats::connect(app.nats_url()).await.unwrap());
    let config = js.get_stream("TRACKER").await.unwrap().cached_info().config.clone();
    js.delete_stream("TRACKER").await.unwrap();

    // Several times the state messages the correlator holds in memory for the publisher.
    let films = 2000;
    let posted: Vec<u16> = futures_util::stream::iter(0..films)
        .map(|i| {
            let body = scenario::synthetic_film(i, 0).remove(0).raw.to_string();
            let app = &app;
            async move { app.post("jellyseerr", "application/json", body).await.0 }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(posted.iter().all(|s| *s == 202), "every webhook accepted");
    let started = Instant::now();
    app.wait_for("/api/requests?limit=1", "every request applied", |v| v["total"] == films).await;
    println!("TRACKER away: {films} requests applied in {:.1} s", started.elapsed().as_secs_f64());
    let log = app.log();
    assert!(
        log.contains("it will read them from the database"),
        "the publisher fell behind and the consumer went on without it:\n{log}"
    );

    js.create_stream(config).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut stream = js.get_stream("TRACKER").await.unwrap();
    loop {
        let stored = stream.info().await.unwrap().state.messages;
        // A `requested` and a `progress` message per request; TRACKER keeps the last per subject.
        let expected = 2 * films as u64;
        if stored >= expected {
            assert_eq!(stored, expected);
            break;
        }
        assert!(Instant::now() < deadline, "{stored} of {expected} state messages published after TRACKER came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
