//! The I/O edge: gathers [`Facts`] for service trees from runsv's files, the state files
//! of the supervisor, the announcer, the watch and `stop-tree`, Docker (one inspect per service)
//! and etcd (one read per announced service), then hands them to [`assemble`]. The
//! services are read concurrently: a scrape of fifty costs about one Docker round trip
//! more than a scrape of one, not fifty.
//!
//! Nothing here fails the whole call because one part is down: Docker or etcd
//! unreachable becomes an `error` field of the services it concerns, so `rundock status`
//! works best exactly when something is wrong.

use crate::model::{assemble, ContainerFacts, Facts, RecordFacts, ServiceStatus};
use crate::runit;
use anyhow::Context;
use bollard::Docker;
use futures_util::future::join_all;
use rundock_spec::revisions::Revisions;
use rundock_spec::state::{
    self, ANNOUNCER_STATE_FILE, DRAIN_STATE_FILE, OUTPUT_STATE_FILE, SUPERVISOR_STATE_FILE,
    WATCH_STATE_FILE,
};
use rundock_spec::tree::{ANNOUNCE_SERVICE, CONTAINER_SERVICE, WATCH_SERVICE};
use rundock_spec::{skydns, Spec, SPEC_FILE};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one Docker or etcd request may take before it is reported as an error.
const REQUEST_LIMIT: Duration = Duration::from_secs(3);
/// Trees are `docker-NAME` directories holding a spec.
pub(crate) const TREE_PREFIX: &str = "docker-";

/// The service trees under `sv_dir`, sorted; with `selectors`, only those named (a
/// service name, or a tree's path).
pub fn trees(sv_dir: &Path, selectors: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    if !selectors.is_empty() {
        return selectors
            .iter()
            .map(|s| {
                let tree = if s.contains('/') {
                    PathBuf::from(s)
                } else {
                    sv_dir.join(format!("{TREE_PREFIX}{s}"))
                };
                if tree.join(SPEC_FILE).is_file() {
                    Ok(tree)
                } else {
                    anyhow::bail!(
                        "no rundock service {s}: {} holds no {SPEC_FILE}",
                        tree.display()
                    )
                }
            })
            .collect();
    }
    let entries =
        std::fs::read_dir(sv_dir).with_context(|| format!("cannot read {}", sv_dir.display()))?;
    let mut trees: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(TREE_PREFIX))
                && p.join(SPEC_FILE).is_file()
        })
        .collect();
    trees.sort();
    Ok(trees)
}

/// Blocking: the status of every tree in `trees`.
pub fn statuses(trees: &[PathBuf]) -> anyhow::Result<Vec<ServiceStatus>> {
    rundock_runtime::current_thread()?.block_on(statuses_async(trees))
}

/// The status of every tree in `trees`, in order.
pub async fn statuses_async(trees: &[PathBuf]) -> anyhow::Result<Vec<ServiceStatus>> {
    let docker = connect().await;
    let all = trees.iter().map(|tree| facts(tree, docker.as_ref()));
    Ok(join_all(all).await.iter().map(assemble).collect())
}

/// The statuses for a scrape: like [`statuses_async`] but without the etcd read (the
/// announcer's state file says whether it announced), so etcd never slows a scrape.
pub async fn statuses_for_metrics(trees: &[PathBuf]) -> Vec<ServiceStatus> {
    let docker = connect().await;
    let all = trees
        .iter()
        .map(|tree| facts_with(tree, docker.as_ref(), false));
    join_all(all).await.iter().map(assemble).collect()
}

/// Blocking: the status of `spec`'s service (for the module's `service.status`).
pub fn status_of(spec: &Spec) -> anyhow::Result<ServiceStatus> {
    let tree = spec.tree_dir();
    rundock_runtime::current_thread()?.block_on(async {
        let docker = connect().await;
        Ok(assemble(&facts(&tree, docker.as_ref()).await))
    })
}

/// The local Docker daemon, or why it cannot be reached.
pub async fn connect() -> Result<Docker, String> {
    rundock_docker::connect(REQUEST_LIMIT)
        .await
        .map_err(|e| format!("{e:#}"))
}

/// Everything known about the tree at `tree`, now.
pub async fn facts(tree: &Path, docker: Result<&Docker, &String>) -> Facts {
    facts_with(tree, docker, true).await
}

/// [`facts`]; `read_etcd: false` takes the record's presence from the announcer's
/// state file instead of etcd.
async fn facts_with(tree: &Path, docker: Result<&Docker, &String>, read_etcd: bool) -> Facts {
    let now = state::unix_now();
    let dir_name = tree
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let spec = match Spec::load(&tree.join(SPEC_FILE)) {
        Ok(spec) => spec,
        Err(e) => {
            return Facts {
                name: dir_name.trim_start_matches(TREE_PREFIX).to_string(),
                tree: tree.to_path_buf(),
                now,
                spec_error: Some(e),
                ..Facts::default()
            }
        }
    };
    let container_dir = tree.join(CONTAINER_SERVICE);
    let announce_dir = tree.join(ANNOUNCE_SERVICE);
    let record_key = skydns::record_key(&spec);
    let container = match docker {
        Ok(docker) => inspect(docker, &spec.container.container_name).await,
        Err(e) => Err(e.clone()),
    };
    let announcer: Option<state::AnnouncerState> =
        state::read(&announce_dir.join(ANNOUNCER_STATE_FILE));
    let record = match (&spec.announce, &record_key) {
        (Some(announce), Some(key)) if read_etcd => read_record(&announce.etcd, key).await,
        (Some(_), Some(_)) => Ok(announcer
            .as_ref()
            .and_then(|a| a.published.clone())
            .map(|value| RecordFacts { value, ttl: None })),
        _ => Ok(None),
    };
    Facts {
        name: spec.name.clone(),
        host_label: spec.host_label.clone(),
        tree: tree.to_path_buf(),
        now,
        spec_error: None,
        linked: std::fs::symlink_metadata(spec.link_path()).is_ok(),
        container_name: spec.container.container_name.clone(),
        announces: spec.announce.is_some(),
        record_key,
        runit_tree: Some(runit::read(tree)),
        runit_container: Some(runit::read(&container_dir)),
        runit_announce: spec.announce.as_ref().map(|_| runit::read(&announce_dir)),
        supervisor: state::read(&container_dir.join(SUPERVISOR_STATE_FILE)),
        output: state::read(&container_dir.join(OUTPUT_STATE_FILE)),
        announcer,
        drain: state::read(&tree.join(DRAIN_STATE_FILE)),
        container,
        record,
        watches: spec.watch.is_some(),
        runit_watch: spec
            .watch
            .as_ref()
            .map(|_| runit::read(&tree.join(WATCH_SERVICE))),
        watch: spec
            .watch
            .as_ref()
            .and_then(|_| state::read(&tree.join(WATCH_SERVICE).join(WATCH_STATE_FILE))),
        revision: Revisions::load(tree).ok().flatten().and_then(|r| r.current),
    }
}

async fn inspect(docker: &Docker, name: &str) -> Result<Option<ContainerFacts>, String> {
    let inspected = match rundock_docker::container::inspect(docker, name).await {
        Ok(Some(c)) => c,
        Ok(None) => return Ok(None),
        Err(e) => return Err(format!("{e:#}")),
    };
    let state = inspected.state.unwrap_or_default();
    Ok(Some(ContainerFacts {
        id: inspected.id.unwrap_or_default(),
        image: inspected.config.and_then(|c| c.image).unwrap_or_default(),
        image_id: inspected.image.unwrap_or_default(),
        running: state.running.unwrap_or(false),
        status: state.status.map(|s| s.to_string()).unwrap_or_default(),
        started_at: state.started_at.as_deref().and_then(parse_rfc3339),
        exit_code: state.exit_code,
    }))
}

async fn read_record(
    etcd: &rundock_spec::EtcdSpec,
    key: &str,
) -> Result<Option<RecordFacts>, String> {
    let client = rundock_etcd::Client::new(etcd).map_err(|e| e.to_string())?;
    match tokio::time::timeout(REQUEST_LIMIT, client.get(key)).await {
        Ok(Ok(entry)) => Ok(entry.map(|e| RecordFacts {
            value: e.value,
            ttl: e.ttl,
        })),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", REQUEST_LIMIT.as_secs())),
    }
}

/// Docker's `2026-11-22T19:30:01.123456789Z` as Unix seconds; `None` for its "never"
/// (`0001-01-01T00:00:00Z`) and anything else it does not write.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let (date, time) = text.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    if year < 1970 {
        return None;
    }
    let time = time.strip_suffix('Z')?;
    let time = time.split('.').next()?;
    let mut t = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (t.next()??, t.next()??, t.next()??);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hour * 3600 + minute * 60 + second).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_times_parse_and_never_is_none() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2026-11-22T19:30:01.123456789Z"),
            Some(1_795_375_801)
        );
        assert_eq!(parse_rfc3339("2000-02-29T12:00:00Z"), Some(951_825_600));
        assert_eq!(parse_rfc3339("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn trees_are_docker_dirs_with_a_spec_and_selectors_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["docker-b", "docker-a", "other", "docker-nospec"] {
            std::fs::create_dir_all(dir.path().join(name)).unwrap();
        }
        for name in ["docker-b", "docker-a", "other"] {
            std::fs::write(dir.path().join(name).join(SPEC_FILE), "{}").unwrap();
        }
        let found = trees(dir.path(), &[]).unwrap();
        assert_eq!(
            found,
            [dir.path().join("docker-a"), dir.path().join("docker-b")]
        );
        assert_eq!(
            trees(dir.path(), &["b".into()]).unwrap(),
            [dir.path().join("docker-b")]
        );
        let missing = trees(dir.path(), &["nospec".into()])
            .unwrap_err()
            .to_string();
        assert!(missing.contains("no rundock service nospec"), "{missing}");
    }
}
