//! How the text log writes the fields of spans and events.
//!
//! As `tracing-subscriber`'s default (`name=value`, strings quoted, the message bare), with two
//! differences: fields named `otel.*` are left out (they are instructions to the OpenTelemetry
//! layer: a span's kind, its name), and plain values are written without going through the
//! formatting machinery. The log formats every span's fields when the span is made, though no
//! line names most spans; at a few spans per webhook, that was 4 % of the process's
//! instructions. Anything out of the ordinary (a message, an error, a terminal's colours) is
//! handed to the default writer, so it reads as before.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{RecordFields, VisitOutput};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::FormattedFields;
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};

/// The text log's field formatter (see the module's documentation).
#[derive(Debug, Default, Clone, Copy)]
pub struct LogFields;

impl<'w> FormatFields<'w> for LogFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = FieldWriter::new(writer, true);
        fields.record(&mut visitor);
        visitor.finish()
    }

    /// Fields recorded after the span was made (`Span::record`) join the others, one space
    /// apart, with no trailing space when all of them are left out.
    fn add_fields(&self, current: &'w mut FormattedFields<Self>, fields: &tracing::span::Record<'_>) -> fmt::Result {
        let empty = current.fields.is_empty();
        let mut visitor = FieldWriter::new(current.as_writer(), empty);
        fields.record(&mut visitor);
        visitor.finish()
    }
}

struct FieldWriter<'w> {
    writer: Writer<'w>,
    empty: bool,
    result: fmt::Result,
}

impl<'w> FieldWriter<'w> {
    fn new(writer: Writer<'w>, empty: bool) -> Self {
        Self { writer, empty, result: Ok(()) }
    }

    /// Whether the field is written here: not when it is left out, nor when it is the default
    /// writer's to write (which it then does).
    fn plain(&mut self, field: &Field, delegate: impl FnOnce(&mut DefaultVisitor<'_>)) -> bool {
        let name = field.name();
        if self.result.is_err() || name.starts_with("otel.") || name.starts_with("log.") {
            return false;
        }
        if name == "message" || name.starts_with("r#") || self.writer.has_ansi_escapes() {
            self.by_default(delegate);
            return false;
        }
        if !std::mem::take(&mut self.empty) {
            self.result = self.writer.write_char(' ');
        }
        self.result = self.result.and_then(|()| {
            self.writer.write_str(name)?;
            self.writer.write_char('=')
        });
        self.result.is_ok()
    }

    /// Has the default writer write a field, after the fields written so far.
    fn by_default(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        let mut default = DefaultVisitor::new(self.writer.by_ref(), self.empty);
        record(&mut default);
        self.result = default.finish();
        self.empty = false;
    }
}

impl Visit for FieldWriter<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.plain(field, |d| d.record_str(field, value)) {
            // Quoted, as `{:?}` would; escaped by it when it holds a quote, a backslash or a
            // control character (other rare characters `{:?}` would escape are written as they are).
            let clean = !value.contains(|c: char| c == '"' || c == '\\' || c.is_control());
            self.result = if clean {
                self.writer
                    .write_char('"')
                    .and_then(|()| self.writer.write_str(value))
                    .and_then(|()| self.writer.write_char('"'))
            } else {
                write!(self.writer, "{value:?}")
            };
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.plain(field, |d| d.record_i64(field, value)) {
            self.result = self.writer.write_str(itoa::Buffer::new().format(value));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.plain(field, |d| d.record_u64(field, value)) {
            self.result = self.writer.write_str(itoa::Buffer::new().format(value));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.plain(field, |d| d.record_bool(field, value)) {
            self.result = self.writer.write_str(if value { "true" } else { "false" });
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.result.is_ok() && !field.name().starts_with("otel.") {
            self.by_default(|d| d.record_error(field, value));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.plain(field, |d| d.record_debug(field, value)) {
            self.result = write!(self.writer, "{value:?}");
        }
    }
}

impl VisitOutput<fmt::Result> for FieldWriter<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Lines {
            self.clone()
        }
    }

    /// The log lines `body` writes, with `fields` as the field formatter.
    fn logged<N>(fields: N, body: impl FnOnce()) -> String
    where
        N: for<'w> FormatFields<'w> + Send + Sync + 'static,
    {
        let lines = Lines::default();
        let layer = tracing_subscriber::fmt::layer()
            .without_time()
            .with_ansi(false)
            .with_target(false)
            .with_writer(lines.clone())
            .fmt_fields(fields);
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), body);
        String::from_utf8(lines.0.lock().unwrap().clone()).unwrap()
    }

    fn story() {
        let name = "The Batman";
        let span = tracing::info_span!(
            "webhook",
            otel.name = "POST /hooks/{source}",
            otel.kind = "server",
            source = %"radarr",
            title = name,
            quoted = "say \"hi\"\tnow",
            year = 2022u64,
            delta = -3i64,
            upgrade = false,
            ids = ?[1, 2],
            event.id = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let _entered = span.enter();
        span.record("otel.status_code", "ok");
        span.record("event.id", "e-1");
        let error = std::io::Error::other("disk full");
        tracing::warn!(count = 2, error = &error as &(dyn std::error::Error + 'static), "not \"kept\": {}", "retrying");
    }

    #[test]
    fn lines_read_as_the_default_without_the_opentelemetry_fields() {
        let ours = logged(LogFields, story);
        let default = logged(tracing_subscriber::fmt::format::DefaultFields::new(), story);
        assert_eq!(
            ours,
            concat!(
                r#" WARN webhook{source=radarr title="The Batman" quoted="say \"hi\"\tnow" year=2022 delta=-3 upgrade=false ids=[1, 2] event.id="e-1"}: "#,
                r#"not "kept": retrying count=2 error=disk full"#,
                "\n"
            )
        );
        let without_otel = default
            .replace(r#"otel.name="POST /hooks/{source}" otel.kind="server" "#, "")
            .replace(r#" otel.status_code="ok""#, "");
        assert_eq!(ours, without_otel, "the same line as the default's, less the otel.* fields");
    }

    #[test]
    fn a_span_of_only_opentelemetry_fields_has_none() {
        let out = logged(LogFields, || {
            let span = tracing::info_span!("publish", otel.kind = "producer", otel.status_code = tracing::field::Empty);
            let _entered = span.enter();
            span.record("otel.status_code", "error");
            tracing::info!("sent");
        });
        assert_eq!(out, " INFO publish: sent\n");
    }
}
