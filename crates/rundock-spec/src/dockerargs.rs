//! `args`: docker-run style flags, split like a shell would split words but never
//! expanded or executed, then parsed into structured container options.
//!
//! Only `$PRIVATE_IP` and `$PUBLIC_IP` have a meaning (kept as tokens, resolved on the
//! host at container start); every other `$`, backtick or `;` is plain text, and text
//! that is not a known flag or its value is refused.

use crate::address::{AnnounceAs, HostIp};
use crate::error::{Result, SpecError};
use crate::spec::{PortMapping, Protocol, PRIVATE_IP_TOKEN, PUBLIC_IP_TOKEN};
use crate::validate::{self, quoted};
use std::collections::BTreeMap;
use std::net::IpAddr;

const FIELD: &str = "args";

/// What `args` contributed; merged with the structured options by `params`.
#[derive(Debug, Default, PartialEq)]
pub struct DockerArgs {
    /// `-e/--env NAME=VALUE`: environment variables by name (a later flag for the same name wins).
    pub env: BTreeMap<String, String>,
    /// `-p/--publish [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|/udp]`, in the order given.
    pub ports: Vec<PortMapping>,
    /// `-v/--volume SOURCE:TARGET[:OPTIONS]`, validated, in the order given.
    pub volumes: Vec<String>,
    /// `--volumes-from NAME[:ro|:rw]`, in the order given.
    pub volumes_from: Vec<String>,
    /// `-l/--label KEY[=VALUE]`; a label without `=` has the empty value.
    pub labels: BTreeMap<String, String>,
    /// `-h/--hostname`; `None` when not given (Docker's default applies).
    pub hostname: Option<String>,
    /// `-u/--user` (`user`, `uid`, `user:group` or `uid:gid`); `None` when not given.
    pub user: Option<String>,
    /// `-w/--workdir`, an absolute path; `None` when not given.
    pub workdir: Option<String>,
    /// `--entrypoint`, as one word (docker run takes no arguments there); `None` when not given.
    pub entrypoint: Option<Vec<String>>,
    /// `--network/--net` (`host`, `bridge`, `none`, `container:NAME` or a network name); `None`
    /// when not given.
    pub network: Option<String>,
    /// `--privileged` (also `=true`/`=false`); false when not given.
    pub privileged: bool,
    /// `--cap-add`, capability names without the `CAP_` prefix, or `ALL`.
    pub cap_add: Vec<String>,
    /// `--cap-drop`, in the same form as `cap_add`.
    pub cap_drop: Vec<String>,
    /// `-m/--memory` in bytes (units b, k, m, g are powers of 1024); `None` when not given.
    pub memory: Option<u64>,
    /// `--cpus` in billionths of a CPU (Docker's `NanoCpus`: `1.5` is 1,500,000,000); `None`
    /// when not given.
    pub nano_cpus: Option<u64>,
    /// `--log-driver`, checked with the options by [`crate::dockerlog::DockerLog::resolve`].
    pub log_driver: Option<String>,
    /// `--log-opt KEY=VALUE`, the same.
    pub log_options: BTreeMap<String, String>,
}

/// The docker run flags `args` understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flag {
    Env,
    Publish,
    Volume,
    VolumesFrom,
    Hostname,
    User,
    Workdir,
    Entrypoint,
    Network,
    Label,
    Privileged,
    CapAdd,
    CapDrop,
    Memory,
    Cpus,
    LogDriver,
    LogOpt,
}

/// Every flag with its spellings, the canonical (long) one first; the order is the
/// order of the list in error messages.
const FLAGS: &[(Flag, &[&str])] = &[
    (Flag::Env, &["--env", "-e"]),
    (Flag::Publish, &["--publish", "-p"]),
    (Flag::Volume, &["--volume", "-v"]),
    (Flag::VolumesFrom, &["--volumes-from"]),
    (Flag::Hostname, &["--hostname", "-h"]),
    (Flag::User, &["--user", "-u"]),
    (Flag::Workdir, &["--workdir", "-w"]),
    (Flag::Entrypoint, &["--entrypoint"]),
    (Flag::Network, &["--network", "--net"]),
    (Flag::Label, &["--label", "-l"]),
    (Flag::Privileged, &["--privileged"]),
    (Flag::CapAdd, &["--cap-add"]),
    (Flag::CapDrop, &["--cap-drop"]),
    (Flag::Memory, &["--memory", "-m"]),
    (Flag::Cpus, &["--cpus"]),
    (Flag::LogDriver, &["--log-driver"]),
    (Flag::LogOpt, &["--log-opt"]),
];

impl Flag {
    /// The flag `spelling` names, if `args` supports it, with its long spelling (which
    /// names it in messages: `args --env`).
    fn parse(spelling: &str) -> Option<(Flag, &'static str)> {
        FLAGS
            .iter()
            .find(|(_, spellings)| spellings.contains(&spelling))
            .map(|(flag, spellings)| (*flag, spellings[0]))
    }

    /// The supported flags for an error message: `-e/--env, …, --network/--net, …`
    /// (a short spelling before the long one, as docker's own help lists them).
    fn supported() -> String {
        FLAGS
            .iter()
            .map(|(_, spellings)| match spellings {
                [long, short] if !short.starts_with("--") => format!("{short}/{long}"),
                _ => spellings.join("/"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Splits `text` into words with shell quoting rules (single quotes, double quotes,
/// backslash) and nothing else: no variables, globs, command substitution or operators.
pub fn split_words(text: &str) -> Result<Vec<String>> {
    split_words_on(text, FIELD, false)
}

/// As [`split_words`], with unquoted commas separating words too when `commas` is set
/// (Ansible's `k=v, k2=v2` dictionaries), and errors charged to `field`.
pub fn split_words_on(text: &str, field: &str, commas: bool) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() || (commas && c == ',') => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(SpecError::new(field, "unterminated single quote")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(SpecError::new(field, "unterminated double quote")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(SpecError::new(field, "unterminated double quote")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err(SpecError::new(field, "trailing backslash")),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Parses docker-run flags (the part of a `docker run` line before the image).
pub fn parse(text: &str) -> Result<DockerArgs> {
    let words = split_words(text)?;
    let mut out = DockerArgs::default();
    let mut i = 0;
    while i < words.len() {
        let word = &words[i];
        i += 1;
        let (flag, inline) = split_flag(word)?;
        let (known, name) = Flag::parse(&flag).ok_or_else(|| {
            SpecError::new(
                FIELD,
                format!(
                    "unsupported docker run flag {}; supported: {} \
                     (the container command goes in 'command')",
                    quoted(&flag),
                    Flag::supported()
                ),
            )
        })?;
        if known == Flag::Privileged {
            if let Some(value) = inline {
                out.privileged = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(SpecError::new(
                            FIELD,
                            format!(
                                "--privileged takes no value or =true/=false, not {}",
                                quoted(&value)
                            ),
                        ))
                    }
                };
            } else {
                out.privileged = true;
            }
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => {
                let v = words
                    .get(i)
                    .cloned()
                    .ok_or_else(|| SpecError::new(FIELD, format!("{flag} needs a value")))?;
                i += 1;
                v
            }
        };
        apply(&mut out, known, name, &value)?;
    }
    Ok(out)
}

/// `--env=X` → (`--env`, `X`); `-eX=1` → (`-e`, `X=1`); anything not starting with `-`
/// is a stray word.
fn split_flag(word: &str) -> Result<(String, Option<String>)> {
    if let Some(long) = word.strip_prefix("--") {
        if long.is_empty() {
            return Err(SpecError::new(
                FIELD,
                "'--' ends the flags in docker run; put the container command in 'command'",
            ));
        }
        return Ok(match long.split_once('=') {
            Some((name, value)) => (format!("--{name}"), Some(value.to_string())),
            None => (word.to_string(), None),
        });
    }
    if let Some(short) = word.strip_prefix('-') {
        let mut chars = short.chars();
        if let Some(c) = chars.next() {
            let rest: String = chars.collect();
            let rest = rest.strip_prefix('=').map(str::to_string).unwrap_or(rest);
            return Ok((format!("-{c}"), (!rest.is_empty()).then_some(rest)));
        }
    }
    Err(SpecError::new(
        FIELD,
        format!(
            "unexpected word {}: args takes docker run flags only (the image goes in 'image', \
             the container command in 'command')",
            quoted(word)
        ),
    ))
}

fn apply(out: &mut DockerArgs, flag: Flag, name: &str, value: &str) -> Result<()> {
    let field = format!("{FIELD} {name}");
    let field = field.as_str();
    match flag {
        Flag::Env => {
            let (name, val) = value.split_once('=').ok_or_else(|| {
                SpecError::new(
                    field,
                    format!(
                        "{} must be NAME=VALUE",
                        quoted(value.split('=').next().unwrap_or(""))
                    ),
                )
            })?;
            let name = validate::env_name(field, name)?;
            out.env
                .insert(name, validate::no_nul(field, "an environment value", val)?);
        }
        Flag::Publish => out.ports.push(parse_publish(field, value)?),
        Flag::Volume => out.volumes.push(validate::volume(field, value)?),
        Flag::VolumesFrom => out.volumes_from.push(validate::volumes_from(field, value)?),
        Flag::Hostname => out.hostname = Some(validate::hostname(field, value)?),
        Flag::User => out.user = Some(validate::user(field, value)?),
        Flag::Workdir => {
            out.workdir = Some(
                validate::absolute_path(field, value)?
                    .to_string_lossy()
                    .into_owned(),
            )
        }
        Flag::Entrypoint => {
            out.entrypoint = Some(vec![validate::no_nul(field, "the entrypoint", value)?])
        }
        Flag::Network => out.network = Some(validate::network(field, value)?),
        Flag::Label => {
            let (key, val) = value.split_once('=').unwrap_or((value, ""));
            out.labels.insert(
                validate::label_key(field, key)?,
                validate::no_nul(field, "a label value", val)?,
            );
        }
        Flag::CapAdd => out.cap_add.push(validate::capability(field, value)?),
        Flag::CapDrop => out.cap_drop.push(validate::capability(field, value)?),
        Flag::Memory => out.memory = Some(validate::memory(field, value)?),
        Flag::Cpus => out.nano_cpus = Some(validate::cpus(field, value)?),
        Flag::LogDriver => out.log_driver = Some(value.to_string()),
        Flag::LogOpt => {
            let (key, val) = value.split_once('=').ok_or_else(|| {
                SpecError::new(field, format!("{} must be KEY=VALUE", quoted(value)))
            })?;
            out.log_options.insert(key.to_string(), val.to_string());
        }
        // Takes no value: handled where the words are read.
        Flag::Privileged => out.privileged = true,
    }
    Ok(())
}

/// `[IP:][HOST_PORT:]CONTAINER_PORT[/tcp|/udp]`; IP may be `$PRIVATE_IP`, `$PUBLIC_IP`,
/// an IPv4 address or a bracketed IPv6 address.
pub fn parse_publish(field: &str, value: &str) -> Result<PortMapping> {
    let bad = |why: &str| {
        SpecError::new(
            field,
            format!(
                "{} {why}: the form is [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|/udp], IP an address, \
                 [IPv6], $PRIVATE_IP or $PUBLIC_IP",
                quoted(value)
            ),
        )
    };
    let (spec, protocol) = match value.rsplit_once('/') {
        Some((spec, "tcp")) => (spec, Protocol::Tcp),
        Some((spec, "udp")) => (spec, Protocol::Udp),
        Some(_) => return Err(bad("has an unknown protocol")),
        None => (value, Protocol::Tcp),
    };
    let (host_ip, ports) = if let Some(rest) = spec.strip_prefix('[') {
        let (ip, rest) = rest
            .split_once("]:")
            .ok_or_else(|| bad("has an unclosed '['"))?;
        (Some(ip.to_string()), rest)
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.len() {
            1 | 2 => (None, spec),
            3 => (Some(parts[0].to_string()), &spec[parts[0].len() + 1..]),
            _ => return Err(bad("has too many ':'")),
        }
    };
    let host_ip = match host_ip.as_deref() {
        None | Some("") => None,
        Some(PRIVATE_IP_TOKEN) => Some(HostIp::Address(AnnounceAs::Private)),
        Some(PUBLIC_IP_TOKEN) => Some(HostIp::Address(AnnounceAs::Public)),
        Some(ip) => Some(HostIp::Ip(
            ip.parse::<IpAddr>()
                .map_err(|_| bad("has a host IP that is not an address"))?,
        )),
    };
    let parse_port = |p: &str| -> Result<u16> {
        p.parse::<i64>()
            .map_err(|_| bad("has a port that is not a number"))
            .and_then(|n| validate::port(field, n).map_err(|_| bad("has a port out of range")))
    };
    let (host_port, container_port) = match ports.split_once(':') {
        Some(("", c)) => (None, parse_port(c)?),
        Some((h, c)) => (Some(parse_port(h)?), parse_port(c)?),
        None => (None, parse_port(ports)?),
    };
    Ok(PortMapping {
        host_ip,
        host_port,
        host_port_range: None,
        container_port,
        protocol,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_split_without_expansion() {
        assert_eq!(
            split_words(r#"-e A='x y' -e "B=\$HOME `id`" C\ D $(touch /tmp/pwned);"#).unwrap(),
            vec![
                "-e",
                "A=x y",
                "-e",
                "B=$HOME `id`",
                "C D",
                "$(touch",
                "/tmp/pwned);"
            ]
        );
        assert!(split_words("'open").is_err());
        assert!(split_words("\"open").is_err());
    }

    #[test]
    fn original_module_args() {
        let parsed = parse("--volumes-from data.influxdb -p $PRIVATE_IP:8083:8083").unwrap();
        assert_eq!(parsed.volumes_from, vec!["data.influxdb"]);
        assert_eq!(
            parsed.ports,
            vec![PortMapping {
                host_ip: Some(HostIp::Address(AnnounceAs::Private)),
                host_port: Some(8083),
                host_port_range: None,
                container_port: 8083,
                protocol: Protocol::Tcp
            }]
        );
    }

    #[test]
    fn every_flag_form() {
        let parsed = parse(
            "-eA=1 --env=B=2 -e C=3 -p 80 -p 8080:80/udp -p [::1]:9000:90 -p 127.0.0.1::70 \
             -v /data:/data:ro --hostname h1 -u 1000:1000 -w /srv --entrypoint /bin/sh \
             --net host -l a=b --privileged --cap-add net_admin --cap-drop CAP_MKNOD -m 64m --cpus 0.5",
        )
        .unwrap();
        assert_eq!(parsed.env.len(), 3);
        assert_eq!(parsed.ports.len(), 4);
        assert_eq!(parsed.ports[1].protocol, Protocol::Udp);
        assert_eq!(
            parsed.ports[2].host_ip,
            Some(HostIp::Ip("::1".parse().unwrap()))
        );
        assert_eq!(parsed.ports[3].host_port, None);
        assert_eq!(parsed.cap_add, vec!["NET_ADMIN"]);
        assert_eq!(parsed.cap_drop, vec!["MKNOD"]);
        assert_eq!(parsed.memory, Some(64 << 20));
        assert_eq!(parsed.nano_cpus, Some(500_000_000));
        assert!(parsed.privileged);
        assert_eq!(parsed.network.as_deref(), Some("host"));
        assert_eq!(parsed.entrypoint, Some(vec!["/bin/sh".to_string()]));
    }

    #[test]
    fn every_spelling_is_parsed_and_listed_in_the_message() {
        assert_eq!(
            Flag::supported(),
            "-e/--env, -p/--publish, -v/--volume, --volumes-from, -h/--hostname, \
             -u/--user, -w/--workdir, --entrypoint, --network/--net, -l/--label, --privileged, \
             --cap-add, --cap-drop, -m/--memory, --cpus, --log-driver, --log-opt"
        );
        for (flag, spellings) in FLAGS {
            assert!(spellings[0].starts_with("--"), "{flag:?}");
            for spelling in *spellings {
                assert_eq!(
                    Flag::parse(spelling),
                    Some((*flag, spellings[0])),
                    "{spelling}"
                );
            }
        }
        let err = parse("--restart always").unwrap_err();
        assert!(err.to_string().contains(&Flag::supported()), "{err}");
    }

    #[test]
    fn shell_syntax_is_refused_not_run() {
        for bad in [
            "-e X=1; touch /tmp/pwned",
            "$(touch /tmp/pwned)",
            "`touch /tmp/pwned`",
            "-p 80 && rm -rf /",
            "--restart always",
            "-d",
            "-e",
            "-p 99999:80",
            "-p a:b:c:d",
            "-p $OTHER_IP:80:80",
            "-e NOVALUE",
            "--",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.field.starts_with("args"), "{bad}: {err}");
        }
    }
}
