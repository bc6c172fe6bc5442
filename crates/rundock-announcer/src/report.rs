//! The announcer's state file ([`rundock_spec::state::AnnouncerState`]): what it knows
//! that etcd and Docker do not say, for `rundock status` and `rundock metrics`.
//!
//! When it is written: at once when something a reader acts on changes (a check passes
//! or fails, its error, maintenance, what is published, the start or end of an etcd
//! outage); the numbers that move on every probe or refresh (latencies, the error
//! count, the last refresh time) ride along, and on their own are flushed at most every
//! [`FLUSH_EVERY`]. So a healthy service costs one small write per `FLUSH_EVERY` at
//! most, and `last_refresh_at` is never older than that plus the refresh interval.

use rundock_spec::state::{self, AnnouncerState, CheckState};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How stale the moving numbers in the file may get.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(10);

pub(crate) struct Report {
    path: PathBuf,
    latencies: Vec<Option<f64>>,
    errors: Vec<Option<String>>,
    etcd_errors: u64,
    last_refresh_at: Option<u64>,
    started_at: u64,
    written: Option<(AnnouncerState, Instant)>,
    write_failed: bool,
}

impl Report {
    pub(crate) fn new(path: PathBuf, checks: usize) -> Report {
        Report {
            path,
            latencies: vec![None; checks],
            errors: vec![None; checks],
            etcd_errors: 0,
            last_refresh_at: None,
            started_at: state::unix_now(),
            written: None,
            write_failed: false,
        }
    }

    pub(crate) fn probed(&mut self, check: usize, latency: Duration, error: Option<String>) {
        self.latencies[check] = Some((latency.as_secs_f64() * 1e6).round() / 1e6);
        self.errors[check] = error;
    }

    /// A new container run: earlier probe errors say nothing about it.
    pub(crate) fn new_run(&mut self) {
        self.errors.iter_mut().for_each(|e| *e = None);
    }

    pub(crate) fn etcd_failed(&mut self) {
        self.etcd_errors = self.etcd_errors.saturating_add(1);
    }

    pub(crate) fn refreshed(&mut self) {
        self.last_refresh_at = Some(state::unix_now());
    }

    /// The file's contents for the announcer's current view.
    pub(crate) fn state(&self, view: View<'_>) -> AnnouncerState {
        AnnouncerState {
            published: view.published.map(str::to_string),
            withdrawn_because: view.withdrawn_because,
            maintenance: view.maintenance,
            checks: view
                .checks
                .iter()
                .zip(view.descriptions)
                .enumerate()
                .map(|(i, (pass, check))| CheckState {
                    check: check.clone(),
                    pass: *pass,
                    error: if *pass == Some(false) {
                        self.errors[i].clone()
                    } else {
                        None
                    },
                    latency_secs: self.latencies[i],
                })
                .collect(),
            last_refresh_at: self.last_refresh_at,
            etcd_error: view.etcd_error.map(str::to_string),
            etcd_errors: self.etcd_errors,
            started_at: self.started_at,
            replacements: view.replacements,
            last_replacement: view.last_replacement.cloned(),
            replace_backoff_until: view.replace_backoff_until,
        }
    }

    /// Writes the file if [`needs_write`] says so; a failure is logged by the caller
    /// once (returned the first time only).
    pub(crate) fn save(&mut self, view: View<'_>) -> Option<std::io::Error> {
        let now = Instant::now();
        let next = self.state(view);
        let written = self.written.as_ref().map(|(s, at)| (s, now - *at));
        if !needs_write(written, &next) {
            return None;
        }
        match state::write(&self.path, &next) {
            Ok(()) => {
                self.written = Some((next, now));
                self.write_failed = false;
                None
            }
            Err(e) => {
                // Retried on the next change; logged once.
                let first = !self.write_failed;
                self.write_failed = true;
                self.written = Some((next, now));
                first.then_some(e)
            }
        }
    }
}

/// The announcer's own view, borrowed for one write.
pub(crate) struct View<'a> {
    pub published: Option<&'a str>,
    pub withdrawn_because: Option<String>,
    pub maintenance: bool,
    pub checks: &'a [Option<bool>],
    pub descriptions: &'a [String],
    pub etcd_error: Option<&'a str>,
    /// The liveness rule's replacements (see [`crate::liveness`]).
    pub replacements: u64,
    pub last_replacement: Option<&'a rundock_spec::state::ReplaceRequest>,
    pub replace_backoff_until: Option<u64>,
}

/// Whether `next` must be written, given what was written and how long ago.
pub(crate) fn needs_write(
    written: Option<(&AnnouncerState, Duration)>,
    next: &AnnouncerState,
) -> bool {
    let Some((last, age)) = written else {
        return true;
    };
    if last == next {
        return false;
    }
    significant(last) != significant(next) || age >= FLUSH_EVERY
}

/// The state without the numbers that move on their own.
fn significant(state: &AnnouncerState) -> AnnouncerState {
    AnnouncerState {
        checks: state
            .checks
            .iter()
            .map(|c| CheckState {
                latency_secs: None,
                ..c.clone()
            })
            .collect(),
        last_refresh_at: None,
        etcd_errors: 0,
        ..state.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(pass: Option<bool>, latency: f64, refresh: u64) -> AnnouncerState {
        AnnouncerState {
            published: pass.filter(|p| *p).map(|_| "{}".into()),
            checks: vec![CheckState {
                check: "tcp :1".into(),
                pass,
                error: None,
                latency_secs: Some(latency),
            }],
            last_refresh_at: Some(refresh),
            ..Default::default()
        }
    }

    #[test]
    fn changes_are_written_at_once_and_moving_numbers_at_most_every_flush() {
        let healthy = state(Some(true), 0.002, 100);
        assert!(needs_write(None, &healthy));
        let fresh = Duration::from_secs(1);
        assert!(!needs_write(Some((&healthy, fresh)), &healthy));
        // A new latency or refresh time alone waits for FLUSH_EVERY...
        let moved = state(Some(true), 0.003, 107);
        assert!(!needs_write(Some((&healthy, fresh)), &moved));
        assert!(needs_write(Some((&healthy, FLUSH_EVERY)), &moved));
        // ...a failing check does not.
        let failing = state(Some(false), 0.003, 100);
        assert!(needs_write(Some((&healthy, fresh)), &failing));
    }

    #[test]
    fn the_error_is_shown_only_while_the_check_fails() {
        let dir = std::env::temp_dir().join(format!("rundock-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut report = Report::new(dir.join("s.json"), 1);
        report.probed(0, Duration::from_micros(1500), Some("refused".into()));
        let descriptions = ["tcp :1".to_string()];
        let failing = report.state(View {
            published: None,
            withdrawn_because: Some("health check failing".into()),
            maintenance: false,
            checks: &[Some(false)],
            descriptions: &descriptions,
            etcd_error: None,
            replacements: 0,
            last_replacement: None,
            replace_backoff_until: None,
        });
        assert_eq!(failing.checks[0].error.as_deref(), Some("refused"));
        assert_eq!(failing.checks[0].latency_secs, Some(0.0015));
        assert!(report
            .save(View {
                published: None,
                withdrawn_because: None,
                maintenance: false,
                checks: &[Some(true)],
                descriptions: &descriptions,
                etcd_error: None,
                replacements: 0,
                last_replacement: None,
                replace_backoff_until: None,
            })
            .is_none());
        let saved: AnnouncerState = state::read(&dir.join("s.json")).unwrap();
        assert_eq!(saved.checks[0].pass, Some(true));
        assert_eq!(saved.checks[0].error, None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
