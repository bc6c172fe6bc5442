//! The announcer's log lines: plain text on stderr, `rundock announce NAME: ...`, one per
//! state change.
//!
//! The run script does `exec 2>&1` and svlogd timestamps each line, so a line needs no
//! time or level of its own. Nothing logged here may carry a password or an
//! environment value.

/// Logs one line, prefixed with the service name.
macro_rules! say {
    ($name:expr, $($arg:tt)*) => {
        eprintln!("rundock announce {}: {}", $name, format_args!($($arg)*))
    };
}

pub(crate) use say;
