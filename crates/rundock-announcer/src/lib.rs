//! `rundock announce`: keeps a service's SkyDNS record in etcd exactly while its
//! container runs and passes its health checks.
//!
//! * Key: `skydns::instance_key(prefix, domain, name, host_label)`; value: a serialized
//!   [`rundock_spec::skydns::Record`] with an explicit `ttl` (SkyDNS and CoreDNS answer
//!   with their own defaults otherwise).
//! * Address: per `announce_as`, from the host's interfaces (`rundock-hostip`), or the
//!   container's own address from Docker for `container`.
//! * Gate: the container is running (Docker events, see [`docker`]) and every health
//!   check passes (see [`health`]). Death, a stop signal or a failed check deletes the
//!   key at once (and revokes the lease); healthy again puts it again.
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

mod announcer;
pub mod docker;
mod gate;
pub mod health;
mod liveness;
mod report;

use anyhow::Context;
use rundock_spec::{skydns, Spec};
use std::time::Duration;

/// Runs the announcer for `spec` until TERM or INT; the exit code for the process.
/// Blocking: it drives its own single-threaded runtime.
pub fn run(spec: Spec) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(announcer::run(spec))
}

/// The etcd key the announcer writes for `spec` (`None` without an `announce` section).
pub fn record_key(spec: &Spec) -> Option<String> {
    let announce = spec.announce.as_ref()?;
    Some(skydns::instance_key(
        &announce.etcd.prefix,
        &announce.domain,
        &spec.name,
        &spec.host_label,
    ))
}

/// Deletes `spec`'s record from etcd, whoever wrote it (the lease, if any, then expires
/// on its own). Blocking. For `state=absent`, as a safety net behind the announcer's own
/// withdrawal on TERM. Nothing to do without an `announce` section.
pub fn withdraw_record(spec: &Spec) -> anyhow::Result<()> {
    with_record(
        spec,
        (),
        Duration::from_secs(15),
        |client, key| async move {
            client
                .withdraw(None, &key)
                .await
                .with_context(|| format!("cannot delete {key}"))
        },
    )
}

/// Whether `spec`'s record is in etcd (always true without an `announce` section).
/// Blocking. For the module's `wait`.
pub fn record_present(spec: &Spec) -> anyhow::Result<bool> {
    with_record(
        spec,
        true,
        Duration::from_secs(5),
        |client, key| async move {
            let entry = client
                .get(&key)
                .await
                .with_context(|| format!("cannot read {key}"))?;
            Ok(entry.is_some())
        },
    )
}

/// Runs one etcd request on `spec`'s record key, blocking, within `limit`; `unannounced`
/// is the answer for a spec without an `announce` section.
fn with_record<T, F, Fut>(
    spec: &Spec,
    unannounced: T,
    limit: Duration,
    request: F,
) -> anyhow::Result<T>
where
    F: FnOnce(rundock_etcd::Client, String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let (Some(announce), Some(key)) = (spec.announce.as_ref(), record_key(spec)) else {
        return Ok(unannounced);
    };
    let client = rundock_etcd::Client::new(&announce.etcd).context("etcd client")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        tokio::time::timeout(limit, request(client, key))
            .await
            .map_err(|_| anyhow::anyhow!("etcd did not answer within {} s", limit.as_secs()))?
    })
}
