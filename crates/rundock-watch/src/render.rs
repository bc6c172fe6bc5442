//! What a template renders, as a pure function of the instances: the context the template
//! sees ([`Context`]) and the Jinja rendering itself ([`render`]). No I/O and no clock, so
//! the same instances always give the same bytes and an unchanged set reloads nothing.
//!
//! Nothing is escaped here, because nothing needs to be: every text field a template
//! sees from a record is held to the grammar of [`rundock_spec::skydns`] (DNS labels,
//! addresses, host names; the rest are numbers), which has no character that could end
//! a line, a directive, a block, a string or a comment in nginx or HAProxy
//! configuration, or start template syntax. The records were checked by that rule when
//! they were read from etcd; [`Instance::checked`] applies it once more to what the
//! instance list made of them, so a template cannot see a field the rule refuses even if
//! the two layers ever disagree. A record's `text` is served as TXT only and never
//! reaches a template.

use std::collections::BTreeMap;

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, UndefinedBehavior};
use rundock_dns::instances::Instance as DnsInstance;
use rundock_spec::skydns::{check_key, is_host, is_host_name};
use serde::Serialize;

/// One instance as templates see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    /// The watched name it answers for, as configured (`web`).
    pub service: String,
    /// The host label below the name (`node-1`); empty for a record stored at the name.
    pub instance: String,
    /// An address, or a host name when the record names a host outside the zones.
    pub host: String,
    /// The port the record announces (the SRV port): where a proxy connects, not
    /// necessarily the port the container listens on inside.
    pub port: u16,
    /// The SRV priority: lower is preferred, higher ones are backups. Instances are
    /// sorted by it first.
    pub priority: u16,
    /// Normalised as DNS answers it: the weights of one priority sum to about 100.
    pub weight: u16,
    /// `host:port`, with an IPv6 address in brackets: ready for an nginx `server` line.
    pub address: String,
    /// The SRV target, fully qualified.
    pub target: String,
    /// The etcd key of the record.
    pub key: String,
}

/// An instance whose fields fail the record rule; skipped, and logged by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The etcd key of the refused record, as found (empty when DNS cannot tell it);
    /// the message shows at most its first 200 characters.
    pub key: String,
    /// The instance field that failed: `host`, `target`, `instance` or `key`.
    pub field: &'static str,
    /// That field's value, whole; the message shows at most its first 64 characters.
    pub value: String,
    /// The form the field must have, as the message's "expected FORM" says it.
    pub form: &'static str,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: String = self.value.chars().take(64).collect();
        write!(
            f,
            "skipping the instance at {:?}: {} {shown:?}: expected {}",
            self.key.chars().take(200).collect::<String>(),
            self.field,
            self.form
        )
    }
}

impl std::error::Error for Refused {}

impl Instance {
    /// [`Instance::new`] for an instance read from the records under `prefix`, once
    /// its text fields pass the record rule: `host` an address or host name, `target`
    /// a host name, `instance` dot-separated DNS labels, `key` DNS labels below
    /// `prefix` (or empty, when DNS cannot tell it).
    pub fn checked(service: &str, prefix: &str, found: DnsInstance) -> Result<Instance, Refused> {
        let refuse = |field, value: &str, form| Refused {
            key: found.key.clone(),
            field,
            value: value.to_string(),
            form,
        };
        if !is_host(&found.host) {
            return Err(refuse("host", &found.host, "an address or a host name"));
        }
        if !is_host_name(&found.target) {
            return Err(refuse("target", &found.target, "a host name"));
        }
        if !found.instance.is_empty() && !is_host_name(&found.instance) {
            return Err(refuse(
                "instance",
                &found.instance,
                "dot-separated DNS labels",
            ));
        }
        if !found.key.is_empty() && check_key(prefix, &found.key).is_err() {
            return Err(refuse(
                "key",
                &found.key,
                "DNS labels separated by '/' below the prefix",
            ));
        }
        Ok(Instance::new(service, found))
    }

    /// The instance as templates see it, fields taken as they are (see
    /// [`Instance::checked`]).
    pub fn new(service: &str, found: DnsInstance) -> Instance {
        let address = if found.host.contains(':') {
            format!("[{}]:{}", found.host, found.port)
        } else {
            format!("{}:{}", found.host, found.port)
        };
        Instance {
            service: service.to_string(),
            instance: found.instance,
            host: found.host,
            port: found.port,
            priority: found.priority,
            weight: found.weight,
            address,
            target: found.target,
            key: found.key,
        }
    }

    /// The stable order: priority first (backups last), then instance label, host, port
    /// and key, so equal sets always render in the same order whatever etcd's order.
    fn order_key(&self) -> (u16, &str, &str, u16, &str) {
        (
            self.priority,
            &self.instance,
            &self.host,
            self.port,
            &self.key,
        )
    }
}

/// The variables a template sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Context {
    /// Every instance of every watched name: the names in configured order, each sorted.
    pub instances: Vec<Instance>,
    /// The instances of each watched name, sorted (`names.web`, `names["web-v2"]`).
    pub names: BTreeMap<String, Vec<Instance>>,
    /// The DNS domain the names live in.
    pub domain: String,
}

impl Context {
    /// The context for `names` (in configured order) and what each answers.
    pub fn new(domain: &str, per_name: Vec<(String, Vec<Instance>)>) -> Context {
        let mut names = BTreeMap::new();
        let mut instances = Vec::new();
        for (name, mut list) in per_name {
            list.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
            list.dedup();
            instances.extend(list.iter().cloned());
            names.insert(name, list);
        }
        Context {
            instances,
            names,
            domain: domain.to_string(),
        }
    }
}

/// Renders `source` (Jinja, as Ansible users write it) with `context`. `name` appears
/// in error messages. Undefined variables are errors, as in Ansible.
pub fn render(name: &str, source: &str, context: &Context) -> Result<String, minijinja::Error> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // As Ansible's template module: a newline after a block tag is dropped, and the
    // template's final newline is kept.
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .keep_trailing_newline(true)
            .build()?,
    );
    env.add_template(name, source)?;
    env.get_template(name)?
        .render(minijinja::value::Serde(context))
}

/// A rendering error with its cause chain and, when known, the line.
pub fn describe(error: &minijinja::Error) -> String {
    rundock_runtime::log::chain(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(instance: &str, host: &str, port: u16, priority: u16) -> DnsInstance {
        DnsInstance {
            host: host.into(),
            port,
            priority,
            weight: 50,
            target: format!("{instance}.web.s.test."),
            instance: instance.into(),
            key: format!("/skydns/test/s/web/{instance}"),
        }
    }

    const UPSTREAM: &str = "upstream web {\n{% for i in names.web %}    server {{ i.address }} weight={{ i.weight }}{% if i.priority > 10 %} backup{% endif %};  # {{ i.instance }}\n{% endfor %}}\n";

    fn context(order: &[usize]) -> Context {
        let all = [
            found("node-2", "10.0.0.2", 8080, 10),
            found("node-1", "10.0.0.1", 8080, 10),
            found("node-3", "::1", 8080, 20),
        ];
        let list = order
            .iter()
            .map(|&i| Instance::new("web", all[i].clone()))
            .collect();
        Context::new("s.test", vec![("web".into(), list)])
    }

    #[test]
    fn instances_are_sorted_stably_so_the_same_set_renders_the_same_bytes() {
        let a = render("upstream", UPSTREAM, &context(&[0, 1, 2])).unwrap();
        let b = render("upstream", UPSTREAM, &context(&[2, 1, 0])).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a,
            "upstream web {\n    server 10.0.0.1:8080 weight=50;  # node-1\n    server 10.0.0.2:8080 weight=50;  # node-2\n    server [::1]:8080 weight=50 backup;  # node-3\n}\n"
        );
    }

    #[test]
    fn the_flat_list_holds_every_name_in_configured_order() {
        let web = vec![Instance::new("web", found("node-1", "10.0.0.1", 80, 10))];
        let api = vec![Instance::new("api", found("node-1", "10.0.0.9", 90, 10))];
        let context = Context::new("s.test", vec![("web".into(), web), ("api".into(), api)]);
        let text = render(
            "t",
            "{% for i in instances %}{{ i.service }}={{ i.address }} {% endfor %}{{ names | length }} {{ domain }}",
            &context,
        )
        .unwrap();
        assert_eq!(text, "web=10.0.0.1:80 api=10.0.0.9:90 2 s.test");
    }

    #[test]
    fn only_fields_of_the_record_grammar_reach_a_template() {
        let ok = found("node-1", "10.0.0.1", 80, 10);
        assert!(Instance::checked("web", "/skydns", ok.clone()).is_ok());
        let mut edge = ok.clone();
        edge.host = "edge.example.org".into();
        edge.key = String::new();
        assert!(Instance::checked("web", "/skydns", edge).is_ok());
        let hostile = [
            "a\nserver 6.6.6.6:80;",
            "x;}",
            "{{ i.key }}",
            "{% raw %}",
            "a b",
            "\"a\"",
            "#",
        ];
        for bad in hostile {
            for field in ["host", "target", "instance", "key"] {
                let mut i = ok.clone();
                match field {
                    "host" => i.host = bad.into(),
                    "target" => i.target = bad.into(),
                    "instance" => i.instance = bad.into(),
                    _ => i.key = format!("/skydns/test/s/web/{bad}"),
                }
                let err = Instance::checked("web", "/skydns", i).unwrap_err();
                assert_eq!(err.field, field, "{bad:?}");
                assert!(!err.to_string().contains('\n'), "{err}");
            }
        }
    }

    #[test]
    fn syntax_errors_and_undefined_variables_are_errors_with_the_line() {
        let context = context(&[0]);
        let err = render("upstream.j2", "a\n{% for i in %}", &context).unwrap_err();
        let text = describe(&err);
        assert!(text.contains("syntax error"), "{text}");
        assert!(text.contains("upstream.j2:2"), "{text}");
        let err = render("t", "{{ nmaes.web }}", &context).unwrap_err();
        assert!(describe(&err).contains("undefined"), "{}", describe(&err));
    }

    #[test]
    fn the_shipped_nginx_example_renders_upstreams_with_backups_and_empty_names() {
        let example = include_str!("../../../examples/nginx-upstream.conf.j2");
        let web = context(&[0, 1, 2]).names.remove("web").unwrap();
        let context = Context::new("s.test", vec![("web".into(), web), ("api".into(), vec![])]);
        let text = render("nginx-upstream.conf.j2", example, &context).unwrap();
        assert_eq!(
            text,
            "# Rendered by rundock watch from the records of api, web in s.test: do not edit.\n\
             upstream api {\n\
             \x20   # No instance of api.s.test answers: 502 rather than a config nginx refuses.\n\
             \x20   server 127.0.0.1:9 down;\n\
             }\n\
             upstream web {\n\
             \x20   server 10.0.0.1:8080 weight=50;  # node-1\n\
             \x20   server 10.0.0.2:8080 weight=50;  # node-2\n\
             \x20   server [::1]:8080 weight=50 backup;  # node-3\n\
             }\n"
        );
    }
}
