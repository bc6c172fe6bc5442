//! etcd client endpoints, parsed once: `http://HOST:PORT` or `https://HOST:PORT`.
//!
//! The module refuses what the etcd client could not dial (a port above 65535, no host,
//! a broken IPv6 bracket, a path, credentials in the URL) and stores the normalised
//! form; the etcd client dials exactly that string. The TLS rules that go with an
//! endpoint list live on [`crate::EtcdSpec::check_tls`], used by both sides too.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The allowed form, for error messages.
pub const ENDPOINT_FORM: &str =
    "http://HOST:PORT or https://HOST:PORT (HOST a name, an IPv4 address or [IPv6], PORT 1-65535)";

/// One etcd endpoint in its normalised form `scheme://host:port` (no trailing slash).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct EtcdEndpoint {
    text: String,
    https: bool,
}

impl EtcdEndpoint {
    /// The normalised endpoint `scheme://host:port`, exactly the string the etcd client dials.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the scheme is `https` (TLS options then apply to this endpoint).
    pub fn is_https(&self) -> bool {
        self.https
    }
}

/// Why a string is not an endpoint; `reason` says which part is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not an etcd endpoint ({reason}): {ENDPOINT_FORM}")]
pub struct EndpointError {
    /// The refused string, as given.
    pub value: String,
    /// Which part is wrong (scheme, host, port, a path...), for the message.
    pub reason: String,
}

impl FromStr for EtcdEndpoint {
    type Err = EndpointError;

    fn from_str(value: &str) -> Result<Self, EndpointError> {
        let bad = |reason: &str| EndpointError {
            value: value.to_string(),
            reason: reason.to_string(),
        };
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it contains spaces or control characters"));
        }
        let url = url::Url::parse(value).map_err(|e| bad(&e.to_string()))?;
        let https = match url.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(bad(&format!("scheme {other} is not http or https"))),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "credentials do not belong in the URL: use etcd.username and etcd.password",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() || !matches!(url.path(), "" | "/") {
            return Err(bad("it has a path, query or fragment"));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        // `url` fills in 80/443 for a missing or empty port; etcd listens on 2379, so an
        // endpoint must say its port.
        if !explicit_port(value) {
            return Err(bad("no port: etcd endpoints name theirs, usually 2379"));
        }
        let port = url
            .port_or_known_default()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad("port 0"))?;
        Ok(EtcdEndpoint {
            text: format!("{}://{host}:{port}", url.scheme()),
            https,
        })
    }
}

/// Whether the authority of `value` ends in `:DIGITS` (after any `[IPv6]`).
fn explicit_port(value: &str) -> bool {
    let after_scheme = value.split_once("://").map_or(value, |(_, rest)| rest);
    let authority = after_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let port = match host_port.rsplit_once(']') {
        Some((_, after)) => after.strip_prefix(':'),
        None => host_port.rsplit_once(':').map(|(_, port)| port),
    };
    port.is_some_and(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
}

impl fmt::Display for EtcdEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

text_serde!(EtcdEndpoint, EndpointError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalised() {
        for (text, shown) in [
            ("http://127.0.0.1:2379", "http://127.0.0.1:2379"),
            ("http://127.0.0.1:2379/", "http://127.0.0.1:2379"),
            (
                "https://etcd.example.com:2379",
                "https://etcd.example.com:2379",
            ),
            ("http://[::1]:2379", "http://[::1]:2379"),
            ("HTTP://ETCD:2379", "http://etcd:2379"),
            ("http://etcd:80", "http://etcd:80"),
        ] {
            assert_eq!(
                text.parse::<EtcdEndpoint>().unwrap().as_str(),
                shown,
                "{text}"
            );
        }
    }

    #[test]
    fn what_cannot_be_dialled_is_refused() {
        for text in [
            "",
            "127.0.0.1:2379",
            "http://127.0.0.1:99999",
            "http://127.0.0.1:0",
            "http://:2379",
            "http://[::1:2379",
            "http://::1]:2379",
            "http://[::g]:2379",
            "ftp://etcd:2379",
            "http://user:secret@etcd:2379",
            "http://etcd:2379/v3",
            "http://etcd:2379?x=1",
            "http://etcd:2379#x",
            "http://etcd:2379 ",
            "http://et cd:2379",
            "http://etcd:port",
            "http://etcd",
            "http://etcd:",
            "http://[::1]",
            "unix:///run/etcd.sock",
        ] {
            let err = text.parse::<EtcdEndpoint>().unwrap_err();
            assert!(
                err.to_string().contains("is not an etcd endpoint"),
                "{text}: {err}"
            );
        }
    }
}
