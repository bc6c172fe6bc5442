//! The supervisor's own log lines: plain text on stderr, `rundock supervise NAME: ...`.
//!
//! runsv's `run` script does `exec 2>&1` and svlogd timestamps each line, so a line needs
//! no time or level of its own. Nothing logged here may carry an environment value.

/// Logs one line, prefixed with the service name.
macro_rules! say {
    ($name:expr, $($arg:tt)*) => {
        eprintln!("rundock supervise {}: {}", $name, format_args!($($arg)*))
    };
}

pub(crate) use say;
