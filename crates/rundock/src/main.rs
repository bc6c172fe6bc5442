//! `rundock`: one binary for every role, so Ansible ships one file and the run scripts
//! have a runner on any host.
//!
//! Called by Ansible as `rundock <args-file>` it is the module; otherwise a subcommand
//! runs one part of a service tree (`supervise`, `announce`, `watch`, `stop-tree`, `log`),
//! the DNS responder (`dns`), or shows the host's services (`status`, `metrics`); `watch`
//! also runs standalone on a JSON watch spec.

use anyhow::Result;
use clap::{Parser, Subcommand};
use rundock_spec::Spec;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "rundock",
    version,
    about = "Containers that stay up and can be found by name"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Keep the tree's container running (the tree's services/container/run).
    Supervise { tree: PathBuf },
    /// Publish the tree's SkyDNS record while its container is healthy.
    Announce { tree: PathBuf },
    /// Stop a tree in order: record, drain, container (the tree's control/t).
    StopTree { tree: PathBuf },
    /// Run svlogd for one stream of a tree (the siblings' log/run).
    Log { tree: PathBuf, stream: String },
    /// Answer DNS queries for service names from the SkyDNS records in etcd.
    Dns(Box<rundock_dns::DnsOptions>),
    /// Render templates from the live records of names, check, reload (a tree's
    /// services/watch/run, or a JSON watch spec file).
    Watch {
        /// A service tree (its spec.json's watch) or a JSON file holding a watch spec.
        path: PathBuf,
    },
    /// Show every rundock service on this host: runit, container, health, record.
    Status(StatusOptions),
    /// Serve every service's status as Prometheus metrics on GET /metrics.
    Metrics {
        /// The address to serve on, e.g. 127.0.0.1:9323 (nothing is bound by default).
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Where the service trees live [default: the module's sv_dir default].
        #[arg(long)]
        sv_dir: Option<PathBuf>,
    },
    /// Run as the Ansible module on an args file (what Ansible does).
    Module { args_file: PathBuf },
}

#[derive(clap::Args)]
struct StatusOptions {
    /// Service names (or tree paths); every service under --sv-dir without any.
    names: Vec<String>,
    /// Print JSON (a list of service objects) instead of a table.
    #[arg(long)]
    json: bool,
    /// Where the service trees live [default: the module's sv_dir default].
    #[arg(long)]
    sv_dir: Option<PathBuf>,
}

impl Cli {
    fn has_subcommand(word: &str) -> bool {
        use clap::CommandFactory;
        word == "help" || Cli::command().find_subcommand(word).is_some()
    }
}

/// The container's side of stop-tree, through the supervisor's Docker client.
struct DockerSide;

impl rundock_runit::ContainerSide for DockerSide {
    fn run_hook(&self, container: &str, hook: &rundock_spec::Hook) -> Result<()> {
        rundock_supervisor::run_hook(container, hook)
    }

    fn container_pid(&self, spec: &Spec) -> Result<Option<u32>> {
        rundock_supervisor::container_pid(spec)
    }
}

struct ServiceHooks;

impl rundock_module::Hooks for ServiceHooks {
    fn remove_containers(&self, spec: &Spec) -> Result<usize> {
        rundock_supervisor::remove_service_containers(
            &spec.name,
            &spec.host_label,
            &spec.container.container_name,
            spec.container.stop_timeout,
        )
    }

    fn withdraw_record(&self, spec: &Spec) -> Result<()> {
        rundock_announcer::withdraw_record(spec)
    }

    fn status(&self, spec: &Spec) -> Option<serde_json::Value> {
        rundock_status::status_of(spec)
            .ok()
            .and_then(|s| serde_json::to_value(s).ok())
    }

    fn await_update(&self, tree_dir: &std::path::Path, spec: &Spec) -> Result<()> {
        let path = tree_dir
            .join(rundock_spec::tree::CONTAINER_SERVICE)
            .join(rundock_supervisor::UPDATE_FILE);
        let hash = spec.container_hash();
        // The new container's checks, the record's move, the old one's drain and stop.
        let limit = spec.start_first.map_or(60, |s| s.timeout)
            + spec.drain
            + spec.container.stop_timeout
            + 60;
        let deadline = Instant::now() + Duration::from_secs(limit.into());
        while Instant::now() < deadline {
            match rundock_supervisor::UpdateOutcome::load(&path) {
                Some(outcome) if outcome.spec == hash && outcome.switched => return Ok(()),
                Some(outcome) if outcome.spec == hash => anyhow::bail!("{}", outcome.message),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        anyhow::bail!(
            "the supervisor of {} reported no outcome of the update within {limit} s (see {})",
            spec.name,
            rundock_runit::log_dir(spec, "container").display()
        )
    }

    fn wait_ready(&self, spec: &Spec, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut running = false;
        while Instant::now() < deadline {
            // Errors while things come up (Docker busy, etcd restarting) are retried.
            running = rundock_supervisor::container_is_current(spec).unwrap_or(false);
            if running && rundock_announcer::record_present(spec).unwrap_or(false) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        if running {
            anyhow::bail!(
                "the container of {} runs but its record was not announced within {} s (failing health check? see {})",
                spec.name,
                timeout.as_secs(),
                rundock_runit::log_dir(spec, "announce").display()
            )
        }
        anyhow::bail!(
            "the container of {} was not running the current spec within {} s (see {})",
            spec.name,
            timeout.as_secs(),
            rundock_runit::log_dir(spec, "container").display()
        )
    }
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Ansible's call: exactly one argument, the path of its args file (a subcommand
    // name wins over a file of the same name in the working directory).
    if args.len() == 2
        && !args[1].to_string_lossy().starts_with('-')
        && !Cli::has_subcommand(&args[1].to_string_lossy())
        && Path::new(&args[1]).is_file()
    {
        return module(Path::new(&args[1]));
    }
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Module { args_file } => return module(&args_file),
        Command::Supervise { tree } => load(&tree).and_then(rundock_supervisor::run),
        Command::Announce { tree } => load(&tree).and_then(rundock_announcer::run),
        Command::StopTree { tree } => rundock_runit::stop_tree(&tree, &DockerSide).map(|_| 0),
        Command::Log { tree, stream } => {
            rundock_runit::exec_svlogd(&tree, &stream).map(|never| match never {})
        }
        Command::Dns(options) => rundock_dns::run(*options).map(|_| 0),
        Command::Watch { path } => rundock_watch::load(&path)
            .and_then(rundock_watch::run)
            .map(|_| 0),
        Command::Status(options) => status(options),
        Command::Metrics { listen, sv_dir } => {
            rundock_status::serve::run(listen, sv_dir.unwrap_or_else(sv_dir_default)).map(|_| 0)
        }
    };
    match outcome {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("rundock: {e:#}");
            ExitCode::from(111)
        }
    }
}

fn sv_dir_default() -> PathBuf {
    PathBuf::from(
        rundock_module::options::option("sv_dir")
            .default_str()
            .expect("sv_dir has a default"),
    )
}

fn status(options: StatusOptions) -> Result<i32> {
    let sv_dir = options.sv_dir.unwrap_or_else(sv_dir_default);
    let trees = rundock_status::trees(&sv_dir, &options.names)?;
    let statuses = rundock_status::statuses(&trees)?;
    if options.json {
        println!("{}", serde_json::to_string_pretty(&statuses)?);
    } else {
        print!("{}", rundock_status::table::render(&statuses));
    }
    Ok(0)
}

fn load(tree: &Path) -> Result<Spec> {
    Spec::load(&tree.join(rundock_spec::SPEC_FILE)).map_err(anyhow::Error::msg)
}

fn module(args_file: &Path) -> ExitCode {
    let (result, code) = rundock_module::run_module(args_file, &ServiceHooks);
    println!("{result}");
    ExitCode::from(code as u8)
}
