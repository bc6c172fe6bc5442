//! What `rundock watch` does, as data: which names to follow, where their records live,
//! and per template the file it renders, the command that checks it and the command that
//! reloads its reader. Stored in `spec.json` (the tree's `services/watch`) or given to
//! `rundock watch` as a JSON file of the same form; [`parse_option`] turns the module's
//! `watch` option into it, and [`WatchSpec::validate`] checks either.

use crate::error::{Result, SpecError};
use crate::spec::EtcdSpec;
use crate::validate::{self, quoted};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::PathBuf;

/// Everything a watcher needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchSpec {
    /// The DNS domain the names are relative to (`web` is `web.DOMAIN`).
    pub domain: String,
    pub etcd: EtcdSpec,
    pub templates: Vec<TemplateSpec>,
}

/// One template and what follows from rendering it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    /// Names relative to the domain whose instances the template sees, as `dig
    /// NAME.DOMAIN SRV` would give them.
    pub names: Vec<String>,
    /// A Jinja template (minijinja), read at every render.
    pub template: PathBuf,
    /// The rendered file, replaced atomically.
    pub dest: PathBuf,
    /// argv run after `dest` changed; a non-zero exit puts the old `dest` back.
    #[serde(default)]
    pub check: Vec<String>,
    /// argv run after a changed `dest` passed the check; retried on the next change if
    /// it fails.
    #[serde(default)]
    pub reload: Vec<String>,
}

const NAME_FORM: &str = "a DNS name relative to the domain: dot-separated labels of a-z, 0-9, '-' and '_' (or '*'), such as web or node-1.web";
const ARGV_FORM: &str =
    "a list of words, the program first, such as [nginx, -s, reload] (never run by a shell)";
const TEMPLATE_KEYS: &[&str] = &["names", "template", "dest", "check", "reload"];

impl WatchSpec {
    /// Checks every field (a spec read from a file has not been through the module).
    pub fn validate(&self) -> Result<()> {
        validate::domain("domain", &self.domain)?;
        if self.etcd.endpoints.is_empty() {
            return Err(SpecError::new(
                "etcd.endpoints",
                "needs at least one http(s)://HOST:PORT",
            ));
        }
        if self.templates.is_empty() {
            return Err(SpecError::new(
                "watch",
                "needs at least one template: [{names: [...], template: PATH, dest: PATH}]",
            ));
        }
        for (i, template) in self.templates.iter().enumerate() {
            template
                .validate()
                .map_err(|e| e.within(&format!("watch[{i}]")))?;
        }
        Ok(())
    }

    /// The fully qualified name `name` stands for.
    pub fn fqdn(&self, name: &str) -> String {
        format!("{name}.{}.", self.domain)
    }
}

impl TemplateSpec {
    fn validate(&self) -> Result<()> {
        if self.names.is_empty() {
            return Err(SpecError::new(
                "names",
                format!("needs at least one name: {NAME_FORM}"),
            ));
        }
        for name in &self.names {
            relative_name("names", name)?;
        }
        for (field, path) in [("template", &self.template), ("dest", &self.dest)] {
            let text = path.to_string_lossy();
            if validate::absolute_path(field, &text)? != *path || text.ends_with('/') {
                return Err(SpecError::new(
                    field,
                    format!("{} is not a normalised absolute file path", quoted(&text)),
                ));
            }
        }
        if self.template == self.dest {
            return Err(SpecError::new(
                "dest",
                "is the template itself: render into another file",
            ));
        }
        argv("check", &self.check)?;
        argv("reload", &self.reload)?;
        Ok(())
    }
}

/// The module's `watch` option: a list of `{names, template, dest, check, reload}`
/// mappings (or that list as a JSON string, as ad hoc `-a` gives it). Errors name
/// `watch[i].field`.
pub fn parse_option(value: Value) -> Result<Vec<TemplateSpec>> {
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
                    kind(&other)
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
                kind(&item)
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
    let names = match take(&mut map, "names") {
        Some(Value::String(text)) => text
            .split(',')
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect(),
        Some(Value::Array(items)) => words("names", items, NAME_FORM)?,
        Some(other) => {
            return Err(SpecError::new(
                "names",
                format!(
                    "must be a list of names ({NAME_FORM}), not {}",
                    kind(&other)
                ),
            ))
        }
        None => {
            return Err(SpecError::new(
                "names",
                format!("is required: a list of names, each {NAME_FORM}"),
            ))
        }
    };
    let path = |map: &mut Map<String, Value>, field: &str| -> Result<PathBuf> {
        match take(map, field) {
            Some(Value::String(text)) => validate::absolute_path(field, &text),
            Some(other) => Err(SpecError::new(
                field,
                format!("must be an absolute path, not {}", kind(&other)),
            )),
            None => Err(SpecError::new(
                field,
                "is required: an absolute path such as /etc/nginx/conf.d/web.conf",
            )),
        }
    };
    let template = path(&mut map, "template")?;
    let dest = path(&mut map, "dest")?;
    let command = |map: &mut Map<String, Value>, field: &str| -> Result<Vec<String>> {
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
                format!("must be {ARGV_FORM}, not {}", kind(&other)),
            )),
        }
    };
    let check = command(&mut map, "check")?;
    let reload = command(&mut map, "reload")?;
    let spec = TemplateSpec {
        names,
        template,
        dest,
        check,
        reload,
    };
    spec.validate()?;
    Ok(spec)
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
                format!("must hold strings ({form}), not {}", kind(&other)),
            )),
        })
        .collect()
}

fn argv(field: &str, words: &[String]) -> Result<()> {
    if let Some(first) = words.first() {
        if first.trim().is_empty() {
            return Err(SpecError::new(
                field,
                format!("starts with an empty program name: {ARGV_FORM}"),
            ));
        }
    }
    for word in words {
        if word.contains('\0') {
            return Err(SpecError::new(
                field,
                format!("{} holds a NUL byte: {ARGV_FORM}", quoted(word)),
            ));
        }
    }
    Ok(())
}

/// `web`, `node-1.web`, `_http._tcp.web`, `*.web`: labels of a-z, 0-9, '-' and '_'.
fn relative_name(field: &str, name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name.split('.').all(|label| {
            label == "*"
                || (!label.is_empty()
                    && label.len() <= 63
                    && label.bytes().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_'
                    })
                    && !label.starts_with('-')
                    && !label.ends_with('-'))
        });
    if ok {
        Ok(name.to_string())
    } else {
        Err(SpecError::new(
            field,
            format!("{} is not {NAME_FORM}", quoted(name)),
        ))
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one() -> Value {
        json!({"names": ["web", "api"], "template": "/etc/rundock/web.conf.j2",
               "dest": "/etc/nginx/conf.d/web.conf",
               "check": ["nginx", "-t"], "reload": ["nginx", "-s", "reload"]})
    }

    fn error(value: Value) -> String {
        parse_option(value).unwrap_err().to_string()
    }

    #[test]
    fn a_list_of_mappings_or_its_json_text_parses() {
        let parsed = parse_option(json!([one()])).unwrap();
        assert_eq!(parsed[0].names, ["web", "api"]);
        assert_eq!(parsed[0].reload, ["nginx", "-s", "reload"]);
        let text = json!([one()]).to_string();
        assert_eq!(parse_option(Value::String(text)).unwrap(), parsed);
        let minimal = json!([{"names": "web", "template": "/a.j2", "dest": "/b"}]);
        let parsed = parse_option(minimal).unwrap();
        assert!(parsed[0].check.is_empty() && parsed[0].reload.is_empty());
    }

    #[test]
    fn every_bad_field_is_named_with_its_index_and_the_allowed_form() {
        let with = |key: &str, value: Value| {
            let mut item = one();
            item[key] = value;
            error(json!([one(), item]))
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
        let mut no_dest = one();
        no_dest.as_object_mut().unwrap().remove("dest");
        assert!(error(json!([no_dest])).starts_with("watch[0].dest: is required"));
        assert!(error(json!([])).starts_with("watch: needs at least one"));
        assert!(error(json!({"names": []})).starts_with("watch: must be a list"));
        assert!(error(json!(["x"])).starts_with("watch[0]: must be a mapping"));
    }

    #[test]
    fn a_spec_from_a_file_is_validated_the_same_way() {
        let spec = WatchSpec {
            domain: "s.test".into(),
            etcd: EtcdSpec::new(
                vec!["http://127.0.0.1:2379".parse().unwrap()],
                crate::EtcdApi::V3,
            ),
            templates: parse_option(json!([one()])).unwrap(),
        };
        spec.validate().unwrap();
        assert_eq!(spec.fqdn("web"), "web.s.test.");
        let mut bad = spec.clone();
        bad.templates[0].names = vec!["a..b".into()];
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("watch[0].names: \"a..b\""));
        let text = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<WatchSpec>(&text).unwrap(), spec);
    }
}
