//! The CloudEvents 1.0 JSON envelope around every message status-tracker publishes.
//!
//! `id` is also sent as the `Nats-Msg-Id` header, so JetStream stores a retried webhook once;
//! `traceparent`/`tracestate` repeat the W3C trace context of the NATS headers (the CloudEvents
//! distributed-tracing extension), so the trace survives a copy of the body into another system.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub const SPEC_VERSION: &str = "1.0";

/// A CloudEvents 1.0 JSON envelope: the body of every message status-tracker publishes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct Envelope<T> {
    /// Always `1.0`.
    pub specversion: String,
    /// Unique per fact. Ingress derives it from the source and the body, so the same webhook
    /// posted twice gets the same id.
    pub id: String,
    /// Which service produced the message, e.g. `/status-tracker/ingress/radarr`.
    pub source: String,
    /// The kind of event: the subject the message is published on without the ids in it,
    /// e.g. `media.radarr.grab`, `media.qbittorrent.progress`, `tracker.request.available`
    /// ([`crate::subjects::event_type`]).
    #[serde(rename = "type")]
    pub kind: String,
    /// When the fact happened or was received (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "crate::schema::Timestamp")]
    pub time: OffsetDateTime,
    /// The media key, e.g. `tmdb:414906`, when the fact names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// W3C trace context of the message (the CloudEvents distributed-tracing extension), when
    /// the publisher put it in the body as well as in the NATS headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
    /// The payload: what the subject carries.
    pub data: T,
}

impl<T> Envelope<T> {
    /// The envelope of `data` published on `subject` (its `type` is derived from it).
    pub fn new(id: String, source: impl Into<String>, subject: &str, data: T) -> Self {
        Self {
            specversion: SPEC_VERSION.to_owned(),
            id,
            source: source.into(),
            kind: crate::subjects::event_type(subject),
            time: OffsetDateTime::now_utc(),
            subject: None,
            datacontenttype: "application/json".to_owned(),
            traceparent: None,
            tracestate: None,
            data,
        }
    }

    pub fn with_subject(mut self, subject: Option<String>) -> Self {
        self.subject = subject;
        self
    }

    pub fn with_time(mut self, time: OffsetDateTime) -> Self {
        self.time = time;
        self
    }
}

/// A content-derived event id: `<prefix>-<32 hex>` from SHA-256 over the parts. The same
/// input always gives the same id, which is what makes duplicate webhooks collapse.
pub fn content_id(prefix: &str, parts: &[&[u8]]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in parts {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    let digest = ctx.finish();
    let mut id = String::with_capacity(prefix.len() + 33);
    id.push_str(prefix);
    id.push('-');
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in &digest.as_ref()[..16] {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ids_are_stable_and_distinguish_parts() {
        let a = content_id("radarr", &[b"grab", b"{}"]);
        assert_eq!(a, content_id("radarr", &[b"grab", b"{}"]));
        assert_ne!(a, content_id("radarr", &[b"gra", b"b{}"]));
        // The first 16 bytes of SHA-256 over (length, bytes) of each part, in lower-case hex.
        assert_eq!(a, "radarr-38e770ac3f9abd6454085189fdf9e05d");
    }

    #[test]
    fn envelope_serializes_cloudevents_attribute_names() {
        let env = Envelope::new("x-1".into(), "/status-tracker/test", "media.radarr.grab", 5)
            .with_subject(Some("tmdb:1".into()));
        let v = serde_json::to_value(&env).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], "media.radarr.grab");
        assert_eq!(v["subject"], "tmdb:1");
        assert!(v.get("traceparent").is_none());
        let back: Envelope<i32> = serde_json::from_value(v).unwrap();
        assert_eq!(back, env);
    }
}
