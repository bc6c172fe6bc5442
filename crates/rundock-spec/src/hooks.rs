//! Lifecycle hooks of a service: commands run around its container's start and stop;
//! and [`Requires`], the services that must be announced before it starts.
//!
//! Order, and why: `post_start` runs once the container started (in it, by the
//! supervisor); until it succeeded the record is not announced, and when it fails the
//! supervisor stops the container and the run counts as failed (back-off), as a start
//! that did not work. On `sv down` of the tree the record is withdrawn first, then
//! `pre_stop` runs (while the container still serves the clients that have not yet
//! noticed), then the rest of `drain` is waited, then the container stops, then
//! `post_stop` runs on the host. A failing `pre_stop` or `post_stop` is logged and the
//! stop goes on: a stop must not hang on a hook.

use serde::{Deserialize, Serialize};

/// One hook: an argv (never a shell line), where it runs and how long it may take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hook {
    /// The argv, run directly (never through a shell); never empty, the first word is the program.
    pub command: Vec<String>,
    /// On the host instead of in the container (`docker exec`).
    pub on_host: bool,
    /// Seconds before the hook is killed and counts as failed.
    pub timeout: u32,
}

/// A service's hooks, each optional; when each runs, and what its failure does, is
/// the order in this module's doc.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Run in the started container (or on the host); until it succeeds the record is not
    /// announced, and its failure fails the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_start: Option<Hook>,
    /// Run after the record is withdrawn and before the container stops; its failure is logged
    /// and the stop goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_stop: Option<Hook>,
    /// Always on the host: the container is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_stop: Option<Hook>,
}

impl Hooks {
    /// Whether the service has no hook at all.
    pub fn is_empty(&self) -> bool {
        self.post_start.is_none() && self.pre_stop.is_none() && self.post_stop.is_none()
    }
}

/// What the supervisor does when `requires` is not met within its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnTimeout {
    /// Start the container anyway (logged).
    Start,
    /// Fail the run: runit starts the supervisor again, which waits again (back-off).
    Fail,
}

/// Services (DNS names) that must have a record in etcd before the container starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requires {
    /// Fully qualified names (`influxdb.s.prod.example.com`); any record at or below
    /// the name counts.
    pub names: Vec<String>,
    /// Seconds to wait before `on_timeout` applies.
    pub timeout: u32,
    /// What happens when the names have no record after `timeout` seconds.
    pub on_timeout: OnTimeout,
}
