//! Carries a [`Plan`] out, in the order that never lets runsvdir see half a tree:
//! files first, the link last; on the way down, stop first, unlink, then remove.

use crate::plan::{LinkChange, Plan};
use crate::{fsutil, install, runit, Hooks};
use anyhow::{Context, Result};
use rundock_spec::Spec;
use std::path::Path;
use std::time::Duration;

/// Applies `plan` for the tree at `tree_dir`; returns warnings worth showing.
pub fn apply(
    plan: &Plan,
    tree_dir: &Path,
    spec: Option<&Spec>,
    hooks: &dyn Hooks,
) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let known_spec = spec.or(plan.cleanup.as_ref());
    if let Some((source, runner)) = &plan.install_runner {
        install::install_runner(source, runner)?;
    }
    if plan.stop {
        runit::sv("down", tree_dir, runit::stop_wait_secs(known_spec))
            .context("cannot stop the service")?;
    }
    if let Some(LinkChange::Remove { link }) = &plan.link {
        std::fs::remove_file(link).with_context(|| format!("cannot remove {}", link.display()))?;
        if plan.remove_tree && !runit::wait_runsv_gone(tree_dir, Duration::from_secs(15)) {
            anyhow::bail!(
                "runsv still supervises {} 15 s after its link was removed; is runsvdir scanning {}?",
                tree_dir.display(),
                link.parent().unwrap_or(link).display()
            );
        }
    }
    for sibling in &plan.remove_siblings {
        if runit::runsv_running(sibling) {
            runit::sv("down", sibling, 30)?;
            runit::sv("exit", sibling, 5)?;
            runit::wait_runsv_gone(sibling, Duration::from_secs(10));
        }
        std::fs::remove_dir_all(sibling)
            .with_context(|| format!("cannot remove {}", sibling.display()))?;
    }
    for write in &plan.writes {
        fsutil::write_atomic(&write.path, &write.contents, write.mode)?;
    }
    if let Some(LinkChange::Create { link, target }) = &plan.link {
        // preflight::check_paths made sure the service dir exists.
        fsutil::symlink_atomic(target, link)?;
    }
    if plan.restart {
        runit::sv("restart", tree_dir, runit::stop_wait_secs(known_spec) + 30)
            .context("cannot restart the service")?;
    }
    if let (Some(switch), Some(spec)) = (&plan.switch, spec) {
        start_first(switch, tree_dir, spec, hooks)?;
    }
    if plan.start {
        runit::sv("up", tree_dir, 10).context("cannot start the service")?;
    }
    if plan.remove_tree {
        if runit::runsv_running(tree_dir) {
            // Not linked but still supervised (another runsvdir, or a stray runsv).
            runit::sv("exit", tree_dir, 5)?;
            runit::wait_runsv_gone(tree_dir, Duration::from_secs(10));
        }
        std::fs::remove_dir_all(tree_dir)
            .with_context(|| format!("cannot remove {}", tree_dir.display()))?;
    }
    if let Some(spec) = &plan.cleanup {
        if let Err(e) = hooks.remove_containers(spec) {
            warnings.push(format!(
                "could not remove the containers of {}: {e:#}",
                spec.name
            ));
        }
        if spec.announce.is_some() {
            if let Err(e) = hooks.withdraw_record(spec) {
                warnings.push(format!(
                    "could not delete the record of {}: {e:#}",
                    spec.name
                ));
            }
        }
    }
    Ok(warnings)
}

/// Asks the supervisor for a start-first update (HUP: it comes back on the new spec and
/// switches containers) and waits for the outcome; on failure the old spec goes back,
/// so the tree describes the container that still serves.
fn start_first(
    switch: &crate::plan::Switch,
    tree_dir: &Path,
    spec: &Spec,
    hooks: &dyn Hooks,
) -> Result<()> {
    let container = tree_dir.join(rundock_spec::tree::CONTAINER_SERVICE);
    let outcome = container.join(rundock_spec::UPDATE_FILE);
    match std::fs::remove_file(&outcome) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fsutil::io_error("remove", &outcome, e)),
    }
    runit::sv("hup", &container, 5).context("cannot signal the supervisor")?;
    if !switch.container_changed {
        return Ok(());
    }
    if let Err(e) = hooks.await_update(tree_dir, spec) {
        let spec_path = tree_dir.join(rundock_spec::SPEC_FILE);
        fsutil::write_atomic(&spec_path, &switch.old_spec, rundock_spec::tree::SPEC_MODE)?;
        return Err(anyhow::Error::new(SwitchFailed {
            reason: format!("{e:#}"),
        })
        .context(format!(
            "the start-first update of {} failed; the old container keeps serving and {} is back as it was",
            spec.name,
            spec_path.display()
        )));
    }
    Ok(())
}

/// A start-first update whose new container did not take over, in the supervisor's
/// words. The old container kept serving and spec.json is back as it was, so the tree
/// is where it was before the call: the caller may record the attempt as reverted.
#[derive(Debug)]
pub struct SwitchFailed {
    /// The supervisor's account of why the new container did not take over (which check failed, and
    /// how).
    pub reason: String,
}

impl std::fmt::Display for SwitchFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for SwitchFailed {}
