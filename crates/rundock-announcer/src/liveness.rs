//! The liveness rule (`unhealthy_after`): a container that passed all its checks once
//! and then fails one of them `unhealthy_after` rounds in a row is replaced, not just
//! withdrawn.
//!
//! The gate (see [`crate::announcer`]) withdraws the record on the first failed probe;
//! this rule decides something slower and heavier, so it is kept apart:
//! * A round is one probe of one check; each check counts its own failures in a row
//!   (checks have their own intervals), and a pass sets the count back to 0.
//! * Only a container that was healthy once (every check passed at the same time) is
//!   replaced: one that never got there is the start path's business (the supervisor's
//!   crash back-off), and replacing it here would fight that.
//! * Replacements back off: the first is asked for at once, the next not before
//!   [`FIRST_DELAY`] later, doubling up to [`MAX_DELAY`], so a service whose dependency
//!   is down is not restarted every few seconds. Healthy for [`STABLE_AFTER`] in a row
//!   resets the back-off.
//! * Not in maintenance: whoever put the service in maintenance may be looking at it.
//!
//! How the supervisor is asked: [`rundock_spec::state::REPLACE_FILE`] in its directory
//! names the container and why, then `sv hup`; the supervisor starts again, finds the
//! running container named there and replaces it by the service's update order.

use rundock_runtime::Backoff;
use rundock_spec::state::ReplaceRequest;
use std::time::Duration;
use tokio::time::Instant;

/// The wait after the first replacement before another may follow.
pub(crate) const FIRST_DELAY: Duration = Duration::from_secs(10);
/// The longest wait between two replacements.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(300);
/// Healthy this long in a row and the back-off starts over.
pub(crate) const STABLE_AFTER: Duration = Duration::from_secs(300);

pub(crate) struct Liveness {
    after: u32,
    /// Failed probes in a row, per check, of the current run.
    streaks: Vec<u32>,
    healthy_once: bool,
    healthy_since: Option<Instant>,
    backoff: Backoff,
    not_before: Option<Instant>,
    /// `not_before` as Unix seconds, for the state file.
    pub(crate) not_before_unix: Option<u64>,
    /// The container a request is backing off for (logged once per container).
    held_back_for: Option<String>,
    pub(crate) count: u64,
    pub(crate) last: Option<ReplaceRequest>,
}

impl Liveness {
    pub(crate) fn new(after: u32, checks: usize) -> Liveness {
        Liveness {
            after,
            streaks: vec![0; checks],
            healthy_once: false,
            healthy_since: None,
            backoff: Backoff::new(FIRST_DELAY, MAX_DELAY),
            not_before: None,
            not_before_unix: None,
            held_back_for: None,
            count: 0,
            last: None,
        }
    }

    /// A new run of the container (or another container): it has to be healthy anew.
    pub(crate) fn new_run(&mut self) {
        self.streaks.iter_mut().for_each(|s| *s = 0);
        self.healthy_once = false;
        self.healthy_since = None;
    }

    /// One probe's result; `checks` is every check's last result, this one included.
    pub(crate) fn probed(
        &mut self,
        check: usize,
        pass: bool,
        checks: &[Option<bool>],
        now: Instant,
    ) {
        let streak = &mut self.streaks[check];
        *streak = if pass { 0 } else { streak.saturating_add(1) };
        if checks.iter().all(|c| *c == Some(true)) {
            self.healthy_once = true;
            let since = *self.healthy_since.get_or_insert(now);
            if now - since >= STABLE_AFTER {
                self.backoff.reset();
            }
        } else {
            self.healthy_since = None;
        }
    }

    /// The check (index) that has failed `unhealthy_after` rounds in a row, if the rule
    /// applies to this run at all.
    pub(crate) fn failing_check(&self) -> Option<(usize, u32)> {
        if self.after == 0 || !self.healthy_once {
            return None;
        }
        self.streaks
            .iter()
            .enumerate()
            .find(|(_, streak)| **streak >= self.after)
            .map(|(check, streak)| (check, *streak))
    }

    /// When the next replacement may be asked for; `None`: now.
    pub(crate) fn backing_off_until(&self, now: Instant) -> Option<Instant> {
        self.not_before.filter(|at| *at > now)
    }

    /// Whether the hold-back for `container` is news (to be logged once).
    pub(crate) fn hold_back(&mut self, container: &str) -> bool {
        if self.held_back_for.as_deref() == Some(container) {
            return false;
        }
        self.held_back_for = Some(container.to_string());
        true
    }

    /// A replacement was asked for: count it and start the wait before the next.
    pub(crate) fn requested(&mut self, request: ReplaceRequest, now: Instant) {
        self.count = self.count.saturating_add(1);
        self.last = Some(request);
        self.held_back_for = None;
        let delay = self.backoff.next_delay();
        self.not_before = Some(now + delay);
        self.not_before_unix = Some(rundock_spec::state::unix_now() + delay.as_secs());
        // The same container is asked about again only after the back-off, and only
        // if it fails `unhealthy_after` more rounds (the supervisor may be restarting).
        self.streaks.iter_mut().for_each(|s| *s = 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str) -> ReplaceRequest {
        ReplaceRequest {
            container: id.into(),
            reason: "test".into(),
            at: 0,
        }
    }

    #[test]
    fn a_container_that_was_healthy_is_replaced_after_the_rounds_in_a_row() {
        let now = Instant::now();
        let mut l = Liveness::new(3, 2);
        l.probed(0, true, &[Some(true), None], now);
        assert_eq!(l.failing_check(), None);
        l.probed(1, true, &[Some(true), Some(true)], now);
        for _ in 0..2 {
            l.probed(1, false, &[Some(true), Some(false)], now);
        }
        assert_eq!(l.failing_check(), None, "two rounds are not three");
        // A pass in between starts the count over.
        l.probed(1, true, &[Some(true), Some(true)], now);
        for _ in 0..2 {
            l.probed(1, false, &[Some(true), Some(false)], now);
        }
        assert_eq!(l.failing_check(), None);
        l.probed(1, false, &[Some(true), Some(false)], now);
        assert_eq!(l.failing_check(), Some((1, 3)));
    }

    #[test]
    fn a_container_that_never_was_healthy_is_not_replaced() {
        let now = Instant::now();
        let mut l = Liveness::new(1, 2);
        // Each check passed once, never both at the same time.
        l.probed(0, true, &[Some(true), None], now);
        l.probed(0, false, &[Some(false), None], now);
        l.probed(1, true, &[Some(false), Some(true)], now);
        for _ in 0..10 {
            l.probed(0, false, &[Some(false), Some(true)], now);
        }
        assert_eq!(l.failing_check(), None);
        // Healthy once, then the next run starts from nothing again.
        l.probed(0, true, &[Some(true), Some(true)], now);
        l.new_run();
        l.probed(0, false, &[Some(false), None], now);
        assert_eq!(l.failing_check(), None);
    }

    #[test]
    fn zero_never_replaces() {
        let now = Instant::now();
        let mut l = Liveness::new(0, 1);
        l.probed(0, true, &[Some(true)], now);
        for _ in 0..100 {
            l.probed(0, false, &[Some(false)], now);
        }
        assert_eq!(l.failing_check(), None);
    }

    #[test]
    fn replacements_back_off_and_a_long_healthy_stretch_resets_it() {
        let t0 = Instant::now();
        let mut l = Liveness::new(1, 1);
        assert_eq!(l.backing_off_until(t0), None, "the first goes at once");
        l.requested(request("a"), t0);
        assert_eq!(l.backing_off_until(t0), Some(t0 + FIRST_DELAY));
        assert_eq!(l.backing_off_until(t0 + FIRST_DELAY), None);
        let t1 = t0 + FIRST_DELAY;
        l.requested(request("b"), t1);
        assert_eq!(l.backing_off_until(t1), Some(t1 + FIRST_DELAY * 2));
        let mut t = t1;
        for _ in 0..10 {
            l.requested(request("c"), t);
            let until = l.backing_off_until(t).unwrap();
            assert!(until - t <= MAX_DELAY);
            t = until;
        }
        assert_eq!(l.backing_off_until(t - MAX_DELAY), Some(t), "capped");
        assert_eq!(l.count, 12);
        // Healthy for STABLE_AFTER: the next wait is the first one again.
        l.probed(0, true, &[Some(true)], t);
        l.probed(0, true, &[Some(true)], t + STABLE_AFTER);
        let t2 = t + STABLE_AFTER;
        l.requested(request("d"), t2);
        assert_eq!(l.backing_off_until(t2), Some(t2 + FIRST_DELAY));
        assert!(l.hold_back("d"));
        assert!(!l.hold_back("d"), "said once per container");
    }
}
