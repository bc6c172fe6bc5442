//! The HTTP side of `rundock metrics`: `GET /metrics` answers the exposition text of
//! every tree under the sv dir at that moment; anything else is 404. One request per
//! connection, read up to its blank line (at most 8 KiB), answered and closed: a scraper
//! needs no more, and no HTTP server crate joins the binary Ansible copies.
//!
//! Clients are served concurrently, so a slow or idle one never holds up a scrape. What
//! they can hold is bounded: a request head must arrive within [`HEADER_TIMEOUT`], the
//! whole exchange within [`REQUEST_TIMEOUT`], and at most [`MAX_CONNECTIONS`] are open;
//! at the cap a new connection takes the place of the oldest one still waiting for its
//! request head (or is closed when every one is being answered).

use crate::{collect, metrics};
use anyhow::Context;
use rundock_runtime::{say, Connections, Shutdown, Slot};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MAX_REQUEST: usize = 8192;
/// A scraper sends its request head at once; a client that has not within this is idle.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Head, scrape and answer together; below Prometheus's default scrape timeout (10 s).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(9);
/// Open connections at most: far below the usual 1,024 descriptors, far above the
/// handful of scrapers a host has.
pub const MAX_CONNECTIONS: usize = 64;

/// Blocking: serves `/metrics` on `listen` until TERM or INT.
pub fn run(listen: SocketAddr, sv_dir: PathBuf) -> anyhow::Result<()> {
    rundock_runtime::current_thread()?.block_on(serve(listen, sv_dir))
}

async fn serve(listen: SocketAddr, sv_dir: PathBuf) -> anyhow::Result<()> {
    let mut stop = Shutdown::new()?;
    let listener =
        rundock_runtime::listen(listen).with_context(|| format!("cannot listen on {listen}"))?;
    say!(
        "rundock metrics",
        "serving /metrics on {listen} for {}",
        sv_dir.display()
    );
    serve_on(listener, sv_dir, async move {
        let signal = stop.recv().await;
        say!("rundock metrics", "{signal}; exiting");
    })
    .await;
    Ok(())
}

/// Serves `/metrics` on `listener` until `stop` completes.
async fn serve_on(listener: TcpListener, sv_dir: PathBuf, stop: impl Future<Output = ()>) {
    // Connections are tasks on this thread: a scrape's future need not be Send.
    tokio::task::LocalSet::new()
        .run_until(accept_until(listener, sv_dir, stop))
        .await
}

async fn accept_until(listener: TcpListener, sv_dir: PathBuf, stop: impl Future<Output = ()>) {
    let sv_dir = std::rc::Rc::new(sv_dir);
    let connections = Connections::new(MAX_CONNECTIONS);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors and the like: pause rather than spin.
                        say!("rundock metrics", "accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                // Closing at once (rather than leaving it in the backlog) tells the
                // client now.
                let Some(slot) = connections.admit() else { continue };
                let sv_dir = sv_dir.clone();
                tokio::task::spawn_local(async move {
                    let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, slot, &sv_dir)).await;
                });
                if connections.full() {
                    // Let a connection told to make room close before the next accept,
                    // so the descriptors open never run far past the cap.
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

async fn answer(mut stream: TcpStream, slot: Slot, sv_dir: &Path) -> std::io::Result<()> {
    let evicted = slot.idle();
    let request = tokio::select! {
        request = tokio::time::timeout(HEADER_TIMEOUT, read_head(&mut stream)) => match request {
            Ok(request) => request?,
            Err(_) => return Ok(()),
        },
        _ = evicted.notified() => return Ok(()),
    };
    slot.busy();
    let line = request.split(|b| *b == b'\r').next().unwrap_or_default();
    let path = line.split(|b| *b == b' ').nth(1).unwrap_or_default();
    let is_get = line.starts_with(b"GET ");
    let (status, body) = if is_get && (path == b"/metrics" || path.starts_with(b"/metrics?")) {
        match scrape(sv_dir).await {
            Ok(text) => ("200 OK", text),
            Err(e) => ("500 Internal Server Error", format!("{e:#}\n")),
        }
    } else {
        ("404 Not Found", "only GET /metrics is served\n".to_string())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// The request up to its blank line, at most [`MAX_REQUEST`] bytes of it.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut request = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    Ok(request)
}

/// The exposition text for every tree under `sv_dir` now.
pub async fn scrape(sv_dir: &Path) -> anyhow::Result<String> {
    let trees = collect::trees(sv_dir, &[])?;
    let statuses = collect::statuses_for_metrics(&trees).await;
    Ok(metrics::render(&statuses))
}
