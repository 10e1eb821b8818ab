//! The loop that decides when to poll: at the pace the [`Pacer`] sets, at once when a torrent
//! becomes tracked, never after refused credentials. Alongside, it keeps the tracked set: the
//! correlator is asked at start until it answers, then every [`REFRESH`], and its request
//! snapshots correct the set in between. Restarting either side therefore loses nothing for
//! longer than one refresh.

use std::future::Future;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use shared::Bus;
use shared::model::TrackedReply;
use shared::subjects;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::client::Qbit;
use crate::pacer::Pacer;
use crate::tracked::RequestTorrents;
use crate::worker::{PollOutcome, Sink, Worker};

/// How often the correlator is asked for the whole tracked set.
pub const REFRESH: Duration = Duration::from_secs(30);
/// First retry delay while the correlator does not answer (doubling up to [`REFRESH`]).
const ASK_RETRY: Duration = Duration::from_millis(500);

/// Who knows which torrents are tracked.
pub trait Correlator: Send + Sync {
    /// The lower-case hashes of unfinished torrents of open requests.
    fn tracked(&self) -> impl Future<Output = Result<Vec<String>, String>> + Send;
}

impl Correlator for Bus {
    async fn tracked(&self) -> Result<Vec<String>, String> {
        let subject = subjects::query("tracked");
        let reply: TrackedReply =
            self.request(&subject, &serde_json::json!({}), Duration::from_secs(3)).await.map_err(|e| e.to_string())?;
        Ok(reply.hashes)
    }
}

/// Runs until `cancel` fires.
pub async fn drive<Q, S, C, Ch>(
    mut worker: Worker<Q, S>,
    correlator: C,
    changes: Ch,
    mut pacer: Pacer,
    health: shared::health::HealthCell,
    cancel: CancellationToken,
) where
    Q: Qbit,
    S: Sink,
    C: Correlator,
    Ch: Stream<Item = RequestTorrents> + Unpin,
{
    let mut changes = changes.fuse();
    let mut next_poll = Some(Instant::now());
    let mut next_ask = Instant::now();
    let mut ask_retry = ASK_RETRY;
    // A new tracked hash jumps the queue only while qBittorrent answers; during a backoff
    // or after a refusal the pace stays as it is.
    let mut answering = false;
    worker.report_tracked();
    loop {
        // Far enough to never fire, close enough not to overflow.
        let poll_at = next_poll.unwrap_or_else(|| Instant::now() + Duration::from_secs(86400 * 365));
        // Biased: tracked-set news is taken in before a poll that is due at the same time, so
        // the very first poll already knows what to publish.
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            Some(change) = changes.next() => {
                if worker.tracked.update(&change) && answering {
                    next_poll = Some(Instant::now());
                }
                worker.report_tracked();
            }
            _ = sleep_until(next_ask) => {
                match refresh(&mut worker, &correlator, &health).await {
                    Some(added) => {
                        ask_retry = ASK_RETRY;
                        next_ask = Instant::now() + REFRESH;
                        if added && answering {
                            next_poll = Some(Instant::now());
                        }
                    }
                    None => {
                        next_ask = Instant::now() + ask_retry;
                        ask_retry = (ask_retry * 2).min(REFRESH);
                    }
                }
            }
            _ = sleep_until(poll_at), if next_poll.is_some() => {
                let outcome = worker.poll_once().await;
                answering = matches!(outcome, PollOutcome::Polled { .. });
                next_poll = pacer.after(&outcome).map(|wait| Instant::now() + wait);
                let wait = next_poll.map(|at| at.duration_since(Instant::now()).as_secs_f64().round());
                health.set_detail("next_poll_in_s", wait.map_or(serde_json::Value::Null, serde_json::Value::from));
            }
        }
    }
}

/// Asks the correlator for the tracked set. `Some(true)` when the answer added a hash,
/// `None` when it did not answer.
async fn refresh<Q: Qbit, S: Sink>(
    worker: &mut Worker<Q, S>,
    correlator: &impl Correlator,
    health: &shared::health::HealthCell,
) -> Option<bool> {
    let before = worker.tracked.hashes();
    let answer = correlator.tracked().await;
    let added = match answer {
        Ok(hashes) => {
            worker.tracked.reset(hashes);
            health.set_detail("correlator", "answering");
            Some(!worker.tracked.hashes().is_subset(&before))
        }
        Err(error) => {
            tracing::debug!(%error, "correlator did not answer tracked query");
            health.set_detail("correlator", format!("not answering: {error}"));
            None
        }
    };
    worker.report_tracked();
    added
}

/// The request snapshots on `tracker.request.>` as [`RequestTorrents`]; messages that are
/// not about torrents (or not readable) are skipped.
pub fn request_changes(sub: async_nats::Subscriber) -> impl Stream<Item = RequestTorrents> + Unpin {
    sub.filter_map(|msg| {
        let decoded = RequestTorrents::decode(msg.subject.as_str(), &msg.payload);
        if decoded.is_none() {
            tracing::debug!(subject = %msg.subject, "request message without torrents to follow");
        }
        std::future::ready(decoded)
    })
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
