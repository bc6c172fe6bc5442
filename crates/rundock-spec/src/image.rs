//! Docker image references, parsed once: `[registry[:port]/]path[:tag][@algo:hex]`.
//!
//! The module refuses what Docker's reference grammar refuses; the supervisor pulls by
//! the same parsed parts (repository, tag or digest, registry for credentials), so the
//! two never read a reference differently.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The allowed form, for error messages.
pub const IMAGE_FORM: &str =
    "a Docker image reference: [registry[:port]/]name[:tag][@sha256:digest], \
     e.g. registry:5000/influxdb:1.8 (repository in lower case)";

/// Docker Hub, the registry of references that name none.
pub const DOCKER_HUB: &str = "docker.io";

/// A valid image reference; shown and stored exactly as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct ImageRef {
    text: String,
    /// Everything before the tag or digest, e.g. `registry:5000/team/app`.
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
    /// The registry host (`registry:5000`) when the reference names one.
    registry: Option<String>,
}

/// A string that is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not {IMAGE_FORM}")]
pub struct ImageError(pub String);

impl ImageRef {
    /// The reference exactly as written (no `docker.io/library/` or `:latest` added), as Docker is
    /// asked for it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Everything before the tag or digest, e.g. `registry:5000/team/app` (`nginx` stays `nginx`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// What the pull API takes as `tag`: the digest if there is one, else the tag,
    /// else `latest`.
    pub fn tag_or_digest(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The registry to authenticate against: the named one, else Docker Hub.
    pub fn registry(&self) -> &str {
        self.registry.as_deref().unwrap_or(DOCKER_HUB)
    }
}

impl FromStr for ImageRef {
    type Err = ImageError;

    fn from_str(value: &str) -> Result<Self, ImageError> {
        parse(value).ok_or_else(|| ImageError(value.to_string()))
    }
}

fn parse(value: &str) -> Option<ImageRef> {
    if value.is_empty() || value.len() > 512 {
        return None;
    }
    let (rest, digest) = match value.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (value, None),
    };
    if let Some(digest) = digest {
        let (algo, hex) = digest.split_once(':')?;
        let algo_ok = !algo.is_empty()
            && algo.as_bytes()[0].is_ascii_alphabetic()
            && algo
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-_+.".contains(&c));
        if !algo_ok || hex.len() < 32 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
    }
    // A ':' after the last '/' starts the tag; one before it is a registry port.
    let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag) = match rest[last_slash..].find(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let t = tag.as_bytes();
        let ok = !t.is_empty()
            && t.len() <= 128
            && (t[0].is_ascii_alphanumeric() || t[0] == b'_')
            && t.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c));
        if !ok {
            return None;
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let mut registry = None;
    if parts.len() > 1 {
        let first = parts[0];
        // Docker's rule: the first component is a registry if it looks like a host.
        if first.contains('.') || first.contains(':') || first == "localhost" {
            if !registry_ok(first) {
                return None;
            }
            registry = Some(first.to_string());
            parts.remove(0);
        }
    }
    if parts.is_empty() || !parts.iter().all(|p| path_component_ok(p)) {
        return None;
    }
    Some(ImageRef {
        text: value.to_string(),
        repository: name.to_string(),
        tag: tag.map(str::to_string),
        digest: digest.map(str::to_string),
        registry,
    })
}

fn registry_ok(registry: &str) -> bool {
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        });
    host_ok
        && port.is_none_or(|p| {
            p.bytes().all(|c| c.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|n| n > 0)
        })
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn path_component_ok(part: &str) -> bool {
    let b = part.as_bytes();
    let lower_alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !lower_alnum(b[0]) || !lower_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if lower_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !lower_alnum(b[i]) {
            i += 1;
        }
        let sep = &part[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-')) {
            return false;
        }
    }
    true
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

text_serde!(ImageRef, ImageError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_docker_accepts() {
        for good in [
            "busybox",
            "registry:5000/influxdb:latest",
            "localhost/x",
            "127.0.0.1:5000/a/b:1.0",
            "library/nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "name:tag@sha256:0123456789abcdef0123456789abcdef",
            "a__b/c.d-e",
        ] {
            assert!(good.parse::<ImageRef>().is_ok(), "{good}");
        }
    }

    #[test]
    fn references_docker_refuses() {
        for bad in [
            "",
            "Busybox",
            "a b",
            "busybox:",
            "busybox:-x",
            ":tag",
            "a//b",
            "registry:/x",
            "x@sha256:short",
            "x;rm -rf /",
            "$(touch /tmp/pwned)",
            "-x",
            "a/",
            "r:99999/x",
            "r:+5/x",
            "r:0/x",
        ] {
            assert!(bad.parse::<ImageRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parts_are_what_the_pull_api_takes() {
        let r: ImageRef = "registry:5000/team/app:1.2".parse().unwrap();
        assert_eq!(
            (r.repository(), r.tag_or_digest(), r.registry()),
            ("registry:5000/team/app", "1.2", "registry:5000")
        );
        let r: ImageRef = "busybox".parse().unwrap();
        assert_eq!(
            (r.repository(), r.tag_or_digest(), r.registry()),
            ("busybox", "latest", DOCKER_HUB)
        );
        let r: ImageRef = "x/y:t@sha256:0123456789abcdef0123456789abcdef"
            .parse()
            .unwrap();
        assert_eq!(r.repository(), "x/y");
        assert_eq!(r.tag_or_digest(), "sha256:0123456789abcdef0123456789abcdef");
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            format!("{:?}", r.as_str())
        );
    }
}
