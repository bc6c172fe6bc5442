//! `rundock metrics`: the statuses of a host's services in Prometheus's text exposition
//! format (0.0.4), served over HTTP on the one address the operator chooses.
//!
//! Why an endpoint of our own, run as a runit service by the host role, rather than
//! files for node_exporter's textfile collector: the numbers are read at scrape time
//! (no writer loop, no file older than its scrape, nothing stale after a crash of the
//! writer), a host needs nothing but rundock (many runit hosts run no node_exporter),
//! and Prometheus's own `up` for the target tells a dead exporter from a dead service.
//! The cost is one Docker inspect per service per scrape (see `benches/metrics.sh`);
//! etcd is not asked (the announcer's state file says whether it announced and when it
//! last refreshed), so a scrape never waits on etcd.
//!
//! Every series carries `service` and `host` (the spec's host label); health series add
//! `check`, watch series `dest` (the rendered file). Counters end in `_total`, times are seconds.

use crate::model::ServiceStatus;
use std::fmt::Write;

struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
}

const FAMILIES: [Family; 16] = [
    Family {
        name: "rundock_container_restarts_total",
        kind: "counter",
        help: "Times the service's container exited on its own and was started again.",
    },
    Family {
        name: "rundock_container_failed_starts_total",
        kind: "counter",
        help: "Attempts to start the service's container that failed before it ran (image, create, start, post_start).",
    },
    Family {
        name: "rundock_service_state",
        kind: "gauge",
        help: "1 for the state the service is in (the state label, as rundock status shows it), 0 for the others.",
    },
    Family {
        name: "rundock_log_dropped_lines_total",
        kind: "counter",
        help: "Lines of the container's output dropped because the log did not keep up (a full disk, a stalled svlogd).",
    },
    Family {
        name: "rundock_container_replacements_total",
        kind: "counter",
        help: "Containers replaced because they stopped answering after they had been healthy (since the announcer started).",
    },
    Family {
        name: "rundock_container_up",
        kind: "gauge",
        help: "1 if the service's container is running.",
    },
    Family {
        name: "rundock_container_last_exit_code",
        kind: "gauge",
        help: "Exit code of the container's last exit.",
    },
    Family {
        name: "rundock_health_check_up",
        kind: "gauge",
        help: "1 if the health check's last probe passed, 0 if it failed.",
    },
    Family {
        name: "rundock_health_check_latency_seconds",
        kind: "gauge",
        help: "Duration of the health check's last probe.",
    },
    Family {
        name: "rundock_announced",
        kind: "gauge",
        help: "1 if the announcer has the service's record in etcd.",
    },
    Family {
        name: "rundock_etcd_errors_total",
        kind: "counter",
        help: "Failed etcd requests of the service's announcer since it started.",
    },
    Family {
        name: "rundock_refresh_age_seconds",
        kind: "gauge",
        help: "Seconds since the announcer last put or kept alive the record.",
    },
    Family {
        name: "rundock_backoff_delay_seconds",
        kind: "gauge",
        help: "Delay before the container's next start after a crash loop (0: none).",
    },
    Family {
        name: "rundock_watch_up",
        kind: "gauge",
        help: "1 if the watch runs and the template's last render, check and reload succeeded (dest label: the rendered file).",
    },
    Family {
        name: "rundock_watch_last_render_age_seconds",
        kind: "gauge",
        help: "Seconds since the watch last brought the template's file up to date with the records.",
    },
    Family {
        name: "rundock_watch_instances",
        kind: "gauge",
        help: "Instances in the template's last successful render.",
    },
];

/// The exposition text for `statuses`.
pub fn render(statuses: &[ServiceStatus]) -> String {
    let mut out = String::with_capacity(256 + statuses.len() * 900);
    for family in &FAMILIES {
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind);
        for s in statuses {
            let labels = format!(
                "service=\"{}\",host=\"{}\"",
                escape(&s.name),
                escape(&s.host_label)
            );
            let mut sample = |extra: &str, value: f64| {
                let _ = writeln!(out, "{}{{{labels}{extra}}} {value}", family.name);
            };
            match family.name {
                "rundock_container_restarts_total" => sample("", s.container.restarts as f64),
                "rundock_container_failed_starts_total" => {
                    sample("", s.container.failed_starts as f64)
                }
                "rundock_service_state" => {
                    for state in crate::model::STATES {
                        sample(&format!(",state=\"{state}\""), bool_value(s.state == state));
                    }
                }
                "rundock_log_dropped_lines_total" => sample("", s.log.dropped_lines as f64),
                "rundock_container_replacements_total" if s.record.is_some() => {
                    sample("", s.replacements.count as f64)
                }
                "rundock_container_up" => sample("", bool_value(s.container.running)),
                "rundock_container_last_exit_code" => {
                    if let Some(code) = s.container.exit_code {
                        sample("", code as f64)
                    }
                }
                "rundock_health_check_up" => {
                    for check in &s.health {
                        if let Some(pass) = check.pass {
                            sample(&check_label(&check.check), bool_value(pass));
                        }
                    }
                }
                "rundock_health_check_latency_seconds" => {
                    for check in &s.health {
                        if let Some(latency) = check.latency_secs {
                            sample(&check_label(&check.check), latency);
                        }
                    }
                }
                "rundock_announced" if s.record.is_some() => sample("", bool_value(s.announced)),
                "rundock_etcd_errors_total" if s.record.is_some() => {
                    sample("", s.etcd.errors as f64)
                }
                "rundock_refresh_age_seconds" => {
                    if let Some(age) = s.etcd.last_refresh_secs_ago {
                        sample("", age as f64);
                    }
                }
                "rundock_backoff_delay_seconds" => sample("", s.backoff.delay_secs),
                "rundock_watch_up" => {
                    if let Some(watch) = &s.watch {
                        for t in &watch.templates {
                            let up = watch.running && t.state.failing().is_none();
                            sample(&dest_label(&t.state.dest), bool_value(up));
                        }
                        if watch.templates.is_empty() {
                            // Not running, or not reported yet: nothing follows.
                            sample(",dest=\"\"", 0.0);
                        }
                    }
                }
                "rundock_watch_last_render_age_seconds" => {
                    for t in s.watch.iter().flat_map(|w| &w.templates) {
                        if let Some(age) = t.last_render_secs_ago {
                            sample(&dest_label(&t.state.dest), age as f64);
                        }
                    }
                }
                "rundock_watch_instances" => {
                    for t in s.watch.iter().flat_map(|w| &w.templates) {
                        if t.state.last_render_at.is_some() {
                            sample(&dest_label(&t.state.dest), t.state.instances as f64);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    out
}

fn dest_label(dest: &str) -> String {
    format!(",dest=\"{}\"", escape(dest))
}

fn check_label(check: &str) -> String {
    format!(",check=\"{}\"", escape(check))
}

fn bool_value(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{assemble, ContainerFacts, Facts};
    use rundock_spec::state::{AnnouncerState, CheckState, SupervisorState};

    #[test]
    fn every_family_has_help_and_type_and_series_carry_service_and_host() {
        let running = crate::runit::parse_status(
            &{
                let mut b = (4_611_686_018_427_387_914u64 + 50).to_be_bytes().to_vec();
                b.extend_from_slice(&[0, 0, 0, 0, 9, 0, 0, 0, 0, b'u', 0, 1]);
                b
            },
            false,
        );
        let facts = Facts {
            watches: true,
            runit_watch: running.clone(),
            watch: Some(rundock_spec::state::WatchState {
                started_at: 80,
                records_loaded: true,
                templates: vec![rundock_spec::state::TemplateState {
                    dest: "/etc/u.conf".into(),
                    last_render_at: Some(95),
                    instances: 3,
                    ..Default::default()
                }],
            }),
            name: "web".into(),
            host_label: "node-1".into(),
            now: 100,
            announces: true,
            record_key: Some("/k".into()),
            runit_announce: crate::runit::parse_status(
                &{
                    let mut b = (4_611_686_018_427_387_914u64 + 50).to_be_bytes().to_vec();
                    b.extend_from_slice(&[0, 0, 0, 0, 9, 0, 0, 0, 0, b'u', 0, 1]);
                    b
                },
                false,
            ),
            supervisor: Some(SupervisorState {
                exits: 4,
                last_exit_code: Some(137),
                ..Default::default()
            }),
            announcer: Some(AnnouncerState {
                checks: vec![CheckState {
                    check: "http :80/\"x\"".into(),
                    pass: Some(true),
                    error: None,
                    latency_secs: Some(0.0025),
                }],
                etcd_errors: 2,
                last_refresh_at: Some(90),
                ..Default::default()
            }),
            container: Ok(Some(ContainerFacts {
                running: true,
                ..Default::default()
            })),
            ..Facts::default()
        };
        let text = render(&[assemble(&facts)]);
        for family in &FAMILIES {
            assert!(text.contains(&format!("# TYPE {} {}\n", family.name, family.kind)));
        }
        for line in [
            r#"rundock_container_restarts_total{service="web",host="node-1"} 4"#,
            r#"rundock_container_up{service="web",host="node-1"} 1"#,
            r#"rundock_container_last_exit_code{service="web",host="node-1"} 137"#,
            r#"rundock_health_check_up{service="web",host="node-1",check="http :80/\"x\""} 1"#,
            r#"rundock_health_check_latency_seconds{service="web",host="node-1",check="http :80/\"x\""} 0.0025"#,
            r#"rundock_announced{service="web",host="node-1"} 0"#,
            r#"rundock_etcd_errors_total{service="web",host="node-1"} 2"#,
            r#"rundock_refresh_age_seconds{service="web",host="node-1"} 10"#,
            r#"rundock_backoff_delay_seconds{service="web",host="node-1"} 0"#,
            r#"rundock_watch_up{service="web",host="node-1",dest="/etc/u.conf"} 1"#,
            r#"rundock_watch_last_render_age_seconds{service="web",host="node-1",dest="/etc/u.conf"} 5"#,
            r#"rundock_watch_instances{service="web",host="node-1",dest="/etc/u.conf"} 3"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in:\n{text}");
        }
    }
}
