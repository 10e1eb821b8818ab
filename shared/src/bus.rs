//! The NATS side every service shares: connecting (with patience, because in a compose stack
//! NATS may come up after us), declaring the streams, publishing envelopes with
//! `Nats-Msg-Id`, and JSON request–reply.
//!
//! Streams are plain JetStream streams created with the 2.9-compatible API: Debian's
//! nats-server 2.9 rejects async-nats' KV helpers and ignores multi-filter consumers.

use std::time::Duration;

use async_nats::header::{HeaderMap, NATS_MESSAGE_ID};
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::envelope::Envelope;
use crate::model::Reply;
use crate::subjects;

/// How long JetStream keeps duplicate message ids (the contract asks for at least 2 min).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);
/// Request states and progress are kept for this long in `TRACKER`.
pub const TRACKER_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Progress of torrents nobody updates any more is dropped after this.
pub const PROGRESS_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// `url` without its credentials. The cause is in the message, not also a `source()`.
    #[error("cannot connect to NATS at {url}: {cause}")]
    Connect { url: String, cause: async_nats::ConnectError },
    #[error("JetStream stream {stream}: {message}")]
    Stream { stream: &'static str, message: String },
    #[error("publish to {subject} failed: {message}")]
    Publish { subject: String, message: String },
    #[error("no answer on {subject}: {message}")]
    Request { subject: String, message: String },
    #[error("answer on {subject} is not valid: {message}")]
    Decode { subject: String, message: String },
    #[error("{0}")]
    Remote(String),
    #[error("stopped while waiting for NATS")]
    Cancelled,
}

/// A connected NATS client and its JetStream context.
#[derive(Clone, Debug)]
pub struct Bus {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
}

/// The connection options for a URL's credentials: async-nats reads `user:password@` or
/// `token@` in a URL but does not log in with them.
fn credentials(url: &str) -> async_nats::ConnectOptions {
    let decoded = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    let Ok(addr) = url.parse::<async_nats::ServerAddr>() else { return async_nats::ConnectOptions::new() };
    match (addr.username(), addr.password()) {
        (Some(user), Some(password)) => {
            async_nats::ConnectOptions::with_user_and_password(decoded(user), decoded(password))
        }
        (Some(token), None) => async_nats::ConnectOptions::with_token(decoded(token)),
        _ => async_nats::ConnectOptions::new(),
    }
}

impl Bus {
    /// Connects once; fails fast (for tests and the all-in-one, whose server is local).
    /// Connects to `url`; a `user:password@` (or a `token@`) in it is how the client logs in.
    pub async fn connect(url: &str, name: &str) -> Result<Self, BusError> {
        let client = credentials(url)
            .name(name)
            .connection_timeout(Duration::from_secs(5))
            // Keep reconnecting forever once connected: a NATS restart must not kill services.
            .max_reconnects(None)
            .connect(url)
            .await
            .map_err(|cause| BusError::Connect { url: crate::settings::redact_userinfo(url), cause })?;
        Ok(Self::from_client(client))
    }

    /// Connects, retrying with backoff until it works or `cancel` fires.
    pub async fn connect_patiently(url: &str, name: &str, cancel: &CancellationToken) -> Result<Self, BusError> {
        let mut delay = Duration::from_millis(200);
        loop {
            match Self::connect(url, name).await {
                Ok(bus) => return Ok(bus),
                Err(e) => tracing::warn!(error = %e, retry_in = ?delay, "NATS not reachable yet"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return Err(BusError::Cancelled),
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }

    pub fn from_client(client: async_nats::Client) -> Self {
        let js = jetstream::new(client.clone());
        Self { client, js }
    }

    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Creates the `MEDIA`, `MEDIA_PROGRESS` and `TRACKER` streams if they are missing, and
    /// brings their subjects and limits up to date if they exist.
    pub async fn ensure_streams(&self) -> Result<(), BusError> {
        for config in stream_configs() {
            let name: &'static str = stream_static_name(&config.name);
            let existing = self.js.get_stream(&config.name).await;
            let result = match existing {
                Ok(mut s) => {
                    let info = s.info().await.map_err(|e| stream_err(name, e))?;
                    if needs_update(&info.config, &config) {
                        self.js.update_stream(&config).await.map(drop).map_err(|e| stream_err(name, e))
                    } else {
                        Ok(())
                    }
                }
                Err(_) => self.js.create_stream(config.clone()).await.map(drop).map_err(|e| stream_err(name, e)),
            };
            result?;
        }
        Ok(())
    }

    /// Publishes an envelope to JetStream with `Nats-Msg-Id` = its id and waits for the
    /// stream's ack. Returns whether JetStream saw it as a duplicate.
    ///
    /// The trace context goes in the headers and, when the envelope has none yet, into the
    /// envelope too (the CloudEvents distributed-tracing extension): the envelope's own context
    /// if it has one (a spooled webhook keeps its trace), else the current span's.
    pub async fn publish_event<T: Serialize>(&self, subject: &str, envelope: &Envelope<T>) -> Result<bool, BusError> {
        let encode = |e: serde_json::Error| BusError::Publish { subject: subject.to_owned(), message: e.to_string() };
        let current = envelope.traceparent.is_none().then(crate::telemetry::current_traceparent).flatten();
        let payload = match &current {
            Some((traceparent, tracestate)) => {
                serde_json::to_vec(&Traced { envelope, traceparent, tracestate: tracestate.as_deref() })
                    .map_err(encode)?
            }
            None => serde_json::to_vec(envelope).map_err(encode)?,
        };
        let traceparent = envelope.traceparent.as_deref().or(current.as_ref().map(|(p, _)| p.as_str()));
        let ack = self
            .js
            .publish_with_headers(subject.to_owned(), event_headers(&envelope.id, traceparent), Bytes::from(payload))
            .await
            .map_err(|e| publish_err(subject, e))?
            .await
            .map_err(|e| publish_err(subject, e))?;
        Ok(ack.duplicate)
    }

    /// Sends a JSON request and decodes a [`Reply`].
    pub async fn request<Q: Serialize, R: DeserializeOwned>(
        &self,
        subject: &str,
        query: &Q,
        timeout: Duration,
    ) -> Result<R, BusError> {
        let payload = serde_json::to_vec(query)
            .map_err(|e| BusError::Request { subject: subject.to_owned(), message: e.to_string() })?;
        let request = async_nats::Request::new().payload(Bytes::from(payload)).timeout(Some(timeout));
        let msg = self
            .client
            .send_request(subject.to_owned(), request)
            .await
            .map_err(|e| BusError::Request { subject: subject.to_owned(), message: e.to_string() })?;
        let reply: Reply<R> = serde_json::from_slice(&msg.payload)
            .map_err(|e| BusError::Decode { subject: subject.to_owned(), message: e.to_string() })?;
        Result::from(reply).map_err(BusError::Remote)
    }
}

/// Headers of an event message: the dedupe id and the trace context (`traceparent` as given,
/// else the current span's).
pub fn event_headers(id: &str, traceparent: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(NATS_MESSAGE_ID, id);
    match traceparent {
        Some(tp) => headers.insert("traceparent", tp),
        None => crate::telemetry::inject(&mut headers),
    }
    headers
}

/// An envelope with the trace context added (when it had none).
#[derive(Serialize)]
struct Traced<'a, T> {
    #[serde(flatten)]
    envelope: &'a Envelope<T>,
    traceparent: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tracestate: Option<&'a str>,
}

fn stream_configs() -> Vec<stream::Config> {
    vec![
        stream::Config {
            name: subjects::STREAM_MEDIA.to_owned(),
            description: Some("Facts from the media services, normalized (status-tracker)".into()),
            subjects: vec![
                "media.jellyseerr.>".into(),
                "media.sonarr.>".into(),
                "media.radarr.>".into(),
                "media.qbittorrent.*".into(),
                "media.shoko.>".into(),
                "media.jellyfin.>".into(),
                "media.tracker.>".into(),
                "media.rejected.>".into(),
            ],
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        },
        stream::Config {
            name: subjects::STREAM_MEDIA_PROGRESS.to_owned(),
            description: Some("Latest qBittorrent progress per tracked torrent".into()),
            subjects: vec![subjects::QBIT_PROGRESS_ALL.into()],
            storage: stream::StorageType::File,
            max_messages_per_subject: 1,
            max_age: PROGRESS_MAX_AGE,
            duplicate_window: Duration::from_secs(60),
            ..Default::default()
        },
        stream::Config {
            name: subjects::STREAM_TRACKER.to_owned(),
            description: Some("Request states and progress: latest message per subject".into()),
            subjects: vec![subjects::REQUEST_ALL.into()],
            storage: stream::StorageType::File,
            max_messages_per_subject: 1,
            max_age: TRACKER_MAX_AGE,
            duplicate_window: Duration::from_secs(60),
            ..Default::default()
        },
    ]
}

fn stream_static_name(name: &str) -> &'static str {
    [subjects::STREAM_MEDIA, subjects::STREAM_MEDIA_PROGRESS, subjects::STREAM_TRACKER]
        .into_iter()
        .find(|n| *n == name)
        .unwrap_or("?")
}

fn needs_update(have: &stream::Config, want: &stream::Config) -> bool {
    have.subjects != want.subjects
        || have.max_messages_per_subject != want.max_messages_per_subject
        || have.max_age != want.max_age
        || have.duplicate_window != want.duplicate_window
}

fn stream_err(stream: &'static str, e: impl std::fmt::Display) -> BusError {
    BusError::Stream { stream, message: e.to_string() }
}

fn publish_err(subject: &str, e: impl std::fmt::Display) -> BusError {
    BusError::Publish { subject: subject.to_owned(), message: e.to_string() }
}

/// Serializes a reply for a request–reply responder.
pub fn reply_bytes<T: Serialize>(reply: &Reply<T>) -> Bytes {
    match serde_json::to_vec(reply) {
        Ok(v) => Bytes::from(v),
        Err(e) => Bytes::from(format!(r#"{{"error":"cannot encode reply: {e}"}}"#)),
    }
}
