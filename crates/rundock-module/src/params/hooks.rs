//! The hooks around the container: `post_start`, `pre_stop`, `post_stop` (argv
//! lists), `hooks_on_host` (where the first two run) and `hook_timeout`.

use super::coerce::Params;
use rundock_spec::error::{Result, SpecError};
use rundock_spec::{Hook, Hooks};

/// `post_start`, `pre_stop`, `post_stop` with `hooks_on_host` and `hook_timeout`.
pub(super) fn hooks(p: &mut Params) -> Result<Hooks> {
    let on_host = p.boolean_or_default("hooks_on_host")?;
    let timeout = p.seconds("hook_timeout", 1, 3600)?;
    let mut hook = |key: &str, on_host: bool| -> Result<Option<Hook>> {
        match p.command(key)? {
            Some(command) if command.is_empty() => Err(SpecError::new(
                key,
                "must not be empty: give the command's argv",
            )),
            Some(command) => Ok(Some(Hook {
                command,
                on_host,
                timeout,
            })),
            None => Ok(None),
        }
    };
    Ok(Hooks {
        post_start: hook("post_start", on_host)?,
        pre_stop: hook("pre_stop", on_host)?,
        post_stop: hook("post_stop", true)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::request;
    use serde_json::{json, Value};

    #[test]
    fn hooks_are_argv_lists_with_a_place_and_a_timeout() {
        let spec = |extra: Value| {
            let mut args = json!({"state": "present", "name": "web", "image": "busybox:1"});
            for (k, v) in extra.as_object().unwrap() {
                args[k] = v.clone();
            }
            request(args)
        };
        let parsed = spec(
            json!({"post_start": "curl -sf localhost", "pre_stop": ["sh", "-c", "x y"],
                                 "post_stop": ["logger", "stopped"], "hook_timeout": "9"}),
        )
        .unwrap();
        let hooks = parsed.spec.unwrap().hooks;
        let post_start = hooks.post_start.unwrap();
        assert_eq!(post_start.command, ["curl", "-sf", "localhost"]);
        assert_eq!((post_start.on_host, post_start.timeout), (false, 9));
        assert_eq!(hooks.pre_stop.unwrap().command, ["sh", "-c", "x y"]);
        assert!(
            hooks.post_stop.unwrap().on_host,
            "post_stop always runs on the host"
        );
        let on_host = spec(json!({"pre_stop": ["true"], "hooks_on_host": "yes"})).unwrap();
        assert!(on_host.spec.unwrap().hooks.pre_stop.unwrap().on_host);
        let none = spec(json!({})).unwrap().spec.unwrap();
        assert!(none.hooks.is_empty());
        assert!(
            !none.to_json().contains("hooks"),
            "no hooks key in spec.json without hooks"
        );
        let empty = spec(json!({"post_start": []})).unwrap_err().to_string();
        assert!(empty.contains("post_start"), "{empty}");
        let zero = spec(json!({"hook_timeout": 0})).unwrap_err().to_string();
        assert!(zero.contains("hook_timeout"), "{zero}");
    }
}
