//! A Docker registry (Debian's `docker-registry`, distribution 2.x) on a loopback port of
//! its own, for tests of image pulls. Docker treats 127.0.0.0/8 registries as insecure
//! by default, so plain HTTP works with no daemon configuration. Stopped on drop.

use crate::SpawnQuiet;
use crate::{docker, free_port, run, wait_for};
use std::process::{Child, Command};
use std::time::Duration;

/// A running registry; stopped on drop.
pub struct Registry {
    child: Child,
    /// The HTTP port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry with storage in a temp dir and waits until it answers.
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().expect("registry dir");
        let port = free_port();
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).expect("registry storage dir");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )
        .expect("write registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .spawn_quiet("start docker-registry (Debian docker-registry)");
        let registry = Registry {
            child,
            port,
            _dir: dir,
        };
        let url = format!("http://127.0.0.1:{port}/v2/");
        let ready = wait_for(Duration::from_secs(20), || {
            run("curl", &["-sf", "-m", "1", &url])
                .status
                .success()
                .then_some(())
        });
        assert!(ready.is_some(), "docker-registry did not answer on {url}");
        registry
    }

    /// `127.0.0.1:PORT`, the registry part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Tags the local image `source` as `HOST/repo_tag` and pushes it; returns the
    /// pushed reference.
    pub fn push(&self, source: &str, repo_tag: &str) -> String {
        let reference = format!("{}/{repo_tag}", self.host());
        let out = docker(&["tag", source, &reference]);
        assert!(
            out.status.success(),
            "docker tag: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = docker(&["push", &reference]);
        assert!(
            out.status.success(),
            "docker push {reference}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        reference
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
