//! The `post_start` gate: a service with a `post_start` hook is announced only once
//! the supervisor has run the hook successfully for the running container.
//!
//! The supervisor records the id of that container in its state file
//! ([`rundock_spec::state::SupervisorState::post_start_done`]) and clears it at the
//! start of every life. The gate takes part in the announcer's decision like a health
//! check that only ever passes: it reports a pass once the id in the file is the running
//! container's, and nothing before, so the record stays undecided (unannounced) while
//! the hook runs and after it failed (the supervisor then stops the container anyway).

use crate::health::Outcome;
use bollard::Docker;
use rundock_docker::probe::Target;
use rundock_spec::state::{self, SupervisorState};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How often the state file is looked at while the hook runs.
const POLL: Duration = Duration::from_millis(100);

/// What the gate is called in logs and in `rundock status`.
pub(crate) const NAME: &str = "post_start";

pub(crate) struct PostStartGate {
    pub index: usize,
    pub container: String,
    pub state_file: PathBuf,
    pub target: watch::Receiver<Target>,
    pub docker: watch::Receiver<Option<Docker>>,
    pub tx: mpsc::Sender<Outcome>,
}

impl PostStartGate {
    pub(crate) async fn run(mut self) {
        loop {
            let target = self.target.borrow_and_update().clone();
            if target.view.running && self.passed().await {
                let outcome = Outcome {
                    check: self.index,
                    generation: target.view.generation,
                    result: Ok(()),
                    latency: Duration::ZERO,
                };
                if self.tx.send(outcome).await.is_err() {
                    return;
                }
                // Passed for this run: nothing to do until the next one.
                if self.target.changed().await.is_err() {
                    return;
                }
                continue;
            }
            let wait = if target.view.running {
                POLL
            } else {
                Duration::MAX
            };
            tokio::select! {
                _ = tokio::time::sleep(wait.min(Duration::from_secs(3600))) => {}
                changed = self.target.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Whether the running container is the one the hook succeeded for.
    async fn passed(&self) -> bool {
        let Some(done) =
            state::read::<SupervisorState>(&self.state_file).and_then(|s| s.post_start_done)
        else {
            return false;
        };
        let docker = self.docker.borrow().clone();
        let Some(docker) = docker else {
            return false;
        };
        match docker.inspect_container(&self.container, None).await {
            Ok(inspected) => inspected.id.as_deref() == Some(done.as_str()),
            Err(_) => false,
        }
    }
}
