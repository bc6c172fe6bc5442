//! The responder alone, without the rest of the `rundock` binary: what the benchmark
//! (`benches/dns.sh`) runs. `dns-server --domain s.example.com --listen 127.0.0.1:5353`.

use clap::Parser;

#[derive(Parser)]
#[command(about = "SkyDNS-compatible DNS responder over etcd (rundock dns)")]
struct Cli {
    #[command(flatten)]
    dns: rundock_dns::DnsOptions,
}

fn main() -> anyhow::Result<()> {
    rundock_dns::run(Cli::parse().dns)
}
