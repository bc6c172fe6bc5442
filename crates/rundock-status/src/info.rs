//! The info module, `rundock.rundock.rundock_info` (Ansible's `*_info` convention, as
//! `docker_container_info`): on each host, its services with their status (the same
//! object as `rundock status --json`) and the last lines of their container's output.
//! It reads only, so check mode changes nothing either.
//!
//! The same executable serves both module names: Ansible writes the name the task
//! called (`rundock_info`, `rundock.rundock.rundock_info`) into the args file as
//! `_ansible_module_name`, and [`serves`] tells the two apart by it.

use crate::model::ServiceStatus;
use rundock_module::params::info::{parse_info_request, InfoRequest};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// The module's short name (its file in the collection's `plugins/modules`).
pub const MODULE: &str = "rundock_info";

/// Whether the call in `args` is the info module's: the name the task called, short or
/// fully qualified, ends in [`MODULE`].
pub fn serves(args: &Map<String, Value>) -> bool {
    args.get("_ansible_module_name")
        .and_then(Value::as_str)
        .is_some_and(|name| name.rsplit('.').next() == Some(MODULE))
}

/// The arguments of the call in `args_file` when it is the info module's; `None` for
/// the module's own calls and anything unreadable (which the module then reports).
pub fn info_call(args_file: &Path) -> Option<Map<String, Value>> {
    let text = std::fs::read_to_string(args_file).ok()?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(args)) if serves(&args) => Some(args),
        _ => None,
    }
}

/// One service as the info module returns it: its status and its last output lines.
#[derive(Debug, Serialize)]
pub struct ServiceInfo {
    /// Everything `rundock status --json` reports for the service, as fields of this object.
    #[serde(flatten)]
    pub status: ServiceStatus,
    /// The last lines of the container's output, svlogd's timestamp first, oldest first.
    pub output: Vec<String>,
    /// Why the output could not be read (`null` when it was).
    pub output_error: Option<String>,
}

/// Runs one info call on the parsed arguments; the JSON to print and the exit code.
pub fn run_module(args: &Map<String, Value>) -> (Value, i32) {
    match info(args) {
        Ok(result) => (result, 0),
        Err(msg) => (json!({"failed": true, "changed": false, "msg": msg}), 1),
    }
}

fn info(args: &Map<String, Value>) -> Result<Value, String> {
    let request = parse_info_request(args)?;
    let (trees, missing) = select(&request)?;
    let statuses = crate::collect::statuses(&trees).map_err(|e| format!("{e:#}"))?;
    let services: Vec<ServiceInfo> = statuses
        .into_iter()
        .zip(&trees)
        .map(|(status, tree)| {
            let (output, output_error) = match output(tree, request.lines) {
                Ok(lines) => (lines, None),
                Err(e) => (Vec::new(), Some(e)),
            };
            ServiceInfo {
                status,
                output,
                output_error,
            }
        })
        .collect();
    Ok(json!({
        "changed": false,
        "services": services,
        "missing": missing,
    }))
}

/// The trees the call asks for, and the names asked for that this host does not have.
/// A host without `sv_dir` has no services; that is an answer, not a failure.
fn select(request: &InfoRequest) -> Result<(Vec<PathBuf>, Vec<String>), String> {
    if request.names.is_empty() {
        if !request.sv_dir.exists() {
            return Ok((Vec::new(), Vec::new()));
        }
        let trees = crate::collect::trees(&request.sv_dir, &[]).map_err(|e| format!("{e:#}"))?;
        return Ok((trees, Vec::new()));
    }
    let mut trees = Vec::new();
    let mut missing = Vec::new();
    for name in &request.names {
        match crate::collect::trees(&request.sv_dir, std::slice::from_ref(name)) {
            Ok(found) => trees.extend(found),
            Err(_) => missing.push(name.clone()),
        }
    }
    Ok((trees, missing))
}

/// The last `lines` lines of the container's output of the tree at `tree`.
fn output(tree: &Path, lines: usize) -> Result<Vec<String>, String> {
    if lines == 0 {
        return Ok(Vec::new());
    }
    let spec = rundock_spec::Spec::load(&tree.join(rundock_spec::SPEC_FILE))?;
    let dir = rundock_runit::log_dir(&spec, "container");
    let read = crate::logs::last_lines(&dir, lines)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    Ok(read
        .iter()
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn the_name_the_task_called_picks_the_module() {
        for name in ["rundock_info", "rundock.rundock.rundock_info"] {
            assert!(
                serves(&args(json!({"_ansible_module_name": name}))),
                "{name}"
            );
        }
        for name in ["rundock", "rundock.rundock.rundock", "other_info"] {
            assert!(
                !serves(&args(json!({"_ansible_module_name": name}))),
                "{name}"
            );
        }
        assert!(!serves(&args(json!({}))));
    }

    #[test]
    fn a_host_without_services_answers_an_empty_list() {
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("none");
        let (value, code) = run_module(&args(json!({
            "sv_dir": absent, "_ansible_module_name": "rundock_info", "_ansible_check_mode": true
        })));
        assert_eq!(code, 0, "{value}");
        assert_eq!(
            value,
            json!({"changed": false, "services": [], "missing": []})
        );
        let (value, code) = run_module(&args(json!({
            "sv_dir": dir.path(), "name": "web,db", "_ansible_module_name": "rundock_info"
        })));
        assert_eq!(code, 0, "{value}");
        assert_eq!(value["missing"], json!(["web", "db"]));
    }
}
