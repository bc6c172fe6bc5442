//! The announcer's state machine: inputs (container view, probe outcomes, signals,
//! timers) in, etcd writes out.
//!
//! One loop owns all state, so there is no locking and every decision sees a consistent
//! picture: after each input it compares what should be published ([`Want`]) with what
//! is ([`Published`]) and makes one etcd call to close the gap, or schedules a retry.

use crate::docker::Watcher;
use crate::health::{Outcome, Prober};
use crate::liveness::Liveness;
use crate::report::{Report, View};
use anyhow::Context;
use rundock_docker::probe::{describe, Target};
use rundock_docker::ContainerView;
use rundock_etcd::{Client, EtcdError, Lease, Refreshed};
use rundock_runtime::log::Prefix;
use rundock_runtime::{say, Backoff, Shutdown};
use rundock_spec::skydns::record_key;
use rundock_spec::skydns::Record;
use rundock_spec::state::{self, ReplaceRequest};
use rundock_spec::{AnnounceAs, AnnounceSpec, Interfaces, Spec};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Small, so a record is back about a second after etcd answers again; a refused
/// connection a second is no load.
const BACKOFF_CAP: Duration = Duration::from_secs(1);
const ETCD_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), BACKOFF_CAP);
/// For errors a retry will not fix soon (permissions, bad credentials).
const BACKOFF_CAP_PERMANENT: Duration = Duration::from_secs(10);
/// How often an address that could not be resolved is tried again.
const ADDRESS_RETRY: Duration = Duration::from_secs(5);
/// How long the withdrawal on TERM may take before the TTL is left to do it.
const SHUTDOWN_WITHDRAW: Duration = Duration::from_secs(5);

/// What should be in etcd now.
#[derive(Debug, PartialEq, Eq)]
enum Want {
    Publish(String),
    Withdraw(String),
    /// Not known yet (Docker has not answered, probes are pending): change nothing.
    Undecided,
}

/// What is in etcd, as far as this announcer knows.
struct Published {
    lease: Lease,
    /// `None`: a record of an earlier announcer whose value is unknown.
    value: Option<String>,
}

struct Announcer {
    name: Prefix,
    announce: AnnounceSpec,
    interfaces: Interfaces,
    key: String,
    client: Client,
    view: ContainerView,
    host_addr: Option<IpAddr>,
    addr_error: Option<String>,
    addr_retry_at: Option<Instant>,
    checks: Vec<Option<bool>>,
    maintenance: bool,
    published: Option<Published>,
    etcd_error: Option<String>,
    backoff: Backoff,
    retry_at: Option<Instant>,
    refresh_at: Option<Instant>,
    target_tx: watch::Sender<Target>,
    /// What `rundock status` and `rundock metrics` read (see [`crate::report`]).
    report: Report,
    check_names: Vec<String>,
    /// `unhealthy_after`: when a container that stopped answering is replaced.
    liveness: Liveness,
    /// The supervisor's service directory, where a replacement is asked for.
    container_service: PathBuf,
}

pub(crate) async fn run(spec: Spec) -> anyhow::Result<i32> {
    let name = Prefix::new("announce", &spec.name);
    let Some(announce) = spec.announce.clone() else {
        // Nothing to announce. Idle rather than exit, so runit does not restart us in a
        // loop; the tree renderer does not create this service then anyway.
        say!(name, "the spec has nothing to announce; idling");
        wait_for_stop().await?;
        return Ok(0);
    };
    let key = record_key(&spec).expect("announce section present");
    let client = Client::new(&announce.etcd).context("etcd client")?;
    let mut stop = Shutdown::new()?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;

    let (view_tx, mut view_rx) = watch::channel(ContainerView::default());
    let (docker_tx, docker_rx) = watch::channel(None);
    let (target_tx, target_rx) = watch::channel(Target::default());
    let (health_tx, mut health_rx) = mpsc::channel::<Outcome>(16);

    let watcher = Watcher {
        name: name.clone(),
        container: spec.container.container_name.clone(),
        network: spec.container.network.clone(),
        stop_timeout: Duration::from_secs(spec.container.stop_timeout as u64 + 5),
        tx: view_tx,
    };
    tokio::spawn(watcher.run(docker_tx));
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .context("http client for health checks")?;
    for (index, check) in announce.health.iter().enumerate() {
        tokio::spawn(
            Prober {
                index,
                check: check.clone(),
                container: spec.container.container_name.clone(),
                target: target_rx.clone(),
                docker: docker_rx.clone(),
                http: http.clone(),
                tx: health_tx.clone(),
            }
            .run(),
        );
    }
    if spec.hooks.post_start.is_some() {
        tokio::spawn(
            crate::gate::PostStartGate {
                index: announce.health.len(),
                container: spec.container.container_name.clone(),
                state_file: spec
                    .tree_dir()
                    .join(rundock_spec::tree::CONTAINER_SERVICE)
                    .join(rundock_spec::state::SUPERVISOR_STATE_FILE),
                target: target_rx.clone(),
                docker: docker_rx.clone(),
                tx: health_tx.clone(),
            }
            .run(),
        );
    }
    drop(health_tx);

    say!(
        name,
        "announcing {key} via etcd {} ({}) while container {} runs{}",
        announce
            .etcd
            .endpoints
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        match announce.etcd.api {
            rundock_spec::EtcdApi::V3 => "v3",
            rundock_spec::EtcdApi::V2 => "v2",
        },
        spec.container.container_name,
        if announce.health.is_empty() {
            String::new()
        } else {
            format!(
                " and passes {}",
                announce
                    .health
                    .iter()
                    .map(describe)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    let mut check_names: Vec<String> = announce.health.iter().map(describe).collect();
    if spec.hooks.post_start.is_some() {
        check_names.push(crate::gate::NAME.into());
    }
    let container_service = std::path::absolute(spec.tree_dir())
        .unwrap_or_else(|_| spec.tree_dir())
        .join(rundock_spec::tree::CONTAINER_SERVICE);
    let mut a = Announcer {
        name,
        checks: vec![None; check_names.len()],
        liveness: Liveness::new(announce.unhealthy_after, check_names.len()),
        container_service,
        announce,
        interfaces: spec.interfaces.clone(),
        key,
        client,
        view: ContainerView::default(),
        host_addr: None,
        addr_error: None,
        addr_retry_at: None,
        maintenance: false,
        // Assume a record of an earlier run may be there: it is replaced (without a
        // gap) or deleted once the container's state is known.
        published: Some(Published {
            lease: Lease { id: None, ttl: 0 },
            value: None,
        }),
        etcd_error: None,
        backoff: ETCD_BACKOFF,
        retry_at: None,
        refresh_at: None,
        target_tx,
        // In the tree (where runsv runs us), whatever the working directory.
        report: Report::new(
            spec.tree_dir()
                .join(rundock_spec::tree::ANNOUNCE_SERVICE)
                .join(rundock_spec::state::ANNOUNCER_STATE_FILE),
            check_names.len(),
        ),
        check_names,
    };

    loop {
        a.reconcile().await;
        a.save_report_because(None);
        let wake = [a.retry_at, a.refresh_at, a.addr_retry_at]
            .into_iter()
            .flatten()
            .min();
        tokio::select! {
            biased;
            signal = stop.recv() => {
                let code = a.shutdown(signal).await;
                a.published = None;
                a.save_report_because(Some(format!("stopped ({signal})")));
                return Ok(code);
            }
            _ = usr1.recv() => {
                a.maintenance = !a.maintenance;
                say!(a.name, "maintenance {}", if a.maintenance { "on (USR1)" } else { "off (USR1)" });
            }
            _ = usr2.recv() => {
                if a.maintenance {
                    a.maintenance = false;
                    say!(a.name, "maintenance off (USR2)");
                }
            }
            changed = view_rx.changed() => {
                if changed.is_err() {
                    anyhow::bail!("the docker watcher stopped");
                }
                let view = view_rx.borrow_and_update().clone();
                a.on_view(view);
            }
            Some(outcome) = health_rx.recv() => a.on_health(outcome),
            _ = sleep_until(wake) => a.on_timer().await,
        }
    }
}

async fn wait_for_stop() -> anyhow::Result<()> {
    Shutdown::new()?.recv().await;
    Ok(())
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Announcer {
    fn addr(&self) -> Option<IpAddr> {
        match self.announce.announce_as {
            AnnounceAs::Container => self.view.ip,
            _ => self.host_addr,
        }
    }

    /// The port the record carries: the announced one, or with `announce: auto` the
    /// host port Docker chose, as the running container reports it (never guessed).
    fn port(&self) -> Option<u16> {
        if self.announce.auto_port {
            self.view
                .tcp_ports
                .get(&self.announce.container_port)
                .copied()
        } else {
            Some(self.announce.port)
        }
    }

    fn want(&self) -> Want {
        if self.maintenance {
            return Want::Withdraw("maintenance".into());
        }
        if !self.view.known {
            return Want::Undecided;
        }
        if !self.view.running {
            return Want::Withdraw("container not running".into());
        }
        if self.checks.contains(&Some(false)) {
            return Want::Withdraw("health check failing".into());
        }
        if self.checks.contains(&None) {
            return Want::Undecided;
        }
        let Some(addr) = self.addr() else {
            return Want::Undecided;
        };
        let Some(port) = self.port() else {
            return Want::Undecided;
        };
        let record = Record {
            host: addr.to_string(),
            port,
            ttl: self.announce.dns_ttl,
            priority: self.announce.priority.unwrap_or(0),
            weight: self.announce.weight.unwrap_or(0),
            text: self.announce.text.clone().unwrap_or_default(),
            ..Record::default()
        };
        Want::Publish(serde_json::to_string(&record).expect("a record serializes"))
    }

    fn on_view(&mut self, view: ContainerView) {
        if view.generation != self.view.generation {
            // A new run (or its end): earlier probe results say nothing about it.
            self.checks.iter_mut().for_each(|c| *c = None);
            self.report.new_run();
            self.liveness.new_run();
        }
        self.view = view;
        if self.view.running && self.announce.announce_as != AnnounceAs::Container {
            // Re-read on each start: addresses change (DHCP, a NIC added).
            self.resolve_host_addr();
        }
        self.send_target();
    }

    fn resolve_host_addr(&mut self) {
        match rundock_hostip::resolve(&self.announce.announce_as, &self.interfaces) {
            Ok(addr) => {
                if self.addr_error.take().is_some() || self.host_addr != Some(addr) {
                    say!(self.name, "address {addr}");
                }
                self.host_addr = Some(addr);
                self.addr_retry_at = None;
            }
            Err(e) => {
                let text = e.to_string();
                if self.addr_error.as_deref() != Some(text.as_str()) {
                    say!(self.name, "no address to announce: {text}; retrying");
                }
                self.addr_error = Some(text);
                self.addr_retry_at = Some(Instant::now() + ADDRESS_RETRY);
            }
        }
    }

    fn send_target(&self) {
        let target = Target {
            view: self.view.clone(),
            addr: self.addr(),
            auto_port_of: self
                .announce
                .auto_port
                .then_some(self.announce.container_port),
        };
        self.target_tx.send_if_modified(|t| {
            let changed = *t != target;
            *t = target;
            changed
        });
    }

    fn on_health(&mut self, outcome: Outcome) {
        if outcome.generation != self.view.generation || !self.view.running {
            return;
        }
        let pass = outcome.result.is_ok();
        self.report
            .probed(outcome.check, outcome.latency, outcome.result.clone().err());
        let slot = &mut self.checks[outcome.check];
        if *slot != Some(pass) {
            let check = &self.check_names[outcome.check];
            match &outcome.result {
                Ok(()) => say!(self.name, "health check {check} passes"),
                Err(why) => say!(self.name, "health check {check} fails: {why}"),
            }
        }
        *slot = Some(pass);
        self.liveness
            .probed(outcome.check, pass, &self.checks, Instant::now());
        if let Err(why) = &outcome.result {
            self.replace_if_hung(why);
        }
    }

    /// Asks the supervisor to replace the container when the liveness rule says so
    /// (see [`crate::liveness`]); `error` is the last failure's.
    fn replace_if_hung(&mut self, error: &str) {
        if self.maintenance {
            return;
        }
        let Some((check, rounds)) = self.liveness.failing_check() else {
            return;
        };
        let Some(id) = self.view.id.clone() else {
            return;
        };
        let check = &self.check_names[check];
        let now = Instant::now();
        if let Some(until) = self.liveness.backing_off_until(now) {
            if self.liveness.hold_back(&id) {
                say!(
                    self.name,
                    "container {} failed health check {check} {rounds} times in a row; replacing it again waits {}s (back-off)",
                    short(&id),
                    (until - now).as_secs_f64().ceil()
                );
            }
            return;
        }
        let request = ReplaceRequest {
            container: id.clone(),
            reason: format!("health check {check} failed {rounds} times in a row: {error}"),
            at: state::unix_now(),
        };
        say!(
            self.name,
            "container {} was healthy and stopped answering ({}); asking the supervisor to replace it",
            short(&id),
            request.reason
        );
        if let Err(e) = self.ask_replace(&request) {
            say!(self.name, "cannot ask for the replacement: {e}");
        }
        self.liveness.requested(request, now);
    }

    /// Writes the request beside the supervisor and sends it HUP, which makes it start
    /// again and read it.
    fn ask_replace(&self, request: &ReplaceRequest) -> std::io::Result<()> {
        state::write(&self.container_service.join(state::REPLACE_FILE), request)?;
        let output = std::process::Command::new("sv")
            .arg("hup")
            .arg(&self.container_service)
            .output()?;
        if !output.status.success() {
            return Err(std::io::Error::other(format!(
                "sv hup {} failed: {}",
                self.container_service.display(),
                String::from_utf8_lossy(&output.stdout).trim()
            )));
        }
        Ok(())
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        if self.addr_retry_at.is_some_and(|at| at <= now) {
            self.addr_retry_at = None;
            if self.view.running {
                self.resolve_host_addr();
                self.send_target();
            }
        }
        if self.retry_at.is_some_and(|at| at <= now) {
            // reconcile() runs next and retries what failed.
            self.retry_at = None;
        }
        if self.refresh_at.is_some_and(|at| at <= now) {
            self.refresh().await;
        }
    }

    /// Closes the gap between what should be published and what is.
    async fn reconcile(&mut self) {
        if self.retry_at.is_some() {
            return;
        }
        match (self.want(), &self.published) {
            (Want::Undecided, _) => {}
            (Want::Withdraw(_), None) => {}
            (Want::Publish(value), Some(p)) if p.value.as_ref() == Some(&value) => {}
            (Want::Publish(value), _) => self.publish(value).await,
            (Want::Withdraw(reason), Some(_)) => self.withdraw(&reason).await,
        }
    }

    async fn publish(&mut self, value: String) {
        let key = self.key.clone();
        match self.client.announce(&key, &value, self.announce.ttl).await {
            Ok(lease) => {
                self.etcd_ok();
                // The put replaced the value under the new lease; the old lease (ours
                // or a predecessor's) is revoked without deleting the key, so the name
                // never stops resolving.
                if let Some(old) = self.published.take() {
                    if let Err(e) = self.client.revoke(&old.lease).await {
                        say!(self.name, "cannot revoke the old lease (it expires): {e}");
                    }
                }
                match lease.id {
                    Some(id) => say!(
                        self.name,
                        "announced {key} = {value} (lease {id:x}, ttl {}s)",
                        lease.ttl
                    ),
                    None => say!(self.name, "announced {key} = {value} (ttl {}s)", lease.ttl),
                }
                self.published = Some(Published {
                    lease,
                    value: Some(value),
                });
                self.report.refreshed();
                self.refresh_at = Some(Instant::now() + self.interval());
            }
            Err(e) => self.etcd_failed(e),
        }
    }

    async fn withdraw(&mut self, reason: &str) {
        let Some(published) = &self.published else {
            return;
        };
        let lease = published.lease.clone();
        let ours = published.value.is_some();
        match self.client.withdraw(Some(&lease), &self.key).await {
            Ok(()) => {
                self.etcd_ok();
                self.published = None;
                self.refresh_at = None;
                if ours {
                    say!(self.name, "withdrawn {} ({reason})", self.key);
                }
            }
            Err(e) => self.etcd_failed(e),
        }
    }

    async fn refresh(&mut self) {
        let key = self.key.clone();
        let ttl = self.announce.ttl;
        let Some(Published {
            lease,
            value: Some(value),
        }) = &mut self.published
        else {
            self.refresh_at = None;
            return;
        };
        match self.client.refresh(lease, &key, value, ttl).await {
            Ok(refreshed) => {
                if refreshed == Refreshed::Reannounced {
                    say!(
                        self.name,
                        "announced {key} again (its lease or TTL had run out)"
                    );
                }
                self.etcd_ok();
                self.report.refreshed();
                self.refresh_at = Some(Instant::now() + self.interval());
            }
            Err(e) => {
                self.etcd_failed(e);
                // Keep trying to refresh on the retry schedule.
                self.refresh_at = self.retry_at;
            }
        }
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(self.announce.interval.max(1) as u64)
    }

    fn etcd_ok(&mut self) {
        if self.etcd_error.take().is_some() {
            say!(
                self.name,
                "etcd answers again ({})",
                self.client.current_endpoint()
            );
        }
        self.backoff.reset();
        self.retry_at = None;
    }

    fn etcd_failed(&mut self, e: EtcdError) {
        self.report.etcd_failed();
        if self.etcd_error.is_none() {
            say!(self.name, "{e}; retrying");
        }
        self.etcd_error = Some(e.to_string());
        let cap = if e.is_transient() {
            BACKOFF_CAP
        } else {
            BACKOFF_CAP_PERMANENT
        };
        self.retry_at = Some(Instant::now() + self.backoff.next_delay_within(cap));
    }

    /// Writes the state file if something in it changed (see [`crate::report`]).
    fn save_report_because(&mut self, reason: Option<String>) {
        let want = self.want();
        let view = View {
            published: self.published.as_ref().and_then(|p| p.value.as_deref()),
            withdrawn_because: reason.or(match want {
                Want::Withdraw(reason) => Some(reason),
                Want::Publish(_) if self.published.is_none() => Some("not yet published".into()),
                _ => None,
            }),
            maintenance: self.maintenance,
            checks: &self.checks,
            descriptions: &self.check_names,
            etcd_error: self.etcd_error.as_deref(),
            replacements: self.liveness.count,
            last_replacement: self.liveness.last.as_ref(),
            replace_backoff_until: self.liveness.not_before_unix,
        };
        if let Some(e) = self.report.save(view) {
            say!(
                self.name,
                "cannot write the state file for rundock status: {e}"
            );
        }
    }

    /// TERM/INT: delete the record and revoke the lease, then exit 0.
    async fn shutdown(&mut self, signal: &str) -> i32 {
        let lease = self.published.as_ref().map(|p| p.lease.clone());
        let result = tokio::time::timeout(
            SHUTDOWN_WITHDRAW,
            self.client.withdraw(lease.as_ref(), &self.key),
        )
        .await;
        match result {
            Ok(Ok(())) => say!(self.name, "withdrawn {} ({signal}); exiting", self.key),
            Ok(Err(e)) => say!(
                self.name,
                "cannot withdraw {} ({e}); its TTL removes it; exiting",
                self.key
            ),
            Err(_) => say!(
                self.name,
                "etcd did not answer; the TTL of {} removes it; exiting",
                self.key
            ),
        }
        0
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
