//! Ingress: turns webhooks from Jellyseerr/Overseerr, Sonarr, Radarr, qBittorrent and Jellyfin
//! into normalized facts on `media.<source>.<event>`.
//!
//! A webhook is answered `202` only after JetStream has stored its event, so a sender that
//! got a 2xx never loses it. Bodies that cannot be parsed are answered `400` with the reason
//! and kept, raw, on `media.rejected.<source>`.

mod handler;
pub mod payload;
pub mod sources;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use shared::Bus;
use shared::health::{HealthCell, HealthStatus};
use shared::settings::{Env, SettingError};

/// Ingress configuration.
#[derive(Debug, Clone)]
pub struct IngressSettings {
    /// Largest body accepted (`TRACKER_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
}

impl IngressSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingError> {
        Ok(Self { max_body_bytes: env.parse("TRACKER_MAX_BODY_BYTES")?.unwrap_or(1 << 20) })
    }
}

/// The running ingress: its bus and settings, shared by every request.
#[derive(Clone)]
pub struct Ingress {
    pub(crate) bus: Bus,
    pub(crate) settings: Arc<IngressSettings>,
    health: HealthCell,
}

impl Ingress {
    pub fn new(bus: Bus, settings: IngressSettings) -> Self {
        Self { bus, settings: Arc::new(settings), health: HealthCell::new("ingress", HealthStatus::Ok) }
    }

    pub fn health(&self) -> HealthCell {
        self.health.clone()
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
