//! Correlator: the only writer of state. It consumes every fact on `media.>`, ties it to a
//! request, applies the lifecycle, commits to SQLite, and publishes the request's new state on
//! `tracker.request.<id>.<state>`. It answers `tracker.query.*` for the dashboard.

pub mod arr;
pub mod cache;
mod commands;
mod consumer;
pub mod correlate;
pub mod flush;
pub mod jellyfin;
pub mod jellyseerr;
pub mod lifecycle;
pub mod peers;
mod queries;
pub mod rebuild;
pub mod seen;
pub mod session;
pub mod stats;
pub mod store;
pub mod watchdog;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use shared::Bus;
use shared::health::{HealthCell, HealthStatus};
use shared::paths::PathMap;
use shared::settings::{Env, SettingError};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

pub use correlate::Processor;
pub use store::Store;

/// Correlator configuration.
#[derive(Debug, Clone)]
pub struct CorrelatorSettings {
    /// The SQLite file: `TRACKER_DATA_DIR/tracker.db`.
    pub database: PathBuf,
    pub path_map: PathMap,
    pub orphan_ttl: Duration,
    /// `JELLYFIN_PUBLIC_URL`, for "Watch now" links.
    pub public_jellyfin: Option<String>,
    /// Radarr, Sonarr and Jellyfin, when configured.
    pub peers: peers::Peers,
    pub thresholds: watchdog::Thresholds,
    /// `TRACKER_WATCH_INTERVAL`.
    pub watch_interval: Duration,
}

impl CorrelatorSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingError> {
        let dir = PathBuf::from(env.get("TRACKER_DATA_DIR").unwrap_or_else(|| "./data".into()));
        let path_map = match env.get("TRACKER_PATH_MAP") {
            None => PathMap::default(),
            Some(spec) => PathMap::parse(&spec).map_err(|problem| SettingError {
                name: "TRACKER_PATH_MAP",
                value: spec.clone(),
                problem,
            })?,
        };
        Ok(Self {
            database: dir.join("tracker.db"),
            path_map,
            orphan_ttl: env.duration("TRACKER_ORPHAN_TTL")?.unwrap_or(Duration::from_secs(7 * 86400)),
            public_jellyfin: env.get("JELLYFIN_PUBLIC_URL").map(|u| u.trim_end_matches('/').to_owned()),
            peers: peers::Peers::from_env(env),
            thresholds: watchdog::Thresholds::from_env(env)?,
            watch_interval: env.duration("TRACKER_WATCH_INTERVAL")?.unwrap_or(Duration::from_secs(60)),
        })
    }
}

/// A built correlator, ready to run.
pub struct Correlator {
    bus: Bus,
    store: Store,
    processor: Arc<Processor>,
    settings: CorrelatorSettings,
    health: HealthCell,
}

impl Correlator {
    /// Opens the database (running migrations) and declares the streams.
    pub async fn build(settings: CorrelatorSettings, bus: Bus) -> anyhow::Result<Self> {
        let store = Store::open(&settings.database).await?;
        bus.ensure_streams().await?;
        let processor = Arc::new(Self::processor(&settings));
        Ok(Self { bus, store, processor, settings, health: HealthCell::new("correlator", HealthStatus::Ok) })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Replaces the database with one rebuilt from `MEDIA` (see [`rebuild`]).
    pub async fn rebuild(settings: &CorrelatorSettings, bus: &Bus) -> anyhow::Result<rebuild::Report> {
        bus.ensure_streams().await?;
        let processor = Self::processor(settings);
        rebuild::rebuild(&settings.database, bus, &processor).await
    }

    fn processor(settings: &CorrelatorSettings) -> Processor {
        Processor::new(settings.path_map.clone(), settings.orphan_ttl, settings.public_jellyfin.clone())
            .with_jellyfin(settings.peers.jellyfin.clone())
    }

    pub fn health(&self) -> HealthCell {
        self.health.clone()
    }

    /// Runs until `cancel` fires: consumers, queries, commands, the watchdog, housekeeping and
    /// health answers.
    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let Self { bus, store, processor, settings, health } = self;
        let queries =
            tokio::spawn(queries::serve(bus.clone(), store.clone(), settings.public_jellyfin.clone(), cancel.clone()));
        let commands =
            tokio::spawn(commands::serve(bus.clone(), store.clone(), settings.peers.clone(), cancel.clone()));
        let watchdog =
            watchdog::Watchdog::new(store.clone(), bus.clone(), settings.thresholds.clone(), settings.peers.clone())
                .with_path_map(settings.path_map.clone());
        let watchdog = tokio::spawn(watchdog.run(settings.watch_interval, cancel.clone()));
        let health_task = tokio::spawn(health.clone().serve(bus.clone(), cancel.clone()));
        let housekeeping = tokio::spawn(housekeeping(store.clone(), health.clone(), cancel.clone()));
        let checkpoints = tokio::spawn(checkpoints(store.clone(), cancel.clone()));
        consumer::run(bus.clone(), store.clone(), processor, health, cancel.clone()).await;
        for task in [queries, commands, watchdog, health_task, housekeeping, checkpoints] {
            if let Ok(Err(error)) = task.await {
                tracing::warn!(%error, "correlator task ended with an error");
            }
        }
        if let Err(error) = store.checkpoint(true).await {
            tracing::warn!(%error, "the write-ahead log was not emptied; it will be at the next start");
        }
        store.close().await;
        Ok(())
    }
}

/// Every second, the write-ahead log is copied into the database beside the consumer (whose
/// commits do not checkpoint, see `Store::open`; it restarts a long log, see
/// `Store::checkpoint`).
async fn checkpoints(store: Store, cancel: CancellationToken) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        if let Err(error) = store.checkpoint(false).await {
            tracing::warn!(%error, "checkpoint failed; retrying");
        }
    }
}

/// Every ten seconds: drop orphans whose time is up, refresh health figures and gauges.
async fn housekeeping(store: Store, health: HealthCell, cancel: CancellationToken) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let mut conn = store.writer().acquire().await?;
        let expired = store::expire_orphans(&mut conn, OffsetDateTime::now_utc()).await?;
        if expired > 0 {
            tracing::info!(expired, "orphaned events expired without their request showing up");
        }
        let orphans = store::orphan_count(&mut conn).await?;
        health.set_detail("orphans_waiting", orphans);
        shared::metrics::metrics().orphans.set(orphans);
    }
}
