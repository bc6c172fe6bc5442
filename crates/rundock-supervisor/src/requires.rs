//! `requires`: before the container starts, wait until every required service has a
//! record in etcd (any key at or below its name, as a SkyDNS server would answer it).
//!
//! The wait polls every [`POLL`] (one range request per required name), so the
//! container starts within about that long after the last record appears; a watch
//! would save requests only while waiting, which is rare and short. It logs once per
//! change of what is missing (or of the etcd error), writes what it waits for into the
//! supervisor's state file for `rundock status`, and after the timeout starts anyway
//! or fails the run, as configured.

use rundock_etcd::Client;
use rundock_spec::{skydns, Requires};
use std::time::Duration;

pub(crate) const POLL: Duration = Duration::from_millis(250);
/// One request's limit, so an etcd that does not answer is seen as such.
const REQUEST_LIMIT: Duration = Duration::from_secs(2);

/// The names in `requires` that have no record now; `Err` when etcd did not answer.
pub(crate) async fn missing(
    client: &Client,
    prefix: &str,
    requires: &Requires,
) -> Result<Vec<String>, String> {
    let mut missing = Vec::new();
    for name in &requires.names {
        let path = skydns::name_to_path(prefix, name);
        match tokio::time::timeout(REQUEST_LIMIT, client.list(&path)).await {
            Ok(Ok(snapshot)) if !snapshot.entries.is_empty() => {}
            Ok(Ok(_)) => missing.push(name.clone()),
            Ok(Err(e)) => return Err(format!("etcd: {e}")),
            Err(_) => {
                return Err(format!(
                    "etcd did not answer within {}s",
                    REQUEST_LIMIT.as_secs()
                ))
            }
        }
    }
    Ok(missing)
}

/// The log line for a new state of the wait, `None` when nothing changed.
pub(crate) fn describe_change(
    last: Option<&Result<Vec<String>, String>>,
    now: &Result<Vec<String>, String>,
) -> Option<String> {
    if last == Some(now) {
        return None;
    }
    Some(match now {
        Ok(missing) if missing.is_empty() => "every required service is announced".into(),
        Ok(missing) => format!("waiting for {} to be announced", missing.join(", ")),
        Err(e) => format!("cannot check requires: {e}; still waiting"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_are_logged() {
        let waiting: Result<Vec<String>, String> = Ok(vec!["db.s.example.com".into()]);
        assert_eq!(
            describe_change(None, &waiting).unwrap(),
            "waiting for db.s.example.com to be announced"
        );
        assert_eq!(describe_change(Some(&waiting), &waiting), None);
        let down = Err("etcd: refused".to_string());
        assert!(describe_change(Some(&waiting), &down)
            .unwrap()
            .contains("refused"));
        assert!(describe_change(Some(&down), &Ok(vec![]))
            .unwrap()
            .contains("every"));
    }
}
