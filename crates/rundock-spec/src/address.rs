//! Address values, parsed once: which host address a record carries (`announce_as`),
//! the interface forms of `private_interface` / `public_interface`, and where a
//! published port binds.
//!
//! The module parses the operator's strings into these types and stores them typed in
//! `spec.json`; the supervisor (port bindings, `$PRIVATE_IP`) and the announcer (the
//! record's address) resolve the very same values through `rundock-hostip`. There is no
//! second parser that could read `eth0:inet6[1]` differently.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// The allowed forms of an address choice, for error messages.
pub const ADDRESS_CHOICE_FORM: &str = "private, public, container, an interface \
     (eth0, eth0:inet, eth0:inet6, eth0[1], eth0:inet6[1]) or a CIDR (10.0.0.0/8, fd00::/8)";

/// The allowed forms of an interface, for error messages.
pub const INTERFACE_FORM: &str =
    "an interface name of 1-15 letters, digits, '_', '.', '-' or '@', optionally with \
     :inet or :inet6 and an index [N] (eth0, eth0:inet6, eth0[1])";

/// Which address family of an interface is meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Either family (no suffix): IPv4 and IPv6 addresses count alike.
    Any,
    /// IPv4 only (`:inet`).
    V4,
    /// IPv6 only (`:inet6`).
    V6,
}

/// `NAME`, `NAME:inet`, `NAME:inet6`, `NAME[N]`, `NAME:inet6[N]`: the N-th (from 0)
/// usable address of an interface, of one family if named.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct InterfaceChoice {
    /// The interface name as written (1-15 letters, digits, `_`, `.`, `-` or `@`).
    pub name: String,
    /// Which family counts; [`Family::Any`] when no `:inet`/`:inet6` was written.
    pub family: Family,
    /// Which usable address of that family, counting from 0 (`[N]`; 0 when none was written).
    pub index: usize,
}

/// Which address the record carries, and where an announced port is published.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum AnnounceAs {
    /// The host's private address (`private_interface`, then a private fallback).
    Private,
    /// The host's public address (`public_interface`, then a public fallback).
    Public,
    /// The container's own address on its Docker network; nothing is published.
    Container,
    /// A usable address of this host interface (`eth0`, `eth0:inet6[1]`).
    Interface(InterfaceChoice),
    /// The first local usable address inside this network.
    Cidr(IpNet),
}

/// Where a published port binds on the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostIp {
    /// A literal address, as written.
    Ip(IpAddr),
    /// An address of this host chosen at container start by the same rules as
    /// `announce_as` (`$PRIVATE_IP` is `private`, `$PUBLIC_IP` is `public`; an announced
    /// port without an explicit mapping binds on the announce choice).
    Address(AnnounceAs),
}

/// A value that is not of its allowed form; the caller names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not {form}")]
pub struct FormError {
    /// The offending value, exactly as given.
    pub value: String,
    /// The allowed form, written for the message ("VALUE is not FORM").
    pub form: &'static str,
}

impl FormError {
    fn new(value: &str, form: &'static str) -> FormError {
        FormError {
            value: value.to_string(),
            form,
        }
    }
}

impl FromStr for InterfaceChoice {
    type Err = FormError;

    fn from_str(text: &str) -> Result<Self, FormError> {
        let bad = || FormError::new(text, INTERFACE_FORM);
        let (rest, index) = match text.strip_suffix(']') {
            Some(head) => {
                let open = head.rfind('[').ok_or_else(bad)?;
                let digits = &head[open + 1..];
                if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(bad());
                }
                let n: usize = digits.parse().map_err(|_| bad())?;
                if n > 255 {
                    return Err(bad());
                }
                (&head[..open], n)
            }
            None => (text, 0),
        };
        let (name, family) = match rest.split_once(':') {
            None => (rest, Family::Any),
            Some((name, "inet")) => (name, Family::V4),
            Some((name, "inet6")) => (name, Family::V6),
            Some(_) => return Err(bad()),
        };
        // Linux interface names: at most IFNAMSIZ - 1 bytes, no '/', ':' or spaces.
        let name_ok = !name.is_empty()
            && name.len() <= 15
            && name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"_.-@".contains(&c));
        if !name_ok {
            return Err(bad());
        }
        Ok(InterfaceChoice {
            name: name.to_string(),
            family,
            index,
        })
    }
}

impl fmt::Display for InterfaceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        match self.family {
            Family::Any => {}
            Family::V4 => f.write_str(":inet")?,
            Family::V6 => f.write_str(":inet6")?,
        }
        if self.index > 0 {
            write!(f, "[{}]", self.index)?;
        }
        Ok(())
    }
}

impl FromStr for AnnounceAs {
    type Err = FormError;

    fn from_str(text: &str) -> Result<Self, FormError> {
        match text {
            "private" => Ok(AnnounceAs::Private),
            "public" => Ok(AnnounceAs::Public),
            "container" => Ok(AnnounceAs::Container),
            cidr if cidr.contains('/') => cidr
                .parse::<IpNet>()
                .map(AnnounceAs::Cidr)
                .map_err(|_| FormError::new(text, ADDRESS_CHOICE_FORM)),
            interface => interface
                .parse()
                .map(AnnounceAs::Interface)
                .map_err(|_| FormError::new(text, ADDRESS_CHOICE_FORM)),
        }
    }
}

impl fmt::Display for AnnounceAs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnnounceAs::Private => f.write_str("private"),
            AnnounceAs::Public => f.write_str("public"),
            AnnounceAs::Container => f.write_str("container"),
            AnnounceAs::Interface(choice) => choice.fmt(f),
            AnnounceAs::Cidr(net) => net.fmt(f),
        }
    }
}

text_serde!(InterfaceChoice, FormError);
text_serde!(AnnounceAs, FormError);

impl fmt::Display for HostIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostIp::Ip(ip) => ip.fmt(f),
            HostIp::Address(AnnounceAs::Private) => f.write_str(crate::PRIVATE_IP_TOKEN),
            HostIp::Address(AnnounceAs::Public) => f.write_str(crate::PUBLIC_IP_TOKEN),
            HostIp::Address(choice) => write!(f, "the {choice} address"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_forms_round_trip() {
        for text in [
            "eth0",
            "eth0:inet",
            "eth0:inet6",
            "eth0[1]",
            "eth0:inet6[1]",
            "br-x.5@y",
        ] {
            let choice: InterfaceChoice = text.parse().unwrap();
            assert_eq!(choice.to_string(), text);
        }
        let choice: InterfaceChoice = "eth0:inet6[2]".parse().unwrap();
        assert_eq!((choice.family, choice.index), (Family::V6, 2));
        assert_eq!(
            "eth0[0]".parse::<InterfaceChoice>().unwrap().to_string(),
            "eth0"
        );
    }

    #[test]
    fn bad_interfaces_are_refused() {
        for text in [
            "",
            ":inet",
            "eth0:",
            "eth0:inet4",
            "eth0[",
            "eth0[]",
            "eth0[x]",
            "eth0[-1]",
            "eth0[+1]",
            "eth0[256]",
            "a/b",
            "eth 0",
            "eth0]",
            "abcdefghijklmnop",
            "eth0:inet6:inet",
            "eth0[1][2]",
            "eth0\n",
        ] {
            assert!(text.parse::<InterfaceChoice>().is_err(), "{text:?}");
        }
    }

    #[test]
    fn choices_parse_and_serialize_as_their_text() {
        for text in [
            "private",
            "public",
            "container",
            "eth1:inet6[1]",
            "10.0.0.0/8",
            "fd00::/8",
        ] {
            let choice: AnnounceAs = text.parse().unwrap();
            assert_eq!(choice.to_string(), text);
            let json = serde_json::to_string(&choice).unwrap();
            assert_eq!(json, format!("{text:?}"));
            assert_eq!(serde_json::from_str::<AnnounceAs>(&json).unwrap(), choice);
        }
        for text in [
            "10.0.0.0/33",
            "10.0.0/8",
            "fd00::/129",
            "x/8",
            "Private!",
            "",
        ] {
            assert!(text.parse::<AnnounceAs>().is_err(), "{text:?}");
        }
        assert!(serde_json::from_str::<AnnounceAs>("\"eth0[x]\"").is_err());
    }

    #[test]
    fn host_ips_are_tagged() {
        let json = serde_json::to_string(&HostIp::Address(AnnounceAs::Private)).unwrap();
        assert_eq!(json, r#"{"address":"private"}"#);
        let json = serde_json::to_string(&HostIp::Ip("::1".parse().unwrap())).unwrap();
        assert_eq!(json, r#"{"ip":"::1"}"#);
    }
}
