//! `rundock history NAME`: the revisions a tree keeps (`revisions.json`), as a table or
//! JSON. Reads only; specs are shown with their secrets masked.

use rundock_spec::revisions::{Revision, Revisions};
use rundock_spec::Spec;
use serde_json::{json, Value};
use std::path::Path;

/// The revisions of the service `name` (or the tree at that path) under `sv_dir`;
/// `Err` names the tree and why it has none to show.
pub fn load(name: &str, sv_dir: &Path) -> Result<Revisions, String> {
    let tree = if name.contains('/') {
        Path::new(name).to_path_buf()
    } else {
        sv_dir.join(format!("{}{name}", crate::collect::TREE_PREFIX))
    };
    if !tree.is_dir() {
        return Err(format!("no service tree {}", tree.display()));
    }
    Revisions::load(&tree)?.ok_or_else(|| {
        format!(
            "{} has no revisions yet: the module records one with each spec it installs",
            tree.display()
        )
    })
}

/// `rundock history`: prints the table (or JSON); exits 0, or 1 when the service has
/// no tree or no revisions (said on stderr).
pub fn run(name: &str, sv_dir: &Path, json: bool) -> anyhow::Result<i32> {
    let revisions = match load(name, sv_dir) {
        Ok(revisions) => revisions,
        Err(e) => {
            eprintln!("rundock history: {e}");
            return Ok(1);
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&to_json(&revisions))?);
    } else {
        print!("{}", render(&revisions));
    }
    Ok(0)
}

/// The table: newest first, the current revision marked `*`.
pub fn render(revisions: &Revisions) -> String {
    let mut rows = vec![[
        "REV".to_string(),
        "APPLIED (UTC)".into(),
        "BY".into(),
        "IMAGE".into(),
        "IMAGE ID".into(),
        "OUTCOME".into(),
    ]];
    for r in revisions.revisions.iter().rev() {
        let mark = if revisions.current == Some(r.number) {
            "*"
        } else {
            ""
        };
        let by = match &r.applied_by.controller {
            Some(controller) => format!("{}@{controller}", r.applied_by.user),
            None => r.applied_by.user.clone(),
        };
        let image = match r.rollback_of {
            Some(n) => format!("{} (rollback to {n})", r.image),
            None => r.image.clone(),
        };
        rows.push([
            format!("{}{mark}", r.number),
            rundock_spec::state::utc_timestamp(r.applied_at),
            by,
            image,
            r.image_id
                .as_deref()
                .map(short_id)
                .unwrap_or("-")
                .to_string(),
            outcome(r),
        ]);
    }
    rundock_spec::text::columns(&rows)
}

/// JSON: `{current, revisions: [...]}`, each spec parsed and masked.
pub fn to_json(revisions: &Revisions) -> Value {
    let list: Vec<Value> = revisions
        .revisions
        .iter()
        .map(|r| {
            let spec = Spec::from_json(&r.spec)
                .ok()
                .and_then(|s| serde_json::from_str::<Value>(&s.masked().to_json()).ok())
                .unwrap_or(Value::Null);
            json!({
                "number": r.number,
                "current": revisions.current == Some(r.number),
                "image": r.image,
                "image_id": r.image_id,
                "applied_at": r.applied_at,
                "applied_by": r.applied_by,
                "rollback_of": r.rollback_of,
                "outcome": r.outcome,
                "spec": spec,
            })
        })
        .collect();
    json!({ "current": revisions.current, "revisions": list })
}

fn outcome(r: &Revision) -> String {
    match &r.outcome {
        None => "-".into(),
        Some(o) => match &o.reason {
            Some(reason) => format!("{}: {reason}", o.result),
            None => o.result.clone(),
        },
    }
}

/// `sha256:0123456789ab…` → `0123456789ab`, as `docker images` shows ids.
fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rundock_spec::revisions::{AppliedBy, Outcome};

    #[test]
    fn the_table_is_newest_first_with_the_current_marked() {
        let revision = |number, image: &str, outcome: Option<Outcome>| Revision {
            number,
            spec: String::new(),
            image: image.into(),
            image_id: Some(format!("sha256:{}", "ab".repeat(32))),
            applied_at: 0,
            applied_by: AppliedBy {
                user: "deploy".into(),
                controller: Some("10.0.0.5".into()),
            },
            rollback_of: None,
            outcome,
        };
        let revisions = Revisions {
            current: Some(1),
            revisions: vec![
                revision(1, "app:v1", None),
                revision(
                    2,
                    "app:v2",
                    Some(Outcome {
                        result: "failed".into(),
                        reason: Some("health check http fails".into()),
                        at: 0,
                    }),
                ),
            ],
        };
        let table = render(&revisions);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("REV"), "{table}");
        assert!(lines[1].starts_with("2 "), "{table}");
        assert!(
            lines[1].ends_with("failed: health check http fails"),
            "{table}"
        );
        assert!(lines[2].starts_with("1*"), "{table}");
        assert!(lines[2].contains("deploy@10.0.0.5"), "{table}");
        assert!(lines[2].contains("abababababab "), "{table}");
    }
}
