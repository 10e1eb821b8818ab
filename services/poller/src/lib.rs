//! Poller: follows qBittorrent's Web API with one incremental `sync/maindata` request per
//! interval and publishes, for the torrents the correlator tracks, their progress
//! (`media.qbittorrent.progress.<hash>`) and their completion (`media.qbittorrent.finished`),
//! so that requesters see "Downloading 67% • 2.3 MB/s • ETA 4m" without any hook set up.
//!
//! The parts: [`client`] speaks to qBittorrent, [`maindata`] merges its deltas, [`torrent`]
//! reads one torrent, [`observer`] decides what is news, [`tracked`] knows what to publish
//! for, [`worker`] is one steppable poll, [`pacer`] and [`driver`] decide when.

pub mod client;
pub mod driver;
pub mod maindata;
pub mod observer;
pub mod pacer;
pub mod settings;
pub mod torrent;
pub mod tracked;
pub mod worker;

use anyhow::Context as _;
use shared::Bus;
use shared::health::{HealthCell, HealthStatus};
use shared::subjects;
use tokio_util::sync::CancellationToken;

pub use client::{Qbit, QbitClient, QbitError};
pub use pacer::Pacer;
pub use settings::{Credentials, PollerSettings};
pub use worker::{PollOutcome, Sink, Worker};

pub struct Poller {
    bus: Bus,
    settings: PollerSettings,
    health: HealthCell,
}

impl Poller {
    pub fn new(bus: Bus, settings: PollerSettings) -> Self {
        let health = match &settings.url {
            None => {
                let health = HealthCell::new("poller", HealthStatus::Idle);
                health.set_detail("qbittorrent", "idle: QBIT_URL is not set");
                health
            }
            Some(url) => {
                let health = HealthCell::new("poller", HealthStatus::Ok);
                health.set_detail("qbittorrent", format!("connecting to {}", client::redact(url)));
                health.set_detail("poll_interval_s", settings.poll_interval.as_secs_f64());
                health.set_detail("idle_interval_s", settings.idle_interval.as_secs_f64());
                health
            }
        };
        Self { bus, settings, health }
    }

    pub fn health(&self) -> HealthCell {
        self.health.clone()
    }

    /// Polls until `cancel` fires (or only answers health when `QBIT_URL` is unset).
    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let health = tokio::spawn(self.health.clone().serve(self.bus.clone(), cancel.clone()));
        match &self.settings.url {
            None => {
                tracing::info!("QBIT_URL is not set: the poller stays idle");
                cancel.cancelled().await;
            }
            Some(url) => {
                // A core subscription: async-nats renews it after a reconnect, and a message
                // missed meanwhile is repaired by the next `tracked` query.
                let sub =
                    self.bus.client.subscribe(subjects::REQUEST_ALL).await.context("subscribing to request changes")?;
                let s = &self.settings;
                tracing::info!(url = %client::redact(url), interval = ?s.poll_interval, "polling qBittorrent");
                let qbit = QbitClient::new(url, s.credentials.clone());
                let worker = Worker::new(qbit, self.bus.clone(), s.stall_after, self.health.clone());
                let pacer = Pacer::new(s.poll_interval, s.idle_interval);
                let changes = driver::request_changes(sub);
                driver::drive(worker, self.bus.clone(), changes, pacer, self.health.clone(), cancel).await;
            }
        }
        health.await.context("poller health responder")?
    }
}
