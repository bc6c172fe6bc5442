//! The audit trail in etcd: the module's entries sent (one plain put each, keyed so a
//! resend is harmless) and `rundock history NAME --all-hosts`, which reads the newest of
//! them from every host, bounded by a count.

use rundock_etcd::Client;
use rundock_runtime::current_thread;
use rundock_spec::trail::{service_prefix, TrailEntry};
use rundock_spec::{EtcdSpec, Spec};
use std::path::Path;
use std::time::Duration;

/// How many entries `--all-hosts` shows unless told.
pub const DEFAULT_LIMIT: usize = 50;
/// The most entries `--all-hosts` reads (`--limit` is refused above it), which bounds
/// what one read costs etcd and this process.
pub const MAX_LIMIT: usize = 1000;

/// Bounds each etcd call of a module call, so an unreachable etcd costs seconds.
const SEND_LIMIT: Duration = Duration::from_secs(10);

/// Puts `entries` in order into the etcd of `spec`; how many it took and why not the rest.
pub fn send(spec: &Spec, entries: &[TrailEntry]) -> (usize, Option<String>) {
    let Some(announce) = &spec.announce else {
        return (0, Some("the service is not announced: no etcd".into()));
    };
    let attempt = || -> anyhow::Result<(usize, Option<String>)> {
        let client = Client::new(&announce.etcd)?;
        let rt = current_thread()?;
        let mut sent = 0;
        for entry in entries {
            let value = serde_json::to_string(entry)?;
            let put = rt.block_on(async {
                tokio::time::timeout(SEND_LIMIT, client.put(&entry.key(), &value)).await
            });
            match put {
                Ok(Ok(())) => sent += 1,
                Ok(Err(e)) => return Ok((sent, Some(e.to_string()))),
                Err(_) => {
                    return Ok((
                        sent,
                        Some(format!(
                            "etcd did not answer within {} s",
                            SEND_LIMIT.as_secs()
                        )),
                    ))
                }
            }
        }
        Ok((sent, None))
    };
    attempt().unwrap_or_else(|e| (0, Some(format!("{e:#}"))))
}

/// The newest `limit` entries of service `name` in `domain`, newest first; entries that
/// are not rundock's are skipped.
pub fn read(
    etcd: &EtcdSpec,
    domain: &str,
    name: &str,
    limit: usize,
) -> anyhow::Result<Vec<TrailEntry>> {
    let client = Client::new(etcd)?;
    let prefix = service_prefix(domain, name);
    let entries = current_thread()?
        .block_on(async { tokio::time::timeout(SEND_LIMIT, client.newest(&prefix, limit)).await });
    let entries = match entries {
        Ok(result) => result?,
        Err(_) => anyhow::bail!("etcd did not answer within {} s", SEND_LIMIT.as_secs()),
    };
    Ok(entries
        .iter()
        .filter_map(|e| serde_json::from_str(&e.value).ok())
        .collect())
}

/// `12-char id` of `sha256:...`, or the reference.
fn short(image: &rundock_spec::trail::TrailImage) -> String {
    match &image.image_id {
        Some(id) => {
            let hex = id.strip_prefix("sha256:").unwrap_or(id);
            let hex = &hex[..hex.len().min(12)];
            if image.image.starts_with("sha256:") {
                hex.to_string()
            } else {
                format!("{} ({hex})", image.image)
            }
        }
        None => image.image.clone(),
    }
}

/// The trail as a table, newest first: when, host, who, revision, from → to, outcome.
pub fn render(entries: &[TrailEntry]) -> String {
    let mut rows = vec![[
        "WHEN (UTC)".to_string(),
        "HOST".into(),
        "BY".into(),
        "REV".into(),
        "FROM → TO".into(),
        "OUTCOME".into(),
    ]];
    for e in entries {
        let by = match &e.controller {
            Some(c) => format!("{}@{c}", e.user),
            None => e.user.clone(),
        };
        let rev = match e.rollback_of {
            Some(n) => format!("{} (rollback to {n})", e.revision),
            None => e.revision.to_string(),
        };
        let from = e.from.as_ref().map_or_else(|| "-".to_string(), short);
        let outcome = match &e.reason {
            Some(reason) => format!("{}: {reason}", e.outcome),
            None => e.outcome.clone(),
        };
        rows.push([
            rundock_spec::state::utc_timestamp(e.at_ms / 1000),
            e.host_label.clone(),
            by,
            rev,
            format!("{from} → {}", short(&e.to)),
            outcome,
        ]);
    }
    rundock_spec::text::columns(&rows)
}

/// `rundock history NAME --all-hosts`: the trail from the etcd and domain of the
/// service's tree on this host. Exit 0, or 1 with the reason on stderr.
pub fn run(name: &str, sv_dir: &Path, limit: usize, json: bool) -> anyhow::Result<i32> {
    let tree = if name.contains('/') {
        Path::new(name).to_path_buf()
    } else {
        sv_dir.join(format!("docker-{name}"))
    };
    let spec = match Spec::load(&tree.join(rundock_spec::SPEC_FILE)) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("rundock history --all-hosts: the trail is read from the etcd of the service's tree here: {e}");
            return Ok(1);
        }
    };
    let Some(announce) = &spec.announce else {
        eprintln!(
            "rundock history --all-hosts: {} is not announced, so it has no trail in etcd (rundock history {} shows this host's revisions)",
            spec.name, spec.name
        );
        return Ok(1);
    };
    let entries = match read(&announce.etcd, &announce.domain, &spec.name, limit) {
        Ok(entries) => entries,
        Err(e) => {
            eprintln!("rundock history --all-hosts: {e:#}");
            return Ok(1);
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
    } else {
        print!("{}", render(&entries));
    }
    Ok(0)
}
