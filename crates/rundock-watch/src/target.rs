//! One template's path from instances to a reloaded reader, as a reconcile step: compare
//! what the template renders with what `dest` holds, and close the gap with at most one
//! write, one check and one reload. `dest` is replaced atomically (temp file in its
//! directory, then rename, keeping the old file's mode); a failing check puts the old
//! bytes back the same way, so a reader never sees a file that did not pass the check
//! for longer than the check runs, and a reload never loads one.
//!
//! The check runs on `dest` in place rather than on the temp file because a proxy's check
//! (`nginx -t`) reads its whole configuration, which includes `dest` by its real path.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

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
    /// `dest` already held these bytes and no reload was owed.
    Unchanged,
    /// `dest` was written (or not, `written == false`, when only an owed reload ran) and
    /// the reload ran (or there is none).
    Updated { written: bool, reloaded: bool },
    /// Something failed; `dest` holds what it held before (or the new, checked bytes when
    /// only the reload failed). The message names what failed.
    Failed(String),
}

/// A template, its destination, and whether its reader still owes a reload.
#[derive(Debug)]
pub struct Target {
    pub spec: TemplateSpec,
    reload_owed: bool,
}

impl Target {
    pub fn new(spec: TemplateSpec) -> Target {
        Target {
            spec,
            reload_owed: false,
        }
    }

    /// Renders with `context` and brings `dest` and its reader up to date.
    pub async fn update(&mut self, context: &Context) -> Outcome {
        let spec = &self.spec;
        let template = spec.template.display().to_string();
        let source = match std::fs::read_to_string(&spec.template) {
            Ok(source) => source,
            Err(e) => return Outcome::Failed(format!("reading template {template}: {e}")),
        };
        let rendered = match render::render(&template, &source, context) {
            Ok(text) => text.into_bytes(),
            Err(e) => {
                return Outcome::Failed(format!(
                    "rendering template {template}: {}",
                    render::describe(&e)
                ))
            }
        };
        let old = match read_if_exists(&spec.dest) {
            Ok(old) => old,
            Err(e) => return Outcome::Failed(format!("reading {}: {e}", spec.dest.display())),
        };
        let changed = old.as_ref().map(|(bytes, _)| bytes) != Some(&rendered);
        if !changed && !self.reload_owed {
            return Outcome::Unchanged;
        }
        if changed {
            let mode = old.as_ref().map_or(NEW_FILE_MODE, |(_, mode)| *mode);
            if let Err(e) = write_atomic(&spec.dest, &rendered, mode) {
                return Outcome::Failed(format!("writing {}: {e}", spec.dest.display()));
            }
            if !spec.check.is_empty() {
                if let Err(e) = run(&spec.check).await {
                    let restored = match &old {
                        Some((bytes, mode)) => write_atomic(&spec.dest, bytes, *mode),
                        None => std::fs::remove_file(&spec.dest),
                    };
                    let kept = match restored {
                        Ok(()) => "the old file is back".to_string(),
                        Err(r) => format!("and putting the old file back failed too: {r}"),
                    };
                    return Outcome::Failed(format!(
                        "check {} failed for {}: {e}; {kept}, no reload",
                        shown(&spec.check),
                        spec.dest.display()
                    ));
                }
            }
        }
        if spec.reload.is_empty() {
            return Outcome::Updated {
                written: changed,
                reloaded: false,
            };
        }
        match run(&spec.reload).await {
            Ok(()) => {
                self.reload_owed = false;
                Outcome::Updated {
                    written: changed,
                    reloaded: true,
                }
            }
            Err(e) => {
                self.reload_owed = true;
                Outcome::Failed(format!(
                    "reload {} failed: {e}; {} is written and checked, the reload is retried on the next change",
                    shown(&spec.reload),
                    spec.dest.display()
                ))
            }
        }
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

/// Writes `bytes` to a temp file beside `path` with `mode`, syncs it and renames it over
/// `path`: readers see the old file or the new one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the path names no file"))?;
    let temp = temp_path(dir, &name.to_string_lossy());
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
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

fn temp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.rundock-{}.tmp", std::process::id()))
}

/// Runs `argv` (no shell), with no input, and fails on a non-zero exit, a signal, a
/// timeout or a program that cannot start, saying which and what it printed.
pub async fn run(argv: &[String]) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or("empty command")?;
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let output = match tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return Err(format!("waiting for {program}: {e}")),
        Err(_) => {
            return Err(format!(
                "still running after {} s, killed",
                COMMAND_TIMEOUT.as_secs()
            ))
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
    if tail.is_empty() {
        Err(status)
    } else {
        Err(format!("{status}: {}", tail.replace('\n', " | ")))
    }
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

    struct Fixture {
        dir: tempfile::TempDir,
        target: Target,
        log: PathBuf,
    }

    impl Fixture {
        /// A template listing addresses; check fails when the rendered file holds
        /// "bad"; reload appends a line to a log (so reloads can be counted).
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
                check: sh(format!("! grep -q bad {}", dest.display())),
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
    async fn a_failed_check_of_a_new_file_removes_it() {
        let mut f = Fixture::new();
        assert!(matches!(
            f.target.update(&context(&["bad"])).await,
            Outcome::Failed(_)
        ));
        assert!(!f.dest().exists());
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
