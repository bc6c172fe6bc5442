//! The module's waits after it changed a service, from the facts the service's
//! processes leave (state files, Docker, etcd): [`await_update`] for a start-first
//! update's outcome, [`wait_ready`] for `wait: true` (the container runs the new spec,
//! its record is announced, its watch rendered). A failure names what did not happen
//! and where its log is.
//!
//! Why here and not in the binary: these only read what others write, as `rundock
//! status` does, and the binary stays the thin wiring of commands to crates.

use anyhow::{bail, Context};
use rundock_runit::log_dir;
use rundock_spec::skydns::record_key;
use rundock_spec::state::{
    self, AnnouncerState, FailureKind, SupervisorState, UpdateOutcome, WatchState,
};
use rundock_spec::tree::{ANNOUNCE_SERVICE, CONTAINER_SERVICE, WATCH_SERVICE};
use rundock_spec::{Spec, StartFirst, UPDATE_FILE};
use std::path::Path;
use std::time::{Duration, Instant};

/// How often the update's outcome is looked for.
const OUTCOME_POLL: Duration = Duration::from_millis(100);
/// How often readiness is looked at again.
const READY_POLL: Duration = Duration::from_millis(250);
/// How long one etcd read of the record may take.
const RECORD_LIMIT: Duration = Duration::from_secs(5);

/// Blocking: waits for the supervisor's outcome of the start-first update to `spec`
/// (the tree at `tree_dir`), within the new container's checks, the record's move, the
/// old one's drain and stop, and a minute of slack. `Err` carries the supervisor's
/// reason, or says that none came.
pub fn await_update(tree_dir: &Path, spec: &Spec) -> anyhow::Result<()> {
    let path = tree_dir.join(CONTAINER_SERVICE).join(UPDATE_FILE);
    let hash = spec.container_hash();
    let limit =
        StartFirst::timeout_of(spec.start_first) + spec.drain + spec.container.stop_timeout + 60;
    let deadline = Instant::now() + Duration::from_secs(limit.into());
    while Instant::now() < deadline {
        match state::read::<UpdateOutcome>(&path) {
            Some(outcome) if outcome.spec == hash && outcome.switched => return Ok(()),
            Some(outcome) if outcome.spec == hash => bail!("{}", outcome.message),
            _ => std::thread::sleep(OUTCOME_POLL),
        }
    }
    bail!(
        "the supervisor of {} reported no outcome of the update within {limit} s (see {})",
        spec.name,
        log_dir(spec, "container").display()
    )
}

/// Blocking: waits until `spec`'s container runs this spec, its record is in etcd and,
/// with a watch, every template rendered; at most `timeout`. Gives up early when the
/// supervisor recorded a permanent failure of this spec since the wait began.
pub fn wait_ready(spec: &Spec, timeout: Duration) -> anyhow::Result<()> {
    rundock_runtime::current_thread()?.block_on(Readiness::new(spec).wait(timeout))
}

/// What [`wait_ready`] reads, and since when.
struct Readiness<'a> {
    spec: &'a Spec,
    since: u64,
    hash: String,
}

impl<'a> Readiness<'a> {
    fn new(spec: &'a Spec) -> Readiness<'a> {
        Readiness {
            spec,
            since: state::unix_now(),
            hash: spec.container_hash(),
        }
    }

    async fn wait(&self, timeout: Duration) -> anyhow::Result<()> {
        let spec = self.spec;
        let deadline = Instant::now() + timeout;
        let mut running = false;
        let mut etcd_error = None;
        while Instant::now() < deadline {
            // Errors while things come up (Docker busy, etcd restarting) are retried.
            running = self.runs_spec().await;
            if running {
                match self.record_present().await {
                    Ok(true) if self.watch_problem().is_none() => return Ok(()),
                    Ok(_) => etcd_error = None,
                    Err(e) => etcd_error = Some(format!("{e:#}")),
                }
            } else if let Some(f) = self.failure().filter(|f| f.kind == FailureKind::Permanent) {
                // The same spec fails the same way again: no use waiting it out.
                bail!(
                    "{} failed: {} (see {})",
                    f.stage.as_str(),
                    f.message,
                    log_dir(spec, "container").display()
                );
            }
            tokio::time::sleep(READY_POLL).await;
        }
        let secs = timeout.as_secs();
        if !running {
            let why = self
                .failure()
                .map(|f| format!("; last failure: {} failed: {}", f.stage.as_str(), f.message))
                .unwrap_or_default();
            bail!(
                "the container of {} was not running the current spec within {secs} s{why} (see {})",
                spec.name,
                log_dir(spec, "container").display()
            );
        }
        if let (Some(problem), Ok(true)) = (self.watch_problem(), self.record_present().await) {
            bail!(
                "{problem}; the container of {} runs and is announced, but its watch did not render, check and reload within {secs} s (see {})",
                spec.name,
                log_dir(spec, "watch").display()
            );
        }
        bail!(
            "{}; the container of {} runs but its record was not announced within {secs} s (see {})",
            self.why_unannounced(etcd_error),
            spec.name,
            log_dir(spec, "announce").display()
        )
    }

    /// Whether the service's container runs this spec; `false` while Docker does not
    /// answer.
    async fn runs_spec(&self) -> bool {
        let limit = rundock_docker::stop_request_limit(self.spec.container.stop_timeout);
        match rundock_docker::connect(limit).await {
            Ok(docker) => rundock_docker::container::runs_spec(&docker, self.spec)
                .await
                .unwrap_or(false),
            Err(_) => false,
        }
    }

    /// Whether the service's record is in etcd (always, without an `announce` section).
    async fn record_present(&self) -> anyhow::Result<bool> {
        let (Some(announce), Some(key)) = (self.spec.announce.as_ref(), record_key(self.spec))
        else {
            return Ok(true);
        };
        let client = rundock_etcd::Client::new(&announce.etcd).context("etcd client")?;
        let entry = tokio::time::timeout(RECORD_LIMIT, client.get(&key))
            .await
            .map_err(|_| {
                anyhow::anyhow!("etcd did not answer within {} s", RECORD_LIMIT.as_secs())
            })?
            .with_context(|| format!("cannot read {key}"))?;
        Ok(entry.is_some())
    }

    /// The supervisor's last failure with this spec, recorded since the wait began.
    fn failure(&self) -> Option<state::Failure> {
        let path = self
            .spec
            .tree_dir()
            .join(CONTAINER_SERVICE)
            .join(state::SUPERVISOR_STATE_FILE);
        state::read::<SupervisorState>(&path)
            .and_then(|s| s.last_failure)
            .filter(|f| f.spec == self.hash && f.at >= self.since.saturating_sub(1))
    }

    /// With a watch: what keeps it from being ready (every template rendered from
    /// loaded records, none failing); `None` when it is, or there is no watch.
    fn watch_problem(&self) -> Option<String> {
        self.spec.watch.as_ref()?;
        let path = self
            .spec
            .tree_dir()
            .join(WATCH_SERVICE)
            .join(state::WATCH_STATE_FILE);
        let Some(watch) = state::read::<WatchState>(&path) else {
            return Some("the watch has not reported yet".into());
        };
        if !watch.records_loaded {
            return Some("the watch has not loaded the records yet".into());
        }
        watch.templates.iter().find_map(|t| {
            t.failing()
                .map(|why| format!("watch: {}: {why}", t.dest))
                .or_else(|| {
                    t.last_render_at
                        .is_none()
                        .then(|| format!("watch: {}: not rendered yet", t.dest))
                })
        })
    }

    /// Running but not announced: the first failing check, else etcd, says why.
    fn why_unannounced(&self, etcd_error: Option<String>) -> String {
        let announcer: Option<AnnouncerState> = state::read(
            &self
                .spec
                .tree_dir()
                .join(ANNOUNCE_SERVICE)
                .join(state::ANNOUNCER_STATE_FILE),
        );
        let failing = announcer.as_ref().and_then(|a| {
            a.checks.iter().find(|c| c.pass == Some(false)).map(|c| {
                format!(
                    "health check {} fails: {}",
                    c.check,
                    c.error.as_deref().unwrap_or("no reason given")
                )
            })
        });
        let etcd = etcd_error.or_else(|| announcer.as_ref().and_then(|a| a.etcd_error.clone()));
        match (failing, etcd) {
            (Some(check), _) => check,
            (None, Some(e)) => format!("etcd is unreachable: {e}"),
            (None, None) => announcer
                .and_then(|a| a.withdrawn_because)
                .unwrap_or_else(|| "the announcer has not published it".into()),
        }
    }
}
