//! The webhook handler: authenticate, check, decode, parse, store, answer.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use shared::envelope::{Envelope, content_id};
use shared::events::{BodyEncoding, EventData, Fact, Rejected};
use shared::metrics::{SourceOutcome, SourceStatus, count, metrics};
use shared::subjects::Source;
use shared::telemetry;
use tracing::Instrument;

use crate::Ingress;
use crate::payload;
use crate::sources::{self, Adapter};
use crate::spool::Entry;

/// Headers worth keeping with a rejected body. Never `Authorization` or cookies.
const KEPT_HEADERS: [header::HeaderName; 3] = [header::CONTENT_TYPE, header::CONTENT_LENGTH, header::USER_AGENT];
/// Of a body refused for its credentials or posted to an unknown source, only this much is
/// kept (anyone can send those).
const UNAUTHENTICATED_KEPT: usize = 1024;

pub(crate) async fn hook(
    State(ingress): State<Ingress>,
    Path(params): Path<Vec<(String, String)>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let name = params.first().map(|(_, v)| v.to_owned()).unwrap_or_default();
    let span = tracing::info_span!(
        "webhook",
        otel.name = "POST /hooks/{source}",
        otel.kind = "server",
        http.request.method = "POST",
        http.route = "/hooks/{source}",
        source = %name,
        http.response.status_code = tracing::field::Empty,
        event.id = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    set_parent_from_http(&span, &headers);
    telemetry::record_trace_id(&span);
    let response = handle(ingress, &name, query, headers, body).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

async fn handle(
    ingress: Ingress,
    name: &str,
    query: Option<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = body.ok().filter(|b| b.len() <= ingress.settings.max_body_bytes);
    let Some(adapter) = Source::parse(name).and_then(sources::adapter) else {
        let origin = Origin::Unknown(name);
        return ingress.reject(origin, &headers, start(&body), StatusCode::NOT_FOUND, unknown_source(name)).await;
    };
    let source = adapter.source();
    let origin = Origin::Source(source);
    if let Err(refusal) = ingress.settings.auth.check(source, &headers, query.as_deref()) {
        let reason = refusal.reason().into();
        let mut resp = ingress.reject(origin, &headers, start(&body), StatusCode::UNAUTHORIZED, reason).await;
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer, Basic realm=\"status-tracker\""));
        return resp;
    }
    let Some(body) = body else {
        let reason = format!("body larger than {} bytes (TRACKER_MAX_BODY_BYTES)", ingress.settings.max_body_bytes);
        return ingress.reject(origin, &headers, &[], StatusCode::PAYLOAD_TOO_LARGE, reason).await;
    };
    let is_4k = match is_4k_instance(source, query.as_deref()) {
        Ok(is_4k) => is_4k,
        Err(reason) => return ingress.reject(origin, &headers, &body, StatusCode::BAD_REQUEST, reason).await,
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    if let Some(reason) = unaccepted_type(adapter, content_type) {
        return ingress.reject(origin, &headers, &body, StatusCode::UNSUPPORTED_MEDIA_TYPE, reason).await;
    }
    let parsed = tracing::info_span!("parse", source = %source)
        .in_scope(|| payload::decode(content_type, &body).and_then(|p| Ok((adapter.parse(&p)?, p))));
    let (mut fact, payload) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return ingress.reject(origin, &headers, &body, StatusCode::BAD_REQUEST, e.to_string()).await,
    };
    if let (true, Fact::Radarr(e) | Fact::Sonarr(e)) = (is_4k, &mut fact) {
        e.mark_4k();
    }
    ingress.accept(source, fact, Raw::of(&payload), &body).await
}

/// `?instance=4k`: posted by the Radarr/Sonarr that Jellyseerr sends 4K requests to. No other
/// instance is known, and no other source has instances.
fn is_4k_instance(source: Source, query: Option<&str>) -> Result<bool, String> {
    let pairs = form_urlencoded::parse(query.unwrap_or_default().as_bytes());
    let Some((_, value)) = pairs.into_iter().find(|(k, _)| k == "instance") else {
        return Ok(false);
    };
    match source {
        Source::Radarr | Source::Sonarr if value.eq_ignore_ascii_case("4k") => Ok(true),
        Source::Radarr | Source::Sonarr => Err(format!(
            "unknown instance `{value}`: `/hooks/{source}?instance=4k` is for the one Jellyseerr sends 4K requests \
             to; the other posts without `instance`"
        )),
        _ => Err(format!("`?instance=` is for Radarr and Sonarr, not /hooks/{source}")),
    }
}

/// The `data` of an accepted webhook's envelope: [`EventData`], borrowed.
#[derive(Serialize)]
struct AcceptedData<'a> {
    event: &'a Fact,
    raw: Raw<'a>,
}

/// The payload as received ([`EventData::raw`]): the body's own JSON text when it is JSON,
/// kept exactly (its tree written out again sorted the keys and rounded numbers past `f64`).
#[derive(Serialize)]
#[serde(untagged)]
enum Raw<'a> {
    Text(&'a serde_json::value::RawValue),
    Tree(&'a payload::Value<'a>),
}

impl<'a> Raw<'a> {
    fn of(payload: &'a payload::Payload<'a>) -> Self {
        // The text was just read as JSON: this only finds where it ends.
        match payload.json.map(serde_json::from_str) {
            Some(Ok(text)) => Self::Text(text),
            _ => Self::Tree(&payload.value),
        }
    }
}

/// Where a webhook was posted: a source, or `/hooks/{name}` with a name no source has.
#[derive(Clone, Copy)]
pub(crate) enum Origin<'a> {
    Source(Source),
    Unknown(&'a str),
}

impl Origin<'_> {
    fn source(self) -> Option<Source> {
        match self {
            Self::Source(source) => Some(source),
            Self::Unknown(_) => None,
        }
    }

    /// The source's name; `unknown` (a name from the URL is never made a subject or a label).
    fn label(self) -> &'static str {
        self.source().map_or("unknown", Source::as_str)
    }

    /// The path posted to, for an unknown source.
    fn path(self) -> Option<String> {
        match self {
            Self::Source(_) => None,
            Self::Unknown(name) => Some(format!("/hooks/{}", shown(name))),
        }
    }
}

/// A source name from the URL as it is shown and kept: cut to 100 characters.
fn shown(name: &str) -> String {
    name.chars().take(100).collect()
}

/// `Some(reason)` when the sender labels its body with a type this source never sends.
/// Bodies without a content type are sniffed.
fn unaccepted_type(adapter: &dyn Adapter, content_type: Option<&str>) -> Option<String> {
    let mime = content_type?.split(';').next()?.trim().to_ascii_lowercase();
    let accepted = adapter.content_types();
    (!accepted.contains(&mime.as_str())).then(|| {
        format!("content type {mime:?} is not accepted for {}: send {}", adapter.source(), accepted.join(" or "))
    })
}

/// How an accepted event was kept.
enum Kept {
    Stored { duplicate: bool },
    Spooled,
}

impl Ingress {
    /// Stores a parsed fact and answers the sender: 202 once it is safe (200 for test events).
    async fn accept(&self, source: Source, fact: Fact, raw: Raw<'_>, body: &[u8]) -> Response {
        let subject = fact.subject();
        let id = content_id(source.as_str(), &[subject.as_bytes(), body]);
        let is_test = fact.is_test();
        let key = fact.media_key();
        tracing::Span::current().record("event.id", id.as_str());
        let mut envelope = Envelope::new(
            id.clone(),
            format!("/status-tracker/ingress/{source}"),
            &subject,
            AcceptedData { event: &fact, raw },
        )
        .with_subject(key);
        let publish = tracing::info_span!(
            "publish",
            otel.kind = "producer",
            messaging.system = "nats",
            messaging.destination.name = %subject,
            event.id = %id,
        );
        // The envelope carries the publish span's context, whether it is published now or
        // forwarded from the spool later.
        if let Some((parent, state)) = publish.in_scope(telemetry::current_traceparent) {
            envelope.traceparent = Some(parent);
            envelope.tracestate = state;
        }
        match self.keep(&subject, &envelope).instrument(publish).await {
            Ok(kept) => {
                let mut answer = json!({ "id": id });
                let outcome = match kept {
                    Kept::Stored { duplicate: true } => {
                        answer["duplicate"] = json!(true);
                        "duplicate"
                    }
                    Kept::Stored { duplicate: false } => "stored",
                    Kept::Spooled => {
                        answer["spooled"] = json!(true);
                        "spooled"
                    }
                };
                if is_test {
                    answer["test"] = json!(true);
                }
                let outcome = if is_test { "test" } else { outcome };
                count(&metrics().webhooks, SourceOutcome { source: source.to_string(), outcome: outcome.into() });
                tracing::debug!(%source, %subject, %id, "webhook accepted");
                let status = if is_test { StatusCode::OK } else { StatusCode::ACCEPTED };
                (status, Json(answer)).into_response()
            }
            Err(e) => {
                tracing::error!(%source, %subject, error = %e, "webhook lost: NATS unavailable and the spool failed");
                count(&metrics().webhooks, SourceOutcome { source: source.to_string(), outcome: "unavailable".into() });
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("event bus unavailable and the local spool failed ({e}); retry later"),
                )
            }
        }
    }

    /// Publishes to JetStream and waits for its ack, or, when NATS is unavailable (or older
    /// events are still spooled, to keep order), appends to the spool.
    async fn keep<T: Serialize>(&self, subject: &str, envelope: &Envelope<T>) -> std::io::Result<Kept> {
        if self.spool.pending() == 0 && self.bus.is_connected() {
            match self.bus.publish_event(subject, envelope).await {
                Ok(duplicate) => return Ok(Kept::Stored { duplicate }),
                Err(e) => tracing::warn!(%subject, error = %e, "NATS did not take the event; spooling it"),
            }
        }
        let payload = serde_json::to_string(envelope).map_err(std::io::Error::other)?;
        let traceparent = envelope.traceparent.clone();
        self.spool.append(Entry { subject: subject.to_owned(), id: envelope.id.clone(), payload, traceparent }).await?;
        self.health().set_detail("spooled", self.spool.pending());
        metrics().spooled.set(self.spool.pending() as i64);
        Ok(Kept::Spooled)
    }

    /// Answers a rejected webhook with `status` and the reason, after keeping the body on
    /// `media.rejected.<source>` (`media.rejected.unknown` for an unknown source).
    pub(crate) async fn reject(
        &self,
        origin: Origin<'_>,
        headers: &HeaderMap,
        body: &[u8],
        status: StatusCode,
        reason: String,
    ) -> Response {
        let source = origin.label();
        let path = origin.path();
        tracing::warn!(%source, path = path.as_deref(), status = status.as_u16(), %reason, "rejected webhook");
        let labels = SourceStatus { source: source.to_owned(), status: status.as_u16().to_string() };
        count(&metrics().rejected, labels);
        count(&metrics().webhooks, SourceOutcome { source: source.to_owned(), outcome: "rejected".into() });
        let (text, encoding) = match std::str::from_utf8(body) {
            Ok(s) => (s.to_owned(), BodyEncoding::Utf8),
            Err(_) => (base64(body), BodyEncoding::Base64),
        };
        let kept: BTreeMap<String, String> = KEPT_HEADERS
            .iter()
            .filter_map(|h| Some((h.as_str().to_owned(), headers.get(h)?.to_str().ok()?.to_owned())))
            .collect();
        let rejected = Rejected {
            from: origin.source(),
            path,
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
        if let Err(e) = self.keep(&subject, &envelope).await {
            tracing::error!(%source, error = %e, "rejected webhook could not be kept");
        }
        error(status, reason)
    }
}

/// Continues a trace the sender started (W3C `traceparent` header), if it did.
fn set_parent_from_http(span: &tracing::Span, headers: &HeaderMap) {
    if let Some(tp) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        telemetry::set_parent_from_traceparent(span, tp);
    }
}

/// Of a body refused for its credentials or its address, only the start is kept: anyone can
/// send those.
fn start(body: &Option<Bytes>) -> &[u8] {
    body.as_deref().map(|b| &b[..b.len().min(UNAUTHENTICATED_KEPT)]).unwrap_or_default()
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn unknown_source(name: &str) -> String {
    let known: Vec<&str> = sources::ADAPTERS.iter().map(|a| a.source().as_str()).collect();
    let hint = if name == "shoko" { " (Shoko has no webhooks: run the shoko-bridge service)" } else { "" };
    format!("unknown webhook source {:?}{hint}; use one of: {}", shown(name), known.join(", "))
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_4k_is_read_beside_the_token_and_only_for_radarr_and_sonarr() {
        assert_eq!(is_4k_instance(Source::Sonarr, Some("token=t0k&instance=4K")), Ok(true));
        assert_eq!(is_4k_instance(Source::Radarr, Some("instance=4k")), Ok(true));
        assert_eq!(is_4k_instance(Source::Radarr, Some("token=t0k")), Ok(false));
        assert_eq!(is_4k_instance(Source::Radarr, None), Ok(false));
        assert!(is_4k_instance(Source::Sonarr, Some("instance=hd")).unwrap_err().starts_with("unknown instance `hd`"));
        assert!(is_4k_instance(Source::Jellyfin, Some("instance=4k")).is_err());
    }
}
