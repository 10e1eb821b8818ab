//! The NATS side: one task takes the queued invocations in order, normalizes the file events,
//! resolves their paths and publishes each to `media.shoko.<event>`, awaiting JetStream's ack
//! before the next, so they are stored in the order Shoko sent them. Matches recovered after
//! a reconnection (`catchup`) go through the same queue.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use shared::Bus;
use shared::envelope::{Envelope, content_id};
use shared::events::shoko::{FileEvent, FileEventKind};
use shared::events::{BodyEncoding, EventData, Fact, Rejected};
use shared::subjects::Source;
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::catchup::{self, Recovered};
use crate::folders::ImportFolders;
use crate::normalize;
use crate::signalr::Invocation;
use crate::status::Status;

/// The envelope's `source` attribute.
pub const SOURCE: &str = "/status-tracker/shoko-bridge";

/// What the publisher is given, in order.
#[derive(Debug)]
pub enum Queued {
    /// A call from the hub, as received.
    Hub(Invocation),
    /// A match read back from the REST API after a reconnection.
    Recovered(Box<Recovered>),
}

/// One fact ready to publish.
struct Ready {
    fact: Fact,
    raw: Value,
    id: String,
    /// Where it came from, for the span: the hub's target or the REST call.
    origin: String,
}

pub struct Publisher {
    pub bus: Bus,
    pub folders: ImportFolders,
    pub status: Status,
}

impl Publisher {
    /// Runs until the queue's sender is dropped and everything queued is handled. After
    /// `cancel`, each remaining event gets one attempt.
    pub async fn run(mut self, mut queue: Receiver<Queued>, cancel: CancellationToken) {
        while let Some(queued) = queue.recv().await {
            let ready = match queued {
                Queued::Hub(invocation) => self.hub_call(&invocation).await,
                Queued::Recovered(recovered) => Some(self.recovered(*recovered).await),
            };
            let Some(ready) = ready else { continue };
            if publish(&self.bus, ready, &cancel).await {
                self.status.forwarded();
            }
        }
    }

    /// The fact to publish for an invocation: a file event, a rejection for a file event we
    /// cannot read, nothing for the other targets.
    async fn hub_call(&mut self, invocation: &Invocation) -> Option<Ready> {
        let Invocation { target, arguments } = invocation;
        let fact = match normalize::file_event(target, arguments) {
            Ok(Some(mut event)) => {
                self.folders.resolve(&mut event).await;
                Fact::Shoko(event)
            }
            Ok(None) => {
                tracing::debug!(%target, "hub call ignored: not a file event");
                return None;
            }
            Err(error) => {
                tracing::warn!(%error, "unreadable Shoko file event kept on media.rejected.shoko");
                Fact::Rejected(rejected(invocation, error.to_string()))
            }
        };
        let id = match &fact {
            Fact::Shoko(event) => event_id(event),
            _ => None,
        }
        .unwrap_or_else(|| {
            content_id("shoko", &[target.as_bytes(), &serde_json::to_vec(arguments).unwrap_or_default()])
        });
        Some(Ready { fact, raw: arguments.clone(), id, origin: target.clone() })
    }

    async fn recovered(&mut self, recovered: Recovered) -> Ready {
        let Recovered { mut event, file } = recovered;
        self.folders.resolve(&mut event).await;
        let id = event_id(&event).unwrap_or_else(|| content_id("shoko", &[file.to_string().as_bytes()]));
        Ready { fact: Fact::Shoko(event), raw: file, id, origin: catchup::STEP.into() }
    }
}

/// The id of a `FileMatched`, made of the file and the episodes it was matched to, so that the
/// hub's event and the same match read back by the catch-up are one event (JetStream and the
/// correlator drop the second). `None` for other events (named by what Shoko sent) and for a
/// match without a file id.
pub fn event_id(event: &FileEvent) -> Option<String> {
    if event.kind != FileEventKind::Matched {
        return None;
    }
    let file = event.file_id?;
    let mut episodes: Vec<String> = event
        .cross_refs
        .iter()
        .map(|x| match (x.anidb_episode_id, x.shoko_episode_id) {
            (Some(anidb), _) => format!("a{anidb}"),
            (None, Some(shoko)) => format!("s{shoko}"),
            (None, None) => String::new(),
        })
        .collect();
    episodes.sort_unstable();
    episodes.dedup();
    Some(content_id("shoko", &[b"FileMatched".as_slice(), file.to_string().as_bytes(), episodes.join(",").as_bytes()]))
}

/// A file event we could not read, kept whole so a better parser can replay it.
fn rejected(invocation: &Invocation, reason: String) -> Rejected {
    let body = json!({ "type": 1, "target": invocation.target, "arguments": invocation.arguments });
    Rejected {
        from: Some(Source::Shoko),
        path: None,
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
async fn publish(bus: &Bus, ready: Ready, cancel: &CancellationToken) -> bool {
    let Ready { fact, raw, id, origin } = ready;
    let subject = fact.subject();
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
        shoko.event = %origin,
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
