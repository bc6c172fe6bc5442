//! What must be announced before the container starts: `requires` (names qualified
//! with the record's `domain` when they have no dot), `requires_timeout` and
//! `requires_on_timeout`.

use super::choice::choice;
use super::coerce::Params;
use rundock_spec::error::Result;
use rundock_spec::validate;
use rundock_spec::{OnTimeout, Requires};

choice!(OnTimeout { Start => "start", Fail => "fail" });

/// `None` without names (an empty list too).
pub(super) fn requires(p: &mut Params, domain: &str) -> Result<Option<Requires>> {
    let timeout = p.seconds("requires_timeout", 1, 86_400)?;
    let on_timeout = p.choice_or_default::<OnTimeout>("requires_on_timeout")?;
    let Some(names) = p.words("requires")? else {
        return Ok(None);
    };
    let names = names
        .iter()
        .map(|name| {
            let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
            let name = if name.contains('.') {
                name
            } else {
                format!("{name}.{domain}")
            };
            validate::domain("requires", &name)
        })
        .collect::<Result<Vec<_>>>()?;
    if names.is_empty() {
        return Ok(None);
    }
    Ok(Some(Requires {
        names,
        timeout,
        on_timeout,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::request;
    use serde_json::{json, Value};

    #[test]
    fn requires_names_are_qualified_with_the_domain_and_need_announce() {
        let base = json!({"state": "present", "name": "grafana", "image": "grafana:1",
                          "announce": 3000, "domain": "s.example.com"});
        let with = |extra: Value| {
            let mut args = base.clone();
            for (k, v) in extra.as_object().unwrap() {
                args[k] = v.clone();
            }
            request(args)
        };
        let parsed =
            with(json!({"requires": "influxdb, db.other.example.com.", "requires_timeout": 30}))
                .unwrap();
        let requires = parsed.spec.unwrap().requires.unwrap();
        assert_eq!(
            requires.names,
            ["influxdb.s.example.com", "db.other.example.com"]
        );
        assert_eq!(requires.timeout, 30);
        assert_eq!(requires.on_timeout, rundock_spec::OnTimeout::Start);
        let fail = with(json!({"requires": ["influxdb"], "requires_on_timeout": "fail"})).unwrap();
        assert_eq!(
            fail.spec.unwrap().requires.unwrap().on_timeout,
            rundock_spec::OnTimeout::Fail
        );
        let bad = with(json!({"requires": ["in flux"]}))
            .unwrap_err()
            .to_string();
        assert!(bad.contains("requires"), "{bad}");
        let mut unannounced = base.clone();
        unannounced.as_object_mut().unwrap().remove("announce");
        unannounced.as_object_mut().unwrap().remove("domain");
        unannounced["requires"] = json!(["influxdb"]);
        let needs = request(unannounced).unwrap_err().to_string();
        assert!(
            needs.contains("requires") && needs.contains("announce"),
            "{needs}"
        );
    }
}
