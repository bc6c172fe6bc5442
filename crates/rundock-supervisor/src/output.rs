//! Copying the container's output to the supervisor's own stdout and stderr.
//!
//! The attach is made before the container starts, so its first lines are not lost. The
//! bytes are handed to a plain thread that does the (blocking) writes: if svlogd stalls,
//! the channel fills and Docker holds the container's output back, while the runtime
//! stays free to handle TERM.

use bollard::container::LogOutput;
use bollard::query_parameters::AttachContainerOptions;
use bollard::Docker;
use futures_util::StreamExt;
use std::io::Write;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Chunks buffered between the attach stream and the writer thread.
const QUEUE: usize = 64;

/// The running copy: the pump reading the attach stream and the writer thread.
pub(crate) struct Copy {
    pump: tokio::task::JoinHandle<()>,
    written: oneshot::Receiver<()>,
}

/// Attaches to `container`'s stdout and stderr and starts copying them.
pub(crate) async fn attach(
    docker: &Docker,
    container: &str,
) -> Result<Copy, bollard::errors::Error> {
    let options = AttachContainerOptions {
        stream: true,
        stdout: true,
        stderr: true,
        logs: false,
        ..Default::default()
    };
    let mut attached = docker.attach_container(container, Some(options)).await?;
    let (sender, mut receiver) = mpsc::channel::<LogOutput>(QUEUE);
    let (done, written) = oneshot::channel();
    std::thread::spawn(move || {
        while let Some(chunk) = receiver.blocking_recv() {
            // A closed stdout/stderr (no log service) must not stop the container.
            let _ = match chunk {
                LogOutput::StdErr { message } => write_all(&mut std::io::stderr(), &message),
                other => write_all(&mut std::io::stdout(), &other.into_bytes()),
            };
        }
        let _ = done.send(());
    });
    let pump = tokio::spawn(async move {
        while let Some(Ok(chunk)) = attached.output.next().await {
            if sender.send(chunk).await.is_err() {
                break;
            }
        }
    });
    Ok(Copy { pump, written })
}

fn write_all(out: &mut dyn Write, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(bytes)?;
    out.flush()
}

impl Copy {
    /// After the container exited: lets the attach stream end and the last bytes be
    /// written, waiting at most `limit` for each.
    pub async fn finish(self, limit: Duration) {
        let mut pump = self.pump;
        if tokio::time::timeout(limit, &mut pump).await.is_err() {
            pump.abort();
        }
        let _ = tokio::time::timeout(limit, self.written).await;
    }
}
