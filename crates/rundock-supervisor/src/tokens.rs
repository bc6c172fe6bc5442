//! The host addresses a container spec asks for, and the spec with them filled in.
//!
//! `$PRIVATE_IP` / `$PUBLIC_IP` may appear in a port's host address, in environment
//! values, and in the words of the command and entrypoint, as the original module
//! substituted them in its `docker run` line; an announced port without an explicit
//! mapping binds on the announce choice itself. Every choice goes through
//! `rundock_hostip::resolve`, the function the announcer uses for the record, so the
//! socket and the record always agree. Only the choices that are used get resolved, so
//! a host without a public interface can still run a service that never asks for one.

use rundock_spec::{
    AnnounceAs, ContainerSpec, HostIp, Interfaces, PRIVATE_IP_TOKEN, PUBLIC_IP_TOKEN,
};
use std::net::IpAddr;

/// The addresses the used choices stand for on this host, in the order first used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Addresses {
    pub(crate) resolved: Vec<(AnnounceAs, IpAddr)>,
}

/// A choice is used, but this host has no address for it.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve the {choice} address{}: {source}", token_note(.choice))]
pub(crate) struct TokenError {
    choice: AnnounceAs,
    source: rundock_hostip::HostIpError,
}

fn token_note(choice: &AnnounceAs) -> String {
    match token_of(choice) {
        Some(token) => format!(" ({token})"),
        None => String::new(),
    }
}

fn token_of(choice: &AnnounceAs) -> Option<&'static str> {
    match choice {
        AnnounceAs::Private => Some(PRIVATE_IP_TOKEN),
        AnnounceAs::Public => Some(PUBLIC_IP_TOKEN),
        _ => None,
    }
}

impl Addresses {
    /// Resolves the choices `container` uses against this host's interfaces.
    pub fn resolve(container: &ContainerSpec, interfaces: &Interfaces) -> Result<Self, TokenError> {
        let mut resolved = Vec::new();
        for choice in used(container) {
            let addr =
                rundock_hostip::resolve(&choice, interfaces).map_err(|source| TokenError {
                    choice: choice.clone(),
                    source,
                })?;
            resolved.push((choice, addr));
        }
        Ok(Addresses { resolved })
    }

    fn get(&self, choice: &AnnounceAs) -> Option<IpAddr> {
        self.resolved
            .iter()
            .find(|(c, _)| c == choice)
            .map(|(_, addr)| *addr)
    }

    /// `text` with every resolved token replaced by its address.
    pub fn substitute(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (choice, addr) in &self.resolved {
            if let Some(token) = token_of(choice) {
                if out.contains(token) {
                    out = out.replace(token, &addr.to_string());
                }
            }
        }
        out
    }

    /// The address a port binds on: a literal as written, a choice as resolved.
    pub fn host_ip(&self, host_ip: &HostIp) -> String {
        match host_ip {
            HostIp::Ip(ip) => ip.to_string(),
            HostIp::Address(choice) => self
                .get(choice)
                .map(|addr| addr.to_string())
                .expect("every used choice was resolved"),
        }
    }

    /// A label value recording what the choices stood for when the container was made,
    /// so a container made for an address this host no longer has is not reused. `None`
    /// when no choice is used (the label is then left off).
    pub fn label(&self) -> Option<String> {
        let parts: Vec<String> = self
            .resolved
            .iter()
            .map(|(choice, addr)| format!("{choice}={addr}"))
            .collect();
        (!parts.is_empty()).then(|| parts.join(","))
    }
}

/// The address choices `container` uses: the tokens in env, command and entrypoint, and
/// the choices ports bind on; each once, `private` and `public` first.
pub(crate) fn used(container: &ContainerSpec) -> Vec<AnnounceAs> {
    let texts = container
        .env
        .values()
        .chain(container.command.iter().flatten())
        .chain(container.entrypoint.iter().flatten());
    let mut private = false;
    let mut public = false;
    for text in texts {
        private |= text.contains(PRIVATE_IP_TOKEN);
        public |= text.contains(PUBLIC_IP_TOKEN);
    }
    let mut choices = Vec::new();
    let mut add = |choice: AnnounceAs| {
        if !choices.contains(&choice) {
            choices.push(choice);
        }
    };
    if private {
        add(AnnounceAs::Private);
    }
    if public {
        add(AnnounceAs::Public);
    }
    for port in &container.ports {
        if let Some(HostIp::Address(choice)) = &port.host_ip {
            add(choice.clone());
        }
    }
    choices.sort_by_key(|c| token_of(c).is_none());
    choices
}

#[cfg(test)]
mod tests {
    use super::*;
    use rundock_spec::{ContainerSpec, PortMapping, Protocol};

    fn container() -> ContainerSpec {
        ContainerSpec::new("web", "registry.example:5000/web:1".parse().unwrap())
    }

    fn addrs() -> Addresses {
        Addresses {
            resolved: vec![
                (AnnounceAs::Private, "10.0.0.5".parse().unwrap()),
                (AnnounceAs::Public, "203.0.113.7".parse().unwrap()),
            ],
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
            resolved: a.resolved[..1].to_vec(),
        };
        assert_eq!(only_private.substitute("$PUBLIC_IP"), "$PUBLIC_IP");
    }

    #[test]
    fn finds_tokens_in_ports_env_and_command_only() {
        use AnnounceAs::{Private, Public};
        let mut c = container();
        assert_eq!(used(&c), []);
        c.labels.insert("x".into(), "$PUBLIC_IP".into());
        assert_eq!(used(&c), [], "labels are not substituted");
        c.env.insert("ADVERTISE".into(), "$PUBLIC_IP:9000".into());
        assert_eq!(used(&c), [Public]);
        let lo: AnnounceAs = "lo".parse().unwrap();
        for choice in [lo.clone(), Private] {
            c.ports.push(PortMapping {
                host_ip: Some(HostIp::Address(choice)),
                host_port: Some(80),
                host_port_range: None,
                container_port: 80,
                protocol: Protocol::Tcp,
            });
        }
        assert_eq!(used(&c), [Public, Private, lo]);
        let mut c = container();
        c.command = Some(vec!["serve".into(), "--bind=$PRIVATE_IP".into()]);
        assert_eq!(used(&c), [Private]);
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
            private: vec!["no-such-if0".parse().unwrap()],
            public: vec!["no-such-if1".parse().unwrap()],
        };
        assert_eq!(
            Addresses::resolve(&container(), &interfaces).unwrap(),
            Addresses::default()
        );
    }
}
