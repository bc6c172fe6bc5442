//! The module's side of a tree's revisions: recording each spec.json it installs (with
//! the image id it resolved, who applied it and, after `wait`, how it ended) and turning
//! `rollback` into the spec to install: a kept revision's, its image pinned by id.

use crate::fsutil;
use crate::params::Request;
use anyhow::{Context, Result};
use rundock_spec::revisions::{
    AppliedBy, Outcome, Revision, Revisions, FAILED, HEALTHY, REVISIONS_FILE, REVISIONS_MODE,
    ROLLED_BACK,
};
use rundock_spec::{ImageRef, PullPolicy, Spec, SPEC_FILE};
use std::path::Path;

/// What `rollback` resolved to.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollback {
    /// The revision rolled back to.
    pub target: u64,
    /// It is the current one: nothing to do.
    pub already: bool,
}

/// Replaces `request.spec` by the spec `request.rollback` names: the kept revision's,
/// with its image pinned by id (pull `never`), so a tag moved or deleted since still
/// gives the exact image that ran. Asking for the current revision installs the spec
/// the tree has, which changes nothing.
pub fn resolve_rollback(request: &mut Request) -> Result<Option<Rollback>, String> {
    let Some(target) = request.rollback else {
        return Ok(None);
    };
    let tree_dir = &request
        .paths
        .sv_dir
        .join(format!("docker-{}", request.name));
    let revisions = Revisions::load(tree_dir)
        .map_err(|e| format!("rollback: {e}"))?
        .ok_or_else(|| {
            format!(
                "rollback: {} has no {REVISIONS_FILE}: no revision was recorded for docker-{} yet (nothing was changed)",
                tree_dir.display(),
                request.name
            )
        })?;
    let revision = revisions
        .target(target)
        .map_err(|e| format!("rollback: {e} (nothing was changed)"))?;
    let already = revisions.current == Some(revision.number)
        && crate::plan::installed_spec(tree_dir).is_some();
    let spec = if already {
        crate::plan::installed_spec(tree_dir).expect("checked above")
    } else {
        pinned_spec(revision).map_err(|e| format!("rollback: revision {}: {e}", revision.number))?
    };
    request.spec = Some(spec);
    Ok(Some(Rollback {
        target: revision.number,
        already,
    }))
}

/// The revision's spec with its image pinned to the id it ran (when known).
pub fn pinned_spec(revision: &Revision) -> Result<Spec, String> {
    let mut spec =
        Spec::from_json(&revision.spec).map_err(|e| format!("its spec does not parse: {e}"))?;
    if let Some(id) = &revision.image_id {
        // Docker's create and inspect take a local image id as the image: no registry,
        // no tag involved.
        spec.container.image = id
            .parse::<ImageRef>()
            .map_err(|e| format!("image_id: {e}"))?;
        spec.container.pull = PullPolicy::Never;
    }
    Ok(spec)
}

/// Who applies this call: the user who became root (`SUDO_USER`) or the one the module
/// runs as, and the controller's address when the call came over SSH. Ansible sends
/// neither its own user nor the controller's name to a module.
pub fn applied_by() -> AppliedBy {
    let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
    let user = env("SUDO_USER")
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name)
        })
        .or_else(|| env("USER"))
        .unwrap_or_else(|| format!("uid {}", nix::unistd::getuid()));
    let controller = env("SSH_CONNECTION")
        .or_else(|| env("SSH_CLIENT"))
        .and_then(|v| v.split_whitespace().next().map(str::to_string));
    AppliedBy { user, controller }
}

/// After a successful apply: records the tree's spec.json as a new revision when it or
/// the image id differs from the current revision's; returns the current number.
pub fn record(
    request: &Request,
    tree_dir: &Path,
    image_id: Option<String>,
    rollback: Option<&Rollback>,
    plan: &crate::plan::Plan,
) -> Result<Option<u64>> {
    let Some(spec_bytes) = fsutil::read_if_exists(&tree_dir.join(SPEC_FILE))? else {
        return Ok(None);
    };
    let spec_text = String::from_utf8_lossy(&spec_bytes).into_owned();
    let Ok(spec) = Spec::from_json(&spec_text) else {
        return Ok(None);
    };
    let mut revisions = match Revisions::load(tree_dir).map_err(anyhow::Error::msg)? {
        Some(revisions) => revisions,
        None => baseline(plan, request.history),
    };
    if let Some(current) = revisions.current_revision() {
        let same_spec = current.spec == spec_text;
        if same_spec && (image_id.is_none() || current.image_id == image_id) {
            return Ok(Some(current.number));
        }
        if same_spec && current.image_id.is_none() {
            // The id was not known when it was recorded (`present`): now it is.
            let number = current.number;
            if let Some(r) = revisions.revisions.iter_mut().find(|r| r.number == number) {
                r.image_id = image_id;
            }
            save(tree_dir, &revisions)?;
            return Ok(Some(number));
        }
    }
    let number = revisions.push(
        new_revision(&spec, spec_text, image_id, rollback, None),
        request.history,
    );
    save(tree_dir, &revisions)?;
    Ok(Some(number))
}

/// A tree installed before it kept revisions: the spec this call replaced becomes
/// revision 1, so `previous` has somewhere to go. Its image id is not known (the
/// container made from it is gone by now): a rollback to it uses its reference as is.
fn baseline(plan: &crate::plan::Plan, keep: usize) -> Revisions {
    let mut revisions = Revisions::default();
    let replaced = plan
        .writes
        .iter()
        .find(|w| w.path.file_name() == Some(SPEC_FILE.as_ref()))
        .and_then(|w| w.before.as_deref())
        .map(|b| String::from_utf8_lossy(b).into_owned());
    if let Some((text, spec)) =
        replaced.and_then(|text| Spec::from_json(&text).ok().map(|spec| (text, spec)))
    {
        revisions.push(
            Revision {
                number: 0,
                image: spec.container.image.as_str().to_string(),
                spec: text,
                image_id: None,
                applied_at: rundock_spec::state::unix_now(),
                applied_by: AppliedBy {
                    user: "(before revisions were kept)".into(),
                    controller: None,
                },
                rollback_of: None,
                outcome: None,
            },
            keep,
        );
    }
    revisions
}

/// Notes how the revision `number` ended (the `wait` result).
pub fn note_outcome(tree_dir: &Path, number: u64, waited: &Result<()>) -> Result<()> {
    let (result, reason) = match waited {
        Ok(()) => (HEALTHY, None),
        Err(e) => (FAILED, Some(format!("{e:#}"))),
    };
    note(tree_dir, number, result, reason)
}

/// Notes that revision `number` did not become ready for `reason` and the tree went
/// back to the one before it.
pub fn note_rolled_back(tree_dir: &Path, number: u64, reason: &str) -> Result<()> {
    note(tree_dir, number, ROLLED_BACK, Some(reason.to_string()))
}

fn note(tree_dir: &Path, number: u64, result: &str, reason: Option<String>) -> Result<()> {
    let Some(mut revisions) = Revisions::load(tree_dir).map_err(anyhow::Error::msg)? else {
        return Ok(());
    };
    let Some(revision) = revisions.revisions.iter_mut().find(|r| r.number == number) else {
        return Ok(());
    };
    revision.outcome = Some(Outcome {
        result: result.into(),
        reason,
        at: rundock_spec::state::unix_now(),
    });
    save(tree_dir, &revisions)
}

/// A start-first update whose new container did not take over: the old one kept
/// serving and spec.json was put back. The spec tried (`attempted`, the spec.json text
/// the plan wrote) is kept as a revision marked rolled back, beside the current one,
/// which stays current; returns its number.
pub fn record_reverted(
    request: &Request,
    tree_dir: &Path,
    attempted: &[u8],
    image_id: Option<String>,
    rollback: Option<&Rollback>,
    reason: &str,
) -> Result<Option<u64>> {
    let spec_text = String::from_utf8_lossy(attempted).into_owned();
    let Ok(spec) = Spec::from_json(&spec_text) else {
        return Ok(None);
    };
    let mut revisions = Revisions::load(tree_dir)
        .map_err(anyhow::Error::msg)?
        .unwrap_or_default();
    let number = revisions.push_reverted(
        new_revision(
            &spec,
            spec_text,
            image_id,
            rollback,
            Some(Outcome {
                result: ROLLED_BACK.into(),
                reason: Some(reason.to_string()),
                at: rundock_spec::state::unix_now(),
            }),
        ),
        request.history,
    );
    save(tree_dir, &revisions)?;
    Ok(Some(number))
}

/// The revision the tree holds now, whole (a revert goes back to it even when keeping
/// the next one would drop it).
pub fn current_revision(tree_dir: &Path) -> Option<Revision> {
    Revisions::load(tree_dir)
        .ok()
        .flatten()?
        .current_revision()
        .cloned()
}

/// The current revision's number, if the tree has one.
pub fn current(tree_dir: &Path) -> Option<u64> {
    Revisions::load(tree_dir).ok().flatten()?.current
}

fn save(tree_dir: &Path, revisions: &Revisions) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(revisions).context("revisions serialise")?;
    text.push(b'\n');
    fsutil::write_atomic(&tree_dir.join(REVISIONS_FILE), &text, REVISIONS_MODE)
}

/// A revision of `spec` (its JSON `spec_text`) applied now by this call's user; its
/// number is given when it is pushed.
fn new_revision(
    spec: &Spec,
    spec_text: String,
    image_id: Option<String>,
    rollback: Option<&Rollback>,
    outcome: Option<Outcome>,
) -> Revision {
    Revision {
        number: 0,
        spec: spec_text,
        image: spec.container.image.as_str().to_string(),
        image_id,
        applied_at: rundock_spec::state::unix_now(),
        applied_by: applied_by(),
        rollback_of: rollback.map(|r| r.target),
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_image_id_is_an_image_reference_docker_create_takes() {
        let id = format!("sha256:{}", "ab".repeat(32));
        let image: ImageRef = id.parse().unwrap();
        assert_eq!(image.as_str(), id);
    }

    #[test]
    fn applied_by_names_a_user() {
        assert!(!applied_by().user.is_empty());
    }
}
