//! Logs and traces, set up once per process.
//!
//! Logs: `RUST_LOG` filter, text or JSON lines (`TRACKER_LOG_FORMAT=json`); JSON lines carry the
//! span list, so a line inside a traced operation has its `trace_id`.
//!
//! Traces: `tracing` spans become OpenTelemetry spans. The W3C trace context always travels
//! (in NATS headers and the CloudEvents envelope), so the spans of one webhook form one trace
//! across services. Spans are exported over OTLP/HTTP only when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set; otherwise nothing is exported. Each span is sent
//! under the `service.name` of the service whose code made it (by module path), so the
//! all-in-one process shows up as five services, like the compose stack.

mod fields;

use std::io::IsTerminal;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use fields::LogFields;

use crate::settings::Env;

/// The services, by the module path prefix of their code, and their `service.name`.
pub const SERVICES: [(&str, &str); 5] = [
    ("ingress", "ingress"),
    ("correlator", "correlator"),
    ("dashboard", "dashboard"),
    ("poller", "poller"),
    ("shoko_bridge", "shoko-bridge"),
];

/// Keeps the tracer provider alive; flushes pending spans when dropped.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        drop(self.provider.shutdown());
    }
}

/// Installs the global subscriber for a process named `process` (`status-tracker` for the
/// all-in-one, else the service's name). Later calls do nothing but return a handle.
pub fn init(env: &Env, process: &str) -> Telemetry {
    let endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT");
    let provider = match endpoint.as_deref().map(|e| otlp_provider(e, process)) {
        Some(Ok(p)) => p,
        Some(Err(error)) => {
            eprintln!("status-tracker: traces will not be exported: {error}");
            SdkTracerProvider::builder().build()
        }
        None => SdkTracerProvider::builder().build(),
    };
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_new(env.get("RUST_LOG").unwrap_or_else(|| "info".into()))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = env.get("TRACKER_LOG_FORMAT").as_deref() == Some("json");
    let fmt = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    } else {
        let ansi = std::io::stderr().is_terminal();
        tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .fmt_fields(LogFields)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    };
    let exported = endpoint.is_some();
    let result = tracing_subscriber::registry().with(fmt).with(otel_layer(&provider, exported)).try_init();
    drop(result);
    Telemetry { provider }
}

/// The OpenTelemetry layer: our services' spans (not those of libraries), with their module
/// path when exported (it decides the `service.name`).
pub fn otel_layer<S>(provider: &SdkTracerProvider, with_location: bool) -> impl Layer<S> + Send + Sync
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let ours = SERVICES.iter().fold(Targets::new(), |t, (module, _)| t.with_target(*module, tracing::Level::INFO));
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("status-tracker"))
        .with_location(with_location)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(ours)
}

fn otlp_provider(endpoint: &str, process: &str) -> Result<SdkTracerProvider, String> {
    let traces = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = |service: &str| -> Result<opentelemetry_otlp::SpanExporter, String> {
        use opentelemetry_otlp::WithExportConfig;
        let mut e = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(traces.clone())
            .build()
            .map_err(|e| format!("OTLP exporter for {traces}: {e}"))?;
        e.set_resource(&resource(service));
        Ok(e)
    };
    let routes =
        SERVICES.iter().map(|(module, service)| Ok((*module, exporter(service)?))).collect::<Result<_, String>>()?;
    let routed = Routed { routes, fallback: exporter(process)? };
    Ok(SdkTracerProvider::builder().with_batch_exporter(routed).build())
}

/// `service.name` and friends.
pub fn resource(service: &str) -> Resource {
    Resource::builder()
        .with_service_name(service.to_owned())
        .with_attribute(opentelemetry::KeyValue::new("service.namespace", "status-tracker"))
        .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Sends each span to the exporter of the service whose module made it.
#[derive(Debug)]
pub struct Routed<E> {
    pub routes: Vec<(&'static str, E)>,
    pub fallback: E,
}

impl<E: SpanExporter> Routed<E> {
    fn route(&self, span: &SpanData) -> usize {
        let module = span
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == "code.module.name")
            .map(|kv| kv.value.as_str().into_owned())
            .unwrap_or_default();
        let crate_name = module.split("::").next().unwrap_or_default();
        self.routes.iter().position(|(m, _)| *m == crate_name).unwrap_or(self.routes.len())
    }
}

impl<E: SpanExporter> SpanExporter for Routed<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut groups: Vec<Vec<SpanData>> = (0..=self.routes.len()).map(|_| Vec::new()).collect();
        for span in batch {
            let i = self.route(&span);
            groups[i].push(span);
        }
        let mut result = Ok(());
        for (i, group) in groups.into_iter().enumerate().filter(|(_, g)| !g.is_empty()) {
            let exporter = self.routes.get(i).map_or(&self.fallback, |(_, e)| e);
            if let Err(e) = exporter.export(group).await {
                result = Err(e);
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        for (_, e) in &self.routes {
            drop(e.shutdown_with_timeout(timeout));
        }
        self.fallback.shutdown_with_timeout(timeout)
    }

    /// Each inner exporter keeps the resource of its own service.
    fn set_resource(&mut self, _resource: &Resource) {}
}

// ----------------------------------------------------------------- propagation ---

struct NatsInjector<'a>(&'a mut async_nats::HeaderMap);

impl Injector for NatsInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // An empty `tracestate` says nothing; W3C lets it be left out.
        if !value.is_empty() {
            self.0.insert(key, value.as_str());
        }
    }
}

struct NatsExtractor<'a>(&'a async_nats::HeaderMap);

impl Extractor for NatsExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

/// Writes the current span's trace context into NATS headers.
pub fn inject(headers: &mut async_nats::HeaderMap) {
    let cx = Span::current().context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut NatsInjector(headers));
    }
}

/// Makes `span` a child of the trace context carried by NATS headers, if any. Must be called
/// before the span is first entered.
pub fn set_parent_from_headers(span: &Span, headers: Option<&async_nats::HeaderMap>) {
    if let Some(headers) = headers {
        let cx = TraceContextPropagator::new().extract(&NatsExtractor(headers));
        if cx.span().span_context().is_valid() {
            drop(span.set_parent(cx));
        }
    }
}

/// Makes `span` a child of a W3C `traceparent`.
pub fn set_parent_from_traceparent(span: &Span, traceparent: &str) {
    let cx = from_traceparent(traceparent);
    if cx.span().span_context().is_valid() {
        drop(span.set_parent(cx));
    }
}

/// Adds a link from `span` to the span a `traceparent` names (a request's first trace).
pub fn link(span: &Span, traceparent: &str) {
    let cx = from_traceparent(traceparent);
    let sc = cx.span().span_context().clone();
    if sc.is_valid() && sc.trace_id() != span.context().span().span_context().trace_id() {
        span.add_link(sc);
    }
}

fn from_traceparent(traceparent: &str) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&Traceparent(traceparent))
}

/// A carrier of one `traceparent` and nothing else (a map would be built for every message).
struct Traceparent<'a>(&'a str);

impl Extractor for Traceparent<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

/// What the propagator writes: `traceparent` and `tracestate`.
#[derive(Default)]
struct TraceHeaders {
    parent: Option<String>,
    state: Option<String>,
}

impl Injector for TraceHeaders {
    fn set(&mut self, key: &str, value: String) {
        match key {
            "traceparent" => self.parent = Some(value),
            "tracestate" => self.state = Some(value).filter(|s| !s.is_empty()),
            _ => {}
        }
    }
}

/// The current span's context as a W3C `traceparent` (and `tracestate`, if any).
pub fn current_traceparent() -> Option<(String, Option<String>)> {
    let cx = Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut headers = TraceHeaders::default();
    TraceContextPropagator::new().inject_context(&cx, &mut headers);
    Some((headers.parent?, headers.state))
}

/// The trace id (32 hex digits) of a span, when it has one.
pub fn trace_id(span: &Span) -> Option<String> {
    let sc = span.context().span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Records the span's trace id in its `trace_id` field (declared `Empty`), so JSON log lines
/// inside it carry the id.
pub fn record_trace_id(span: &Span) {
    if let Some(id) = trace_id(span) {
        span.record("trace_id", id.as_str());
    }
}
