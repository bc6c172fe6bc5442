//! A tree's past: the numbered revisions of its `spec.json` (`revisions.json`, beside it,
//! 0600 since a spec may hold secrets), which spec ran with which image id, who applied
//! it and how it ended. The module writes it; `rundock status` and `rundock history`
//! read it. Pure: the file's shape and the rules for numbering, keeping and choosing a
//! rollback target.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// The file in the tree, beside `spec.json`.
pub const REVISIONS_FILE: &str = "revisions.json";
/// It holds specs, which may hold secrets (`env`, the etcd password).
pub const REVISIONS_MODE: u32 = 0o600;

/// Every kept revision, oldest first, and which of them the tree holds now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Revisions {
    /// The number of the revision whose spec is the tree's `spec.json`.
    pub current: Option<u64>,
    /// The kept revisions, oldest first (ascending numbers, with gaps where older ones were
    /// dropped).
    pub revisions: Vec<Revision>,
}

/// One installed spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    /// 1, 2, …: never reused, also after older ones are dropped.
    pub number: u64,
    /// The `spec.json` text as installed.
    pub spec: String,
    /// The image reference the spec names (a tag, or an id when pinned by a rollback).
    pub image: String,
    /// The image id (`sha256:…`) the reference resolved to when it was applied; `None`
    /// when it was not known (a tree recorded before revisions existed).
    pub image_id: Option<String>,
    /// Unix seconds.
    pub applied_at: u64,
    /// Who applied it.
    pub applied_by: AppliedBy,
    /// Set when this revision was made by rolling back to that one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<u64>,
    /// How it ended, where known (the module's `wait`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

/// Who applied a revision: the user the module ran as (the one who became root with
/// `become`, when known) and the controller's address from SSH, when it came over SSH.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppliedBy {
    /// The user name (`SUDO_USER`, else the user the module ran as, else `uid N`); never empty.
    pub user: String,
    /// The controller's address (the client IP of `SSH_CONNECTION`/`SSH_CLIENT`); `None` when the
    /// call did not come over SSH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
}

/// How a revision ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// [`HEALTHY`], [`FAILED`] or [`ROLLED_BACK`].
    pub result: String,
    /// Why it failed or was rolled back, in words; `None` for a healthy revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Unix seconds.
    pub at: u64,
}

/// It became healthy (and announced) within the module's wait.
pub const HEALTHY: &str = "healthy";
/// It did not, and stayed (`on_failure: fail`).
pub const FAILED: &str = "failed";
/// It did not, and the tree went back to the revision before it (`on_failure: rollback`).
pub const ROLLED_BACK: &str = "rolled back";

/// What a rollback asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackTarget {
    /// The revision that ran before the newest one made by a deploy (not by a rollback):
    /// asking again after rolling back finds the same revision, so it is idempotent.
    Previous,
    /// The revision with this number (at least 1); it must still be kept.
    Number(u64),
}

/// The allowed form of `rollback`, for error messages.
pub const ROLLBACK_FORM: &str = "`previous` or a revision number (see `rundock history NAME`)";

impl std::str::FromStr for RollbackTarget {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "previous" => Ok(RollbackTarget::Previous),
            other => match other.parse::<u64>() {
                Ok(n) if n > 0 => Ok(RollbackTarget::Number(n)),
                _ => Err(format!("{other:?} is not {ROLLBACK_FORM}")),
            },
        }
    }
}

impl Revisions {
    /// The file of the tree at `tree_dir`: `Ok(None)` when there is none yet; an error
    /// (naming the file) when it cannot be read or does not parse.
    pub fn load(tree_dir: &Path) -> Result<Option<Revisions>, String> {
        let path = tree_dir.join(REVISIONS_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("{} does not parse: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// The kept revision numbered `number`; `None` when it never existed or was dropped.
    pub fn get(&self, number: u64) -> Option<&Revision> {
        self.revisions.iter().find(|r| r.number == number)
    }

    /// The revision the tree holds now; `None` before the first revision or when its number is no
    /// longer kept.
    pub fn current_revision(&self) -> Option<&Revision> {
        self.current.and_then(|n| self.get(n))
    }

    /// Appends `revision` under the next number, makes it current and keeps the last
    /// `keep` (at least the new one); returns its number.
    pub fn push(&mut self, mut revision: Revision, keep: usize) -> u64 {
        let number = self.revisions.iter().map(|r| r.number).max().unwrap_or(0) + 1;
        revision.number = number;
        self.revisions.push(revision);
        self.current = Some(number);
        let keep = keep.max(1);
        if self.revisions.len() > keep {
            let drop = self.revisions.len() - keep;
            self.revisions.drain(..drop);
        }
        number
    }

    /// Appends `revision` (one that was tried and did not last: the tree went back)
    /// under the next number without making it current, and keeps the last `keep` plus
    /// the current one, which is never dropped; returns its number.
    pub fn push_reverted(&mut self, mut revision: Revision, keep: usize) -> u64 {
        let number = self.revisions.iter().map(|r| r.number).max().unwrap_or(0) + 1;
        revision.number = number;
        self.revisions.push(revision);
        let keep = keep.max(1);
        while self.revisions.len() > keep {
            match self
                .revisions
                .iter()
                .position(|r| Some(r.number) != self.current && r.number != number)
            {
                Some(oldest) => drop(self.revisions.remove(oldest)),
                None => break,
            }
        }
        number
    }

    /// The revision a rollback to `target` installs, or why there is none.
    pub fn target(&self, target: RollbackTarget) -> Result<&Revision, String> {
        let kept = || {
            self.revisions
                .iter()
                .map(|r| r.number.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match target {
            RollbackTarget::Number(n) => self.get(n).ok_or_else(|| {
                format!(
                    "revision {n} is not kept (kept: {}); `history` says how many are",
                    kept()
                )
            }),
            RollbackTarget::Previous => {
                let deployed = self
                    .revisions
                    .iter()
                    .rev()
                    .find(|r| r.rollback_of.is_none())
                    .ok_or("no revision made by a deploy is kept; name a revision number")?;
                self.revisions
                    .iter()
                    .rev()
                    .find(|r| r.number < deployed.number)
                    .ok_or_else(|| {
                        format!(
                            "no revision before {} is kept (kept: {}), so there is no previous one",
                            deployed.number,
                            kept()
                        )
                    })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revision(image: &str, rollback_of: Option<u64>) -> Revision {
        Revision {
            number: 0,
            spec: format!("{{\"image\":\"{image}\"}}"),
            image: image.into(),
            image_id: Some(format!("sha256:{image}")),
            applied_at: 1,
            applied_by: AppliedBy::default(),
            rollback_of,
            outcome: None,
        }
    }

    #[test]
    fn numbers_grow_and_only_the_last_kept_stay() {
        let mut revisions = Revisions::default();
        for (i, image) in ["v1", "v2", "v3"].iter().enumerate() {
            assert_eq!(revisions.push(revision(image, None), 2), i as u64 + 1);
        }
        let numbers: Vec<u64> = revisions.revisions.iter().map(|r| r.number).collect();
        assert_eq!(numbers, [2, 3]);
        assert_eq!(revisions.current, Some(3));
        assert_eq!(
            revisions.push(revision("v4", None), 0),
            4,
            "keep 0 keeps one"
        );
        assert_eq!(revisions.revisions.len(), 1);
    }

    #[test]
    fn previous_is_anchored_on_the_newest_deploy_so_asking_twice_finds_the_same() {
        let mut revisions = Revisions::default();
        for image in ["v1", "v2", "v3"] {
            revisions.push(revision(image, None), 5);
        }
        let target = revisions.target(RollbackTarget::Previous).unwrap().number;
        assert_eq!(target, 2);
        revisions.push(revision("v2", Some(2)), 5);
        assert_eq!(
            revisions.target(RollbackTarget::Previous).unwrap().number,
            2
        );
        assert_eq!(
            revisions.target(RollbackTarget::Number(1)).unwrap().image,
            "v1"
        );
        let missing = revisions.target(RollbackTarget::Number(9)).unwrap_err();
        assert!(
            missing.contains("revision 9 is not kept (kept: 1, 2, 3, 4)"),
            "{missing}"
        );
        let mut one = Revisions::default();
        one.push(revision("v1", None), 5);
        assert!(one.target(RollbackTarget::Previous).is_err());
    }

    #[test]
    fn a_reverted_attempt_is_kept_beside_the_current_one_which_stays() {
        let mut revisions = Revisions::default();
        for image in ["v1", "v2"] {
            revisions.push(revision(image, None), 2);
        }
        let failed = revisions.push_reverted(revision("v3", None), 2);
        assert_eq!(failed, 3);
        assert_eq!(revisions.current, Some(2), "the tree went back to 2");
        let numbers: Vec<u64> = revisions.revisions.iter().map(|r| r.number).collect();
        assert_eq!(numbers, [2, 3]);
        revisions.push_reverted(revision("v4", None), 1);
        let numbers: Vec<u64> = revisions.revisions.iter().map(|r| r.number).collect();
        assert_eq!(numbers, [2, 4], "the current one is never dropped");
        assert_eq!(
            revisions.target(RollbackTarget::Previous).unwrap().number,
            2,
            "previous after a reverted deploy is what runs: a no-op"
        );
    }

    #[test]
    fn rollback_targets_parse_with_the_form_in_the_error() {
        assert_eq!("previous".parse(), Ok(RollbackTarget::Previous));
        assert_eq!(" 3 ".parse(), Ok(RollbackTarget::Number(3)));
        for bad in ["0", "-1", "last", ""] {
            let e = bad.parse::<RollbackTarget>().unwrap_err();
            assert!(e.contains("`previous` or a revision number"), "{e}");
        }
    }
}
