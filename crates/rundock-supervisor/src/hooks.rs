//! Running a lifecycle hook ([`rundock_spec::Hook`]): in the container through
//! `docker exec`, or on the host as a child process, bounded by its timeout. The
//! order hooks run in is documented in [`rundock_spec::hooks`]; `post_start` is run by
//! the supervisor, `pre_stop` and `post_stop` by the tree's `stop-tree`.
//!
//! The hook's output goes to the caller's stderr, so svlogd keeps it with the service's
//! log; its exit code is the verdict.

use bollard::Docker;
use rundock_spec::Hook;
use std::io::Write;
use std::time::Duration;

/// Runs `hook` for `container`; `Err(why)` when it failed, timed out or could not run.
pub(crate) async fn run(docker: &Docker, container: &str, hook: &Hook) -> Result<(), String> {
    let limit = Duration::from_secs(hook.timeout.max(1).into());
    let words = hook.command.join(" ");
    let outcome = if hook.on_host {
        tokio::time::timeout(limit, on_host(&hook.command)).await
    } else {
        tokio::time::timeout(limit, in_container(docker, container, &hook.command)).await
    };
    match outcome {
        Ok(Ok(0)) => Ok(()),
        Ok(Ok(code)) => Err(format!("{words} exited {code}")),
        Ok(Err(e)) => Err(format!("{words}: {e}")),
        Err(_) => Err(format!(
            "{words} did not finish within {}s",
            limit.as_secs()
        )),
    }
}

async fn on_host(command: &[String]) -> Result<i64, String> {
    let (program, args) = command.split_first().ok_or("an empty command")?;
    let status = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit())
        // A timed-out hook is killed, not left behind.
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|e| format!("cannot run it: {e}"))?;
    Ok(status.code().map_or(-1, i64::from))
}

async fn in_container(docker: &Docker, container: &str, command: &[String]) -> Result<i64, String> {
    rundock_docker::exec::exec_in_container(docker, container, command, |chunk| {
        let _ = std::io::stderr().write_all(chunk);
    })
    .await?
    .ok_or_else(|| "did not finish".to_string())
}

/// Blocking: runs `hook` for the service's container (for `stop-tree`, which is not
/// async). Connects to Docker only for a hook that runs in the container.
pub fn run_blocking(container: &str, hook: &Hook) -> anyhow::Result<()> {
    rundock_runtime::current_thread()?.block_on(async {
        let docker =
            rundock_docker::connect(rundock_docker::stop_request_limit(hook.timeout)).await?;
        run(&docker, container, hook)
            .await
            .map_err(anyhow::Error::msg)
    })
}
