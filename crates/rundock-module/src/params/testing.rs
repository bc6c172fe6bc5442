//! Arguments the section tests share: a host's facts and calls built from JSON.

use super::{parse_request, HostFacts, Request};
use rundock_spec::error::Result;
use serde_json::{json, Value};

/// The module called with `value` on host `node-1.example.com`.
pub(super) fn request(value: Value) -> Result<Request> {
    let facts = HostFacts {
        hostname: "node-1.example.com".into(),
        version: "0.0.0".into(),
    };
    parse_request(value.as_object().unwrap(), &facts)
}

/// `state=enabled name=web image=busybox` plus `extra`.
pub(super) fn announced(extra: Value) -> Result<Request> {
    let mut args = json!({"state": "enabled", "name": "web", "image": "busybox"});
    for (k, v) in extra.as_object().unwrap() {
        args[k] = v.clone();
    }
    request(args)
}

/// A valid entry of `watch`.
pub(super) fn one_watch() -> Value {
    json!({"names": ["web", "api"], "template": "/etc/rundock/web.conf.j2",
           "dest": "/etc/nginx/conf.d/web.conf",
           "check": ["nginx", "-t"], "reload": ["nginx", "-s", "reload"]})
}
