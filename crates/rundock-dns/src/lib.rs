//! `rundock dns`: a SkyDNS / CoreDNS-etcd compatible DNS responder for single hosts and
//! tests. It keeps the records under an etcd prefix in memory (list + watch, see
//! [`sync`]) and answers UDP and TCP queries for the configured domains from that copy
//! ([`answer()`], [`server`]); other names are refused, or forwarded
//! with `--forward` for loopback clients and the `--allow` networks.
//!
//! This file owns the command line ([`DnsOptions`]) and the process lifecycle ([`run`],
//! [`serve`]).

#![warn(missing_docs)]

pub mod answer;
pub mod instances;
pub mod records;
pub mod server;
pub mod sync;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use anyhow::{bail, Context};
use rundock_spec::{EtcdApi, EtcdSpec};

pub use answer::{answer, Zones};
pub use records::{Entry, RecordSet};

/// Options of `rundock dns`.
#[derive(Debug, Clone, clap::Args)]
pub struct DnsOptions {
    /// etcd endpoints, comma-separated.
    #[arg(
        long = "etcd",
        value_name = "URLS",
        value_delimiter = ',',
        default_value = rundock_spec::DEFAULT_ETCD_ENDPOINT
    )]
    pub etcd: Vec<rundock_spec::EtcdEndpoint>,
    /// etcd API: v3 (JSON gateway) or v2 (legacy keys API).
    #[arg(long, value_name = "API", default_value = "v3", value_parser = ["v3", "v2"])]
    pub etcd_api: String,
    /// Key prefix the records live under.
    #[arg(long, default_value = rundock_spec::DEFAULT_PREFIX)]
    pub prefix: String,
    /// A domain to answer for (repeatable), e.g. s.prod.example.com.
    #[arg(long = "domain", value_name = "DOMAIN", required = true)]
    pub domains: Vec<String>,
    /// Address to listen on, UDP and TCP.
    #[arg(long, default_value = "127.0.0.1:5353")]
    pub listen: SocketAddr,
    /// TTL of answers from records with neither their own ttl nor an etcd TTL
    /// (CoreDNS's default; rundock's announcer always writes one).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub ttl: u32,
    /// DNS server (IP or IP:PORT) for names outside the domains; without it they are REFUSED.
    #[arg(long, value_name = "ADDR", value_parser = parse_forward)]
    pub forward: Option<SocketAddr>,
    /// A client network forwarded for (repeatable), e.g. 10.0.0.0/8. Loopback clients
    /// always are; other clients get in-zone answers only (REFUSED for other names).
    #[arg(long = "allow", value_name = "CIDR")]
    pub allow: Vec<server::Network>,
    /// Forwarded queries in flight at most; beyond it a forward is REFUSED at once.
    #[arg(long, value_name = "N", default_value_t = server::DEFAULT_MAX_FORWARDS,
          value_parser = parse_limit)]
    pub max_forwards: usize,
    /// Open TCP connections at most; beyond it the oldest idle one is closed.
    #[arg(long, value_name = "N", default_value_t = server::DEFAULT_MAX_TCP_CONNECTIONS,
          value_parser = parse_limit)]
    pub max_tcp_connections: usize,
    /// CA bundle to verify etcd's certificate.
    #[arg(long, value_name = "FILE")]
    pub etcd_ca_file: Option<PathBuf>,
    /// Client certificate for etcd (with --etcd-key-file).
    #[arg(long, value_name = "FILE", requires = "etcd_key_file")]
    pub etcd_cert_file: Option<PathBuf>,
    /// Client key for etcd (with --etcd-cert-file).
    #[arg(long, value_name = "FILE", requires = "etcd_cert_file")]
    pub etcd_key_file: Option<PathBuf>,
    /// etcd user (with --etcd-password-file).
    #[arg(long, value_name = "USER", requires = "etcd_password_file")]
    pub etcd_username: Option<String>,
    /// File holding the etcd password (a file, so it never shows in the process list).
    #[arg(long, value_name = "FILE", requires = "etcd_username")]
    pub etcd_password_file: Option<PathBuf>,
}

impl DnsOptions {
    /// Options for `domains` with every other value at its default.
    pub fn new(domains: Vec<String>) -> DnsOptions {
        DnsOptions {
            etcd: vec!["http://127.0.0.1:2379".parse().unwrap()],
            etcd_api: "v3".into(),
            prefix: "/skydns".into(),
            domains,
            listen: ([127, 0, 0, 1], 5353).into(),
            ttl: 300,
            forward: None,
            allow: Vec::new(),
            max_forwards: server::DEFAULT_MAX_FORWARDS,
            max_tcp_connections: server::DEFAULT_MAX_TCP_CONNECTIONS,
            etcd_ca_file: None,
            etcd_cert_file: None,
            etcd_key_file: None,
            etcd_username: None,
            etcd_password_file: None,
        }
    }

    /// The etcd connection settings, in the form the announcer's spec carries them.
    pub fn etcd_spec(&self) -> anyhow::Result<EtcdSpec> {
        let api = match self.etcd_api.as_str() {
            "v3" => EtcdApi::V3,
            "v2" => EtcdApi::V2,
            other => bail!("--etcd-api {other:?}: expected v3 or v2"),
        };
        if self.etcd.is_empty() {
            bail!("--etcd needs at least one endpoint");
        }
        let password = match &self.etcd_password_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading --etcd-password-file {}", path.display()))?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
            ),
            None => None,
        };
        Ok(EtcdSpec {
            endpoints: self.etcd.clone(),
            api,
            prefix: self.prefix.clone(),
            ca_file: self.etcd_ca_file.clone(),
            cert_file: self.etcd_cert_file.clone(),
            key_file: self.etcd_key_file.clone(),
            username: self.etcd_username.clone(),
            password,
        })
    }
}

/// `--forward` takes `IP` (port 53) or `IP:PORT`.
fn parse_forward(value: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(addr);
    }
    value
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("{value:?} is not IP or IP:PORT"))
}

/// `--max-forwards` and `--max-tcp-connections`: a whole number from 1 to 65535 (each
/// forward or connection holds a file descriptor; more than that cannot be open anyway).
fn parse_limit(value: &str) -> Result<usize, String> {
    value
        .parse::<u16>()
        .ok()
        .filter(|n| *n >= 1)
        .map(usize::from)
        .ok_or_else(|| format!("{value:?} is not a whole number from 1 to 65535"))
}

/// Runs the responder until TERM or INT; blocking, on a current-thread runtime.
pub fn run(opts: DnsOptions) -> anyhow::Result<()> {
    rundock_runtime::current_thread()?.block_on(async {
        let stop = rundock_runtime::Shutdown::new()
            .context("installing the TERM and INT handlers")?
            .first();
        serve(
            opts,
            |addr| eprintln!("rundock dns: listening on {addr} (udp, tcp)"),
            stop,
        )
        .await
    })
}

/// Binds, calls `ready` with the bound address (the real port when `--listen` asked for
/// port 0), then serves until `stop` completes. For embedding and tests.
pub async fn serve(
    opts: DnsOptions,
    ready: impl FnOnce(SocketAddr),
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let zones = Zones::new(&opts.domains, opts.ttl).context("--domain")?;
    let spec = opts.etcd_spec()?;
    let client = rundock_etcd::Client::new(&spec).context("etcd client")?;
    let sockets = server::Sockets::bind(opts.listen)
        .await
        .with_context(|| format!("listening on {}", opts.listen))?;
    let shared: sync::Shared =
        Arc::new(RwLock::new(sync::State::new(RecordSet::new(&spec.prefix))));
    let limits = server::Limits {
        max_forwards: opts.max_forwards,
        max_tcp_connections: opts.max_tcp_connections,
        ..server::Limits::default()
    };
    let responder = Arc::new(server::Responder::new(
        zones,
        shared.clone(),
        opts.forward,
        server::ClientNetworks::new(opts.allow.clone()),
        limits,
    ));
    ready(sockets.local_addr()?);
    tokio::select! {
        _ = sync::keep_fresh(client, spec.prefix.clone(), shared) => {}
        _ = server::serve(sockets, responder) => {}
        _ = stop => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        dns: DnsOptions,
    }

    #[test]
    fn options_parse_with_defaults() {
        let cli = Cli::try_parse_from(["dns", "--domain", "s.prod.example.com"]).unwrap();
        let opts = cli.dns;
        assert_eq!(opts.domains, ["s.prod.example.com"]);
        assert_eq!(opts.listen, "127.0.0.1:5353".parse().unwrap());
        assert_eq!(opts.ttl, 300);
        assert!(opts.allow.is_empty());
        assert_eq!(opts.max_forwards, server::DEFAULT_MAX_FORWARDS);
        assert_eq!(
            opts.max_tcp_connections,
            server::DEFAULT_MAX_TCP_CONNECTIONS
        );
        let spec = opts.etcd_spec().unwrap();
        assert_eq!(spec.endpoints[0].as_str(), "http://127.0.0.1:2379");
        assert_eq!(spec.api, EtcdApi::V3);
        assert_eq!(spec.prefix, "/skydns");
    }

    #[test]
    fn options_parse_everything() {
        let dir = tempfile_dir();
        let pw = dir.join("pw");
        std::fs::write(&pw, "secret\n").unwrap();
        let cli = Cli::try_parse_from([
            "dns",
            "--domain=a.example",
            "--domain=b.example",
            "--etcd=http://10.0.0.1:2379,http://10.0.0.2:2379",
            "--etcd-api=v2",
            "--prefix=/dns",
            "--listen=[::1]:53",
            "--ttl=60",
            "--forward=10.0.0.53",
            "--allow=10.0.0.0/8",
            "--allow=fd00::/8",
            "--max-forwards=64",
            "--max-tcp-connections=32",
            "--etcd-username=u",
            &format!("--etcd-password-file={}", pw.display()),
        ])
        .unwrap();
        let opts = cli.dns;
        assert_eq!(opts.forward, Some("10.0.0.53:53".parse().unwrap()));
        assert_eq!(
            opts.allow,
            ["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()]
        );
        assert_eq!((opts.max_forwards, opts.max_tcp_connections), (64, 32));
        let spec = opts.etcd_spec().unwrap();
        assert_eq!(spec.endpoints.len(), 2);
        assert_eq!(spec.api, EtcdApi::V2);
        assert_eq!(spec.password.as_deref(), Some("secret"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn options_are_checked() {
        assert!(
            Cli::try_parse_from(["dns"]).is_err(),
            "--domain is required"
        );
        assert!(Cli::try_parse_from(["dns", "--domain=a", "--etcd-api=v4"]).is_err());
        assert!(Cli::try_parse_from(["dns", "--domain=a", "--forward=nope"]).is_err());
        assert!(Cli::try_parse_from(["dns", "--domain=a", "--allow=10.0.0.0/40"]).is_err());
        assert!(Cli::try_parse_from(["dns", "--domain=a", "--max-forwards=0"]).is_err());
        assert!(Cli::try_parse_from(["dns", "--domain=a", "--max-tcp-connections=70000"]).is_err());
        assert!(Cli::try_parse_from(["dns", "--domain=a", "--etcd-cert-file=c"]).is_err());
        assert!(Cli::try_parse_from(["dns", "--domain=a", "--etcd-username=u"]).is_err());
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rundock-dns-opts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
