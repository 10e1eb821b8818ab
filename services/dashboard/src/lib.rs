//! Dashboard: the pages, the JSON API and the live SSE stream.
//!
//! It never opens the database: lists and details come from the correlator over
//! `tracker.query.*`, and live changes from `tracker.request.>`.

mod api;
mod error;
mod pages;
mod sse;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use shared::Bus;
use shared::health::{HealthCell, HealthStatus};
use tokio_util::sync::CancellationToken;

pub use sse::Hub;

/// How long the dashboard waits for the correlator to answer a query.
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

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

    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(pages::index))
            .route("/api/health", get(api::health))
            .route("/api/requests", get(api::list))
            .route("/api/requests/{id}", get(api::get))
            .route("/api/requests/{id}/timeline", get(api::timeline))
            .route("/api/sse", get(sse::stream))
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
