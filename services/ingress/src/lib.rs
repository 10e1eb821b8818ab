//! Ingress: turns webhooks from Jellyseerr/Overseerr, Sonarr, Radarr, qBittorrent and Jellyfin
//! into normalized facts on `media.<source>.<event>`.
//!
//! A webhook is answered `202` only after JetStream has stored its event, so a sender that
//! got a 2xx never loses it. Bodies that cannot be parsed are answered `400` with the reason
//! and kept, raw, on `media.rejected.<source>`.

pub mod auth;
mod handler;
pub mod payload;
pub mod sources;
pub mod spool;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use shared::Bus;
use shared::health::{HealthCell, HealthStatus};
use shared::settings::{Env, SettingError};
use tokio_util::sync::CancellationToken;

use crate::auth::WebhookAuth;
use crate::spool::Spool;

/// Ingress configuration.
#[derive(Debug, Clone)]
pub struct IngressSettings {
    /// Largest body accepted (`TRACKER_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Where webhooks wait while NATS is unavailable: `TRACKER_DATA_DIR/spool`.
    pub spool_dir: PathBuf,
    /// `TRACKER_WEBHOOK_TOKEN` and the per-source tokens.
    pub auth: WebhookAuth,
}

impl IngressSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingError> {
        let data = PathBuf::from(env.get("TRACKER_DATA_DIR").unwrap_or_else(|| "./data".into()));
        Ok(Self {
            max_body_bytes: env.parse("TRACKER_MAX_BODY_BYTES")?.unwrap_or(1 << 20),
            spool_dir: data.join("spool"),
            auth: WebhookAuth::from_env(env),
        })
    }
}

/// The running ingress: its bus, settings and spool, shared by every request.
#[derive(Clone)]
pub struct Ingress {
    pub(crate) bus: Bus,
    pub(crate) settings: Arc<IngressSettings>,
    pub(crate) spool: Arc<Spool>,
    health: HealthCell,
}

impl Ingress {
    /// Opens the spool (forwarding what a previous run left once `run` starts).
    pub fn build(bus: Bus, settings: IngressSettings) -> std::io::Result<Self> {
        let spool = Spool::open(&settings.spool_dir)?;
        let health = HealthCell::new("ingress", HealthStatus::Ok);
        health.set_detail("auth", if settings.auth.enabled() { "token" } else { "open" });
        health.set_detail("spooled", spool.pending());
        Ok(Self { bus, settings: Arc::new(settings), spool, health })
    }

    pub fn health(&self) -> HealthCell {
        self.health.clone()
    }

    /// Answers health and forwards spooled webhooks whenever NATS is reachable, until
    /// `cancel` fires (then once more, if it can).
    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let health = tokio::spawn(self.health.clone().serve(self.bus.clone(), cancel.clone()));
        loop {
            if self.spool.pending() > 0 && self.bus.is_connected() {
                match self.spool.drain(&self.bus).await {
                    Ok(0) => {}
                    Ok(sent) => tracing::info!(sent, "spooled webhooks forwarded to NATS"),
                    Err(error) => tracing::warn!(%error, left = self.spool.pending(), "spool not forwarded yet"),
                }
                self.health.set_detail("spooled", self.spool.pending());
                shared::metrics::metrics().spooled.set(self.spool.pending() as i64);
            }
            if cancel.is_cancelled() {
                break;
            }
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = self.spool.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        drop(health.await);
        Ok(())
    }

    /// `POST /hooks/{source}` (also `PUT`, and `/hooks/{source}/{anything}` for senders that
    /// append an event name).
    pub fn router(&self) -> Router {
        let hook = post(handler::hook).put(handler::hook);
        Router::new()
            .route("/hooks/{source}", hook.clone())
            .route("/hooks/{source}/{event}", hook)
            // One byte more than the limit, so the handler can tell "too large" itself and
            // answer 413 in JSON instead of axum's plain-text rejection.
            .layer(DefaultBodyLimit::max(self.settings.max_body_bytes + 1))
            .with_state(self.clone())
    }
}
