//! The NATS side: one task takes the queued invocations in order, normalizes the file events,
//! resolves their paths and publishes each to `media.shoko.<event>`, awaiting JetStream's ack
//! before the next, so they are stored in the order Shoko sent them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use shared::Bus;
use shared::envelope::{Envelope, content_id};
use shared::events::{BodyEncoding, EventData, Fact, Rejected};
use shared::subjects::Source;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::folders::ImportFolders;
use crate::normalize;
use crate::signalr::Invocation;
use crate::status::Status;

/// The envelope's `source` attribute.
pub const SOURCE: &str = "/status-tracker/shoko-bridge";

pub struct Publisher {
    pub bus: Bus,
    pub folders: ImportFolders,
    pub status: Status,
}

impl Publisher {
    /// Runs until the queue's sender is dropped and everything queued is handled. After
    /// `cancel`, each remaining event gets one attempt.
    pub async fn run(mut self, mut queue: UnboundedReceiver<Invocation>, cancel: CancellationToken) {
        while let Some(invocation) = queue.recv().await {
            let Some((fact, raw)) = self.fact(&invocation).await else { continue };
            let stored = publish(&self.bus, &invocation, fact, raw, &cancel).await;
            if stored {
                self.status.forwarded();
            }
        }
    }

    /// The fact to publish for an invocation: a file event, a rejection for a file event we
    /// cannot read, nothing for the other targets.
    async fn fact(&mut self, invocation: &Invocation) -> Option<(Fact, Value)> {
        let Invocation { target, arguments } = invocation;
        match normalize::file_event(target, arguments) {
            Ok(Some(mut event)) => {
                self.folders.resolve(&mut event).await;
                Some((Fact::Shoko(event), arguments.clone()))
            }
            Ok(None) => {
                tracing::debug!(%target, "hub call ignored: not a file event");
                None
            }
            Err(error) => {
                tracing::warn!(%error, "unreadable Shoko file event kept on media.rejected.shoko");
                Some((Fact::Rejected(rejected(invocation, error.to_string())), arguments.clone()))
            }
        }
    }
}

/// A file event we could not read, kept whole so a better parser can replay it.
fn rejected(invocation: &Invocation, reason: String) -> Rejected {
    let body = json!({ "type": 1, "target": invocation.target, "arguments": invocation.arguments });
    Rejected {
        from: Source::Shoko,
        reason,
        // Not an HTTP exchange: nobody was answered.
        status: 0,
        content_type: Some("application/json".into()),
        body: body.to_string(),
        body_encoding: BodyEncoding::Utf8,
        headers: BTreeMap::new(),
    }
}

/// Publishes one fact and waits for JetStream's ack, retrying while NATS is away. Returns
/// false only when shutdown came first.
async fn publish(bus: &Bus, invocation: &Invocation, fact: Fact, raw: Value, cancel: &CancellationToken) -> bool {
    let subject = fact.subject();
    let args = serde_json::to_vec(&invocation.arguments).unwrap_or_default();
    let id = content_id("shoko", &[invocation.target.as_bytes(), &args]);
    let key = fact.media_key();
    let envelope =
        Envelope::new(id.clone(), SOURCE, &subject, EventData { event: fact, raw: Some(raw) }).with_subject(key);
    let mut delay = Duration::from_millis(200);
    // A Shoko fact starts its own trace, under the bridge's service name.
    let span = tracing::info_span!(
        "publish",
        otel.kind = "producer",
        messaging.system = "nats",
        messaging.destination.name = %subject,
        event.id = %id,
        shoko.event = %invocation.target,
    );
    loop {
        match bus.publish_event(&subject, &envelope).instrument(span.clone()).await {
            Ok(duplicate) => {
                tracing::debug!(%subject, %id, duplicate, "Shoko event stored");
                return true;
            }
            Err(error) => tracing::warn!(%subject, %error, retry_in = ?delay, "Shoko event not stored yet"),
        }
        tokio::select! {
            _ = cancel.cancelled() => {
                tracing::error!(%subject, %id, "shutting down: Shoko event not stored");
                return false;
            }
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}
