//! `on_failure: rollback`: a changed spec that did not become ready within the module's
//! wait is taken back by the call itself, through the rollback path (the revision that
//! ran before, its image pinned by id, no pull), and the call still fails, saying what
//! failed and what runs now.
//!
//! Two ways a change fails. A start-first update whose new container never takes over
//! is undone by the supervisor already (the old container keeps serving, spec.json goes
//! back): only the attempt is recorded. Any other change (stop-first, or a start-first
//! switch that went through and then did not get announced) has replaced what ran, so
//! the revision before it is installed again and waited for like any change.

use crate::params::Request;
use crate::plan::make_plan;
use crate::revisions::{self, Rollback};
use crate::{apply, Hooks};
use anyhow::{Context, Result};
use rundock_spec::revisions::Revision;
use std::path::Path;
use std::time::Duration;

/// What a module call does when its change does not become ready (`on_failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Leave the change in place and fail.
    #[default]
    Fail,
    /// Go back to the revision that ran before the change, then fail.
    Rollback,
}

impl OnFailure {
    /// The option's spelling: `fail` or `rollback`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Fail => "fail",
            OnFailure::Rollback => "rollback",
        }
    }
}

/// How a revert went: the revision that failed, the one it went back to and the new
/// revision that installs it again (`None` when nothing had to be installed).
#[derive(Debug)]
pub struct Reverted {
    /// The number of the revision whose change did not become ready.
    pub failed: u64,
    /// The number of the revision it went back to (the one that ran before).
    pub target: u64,
    /// The new revision that installs `target` again; `None` when nothing had to be installed.
    pub revision: Option<u64>,
    /// The wait for the reinstalled revision; `Ok` when nothing was reinstalled.
    pub ready: Result<()>,
}

impl Reverted {
    /// The sentence the failed task ends with.
    pub fn describe(&self) -> String {
        let runs = match self.revision {
            Some(n) => format!("revision {n} (rollback to {})", self.target),
            None => format!("revision {} (its container kept serving)", self.target),
        };
        match &self.ready {
            Ok(()) => format!(
                "on_failure=rollback: revision {} was rolled back; {runs} runs now and is ready",
                self.failed
            ),
            Err(e) => format!(
                "on_failure=rollback: revision {} was rolled back to {runs}, which did not become ready either: {e:#}",
                self.failed
            ),
        }
    }
}

/// Puts `before` (the revision current before the call) back after revision `failed`
/// did not become ready for `reason`: installs `before`'s spec pinned by image id (by
/// the service's update order), marks `failed` rolled back, records the reinstall as a
/// rollback and waits for it up to `timeout`. An `Err` means the revert could not be
/// carried out (nothing of it was applied, or its apply failed part way).
#[allow(clippy::too_many_arguments)]
pub fn revert(
    request: &Request,
    tree_dir: &Path,
    failed: u64,
    before: &Revision,
    reason: &str,
    source: &Path,
    hooks: &dyn Hooks,
    timeout: Duration,
) -> Result<Reverted> {
    let spec = revisions::pinned_spec(before)
        .map_err(|e| anyhow::anyhow!("revision {}: {e}", before.number))?;
    let image_id = hooks
        .check_image(&spec, false)
        .with_context(|| format!("image of revision {}", before.number))?
        .id;
    let mut back = request.clone();
    back.spec = Some(spec.clone());
    let rollback = Rollback {
        target: before.number,
        already: false,
    };
    let plan = make_plan(&back, source)?;
    apply::apply(&plan, tree_dir, Some(&spec), hooks)?;
    revisions::note_rolled_back(tree_dir, failed, reason)
        .with_context(|| format!("cannot mark revision {failed} rolled back"))?;
    let revision = revisions::record(&back, tree_dir, image_id, Some(&rollback), &plan)?;
    let ready = hooks.wait_ready(&spec, timeout);
    if let Some(number) = revision {
        revisions::note_outcome(tree_dir, number, &ready)?;
    }
    Ok(Reverted {
        failed,
        target: before.number,
        revision,
        ready,
    })
}
