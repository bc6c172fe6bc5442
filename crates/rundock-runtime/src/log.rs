//! One log line format for every rundock process: plain text on stderr,
//! `rundock COMMAND SERVICE: what happened`, one line per change of state.
//!
//! The run scripts do `exec 2>&1` and svlogd timestamps each line it keeps, so a line
//! needs no time or level of its own. Nothing logged may carry a password or an
//! environment value: log what changed, not the spec.

use std::fmt;

/// Who a line is from: `rundock announce web`, the command and the service it runs for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix(String);

impl Prefix {
    /// The prefix `rundock COMMAND SERVICE` (e.g. `rundock announce web`) that starts every line
    /// this process logs.
    pub fn new(command: &str, service: &str) -> Prefix {
        Prefix(format!("rundock {command} {service}"))
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Logs one line on stderr: `say!(prefix, "format", args…)` writes `PREFIX: text`.
#[macro_export]
macro_rules! say {
    ($prefix:expr, $($arg:tt)*) => {
        ::std::eprintln!("{}: {}", $prefix, ::std::format_args!($($arg)*))
    };
}

/// An error and its causes on one line, `outer: cause: root cause`: what a library's
/// error alone leaves out (reqwest's "error sending request" says nothing of the refused
/// connection behind it).
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_names_the_command_and_the_service() {
        let prefix = Prefix::new("announce", "web");
        assert_eq!(prefix.to_string(), "rundock announce web");
        assert_eq!(format!("{prefix}: {}", 1), "rundock announce web: 1");
        crate::say!(prefix, "the macro takes a prefix and a format: {}", 1);
    }

    #[test]
    fn a_chain_names_every_cause() {
        let outer = Wrapped(std::io::Error::other("connection refused"));
        assert_eq!(chain(&outer), "sending: connection refused");
    }

    #[derive(Debug)]
    struct Wrapped(std::io::Error);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("sending")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
}
