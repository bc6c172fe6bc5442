//! Field validators: each takes the field name so its error says where the problem is
//! and which form is allowed.

use crate::error::{Result, SpecError};
use std::path::{Path, PathBuf};

/// The allowed form of a DNS label (service names, host labels), for error messages.
pub const LABEL_FORM: &str =
    "a DNS label: 1-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit";

/// `[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?`
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// `value` when it is a DNS label ([`is_dns_label`]), else a refusal naming `field` and
/// [`LABEL_FORM`].
pub fn dns_label(field: &str, value: &str) -> Result<String> {
    accept(is_dns_label(value), field, value, LABEL_FORM)
}

/// The refusal every validator gives: "VALUE is not FORM", naming the field.
fn not_a(field: &str, value: &str, form: &str) -> SpecError {
    SpecError::new(field, format!("{} is not {form}", quoted(value)))
}

/// `value` itself when `ok`, else [`not_a`] `form`.
fn accept(ok: bool, field: &str, value: &str, form: &str) -> Result<String> {
    if ok {
        Ok(value.to_string())
    } else {
        Err(not_a(field, value, form))
    }
}

/// Lower-cases a host name and keeps its first label, so `Node-1.example.com` becomes
/// `node-1`; anything that still is not a label is refused rather than invented.
pub fn host_label_from_hostname(hostname: &str) -> Option<String> {
    let first = hostname.split('.').next()?.to_ascii_lowercase();
    is_dns_label(&first).then_some(first)
}

/// A domain of DNS labels, e.g. `s.prod.example.com` (a trailing dot is dropped).
pub fn domain(field: &str, value: &str) -> Result<String> {
    let lowered = value.trim_end_matches('.').to_ascii_lowercase();
    let ok = !lowered.is_empty() && lowered.len() <= 253 && lowered.split('.').all(is_dns_label);
    ok.then_some(lowered).ok_or_else(|| {
        not_a(
            field,
            value,
            "a domain: dot-separated DNS labels such as s.prod.example.com",
        )
    })
}

/// A port from 1 to 65535; anything else is refused, naming `field`.
pub fn port(field: &str, value: i64) -> Result<u16> {
    if (1..=65535).contains(&value) {
        Ok(value as u16)
    } else {
        Err(SpecError::new(
            field,
            format!("{value} is not a port: a whole number from 1 to 65535"),
        ))
    }
}

/// Whole seconds from `min` to `max` (inclusive); anything else is refused, naming `field` and the
/// range.
pub fn seconds(field: &str, value: i64, min: i64, max: i64) -> Result<u32> {
    if (min..=max).contains(&value) {
        Ok(value as u32)
    } else {
        Err(SpecError::new(
            field,
            format!("{value} is out of range: whole seconds from {min} to {max}"),
        ))
    }
}

/// The longest path option accepted, in bytes.
pub const MAX_PATH_LEN: usize = 1024;

/// An absolute, normalised path without control characters. Paths end up quoted in run
/// scripts; refusing odd ones as well keeps the scripts readable.
pub fn absolute_path(field: &str, value: &str) -> Result<PathBuf> {
    let path = Path::new(value);
    let bad = |why: &str| {
        Err(SpecError::new(
            field,
            format!(
                "{} {why}: an absolute path such as /etc/sv is required",
                quoted(value)
            ),
        ))
    };
    if !path.is_absolute() {
        return bad("is not absolute");
    }
    if value.chars().any(|c| c.is_control()) {
        return bad("contains control characters");
    }
    if value.split('/').any(|part| part == "." || part == "..") {
        return bad("contains '.' or '..'");
    }
    // Files deep in a tree (services/container/log/supervise/...) must stay under the
    // kernel's PATH_MAX (4096) whatever the directory; 1024 leaves room for all of them.
    if value.len() > MAX_PATH_LEN {
        return bad(&format!("is longer than {MAX_PATH_LEN} bytes"));
    }
    if value.split('/').any(|part| part.len() > 255) {
        return bad("has a component longer than 255 bytes");
    }
    let trimmed = value.trim_end_matches('/');
    Ok(PathBuf::from(if trimmed.is_empty() {
        "/"
    } else {
        trimmed
    }))
}

/// Docker's memory sizes: a number of bytes, or with a unit b, k, m, g (powers of 1024).
pub fn memory(field: &str, value: &str) -> Result<u64> {
    let lowered = value.trim().to_ascii_lowercase();
    let (digits, unit) = match lowered.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => lowered.split_at(i),
        None => (lowered.as_str(), ""),
    };
    let multiplier: u64 = match unit {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        _ => 0,
    };
    match digits.parse::<u64>() {
        Ok(n) if multiplier > 0 && n > 0 => n.checked_mul(multiplier).ok_or(()),
        _ => Err(()),
    }
    .ok()
    .filter(|bytes| *bytes >= 6 << 20)
    .ok_or_else(|| {
        not_a(
            field,
            value,
            "a memory size: a whole number with an optional unit b, k, m or g, at least 6m \
             (e.g. 512m)",
        )
    })
}

/// Docker's `--cpus`: a positive decimal, stored as billionths of a CPU.
pub fn cpus(field: &str, value: &str) -> Result<u64> {
    match value.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 && n <= 1024.0 => Ok((n * 1e9).round() as u64),
        _ => Err(not_a(
            field,
            value,
            "a CPU count: a positive decimal up to 1024, e.g. 1.5",
        )),
    }
}

/// Environment names: `[A-Za-z_][A-Za-z0-9_.-]*`.
pub fn env_name(field: &str, value: &str) -> Result<String> {
    let ok = is_name(value, usize::MAX, |c| c.is_ascii_alphabetic() || c == b'_');
    accept(
        ok,
        field,
        value,
        "an environment variable name: a letter or '_' followed by letters, digits, '_', '.' or '-'",
    )
}

/// `value` is 1 to `max_len` bytes of letters, digits, '_', '.' and '-', the first one
/// that `first` accepts: the names of environment variables, Docker objects and users.
fn is_name(value: &str, max_len: usize, first: impl Fn(u8) -> bool) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && b.len() <= max_len
        && first(b[0])
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

/// `value` unchanged unless it holds a NUL character, which no C string (argv, the
/// environment) can carry; other control characters pass (an environment value may hold
/// a newline). The message names the value as `what`.
pub fn no_nul(field: &str, what: &str, value: &str) -> Result<String> {
    if value.chars().any(|c| c == '\0') {
        Err(SpecError::new(
            field,
            format!("{what} must not contain NUL characters"),
        ))
    } else {
        Ok(value.to_string())
    }
}

/// A container label key: non-empty, without `=` or control characters.
pub fn label_key(field: &str, value: &str) -> Result<String> {
    let ok = !value.is_empty() && !value.contains('=') && !value.chars().any(|c| c.is_control());
    accept(
        ok,
        field,
        value,
        "a label key: non-empty, without '=' or control characters",
    )
}

/// Container, network and volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, as Docker allows.
pub fn docker_name(field: &str, value: &str) -> Result<String> {
    let ok = is_name(value, 255, |c| c.is_ascii_alphanumeric());
    accept(
        ok,
        field,
        value,
        "a Docker name: a letter or digit followed by letters, digits, '_', '.' or '-'",
    )
}

/// `host`, `bridge`, `none`, `container:NAME` or a network name.
pub fn network(field: &str, value: &str) -> Result<String> {
    match value.strip_prefix("container:") {
        Some(container) => docker_name(field, container).map(|_| value.to_string()),
        None => docker_name(field, value),
    }
}

/// `user`, `uid`, `user:group`, `uid:gid`.
pub fn user(field: &str, value: &str) -> Result<String> {
    let part_ok = |p: &str| is_name(p, 64, |_| true);
    let ok = match value.split_once(':') {
        Some((u, g)) => part_ok(u) && part_ok(g),
        None => part_ok(value),
    };
    accept(ok, field, value, "a user: NAME|UID[:GROUP|GID]")
}

/// Host names for the container: dot-separated labels of letters, digits and '-'.
pub fn hostname(field: &str, value: &str) -> Result<String> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        });
    accept(
        ok,
        field,
        value,
        "a host name: dot-separated labels of letters, digits and '-'",
    )
}

/// Linux capabilities, normalised to `NAME` without the `CAP_` prefix, or `ALL`.
pub fn capability(field: &str, value: &str) -> Result<String> {
    let upper = value.to_ascii_uppercase();
    let name = upper.strip_prefix("CAP_").unwrap_or(&upper);
    let ok = !name.is_empty() && name.bytes().all(|c| c.is_ascii_uppercase() || c == b'_');
    ok.then(|| name.to_string()).ok_or_else(|| {
        not_a(
            field,
            value,
            "a capability: a name such as NET_ADMIN or CAP_NET_ADMIN, or ALL",
        )
    })
}

/// `SOURCE:TARGET[:OPTIONS]` with an absolute target; the source is an absolute host
/// path or a named volume.
pub fn volume(field: &str, value: &str) -> Result<String> {
    let bad = || {
        not_a(
            field,
            value,
            "a volume: SOURCE:TARGET[:OPTIONS] where SOURCE is an absolute host path or a volume \
             name, TARGET an absolute container path, OPTIONS from ro, rw, z, Z, nocopy",
        )
    };
    let parts: Vec<&str> = value.split(':').collect();
    let (source, target, options) = match parts.as_slice() {
        [target] => (None, *target, None),
        [source, target] => (Some(*source), *target, None),
        [source, target, options] => (Some(*source), *target, Some(*options)),
        _ => return Err(bad()),
    };
    absolute_path(field, target).map_err(|_| bad())?;
    if let Some(source) = source {
        if source.starts_with('/') {
            absolute_path(field, source).map_err(|_| bad())?;
        } else {
            docker_name(field, source).map_err(|_| bad())?;
        }
    }
    if let Some(options) = options {
        let known = [
            "ro",
            "rw",
            "z",
            "Z",
            "nocopy",
            "private",
            "rprivate",
            "shared",
            "rshared",
            "slave",
            "rslave",
            "consistent",
            "cached",
            "delegated",
        ];
        if !options.split(',').all(|o| known.contains(&o)) {
            return Err(bad());
        }
    }
    Ok(value.to_string())
}

/// `NAME[:ro|:rw]`.
pub fn volumes_from(field: &str, value: &str) -> Result<String> {
    let (name, mode) = match value.split_once(':') {
        Some((name, mode)) => (name, Some(mode)),
        None => (value, None),
    };
    let ok = docker_name(field, name).is_ok() && mode.is_none_or(|m| m == "ro" || m == "rw");
    accept(
        ok,
        field,
        value,
        "a container to take volumes from: NAME[:ro|:rw]",
    )
}

/// `/skydns`-style key prefixes: `/` followed by `/`-separated names of a-z, 0-9, '_', '-'.
pub fn key_prefix(field: &str, value: &str) -> Result<String> {
    let trimmed = value.trim_end_matches('/');
    let ok = trimmed.starts_with('/')
        && trimmed[1..].split('/').all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
        });
    ok.then(|| trimmed.to_string()).ok_or_else(|| {
        not_a(
            field,
            value,
            "a key prefix: '/' followed by names of a-z, 0-9, '_' and '-', e.g. /skydns",
        )
    })
}

/// What a JSON value is, for "must be a list, not a mapping" messages.
pub fn json_kind(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// How a value is shown inside an error: JSON-quoted, so spaces and control characters
/// are visible, and cut short when long.
pub fn quoted(value: &str) -> String {
    let shown: String = value.chars().take(80).collect();
    let mut text = serde_json::to_string(&shown).expect("string serializes");
    if shown.len() < value.len() {
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        for good in ["a", "influxdb", "node-1", "0", &"a".repeat(63)] {
            assert!(is_dns_label(good), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a b",
            "../x",
            "a.b",
            "a_b",
            &"a".repeat(64),
        ] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }

    #[test]
    fn memory_units() {
        assert_eq!(memory("m", "512m").unwrap(), 512 << 20);
        assert_eq!(memory("m", "1G").unwrap(), 1 << 30);
        assert_eq!(memory("m", "10485760").unwrap(), 10 << 20);
        for bad in ["", "1x", "-1m", "1m2", "1k", "m"] {
            assert!(memory("m", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpu_counts() {
        assert_eq!(cpus("c", "1.5").unwrap(), 1_500_000_000);
        for bad in ["0", "-1", "nan", "inf", "x", "2000"] {
            assert!(cpus("c", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths() {
        assert_eq!(
            absolute_path("p", "/etc/sv/").unwrap(),
            PathBuf::from("/etc/sv")
        );
        let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
        let long_part = format!("/x/{}", "a".repeat(256));
        for bad in ["etc", "/a/../b", "/a/./b", "/a\nb", "", &long, &long_part] {
            assert!(absolute_path("p", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn volumes() {
        for good in ["/data:/data", "data:/var/lib/x:ro", "/x", "/a:/b:ro,z"] {
            assert!(volume("v", good).is_ok(), "{good}");
        }
        for bad in ["./rel:/x", "/a:rel", "/a:/b:bogus", "a:b:c:d", "/a/../b:/c"] {
            assert!(volume("v", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_labels_from_hostnames() {
        assert_eq!(
            host_label_from_hostname("Node-1.example.com").as_deref(),
            Some("node-1")
        );
        assert_eq!(host_label_from_hostname("bad_host"), None);
    }
}
