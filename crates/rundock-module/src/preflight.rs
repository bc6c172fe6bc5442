//! Everything a module call can check before its first write, so that a call that fails
//! changes nothing: the directories it will write into (exist or can be made, writable
//! by this user, and by nobody else who could replace what root runs), and the host
//! facts the runtime will depend on (the interface `announce_as` names exists here). What only the runtime can settle (an interface
//! without an address yet) becomes a warning in the result, never silence.
//!
//! Every error names its option, like the argument errors of `rundock_spec::params`.

use crate::params::Request;
use crate::plan::{LinkChange, Plan};
use rundock_spec::{AnnounceAs, HostIp, Spec};
use std::path::Path;

/// A refused call: the option at fault and why, as `option: why`.
pub type Refusal = String;

/// Checks that `plan` can be carried out by this user on this host's directories.
pub fn check_paths(plan: &Plan, request: &Request, tree_dir: &Path) -> Result<(), Refusal> {
    let paths = &request.paths;
    match &plan.link {
        Some(LinkChange::Create { .. }) => {
            if !paths.service_dir.is_dir() {
                return Err(format!(
                    "service_dir: {} does not exist (or is not a directory); is runit installed \
                     (Debian: apt-get install runit) and is service_dir the directory runsvdir scans?",
                    paths.service_dir.display()
                ));
            }
            can_write("service_dir", &paths.service_dir)?;
        }
        Some(LinkChange::Remove { .. }) => can_write("service_dir", &paths.service_dir)?,
        None => {}
    }
    if !plan.writes.is_empty() || !plan.remove_siblings.is_empty() || plan.remove_tree {
        can_write("sv_dir", tree_dir)?;
    }
    if let Some((_, runner)) = &plan.install_runner {
        can_write("install_dir", runner.parent().unwrap_or(runner))?;
    }
    Ok(())
}

/// The paths root will execute from or take its configuration from — the service tree,
/// the directory runsvdir scans, the runner — must not be replaceable by anyone but root
/// (or the user running the module): sshd's `StrictModes` over the path and every
/// ancestor ([`rundock_spec::files::check_strict`]). Otherwise any user who can write
/// there could swap the binary or a run script that runsv then starts as root.
pub fn check_ownership(request: &Request, tree_dir: &Path) -> Result<(), Refusal> {
    let runner = request
        .spec
        .as_ref()
        .map(|spec| spec.paths.runner.clone())
        .unwrap_or_else(|| request.install_dir.clone());
    for (field, path) in [
        ("sv_dir", tree_dir),
        ("service_dir", request.paths.service_dir.as_path()),
        ("install_dir", runner.as_path()),
    ] {
        rundock_spec::files::check_strict(path).map_err(|untrusted| {
            format!(
                "{field}: {untrusted} — root runs what is kept there; make it owned by root \
                 (or the user running the module) and writable by nobody else (chmod go-w)"
            )
        })?;
    }
    Ok(())
}

/// `dir`, or the nearest of its ancestors that exists, must be a directory this user may
/// write into: whatever is missing below it is created by the write.
fn can_write(field: &str, dir: &Path) -> Result<(), Refusal> {
    use nix::unistd::{access, AccessFlags};
    let existing = dir
        .ancestors()
        .find(|a| std::fs::symlink_metadata(a).is_ok())
        .unwrap_or(Path::new("/"));
    if !existing.is_dir() {
        return Err(format!(
            "{field}: {} is not a directory, so {} cannot be created",
            existing.display(),
            dir.display()
        ));
    }
    match access(existing, AccessFlags::W_OK | AccessFlags::X_OK) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EACCES) | Err(nix::errno::Errno::EPERM) => Err(format!(
            "{field}: cannot write {}: permission denied — run with become (sudo)",
            existing.display()
        )),
        Err(e) => Err(format!("{field}: cannot write {}: {e}", existing.display())),
    }
}

/// The host facts `spec` relies on at runtime: refuses an `announce_as` interface this
/// host does not have (a typo would otherwise loop under runsv, never announcing), and
/// warns where an address cannot be chosen yet.
pub fn check_host(spec: &Spec) -> Result<Vec<String>, Refusal> {
    let names = rundock_hostip::interface_names().unwrap_or_default();
    let locals = rundock_hostip::local_addresses().unwrap_or_default();
    let mut warnings = Vec::new();
    let mut check_choice = |field: &str, choice: &AnnounceAs| -> Result<(), Refusal> {
        if let AnnounceAs::Interface(interface) = choice {
            if !names.contains(&interface.name) {
                return Err(format!(
                    "{field}: interface {} does not exist on this host (it has {}); give \
                     {}",
                    interface.name,
                    names.join(", "),
                    rundock_spec::address::ADDRESS_CHOICE_FORM
                ));
            }
        }
        if let Err(e) = rundock_hostip::select(choice, &spec.interfaces, &locals, &names) {
            warnings.push(format!(
                "{field}: no {choice} address on this host yet ({e}); the container and its \
                 record wait until there is one"
            ));
        }
        Ok(())
    };
    if let Some(announce) = &spec.announce {
        if announce.announce_as != AnnounceAs::Container {
            check_choice("announce_as", &announce.announce_as)?;
        }
    }
    let mut literal_warnings = Vec::new();
    for port in &spec.container.ports {
        match &port.host_ip {
            Some(HostIp::Address(choice))
                if Some(choice) != spec.announce.as_ref().map(|a| &a.announce_as) =>
            {
                check_choice("ports", choice)?;
            }
            Some(HostIp::Ip(ip))
                if !ip.is_unspecified() && !locals.iter().any(|l| l.addr == *ip) =>
            {
                literal_warnings.push(format!(
                    "ports: {ip} is not an address of this host; Docker cannot publish \
                     container port {} on it until it is",
                    port.container_port
                ));
            }
            _ => {}
        }
    }
    warnings.extend(literal_warnings);
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_below_a_file_is_refused_naming_the_option() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = can_write("sv_dir", &file.join("sub/docker-x")).unwrap_err();
        assert!(err.starts_with("sv_dir: "), "{err}");
        assert!(err.contains("is not a directory"), "{err}");
        assert!(can_write("sv_dir", &dir.path().join("new/docker-x")).is_ok());
    }
}
