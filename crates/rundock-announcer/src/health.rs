//! Health checks: one task per check, probing while the container runs.
//!
//! Each check probes at its own `interval`, each probe bounded by its `timeout`. The
//! decisions, and why:
//! * A probe starts as soon as the container (re)starts, and until the first pass after
//!   a start the check probes every `min(interval, 1 s)`: a service that is ready gets
//!   announced within about a second, not a whole interval later. Once passing, it
//!   probes at `interval`.
//! * One failed probe withdraws the record at once (no failure threshold): a client
//!   sent to a broken instance costs more than one re-announce after a blip.
//! * Results carry the container generation they probed; the announcer drops results of
//!   an earlier run, so a probe in flight when the container died cannot announce the
//!   next run before its own probes pass.
//! * The probe itself (and why a `tcp` check reads the container's TCP table) is
//!   [`rundock_docker::probe`], shared with start-first updates.

use bollard::Docker;
use rundock_docker::probe::{probe, Target};
use rundock_spec::HealthCheck;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// One probe's outcome.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub check: usize,
    pub generation: u64,
    /// `Err(why)` when the probe failed.
    pub result: Result<(), String>,
    /// How long the probe took (up to its timeout).
    pub latency: Duration,
}

pub(crate) struct Prober {
    pub index: usize,
    pub check: HealthCheck,
    pub container: String,
    pub target: watch::Receiver<Target>,
    pub docker: watch::Receiver<Option<Docker>>,
    pub http: reqwest::Client,
    pub tx: mpsc::Sender<Outcome>,
}

impl Prober {
    pub async fn run(mut self) {
        let interval = Duration::from_secs(self.check.interval.max(1) as u64);
        let fast = interval.min(Duration::from_secs(1));
        let mut passed_generation = None;
        loop {
            let target = self.target.borrow_and_update().clone();
            let generation = target.view.generation;
            if !target.view.running {
                // Nothing to probe until it runs again.
                if self.target.changed().await.is_err() {
                    return;
                }
                continue;
            }
            let probed = std::time::Instant::now();
            let docker = self.docker.borrow().clone();
            let result = probe(&self.check, &target, &self.container, docker, &self.http).await;
            if result.is_ok() {
                passed_generation = Some(generation);
            }
            let outcome = Outcome {
                check: self.index,
                generation,
                result,
                latency: probed.elapsed(),
            };
            if self.tx.send(outcome).await.is_err() {
                return;
            }
            let wait = if passed_generation == Some(generation) {
                interval
            } else {
                fast
            };
            // A new run of the container is probed at once.
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                changed = self.target.changed() => if changed.is_err() { return },
            }
        }
    }
}
