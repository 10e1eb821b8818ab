//! An automation built on status-tracker's NATS subjects: posts "<title> is available" to an
//! [ntfy](https://ntfy.sh) topic whenever a request becomes available, with the Watch-now link
//! as the notification's click action.
//!
//! It subscribes to `tracker.request.*.available`. The correlator publishes there when a
//! request enters `available`; the body is a CloudEvents envelope whose `data` is the request's
//! full snapshot (`shared::model::RequestChange`, see docs/ARCHITECTURE.md).
//!
//! Run it beside the all-in-one (`./scripts/run.sh` writes its NATS URL to `data/nats/url`):
//!
//! ```sh
//! NATS_URL="$(cat data/nats/url)" NTFY_URL=https://ntfy.sh/my-media-topic \
//!     cargo run --example notify_available
//! ```
//!
//! or beside the compose stack, whose NATS is published on the host's loopback:
//! `NATS_URL=nats://127.0.0.1:4222`. Environment:
//!
//! - `NTFY_URL` (required): the topic URL, e.g. `https://ntfy.sh/my-media-topic`.
//! - `NTFY_TOKEN`: an ntfy access token, sent as `Authorization: Bearer …`.
//! - `NATS_URL`: default `nats://127.0.0.1:4222`.
//!
//! A core subscription sees what is published while it runs; to catch up after a restart,
//! read the `TRACKER` stream with a durable JetStream consumer instead.

use std::collections::{HashSet, VecDeque};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use shared::Envelope;
use shared::model::RequestChange;

/// The subject: any request (`*`) entering the `available` state.
pub const SUBJECT: &str = "tracker.request.*.available";

/// An ntfy topic to post to.
#[derive(Clone)]
pub struct Ntfy {
    pub url: String,
    pub token: Option<String>,
    pub http: reqwest::Client,
}

/// One notification, as ntfy shows it.
#[derive(Debug, PartialEq, Eq)]
pub struct Notification {
    pub message: String,
    pub click: Option<String>,
    pub tags: &'static str,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let url = std::env::var("NTFY_URL").context("set NTFY_URL to your topic, e.g. https://ntfy.sh/my-media-topic")?;
    let token = std::env::var("NTFY_TOKEN").ok().filter(|t| !t.is_empty());
    let ntfy = Ntfy { url, token, http: reqwest::Client::new() };
    let client = async_nats::connect(&nats_url).await.with_context(|| format!("connecting to {nats_url}"))?;
    let subscription = subscribe(&client).await?;
    eprintln!("notify_available: waiting on {SUBJECT}");
    forward(subscription, ntfy).await;
    Ok(())
}

/// Subscribes and waits until the server has the subscription, so nothing published after
/// this returns is missed.
pub async fn subscribe(client: &async_nats::Client) -> anyhow::Result<async_nats::Subscriber> {
    let subscription = client.subscribe(SUBJECT).await.context("subscribing")?;
    client.flush().await.context("flushing the subscription")?;
    Ok(subscription)
}

/// Posts one notification per `available` message until the subscription ends.
pub async fn forward(mut subscription: async_nats::Subscriber, ntfy: Ntfy) {
    // The correlator may publish a state again after a crash (same envelope id, which JetStream
    // stores once but a core subscriber sees twice): remember the last ids.
    let mut seen = RecentIds::new(1024);
    while let Some(message) = subscription.next().await {
        let envelope: Envelope<RequestChange> = match serde_json::from_slice(&message.payload) {
            Ok(envelope) => envelope,
            Err(error) => {
                eprintln!("notify_available: {}: not a request snapshot: {error}", message.subject);
                continue;
            }
        };
        if !seen.insert(&envelope.id) {
            continue;
        }
        let notification = notification(&envelope.data);
        if let Err(error) = post(&ntfy, &notification).await {
            eprintln!("notify_available: posting to ntfy failed: {error:#}");
        }
    }
}

/// "The Batman (2022) is available", the Watch-now link, a tag for the media type.
pub fn notification(change: &RequestChange) -> Notification {
    let request = &change.request.summary;
    let title = match request.year {
        Some(year) => format!("{} ({year})", request.title),
        None => request.title.clone(),
    };
    let mut message = format!("{title} is available");
    if let Some(url) = &request.watch_url {
        message.push_str(&format!("\nWatch now: {url}"));
    }
    let tags = match request.media_type {
        shared::events::MediaType::Movie => "movie_camera",
        shared::events::MediaType::Tv => "tv",
    };
    Notification { message, click: request.watch_url.clone(), tags }
}

/// `POST <topic>` with the message as the body (UTF-8, so any title works) and ntfy's headers.
async fn post(ntfy: &Ntfy, notification: &Notification) -> anyhow::Result<()> {
    let mut request = ntfy
        .http
        .post(&ntfy.url)
        .header("Title", "Available")
        .header("Tags", notification.tags)
        .body(notification.message.clone());
    // A header must be visible ASCII; a link that is not stays in the message only.
    if let Some(click) = notification.click.as_deref().filter(|c| c.bytes().all(|b| b.is_ascii_graphic())) {
        request = request.header("Click", click);
    }
    if let Some(token) = &ntfy.token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    anyhow::ensure!(response.status().is_success(), "ntfy answered {}", response.status());
    Ok(())
}

/// The last `capacity` envelope ids.
struct RecentIds {
    order: VecDeque<String>,
    set: HashSet<String>,
    capacity: usize,
}

impl RecentIds {
    fn new(capacity: usize) -> Self {
        Self { order: VecDeque::new(), set: HashSet::new(), capacity }
    }

    /// False when `id` was seen already.
    fn insert(&mut self, id: &str) -> bool {
        if !self.set.insert(id.to_owned()) {
            return false;
        }
        self.order.push_back(id.to_owned());
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}
