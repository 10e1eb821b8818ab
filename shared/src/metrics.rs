//! Prometheus metrics of the whole process, served at `/metrics`. In the all-in-one mode the
//! services share this one registry; in the compose stack each service serves its own.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceOutcome {
    pub source: String,
    /// `stored`, `duplicate`, `spooled`, `test`, `rejected`, `unavailable`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceStatus {
    pub source: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `applied`, `orphaned`, `orphan_applied`, `ignored`, `duplicate`, `undecodable`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabel {
    /// `look_up`, `correlate`, `commit`.
    pub step: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

/// Every metric status-tracker exports.
pub struct Metrics {
    pub webhooks: Family<SourceOutcome, Counter>,
    pub rejected: Family<SourceStatus, Counter>,
    pub spooled: Gauge,
    pub events: Family<OutcomeLabel, Counter>,
    pub correlation_latency: Histogram,
    pub batch_steps: Family<StepLabel, Histogram, fn() -> Histogram>,
    pub orphans: Gauge,
    pub requests: Family<StateLabel, Gauge>,
    pub sse_clients: Gauge,
    pub qbit_poll_seconds: Histogram,
    pub qbit_poll_errors: Family<KindLabel, Counter>,
    pub qbit_tracked: Gauge,
    pub shoko_connected: Gauge,
    pub shoko_events: Counter,
    registry: Registry,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("tracker");
        let m = Self {
            webhooks: Family::default(),
            rejected: Family::default(),
            spooled: Gauge::default(),
            events: Family::default(),
            // From the event's time (webhook received) to the correlator's commit.
            correlation_latency: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            // 10 µs to 0.33 s.
            batch_steps: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.00001, 2.0, 16))),
            orphans: Gauge::default(),
            requests: Family::default(),
            sse_clients: Gauge::default(),
            qbit_poll_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            qbit_poll_errors: Family::default(),
            qbit_tracked: Gauge::default(),
            shoko_connected: Gauge::default(),
            shoko_events: Counter::default(),
            registry: Registry::default(),
        };
        registry.register("webhooks", "Webhooks received, by source and outcome", m.webhooks.clone());
        registry.register("rejected_inputs", "Inputs rejected with a 4xx, by source and status", m.rejected.clone());
        registry.register("ingress_spooled", "Webhooks waiting in the ingress spool for NATS", m.spooled.clone());
        registry.register("events_consumed", "Events the correlator consumed, by outcome", m.events.clone());
        registry.register(
            "correlation_latency_seconds",
            "From receiving an event to committing its effect",
            m.correlation_latency.clone(),
        );
        registry.register(
            "correlator_batch_step_seconds",
            "Time a batch of events spends in each step of the correlator: look_up (which events were processed, \
             which requests their keys name), correlate, commit",
            m.batch_steps.clone(),
        );
        registry.register("orphaned_events", "Events waiting for their request to appear", m.orphans.clone());
        registry.register("requests", "Requests by state", m.requests.clone());
        registry.register("sse_clients", "Browsers and other clients following /api/sse", m.sse_clients.clone());
        registry.register("qbittorrent_poll_seconds", "Duration of one qBittorrent poll", m.qbit_poll_seconds.clone());
        registry.register("qbittorrent_poll_errors", "Failed qBittorrent polls, by kind", m.qbit_poll_errors.clone());
        registry.register("qbittorrent_tracked_torrents", "Torrents the poller follows", m.qbit_tracked.clone());
        registry.register("shoko_connected", "1 while the Shoko SignalR connection is up", m.shoko_connected.clone());
        registry.register("shoko_events", "Shoko file events forwarded", m.shoko_events.clone());
        Self { registry, ..m }
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &metrics().registry) {
        out = format!("# encoding failed: {e}\n");
    }
    out
}

/// Counts one outcome for a label set in one line.
pub fn count<L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static>(
    family: &Family<L, Counter>,
    labels: L,
) {
    family.get_or_create(&labels).inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_prometheus_text_format() {
        count(&metrics().webhooks, SourceOutcome { source: "radarr".into(), outcome: "stored".into() });
        metrics().sse_clients.set(3);
        let text = render();
        assert!(text.contains("tracker_webhooks_total{source=\"radarr\",outcome=\"stored\"} 1"), "{text}");
        assert!(text.contains("tracker_sse_clients 3"), "{text}");
        assert!(text.contains("# TYPE tracker_correlation_latency_seconds histogram"), "{text}");
    }
}
