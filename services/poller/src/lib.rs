//! Poller: follows qBittorrent's Web API and publishes the progress of tracked torrents.
//! (Being written: see issue 4.)

use shared::Bus;
use shared::health::{HealthCell, HealthStatus};
use shared::settings::{Env, SettingError};
use tokio_util::sync::CancellationToken;

/// Poller configuration.
#[derive(Debug, Clone)]
pub struct PollerSettings {}

impl PollerSettings {
    pub fn from_env(_env: &Env) -> Result<Self, SettingError> {
        Ok(Self {})
    }
}

pub struct Poller {
    bus: Bus,
    health: HealthCell,
}

impl Poller {
    pub fn new(bus: Bus, _settings: PollerSettings) -> Self {
        Self { bus, health: HealthCell::new("poller", HealthStatus::Idle) }
    }

    pub fn health(&self) -> HealthCell {
        self.health.clone()
    }

    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        self.health.serve(self.bus, cancel).await
    }
}
