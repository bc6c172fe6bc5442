//! What a module call would change, worked out by reading the disk only. Check mode
//! reports a plan; normal mode hands it to [`crate::apply`].

use crate::params::{Request, State};
use crate::{fsutil, install, runit};
use anyhow::Result;
use rundock_spec::tree::{self, TreeFile, ANNOUNCE_SERVICE};
use rundock_spec::{Spec, MASK, SPEC_FILE};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// A file of the tree to create or rewrite (content or mode differs).
#[derive(Debug)]
pub struct FileWrite {
    /// The file's absolute path (in the tree).
    pub path: PathBuf,
    /// What it will hold.
    pub contents: Vec<u8>,
    /// The mode it gets, set explicitly.
    pub mode: u32,
    /// What it holds now; `None` when it does not exist yet.
    pub before: Option<Vec<u8>>,
    /// Its mode now; `None` when it does not exist yet.
    pub before_mode: Option<u32>,
}

/// What a call changes, for [`crate::apply`] to carry out; nothing (see [`Plan::changed`])
/// when the host is already as asked. Worked out from reads alone, so check mode reports
/// the plan a real run would carry out.
#[derive(Debug, Default)]
pub struct Plan {
    /// Where the runner comes from when it must be (re)installed.
    pub install_runner: Option<(PathBuf, PathBuf)>,
    /// Tree files whose contents or mode differ from the rendered tree.
    pub writes: Vec<FileWrite>,
    /// Sibling service dirs the new spec no longer has (the announcer, when `announce`
    /// was dropped); stopped before removal.
    pub remove_siblings: Vec<PathBuf>,
    /// The enabling link to make or remove; `None` when it is already as asked.
    pub link: Option<LinkChange>,
    /// `sv down` the tree before unlinking it.
    pub stop: bool,
    /// Remove the tree directory (`state=absent`), after the service has stopped.
    pub remove_tree: bool,
    /// `sv restart` after writing: the tree changed under a running service, or
    /// `state=restarted`.
    pub restart: bool,
    /// `sv up`: linked and supervised, but held down (by an earlier `disabled` that
    /// runsvdir had not acted on yet, or by hand).
    pub start: bool,
    /// Remove containers and the record (`state=absent`).
    pub cleanup: Option<Spec>,
    /// Instead of `restart`: a start-first update (see [`Switch`]).
    pub switch: Option<Switch>,
    /// The spec is unchanged but its tag now names another image than the running
    /// container's: `(running image id, new image id)`.
    pub image_moved: Option<(String, String)>,
}

/// `update: start-first` under a running service: only `spec.json` changed and the
/// announcer's part of it did not, so the tree is not restarted; the supervisor gets HUP,
/// comes back on the new spec and switches containers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    /// The container changed: wait for the supervisor's outcome (and fail, putting the
    /// old spec back, if the new container did not pass its checks).
    pub container_changed: bool,
    /// The installed spec.json, put back when the update fails.
    pub old_spec: Vec<u8>,
}

/// The switch for a restart of a running tree, if the new spec is start-first and the
/// change allows one.
fn start_first_switch(new: &Spec, installed: Option<&Spec>, plan: &Plan) -> Option<Switch> {
    new.start_first?;
    let old = installed?;
    let only_spec = !plan.writes.is_empty()
        && plan.remove_siblings.is_empty()
        && plan.install_runner.is_none()
        && plan
            .writes
            .iter()
            .all(|w| w.path.file_name() == Some(SPEC_FILE.as_ref()));
    if !only_spec || old.announce != new.announce || old.watch != new.watch {
        // The announcer (or watcher) would keep its old settings: restart the tree.
        return None;
    }
    let old_spec = plan.writes.iter().find_map(|w| w.before.clone())?;
    Some(Switch {
        container_changed: old.container_hash() != new.container_hash(),
        old_spec,
    })
}

/// A change of the link in `service_dir` that enables a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkChange {
    /// Make the link: runsvdir then starts supervising the tree.
    Create {
        /// The link, `SERVICE_DIR/docker-NAME`.
        link: PathBuf,
        /// The tree it points to, `SV_DIR/docker-NAME`.
        target: PathBuf,
    },
    /// Remove the link: runsvdir stops supervising the tree.
    Remove {
        /// The link, `SERVICE_DIR/docker-NAME`.
        link: PathBuf,
    },
}

impl Plan {
    /// Replaces the running container of an otherwise unchanged service whose tag moved,
    /// by the service's update order: a start-first switch, else a restart of the tree.
    pub fn replace_for_moved_image(&mut self, spec: &Spec, tree_dir: &Path) {
        let installed = std::fs::read(tree_dir.join(SPEC_FILE)).ok();
        match (spec.start_first, installed) {
            (Some(_), Some(old_spec)) => {
                self.switch = Some(Switch {
                    container_changed: true,
                    old_spec,
                })
            }
            _ => self.restart = true,
        }
    }

    /// Whether carrying the plan out would change anything: Ansible's `changed`.
    pub fn changed(&self) -> bool {
        self.install_runner.is_some()
            || !self.writes.is_empty()
            || !self.remove_siblings.is_empty()
            || self.link.is_some()
            || self.stop
            || self.remove_tree
            || self.restart
            || self.start
            || self.cleanup.is_some()
            || self.switch.is_some()
    }

    /// Ansible's diff: a list of `{before, after, before_header, after_header}`, one per
    /// changed path, secrets masked.
    pub fn diff(&self) -> Value {
        let mut entries = Vec::new();
        for write in &self.writes {
            let (before, after) = if write.path.file_name() == Some(SPEC_FILE.as_ref()) {
                masked_spec_pair(write.before.as_deref(), &write.contents)
            } else {
                (
                    write
                        .before
                        .as_deref()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_default(),
                    String::from_utf8_lossy(&write.contents).into_owned(),
                )
            };
            let mode_note =
                |m: Option<u32>| m.map(|m| format!(" (mode {m:04o})")).unwrap_or_default();
            entries.push(json!({
                "before_header": format!("{}{}", write.path.display(), mode_note(write.before_mode)),
                "after_header": format!("{} (mode {:04o})", write.path.display(), write.mode),
                "before": before,
                "after": after,
            }));
        }
        if let Some((running, new)) = &self.image_moved {
            entries.push(json!({
                "before_header": "image id (the running container's)",
                "after_header": "image id (what the tag names now)",
                "before": format!("{running}\n"),
                "after": format!("{new}\n"),
            }));
        }
        for dir in &self.remove_siblings {
            entries.push(json!({
                "before_header": dir.display().to_string(),
                "after_header": dir.display().to_string(),
                "before": "service directory\n",
                "after": "",
            }));
        }
        match &self.link {
            Some(LinkChange::Create { link, target }) => entries.push(json!({
                "before_header": link.display().to_string(),
                "after_header": link.display().to_string(),
                "before": "",
                "after": format!("-> {}\n", target.display()),
            })),
            Some(LinkChange::Remove { link }) => entries.push(json!({
                "before_header": link.display().to_string(),
                "after_header": link.display().to_string(),
                "before": format!("-> {}\n", std::fs::read_link(link).unwrap_or_default().display()),
                "after": "",
            })),
            None => {}
        }
        if self.remove_tree {
            if let Some(spec) = &self.cleanup {
                entries.push(json!({
                    "before_header": spec.tree_dir().display().to_string(),
                    "after_header": spec.tree_dir().display().to_string(),
                    "before": "service tree\n",
                    "after": "",
                }));
            }
        }
        Value::Array(entries)
    }
}

/// Both sides of spec.json as they may be shown: secret values masked, and a secret that
/// changed marked so the diff is not silently empty.
fn masked_spec_pair(before: Option<&[u8]>, after: &[u8]) -> (String, String) {
    let after_spec =
        Spec::from_json(&String::from_utf8_lossy(after)).expect("rendered spec parses");
    let before_spec = before.map(|b| Spec::from_json(&String::from_utf8_lossy(b)));
    let mut shown_after = after_spec.masked();
    let before_text = match &before_spec {
        None => String::new(),
        Some(Err(_)) => {
            "(the installed spec.json does not parse; not shown as it may hold secrets)\n".into()
        }
        Some(Ok(old)) => {
            for (key, value) in shown_after.container.env.iter_mut() {
                if old
                    .container
                    .env
                    .get(key)
                    .is_some_and(|v| *v != after_spec.container.env[key])
                {
                    *value = format!("{MASK} (changed)");
                }
            }
            if let (Some(new), Some(old_a)) = (shown_after.announce.as_mut(), old.announce.as_ref())
            {
                let new_password = after_spec
                    .announce
                    .as_ref()
                    .and_then(|a| a.etcd.password.as_ref());
                if new.etcd.password.is_some() && old_a.etcd.password.as_ref() != new_password {
                    new.etcd.password = Some(format!("{MASK} (changed)"));
                }
            }
            old.masked().to_json()
        }
    };
    (before_text, shown_after.to_json())
}

/// The installed spec of a tree, if there is one that parses.
pub fn installed_spec(tree_dir: &Path) -> Option<Spec> {
    read_installed_spec(tree_dir).ok().flatten()
}

/// The installed spec of a tree: `None` when there is none or it does not parse (it is
/// then rewritten); an error when it cannot be read (permission denied).
pub fn read_installed_spec(tree_dir: &Path) -> Result<Option<Spec>> {
    let path = tree_dir.join(SPEC_FILE);
    Ok(fsutil::read_if_exists(&path)?
        .and_then(|bytes| Spec::from_json(&String::from_utf8_lossy(&bytes)).ok()))
}

/// Works out the plan for `request`. `source_binary` is the module's own binary.
pub fn make_plan(request: &Request, source_binary: &Path) -> Result<Plan> {
    let mut plan = Plan::default();
    let tree_dir = request
        .paths
        .sv_dir
        .join(format!("docker-{}", request.name));
    let link = request
        .paths
        .service_dir
        .join(format!("docker-{}", request.name));
    let linked = std::fs::symlink_metadata(&link).is_ok();
    let installed = read_installed_spec(&tree_dir)?;
    let tree_exists = tree_dir.exists();

    if let Some(spec) = &request.spec {
        if install::runner_differs(source_binary, &spec.paths.runner)? {
            plan.install_runner = Some((source_binary.to_path_buf(), spec.paths.runner.clone()));
        }
        let files = tree::render(spec);
        plan.writes = file_writes(&tree_dir, &files)?;
        if spec.announce.is_none() && tree_dir.join(ANNOUNCE_SERVICE).exists() {
            plan.remove_siblings.push(tree_dir.join(ANNOUNCE_SERVICE));
        }
    }
    let tree_changes = !plan.writes.is_empty() || !plan.remove_siblings.is_empty();
    let running = runit::supervised(&tree_dir)?;

    match request.state {
        State::Present => {
            plan.restart = tree_changes && running;
        }
        State::Enabled | State::Restarted => {
            if request.spec.is_none() && installed.is_none() {
                anyhow::bail!(
                    "image: no service tree is installed at {}, so state={} needs image (and the other options) to install one",
                    tree_dir.display(),
                    request.state.as_str()
                );
            }
            let target_ok = std::fs::read_link(&link).is_ok_and(|t| t == tree_dir);
            if !target_ok {
                plan.link = Some(LinkChange::Create {
                    link: link.clone(),
                    target: tree_dir.clone(),
                });
            }
            plan.restart = running && (tree_changes || request.state == State::Restarted);
            if plan.restart && request.state == State::Enabled {
                if let Some(spec) = &request.spec {
                    plan.switch = start_first_switch(spec, installed.as_ref(), &plan);
                    plan.restart = plan.switch.is_none();
                }
            }
            plan.start = running && !plan.restart && runit::held_down(&tree_dir);
            // A tree being linked now is started by runsvdir with the new files anyway.
        }
        State::Disabled => {
            if linked {
                plan.stop = running;
                plan.link = Some(LinkChange::Remove { link: link.clone() });
            }
        }
        State::Absent => {
            if linked {
                plan.stop = running;
                plan.link = Some(LinkChange::Remove { link: link.clone() });
            }
            if tree_exists {
                plan.remove_tree = true;
                plan.stop |= running;
                plan.cleanup = installed.or_else(|| request.spec.clone());
            }
        }
    }
    Ok(plan)
}

fn file_writes(tree_dir: &Path, files: &[TreeFile]) -> Result<Vec<FileWrite>> {
    let mut writes = Vec::new();
    for file in files {
        let path = tree_dir.join(&file.path);
        let before = fsutil::read_if_exists(&path)?;
        let before_mode = fsutil::mode_of(&path);
        let same =
            before.as_deref() == Some(file.contents.as_slice()) && before_mode == Some(file.mode);
        if !same {
            writes.push(FileWrite {
                path,
                contents: file.contents.clone(),
                mode: file.mode,
                before,
                before_mode,
            });
        }
    }
    Ok(writes)
}
