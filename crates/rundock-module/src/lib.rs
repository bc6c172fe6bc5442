//! The Ansible side of rundock: one module call from the args file to one JSON result.
//!
//! [`contract`] reads what Ansible sends and shapes what it reads back, [`plan`] works out
//! what a call would change (pure reads), [`apply`] carries a plan out atomically, and
//! [`runit`] talks to runsv through `sv`. Docker and etcd clean-up on `state=absent`
//! come in through [`Hooks`], so this crate stays free of both clients.

#![warn(missing_docs)]

pub mod apply;
pub mod contract;
pub mod fsutil;
pub mod install;
pub mod lock;
pub mod options;
pub mod params;
pub mod plan;
pub mod preflight;
pub mod revert;
pub mod revisions;
pub mod trail;

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

    /// Before the first write of an `enabled`/`restarted` call: the image can be had as
    /// the pull policy says (pulled now where it pulls, unless `may_pull` is false, in
    /// check mode). `Err` is the reason, in Docker's or the registry's words.
    fn check_image(&self, _spec: &Spec, _may_pull: bool) -> anyhow::Result<ImageCheck> {
        Ok(ImageCheck::default())
    }

    /// Before the first write of a call whose spec has a watch: every template is
    /// readable and renders with no instances, every `dest` is a file in a directory
    /// that exists and may be written. `Err` names the field (`watch[i].template`,
    /// `watch[i].dest`). The renderer lives above this crate, hence a hook.
    fn check_watch(&self, _watch: &rundock_spec::watch::WatchSpec) -> Result<(), String> {
        Ok(())
    }

    /// For a service announced through etcd: takes its fleet-wide deploy lock there with
    /// `record` (the holder's JSON) as the value, waiting up to `timeout`, or joins a
    /// playbook's (see [`lock::EtcdLockMode`]); `Ok(None)` when the spec has no etcd.
    fn take_etcd_lock(
        &self,
        _spec: &Spec,
        _record: &str,
        _timeout: std::time::Duration,
        _mode: lock::EtcdLockMode<'_>,
    ) -> Result<Option<lock::EtcdHeld>, lock::EtcdLockError> {
        Ok(None)
    }

    /// Sends audit trail entries, in order, to the etcd of the announced `spec`; returns
    /// how many it took and why it did not take the rest.
    fn send_trail(
        &self,
        _spec: &Spec,
        _entries: &[rundock_spec::trail::TrailEntry],
    ) -> (usize, Option<String>) {
        (0, None)
    }

    /// Lets a playbook's deploy lock of the announced `spec` go if its record carries
    /// `token`; `Ok(true)` when it did.
    fn release_play_lock(&self, _spec: &Spec, _token: &str) -> Result<bool, String> {
        Ok(false)
    }

    /// Returns once the supervisor of the tree at `tree_dir` reports how the start-first
    /// update to `spec` ended; fails with its reason when the new container did not
    /// take over.
    fn await_update(&self, _tree_dir: &std::path::Path, _spec: &Spec) -> anyhow::Result<()> {
        Ok(())
    }
}

/// What [`Hooks::check_image`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageCheck {
    /// The id the reference resolves to now; `None` when unknown without a pull.
    pub id: Option<String>,
    /// The image id of the service's running container made from the same spec.
    pub running: Option<String>,
}

impl ImageCheck {
    /// The tag now names another image than the one the running container was made
    /// from (a moved tag): `(running, new)`.
    pub fn moved(&self) -> Option<(&str, &str)> {
        match (&self.running, &self.id) {
            (Some(running), Some(id)) if running != id => Some((running, id)),
            _ => None,
        }
    }
}

pub use contract::run_module;
/// runsv control (`sv`, supervised or not), shared with the run scripts' side.
pub use rundock_runit::control as runit;
