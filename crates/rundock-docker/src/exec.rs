//! `docker exec`: a command in a running container, its output streamed to the caller,
//! its exit code the answer. The exec health check and the lifecycle hooks run through it.

use bollard::Docker;
use futures_util::StreamExt;

/// `docker exec` of `command` in `container`, its output handed to `output` chunk by
/// chunk as it comes; returns the exit code (`None` if Docker reports none).
pub async fn exec_in_container(
    docker: &Docker,
    container: &str,
    command: &[String],
    mut output: impl FnMut(&[u8]),
) -> Result<Option<i64>, String> {
    let created = docker
        .create_exec(
            container,
            bollard::models::ExecConfig {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(command.to_vec()),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("docker exec: {e}"))?;
    let started = docker
        .start_exec(&created.id, None)
        .await
        .map_err(|e| format!("docker exec: {e}"))?;
    if let bollard::exec::StartExecResults::Attached {
        output: mut stream, ..
    } = started
    {
        // The stream ends when the command exits.
        while let Some(Ok(chunk)) = stream.next().await {
            output(&chunk.into_bytes());
        }
    }
    let info = docker
        .inspect_exec(&created.id)
        .await
        .map_err(|e| format!("docker exec: {e}"))?;
    Ok(info.exit_code)
}
