//! The audit trail of a service's releases: one entry per revision a host installed
//! (a deploy, a rollback, an automatic revert) with who, where, when, from which image
//! to which and how it ended. The module appends entries to the tree's
//! `trail-pending.json` and sends them to etcd under [`TRAIL_PREFIX`]; `rundock history
//! NAME --all-hosts` reads them back from every host. Pure: the entry, its key and the
//! pending file's name.

use serde::{Deserialize, Serialize};

/// Where the trail of every service lives in etcd, beside the SkyDNS records.
pub const TRAIL_PREFIX: &str = "/rundock/trail";

/// Entries not sent yet (etcd unreachable), in the tree; sent by the service's next
/// module call. 0600: entries name users and hosts.
pub const PENDING_FILE: &str = "trail-pending.json";
/// The pending file's mode, set explicitly (never from the umask).
pub const PENDING_MODE: u32 = 0o600;

/// The image a revision ran.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrailImage {
    /// The image reference the revision named (a tag, or an id when a rollback pinned it).
    pub image: String,
    /// The image id (`sha256:…`) it resolved to; `None` when it was not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
}

/// One revision change on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrailEntry {
    /// The service name (its DNS label).
    pub service: String,
    /// The announce domain; only announced services have a trail.
    pub domain: String,
    /// The host's name and its instance label.
    pub host: String,
    /// The host's instance label, as in its record key.
    pub host_label: String,
    /// The revision installed, and the one it rolled back to when it is a rollback.
    pub revision: u64,
    /// The revision rolled back to, when the entry is a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<u64>,
    /// What ran before (`None` for the first revision on the host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<TrailImage>,
    /// What runs now.
    pub to: TrailImage,
    /// Who applied it, as in the revision's [`crate::revisions::AppliedBy`].
    pub user: String,
    /// The controller's address; `None` when the call did not come over SSH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// Unix milliseconds when the entry was made (the call's end); orders the trail.
    pub at_ms: u64,
    /// `healthy`, `failed`, `rolled back`, or `-` when nobody waited.
    pub outcome: String,
    /// Why it failed or was rolled back; `None` when healthy or nobody waited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The prefix of one service's trail: `/rundock/trail/<domain>/<name>/`.
pub fn service_prefix(domain: &str, name: &str) -> String {
    format!("{TRAIL_PREFIX}/{}/{name}/", domain.trim_end_matches('.'))
}

impl TrailEntry {
    /// Its key: time first (zero-padded, so keys sort as times do across hosts), then
    /// host label and revision, which make it unique and a resend idempotent.
    pub fn key(&self) -> String {
        format!(
            "{}{:015}-{}-{}",
            service_prefix(&self.domain, &self.service),
            self.at_ms,
            self.host_label,
            self.revision
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_as_times_and_name_host_and_revision() {
        let entry = |at_ms, host_label: &str| TrailEntry {
            service: "web".into(),
            domain: "s.example.com.".into(),
            host: "h".into(),
            host_label: host_label.into(),
            revision: 3,
            rollback_of: None,
            from: None,
            to: TrailImage::default(),
            user: "root".into(),
            controller: None,
            at_ms,
            outcome: "healthy".into(),
            reason: None,
        };
        let early = entry(999, "node-2").key();
        let late = entry(1_000, "node-1").key();
        assert_eq!(
            early,
            "/rundock/trail/s.example.com/web/000000000000999-node-2-3"
        );
        assert!(early < late);
    }
}
