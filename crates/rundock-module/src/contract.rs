//! The Ansible binary-module contract: the args file in, exactly one JSON object out.
//!
//! Ansible runs `<module> <args-file>`; the file holds the task's options plus internal
//! `_ansible_*` keys. Check mode (`_ansible_check_mode`) writes nothing and reports what
//! would change; diff mode (`_ansible_diff`) adds before/after with secrets masked.

use crate::params::{self, HostFacts, Request, State};
use crate::plan::{make_plan, Plan};
use crate::revert::{self, OnFailure, Reverted};
use crate::{apply, fsutil, install, lock, preflight, revisions, Hooks};
use rundock_spec::skydns;
use serde_json::{json, Map, Value};
use std::path::Path;

/// Runs one module call; returns the JSON to print and the exit code.
pub fn run_module(args_file: &Path, hooks: &dyn Hooks) -> (Value, i32) {
    let mut trail = crate::trail::Trail::default();
    let outcome = run(args_file, hooks, &mut trail);
    // After the call, failed or not: a revision it made is in the trail either way.
    let trail_warning = trail.finish(hooks);
    match outcome {
        Ok(mut result) => {
            if let Some(warning) = trail_warning {
                match result["warnings"].as_array_mut() {
                    Some(list) => list.push(json!(warning)),
                    None => result["warnings"] = json!([warning]),
                }
            }
            (result, 0)
        }
        Err(Failure {
            msg,
            changed,
            reverted,
        }) => {
            let mut result = json!({ "failed": true, "changed": changed, "msg": msg });
            if let Some(reverted) = reverted {
                result["reverted"] = reverted;
            }
            (result, 1)
        }
    }
}

/// A failed call; `changed` is true when it failed after changing the host (a `wait`
/// that timed out after a deploy).
struct Failure {
    msg: String,
    changed: bool,
    /// `on_failure: rollback` went back: `{failed, to, revision}` (the `reverted` result).
    reverted: Option<Value>,
}

impl From<String> for Failure {
    fn from(msg: String) -> Self {
        Failure {
            msg,
            changed: false,
            reverted: None,
        }
    }
}

impl From<&str> for Failure {
    fn from(msg: &str) -> Self {
        Failure::from(msg.to_string())
    }
}

fn run(
    args_file: &Path,
    hooks: &dyn Hooks,
    trail: &mut crate::trail::Trail,
) -> Result<Value, Failure> {
    let args = read_args(args_file)?;
    let check_mode = truthy(args.get("_ansible_check_mode"));
    let diff_mode = truthy(args.get("_ansible_diff"));
    let facts = HostFacts {
        hostname: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    if let Some(msg) = params::unsupported_parameters(&args) {
        return Err(msg.into());
    }
    if let Some(call) = params::parse_play_lock(&args).map_err(|e| e.to_string())? {
        return play_lock(&call, check_mode, hooks);
    }
    let mut request = params::parse_request(&args, &facts).map_err(|e| e.to_string())?;
    let mut rollback = revisions::resolve_rollback(&mut request)?;
    let source = install::own_binary().map_err(|e| format!("{e:#}"))?;
    let mut plan = make_plan(&request, &source).map_err(|e| format!("{e:#}"))?;
    let tree_dir = request
        .paths
        .sv_dir
        .join(format!("docker-{}", request.name));
    // Everything that can refuse the call does so here, before the first write.
    let (mut warnings, image_id) = refuse_early(&request, &mut plan, &tree_dir, check_mode, hooks)?;
    // A change holds the service's deploy lock through apply and wait, and is planned
    // again under it: another change may have come first.
    let deploy_lock = if !check_mode && plan.changed() {
        let (lock, etcd_lock, unreachable) = take_deploy_lock(&request, &tree_dir, hooks)?;
        warnings.extend(unreachable);
        // What `previous` means may have changed while another change held the lock.
        rollback = revisions::resolve_rollback(&mut request)?;
        plan = replan_locked(&request, &source, &tree_dir, hooks)?;
        Some((lock, etcd_lock))
    } else {
        None
    };
    // What ran before the change (read under the lock): the trail's "from", and what
    // `on_failure: rollback` goes back to.
    let prior = match check_mode {
        false => revisions::current_revision(&tree_dir),
        true => None,
    };
    if !check_mode {
        trail.begin(&tree_dir, prior.clone());
    }
    let before = prior.filter(|_| request.on_failure == OnFailure::Rollback);

    let mut result = Map::new();
    let changed = plan.changed();
    if diff_mode {
        result.insert("diff".into(), plan.diff());
    }
    if !check_mode {
        remove_stale_temp_files(&request, &tree_dir).map_err(|e| format!("{e:#}"))?;
    }
    if !check_mode && changed {
        match apply::apply(&plan, &tree_dir, request.spec.as_ref(), hooks) {
            Ok(more) => warnings.extend(more),
            Err(e) => {
                return Err(match (e.downcast_ref::<apply::SwitchFailed>(), &before) {
                    (Some(switch), Some(before)) => switch_reverted(
                        &request,
                        &tree_dir,
                        &plan,
                        image_id,
                        rollback.as_ref(),
                        before,
                        &switch.reason,
                        &format!("{e:#}"),
                        trail,
                    ),
                    _ => format!("{e:#}").into(),
                })
            }
        }
    }
    let revision = match (check_mode, request.state) {
        (false, State::Present | State::Enabled | State::Restarted) if changed => {
            revisions::record(&request, &tree_dir, image_id, rollback.as_ref(), &plan)
                .unwrap_or_else(|e| {
                    warnings.push(format!("could not record the revision: {e:#}"));
                    None
                })
        }
        _ => None,
    };
    if let Some(number) = revision {
        trail.add(number);
    }
    if let (Some(timeout), false) = (request.wait, check_mode) {
        if matches!(request.state, State::Enabled | State::Restarted) {
            let change = Change {
                changed,
                revision,
                before: before.as_ref(),
                source: &source,
            };
            wait_or_revert(
                &request,
                &tree_dir,
                hooks,
                timeout,
                &change,
                &mut warnings,
                trail,
            )?;
        }
    }
    result.insert("changed".into(), Value::Bool(changed));
    result.insert(
        "msg".into(),
        Value::String(message(&request, &plan, check_mode)),
    );
    let service = service_report(
        &request,
        &tree_dir,
        check_mode,
        rollback.as_ref(),
        hooks,
        &mut warnings,
    );
    result.insert("service".into(), service);
    if let Some((lock, etcd_lock)) = deploy_lock {
        result.insert("lock".into(), lock_info(&lock, etcd_lock.as_ref()));
        if request.state == State::Absent && !tree_dir.exists() {
            lock.remove_file()
                .map_err(|e| format!("{:#}", fsutil::io_error("remove", lock.path(), e)))?;
        }
    }
    if !warnings.is_empty() {
        result.insert("warnings".into(), json!(warnings));
    }
    Ok(Value::Object(result))
}

/// The arguments Ansible wrote for the call: a JSON object.
fn read_args(args_file: &Path) -> Result<Map<String, Value>, Failure> {
    let text = std::fs::read_to_string(args_file).map_err(|e| {
        format!(
            "cannot read the module arguments {}: {e}",
            args_file.display()
        )
    })?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("the module arguments are not a JSON object".into()),
        Err(e) => Err(format!("the module arguments are not JSON: {e}").into()),
    }
}

/// Everything that can refuse the call, before its first write: paths, ownership, the
/// host, the watch and the image (whose tag may have moved: then `plan` replaces the
/// container). Returns the warnings so far and the image's id.
fn refuse_early(
    request: &Request,
    plan: &mut Plan,
    tree_dir: &Path,
    check_mode: bool,
    hooks: &dyn Hooks,
) -> Result<(Vec<String>, Option<String>), Failure> {
    preflight::check_paths(plan, request, tree_dir)?;
    if request.state != State::Absent {
        preflight::check_ownership(request, tree_dir)?;
    }
    let warnings = match &request.spec {
        Some(spec) if request.state != State::Absent => preflight::check_host(spec)?,
        _ => Vec::new(),
    };
    if let (Some(watch), false) = (
        request.spec.as_ref().and_then(|s| s.watch.as_ref()),
        request.state == State::Absent,
    ) {
        hooks
            .check_watch(watch)
            .map_err(|e| format!("{e} (nothing was changed)"))?;
    }
    let mut image_id = None;
    if let (Some(spec), State::Enabled | State::Restarted) = (&request.spec, request.state) {
        let image = hooks.check_image(spec, !check_mode).map_err(|e| {
            format!(
                "image: {e:#} (pull is {}; nothing was changed)",
                spec.container.pull.as_str()
            )
        })?;
        image_id = image.id.clone();
        if let Some((running, new)) = image.moved() {
            // The spec is the same but its tag now names another image: a change, made
            // the way the service's update order makes any other.
            plan.image_moved = Some((running.to_string(), new.to_string()));
            if !plan.changed() {
                plan.replace_for_moved_image(spec, tree_dir);
            }
        }
    }
    Ok((warnings, image_id))
}

/// What a call changed, for its wait.
struct Change<'a> {
    changed: bool,
    /// The revision the call recorded, if it made one.
    revision: Option<u64>,
    /// What `on_failure: rollback` goes back to.
    before: Option<&'a rundock_spec::revisions::Revision>,
    /// The runner a revert installs.
    source: &'a Path,
}

/// Waits until the service is ready; under `on_failure: rollback`, a change that does
/// not become ready is reverted and the call fails saying so.
fn wait_or_revert(
    request: &Request,
    tree_dir: &Path,
    hooks: &dyn Hooks,
    timeout: std::time::Duration,
    change: &Change<'_>,
    warnings: &mut Vec<String>,
    trail: &mut crate::trail::Trail,
) -> Result<(), Failure> {
    let spec = request
        .spec
        .clone()
        .or_else(|| crate::plan::installed_spec(tree_dir))
        .ok_or("wait: no installed spec to wait for")?;
    let waited = hooks.wait_ready(&spec, timeout);
    if let (Err(e), Some(failed), Some(before)) = (&waited, change.revision, change.before) {
        if change.changed && failed != before.number {
            let reason = format!("{e:#}");
            let reverting = std::time::Instant::now();
            let outcome = revert::revert(
                request,
                tree_dir,
                failed,
                before,
                &reason,
                change.source,
                hooks,
                timeout,
            );
            if let Ok(Reverted {
                revision: Some(number),
                ..
            }) = &outcome
            {
                trail.add(*number);
            }
            return Err(match outcome {
                Ok(reverted) => Failure {
                    msg: format!("wait: {reason}; {}", reverted.describe()),
                    changed: true,
                    reverted: Some(json!({
                        "failed": reverted.failed,
                        "to": reverted.target,
                        "revision": reverted.revision,
                        "ready": reverted.ready.is_ok(),
                        "seconds": (reverting.elapsed().as_secs_f64() * 100.0).round() / 100.0,
                    })),
                },
                Err(revert_error) => {
                    // It stays, so it ended as failed; the task says why.
                    let _ = revisions::note_outcome(tree_dir, failed, &waited);
                    Failure {
                        msg: format!(
                            "wait: {reason}; on_failure=rollback: going back to revision {} failed: {revert_error:#}",
                            before.number
                        ),
                        changed: true,
                        reverted: None,
                    }
                }
            });
        }
    }
    if let Some(number) = change.revision.filter(|_| change.changed) {
        if let Err(e) = revisions::note_outcome(tree_dir, number, &waited) {
            warnings.push(format!(
                "could not record how revision {number} ended: {e:#}"
            ));
        }
    }
    waited.map_err(|e| Failure {
        msg: match hooks.status(&spec) {
            Some(status) => format!("wait: {e:#}; status: {status}"),
            None => format!("wait: {e:#}"),
        },
        changed: change.changed,
        reverted: None,
    })?;
    Ok(())
}

/// The result's `service`: its tree, its status where it runs (a record that cannot be
/// published is also a warning), its revision and a rollback's target.
fn service_report(
    request: &Request,
    tree_dir: &Path,
    check_mode: bool,
    rollback: Option<&revisions::Rollback>,
    hooks: &dyn Hooks,
    warnings: &mut Vec<String>,
) -> Value {
    let mut service = service_info(request, tree_dir);
    // Only where the service runs: asking Docker and etcd costs a no-op call about
    // 10 ms, which a present/disabled tree has no use for.
    if !check_mode && matches!(request.state, State::Enabled | State::Restarted) {
        let installed = request
            .spec
            .clone()
            .or_else(|| crate::plan::installed_spec(tree_dir));
        if let Some(status) = installed.and_then(|spec| hooks.status(&spec)) {
            // The task must not look fine while the record cannot be published.
            if let Some(error) = status["record"]["error"].as_str() {
                warnings.push(format!(
                    "etcd: {error}; the record is published once etcd answers (the announcer retries)"
                ));
            }
            service["status"] = status;
        }
    }
    if let (Some(number), false) = (revisions::current(tree_dir), request.state == State::Absent) {
        service["revision"] = json!(number);
    }
    if let Some(rollback) = rollback {
        service["rollback_to"] = json!(rollback.target);
    }
    service
}

/// A start-first update under `on_failure: rollback` whose new container did not take
/// over: the old one kept serving and spec.json is back, so only the attempt is recorded
/// (marked rolled back) and the call fails saying so.
#[allow(clippy::too_many_arguments)]
fn switch_reverted(
    request: &Request,
    tree_dir: &Path,
    plan: &Plan,
    image_id: Option<String>,
    rollback: Option<&revisions::Rollback>,
    before: &rundock_spec::revisions::Revision,
    reason: &str,
    error: &str,
    trail: &mut crate::trail::Trail,
) -> Failure {
    let attempted = plan
        .writes
        .iter()
        .find(|w| w.path.file_name() == Some(rundock_spec::SPEC_FILE.as_ref()))
        .map(|w| w.contents.as_slice())
        .unwrap_or_default();
    let failed =
        revisions::record_reverted(request, tree_dir, attempted, image_id, rollback, reason);
    let (msg, reverted) = match failed {
        Ok(Some(failed)) => {
            trail.add(failed);
            let reverted = revert::Reverted {
                failed,
                target: before.number,
                revision: None,
                ready: Ok(()),
            };
            (
                format!("{error}; {}", reverted.describe()),
                Some(
                    json!({"failed": failed, "to": before.number, "revision": null, "ready": true}),
                ),
            )
        }
        Ok(None) => (error.to_string(), None),
        Err(e) => (
            format!("{error}; could not record the failed revision: {e:#}"),
            None,
        ),
    };
    Failure {
        msg,
        changed: true,
        reverted,
    }
}

/// The plan made again under the deploy lock. The image was had before the lock, so only
/// what runs now is asked again (no pull): a moved tag another change already deployed
/// is no change any more.
fn replan_locked(
    request: &Request,
    source: &Path,
    tree_dir: &Path,
    hooks: &dyn Hooks,
) -> Result<Plan, Failure> {
    let mut plan = make_plan(request, source).map_err(|e| format!("{e:#}"))?;
    if let (Some(spec), State::Enabled | State::Restarted) = (&request.spec, request.state) {
        let image = hooks
            .check_image(spec, false)
            .map_err(|e| format!("image: {e:#} (nothing was changed)"))?;
        if let Some((running, new)) = image.moved() {
            plan.image_moved = Some((running.to_string(), new.to_string()));
            if !plan.changed() {
                plan.replace_for_moved_image(spec, tree_dir);
            }
        }
    }
    Ok(plan)
}

/// The host's lock file, then, for a service announced through etcd (the spec of the
/// call, or the installed one), its fleet-wide key there, both within `lock_timeout`.
fn take_deploy_lock(
    request: &Request,
    tree_dir: &Path,
    hooks: &dyn Hooks,
) -> Result<(lock::DeployLock, Option<lock::EtcdHeld>, Option<String>), Failure> {
    let mut action = format!("state={}", request.state.as_str());
    if let Some(spec) = &request.spec {
        action.push_str(&format!(" image={}", spec.container.image.as_str()));
    }
    let holder = lock::Holder::current(action);
    let started = std::time::Instant::now();
    let local = lock::acquire(
        &request.paths.sv_dir,
        &request.name,
        request.lock_timeout,
        &holder,
    )
    .map_err(|e| format!("lock_timeout: {e}"))?;
    let spec = request
        .spec
        .clone()
        .or_else(|| crate::plan::installed_spec(tree_dir));
    let etcd = match spec.filter(|s| s.announce.is_some()) {
        Some(spec) => {
            let record = serde_json::to_string(&holder).map_err(|e| e.to_string())?;
            let left = request.lock_timeout.saturating_sub(started.elapsed());
            let mode = match request.lock_token.as_deref() {
                Some(token) => lock::EtcdLockMode::Join(token),
                None => lock::EtcdLockMode::Call,
            };
            match hooks.take_etcd_lock(&spec, &record, left, mode) {
                Ok(held) => held,
                // An etcd that is down must not stop a deploy (it may be the fix): the
                // host's lock still orders changes on this host, and the task says
                // that the fleet-wide one was not taken.
                Err(lock::EtcdLockError::Etcd(e)) => {
                    let warning = format!(
                        "{e}; the deploy lock is held on this host only, so a change of \
                         this service from another controller is not kept out"
                    );
                    return Ok((local, None, Some(warning)));
                }
                Err(lock::EtcdLockError::Timeout { key, holder, .. }) => {
                    // Say the timeout the call was given, not what was left of it.
                    let e = lock::EtcdLockError::Timeout {
                        key,
                        holder,
                        timeout: request.lock_timeout,
                    };
                    return Err(format!("lock_timeout: {e}").into());
                }
                Err(e) => return Err(format!("deploy lock: {e}").into()),
            }
        }
        None => None,
    };
    Ok((local, etcd, None))
}

/// A `play_lock` call: takes the service's deploy lock in etcd for a whole playbook
/// and returns its token, or lets it go. The etcd and domain are the installed tree's.
fn play_lock(
    call: &params::PlayLockCall,
    check_mode: bool,
    hooks: &dyn Hooks,
) -> Result<Value, Failure> {
    let tree_dir = call.sv_dir.join(format!("docker-{}", call.name));
    let spec = crate::plan::installed_spec(&tree_dir).ok_or_else(|| {
        format!(
            "play_lock: docker-{} is not installed here ({} has no spec.json): run the task on a host that runs the service",
            call.name,
            tree_dir.display()
        )
    })?;
    if spec.announce.is_none() {
        return Ok(json!({
            "changed": false,
            "lock": {"token": null},
            "msg": format!("docker-{} is not announced: there is no fleet-wide lock; each change takes its host's lock", call.name),
        }));
    }
    if check_mode {
        return Ok(json!({"changed": false, "lock": {"token": null},
                         "msg": "check mode: the lock is neither taken nor let go"}));
    }
    match call.action {
        params::PlayLock::Acquire => {
            let mut holder = lock::Holder::current(format!("play_lock=acquire name={}", call.name));
            holder.token = Some(lock::new_token().map_err(|e| format!("play_lock: token: {e}"))?);
            let record = serde_json::to_string(&holder).map_err(|e| e.to_string())?;
            let held = hooks
                .take_etcd_lock(&spec, &record, call.lock_timeout, lock::EtcdLockMode::Play)
                .map_err(|e| match e {
                    lock::EtcdLockError::Timeout { .. } => format!("lock_timeout: {e}"),
                    _ => format!("play_lock: {e}"),
                })?
                .ok_or("play_lock: the service's etcd lock could not be had")?;
            let mut info =
                json!({"key": held.key, "ttl": held.ttl, "token": holder.token, "holder": holder});
            if let Some((seconds, waited_for)) = &held.waited {
                info["waited_seconds"] = json!((seconds * 10.0).round() / 10.0);
                info["waited_for"] = waited_for
                    .as_deref()
                    .and_then(lock::Holder::parse)
                    .map_or_else(|| json!(waited_for), |h| json!(h.without_token()));
            }
            Ok(json!({
                "changed": true,
                "lock": info,
                "msg": format!("holds {} for this playbook ({} s past each call that presents lock_token)", held.key, held.ttl),
            }))
        }
        params::PlayLock::Release => {
            let token = call.token.as_deref().unwrap_or_default();
            let released = hooks
                .release_play_lock(&spec, token)
                .map_err(|e| format!("play_lock: {e}"))?;
            Ok(json!({
                "changed": released,
                "msg": if released { "let the playbook's deploy lock go" } else { "the playbook's deploy lock was already gone" },
            }))
        }
    }
}

/// The `lock` result: the file, when it was had and let go (unix seconds: the lock goes
/// as the call returns, just after this), and how long the call waited for whom.
fn lock_info(lock: &lock::DeployLock, etcd: Option<&lock::EtcdHeld>) -> Value {
    let mut info = json!({
        "file": lock.path(),
        "acquired_at": lock::unix_seconds(lock.acquired_at),
        "released_at": lock::unix_seconds(std::time::SystemTime::now()),
    });
    if let Some(waited) = &lock.waited {
        info["waited_seconds"] = json!((waited.seconds * 10.0).round() / 10.0);
        info["waited_for"] = json!(waited.holder);
    }
    if let Some(etcd) = etcd {
        info["etcd"] = json!({"key": etcd.key, "ttl": etcd.ttl});
        if let Some((seconds, holder)) = &etcd.waited {
            info["etcd"]["waited_seconds"] = json!((seconds * 10.0).round() / 10.0);
            info["etcd"]["waited_for"] = holder
                .as_deref()
                .and_then(lock::Holder::parse)
                .map_or_else(|| json!(holder), |h| json!(h.without_token()));
        }
    }
    info
}

/// What an earlier run killed mid-write left behind: in the tree, beside the runner and
/// beside the link.
fn remove_stale_temp_files(request: &Request, tree_dir: &Path) -> anyhow::Result<()> {
    fsutil::remove_stale_temp_files(tree_dir, true)?;
    if let Some(spec) = &request.spec {
        if let Some(runner_dir) = spec.paths.runner.parent() {
            fsutil::remove_stale_temp_files(runner_dir, false)?;
        }
    }
    fsutil::remove_stale_temp_files(&request.paths.service_dir, false)?;
    Ok(())
}

fn truthy(value: Option<&Value>) -> bool {
    value.and_then(params::ansible_bool).unwrap_or(false)
}

fn message(request: &Request, plan: &Plan, check_mode: bool) -> String {
    let name = format!("docker-{}", request.name);
    if !plan.changed() {
        return format!("{name} is already {}", request.state.as_str());
    }
    let mut parts = Vec::new();
    if let Some((running, new)) = &plan.image_moved {
        parts.push(format!(
            "{} now names {new} (the container runs {running})",
            request
                .spec
                .as_ref()
                .map_or("the tag", |s| s.container.image.as_str())
        ));
    }
    if plan.install_runner.is_some() {
        parts.push("installed the runner".to_string());
    }
    if !plan.writes.is_empty() {
        parts.push(format!("wrote {} file(s)", plan.writes.len()));
    }
    if plan.stop {
        parts.push("stopped it".into());
    }
    match &plan.link {
        Some(crate::plan::LinkChange::Create { .. }) => {
            parts.push("linked it (runsvdir starts it within 5 s)".into())
        }
        Some(crate::plan::LinkChange::Remove { .. }) => parts.push("unlinked it".into()),
        None => {}
    }
    if plan.restart {
        parts.push("restarted it".into());
    }
    if plan.start {
        parts.push("started it".into());
    }
    if plan.remove_tree {
        parts.push("removed the tree, its containers and its record".into());
    }
    let verb = if check_mode { "would be: " } else { "" };
    format!(
        "{name} {}: {verb}{}",
        request.state.as_str(),
        parts.join(", ")
    )
}

fn service_info(request: &Request, tree_dir: &Path) -> Value {
    let mut info = json!({
        "name": request.name,
        "state": request.state.as_str(),
        "tree": tree_dir,
        "link": request.paths.service_dir.join(format!("docker-{}", request.name)),
    });
    if let Some(spec) = request
        .spec
        .as_ref()
        .filter(|_| request.state != State::Absent)
    {
        info["container_name"] = json!(spec.container.container_name);
        info["image"] = json!(spec.container.image);
        info["runner"] = json!(spec.paths.runner);
        if let Some(a) = &spec.announce {
            info["record_key"] = json!(skydns::instance_key(
                &a.etcd.prefix,
                &a.domain,
                &spec.name,
                &spec.host_label
            ));
            info["dns_name"] = json!(format!("{}.{}", spec.name, a.domain));
            info["instance_name"] =
                json!(format!("{}.{}.{}", spec.host_label, spec.name, a.domain));
        }
    }
    info
}
