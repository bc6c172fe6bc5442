//! `rundock dns` served in-process from a thread of its own for the tests, stopped (and
//! its result checked) on drop.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rundock_dns::DnsOptions;

pub struct InProcess {
    /// Where it listens (the port the kernel chose for `127.0.0.1:0`).
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl InProcess {
    /// Serves `opts` once `enter` ran in the serving thread (e.g. entering a network
    /// namespace, which is per thread); returns once it is bound.
    pub fn start(
        opts: DnsOptions,
        enter: impl FnOnce() -> anyhow::Result<()> + Send + 'static,
    ) -> InProcess {
        let (addr_tx, addr_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            enter()?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(rundock_dns::serve(
                opts,
                move |addr| addr_tx.send(addr).unwrap(),
                async move {
                    let _ = stop_rx.await;
                },
            ))
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("responder bound");
        InProcess {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let result = thread.join().expect("responder thread");
            if !std::thread::panicking() {
                result.expect("responder ended cleanly");
            }
        }
    }
}
