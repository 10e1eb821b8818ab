//! The ingress spool: where accepted webhooks wait, on disk, while NATS is unavailable.
//!
//! Sonarr, Radarr and Jellyseerr do not retry a failed webhook, so answering 503 would lose
//! the event. Instead ingress appends it to `spool.log` (one JSON line, fsynced before the 202
//! is sent) and a background task forwards the lines in order when NATS is back. While
//! anything is spooled, new webhooks are spooled behind it, so order is kept. A crash while
//! forwarding republishes a few lines; their `Nats-Msg-Id` and the correlator's event ids make
//! that harmless.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use shared::Bus;
use tokio::sync::Notify;

/// One spooled message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub subject: String,
    pub id: String,
    /// The envelope, as it would have been published.
    pub payload: String,
    /// The webhook's trace context, so the trace goes on when the entry is forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// Lines forwarded per round before the offset is saved.
const BATCH: usize = 200;

#[derive(Debug)]
pub struct Spool {
    log: PathBuf,
    offset_file: PathBuf,
    /// The append handle; its lock also orders appends against the final truncation.
    file: Mutex<File>,
    pending: AtomicU64,
    pub(crate) wake: Notify,
}

impl Spool {
    /// Opens (creating) the spool in `dir`, dropping a torn last line a crash may have left:
    /// it was never acknowledged.
    pub fn open(dir: &Path) -> io::Result<Arc<Self>> {
        std::fs::create_dir_all(dir)?;
        let log = dir.join("spool.log");
        let offset_file = dir.join("spool.offset");
        let mut file = OpenOptions::new().create(true).read(true).append(true).open(&log)?;
        let mut content = Vec::new();
        file.read_to_end(&mut content)?;
        let complete = content.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if complete < content.len() {
            file.set_len(complete as u64)?;
            file.sync_all()?;
        }
        let offset = read_offset(&offset_file).min(complete as u64);
        let pending = content[offset as usize..complete].iter().filter(|b| **b == b'\n').count() as u64;
        Ok(Arc::new(Self {
            log,
            offset_file,
            file: Mutex::new(file),
            pending: AtomicU64::new(pending),
            wake: Notify::new(),
        }))
    }

    /// Messages waiting to be forwarded.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::SeqCst)
    }

    /// Appends an entry and makes it durable before returning.
    pub async fn append(self: &Arc<Self>, entry: Entry) -> io::Result<()> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut line = serde_json::to_vec(&entry).map_err(io::Error::other)?;
            line.push(b'\n');
            let mut file = this.file.lock().unwrap_or_else(|e| e.into_inner());
            file.write_all(&line)?;
            file.sync_data()?;
            this.pending.fetch_add(1, Ordering::SeqCst);
            Ok::<(), io::Error>(())
        })
        .await
        .map_err(io::Error::other)??;
        self.wake.notify_one();
        Ok(())
    }

    /// Forwards everything spooled, in order. Returns how many messages went out; stops at
    /// the first failure (they stay spooled).
    pub async fn drain(self: &Arc<Self>, bus: &Bus) -> anyhow::Result<u64> {
        let mut sent = 0;
        loop {
            let this = self.clone();
            let (offset, batch) = tokio::task::spawn_blocking(move || this.read_batch()).await??;
            if batch.is_empty() {
                let this = self.clone();
                if tokio::task::spawn_blocking(move || this.truncate_if_drained()).await?? {
                    return Ok(sent);
                }
                continue;
            }
            let mut end = offset;
            for (entry, len) in batch {
                let headers = shared::bus::event_headers(&entry.id, entry.traceparent.as_deref());
                let ack = bus
                    .js
                    .publish_with_headers(entry.subject.clone(), headers, entry.payload.into_bytes().into())
                    .await?;
                ack.await?;
                end += len;
                sent += 1;
                self.pending.fetch_sub(1, Ordering::SeqCst);
            }
            write_offset(&self.offset_file, end)?;
        }
    }

    /// Up to [`BATCH`] complete lines after the saved offset, with their byte lengths.
    fn read_batch(&self) -> io::Result<(u64, Vec<(Entry, u64)>)> {
        let offset = read_offset(&self.offset_file);
        let mut reader = BufReader::new(File::open(&self.log)?);
        reader.seek(SeekFrom::Start(offset))?;
        let mut out = Vec::new();
        let mut line = String::new();
        while out.len() < BATCH {
            line.clear();
            let n = reader.read_line(&mut line)? as u64;
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            match serde_json::from_str::<Entry>(&line) {
                Ok(e) => out.push((e, n)),
                Err(error) => {
                    // Only a bug could write such a line; skipping it is better than stopping.
                    tracing::error!(%error, "unreadable spool line skipped");
                    self.pending.fetch_sub(1, Ordering::SeqCst);
                    write_offset(&self.offset_file, offset + n)?;
                }
            }
        }
        Ok((offset, out))
    }

    /// Empties the log once everything in it was forwarded; false if an append came in.
    fn truncate_if_drained(&self) -> io::Result<bool> {
        let file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let len = file.metadata()?.len();
        if read_offset(&self.offset_file) < len {
            return Ok(false);
        }
        file.set_len(0)?;
        file.sync_all()?;
        write_offset(&self.offset_file, 0)?;
        Ok(true)
    }
}

fn read_offset(path: &Path) -> u64 {
    std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

fn write_offset(path: &Path, offset: u64) -> io::Result<()> {
    let tmp = path.with_extension("offset.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(offset.to_string().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: usize) -> Entry {
        Entry {
            subject: "media.radarr.grab".into(),
            id: format!("id-{i}"),
            payload: format!("{{\"n\":{i}}}"),
            traceparent: None,
        }
    }

    #[tokio::test]
    async fn entries_survive_reopening_and_a_torn_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        for i in 0..3 {
            spool.append(entry(i)).await.unwrap();
        }
        drop(spool);
        // A crash in the middle of an append leaves half a line.
        let mut f = OpenOptions::new().append(true).open(dir.path().join("spool.log")).unwrap();
        f.write_all(b"{\"subject\":\"media.rad").unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.pending(), 3);
        let (_, batch) = spool.read_batch().unwrap();
        let ids: Vec<String> = batch.into_iter().map(|(e, _)| e.id).collect();
        assert_eq!(ids, ["id-0", "id-1", "id-2"]);
    }

    #[tokio::test]
    async fn forwarding_publishes_in_order_and_empties_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let nats = shared::nats_server::EmbeddedNats::start(&dir.path().join("nats"), "nats-server").await.unwrap();
        let bus = Bus::connect(&nats.url(), "test").await.unwrap();
        bus.ensure_streams().await.unwrap();
        let spool = Spool::open(&dir.path().join("spool")).unwrap();
        for i in 0..450 {
            spool.append(entry(i)).await.unwrap();
        }
        assert_eq!(spool.drain(&bus).await.unwrap(), 450);
        assert_eq!(spool.pending(), 0);
        assert_eq!(std::fs::metadata(dir.path().join("spool/spool.log")).unwrap().len(), 0);
        let mut stream = bus.js.get_stream("MEDIA").await.unwrap();
        assert_eq!(stream.info().await.unwrap().state.messages, 450);
        let first = stream.get_raw_message(1).await.unwrap();
        let last = stream.get_raw_message(450).await.unwrap();
        assert_eq!((&first.payload[..], &last.payload[..]), (&b"{\"n\":0}"[..], &b"{\"n\":449}"[..]));
        nats.stop().await;
    }
}
