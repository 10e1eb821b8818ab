//! The poller against a real qBittorrent: two `qbittorrent-nox` on loopback (a seeder and a
//! leecher, started by `tests/tools/qbit-loopback.sh`), a Radarr grab carrying the leecher's
//! hash, and the request seen through `/api/requests` rising through intermediate progress
//! to `downloaded`, with no run-on-finish hook at all: the poller alone reports completion.
//! Midway the all-in-one is killed and restarted, so the poller and the correlator both
//! pick up where they were.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::App;
use serde_json::Value;

const GRAB: &str = "radarr/webhook_grab_the_batman.json";
const FIXTURE_HASH: &str = "5E3F9A1C7B2D4E6F8091A2B3C4D5E6F708192A3B";

/// Two qBittorrent instances; stopped and deleted on drop, also when the test fails.
struct Loopback {
    dir: tempfile::TempDir,
    port_base: u16,
    env: HashMap<String, String>,
}

/// Runs `qbit-loopback.sh <command>` on the pair living in `dir`.
fn loopback(dir: &Path, port_base: u16, command: &str) -> Output {
    Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/qbit-loopback.sh"))
        .arg(command)
        .env("QBL_DIR", dir)
        .env("QBL_PORT_BASE", port_base.to_string())
        // 64 MiB at 4 MiB/s: about 16 s of download, plenty of intermediate polls.
        .env("QBL_SIZE_MB", "64")
        .env("QBL_DL_LIMIT_KIB", "4096")
        .env("QBL_REFRESH_MS", "500")
        // Leave the leecher waiting for peers until the grab is in.
        .env("QBL_CONNECT", "0")
        // No run-on-finish hook: completion must come from the poller.
        .env("QBL_HOOK_URL", "http://127.0.0.1:9/unused")
        .env("QBL_HOOK_PROGRAM", "true")
        .output()
        .expect("bash runs qbit-loopback.sh")
}

impl Loopback {
    /// Starts both instances; the leecher has the torrent but no peer yet.
    fn start() -> Self {
        let mut lb = Self { dir: tempfile::tempdir().unwrap(), port_base: free_port_base(), env: HashMap::new() };
        let out = loopback(lb.dir.path(), lb.port_base, "start");
        assert!(out.status.success(), "qbit-loopback.sh start failed:\n{}", String::from_utf8_lossy(&out.stderr));
        lb.env = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
            .collect();
        lb
    }

    fn var(&self, name: &str) -> &str {
        self.env.get(name).unwrap_or_else(|| panic!("{name} missing from qbit-loopback.sh's output"))
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        let out = loopback(self.dir.path(), self.port_base, "clean");
        if !out.status.success() {
            eprintln!("qbit-loopback.sh clean: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// A base port whose offsets used by the script (+1, +2, +9, +11, +12, +19) are all free.
fn free_port_base() -> u16 {
    let seed = std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64;
    (0..200u64)
        .map(|i| 20_000 + ((seed.wrapping_mul(7919) + i * 104_729) % 40_000) as u16)
        .find(|base| {
            [1, 2, 9, 11, 12, 19].iter().all(|off| std::net::TcpListener::bind(("127.0.0.1", base + off)).is_ok())
        })
        .expect("a free block of ports")
}

/// The app under test, stopped with SIGTERM on drop so that it stops its embedded
/// `nats-server` too (the harness's SIGKILL on drop would leave that server running).
struct Graceful(App);

impl std::ops::Deref for Graceful {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

impl std::ops::DerefMut for Graceful {
    fn deref_mut(&mut self) -> &mut App {
        &mut self.0
    }
}

impl Drop for Graceful {
    fn drop(&mut self) {
        let Some(pid) = self.0.child.as_ref().and_then(|c| c.id()) else { return };
        drop(Command::new("kill").args(["-TERM", &pid.to_string()]).status());
        let exited = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |stat| stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !exited() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

async fn request(app: &App) -> Value {
    let list = app.get("/api/requests").await;
    list["requests"].get(0).cloned().unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_real_qbittorrent_download_shows_rising_progress_then_downloaded() {
    let started = Instant::now();
    let qbit = Loopback::start();
    let hash = qbit.var("QBL_HASH").to_owned();
    let mut app = Graceful(
        App::start_with(&[
            ("QBIT_URL", qbit.var("QBL_LEECHER_URL")),
            ("QBIT_USERNAME", qbit.var("QBL_USER")),
            ("QBIT_PASSWORD", qbit.var("QBL_PASS")),
            ("QBIT_POLL_INTERVAL", "1s"),
        ])
        .await,
    );

    // Radarr grabbed the leecher's torrent (Radarr writes the hash in upper case).
    let grab = String::from_utf8(common::fixture(GRAB)).unwrap().replace(FIXTURE_HASH, &hash.to_uppercase());
    let (status, answer) = app.post("radarr", "application/json", grab).await;
    assert_eq!(status, 202, "{answer}");
    // The poller sees the torrent waiting for peers: the request is downloading, at 0 %.
    app.wait_for("/api/requests/1", "the poller to report the torrent stalledDL", |v| {
        v["state"] == "downloading" && v["downloads"][0]["client_state"] == "stalledDL"
    })
    .await;

    // Now let the leecher find the seeder (the script retries until they are connected).
    let (dir, base) = (qbit.dir.path().to_owned(), qbit.port_base);
    let connect = tokio::task::spawn_blocking(move || loopback(&dir, base, "connect"));

    let mut seen: Vec<f64> = Vec::new();
    let mut restarted = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    let last = loop {
        let r = request(&app).await;
        if let Some(p) = r["progress"].as_f64()
            && seen.last() != Some(&p)
        {
            seen.push(p);
        }
        if r["state"] == "downloaded" {
            break r;
        }
        // Kill everything once the download is under way, as a crash would, and go on.
        if !restarted && seen.iter().any(|p| *p > 0.0 && *p < 0.5) {
            app.restart().await;
            restarted = true;
        }
        assert!(Instant::now() < deadline, "not downloaded in time; progress seen {seen:?}; last {r:#}\n{}", app.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let out = connect.await.unwrap();
    assert!(out.status.success(), "connect failed:\n{}", String::from_utf8_lossy(&out.stderr));

    let intermediate: Vec<f64> = seen.iter().copied().filter(|p| *p > 0.0 && *p < 1.0).collect();
    assert!(intermediate.len() >= 2, "intermediate progress values: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "progress went backwards: {seen:?}");
    assert!(restarted, "the restart happened mid-download");
    assert_eq!(last["progress"], 1.0);
    let timeline = app.get("/api/requests/1/timeline").await;
    let done = timeline["timeline"].as_array().unwrap().iter().find(|e| e["state"] == "downloaded");
    assert_eq!(done.expect("a downloaded entry")["details"]["via"], "poller", "{timeline:#}");
    let health = app.get("/api/health").await;
    eprintln!("progress seen: {seen:?}\npoller health: {:#}", health["services"]["poller"]);
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
}
