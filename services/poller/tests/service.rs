//! The whole service on a real `nats-server`: health over NATS, the tracked set learnt from a
//! request snapshot and from the correlator's answer (which comes late, as after a restart),
//! and facts stored in JetStream, the completion exactly once.

mod support;

use std::time::{Duration, Instant};

use poller::{Poller, PollerSettings};
use serde_json::{Value, json};
use shared::health::{HealthStatus, ServiceHealth};
use shared::model::{Reply, TrackedReply};
use shared::nats_server::EmbeddedNats;
use shared::settings::Env;
use shared::{Bus, subjects};
use support::fake_qbit::{FakeQbit, Flavour, PASSWORD, USER};
use support::swarm::{Swarm, hash_of};
use tokio_util::sync::CancellationToken;

struct Nats {
    _dir: tempfile::TempDir,
    server: Option<EmbeddedNats>,
    bus: Bus,
}

impl Nats {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let server = EmbeddedNats::start(&dir.path().join("nats"), "nats-server").await.expect("nats-server");
        let bus = Bus::connect(&server.url(), "poller-test").await.unwrap();
        bus.ensure_streams().await.unwrap();
        Self { _dir: dir, server: Some(server), bus }
    }

    async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }
}

/// The poller's health over NATS; `None` until its responder has subscribed.
async fn health(bus: &Bus) -> Option<ServiceHealth> {
    bus.request(&subjects::health("poller"), &json!({}), Duration::from_secs(2)).await.ok()
}

/// Waits up to 10 s for `pred` over the poller's health.
async fn wait_health(bus: &Bus, what: &str, pred: impl Fn(&ServiceHealth) -> bool) -> ServiceHealth {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h = health(bus).await;
        if let Some(h) = h.as_ref().filter(|h| pred(h)) {
            return h.clone();
        }
        assert!(Instant::now() < deadline, "waiting for {what}; health: {h:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last message stored on `subject`, if any.
async fn last(bus: &Bus, stream: &str, subject: &str) -> Option<Value> {
    let stream = bus.js.get_stream(stream).await.unwrap();
    let msg = stream.get_last_raw_message_by_subject(subject).await.ok()?;
    serde_json::from_slice(&msg.payload).ok()
}

#[tokio::test]
async fn without_qbit_url_the_poller_is_idle_and_says_why() {
    let nats = Nats::start().await;
    let cancel = CancellationToken::new();
    let poller = Poller::new(nats.bus.clone(), PollerSettings::from_env(&Env::default()).unwrap());
    let task = tokio::spawn(poller.run(cancel.clone()));
    let h = wait_health(&nats.bus, "an answer", |_| true).await;
    assert_eq!(h.status, HealthStatus::Idle);
    assert_eq!(h.details["qbittorrent"], "idle: QBIT_URL is not set");
    cancel.cancel();
    task.await.unwrap().unwrap();
    nats.stop().await;
}

#[tokio::test]
async fn tracked_torrents_are_published_to_jetstream_and_the_late_correlator_is_followed() {
    let nats = Nats::start().await;
    let bus = nats.bus.clone();
    // Torrent 0 downloads a tenth further at each poll; torrent 1 waits for peers.
    let q = FakeQbit::start(Flavour::V4, Swarm::new(2, 2).with_step(0.1)).await;
    q.inner.lock().unwrap().refresh_each_poll = true;
    q.inner.lock().unwrap().swarm.hold(1);
    let env = Env::from_pairs([
        ("QBIT_URL", q.url.as_str()),
        ("QBIT_USERNAME", USER),
        ("QBIT_PASSWORD", PASSWORD),
        ("QBIT_POLL_INTERVAL", "100ms"),
    ]);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(Poller::new(bus.clone(), PollerSettings::from_env(&env).unwrap()).run(cancel.clone()));

    // No correlator yet: connected to qBittorrent, nothing tracked, nothing published.
    let h = wait_health(&bus, "a poll", |h| h.details.get("qbittorrent") == Some(&json!("connected"))).await;
    assert!(h.details["correlator"].as_str().unwrap().starts_with("not answering"), "{h:?}");
    assert_eq!(h.details["tracked"], "waiting for the correlator");

    // A request snapshot names torrent 0: the poller follows it.
    let first = hash_of(0);
    let change = json!({"specversion": "1.0", "id": "c-1", "source": "/status-tracker/correlator",
        "type": "tracker.request.1.indexed", "time": "2025-01-10T18:40:12Z", "datacontenttype": "application/json",
        "data": {"request": {"id": 1, "title": "Some Show", "media_type": "tv", "state": "indexed",
            "progress": 0.0, "source": "sonarr", "created_at": "2025-01-10T18:40:12Z", "updated_at": "2025-01-10T18:40:12Z",
            "downloads": [{"download_id": first.to_uppercase(), "kind": "torrent", "progress": 0.0, "dlspeed": 0,
                           "finished": false}]}}});
    bus.client.publish("tracker.request.1.indexed", change.to_string().into()).await.unwrap();
    let finished = wait_for_finished(&bus).await;
    assert_eq!(finished["data"]["event"]["hash"], first.as_str());
    assert_eq!(finished["data"]["event"]["via"], "poller");
    let progress = last(&bus, "MEDIA_PROGRESS", &format!("media.qbittorrent.progress.{first}")).await.unwrap();
    assert_eq!(progress["source"], "/status-tracker/poller");
    assert!(progress["data"]["event"]["progress"].as_f64().unwrap() < 1.0, "complete torrents send finished");

    // The correlator (re)starts and answers: it tracks torrent 1 only.
    let second = hash_of(1);
    let responder = answer_tracked(&bus, vec![second.clone()]).await;
    wait_health(&bus, "the correlator's answer", |h| h.details["correlator"] == "answering").await;
    let subject = format!("media.qbittorrent.progress.{second}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while last(&bus, "MEDIA_PROGRESS", &subject).await.is_none() {
        assert!(Instant::now() < deadline, "no progress for the torrent the correlator tracks");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Torrent 0 was stored as finished once, whatever the number of polls since.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(finished_of(&bus, &first).await, 1);
    let h = health(&bus).await.unwrap();
    assert_eq!(h.status, HealthStatus::Ok);
    assert_eq!(h.details["webapi"], "2.8.19");
    responder.abort();
    cancel.cancel();
    task.await.unwrap().unwrap();
    nats.stop().await;
}

/// How many `media.qbittorrent.finished` facts `MEDIA` holds for `hash`.
async fn finished_of(bus: &Bus, hash: &str) -> usize {
    let stream = bus.js.get_stream("MEDIA").await.unwrap();
    let count = stream.get_info().await.unwrap().state.last_sequence;
    let mut found = 0;
    for seq in 1..=count {
        let msg = stream.get_raw_message(seq).await.unwrap();
        let v: Value = serde_json::from_slice(&msg.payload).unwrap();
        found +=
            usize::from(msg.subject.as_str() == "media.qbittorrent.finished" && v["data"]["event"]["hash"] == hash);
    }
    found
}

async fn wait_for_finished(bus: &Bus) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = last(bus, "MEDIA", "media.qbittorrent.finished").await {
            return v;
        }
        assert!(Instant::now() < deadline, "no media.qbittorrent.finished stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A stand-in correlator answering `tracker.query.tracked`.
async fn answer_tracked(bus: &Bus, hashes: Vec<String>) -> tokio::task::JoinHandle<()> {
    use futures_util::StreamExt;
    let mut sub = bus.client.subscribe(subjects::query("tracked")).await.unwrap();
    let client = bus.client.clone();
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let body = serde_json::to_vec(&Reply::Ok(TrackedReply { hashes: hashes.clone() })).unwrap();
            if let Some(reply) = msg.reply {
                client.publish(reply, body.into()).await.unwrap();
            }
        }
    })
}
