//! The options of every call: `state`, `name`, the directories (`sv_dir`,
//! `service_dir`, `log_dir`, `install_dir`), `wait`, `wait_timeout` and `lock_timeout`.

use super::choice::choice;
use super::coerce::{one_of_words, Params};
use super::HostFacts;
use crate::options::option;
use rundock_spec::error::{Result, SpecError};
use rundock_spec::validate;
use rundock_spec::Paths;
use std::path::PathBuf;
use std::time::Duration;

/// The module's `state`: what the call makes of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Installs the tree without linking it (a linked service stays linked and is restarted if its
    /// tree changed).
    Present,
    /// Installs the tree and links it into `service_dir`, where runsvdir starts it.
    Enabled,
    /// Stops the service and unlinks it; the tree stays.
    Disabled,
    /// Stops the service, unlinks it, removes the tree, its containers and its record.
    Absent,
    /// `Enabled`, then restarts the service.
    Restarted,
}

impl State {
    /// The option's spelling: `present`, `enabled`, `disabled`, `absent` or `restarted`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Present => "present",
            State::Enabled => "enabled",
            State::Disabled => "disabled",
            State::Absent => "absent",
            State::Restarted => "restarted",
        }
    }
}

choice!(State [Present, Enabled, Disabled, Absent, Restarted] as_str);

/// What every call says, whatever its state.
pub(super) struct Call {
    pub state: State,
    pub name: String,
    pub install_dir: PathBuf,
    pub paths: Paths,
    pub wait: Option<Duration>,
    pub lock_timeout: Duration,
}

pub(super) fn call_options(p: &mut Params, facts: &HostFacts) -> Result<Call> {
    let Some(state) = p.choice::<State>("state")? else {
        return Err(SpecError::new(
            "state",
            format!("is required: {}", one_of_words(option("state").choices)),
        ));
    };
    let name = match p.string("name")? {
        Some(name) => validate::dns_label("name", &name)?,
        None => {
            return Err(SpecError::new(
                "name",
                format!("is required: {}", validate::LABEL_FORM),
            ))
        }
    };
    let install_dir = p.path_or_default("install_dir")?;
    let paths = Paths {
        sv_dir: p.path_or_default("sv_dir")?,
        service_dir: p.path_or_default("service_dir")?,
        log_dir: p.path_or_default("log_dir")?,
        runner: install_dir.join(&facts.version).join("rundock"),
    };
    let wait_timeout = p.seconds("wait_timeout", 1, 3600)?;
    let wait = p
        .boolean_or_default("wait")?
        .then(|| Duration::from_secs(wait_timeout.into()));
    let lock_timeout = Duration::from_secs(p.seconds("lock_timeout", 0, 86_400)?.into());
    Ok(Call {
        state,
        name,
        install_dir,
        paths,
        wait,
        lock_timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::request;
    use serde_json::json;

    #[test]
    fn absent_accepts_the_options_of_the_service_but_not_unknown_ones() {
        let full = json!({"state": "absent", "name": "web", "image": "busybox", "announce": 80, "args": "-e A=1"});
        assert!(request(full).unwrap().spec.is_none());
        let err = request(json!({"state": "absent", "name": "web", "imagee": "x"})).unwrap_err();
        assert_eq!(err.field, "imagee");
    }
}
