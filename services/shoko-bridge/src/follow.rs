//! The hub side: keep one connection open, reconnecting with exponential backoff after any
//! loss, and queue every invocation, in arrival order, for the publisher.
//!
//! Reading never waits for NATS: a slow or absent NATS must not stop our pings, or Shoko
//! would drop the connection and the events sent meanwhile would be lost for good.

use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::signalr::{Connection, HubClient, HubError, Invocation};
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

/// Connects, forwards, reconnects, until `cancel`. Dropping `queue` on return tells the
/// publisher that nothing more will come.
pub async fn follow(
    client: HubClient,
    queue: UnboundedSender<Invocation>,
    status: Status,
    mut backoff: Backoff,
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
                match pump(connection, &queue, &cancel).await {
                    Some(error) => error,
                    None => return,
                }
            }
            Err(error) => error,
        };
        status.disconnected(&error);
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

/// Moves invocations from the connection to the queue. `None` when cancelled.
async fn pump(
    mut connection: Connection,
    queue: &UnboundedSender<Invocation>,
    cancel: &CancellationToken,
) -> Option<HubError> {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                connection.close().await;
                return None;
            }
            next = connection.next_invocation() => match next {
                Ok(invocation) => {
                    tracing::debug!(target = %invocation.target, "hub invocation received");
                    if queue.send(invocation).is_err() {
                        // The publisher is gone, which only happens when shutting down.
                        return None;
                    }
                }
                Err(error) => return Some(error),
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
