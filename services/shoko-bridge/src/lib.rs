//! Shoko bridge: follows Shoko Server's SignalR hub (`/signalr/aggregate?feeds=shoko`) and
//! publishes its file events (detected, hashed, matched, not matched, renamed, moved, deleted)
//! on `media.shoko.<event>`, with absolute paths, in the order Shoko sent them.
//!
//! Two tasks: `follow` keeps the hub connection (pings, reconnects) and queues what
//! arrives, and beside each new connection reads back from Shoko's REST API the matches it
//! missed (`catchup`); `publish` normalizes and publishes the queue one event at a time.
//! Without `SHOKO_URL` the bridge only answers health, as `idle`.

mod catchup;
mod folders;
mod follow;
mod normalize;
mod publish;
mod rest;
mod settings;
pub mod signalr;
mod status;

use shared::Bus;
use shared::health::{HealthCell, HealthStatus};
use tokio_util::sync::CancellationToken;

pub use normalize::{NormalizeError, file_event};
pub use publish::{SOURCE, event_id};
pub use settings::ShokoSettings;

use crate::catchup::Catchup;
use crate::folders::ImportFolders;
use crate::follow::{Backoff, Recovery};
use crate::rest::ShokoApi;
use crate::signalr::{HubClient, HubEndpoint, Timings};
use crate::status::Status;

/// The hub and feed the bridge listens to.
pub const HUB_PATH: &str = "signalr/aggregate";
pub const FEEDS: &str = "shoko";

pub struct ShokoBridge {
    bus: Bus,
    settings: ShokoSettings,
    health: HealthCell,
}

impl ShokoBridge {
    pub fn new(bus: Bus, settings: ShokoSettings) -> Self {
        let initial = if settings.url.is_some() { HealthStatus::Degraded } else { HealthStatus::Idle };
        Self { bus, settings, health: HealthCell::new("shoko-bridge", initial) }
    }

    pub fn health(&self) -> HealthCell {
        self.health.clone()
    }

    /// Follows the hub and answers health until `cancel`; then publishes what is queued.
    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let status = Status::new(self.health.clone());
        let health = tokio::spawn(self.health.clone().serve(self.bus.clone(), cancel.clone()));
        let Some(base) = self.settings.url.clone() else {
            status.idle();
            tracing::info!("SHOKO_URL is not set: the Shoko bridge stays idle");
            return health.await?;
        };
        let s = &self.settings;
        let http = reqwest::Client::builder().timeout(s.connect_timeout).build()?;
        let endpoint = HubEndpoint {
            base: base.clone(),
            hub_path: HUB_PATH.to_owned(),
            query: vec![("feeds".to_owned(), FEEDS.to_owned())],
            api_key: s.api_key.clone(),
        };
        let timings = Timings {
            ping_interval: s.ping_interval,
            server_timeout: s.server_timeout,
            connect_timeout: s.connect_timeout,
        };
        let client = HubClient::new(http.clone(), endpoint, timings);
        let api = ShokoApi::new(http, &base, s.api_key.clone());
        let recovery = (!s.catchup_window.is_zero())
            .then(|| Recovery::new(Catchup::new(api.clone()), s.catchup_window, s.catchup_overlap));
        let folders = ImportFolders::new(api, s.folder_refresh_min, status.clone());
        let publisher = publish::Publisher { bus: self.bus.clone(), folders, status: status.clone() };
        let (queue, pending) = tokio::sync::mpsc::channel(s.queue_max.max(1));
        let backoff = Backoff::new(s.backoff_min, s.backoff_max);
        tokio::join!(
            follow::follow(client, queue, status, backoff, recovery, cancel.clone()),
            publisher.run(pending, cancel.clone()),
        );
        health.await?
    }
}
