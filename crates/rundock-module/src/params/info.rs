//! The info module's options (`rundock_info`: `name`, `sv_dir`, `lines`), read from
//! [`crate::options::INFO_OPTIONS`] with the same coercion as the module's own.

use super::coerce::Params;
use crate::options::{OptionDef, INFO_MAX_LINES, INFO_OPTIONS};
use rundock_spec::error::SpecError;
use rundock_spec::validate;
use serde_json::{Map, Value};
use std::path::PathBuf;

/// A validated info call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoRequest {
    /// The services asked for (names or tree paths); empty for all.
    pub names: Vec<String>,
    /// Where the service trees are looked for (`sv_dir`, `/etc/sv` by default).
    pub sv_dir: PathBuf,
    /// Output lines per service.
    pub lines: usize,
}

fn info_option(name: &str) -> &'static OptionDef {
    INFO_OPTIONS
        .iter()
        .find(|o| o.name == name)
        .unwrap_or_else(|| panic!("{name} is not in the info option table"))
}

/// The info call in `args`, or the message Ansible shows: unknown options in
/// `AnsibleModule`'s words, a bad value naming its option.
pub fn parse_info_request(args: &Map<String, Value>) -> Result<InfoRequest, String> {
    if let Some(msg) = super::unsupported_parameters_in(args, INFO_OPTIONS) {
        return Err(msg);
    }
    parse(args).map_err(|e| e.to_string())
}

fn parse(args: &Map<String, Value>) -> rundock_spec::error::Result<InfoRequest> {
    let mut p = Params::new(args)?;
    let names = p.words("name")?.unwrap_or_default();
    for name in &names {
        // A tree's path, or a service name: what `rundock status` takes.
        if !name.contains('/') {
            validate::dns_label("name", name)?;
        }
    }
    let sv_dir = match p.path("sv_dir")? {
        Some(dir) => dir,
        None => PathBuf::from(
            info_option("sv_dir")
                .default_str()
                .expect("sv_dir has a default"),
        ),
    };
    let default_lines = info_option("lines")
        .default_int()
        .expect("lines has a default");
    let lines = match p.int("lines")? {
        None => default_lines,
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| *n <= INFO_MAX_LINES)
            .ok_or_else(|| {
                SpecError::new(
                    "lines",
                    format!("{n} is out of range: a whole number from 0 to {INFO_MAX_LINES}"),
                )
            })?,
    };
    p.finish()?;
    Ok(InfoRequest {
        names,
        sv_dir,
        lines: lines as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<InfoRequest, String> {
        parse_info_request(value.as_object().unwrap())
    }

    #[test]
    fn defaults_come_from_the_info_table_and_ad_hoc_strings_are_coerced() {
        let request = parse(json!({"_ansible_module_name": "rundock_info"})).unwrap();
        assert_eq!(
            request,
            InfoRequest {
                names: vec![],
                sv_dir: PathBuf::from("/etc/sv"),
                lines: 10
            }
        );
        assert_eq!(
            crate::options::option("sv_dir").default_str(),
            Some("/etc/sv"),
            "one sv_dir default for both modules"
        );
        let request = parse(json!({"name": "web, db", "lines": "0", "sv_dir": "/srv/sv"})).unwrap();
        assert_eq!(request.names, ["web", "db"]);
        assert_eq!(request.lines, 0);
        assert_eq!(request.sv_dir, PathBuf::from("/srv/sv"));
        let request = parse(json!({"name": ["web", "/srv/sv/docker-db"], "lines": 1000})).unwrap();
        assert_eq!(request.names, ["web", "/srv/sv/docker-db"]);
    }

    #[test]
    fn bad_values_and_unknown_options_are_named() {
        for (args, wanted) in [
            (
                json!({"lines": 1001}),
                "lines: 1001 is out of range: a whole number from 0 to 1000",
            ),
            (json!({"lines": -1}), "lines: -1 is out of range"),
            (
                json!({"lines": "ten"}),
                "lines: \"ten\" is not a whole number",
            ),
            (json!({"sv_dir": "etc/sv"}), "sv_dir"),
            (json!({"name": "Web_1"}), "name"),
        ] {
            let msg = parse(args.clone()).unwrap_err();
            assert!(msg.starts_with(wanted), "{args}: {msg}");
        }
        let msg = parse(json!({"_ansible_module_name": "rundock.rundock.rundock_info", "line": 3, "image": "x"})).unwrap_err();
        assert_eq!(
            msg,
            "Unsupported parameters for (rundock.rundock.rundock_info) module: image, line (did you mean lines?). \
             Supported parameters include: lines, name, sv_dir."
        );
    }
}
