//! JSON Schemas (draft 2020-12) of every message status-tracker sends over NATS, generated
//! from the serde types themselves, so the files in `docs/schemas/` that `docs/subjects.md`
//! links cannot drift from what is sent: a test regenerates them and compares.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema, schema_for};
use serde_json::{Map, Value};

use crate::envelope::Envelope;
use crate::events::EventData;
use crate::health::ServiceHealth;
use crate::model::{
    CommandReply, CommandRequest, GetQuery, ListQuery, ListReply, ProgressUpdate, Reply, RequestChange, RequestDetail,
    Stats, Summary, TimelineReply, TrackedReply,
};

/// What `time::serde::rfc3339` writes: an RFC 3339 date-time string. The `time` crate has no
/// schemars support, so fields serialized that way say `#[schemars(with = "Timestamp")]`.
pub struct Timestamp;

impl JsonSchema for Timestamp {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "format": "date-time" })
    }
}

/// The schema of one kind of message, as a file of `docs/schemas/`.
#[derive(Debug, Clone)]
pub struct MessageSchema {
    /// File name in `docs/schemas/`, e.g. `media-event.json`.
    pub file: &'static str,
    /// The subjects whose messages (or requests, or replies) it describes.
    pub subjects: &'static str,
    pub schema: Schema,
}

impl MessageSchema {
    fn of<T: JsonSchema>(file: &'static str, subjects: &'static str, description: &str) -> Self {
        let mut schema = schema_for!(T);
        schema.insert("title".into(), subjects.into());
        schema.insert("description".into(), description.into());
        Self { file, subjects, schema }
    }

    /// The file's text: pretty JSON ending with a newline. The root starts with `$schema`,
    /// `title` and `description` and ends with `$defs`; every other object has its keys in
    /// alphabetical order, whatever serde_json's features in the build.
    pub fn to_json(&self) -> String {
        const FIRST: [&str; 3] = ["$schema", "title", "description"];
        let root = match sort_keys(self.schema.as_value().clone()) {
            Value::Object(map) => map,
            other => return format!("{other:#}\n"),
        };
        let rank = |key: &str| match FIRST.iter().position(|k| *k == key) {
            Some(i) => i,
            None if key == "$defs" => FIRST.len() + 1,
            None => FIRST.len(),
        };
        let mut entries: Vec<(String, Value)> = root.into_iter().collect();
        entries.sort_by(|a, b| rank(&a.0).cmp(&rank(&b.0)).then_with(|| a.0.cmp(&b.0)));
        let members: Vec<String> = entries
            .iter()
            .map(|(key, value)| {
                format!("  {}: {}", Value::from(key.as_str()), format!("{value:#}").replace('\n', "\n  "))
            })
            .collect();
        format!("{{\n{}\n}}\n", members.join(",\n"))
    }
}

/// Every message kind: the events on `media.>` and `tracker.request.>`, and the requests and
/// replies of `tracker.query.*`, `tracker.cmd.*` and `tracker.health.*`.
pub fn schemas() -> Vec<MessageSchema> {
    vec![
        MessageSchema::of::<Envelope<EventData>>(
            "media-event.json",
            "media.<source>.<event>, media.qbittorrent.progress.<hash>, media.rejected.<source>",
            "A fact from a media service (or from status-tracker itself), normalized, with the payload as received.",
        ),
        MessageSchema::of::<Envelope<RequestChange>>(
            "request-change.json",
            "tracker.request.<id>.<state>, tracker.request.<id>.updated",
            "A request entered a state (or changed without changing state): its full snapshot and what changed.",
        ),
        MessageSchema::of::<Envelope<ProgressUpdate>>(
            "request-progress.json",
            "tracker.request.<id>.progress",
            "Download progress of a request, over all of its downloads.",
        ),
        MessageSchema::of::<ListQuery>(
            "query-list-request.json",
            "tracker.query.list (request)",
            "Filters for listing requests; every field is optional, `{}` lists the latest 50.",
        ),
        MessageSchema::of::<Reply<ListReply>>(
            "query-list-reply.json",
            "tracker.query.list (reply)",
            "One page of requests and how many match, or an error.",
        ),
        MessageSchema::of::<GetQuery>("query-get-request.json", "tracker.query.get (request)", "Which request."),
        MessageSchema::of::<Reply<RequestDetail>>(
            "query-get-reply.json",
            "tracker.query.get (reply)",
            "The request with its downloads, episodes and timeline, or an error.",
        ),
        MessageSchema::of::<GetQuery>(
            "query-timeline-request.json",
            "tracker.query.timeline (request)",
            "Which request.",
        ),
        MessageSchema::of::<Reply<TimelineReply>>(
            "query-timeline-reply.json",
            "tracker.query.timeline (reply)",
            "The request's timeline, or an error.",
        ),
        MessageSchema::of::<Reply<TrackedReply>>(
            "query-tracked-reply.json",
            "tracker.query.tracked (reply)",
            "Torrents the poller should follow, or an error. The request body is ignored.",
        ),
        MessageSchema::of::<Reply<Stats>>(
            "query-stats-reply.json",
            "tracker.query.stats (reply)",
            "Time per stage and to available, success rates, overall and by source and media type, or an error. \
             The request body is ignored.",
        ),
        MessageSchema::of::<Reply<Summary>>(
            "query-summary-reply.json",
            "tracker.query.summary (reply)",
            "Counts of requests by state, or an error. The request body is ignored.",
        ),
        MessageSchema::of::<CommandRequest>(
            "cmd-request.json",
            "tracker.cmd.retry, tracker.cmd.cancel (request)",
            "Which request to act on, and who asks.",
        ),
        MessageSchema::of::<Reply<CommandReply>>(
            "cmd-reply.json",
            "tracker.cmd.retry, tracker.cmd.cancel (reply)",
            "What the command did, or why it could not.",
        ),
        MessageSchema::of::<Reply<ServiceHealth>>(
            "health-reply.json",
            "tracker.health.<service> (reply)",
            "One service's health. The request body is ignored.",
        ),
    ]
}

/// The same JSON with every object's keys in alphabetical order.
fn sort_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sort_keys(v))).collect::<Map<_, _>>())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

#[cfg(test)]
mod doc_tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    /// `docs/schemas/` must hold exactly the generated schemas. Run with `UPDATE_DOCS=1` to
    /// rewrite them (and delete files no generator makes any more).
    #[test]
    fn schemas_in_docs_are_the_ones_the_types_generate() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/schemas"));
        let update = std::env::var_os("UPDATE_DOCS").is_some();
        let schemas = super::schemas();
        let generated: BTreeSet<&str> = schemas.iter().map(|s| s.file).collect();
        assert_eq!(generated.len(), schemas.len(), "two schemas share a file name");
        if update {
            std::fs::create_dir_all(dir).unwrap();
        }
        let on_disk: BTreeSet<String> = std::fs::read_dir(dir)
            .expect("docs/schemas")
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let stale: Vec<&String> = on_disk.iter().filter(|f| !generated.contains(f.as_str())).collect();
        for schema in &schemas {
            let path = dir.join(schema.file);
            let text = schema.to_json();
            if update {
                std::fs::write(&path, text).unwrap();
                continue;
            }
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                have == text,
                "docs/schemas/{} is out of date: run UPDATE_DOCS=1 cargo test -p shared",
                schema.file
            );
        }
        if update {
            for file in stale {
                std::fs::remove_file(dir.join(file)).unwrap();
            }
            return;
        }
        assert!(
            stale.is_empty(),
            "docs/schemas has files no type generates: {stale:?}; remove them or run UPDATE_DOCS=1 cargo test -p shared"
        );
    }
}
