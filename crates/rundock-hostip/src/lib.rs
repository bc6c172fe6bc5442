//! Which host address a record carries, and what `$PRIVATE_IP` / `$PUBLIC_IP` stand for.
//!
//! The addresses come from `getifaddrs(3)` (through nix), never from parsing `ifconfig`
//! or `ip` output. The selection itself is a pure function over a list of
//! [`LocalAddr`]s ([`select`]), so its rules are unit-tested without touching the host.
//!
//! # Rules
//!
//! * An interface's usable addresses are its IPv4 addresses, then its IPv6 addresses,
//!   each in kernel order. Link-local addresses (`169.254.0.0/16`, `fe80::/10`) and
//!   unspecified ones are never chosen: nobody else can reach them without a scope, so
//!   announcing one would publish a record that cannot work.
//! * `private` / `public`: the interfaces of [`Interfaces::private`] /
//!   [`Interfaces::public`] are tried in order; the first one that has a usable address
//!   gives its first one. If **none** of the listed interfaces exists on this host, the
//!   choice falls back to the first up, non-loopback interface with a usable address,
//!   skipping Docker's own interfaces (`docker*`, `br-*`, `veth*`), whose addresses are
//!   never what a client outside should dial. Among those, `private` prefers a private
//!   address (RFC 1918, `100.64.0.0/10`, `fc00::/7`) and `public` a non-private one;
//!   either takes any usable address when there is no preferred one. If listed
//!   interfaces exist but none has an address, that is an error, not a fallback: the
//!   operator named them, so a quiet substitute would hide a misconfiguration.
//! * An interface choice `NAME`, `NAME:inet`, `NAME:inet6`, `NAME[N]` (`NAME:inet6[N]`
//!   too) takes the N-th (from 0) usable address of that interface, of that family if
//!   one is named.
//! * A CIDR takes the first local usable address inside it, in interface order.
//! * `container` is the container's own address on its Docker network: only Docker
//!   knows it, so it is an error here ([`HostIpError::NotLocal`]).

#![warn(missing_docs)]

use ipnet::IpNet;
use rundock_spec::{
    AnnounceAs, Family, InterfaceChoice, Interfaces, PRIVATE_IP_TOKEN, PUBLIC_IP_TOKEN,
};
use std::net::IpAddr;

/// Why no address could be chosen. Callers (the announcer, the supervisor) retry or
/// report; each variant names what the operator should look at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostIpError {
    /// `getifaddrs` failed.
    #[error("cannot list the host's interfaces: {0}")]
    Getifaddrs(String),
    /// The named interface is not on this host.
    #[error("interface {0} does not exist on this host")]
    NoSuchInterface(String),
    /// The named interface has no address of the wanted family or scope.
    #[error("interface {interface} has no usable {what} address")]
    NoAddress {
        /// The interface's name.
        interface: String,
        /// What was wanted, e.g. `IPv4` or `global IPv6`.
        what: String,
    },
    /// None of the listed interfaces has a usable address.
    #[error("none of the interfaces {} has a usable address", list(.0))]
    NoneOfListed(Vec<InterfaceChoice>),
    /// No interface to fall back on when none was named.
    #[error("no non-loopback interface with a usable address to fall back on")]
    NoFallback,
    /// No local address lies in the given network.
    #[error("no local address inside {0}")]
    NotInCidr(String),
    /// A `$TOKEN` other than the two known ones.
    #[error("{0} is not $PRIVATE_IP or $PUBLIC_IP")]
    UnknownToken(String),
    /// The choice names the container's address, which only Docker knows.
    #[error("the container's address is known only to Docker, not to the host's interfaces")]
    NotLocal,
}

/// One address of one local interface, as `getifaddrs` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAddr {
    /// The interface's name, e.g. `eth0`.
    pub interface: String,
    /// The address.
    pub addr: IpAddr,
    /// The interface is administratively up.
    pub up: bool,
    /// The interface is a loopback interface.
    pub loopback: bool,
}

impl LocalAddr {
    /// An up, non-loopback address; handy for tests and callers building lists by hand.
    pub fn new(interface: &str, addr: IpAddr) -> LocalAddr {
        LocalAddr {
            interface: interface.to_string(),
            loopback: addr.is_loopback(),
            addr,
            up: true,
        }
    }
}

/// All IPv4 and IPv6 addresses of this host's interfaces (in this process's network
/// namespace), in kernel order.
pub fn local_addresses() -> Result<Vec<LocalAddr>, HostIpError> {
    use nix::net::if_::InterfaceFlags;
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| HostIpError::Getifaddrs(e.to_string()))?;
    let mut out = Vec::new();
    for ifa in addrs {
        let Some(storage) = ifa.address else { continue };
        let addr = if let Some(v4) = storage.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = storage.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            // AF_PACKET entries name interfaces without an IP address; interfaces
            // without addresses are only interesting as "exists", see `interface_names`.
            continue;
        };
        out.push(LocalAddr {
            interface: ifa.interface_name,
            addr,
            up: ifa.flags.contains(InterfaceFlags::IFF_UP),
            loopback: ifa.flags.contains(InterfaceFlags::IFF_LOOPBACK),
        });
    }
    Ok(out)
}

/// Names of all interfaces of this host, with or without addresses.
pub fn interface_names() -> Result<Vec<String>, HostIpError> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| HostIpError::Getifaddrs(e.to_string()))?;
    let mut names: Vec<String> = Vec::new();
    for ifa in addrs {
        if !names.contains(&ifa.interface_name) {
            names.push(ifa.interface_name);
        }
    }
    Ok(names)
}

/// The address `choice` stands for on this host.
pub fn resolve(choice: &AnnounceAs, interfaces: &Interfaces) -> Result<IpAddr, HostIpError> {
    let addrs = local_addresses()?;
    let names = interface_names()?;
    select(choice, interfaces, &addrs, &names)
}

/// The address `$PRIVATE_IP` or `$PUBLIC_IP` stands for on this host (the same rules as
/// `announce_as: private|public`). Anything else is [`HostIpError::UnknownToken`].
pub fn resolve_token(token: &str, interfaces: &Interfaces) -> Result<IpAddr, HostIpError> {
    resolve(&token_choice(token)?, interfaces)
}

/// `$PRIVATE_IP` → `Private`, `$PUBLIC_IP` → `Public`.
pub fn token_choice(token: &str) -> Result<AnnounceAs, HostIpError> {
    match token {
        PRIVATE_IP_TOKEN => Ok(AnnounceAs::Private),
        PUBLIC_IP_TOKEN => Ok(AnnounceAs::Public),
        other => Err(HostIpError::UnknownToken(other.to_string())),
    }
}

/// The pure selection: `addrs` are the host's addresses in kernel order, `names` every
/// interface that exists (an interface can exist without any address).
pub fn select(
    choice: &AnnounceAs,
    interfaces: &Interfaces,
    addrs: &[LocalAddr],
    names: &[String],
) -> Result<IpAddr, HostIpError> {
    match choice {
        AnnounceAs::Private => from_list(&interfaces.private, true, addrs, names),
        AnnounceAs::Public => from_list(&interfaces.public, false, addrs, names),
        AnnounceAs::Interface(choice) => {
            if !exists(&choice.name, addrs, names) {
                return Err(HostIpError::NoSuchInterface(choice.name.clone()));
            }
            usable_of(choice, addrs)
                .get(choice.index)
                .copied()
                .ok_or_else(|| HostIpError::NoAddress {
                    interface: choice.name.clone(),
                    what: describe(choice.family, choice.index),
                })
        }
        AnnounceAs::Cidr(net) => addrs
            .iter()
            .filter(|a| usable(a.addr))
            .map(|a| a.addr)
            .find(|a| net.contains(a))
            .ok_or_else(|| HostIpError::NotInCidr(net.to_string())),
        AnnounceAs::Container => Err(HostIpError::NotLocal),
    }
}

fn from_list(
    list: &[InterfaceChoice],
    private: bool,
    addrs: &[LocalAddr],
    names: &[String],
) -> Result<IpAddr, HostIpError> {
    let mut any_listed_exists = false;
    for entry in list {
        // List entries may carry a family or index too (`eth1:inet6`).
        if !exists(&entry.name, addrs, names) {
            continue;
        }
        any_listed_exists = true;
        if let Some(addr) = usable_of(entry, addrs).get(entry.index) {
            return Ok(*addr);
        }
    }
    if any_listed_exists {
        return Err(HostIpError::NoneOfListed(list.to_vec()));
    }
    fallback(private, addrs)
}

fn fallback(private: bool, addrs: &[LocalAddr]) -> Result<IpAddr, HostIpError> {
    let candidates: Vec<IpAddr> = addrs
        .iter()
        .filter(|a| a.up && !a.loopback && !a.addr.is_loopback() && !docker_owned(&a.interface))
        .filter(|a| usable(a.addr))
        .map(|a| a.addr)
        .collect();
    // IPv4 before IPv6, as within one interface.
    let ordered = candidates
        .iter()
        .filter(|a| a.is_ipv4())
        .chain(candidates.iter().filter(|a| a.is_ipv6()));
    let mut first = None;
    for addr in ordered {
        if is_private(*addr) == private {
            return Ok(*addr);
        }
        first.get_or_insert(*addr);
    }
    first.ok_or(HostIpError::NoFallback)
}

fn docker_owned(name: &str) -> bool {
    name.starts_with("docker") || name.starts_with("br-") || name.starts_with("veth")
}

fn exists(name: &str, addrs: &[LocalAddr], names: &[String]) -> bool {
    names.iter().any(|n| n == name) || addrs.iter().any(|a| a.interface == name)
}

fn describe(family: Family, index: usize) -> String {
    let fam = match family {
        Family::Any => "",
        Family::V4 => "IPv4 ",
        Family::V6 => "IPv6 ",
    };
    format!("{fam}#{index}")
}

/// Usable addresses of one interface: IPv4 first, then IPv6, kernel order within each.
fn usable_of(choice: &InterfaceChoice, addrs: &[LocalAddr]) -> Vec<IpAddr> {
    let mine: Vec<IpAddr> = addrs
        .iter()
        .filter(|a| a.interface == choice.name && usable(a.addr))
        .map(|a| a.addr)
        .collect();
    let v4 = mine.iter().filter(|a| a.is_ipv4());
    let v6 = mine.iter().filter(|a| a.is_ipv6());
    match choice.family {
        Family::Any => v4.chain(v6).copied().collect(),
        Family::V4 => v4.copied().collect(),
        Family::V6 => v6.copied().collect(),
    }
}

fn list(choices: &[InterfaceChoice]) -> String {
    choices
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn net(text: &str) -> IpNet {
    text.parse().expect("a constant network parses")
}

/// Reachable by someone else: not unspecified, not link-local, not multicast.
fn usable(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => !a.is_unspecified() && !a.is_link_local() && !a.is_multicast(),
        IpAddr::V6(a) => {
            !a.is_unspecified() && !a.is_multicast() && (a.segments()[0] & 0xffc0) != 0xfe80
        }
    }
}

fn is_private(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.is_private() || net("100.64.0.0/10").contains(&addr),
        IpAddr::V6(_) => net("fc00::/7").contains(&addr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn host() -> (Vec<LocalAddr>, Vec<String>) {
        let mut lo = LocalAddr::new("lo", ip("127.0.0.1"));
        lo.loopback = true;
        let addrs = vec![
            lo,
            LocalAddr::new("eth0", ip("fe80::1")),
            LocalAddr::new("eth0", ip("2001:db8::5")),
            LocalAddr::new("eth0", ip("203.0.113.5")),
            LocalAddr::new("eth0", ip("203.0.113.6")),
            LocalAddr::new("eth1", ip("10.0.0.5")),
            LocalAddr::new("eth1", ip("fd00::5")),
            LocalAddr::new("docker0", ip("172.17.0.1")),
        ];
        let names = ["lo", "eth0", "eth1", "docker0", "eth2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        (addrs, names)
    }

    fn ifaces(private: &[&str], public: &[&str]) -> Interfaces {
        Interfaces {
            private: private.iter().map(|s| s.parse().unwrap()).collect(),
            public: public.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    fn pick(choice: AnnounceAs, i: &Interfaces) -> Result<IpAddr, HostIpError> {
        let (addrs, names) = host();
        select(&choice, i, &addrs, &names)
    }

    #[test]
    fn private_and_public_take_the_first_listed_interface_with_an_address() {
        let i = ifaces(&["eth1", "eth0"], &["eth0"]);
        assert_eq!(pick(AnnounceAs::Private, &i), Ok(ip("10.0.0.5")));
        assert_eq!(pick(AnnounceAs::Public, &i), Ok(ip("203.0.113.5")));
        // eth9 does not exist, eth2 exists without an address: both are skipped.
        let i = ifaces(&["eth9", "eth2", "eth0"], &["eth1:inet6"]);
        assert_eq!(pick(AnnounceAs::Private, &i), Ok(ip("203.0.113.5")));
        assert_eq!(pick(AnnounceAs::Public, &i), Ok(ip("fd00::5")));
    }

    #[test]
    fn listed_interfaces_without_addresses_are_an_error_not_a_fallback() {
        let i = ifaces(&["eth2"], &["eth2"]);
        assert_eq!(
            pick(AnnounceAs::Private, &i),
            Err(HostIpError::NoneOfListed(vec!["eth2".parse().unwrap()]))
        );
    }

    #[test]
    fn none_of_the_listed_exists_falls_back_by_preference() {
        let i = ifaces(&["bond7"], &["bond8"]);
        // Private prefers a private address, public a public one; docker0 never counts.
        assert_eq!(pick(AnnounceAs::Private, &i), Ok(ip("10.0.0.5")));
        assert_eq!(pick(AnnounceAs::Public, &i), Ok(ip("203.0.113.5")));
        let only_public = vec![LocalAddr::new("ens3", ip("198.51.100.1"))];
        assert_eq!(
            select(&AnnounceAs::Private, &i, &only_public, &[]),
            Ok(ip("198.51.100.1"))
        );
        let mut lo = LocalAddr::new("lo", ip("127.0.0.1"));
        lo.loopback = true;
        let mut down = LocalAddr::new("ens4", ip("10.1.1.1"));
        down.up = false;
        let docker = LocalAddr::new("docker0", ip("172.17.0.1"));
        assert_eq!(
            select(&AnnounceAs::Private, &i, &[lo, down, docker], &[]),
            Err(HostIpError::NoFallback)
        );
    }

    #[test]
    fn interface_choices_with_family_and_index() {
        let i = ifaces(&[], &[]);
        let c = |s: &str| pick(AnnounceAs::Interface(s.parse().unwrap()), &i);
        assert_eq!(c("eth0"), Ok(ip("203.0.113.5")));
        assert_eq!(c("eth0[1]"), Ok(ip("203.0.113.6")));
        assert_eq!(c("eth0[2]"), Ok(ip("2001:db8::5")), "IPv4 first, then IPv6");
        assert_eq!(c("eth0:inet6"), Ok(ip("2001:db8::5")), "link-local skipped");
        assert_eq!(c("eth0:inet"), Ok(ip("203.0.113.5")));
        assert_eq!(c("eth0:inet[1]"), Ok(ip("203.0.113.6")));
        assert_eq!(c("eth1:inet6"), Ok(ip("fd00::5")));
        assert!(matches!(c("eth0[3]"), Err(HostIpError::NoAddress { .. })));
        assert!(matches!(c("eth2"), Err(HostIpError::NoAddress { .. })));
        assert_eq!(c("eth9"), Err(HostIpError::NoSuchInterface("eth9".into())));
    }

    #[test]
    fn cidr_takes_the_first_local_address_inside() {
        let i = ifaces(&[], &[]);
        let c = |s: &str| pick(AnnounceAs::Cidr(s.parse().unwrap()), &i);
        assert_eq!(c("10.0.0.0/8"), Ok(ip("10.0.0.5")));
        assert_eq!(c("203.0.113.0/24"), Ok(ip("203.0.113.5")));
        assert_eq!(c("fd00::/8"), Ok(ip("fd00::5")));
        assert_eq!(c("2001:db8::/32"), Ok(ip("2001:db8::5")));
        assert_eq!(
            c("0.0.0.0/0"),
            Ok(ip("127.0.0.1")),
            "the CIDR decides, lo included"
        );
        assert_eq!(
            c("192.168.0.0/16"),
            Err(HostIpError::NotInCidr("192.168.0.0/16".into()))
        );
    }

    #[test]
    fn container_and_tokens() {
        let i = ifaces(&["eth1"], &["eth0"]);
        assert_eq!(pick(AnnounceAs::Container, &i), Err(HostIpError::NotLocal));
        assert_eq!(token_choice("$PRIVATE_IP"), Ok(AnnounceAs::Private));
        assert_eq!(token_choice("$PUBLIC_IP"), Ok(AnnounceAs::Public));
        assert_eq!(
            token_choice("$OTHER_IP"),
            Err(HostIpError::UnknownToken("$OTHER_IP".into()))
        );
    }

    #[test]
    fn this_host_has_a_loopback_address() {
        let addrs = local_addresses().unwrap();
        assert!(addrs
            .iter()
            .any(|a| a.addr == ip("127.0.0.1") && a.loopback));
        let lo = select(
            &AnnounceAs::Interface("lo".parse().unwrap()),
            &ifaces(&[], &[]),
            &addrs,
            &[],
        );
        assert_eq!(lo, Ok(ip("127.0.0.1")));
    }
}
