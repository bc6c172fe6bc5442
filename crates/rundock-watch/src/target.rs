//! One template's path from instances to a reloaded reader, as a reconcile step: compare
//! what the template renders with what `dest` holds, and close the gap with at most one
//! write, one check and one reload. `dest` is replaced atomically (temp file in its
//! directory, then rename, keeping the old file's mode); a failing check puts the old
//! bytes back the same way, so a reader never sees a file that did not pass the check
//! for longer than the check runs, and a reload never loads one.
//!
//! The one exception is the first file: with nothing to put back, a new file whose check
//! fails is kept (and the check retried, no reload until it passes). Deleting it would
//! leave the reader nothing to start with while its check cannot pass before the reader
//! runs (`docker exec PROXY nginx -t`): that was a start-up deadlock. A reader that
//! starts with a file that fails its check refuses to start, as it would without one.
//! A check that could not run (no such program, a timeout) is told apart from one that
//! ran and refused in the log and the state, and handled the same way.
//!
//! The check runs on `dest` in place rather than on the temp file because a proxy's check
//! (`nginx -t`) reads its whole configuration, which includes `dest` by its real path.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rundock_spec::state::{unix_now, StepState, TemplateState};
use rundock_spec::watch::TemplateSpec;

use crate::render::{self, Context};

/// How long a check or reload command may run before it counts as failed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Mode of a `dest` that did not exist before.
const NEW_FILE_MODE: u32 = 0o644;
/// Output of a failed command shown in the log, from its end.
const OUTPUT_SHOWN: usize = 600;

/// What one [`Target::update`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `dest` already held these bytes and no check or reload was owed.
    Unchanged,
    /// `dest` was written (or not, `written == false`, when only an owed check or
    /// reload ran) and the reload ran (or there is none).
    Updated {
        /// `dest` got new bytes in this update.
        written: bool,
        /// The reload command ran and succeeded; `false` when no reload was owed (no
        /// reload configured, or the bytes it would load were already loaded).
        reloaded: bool,
    },
    /// Something failed; `dest` holds what it held before (or the new, checked bytes when
    /// only the reload failed, or the new unchecked bytes when there was nothing to put
    /// back). The message names what failed and what `dest` holds now.
    Failed(String),
}

/// A template, its destination, what its reader still owes, and what was last seen (the
/// watch's state file is made of these).
#[derive(Debug)]
pub struct Target {
    /// The template as configured (template, `dest`, names, check and reload argv);
    /// updates never change it.
    pub spec: TemplateSpec,
    reload_owed: bool,
    /// `dest` holds bytes that have not passed the check.
    unchecked: bool,
    /// What the updates so far found (last render, check, reload, instances, errors),
    /// kept current by [`Target::update`]: the template's part of the watch's state file.
    pub state: TemplateState,
}

impl Target {
    /// A target that has done nothing yet: no check or reload owed, a state naming only
    /// the template and `dest`. Its first update compares the render with whatever
    /// `dest` already holds, so an equal file is neither written nor reloaded.
    pub fn new(spec: TemplateSpec) -> Target {
        let state = TemplateState {
            template: spec.template.display().to_string(),
            dest: spec.dest.display().to_string(),
            ..TemplateState::default()
        };
        Target {
            spec,
            reload_owed: false,
            unchecked: false,
            state,
        }
    }

    /// Renders with `context` and brings `dest` and its reader up to date.
    ///
    /// A failing check puts the previous file back. When there is none (the first
    /// render, before the reader ever ran), the new file is kept: deleting it would leave
    /// the reader nothing to start with, and its check often cannot pass before the
    /// reader runs (`docker exec PROXY nginx -t` on a container that is not up). No
    /// reload runs for a file that has not passed the check; the check is run again on
    /// the next update even without a change, and the reload follows once it passes.
    pub async fn update(&mut self, context: &Context) -> Outcome {
        let outcome = self.reconcile(context).await;
        self.state.unchecked = self.unchecked;
        outcome
    }

    async fn reconcile(&mut self, context: &Context) -> Outcome {
        let spec = &self.spec;
        let template = spec.template.display().to_string();
        let dest = spec.dest.display().to_string();
        let source = match std::fs::read_to_string(&spec.template) {
            Ok(source) => source,
            Err(e) => return self.render_failed(format!("reading template {template}: {e}")),
        };
        let rendered = match render::render(&template, &source, context) {
            Ok(text) => text.into_bytes(),
            Err(e) => {
                return self.render_failed(format!(
                    "rendering template {template}: {}",
                    render::describe(&e)
                ))
            }
        };
        let old = match read_if_exists(&spec.dest) {
            Ok(old) => old,
            Err(e) => return self.render_failed(format!("reading {dest}: {e}")),
        };
        let changed = old.as_ref().map(|(bytes, _)| bytes) != Some(&rendered);
        if !changed && !self.reload_owed && !self.unchecked {
            self.rendered(context);
            return Outcome::Unchanged;
        }
        let (was_owed, was_unchecked) = (self.reload_owed, self.unchecked);
        if changed {
            let mode = old.as_ref().map_or(NEW_FILE_MODE, |(_, mode)| *mode);
            if let Err(e) = write_atomic(&spec.dest, &rendered, mode) {
                return self.render_failed(format!("writing {dest}: {e}"));
            }
            self.reload_owed = !spec.reload.is_empty();
            self.unchecked = !spec.check.is_empty();
        }
        self.rendered(context);
        if self.unchecked {
            let result = run(&self.spec.check).await;
            self.state.check = Some(step(&result));
            match result {
                Ok(()) => self.unchecked = false,
                Err(e) => {
                    let what = format!(
                        "check {} {} for {dest}: {e}",
                        shown(&self.spec.check),
                        e.verb()
                    );
                    let Some((bytes, mode)) = old.filter(|_| changed) else {
                        return Outcome::Failed(format!(
                            "{what}; {dest} is kept: there is no earlier file to put back and \
                             its reader may not be up yet; no reload until the check passes \
                             (it is retried)"
                        ));
                    };
                    // The earlier bytes are back, with what they still owed.
                    self.reload_owed = was_owed;
                    self.unchecked = was_unchecked;
                    let kept = match write_atomic(&self.spec.dest, &bytes, mode) {
                        Ok(()) => "the old file is back".to_string(),
                        Err(r) => format!("and putting the old file back failed too: {r}"),
                    };
                    return Outcome::Failed(format!("{what}; {kept}, no reload"));
                }
            }
        }
        if !self.reload_owed {
            return Outcome::Updated {
                written: changed,
                reloaded: false,
            };
        }
        let result = run(&self.spec.reload).await;
        self.state.reload = Some(step(&result));
        match result {
            Ok(()) => {
                self.reload_owed = false;
                Outcome::Updated {
                    written: changed,
                    reloaded: true,
                }
            }
            Err(e) => Outcome::Failed(format!(
                "reload {} failed: {e}; {dest} is written and checked, the reload is retried",
                shown(&self.spec.reload),
            )),
        }
    }

    fn render_failed(&mut self, why: String) -> Outcome {
        self.state.render_error = Some(why.clone());
        Outcome::Failed(why)
    }

    fn rendered(&mut self, context: &Context) {
        self.state.render_error = None;
        self.state.last_render_at = Some(unix_now());
        self.state.instances = context.instances.len();
    }
}

fn step(result: &Result<(), CommandError>) -> StepState {
    StepState {
        ok: result.is_ok(),
        error: result.as_ref().err().map(|e| {
            if e.ran {
                e.message.clone()
            } else {
                format!("could not run: {}", e.message)
            }
        }),
        at: unix_now(),
    }
}

fn read_if_exists(path: &Path) -> std::io::Result<Option<(Vec<u8>, u32)>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let mode = std::fs::metadata(path)?.permissions().mode() & 0o7777;
            Ok(Some((bytes, mode)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` to `path` with `mode` as every rundock file is replaced
/// ([`rundock_spec::state::write_atomic`]): readers see the old file or the new one,
/// never a part.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    rundock_spec::state::write_atomic(path, bytes, mode)
}

/// Why a command did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    /// The program ran and said no (a non-zero exit or a signal), as against: it could
    /// not be started or did not finish in time.
    pub ran: bool,
    /// One line for logs and the state file: for a program that ran, `exit N` or
    /// `killed by a signal`, then the end of what it printed (at most 600 characters,
    /// stderr before stdout, lines joined by ` | `); otherwise why it could not start
    /// or finish.
    pub message: String,
}

impl CommandError {
    /// "failed" when the program ran and said no, "could not run" otherwise.
    pub fn verb(&self) -> &'static str {
        if self.ran {
            "failed"
        } else {
            "could not run"
        }
    }
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Runs `argv` (no shell), with no input, and fails on a non-zero exit, a signal, a
/// timeout or a program that cannot start, saying which and what it printed.
pub async fn run(argv: &[String]) -> Result<(), CommandError> {
    let not_run = |message: String| CommandError {
        ran: false,
        message,
    };
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| not_run("empty command".into()))?;
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| not_run(format!("cannot start {program}: {e}")))?;
    let output = match tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return Err(not_run(format!("waiting for {program}: {e}"))),
        Err(_) => {
            return Err(not_run(format!(
                "still running after {} s, killed",
                COMMAND_TIMEOUT.as_secs()
            )))
        }
    };
    if output.status.success() {
        return Ok(());
    }
    let mut printed = String::from_utf8_lossy(&output.stderr).into_owned();
    printed.push_str(&String::from_utf8_lossy(&output.stdout));
    let printed = printed.trim();
    let tail: String = {
        let chars: Vec<char> = printed.chars().collect();
        chars[chars.len().saturating_sub(OUTPUT_SHOWN)..]
            .iter()
            .collect()
    };
    let status = match output.status.code() {
        Some(code) => format!("exit {code}"),
        None => "killed by a signal".to_string(),
    };
    Err(CommandError {
        ran: true,
        message: if tail.is_empty() {
            status
        } else {
            format!("{status}: {}", tail.replace('\n', " | "))
        },
    })
}

/// A command as a log line shows it: the argv as a JSON list, unambiguous.
fn shown(argv: &[String]) -> String {
    serde_json::to_string(argv).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::Instance;
    use rundock_dns::instances::Instance as DnsInstance;
    use std::path::PathBuf;

    struct Fixture {
        dir: tempfile::TempDir,
        target: Target,
        log: PathBuf,
    }

    impl Fixture {
        /// A template listing addresses; check fails when the rendered file holds
        /// "bad" or while a file `down` exists (a reader not up yet); reload appends a
        /// line to a log (so reloads can be counted).
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let template = dir.path().join("t.j2");
            std::fs::write(
                &template,
                "{% for i in instances %}{{ i.address }}\n{% endfor %}",
            )
            .unwrap();
            let dest = dir.path().join("out.conf");
            let log = dir.path().join("reloads");
            let sh = |script: String| vec!["/bin/sh".into(), "-c".into(), script];
            let spec = TemplateSpec {
                names: vec!["web".into()],
                template,
                dest: dest.clone(),
                check: sh(format!(
                    "test ! -e {} && ! grep -q bad {}",
                    dir.path().join("down").display(),
                    dest.display()
                )),
                reload: sh(format!("echo reload >> {}", log.display())),
            };
            Fixture {
                dir,
                target: Target::new(spec),
                log,
            }
        }

        fn dest(&self) -> PathBuf {
            self.target.spec.dest.clone()
        }

        fn reloads(&self) -> usize {
            std::fs::read_to_string(&self.log)
                .map(|t| t.lines().count())
                .unwrap_or(0)
        }
    }

    fn context(hosts: &[&str]) -> Context {
        let list = hosts
            .iter()
            .map(|host| {
                Instance::new(
                    "web",
                    DnsInstance {
                        host: host.to_string(),
                        port: 80,
                        priority: 10,
                        weight: 100,
                        target: String::new(),
                        instance: host.to_string(),
                        key: String::new(),
                    },
                )
            })
            .collect();
        Context::new("s.test", vec![("web".into(), list)])
    }

    #[tokio::test]
    async fn writes_checks_and_reloads_once_per_change_keeping_the_mode() {
        let mut f = Fixture::new();
        let up = f.target.update(&context(&["10.0.0.1"])).await;
        assert_eq!(
            up,
            Outcome::Updated {
                written: true,
                reloaded: true
            }
        );
        assert_eq!(std::fs::read_to_string(f.dest()).unwrap(), "10.0.0.1:80\n");
        std::fs::set_permissions(f.dest(), std::fs::Permissions::from_mode(0o640)).unwrap();
        // Same set: byte-identical, nothing reloaded.
        assert_eq!(
            f.target.update(&context(&["10.0.0.1"])).await,
            Outcome::Unchanged
        );
        assert_eq!(f.reloads(), 1);
        f.target.update(&context(&["10.0.0.2", "10.0.0.1"])).await;
        assert_eq!(
            std::fs::read_to_string(f.dest()).unwrap(),
            "10.0.0.1:80\n10.0.0.2:80\n"
        );
        let mode = std::fs::metadata(f.dest()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert_eq!(f.reloads(), 2);
        // No temp files left behind.
        let names: Vec<_> = std::fs::read_dir(f.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    }

    #[tokio::test]
    async fn a_failed_check_or_render_leaves_the_old_file_and_reloads_nothing() {
        let mut f = Fixture::new();
        f.target.update(&context(&["10.0.0.1"])).await;
        let Outcome::Failed(why) = f.target.update(&context(&["bad"])).await else {
            panic!("the check should fail");
        };
        assert!(why.starts_with("check [\"/bin/sh\""), "{why}");
        assert!(why.contains("exit 1"), "{why}");
        assert_eq!(std::fs::read_to_string(f.dest()).unwrap(), "10.0.0.1:80\n");
        assert_eq!(f.reloads(), 1);

        std::fs::write(&f.target.spec.template, "{% for %}").unwrap();
        let Outcome::Failed(why) = f.target.update(&context(&["10.0.0.3"])).await else {
            panic!("rendering should fail");
        };
        assert!(why.starts_with("rendering template "), "{why}");
        assert!(why.contains("syntax error"), "{why}");
        assert_eq!(std::fs::read_to_string(f.dest()).unwrap(), "10.0.0.1:80\n");
    }

    #[tokio::test]
    async fn a_first_file_that_fails_its_check_is_kept_and_reloaded_once_the_check_passes() {
        let mut f = Fixture::new();
        let down = f.dir.path().join("down");
        std::fs::write(&down, "").unwrap();
        // The reader is not up: its check cannot pass, but the file is all there is.
        let Outcome::Failed(why) = f.target.update(&context(&["10.0.0.1"])).await else {
            panic!("the check should fail");
        };
        assert!(why.contains("failed for "), "{why}");
        assert!(why.contains("is kept: there is no earlier file"), "{why}");
        assert!(!why.contains("the old file is back"), "{why}");
        assert_eq!(std::fs::read_to_string(f.dest()).unwrap(), "10.0.0.1:80\n");
        assert_eq!(
            f.reloads(),
            0,
            "no reload for a file that did not pass its check"
        );
        assert!(f.target.state.unchecked);
        assert_eq!(f.target.state.check.as_ref().map(|c| c.ok), Some(false));
        // Retried without a change: still failing, still kept, still no reload.
        assert!(matches!(
            f.target.update(&context(&["10.0.0.1"])).await,
            Outcome::Failed(_)
        ));
        assert!(f.dest().exists());
        assert_eq!(f.reloads(), 0);
        // The reader is up: the same bytes pass, and the reload they owe runs once.
        std::fs::remove_file(&down).unwrap();
        assert_eq!(
            f.target.update(&context(&["10.0.0.1"])).await,
            Outcome::Updated {
                written: false,
                reloaded: true
            }
        );
        assert!(!f.target.state.unchecked);
        assert_eq!(f.target.state.check.as_ref().map(|c| c.ok), Some(true));
        assert_eq!(f.target.state.reload.as_ref().map(|r| r.ok), Some(true));
        assert_eq!(
            f.target.update(&context(&["10.0.0.1"])).await,
            Outcome::Unchanged
        );
        assert_eq!(f.reloads(), 1);
    }

    #[tokio::test]
    async fn a_kept_unchecked_file_is_what_a_failed_change_puts_back() {
        let mut f = Fixture::new();
        std::fs::write(f.dir.path().join("down"), "").unwrap();
        f.target.update(&context(&["10.0.0.1"])).await;
        // A change that fails: the earlier (kept) file is back and still owes its check.
        let Outcome::Failed(why) = f.target.update(&context(&["bad"])).await else {
            panic!("the check should fail");
        };
        assert!(why.contains("the old file is back, no reload"), "{why}");
        assert_eq!(std::fs::read_to_string(f.dest()).unwrap(), "10.0.0.1:80\n");
        assert!(f.target.state.unchecked);
        std::fs::remove_file(f.dir.path().join("down")).unwrap();
        assert_eq!(
            f.target.update(&context(&["10.0.0.1"])).await,
            Outcome::Updated {
                written: false,
                reloaded: true
            }
        );
    }

    #[tokio::test]
    async fn a_check_that_cannot_run_is_told_from_one_that_refuses() {
        let mut f = Fixture::new();
        f.target.spec.check = vec!["/nonexistent/nginx".into(), "-t".into()];
        let Outcome::Failed(why) = f.target.update(&context(&["10.0.0.1"])).await else {
            panic!("the check should fail");
        };
        assert!(
            why.starts_with("check [\"/nonexistent/nginx\",\"-t\"] could not run for "),
            "{why}"
        );
        assert!(why.contains("cannot start /nonexistent/nginx"), "{why}");
        let check = f.target.state.check.clone().unwrap();
        assert!(!check.ok);
        assert!(
            check
                .error
                .as_deref()
                .unwrap()
                .starts_with("could not run: cannot start"),
            "{check:?}"
        );
        assert!(f.dest().exists());
        assert_eq!(f.reloads(), 0);
    }

    #[tokio::test]
    async fn the_state_says_what_was_rendered_and_why_not() {
        let mut f = Fixture::new();
        f.target.update(&context(&["10.0.0.1", "10.0.0.2"])).await;
        let state = f.target.state.clone();
        assert_eq!(state.instances, 2);
        assert!(state.last_render_at.is_some());
        assert_eq!(state.failing(), None);
        std::fs::write(&f.target.spec.template, "{% for %}").unwrap();
        f.target.update(&context(&["10.0.0.1"])).await;
        let failing = f.target.state.failing().unwrap();
        assert!(
            failing.starts_with("render: rendering template "),
            "{failing}"
        );
        assert_eq!(
            f.target.state.instances, 2,
            "the last good render's count stays"
        );
        std::fs::write(
            &f.target.spec.template,
            "{% for i in instances %}{{ i.address }}\n{% endfor %}",
        )
        .unwrap();
        f.target.update(&context(&["10.0.0.1"])).await;
        assert_eq!(f.target.state.failing(), None);
        assert_eq!(f.target.state.instances, 1);
    }

    #[tokio::test]
    async fn a_failed_reload_is_owed_until_the_next_change() {
        let mut f = Fixture::new();
        let good_reload = f.target.spec.reload.clone();
        f.target.spec.reload = vec!["/nonexistent/reload".into()];
        let Outcome::Failed(why) = f.target.update(&context(&["10.0.0.1"])).await else {
            panic!("the reload should fail");
        };
        assert!(
            why.starts_with("reload [\"/nonexistent/reload\"] failed: cannot start"),
            "{why}"
        );
        assert_eq!(std::fs::read_to_string(f.dest()).unwrap(), "10.0.0.1:80\n");
        // The next update renders the same bytes but still owes the reload.
        f.target.spec.reload = good_reload;
        assert_eq!(
            f.target.update(&context(&["10.0.0.1"])).await,
            Outcome::Updated {
                written: false,
                reloaded: true
            }
        );
        assert_eq!(
            f.target.update(&context(&["10.0.0.1"])).await,
            Outcome::Unchanged
        );
        assert_eq!(f.reloads(), 1);
    }

    #[tokio::test]
    async fn a_dest_in_a_missing_directory_is_named() {
        let mut f = Fixture::new();
        f.target.spec.dest = f.dir.path().join("missing/out.conf");
        let Outcome::Failed(why) = f.target.update(&context(&["10.0.0.1"])).await else {
            panic!("writing should fail");
        };
        assert!(why.starts_with("writing "), "{why}");
        assert!(why.contains("missing/out.conf"), "{why}");
        assert!(why.contains("No such file or directory"), "{why}");
    }
}
