//! The one error type of spec validation: always names the offending field.

use std::fmt;

/// A rejected input. `field` is the module option (or `option.sub_key`) at fault and
/// `message` says what is wrong and what form is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The module option at fault, with a nested value's path when there is one
    /// (`etcd.endpoints`, `health[1].port`).
    pub field: String,
    /// What is wrong and which form is allowed, without the field name (`Display` puts
    /// `FIELD: ` in front).
    pub message: String,
}

impl SpecError {
    /// An error charged to `field`; `message` should name the allowed form.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Re-homes an error found inside a nested value (`health[1]`, `etcd`) under its parent.
    pub fn within(self, parent: &str) -> Self {
        let field = if self.field.is_empty() {
            parent.to_string()
        } else if self.field.starts_with('[') {
            format!("{parent}{}", self.field)
        } else {
            format!("{parent}.{}", self.field)
        };
        SpecError { field, ..self }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for SpecError {}

/// Spec validation's result: [`SpecError`] unless a caller names another error.
pub type Result<T, E = SpecError> = std::result::Result<T, E>;
