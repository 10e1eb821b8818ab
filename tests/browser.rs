//! The dashboard in a real browser: Debian's headless Chromium driven over WebDriver
//! (chromedriver + fantoccini) against the all-in-one binary. Cards and progress bars follow
//! webhooks live without a reload, the detail timeline updates itself, phones get stacking
//! cards, and a hostile title stays text. Screenshots go to `target/tmp/screenshots/`, or to
//! `docs/screenshots/` with `UPDATE_SCREENSHOTS=1` (docs/dashboard.md).
//!
//! Needs `chromium` and `chromium-driver` (scripts/test.sh installs them).

mod common;

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::App;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use shared::Bus;
use shared::envelope::Envelope;
use shared::events::qbittorrent::{Progress, TorrentEvent};
use shared::events::{EventData, Fact};
use shared::ids::InfoHash;

const PENDING: &str = "jellyseerr/webhook_media_pending_movie_the_batman_req42.json";
const APPROVED: &str = "jellyseerr/webhook_media_approved_movie_the_batman_req42.json";
const ADDED: &str = "radarr/webhook_movie_added_the_batman.json";
const GRAB: &str = "radarr/webhook_grab_the_batman.json";
const IMPORTED: &str = "radarr/webhook_download_the_batman.json";
const IN_JELLYFIN: &str = "jellyfin/item_added_movie_the_batman.json";
const BATMAN_HASH: &str = "5e3f9a1c7b2d4e6f8091a2b3c4d5e6f708192a3b";
const FINISHED: &str =
    r#"{"hash":"5e3f9a1c7b2d4e6f8091a2b3c4d5e6f708192a3b","name":"The.Batman.2022.1080p.BluRay.x264-FICTION"}"#;
/// Other requests, so that pages look like a real household's.
const OTHERS: [(&str, &str); 7] = [
    ("jellyseerr", "jellyseerr/webhook_media_auto_approved_tv_dan_da_dan_req43.json"),
    ("sonarr", "sonarr/webhook_series_add_dan_da_dan.json"),
    ("sonarr", "sonarr/webhook_grab_dan_da_dan_s01_season_pack.json"),
    ("sonarr", "sonarr/webhook_download_dan_da_dan_s01e01.json"),
    ("jellyseerr", "jellyseerr/webhook_media_pending_tv_severance_req44.json"),
    ("jellyseerr", "jellyseerr/webhook_media_approved_tv_severance_req44.json"),
    ("jellyseerr", "jellyseerr/webhook_media_failed_movie_dune_part_two_req45.json"),
];

/// A headless Chromium session and its chromedriver. Dropping it ends the session and kills
/// the driver's process group (driver and browser), even when a test panics.
struct Browser {
    client: Option<Client>,
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A desktop window of this size.
    async fn desktop(width: u32, height: u32) -> Self {
        Self::start(json!({ "args": [format!("--window-size={width},{height}")] })).await
    }

    /// A 390×844 phone (Chromium's windows cannot be narrower than 500 px, so the viewport is
    /// emulated, as DevTools' device mode does), at 2× for a sharp screenshot.
    async fn phone() -> Self {
        let metrics = json!({ "width": 390, "height": 844, "pixelRatio": 2.0, "mobile": true, "touch": true });
        Self::start(json!({ "args": [], "mobileEmulation": { "deviceMetrics": metrics } })).await
    }

    async fn start(mut options: Value) -> Self {
        let port = common::free_port();
        let profile = tempfile::tempdir().unwrap();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver (Debian package chromium-driver; scripts/test.sh installs it)");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        while http.get(format!("http://127.0.0.1:{port}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--lang=en-US",
        ];
        let list = options["args"].as_array_mut().unwrap();
        list.extend(args.iter().map(|a| json!(a)));
        list.push(json!(format!("--user-data-dir={}", profile.path().display())));
        options["binary"] = json!(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
        let caps = json!({ "goog:chromeOptions": options });
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(caps.as_object().unwrap().clone());
        let client = builder.connect(&format!("http://127.0.0.1:{port}")).await.expect("a Chromium session");
        let session = client.session_id().await.unwrap().unwrap_or_default();
        Self { client: Some(client), driver, port, session, _profile: profile }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    async fn open(&self, url: &str) {
        self.client().goto(url).await.unwrap();
    }

    /// Runs `body` (a function body: `return …`) in the page.
    async fn js(&self, body: &str) -> Value {
        self.client().execute(body, vec![]).await.unwrap_or_else(|e| panic!("script failed: {e}\n{body}"))
    }

    /// Waits (10 s) until the JS expression `pred` is true in the page.
    async fn wait(&self, app: &App, what: &str, pred: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let script = format!("try {{ return !!({pred}); }} catch (e) {{ return false; }}");
        while self.js(&script).await != Value::Bool(true) {
            if Instant::now() > deadline {
                let text = self.js("return document.querySelector('main').innerText").await;
                panic!("timed out waiting for {what} ({pred})\npage: {text}\n{}", app.log());
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }

    /// Cuts the browser off the network (DevTools' "Offline"), or puts it back.
    async fn offline(&self, offline: bool) {
        let conditions = json!({ "network_conditions": {
            "offline": offline, "latency": 0, "download_throughput": -1, "upload_throughput": -1 } });
        let url = format!("http://127.0.0.1:{}/session/{}/chromium/network_conditions", self.port, self.session);
        let res = reqwest::Client::new().post(url).json(&conditions).send().await.unwrap();
        assert!(res.status().is_success(), "network conditions: {}", res.text().await.unwrap_or_default());
    }

    /// Writes the screenshot `name` (see [`screenshot_dir`]): on a desktop, the whole page (the
    /// window grows to fit it for the shot); on a phone, the first screen.
    async fn screenshot(&self, name: &str, whole_page: bool) {
        let c = self.client();
        let (_, _, width, height) = c.get_window_rect().await.unwrap();
        if whole_page {
            let need = self.js("return document.documentElement.scrollHeight + outerHeight - innerHeight").await;
            c.set_window_size(width as u32, need.as_u64().unwrap() as u32).await.unwrap();
        }
        let png = c.screenshot().await.unwrap();
        if whole_page {
            c.set_window_size(width as u32, height as u32).await.unwrap();
        }
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }

    /// Ends the session, then the app (SIGTERM, so that it stops its own nats-server too).
    async fn close(mut self, mut app: App) {
        if let Some(client) = self.client.take() {
            client.close().await.ok();
        }
        app.terminate().await;
    }
}

/// Where screenshots go: the documentation's own when asked (`UPDATE_SCREENSHOTS=1`), else
/// beside the build, so that a test run leaves the work tree as it was (a PNG differs from one
/// run to the next: clock, fonts, timing).
fn screenshot_dir() -> std::path::PathBuf {
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots")
    } else {
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if self.client.take().is_some() {
            // Not closed (a test failed): end the session with a plain blocking request.
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                s.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let req = format!(
                    "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                    self.session
                );
                if s.write_all(req.as_bytes()).is_ok() {
                    s.read_to_end(&mut Vec::new()).ok();
                }
            }
        }
        let group = format!("-{}", self.driver.id());
        Command::new("kill").args(["-TERM", "--", &group]).stderr(Stdio::null()).status().ok();
        std::thread::sleep(Duration::from_millis(100));
        Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status().ok();
        self.driver.wait().ok();
    }
}

/// Publishes a qBittorrent progress fact for The Batman, as the poller would.
async fn progress(bus: &Bus, n: u32, fraction: f64, dlspeed: u64, eta: u64) {
    let size = 15_789_453_312_u64;
    let fact = Fact::Qbittorrent(TorrentEvent::Progress(Progress {
        hash: InfoHash::parse(BATMAN_HASH).unwrap(),
        name: Some("The.Batman.2022.1080p.BluRay.x264-FICTION".into()),
        progress: fraction,
        dlspeed,
        eta: Some(eta),
        state: "downloading".into(),
        size: Some(size),
        amount_left: Some((size as f64 * (1.0 - fraction)) as u64),
        num_seeds: Some(12),
        stalled: None,
        error: None,
    }));
    let subject = fact.subject();
    let key = fact.media_key();
    let data = EventData { event: fact, raw: None };
    let envelope = Envelope::new(format!("qbittorrent-test-progress-{n}"), "/tests/browser", &subject, data);
    bus.publish_event(&subject, &envelope.with_subject(key)).await.unwrap();
}

async fn post_others(app: &App) {
    for (source, fixture) in OTHERS {
        assert_eq!(app.post_fixture(source, fixture).await.0, 202, "{fixture}");
    }
}

async fn card_state(b: &Browser, app: &App, id: i64, state: &str) {
    let pred = format!("document.querySelector('#req-{id}').dataset.state === '{state}'");
    b.wait(app, &format!("card {id} to show {state}"), &pred).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_cards_follow_a_film_through_its_states_and_progress_without_reload() {
    let app = App::start().await;
    let b = Browser::desktop(1280, 900).await;
    let bus = Bus::connect(&app.nats_url(), "browser-test").await.unwrap();
    b.open(&app.url("/")).await;
    b.wait(&app, "the empty state", "document.querySelector('.empty').innerText.includes('No active requests')").await;
    b.wait(&app, "the live indicator", "window.__tracker.conn === 'connected'").await;
    b.js("window.__marker = 'no reload'; return true").await;

    // A new request appears without a reload, then moves through its states.
    app.post_fixture("jellyseerr", PENDING).await;
    b.wait(&app, "the new card", "document.querySelector('#req-1 h3').innerText.startsWith('The Batman')").await;
    for (source, fixture, state) in
        [("jellyseerr", APPROVED, "approved"), ("radarr", ADDED, "searching"), ("radarr", GRAB, "indexed")]
    {
        app.post_fixture(source, fixture).await;
        card_state(&b, &app, 1, state).await;
    }
    b.wait(&app, "the Found badge", "document.querySelector('#req-1 .badge').innerText === 'Found'").await;
    post_others(&app).await;

    // Progress: the first tick makes it Downloading (card swapped), the next ones move the
    // bar in place (the same element survives).
    progress(&bus, 1, 0.25, 1_200_000, 3600).await;
    card_state(&b, &app, 1, "downloading").await;
    b.wait(&app, "a 25% bar", "document.querySelector('#req-1 progress').value === 25").await;
    b.wait(&app, "the swaps to settle", "window.__tracker.busy === 0").await;
    b.js("document.querySelector('#req-1').__same = true; return true").await;
    progress(&bus, 2, 0.6, 2_300_000, 272).await;
    b.wait(&app, "a 60% bar", "document.querySelector('#req-1 progress').value === 60").await;
    let rate = b.js("return document.querySelector('#req-1 .rate').innerText").await;
    assert_eq!(rate, "60% · 2.3 MB/s · ETA 4m 32s");
    assert_eq!(b.js("return document.querySelector('#req-1').__same === true").await, true, "bar moved in place");
    b.wait(&app, "the other cards", "document.querySelectorAll('.card').length === 4").await;
    b.screenshot("index.png", true).await;

    app.post("qbittorrent", "application/json", FINISHED).await;
    card_state(&b, &app, 1, "downloaded").await;
    app.post_fixture("radarr", IMPORTED).await;
    card_state(&b, &app, 1, "importing").await;
    app.post_fixture("jellyfin", IN_JELLYFIN).await;
    card_state(&b, &app, 1, "available").await;
    b.wait(
        &app,
        "the Watch now link",
        "document.querySelector('#req-1 a.watch').href.startsWith('https://jellyfin.example.org/')",
    )
    .await;

    assert_eq!(b.js("return window.__marker").await, "no reload", "the page was never reloaded");
    assert_eq!(b.js("return window.__tracker.blocked").await, json!([]), "nothing refused by the CSP");
    let announced = b.js("return document.querySelector('#announce').innerText").await;
    assert_eq!(announced, "The Batman: Available", "screen readers hear the change");
    b.close(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_load_of_the_index_is_compressed_and_under_100_kb() {
    let app = App::start().await;
    app.post_fixture("jellyseerr", PENDING).await;
    post_others(&app).await;
    app.wait_for("/api/requests", "4 requests", |v| v["total"] == 4).await;
    let b = Browser::desktop(1280, 900).await;
    b.open(&app.url("/")).await;
    b.wait(&app, "the cards", "document.querySelectorAll('.card').length === 4").await;
    let sizes = b
        .js("const n = performance.getEntriesByType('navigation')[0];
             const r = performance.getEntriesByType('resource').filter(e => ['link', 'script'].includes(e.initiatorType));
             return { total: n.transferSize + r.reduce((a, e) => a + e.transferSize, 0), files: r.length,
                      html: [n.transferSize, n.decodedBodySize],
                      assets: r.map(e => [e.name.split('/').pop(), e.transferSize, e.decodedBodySize]) }")
        .await;
    println!("first load of / with 4 requests: {sizes}");
    assert_eq!(sizes["files"], 3, "one stylesheet, htmx and app.js: {sizes}");
    assert!(sizes["total"].as_u64().unwrap() <= 100_000, "first load too big: {sizes}");
    for asset in sizes["assets"].as_array().unwrap() {
        assert!(asset[1].as_u64() < asset[2].as_u64(), "not compressed: {asset}");
    }
    b.close(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_detail_timeline_updates_live_and_unknown_requests_get_a_404_page() {
    let app = App::start().await;
    let bus = Bus::connect(&app.nats_url(), "browser-test").await.unwrap();
    for (source, fixture) in [("jellyseerr", PENDING), ("jellyseerr", APPROVED), ("radarr", ADDED), ("radarr", GRAB)] {
        app.post_fixture(source, fixture).await;
    }
    post_others(&app).await;
    app.wait_state(1, "indexed").await;
    let b = Browser::desktop(1280, 1000).await;
    b.open(&app.url("/requests/1")).await;
    let step = |state: &str, mark: &str| {
        format!("document.querySelector('.step[data-state={state}]').dataset.mark === '{mark}'")
    };
    b.wait(&app, "Found as the current step", &step("indexed", "current")).await;
    b.wait(&app, "the live indicator", "window.__tracker.conn === 'connected'").await;
    let found = b.js("return document.querySelector('.step[data-state=indexed] .facts').innerText").await;
    for fact in ["Bluray-1080p", "ExampleTracker (Prowlarr)", "15.8 GB"] {
        assert!(found.as_str().unwrap().contains(fact), "{fact} in {found}");
    }
    assert_eq!(
        b.js("return document.querySelector('.step[data-state=matching]')").await,
        Value::Null,
        "no Matching for a film"
    );
    b.js("window.__marker = 'no reload'; return true").await;

    progress(&bus, 1, 0.42, 3_100_000, 1500).await;
    b.wait(&app, "Downloading current", &step("downloading", "current")).await;
    b.wait(&app, "Found done", &step("indexed", "done")).await;
    b.wait(&app, "the step's bar", "document.querySelector('[data-live-progress] progress').value === 42").await;
    progress(&bus, 2, 0.67, 2_300_000, 272).await;
    b.wait(&app, "the bar moved", "document.querySelector('#detail-progress progress').value === 67").await;
    b.screenshot("detail.png", true).await;

    app.post("qbittorrent", "application/json", FINISHED).await;
    b.wait(&app, "Downloaded current", &step("downloaded", "current")).await;
    assert_eq!(b.js("return window.__marker").await, "no reload");

    // A series: the episode grid, and the Matching step for anime.
    b.open(&app.url("/requests/2")).await;
    b.wait(&app, "the episode grid", "document.querySelectorAll('.grid .ep').length === 12").await;
    b.wait(&app, "a Matching step", "!!document.querySelector('.step[data-state=matching]')").await;
    b.screenshot("detail-series.png", true).await;

    // A failed request offers Retry; the answer (or the API's JSON error) is shown.
    b.open(&app.url("/requests/4")).await;
    b.wait(&app, "a failed step", &step("failed", "failed")).await;
    b.client().find(fantoccini::Locator::Css("button[data-action=Retry]")).await.unwrap().click().await.unwrap();
    b.wait(
        &app,
        "the retry's outcome",
        "/^Retry (requested|failed: .+)/.test(document.querySelector('#action-result').innerText)",
    )
    .await;

    let missing = app.http.get(app.url("/requests/999")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.text().await.unwrap().contains("Request not found"));
    b.close(app).await;
}

/// "Lower quality" (a fallback profile set) asks first: dismissed, nothing is sent; accepted,
/// the answer is shown (here why it could not: no Radarr is configured).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lower_quality_asks_before_it_changes_the_profile_and_shows_the_answer() {
    let app = App::start_with(&[("RADARR_FALLBACK_PROFILE", "SD")]).await;
    app.post_fixture("jellyseerr", "jellyseerr/webhook_media_failed_movie_dune_part_two_req45.json").await;
    app.wait_state(1, "failed").await;
    let b = Browser::desktop(1280, 800).await;
    b.open(&app.url("/requests/1")).await;
    let button = "button[data-action='Lower quality']";
    b.wait(&app, "the Lower quality button", &format!("!!document.querySelector(\"{button}\")")).await;
    b.screenshot("detail-failed.png", true).await;
    let click = || async { b.client().find(fantoccini::Locator::Css(button)).await.unwrap().click().await.unwrap() };

    click().await;
    let question = b.client().get_alert_text().await.expect("a confirmation first");
    assert_eq!(
        question,
        "Switch this film to the fallback quality profile and search again? The profile stays changed in Radarr."
    );
    b.client().dismiss_alert().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(b.js("return document.querySelector('#action-result').innerText").await, "", "nothing sent");
    let timeline = app.wait_state(1, "failed").await["timeline"].as_array().unwrap().len();

    click().await;
    b.client().accept_alert().await.unwrap();
    let why = "RADARR_URL and RADARR_API_KEY are not set, so status-tracker cannot change the quality profile";
    b.wait(
        &app,
        "the answer",
        &format!("document.querySelector('#action-result').innerText === 'Lower quality failed: Could not lower the quality: {why}'"),
    )
    .await;
    let detail = app.wait_for("/api/requests/1", "the attempt on the timeline", |v| {
        v["timeline"].as_array().is_some_and(|t| t.len() == timeline + 1)
    });
    assert_eq!(detail.await["state"], "failed");
    b.close(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_phone_cards_stack_without_horizontal_scroll() {
    let app = App::start().await;
    app.post_fixture("jellyseerr", PENDING).await;
    post_others(&app).await;
    app.post_fixture("radarr", GRAB).await;
    app.wait_state(1, "indexed").await;
    let bus = Bus::connect(&app.nats_url(), "browser-test").await.unwrap();
    progress(&bus, 1, 0.67, 2_300_000, 272).await;
    app.wait_state(1, "downloading").await;
    let b = Browser::phone().await;
    b.open(&app.url("/")).await;
    b.wait(&app, "the cards", "document.querySelectorAll('.card').length === 4").await;
    assert_eq!(b.js("return window.innerWidth").await, 390);
    let layout = b
        .js("const r = [...document.querySelectorAll('.card')].map(c => c.getBoundingClientRect());
             return { scroll: document.documentElement.scrollWidth, width: innerWidth,
                      lefts: [...new Set(r.map(x => Math.round(x.left)))],
                      stacked: r.every((x, i) => i === 0 || x.top >= r[i - 1].bottom),
                      widest: Math.max(...r.map(x => x.right)) }")
        .await;
    assert!(layout["scroll"].as_u64() <= layout["width"].as_u64(), "horizontal scroll: {layout}");
    assert_eq!(layout["lefts"].as_array().unwrap().len(), 1, "one column: {layout}");
    assert_eq!(layout["stacked"], true, "{layout}");
    assert!(layout["widest"].as_f64().unwrap() <= 390.0, "{layout}");
    let a11y = b
        .js("return { unlabelled: [...document.querySelectorAll('input, select, button, progress')]
                        .filter(e => !e.labels?.length && !e.getAttribute('aria-label') && !e.innerText.trim()).length,
                      landmarks: ['header', 'nav', 'main', 'footer', '[role=search]', '[aria-live]']
                        .filter(s => !document.querySelector(s)) }")
        .await;
    assert_eq!(a11y, json!({ "unlabelled": 0, "landmarks": [] }), "labels and landmarks");
    b.screenshot("mobile.png", false).await;
    b.close(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_in_a_title_is_shown_as_text_and_never_runs() {
    let app = App::start().await;
    let b = Browser::desktop(1280, 900).await;
    b.open(&app.url("/")).await;
    b.wait(&app, "the live indicator", "window.__tracker.conn === 'connected'").await;
    let hostile = "<script>window.__xss=1</script>";
    let mut body: Value = serde_json::from_slice(&common::fixture(PENDING)).unwrap();
    body["subject"] = json!(format!("{hostile} (2024)"));
    body["request"]["requestedBy_username"] = json!("<img src=x onerror=window.__xss=2>");
    assert_eq!(app.post("jellyseerr", "application/json", body.to_string()).await.0, 202);

    // Inserted live, then rendered by the server on a fresh load, then on its detail page.
    for url in [None, Some("/"), Some("/requests/1")] {
        if let Some(url) = url {
            b.open(&app.url(url)).await;
        }
        let title = if url == Some("/requests/1") { "#detail-title" } else { ".card h3 a" };
        b.wait(&app, "the hostile title", &format!("document.querySelector('{title}')")).await;
        let shown = b.js(&format!("return document.querySelector('{title}').textContent")).await;
        assert!(shown.as_str().unwrap().starts_with(hostile), "shown as text: {shown}");
        assert_eq!(b.js("return document.querySelectorAll('main script, main img:not(.poster img)').length").await, 0);
        assert_eq!(b.js("return typeof window.__xss").await, "undefined", "the script ran");
    }
    b.close(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_was_offline_catches_up_on_what_it_missed() {
    let app = App::start().await;
    app.post_fixture("jellyseerr", PENDING).await;
    app.wait_state(1, "requested").await;
    let b = Browser::desktop(1280, 900).await;
    b.open(&app.url("/")).await;
    b.wait(&app, "the live indicator", "window.__tracker.conn === 'connected'").await;
    b.js("window.__marker = 'no reload'; document.querySelector('#list').__same = true; return true").await;

    b.offline(true).await;
    b.wait(&app, "the offline indicator", "document.querySelector('#conn').innerText.includes('Offline')").await;
    app.post_fixture("jellyseerr", APPROVED).await;
    app.post_fixture("radarr", ADDED).await;
    app.wait_state(1, "searching").await;
    assert_eq!(b.js("return document.querySelector('#req-1').dataset.state").await, "requested");

    // Back online: the stream resumes from Last-Event-ID and the missed changes are replayed.
    b.offline(false).await;
    b.wait(&app, "the live indicator", "window.__tracker.conn === 'connected'").await;
    card_state(&b, &app, 1, "searching").await;
    assert_eq!(b.js("return window.__marker").await, "no reload");
    let replayed = b.js("return document.querySelector('#list').__same === true").await;
    assert_eq!(replayed, true, "the missed events were replayed (no resync refetched the list)");
    b.close(app).await;
}
