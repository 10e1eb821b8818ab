//! Dashboard: the pages, the JSON API and the live SSE stream.
//!
//! It never opens the database: lists and details come from the correlator over
//! `tracker.query.*`, and live changes from `tracker.request.>`.

mod api;
mod assets;
mod error;
mod pages;
mod sse;
mod views;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware::map_response;
use axum::routing::get;
use shared::Bus;
use shared::health::{HealthCell, HealthStatus};
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

/// The dashboard: its bus and the hub that fans changes out to SSE clients.
#[derive(Clone)]
pub struct Dashboard {
    pub(crate) bus: Bus,
    pub(crate) hub: Arc<Hub>,
    health: HealthCell,
}

impl Dashboard {
    pub fn new(bus: Bus) -> Self {
        Self { bus, hub: Arc::new(Hub::new()), health: HealthCell::new("dashboard", HealthStatus::Ok) }
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
            .layer(map_response(pages::security_headers));
        Router::new()
            .merge(html)
            .route("/static/{name}", get(assets::serve))
            .route("/api/health", get(api::health))
            .route("/api/requests", get(api::list))
            .route("/api/requests/{id}", get(api::get))
            .route("/api/requests/{id}/timeline", get(api::timeline))
            .route("/api/sse", get(sse::stream))
            .layer(compression())
            .with_state(self.clone())
    }

    /// Feeds the SSE hub from `tracker.request.>` and answers health until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let health = tokio::spawn(self.health.clone().serve(self.bus.clone(), cancel.clone()));
        let result = self.hub.clone().follow(self.bus.clone(), cancel).await;
        drop(health.await);
        result
    }
}
