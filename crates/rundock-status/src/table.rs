//! The terminal form of `rundock status`: one line per service, columns aligned like
//! `docker ps`, the reason last so a long one does not push the others apart.

use crate::model::ServiceStatus;

const HEADER: [&str; 10] = [
    "SERVICE",
    "STATE",
    "CONTAINER",
    "IMAGE",
    "UP",
    "RESTARTS",
    "EXIT",
    "HEALTH",
    "RECORD",
    "REASON",
];

/// The table for `statuses`, header first, each line ending in a newline.
pub fn render(statuses: &[ServiceStatus]) -> String {
    let mut rows = vec![HEADER.map(String::from)];
    rows.extend(statuses.iter().map(row));
    rundock_spec::text::columns(&rows)
}

fn row(s: &ServiceStatus) -> [String; 10] {
    let dash = || "-".to_string();
    let c = &s.container;
    let health = if s.health.is_empty() {
        dash()
    } else {
        let passing = s.health.iter().filter(|c| c.pass == Some(true)).count();
        let latency = s
            .health
            .iter()
            .filter_map(|c| c.latency_secs)
            .fold(None::<f64>, |max, l| Some(max.map_or(l, |m| m.max(l))));
        match latency {
            Some(l) => format!("{passing}/{} ({})", s.health.len(), millis(l)),
            None => format!("{passing}/{}", s.health.len()),
        }
    };
    let record = match &s.record {
        None => dash(),
        Some(r) if r.error.is_some() => "etcd error".into(),
        Some(r) => match r.value.as_ref().and_then(|v| v.as_object()) {
            Some(v) => {
                let host = v.get("host").and_then(|h| h.as_str()).unwrap_or("");
                match v.get("port").and_then(|p| p.as_u64()) {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_string(),
                }
            }
            None if r.present => "present".into(),
            None => dash(),
        },
    };
    [
        s.name.clone(),
        s.state.to_string(),
        c.id.as_deref()
            .map_or_else(dash, |id| id.chars().take(12).collect()),
        c.image.clone().unwrap_or_else(dash),
        c.uptime_secs.map_or_else(dash, duration),
        c.restarts.to_string(),
        c.exit_code.map_or_else(dash, |code| code.to_string()),
        health,
        record,
        s.reason.clone(),
    ]
}

/// `5s`, `3m12s`, `2h05m`, `3d04h`: two units at most, like `docker ps` is read.
pub fn duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

fn millis(secs: f64) -> String {
    if secs < 0.01 {
        format!("{:.1}ms", secs * 1000.0)
    } else {
        format!("{:.0}ms", secs * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_docker_ps() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(192), "3m12s");
        assert_eq!(duration(7500), "2h05m");
        assert_eq!(duration(3 * 86_400 + 4 * 3600 + 5), "3d04h");
        assert_eq!(millis(0.0021), "2.1ms");
        assert_eq!(millis(0.25), "250ms");
    }
}
