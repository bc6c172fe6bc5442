//! Docker, as every rundock process that talks to it needs it: one way to connect
//! ([`connect`]), the container calls the supervisor and the module share
//! ([`container`]: inspect, the service's containers, stop and remove, wait), the one
//! rule for "is this container ours" ([`container::is_ours`]), `docker exec`
//! ([`exec`]) and the health probes ([`probe`]) that both the announcer (to publish)
//! and a start-first update (to switch) run.
//!
//! Why a crate of its own: the supervisor and the announcer are peer daemons; what they
//! both need of Docker lives below both, so neither depends on the other.
#![warn(missing_docs)]

pub mod container;
pub mod exec;
pub mod probe;

pub use bollard::Docker;
pub use container::{is_ours, short, ContainerView};

use anyhow::Context;
use std::time::Duration;

/// The request limit of a connection that makes no stop request: bollard's own default.
pub const REQUEST_LIMIT: Duration = Duration::from_secs(120);

/// The request limit of a connection that stops containers: a stop request answers only
/// once the container is down, so it allows for `stop_timeout` (and never less than
/// [`REQUEST_LIMIT`]).
pub fn stop_request_limit(stop_timeout: u32) -> Duration {
    Duration::from_secs(u64::from(stop_timeout).saturating_add(30)).max(REQUEST_LIMIT)
}

/// Connects to the local Docker daemon (`DOCKER_HOST` if it is a `unix://` socket), each
/// request bounded by `request_limit`, and pins the API version to the daemon's.
pub async fn connect(request_limit: Duration) -> anyhow::Result<Docker> {
    let address =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let unreachable = || format!("cannot reach Docker at {address}");
    let docker = Docker::connect_with_local_defaults()
        .with_context(unreachable)?
        .with_timeout(request_limit);
    docker.negotiate_version().await.with_context(unreachable)
}
