//! One poll, steppable: ask qBittorrent for what changed, merge it, publish what a requester
//! would see of the tracked torrents, and report in health. The loop around it (`driver`)
//! only decides when.

use std::future::Future;

use serde_json::json;
use shared::Bus;
use shared::envelope::Envelope;
use shared::events::{EventData, Fact, MediaEnvelope};
use shared::health::{HealthCell, HealthStatus};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::Instant;
use tracing::Instrument;

use crate::client::{Qbit, QbitError};
use crate::maindata::Maindata;
use crate::observer::{Observer, Pending};
use crate::torrent::Torrent;
use crate::tracked::Tracked;

/// The envelope `source` of everything the poller publishes.
pub const SOURCE: &str = "/status-tracker/poller";

/// What one poll found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollOutcome {
    /// qBittorrent answered. `active`: a tracked torrent may change within seconds.
    Polled { active: bool, torrents: usize, published: usize },
    /// No usable answer (network, timeout, server error); worth trying again soon.
    Unreachable(String),
    /// Credentials or address refused; `retry` says when trying again makes sense, if ever.
    Refused { reason: String, retry: Option<std::time::Duration> },
}

/// Where facts go: JetStream in the service, a list in tests and the benchmark.
pub trait Sink: Send + Sync {
    fn publish(&self, subject: &str, envelope: &MediaEnvelope) -> impl Future<Output = Result<(), String>> + Send;
}

impl Sink for Bus {
    async fn publish(&self, subject: &str, envelope: &MediaEnvelope) -> Result<(), String> {
        // A poller fact starts its own trace, under the poller's service name.
        let span = tracing::info_span!(
            "publish",
            otel.kind = "producer",
            messaging.system = "nats",
            messaging.destination.name = %subject,
            event.id = %envelope.id,
        );
        let published = self.publish_event(subject, envelope).instrument(span).await;
        published.map(drop).map_err(|e| e.to_string())
    }
}

pub struct Worker<Q, S> {
    qbit: Q,
    sink: S,
    data: Maindata,
    observer: Observer,
    pub tracked: Tracked,
    health: HealthCell,
}

impl<Q: Qbit, S: Sink> Worker<Q, S> {
    pub fn new(qbit: Q, sink: S, stall_after: std::time::Duration, health: HealthCell) -> Self {
        Self {
            qbit,
            sink,
            data: Maindata::default(),
            observer: Observer::new(stall_after),
            tracked: Tracked::default(),
            health,
        }
    }

    /// One `sync/maindata` round trip and the publications it calls for.
    pub async fn poll_once(&mut self) -> PollOutcome {
        let metrics = shared::metrics::metrics();
        let started = Instant::now();
        let answer = self.qbit.maindata(self.data.rid()).await;
        metrics.qbit_poll_seconds.observe(started.elapsed().as_secs_f64());
        let error_kind = match &answer {
            Ok(_) => None,
            Err(QbitError::Unreachable(_)) => Some("unreachable"),
            Err(QbitError::Refused { .. }) => Some("refused"),
        };
        if let Some(kind) = error_kind {
            let labels = shared::metrics::KindLabel { kind: kind.into() };
            shared::metrics::count(&metrics.qbit_poll_errors, labels);
        }
        let update = match answer {
            Ok(update) => update,
            Err(QbitError::Unreachable(reason)) => {
                tracing::warn!(%reason, "qBittorrent unreachable");
                self.report(HealthStatus::Degraded, format!("unreachable: {reason}"));
                return PollOutcome::Unreachable(reason);
            }
            Err(QbitError::Refused { reason, retry }) => {
                tracing::error!(%reason, "qBittorrent refused the poller");
                self.report(HealthStatus::Degraded, format!("refused: {reason}"));
                return PollOutcome::Refused { reason, retry };
            }
        };
        if self.qbit.take_new_session() {
            self.data.reset();
        }
        self.data.apply(update);
        let tracked = self.tracked.hashes();
        metrics.qbit_tracked.set(tracked.len() as i64);
        let now_unix = OffsetDateTime::now_utc().unix_timestamp();
        let pending = self.observer.observe(&tracked, &self.data, Instant::now(), now_unix);
        let published = self.publish(pending).await;
        let active = tracked.iter().any(|h| {
            self.data.get(h.as_str()).is_some_and(|json| {
                let t = Torrent::new(h, json);
                t.phase().is_active() && !t.progress(None).is_complete()
            })
        });
        self.report(HealthStatus::Ok, "connected".into());
        self.health.set_detail("torrents", self.data.len());
        self.health.set_detail("last_poll", OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default());
        PollOutcome::Polled { active, torrents: self.data.len(), published }
    }

    /// Publishes each fact and waits for its ack; returns how many were stored. One that
    /// fails is not marked published, so the next poll proposes it again.
    async fn publish(&mut self, pending: Vec<Pending>) -> usize {
        let (mut published, mut failed) = (0, None);
        for pending in pending {
            let fact = Fact::Qbittorrent(pending.event.clone());
            let subject = fact.subject();
            let key = fact.media_key();
            let data = EventData { event: fact, raw: Some(pending.raw.clone()) };
            let envelope = Envelope::new(pending.id.clone(), SOURCE, &subject, data).with_subject(key);
            match self.sink.publish(&subject, &envelope).await {
                Ok(()) => {
                    tracing::debug!(%subject, id = %pending.id, "published");
                    self.observer.published(&pending);
                    published += 1;
                }
                Err(error) => failed = Some((failed.map_or(0, |(n, _)| n) + 1, error)),
            }
        }
        match failed {
            Some((count, error)) => {
                tracing::warn!(count, %error, "facts not published, will retry at the next poll");
                self.health.set_detail("publish", format!("failing: {error}"));
            }
            None => self.health.set_detail("publish", "ok"),
        }
        published
    }

    fn report(&self, status: HealthStatus, qbittorrent: String) {
        self.health.set_status(status);
        self.health.set_detail("qbittorrent", qbittorrent);
        if let Some(version) = self.qbit.webapi_version() {
            self.health.set_detail("webapi", version);
        }
        self.report_tracked();
    }

    /// Updates the tracked count in health (after polls and tracked-set changes).
    pub fn report_tracked(&self) {
        let count = self.tracked.hashes().len();
        let value = if self.tracked.is_known() { json!(count) } else { json!("waiting for the correlator") };
        self.health.set_detail("tracked", value);
    }

    /// The sink, for tests and the benchmark to read what was published.
    pub fn sink(&self) -> &S {
        &self.sink
    }
}
