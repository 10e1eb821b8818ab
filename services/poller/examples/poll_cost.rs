//! What polling costs qBittorrent: HTTP calls and bytes per minute, with 1 and with 500
//! torrents, measured on the socket of a fake qBittorrent that answers `sync/maindata` as the
//! real one does (a full snapshot, then per-session deltas of the keys that changed).
//!
//! `cargo run --release -p poller --example poll_cost`
//!
//! The poller runs for real (HTTP client, merge, observer, pacer); only time is simulated:
//! each poll is followed by the wait the pacer asks for, counted on a virtual clock, and the
//! fake advances its torrents by one stats refresh per poll (qBittorrent refreshes every
//! 1.5 s, the poller asks every 2 s, so every poll sees fresh numbers).

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use poller::{Credentials, Pacer, QbitClient, Sink, Worker};
use shared::events::MediaEnvelope;
use shared::health::{HealthCell, HealthStatus};
use shared::settings::Secret;
use support::fake_qbit::{FakeQbit, Flavour, PASSWORD, USER};
use support::swarm::{Swarm, hash_of};

const POLL: Duration = Duration::from_secs(2);
const IDLE: Duration = Duration::from_secs(30);
const MINUTE: Duration = Duration::from_secs(60);

/// Counts what would go to NATS.
#[derive(Default, Clone)]
struct Count(Arc<AtomicU64>);

impl Sink for Count {
    async fn publish(&self, _subject: &str, _envelope: &MediaEnvelope) -> Result<(), String> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

struct Scenario {
    name: &'static str,
    torrents: usize,
    downloading: usize,
    tracked: usize,
}

struct Minute {
    calls: usize,
    sent: u64,
    received: u64,
    published: u64,
}

/// Runs the poller for one virtual minute and returns what crossed the socket.
async fn minute(q: &FakeQbit, w: &mut Worker<QbitClient, Count>, pacer: &mut Pacer) -> Minute {
    let (calls0, (in0, out0), pub0) = (q.requests().len(), q.traffic(), w.sink().0.load(Ordering::Relaxed));
    let mut clock = Duration::ZERO;
    while clock < MINUTE {
        let outcome = w.poll_once().await;
        clock += pacer.after(&outcome).expect("the fake accepts our credentials");
    }
    let (in1, out1) = q.traffic();
    Minute {
        calls: q.requests().len() - calls0,
        sent: in1 - in0,
        received: out1 - out0,
        published: w.sink().0.load(Ordering::Relaxed) - pub0,
    }
}

/// What a poller re-reading `torrents/info` every 2 s would cost instead.
async fn naive_minute(q: &FakeQbit) -> (usize, u64, u64) {
    let http = reqwest::Client::new();
    let form = [("username", USER), ("password", PASSWORD)];
    let login = http.post(format!("{}/api/v2/auth/login", q.url)).form(&form).send().await.unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let (calls0, (in0, out0)) = (q.requests().len(), q.traffic());
    for _ in 0..(MINUTE.as_secs() / POLL.as_secs()) {
        let r = http.get(format!("{}/api/v2/torrents/info", q.url)).header("cookie", &cookie).send().await.unwrap();
        r.bytes().await.unwrap();
    }
    let (in1, out1) = q.traffic();
    (q.requests().len() - calls0, in1 - in0, out1 - out0)
}

fn kb(bytes: u64) -> String {
    format!("{:.1} KB", bytes as f64 / 1000.0)
}

fn row(label: &str, m: &Minute) {
    println!("| {label} | {} | {} | {} | {} |", m.calls, kb(m.sent), kb(m.received), m.published);
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let scenarios = [
        Scenario { name: "1 torrent, downloading, tracked", torrents: 1, downloading: 1, tracked: 1 },
        Scenario { name: "500 torrents, 20 downloading and tracked", torrents: 500, downloading: 20, tracked: 20 },
        Scenario { name: "500 torrents, none tracked", torrents: 500, downloading: 20, tracked: 0 },
    ];
    println!("poll interval {POLL:?}, idle interval {IDLE:?}; per minute, measured on the fake's socket\n");
    println!("| scenario | minute | HTTP calls | sent to qBittorrent | received from it | NATS messages |");
    println!("|---|---|---|---|---|---|");
    for s in &scenarios {
        // 0.05 % per refresh: the downloads stay active for the whole run.
        let q = FakeQbit::start(Flavour::V4, Swarm::new(s.torrents, s.downloading).with_step(0.0005)).await;
        q.inner.lock().unwrap().refresh_each_poll = true;
        let creds = Credentials::Password { username: USER.into(), password: Secret::new(PASSWORD) };
        let health = HealthCell::new("poller", HealthStatus::Ok);
        let mut w = Worker::new(QbitClient::new(&q.url, creds), Count::default(), Duration::from_secs(600), health);
        w.tracked.reset((0..s.tracked).map(hash_of));
        let mut pacer = Pacer::new(POLL, IDLE);
        row(&format!("{} | first (login, full snapshot)", s.name), &minute(&q, &mut w, &mut pacer).await);
        row(&format!("{} | steady (deltas)", s.name), &minute(&q, &mut w, &mut pacer).await);
    }
    let q = FakeQbit::start(Flavour::V4, Swarm::new(500, 20).with_step(0.0005)).await;
    q.inner.lock().unwrap().refresh_each_poll = true;
    let (calls, sent, received) = naive_minute(&q).await;
    println!(
        "| for comparison: `torrents/info` every 2 s, 500 torrents | steady | {calls} | {} | {} | - |",
        kb(sent),
        kb(received)
    );
}
