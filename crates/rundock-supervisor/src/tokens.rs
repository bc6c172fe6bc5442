//! `$PRIVATE_IP` / `$PUBLIC_IP` in a container spec: which tokens it uses, and the text
//! with them replaced by this host's addresses.
//!
//! The tokens may appear in a port's host address, in environment values, and in the
//! words of the command and entrypoint, as the original module substituted them in its
//! `docker run` line. Only the tokens that are used get resolved, so a host without a
//! public interface can still run a service that never asks for `$PUBLIC_IP`.

use rundock_spec::{ContainerSpec, Interfaces, PRIVATE_IP_TOKEN, PUBLIC_IP_TOKEN};
use std::net::IpAddr;

/// The addresses the tokens stand for; `None` for a token the spec does not use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Addresses {
    pub private: Option<IpAddr>,
    pub public: Option<IpAddr>,
}

/// A token is used, but this host has no address for it.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve {token}: {source}")]
pub(crate) struct TokenError {
    token: &'static str,
    source: rundock_hostip::HostIpError,
}

impl Addresses {
    /// Resolves the tokens `container` uses against this host's interfaces.
    pub fn resolve(container: &ContainerSpec, interfaces: &Interfaces) -> Result<Self, TokenError> {
        let resolve = |token: &'static str| {
            rundock_hostip::resolve_token(token, interfaces)
                .map_err(|source| TokenError { token, source })
        };
        let (private, public) = used(container);
        Ok(Addresses {
            private: private.then(|| resolve(PRIVATE_IP_TOKEN)).transpose()?,
            public: public.then(|| resolve(PUBLIC_IP_TOKEN)).transpose()?,
        })
    }

    /// `text` with every resolved token replaced by its address.
    pub fn substitute(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (token, addr) in [
            (PRIVATE_IP_TOKEN, self.private),
            (PUBLIC_IP_TOKEN, self.public),
        ] {
            if let Some(addr) = addr {
                if out.contains(token) {
                    out = out.replace(token, &addr.to_string());
                }
            }
        }
        out
    }

    /// A label value recording what the tokens stood for when the container was made, so
    /// a container made for an address this host no longer has is not reused. `None`
    /// when no token is used (the label is then left off).
    pub fn label(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(addr) = self.private {
            parts.push(format!("private={addr}"));
        }
        if let Some(addr) = self.public {
            parts.push(format!("public={addr}"));
        }
        (!parts.is_empty()).then(|| parts.join(","))
    }
}

/// Whether `container` uses `$PRIVATE_IP` and `$PUBLIC_IP`, as (private, public).
pub(crate) fn used(container: &ContainerSpec) -> (bool, bool) {
    let texts = container
        .ports
        .iter()
        .filter_map(|p| p.host_ip.as_deref())
        .chain(container.env.values().map(String::as_str))
        .chain(container.command.iter().flatten().map(String::as_str))
        .chain(container.entrypoint.iter().flatten().map(String::as_str));
    let mut private = false;
    let mut public = false;
    for text in texts {
        private |= text.contains(PRIVATE_IP_TOKEN);
        public |= text.contains(PUBLIC_IP_TOKEN);
    }
    (private, public)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::tests::container;
    use rundock_spec::{PortMapping, Protocol};

    fn addrs() -> Addresses {
        Addresses {
            private: Some("10.0.0.5".parse().unwrap()),
            public: Some("203.0.113.7".parse().unwrap()),
        }
    }

    #[test]
    fn substitutes_every_occurrence_and_leaves_the_rest() {
        let a = addrs();
        assert_eq!(a.substitute("$PRIVATE_IP"), "10.0.0.5");
        assert_eq!(
            a.substitute("http://$PUBLIC_IP:80/,$PRIVATE_IP,$PRIVATE_IP"),
            "http://203.0.113.7:80/,10.0.0.5,10.0.0.5"
        );
        assert_eq!(a.substitute("$HOME and $PRIVATE"), "$HOME and $PRIVATE");
        // An unresolved token (unused by the spec) is left as it is.
        let only_private = Addresses {
            private: a.private,
            public: None,
        };
        assert_eq!(only_private.substitute("$PUBLIC_IP"), "$PUBLIC_IP");
    }

    #[test]
    fn finds_tokens_in_ports_env_and_command_only() {
        let mut c = container();
        assert_eq!(used(&c), (false, false));
        c.labels.insert("x".into(), "$PUBLIC_IP".into());
        assert_eq!(used(&c), (false, false), "labels are not substituted");
        c.env.insert("ADVERTISE".into(), "$PUBLIC_IP:9000".into());
        assert_eq!(used(&c), (false, true));
        c.ports.push(PortMapping {
            host_ip: Some("$PRIVATE_IP".into()),
            host_port: Some(80),
            container_port: 80,
            protocol: Protocol::Tcp,
        });
        assert_eq!(used(&c), (true, true));
        let mut c = container();
        c.command = Some(vec!["serve".into(), "--bind=$PRIVATE_IP".into()]);
        assert_eq!(used(&c), (true, false));
    }

    #[test]
    fn label_names_only_the_used_tokens() {
        assert_eq!(Addresses::default().label(), None);
        assert_eq!(
            addrs().label().as_deref(),
            Some("private=10.0.0.5,public=203.0.113.7")
        );
    }

    #[test]
    fn resolving_nothing_needs_no_interfaces() {
        let interfaces = Interfaces {
            private: vec!["no-such-if0".into()],
            public: vec!["no-such-if1".into()],
        };
        assert_eq!(
            Addresses::resolve(&container(), &interfaces).unwrap(),
            Addresses::default()
        );
    }
}
