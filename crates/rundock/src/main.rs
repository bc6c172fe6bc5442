//! `rundock`: one binary for every role, so Ansible ships one file and the run scripts
//! have a runner on any host.
//!
//! Called by Ansible as `rundock <args-file>` it is the module (the info module when the
//! task called `rundock_info`); otherwise a subcommand runs one part of a service tree
//! (`supervise`, `announce`, `watch`, `stop-tree`, `log`), the DNS responder (`dns`), or
//! shows the host's services (`status`, `metrics`), a service's revisions (`history`)
//! and output (`logs`); `watch` also runs standalone on a JSON watch spec.

#[cfg(test)]
mod cli_docs;

use anyhow::Result;
use clap::{Parser, Subcommand};
use rundock_spec::Spec;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "rundock",
    version,
    about = "Containers that stay up and can be found by name",
    after_help = "The commands a service tree's run scripts call (supervise, announce, stop-tree, \
                  log) and `module` are not listed; `rundock COMMAND --help` describes each.\n\
                  Exit status: 0 on success, 1 when the service named does not exist, 2 for \
                  a bad command line, 111 when the command fails (runit's convention); \
                  `rundock status --help` gives its own."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The plumbing commands are hidden from `--help` (a tree's run scripts call them, not
/// people) but stay callable under the same names, which installed trees exec.
#[derive(Subcommand)]
enum Command {
    /// Keep the tree's container running (the tree's services/container/run).
    #[command(hide = true)]
    Supervise {
        /// The service tree, e.g. /etc/sv/docker-web (its spec.json is read).
        tree: PathBuf,
    },
    /// Publish the tree's SkyDNS record while its container is healthy.
    #[command(hide = true)]
    Announce {
        /// The service tree, e.g. /etc/sv/docker-web (its spec.json is read).
        tree: PathBuf,
    },
    /// Stop a tree in order: record, drain, container (the tree's control/t).
    #[command(hide = true)]
    StopTree {
        /// The service tree, e.g. /etc/sv/docker-web (its spec.json is read).
        tree: PathBuf,
    },
    /// Run svlogd for one stream of a tree (the siblings' log/run).
    #[command(hide = true)]
    Log {
        /// The service tree, e.g. /etc/sv/docker-web (its spec.json is read).
        tree: PathBuf,
        /// The sibling whose output this is: container, announce or watch; the logs go
        /// to LOG_DIR/NAME/STREAM.
        stream: String,
    },
    /// Answer DNS queries for service names from the SkyDNS records in etcd.
    Dns(Box<rundock_dns::DnsOptions>),
    /// Render templates from the live records of names, check, reload (a tree's
    /// services/watch/run, or a JSON watch spec file).
    Watch {
        /// A service tree (its spec.json's watch) or a JSON file holding a watch spec.
        path: PathBuf,
    },
    /// Show every rundock service on this host: runit, container, health, record.
    ///
    /// Exits 0 when every service shown is up, 3 when one is not (as `systemctl
    /// is-active`), 1 when a named service does not exist, 2 for a bad command line.
    Status(StatusOptions),
    /// List the revisions of a service's spec kept on this host, newest first (the
    /// current one marked *): image and image id, when, by whom, how it ended.
    History(HistoryOptions),
    /// Print a service's output as svlogd keeps it: the last lines, and with -f what
    /// follows.
    Logs(rundock_status::logs::LogsOptions),
    /// Serve every service's status as Prometheus metrics on GET /metrics.
    Metrics {
        /// The address to serve on, e.g. 127.0.0.1:9323 (required: nothing is bound
        /// unless asked).
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Where the service trees live (the module's sv_dir default).
        #[arg(long, default_value = sv_dir_default())]
        sv_dir: PathBuf,
    },
    /// Run as the Ansible module on an args file (what Ansible does).
    #[command(hide = true)]
    Module {
        /// The JSON file of module arguments Ansible writes (`rundock ARGS_FILE` is the
        /// same call).
        args_file: PathBuf,
    },
}

#[derive(clap::Args)]
struct StatusOptions {
    /// Service names (or tree paths); every service under --sv-dir without any.
    names: Vec<String>,
    /// Print JSON (a list of service objects) instead of a table.
    #[arg(long)]
    json: bool,
    /// Where the service trees live (the module's sv_dir default).
    #[arg(long, default_value = sv_dir_default())]
    sv_dir: PathBuf,
}

#[derive(clap::Args)]
struct HistoryOptions {
    /// The service name (or its tree's path).
    name: String,
    /// Print JSON (`{current, revisions}`, specs with secrets masked) instead of a table.
    #[arg(long)]
    json: bool,
    /// Where the service trees live (the module's sv_dir default).
    #[arg(long, default_value = sv_dir_default())]
    sv_dir: PathBuf,
    /// Show the audit trail of every host instead (announced services): who changed
    /// what, where, when, from which image to which and how it ended, read from the
    /// etcd of the service's tree here.
    #[arg(long)]
    all_hosts: bool,
    /// With --all-hosts: how many of the newest entries to read (1-1000).
    #[arg(long, default_value_t = rundock_releases::trail::DEFAULT_LIMIT as u64,
          value_parser = clap::value_parser!(u64).range(1..=rundock_releases::trail::MAX_LIMIT as u64))]
    limit: u64,
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

    fn check_image(&self, spec: &Spec, may_pull: bool) -> Result<rundock_module::ImageCheck> {
        let check = rundock_supervisor::check_image(spec, may_pull)?;
        Ok(rundock_module::ImageCheck {
            id: check.id,
            running: check.running,
        })
    }

    fn check_watch(
        &self,
        watch: &rundock_spec::watch::WatchSpec,
    ) -> std::result::Result<(), String> {
        rundock_watch::preflight(watch)
    }

    fn take_etcd_lock(
        &self,
        spec: &Spec,
        record: &str,
        timeout: Duration,
        mode: rundock_module::lock::EtcdLockMode<'_>,
    ) -> std::result::Result<
        Option<rundock_module::lock::EtcdHeld>,
        rundock_module::lock::EtcdLockError,
    > {
        rundock_releases::module_lock::take(spec, record, timeout, mode)
    }

    fn release_play_lock(&self, spec: &Spec, token: &str) -> std::result::Result<bool, String> {
        rundock_releases::module_lock::release(spec, token)
    }

    fn send_trail(
        &self,
        spec: &Spec,
        entries: &[rundock_spec::trail::TrailEntry],
    ) -> (usize, Option<String>) {
        rundock_releases::trail::send(spec, entries)
    }

    fn await_update(&self, tree_dir: &std::path::Path, spec: &Spec) -> Result<()> {
        rundock_status::rollout::await_update(tree_dir, spec)
    }

    fn wait_ready(&self, spec: &Spec, timeout: Duration) -> Result<()> {
        rundock_status::rollout::wait_ready(spec, timeout)
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
        Command::Supervise { tree } => load(&tree).and_then(|spec| {
            // A proxy cannot start without the upstream file its watch writes.
            rundock_supervisor::wait_for_first_render(&spec);
            rundock_supervisor::run(spec)
        }),
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
        Command::History(o) if o.all_hosts => {
            rundock_releases::trail::run(&o.name, &o.sv_dir, o.limit as usize, o.json)
        }
        Command::History(o) => rundock_status::history::run(&o.name, &o.sv_dir, o.json),
        Command::Logs(o) => rundock_status::logs::run(&o),
        Command::Metrics { listen, sv_dir } => {
            rundock_status::serve::run(listen, sv_dir).map(|_| 0)
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

/// The module's `sv_dir` default, from its option table (the one source).
fn sv_dir_default() -> &'static str {
    rundock_module::options::option("sv_dir")
        .default_str()
        .expect("sv_dir has a default")
}

/// Exit codes as `systemctl is-active` has them: 0 when every service shown is up, 3
/// when one is not; 1 when a named service does not exist or the trees cannot be read.
fn status(options: StatusOptions) -> Result<i32> {
    let sv_dir = options.sv_dir;
    let trees = match rundock_status::trees(&sv_dir, &options.names) {
        Ok(trees) => trees,
        Err(e) => {
            eprintln!("rundock status: {e:#}");
            return Ok(STATUS_UNKNOWN);
        }
    };
    let statuses = rundock_status::statuses(&trees)?;
    if options.json {
        println!("{}", serde_json::to_string_pretty(&statuses)?);
    } else {
        print!("{}", rundock_status::table::render(&statuses));
    }
    Ok(if statuses.iter().all(|s| s.state == "up") {
        0
    } else {
        STATUS_NOT_UP
    })
}

/// `rundock status`: a service shown is not up.
const STATUS_NOT_UP: i32 = 3;
/// `rundock status`: a named service does not exist, or the trees cannot be read.
const STATUS_UNKNOWN: i32 = 1;

fn load(tree: &Path) -> Result<Spec> {
    Spec::load(&tree.join(rundock_spec::SPEC_FILE)).map_err(anyhow::Error::msg)
}

fn module(args_file: &Path) -> ExitCode {
    let (result, code) = match rundock_status::info::info_call(args_file) {
        Some(args) => rundock_status::info::run_module(&args),
        None => rundock_module::run_module(args_file, &ServiceHooks),
    };
    println!("{result}");
    ExitCode::from(code as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// `command` and every subcommand below it, with the path of names that reaches it.
    fn walk(command: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
        out.push((path.clone(), command.clone()));
        for sub in command.get_subcommands() {
            walk(sub, format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_argument_of_every_subcommand_has_help() {
        Cli::command().debug_assert();
        let mut commands = Vec::new();
        walk(&Cli::command(), "rundock".into(), &mut commands);
        assert!(commands.len() > 9, "{} commands", commands.len());
        let mut missing = Vec::new();
        for (path, command) in &commands {
            if command.get_about().is_none() && path != "rundock" {
                missing.push(format!("{path}: no about"));
            }
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if ["help", "version"].contains(&id) {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path}: {id}"));
                }
            }
        }
        assert!(missing.is_empty(), "without help: {missing:?}");
    }

    #[test]
    fn plumbing_is_hidden_from_help_but_callable() {
        let help = Cli::command().render_help().to_string();
        for plumbing in ["supervise", "announce", "stop-tree", "log", "module"] {
            let command = Cli::command();
            let sub = command.find_subcommand(plumbing).unwrap();
            assert!(sub.is_hide_set(), "{plumbing} is listed");
            assert!(
                !help
                    .lines()
                    .any(|l| l.trim_start().starts_with(&format!("{plumbing} "))),
                "{plumbing} in --help:\n{help}"
            );
            assert!(Cli::has_subcommand(plumbing));
        }
        for user in ["dns", "watch", "status", "history", "metrics"] {
            assert!(
                help.lines()
                    .any(|l| l.trim_start().starts_with(&format!("{user} "))),
                "{user} not in --help:\n{help}"
            );
        }
        let cli = Cli::try_parse_from(["rundock", "stop-tree", "/etc/sv/docker-web"]).unwrap();
        assert!(matches!(cli.command, Command::StopTree { .. }));
    }

    #[test]
    fn the_sv_dir_default_is_shown_as_its_value() {
        let mut command = Cli::command();
        for sub in ["status", "history", "metrics"] {
            let help = command
                .find_subcommand_mut(sub)
                .unwrap()
                .render_help()
                .to_string();
            let shown = format!("[default: {}]", sv_dir_default());
            assert!(help.contains(&shown), "rundock {sub} --help:\n{help}");
        }
        let cli = Cli::try_parse_from(["rundock", "status"]).unwrap();
        let Command::Status(options) = cli.command else {
            panic!("not status")
        };
        assert_eq!(options.sv_dir, PathBuf::from(sv_dir_default()));
    }
}
