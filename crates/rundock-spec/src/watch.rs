//! What `rundock watch` does, as data: which names to follow, where their records live,
//! and per template the file it renders, the command that checks it and the command that
//! reloads its reader. Stored in `spec.json` (the tree's `services/watch`) or given to
//! `rundock watch` as a JSON file of the same form; the module turns its `watch` option
//! into it, and [`WatchSpec::validate`] checks either.

use crate::error::{Result, SpecError};
use crate::spec::EtcdSpec;
use crate::validate::{self, quoted};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Everything a watcher needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchSpec {
    /// The DNS domain the names are relative to (`web` is `web.DOMAIN`).
    pub domain: String,
    /// The etcd the records are listed and watched in.
    pub etcd: EtcdSpec,
    /// What is rendered, in order; never empty.
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

/// What a name of `names` may be, for messages.
pub const NAME_FORM: &str = "a DNS name relative to the domain: dot-separated labels of a-z, 0-9, '-' and '_' (or '*'), such as web or node-1.web";
/// What `check` and `reload` may be, for messages.
pub const ARGV_FORM: &str =
    "a list of words, the program first, such as [nginx, -s, reload] (never run by a shell)";

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
        // Each endpoint was parsed (EtcdEndpoint) when the spec was read.
        self.etcd
            .check_tls()
            .map_err(|(field, why)| SpecError::new(format!("etcd.{field}"), why))?;
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
    /// Checks every field; errors name the field alone (the caller adds `watch[i]`).
    pub fn validate(&self) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_spec_from_a_file_is_validated_the_same_way() {
        let spec = WatchSpec {
            domain: "s.test".into(),
            etcd: EtcdSpec::new(
                vec!["http://127.0.0.1:2379".parse().unwrap()],
                crate::EtcdApi::V3,
            ),
            templates: serde_json::from_value(json!([{
                "names": ["web", "api"], "template": "/etc/rundock/web.conf.j2",
                "dest": "/etc/nginx/conf.d/web.conf",
                "check": ["nginx", "-t"], "reload": ["nginx", "-s", "reload"]}]))
            .unwrap(),
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
