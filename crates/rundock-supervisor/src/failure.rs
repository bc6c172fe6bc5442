//! A failed start as a fact: the stage that failed, Docker's (or the registry's) own
//! words, and whether it can pass by itself. The supervisor records it in its state file
//! ([`rundock_spec::state::Failure`]), where `rundock status` shows it as the reason,
//! `rundock metrics` counts it, and the module's `wait` ends on a permanent one at once
//! instead of waiting out its timeout.
//!
//! The rule, in one place: Docker or a registry that cannot be reached is transient
//! (runit's retry with back-off fixes it once they are back); an answer that refuses
//! the request (no such image, access denied, port already allocated, an entrypoint
//! that does not exist) is permanent, since retrying the same spec gets the same answer.

use rundock_spec::state::{FailureKind, FailureStage};

/// A start that failed at `stage`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct StartFailure {
    pub(crate) stage: FailureStage,
    pub(crate) kind: FailureKind,
    pub(crate) message: String,
}

impl StartFailure {
    /// Classifies `error`, which happened at `stage`.
    pub(crate) fn new(stage: FailureStage, error: anyhow::Error) -> StartFailure {
        let message = format!("{error:#}");
        let kind = match stage {
            FailureStage::Docker => FailureKind::Transient,
            FailureStage::PostStart => FailureKind::Permanent,
            FailureStage::Exit => FailureKind::Transient,
            FailureStage::Image | FailureStage::Create | FailureStage::Start => {
                if refused_by_docker(&error) && !unreachable_words(&message) {
                    FailureKind::Permanent
                } else if stage == FailureStage::Image && !unreachable_words(&message) {
                    // The registry's own answer (not found, denied, manifest unknown),
                    // or pull never with no local image.
                    FailureKind::Permanent
                } else {
                    FailureKind::Transient
                }
            }
        };
        StartFailure {
            stage,
            kind,
            message,
        }
    }
}

/// Tags a step's error with the stage it belongs to.
pub(crate) trait AtStage<T> {
    fn at(self, stage: FailureStage) -> Result<T, StartFailure>;
}

impl<T, E: Into<anyhow::Error>> AtStage<T> for Result<T, E> {
    fn at(self, stage: FailureStage) -> Result<T, StartFailure> {
        self.map_err(|e| StartFailure::new(stage, e.into()))
    }
}

/// Docker answered and said no (an HTTP error status), as opposed to not answering.
fn refused_by_docker(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<bollard::errors::Error>(),
            Some(bollard::errors::Error::DockerResponseServerError { status_code, .. })
                if *status_code != 503 && *status_code != 502
        )
    })
}

/// Words with which Docker relays a registry (or itself) that could not be reached, or
/// that asks to come back later.
fn unreachable_words(message: &str) -> bool {
    const WORDS: [&str; 12] = [
        "connection refused",
        "no such host",
        "i/o timeout",
        "timeout",
        "tls handshake",
        "network is unreachable",
        "server misbehaving",
        "connection reset",
        "toomanyrequests",
        "too many requests",
        "service unavailable",
        "cannot connect to the docker",
    ];
    let lower = message.to_ascii_lowercase();
    WORDS.iter().any(|w| lower.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status_code: u16, message: &str) -> anyhow::Error {
        anyhow::Error::new(bollard::errors::Error::DockerResponseServerError {
            status_code,
            message: message.into(),
        })
        .context("cannot start container web")
    }

    fn kind(stage: FailureStage, error: anyhow::Error) -> FailureKind {
        StartFailure::new(stage, error).kind
    }

    #[test]
    fn refusals_are_permanent_and_unreachable_parts_transient() {
        use FailureKind::*;
        use FailureStage::*;
        let port = "driver failed programming external connectivity: Bind for 127.0.0.1:27090 failed: port is already allocated";
        assert_eq!(kind(Start, server(500, port)), Permanent);
        assert_eq!(
            kind(
                Start,
                server(400, "exec: \"nosuch\": executable file not found in $PATH")
            ),
            Permanent
        );
        assert_eq!(kind(Create, server(400, "invalid mount config")), Permanent);
        assert_eq!(kind(Start, server(503, "daemon restarting")), Transient);
        assert_eq!(
            kind(
                Image,
                anyhow::anyhow!("cannot pull image r:5000/x:1: manifest unknown")
            ),
            Permanent
        );
        assert_eq!(
            kind(
                Image,
                anyhow::anyhow!("cannot pull image r:5000/x:1: dial tcp 127.0.0.1:5000: connect: connection refused")
            ),
            Transient
        );
        assert_eq!(
            kind(
                Image,
                server(
                    500,
                    "Get \"https://r/v2/\": dial tcp: lookup r: no such host"
                )
            ),
            Transient
        );
        assert_eq!(
            kind(Docker, anyhow::anyhow!("cannot reach Docker")),
            Transient
        );
        assert_eq!(kind(PostStart, anyhow::anyhow!("exit 4")), Permanent);
        // Not an answer of Docker's: a lost connection mid-start.
        assert_eq!(
            kind(
                Start,
                anyhow::anyhow!("error trying to connect: broken pipe")
            ),
            Transient
        );
    }

    #[test]
    fn the_message_is_the_whole_chain() {
        let failure = StartFailure::new(
            FailureStage::Start,
            server(500, "port is already allocated"),
        );
        assert!(
            failure.message.starts_with("cannot start container web: "),
            "{}",
            failure.message
        );
        assert!(failure.message.contains("port is already allocated"));
    }
}
