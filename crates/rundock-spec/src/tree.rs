//! The runit service tree of a spec, as a pure function: a list of files with modes.
//!
//! Every script holds only fixed text, the runner's path and the tree's path, each
//! single-quoted; everything user-supplied stays in `spec.json`, which the runner reads.

use crate::spec::{Spec, SPEC_FILE};
use std::path::{Path, PathBuf};

/// One file of a service tree: where it goes, what it holds and its mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeFile {
    /// Relative to the tree's root.
    pub path: PathBuf,
    /// The file's bytes, exactly as written.
    pub contents: Vec<u8>,
    /// The mode it is written with (set explicitly, never from the umask).
    pub mode: u32,
}

/// The mode of every run script: executable by all, writable by its owner alone.
pub const SCRIPT_MODE: u32 = 0o755;
/// spec.json may hold secrets (environment values, the etcd password).
pub const SPEC_MODE: u32 = 0o600;

/// Sibling services inside the tree, in the order they stop (announcer first).
pub const CONTAINER_SERVICE: &str = "services/container";
/// The announcer's sibling, present only when the spec announces.
pub const ANNOUNCE_SERVICE: &str = "services/announce";
/// The watch's sibling, present only when the spec has `watch`.
pub const WATCH_SERVICE: &str = "services/watch";

/// The files of the tree. Directories are implied by the paths.
pub fn render(spec: &Spec) -> Vec<TreeFile> {
    let tree = spec.tree_dir();
    let runner = shell_quote(&spec.paths.runner.to_string_lossy());
    let tree_q = shell_quote(&tree.to_string_lossy());
    let script = |body: String| -> Vec<u8> { format!("#!/bin/sh\n{body}").into_bytes() };
    let mut files = vec![
        TreeFile {
            path: PathBuf::from("run"),
            contents: script(format!(
                "# Runs the container and announce services of this tree; control/t stops them in order.\n\
                 exec 2>&1\nexec runsvdir -P {}\n",
                shell_quote(&tree.join("services").to_string_lossy())
            )),
            mode: SCRIPT_MODE,
        },
        TreeFile {
            path: PathBuf::from("control/t"),
            contents: script(format!(
                "# sv down: withdraw the record, wait the drain time, stop the container, then runsvdir.\n\
                 exec {runner} stop-tree {tree_q}\n"
            )),
            mode: SCRIPT_MODE,
        },
        TreeFile {
            path: PathBuf::from(SPEC_FILE),
            contents: spec.to_json().into_bytes(),
            mode: SPEC_MODE,
        },
    ];
    let mut sibling = |dir: &str, subcommand: &str| {
        files.push(TreeFile {
            path: Path::new(dir).join("run"),
            contents: script(format!("exec 2>&1\nexec {runner} {subcommand} {tree_q}\n")),
            mode: SCRIPT_MODE,
        });
        let stream = Path::new(dir)
            .file_name()
            .expect("sibling dir has a name")
            .to_string_lossy()
            .into_owned();
        files.push(TreeFile {
            path: Path::new(dir).join("log/run"),
            contents: script(format!("exec {runner} log {tree_q} {stream}\n")),
            mode: SCRIPT_MODE,
        });
    };
    sibling(CONTAINER_SERVICE, "supervise");
    if spec.announce.is_some() {
        sibling(ANNOUNCE_SERVICE, "announce");
    }
    if spec.watch.is_some() {
        sibling(WATCH_SERVICE, "watch");
    }
    files
}

/// POSIX single quoting: the value comes out as one literal word whatever it holds.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_hostile_text() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
        assert_eq!(shell_quote("$(x) `y`;"), "'$(x) `y`;'");
    }
}
