//! What the bridge tells `/api/health`: the hub connection's state, the last error, and how
//! many events went through. Never the API key: errors are redacted where they are made.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use shared::health::{HealthCell, HealthStatus};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::signalr::HubError;

/// The health details the bridge keeps up to date.
#[derive(Debug, Clone)]
pub struct Status {
    cell: HealthCell,
    forwarded: Arc<AtomicU64>,
}

impl Status {
    pub fn new(cell: HealthCell) -> Self {
        cell.set_detail("events_forwarded", 0);
        Self { cell, forwarded: Arc::new(AtomicU64::new(0)) }
    }

    pub fn idle(&self) {
        self.cell.set_status(HealthStatus::Idle);
        self.cell.set_detail("shoko", "not configured (SHOKO_URL is unset)");
    }

    pub fn connecting(&self) {
        self.cell.set_status(HealthStatus::Degraded);
        self.cell.set_detail("shoko", "connecting");
    }

    pub fn connected(&self) {
        shared::metrics::metrics().shoko_connected.set(1);
        self.cell.set_status(HealthStatus::Ok);
        self.cell.set_detail("shoko", "connected");
        self.cell.set_detail("connected_since", now());
    }

    /// A failed attempt or a lost connection.
    pub fn disconnected(&self, error: &HubError) {
        shared::metrics::metrics().shoko_connected.set(0);
        self.cell.set_status(HealthStatus::Degraded);
        let state = if error.is_unauthorized() { "unauthorized" } else { "disconnected" };
        self.cell.set_detail("shoko", state);
        self.cell.set_detail("last_error", error.to_string());
        self.cell.set_detail("last_error_at", now());
        self.cell.set_detail("connected_since", Value::Null);
    }

    /// The outcome of the last import folder fetch: how many, or why not.
    pub fn import_folders(&self, outcome: Result<usize, &HubError>) {
        let text = match outcome {
            Ok(n) => format!("{n} known"),
            Err(error) => format!("cannot list them, paths stay empty: {error}"),
        };
        self.cell.set_detail("import_folders", text);
    }

    /// The outcome of the last catch-up: how many matches it recovered, or why it could not.
    pub fn caught_up(&self, outcome: Result<usize, String>) {
        let text = match outcome {
            Ok(n) => format!("{n} matches read back"),
            Err(reason) => format!("failed: {reason}"),
        };
        self.cell.set_detail("catch_up", text);
        self.cell.set_detail("catch_up_at", now());
    }

    /// One more event stored in NATS.
    pub fn forwarded(&self) {
        let n = self.forwarded.fetch_add(1, Ordering::Relaxed) + 1;
        shared::metrics::metrics().shoko_events.inc();
        self.cell.set_detail("events_forwarded", n);
        self.cell.set_detail("last_event_at", now());
    }
}

fn now() -> Value {
    OffsetDateTime::now_utc().format(&Rfc3339).map_or(Value::Null, Value::String)
}
