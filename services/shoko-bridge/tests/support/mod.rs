//! Test world: a real nats-server, the SignalR test hub, and the bridge between them.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

pub mod hub;
mod hub_socket;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use shared::Bus;
use shared::events::MediaEnvelope;
use shared::health::{HealthCell, ServiceHealth};
use shared::nats_server::EmbeddedNats;
use shoko_bridge::{ShokoBridge, ShokoSettings};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use hub::{Hub, HubOptions, KEY, record};

/// Long enough for a loaded 2-core machine, short enough to fail fast.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct World {
    pub hub: Hub,
    pub bus: Bus,
    pub health: HealthCell,
    events: async_nats::Subscriber,
    cancel: CancellationToken,
    bridge: JoinHandle<anyhow::Result<()>>,
    _nats: EmbeddedNats,
    _dir: tempfile::TempDir,
}

/// Bridge timings for tests: pings well inside the hub's client timeout, quick reconnects.
pub fn fast_settings(hub: &Hub, api_key: Option<&str>) -> ShokoSettings {
    ShokoSettings {
        ping_interval: Duration::from_millis(200),
        server_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(5),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        folder_refresh_min: Duration::ZERO,
        ..ShokoSettings::for_url(&hub.url(), api_key).unwrap()
    }
}

impl World {
    /// Starts NATS, the hub and a bridge with the hub's key and [`fast_settings`].
    pub async fn start(options: HubOptions) -> Self {
        Self::start_with(options, |hub| fast_settings(hub, Some(KEY))).await
    }

    pub async fn start_with(options: HubOptions, settings: impl FnOnce(&Hub) -> ShokoSettings) -> Self {
        let (dir, nats, bus) = start_nats().await;
        let events = bus.client.subscribe("media.>").await.unwrap();
        // Make sure the server has the subscription before anything is published.
        bus.client.flush().await.unwrap();
        let hub = Hub::start(options).await;
        let bridge = ShokoBridge::new(bus.clone(), settings(&hub));
        let health = bridge.health();
        let cancel = CancellationToken::new();
        let bridge = tokio::spawn(bridge.run(cancel.clone()));
        Self { hub, bus, health, events, cancel, bridge, _nats: nats, _dir: dir }
    }

    /// The next message the bridge published: its subject and envelope.
    pub async fn next_event(&mut self) -> (String, MediaEnvelope) {
        let msg = tokio::time::timeout(WAIT, self.events.next())
            .await
            .expect("no event reached NATS in time")
            .expect("subscription ended");
        let envelope = serde_json::from_slice(&msg.payload).expect("envelope");
        (msg.subject.to_string(), envelope)
    }

    /// Waits until the bridge's health satisfies `pred`; returns it.
    pub async fn health_where(&self, pred: impl Fn(&ServiceHealth) -> bool) -> ServiceHealth {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let health = self.health.get();
            if pred(&health) {
                return health;
            }
            assert!(tokio::time::Instant::now() < deadline, "health never matched: {health:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the bridge and returns what `run` returned.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        tokio::time::timeout(WAIT, self.bridge).await.expect("bridge did not stop").unwrap()
    }
}

/// A fresh nats-server and a connection to it. Tried three times: on a busy machine the
/// probed free port can be taken by another process before nats-server binds it.
async fn start_nats() -> (tempfile::TempDir, EmbeddedNats, Bus) {
    let mut last_error = String::new();
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let nats = EmbeddedNats::start(dir.path(), "nats-server").await.expect("nats-server");
        match Bus::connect(&nats.url(), "shoko-bridge-test").await {
            Ok(bus) => {
                bus.ensure_streams().await.unwrap();
                return (dir, nats, bus);
            }
            Err(e) => last_error = e.to_string(),
        }
    }
    panic!("no usable nats-server: {last_error}");
}

/// A health detail as text ("" when absent).
pub fn detail(health: &ServiceHealth, key: &str) -> String {
    match health.details.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}
