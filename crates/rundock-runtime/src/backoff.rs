//! A delay that doubles after every failure, up to a cap, and starts over after a
//! success: how rundock retries Docker, etcd and a crash-looping container without
//! hammering them while they are away, and without waiting long once they are back.

use std::time::Duration;

/// A doubling delay: `first`, `2 × first`, `4 × first`, … never above `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    next: Duration,
}

impl Backoff {
    /// A back-off whose first delay is `first`, doubling up to `cap`; `const`, so a process can
    /// keep its policy in a `const`.
    pub const fn new(first: Duration, cap: Duration) -> Backoff {
        Backoff {
            first,
            cap,
            next: first,
        }
    }

    /// The delay to wait now; the one after it is twice as long, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_within(self.cap)
    }

    /// As [`Backoff::next_delay`], with a cap of the caller's for the delays that
    /// follow: for retries whose patience depends on the error (a refused connection
    /// is retried sooner than a refused password).
    pub fn next_delay_within(&mut self, cap: Duration) -> Duration {
        let now = self.next;
        self.next = now.saturating_mul(2).min(cap);
        now
    }

    /// Waits [`Backoff::next_delay`].
    pub async fn sleep(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// After a success: the next delay is `first` again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// The delay the `n`-th [`Backoff::next_delay`] after a reset returns (from 0):
    /// for a count of failures kept elsewhere, such as a file that outlives the process.
    pub fn nth_delay(&self, n: u32) -> Duration {
        if n == 0 {
            return self.first;
        }
        // Beyond 2^31 the cap has long applied.
        self.first.saturating_mul(1u32 << n.min(31)).min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_to_the_cap_and_starts_over_after_a_reset() {
        let mut backoff = Backoff::new(100 * MS, 1000 * MS);
        let delays: Vec<_> = (0..7).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000, 1000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), 100 * MS);
    }

    #[test]
    fn nth_delay_is_what_the_sequence_gives() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let mut sequence = backoff;
        for n in 0..40 {
            assert_eq!(backoff.nth_delay(n), sequence.next_delay(), "n = {n}");
        }
        assert_eq!(backoff.nth_delay(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn a_cap_of_the_callers_bounds_the_delays_that_follow() {
        let mut backoff = Backoff::new(100 * MS, 10_000 * MS);
        let permanent: Vec<_> = (0..8).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(permanent, [100, 200, 400, 800, 1600, 3200, 6400, 10_000]);
        // The delay already promised stands; the ones after it obey the new cap.
        assert_eq!(backoff.next_delay_within(1000 * MS), 10_000 * MS);
        assert_eq!(backoff.next_delay_within(1000 * MS), 1000 * MS);
    }
}
