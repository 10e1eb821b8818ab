//! The poll loop on paused time: when it polls, backs off, jumps the queue and gives up.
//! qBittorrent and the correlator are scripted stand-ins; the clock is tokio's test clock, so
//! a simulated hour takes milliseconds.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::json;
use shared::health::{HealthCell, HealthStatus};
use shared::ids::{InfoHash, RequestId};
use shared::model::State;
use tokio::sync::mpsc;

use super::*;
use crate::client::QbitError;
use crate::maindata::MaindataUpdate;

const H: &str = "c0ffee4d2a9b8c7d6e5f40312a1b0c9d8e7f6a5b";

type Answer = Result<MaindataUpdate, QbitError>;

/// qBittorrent as a script of answers; the last one repeats. Records when it was asked.
#[derive(Clone)]
struct Scripted {
    answers: Arc<Mutex<VecDeque<Answer>>>,
    calls: Arc<Mutex<Vec<Instant>>>,
}

impl Scripted {
    fn new(answers: Vec<Answer>) -> Self {
        Self { answers: Arc::new(Mutex::new(answers.into())), calls: Arc::default() }
    }

    /// Seconds since `start` of each call.
    fn call_times(&self, start: Instant) -> Vec<u64> {
        self.calls.lock().unwrap().iter().map(|t| t.duration_since(start).as_secs()).collect()
    }
}

impl Qbit for Scripted {
    async fn maindata(&mut self, _rid: u64) -> Answer {
        self.calls.lock().unwrap().push(Instant::now());
        let mut answers = self.answers.lock().unwrap();
        if answers.len() > 1 { answers.pop_front().unwrap() } else { answers.front().cloned().unwrap() }
    }
    fn take_new_session(&mut self) -> bool {
        false
    }
    fn webapi_version(&self) -> Option<String> {
        Some("2.8.19".into())
    }
}

#[derive(Default, Clone)]
struct Collected(Arc<Mutex<Vec<String>>>);

impl Sink for Collected {
    async fn publish(&self, subject: &str, _envelope: &shared::events::MediaEnvelope) -> Result<(), String> {
        self.0.lock().unwrap().push(subject.to_owned());
        Ok(())
    }
}

/// The correlator: fails `failures` times, then answers `hashes`.
struct FakeCorrelator {
    hashes: Vec<String>,
    failures: Mutex<u32>,
}

impl Correlator for FakeCorrelator {
    async fn tracked(&self) -> Result<Vec<String>, String> {
        let mut f = self.failures.lock().unwrap();
        if *f > 0 {
            *f -= 1;
            return Err("no responders".into());
        }
        Ok(self.hashes.clone())
    }
}

fn torrent(state: &str, progress: f64) -> Answer {
    let t = json!({ "state": state, "progress": progress, "size": 100, "total_size": 100, "dlspeed": 10,
                    "amount_left": (100.0 * (1.0 - progress)) as u64, "eta": 60 });
    Ok(serde_json::from_value(json!({ "rid": 1, "full_update": true, "torrents": { H: t } })).unwrap())
}

struct Running {
    qbit: Scripted,
    sink: Collected,
    health: HealthCell,
    changes: mpsc::UnboundedSender<RequestTorrents>,
    cancel: CancellationToken,
    start: Instant,
}

fn start(answers: Vec<Answer>, tracked: &[&str], correlator_failures: u32) -> Running {
    let (qbit, sink, health) =
        (Scripted::new(answers), Collected::default(), HealthCell::new("poller", HealthStatus::Ok));
    let worker = Worker::new(qbit.clone(), sink.clone(), Duration::from_secs(600), health.clone());
    let correlator = FakeCorrelator {
        hashes: tracked.iter().map(|h| h.to_string()).collect(),
        failures: Mutex::new(correlator_failures),
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let changes = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let pacer = Pacer::new(Duration::from_secs(2), Duration::from_secs(30));
    let cancel = CancellationToken::new();
    tokio::spawn(drive(worker, correlator, Box::pin(changes), pacer, health.clone(), cancel.clone()));
    Running { qbit, sink, health, changes: tx, cancel, start: Instant::now() }
}

async fn at(r: &Running, secs: u64) {
    tokio::time::sleep_until(r.start + Duration::from_secs(secs) + Duration::from_millis(1)).await;
}

#[tokio::test(start_paused = true)]
async fn polls_every_two_seconds_while_downloading_and_every_thirty_once_done() {
    let answers = vec![torrent("downloading", 0.2), torrent("downloading", 0.5), torrent("downloading", 0.8)];
    let mut answers = answers;
    answers.push(torrent("stalledUP", 1.0));
    let r = start(answers, &[H], 0);
    at(&r, 100).await;
    r.cancel.cancel();
    // Downloading at 0, 2 and 4 s; done at 6 s, so the idle interval from there on.
    assert_eq!(r.qbit.call_times(r.start), [0, 2, 4, 6, 36, 66, 96]);
    let published = r.sink.0.lock().unwrap().clone();
    assert_eq!(published.iter().filter(|s| s.ends_with("finished")).count(), 1, "{published:?}");
    assert_eq!(r.health.get().status, HealthStatus::Ok);
    assert_eq!(r.health.get().details["qbittorrent"], "connected");
    assert_eq!(r.health.get().details["webapi"], "2.8.19");
}

#[tokio::test(start_paused = true)]
async fn a_newly_tracked_torrent_is_polled_at_once_not_after_the_idle_interval() {
    let r = start(vec![torrent("downloading", 0.2)], &[], 0);
    at(&r, 10).await;
    assert_eq!(r.qbit.call_times(r.start), [0]);
    let grab = RequestTorrents {
        id: RequestId(1),
        state: State::Indexed,
        torrents: vec![(InfoHash::parse(H).unwrap(), false)],
    };
    r.changes.send(grab).unwrap();
    at(&r, 13).await;
    r.cancel.cancel();
    assert_eq!(r.qbit.call_times(r.start), [0, 10, 12]);
    assert_eq!(r.health.get().details["tracked"], 1);
}

#[tokio::test(start_paused = true)]
async fn qbittorrent_down_is_retried_with_backoff_and_resumes_by_itself() {
    let down = || Err(QbitError::Unreachable("cannot reach it: connection refused".into()));
    let r = start(vec![down(), down(), down(), down(), torrent("downloading", 0.4)], &[H], 0);
    at(&r, 13).await;
    assert_eq!(r.health.get().status, HealthStatus::Degraded);
    assert!(r.health.get().details["qbittorrent"].as_str().unwrap().starts_with("unreachable: "));
    at(&r, 40).await;
    r.cancel.cancel();
    // Down at 0, 2, 6 and 14 s (waits of 2, 4, 8, 16 s); back at 30 s, polled every 2 s again.
    assert_eq!(r.qbit.call_times(r.start), [0, 2, 6, 14, 30, 32, 34, 36, 38, 40]);
    assert_eq!(r.health.get().status, HealthStatus::Ok);
}

#[tokio::test(start_paused = true)]
async fn refused_credentials_stop_polling_and_health_names_the_setting_to_fix() {
    let refused = QbitError::Refused { reason: "login refused: check QBIT_PASSWORD".into(), retry: None };
    let r = start(vec![Err(refused)], &[H], 0);
    at(&r, 3600).await;
    r.cancel.cancel();
    assert_eq!(r.qbit.call_times(r.start), [0], "one login attempt, not one per interval");
    let health = r.health.get();
    assert_eq!(health.status, HealthStatus::Degraded);
    assert!(health.details["qbittorrent"].as_str().unwrap().contains("QBIT_PASSWORD"), "{health:?}");
}

#[tokio::test(start_paused = true)]
async fn the_correlator_is_asked_until_it_answers_and_then_every_half_minute() {
    let r = start(vec![torrent("downloading", 0.3)], &[H], 3);
    at(&r, 1).await;
    assert_eq!(r.health.get().details["tracked"], "waiting for the correlator");
    assert!(r.health.get().details["correlator"].as_str().unwrap().starts_with("not answering"));
    // Retries after 0.5, 1 and 2 s: the answer lands at 3.5 s and a poll follows at once,
    // then every 2 s since the torrent downloads.
    at(&r, 6).await;
    r.cancel.cancel();
    assert_eq!(r.health.get().details["tracked"], 1);
    assert_eq!(r.health.get().details["correlator"], "answering");
    assert_eq!(r.qbit.call_times(r.start), [0, 3, 5]);
}
