//! A watch backoff for clients that must come back quickly from an API server restart.

/// The backoff of hotsync's watches and the simulation's: 100 ms doubling to 3 s. An event resets it
/// only once ten seconds have passed since the last error, so that a watch that lists fine and then
/// fails again at once (a lagging watch cache answering 410) still backs off instead of relisting in
/// a tight loop.
///
/// kube's default (800 ms doubling to 30 s) is kind to a struggling API server but slow to come back
/// from a restart: a restarted kube-apiserver answers resumed watches with 410 Gone until its watch
/// cache has caught up, and each of those answers doubled the wait, so a rollout watched that way sat
/// still for half a minute after the server was back. Two watches per daemon can afford to ask more
/// often.
#[derive(Clone, Debug)]
pub struct WatchBackoff {
    next: std::time::Duration,
    last_error: Option<std::time::Instant>,
}

impl WatchBackoff {
    const MIN: std::time::Duration = std::time::Duration::from_millis(100);
    const MAX: std::time::Duration = std::time::Duration::from_secs(3);
    const QUIET: std::time::Duration = std::time::Duration::from_secs(10);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff {
            next: Self::MIN,
            last_error: None,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = std::time::Duration;

    fn next(&mut self) -> Option<std::time::Duration> {
        self.last_error = Some(std::time::Instant::now());
        let now = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(now)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        if self.last_error.is_none_or(|t| t.elapsed() >= Self::QUIET) {
            self.next = Self::MIN;
        }
    }
}

#[cfg(test)]
mod watch_backoff_tests {
    use super::WatchBackoff;
    use kube::runtime::utils::Backoff as _;
    use std::time::Duration;

    #[test]
    fn the_watch_backoff_doubles_to_three_seconds_and_an_event_right_after_an_error_does_not_reset_it(
    ) {
        let mut b = WatchBackoff::default();
        let waits: Vec<Duration> = (0..7).filter_map(|_| b.next()).collect();
        assert_eq!(
            waits,
            [100, 200, 400, 800, 1600, 3000, 3000].map(Duration::from_millis)
        );
        b.reset();
        assert_eq!(
            b.next(),
            Some(Duration::from_secs(3)),
            "an event a moment after an error"
        );
        let mut fresh = WatchBackoff::default();
        fresh.reset();
        assert_eq!(fresh.next(), Some(Duration::from_millis(100)));
    }
}
