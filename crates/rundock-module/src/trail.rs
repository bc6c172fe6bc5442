//! The module's side of the audit trail: the revisions a call made become trail entries
//! (from what ran before to what runs now, with the outcome), queued in the tree's
//! `trail-pending.json` and sent to etcd through [`crate::Hooks::send_trail`] at the end
//! of the call. What etcd does not take stays queued and goes with the service's next
//! call. Only announced services have one (the trail lives in their etcd).

use crate::fsutil;
use anyhow::{Context, Result};
use rundock_spec::revisions::{Revision, Revisions};
use rundock_spec::trail::{TrailEntry, TrailImage, PENDING_FILE, PENDING_MODE};
use rundock_spec::Spec;
use std::path::{Path, PathBuf};

/// The revisions one call made, in order, and what ran before them.
#[derive(Debug, Default)]
pub struct Trail {
    tree_dir: Option<PathBuf>,
    before: Option<Revision>,
    numbers: Vec<u64>,
}

impl Trail {
    /// The call acts on the tree at `tree_dir`, where `before` ran.
    pub fn begin(&mut self, tree_dir: &Path, before: Option<Revision>) {
        self.tree_dir = Some(tree_dir.to_path_buf());
        self.before = before;
    }

    /// The call made (or ended) revision `number`.
    pub fn add(&mut self, number: u64) {
        if !self.numbers.contains(&number) && self.before.as_ref().map(|b| b.number) != Some(number)
        {
            self.numbers.push(number);
        }
    }

    /// Queues the entries of this call's revisions and sends everything queued; a
    /// warning when something stays queued.
    pub fn finish(self, hooks: &dyn crate::Hooks) -> Option<String> {
        let tree_dir = self.tree_dir.as_ref()?;
        let spec = crate::plan::installed_spec(tree_dir)?;
        let announce = spec.announce.as_ref()?;
        let mut pending = load_pending(tree_dir).unwrap_or_default();
        let queued_before = pending.len();
        if !self.numbers.is_empty() {
            let revisions = Revisions::load(tree_dir).ok().flatten().unwrap_or_default();
            let mut from = self.before.as_ref().map(image_of);
            for number in &self.numbers {
                let Some(revision) = revisions.get(*number) else {
                    continue;
                };
                let entry = entry(&spec, &announce.domain, revision, from.take());
                from = Some(entry.to.clone());
                pending.push(entry);
            }
        }
        if pending.is_empty() {
            return None;
        }
        let (sent, error) = hooks.send_trail(&spec, &pending);
        let added = pending.len() - queued_before;
        let left = pending.split_off(sent.min(pending.len()));
        // A call that neither sent nor added an entry leaves the queue's file as it was
        // (a call that changes nothing writes nothing).
        if sent > 0 || added > 0 {
            if let Err(e) = save_pending(tree_dir, &left) {
                return Some(format!("trail: {e:#}"));
            }
        }
        error.map(|e| {
            format!(
                "trail: {} entr{} kept in {} for the next call: {e}",
                left.len(),
                if left.len() == 1 { "y" } else { "ies" },
                tree_dir.join(PENDING_FILE).display()
            )
        })
    }
}

fn image_of(revision: &Revision) -> TrailImage {
    TrailImage {
        image: revision.image.clone(),
        image_id: revision.image_id.clone(),
    }
}

fn entry(spec: &Spec, domain: &str, revision: &Revision, from: Option<TrailImage>) -> TrailEntry {
    let (outcome, reason) = match &revision.outcome {
        Some(o) => (o.result.clone(), o.reason.clone()),
        None => ("-".to_string(), None),
    };
    TrailEntry {
        service: spec.name.clone(),
        domain: domain.to_string(),
        host: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        host_label: spec.host_label.clone(),
        revision: revision.number,
        rollback_of: revision.rollback_of,
        from,
        to: image_of(revision),
        user: revision.applied_by.user.clone(),
        controller: revision.applied_by.controller.clone(),
        at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        outcome,
        reason,
    }
}

/// The entries queued in the tree.
pub fn load_pending(tree_dir: &Path) -> Result<Vec<TrailEntry>> {
    let path = tree_dir.join(PENDING_FILE);
    match fsutil::read_if_exists(&path)? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} does not parse", path.display())),
        None => Ok(Vec::new()),
    }
}

fn save_pending(tree_dir: &Path, entries: &[TrailEntry]) -> Result<()> {
    let path = tree_dir.join(PENDING_FILE);
    if entries.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(fsutil::io_error("remove", &path, e))
            }
            _ => Ok(()),
        };
    }
    let mut text = serde_json::to_vec_pretty(entries).context("trail entries serialise")?;
    text.push(b'\n');
    fsutil::write_atomic(&path, &text, PENDING_MODE)
}
