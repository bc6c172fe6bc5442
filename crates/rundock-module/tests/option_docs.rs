//! The option table is the one source: the Ansible docs (`rundock.yml`, and
//! `rundock_info.yml` against the info module's table), the service role's task and the
//! README's option table are held against it here.
//!
//! YAML is read by the venv's Python (PyYAML, which Ansible itself reads it with), so
//! what is compared is what Ansible sees.

use rundock_module::options::{Default, OptionDef, INFO_OPTIONS, OPTIONS};
use rundock_testkit as kit;
use serde_json::{json, Value};
use std::path::Path;

/// `path` (relative to the workspace root) as JSON, through PyYAML.
fn yaml(path: &str) -> Value {
    let python = kit::ansible_bin_dir().join("python");
    let file = kit::workspace_root().join(path);
    let out = kit::run(
        &python.to_string_lossy(),
        &[
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
            &file.to_string_lossy(),
        ],
    );
    assert!(
        out.status.success(),
        "cannot read {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sorted<S: AsRef<str>>(names: impl Iterator<Item = S>) -> Vec<String> {
    let mut names: Vec<String> = names.map(|n| n.as_ref().to_string()).collect();
    names.sort();
    names
}

fn documented_default(o: &OptionDef) -> Value {
    match o.default {
        Default::None => Value::Null,
        Default::Str(s) => json!(s),
        Default::Int(n) => json!(n),
        Default::Bool(b) => json!(b),
        Default::List(l) => json!(l),
    }
}

#[test]
fn the_module_docs_list_every_option_as_the_table_defines_it() {
    docs_follow_the_table("ansible/library/rundock.yml", OPTIONS);
}

#[test]
fn the_info_module_docs_list_every_option_as_its_table_defines_it() {
    docs_follow_the_table("ansible/library/rundock_info.yml", INFO_OPTIONS);
}

/// The sidecar docs at `path` document exactly the options of `table`, each with the
/// table's type, default, choices and whether it is required.
fn docs_follow_the_table(path: &str, table: &[OptionDef]) {
    let docs = yaml(path);
    let options = docs["DOCUMENTATION"]["options"]
        .as_object()
        .expect("DOCUMENTATION.options");
    assert_eq!(
        sorted(options.keys()),
        sorted(table.iter().map(|o| o.name)),
        "{path}"
    );
    for o in table {
        let doc = &options[o.name];
        let (kind, elements) = o.kind.ansible_type();
        assert_eq!(doc["type"], json!(kind), "{}: type", o.name);
        assert_eq!(
            doc.get("elements").cloned().unwrap_or(Value::Null),
            json!(elements),
            "{}: elements",
            o.name
        );
        assert_eq!(
            doc.get("default").cloned().unwrap_or(Value::Null),
            documented_default(o),
            "{}: default",
            o.name
        );
        let choices = doc.get("choices").cloned().unwrap_or(json!([]));
        assert_eq!(choices, json!(o.choices), "{}: choices", o.name);
        assert_eq!(
            doc.get("required").cloned().unwrap_or(json!(false)),
            json!(o.required),
            "{}: required",
            o.name
        );
    }
}

/// The role either passes a service's options through untouched, or names exactly the
/// table's options.
#[test]
fn the_service_role_passes_every_option() {
    let tasks = yaml("roles/rundock_service/tasks/deploy.yml");
    let modules = ["rundock", "rundock.rundock.rundock"];
    let task = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| modules.iter().any(|m| t.get(m).is_some()))
        .expect("a task calling the module");
    let call = modules.iter().find_map(|m| task.get(m)).unwrap();
    match call {
        // Passed through whole, e.g. `rundock: "{{ options }}"` or `args: "{{ ... }}"`.
        Value::String(_) | Value::Null => {}
        Value::Object(named) => {
            assert_eq!(
                sorted(named.keys()),
                sorted(OPTIONS.iter().map(|o| o.name)),
                "the role's task names every option"
            );
        }
        other => panic!("unexpected module call {other}"),
    }
}

const BEGIN: &str = "<!-- options: generated from crates/rundock-module/src/options.rs -->";
const END: &str = "<!-- options end -->";

fn readme_table() -> String {
    let mut out = String::from("| option | type | default | meaning |\n|---|---|---|---|\n");
    for o in OPTIONS {
        let (kind, elements) = o.kind.ansible_type();
        let kind = match elements {
            Some(e) => format!("{kind} of {e}"),
            None => kind.to_string(),
        };
        let default = match o.default {
            Default::None if o.required => "required".to_string(),
            Default::None => String::new(),
            Default::Str(s) => format!("`{s}`"),
            Default::Int(n) => n.to_string(),
            Default::Bool(b) => if b { "yes" } else { "no" }.to_string(),
            Default::List(l) => format!("`{}`", l.join(",")),
        };
        out.push_str(&format!(
            "| `{}` | {kind} | {default} | {} |\n",
            o.name, o.doc
        ));
    }
    out
}

/// `RUNDOCK_BLESS=1` rewrites the README's table from the option table.
#[test]
fn the_readme_table_is_the_option_table() {
    let path = kit::workspace_root().join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let (Some(start), Some(end)) = (readme.find(BEGIN), readme.find(END)) else {
        panic!("README.md lacks the {BEGIN} … {END} markers");
    };
    let current = &readme[start + BEGIN.len() + 1..end];
    let wanted = readme_table();
    if current != wanted && std::env::var_os("RUNDOCK_BLESS").is_some() {
        let updated = format!(
            "{}{}\n{}{}",
            &readme[..start],
            BEGIN,
            wanted,
            &readme[end..]
        );
        std::fs::write(Path::new(&path), updated).unwrap();
        return;
    }
    assert_eq!(
        current, wanted,
        "README.md's option table differs from the option table; RUNDOCK_BLESS=1 cargo test rewrites it"
    );
}
