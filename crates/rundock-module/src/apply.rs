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
