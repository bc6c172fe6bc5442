//! The client's error type: one variant per thing a caller decides differently about.

/// What went wrong talking to etcd.
///
/// * [`Unreachable`](EtcdError::Unreachable): no endpoint answered (connection refused,
///   timeout, TLS handshake failure). Retry with backoff; the record's TTL covers the gap.
/// * [`Status`](EtcdError::Status): an endpoint answered with an error. Usually a bug or
///   a permission problem; retrying the same request rarely helps.
/// * [`Auth`](EtcdError::Auth): the username/password were refused.
/// * [`Decode`](EtcdError::Decode): the answer was not what etcd sends.
/// * [`Compacted`](EtcdError::Compacted): a watch asked for history etcd no longer has;
///   list again and watch from the new revision.
/// * [`WatchEnded`](EtcdError::WatchEnded): the server closed a watch; watch again from
///   [`WatchStream::revision`](crate::WatchStream::revision).
/// * [`Config`](EtcdError::Config): the spec cannot make a client (bad URL, unreadable
///   TLS file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered.
    #[error("etcd unreachable: {reason}")]
    Unreachable {
        /// The endpoints tried, comma-separated.
        endpoints: String,
        /// What the last one tried failed with (connection refused, timeout, TLS).
        reason: String,
    },
    /// An endpoint answered with an error status.
    #[error("etcd at {endpoint} answered {code}: {message}")]
    Status {
        /// The endpoint that answered (scheme, host and port).
        endpoint: String,
        /// The HTTP status (a stream's own error code for a watch).
        code: u16,
        /// etcd's message from the error body, else the start of the body.
        message: String,
    },
    /// The username/password were refused; etcd's message.
    #[error("etcd refused the credentials: {0}")]
    Auth(String),
    /// The answer was not what etcd sends: what was expected, why, and the start of it.
    #[error("cannot decode etcd's answer: {0}")]
    Decode(String),
    /// A watch asked for history older than this revision, which etcd no longer has.
    #[error("etcd compacted the history past revision {0}")]
    Compacted(u64),
    /// The server ended a watch (or the stream closed).
    #[error("etcd closed the watch")]
    WatchEnded,
    /// The spec cannot make a client: which field, and why.
    #[error("etcd client configuration: {0}")]
    Config(String),
}

impl EtcdError {
    /// Worth retrying later without changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            EtcdError::Unreachable { .. } | EtcdError::WatchEnded => true,
            // 5xx: no leader, leader changing, member stopping.
            EtcdError::Status { code, .. } => *code >= 500,
            _ => false,
        }
    }
}
