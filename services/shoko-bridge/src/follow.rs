//! The hub side: keep one connection open, reconnecting with exponential backoff after any
//! loss, and queue every invocation, in arrival order, for the publisher. Beside each new
//! connection, the matches Shoko made while nobody listened are read back ([`Recovery`]).
//!
//! Reading never waits for NATS: a slow or absent NATS must not stop our pings, or Shoko
//! would drop the connection and the events sent meanwhile would be lost for good. What
//! waits for NATS is bounded (`queue_max`): when the queue is full the bridge leaves the hub
//! itself, waits until NATS has taken the queue, and comes back with a catch-up, as after any
//! lost connection.

use std::future::Future;
use std::time::Duration;

use futures_util::future::OptionFuture;
use time::OffsetDateTime;
use tokio::sync::mpsc::Sender;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;

use crate::catchup::Catchup;
use crate::publish::Queued;
use crate::signalr::{Connection, HubClient, HubError};
use crate::status::Status;

/// Exponential backoff between `min` and `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self { min, max: max.max(min), next: min }
    }

    /// The wait before the next attempt; doubles each call.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// What the bridge owes the correlator: the matches made since `since`, which nobody heard.
#[derive(Debug)]
pub struct Recovery {
    catchup: Catchup,
    since: Option<OffsetDateTime>,
    /// Taken off the moment a connection was lost: a dead connection is noticed only after
    /// the server's silence, and Shoko's clock may differ from ours.
    overlap: Duration,
}

impl Recovery {
    /// At start-up the bridge does not know when it last heard Shoko: it looks back `window`.
    pub fn new(catchup: Catchup, window: Duration, overlap: Duration) -> Self {
        Self { catchup, since: Some(OffsetDateTime::now_utc() - window), overlap }
    }

    /// A connection ended: what is matched from now on is owed, unless an older debt is still
    /// open (a catch-up that failed or was cut short), which covers it.
    fn lost(&mut self) {
        self.since.get_or_insert_with(|| OffsetDateTime::now_utc() - self.overlap);
    }

    /// The catch-up owed, if any: reads the matches and queues them.
    fn run(&self, queue: Sender<Queued>, status: Status) -> Option<impl Future<Output = Outcome> + use<>> {
        let since = self.since?;
        let catchup = self.catchup.clone();
        Some(async move {
            match catchup.matched_since(since).await {
                Ok(found) => {
                    let n = found.len();
                    tracing::info!(matches = n, %since, "Shoko catch-up done");
                    status.caught_up(Ok(n));
                    for recovered in found {
                        if queue.send(Queued::Recovered(Box::new(recovered))).await.is_err() {
                            break;
                        }
                    }
                    Outcome::Done
                }
                Err(HubError::Http { status: 404 | 405, .. }) => {
                    tracing::warn!(
                        "this Shoko has no file list (Shoko 4.x): matches made while the bridge was disconnected cannot be recovered"
                    );
                    status.caught_up(Err("not supported by this Shoko version (needs 5.x)".into()));
                    Outcome::Unsupported
                }
                Err(error) => {
                    tracing::warn!(%error, "Shoko catch-up failed; it is tried again after the next reconnection");
                    status.caught_up(Err(error.to_string()));
                    Outcome::Failed
                }
            }
        })
    }
}

/// How one catch-up ended. After `Done` nothing is owed until the next loss; after
/// `Unsupported` (Shoko 4.2 has no file list) the bridge stops asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    Unsupported,
    Failed,
}

/// Connects, forwards, reconnects, until `cancel`. Dropping `queue` on return tells the
/// publisher that nothing more will come.
pub async fn follow(
    client: HubClient,
    queue: Sender<Queued>,
    status: Status,
    mut backoff: Backoff,
    mut recovery: Option<Recovery>,
    cancel: CancellationToken,
) {
    loop {
        status.connecting();
        let attempt = tokio::select! {
            _ = cancel.cancelled() => return,
            attempt = client.connect() => attempt,
        };
        let error = match attempt {
            Ok(connection) => {
                tracing::info!("connected to Shoko's SignalR hub");
                status.connected();
                backoff.reset();
                let catch_up = recovery.as_ref().and_then(|r| r.run(queue.clone(), status.clone()));
                let (ended, outcome) = pump(connection, &queue, catch_up, &cancel).await;
                if outcome == Some(Outcome::Unsupported) {
                    recovery = None;
                }
                if let Some(r) = recovery.as_mut() {
                    if outcome == Some(Outcome::Done) {
                        r.since = None;
                    }
                    r.lost();
                }
                match ended {
                    Some(error) => error,
                    None => return,
                }
            }
            Err(error) => error,
        };
        status.disconnected(&error);
        if let HubError::Backlog(queued) = error {
            tracing::warn!(queued, "Shoko events wait for NATS: leaving the hub until they are stored");
            if !drained(&queue, &cancel).await {
                return;
            }
            tracing::info!("NATS took the waiting Shoko events: reconnecting");
            continue;
        }
        let delay = backoff.next_delay();
        if error.is_unauthorized() {
            // Retrying cannot help until the key is fixed: an operator must act.
            tracing::error!(%error, retry_in = ?delay, "Shoko refused the API key");
        } else {
            tracing::warn!(%error, retry_in = ?delay, "Shoko hub connection lost or refused");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Waits until at most half of the queue is still waiting; false when cancelled first.
async fn drained(queue: &Sender<Queued>, cancel: &CancellationToken) -> bool {
    while queue.capacity() < queue.max_capacity().div_ceil(2) {
        tokio::select! {
            _ = cancel.cancelled() => return false,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    true
}

/// Moves invocations from the connection to the queue while the catch-up, if any, runs
/// beside it. Returns why the connection ended (`None` when cancelled) and how the catch-up
/// ended (`None` if it had not).
async fn pump(
    mut connection: Connection,
    queue: &Sender<Queued>,
    catch_up: Option<impl Future<Output = Outcome>>,
    cancel: &CancellationToken,
) -> (Option<HubError>, Option<Outcome>) {
    let mut running = catch_up.is_some();
    let mut catch_up = std::pin::pin!(OptionFuture::from(catch_up));
    let mut outcome = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                connection.close().await;
                return (None, outcome);
            }
            done = &mut catch_up, if running => {
                running = false;
                outcome = done;
            }
            next = connection.next_invocation() => match next {
                Ok(invocation) => {
                    tracing::debug!(target = %invocation.target, "hub invocation received");
                    match queue.try_send(Queued::Hub(invocation)) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => {
                            connection.close().await;
                            return (Some(HubError::Backlog(queue.max_capacity())), outcome);
                        }
                        // The publisher is gone, which only happens when shutting down.
                        Err(TrySendError::Closed(_)) => return (None, outcome),
                    }
                }
                Err(error) => return (Some(error), outcome),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_ceiling_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let delays: Vec<u64> = (0..5).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }
}
