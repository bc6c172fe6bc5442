//! The options of kept revisions and of the deploy lock beyond one call: `history` (how
//! many the tree keeps), `rollback` (install one of them instead of a spec made from the
//! options), `on_failure` (go back by itself when a change does not become ready),
//! `lock_token` (run under a playbook's lock) and the `play_lock` calls themselves.

use super::call::State;
use super::choice::choice;
use super::coerce::Params;
use crate::options::{self, option, Scope};
use crate::revert::OnFailure;
use rundock_spec::error::{Result, SpecError};
use rundock_spec::revisions::RollbackTarget;

pub(super) struct Releases {
    pub history: usize,
    pub rollback: Option<RollbackTarget>,
    pub on_failure: OnFailure,
    pub lock_token: Option<String>,
}

choice!(OnFailure [Fail, Rollback] as_str);

/// `play_lock`: what a call that only acts on a playbook's deploy lock does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayLock {
    /// Take the service's deploy lock in etcd for the whole playbook and return its token.
    Acquire,
    /// Let the playbook's lock go (needs `lock_token`).
    Release,
}

choice!(PlayLock { Acquire => "acquire", Release => "release" });

/// A `play_lock` call: the service, where its tree is, how long to wait and the token.
#[derive(Debug, Clone)]
pub struct PlayLockCall {
    /// Whether the call takes the playbook lock or lets it go.
    pub action: PlayLock,
    /// The service name, a DNS label.
    pub name: String,
    /// Where the service's tree is (the lock's etcd and domain come from its installed spec).
    pub sv_dir: std::path::PathBuf,
    /// How long to wait for the lock held by another change (`lock_timeout`, 0 to 86,400 s).
    pub lock_timeout: std::time::Duration,
    /// The `lock_token` an acquire returned; always `Some` for a release.
    pub token: Option<String>,
}

/// The `play_lock` call in `p`, if it is one: it takes `name`, the directories,
/// `lock_timeout` and (to release) `lock_token`, and nothing else.
pub(super) fn play_lock_call(p: &mut Params) -> Result<Option<PlayLockCall>> {
    let Some(action) = p.choice::<PlayLock>("play_lock")? else {
        return Ok(None);
    };
    let name = match p.string("name")? {
        Some(name) => rundock_spec::validate::dns_label("name", &name)?,
        None => {
            return Err(SpecError::new(
                "name",
                format!("is required: {}", rundock_spec::validate::LABEL_FORM),
            ))
        }
    };
    let sv_dir = p.path_or_default("sv_dir")?;
    for unused in ["service_dir", "log_dir", "install_dir"] {
        p.path(unused)?;
    }
    let lock_timeout = std::time::Duration::from_secs(p.seconds("lock_timeout", 0, 86_400)?.into());
    let token = p.string("lock_token")?;
    if action == PlayLock::Release && token.is_none() {
        return Err(SpecError::new(
            "lock_token",
            "is required with play_lock=release: the `lock.token` the acquire task returned",
        ));
    }
    if p.has("state") {
        return Err(SpecError::new(
            "play_lock",
            "takes no state: it acts on the service's deploy lock only (name, the directories, lock_timeout, lock_token)",
        ));
    }
    Ok(Some(PlayLockCall {
        action,
        name,
        sv_dir,
        lock_timeout,
        token,
    }))
}

pub(super) fn release_options(p: &mut Params, wait: bool) -> Result<Releases> {
    let history = match p.int("history")? {
        Some(n @ 1..=100) => n as usize,
        Some(n) => {
            return Err(SpecError::new(
                "history",
                format!("{n} is out of range: a number of revisions from 1 to 100"),
            ))
        }
        None => option("history")
            .default_int()
            .expect("the table has a default") as usize,
    };
    let rollback = match p.string("rollback")? {
        Some(text) => Some(
            text.parse::<RollbackTarget>()
                .map_err(|e| SpecError::new("rollback", e))?,
        ),
        None => None,
    };
    let on_failure = p.choice_or_default::<OnFailure>("on_failure")?;
    if on_failure == OnFailure::Rollback && !wait {
        return Err(SpecError::new(
            "on_failure",
            "rollback needs wait: true (a change is known to have failed only by waiting for it)",
        ));
    }
    let lock_token = p.string("lock_token")?;
    Ok(Releases {
        history,
        rollback,
        on_failure,
        lock_token,
    })
}

/// A rollback installs a kept revision, which is the whole spec: it works on a service
/// that runs, and options that would make another spec are refused.
pub(super) fn check_rollback(p: &Params, state: State, image_given: bool) -> Result<()> {
    if !matches!(state, State::Enabled | State::Restarted) {
        return Err(SpecError::new(
            "rollback",
            format!(
                "works with state=enabled or state=restarted, not state={}",
                state.as_str()
            ),
        ));
    }
    let given: Vec<&str> = options::OPTIONS
        .iter()
        .filter(|o| o.scope != Scope::Call)
        .filter(|o| p.has(o.name) || (o.name == "image" && image_given))
        .map(|o| o.name)
        .collect();
    if !given.is_empty() {
        return Err(SpecError::new(
            "rollback",
            format!(
                "installs a kept revision's whole spec, so it takes no service options; remove {}",
                given.join(", ")
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{parse_request, HostFacts};
    use serde_json::{json, Value};

    #[test]
    fn rollback_takes_the_call_options_only() {
        let facts = HostFacts {
            hostname: "node-1".into(),
            version: "0.0.0".into(),
        };
        let args = |extra: Value| {
            let mut map = json!({"state": "enabled", "name": "web", "sv_dir": "/srv/sv",
                                 "wait": true, "history": 3})
            .as_object()
            .unwrap()
            .clone();
            map.extend(extra.as_object().unwrap().clone());
            map
        };
        let request = parse_request(&args(json!({"rollback": "2"})), &facts).unwrap();
        assert_eq!(
            request.rollback,
            Some(rundock_spec::revisions::RollbackTarget::Number(2))
        );
        assert_eq!(request.history, 3);
        assert!(request.spec.is_none());
        let e = parse_request(
            &args(json!({"rollback": "previous", "image": "busybox", "env": {"A": "1"}})),
            &facts,
        )
        .unwrap_err();
        assert_eq!(e.field, "rollback");
        assert!(e.message.contains("remove image, env"), "{e}");
        let e = parse_request(
            &args(json!({"rollback": "previous", "state": "present"})),
            &facts,
        )
        .unwrap_err();
        assert!(
            e.message.contains("state=enabled or state=restarted"),
            "{e}"
        );
        let e =
            parse_request(&args(json!({"history": 0, "image": "busybox"})), &facts).unwrap_err();
        assert_eq!(e.field, "history");
    }

    #[test]
    fn on_failure_rollback_needs_wait() {
        let facts = HostFacts {
            hostname: "node-1".into(),
            version: "0.0.0".into(),
        };
        let args = |v: Value| v.as_object().unwrap().clone();
        let e = parse_request(
            &args(
                json!({"state": "enabled", "name": "web", "image": "busybox",
                         "on_failure": "rollback"}),
            ),
            &facts,
        )
        .unwrap_err();
        assert_eq!(e.field, "on_failure");
        assert!(e.message.contains("wait: true"), "{e}");
        let request = parse_request(
            &args(
                json!({"state": "enabled", "name": "web", "image": "busybox",
                         "on_failure": "rollback", "wait": true}),
            ),
            &facts,
        )
        .unwrap();
        assert_eq!(request.on_failure, crate::revert::OnFailure::Rollback);
    }

    #[test]
    fn a_play_lock_call_takes_name_dirs_timeout_and_token_only() {
        use super::super::{parse_play_lock, PlayLock};
        let args = |v: Value| v.as_object().unwrap().clone();
        assert!(
            parse_play_lock(&args(json!({"state": "enabled", "name": "web"})))
                .unwrap()
                .is_none()
        );
        let call = parse_play_lock(&args(json!({"play_lock": "acquire", "name": "web",
                                                 "sv_dir": "/srv/sv", "lock_timeout": 9})))
        .unwrap()
        .unwrap();
        assert_eq!(call.action, PlayLock::Acquire);
        assert_eq!(call.lock_timeout.as_secs(), 9);
        let e = parse_play_lock(&args(json!({"play_lock": "release", "name": "web"}))).unwrap_err();
        assert_eq!(e.field, "lock_token");
        let e = parse_play_lock(&args(json!({"play_lock": "acquire", "name": "web",
                                              "state": "enabled"})))
        .unwrap_err();
        assert_eq!(e.field, "play_lock");
        let e = parse_play_lock(&args(json!({"play_lock": "acquire", "name": "web",
                                              "image": "busybox"})))
        .unwrap_err();
        assert_eq!(e.field, "image");
        let e = parse_play_lock(&args(json!({"play_lock": "hold", "name": "web"}))).unwrap_err();
        assert!(e.message.contains("acquire"), "{e}");
    }
}
