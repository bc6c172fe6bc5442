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
//! - What it last did per template (render, check, reload, instances, errors) goes to a
//!   state file in its service dir ([`rundock_spec::state::WatchState`]), which
//!   `rundock status` and `rundock metrics` show: a watch is never only a log.
//!
//! This file owns loading the spec ([`load`]), what the module checks before it writes a
//! watch ([`preflight`]) and the process lifecycle ([`run`], [`watch`]).
#![warn(missing_docs)]

pub mod render;
pub mod target;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{bail, Context as _};
use rundock_dns::{instances, sync, RecordSet, Zones};
use rundock_spec::state::{self, WatchState};
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
/// The longest wait between retries while a failure lasts and nothing changes: the
/// back-off stops doubling here, so a failed template is tried again at least this often.
/// A successful round starts the next failure's back-off at [`RETRY_FIRST`] again.
pub const RETRY_MAX: Duration = Duration::from_secs(60);
/// The TTL given to [`Zones`]; only the instance list is used, never the TTL.
const UNUSED_TTL: u32 = 300;

/// A loaded watch: what to follow, and where to report.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The watch, already validated: the `watch` of a tree's `spec.json`, or the whole
    /// plain JSON file.
    pub spec: WatchSpec,
    /// The state file (`services/watch/rundock-watch.json` of a tree); `None` for a
    /// watch run from a plain JSON file.
    pub state_file: Option<PathBuf>,
}

/// The watch of a service tree (its `spec.json`, reporting into its `services/watch`)
/// when `path` is a directory, else a JSON file holding a [`WatchSpec`] (reporting
/// nowhere). Validated either way.
pub fn load(path: &Path) -> anyhow::Result<Loaded> {
    let spec = load_spec(path)?;
    let state_file = path.is_dir().then(|| {
        path.join(rundock_spec::tree::WATCH_SERVICE)
            .join(state::WATCH_STATE_FILE)
    });
    Ok(Loaded { spec, state_file })
}

fn load_spec(path: &Path) -> anyhow::Result<WatchSpec> {
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
pub fn run(loaded: Loaded) -> anyhow::Result<()> {
    rundock_runtime::current_thread()?.block_on(async {
        let stop = rundock_runtime::Shutdown::new()
            .context("installing the TERM and INT handlers")?
            .first();
        watch_reporting(loaded.spec, loaded.state_file, stop).await
    })
}

/// Follows the records and keeps every template's destination current until `stop`.
pub async fn watch(spec: WatchSpec, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
    watch_reporting(spec, None, stop).await
}

/// [`watch`], keeping the state file at `state_file` (when given) current.
pub async fn watch_reporting(
    spec: WatchSpec,
    state_file: Option<PathBuf>,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
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
    let mut report = Report::new(state_file);
    report.write(false, &targets);
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
                        target.state.render_error = Some(e);
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
            report.write(true, &targets);
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

/// The state file, written when what it says changed.
struct Report {
    path: Option<PathBuf>,
    started_at: u64,
    written: Option<WatchState>,
}

impl Report {
    fn new(path: Option<PathBuf>) -> Report {
        Report {
            path,
            started_at: state::unix_now(),
            written: None,
        }
    }

    fn write(&mut self, records_loaded: bool, targets: &[Target]) {
        let Some(path) = &self.path else { return };
        let now = WatchState {
            started_at: self.started_at,
            records_loaded,
            templates: targets.iter().map(|t| t.state.clone()).collect(),
        };
        if self.written.as_ref() == Some(&now) {
            return;
        }
        match state::write(path, &now) {
            Ok(()) => self.written = Some(now),
            // Following the records matters more than reporting on it.
            Err(e) => eprintln!("rundock watch: writing {}: {e}", path.display()),
        }
    }
}

/// What the module checks before it writes a watch, so a watch that cannot work fails
/// the call instead of logging the same error on every retry: each template is readable
/// and renders against an empty record set (no instances yet is the state every watch
/// starts in), and each `dest` is a file in a directory that exists and this user may
/// write. Errors name the field, `watch[i].template` or `watch[i].dest`.
pub fn preflight(spec: &WatchSpec) -> Result<(), String> {
    for (i, template) in spec.templates.iter().enumerate() {
        let path = template.template.display();
        let source = std::fs::read_to_string(&template.template)
            .map_err(|e| format!("watch[{i}].template: cannot read {path}: {e}"))?;
        let empty = Context::new(
            &spec.domain,
            template
                .names
                .iter()
                .map(|name| (name.clone(), Vec::new()))
                .collect(),
        );
        render::render(&path.to_string(), &source, &empty).map_err(|e| {
            format!(
                "watch[{i}].template: {path} does not render with no instances: {}",
                render::describe(&e)
            )
        })?;
        check_dest(&template.dest).map_err(|why| format!("watch[{i}].dest: {why}"))?;
    }
    Ok(())
}

fn check_dest(dest: &Path) -> Result<(), String> {
    use nix::unistd::{access, AccessFlags};
    if dest.is_dir() {
        return Err(format!(
            "{} is a directory; give the path of the file to render into",
            dest.display()
        ));
    }
    let dir = dest.parent().unwrap_or(Path::new("/"));
    if !dir.is_dir() {
        return Err(format!(
            "the directory {} does not exist; create it first (the watch writes only the \
             file)",
            dir.display()
        ));
    }
    access(dir, AccessFlags::W_OK | AccessFlags::X_OK).map_err(|e| {
        format!(
            "cannot write into {}: {e}; the watch runs as the module's user",
            dir.display()
        )
    })
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
            let list = found
                .into_iter()
                .filter_map(|i| match Instance::checked(name, records.prefix(), i) {
                    Ok(instance) => Some(instance),
                    Err(refused) => {
                        eprintln!("rundock watch: name {name}: {refused}");
                        None
                    }
                })
                .collect();
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
        let loaded = load(&file).unwrap();
        assert_eq!(loaded.spec.templates[0].names, ["web"]);
        assert_eq!(loaded.state_file, None);
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

    fn one_template(template: &Path, dest: &Path) -> WatchSpec {
        serde_json::from_value(serde_json::json!({
            "domain": "s.test",
            "etcd": {"endpoints": ["http://127.0.0.1:2379"], "api": "v3", "prefix": "/skydns"},
            "templates": [
                {"names": ["web"], "template": "/etc/hostname", "dest": "/tmp/x.conf"},
                {"names": ["web", "db"], "template": template, "dest": dest},
            ],
        }))
        .unwrap()
    }

    #[test]
    fn preflight_names_the_template_or_dest_at_fault() {
        let dir = tempfile::tempdir().unwrap();
        let template = dir.path().join("t.j2");
        let dest = dir.path().join("out.conf");
        let err = preflight(&one_template(&template, &dest)).unwrap_err();
        assert!(err.starts_with("watch[1].template: cannot read "), "{err}");
        std::fs::write(
            &template,
            "{% for i in names.db %}{{ i.address }}{% endfor %",
        )
        .unwrap();
        let err = preflight(&one_template(&template, &dest)).unwrap_err();
        assert!(
            err.starts_with("watch[1].template: ")
                && err.contains("does not render with no instances"),
            "{err}"
        );
        // Fine with no instances, and every name is there (empty) for the template.
        std::fs::write(
            &template,
            "{% for i in names.db %}{{ i.address }}{% else %}server 127.0.0.1:9 down;{% endfor %}",
        )
        .unwrap();
        preflight(&one_template(&template, &dest)).unwrap();
        let missing = dir.path().join("missing/out.conf");
        let err = preflight(&one_template(&template, &missing)).unwrap_err();
        assert!(
            err.starts_with("watch[1].dest: the directory ") && err.contains("does not exist"),
            "{err}"
        );
        let err = preflight(&one_template(&template, dir.path())).unwrap_err();
        assert!(err.contains("is a directory"), "{err}");
        assert!(!dest.exists(), "a preflight writes nothing");
    }

    #[tokio::test]
    async fn the_state_file_says_what_each_template_did() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(state::WATCH_STATE_FILE);
        let template = dir.path().join("t.j2");
        std::fs::write(&template, "{{ instances|length }}\n").unwrap();
        let spec = one_template(&template, &dir.path().join("out.conf"));
        let mut targets: Vec<Target> = spec.templates.iter().cloned().map(Target::new).collect();
        let mut report = Report::new(Some(path.clone()));
        report.write(false, &targets);
        let before: WatchState = state::read(&path).unwrap();
        assert!(!before.records_loaded);
        assert_eq!(before.templates.len(), 2);
        assert_eq!(before.templates[1].last_render_at, None);
        targets[1]
            .update(&Context::new("s.test", vec![("web".into(), Vec::new())]))
            .await;
        report.write(true, &targets);
        let after: WatchState = state::read(&path).unwrap();
        assert!(after.records_loaded);
        assert!(after.templates[1].last_render_at.is_some());
        assert_eq!(after.templates[1].failing(), None);
        assert_eq!(
            after.templates[1].dest,
            dir.path().join("out.conf").display().to_string()
        );
    }
}
