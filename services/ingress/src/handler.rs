//! The webhook handler: decode, parse, publish, answer.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shared::envelope::{Envelope, content_id};
use shared::events::{BodyEncoding, EventData, Fact, Rejected};
use shared::subjects::Source;

use crate::Ingress;
use crate::payload;
use crate::sources;

/// Headers worth keeping with a rejected body. Never `Authorization` or cookies.
const KEPT_HEADERS: [header::HeaderName; 3] = [header::CONTENT_TYPE, header::CONTENT_LENGTH, header::USER_AGENT];

pub(crate) async fn hook(
    State(ingress): State<Ingress>,
    Path(params): Path<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let name = params.first().map(|(_, v)| v.as_str()).unwrap_or_default();
    let Some(adapter) = Source::parse(name).and_then(sources::adapter) else {
        return error(StatusCode::NOT_FOUND, unknown_source(name));
    };
    let source = adapter.source();
    let limit = ingress.settings.max_body_bytes;
    let body = match body {
        Ok(b) if b.len() <= limit => b,
        _ => {
            let reason = format!("body larger than {limit} bytes (TRACKER_MAX_BODY_BYTES)");
            return ingress.reject(source, &headers, &[], StatusCode::PAYLOAD_TOO_LARGE, reason).await;
        }
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let parsed = payload::decode(content_type, &body).and_then(|p| Ok((adapter.parse(&p)?, p.value)));
    let (fact, raw) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            return ingress.reject(source, &headers, &body, StatusCode::BAD_REQUEST, e.to_string()).await;
        }
    };
    ingress.publish(fact, raw, &body).await
}

impl Ingress {
    /// Publishes a parsed fact and answers the sender: 202 once stored (200 for test events).
    async fn publish(&self, fact: Fact, raw: serde_json::Value, body: &[u8]) -> Response {
        let source = fact.source();
        let subject = fact.subject();
        let id = content_id(source.as_str(), &[subject.as_bytes(), body]);
        let is_test = fact.is_test();
        let key = fact.media_key();
        let envelope = Envelope::new(
            id.clone(),
            format!("/status-tracker/ingress/{source}"),
            &subject,
            EventData { event: fact, raw: Some(raw) },
        )
        .with_subject(key);
        match self.bus.publish_event(&subject, &envelope).await {
            Ok(duplicate) => {
                tracing::debug!(%source, %subject, %id, duplicate, "webhook stored");
                let status = if is_test { StatusCode::OK } else { StatusCode::ACCEPTED };
                let mut answer = json!({ "id": id });
                if duplicate {
                    answer["duplicate"] = json!(true);
                }
                if is_test {
                    answer["test"] = json!(true);
                }
                (status, Json(answer)).into_response()
            }
            Err(e) => {
                tracing::error!(%source, %subject, error = %e, "webhook not stored: event bus unavailable");
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "event bus unavailable; the event was not stored, retry later".into(),
                )
            }
        }
    }

    /// Answers a rejected webhook with `status` and the reason, after keeping the body on
    /// `media.rejected.<source>`.
    pub(crate) async fn reject(
        &self,
        source: Source,
        headers: &HeaderMap,
        body: &[u8],
        status: StatusCode,
        reason: String,
    ) -> Response {
        tracing::warn!(%source, status = status.as_u16(), %reason, "rejected webhook");
        let (text, encoding) = match std::str::from_utf8(body) {
            Ok(s) => (s.to_owned(), BodyEncoding::Utf8),
            Err(_) => (base64(body), BodyEncoding::Base64),
        };
        let kept: BTreeMap<String, String> = KEPT_HEADERS
            .iter()
            .filter_map(|h| Some((h.as_str().to_owned(), headers.get(h)?.to_str().ok()?.to_owned())))
            .collect();
        let rejected = Rejected {
            from: source,
            reason: reason.clone(),
            status: status.as_u16(),
            content_type: kept.get("content-type").cloned(),
            body: text,
            body_encoding: encoding,
            headers: kept,
        };
        let fact = Fact::Rejected(rejected);
        let subject = fact.subject();
        let id = content_id(&format!("rejected-{source}"), &[reason.as_bytes(), body]);
        let envelope = Envelope::new(
            id,
            format!("/status-tracker/ingress/{source}"),
            &subject,
            EventData { event: fact, raw: None },
        );
        if let Err(e) = self.bus.publish_event(&subject, &envelope).await {
            tracing::error!(%source, error = %e, "rejected webhook could not be kept on NATS");
        }
        error(status, reason)
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn unknown_source(name: &str) -> String {
    let known: Vec<&str> = sources::ADAPTERS.iter().map(|a| a.source().as_str()).collect();
    let hint = if name == "shoko" { " (Shoko has no webhooks: run the shoko-bridge service)" } else { "" };
    format!("unknown webhook source {name:?}{hint}; use one of: {}", known.join(", "))
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
