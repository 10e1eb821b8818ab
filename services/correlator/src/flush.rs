//! What a batch writes, as one statement that never changes.
//!
//! Each table's rows go to SQLite as one JSON array of rows, each an array of the columns'
//! values (`INSERT … SELECT value->>0, value->>1, … FROM jsonb_each(?)`), so the text of the
//! batch's statement is the same whatever it holds, and SQLite compiles it once per
//! connection. With
//! `VALUES (…), (…)` lists every batch had a statement of its own shape: compiling them was a
//! sixth of all the instructions the process spent per webhook (callgrind,
//! docs/performance.md), more than running them.
//!
//! `jsonb_each`, not `json_each`: it hands each row over in SQLite's binary form, where
//! `json_each` renders it as text that every `->>` parses again. Rows are arrays rather than
//! objects keyed by column: less to write and to read, and no key to look up. A row type's
//! fields are its table's columns, in order ([`row!`]). Large values do not go inside the
//! JSON: the outbox's payloads (escaping them and parsing them back cost more than the rest),
//! a request's summary and a timeline entry's details (JSON documents themselves, which were
//! escaped, parsed and unescaped again, and copied with the row for each of its columns that
//! SQLite read). Each table's go end to end in one blob ([`Blob`]), each row naming its
//! [`Slice`].
//!
//! Not bound parameters, one per value: statements of fixed sizes (4, 16, 64, 256 rows, the
//! last padded with NULLs that a `WHERE` drops) took 9 % fewer instructions per webhook, but
//! no less CPU and no higher rate. sqlx copies each text value into an `Arc` of its own and
//! SQLite copies it again (`SQLITE_TRANSIENT`), on two threads, and glibc's allocator cost
//! more than the JSON had (docs/performance.md, "Instructions per webhook", tenth session).

use std::sync::LazyLock;

use serde::Serialize;

use shared::model::TimelineEntry;

use crate::lifecycle::{Download, Item, Request};
use crate::store::ts;

/// A table's row: a struct whose fields are the columns, serialized as a JSON array of their
/// values in that order, and the list of the columns' names.
macro_rules! row {
    ($(#[$doc:meta])* $name:ident, $columns:ident { $($(#[$field_doc:meta])* $field:ident: $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        pub struct $name<'a> {
            $($(#[$field_doc])* pub $field: $ty,)*
        }

        /// The columns of the row, in its order.
        pub const $columns: &[&str] = &[$(stringify!($field)),*];

        impl Serialize for $name<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeTuple;
                let mut row = serializer.serialize_tuple($columns.len())?;
                $(row.serialize_element(&self.$field)?;)*
                row.end()
            }
        }
    };
}

/// The batch's statement. Its parameters, in this order: the requests' summaries end to end
/// (a [`Blob`]), the JSON arrays of requests, items, downloads and keys, the timeline
/// entries' details end to end and the JSON array of timeline entries, the outbox's payloads
/// end to end (a blob) and the JSON arrays of outbox messages and processed events, and the
/// id up to which published outbox rows are deleted (`NULL`: none). Only the outbox insert
/// returns rows: the new ids. (Parameters are plain `?`: sqlx stops binding a statement at
/// the first unnumbered gap, so `?7` in a statement without `?1` would stay unbound.)
///
/// The delete is part of the statement, not a statement of its own: each statement sent is a
/// round trip to the connection's thread, which wakes both threads; a batch's six statements
/// at idle, cut to two, took 0.14–0.21 ms off a webhook's way (docs/performance.md,
/// "Latency").
pub static SQL: LazyLock<String> = LazyLock::new(|| {
    [
        upsert("requests", REQUESTS, &["id"]),
        upsert("items", ITEMS, &["request_id", "season", "episode"]),
        upsert("downloads", DOWNLOADS, &["request_id", "download_id"]),
        format!("INSERT OR IGNORE INTO request_keys ({}) {}", KEYS.join(", "), select(KEYS)),
        format!("INSERT INTO timeline ({}) {}", TIMELINE.join(", "), select(TIMELINE)),
        format!("INSERT INTO outbox ({}) {} RETURNING id", OUTBOX.join(", "), select(OUTBOX)),
        format!(
            "INSERT INTO processed_events ({}) {} ON CONFLICT (event_id) DO UPDATE SET outcome = excluded.outcome",
            PROCESSED.join(", "),
            select(PROCESSED)
        ),
        // After the insert: the rows it adds are newer than any published one.
        "DELETE FROM outbox WHERE id <= ?".to_owned(),
    ]
    .join(";\n")
});

/// [`SQL`] as a transaction of its own: `BEGIN IMMEDIATE`, the writes, `COMMIT`, in one
/// round trip to the connection's thread.
pub static COMMITTING: LazyLock<String> = LazyLock::new(|| format!("BEGIN IMMEDIATE;\n{};\nCOMMIT", *SQL));

/// `SELECT value->>0, value->>1, … FROM jsonb_each(?) WHERE true`; an upsert needs the `WHERE`
/// to be told from a join's `ON`. A column in [`SLICED`] is a [`Slice`] of the blob bound
/// before the rows.
fn select(columns: &[&str]) -> String {
    let values: Vec<String> = (0..columns.len()).map(|i| read(columns[i], i)).collect();
    format!("SELECT {} FROM jsonb_each(?) WHERE true", values.join(", "))
}

/// How the statement reads column `i` of a row.
fn read(column: &str, i: usize) -> String {
    match SLICED.iter().find(|(name, _)| *name == column) {
        Some((_, kind)) => format!("CAST(substr(?, value->>'$[{i}][0]', value->>'$[{i}][1]') AS {kind})"),
        None => format!("value->>{i}"),
    }
}

/// The columns whose values go in a blob beside the rows ([`Blob`]), and their type; a table
/// has one at most, as it has one blob.
const SLICED: &[(&str, &str)] = &[("summary", "TEXT"), ("details", "TEXT"), ("payload", "BLOB")];

/// Where a row's value is in its table's blob ([`Blob`]): bytes `start..start + length`,
/// counted from 1. A row carries it as `[start, length]`.
#[derive(Debug, Serialize)]
pub struct Slice(usize, usize);

/// One table's large values, end to end, bound before the table's rows.
#[derive(Debug, Default)]
pub struct Blob(Vec<u8>);

impl Blob {
    pub fn with_capacity(bytes: usize) -> Self {
        Self(Vec::with_capacity(bytes))
    }

    /// Writes `value` as JSON at the end of the blob.
    pub fn push_json<T: Serialize + ?Sized>(&mut self, value: &T) -> serde_json::Result<Slice> {
        let start = self.0.len();
        serde_json::to_writer(&mut self.0, value)?;
        Ok(Slice(start + 1, self.0.len() - start))
    }

    pub fn push(&mut self, bytes: &[u8]) -> Slice {
        let start = self.0.len();
        self.0.extend_from_slice(bytes);
        Slice(start + 1, bytes.len())
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

fn upsert(table: &str, columns: &[&str], key: &[&str]) -> String {
    let set: Vec<String> = columns.iter().filter(|c| !key.contains(c)).map(|c| format!("{c} = excluded.{c}")).collect();
    format!(
        "INSERT INTO {table} ({}) {} ON CONFLICT ({}) DO UPDATE SET {}",
        columns.join(", "),
        select(columns),
        key.join(", "),
        set.join(", ")
    )
}

row! {
    /// A row of `requests`.
    RequestRow, REQUESTS {
        id: i64,
        media_type: &'a str,
        title: &'a str,
        year: Option<i32>,
        poster_url: Option<&'a str>,
        tmdb_id: Option<i64>,
        tvdb_id: Option<i64>,
        imdb_id: Option<&'a str>,
        arr_id: Option<i64>,
        jellyseerr_id: Option<i64>,
        requested_by: Option<&'a str>,
        requested_by_email: Option<&'a str>,
        is_anime: bool,
        is_4k: bool,
        source: &'a str,
        /// JSON text.
        requested_seasons: String,
        stage: &'a str,
        outcome_state: Option<&'a str>,
        outcome_reason: Option<&'a str>,
        outcome_at: Option<i64>,
        evidence_at: Option<i64>,
        available_at: Option<i64>,
        quality: Option<&'a str>,
        media_path: Option<&'a str>,
        watch_item_id: Option<&'a str>,
        watch_server_id: Option<&'a str>,
        watch_server_url: Option<&'a str>,
        trace_parent: Option<&'a str>,
        created_at: i64,
        updated_at: i64,
        archived_at: Option<i64>,
        state_since: i64,
        stall_state: Option<&'a str>,
        stall_reason: Option<&'a str>,
        stall_at: Option<i64>,
        alert_check: Option<&'a str>,
        alert_message: Option<&'a str>,
        alert_at: Option<i64>,
        state: &'a str,
        /// The request's summary, JSON text in the requests' blob.
        summary: Slice,
    }
}

impl<'a> RequestRow<'a> {
    pub fn new(req: &'a Request, state: &'a str, summary: Slice) -> serde_json::Result<Self> {
        Ok(Self {
            id: req.id.0,
            media_type: req.media_type.as_str(),
            title: &req.title,
            year: req.year,
            poster_url: req.poster_url.as_deref(),
            tmdb_id: req.tmdb_id.map(|v| v.0 as i64),
            tvdb_id: req.tvdb_id.map(|v| v.0 as i64),
            imdb_id: req.imdb_id.as_deref(),
            arr_id: req.arr_id.map(|v| v.0 as i64),
            jellyseerr_id: req.jellyseerr_id.map(|v| v.0 as i64),
            requested_by: req.requested_by.as_deref(),
            requested_by_email: req.requested_by_email.as_deref(),
            is_anime: req.is_anime,
            is_4k: req.is_4k,
            source: &req.source,
            requested_seasons: serde_json::to_string(&req.requested_seasons)?,
            stage: req.stage.as_str(),
            outcome_state: req.outcome.as_ref().map(|o| o.state.as_str()),
            outcome_reason: req.outcome.as_ref().and_then(|o| o.reason.as_deref()),
            outcome_at: req.outcome.as_ref().map(|o| ts(o.at)),
            evidence_at: req.evidence_at.map(ts),
            available_at: req.available_at.map(ts),
            quality: req.quality.as_deref(),
            media_path: req.media_path.as_deref(),
            watch_item_id: req.watch.as_ref().map(|w| w.item_id.as_str()),
            watch_server_id: req.watch.as_ref().and_then(|w| w.server_id.as_deref()),
            watch_server_url: req.watch.as_ref().and_then(|w| w.server_url.as_deref()),
            trace_parent: req.trace_parent.as_deref(),
            created_at: ts(req.created_at),
            updated_at: ts(req.updated_at),
            archived_at: req.archived_at.map(ts),
            state_since: ts(req.state_since),
            stall_state: req.stall.as_ref().map(|s| s.state.as_str()),
            stall_reason: req.stall.as_ref().map(|s| s.reason.as_str()),
            stall_at: req.stall.as_ref().map(|s| ts(s.at)),
            alert_check: req.alert.as_ref().map(|a| a.check.as_str()),
            alert_message: req.alert.as_ref().map(|a| a.message.as_str()),
            alert_at: req.alert.as_ref().map(|a| ts(a.at)),
            state,
            summary,
        })
    }
}

row! {
    /// A row of `items`.
    ItemRow, ITEMS {
        request_id: i64,
        season: u32,
        episode: u32,
        stage: &'a str,
        download_id: Option<&'a str>,
        file_path: Option<&'a str>,
        reason: Option<&'a str>,
        reason_at: Option<i64>,
        available_at: Option<i64>,
        jellyfin_item_id: Option<&'a str>,
        updated_at: i64,
    }
}

impl<'a> ItemRow<'a> {
    pub fn new(request_id: i64, season: u32, episode: u32, item: &'a Item) -> Self {
        Self {
            request_id,
            season,
            episode,
            stage: item.stage.as_str(),
            download_id: item.download_id.as_deref(),
            file_path: item.file_path.as_deref(),
            reason: item.reason.as_deref(),
            reason_at: item.reason_at.map(ts),
            available_at: item.available_at.map(ts),
            jellyfin_item_id: item.jellyfin_item_id.as_deref(),
            updated_at: ts(item.updated_at),
        }
    }
}

row! {
    /// A row of `downloads`.
    DownloadRow, DOWNLOADS {
        request_id: i64,
        download_id: &'a str,
        kind: &'a str,
        release_title: Option<&'a str>,
        quality: Option<&'a str>,
        indexer: Option<&'a str>,
        size: Option<i64>,
        progress: f64,
        dlspeed: i64,
        eta: Option<i64>,
        client_state: Option<&'a str>,
        stalled: Option<&'a str>,
        error: Option<&'a str>,
        finished: bool,
        upgrade: bool,
        content_path: Option<&'a str>,
        grabbed_at: i64,
        progress_at: Option<i64>,
        finish_noted: bool,
        dropped: bool,
        /// `season:episode …` ([`crate::store::items_text`]).
        items: String,
        updated_at: i64,
    }
}

impl<'a> DownloadRow<'a> {
    pub fn new(request_id: i64, download_id: &'a str, d: &'a Download) -> Self {
        Self {
            request_id,
            download_id,
            kind: &d.kind,
            release_title: d.release_title.as_deref(),
            quality: d.quality.as_deref(),
            indexer: d.indexer.as_deref(),
            size: d.size.map(|s| s as i64),
            progress: d.progress,
            dlspeed: d.dlspeed as i64,
            eta: d.eta.map(|e| e as i64),
            client_state: d.client_state.as_deref(),
            stalled: d.stalled.as_deref(),
            error: d.error.as_deref(),
            finished: d.finished,
            upgrade: d.upgrade,
            content_path: d.content_path.as_deref(),
            grabbed_at: ts(d.grabbed_at),
            progress_at: d.progress_at.map(ts),
            finish_noted: d.finish_noted,
            dropped: d.dropped,
            items: crate::store::items_text(&d.items),
            updated_at: ts(d.updated_at),
        }
    }
}

row! {
    /// A row of `request_keys`.
    KeyRow, KEYS {
        key: &'a str,
        request_id: i64,
    }
}

row! {
    /// A row of `timeline`.
    TimelineRow, TIMELINE {
        request_id: i64,
        state: &'a str,
        at: i64,
        source: &'a str,
        message: &'a str,
        /// JSON text, in the timeline's blob.
        details: Slice,
        episode: Option<&'a str>,
        late: bool,
        remark: bool,
        event_id: Option<&'a str>,
    }
}

impl<'a> TimelineRow<'a> {
    pub fn new(request_id: i64, e: &'a TimelineEntry, event_id: Option<&'a str>, details: Slice) -> Self {
        Self {
            request_id,
            state: e.state.as_str(),
            at: ts(e.at),
            source: &e.source,
            message: &e.message,
            details,
            episode: e.episode.as_deref(),
            late: e.late,
            remark: e.remark,
            event_id,
        }
    }
}

row! {
    /// A row of `outbox`.
    OutboxRow, OUTBOX {
        subject: &'a str,
        msg_id: &'a str,
        traceparent: Option<&'a str>,
        /// In the outbox's blob.
        payload: Slice,
    }
}

row! {
    /// A row of `processed_events`.
    ProcessedRow, PROCESSED {
        event_id: &'a str,
        subject: &'a str,
        processed_at: i64,
        outcome: &'a str,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The number of values a row serializes to.
    fn width<T: Serialize>(row: &T) -> usize {
        match serde_json::to_value(row).expect("row") {
            serde_json::Value::Array(values) => values.len(),
            other => panic!("a row is an array, not {other}"),
        }
    }

    #[test]
    fn every_row_is_an_array_of_its_columns() {
        let at = time::OffsetDateTime::UNIX_EPOCH;
        let req = Request::new(shared::events::MediaType::Movie, "Dune".into(), "jellyseerr", at);
        let item = Item::new(at);
        let download = Download::new("torrent", at);
        assert_eq!(width(&RequestRow::new(&req, "requested", Slice(1, 2)).unwrap()), REQUESTS.len());
        assert_eq!(width(&ItemRow::new(1, 0, 0, &item)), ITEMS.len());
        assert_eq!(width(&DownloadRow::new(1, "ab", &download)), DOWNLOADS.len());
        assert_eq!(width(&KeyRow { key: "k", request_id: 1 }), KEYS.len());
        let entry = TimelineRow {
            request_id: 1,
            state: "requested",
            at: 0,
            source: "s",
            message: "m",
            details: Slice(1, 2),
            episode: None,
            late: false,
            remark: false,
            event_id: None,
        };
        assert_eq!(width(&entry), TIMELINE.len());
        assert_eq!(
            width(&OutboxRow { subject: "s", msg_id: "m", traceparent: None, payload: Slice(1, 0) }),
            OUTBOX.len()
        );
        assert_eq!(
            width(&ProcessedRow { event_id: "e", subject: "s", processed_at: 0, outcome: "o" }),
            PROCESSED.len()
        );
        assert_eq!(REQUESTS.len(), 40);
        assert_eq!(serde_json::to_string(&KeyRow { key: "k", request_id: 7 }).unwrap(), r#"["k",7]"#);
    }

    #[test]
    fn the_statement_reads_every_column_of_every_row() {
        for (table, columns) in [
            ("requests", REQUESTS),
            ("items", ITEMS),
            ("downloads", DOWNLOADS),
            ("request_keys", KEYS),
            ("timeline", TIMELINE),
            ("outbox", OUTBOX),
            ("processed_events", PROCESSED),
        ] {
            let statement = SQL.split(";\n").find(|s| s.contains(&format!("INTO {table} "))).expect(table);
            assert!(statement.contains(&format!("({})", columns.join(", "))), "{table}: columns in their order");
            for (i, column) in columns.iter().enumerate() {
                let sliced = |kind| format!("CAST(substr(?, value->>'$[{i}][0]', value->>'$[{i}][1]') AS {kind})");
                let read = match *column {
                    "summary" | "details" => sliced("TEXT"),
                    "payload" => sliced("BLOB"),
                    _ => format!("value->>{i}"),
                };
                assert!(
                    statement.contains(&format!("{read},")) || statement.contains(&format!("{read} ")),
                    "{table}.{column}"
                );
            }
            let beyond = columns.len();
            assert!(!statement.contains(&format!("value->>{beyond} ")), "{table}: no value beyond the row");
            let sliced = columns.iter().filter(|c| SLICED.iter().any(|(name, _)| name == *c)).count();
            assert!(sliced <= 1, "{table}: one blob at most");
        }
        assert_eq!(REQUESTS.last(), Some(&"summary"));
        assert!(TIMELINE.contains(&"details"));
        assert!(SQL.contains(
            "CAST(substr(?, value->>'$[3][0]', value->>'$[3][1]') AS BLOB) FROM jsonb_each(?) WHERE true RETURNING id"
        ));
        assert_eq!(
            SQL.matches('?').count(),
            11,
            "one parameter per table, the blobs of summaries, details and payloads, and the outbox's published id"
        );
        assert!(SQL.ends_with(";\nDELETE FROM outbox WHERE id <= ?"), "the delete comes after the outbox insert");
    }

    #[test]
    fn values_are_sliced_from_the_blob_counted_from_one() {
        let mut blob = Blob::default();
        let a = blob.push_json(&serde_json::json!({ "a": "\"x\"" })).unwrap();
        let b = blob.push_json("é").unwrap();
        let c = blob.push(&[0, 255]);
        assert_eq!(serde_json::to_string(&(a, b, c)).unwrap(), "[[1,13],[14,4],[18,2]]");
        assert_eq!(blob.into_bytes(), [r#"{"a":"\"x\""}"é""#.as_bytes(), &[0, 255]].concat());
    }
}
