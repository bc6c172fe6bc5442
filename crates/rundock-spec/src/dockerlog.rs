//! Docker's own log of a container (what `docker logs` reads): a second copy of the
//! output svlogd keeps, so it is bounded and never blocking unless the service says
//! otherwise (`log_driver`, `log_options`).
//!
//! The default is json-file rotated at [`JSON_FILE_MAX_SIZE`] × [`JSON_FILE_MAX_FILE`]
//! in `mode=non-blocking` with a [`NON_BLOCKING_BUFFER`] buffer: Docker's json-file has
//! no bound of its own, and in blocking mode a slow log driver holds the container's
//! writes back. A chosen driver gets the same `mode` unless its options set one, and
//! json-file keeps the size bounds unless they are given.

use crate::error::{Result, SpecError};
use crate::validate::quoted;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The driver when none is chosen.
pub const DEFAULT_DRIVER: &str = "json-file";
/// Size at which json-file rotates, unless `max-size` is given.
pub const JSON_FILE_MAX_SIZE: &str = "10m";
/// json-file logs kept per container (the current one included), unless `max-file` is given.
pub const JSON_FILE_MAX_FILE: &str = "3";
/// Docker's buffer between the container and its log driver in `non-blocking` mode.
pub const NON_BLOCKING_BUFFER: &str = "1m";

/// A driver and its `--log-opt`s, as Docker's `HostConfig.LogConfig` takes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerLog {
    /// Docker's log driver name (`json-file`, `local`, `journald`, `syslog`, `none` or a plugin):
    /// lower-case letters, digits and `-_./:`.
    pub driver: String,
    /// Its `--log-opt`s with rundock's defaults filled in where not given (`mode`,
    /// `max-buffer-size` when non-blocking, and for json-file `max-size`/`max-file`);
    /// empty for the `none` driver.
    pub options: BTreeMap<String, String>,
}

impl Default for DockerLog {
    /// json-file, bounded and non-blocking.
    fn default() -> DockerLog {
        DockerLog::resolve(None, BTreeMap::new()).expect("the default is valid")
    }
}

impl DockerLog {
    /// The log config of `driver` (json-file when `None`) with `options` over rundock's
    /// defaults for it; `Err` names `log_driver` or `log_options` and the allowed form.
    pub fn resolve(driver: Option<&str>, options: BTreeMap<String, String>) -> Result<DockerLog> {
        let driver = match driver {
            Some(d) => driver_name(d)?,
            None => DEFAULT_DRIVER.to_string(),
        };
        for (key, value) in &options {
            option_key(key)?;
            if value.chars().any(char::is_control) {
                return Err(SpecError::new(
                    "log_options",
                    format!(
                        "{}: the value must not contain control characters",
                        quoted(key)
                    ),
                ));
            }
        }
        if driver == "none" {
            if let Some(key) = options.keys().next() {
                return Err(SpecError::new(
                    "log_options",
                    format!(
                        "{} is not an option of the none driver, which keeps no log and takes none",
                        quoted(key)
                    ),
                ));
            }
            return Ok(DockerLog { driver, options });
        }
        let mut resolved = BTreeMap::new();
        if driver == DEFAULT_DRIVER {
            resolved.insert("max-size".to_string(), JSON_FILE_MAX_SIZE.to_string());
            resolved.insert("max-file".to_string(), JSON_FILE_MAX_FILE.to_string());
        }
        resolved.insert("mode".to_string(), "non-blocking".to_string());
        resolved.extend(options);
        match resolved["mode"].as_str() {
            "non-blocking" => {
                resolved
                    .entry("max-buffer-size".to_string())
                    .or_insert_with(|| NON_BLOCKING_BUFFER.to_string());
            }
            "blocking" => {}
            other => {
                return Err(SpecError::new(
                    "log_options",
                    format!("mode {} is not blocking or non-blocking", quoted(other)),
                ))
            }
        }
        if driver == DEFAULT_DRIVER {
            bounded_size("max-size", &resolved["max-size"])?;
            let files = &resolved["max-file"];
            if !files.parse::<u32>().is_ok_and(|n| (1..=100).contains(&n)) {
                return Err(SpecError::new(
                    "log_options",
                    format!(
                        "max-file {} is not a number of files from 1 to 100",
                        quoted(files)
                    ),
                ));
            }
        }
        if let Some(size) = resolved.get("max-buffer-size") {
            bounded_size("max-buffer-size", size)?;
        }
        Ok(DockerLog {
            driver,
            options: resolved,
        })
    }

    /// `None` for the default (what a spec stores then: specs from before the option
    /// keep their hash), else the config.
    pub fn unless_default(self) -> Option<DockerLog> {
        (self != DockerLog::default()).then_some(self)
    }
}

/// A driver name as Docker's plugins are named: `json-file`, `journald`,
/// `vendor/plugin:tag`.
fn driver_name(value: &str) -> Result<String> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_./:".contains(c));
    if ok {
        Ok(value.to_string())
    } else {
        Err(SpecError::new(
            "log_driver",
            format!(
                "{} is not a log driver name: lower-case letters, digits and '-', '_', '.', '/', ':' \
                 (json-file, local, journald, syslog, none, or a plugin)",
                quoted(value)
            ),
        ))
    }
}

fn option_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(SpecError::new(
            "log_options",
            format!(
                "{} is not a log option name: letters, digits, '-', '_' and '.'",
                quoted(key)
            ),
        ))
    }
}

/// A size as Docker's log options take one (`10m`, `512k`, `1g`), never unbounded.
fn bounded_size(key: &str, value: &str) -> Result<()> {
    let digits = value.trim_end_matches(['k', 'm', 'g']);
    let ok = value.len() - digits.len() <= 1
        && !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && digits.parse::<u64>().is_ok_and(|n| n > 0);
    if ok {
        Ok(())
    } else {
        Err(SpecError::new(
            "log_options",
            format!(
                "{key} {} is not a size like 10m (a positive number with k, m or g); \
                 rundock keeps Docker's log bounded",
                quoted(value)
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_default_is_bounded_non_blocking_json_file() {
        let log = DockerLog::default();
        assert_eq!(log.driver, "json-file");
        assert_eq!(
            log.options,
            opts(&[
                ("max-buffer-size", "1m"),
                ("max-file", "3"),
                ("max-size", "10m"),
                ("mode", "non-blocking")
            ])
        );
        // Saying the default is the default: nothing is stored.
        let said = DockerLog::resolve(Some("json-file"), opts(&[("max-size", "10m")])).unwrap();
        assert_eq!(said.unless_default(), None);
    }

    #[test]
    fn chosen_options_go_over_the_defaults_of_their_driver() {
        let log =
            DockerLog::resolve(None, opts(&[("max-size", "50m"), ("mode", "blocking")])).unwrap();
        assert_eq!(
            log.options,
            opts(&[("max-file", "3"), ("max-size", "50m"), ("mode", "blocking")])
        );
        let log = DockerLog::resolve(Some("journald"), opts(&[("tag", "web")])).unwrap();
        assert_eq!(
            log.options,
            opts(&[
                ("max-buffer-size", "1m"),
                ("mode", "non-blocking"),
                ("tag", "web")
            ])
        );
        let log = DockerLog::resolve(Some("none"), BTreeMap::new()).unwrap();
        assert!(log.options.is_empty());
        assert!(DockerLog::resolve(Some("vendor/plugin:1.2"), BTreeMap::new()).is_ok());
    }

    #[test]
    fn bad_drivers_and_options_are_refused_naming_the_field() {
        for (driver, options, wanted) in [
            (
                Some("Json File"),
                vec![],
                "log_driver: \"Json File\" is not a log driver name",
            ),
            (Some(""), vec![], "log_driver"),
            (
                Some("none"),
                vec![("max-size", "1m")],
                "log_options: \"max-size\" is not an option of the none driver",
            ),
            (
                None,
                vec![("max-size", "-1")],
                "log_options: max-size \"-1\" is not a size like 10m",
            ),
            (None, vec![("max-size", "10x")], "log_options: max-size"),
            (
                None,
                vec![("max-file", "0")],
                "log_options: max-file \"0\" is not a number of files from 1 to 100",
            ),
            (
                None,
                vec![("mode", "fast")],
                "log_options: mode \"fast\" is not blocking or non-blocking",
            ),
            (
                None,
                vec![("bad key", "x")],
                "log_options: \"bad key\" is not a log option name",
            ),
            (
                Some("syslog"),
                vec![("tag", "a\nb")],
                "log_options: \"tag\": the value must not contain control characters",
            ),
        ] {
            let options = opts(&options);
            let err = DockerLog::resolve(driver, options).unwrap_err().to_string();
            assert!(err.starts_with(wanted), "{driver:?}: {err}");
        }
    }
}
