//! Crash-loop back-off across supervisor runs.
//!
//! Each run of the supervisor is one life of the container and runsv starts the next, so
//! the count of short lives in a row has to survive the process: it lives in a small JSON
//! file in the working directory, replaced atomically (temp file + rename) so a kill
//! mid-write never leaves half a file. A missing or unreadable file means "no failures":
//! the worst case is one restart without delay.
//!
//! A life shorter than [`STABLE_AFTER`] (or a run that failed before the container ran)
//! adds one failure; a longer life resets the count, so a container that dies after
//! running a while is back at once. The delay before a start is 0 after no failures,
//! then 1 s, doubling up to [`MAX_DELAY`]. runsv adds its own 1 s pause when `run` lasted
//! less than a second.

use rundock_runtime::Backoff;
use std::path::Path;
use std::time::Duration;

/// A container that stayed up this long was not crash-looping.
pub(crate) const STABLE_AFTER: Duration = Duration::from_secs(10);
/// The first delay, after one short life.
pub(crate) const BASE_DELAY: Duration = Duration::from_secs(1);
/// The delay never grows beyond this.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(30);
const CRASH_BACKOFF: Backoff = Backoff::new(BASE_DELAY, MAX_DELAY);

/// The state file's contents (shared with `rundock status`, which reads it).
pub(crate) type State = rundock_spec::state::SupervisorState;

/// How long to wait before starting the container after `failures` short lives.
pub(crate) fn delay(failures: u32) -> Duration {
    match failures {
        0 => Duration::ZERO,
        n => CRASH_BACKOFF.nth_delay(n - 1),
    }
}

/// The failure count after a run: `uptime` is how long the container ran, `None` when the
/// run failed before it ran at all.
pub(crate) fn after_run(failures: u32, uptime: Option<Duration>) -> u32 {
    match uptime {
        Some(up) if up >= STABLE_AFTER => 0,
        _ => failures.saturating_add(1),
    }
}

/// The state to save after a run: the new failure count, the delay it implies, and
/// (`exit`: the container exited on its own with this code) one more restart.
pub(crate) fn next_state(previous: &State, failures: u32, exit: Option<i64>, now: u64) -> State {
    let delay = delay(failures);
    let mut next = State {
        failures,
        backoff_secs: delay.as_secs_f64(),
        backoff_until: (!delay.is_zero()).then(|| now + delay.as_secs()),
        waiting_for: Vec::new(),
        post_start_done: None,
        ..previous.clone()
    };
    if let Some(code) = exit {
        next.exits = next.exits.saturating_add(1);
        next.last_exit_code = Some(code);
        next.last_exit_at = Some(now);
    }
    next
}

/// The saved state; missing or unreadable counts as no failures.
pub(crate) fn load(path: &Path) -> State {
    rundock_spec::state::read(path).unwrap_or_default()
}

/// Replaces the state file atomically: write a temp file beside it, then rename.
pub(crate) fn save(path: &Path, state: &State) -> std::io::Result<()> {
    rundock_spec::state::write(path, state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_from_one_second_to_the_cap() {
        let secs: Vec<u64> = (0..9).map(|n| delay(n).as_secs()).collect();
        assert_eq!(secs, [0, 1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(delay(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn short_lives_count_and_a_stable_one_resets() {
        assert_eq!(after_run(0, Some(Duration::from_millis(300))), 1);
        assert_eq!(after_run(3, None), 4);
        assert_eq!(after_run(5, Some(STABLE_AFTER)), 0);
        assert_eq!(after_run(u32::MAX, None), u32::MAX);
    }

    #[test]
    fn exits_count_restarts_and_the_delay_is_recorded() {
        let first = next_state(&State::default(), 1, Some(137), 1000);
        assert_eq!(first.exits, 1);
        assert_eq!(first.last_exit_code, Some(137));
        assert_eq!(first.last_exit_at, Some(1000));
        assert_eq!(first.backoff_secs, 1.0);
        assert_eq!(first.backoff_until, Some(1001));
        // A failed run (no exit) keeps the restart count; a clean stop resets the delay.
        let failed = next_state(&first, 2, None, 2000);
        assert_eq!((failed.exits, failed.last_exit_code), (1, Some(137)));
        assert_eq!(failed.backoff_until, Some(2002));
        let stopped = next_state(&failed, 0, None, 3000);
        assert_eq!((stopped.backoff_secs, stopped.backoff_until), (0.0, None));
        assert_eq!(stopped.exits, 1);
    }

    #[test]
    fn state_round_trips_and_bad_files_mean_no_failures() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(load(&path), State::default());
        let four = State {
            failures: 4,
            ..State::default()
        };
        save(&path, &four).unwrap();
        assert_eq!(load(&path), four);
        std::fs::write(&path, "{not json").unwrap();
        assert_eq!(load(&path), State::default());
        // Only the state file is left: the temp file was renamed over it.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1);
    }
}
