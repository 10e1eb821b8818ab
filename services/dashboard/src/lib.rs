//! Dashboard: the pages, the JSON API and the live SSE stream.
//!
//! It never opens the database: lists and details come from the correlator over
//! `tracker.query.*`, and live changes from `tracker.request.>`.

mod api;
mod assets;
pub mod auth;
mod error;
mod pages;
mod sse;
mod views;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware::{from_fn_with_state, map_response};
use axum::routing::{get, post};
use shared::Bus;
use shared::events::MediaType;
use shared::health::{HealthCell, HealthStatus};
use shared::settings::{Env, SettingError};
use tokio_util::sync::CancellationToken;
use tower_http::CompressionLevel;
use tower_http::compression::CompressionLayer;

pub use sse::Hub;

/// How long the dashboard waits for the correlator to answer a query.
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// gzip or brotli, as the client accepts. tower-http's default brotli quality is 4 (as nginx's
/// on-the-fly default); 5 makes pages about a fifth smaller for about 1.5 ms more per MB of
/// HTML, and gzip 5 is as small as its default 6 (docs/performance.md, "Dashboard").
pub(crate) fn compression() -> CompressionLayer {
    CompressionLayer::new().quality(CompressionLevel::Precise(5))
}

/// Dashboard configuration.
#[derive(Debug, Clone)]
pub struct DashboardSettings {
    /// `TRACKER_AUTH`, `TRACKER_AUTH_HEADER`, `TRACKER_TRUSTED_PROXIES`, `TRACKER_ADMINS`.
    pub auth: auth::AuthSettings,
    /// `TRACKER_TRACE_URL`: a trace UI link with `{trace_id}` in it.
    pub trace_url: Option<String>,
    /// "Lower quality" is offered for films when `RADARR_FALLBACK_PROFILE` is set, for series
    /// when `SONARR_FALLBACK_PROFILE` is, for 4K requests when the `*_4K_FALLBACK_PROFILE` is
    /// (the correlator switches to that profile).
    pub lower_quality: LowerQuality,
}

/// For which kinds of media a fallback quality profile is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LowerQuality {
    pub films: bool,
    pub series: bool,
    pub films_4k: bool,
    pub series_4k: bool,
}

impl LowerQuality {
    pub fn from_env(env: &Env) -> Self {
        let set = |name| env.get(name).is_some_and(|v| !v.trim().is_empty());
        Self {
            films: set("RADARR_FALLBACK_PROFILE"),
            series: set("SONARR_FALLBACK_PROFILE"),
            films_4k: set("RADARR_4K_FALLBACK_PROFILE"),
            series_4k: set("SONARR_4K_FALLBACK_PROFILE"),
        }
    }

    pub fn offered(self, media_type: MediaType, is_4k: bool) -> bool {
        match (media_type, is_4k) {
            (MediaType::Movie, false) => self.films,
            (MediaType::Tv, false) => self.series,
            (MediaType::Movie, true) => self.films_4k,
            (MediaType::Tv, true) => self.series_4k,
        }
    }
}

impl DashboardSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingError> {
        Ok(Self {
            auth: auth::AuthSettings::from_env(env)?,
            trace_url: env.get("TRACKER_TRACE_URL"),
            lower_quality: LowerQuality::from_env(env),
        })
    }

    /// Open to all, no trace links, no "Lower quality": for tests.
    pub fn open() -> Self {
        Self { auth: auth::AuthSettings::open(), trace_url: None, lower_quality: LowerQuality::default() }
    }
}

/// The dashboard: its bus, settings and the hub that fans changes out to SSE clients.
#[derive(Clone)]
pub struct Dashboard {
    pub(crate) bus: Bus,
    pub(crate) hub: Arc<Hub>,
    pub(crate) settings: Arc<DashboardSettings>,
    health: HealthCell,
}

impl Dashboard {
    pub fn new(bus: Bus, settings: DashboardSettings) -> Self {
        let health = HealthCell::new("dashboard", HealthStatus::Ok);
        let auth = match settings.auth.mode {
            auth::AuthMode::Open => "open",
            auth::AuthMode::Proxy { .. } => "proxy",
        };
        health.set_detail("auth", auth);
        Self { bus, hub: Arc::new(Hub::new()), settings: Arc::new(settings), health }
    }

    pub fn health(&self) -> HealthCell {
        self.health.clone()
    }

    /// Pages, fragments, static files, the JSON API and SSE. Everything but the SSE stream is
    /// compressed (gzip or brotli, as the client accepts; tower-http never buffers
    /// `text/event-stream`).
    pub fn router(&self) -> Router {
        let html = Router::new()
            .route("/", get(pages::index_page))
            .route("/history", get(pages::history_page))
            .route("/requests/{id}", get(pages::detail_page))
            .route("/fragments/active", get(pages::active_fragment))
            .route("/fragments/history", get(pages::history_fragment))
            .route("/fragments/card/{id}", get(pages::card_fragment))
            .route("/fragments/detail/{id}", get(pages::detail_fragment))
            .route("/stats", get(pages::stats_page))
            .layer(map_response(pages::security_headers));
        // Behind TRACKER_AUTH: everything with user data, and the actions.
        let guarded = Router::new()
            .merge(html)
            .route("/api/requests", get(api::list))
            .route("/api/requests/{id}", get(api::get))
            .route("/api/requests/{id}/timeline", get(api::timeline))
            .route("/api/requests/{id}/retry", post(api::retry))
            .route("/api/requests/{id}/lower-quality", post(api::lower_quality))
            .route("/api/requests/{id}/cancel", post(api::cancel))
            .route("/api/sse", get(sse::stream))
            .route("/api/stats", get(api::stats))
            .layer(from_fn_with_state(self.clone(), auth::require));
        Router::new()
            .merge(guarded)
            .route("/static/{name}", get(assets::serve))
            .route("/api/health", get(api::health))
            .route("/api/summary", get(api::summary))
            .layer(compression())
            .with_state(self.clone())
    }

    /// Ends every SSE stream when `shutdown` fires. Graceful HTTP shutdown waits for open
    /// connections, and a browser never closes its event stream by itself, so the process
    /// calls this with its shutdown signal before the server starts draining.
    pub fn end_streams_on(&self, shutdown: CancellationToken) {
        let hub = self.hub.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            hub.close_streams();
        });
    }

    /// Feeds the SSE hub from `tracker.request.>` and answers health until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let health = tokio::spawn(self.health.clone().serve(self.bus.clone(), cancel.clone()));
        let result = self.hub.clone().follow(self.bus.clone(), cancel).await;
        drop(health.await);
        result
    }
}
