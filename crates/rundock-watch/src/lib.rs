//! `rundock watch`: renders templates from the live records of service names, checks the
//! result and reloads its reader, so a proxy that cannot read SRV records (nginx before
//! 1.27.3 has no SRV in `upstream`) follows the instances rundock announces.
//!
//! Why it is built this way:
//! - The records come from the same cache `rundock dns` answers from
//!   ([`rundock_dns::sync::keep_fresh`]: one list, then an etcd watch, no polling) and a
//!   name's instances are read from the SRV answer `dig NAME.DOMAIN SRV` gets
//!   ([`rundock_dns::instances`]), so a rendered config and DNS cannot disagree.
//! - A burst of changes (a relist, several instances going at once) makes one render:
//!   the watcher waits until the records were quiet for [`QUIET`], at most [`MAX_DELAY`].
//! - Each template is reconciled ([`target::Target::update`]): an unchanged instance set
//!   renders the same bytes, which writes and reloads nothing; failures are logged naming
//!   what failed and leave the old file in place; a failed reload is retried on the next
//!   change, and anything that failed is tried again after a back-off ([`RETRY_FIRST`]
//!   doubling to [`RETRY_MAX`]) even without one.
//!
//! This file owns loading the spec ([`load`]) and the process lifecycle ([`run`], [`watch`]).

pub mod render;
pub mod target;

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{bail, Context as _};
use rundock_dns::{instances, sync, RecordSet, Zones};
use rundock_spec::watch::WatchSpec;
use tokio::sync::watch::Receiver;
use tokio::time::Instant;

use crate::render::{Context, Instance};
use crate::target::{Outcome, Target};

/// Records must have been quiet this long before a render.
pub const QUIET: Duration = Duration::from_millis(50);
/// ...but a render never waits longer than this after the first change.
pub const MAX_DELAY: Duration = Duration::from_millis(500);
/// After a failure, the first retry without a change, doubling up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
pub const RETRY_MAX: Duration = Duration::from_secs(60);
/// The TTL given to [`Zones`]; only the instance list is used, never the TTL.
const UNUSED_TTL: u32 = 300;

/// The watch spec of a service tree (its `spec.json`) when `path` is a directory, else a
/// JSON file holding a [`WatchSpec`]. Validated either way.
pub fn load(path: &Path) -> anyhow::Result<WatchSpec> {
    let spec = if path.is_dir() {
        let spec = rundock_spec::Spec::load(&path.join(rundock_spec::SPEC_FILE))
            .map_err(anyhow::Error::msg)?;
        match spec.watch {
            Some(watch) => watch,
            None => bail!("{} has no watch in its spec", path.display()),
        }
    } else {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str::<WatchSpec>(&text)
            .with_context(|| format!("{} is not a watch spec", path.display()))?
    };
    spec.validate()
        .with_context(|| format!("{}", path.display()))?;
    Ok(spec)
}

/// Runs the watcher until TERM or INT; blocking, on a current-thread runtime.
pub fn run(spec: WatchSpec) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the TERM handler")?;
        let stop = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        watch(spec, stop).await
    })
}

/// Follows the records and keeps every template's destination current until `stop`.
pub async fn watch(spec: WatchSpec, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
    let client = rundock_etcd::Client::new(&spec.etcd).context("etcd client")?;
    let zones = Zones::new(std::slice::from_ref(&spec.domain), UNUSED_TTL)
        .map_err(|e| anyhow::anyhow!("domain {}: {e}", spec.domain))?;
    let mut state = sync::State::default();
    state.records = RecordSet::new(&spec.etcd.prefix);
    let shared: sync::Shared = Arc::new(RwLock::new(state));
    let mut changes = shared.read().unwrap_or_else(|e| e.into_inner()).subscribe();
    let mut targets: Vec<Target> = spec.templates.iter().cloned().map(Target::new).collect();
    for target in &targets {
        eprintln!(
            "rundock watch: rendering {} into {} from {} in {}",
            target.spec.template.display(),
            target.spec.dest.display(),
            target.spec.names.join(", "),
            spec.domain
        );
    }
    let follow = async {
        // After a failure the same reconcile runs again after a back-off even without a
        // change: a check that failed because the reader was not up yet (a frontend
        // container still starting) must not wait for the next record change.
        let mut retry: Option<Duration> = None;
        loop {
            // The first list counts as a change, so the first render follows it.
            let woke = match retry {
                Some(delay) => tokio::select! {
                    changed = changes.changed() => changed.is_ok(),
                    _ = tokio::time::sleep(delay) => true,
                },
                None => changes.changed().await.is_ok(),
            };
            if !woke {
                break;
            }
            settle(&mut changes).await;
            let contexts: Vec<Result<Context, String>> = {
                let state = shared.read().unwrap_or_else(|e| e.into_inner());
                if !state.loaded {
                    continue;
                }
                targets
                    .iter()
                    .map(|t| context(&spec, &zones, &state.records, &t.spec.names))
                    .collect()
            };
            let mut failed = false;
            for (target, context) in targets.iter_mut().zip(contexts) {
                let dest = target.spec.dest.display().to_string();
                let context = match context {
                    Ok(context) => context,
                    Err(e) => {
                        eprintln!("rundock watch: {dest}: {e}");
                        failed = true;
                        continue;
                    }
                };
                match target.update(&context).await {
                    Outcome::Unchanged => {}
                    Outcome::Updated { written, reloaded } => eprintln!(
                        "rundock watch: {dest}: {} instance(s){}{}",
                        context.instances.len(),
                        if written { ", written" } else { "" },
                        if reloaded { ", reloaded" } else { "" }
                    ),
                    Outcome::Failed(why) => {
                        eprintln!("rundock watch: {why}");
                        failed = true;
                    }
                }
            }
            retry = failed.then(|| retry.map_or(RETRY_FIRST, |d| (d * 2).min(RETRY_MAX)));
        }
    };
    tokio::select! {
        _ = sync::keep_fresh(client, spec.etcd.prefix.clone(), shared.clone()) => {}
        _ = follow => {}
        _ = stop => {}
    }
    Ok(())
}

/// Returns once no change came for [`QUIET`], or [`MAX_DELAY`] after it was called.
pub async fn settle(changes: &mut Receiver<u64>) {
    let deadline = Instant::now() + MAX_DELAY;
    loop {
        let quiet = tokio::time::sleep_until((Instant::now() + QUIET).min(deadline));
        tokio::select! {
            _ = quiet => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
        if Instant::now() >= deadline {
            return;
        }
    }
}

/// What a template with `names` sees in `records`.
fn context(
    spec: &WatchSpec,
    zones: &Zones,
    records: &RecordSet,
    names: &[String],
) -> Result<Context, String> {
    let per_name = names
        .iter()
        .map(|name| {
            let found = instances::instances(records, zones, &spec.fqdn(name))
                .map_err(|e| format!("name {name}: {e}"))?;
            let list = found.into_iter().map(|i| Instance::new(name, i)).collect();
            Ok((name.clone(), list))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Context::new(&spec.domain, per_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_changes_settles_into_one_wake_up() {
        let (tx, mut rx) = tokio::sync::watch::channel(0u64);
        let sender = tokio::spawn(async move {
            for i in 1..=5 {
                tx.send_replace(i);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        rx.changed().await.unwrap();
        let start = Instant::now();
        settle(&mut rx).await;
        // The last change came 80 ms in; quiet 50 ms later.
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(80) + QUIET && waited < MAX_DELAY,
            "{waited:?}"
        );
        assert_eq!(*rx.borrow_and_update(), 5);
        assert!(!rx.has_changed().unwrap());
        sender.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn endless_changes_still_render_after_the_maximum_delay() {
        let (tx, mut rx) = tokio::sync::watch::channel(0u64);
        let sender = tokio::spawn(async move {
            for i in 1.. {
                tx.send_replace(i);
                tokio::time::sleep(QUIET / 2).await;
            }
        });
        rx.changed().await.unwrap();
        let start = Instant::now();
        settle(&mut rx).await;
        assert!(
            start.elapsed() <= MAX_DELAY + QUIET,
            "{:?}",
            start.elapsed()
        );
        sender.abort();
    }

    #[test]
    fn load_reads_a_tree_or_a_file_and_validates() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("watch.json");
        std::fs::write(
            &file,
            r#"{"domain": "s.test", "etcd": {"endpoints": ["http://127.0.0.1:2379"], "api": "v3", "prefix": "/skydns"},
                "templates": [{"names": ["web"], "template": "/t.j2", "dest": "/etc/x.conf", "reload": ["true"]}]}"#,
        )
        .unwrap();
        let spec = load(&file).unwrap();
        assert_eq!(spec.templates[0].names, ["web"]);
        std::fs::write(&file, r#"{"domain": "s.test"}"#).unwrap();
        let err = format!("{:#}", load(&file).unwrap_err());
        assert!(err.contains("is not a watch spec"), "{err}");
        std::fs::write(
            &file,
            r#"{"domain": "s.test", "etcd": {"endpoints": ["http://127.0.0.1:2379"], "api": "v3", "prefix": "/skydns"},
                "templates": [{"names": ["web"], "template": "t.j2", "dest": "/etc/x.conf"}]}"#,
        )
        .unwrap();
        let err = format!("{:#}", load(&file).unwrap_err());
        assert!(err.contains("watch[0].template"), "{err}");
        let err = format!("{:#}", load(dir.path()).unwrap_err());
        assert!(err.contains("spec.json"), "{err}");
    }
}
