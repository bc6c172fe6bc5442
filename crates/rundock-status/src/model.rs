//! The status of one service, assembled from plain facts by a pure function, so every
//! state (healthy, crash-looping, held down, maintenance, draining, etcd unreachable)
//! can be tested from data alone; [`crate::collect`] gathers the facts.
//!
//! [`ServiceStatus`] is the stable JSON of `rundock status --json`, of the module's
//! `service.status` and of what `rundock metrics` counts. Fields are only ever added;
//! every field is always present (`null` when unknown). The fields:
//!
//! * `name`, `host_label`, `tree`; `enabled`: linked into the service dir;
//! * `state`: one word, the first that applies of `broken` (spec.json unreadable),
//!   `disabled` (not linked, not
//!   supervised), `starting` (linked, runsvdir has not picked it up yet, or the
//!   container runs and its checks are pending), `held-down` (the tree is held down),
//!   `draining` (record withdrawn, container stops at `drain_until`), `held-down` (the
//!   container sibling is held down: `reason` says which), `waiting` (for `requires`), `backing-off`
//!   (crash loop: the next start waits), `stopped` (the container is not running),
//!   `maintenance`, `unhealthy` (a check fails), `unannounced` (healthy but the record is
//!   not in etcd), `up`; `reason`: why, in words;
//! * `runit`: `tree`, `container`, `announce` (`null` without announce): each
//!   `{state, pid, since, uptime_secs, want, normally_down, paused}`;
//! * `container`: `{name, id, image, image_id, running, status, started_at,
//!   uptime_secs, exit_code, restarts, failed_starts, failure, error}`: `restarts`
//!   counts exits seen by the supervisor, `exit_code` is that of the last exit,
//!   `failed_starts` the attempts that failed before the container ran, `failure` the
//!   supervisor's last recorded failure `{stage, kind, message, at, spec}` (`kind`
//!   `permanent` or `transient`), and `error` what keeps it from running now, in words
//!   (`null` while it runs);
//! * `backoff`: `{failures, delay_secs, until, active}`;
//! * `health`: per check `{check, pass, error, latency_secs}`;
//! * `record`: `{key, value, ttl_secs, present, error}` as read from etcd now (`null`
//!   without announce); `announced`: the record is in etcd;
//! * `maintenance`, `draining`, `drain_until`, `waiting_for`;
//! * `etcd`: the announcer's `{error, errors, last_refresh_at, last_refresh_secs_ago}`;
//! * `watch` (`null` without a watch): `{running, records_loaded, started_at,
//!   last_render_secs_ago, error, templates}`, `templates` per template `{template, dest,
//!   last_render_at, render_error, instances, check, reload, unchecked}` with `check` and
//!   `reload` `{ok, error, at}` (`null` before the first); `last_render_secs_ago` is that
//!   of the template rendered longest ago, `error` the first failing step in words;
//!   `runit.watch` is the watch sibling's runsv. A running service whose watch fails
//!   (its last render, check or reload) or does not run is `unhealthy`: it runs, but
//!   what reads the watch's file does not follow the records.

use crate::runit::Runsv;
use rundock_spec::state::{
    AnnouncerState, CheckState, DrainState, Failure, OutputState, ReplaceRequest, SupervisorState,
    TemplateState, WatchState,
};
use serde::Serialize;
use serde_json::Value;
use std::path::PathBuf;

/// Everything known about one service at one moment.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The service name (with a broken spec: the tree's directory name without `docker-`).
    pub name: String,
    /// This host's instance label (the spec's `host_label`).
    pub host_label: String,
    /// The tree directory, `SV_DIR/docker-NAME`.
    pub tree: PathBuf,
    /// When the facts were gathered (Unix seconds); every age and uptime is counted to it.
    pub now: u64,
    /// Why the tree's spec.json could not be read; nothing else is known then.
    pub spec_error: Option<String>,
    /// The tree is linked into the service dir.
    pub linked: bool,
    /// The Docker container's name per the spec; empty with a broken spec.
    pub container_name: String,
    /// Whether the spec has an announce section.
    pub announces: bool,
    /// The etcd key of the service's own record; `None` without an announce section.
    pub record_key: Option<String>,
    /// runsv of the tree itself; `None` counts as unsupervised.
    pub runit_tree: Option<Runsv>,
    /// runsv of the `services/container` sibling (the supervisor); `None` counts as unsupervised.
    pub runit_container: Option<Runsv>,
    /// runsv of the `services/announce` sibling; `None` without an announce section.
    pub runit_announce: Option<Runsv>,
    /// The supervisor's state file; `None` when there is none yet (no failures known).
    pub supervisor: Option<SupervisorState>,
    /// The announcer's state file as read; it counts only while the announce sibling runs.
    pub announcer: Option<AnnouncerState>,
    /// `stop-tree`'s drain file; `None` when the tree is not draining (it counts only while the
    /// container sibling runs).
    pub drain: Option<DrainState>,
    /// Docker's view: `Ok(None)` when there is no such container, `Err` with Docker's words when
    /// Docker could not be asked.
    pub container: Result<Option<ContainerFacts>, String>,
    /// The record as read from etcd: `Ok(None)` absent.
    pub record: Result<Option<RecordFacts>, String>,
    /// Whether the spec has a watch.
    pub watches: bool,
    /// runsv of the `services/watch` sibling; `None` without a watch.
    pub runit_watch: Option<Runsv>,
    /// The watch's state file as read; it counts only while the watch sibling runs.
    pub watch: Option<WatchState>,
    /// What the copy of the container's output had to drop.
    pub output: Option<OutputState>,
    /// The number of the revision the tree's spec.json is (its `revisions.json`).
    pub revision: Option<u64>,
}

impl Default for Facts {
    fn default() -> Facts {
        Facts {
            name: String::new(),
            host_label: String::new(),
            tree: PathBuf::new(),
            now: 0,
            spec_error: None,
            linked: false,
            container_name: String::new(),
            announces: false,
            record_key: None,
            runit_tree: None,
            runit_container: None,
            runit_announce: None,
            supervisor: None,
            announcer: None,
            drain: None,
            container: Ok(None),
            record: Ok(None),
            watches: false,
            runit_watch: None,
            watch: None,
            output: None,
            revision: None,
        }
    }
}

/// What Docker says about the service's container (its inspect).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerFacts {
    /// The full container id.
    pub id: String,
    /// The image reference as the container's config names it.
    pub image: String,
    /// The image id (`sha256:…`) the container runs.
    pub image_id: String,
    /// Docker says the container is running.
    pub running: bool,
    /// Docker's state word: `created`, `running`, `restarting`, `exited`, ...
    pub status: String,
    /// When it last started (Unix seconds); `None` when it never did.
    pub started_at: Option<u64>,
    /// Docker's exit code of the last run; `None` when Docker gives none.
    pub exit_code: Option<i64>,
}

/// The service's record as read from etcd (or, when etcd is not asked, as the announcer last
/// published it).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordFacts {
    /// The key's value as stored: normally the SkyDNS record's JSON.
    pub value: String,
    /// Seconds left before the key expires; `None` for a key without lease or TTL, or when etcd was
    /// not asked.
    pub ttl: Option<u32>,
}

/// The status of one service: the stable JSON this module's doc describes field by field. Fields
/// are only ever added.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceStatus {
    /// The service name (a DNS label); with a broken spec, from the tree's directory name.
    pub name: String,
    /// This host's instance label; empty when the spec is broken.
    pub host_label: String,
    /// One word of [`STATES`]: the first that applies.
    pub state: &'static str,
    /// Why the service is in `state`, in words, for people.
    pub reason: String,
    /// The tree directory, `SV_DIR/docker-NAME`.
    pub tree: PathBuf,
    /// The tree is linked into the service dir.
    pub enabled: bool,
    /// runsv of the tree and of each sibling.
    pub runit: RunitStatus,
    /// The container as Docker and the supervisor tell it.
    pub container: ContainerStatus,
    /// The supervisor's crash-loop back-off.
    pub backoff: BackoffStatus,
    /// Each health check as the announcer last probed it; empty without checks or while the
    /// announcer does not run.
    pub health: Vec<CheckState>,
    /// The service's own record; `None` without an announce section.
    pub record: Option<RecordStatus>,
    /// The record is in etcd now.
    pub announced: bool,
    /// Maintenance mode is on (USR1); known only while the announcer runs.
    pub maintenance: bool,
    /// `stop-tree` is draining: the record is withdrawn and the container still runs.
    pub draining: bool,
    /// When the draining container is stopped at the latest (Unix seconds); `None` when not
    /// draining.
    pub drain_until: Option<u64>,
    /// What the supervisor waits for before it starts the container (`requires` names, a watch's
    /// first file); empty while the container runs.
    pub waiting_for: Vec<String>,
    /// etcd as the announcer sees it.
    pub etcd: EtcdStatus,
    /// The watch sibling and its templates; `None` without a watch.
    pub watch: Option<WatchStatus>,
    /// Lines of the container's output the log did not take (a full disk, a stalled
    /// svlogd): `{dropped_lines, dropped_bytes, last_drop_at}`, all 0 when none.
    pub log: OutputState,
    /// Containers replaced because they stopped answering after they were healthy.
    pub replacements: ReplacementStatus,
    /// The revision the tree's spec.json is (`rundock history NAME` lists them); `null`
    /// before the first one was recorded.
    pub revision: Option<u64>,
}

/// The announcer's liveness rule at work (`unhealthy_after`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplacementStatus {
    /// Replacements asked for since the announcer started.
    pub count: u64,
    /// The last one: `{container, reason, at}`.
    pub last: Option<ReplaceRequest>,
    /// The next replacement does not come before this time (Unix seconds), if later
    /// than now.
    pub backoff_until: Option<u64>,
}

/// runsv of a tree and its siblings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunitStatus {
    /// The tree (`docker-NAME`) itself.
    pub tree: SvStatus,
    /// `services/container`: the supervisor.
    pub container: SvStatus,
    /// `services/announce`; `None` without an announce section.
    pub announce: Option<SvStatus>,
    /// `services/watch`; `None` without a watch.
    pub watch: Option<SvStatus>,
}

/// The watch sibling as `rundock status` shows it; its state file counts only while it runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WatchStatus {
    /// The watch sibling runs (its file is current only then).
    pub running: bool,
    /// The records were listed from etcd at least once (nothing renders before); false while the
    /// watch does not run.
    pub records_loaded: bool,
    /// When the watch started (Unix seconds); `None` while it does not run.
    pub started_at: Option<u64>,
    /// Seconds since the template rendered longest ago last matched its `dest`; `None` while any
    /// template has not rendered yet, or the watch does not run.
    pub last_render_secs_ago: Option<u64>,
    /// What fails, in words (`dest: step: why`); `None` while all templates follow.
    pub error: Option<String>,
    /// Each template in the spec's order; empty while the watch does not run.
    pub templates: Vec<WatchTemplateStatus>,
}

/// One template of a watch: the watch's own record of it, with its age.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WatchTemplateStatus {
    /// What the watch process recorded (its fields are this object's).
    #[serde(flatten)]
    pub state: TemplateState,
    /// Seconds since `dest` last matched a successful render; `None` before the first.
    pub last_render_secs_ago: Option<u64>,
}

/// One runsv service directory, as `rundock status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SvStatus {
    /// `run`, `down`, `finish`, or `unsupervised` when no runsv watches the directory.
    pub state: &'static str,
    /// The process runsv runs (`run`/`finish`); `None` when there is none.
    pub pid: Option<u32>,
    /// When the current state began (Unix seconds); `None` when unsupervised.
    pub since: Option<u64>,
    /// Seconds in the current state (up or down), counted to the facts' time.
    pub uptime_secs: Option<u64>,
    /// `up` or `down` while runsv is asked for the other state (`sv status`'s `want up`/`want
    /// down`); `None` otherwise.
    pub want: Option<&'static str>,
    /// A `down` file: runsvdir does not start the service by itself.
    pub normally_down: bool,
    /// The process is stopped by `sv pause`.
    pub paused: bool,
}

/// The service's container, from Docker and the supervisor's state file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerStatus {
    /// The container's name per the spec.
    pub name: String,
    /// The full container id; `None` when there is no such container or Docker could not be asked.
    pub id: Option<String>,
    /// The image reference it was created from; `None` as for `id`.
    pub image: Option<String>,
    /// The image id (`sha256:…`); `None` as for `id`.
    pub image_id: Option<String>,
    /// Docker reports it running (false when there is no such container or Docker could
    /// not be asked).
    pub running: bool,
    /// Docker's state word (`running`, `exited`, ...); `None` as for `id`.
    pub status: Option<String>,
    /// When it last started (Unix seconds); `None` when it never did or is unknown.
    pub started_at: Option<u64>,
    /// Seconds since it started; `None` unless it runs.
    pub uptime_secs: Option<u64>,
    /// The code of the last exit the supervisor saw, else Docker's for a stopped container; `None`
    /// when none is known.
    pub exit_code: Option<i64>,
    /// Exits the supervisor saw: lives that ended on their own (not stopped by rundock).
    pub restarts: u64,
    /// Attempts that failed before the container ran (pull, create, start, `post_start`).
    pub failed_starts: u64,
    /// The supervisor's last recorded failure, kept until a container of the same spec has run
    /// stably.
    pub failure: Option<Failure>,
    /// What keeps the container from running now, in words (Docker's error, else the last failure);
    /// `None` while it runs.
    pub error: Option<String>,
}

/// The supervisor's crash-loop back-off, from its state file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackoffStatus {
    /// Short lives (or failed runs) in a row.
    pub failures: u32,
    /// The delay the next start waits, in seconds.
    pub delay_secs: f64,
    /// The next start does not begin before this time (Unix seconds); `None` when no delay was set.
    pub until: Option<u64>,
    /// The supervisor is waiting out the delay now.
    pub active: bool,
}

/// The service's own record in etcd, as read now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordStatus {
    /// The etcd key the announcer writes the record at.
    pub key: String,
    /// The record's JSON as in etcd (a string if it is not JSON).
    pub value: Option<Value>,
    /// Seconds left before the key expires; `None` when the key has no lease or TTL, or is absent.
    pub ttl_secs: Option<u32>,
    /// The key exists in etcd now (false also when etcd could not be read).
    pub present: bool,
    /// Why etcd could not be read; `None` when it could.
    pub error: Option<String>,
}

/// etcd as the announcer sees it, from its state file (current only while it runs).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EtcdStatus {
    /// The announcer's current etcd error; `None` while etcd answers or the announcer does not run.
    pub error: Option<String>,
    /// Failed etcd requests since the announcer started.
    pub errors: u64,
    /// The last successful put or keep-alive (Unix seconds); `None` before the first.
    pub last_refresh_at: Option<u64>,
    /// Seconds since then, counted to the facts' time.
    pub last_refresh_secs_ago: Option<u64>,
}

fn sv_status(runsv: Option<&Runsv>, now: u64) -> SvStatus {
    let unsupervised = Runsv::unsupervised(false);
    let r = runsv.unwrap_or(&unsupervised);
    SvStatus {
        state: r.state,
        pid: r.pid,
        since: r.since,
        uptime_secs: r.since.map(|s| now.saturating_sub(s)),
        want: r.want,
        normally_down: r.normally_down,
        paused: r.paused,
    }
}

/// Every `state` a service can be in, in the order they win.
pub const STATES: [&str; 12] = [
    "broken",
    "disabled",
    "starting",
    "held-down",
    "draining",
    "waiting",
    "backing-off",
    "stopped",
    "maintenance",
    "unhealthy",
    "unannounced",
    "up",
];

/// The status of one service from its facts.
pub fn assemble(facts: &Facts) -> ServiceStatus {
    let now = facts.now;
    let seen = Observed::from(facts);
    let (state, reason) = verdict(facts, &seen);
    let last_refresh_at = seen.announcer.as_ref().and_then(|a| a.last_refresh_at);
    let supervisor = &seen.supervisor;
    ServiceStatus {
        name: facts.name.clone(),
        host_label: facts.host_label.clone(),
        state,
        reason,
        tree: facts.tree.clone(),
        enabled: facts.linked,
        runit: RunitStatus {
            tree: sv_status(facts.runit_tree.as_ref(), now),
            container: sv_status(facts.runit_container.as_ref(), now),
            announce: facts
                .announces
                .then(|| sv_status(facts.runit_announce.as_ref(), now)),
            watch: facts
                .watches
                .then(|| sv_status(facts.runit_watch.as_ref(), now)),
        },
        container: container_status(facts, &seen),
        backoff: BackoffStatus {
            failures: supervisor.failures,
            delay_secs: supervisor.backoff_secs,
            until: supervisor.backoff_until,
            active: seen.backoff_active,
        },
        record: record_status(facts, &seen),
        announced: seen.record_present,
        maintenance: seen.maintenance,
        draining: seen.draining,
        drain_until: facts
            .drain
            .as_ref()
            .filter(|_| seen.draining)
            .map(|d| d.until),
        waiting_for: if seen.running {
            Vec::new()
        } else {
            supervisor.waiting_for.clone()
        },
        etcd: EtcdStatus {
            error: seen.etcd_error.clone(),
            errors: facts.announcer.as_ref().map_or(0, |a| a.etcd_errors),
            last_refresh_at,
            last_refresh_secs_ago: last_refresh_at.map(|at| now.saturating_sub(at)),
        },
        log: facts.output.clone().unwrap_or_default(),
        replacements: ReplacementStatus {
            count: facts.announcer.as_ref().map_or(0, |a| a.replacements),
            last: facts
                .announcer
                .as_ref()
                .and_then(|a| a.last_replacement.clone()),
            backoff_until: facts
                .announcer
                .as_ref()
                .and_then(|a| a.replace_backoff_until)
                .filter(|until| *until > now),
        },
        revision: facts.revision,
        health: seen.checks,
        watch: seen.watch,
    }
}

/// What the facts say once read together: which process is really up, and what the
/// state files are still current for.
struct Observed {
    supervisor: SupervisorState,
    tree_up: bool,
    running: bool,
    /// The announcer's file; current only while the announcer runs.
    announcer: Option<AnnouncerState>,
    maintenance: bool,
    checks: Vec<CheckState>,
    record_present: bool,
    draining: bool,
    /// Between short lives the supervisor process runs (or runsv is about to start it
    /// again) while the container does not: it is waiting out the delay.
    backoff_active: bool,
    waiting: bool,
    etcd_error: Option<String>,
    /// What keeps the container from running, in Docker's (or the registry's) words.
    failure_words: Option<String>,
    watch: Option<WatchStatus>,
}

impl Observed {
    fn from(facts: &Facts) -> Observed {
        let now = facts.now;
        let supervisor = facts.supervisor.clone().unwrap_or_default();
        let container_sv = facts.runit_container.as_ref();
        let running = facts
            .container
            .as_ref()
            .ok()
            .and_then(Option::as_ref)
            .is_some_and(|c| c.running);
        let announcer = facts
            .announcer
            .clone()
            .filter(|_| facts.runit_announce.as_ref().is_some_and(Runsv::is_running));
        let backoff_active = !running
            && supervisor.failures > 0
            && (supervisor.backoff_until.is_some_and(|until| until > now)
                || container_sv.is_some_and(Runsv::is_running));
        let failure_words = supervisor
            .last_failure
            .as_ref()
            .filter(|_| !running)
            .map(|f| {
                format!(
                    "{} failed ({}): {}",
                    f.stage.as_str(),
                    f.kind.as_str(),
                    f.message
                )
            });
        Observed {
            tree_up: facts.runit_tree.as_ref().is_some_and(Runsv::is_running),
            running,
            maintenance: announcer.as_ref().is_some_and(|a| a.maintenance),
            checks: announcer
                .as_ref()
                .map(|a| a.checks.clone())
                .unwrap_or_default(),
            record_present: matches!(facts.record, Ok(Some(_))),
            draining: facts.drain.is_some() && container_sv.is_some_and(Runsv::is_running),
            backoff_active,
            waiting: !running && !supervisor.waiting_for.is_empty(),
            etcd_error: announcer.as_ref().and_then(|a| a.etcd_error.clone()),
            failure_words,
            watch: facts.watches.then(|| watch_status(facts, now)),
            announcer,
            supervisor,
        }
    }
}

/// The one state word and its reason, in order of what the operator must fix first.
fn verdict(facts: &Facts, seen: &Observed) -> (&'static str, String) {
    let tree_sv = facts.runit_tree.as_ref();
    let supervisor = &seen.supervisor;
    let watch_error = seen.watch.as_ref().and_then(|w| w.error.as_ref());
    if let Some(e) = &facts.spec_error {
        ("broken", e.clone())
    } else if tree_sv.is_none_or(|t| t.state == "unsupervised") {
        if facts.linked {
            ("starting", "linked; runsvdir starts it within 5 s".into())
        } else {
            ("disabled", "not linked into the service dir".into())
        }
    } else if !seen.tree_up || tree_sv.is_some_and(|t| t.want == Some("down")) {
        if seen.draining {
            ("draining", drain_reason(facts.drain.as_ref(), facts.now))
        } else {
            ("held-down", "the tree is held down (sv down)".into())
        }
    } else if seen.draining {
        ("draining", drain_reason(facts.drain.as_ref(), facts.now))
    } else if facts.runit_container.as_ref().is_some_and(Runsv::held_down) {
        ("held-down", "the container is held down (sv down)".into())
    } else if seen.waiting {
        ("waiting", waiting_reason(&supervisor.waiting_for))
    } else if seen.backoff_active {
        (
            "backing-off",
            format!(
                "{}crash loop: {} short run(s) in a row; {}s between starts",
                seen.failure_words
                    .as_ref()
                    .map(|f| format!("{f}; "))
                    .unwrap_or_default(),
                supervisor.failures,
                supervisor.backoff_secs
            ),
        )
    } else if !seen.running {
        match &facts.container {
            Err(e) => ("stopped", format!("docker: {e}")),
            Ok(_) => (
                "stopped",
                match (&seen.failure_words, supervisor.last_exit_code) {
                    (Some(words), _) => words.clone(),
                    (None, Some(code)) => {
                        format!("the container is not running (last exit {code})")
                    }
                    (None, None) => "the container is not running".into(),
                },
            ),
        }
    } else if seen.maintenance {
        (
            "maintenance",
            "record withdrawn for maintenance (USR1)".into(),
        )
    } else if let Some(failing) = seen.checks.iter().find(|c| c.pass == Some(false)) {
        (
            "unhealthy",
            format!(
                "health check {} fails{}",
                failing.check,
                failing
                    .error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
        )
    } else if let Some(e) = watch_error {
        ("unhealthy", format!("watch: {e}"))
    } else if !facts.announces {
        ("up", "running (not announced)".into())
    } else if seen.record_present {
        ("up", "running and announced".into())
    } else if let Some(e) = seen
        .etcd_error
        .clone()
        .or_else(|| facts.record.clone().err())
    {
        ("unannounced", format!("etcd: {e}"))
    } else if seen.checks.iter().any(|c| c.pass.is_none()) {
        ("starting", "health checks pending".into())
    } else {
        (
            "unannounced",
            seen.announcer
                .as_ref()
                .and_then(|a| a.withdrawn_because.clone())
                .unwrap_or_else(|| "the record is not in etcd".into()),
        )
    }
}

/// The container as Docker and the supervisor's state file tell it.
fn container_status(facts: &Facts, seen: &Observed) -> ContainerStatus {
    let container = facts.container.as_ref().ok().and_then(Option::as_ref);
    let supervisor = &seen.supervisor;
    ContainerStatus {
        name: facts.container_name.clone(),
        id: container.map(|c| c.id.clone()),
        image: container.map(|c| c.image.clone()),
        image_id: container.map(|c| c.image_id.clone()),
        running: seen.running,
        status: container.map(|c| c.status.clone()),
        started_at: container.and_then(|c| c.started_at),
        uptime_secs: container
            .filter(|c| c.running)
            .and_then(|c| c.started_at)
            .map(|s| facts.now.saturating_sub(s)),
        exit_code: supervisor
            .last_exit_code
            .or_else(|| container.filter(|c| !c.running).and_then(|c| c.exit_code)),
        restarts: supervisor.exits,
        failed_starts: supervisor.failed_starts,
        failure: supervisor.last_failure.clone(),
        error: facts
            .container
            .as_ref()
            .err()
            .cloned()
            .or_else(|| seen.failure_words.clone()),
    }
}

/// The service's record in etcd, for an announced service.
fn record_status(facts: &Facts, seen: &Observed) -> Option<RecordStatus> {
    let key = facts.record_key.as_ref().filter(|_| facts.announces)?;
    let (value, ttl, error) = match &facts.record {
        Ok(Some(r)) => (
            Some(serde_json::from_str(&r.value).unwrap_or_else(|_| Value::String(r.value.clone()))),
            r.ttl,
            None,
        ),
        Ok(None) => (None, None, None),
        Err(e) => (None, None, Some(e.clone())),
    };
    Some(RecordStatus {
        key: key.clone(),
        value,
        ttl_secs: ttl,
        present: seen.record_present,
        error,
    })
}

/// The watch as its state file and runsv say; the file is current only while it runs.
fn watch_status(facts: &Facts, now: u64) -> WatchStatus {
    let running = facts.runit_watch.as_ref().is_some_and(Runsv::is_running);
    let file = facts.watch.clone().filter(|_| running);
    let templates: Vec<WatchTemplateStatus> = file
        .as_ref()
        .map(|w| w.templates.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|state| WatchTemplateStatus {
            last_render_secs_ago: state.last_render_at.map(|at| now.saturating_sub(at)),
            state,
        })
        .collect();
    let error = if !running {
        Some("the watch is not running".to_string())
    } else {
        templates.iter().find_map(|t| {
            t.state
                .failing()
                .map(|why| format!("{}: {why}", t.state.dest))
        })
    };
    let oldest = templates
        .iter()
        .map(|t| t.state.last_render_at)
        .min()
        .flatten();
    WatchStatus {
        running,
        records_loaded: file.as_ref().is_some_and(|w| w.records_loaded),
        started_at: file.as_ref().map(|w| w.started_at),
        last_render_secs_ago: oldest.map(|at| now.saturating_sub(at)),
        error,
        templates,
    }
}

fn drain_reason(drain: Option<&DrainState>, now: u64) -> String {
    match drain {
        Some(d) => format!(
            "record withdrawn; the container stops in {}s",
            d.until.saturating_sub(now)
        ),
        None => "record withdrawn; the container stops".into(),
    }
}

/// What the supervisor waits for, in words: required names "to be announced"; other
/// entries (the watch's first render of a file) say what they are themselves.
fn waiting_reason(waiting_for: &[String]) -> String {
    let (names, others): (Vec<&String>, Vec<&String>) =
        waiting_for.iter().partition(|entry| !entry.contains(' '));
    let mut parts: Vec<String> = others.into_iter().cloned().collect();
    if !names.is_empty() {
        let names: Vec<&str> = names.into_iter().map(String::as_str).collect();
        parts.insert(0, format!("{} to be announced", names.join(", ")));
    }
    format!("waiting for {}", parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_says_what_it_waits_for() {
        let entries = |e: &[&str]| e.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            waiting_reason(&entries(&["db.s.example", "mq.s.example"])),
            "waiting for db.s.example, mq.s.example to be announced"
        );
        assert_eq!(
            waiting_reason(&entries(&[
                "the watch's first render of /srv/up.conf",
                "db.s.example"
            ])),
            "waiting for db.s.example to be announced; the watch's first render of /srv/up.conf"
        );
    }

    fn runsv(state: &'static str) -> Option<Runsv> {
        Some(Runsv {
            state,
            pid: (state == "run").then_some(10),
            since: Some(100),
            want: None,
            normally_down: false,
            paused: false,
        })
    }

    fn running_container() -> Result<Option<ContainerFacts>, String> {
        Ok(Some(ContainerFacts {
            id: "c".repeat(64),
            image: "web:1".into(),
            image_id: "sha256:1".into(),
            running: true,
            status: "running".into(),
            started_at: Some(150),
            exit_code: Some(0),
        }))
    }

    fn healthy() -> Facts {
        Facts {
            name: "web".into(),
            now: 200,
            linked: true,
            container_name: "web".into(),
            announces: true,
            record_key: Some("/skydns/x/web/n1".into()),
            runit_tree: runsv("run"),
            runit_container: runsv("run"),
            runit_announce: runsv("run"),
            announcer: Some(AnnouncerState {
                published: Some("{}".into()),
                checks: vec![CheckState {
                    check: "tcp :80".into(),
                    pass: Some(true),
                    error: None,
                    latency_secs: Some(0.001),
                }],
                last_refresh_at: Some(190),
                ..Default::default()
            }),
            container: running_container(),
            record: Ok(Some(RecordFacts {
                value: r#"{"host":"10.0.0.1","port":80}"#.into(),
                ttl: Some(9),
            })),
            ..Facts::default()
        }
    }

    #[test]
    fn a_healthy_service_is_up_with_its_record_and_uptime() {
        let s = assemble(&healthy());
        assert_eq!(s.state, "up", "{}", s.reason);
        assert!(s.announced);
        assert_eq!(s.container.uptime_secs, Some(50));
        assert_eq!(s.runit.tree.uptime_secs, Some(100));
        assert_eq!(s.etcd.last_refresh_secs_ago, Some(10));
        assert_eq!(s.record.unwrap().value.unwrap()["port"], 80);
    }

    #[test]
    fn a_recorded_failure_is_the_reason_while_the_container_does_not_run() {
        let failure = Failure {
            stage: rundock_spec::state::FailureStage::Start,
            kind: rundock_spec::state::FailureKind::Permanent,
            message: "cannot start container web: port is already allocated".into(),
            at: 190,
            spec: "h".into(),
        };
        let mut facts = healthy();
        facts.container = Ok(None);
        facts.supervisor = Some(SupervisorState {
            failures: 2,
            failed_starts: 2,
            backoff_secs: 2.0,
            backoff_until: Some(202),
            last_failure: Some(failure.clone()),
            ..Default::default()
        });
        let s = assemble(&facts);
        assert_eq!(s.state, "backing-off");
        assert!(
            s.reason
                .starts_with("start failed (permanent): cannot start container web: port is already allocated; crash loop"),
            "{}",
            s.reason
        );
        assert_eq!(
            s.container.error.as_deref(),
            Some(&s.reason[..s.reason.find("; crash").unwrap()])
        );
        assert_eq!(s.container.failed_starts, 2);
        assert_eq!(s.container.failure, Some(failure.clone()));
        // Once a container runs, an old failure is history, not the reason.
        let mut facts = healthy();
        facts.supervisor = Some(SupervisorState {
            last_failure: Some(failure),
            ..Default::default()
        });
        let s = assemble(&facts);
        assert_eq!((s.state, s.container.error), ("up", None));
    }

    #[test]
    fn each_state_wins_in_order() {
        let state = |f: &dyn Fn(&mut Facts)| {
            let mut facts = healthy();
            f(&mut facts);
            let state = assemble(&facts).state;
            assert!(STATES.contains(&state), "{state} is missing from STATES");
            state
        };
        assert_eq!(state(&|f| f.spec_error = Some("bad".into())), "broken");
        assert_eq!(
            state(&|f| {
                f.linked = false;
                f.runit_tree = runsv("unsupervised");
            }),
            "disabled"
        );
        assert_eq!(state(&|f| f.runit_tree = runsv("down")), "held-down");
        assert_eq!(
            state(&|f| f.drain = Some(DrainState {
                since: 190,
                until: 210
            })),
            "draining"
        );
        assert_eq!(state(&|f| f.runit_container = runsv("down")), "held-down");
        let crash_loop = |f: &mut Facts| {
            f.container = Ok(None);
            f.supervisor = Some(SupervisorState {
                failures: 3,
                exits: 3,
                last_exit_code: Some(3),
                backoff_secs: 4.0,
                backoff_until: Some(150),
                ..Default::default()
            });
        };
        assert_eq!(state(&crash_loop), "backing-off");
        assert_eq!(
            state(&|f| {
                crash_loop(f);
                f.supervisor.as_mut().unwrap().waiting_for = vec!["db.s.example".into()];
            }),
            "waiting"
        );
        assert_eq!(
            state(&|f| {
                crash_loop(f);
                f.runit_container = runsv("finish");
            }),
            "stopped"
        );
        assert_eq!(
            state(&|f| f.announcer.as_mut().unwrap().maintenance = true),
            "maintenance"
        );
        assert_eq!(
            state(&|f| f.announcer.as_mut().unwrap().checks[0].pass = Some(false)),
            "unhealthy"
        );
        assert_eq!(
            state(&|f| {
                f.record = Err("connection refused".into());
                f.announcer.as_mut().unwrap().etcd_error = Some("connection refused".into());
            }),
            "unannounced"
        );
        assert_eq!(
            state(&|f| {
                f.record = Ok(None);
                f.announcer.as_mut().unwrap().checks[0].pass = None;
            }),
            "starting"
        );
    }

    fn watching(facts: &mut Facts, template: TemplateState) {
        facts.watches = true;
        facts.runit_watch = runsv("run");
        facts.watch = Some(WatchState {
            started_at: 120,
            records_loaded: true,
            templates: vec![template],
        });
    }

    fn rendered() -> TemplateState {
        TemplateState {
            template: "/etc/t.j2".into(),
            dest: "/etc/nginx/upstream.conf".into(),
            last_render_at: Some(195),
            instances: 2,
            check: Some(rundock_spec::state::StepState {
                ok: true,
                error: None,
                at: 195,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_following_watch_is_shown_and_a_failing_one_makes_the_service_unhealthy() {
        let mut facts = healthy();
        watching(&mut facts, rendered());
        let s = assemble(&facts);
        assert_eq!(s.state, "up", "{}", s.reason);
        let watch = s.watch.unwrap();
        assert!(watch.running && watch.records_loaded);
        assert_eq!(watch.last_render_secs_ago, Some(5));
        assert_eq!(watch.error, None);
        assert_eq!(watch.templates[0].state.instances, 2);
        assert_eq!(watch.templates[0].last_render_secs_ago, Some(5));
        let json = serde_json::to_value(&watch).unwrap();
        assert_eq!(json["templates"][0]["dest"], "/etc/nginx/upstream.conf");
        assert_eq!(json["templates"][0]["check"]["ok"], true);
        assert_eq!(s.runit.watch.unwrap().state, "run");

        let mut broken = rendered();
        broken.render_error = Some("rendering template /etc/t.j2: syntax error".into());
        let mut facts = healthy();
        watching(&mut facts, broken);
        let s = assemble(&facts);
        assert_eq!(s.state, "unhealthy");
        assert_eq!(
            s.reason,
            "watch: /etc/nginx/upstream.conf: render: rendering template /etc/t.j2: syntax error"
        );

        let mut refused = rendered();
        refused.check = Some(rundock_spec::state::StepState {
            ok: false,
            error: Some("exit 1: nginx: [emerg] unknown directive".into()),
            at: 196,
        });
        let mut facts = healthy();
        watching(&mut facts, refused);
        facts.announces = false;
        let s = assemble(&facts);
        assert_eq!(s.state, "unhealthy");
        assert!(
            s.reason.contains("check: exit 1: nginx: [emerg]"),
            "{}",
            s.reason
        );

        // A watch that does not run follows nothing, whatever its old file says.
        let mut facts = healthy();
        watching(&mut facts, rendered());
        facts.runit_watch = runsv("down");
        let s = assemble(&facts);
        assert_eq!(
            (s.state, s.reason.as_str()),
            ("unhealthy", "watch: the watch is not running")
        );
        assert!(s.watch.unwrap().templates.is_empty());
        // Without a watch in the spec there is none to show.
        assert_eq!(assemble(&healthy()).watch, None);
    }

    #[test]
    fn a_stale_announcer_file_is_ignored_once_the_announcer_is_down() {
        let mut facts = healthy();
        facts.runit_announce = runsv("down");
        facts.announcer.as_mut().unwrap().maintenance = true;
        let s = assemble(&facts);
        assert!(!s.maintenance);
        assert!(s.health.is_empty());
    }
}
