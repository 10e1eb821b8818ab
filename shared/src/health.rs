//! Service health, answered over NATS so the dashboard's `/api/health` can report every
//! service, also when they run in separate containers.

use std::sync::{Arc, RwLock};

use futures_util::StreamExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, reply_bytes};
use crate::model::Reply;
use crate::subjects;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Working.
    Ok,
    /// Its peer is not configured, so it does nothing (not an error).
    Idle,
    /// Working, but a peer is unreachable or misconfigured; see `details`.
    Degraded,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceHealth {
    pub service: String,
    pub status: HealthStatus,
    /// Dependency states and figures, e.g. `{"qbittorrent": "unreachable", "tracked": 3}`.
    #[serde(default)]
    pub details: Map<String, Value>,
}

/// A service's current health, updated by the service and read by its responder.
#[derive(Debug, Clone)]
pub struct HealthCell {
    inner: Arc<RwLock<ServiceHealth>>,
}

impl HealthCell {
    pub fn new(service: &str, status: HealthStatus) -> Self {
        let health = ServiceHealth { service: service.to_owned(), status, details: Map::new() };
        Self { inner: Arc::new(RwLock::new(health)) }
    }

    pub fn get(&self) -> ServiceHealth {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_status(&self, status: HealthStatus) {
        self.inner.write().unwrap_or_else(|e| e.into_inner()).status = status;
    }

    pub fn set_detail(&self, key: &str, value: impl Into<Value>) {
        self.inner.write().unwrap_or_else(|e| e.into_inner()).details.insert(key.to_owned(), value.into());
    }

    /// Answers `tracker.health.<service>` until `cancel` fires.
    pub async fn serve(self, bus: Bus, cancel: CancellationToken) -> anyhow::Result<()> {
        let service = self.get().service;
        let mut sub = bus.client.subscribe(subjects::health(&service)).await?;
        loop {
            let msg = tokio::select! {
                _ = cancel.cancelled() => break,
                msg = sub.next() => match msg { Some(m) => m, None => break },
            };
            if let Some(reply) = msg.reply {
                let body = reply_bytes(&Reply::Ok(self.get()));
                if let Err(error) = bus.client.publish(reply, body).await {
                    tracing::debug!(%error, "health reply not sent");
                }
            }
        }
        Ok(())
    }
}
