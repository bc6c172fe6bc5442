//! The small JSON state files a tree's processes keep about themselves, so that
//! `rundock status` and `rundock metrics` can show what only those processes know.
//!
//! * the supervisor's [`SupervisorState`] in `services/container/rundock-backoff.json`
//!   (crash-loop count, container exits, the last exit code, the back-off delay);
//! * the announcer's [`AnnouncerState`] in `services/announce/rundock-announce.json`
//!   (each health check's last result and latency, maintenance, what is published,
//!   the last successful refresh, etcd errors);
//! * the watch's [`WatchState`] in `services/watch/rundock-watch.json` (per template:
//!   the last render, the last check and reload with their errors, the instances
//!   rendered);
//! * the supervisor's [`OutputState`] in `services/container/rundock-output.json`
//!   (lines of the container's output dropped because the log sink did not keep up);
//! * the announcer's [`ReplaceRequest`] in `services/container/rundock-replace.json`
//!   while it asks the supervisor to replace a container that stopped answering;
//! * `stop-tree`'s [`DrainState`] in the tree's root `rundock-drain.json` while it
//!   drains.
//!
//! Why files and not a socket: the readers are short-lived (`rundock status`) or scrape
//! on demand (`rundock metrics`), the writers are independent processes under runsv,
//! and a file survives the restart of its writer (the supervisor is a new process per
//! container life). Each file is replaced atomically (temp file + rename) and only when
//! something in it changed, so readers never see half a file and the disk is not
//! written on every loop. Readers treat a missing or unreadable file as "nothing known".
//!
//! Times are Unix seconds (`*_at`), durations seconds as floats (`*_secs`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The supervisor's file, in its working directory (the tree's `services/container`).
pub const SUPERVISOR_STATE_FILE: &str = "rundock-backoff.json";
/// The announcer's file, in its working directory (the tree's `services/announce`).
pub const ANNOUNCER_STATE_FILE: &str = "rundock-announce.json";
/// The watch's file, in the tree's `services/watch`.
pub const WATCH_STATE_FILE: &str = "rundock-watch.json";
/// `stop-tree`'s file, in the tree's root, present only while the tree drains.
pub const DRAIN_STATE_FILE: &str = "rundock-drain.json";
/// The supervisor's output copy's file, beside [`SUPERVISOR_STATE_FILE`].
pub const OUTPUT_STATE_FILE: &str = "rundock-output.json";

/// What the copy of the container's output had to drop because the log sink did not
/// keep up, summed over the container's lives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputState {
    /// Lines dropped (a dropped chunk counts its newlines, at least one).
    pub dropped_lines: u64,
    /// Bytes dropped, summed like the lines.
    pub dropped_bytes: u64,
    /// When the last drop happened (Unix seconds).
    #[serde(default)]
    pub last_drop_at: Option<u64>,
}

/// What the supervisor carries from one container life to the next.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SupervisorState {
    /// Short lives (or failed runs) in a row: the crash-loop count.
    pub failures: u32,
    /// Times the container exited on its own (not stopped by us): its restarts.
    #[serde(default)]
    pub exits: u64,
    /// The exit code of the last life that ended on its own.
    #[serde(default)]
    pub last_exit_code: Option<i64>,
    /// When that life ended.
    #[serde(default)]
    pub last_exit_at: Option<u64>,
    /// The delay the next start waits for, from `failures`.
    #[serde(default)]
    pub backoff_secs: f64,
    /// The next start does not begin before this time (the back-off's end).
    #[serde(default)]
    pub backoff_until: Option<u64>,
    /// Names the container waits for before it starts (`requires`), empty otherwise.
    #[serde(default)]
    pub waiting_for: Vec<String>,
    /// The id of the container whose `post_start` hook succeeded: the announcer
    /// announces a container with a `post_start` only once this is its id.
    #[serde(default)]
    pub post_start_done: Option<String>,
    /// Why the last attempt to get the container running failed, or why it last died
    /// young; kept until a container of the same spec has run stably.
    #[serde(default)]
    pub last_failure: Option<Failure>,
    /// Attempts that failed before the container ran (pull, create, start, post_start).
    #[serde(default)]
    pub failed_starts: u64,
}

/// Whether a failure can pass without anybody changing anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureKind {
    /// Needs a change of the spec or the host: an image that does not exist, a port
    /// in use, a configuration Docker refuses, a container that keeps dying.
    Permanent,
    /// May pass by itself: Docker or the registry unreachable, Docker restarting.
    Transient,
}

impl FailureKind {
    /// The spelling in state files, status and metrics: `permanent` or `transient`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Permanent => "permanent",
            FailureKind::Transient => "transient",
        }
    }
}

/// Where in a container's start the supervisor failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureStage {
    /// Connecting to the Docker Engine.
    Docker,
    /// Making the image present (pull policy, registry).
    Image,
    /// Creating the container.
    Create,
    /// Starting it (port bindings, mounts, the entrypoint).
    Start,
    /// Its `post_start` hook.
    PostStart,
    /// The container ran and died young.
    Exit,
}

impl FailureStage {
    /// The spelling in state files, status and metrics: `docker`, `image`, `create`, `start`,
    /// `post_start` or `exit`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureStage::Docker => "docker",
            FailureStage::Image => "image",
            FailureStage::Create => "create",
            FailureStage::Start => "start",
            FailureStage::PostStart => "post_start",
            FailureStage::Exit => "exit",
        }
    }
}

/// One failure, as the supervisor records it for `rundock status`, `rundock metrics`
/// and the module's `wait`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// Where in the start it failed.
    pub stage: FailureStage,
    /// Whether it may pass without a change.
    pub kind: FailureKind,
    /// Docker's (or the registry's, or the hook's) own words.
    pub message: String,
    /// When it happened (Unix seconds).
    pub at: u64,
    /// [`crate::Spec::container_hash`] of the spec it happened with, so a waiting module
    /// knows whether it is about the spec it just wrote.
    pub spec: String,
}

/// One health check as the announcer last saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckState {
    /// The check, described (`http :8080/`, `tcp :5432`, `exec pg_isready`).
    pub check: String,
    /// The last result; `None` before the first probe of the current container.
    pub pass: Option<bool>,
    /// Why the last probe failed.
    #[serde(default)]
    pub error: Option<String>,
    /// How long the last probe took.
    #[serde(default)]
    pub latency_secs: Option<f64>,
}

/// What the announcer knows that etcd and Docker do not say.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnnouncerState {
    /// The record value this announcer has in etcd; `None` when it has none.
    pub published: Option<String>,
    /// Why nothing is published (`maintenance`, `container not running`, ...).
    #[serde(default)]
    pub withdrawn_because: Option<String>,
    /// Maintenance mode is on (toggled by USR1): the record stays withdrawn whatever the checks
    /// say.
    pub maintenance: bool,
    /// The spec's health checks in their order, each as last probed; empty without checks.
    #[serde(default)]
    pub checks: Vec<CheckState>,
    /// The last successful put or keep-alive.
    #[serde(default)]
    pub last_refresh_at: Option<u64>,
    /// The current etcd error, `None` while etcd answers.
    #[serde(default)]
    pub etcd_error: Option<String>,
    /// Failed etcd requests since the announcer started.
    #[serde(default)]
    pub etcd_errors: u64,
    /// When the announcer started (its counters count from here).
    #[serde(default)]
    pub started_at: u64,
    /// Replacements of a container that stopped answering ([`ReplaceRequest`]) this
    /// announcer asked for since it started.
    #[serde(default)]
    pub replacements: u64,
    /// The last of them.
    #[serde(default)]
    pub last_replacement: Option<ReplaceRequest>,
    /// While a replacement backs off: the next one is not asked for before this time.
    #[serde(default)]
    pub replace_backoff_until: Option<u64>,
}

/// The announcer's request to the supervisor, in its working directory
/// (`services/container`), to replace a container that was healthy and stopped
/// answering: the supervisor reads it at its start (the announcer sends it HUP) and
/// removes it once acted on.
pub const REPLACE_FILE: &str = "rundock-replace.json";

/// What [`REPLACE_FILE`] holds, and the announcer's record of its last request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaceRequest {
    /// The full id of the container to replace: a request about another container
    /// (already replaced, or recreated meanwhile) is dropped.
    pub container: String,
    /// Which check failed, how many rounds in a row, and its last error.
    pub reason: String,
    /// When the announcer asked (Unix seconds).
    pub at: u64,
}

/// How the last start-first update of a spec ended, as the supervisor leaves it in
/// [`crate::UPDATE_FILE`] (its working directory) and the module's rollout wait reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateOutcome {
    /// [`crate::Spec::container_hash`] of the spec the update was to.
    pub spec: String,
    /// True: the new container took over the record and the old one was retired; false: the update
    /// failed and the old container kept serving.
    pub switched: bool,
    /// What happened; on failure, which check failed and why.
    pub message: String,
}

impl UpdateOutcome {
    /// The outcome of an update whose new container took over; `spec` is the container hash it was
    /// to.
    pub fn switched(spec: &str, message: String) -> UpdateOutcome {
        UpdateOutcome {
            spec: spec.into(),
            switched: true,
            message,
        }
    }

    /// The outcome of an update that failed; `message` says which check failed and why.
    pub fn failed(spec: &str, message: String) -> UpdateOutcome {
        UpdateOutcome {
            spec: spec.into(),
            switched: false,
            message,
        }
    }
}

/// The last run of a watch's check or reload command.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepState {
    /// Whether the command exited 0.
    pub ok: bool,
    /// Why it failed, with what the command printed (its end).
    #[serde(default)]
    pub error: Option<String>,
    /// When it ran (Unix seconds).
    pub at: u64,
}

/// One template of a watch as the watch process last saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TemplateState {
    /// The template's path on the host, as the spec names it.
    pub template: String,
    /// The rendered file's path on the host, as the spec names it.
    pub dest: String,
    /// When `dest` last matched a successful render (written, or already equal).
    #[serde(default)]
    pub last_render_at: Option<u64>,
    /// Why the last render did not reach `dest` (template unreadable or not rendering,
    /// `dest` not readable or writable); `None` once one does.
    #[serde(default)]
    pub render_error: Option<String>,
    /// Instances in the last successful render.
    #[serde(default)]
    pub instances: usize,
    /// The last check; `None` before the first or without a check.
    #[serde(default)]
    pub check: Option<StepState>,
    /// The last reload; `None` before the first or without a reload.
    #[serde(default)]
    pub reload: Option<StepState>,
    /// `dest` holds a render that has not passed the check: kept because there was no
    /// earlier file to put back (the check is retried until it passes).
    #[serde(default)]
    pub unchecked: bool,
}

impl TemplateState {
    /// Why this template is not being followed now: the last render, check or reload
    /// failed (the first of these that did), `None` when all is well.
    pub fn failing(&self) -> Option<String> {
        if let Some(e) = &self.render_error {
            return Some(format!("render: {e}"));
        }
        for (step, state) in [("check", &self.check), ("reload", &self.reload)] {
            if let Some(StepState {
                ok: false, error, ..
            }) = state
            {
                return Some(format!("{step}: {}", error.as_deref().unwrap_or("failed")));
            }
        }
        None
    }
}

/// What a watch process knows that the files it writes do not say.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchState {
    /// When the watch started.
    pub started_at: u64,
    /// The records were listed from etcd at least once (nothing renders before).
    #[serde(default)]
    pub records_loaded: bool,
    /// The spec's templates in their order, each as last seen.
    #[serde(default)]
    pub templates: Vec<TemplateState>,
}

/// Present while `stop-tree` drains: the record is withdrawn, the container still runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DrainState {
    /// When the drain began (Unix seconds): the record was withdrawn then.
    pub since: u64,
    /// When the container is stopped at the latest.
    pub until: u64,
}

/// Now as Unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unix seconds as RFC 3339 in UTC, `2026-12-07T05:42:04Z` (Howard Hinnant's
/// civil-from-days), for the times people read: lock holders, revisions.
pub fn utc_timestamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Reads a state file; `None` when it is missing or unreadable.
pub fn read<T: DeserializeOwned>(path: &Path) -> Option<T> {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
}

/// The mode of every state file: written by root, readable by `rundock status` run by
/// anyone, never writable by others.
pub const STATE_FILE_MODE: u32 = 0o644;

/// Replaces `path` atomically with `value` as JSON and [`STATE_FILE_MODE`] (see
/// [`write_atomic`]).
pub fn write<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes, STATE_FILE_MODE)
}

/// Replaces `path` atomically with `bytes` and `mode`: a temp file beside it (created
/// 0600, so nothing is readable by others before its mode is set), synced, then renamed
/// over `path`. Readers see the old file or the new one, never a part; on failure
/// nothing is left behind and the old file stays. The mode is set explicitly, whatever
/// the umask.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the path names no file"))?
        .to_string_lossy();
    let temp = dir.join(format!(".{file_name}.rundock-{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_timestamps_match_known_dates() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(1_796_622_896), "2026-12-07T05:54:56Z");
    }

    #[test]
    fn files_round_trip_and_old_or_bad_files_read_as_defaults() {
        let dir = tempfile_dir();
        let path = dir.join("s.json");
        assert_eq!(read::<SupervisorState>(&path), None);
        let state = SupervisorState {
            failures: 2,
            exits: 5,
            last_exit_code: Some(137),
            ..Default::default()
        };
        write(&path, &state).unwrap();
        assert_eq!(read::<SupervisorState>(&path), Some(state));
        // The format before this module: only the failure count.
        std::fs::write(&path, r#"{"failures":3}"#).unwrap();
        let old: SupervisorState = read(&path).unwrap();
        assert_eq!((old.failures, old.exits), (3, 0));
        std::fs::write(&path, "{half").unwrap();
        assert_eq!(read::<SupervisorState>(&path), None);
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "the temp file was renamed over the state");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("rundock-state-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
