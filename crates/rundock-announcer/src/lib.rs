//! `rundock announce`: keeps a service's SkyDNS record in etcd exactly while its
//! container runs and passes its health checks.
//!
//! * Key: `skydns::instance_key(prefix, domain, name, host_label)`; value: a serialized
//!   [`rundock_spec::skydns::Record`] with an explicit `ttl` (SkyDNS and CoreDNS answer
//!   with their own defaults otherwise).
//! * Address: per `announce_as`, from the host's interfaces (`rundock-hostip`), or the
//!   container's own address from Docker for `container`.
//! * Gate: the container is running (Docker events, `docker`) and every health check
//!   passes (`health`, probing with [`rundock_docker::probe`]). Death, a stop signal or
//!   a failed check deletes the key at once (and revokes the lease); healthy again puts
//!   it again.
//! * Liveness: v3 lease of `ttl` seconds kept alive every `interval` (no value rewrite,
//!   so watchers are not woken); v2 key TTL refreshed every `interval`. A hard-killed
//!   announcer's record expires with the TTL; the next announcer replaces or deletes a
//!   record left behind as soon as Docker has told it the container's state.
//! * Gate: with a `post_start` hook, also until the supervisor has run it for the
//!   running container (`gate`).
//! * State: what only the announcer knows (checks, latencies, maintenance, etcd errors,
//!   the last refresh) goes to a small JSON file in its service dir for `rundock status`
//!   and `rundock metrics` (`report`).
//! * Liveness: with `unhealthy_after`, a container that was healthy and then fails a
//!   check that many rounds in a row is replaced by the supervisor, with a back-off
//!   (`liveness`).
//! * Signals: TERM/INT delete the key, revoke the lease, exit 0. USR1 enters
//!   maintenance (record withdrawn, container untouched); USR2 or a second USR1 leaves it.
//! * etcd unreachable: retried with a backoff capped at 1 s (so a record is back within
//!   about a second of etcd answering), logged once per change; never an exit. Docker
//!   unreachable: the same, capped at 5 s.
#![warn(missing_docs)]

mod announcer;
mod docker;
mod gate;
mod health;
mod liveness;
mod report;

use anyhow::Context;
use rundock_spec::skydns::record_key;
use rundock_spec::Spec;
use std::time::Duration;

/// Runs the announcer for `spec` until TERM or INT; the exit code for the process.
/// Blocking: it drives its own single-threaded runtime.
pub fn run(spec: Spec) -> anyhow::Result<i32> {
    rundock_runtime::current_thread()?.block_on(announcer::run(spec))
}

/// Deletes `spec`'s record from etcd, whoever wrote it (the lease, if any, then expires
/// on its own). Blocking, within 15 s. For `state=absent`, as a safety net behind the
/// announcer's own withdrawal on TERM. Nothing to do without an `announce` section.
pub fn withdraw_record(spec: &Spec) -> anyhow::Result<()> {
    const LIMIT: Duration = Duration::from_secs(15);
    let (Some(announce), Some(key)) = (spec.announce.as_ref(), record_key(spec)) else {
        return Ok(());
    };
    let client = rundock_etcd::Client::new(&announce.etcd).context("etcd client")?;
    rundock_runtime::current_thread()?.block_on(async {
        tokio::time::timeout(LIMIT, client.withdraw(None, &key))
            .await
            .map_err(|_| anyhow::anyhow!("etcd did not answer within {} s", LIMIT.as_secs()))?
            .with_context(|| format!("cannot delete {key}"))
    })
}
