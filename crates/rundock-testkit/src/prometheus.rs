//! A Prometheus (Debian's `prometheus`) on a loopback port of its own, scraping one
//! target every second, with its instant-query API; stopped on drop.

use crate::SpawnQuiet;
use crate::{free_port, run};
use std::process::{Child, Command};

/// A running Prometheus; stopped on drop.
pub struct Prometheus {
    child: Child,
    /// The HTTP API's port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `target` (`HOST:PORT`) every second; `scrape_timeout` (e.g. `1s`) when
    /// Prometheus's default (10 s) is too long for the test.
    pub fn start(target: &str, scrape_timeout: Option<&str>) -> Prometheus {
        let dir = tempfile::tempdir().expect("prometheus dir");
        let port = free_port();
        let config = dir.path().join("prometheus.yml");
        let timeout = scrape_timeout
            .map(|t| format!("  scrape_timeout: {t}\n"))
            .unwrap_or_default();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n{timeout}  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: rundock\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .spawn_quiet("start prometheus (Debian prometheus)");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    /// The value of an instant query's single sample, if there is one.
    pub fn query(&self, expr: &str) -> Option<f64> {
        let out = run(
            "curl",
            &[
                "-sf",
                "-m",
                "2",
                "--get",
                "--data-urlencode",
                &format!("query={expr}"),
                &format!("http://127.0.0.1:{}/api/v1/query", self.port),
            ],
        );
        let body: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let result = body["data"]["result"].as_array()?;
        let [sample] = result.as_slice() else {
            return None;
        };
        sample["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
