//! Ansible value coercion: module arguments as Ansible would hand them to a Python
//! module. Ad hoc `-a 'k=v'` gives every value as a string and playbooks keep JSON
//! types, so ints come from numeric strings, booleans from yes/no/true/false/1/0, lists
//! from comma strings, mappings from `k=v` text, and every error names its option.
//! [`Params`] holds the arguments not yet read; the section files read their options
//! through it, and what is left at [`Params::finish`] is unknown.

use super::choice::Choice;
use crate::options::{self, option};
use rundock_spec::dockerargs::split_words_on;
use rundock_spec::error::{Result, SpecError};
use rundock_spec::validate::{self, quoted};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// The parameters not yet consumed; whatever is left at [`Params::finish`] is unknown.
/// At the top level (the module's own options) every key asked for is a row of the
/// option table, and the `*_or_default` accessors take the table's default.
pub(super) struct Params {
    pub(super) values: BTreeMap<String, Value>,
    top_level: bool,
}

impl Params {
    pub(super) fn top_level(map: &Map<String, Value>) -> Result<Self> {
        let mut params = Params::new(map)?;
        params.top_level = true;
        Ok(params)
    }

    pub(super) fn new(map: &Map<String, Value>) -> Result<Self> {
        let values = map
            .iter()
            .filter(|(k, _)| !k.starts_with("_ansible_"))
            // Ansible sends `null` for options a play leaves unset (`x: "{{ omit }}"` aside).
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Params {
            values,
            top_level: false,
        })
    }

    pub(super) fn has(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    pub(super) fn take(&mut self, key: &str) -> Option<Value> {
        debug_assert!(
            !self.top_level || options::is_option(key),
            "{key} is read but not in the option table"
        );
        self.values.remove(key)
    }

    /// A string option that must be one of the table's choices for `key`, as its enum.
    pub(super) fn choice<T: Choice>(&mut self, key: &str) -> Result<Option<T>> {
        let choices = option(key).choices;
        debug_assert!(
            T::ALL.iter().map(|c| c.word()).eq(choices.iter().copied()),
            "{key}: the table's choices {choices:?} are not the words of {}",
            std::any::type_name::<T>()
        );
        match self.string(key)? {
            None => Ok(None),
            Some(value) => T::from_word(&value).map(Some).ok_or_else(|| {
                SpecError::new(
                    key,
                    format!("{} is not one of {}", quoted(&value), one_of_words(choices)),
                )
            }),
        }
    }

    pub(super) fn choice_or_default<T: Choice>(&mut self, key: &str) -> Result<T> {
        Ok(self
            .choice(key)?
            .or_else(|| option(key).default_str().and_then(T::from_word))
            .expect("a choice option has a default in the table"))
    }

    pub(super) fn string_or_default(&mut self, key: &str) -> Result<String> {
        Ok(match self.string(key)? {
            Some(value) => value,
            None => option(key)
                .default_str()
                .expect("the table has a default")
                .to_string(),
        })
    }

    pub(super) fn path_or_default(&mut self, key: &str) -> Result<PathBuf> {
        match self.path(key)? {
            Some(path) => Ok(path),
            None => validate::absolute_path(key, option(key).default_str().unwrap_or_default()),
        }
    }

    pub(super) fn boolean_or_default(&mut self, key: &str) -> Result<bool> {
        Ok(self
            .boolean(key)?
            .or(option(key).default_bool())
            .unwrap_or(false))
    }

    pub(super) fn finish(self) -> Result<()> {
        let unknown: BTreeSet<&String> = self.values.keys().collect();
        let Some(first) = unknown.iter().next() else {
            return Ok(());
        };
        Err(SpecError::new(
            first.as_str(),
            format!(
                "unsupported parameter{} {}",
                if unknown.len() > 1 { "s" } else { "" },
                unknown
                    .iter()
                    .map(|k| quoted(k))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))
    }

    pub(super) fn string(&mut self, key: &str) -> Result<Option<String>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(other) => Err(SpecError::new(
                key,
                format!("must be a string, not {}", validate::json_kind(&other)),
            )),
        }
    }

    /// A string option checked (and normalised) by `validator`.
    pub(super) fn validated<T>(
        &mut self,
        key: &str,
        validator: fn(&str, &str) -> Result<T>,
    ) -> Result<Option<T>> {
        self.string(key)?.map(|v| validator(key, &v)).transpose()
    }

    /// A list option, each entry checked by `validator`.
    pub(super) fn validated_list<T>(
        &mut self,
        key: &str,
        validator: fn(&str, &str) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.words(key)?
            .unwrap_or_default()
            .iter()
            .map(|v| validator(key, v))
            .collect()
    }

    pub(super) fn path(&mut self, key: &str) -> Result<Option<PathBuf>> {
        self.string(key)?
            .map(|s| validate::absolute_path(key, &s))
            .transpose()
    }

    pub(super) fn int(&mut self, key: &str) -> Result<Option<i64>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                .map(Some)
                .ok_or_else(|| SpecError::new(key, format!("{n} is not a whole number"))),
            Some(Value::String(s)) => {
                s.trim().parse::<i64>().map(Some).map_err(|_| {
                    SpecError::new(key, format!("{} is not a whole number", quoted(&s)))
                })
            }
            Some(other) => Err(SpecError::new(
                key,
                format!(
                    "must be a whole number, not {}",
                    validate::json_kind(&other)
                ),
            )),
        }
    }

    pub(super) fn required_int(&mut self, key: &str) -> Result<i64> {
        self.int(key)?
            .ok_or_else(|| SpecError::new(key, "is required: a whole number"))
    }

    /// Whole seconds within `min..=max`, the table's default when not given.
    pub(super) fn seconds(&mut self, key: &str, min: i64, max: i64) -> Result<u32> {
        let default = option(key).default_int().expect("the table has a default");
        self.seconds_or(key, default, min, max)
    }

    pub(super) fn seconds_or(
        &mut self,
        key: &str,
        default: u32,
        min: i64,
        max: i64,
    ) -> Result<u32> {
        match self.int(key)? {
            Some(n) => validate::seconds(key, n, min, max),
            None => Ok(default),
        }
    }

    pub(super) fn boolean(&mut self, key: &str) -> Result<Option<bool>> {
        match self.take(key) {
            None => Ok(None),
            Some(value) => ansible_bool(&value).map(Some).ok_or_else(|| {
                let shown = match &value {
                    Value::String(s) => quoted(s),
                    Value::Number(n) => n.to_string(),
                    other => validate::json_kind(other).to_string(),
                };
                SpecError::new(
                    key,
                    format!("{shown} is not a boolean: yes/no, true/false, on/off or 1/0"),
                )
            }),
        }
    }

    /// A list of strings: a JSON list, or a comma-separated string as Ansible splits it.
    pub(super) fn words(&mut self, key: &str) -> Result<Option<Vec<String>>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Array(items)) => scalar_strings(key, items).map(Some),
            Some(Value::String(s)) if s.trim_start().starts_with('[') => {
                match serde_json::from_str::<Value>(&s) {
                    Ok(Value::Array(items)) => scalar_strings(key, items).map(Some),
                    _ => Err(SpecError::new(key, "is not a JSON list of strings")),
                }
            }
            Some(Value::String(s)) => Ok(Some(
                s.split(',')
                    .map(|w| w.trim().to_string())
                    .filter(|w| !w.is_empty())
                    .collect(),
            )),
            Some(Value::Number(n)) => Ok(Some(vec![n.to_string()])),
            Some(other) => Err(SpecError::new(
                key,
                format!(
                    "must be a list of strings, not {}",
                    validate::json_kind(&other)
                ),
            )),
        }
    }

    /// A command: a JSON list of words, or a string split into words as a shell would
    /// split them (quotes honoured, nothing expanded or run).
    pub(super) fn command(&mut self, key: &str) -> Result<Option<Vec<String>>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Array(items)) => scalar_strings(key, items).map(Some),
            Some(Value::String(s)) if s.trim_start().starts_with('[') => {
                match serde_json::from_str::<Vec<String>>(&s) {
                    Ok(words) => Ok(Some(words)),
                    Err(_) => Err(SpecError::new(key, "is not a JSON list of strings")),
                }
            }
            Some(Value::String(s)) => split_words_on(&s, key, false).map(Some),
            Some(other) => Err(SpecError::new(
                key,
                format!(
                    "must be a list of strings or a string, not {}",
                    validate::json_kind(&other)
                ),
            )),
        }
        .and_then(|words| {
            if let Some(words) = &words {
                for w in words {
                    validate::no_nul(key, "a command word", w)?;
                }
            }
            Ok(words)
        })
    }

    /// A string → string map: a JSON object, a JSON string of one, or `k=v, k2=v2`.
    pub(super) fn dict(&mut self, key: &str) -> Result<Option<BTreeMap<String, String>>> {
        let Some(value) = self.take(key) else {
            return Ok(None);
        };
        let object = match value {
            Value::String(s) if !s.trim_start().starts_with('{') => {
                let mut map = BTreeMap::new();
                for word in split_words_on(&s, key, true)? {
                    let (k, v) = word.split_once('=').ok_or_else(|| {
                        SpecError::new(
                            key,
                            format!(
                                "{} is not KEY=VALUE: give a mapping or k=v, k2=v2",
                                quoted(&word)
                            ),
                        )
                    })?;
                    map.insert(k.to_string(), v.to_string());
                }
                return Ok(Some(map));
            }
            other => Params::to_object(key, other)?,
        };
        object
            .into_iter()
            .map(|(k, v)| Ok((k, scalar_string(key, v)?)))
            .collect::<Result<_>>()
            .map(Some)
    }

    pub(super) fn to_object(key: &str, value: Value) -> Result<Map<String, Value>> {
        match value {
            Value::Object(map) => Ok(map),
            Value::String(s) => match serde_json::from_str::<Value>(&s) {
                Ok(Value::Object(map)) => Ok(map),
                _ => Err(SpecError::new(key, "is not a JSON object")),
            },
            other => Err(SpecError::new(
                key,
                format!("must be a mapping, not {}", validate::json_kind(&other)),
            )),
        }
    }
}

/// A boolean as Ansible reads one: JSON booleans, 1/0, and yes/no, y/n, true/false, t/f,
/// on/off, 1/0 in any case. The module's own flags (`_ansible_check_mode`) and its
/// boolean options go through this one reading.
pub fn ansible_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "yes" | "y" | "true" | "t" | "on" | "1" => Some(true),
            "no" | "n" | "false" | "f" | "off" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn scalar_strings(key: &str, items: Vec<Value>) -> Result<Vec<String>> {
    items
        .into_iter()
        .map(|item| scalar_string(key, item))
        .collect()
}

fn scalar_string(key: &str, value: Value) -> Result<String> {
    match value {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(SpecError::new(
            key,
            format!("must hold strings, not {}", validate::json_kind(&other)),
        )),
    }
}

/// Parses `value` as `T`, the one parser the runtime uses too; the error names `field`.
pub(super) fn parse_as<T>(field: &str, value: &str) -> Result<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e: T::Err| SpecError::new(field, e.to_string()))
}

/// `a, b or c` for messages.
pub(super) fn one_of_words(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}
