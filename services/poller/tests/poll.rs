//! The worker stepped poll by poll against the fake qBittorrent over HTTP: what it publishes
//! for a tracked torrent as it downloads, and what health shows.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use poller::{Credentials, PollOutcome, QbitClient, Sink, Worker};
use shared::events::qbittorrent::TorrentEvent;
use shared::events::{Fact, MediaEnvelope};
use shared::health::{HealthCell, HealthStatus};
use shared::settings::Secret;
use support::fake_qbit::{FakeQbit, Flavour, PASSWORD, USER};
use support::swarm::{Swarm, hash_of};

#[derive(Default, Clone)]
struct Collected(Arc<Mutex<Vec<(String, MediaEnvelope)>>>);

impl Sink for Collected {
    async fn publish(&self, subject: &str, envelope: &MediaEnvelope) -> Result<(), String> {
        self.0.lock().unwrap().push((subject.to_owned(), envelope.clone()));
        Ok(())
    }
}

async fn worker(q: &FakeQbit, health: &HealthCell) -> Worker<QbitClient, Collected> {
    let creds = Credentials::Password { username: USER.into(), password: Secret::new(PASSWORD) };
    let qbit = QbitClient::new(&q.url, creds);
    Worker::new(qbit, Collected::default(), Duration::from_secs(600), health.clone())
}

#[tokio::test]
async fn a_tracked_torrent_publishes_rising_progress_then_finished_once() {
    // Three torrents; the first downloads a quarter per refresh, one refresh per poll.
    let q = FakeQbit::start(Flavour::V4, Swarm::new(3, 2).with_step(0.25)).await;
    q.inner.lock().unwrap().refresh_each_poll = true;
    let health = HealthCell::new("poller", HealthStatus::Ok);
    let mut w = worker(&q, &health).await;
    w.tracked.reset([hash_of(0).to_uppercase()]);

    let mut outcomes = Vec::new();
    for _ in 0..6 {
        outcomes.push(w.poll_once().await);
    }
    let published = w.sink().0.lock().unwrap().clone();
    let facts: Vec<(String, String)> = published
        .iter()
        .map(|(subject, env)| match &env.data.event {
            Fact::Qbittorrent(TorrentEvent::Progress(p)) => (subject.clone(), format!("progress {}", p.progress)),
            Fact::Qbittorrent(TorrentEvent::Finished(f)) => (subject.clone(), format!("finished {:?}", f.via)),
            other => panic!("{other:?}"),
        })
        .collect();
    let progress_subject = format!("media.qbittorrent.progress.{}", hash_of(0));
    assert_eq!(
        facts,
        [
            (progress_subject.clone(), "progress 0.25".into()),
            (progress_subject.clone(), "progress 0.5".into()),
            (progress_subject, "progress 0.75".into()),
            ("media.qbittorrent.finished".into(), "finished Poller".into()),
        ],
        "the second downloading torrent is not tracked, so never published"
    );
    let (_, first) = &published[0];
    assert_eq!(first.source, "/status-tracker/poller");
    assert_eq!(first.subject.as_deref(), Some(format!("btih:{}", hash_of(0)).as_str()));
    let raw = first.data.raw.as_ref().unwrap();
    assert_eq!(raw["category"], "sonarr-anime", "raw is the merged torrent, not just the delta");
    assert!(matches!(outcomes[0], PollOutcome::Polled { active: true, torrents: 3, .. }), "{outcomes:?}");
    assert!(matches!(outcomes[5], PollOutcome::Polled { active: false, published: 0, .. }), "{outcomes:?}");

    // One full snapshot, then deltas only.
    let polls: Vec<String> = q.calls().into_iter().filter(|(c, _)| c.contains("maindata")).map(|(c, _)| c).collect();
    assert_eq!(polls[0], "GET /api/v2/sync/maindata?rid=0");
    assert_eq!(polls[5], "GET /api/v2/sync/maindata?rid=5");
}

#[tokio::test]
async fn health_shows_the_connection_version_and_tracked_count_and_never_the_password() {
    let q = FakeQbit::start(Flavour::V4, Swarm::new(2, 1)).await;
    let health = HealthCell::new("poller", HealthStatus::Ok);
    let mut w = worker(&q, &health).await;
    w.tracked.reset([hash_of(0)]);
    w.poll_once().await;
    let h = health.get();
    assert_eq!(h.status, HealthStatus::Ok);
    assert_eq!(h.details["qbittorrent"], "connected");
    assert_eq!(h.details["webapi"], "2.8.19");
    assert_eq!(h.details["tracked"], 1);
    assert_eq!(h.details["torrents"], 2);
    assert!(h.details["last_poll"].as_str().unwrap().contains('T'));
    assert!(!serde_json::to_string(&h).unwrap().contains(PASSWORD));
}

/// A sink that refuses everything while `down` is set, as JetStream does during an outage.
#[derive(Default, Clone)]
struct Flaky {
    down: Arc<std::sync::atomic::AtomicBool>,
    stored: Collected,
}

impl Sink for Flaky {
    async fn publish(&self, subject: &str, envelope: &MediaEnvelope) -> Result<(), String> {
        if self.down.load(std::sync::atomic::Ordering::Relaxed) {
            return Err("publish to media.qbittorrent.progress failed: timed out".into());
        }
        self.stored.publish(subject, envelope).await
    }
}

#[tokio::test]
async fn a_fact_the_bus_refused_is_published_at_the_next_poll() {
    // The torrent waits for peers: nothing changes between polls, so only the retry publishes.
    let q = FakeQbit::start(Flavour::V4, Swarm::new(1, 1)).await;
    let health = HealthCell::new("poller", HealthStatus::Ok);
    let creds = Credentials::Password { username: USER.into(), password: Secret::new(PASSWORD) };
    let sink = Flaky::default();
    let mut w = Worker::new(QbitClient::new(&q.url, creds), sink.clone(), Duration::from_secs(600), health.clone());
    w.tracked.reset([hash_of(0)]);
    sink.down.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(matches!(w.poll_once().await, PollOutcome::Polled { published: 0, .. }));
    assert!(health.get().details["publish"].as_str().unwrap().starts_with("failing: "));
    sink.down.store(false, std::sync::atomic::Ordering::Relaxed);
    assert!(matches!(w.poll_once().await, PollOutcome::Polled { published: 1, .. }));
    assert!(matches!(w.poll_once().await, PollOutcome::Polled { published: 0, .. }), "once stored, not again");
    assert_eq!(sink.stored.0.lock().unwrap().len(), 1);
    assert_eq!(health.get().details["publish"], "ok");
}
