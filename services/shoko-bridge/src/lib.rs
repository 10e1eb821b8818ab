//! Shoko bridge: follows Shoko Server's SignalR hub and publishes file events.
//! (Being written: see issue 5.)

use shared::Bus;
use shared::health::{HealthCell, HealthStatus};
use shared::settings::{Env, SettingError};
use tokio_util::sync::CancellationToken;

/// ShokoBridge configuration.
#[derive(Debug, Clone)]
pub struct ShokoSettings {}

impl ShokoSettings {
    pub fn from_env(_env: &Env) -> Result<Self, SettingError> {
        Ok(Self {})
    }
}

pub struct ShokoBridge {
    bus: Bus,
    health: HealthCell,
}

impl ShokoBridge {
    pub fn new(bus: Bus, _settings: ShokoSettings) -> Self {
        Self { bus, health: HealthCell::new("shoko-bridge", HealthStatus::Idle) }
    }

    pub fn health(&self) -> HealthCell {
        self.health.clone()
    }

    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        self.health.serve(self.bus, cancel).await
    }
}
