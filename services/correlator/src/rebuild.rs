//! `status-tracker correlator --rebuild`: replays the `MEDIA` stream (the source of truth)
//! into a fresh database, then puts it in place of the old one (kept as a backup).
//!
//! What is rebuilt is exactly what the live correlator would have built from the same facts:
//! the same processor applies them, in stream order. `MEDIA_PROGRESS` keeps only the latest
//! progress of each torrent, so a download's progress is its latest value and its
//! "Downloading" entry carries the time of that value.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use futures_util::StreamExt;
use shared::Bus;
use shared::subjects;
use time::OffsetDateTime;

use crate::correlate::Processor;
use crate::store::{self, Store};

/// What a rebuild did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Report {
    pub events: u64,
    pub undecodable: u64,
    pub requests: u64,
}

/// Rebuilds `database` from NATS. The live correlator must not be running.
pub async fn rebuild(database: &Path, bus: &Bus, processor: &Processor) -> anyhow::Result<Report> {
    let fresh = sibling(database, "rebuild");
    remove_db(&fresh)?;
    let store = Store::open(&fresh).await.context("creating the new database")?;
    let mut report = Report::default();
    let sources = [
        (subjects::STREAM_MEDIA, subjects::MEDIA_ALL, DeliverPolicy::All),
        (subjects::STREAM_MEDIA_PROGRESS, subjects::QBIT_PROGRESS_ALL, DeliverPolicy::LastPerSubject),
    ];
    for (stream, filter, deliver) in sources {
        replay(&store, bus, processor, stream, filter, deliver, &mut report).await?;
    }
    // The outbox holds every intermediate state of the replay: nobody wants those as news.
    // Publish each request's current state once instead.
    sqlx::query("DELETE FROM outbox").execute(store.writer()).await?;
    report.requests = announce(&store).await?;
    if !crate::consumer::publish_outbox(bus, &store).await {
        tracing::warn!("state messages of the rebuild not all published yet; the correlator retries them");
    }
    store.close().await;

    if database.exists() {
        let stamp = OffsetDateTime::now_utc().unix_timestamp();
        let backup = sibling(database, &format!("bak-{stamp}"));
        move_db(database, &backup)?;
        tracing::info!(backup = %backup.display(), "previous database kept");
    }
    move_db(&fresh, database)?;
    tracing::info!(events = report.events, requests = report.requests, "database rebuilt from NATS");
    Ok(report)
}

async fn replay(
    store: &Store,
    bus: &Bus,
    processor: &Processor,
    stream: &str,
    filter: &str,
    deliver_policy: DeliverPolicy,
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut info_stream = bus.js.get_stream(stream).await?;
    let pending = info_stream.info().await?.state.messages;
    if pending == 0 {
        return Ok(());
    }
    let consumer = info_stream
        .create_consumer(OrderedConfig { filter_subject: filter.to_owned(), deliver_policy, ..Default::default() })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut tx = store.begin().await?;
    let mut in_tx = 0;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(2), messages.next()).await;
        let Ok(Some(msg)) = next else { break };
        let msg = msg?;
        let pending_after = msg.info().map(|i| i.pending).unwrap_or(0);
        match crate::correlate::decode_fact(&msg.payload) {
            Ok(mut env) => {
                processor.enrich(&mut env).await;
                processor.process(&mut tx, &env, &msg.subject).await?;
                report.events += 1;
            }
            Err(error) => {
                tracing::warn!(subject = %msg.subject, %error, "undecodable message skipped");
                report.undecodable += 1;
            }
        }
        in_tx += 1;
        if in_tx == 500 || pending_after == 0 {
            tx.commit().await?;
            tx = store.begin().await?;
            in_tx = 0;
        }
        if pending_after == 0 {
            break;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Queues `tracker.request.<id>.<state>` with each request's rebuilt snapshot.
async fn announce(store: &Store) -> anyhow::Result<u64> {
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM requests ORDER BY id").fetch_all(store.pool()).await?;
    let stamp = OffsetDateTime::now_utc().unix_timestamp();
    for &id in &ids {
        let id = shared::ids::RequestId(id);
        let Some(detail) = store::detail(store.pool(), id, None).await? else { continue };
        let state = detail.summary.state;
        let change = shared::model::RequestChange {
            request: detail,
            previous_state: None,
            event_id: None,
            timeline_added: Vec::new(),
        };
        let subject = subjects::request_state(id, state.as_str());
        let envelope =
            shared::Envelope::new(format!("rebuild-{stamp}:{id}"), "/status-tracker/correlator", &subject, change)
                .with_subject(Some(format!("request:{id}")));
        let mut conn = store.writer().acquire().await?;
        store::push_outbox(&mut conn, &subject, &envelope.id, &serde_json::to_vec(&envelope)?, None).await?;
    }
    Ok(ids.len() as u64)
}

fn sibling(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    db.with_file_name(name)
}

/// A SQLite database is up to three files.
fn db_files(db: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut s = db.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    [db.to_owned(), with("-wal"), with("-shm")]
}

fn remove_db(db: &Path) -> std::io::Result<()> {
    for f in db_files(db) {
        match std::fs::remove_file(&f) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

fn move_db(from: &Path, to: &Path) -> std::io::Result<()> {
    for (a, b) in db_files(from).iter().zip(db_files(to).iter()) {
        if a.exists() {
            std::fs::rename(a, b)?;
        }
    }
    Ok(())
}
