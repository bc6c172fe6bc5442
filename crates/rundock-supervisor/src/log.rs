//! The supervisor's own log lines: `rundock supervise NAME: ...` on stderr, in the
//! format of every rundock process ([`rundock_runtime::say!`]). Nothing logged here may
//! carry an environment value.

use rundock_runtime::log::Prefix;
use rundock_spec::Spec;

/// What the supervisor of `spec`'s service prefixes its lines with.
pub(crate) fn prefix(spec: &Spec) -> Prefix {
    Prefix::new("supervise", &spec.name)
}
