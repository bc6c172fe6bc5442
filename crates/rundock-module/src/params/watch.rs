//! The `watch` option: a list of `{names, template, dest, check, reload}` mappings (or
//! that list as a JSON string, as ad hoc `-a` gives it) turned into
//! [`rundock_spec::watch::WatchSpec`], which keeps the typed form and its validation.
//! A watch follows the records under the announcer's domain and etcd or, for a service
//! that announces nothing, under its own `domain` and `etcd`. Errors name
//! `watch[i].field`.

use super::coerce::Params;
use super::etcd;
use rundock_spec::error::{Result, SpecError};
use rundock_spec::validate::{self, quoted};
use rundock_spec::watch::{TemplateSpec, WatchSpec, ARGV_FORM, NAME_FORM};
use rundock_spec::{AnnounceSpec, EtcdSpec};
use serde_json::{Map, Value};
use std::path::PathBuf;

const TEMPLATE_KEYS: &[&str] = &["names", "template", "dest", "check", "reload"];

/// The templates of `watch`, and the domain and etcd they follow when the service is
/// not announced.
pub(super) struct Watch {
    templates: Vec<TemplateSpec>,
    own: Option<(String, EtcdSpec)>,
}

pub(super) fn watch_option(p: &mut Params) -> Result<Option<Watch>> {
    let Some(templates) = p.take("watch").map(parse_option).transpose()? else {
        return Ok(None);
    };
    let own = if p.has("announce") {
        None
    } else {
        Some((
            validate::domain("domain", &p.string_or_default("domain")?)?,
            etcd::etcd_spec(p)?,
        ))
    };
    Ok(Some(Watch { templates, own }))
}

impl Watch {
    /// The spec, under the announcer's domain and etcd unless the watch has its own.
    pub(super) fn spec(self, announce: Option<&AnnounceSpec>) -> WatchSpec {
        let (domain, etcd) = self.own.unwrap_or_else(|| {
            let a = announce.expect("announce was given");
            (a.domain.clone(), a.etcd.clone())
        });
        WatchSpec {
            domain,
            etcd,
            templates: self.templates,
        }
    }
}

/// The module's `watch` option: a list of `{names, template, dest, check, reload}`
/// mappings (or that list as a JSON string, as ad hoc `-a` gives it). Errors name
/// `watch[i].field`.
fn parse_option(value: Value) -> Result<Vec<TemplateSpec>> {
    let items = match value {
        Value::Array(items) => items,
        Value::String(text) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Array(items)) => items,
            _ => {
                return Err(SpecError::new(
                    "watch",
                    "is not a JSON list of {names, template, dest, check, reload} mappings",
                ))
            }
        },
        other => {
            return Err(SpecError::new(
                "watch",
                format!(
                    "must be a list of {{names, template, dest, check, reload}} mappings, not {}",
                    validate::json_kind(&other)
                ),
            ))
        }
    };
    if items.is_empty() {
        return Err(SpecError::new(
            "watch",
            "needs at least one {names, template, dest} mapping (leave the option out for none)",
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| template_spec(item).map_err(|e| e.within(&format!("watch[{i}]"))))
        .collect()
}

fn template_spec(item: Value) -> Result<TemplateSpec> {
    let Value::Object(mut map) = item else {
        return Err(SpecError::new(
            "",
            format!(
                "must be a mapping {{names, template, dest, check, reload}}, not {}",
                validate::json_kind(&item)
            ),
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !TEMPLATE_KEYS.contains(&k.as_str())) {
        return Err(SpecError::new(
            unknown.as_str(),
            format!(
                "unsupported key {}: names, template, dest, check, reload",
                quoted(unknown)
            ),
        ));
    }
    let spec = TemplateSpec {
        names: names(&mut map)?,
        template: path(&mut map, "template")?,
        dest: path(&mut map, "dest")?,
        check: command(&mut map, "check")?,
        reload: command(&mut map, "reload")?,
    };
    spec.validate()?;
    Ok(spec)
}

/// `names`: a list, or a comma-separated string.
fn names(map: &mut Map<String, Value>) -> Result<Vec<String>> {
    match take(map, "names") {
        Some(Value::String(text)) => Ok(text
            .split(',')
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect()),
        Some(Value::Array(items)) => words("names", items, NAME_FORM),
        Some(other) => Err(SpecError::new(
            "names",
            format!(
                "must be a list of names ({NAME_FORM}), not {}",
                validate::json_kind(&other)
            ),
        )),
        None => Err(SpecError::new(
            "names",
            format!("is required: a list of names, each {NAME_FORM}"),
        )),
    }
}

/// `template`, `dest`: required absolute paths.
fn path(map: &mut Map<String, Value>, field: &str) -> Result<PathBuf> {
    match take(map, field) {
        Some(Value::String(text)) => validate::absolute_path(field, &text),
        Some(other) => Err(SpecError::new(
            field,
            format!(
                "must be an absolute path, not {}",
                validate::json_kind(&other)
            ),
        )),
        None => Err(SpecError::new(
            field,
            "is required: an absolute path such as /etc/nginx/conf.d/web.conf",
        )),
    }
}

/// `check`, `reload`: argv lists (or their JSON text), empty when not given.
fn command(map: &mut Map<String, Value>, field: &str) -> Result<Vec<String>> {
    match take(map, field) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => words(field, items, ARGV_FORM),
        Some(Value::String(text)) if text.trim_start().starts_with('[') => {
            match serde_json::from_str::<Vec<Value>>(&text) {
                Ok(items) => words(field, items, ARGV_FORM),
                Err(_) => Err(SpecError::new(
                    field,
                    format!("is not a JSON list of strings: {ARGV_FORM}"),
                )),
            }
        }
        Some(other) => Err(SpecError::new(
            field,
            format!("must be {ARGV_FORM}, not {}", validate::json_kind(&other)),
        )),
    }
}

/// Drops JSON nulls, as Ansible sends them for options a play leaves unset.
fn take(map: &mut Map<String, Value>, key: &str) -> Option<Value> {
    map.remove(key).filter(|v| !v.is_null())
}

fn words(field: &str, items: Vec<Value>, form: &str) -> Result<Vec<String>> {
    items
        .into_iter()
        .map(|item| match item {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            other => Err(SpecError::new(
                field,
                format!(
                    "must hold strings ({form}), not {}",
                    validate::json_kind(&other)
                ),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testing::one_watch;
    use super::super::{parse_request, HostFacts, Request};
    use super::*;
    use rundock_spec::Spec;
    use serde_json::json;

    fn error(value: Value) -> String {
        parse_option(value).unwrap_err().to_string()
    }

    #[test]
    fn a_list_of_mappings_or_its_json_text_parses() {
        let parsed = parse_option(json!([one_watch()])).unwrap();
        assert_eq!(parsed[0].names, ["web", "api"]);
        assert_eq!(parsed[0].reload, ["nginx", "-s", "reload"]);
        let text = json!([one_watch()]).to_string();
        assert_eq!(parse_option(Value::String(text)).unwrap(), parsed);
        let minimal = json!([{"names": "web", "template": "/a.j2", "dest": "/b"}]);
        let parsed = parse_option(minimal).unwrap();
        assert!(parsed[0].check.is_empty() && parsed[0].reload.is_empty());
    }

    #[test]
    fn every_bad_field_is_named_with_its_index_and_the_allowed_form() {
        let with = |key: &str, value: Value| {
            let mut item = one_watch();
            item[key] = value;
            error(json!([one_watch(), item]))
        };
        let cases = [
            (
                with("names", json!([])),
                "watch[1].names: needs at least one",
            ),
            (
                with("names", json!(["Web!"])),
                "watch[1].names: \"Web!\" is not a DNS name",
            ),
            (
                with("template", json!("rel.j2")),
                "watch[1].template: \"rel.j2\" is not absolute",
            ),
            (
                with("dest", json!(3)),
                "watch[1].dest: must be an absolute path, not a number",
            ),
            (
                with("dest", json!("/etc/rundock/web.conf.j2")),
                "watch[1].dest: is the template itself",
            ),
            (
                with("check", json!("nginx -t")),
                "watch[1].check: must be a list of words",
            ),
            (
                with("reload", json!([""])),
                "watch[1].reload: starts with an empty program name",
            ),
            (
                with("reload", json!([["x"]])),
                "watch[1].reload: must hold strings",
            ),
            (
                with("extra", json!(1)),
                "watch[1].extra: unsupported key \"extra\"",
            ),
        ];
        for (got, want) in cases {
            assert!(
                got.starts_with(want),
                "{got:?} does not start with {want:?}"
            );
        }
        let mut no_dest = one_watch();
        no_dest.as_object_mut().unwrap().remove("dest");
        assert!(error(json!([no_dest])).starts_with("watch[0].dest: is required"));
        assert!(error(json!([])).starts_with("watch: needs at least one"));
        assert!(error(json!({"names": []})).starts_with("watch: must be a list"));
        assert!(error(json!(["x"])).starts_with("watch[0]: must be a mapping"));
    }

    fn watch_module(options: Value) -> Result<Request> {
        let facts = HostFacts {
            hostname: "node-1".into(),
            version: "0.0.0".into(),
        };
        let mut args = json!({"state": "present", "name": "front", "image": "nginx"});
        for (k, v) in options.as_object().unwrap() {
            args[k] = v.clone();
        }
        parse_request(args.as_object().unwrap(), &facts)
    }

    #[test]
    fn the_module_option_lands_in_the_spec_and_the_tree_gets_a_watch_sibling() {
        // Not announced: the watch takes domain and etcd itself.
        let request = watch_module(json!({"watch": [one_watch()], "domain": "s.test",
                                    "etcd": "http://10.0.0.1:2379"}))
        .unwrap();
        let spec = request.spec.unwrap();
        let watch = spec.watch.as_ref().unwrap();
        assert_eq!(watch.domain, "s.test");
        assert_eq!(watch.etcd.endpoints[0].as_str(), "http://10.0.0.1:2379");
        watch.validate().unwrap();
        let files = rundock_spec::tree::render(&spec);
        let run = files
            .iter()
            .find(|f| f.path == std::path::Path::new("services/watch/run"))
            .expect("services/watch/run");
        assert!(String::from_utf8_lossy(&run.contents).ends_with(" watch '/etc/sv/docker-front'\n"));
        assert!(files
            .iter()
            .any(|f| f.path == std::path::Path::new("services/watch/log/run")));
        let reread = Spec::from_json(&spec.to_json()).unwrap();
        assert_eq!(reread, spec);

        // Announced: the announcer's domain and etcd.
        let request =
            watch_module(json!({"watch": [one_watch()], "announce": 80, "domain": "s.other"}))
                .unwrap();
        assert_eq!(request.spec.unwrap().watch.unwrap().domain, "s.other");

        // Without watch nothing changes: no sibling, no key in spec.json.
        let spec = watch_module(json!({})).unwrap().spec.unwrap();
        assert!(!spec.to_json().contains("watch"));
        assert!(!rundock_spec::tree::render(&spec)
            .iter()
            .any(|f| f.path.starts_with("services/watch")));
    }

    #[test]
    fn module_errors_name_the_entry_and_field() {
        let err =
            watch_module(json!({"watch": [{"names": ["web"], "template": "/t.j2"}]})).unwrap_err();
        assert_eq!(err.field, "watch[0].dest");
        let err = watch_module(json!({"watch": "nope"})).unwrap_err();
        assert_eq!(err.field, "watch");
    }
}
