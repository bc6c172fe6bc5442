//! The HTTP side of `rundock metrics`: `GET /metrics` answers the exposition text of
//! every tree under the sv dir at that moment; anything else is 404. One request per
//! connection, read up to its blank line (at most 8 KiB), answered and closed: a scraper
//! needs no more, and no HTTP server crate joins the binary Ansible copies.

use crate::{collect, metrics};
use anyhow::Context;
use rundock_runtime::{say, Shutdown};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MAX_REQUEST: usize = 8192;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Blocking: serves `/metrics` on `listen` until TERM or INT.
pub fn run(listen: SocketAddr, sv_dir: PathBuf) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(listen, sv_dir))
}

async fn serve(listen: SocketAddr, sv_dir: PathBuf) -> anyhow::Result<()> {
    let mut stop = Shutdown::new()?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    say!(
        "rundock metrics",
        "serving /metrics on {listen} for {}",
        sv_dir.display()
    );
    loop {
        tokio::select! {
            signal = stop.recv() => {
                say!("rundock metrics", "{signal}; exiting");
                return Ok(());
            }
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                // One scrape at a time is what Prometheus does; a slow client is bounded.
                let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &sv_dir)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream, sv_dir: &Path) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
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

/// The exposition text for every tree under `sv_dir` now.
pub async fn scrape(sv_dir: &Path) -> anyhow::Result<String> {
    let trees = collect::trees(sv_dir, &[])?;
    let statuses = collect::statuses_for_metrics(&trees).await;
    Ok(metrics::render(&statuses))
}
