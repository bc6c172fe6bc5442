//! The Ansible side of rundock: one module call from the args file to one JSON result.
//!
//! [`contract`] reads what Ansible sends and shapes what it reads back, [`plan`] works out
//! what a call would change (pure reads), [`apply`] carries a plan out atomically, and
//! [`runit`] talks to runsv through `sv`. Docker and etcd clean-up on `state=absent`
//! come in through [`Hooks`], so this crate stays free of both clients.

pub mod apply;
pub mod contract;
pub mod fsutil;
pub mod install;
pub mod options;
pub mod params;
pub mod plan;
pub mod preflight;

use rundock_spec::Spec;

/// What `state=absent` needs done beyond the tree: supplied by the binary.
pub trait Hooks {
    /// Stops and removes the service's containers; returns how many there were.
    fn remove_containers(&self, spec: &Spec) -> anyhow::Result<usize>;
    /// Deletes the service's record from etcd.
    fn withdraw_record(&self, spec: &Spec) -> anyhow::Result<()>;
    /// Returns once the service's current container runs and, when it is announced, its
    /// record is in etcd; fails after `timeout` saying which of the two is missing.
    fn wait_ready(&self, spec: &Spec, timeout: std::time::Duration) -> anyhow::Result<()>;
    /// The service's status as `rundock status --json` shows it (the module returns it
    /// as `service.status`); `None` when it cannot be had.
    fn status(&self, _spec: &Spec) -> Option<serde_json::Value> {
        None
    }

    /// Returns once the supervisor of the tree at `tree_dir` reports how the start-first
    /// update to `spec` ended; fails with its reason when the new container did not
    /// take over.
    fn await_update(&self, _tree_dir: &std::path::Path, _spec: &Spec) -> anyhow::Result<()> {
        Ok(())
    }
}

pub use contract::run_module;
/// runsv control (`sv`, supervised or not), shared with the run scripts' side.
pub use rundock_runit::control as runit;
