//! Making sure the spec's image is present, per its pull policy, and knowing its id.
//!
//! * `never`: the image must already be there.
//! * `missing`: pull only when it is not there.
//! * `always`: pull every time; if the pull fails but a local copy exists, the local copy
//!   is used and the failure logged, so a registry outage does not take down a service
//!   that only needed restarting.
//!
//! Registry credentials come from the Docker client config (`$DOCKER_CONFIG/config.json`,
//! else `~/.docker/config.json`): `auths.<registry>.auth`, base64 of `user:password`.
//! Credential helpers (`credsStore`, `credHelpers`) are not run; without an `auth` entry
//! the pull is anonymous.

use crate::log::prefix;
use base64::Engine;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptions;
use bollard::Docker;
use futures_util::StreamExt;
use rundock_runtime::say;
use rundock_spec::{PullPolicy, Spec};
use std::path::PathBuf;

/// Docker Hub's key in `config.json` and its server address for credentials.
const DOCKER_HUB: &str = "https://index.docker.io/v1/";

/// Why the image is not usable; the message is the log line.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ImageError {
    #[error("image {0} is not present and pull is never: load or pull it on this host, or set pull to missing")]
    MissingNeverPull(String),
    #[error("cannot pull image {image}: {reason}")]
    Pull { image: String, reason: String },
    #[error("cannot inspect image {image}: {source}")]
    Inspect {
        image: String,
        source: bollard::errors::Error,
    },
}

/// Ensures the image per the spec's pull policy; returns its id (`sha256:…`).
pub(crate) async fn ensure(docker: &Docker, spec: &Spec) -> Result<String, ImageError> {
    let image = spec.container.image.as_str();
    match spec.container.pull {
        PullPolicy::Never => local_id(docker, image)
            .await?
            .ok_or_else(|| ImageError::MissingNeverPull(image.to_string())),
        PullPolicy::Missing => {
            if let Some(id) = local_id(docker, image).await? {
                return Ok(id);
            }
            pull(docker, spec).await?;
            present(docker, image).await
        }
        PullPolicy::Always => match pull(docker, spec).await {
            Ok(()) => present(docker, image).await,
            Err(error) => match local_id(docker, image).await? {
                Some(id) => {
                    say!(prefix(spec), "{error}; using the local copy");
                    Ok(id)
                }
                None => Err(error),
            },
        },
    }
}

async fn present(docker: &Docker, image: &str) -> Result<String, ImageError> {
    local_id(docker, image)
        .await?
        .ok_or_else(|| ImageError::Pull {
            image: image.to_string(),
            reason: "the pull finished but the image is not there".into(),
        })
}

/// The local image's id, `None` when there is no such image.
pub(crate) async fn local_id(docker: &Docker, image: &str) -> Result<Option<String>, ImageError> {
    match docker.inspect_image(image).await {
        Ok(inspect) => Ok(Some(inspect.id.unwrap_or_default())),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(source) => Err(ImageError::Inspect {
            image: image.to_string(),
            source,
        }),
    }
}

async fn pull(docker: &Docker, spec: &Spec) -> Result<(), ImageError> {
    let reference = &spec.container.image;
    let image = reference.as_str();
    let credentials = credentials(reference.registry());
    say!(
        prefix(spec),
        "pulling {image}{}",
        if credentials.is_some() {
            " (with credentials from the Docker config)"
        } else {
            ""
        }
    );
    let options = CreateImageOptions {
        from_image: Some(reference.repository().to_string()),
        tag: Some(reference.tag_or_digest().to_string()),
        ..Default::default()
    };
    let mut progress = docker.create_image(Some(options), None, credentials);
    while let Some(item) = progress.next().await {
        item.map_err(|e| ImageError::Pull {
            image: image.to_string(),
            reason: e.to_string(),
        })?;
    }
    Ok(())
}

/// Credentials for `registry` from the Docker client config, if it has an `auth` entry.
fn credentials(registry: &str) -> Option<DockerCredentials> {
    let text = std::fs::read_to_string(config_path()?).ok()?;
    credentials_from_config(&text, registry)
}

fn config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
}

/// The pure part of [`credentials`]: keys of `auths` may be a bare host, a URL, or a URL
/// with a path (`https://registry:5000/v2/`); Docker Hub has several spellings.
pub(crate) fn credentials_from_config(text: &str, registry: &str) -> Option<DockerCredentials> {
    let config: serde_json::Value = serde_json::from_str(text).ok()?;
    let auths = config.get("auths")?.as_object()?;
    let hub = registry == "docker.io";
    let wanted = |key: &str| {
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default();
        if hub {
            matches!(
                host,
                "docker.io" | "index.docker.io" | "registry-1.docker.io"
            )
        } else {
            host == registry
        }
    };
    let entry = auths.iter().find(|(key, _)| wanted(key))?.1;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(entry.get("auth")?.as_str()?.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (username, password) = decoded.split_once(':')?;
    Some(DockerCredentials {
        username: Some(username.to_string()),
        password: Some(password.to_string()),
        serveraddress: Some(if hub {
            DOCKER_HUB.to_string()
        } else {
            registry.to_string()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(image: &str) -> (String, String, String) {
        let r: rundock_spec::ImageRef = image.parse().unwrap();
        (
            r.repository().into(),
            r.tag_or_digest().into(),
            r.registry().into(),
        )
    }

    fn t(a: &str, b: &str, c: &str) -> (String, String, String) {
        (a.into(), b.into(), c.into())
    }

    #[test]
    fn references_split_into_what_the_pull_api_takes() {
        assert_eq!(r("busybox"), t("busybox", "latest", "docker.io"));
        assert_eq!(r("library/redis:7"), t("library/redis", "7", "docker.io"));
        assert_eq!(
            r("registry:5000/influxdb"),
            t("registry:5000/influxdb", "latest", "registry:5000")
        );
        assert_eq!(
            r("registry:5000/influxdb:1.8"),
            t("registry:5000/influxdb", "1.8", "registry:5000")
        );
        assert_eq!(
            r("127.0.0.1:5000/a/b@sha256:0123456789abcdef0123456789abcdef"),
            t(
                "127.0.0.1:5000/a/b",
                "sha256:0123456789abcdef0123456789abcdef",
                "127.0.0.1:5000"
            )
        );
        assert_eq!(
            r("ghcr.io/org/app:v1"),
            t("ghcr.io/org/app", "v1", "ghcr.io")
        );
        assert_eq!(
            r("localhost/app"),
            t("localhost/app", "latest", "localhost")
        );
    }

    #[test]
    fn credentials_come_from_the_matching_auths_entry() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3:cret");
        let config = format!(
            r#"{{"auths": {{
                "other:5000": {{"auth": "eDp5"}},
                "https://registry.example:5000/v2/": {{"auth": "{auth}"}},
                "https://index.docker.io/v1/": {{"auth": "{auth}"}}
            }}}}"#
        );
        let c = credentials_from_config(&config, "registry.example:5000").unwrap();
        assert_eq!(c.username.as_deref(), Some("alice"));
        assert_eq!(
            c.password.as_deref(),
            Some("s3:cret"),
            "only the first colon splits"
        );
        assert_eq!(c.serveraddress.as_deref(), Some("registry.example:5000"));
        let hub = credentials_from_config(&config, "docker.io").unwrap();
        assert_eq!(hub.serveraddress.as_deref(), Some(DOCKER_HUB));
        assert!(credentials_from_config(&config, "nowhere:1").is_none());
        assert!(credentials_from_config("{}", "docker.io").is_none());
        assert!(credentials_from_config("not json", "docker.io").is_none());
        let helper_only = r#"{"auths": {"ghcr.io": {}}, "credsStore": "pass"}"#;
        assert!(credentials_from_config(helper_only, "ghcr.io").is_none());
    }
}
