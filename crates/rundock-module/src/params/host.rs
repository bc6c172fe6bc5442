//! The options about the host a service runs on: `host_label` (the record's instance
//! label) and `private_interface`/`public_interface` (where `private`, `public`,
//! `$PRIVATE_IP` and `$PUBLIC_IP` are looked up).

use super::coerce::{parse_as, Params};
use super::HostFacts;
use crate::options::option;
use rundock_spec::error::{Result, SpecError};
use rundock_spec::validate::{self, quoted};
use rundock_spec::{InterfaceChoice, Interfaces};

/// `host_label`, or the host's short name when that makes a DNS label.
pub(super) fn host_label(p: &mut Params, facts: &HostFacts) -> Result<String> {
    match p.string("host_label")? {
        Some(label) => validate::dns_label("host_label", &label),
        None => validate::host_label_from_hostname(&facts.hostname).ok_or_else(|| {
            SpecError::new(
                "host_label",
                format!(
                    "not given, and this host's name {} does not make a DNS label; set host_label ({})",
                    quoted(&facts.hostname),
                    validate::LABEL_FORM
                ),
            )
        }),
    }
}

pub(super) fn interfaces(p: &mut Params) -> Result<Interfaces> {
    Ok(Interfaces {
        private: interface_list(p, "private_interface")?,
        public: interface_list(p, "public_interface")?,
    })
}

/// An interface list; an empty list names no interface, so it means the default.
fn interface_list(p: &mut Params, key: &str) -> Result<Vec<InterfaceChoice>> {
    let given = p.validated_list(key, parse_as::<InterfaceChoice>)?;
    if !given.is_empty() {
        return Ok(given);
    }
    option(key)
        .default_list()
        .unwrap_or_default()
        .iter()
        .map(|name| parse_as(key, name))
        .collect()
}
