//! How long to wait before the next poll: the short interval while a tracked torrent is
//! active, the idle one otherwise, and an exponential backoff while qBittorrent is away.

use std::time::Duration;

use crate::worker::PollOutcome;

/// Longest wait between two attempts while qBittorrent is unreachable.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Pacer {
    poll: Duration,
    idle: Duration,
    failures: u32,
}

impl Pacer {
    pub fn new(poll: Duration, idle: Duration) -> Self {
        Self { poll, idle, failures: 0 }
    }

    /// The wait after `outcome`; `None` means "do not poll again": the credentials were refused
    /// and only a person can fix them.
    pub fn after(&mut self, outcome: &PollOutcome) -> Option<Duration> {
        match outcome {
            PollOutcome::Polled { active, .. } => {
                self.failures = 0;
                Some(if *active { self.poll } else { self.idle })
            }
            PollOutcome::Unreachable(_) => {
                self.failures = self.failures.saturating_add(1);
                let factor = 2u32.saturating_pow(self.failures - 1);
                Some(self.poll.saturating_mul(factor).min(MAX_BACKOFF.max(self.poll)))
            }
            PollOutcome::Refused { retry, .. } => *retry,
        }
    }

    /// Consecutive failed attempts.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn polled(active: bool) -> PollOutcome {
        PollOutcome::Polled { active, torrents: 1, published: 0 }
    }

    #[test]
    fn active_torrents_poll_fast_and_idle_ones_slowly() {
        let mut p = Pacer::new(Duration::from_secs(2), Duration::from_secs(30));
        assert_eq!(p.after(&polled(true)), Some(Duration::from_secs(2)));
        assert_eq!(p.after(&polled(false)), Some(Duration::from_secs(30)));
    }

    #[test]
    fn an_unreachable_qbittorrent_is_retried_with_a_doubling_delay_then_fast_again() {
        let mut p = Pacer::new(Duration::from_secs(2), Duration::from_secs(30));
        let down = PollOutcome::Unreachable("connection refused".into());
        let waits: Vec<u64> = (0..7).map(|_| p.after(&down).unwrap().as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(p.failures(), 7);
        assert_eq!(p.after(&polled(true)), Some(Duration::from_secs(2)));
        assert_eq!(p.after(&down), Some(Duration::from_secs(2)), "the backoff starts over");
    }

    #[test]
    fn refused_credentials_stop_polling_and_a_ban_waits_it_out() {
        let mut p = Pacer::new(Duration::from_secs(2), Duration::from_secs(30));
        assert_eq!(p.after(&PollOutcome::Refused { reason: "Fails.".into(), retry: None }), None);
        let ban = Duration::from_secs(3600);
        assert_eq!(p.after(&PollOutcome::Refused { reason: "banned".into(), retry: Some(ban) }), Some(ban));
    }
}
