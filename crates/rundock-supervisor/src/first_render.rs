//! A watch's first file exists before the container that reads it starts: when the spec
//! has a `watch`, the supervisor waits (bounded) until every template's `dest` exists.
//!
//! Why: a proxy such as nginx cannot start without the upstream file it includes, and
//! the watch sibling, started by runsvdir at the same moment, writes it only after its
//! first etcd list (plus its debounce). Started first, the proxy exits, and runsv starts
//! it again only after the supervisor's back-off; waiting here costs one poll instead.
//! A `dest` that exists (a seed file, the render of an earlier life) means no wait at
//! all. While it waits, the supervisor's state file says so (`waiting_for`, shown by
//! `rundock status`); past [`LIMIT`] it starts the container anyway, saying what the
//! watch reports, so a watch that cannot render (etcd unreachable, a template error)
//! never keeps a container down that might cope without the file.

use rundock_spec::state::{TemplateState, WatchState, WATCH_STATE_FILE};
use rundock_spec::Spec;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the container waits for the watch's first render.
pub(crate) const LIMIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// What `waiting_for` says for one missing file; the prefix marks the entries this wait
/// owns, so a run that was killed while waiting leaves nothing stale for the next.
const ENTRY_PREFIX: &str = "the watch's first render of ";

/// The watch's state file as seen from the supervisor's working directory (runsv starts
/// it in the tree's `services/container`, the watch in `services/watch`).
fn watch_state_path() -> PathBuf {
    Path::new("..").join("watch").join(WATCH_STATE_FILE)
}

/// The `dest` files of `spec`'s watch that do not exist yet.
pub(crate) fn missing(spec: &Spec) -> Vec<PathBuf> {
    spec.watch
        .iter()
        .flat_map(|watch| &watch.templates)
        .map(|template| template.dest.clone())
        .filter(|dest| !dest.exists())
        .collect()
}

/// Why the watch has not rendered `dest` yet, as its state file tells it.
fn watch_says(state: Option<&WatchState>, dest: &Path) -> String {
    let Some(state) = state else {
        return "the watch has not reported yet".into();
    };
    if !state.records_loaded {
        return "the watch has not listed the records from etcd yet".into();
    }
    let template = state
        .templates
        .iter()
        .find(|t| Path::new(&t.dest) == dest)
        .and_then(TemplateState::failing);
    template.unwrap_or_else(|| "the watch has not rendered it yet".into())
}

/// Blocking: waits until every `dest` of the watch exists or [`LIMIT`] passes, keeping
/// `waiting_for` in the state file at `state_path` up to date. Log lines go to stderr
/// with `say`.
pub(crate) fn wait(spec: &Spec, state_path: &Path, say: impl Fn(String)) {
    let mut missing_now = missing(spec);
    let started = Instant::now();
    if !missing_now.is_empty() {
        say(format!(
            "waiting up to {}s for the watch's first render of {} before starting the container",
            LIMIT.as_secs(),
            shown(&missing_now)
        ));
    }
    record(state_path, &missing_now, &say);
    while !missing_now.is_empty() {
        if started.elapsed() >= LIMIT {
            let state: Option<WatchState> = rundock_spec::state::read(&watch_state_path());
            let why = missing_now
                .iter()
                .map(|dest| format!("{}: {}", dest.display(), watch_says(state.as_ref(), dest)))
                .collect::<Vec<_>>()
                .join("; ");
            say(format!(
                "no first render after {}s ({why}); starting the container without it",
                LIMIT.as_secs()
            ));
            record(state_path, &[], &say);
            return;
        }
        std::thread::sleep(POLL);
        let now = missing(spec);
        if now != missing_now {
            missing_now = now;
            record(state_path, &missing_now, &say);
        }
    }
    if started.elapsed() >= POLL {
        say(format!(
            "the watch rendered its first files after {:.2}s; starting the container",
            started.elapsed().as_secs_f64()
        ));
    }
}

fn shown(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Puts this wait's entries into `waiting_for` (and drops stale ones), writing the
/// state file only when that changes it.
fn record(state_path: &Path, missing: &[PathBuf], say: &impl Fn(String)) {
    let previous = crate::backoff::load(state_path);
    let mut next = previous.clone();
    next.waiting_for
        .retain(|entry| !entry.starts_with(ENTRY_PREFIX));
    next.waiting_for.extend(
        missing
            .iter()
            .map(|dest| format!("{ENTRY_PREFIX}{}", dest.display())),
    );
    if next != previous {
        if let Err(e) = crate::backoff::save(state_path, &next) {
            say(format!(
                "cannot save the state in {}: {e}",
                state_path.display()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rundock_spec::state::StepState;

    #[test]
    fn the_reason_comes_from_what_the_watch_reports() {
        let dest = Path::new("/srv/front/upstreams.conf");
        assert_eq!(watch_says(None, dest), "the watch has not reported yet");
        let mut state = WatchState::default();
        assert!(watch_says(Some(&state), dest).contains("not listed the records"));
        state.records_loaded = true;
        state.templates.push(TemplateState {
            dest: dest.display().to_string(),
            render_error: Some("syntax error".into()),
            check: Some(StepState::default()),
            ..TemplateState::default()
        });
        assert_eq!(watch_says(Some(&state), dest), "render: syntax error");
        assert_eq!(
            watch_says(Some(&state), Path::new("/other")),
            "the watch has not rendered it yet"
        );
    }

    #[test]
    fn waiting_for_keeps_other_entries_and_drops_stale_ones_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut state = crate::backoff::State {
            waiting_for: vec!["db.s.example.com".into(), format!("{ENTRY_PREFIX}/old")],
            ..Default::default()
        };
        crate::backoff::save(&path, &state).unwrap();
        record(&path, &[PathBuf::from("/new")], &|_| {});
        state = crate::backoff::load(&path);
        assert_eq!(
            state.waiting_for,
            vec![
                "db.s.example.com".to_string(),
                format!("{ENTRY_PREFIX}/new")
            ]
        );
        record(&path, &[], &|_| {});
        assert_eq!(
            crate::backoff::load(&path).waiting_for,
            vec!["db.s.example.com".to_string()]
        );
    }
}
